// outgrow/autoscale/detail/hpa_behavior.hpp — the HPA's stabilization and rate limits.
//
// The engine behind scaling_behavior (autoscale/scaling_behavior.hpp): keeps the recent
// raw recommendations of one policy, applies the stabilization windows and the rate
// limits of the direction taken (Kubernetes normalizeDesiredReplicasWithBehaviors),
// and validates a behavior with config_error messages naming "behavior.scale_up..." /
// "behavior.scale_down...". Shared by target_tracking, backlog_scaling and
// predictive_scaling.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/autoscale/detail/growing_ring.hpp>
#include <outgrow/autoscale/scaling_behavior.hpp>
#include <outgrow/autoscale/scaling_context.hpp>
#include <outgrow/core/error.hpp>

namespace outgrow::detail {

inline bool same_policies(const std::vector<rate_limit>& a,
                          const std::vector<rate_limit>& b) noexcept {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const rate_limit& x, const rate_limit& y) {
                      return x.type == y.type && x.value == y.value && x.period == y.period;
                    });
}

/// `defaults`: the direction's default rules (scaling_behavior{}.scale_up / scale_down).
inline void validate_rules(std::string_view primitive, std::string_view prefix,
                           const scaling_rules& r, const scaling_rules& defaults) {
  using namespace std::chrono;
  require_in_range(primitive, fmt::format("{}.stabilization_window", prefix),
                   r.stabilization_window, nanoseconds{0}, hours{1});
  // select = disabled never reads the rate limits: only their default (or none).
  require(r.select != select_policy::disabled || r.policies.empty() ||
              same_policies(r.policies, defaults.policies),
          primitive, fmt::format("{}.policies", prefix),
          "empty or the default while select is disabled (never read)",
          fmt::format("{} rate limits", r.policies.size()));
  for (const rate_limit& p : r.policies) {
    require_at_least(primitive, fmt::format("{}.policies.value", prefix), p.value, 1);
    if (p.type == rate_limit_type::percent) {
      require_in_range(primitive, fmt::format("{}.policies.value (percent)", prefix),
                       p.value, 1, 1'000'000);
    }
    require_in_range(primitive, fmt::format("{}.policies.period", prefix), p.period,
                     nanoseconds{1}, minutes{30});
  }
}

inline std::chrono::nanoseconds longest_period(const scaling_behavior& b) {
  std::chrono::nanoseconds longest{0};
  for (const rate_limit& p : b.scale_up.policies) longest = std::max(longest, p.period);
  for (const rate_limit& p : b.scale_down.policies) longest = std::max(longest, p.period);
  return longest;
}

/// The HPA normalization after the metric proposal: stabilization over recent raw
/// recommendations, then the rate limits of the direction taken.
class hpa_behavior {
 public:
  explicit hpa_behavior(scaling_behavior b) : behavior_(std::move(b)) {}

  struct outcome {
    int replicas;
    scale_limit limited_by;
  };

  /// `raw` = the metrics' proposal; returns the count after stabilization and rate
  /// limits (not yet clamped to min/max replicas) and records `raw`.
  outcome apply(const scaling_context& ctx, int raw) {
    if (!initialized_) {
      // As the HPA does on first sight: the current count counts as a recent
      // recommendation, so nothing scales down within the first window.
      history_.push_back({ctx.now, ctx.current});
      initialized_ = true;
    }
    const auto up_cut = ctx.now - behavior_.scale_up.stabilization_window;
    const auto down_cut = ctx.now - behavior_.scale_down.stabilization_window;
    const auto keep_cut = ctx.now - std::max(behavior_.scale_up.stabilization_window,
                                             behavior_.scale_down.stabilization_window);
    while (!history_.empty() && history_.front().at <= keep_cut) history_.pop_front();

    int up_rec = raw;
    int down_rec = raw;
    for (std::size_t i = 0; i < history_.size(); ++i) {
      const entry& e = history_[i];
      if (e.at > up_cut) up_rec = std::min(up_rec, e.replicas);
      if (e.at > down_cut) down_rec = std::max(down_rec, e.replicas);
    }
    history_.push_back({ctx.now, raw});

    int stabilized = ctx.current;
    if (stabilized < up_rec) stabilized = up_rec;
    if (stabilized > down_rec) stabilized = down_rec;
    scale_limit limit = stabilized != raw ? scale_limit::stabilization : scale_limit::none;

    int result = stabilized;
    if (stabilized > ctx.current) {
      const int up_limit = std::max(scale_up_limit(ctx), ctx.current);
      if (result > up_limit) {
        result = up_limit;
        limit = scale_limit::scale_up_rate;
      }
    } else if (stabilized < ctx.current) {
      const int down_limit = std::min(scale_down_limit(ctx), ctx.current);
      if (result < down_limit) {
        result = down_limit;
        limit = scale_limit::scale_down_rate;
      }
    }
    return {result, limit};
  }

  [[nodiscard]] const scaling_behavior& behavior() const noexcept { return behavior_; }

 private:
  struct entry {
    scaling_time_point at{};
    int replicas = 0;
  };

  int scale_up_limit(const scaling_context& ctx) const {
    const scaling_rules& r = behavior_.scale_up;
    if (r.select == select_policy::disabled) return ctx.current;
    if (r.policies.empty()) return std::numeric_limits<int>::max();
    const bool pick_max = r.select == select_policy::max;
    int best = pick_max ? std::numeric_limits<int>::min() : std::numeric_limits<int>::max();
    for (const rate_limit& p : r.policies) {
      // Replicas at the start of the period: net changes since then undone.
      const int start = ctx.replicas_at(ctx.now - p.period);
      const double allowed =
          p.type == rate_limit_type::pods
              ? static_cast<double>(start) + p.value
              : std::ceil(static_cast<double>(start) * (1.0 + p.value / 100.0));
      const int proposed = static_cast<int>(std::min(allowed, 1e9));
      best = pick_max ? std::max(best, proposed) : std::min(best, proposed);
    }
    return best;
  }

  int scale_down_limit(const scaling_context& ctx) const {
    const scaling_rules& r = behavior_.scale_down;
    if (r.select == select_policy::disabled) return ctx.current;
    if (r.policies.empty()) return std::numeric_limits<int>::min();
    const bool pick_max_change = r.select == select_policy::max;
    int best =
        pick_max_change ? std::numeric_limits<int>::max() : std::numeric_limits<int>::min();
    for (const rate_limit& p : r.policies) {
      const int start = ctx.replicas_at(ctx.now - p.period);
      const double allowed =
          p.type == rate_limit_type::pods
              ? static_cast<double>(start) - p.value
              : std::trunc(static_cast<double>(start) * (1.0 - p.value / 100.0));
      const int proposed = static_cast<int>(std::max(allowed, -1e9));
      best = pick_max_change ? std::min(best, proposed) : std::max(best, proposed);
    }
    return best;
  }

  scaling_behavior behavior_;
  growing_ring<entry> history_;
  bool initialized_ = false;
};

/// Validates the reactive part every behavior-driven policy shares: `tolerance` in
/// [0, 10], then both directions of `behavior` against their defaults.
inline void validate_reactive(std::string_view primitive, double tolerance,
                              const scaling_behavior& behavior) {
  require_in_range(primitive, "tolerance", tolerance, 0.0, 10.0);
  validate_rules(primitive, "behavior.scale_up", behavior.scale_up,
                 scaling_behavior{}.scale_up);
  validate_rules(primitive, "behavior.scale_down", behavior.scale_down,
                 scaling_behavior{}.scale_down);
}

}  // namespace outgrow::detail
