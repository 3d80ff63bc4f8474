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
// Trip conditions (the Window template parameter, resilience/breaker_window.hpp: an open
// concept — a user window needs a constructor from the config, record(), counts() and
// clear(); see the smallest one there), checked after every recorded outcome,
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
// Your own: any type meeting `breaker_window`; the smallest opens on any failure:
//   struct first_failure_window {
//     explicit first_failure_window(const outgrow::circuit_breaker_config&) {}
//     bool record(const outgrow::breaker_outcome& o) noexcept { return o.failed; }
//     outgrow::breaker_window_counts counts(std::chrono::nanoseconds) const noexcept {
//       return {};                                 // no rates: metrics() reports 0
//     }
//     void clear() noexcept {}
//   };
//   outgrow::circuit_breaker<first_failure_window> cb;
// Types: circuit_breaker_config, breaker_state, breaker_transition and
// circuit_breaker_metrics are in resilience/circuit_breaker_config.hpp; the windows in
// resilience/breaker_window.hpp (both included).
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

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
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
#include <outgrow/core/metrics.hpp>
#include <outgrow/resilience/breaker_window.hpp>
#include <outgrow/resilience/circuit_breaker_config.hpp>
#include <outgrow/resilience/detail/circuit_breaker_state.hpp>
#include <outgrow/resilience/errors.hpp>

namespace outgrow {

template <breaker_window Window = consecutive_failures,
          clock_source Clock = coarse_steady_clock>
class circuit_breaker {
  using time_point = typename Clock::time_point;
  enum class outcome : std::uint8_t { success, failure, ignored };
  enum class permit_kind : std::uint8_t { normal, probe, uncounted };
  static constexpr bool reads_clock = [] {
    if constexpr (requires { Window::reads_clock; }) {
      return static_cast<bool>(Window::reads_clock);
    } else {
      return false;
    }
  }();

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

  /// Throws: config_error if a field is out of range, or a field the Window never
  /// reads is not at its default (the message names the field, its value and the rule).
  explicit circuit_breaker(circuit_breaker_config config = {}, Clock clock = {})
      : config_(validated(std::move(config))), clock_(std::move(clock)), window_(config_) {}
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

  /// Runs f() if permitted and returns its result. A function returning std::optional
  /// that returns nullopt records a failure.
  /// Throws: circuit_open_error if the call is rejected; f's exception, rethrown after
  /// recording it (as a failure, or as ignored when config.is_failure says the
  /// exception is not the dependency's fault).
  template <class F>
  auto call(F&& f) -> std::invoke_result_t<F&> {
    permit p = try_acquire();
    if (!p) throw circuit_open_error("circuit_breaker: call rejected (breaker open)");
    return run(p, f);
  }

  /// Runs f() if permitted; when rejected, when f throws, or when f returns an empty
  /// std::optional, returns fallback() — or fallback(std::exception_ptr) if it takes
  /// one (null when rejected or empty).
  /// Throws: only what fallback throws.
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

  [[nodiscard]] circuit_breaker_metrics metrics() const {
    circuit_breaker_metrics m;
    m.state = state();
    m.successes = successes_.load();
    m.failures = failures_.load();
    m.ignored = ignored_.load();
    m.rejected = rejected_.load();
    m.slow_calls = slow_.load();
    m.transitions = transitions_.load(std::memory_order_relaxed);
    m.consecutive_failures = consecutive_.load(std::memory_order_relaxed);
    const breaker_window_counts w = window_.counts(since_epoch(clock_.now()));
    m.window_calls = w.calls;
    m.failure_rate = w.failure_rate();
    m.slow_call_rate = w.slow_call_rate();
    return m;
  }

  /// The configuration in use, defaults resolved (minimum_calls, success_threshold).
  [[nodiscard]] const circuit_breaker_config& config() const noexcept { return config_; }

 private:
  static circuit_breaker_config validated(circuit_breaker_config c) {
    constexpr std::string_view name = "circuit_breaker";
    // A field this configuration never reads must keep its default: a value there would
    // be silently ignored.
    if constexpr (requires { Window::validate(c); }) Window::validate(c);
    require(
        c.open_for > std::chrono::nanoseconds{0} && c.open_for <= std::chrono::hours{24},
        name, "open_for", "in (0s, 24h]", c.open_for);
    require_in_range(name, "open_for_multiplier", c.open_for_multiplier, 1.0, 100.0);
    if (c.open_for_multiplier == 1.0) {
      detail::require_default(
          "max_open_for", c.max_open_for, circuit_breaker_config{}.max_open_for,
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
    if (o != outcome::ignored && (tracks_slow || reads_clock)) {
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
    std::uint32_t run = 0;
    if (failed) {
      run = consecutive_.fetch_add(1, std::memory_order_relaxed) + 1;
    } else if (consecutive_.load(std::memory_order_relaxed) != 0) {
      consecutive_.store(0, std::memory_order_relaxed);
    }
    return window_.record(breaker_outcome{failed, slow, run, since_epoch(now)});
  }

  static std::chrono::nanoseconds since_epoch(time_point t) noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch());
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

  /// Empties the window (and the consecutive-failure count).
  void clear_window() noexcept {
    consecutive_.store(0, std::memory_order_relaxed);
    window_.clear();
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
  Window window_;
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
