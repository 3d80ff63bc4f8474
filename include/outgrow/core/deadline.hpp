// outgrow/core/deadline.hpp — deadlines that saturate instead of overflowing.
//
// `now + timeout` is signed-integer arithmetic on the clock's tick count: with a
// user-supplied duration near `nanoseconds::max()` (or `hours::max()`, which does not
// even fit in nanoseconds) it overflows — undefined behaviour, in practice a deadline
// in the past, so a "wait forever" times out at once. Every primitive that computes a
// deadline from a configured duration uses saturating_add instead: the result is
// clamped to the time point's range, so a huge duration means "never" and a hugely
// negative one means "long ago".
//
//   using namespace std::chrono;
//   const auto deadline =
//       outgrow::saturating_add(steady_clock::now(), config.block_timeout);
//   cv.wait_until(lock, deadline, ready);          // hours::max(): waits "forever"
//
//   outgrow::saturating_add(steady_clock::time_point::max() - 1ns, 1h)
//       == steady_clock::time_point::max();         // clamped, no overflow
//
// Precisely: the result is t + d with d converted to the time point's duration
// truncating toward zero (as std::chrono::duration_cast), computed exactly, then
// clamped to [TimePoint::min(), TimePoint::max()]. Any period (hours onto a
// nanosecond time point, nanoseconds onto a second one), negative durations, and
// durations beyond the time point's range are handled; no intermediate step overflows.
// Both tick counts must be integers of at most 64 bits (every std clock's are). (On a
// compiler without __int128 the sum is computed in long double: it still never
// overflows, but may be off by a rounding step for counts beyond 2^53.)
//
// Thread-safety: pure functions. Complexity: O(1), a few integer operations.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <ratio>
#include <type_traits>

namespace outgrow {

namespace detail {
#if defined(__SIZEOF_INT128__)
__extension__ typedef __int128 deadline_wide_int;
#endif
}  // namespace detail

/// t + d, clamped to [TimePoint::min(), TimePoint::max()] instead of overflowing (see
/// the header). d is converted to TimePoint's unit truncating toward zero.
template <class TimePoint, class Rep, class Period>
requires std::is_integral_v<Rep> && std::is_integral_v<typename TimePoint::rep> &&
         (sizeof(Rep) <= 8) && (sizeof(typename TimePoint::rep) <= 8)
[[nodiscard]] constexpr TimePoint
    saturating_add(TimePoint t, std::chrono::duration<Rep, Period> d) noexcept {
  using to_duration = typename TimePoint::duration;
  using to_rep = typename to_duration::rep;
  // d in TimePoint's unit = d * cf::num / cf::den (num and den coprime, both > 0).
  using cf = std::ratio_divide<Period, typename to_duration::period>;
  constexpr auto lo = std::numeric_limits<to_rep>::min();
  constexpr auto hi = std::numeric_limits<to_rep>::max();
  const to_rep base = t.time_since_epoch().count();
#if defined(__SIZEOF_INT128__)
  // |count| < 2^64 and num < 2^63, so the product fits in 127 bits; adding a 64-bit
  // base cannot reach 2^127 either.
  using wide = detail::deadline_wide_int;
  const wide scaled = static_cast<wide>(d.count()) * static_cast<wide>(cf::num) /
                      static_cast<wide>(cf::den);
  const wide sum = static_cast<wide>(base) + scaled;
  if (sum > static_cast<wide>(hi)) return TimePoint::max();
  if (sum < static_cast<wide>(lo)) return TimePoint::min();
  return TimePoint{to_duration{static_cast<to_rep>(sum)}};
#else
  // No 128-bit integers (MSVC): long double arithmetic, exact for counts below 2^64 on
  // x87 and otherwise within a rounding step of the exact sum; still never overflows.
  const long double scaled = static_cast<long double>(d.count()) *
                             static_cast<long double>(cf::num) /
                             static_cast<long double>(cf::den);
  const long double sum = static_cast<long double>(base) + scaled;
  if (sum >= static_cast<long double>(hi)) return TimePoint::max();
  if (sum <= static_cast<long double>(lo)) return TimePoint::min();
  return TimePoint{to_duration{static_cast<to_rep>(sum)}};
#endif
}

}  // namespace outgrow
