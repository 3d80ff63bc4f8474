// outgrow/autoscale/scaling_behavior.hpp — HPA `behavior`: stabilization, rate limits.
//
// What target_tracking, backlog_scaling and predictive_scaling do after their metrics
// proposed a count, as the Kubernetes HPA's `behavior` field does
// (normalizeDesiredReplicasWithBehaviors): per direction, a stabilization window (the
// lowest recent recommendation wins for a scale-up, the highest for a scale-down) and
// rate limits per period ("at most +100 % or +4 replicas per 15 s"). Use it to tune
// how fast a policy follows its metric.
//
//   outgrow::scaling_behavior b;                            // the HPA defaults
//   b.scale_down.stabilization_window = std::chrono::minutes{10};
//   b.scale_up.policies = {{outgrow::rate_limit_type::pods, 2, std::chrono::seconds{60}}};
//   outgrow::target_tracking tt({.metrics = {{"cpu", 70.0}}, .behavior = b});
//
// Trade-offs: a longer scale-down window avoids flapping on noisy metrics at the cost
// of paying for idle replicas longer; tight scale-up rate limits protect a slow backend
// and delay the absorption of a spike.
//
// Ranges (checked by each policy's constructor, config_error naming
// behavior.scale_up... / behavior.scale_down...): windows in [0, 1 h], periods in
// (0, 30 min], values >= 1 (percent at most 1000000).
// Thread-safety: plain values. Complexity: applying the behavior is O(window entries +
// rate limits) per evaluation (detail/hpa_behavior.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

namespace outgrow {

enum class rate_limit_type : std::uint8_t {
  pods,     ///< at most `value` replicas per period
  percent,  ///< at most `value` % of the replicas at the start of the period
};

/// "At most `value` replicas (or %) per `period`" — an HPA scaling policy.
struct rate_limit {
  rate_limit_type type = rate_limit_type::percent;
  int value = 100;
  std::chrono::nanoseconds period = std::chrono::seconds{15};
};

/// How several rate limits combine (HPA selectPolicy).
enum class select_policy : std::uint8_t {
  max,       ///< the limit allowing the largest change (HPA default)
  min,       ///< the limit allowing the smallest change
  disabled,  ///< no scaling in this direction at all
};

/// One direction of HPA `behavior`.
struct scaling_rules {
  /// Recommendations within this window are considered: the lowest for scale-up, the
  /// highest for scale-down. [0, 1 h] (HPA's range).
  std::chrono::nanoseconds stabilization_window{0};
  select_policy select = select_policy::max;
  /// Empty = no rate limit. Periods in (0, 30 min] (HPA's range), values >= 1 (percent:
  /// at most 1000000). With select = disabled they are never read: empty or the
  /// direction's default only (config_error otherwise).
  std::vector<rate_limit> policies{};
};

/// HPA `behavior`, with its defaults: scale up at once by max(+100 %, +4) per 15 s;
/// scale down after a 300 s stabilization window by up to 100 % per 15 s.
struct scaling_behavior {
  scaling_rules scale_up{
      .stabilization_window = std::chrono::seconds{0},
      .select = select_policy::max,
      .policies = {{rate_limit_type::percent, 100, std::chrono::seconds{15}},
                   {rate_limit_type::pods, 4, std::chrono::seconds{15}}}};
  scaling_rules scale_down{
      .stabilization_window = std::chrono::seconds{300},
      .select = select_policy::max,
      .policies = {{rate_limit_type::percent, 100, std::chrono::seconds{15}}}};
};

}  // namespace outgrow
