// outgrow/resilience/circuit_breaker.hpp — stop calling a dependency that is failing.
//
// The textbook's breaker ("5 failures → open, fail fast; after 30 s half-open, probe;
// close on success"), grown to what Resilience4j, Polly and Envoy offer, cheap enough
// to wrap every call:
//
//   outgrow::circuit_breaker<> cb({.failure_threshold = 5, .open_for = 30s});
//   if (auto permit = cb.try_acquire()) {          // never throws; false = rejected
//     try { auto r = payment.charge(order); permit.success(); }
//     catch (...) { permit.failure(); throw; }
//   } else {
//     serve_from_fallback();                         // failing fast
//   }
//   // or: auto r = cb.call([&] { return payment.charge(order); },
//   //                      [&] { return charge_result::deferred(); });
//   cb.on_transition([](const outgrow::breaker_transition& t) { log(t); });
//   fmt::print("{}\n", cb.metrics());
//
// States: closed → open when the trip condition holds; open → half_open once `open_for`
// has passed. That transition is made by whatever looks first after the break: a call,
// state() or metrics() (as Polly's CircuitState getter does). So state() and metrics()
// report half_open as soon as open_for has elapsed, and listeners see open → half_open
// exactly once, stamped with the moment it was made. (Resilience4j by default stays OPEN
// until the next call; with automaticTransitionFromOpenToHalfOpenEnabled a timer moves it
// — what our observers see, without the timer thread.)
// half_open admits exactly `half_open_calls` probes: `success_threshold` successful
// probes close it; any failed probe — or slow probe, with slow-call tracking — re-opens
// it at once. That is deliberate and differs from Resilience4j, which rates all its
// permitted probes against the thresholds (at 50 %, one failure among 4 probes still
// closes it): a dependency that is still down gets one failed probe, not half_open_calls
// of them (the textbook's, Hystrix's and Polly's half-open). An ignored or abandoned probe
// gives its slot back (as Resilience4j's releasePermission). Each consecutive re-open
// multiplies open_for by `open_for_multiplier` up to `max_open_for`. Manual states:
// forced_open (reject everything, never half-opens), disabled (allow everything, record
// nothing), metrics_only (allow everything, record, never open); reset() returns to
// closed. Entering closed or metrics_only empties the window. A manual change to the
// state the breaker is already in (reset() while closed) still empties the window but is
// no transition: no listener call, not counted (as Resilience4j).
//
// Trip conditions (the Window template parameter), checked after every recorded outcome,
// successes included (a success can complete minimum_calls while the failure rate is
// over the threshold: F F F S S with minimum 5 opens on the fifth call, at 60 %):
//   consecutive_failures (default) — `failure_threshold` failures in a row (5, the
//     textbook's; a success resets the count);
//   count_window — the last `window_size` calls: failure rate >= failure_rate_threshold
//     % or slow-call rate >= slow_call_rate_threshold %, once `minimum_calls` were seen
//     (Resilience4j's COUNT_BASED; its defaults, and ours: 100 calls, 50 %, minimum 100
//     capped at the window size — but an explicit minimum_calls above window_size is
//     rejected, where Resilience4j lowers it);
//   time_window — the same over the last `window_size` seconds in one-second buckets
//     (Resilience4j's TIME_BASED, Hystrix's rolling window).
// A call lasting longer than `slow_call_duration` counts as slow (rate windows only; a
// call lasting exactly slow_call_duration is not slow, as in Resilience4j). Which
// exceptions count as failures: `call()` asks `config.is_failure` (default: every
// exception); with permits you decide by calling failure()/ignore().
//
// Configuration is checked by the constructor (config_error names the field, the value
// and the rule): out-of-range values, and — as Caffeine's builder does — a non-default
// value in a field this configuration never reads, which would otherwise be silently
// ignored: window_size, minimum_calls, failure_rate_threshold, slow_call_rate_threshold
// and slow_call_duration under consecutive_failures; failure_threshold under a rate
// window; slow_call_rate_threshold while slow_call_duration is 0; max_open_for while
// open_for_multiplier is 1.
//
// Cost and precision (benchmarks/resilience_bench.cpp): the closed path of the default
// configuration reads no clock and takes no lock; an open breaker reads the Clock on
// every rejected call (and state()/metrics() read it while open) to notice that open_for
// has passed, so the default Clock is `coarse_steady_clock` (CLOCK_MONOTONIC_COARSE,
// ~5 ns, resolution 1-4 ms): the breaker may stay open up to one scheduler tick longer
// than open_for. Slow-call tracking and time windows read the clock per call. A time
// window caches the sum of its completed seconds, re-summed once per second
// (O(window_size)), so an outcome and a snapshot cost O(1) amortized. Under concurrency,
// an outcome recorded just as its one-second bucket starts a new second may be lost
// from the time window, one recorded with a clock reading from the second before may
// be left out of it until the next second, and one recorded while the window is
// emptied may land in the emptied window; the counters are exact either way. Half-open
// and transitions take a mutex (rare by construction). No call allocates.
//
// Counts add up: calls() = successes + failures + ignored + rejected. A permit dropped
// without an outcome counts as ignored (an abandoned call: neither success nor
// failure); a dropped half-open probe gives its slot back. The counters are totals since
// construction; window_calls, failure_rate and slow_call_rate describe the window
// (Resilience4j's metrics are all window metrics and report -1 below minimum_calls; ours
// report the window's rate whatever its size).
//
// Thread-safety: every member function from any thread. Listeners run on the thread
// that made the transition, under the breaker's transition lock, exactly once per
// transition and in order; they may call state() and metrics() (which then report the
// new state) but must not call through the breaker (try_acquire(), call()) or change its
// state (reset(), force_open(), disable(), metrics_only()): that would deadlock.
// Complexity: try_acquire, outcomes, state() and metrics() O(1) (amortized for time
// windows); entering closed or metrics_only O(window_size).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/stats.hpp>
#include <outgrow/resilience/errors.hpp>

