// outgrow/autoscale/detail/replica_calculator.hpp — the HPA's replica arithmetic.
//
// The pieces of Kubernetes' replica_calculator.go the policies share: a ratio of a
// metric to its target turned into a replica count (saturating at 1e9, never NaN or
// negative), the average-metric rules for not-ready and missing replicas
// (hpa_average), and the total-metric rule with its tolerance band (hpa_total, used
// by target_tracking's `total` metrics, backlog_scaling and predictive_scaling).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace outgrow::detail {

/// The largest replica count a policy proposes: 1e9. Deliberate difference: the HPA
/// caps at MaxInt32 instead; both are far above any max_replicas (the autoscaler's is
/// at most 1e6), and 1e9 leaves room to add to it in an int.
inline constexpr int max_replica_count = 1'000'000'000;

/// ceil(x) as a replica count, clamped to [0, max_replica_count] (NaN counts as 0).
[[nodiscard]] inline int ceil_replicas(double x) noexcept {
  if (!(x > 0.0)) return 0;
  if (x >= max_replica_count) return max_replica_count;
  return static_cast<int>(std::ceil(x));
}

/// current + delta without overflow, for any int current and delta: in [0,
/// max(current, max_replica_count)] — a scale-up never proposes fewer than `current`
/// and never more than the cap (unless current is already above it), a scale-down
/// never goes below 0.
[[nodiscard]] inline int add_replicas(int current, std::int64_t delta) noexcept {
  const std::int64_t hi = std::max<std::int64_t>(current, max_replica_count);
  // |delta| beyond hi + 1 lands on a bound either way; clamped first, the sum fits.
  const std::int64_t sum =
      static_cast<std::int64_t>(current) + std::clamp<std::int64_t>(delta, -hi - 1, hi + 1);
  return static_cast<int>(std::clamp<std::int64_t>(sum, 0, hi));
}

/// value / (target × current) — the ratio of a total to what `current` replicas should
/// carry — also when target × current overflows (a target near DBL_MAX).
[[nodiscard]] inline double total_ratio(double value, double target, int current) noexcept {
  const double capacity = target * current;
  return std::isfinite(capacity) ? value / capacity : value / target / current;
}

struct hpa_proposal {
  int replicas = 0;
  bool within_tolerance = false;  ///< held: the (adjusted) ratio is within tolerance
  double ratio = 0.0;             ///< the usage ratio that decided (after adjustments)
  bool reversed = false;  ///< held: counting not-ready/missing replicas flips direction
};

/// The replicas of an average metric as the HPA's replica calculator groups them.
struct hpa_groups {
  int reporting = 0;      ///< replicas the sample averages over (> 0)
  int missing = 0;        ///< no sample: 0 on a scale-up, `fallback` on a scale-down
  int unready = 0;        ///< left out; 0 on a scale-up
  double fallback = 0.0;  ///< a missing replica's value on a scale-down
};

/// The HPA's replica calculation for an average over replicas (GetResourceReplicas and
/// calcPlainMetricReplicas): without unready or missing replicas, ceil(ratio ×
/// reporting) unless within tolerance; otherwise the ratio is recomputed with missing
/// replicas at 0 (scale-up) or `fallback` (scale-down) and, on a scale-up, unready ones
/// at 0 — and the count held if that lands within tolerance or reverses the direction.
inline hpa_proposal hpa_average(double value, double target, const hpa_groups& g,
                                int current, double tolerance) {
  const auto within = [tolerance](double r) { return std::abs(1.0 - r) <= tolerance; };
  const double ratio = value / target;
  const bool scale_up_with_unready = g.unready > 0 && ratio > 1.0;
  if (!scale_up_with_unready && g.missing == 0) {
    if (within(ratio)) return {current, true, ratio};
    return {ceil_replicas(ratio * g.reporting), false, ratio};
  }
  double sum = value * g.reporting;
  int count = g.reporting;
  if (ratio < 1.0) {
    sum += g.fallback * g.missing;  // missing replicas at the fallback on a scale-down
    count += g.missing;
  } else if (ratio > 1.0) {
    count += g.missing;  // ... and at 0 on a scale-up
  }
  if (scale_up_with_unready) count += g.unready;  // unready replicas at 0 on a scale-up
  double new_ratio = sum / (target * count);
  if (!std::isfinite(sum) || !std::isfinite(target * count)) {
    // Values or targets near DBL_MAX: the same ratio without an infinite intermediate
    // (inf / inf would be NaN and propose 0 replicas).
    const double missing_share = ratio < 1.0 ? g.fallback / target * g.missing : 0.0;
    new_ratio = (ratio * g.reporting + missing_share) / count;
  }
  if (within(new_ratio)) return {current, true, new_ratio};
  if ((ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0)) {
    return {current, false, new_ratio, true};
  }
  const int proposed = ceil_replicas(new_ratio * count);
  if ((new_ratio < 1.0 && proposed > current) || (new_ratio > 1.0 && proposed < current)) {
    return {current, false, new_ratio, true};
  }
  return {proposed, false, new_ratio};
}

/// The HPA's rule for a total over the service (External / Object AverageValue):
/// hold while value / (target × current) is within tolerance, else ceil(value /
/// target); from zero replicas ceil(value / target) without tolerance (ratio 0).
[[nodiscard]] inline hpa_proposal hpa_total(double value, double target, int current,
                                            double tolerance) noexcept {
  if (current <= 0) return {ceil_replicas(value / target), false, 0.0};
  const double ratio = total_ratio(value, target, current);
  if (std::abs(1.0 - ratio) <= tolerance) return {current, true, ratio};
  return {ceil_replicas(value / target), false, ratio};
}

}  // namespace outgrow::detail
