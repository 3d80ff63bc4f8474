// outgrow/resilience/breaker_window.hpp — when a circuit_breaker trips: the window
// policies (consecutive_failures, count_window, time_window) and the concept a user
// window meets.
//
// A window is the Window template parameter of circuit_breaker (resilience/
// circuit_breaker.hpp). The breaker owns one, built from its validated configuration;
// while closed (or metrics_only) it records every success and failure there and opens
// when record() answers true; metrics() asks the window for its counts (call count,
// failure rate, slow-call rate); entering closed or metrics_only clears it.
//   consecutive_failures (default) — `failure_threshold` failures in a row;
//   count_window — rates over the last `window_size` calls (Resilience4j COUNT_BASED);
//   time_window — rates over the last `window_size` seconds (Resilience4j TIME_BASED).
// circuit_breaker.hpp's header comment describes their fields, defaults and precision.
//
// A user window is any type satisfying `breaker_window`; the smallest one opens on the
// first failure:
//
//   struct first_failure_window {
//     explicit first_failure_window(const outgrow::circuit_breaker_config&) {}
//     bool record(const outgrow::breaker_outcome& o) noexcept { return o.failed; }
//     outgrow::breaker_window_counts counts(std::chrono::nanoseconds) const noexcept {
//       return {};
//     }
//     void clear() noexcept {}
//   };
//   outgrow::circuit_breaker<first_failure_window> cb;
//
// Optional members: `static void validate(circuit_breaker_config&)` checks (and may
// resolve defaults of) the fields the window reads before it is built — throw
// outgrow::config_error there, as the built-in windows do for a field they never read;
// without it only the fields every breaker reads are checked. `static constexpr bool
// reads_clock = true` makes the breaker pass the Clock's time in breaker_outcome::now
// (otherwise it is zero unless slow-call tracking read the clock anyway).
//
// Trade-offs: a window is a template parameter, not a virtual interface, so the default
// closed path stays one inlined atomic increment (no indirect call, no clock read).
//
// Thread-safety: record() and counts() are called from any number of threads at once,
// and clear() (under the breaker's transition lock) concurrently with them: a window
// must be thread-safe without a lock of the breaker's (the built-in ones use relaxed
// atomics). All three must be noexcept. Complexity: record() and counts() O(1)
// (amortized for time_window), clear() O(window_size).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <memory>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>
#include <outgrow/resilience/circuit_breaker_config.hpp>

namespace outgrow {

/// One success or failure, as the breaker records it in its window (ignored calls are
/// not recorded).
struct breaker_outcome {
  bool failed = false;  ///< a failure; else a success
  bool slow = false;    ///< longer than slow_call_duration (slow-call tracking only)
  /// Failures in a row up to and including this outcome (0 after a success).
  std::uint32_t consecutive_failures = 0;
  /// The Clock's time at the end of the call, since its epoch: zero unless the window
  /// declares `reads_clock` or slow-call tracking read the clock.
  std::chrono::nanoseconds now{0};
};

/// What a window holds now: calls, failures and slow calls, and their rates.
struct breaker_window_counts {
  std::uint64_t calls = 0;
  std::uint64_t failures = 0;
  std::uint64_t slow = 0;