namespace outgrow {

enum class breaker_state : std::uint8_t {
  closed = 0,
  open = 1,
  half_open = 2,
  forced_open = 3,
  disabled = 4,
  metrics_only = 5,
};

[[nodiscard]] constexpr std::string_view to_string(breaker_state s) noexcept {
  switch (s) {
    case breaker_state::closed:
      return "closed";
    case breaker_state::open:
      return "open";
    case breaker_state::half_open:
      return "half_open";
    case breaker_state::forced_open:
      return "forced_open";
    case breaker_state::disabled:
      return "disabled";
    case breaker_state::metrics_only:
      return "metrics_only";
  }
  return "unknown";
}

/// Trip-condition policies (the Window template parameter).
struct consecutive_failures {};
struct count_window {};
struct time_window {};

template <class W>
concept breaker_window = std::same_as<W, consecutive_failures> ||
    std::same_as<W, count_window> || std::same_as<W, time_window>;

/// Every field has a default; a field the chosen configuration never reads must keep
/// it (see the header comment), so a setting that would do nothing is an error.
struct circuit_breaker_config {
  // consecutive_failures only
  /// Failures in a row that open the breaker: 5 (the textbook's). [1, 1000000]
  std::uint32_t failure_threshold = 5;
  // count_window / time_window only
  /// Calls (count_window, [1, 100000]) or seconds (time_window, [1, 3600]) in the
  /// window: 100, Resilience4j's default for both (Hystrix's rolling window is 10 s).
  std::uint32_t window_size = 100;
  /// Calls needed in the window before a rate can trip. 0 (the default) = Resilience4j's
  /// default, 100 — capped at window_size for count_window, as Resilience4j caps it
  /// (a 10-call window can trip from its 10th call). Set explicitly: [1, window_size]
  /// for count_window — a larger minimum could never be reached, so it is rejected where
  /// Resilience4j would silently lower it — and [1, 1e9] for time_window.
  std::uint32_t minimum_calls = 0;
  /// Failure rate that trips, in percent: 50 as Resilience4j and Hystrix. (0, 100]
  double failure_rate_threshold = 50.0;
  /// Slow-call rate that trips, in percent: 100 as Resilience4j. (0, 100]; read only
  /// when slow_call_duration > 0.
  double slow_call_rate_threshold = 100.0;
  /// Calls lasting longer than this are slow (exactly this long is not, as in
  /// Resilience4j); 0 = slow-call tracking off (the default — Resilience4j's is 60 s —
  /// so that the default closed path reads no clock).
  std::chrono::nanoseconds slow_call_duration{0};
  // open and half-open, every window
  /// Time open before probing: 30 s (the textbook's; Resilience4j's is 60 s). (0, 24 h]
  std::chrono::nanoseconds open_for = std::chrono::seconds{30};
  /// open_for grows by this factor per consecutive re-open (1 = never grows). [1, 100]
  double open_for_multiplier = 1.0;
  /// Cap for the grown open_for. [open_for, 24 h]; read only when open_for_multiplier
  /// > 1.
  std::chrono::nanoseconds max_open_for = std::chrono::minutes{10};
  /// Probes admitted in half_open: 1 (the textbook's single probe; Resilience4j's
  /// default is 10). [1, 1000000]
  std::uint32_t half_open_calls = 1;
  /// Successful probes that close the breaker; 0 = all half_open_calls. [0,
  /// half_open_calls]
  std::uint32_t success_threshold = 0;
  /// Which exceptions thrown through call() are failures (the rest are ignored);
  /// empty = every exception. Called only on the exception path.
  std::function<bool(const std::exception_ptr&)> is_failure{};
};

/// One state change, as passed to listeners.
struct breaker_transition {
  breaker_state from;
  breaker_state to;
  /// When the transition was made (open → half_open: when a call, state() or metrics()
  /// first looked after open_for had passed).
  std::chrono::steady_clock::time_point at;
  /// For transitions to open: how long it stays open.
  std::chrono::nanoseconds open_for{0};
};

/// A metrics snapshot (counters are exact; the rates are over the current window).
struct breaker_metrics {
  static constexpr std::string_view metrics_name = "breaker_metrics";
  breaker_state state = breaker_state::closed;
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;
  std::uint64_t ignored = 0;   ///< ignore()d or abandoned permits
  std::uint64_t rejected = 0;  ///< calls not permitted
  std::uint64_t slow_calls = 0;
  std::uint64_t transitions = 0;
  std::uint64_t window_calls = 0;  ///< calls in the current window (rate windows)
  double failure_rate = 0.0;       ///< percent, over window_calls
  double slow_call_rate = 0.0;     ///< percent, over window_calls
  std::uint32_t consecutive_failures = 0;

