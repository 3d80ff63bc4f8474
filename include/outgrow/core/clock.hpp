// outgrow/core/clock.hpp — the time source every time-aware primitive is templated on.
//
// Primitives hold a `Clock` by value and read `clock.now()`; they never call
// std::chrono clocks directly. Production code uses `steady_clock_source` (the default);
// tests and simulations use `manual_clock`, whose copies share one time line, so a test
// hands a copy to a primitive and moves time itself — no sleeps.
//
//   outgrow::manual_clock clock;                 // starts at time_point{} (zero)
//   outgrow::circuit_breaker<outgrow::consecutive_failures, outgrow::manual_clock> cb(
//       {.open_for = 30s}, clock);
//   ...                                          // trip the breaker
//   clock.advance(30s);                          // cb sees the same time line
//   assert(cb.state() == outgrow::breaker_state::half_open);  // no call needed
//
// Smallest conforming clock for the `clock_source` concept:
//
//   struct my_clock {
//     using duration = std::chrono::nanoseconds;
//     using time_point = std::chrono::steady_clock::time_point;
//     time_point now() const noexcept;
//   };
//
// Both provided clocks use std::chrono::steady_clock::time_point, so durations and time
// points mix freely between code running on either.
//
// Thread-safety: steady_clock_source is stateless. manual_clock is thread-safe: now(),
// advance() and set() may be called concurrently from any thread on any copy.
// Complexity: now() is one relaxed atomic load (manual) or one clock read (steady).
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <limits>
#include <memory>
#include <stdexcept>
#include <type_traits>

#if defined(__linux__)
#include <time.h>
#endif

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <outgrow/core/deadline.hpp>

namespace outgrow {

/// A monotonic time source: `now()` never goes backwards.
template <class C>
concept clock_source = std::copy_constructible<C> && requires(const C& c) {
  typename C::duration;
  typename C::time_point;
  { c.now() } -> std::same_as<typename C::time_point>;
};

/// The production clock: std::chrono::steady_clock.
struct steady_clock_source {
  using duration = std::chrono::steady_clock::duration;
  using time_point = std::chrono::steady_clock::time_point;
  [[nodiscard]] time_point now() const noexcept { return std::chrono::steady_clock::now(); }
};

/// A cheaper, coarser steady clock: CLOCK_MONOTONIC_COARSE on Linux (about 5 ns
/// instead of about 25 ns for steady_clock::now() on our test machine; resolution one
/// scheduler tick, 1-4 ms), std::chrono::steady_clock elsewhere. Same epoch and
/// time_point type as steady_clock_source, so the two mix. Use it where a hot path
/// must read the time on every call and millisecond precision is enough (a circuit
/// breaker deciding whether 30 s have passed).
struct coarse_steady_clock {
  using duration = std::chrono::steady_clock::duration;
  using time_point = std::chrono::steady_clock::time_point;
  [[nodiscard]] time_point now() const noexcept {
#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return time_point{std::chrono::duration_cast<duration>(
        std::chrono::seconds{ts.tv_sec} + std::chrono::nanoseconds{ts.tv_nsec})};
#else
    return std::chrono::steady_clock::now();
#endif
  }
};

/// A clock that moves only when told. Copies share one time line (a shared atomic), so
/// the copy given to a primitive sees every advance() made through any other copy.
class manual_clock {
 public:
  using duration = std::chrono::steady_clock::duration;
  using time_point = std::chrono::steady_clock::time_point;

  /// Starts at the zero time_point. (Not explicit, so `Clock clock = {}` defaults work.)
  manual_clock() : manual_clock(time_point{}) {}
  /// Starts at `start`.
  explicit manual_clock(time_point start)
      : now_(std::make_shared<std::atomic<duration::rep>>(
            start.time_since_epoch().count())) {}

  [[nodiscard]] time_point now() const noexcept {
    return time_point{duration{now_->load(std::memory_order_acquire)}};
  }

  /// Moves time forward by `d`. Throws std::invalid_argument if d is negative
  /// (a steady clock never goes back). Saturates: time stops at time_point::max()
  /// instead of overflowing (advance(hours::max()) is "the far future", and further
  /// advances leave it there).
  void advance(duration d) { advance_saturating(d); }

  /// Convenience overload for any std::chrono duration (e.g. 30s, 250ms); converted
  /// truncating toward zero, saturating as above (hours::max() does not fit in
  /// nanoseconds: it moves time to time_point::max()).
  template <class Rep, class Period>
  void advance(std::chrono::duration<Rep, Period> d) {
    advance_saturating(d);
  }

  /// Jumps to `t`. Throws std::invalid_argument if t is earlier than now(). (No
  /// arithmetic: any t, up to time_point::max(), is stored as given.)
  void set(time_point t) {
    auto current = now_->load(std::memory_order_acquire);
    const auto target = t.time_since_epoch().count();
    do {
      if (target < current) {
        throw std::invalid_argument(
            fmt::format("manual_clock: set(t) must be >= now() ({} since epoch), got {}",
                        duration{current}, duration{target}));
      }
    } while (!now_->compare_exchange_weak(current, target, std::memory_order_acq_rel));
  }

  /// Time elapsed since the zero time_point; handy in test messages.
  [[nodiscard]] duration elapsed() const noexcept { return now().time_since_epoch(); }

 private:
  template <class Rep, class Period>
  void advance_saturating(std::chrono::duration<Rep, Period> d) {
    if (!(d >= std::chrono::duration<Rep, Period>::zero())) {  // NaN too
      throw std::invalid_argument(
          fmt::format("manual_clock: advance(d) must be >= 0, got {}", d));
    }
    if constexpr (!std::is_integral_v<Rep>) {  // e.g. duration<double>: clamp, then ticks
      const long double ticks =
          std::chrono::duration<long double, duration::period>(d).count();
      const auto most = static_cast<long double>(std::numeric_limits<duration::rep>::max());
      advance_saturating(duration{ticks >= most ? std::numeric_limits<duration::rep>::max()
                                                : static_cast<duration::rep>(ticks)});
    } else {
      auto current = now_->load(std::memory_order_acquire);
      duration::rep next = 0;
      do {
        next = saturating_add(time_point{duration{current}}, d).time_since_epoch().count();
      } while (!now_->compare_exchange_weak(current, next, std::memory_order_acq_rel));
    }
  }

  std::shared_ptr<std::atomic<duration::rep>> now_;
};

static_assert(clock_source<steady_clock_source>);
static_assert(clock_source<coarse_steady_clock>);
static_assert(clock_source<manual_clock>);

}  // namespace outgrow
