// outgrow/core/sleeper.hpp — how a blocking call waits: the Sleeper policy.
//
// A primitive with a blocking form (retry::run, rate_limiter::acquire, ...) waits through
// a Sleeper so that, on a manual_clock, waiting moves simulated time instead of the
// thread sleeping: tests and simulations never sleep.
//
//   outgrow::manual_clock clock;
//   outgrow::clock_advancing_sleeper{}.sleep(clock, 5s);   // clock.now() moved by 5 s
//   outgrow::thread_sleeper{}.sleep(clock, 5ms);           // the thread sleeps 5 ms
//
// `default_sleeper<Clock>` picks clock_advancing_sleeper for clocks that have
// `advance(d)` (manual_clock) and thread_sleeper otherwise. Smallest conforming sleeper:
//
//   struct my_sleeper {
//     template <class Clock> void sleep(Clock&, std::chrono::nanoseconds d);
//   };
//
// Thread-safety: both provided sleepers are stateless. Complexity: O(1) plus the wait.
#pragma once

#include <chrono>
#include <thread>
#include <type_traits>

namespace outgrow {

/// How a blocking call waits `d` on `clock`'s time line: `s.sleep(clock, d)`.
template <class S, class Clock>
concept sleeper =
    requires(S& s, Clock& clock, std::chrono::nanoseconds d) { s.sleep(clock, d); };

/// Sleeps the calling thread.
struct thread_sleeper {
  template <class Clock>
  void sleep(Clock& /*clock*/, std::chrono::nanoseconds d) const {
    std::this_thread::sleep_for(d);
  }
};

/// Moves a manual clock forward instead of sleeping (simulations and tests).
struct clock_advancing_sleeper {
  template <class Clock>
  void sleep(Clock& clock, std::chrono::nanoseconds d) const {
    clock.advance(d);
  }
};

namespace detail {
template <class Clock>
concept advanceable_clock = requires(Clock& c) { c.advance(std::chrono::nanoseconds{}); };
}  // namespace detail

/// clock_advancing_sleeper for clocks that have advance(d) (manual_clock), else
/// thread_sleeper.
template <class Clock>
using default_sleeper = std::conditional_t<detail::advanceable_clock<Clock>,
                                           clock_advancing_sleeper, thread_sleeper>;

}  // namespace outgrow