  /// Failures over calls, in percent (0 without calls).
  [[nodiscard]] double failure_rate() const noexcept {
    return calls == 0 ? 0.0
                      : 100.0 * static_cast<double>(failures) / static_cast<double>(calls);
  }
  /// Slow calls over calls, in percent (0 without calls).
  [[nodiscard]] double slow_call_rate() const noexcept {
    return calls == 0 ? 0.0
                      : 100.0 * static_cast<double>(slow) / static_cast<double>(calls);
  }
};

/// A circuit_breaker trip condition (see the header comment): built from the breaker's
/// configuration, record(outcome) is true when the breaker should open, counts(now)
/// answers call count and rates for metrics(), clear() empties it.
template <class W>
concept breaker_window =
    std::constructible_from<W, const circuit_breaker_config&> &&
    requires(W& w, const W& cw, const breaker_outcome& o, std::chrono::nanoseconds now) {
      { w.record(o) } noexcept -> std::same_as<bool>;
      { cw.counts(now) } noexcept -> std::same_as<breaker_window_counts>;
      { w.clear() } noexcept;
    };

namespace detail {

/// A field this configuration never reads must keep its default: a value there would
/// be silently ignored.
template <class T>
void require_default(std::string_view field, const T& value, const T& def,
                     std::string_view why) {
  require(value == def, "circuit_breaker", field,
          fmt::format("left at its default ({}): {}", describe_value(def), why), value);
}

/// The checks both rate windows share (after their window_size / minimum_calls ones).
inline void validate_rates(const circuit_breaker_config& c) {
  constexpr std::string_view name = "circuit_breaker";
  require(c.failure_rate_threshold > 0.0 && c.failure_rate_threshold <= 100.0, name,
          "failure_rate_threshold", "in (0, 100]", c.failure_rate_threshold);
  require(c.slow_call_duration >= std::chrono::nanoseconds{0}, name, "slow_call_duration",
          "0 (off) or positive", c.slow_call_duration);
  if (c.slow_call_duration == std::chrono::nanoseconds{0}) {
    require_default(
        "slow_call_rate_threshold", c.slow_call_rate_threshold,
        circuit_breaker_config{}.slow_call_rate_threshold,
        "it is never read while slow_call_duration is 0 (slow-call tracking off)");
  } else {
    require(c.slow_call_rate_threshold > 0.0 && c.slow_call_rate_threshold <= 100.0, name,
            "slow_call_rate_threshold", "in (0, 100]", c.slow_call_rate_threshold);
  }
}

inline void require_no_failure_threshold(const circuit_breaker_config& c,
                                         std::string_view window) {
  require_default("failure_threshold", c.failure_threshold,
                  circuit_breaker_config{}.failure_threshold,
                  fmt::format("{} never reads it (only consecutive_failures does; {} trips "
                              "on failure_rate_threshold)",
                              window, window));
}

/// The trip rule of the rate windows: once minimum_calls were seen, failure rate or
/// (with slow-call tracking) slow-call rate at or above its threshold.
class rate_rule {
 public:
  explicit rate_rule(const circuit_breaker_config& c) noexcept
      : minimum_calls_(c.minimum_calls),
        failure_rate_threshold_(c.failure_rate_threshold),
        slow_call_rate_threshold_(c.slow_call_rate_threshold),
        tracks_slow_(c.slow_call_duration.count() > 0) {}

  [[nodiscard]] bool trips(const breaker_window_counts& w) const noexcept {
    if (w.calls == 0 || w.calls < minimum_calls_) return false;
    const double calls = static_cast<double>(w.calls);
    return 100.0 * static_cast<double>(w.failures) >= failure_rate_threshold_ * calls ||
           (tracks_slow_ &&
            100.0 * static_cast<double>(w.slow) >= slow_call_rate_threshold_ * calls);
  }

 private:
  std::uint32_t minimum_calls_;
  double failure_rate_threshold_;
  double slow_call_rate_threshold_;
  bool tracks_slow_;
};

/// The default configuration as window W resolves it.
template <class W>
circuit_breaker_config validated_default() {
  circuit_breaker_config c;
  W::validate(c);
  return c;
}

/// Resilience4j's DEFAULT_MINIMUM_NUMBER_OF_CALLS.
inline constexpr std::uint32_t default_minimum_calls = 100;

/// Failures and slow calls never exceed calls (reads racing with writers may).
inline breaker_window_counts clamped(breaker_window_counts w) noexcept {
  w.failures = std::min(w.failures, w.calls);
  w.slow = std::min(w.slow, w.calls);
  return w;
}

}  // namespace detail

/// Opens after `failure_threshold` failures in a row (a success resets the count). Its
/// counts are empty (it keeps no rates).
class consecutive_failures {
 public:
  static constexpr std::string_view name = "consecutive_failures";

