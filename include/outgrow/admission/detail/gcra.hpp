// outgrow/admission/detail/gcra.hpp — the GCRA arithmetic shared by rate_limiter and
// keyed_rate_limiter: time in 1/8 ns ticks from an origin, the emission interval T, and
// one decision (admit n permits at `now` given the theoretical arrival time).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>

namespace outgrow::detail::gcra {

inline constexpr std::int64_t ticks_per_ns = 8;
// Bounds that keep every sum below 2^63: now <= 2^62, slack <= 2^61, capacity < 2^58
// (burst / rate is at most 365 days, checked by the configs).
inline constexpr std::int64_t max_now = std::int64_t{1} << 62;
inline constexpr std::int64_t max_slack = std::int64_t{1} << 61;

/// T = 1 s / rate in ticks, rounded, at least 1.
[[nodiscard]] inline std::int64_t interval_ticks(double rate) noexcept {
  const double t = std::round(1e9 * static_cast<double>(ticks_per_ns) / rate);
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(t));
}

/// d in nanoseconds, saturating at nanoseconds::max().
template <class Rep, class Period>
[[nodiscard]] std::chrono::nanoseconds saturating_ns(
    std::chrono::duration<Rep, Period> d) noexcept {
  using rep = std::chrono::nanoseconds::rep;
  const auto as_long = std::chrono::duration<long double, std::nano>(d).count();
  if (as_long >= static_cast<long double>(std::numeric_limits<rep>::max())) {
    return std::chrono::nanoseconds::max();
  }
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d);
}

[[nodiscard]] inline std::int64_t to_ticks(std::chrono::nanoseconds d) noexcept {
  constexpr std::int64_t most = std::numeric_limits<std::int64_t>::max() / ticks_per_ns;
  return d.count() >= most ? std::numeric_limits<std::int64_t>::max()
                           : d.count() * ticks_per_ns;
}

/// Ticks to nanoseconds, rounded up (waiting the result is always enough).
[[nodiscard]] inline std::chrono::nanoseconds from_ticks(std::int64_t ticks) noexcept {
  return std::chrono::nanoseconds{(ticks + ticks_per_ns - 1) / ticks_per_ns};
}

/// Ticks from `origin` to `now` (0 before it, at most max_now).
template <class TimePoint>
[[nodiscard]] std::int64_t since(TimePoint origin, TimePoint now) noexcept {
  if (now <= origin) return 0;
  return std::min(to_ticks(saturating_ns(now - origin)), max_now);
}

struct decision {
  bool admitted = false;
  std::int64_t next = 0;  ///< the new theoretical arrival time, when admitted
  std::int64_t wait = 0;  ///< admitted: ticks to wait (> 0 only with slack); else: until
                          ///< the request would be admitted
};

/// Admits `cost` ticks of permits at `now` if the bucket (capacity ticks, plus `slack`
/// ticks of waiting allowed) holds them, given theoretical arrival time `tat`.
[[nodiscard]] inline decision decide(std::int64_t tat, std::int64_t now, std::int64_t cost,
                                     std::int64_t capacity, std::int64_t slack) noexcept {
  const std::int64_t start = std::max(tat, now);
  const std::int64_t next = start + cost;  // < 2^63 (see max_now)
  const std::int64_t wait = next - capacity - now;
  if (next - now > capacity + std::min(slack, max_slack)) return {false, next, wait};
  return {true, next, wait};
}

/// Checks a rate and a burst as `who`'s permits_per_second and burst fields.
inline void validate_rate(std::string_view who, double permits_per_second,
                          std::uint64_t burst) {
  require(std::isfinite(permits_per_second) && permits_per_second > 0.0 &&
              permits_per_second <= 1e9,
          who, "permits_per_second", "in (0, 1e9]", permits_per_second);
  require_in_range(who, "burst", burst, std::uint64_t{1}, std::uint64_t{1'000'000'000});
  require(static_cast<double>(burst) / permits_per_second <= 365.0 * 86'400.0, who, "burst",
          fmt::format("at most 365 days of refill at {}/s ({:.0f} permits)",
                      permits_per_second, permits_per_second * 365.0 * 86'400.0),
          burst);
}

}  // namespace outgrow::detail::gcra