  [[nodiscard]] std::uint64_t calls() const noexcept {
    return successes + failures + ignored + rejected;
  }
  template <class F>
  void for_each_metric(F&& f) const {
    f("state", to_string(state));
    f("calls", calls());
    f("successes", successes);
    f("failures", failures);
    f("ignored", ignored);
    f("rejected", rejected);
    f("slow_calls", slow_calls);
    f("transitions", transitions);
    f("failure_rate", failure_rate);
    f("slow_call_rate", slow_call_rate);
  }
};

namespace detail {

/// A counter spread over cache-line-padded stripes so that threads bumping it do not
/// share a written cache line; load() sums the stripes (exact).
class striped_counter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    stripes_[stripe_index()].value.fetch_add(n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t load() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& s : stripes_) sum += s.value.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  static constexpr std::size_t stripes = 8;
  struct alignas(64) stripe {
    std::atomic<std::uint64_t> value{0};
  };
  static std::size_t stripe_index() noexcept {
    static std::atomic<std::size_t> next{0};
    thread_local const std::size_t mine =
        next.fetch_add(1, std::memory_order_relaxed) % stripes;
    return mine;
  }
  std::array<stripe, stripes> stripes_{};
};

/// state (3 bits) | open-until time in ns since the clock's epoch (61 bits).
constexpr std::uint64_t pack_state(breaker_state s, std::int64_t open_until_ns) noexcept {
  return (static_cast<std::uint64_t>(std::max<std::int64_t>(open_until_ns, 0)) << 3) |
         static_cast<std::uint64_t>(s);
}
constexpr breaker_state state_of(std::uint64_t word) noexcept {
  return static_cast<breaker_state>(word & 7U);
}
constexpr std::int64_t open_until_of(std::uint64_t word) noexcept {
  return static_cast<std::int64_t>(word >> 3);
}

/// Outcome bits stored per slot in a count window.
enum : std::uint8_t { slot_used = 1, slot_failure = 2, slot_slow = 4 };

}  // namespace detail

namespace detail {
template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
}  // namespace detail

template <breaker_window Window = consecutive_failures,
          clock_source Clock = coarse_steady_clock>
class circuit_breaker {
  using time_point = typename Clock::time_point;
  enum class outcome : std::uint8_t { success, failure, ignored };
  enum class permit_kind : std::uint8_t { normal, probe, uncounted };

 public:
  using window_type = Window;
  using clock_type = Clock;

  /// A permission to make one call; record its outcome with success(), failure() or
  /// ignore(). Converts to false when the call was rejected. Move-only; dropping a
  /// granted permit without an outcome counts as ignored.
  class permit {
   public:
    permit() noexcept = default;
    permit(permit&& o) noexcept
        : breaker_(std::exchange(o.breaker_, nullptr)),
          started_(o.started_),
          generation_(o.generation_),
          kind_(o.kind_) {}
    permit& operator=(permit&& o) noexcept {
      if (this != &o) {
        if (breaker_ != nullptr) breaker_->record(*this, outcome::ignored);
        breaker_ = std::exchange(o.breaker_, nullptr);
        started_ = o.started_;
        generation_ = o.generation_;
        kind_ = o.kind_;
      }
      return *this;
    }
    permit(const permit&) = delete;
    permit& operator=(const permit&) = delete;
    ~permit() {
      if (breaker_ != nullptr) breaker_->record(*this, outcome::ignored);
    }

    /// True when the call may proceed (and an outcome is still to be recorded).
    explicit operator bool() const noexcept { return breaker_ != nullptr; }

    void success() noexcept { finish(outcome::success); }
    void failure() noexcept { finish(outcome::failure); }
    /// Neither success nor failure (e.g. a client error that says nothing about the
    /// dependency's health).
    void ignore() noexcept { finish(outcome::ignored); }

   private:
    friend class circuit_breaker;
    void finish(outcome o) noexcept {
      if (breaker_ != nullptr) std::exchange(breaker_, nullptr)->record(*this, o);
    }
    circuit_breaker* breaker_ = nullptr;
    time_point started_{};
    std::uint32_t generation_ = 0;
    permit_kind kind_ = permit_kind::normal;
  };

  explicit circuit_breaker(circuit_breaker_config config = {}, Clock clock = {})
      : config_(validated(std::move(config))), clock_(std::move(clock)) {
    if constexpr (std::same_as<Window, count_window>) {
      slots_ = std::make_unique<std::atomic<std::uint8_t>[]>(config_.window_size);
    } else if constexpr (std::same_as<Window, time_window>) {
      buckets_ = std::make_unique<bucket[]>(config_.window_size);
    }
  }
  circuit_breaker(const circuit_breaker&) = delete;
  circuit_breaker& operator=(const circuit_breaker&) = delete;

  /// A permit when the call may go ahead; an empty (false) permit when rejected.
  /// Never throws, never allocates.
  [[nodiscard]] permit try_acquire() noexcept {
    const std::uint64_t word = word_.load(std::memory_order_acquire);
    switch (detail::state_of(word)) {
      case breaker_state::closed:
      case breaker_state::metrics_only:
        return grant(permit_kind::normal);
      case breaker_state::disabled:
        return grant(permit_kind::uncounted);  // allowed, nothing recorded
      case breaker_state::open:
        if (clock_.now().time_since_epoch().count() < detail::open_until_of(word)) {
          rejected_.add();
          return permit{};
        }
        return acquire_probe();
      case breaker_state::half_open:
        return acquire_probe();
      case breaker_state::forced_open:
        break;
    }
    rejected_.add();
    return permit{};
  }