  /// With the default configuration (so `outgrow::consecutive_failures{}` names the policy
  /// too).
  consecutive_failures()
      : consecutive_failures(detail::validated_default<consecutive_failures>()) {}
  explicit consecutive_failures(const circuit_breaker_config& c) noexcept
      : threshold_(c.failure_threshold) {}

  /// Throws: config_error if failure_threshold is not in [1, 1000000], or a rate-window
  /// field (window_size, minimum_calls, failure_rate_threshold, slow_call_rate_threshold,
  /// slow_call_duration) is not at its default.
  static void validate(circuit_breaker_config& c) {
    require_in_range("circuit_breaker", "failure_threshold", c.failure_threshold, 1U,
                     1'000'000U);
    const circuit_breaker_config d{};
    constexpr std::string_view why =
        "consecutive_failures never reads it (only count_window and time_window do)";
    detail::require_default("window_size", c.window_size, d.window_size, why);
    detail::require_default("minimum_calls", c.minimum_calls, d.minimum_calls, why);
    detail::require_default("failure_rate_threshold", c.failure_rate_threshold,
                            d.failure_rate_threshold, why);
    detail::require_default("slow_call_rate_threshold", c.slow_call_rate_threshold,
                            d.slow_call_rate_threshold, why);
    detail::require_default("slow_call_duration", c.slow_call_duration,
                            d.slow_call_duration, why);
  }

  bool record(const breaker_outcome& o) noexcept {
    return o.failed && o.consecutive_failures >= threshold_;
  }
  breaker_window_counts counts(std::chrono::nanoseconds /*now*/) const noexcept {
    return {};
  }
  void clear() noexcept {}

 private:
  std::uint32_t threshold_;
};

/// Rates over the last `window_size` calls (a ring of outcome slots).
class count_window {
 public:
  static constexpr std::string_view name = "count_window";

  /// With the default configuration (so `outgrow::count_window{}` names the policy too).
  count_window() : count_window(detail::validated_default<count_window>()) {}
  explicit count_window(const circuit_breaker_config& c)
      : rule_(c),
        size_(c.window_size),
        slots_(std::make_unique<std::atomic<std::uint8_t>[]>(c.window_size)) {}

