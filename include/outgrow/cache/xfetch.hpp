// outgrow/cache/xfetch.hpp — probabilistic early expiration (XFetch).
//
// What: the XFetch rule of Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic
// Cache Stampede Prevention" (VLDB 2015): a reader reloads a value early when
//
//   now - δ·β·ln(u) >= expiry,   u uniform in (0, 1],
//
// where δ is the time a reload takes and β >= 0 tunes how early (1 = the paper's
// recommendation, > 1 earlier, 0 = off). Popular keys are then reloaded by one reader
// shortly before they expire instead of by every reader at once after.
// When: tiered_cache applies it when tiered_cache_config::xfetch_beta > 0; call the
// function directly to use the rule with another cache.
//
//   bool early = outgrow::xfetch_should_recompute(now, entry.expires, 40ms, 1.0, u);
//
// Trade-offs: a reload happens a little before it is needed (more store loads than
// exact expiry) in exchange for no stampede at expiry and no coordination.
// Thread-safety: a pure function. Complexity: O(1), one std::log.
// Measured cost: one log per read of an entry with an expiry when XFetch is on.
#pragma once

#include <chrono>
#include <cmath>

namespace outgrow {

/// XFetch: reload early when now - δ·β·ln(u) >= expiry, u uniform in (0, 1]. False
/// when beta <= 0, delta <= 0 or u <= 0.
template <class TimePoint>
[[nodiscard]] bool xfetch_should_recompute(TimePoint now, TimePoint expiry,
                                           std::chrono::nanoseconds delta, double beta,
                                           double u) noexcept {
  if (beta <= 0.0 || delta <= std::chrono::nanoseconds::zero() || u <= 0.0) return false;
  const double gap = static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(expiry - now).count());
  return -static_cast<double>(delta.count()) * beta * std::log(u) >= gap;
}

}  // namespace outgrow