  /// The current state. Once open_for has passed, an open breaker reports half_open:
  /// the first observer (this, metrics() or a call) makes that transition and its
  /// listeners run then, once (see the header comment).
  [[nodiscard]] breaker_state state() const noexcept {
    const std::uint64_t word = word_.load(std::memory_order_acquire);
    const breaker_state s = detail::state_of(word);
    if (s != breaker_state::open) return s;
    const time_point now = clock_.now();
    if (now.time_since_epoch().count() < detail::open_until_of(word)) return s;
    // A listener asking while its own transition holds the lock: report, don't lock.
    if (notifying_.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
      return breaker_state::half_open;
    }
    std::lock_guard lock(mutex_);
    half_open_if_due_locked(now);
    return detail::state_of(word_.load(std::memory_order_relaxed));
  }

  /// Runs f() if permitted and returns its result. Throws circuit_open_error when
  /// rejected; rethrows f's exception after recording it (as a failure, or as ignored
  /// when config.is_failure says the exception is not the dependency's fault). A
  /// function returning std::optional that returns nullopt records a failure.
  template <class F>
  auto call(F&& f) -> std::invoke_result_t<F&> {
    permit p = try_acquire();
    if (!p) throw circuit_open_error("circuit_breaker: call rejected (breaker open)");
    return run(p, f);
  }

  /// Runs f() if permitted; when rejected, when f throws, or when f returns an empty
  /// std::optional, returns fallback() — or fallback(std::exception_ptr) if it takes
  /// one (null when rejected or empty). Never throws unless fallback does.
  template <class F, class Fallback>
  auto call(F&& f, Fallback&& fallback) -> std::invoke_result_t<F&> {
    using result = std::invoke_result_t<F&>;
    auto fall_back = [&](std::exception_ptr e) -> result {
      if constexpr (std::is_invocable_v<Fallback&, std::exception_ptr>) {
        return std::invoke(fallback, std::move(e));
      } else {
        return std::invoke(fallback);
      }
    };
    permit p = try_acquire();
    if (!p) return fall_back(nullptr);
    try {
      if constexpr (detail::is_optional<result>::value) {
        result r = run(p, f);
        return r.has_value() ? r : fall_back(nullptr);
      } else {
        return run(p, f);
      }
    } catch (...) {
      return fall_back(std::current_exception());
    }
  }

  /// Registers a listener called once per transition (see the header comment).
  void on_transition(std::function<void(const breaker_transition&)> listener) {
    std::lock_guard lock(mutex_);
    listeners_.push_back(std::move(listener));
  }

  // Manual control.
  void force_open() { manual(breaker_state::forced_open); }
  void disable() { manual(breaker_state::disabled); }
  void metrics_only() { manual(breaker_state::metrics_only); }
  /// Back to closed with an empty window and the re-open growth reset.
  void reset() { manual(breaker_state::closed); }

  [[nodiscard]] breaker_metrics metrics() const {
    breaker_metrics m;
    m.state = state();
    m.successes = successes_.load();
    m.failures = failures_.load();
    m.ignored = ignored_.load();
    m.rejected = rejected_.load();
    m.slow_calls = slow_.load();
    m.transitions = transitions_.load(std::memory_order_relaxed);
    m.consecutive_failures = consecutive_.load(std::memory_order_relaxed);
    const window_counts w = window_snapshot(clock_.now());
    m.window_calls = w.calls;
    m.failure_rate = w.calls == 0 ? 0.0
                                  : 100.0 * static_cast<double>(w.failures) /
                                        static_cast<double>(w.calls);
    m.slow_call_rate =
        w.calls == 0 ? 0.0
                     : 100.0 * static_cast<double>(w.slow) / static_cast<double>(w.calls);
    return m;
  }

  /// The configuration in use, defaults resolved (minimum_calls, success_threshold).
  [[nodiscard]] const circuit_breaker_config& config() const noexcept { return config_; }

 private:
  struct window_counts {
    std::uint64_t calls = 0, failures = 0, slow = 0;
  };
  struct bucket {
    std::atomic<std::int64_t> second{-1};
    std::atomic<std::uint32_t> calls{0}, failures{0}, slow{0};
  };

  static constexpr bool rate_window = !std::same_as<Window, consecutive_failures>;
  static constexpr std::string_view window_name =
      std::same_as<Window, count_window>  ? "count_window"
      : std::same_as<Window, time_window> ? "time_window"
                                          : "consecutive_failures";
  /// Resilience4j's DEFAULT_MINIMUM_NUMBER_OF_CALLS.
  static constexpr std::uint32_t default_minimum_calls = 100;