  /// Throws: config_error if window_size is not in [1, 100000], minimum_calls is above
  /// window_size, a rate threshold is not in (0, 100], slow_call_duration < 0, or
  /// failure_threshold (or slow_call_rate_threshold without slow-call tracking) is not
  /// at its default. Resolves minimum_calls 0 to min(100, window_size).
  static void validate(circuit_breaker_config& c) {
    constexpr std::string_view name_ = "circuit_breaker";
    detail::require_no_failure_threshold(c, name);
    require_in_range(name_, "window_size", c.window_size, 1U, 100'000U);
    // Resilience4j: minimumNumberOfCalls = min(minimumNumberOfCalls, window size).
    // We cap only the default; an explicit larger value is a mistake, not a wish.
    require(c.minimum_calls <= c.window_size, name_, "minimum_calls",
            fmt::format("0 (the default: min(100, window_size)) or in [1, window_size "
                        "({})]: a count_window never holds more than window_size calls",
                        c.window_size),
            c.minimum_calls);
    if (c.minimum_calls == 0)
      c.minimum_calls = std::min(detail::default_minimum_calls, c.window_size);
    detail::validate_rates(c);
  }

  bool record(const breaker_outcome& o) noexcept {
    const std::uint8_t bits = static_cast<std::uint8_t>(
        slot_used | (o.failed ? slot_failure : 0) | (o.slow ? slot_slow : 0));
    const std::uint64_t i = cursor_.fetch_add(1, std::memory_order_relaxed) % size_;
    const std::uint8_t old = slots_[i].exchange(bits, std::memory_order_acq_rel);
    if ((old & slot_used) == 0) used_.fetch_add(1, std::memory_order_relaxed);
    adjust(failures_, old & slot_failure, bits & slot_failure);
    adjust(slow_, old & slot_slow, bits & slot_slow);
    return rule_.trips(counts(std::chrono::nanoseconds{0}));
  }

  breaker_window_counts counts(std::chrono::nanoseconds /*now*/) const noexcept {
    breaker_window_counts w;
    w.calls = used_.load(std::memory_order_relaxed);
    w.failures = failures_.load(std::memory_order_relaxed);
    w.slow = slow_.load(std::memory_order_relaxed);
    return w;
  }

  /// Takes each slot out of the counts as it empties it, so outcomes racing with this
  /// cannot make the counts drift from the slots.
  void clear() noexcept {
    for (std::uint32_t i = 0; i < size_; ++i) {
      const std::uint8_t old = slots_[i].exchange(0, std::memory_order_acq_rel);
      if ((old & slot_used) != 0) used_.fetch_sub(1, std::memory_order_relaxed);
      adjust(failures_, old & slot_failure, 0);
      adjust(slow_, old & slot_slow, 0);
    }
  }

 private:
  /// Outcome bits stored per slot.
  enum : std::uint8_t { slot_used = 1, slot_failure = 2, slot_slow = 4 };

  static void adjust(std::atomic<std::uint32_t>& counter, unsigned before,
                     unsigned after) noexcept {
    if (before == 0 && after != 0) counter.fetch_add(1, std::memory_order_relaxed);
    if (before != 0 && after == 0) counter.fetch_sub(1, std::memory_order_relaxed);
  }

  detail::rate_rule rule_;
  std::uint32_t size_;
  std::unique_ptr<std::atomic<std::uint8_t>[]> slots_;
  std::atomic<std::uint64_t> cursor_{0};
  std::atomic<std::uint32_t> used_{0}, failures_{0}, slow_{0};
};

/// Rates over the last `window_size` seconds, in one-second buckets; the sum of the
/// completed seconds is cached and re-summed once per second.
class time_window {
 public:
  static constexpr std::string_view name = "time_window";
  static constexpr bool reads_clock = true;

  /// With the default configuration (so `outgrow::time_window{}` names the policy too).
  time_window() : time_window(detail::validated_default<time_window>()) {}
  explicit time_window(const circuit_breaker_config& c)
      : rule_(c),
        size_(c.window_size),
        buckets_(std::make_unique<bucket[]>(c.window_size)) {}

  /// Throws: config_error if window_size is not in [1, 3600] (seconds), minimum_calls
  /// is not in [0, 1e9], a rate threshold is not in (0, 100], slow_call_duration < 0,
  /// or failure_threshold (or slow_call_rate_threshold without slow-call tracking) is
  /// not at its default. Resolves minimum_calls 0 to 100.
  static void validate(circuit_breaker_config& c) {
    constexpr std::string_view name_ = "circuit_breaker";
    detail::require_no_failure_threshold(c, name);
    require_in_range(name_, "window_size (seconds)", c.window_size, 1U, 3600U);
    require_in_range(name_, "minimum_calls", c.minimum_calls, 0U, 1'000'000'000U);
    if (c.minimum_calls == 0) c.minimum_calls = detail::default_minimum_calls;
    detail::validate_rates(c);
  }

  bool record(const breaker_outcome& o) noexcept {
    const std::int64_t second = seconds_of(o.now);
    bucket& b = bucket_of(second);
    turn_over(b, second);
    b.calls.fetch_add(1, std::memory_order_relaxed);
    if (o.failed) b.failures.fetch_add(1, std::memory_order_relaxed);
    if (o.slow) b.slow.fetch_add(1, std::memory_order_relaxed);
    return rule_.trips(snapshot(second, b));
  }

  breaker_window_counts counts(std::chrono::nanoseconds now) const noexcept {
    const std::int64_t second = seconds_of(now);
    return snapshot(second, bucket_of(second));
  }

  void clear() noexcept {
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
    for (std::uint32_t i = 0; i < size_; ++i) {
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

 private:
  struct bucket {
    std::atomic<std::int64_t> second{-1};
    std::atomic<std::uint32_t> calls{0}, failures{0}, slow{0};
  };
  static constexpr std::int64_t resumming = -2;

  /// Whole seconds since the clock's epoch (never negative: no provided clock is).
  static std::int64_t seconds_of(std::chrono::nanoseconds t) noexcept {
    return std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::seconds>(t).count());
  }

  bucket& bucket_of(std::int64_t second) const noexcept {
    return buckets_[static_cast<std::size_t>(second) % size_];
  }

  /// The first outcome of a new second in bucket b empties it for that second.
  /// Outcomes racing with the emptying may be lost (see circuit_breaker.hpp).
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

  /// The buckets of the seconds (after, last], summed. O(window_size).
  breaker_window_counts sum_buckets(std::int64_t after, std::int64_t last) const noexcept {
    breaker_window_counts w;
    for (std::uint32_t i = 0; i < size_; ++i) {
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

  /// The window ending with `second` — the cached sum of its completed seconds plus the
  /// live bucket of `second`. O(1), but once per second one caller re-sums the
  /// completed seconds (O(window_size)); a caller whose clock reading is behind the
  /// cache, or that meets a re-sum in progress, sums all buckets itself.
  breaker_window_counts snapshot(std::int64_t second,
                                 const bucket& current) const noexcept {
    const auto n = static_cast<std::int64_t>(size_);
    if (summed_for_.load(std::memory_order_acquire) != second && !resum(second)) {
      return detail::clamped(sum_buckets(second - n, second));
    }
    breaker_window_counts w;
    w.calls = rest_calls_.load(std::memory_order_relaxed);
    w.failures = rest_failures_.load(std::memory_order_relaxed);
    w.slow = rest_slow_.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (summed_for_.load(std::memory_order_relaxed) != second) {  // re-summed meanwhile
      return detail::clamped(sum_buckets(second - n, second));
    }
    if (current.second.load(std::memory_order_acquire) == second) {
      w.calls += current.calls.load(std::memory_order_relaxed);
      w.failures += current.failures.load(std::memory_order_relaxed);
      w.slow += current.slow.load(std::memory_order_relaxed);
    }
    return detail::clamped(w);
  }

  /// Caches the sum of the seconds before `second` (summed_for_ works as a seqlock:
  /// `resumming` while a thread writes the sums). False when another thread is
  /// re-summing or has cached a later second.
  bool resum(std::int64_t second) const noexcept {
    std::int64_t done = summed_for_.load(std::memory_order_acquire);
    if (done == resumming || done >= second) return done == second;
    if (!summed_for_.compare_exchange_strong(done, resumming, std::memory_order_acquire)) {
      return false;
    }
    std::atomic_thread_fence(std::memory_order_release);
    const auto n = static_cast<std::int64_t>(size_);
    const breaker_window_counts rest = sum_buckets(second - n, second - 1);
    rest_calls_.store(rest.calls, std::memory_order_relaxed);
    rest_failures_.store(rest.failures, std::memory_order_relaxed);
    rest_slow_.store(rest.slow, std::memory_order_relaxed);
    summed_for_.store(second, std::memory_order_release);
    return true;
  }

  detail::rate_rule rule_;
  std::uint32_t size_;
  std::unique_ptr<bucket[]> buckets_;
  mutable std::atomic<std::int64_t> summed_for_{-1};
  mutable std::atomic<std::uint64_t> rest_calls_{0}, rest_failures_{0}, rest_slow_{0};
};

static_assert(breaker_window<consecutive_failures>);
static_assert(breaker_window<count_window>);
static_assert(breaker_window<time_window>);

}  // namespace outgrow