  static circuit_breaker_config validated(circuit_breaker_config c) {
    constexpr std::string_view name = "circuit_breaker";
    const circuit_breaker_config defaults{};
    // A field this configuration never reads must keep its default: a value there would
    // be silently ignored.
    const auto unread = [&](std::string_view field, const auto& value, const auto& def,
                            std::string_view why) {
      require(value == def, name, field,
              fmt::format("left at its default ({}): {}", detail::describe_value(def), why),
              value);
    };
    if constexpr (!rate_window) {
      require_in_range(name, "failure_threshold", c.failure_threshold, 1U, 1'000'000U);
      constexpr std::string_view why =
          "consecutive_failures never reads it (only count_window and time_window do)";
      unread("window_size", c.window_size, defaults.window_size, why);
      unread("minimum_calls", c.minimum_calls, defaults.minimum_calls, why);
      unread("failure_rate_threshold", c.failure_rate_threshold,
             defaults.failure_rate_threshold, why);
      unread("slow_call_rate_threshold", c.slow_call_rate_threshold,
             defaults.slow_call_rate_threshold, why);
      unread("slow_call_duration", c.slow_call_duration, defaults.slow_call_duration, why);
    } else {
      unread("failure_threshold", c.failure_threshold, defaults.failure_threshold,
             fmt::format("{} never reads it (only consecutive_failures does; {} trips on "
                         "failure_rate_threshold)",
                         window_name, window_name));
      if constexpr (std::same_as<Window, count_window>) {
        require_in_range(name, "window_size", c.window_size, 1U, 100'000U);
        // Resilience4j: minimumNumberOfCalls = min(minimumNumberOfCalls, window size).
        // We cap only the default; an explicit larger value is a mistake, not a wish.
        require(c.minimum_calls <= c.window_size, name, "minimum_calls",
                fmt::format("0 (the default: min(100, window_size)) or in [1, window_size "
                            "({})]: a count_window never holds more than window_size calls",
                            c.window_size),
                c.minimum_calls);
        if (c.minimum_calls == 0)
          c.minimum_calls = std::min(default_minimum_calls, c.window_size);
      } else {
        require_in_range(name, "window_size (seconds)", c.window_size, 1U, 3600U);
        require_in_range(name, "minimum_calls", c.minimum_calls, 0U, 1'000'000'000U);
        if (c.minimum_calls == 0) c.minimum_calls = default_minimum_calls;
      }
      require(c.failure_rate_threshold > 0.0 && c.failure_rate_threshold <= 100.0, name,
              "failure_rate_threshold", "in (0, 100]", c.failure_rate_threshold);
      require(c.slow_call_duration >= std::chrono::nanoseconds{0}, name,
              "slow_call_duration", "0 (off) or positive", c.slow_call_duration);
      if (c.slow_call_duration == std::chrono::nanoseconds{0}) {
        unread("slow_call_rate_threshold", c.slow_call_rate_threshold,
               defaults.slow_call_rate_threshold,
               "it is never read while slow_call_duration is 0 (slow-call tracking off)");
      } else {
        require(c.slow_call_rate_threshold > 0.0 && c.slow_call_rate_threshold <= 100.0,
                name, "slow_call_rate_threshold", "in (0, 100]",
                c.slow_call_rate_threshold);
      }
    }
    require(
        c.open_for > std::chrono::nanoseconds{0} && c.open_for <= std::chrono::hours{24},
        name, "open_for", "in (0s, 24h]", c.open_for);
    require_in_range(name, "open_for_multiplier", c.open_for_multiplier, 1.0, 100.0);
    if (c.open_for_multiplier == 1.0) {
      unread("max_open_for", c.max_open_for, defaults.max_open_for,
             "it is never read while open_for_multiplier is 1 (open_for never grows)");
    } else {
      require(c.max_open_for >= c.open_for && c.max_open_for <= std::chrono::hours{24},
              name, "max_open_for",
              fmt::format("in [open_for ({}), 24h]", detail::describe_value(c.open_for)),
              c.max_open_for);
    }
    require_in_range(name, "half_open_calls", c.half_open_calls, 1U, 1'000'000U);
    require_in_range(name, "success_threshold", c.success_threshold, 0U, c.half_open_calls);
    if (c.success_threshold == 0) c.success_threshold = c.half_open_calls;
    return c;
  }

  permit grant(permit_kind kind) noexcept {
    permit p;
    p.breaker_ = this;
    p.kind_ = kind;
    p.generation_ = generation_.load(std::memory_order_acquire);
    if (config_.slow_call_duration.count() > 0) p.started_ = clock_.now();
    return p;
  }

  permit acquire_probe() noexcept {
    std::lock_guard lock(mutex_);
    if (detail::state_of(word_.load(std::memory_order_relaxed)) == breaker_state::open) {
      half_open_if_due_locked(clock_.now());
    }
    switch (detail::state_of(word_.load(std::memory_order_relaxed))) {
      case breaker_state::half_open:
        if (probes_left_ == 0) break;
        --probes_left_;
        return grant(permit_kind::probe);
      // Changed under us (closed again, disabled, ...): decide afresh.
      case breaker_state::closed:
      case breaker_state::metrics_only:
        return grant(permit_kind::normal);
      case breaker_state::disabled:
        return grant(permit_kind::uncounted);
      case breaker_state::open:  // still open
      case breaker_state::forced_open:
        break;
    }
    rejected_.add();
    return permit{};
  }

  void record(const permit& p, outcome o) noexcept {
    if (p.kind_ == permit_kind::uncounted) return;
    const bool tracks_slow = config_.slow_call_duration.count() > 0;
    bool slow = false;
    time_point now{};  // read once, only when needed (never by the default config)
    if (o != outcome::ignored && (tracks_slow || std::same_as<Window, time_window>)) {
      now = clock_.now();
      // Longer than the threshold, as Resilience4j's CircuitBreakerMetrics (duration >
      // slowCallDurationThreshold): a call lasting exactly slow_call_duration is not slow.
      slow = tracks_slow && now - p.started_ > config_.slow_call_duration;
      if (slow) slow_.add();
    }
    switch (o) {
      case outcome::success:
        successes_.add();
        break;
      case outcome::failure:
        failures_.add();
        break;
      case outcome::ignored:
        ignored_.add();
        break;
    }
    if (p.kind_ == permit_kind::probe) {
      record_probe(p, o, slow);
      return;
    }
    if (o == outcome::ignored) return;
    const std::uint64_t word = word_.load(std::memory_order_acquire);
    const breaker_state s = detail::state_of(word);
    if (s != breaker_state::closed && s != breaker_state::metrics_only) return;
    if (p.generation_ != generation_.load(std::memory_order_acquire)) return;  // stale
    if (should_trip(o == outcome::failure, slow, now) && s == breaker_state::closed) {
      trip(p.generation_);
    }
  }

  /// Records a closed-state outcome in the window; true when the breaker should open.
  /// Every outcome is checked, successes included.
  bool should_trip(bool failed, bool slow, time_point now) noexcept {
    if constexpr (!rate_window) {
      (void)slow;
      (void)now;
      if (!failed) {
        if (consecutive_.load(std::memory_order_relaxed) != 0) {
          consecutive_.store(0, std::memory_order_relaxed);
        }
        return false;
      }
      return consecutive_.fetch_add(1, std::memory_order_relaxed) + 1 >=
             config_.failure_threshold;
    } else {
      if (failed) {
        consecutive_.fetch_add(1, std::memory_order_relaxed);
      } else if (consecutive_.load(std::memory_order_relaxed) != 0) {
        consecutive_.store(0, std::memory_order_relaxed);
      }
      const window_counts w = add_to_window(failed, slow, now);
      if (w.calls == 0 || w.calls < config_.minimum_calls) return false;
      const double calls = static_cast<double>(w.calls);
      return 100.0 * static_cast<double>(w.failures) >=
                 config_.failure_rate_threshold * calls ||
             (config_.slow_call_duration.count() > 0 &&
              100.0 * static_cast<double>(w.slow) >=
                  config_.slow_call_rate_threshold * calls);
    }
  }

  /// Adds one outcome to the window and returns the window's counts including it.
  window_counts add_to_window(bool failed, bool slow, time_point now) noexcept {
    if constexpr (std::same_as<Window, count_window>) {
      (void)now;
      const std::uint8_t bits = static_cast<std::uint8_t>(
          detail::slot_used | (failed ? detail::slot_failure : 0) |
          (slow ? detail::slot_slow : 0));
      const std::uint64_t i =
          cursor_.fetch_add(1, std::memory_order_relaxed) % config_.window_size;
      const std::uint8_t old = slots_[i].exchange(bits, std::memory_order_acq_rel);
      if ((old & detail::slot_used) == 0)
        window_used_.fetch_add(1, std::memory_order_relaxed);
      adjust(window_failures_, old & detail::slot_failure, bits & detail::slot_failure);
      adjust(window_slow_, old & detail::slot_slow, bits & detail::slot_slow);
      return window_snapshot(time_point{});
    } else {
      const std::int64_t second = seconds_of(now);
      bucket& b = bucket_of(second);
      turn_over(b, second);
      b.calls.fetch_add(1, std::memory_order_relaxed);
      if (failed) b.failures.fetch_add(1, std::memory_order_relaxed);
      if (slow) b.slow.fetch_add(1, std::memory_order_relaxed);
      return time_snapshot(second, b);
    }
  }

  static void adjust(std::atomic<std::uint32_t>& counter, unsigned before,
                     unsigned after) noexcept {
    if (before == 0 && after != 0) counter.fetch_add(1, std::memory_order_relaxed);
    if (before != 0 && after == 0) counter.fetch_sub(1, std::memory_order_relaxed);
  }

  /// Whole seconds since the clock's epoch (never negative: no provided clock is).
  static std::int64_t seconds_of(time_point t) noexcept {
    return std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
  }

  /// Time window: the bucket of a second.
  bucket& bucket_of(std::int64_t second) const noexcept {
    return buckets_[static_cast<std::size_t>(second) % config_.window_size];
  }

  /// Time window: the first outcome of a new second in bucket b empties it for that
  /// second. Outcomes racing with the emptying may be lost (see the header comment).
  static void turn_over(bucket& b, std::int64_t second) noexcept {
    std::int64_t seen = b.second.load(std::memory_order_acquire);
    while (seen < second) {
      if (b.second.compare_exchange_weak(seen, second, std::memory_order_acq_rel)) {
        b.calls.store(0, std::memory_order_relaxed);
        b.failures.store(0, std::memory_order_relaxed);
        b.slow.store(0, std::memory_order_relaxed);
        return;
      }
    }
  }

  /// Time window: the buckets of the seconds (after, last], summed. O(window_size).
  window_counts sum_buckets(std::int64_t after, std::int64_t last) const noexcept {
    window_counts w;
    for (std::uint32_t i = 0; i < config_.window_size; ++i) {
      const bucket& b = buckets_[i];
      const std::int64_t s = b.second.load(std::memory_order_acquire);
      if (s > after && s <= last) {
        w.calls += b.calls.load(std::memory_order_relaxed);
        w.failures += b.failures.load(std::memory_order_relaxed);
        w.slow += b.slow.load(std::memory_order_relaxed);
      }
    }
    return w;
  }

  /// Time window: the window ending with `second` — the cached sum of its completed
  /// seconds plus the live bucket of `second`. O(1), but once per second one caller
  /// re-sums the completed seconds (O(window_size)); a caller whose clock reading is
  /// behind the cache, or that meets a re-sum in progress, sums all buckets itself.
  window_counts time_snapshot(std::int64_t second, const bucket& current) const noexcept {
    const auto n = static_cast<std::int64_t>(config_.window_size);
    if (summed_for_.load(std::memory_order_acquire) != second && !resum(second)) {
      return clamped(sum_buckets(second - n, second));
    }
    window_counts w;
    w.calls = rest_calls_.load(std::memory_order_relaxed);
    w.failures = rest_failures_.load(std::memory_order_relaxed);
    w.slow = rest_slow_.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (summed_for_.load(std::memory_order_relaxed) != second) {  // re-summed meanwhile
      return clamped(sum_buckets(second - n, second));
    }
    if (current.second.load(std::memory_order_acquire) == second) {
      w.calls += current.calls.load(std::memory_order_relaxed);
      w.failures += current.failures.load(std::memory_order_relaxed);
      w.slow += current.slow.load(std::memory_order_relaxed);
    }
    return clamped(w);
  }

  /// Time window: caches the sum of the seconds before `second` (summed_for_ works as a
  /// seqlock: `resumming` while a thread writes the sums). False when another thread is
  /// re-summing or has cached a later second.
  bool resum(std::int64_t second) const noexcept {
    std::int64_t done = summed_for_.load(std::memory_order_acquire);
    if (done == resumming || done >= second) return done == second;
    if (!summed_for_.compare_exchange_strong(done, resumming, std::memory_order_acquire)) {
      return false;
    }
    std::atomic_thread_fence(std::memory_order_release);
    const auto n = static_cast<std::int64_t>(config_.window_size);
    const window_counts rest = sum_buckets(second - n, second - 1);
    rest_calls_.store(rest.calls, std::memory_order_relaxed);
    rest_failures_.store(rest.failures, std::memory_order_relaxed);
    rest_slow_.store(rest.slow, std::memory_order_relaxed);
    summed_for_.store(second, std::memory_order_release);
    return true;
  }

  /// Failures and slow calls never exceed calls (reads racing with writers may).
  static window_counts clamped(window_counts w) noexcept {
    w.failures = std::min(w.failures, w.calls);
    w.slow = std::min(w.slow, w.calls);
    return w;
  }

  window_counts window_snapshot(time_point now) const noexcept {
    window_counts w;
    if constexpr (std::same_as<Window, count_window>) {
      (void)now;
      w.calls = window_used_.load(std::memory_order_relaxed);
      w.failures = window_failures_.load(std::memory_order_relaxed);
      w.slow = window_slow_.load(std::memory_order_relaxed);
    } else if constexpr (std::same_as<Window, time_window>) {
      const std::int64_t second = seconds_of(now);
      w = time_snapshot(second, bucket_of(second));
    } else {
      (void)now;
    }
    return w;
  }

  void record_probe(const permit& p, outcome o, bool slow) noexcept {
    std::lock_guard lock(mutex_);
    if (detail::state_of(word_.load(std::memory_order_relaxed)) !=
            breaker_state::half_open ||
        p.generation_ != generation_.load(std::memory_order_relaxed)) {
      return;  // the breaker moved on; this probe's answer is stale
    }
    const time_point now = clock_.now();
    if (o == outcome::ignored) {
      ++probes_left_;  // give the slot back
    } else if (o == outcome::failure || slow) {
      // Deliberately not Resilience4j's rate over all probes (see the header comment).
      transition_locked(breaker_state::open, now);
    } else if (++probe_successes_ >= config_.success_threshold) {
      transition_locked(breaker_state::closed, now);
    }
  }

  void trip(std::uint32_t generation) noexcept {
    std::lock_guard lock(mutex_);
    if (detail::state_of(word_.load(std::memory_order_relaxed)) != breaker_state::closed ||
        generation != generation_.load(std::memory_order_relaxed)) {
      return;  // someone else tripped (or reset) it first
    }
    transition_locked(breaker_state::open, clock_.now());
  }

  void manual(breaker_state to) {
    std::lock_guard lock(mutex_);
    transition_locked(to, clock_.now());
  }

  /// open → half_open once open_for has passed; mutex_ held. Const because observers
  /// (state(), metrics()) make it too: it changes how the state is stored, not what
  /// state() reports, so the members it writes are mutable.
  void half_open_if_due_locked(time_point now) const noexcept {
    const std::uint64_t word = word_.load(std::memory_order_relaxed);
    if (detail::state_of(word) != breaker_state::open ||
        now.time_since_epoch().count() < detail::open_until_of(word)) {
      return;
    }
    probes_left_ = config_.half_open_calls;
    probe_successes_ = 0;
    publish_locked(breaker_state::open, breaker_state::half_open, now,
                   std::chrono::nanoseconds{0}, 0);
  }

  /// Performs a transition to anything but half_open; mutex_ held.
  void transition_locked(breaker_state to, time_point now) noexcept {
    const breaker_state from = detail::state_of(word_.load(std::memory_order_relaxed));
    std::chrono::nanoseconds open_for{0};
    std::int64_t open_until = 0;
    if (to == breaker_state::open) {
      // Grows with each consecutive re-open (from half_open), capped.
      reopens_ = from == breaker_state::half_open ? reopens_ + 1 : 0;
      double factor = 1.0;
      for (std::uint32_t i = 0; i < reopens_ && factor < 1e9; ++i)
        factor *= config_.open_for_multiplier;
      const double grown = static_cast<double>(config_.open_for.count()) * factor;
      open_for = grown >= static_cast<double>(config_.max_open_for.count())
                     ? config_.max_open_for
                     : std::chrono::nanoseconds{static_cast<std::int64_t>(grown)};
      // Saturating: the state word holds 61 bits of nanoseconds (73 years), and a
      // manual_clock may stand at time_point::max().
      constexpr std::int64_t max_open_until = (std::int64_t{1} << 61) - 1;
      const std::int64_t now_ns = now.time_since_epoch().count();
      open_until = now_ns >= max_open_until - open_for.count() ? max_open_until
                                                               : now_ns + open_for.count();
    }
    if (to == breaker_state::closed || to == breaker_state::metrics_only) clear_window();
    if (to == breaker_state::closed) reopens_ = 0;
    publish_locked(from, to, now, open_for, open_until);
  }

  /// Stores the new state and tells the listeners, once; mutex_ held. Staying in the
  /// same state (reset() while closed) is no transition: nothing is published.
  void publish_locked(breaker_state from, breaker_state to, time_point now,
                      std::chrono::nanoseconds open_for,
                      std::int64_t open_until) const noexcept {
    generation_.fetch_add(1, std::memory_order_acq_rel);  // in-flight permits go stale
    word_.store(detail::pack_state(to, open_until), std::memory_order_release);
    if (from == to) return;
    transitions_.fetch_add(1, std::memory_order_relaxed);
    if (listeners_.empty()) return;
    const breaker_transition t{from, to, now, open_for};
    notifying_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    for (const auto& l : listeners_) {
      try {
        l(t);
      } catch (...) {
        // A listener's failure must not break the breaker.
      }
    }
    notifying_.store(std::thread::id{}, std::memory_order_relaxed);
  }

  /// Empties the window. A count window takes each slot out of its counts as it empties
  /// it, so outcomes racing with this cannot make the counts drift from the slots.
  void clear_window() noexcept {
    consecutive_.store(0, std::memory_order_relaxed);
    if constexpr (std::same_as<Window, count_window>) {
      for (std::uint32_t i = 0; i < config_.window_size; ++i) {
        const std::uint8_t old = slots_[i].exchange(0, std::memory_order_acq_rel);
        if ((old & detail::slot_used) != 0)
          window_used_.fetch_sub(1, std::memory_order_relaxed);
        adjust(window_failures_, old & detail::slot_failure, 0);
        adjust(window_slow_, old & detail::slot_slow, 0);
      }
    } else if constexpr (std::same_as<Window, time_window>) {
      // Hold the re-sum "lock" so that no re-sum publishes sums of the old buckets.
      for (;;) {
        std::int64_t done = summed_for_.load(std::memory_order_relaxed);
        if (done != resumming &&
            summed_for_.compare_exchange_weak(done, resumming, std::memory_order_acquire)) {
          break;
        }
        std::this_thread::yield();  // a re-sum is running: O(window_size)
      }
      std::atomic_thread_fence(std::memory_order_release);
      for (std::uint32_t i = 0; i < config_.window_size; ++i) {
        buckets_[i].second.store(-1, std::memory_order_relaxed);
        buckets_[i].calls.store(0, std::memory_order_relaxed);
        buckets_[i].failures.store(0, std::memory_order_relaxed);
        buckets_[i].slow.store(0, std::memory_order_relaxed);
      }
      rest_calls_.store(0, std::memory_order_relaxed);
      rest_failures_.store(0, std::memory_order_relaxed);
      rest_slow_.store(0, std::memory_order_relaxed);
      summed_for_.store(-1, std::memory_order_release);
    }
  }

  template <class F>
  auto run(permit& p, F& f) -> std::invoke_result_t<F&> {
    using result = std::invoke_result_t<F&>;
    try {
      if constexpr (std::is_void_v<result>) {
        std::invoke(f);
        p.success();
      } else {
        result r = std::invoke(f);
        if constexpr (detail::is_optional<result>::value) {
          r.has_value() ? p.success() : p.failure();
        } else {
          p.success();
        }
        return r;
      }
    } catch (...) {
      if (!config_.is_failure || config_.is_failure(std::current_exception())) {
        p.failure();
      } else {
        p.ignore();
      }
      throw;
    }
  }

  circuit_breaker_config config_;
  Clock clock_;
  // Hot state, read lock-free. Mutable members: the open → half_open transition is made
  // by const observers too (state(), metrics()); see half_open_if_due_locked().
  alignas(64) mutable std::atomic<std::uint64_t> word_{
      detail::pack_state(breaker_state::closed, 0)};
  mutable std::atomic<std::uint32_t> generation_{0};
  std::atomic<std::uint32_t> consecutive_{0};
  // Count window.
  std::unique_ptr<std::atomic<std::uint8_t>[]> slots_;
  std::atomic<std::uint64_t> cursor_{0};
  std::atomic<std::uint32_t> window_used_{0}, window_failures_{0}, window_slow_{0};
  // Time window: one bucket per second, and the cached sum of the completed seconds
  // of the window ending with summed_for_ (see time_snapshot()).
  static constexpr std::int64_t resumming = -2;
  std::unique_ptr<bucket[]> buckets_;
  mutable std::atomic<std::int64_t> summed_for_{-1};
  mutable std::atomic<std::uint64_t> rest_calls_{0}, rest_failures_{0}, rest_slow_{0};
  // Counters.
  detail::striped_counter successes_, failures_, ignored_, rejected_, slow_;
  mutable std::atomic<std::uint64_t> transitions_{0};
  // Transition state, under mutex_.
  mutable std::mutex mutex_;
  mutable std::uint32_t probes_left_ = 0;
  mutable std::uint32_t probe_successes_ = 0;
  std::uint32_t reopens_ = 0;
  std::vector<std::function<void(const breaker_transition&)>> listeners_;
  /// The thread running listeners (so that their state()/metrics() do not relock).
  mutable std::atomic<std::thread::id> notifying_{};
};

}  // namespace outgrow

template <>
struct fmt::formatter<outgrow::breaker_state> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(outgrow::breaker_state s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(outgrow::to_string(s), ctx);
  }
};
