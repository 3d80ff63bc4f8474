// outgrow/autoscale/step_scaling.hpp — "metric op threshold for duration → ±n" rules.
//
// Step (alarm) scaling as cloud autoscaling groups do it: ordered rules, each "metric
// op threshold held for a duration → adjust by n replicas (or n %, or to exactly n)",
// with a cooldown per direction. The default is the textbook's "CPU > 70 % for 5 min
// → +2; CPU < 30 % for 10 min → −1", cooldowns 300 s up / 600 s down. Use it when the
// rules are given (an operations runbook) or the metric is not proportional to load.
//
//   outgrow::autoscaler<> scaler({.min_replicas = 2, .max_replicas = 50});
//   scaler.add_policy(outgrow::step_scaling({.rules = {
//       {"latency_ms", outgrow::comparison::greater, 400.0, std::chrono::minutes{2}, +50,
//        outgrow::adjustment_type::percent_change},
//       {"latency_ms", outgrow::comparison::less, 100.0, std::chrono::minutes{15}, -1}}}));
//
// Trade-offs: predictable and easy to audit, but fixed steps over- or undershoot a
// load that changes by more or less than one step per cooldown (the simulator's Black
// Friday run: step_scaling never catches up with a 10× ramp); target_tracking sizes
// the step from the metric instead.
//
// Thread-safety: used by one autoscaler, under that autoscaler's lock.
// Complexity: recommend() O(rules + samples since the last call); no allocation in
// steady state.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/autoscale/detail/policy_base.hpp>
#include <outgrow/autoscale/detail/replica_calculator.hpp>
#include <outgrow/autoscale/scaling_context.hpp>
#include <outgrow/core/error.hpp>

namespace outgrow {

enum class comparison : std::uint8_t { greater, greater_equal, less, less_equal };

[[nodiscard]] constexpr std::string_view to_string(comparison c) noexcept {
  switch (c) {
    case comparison::greater:
      return ">";
    case comparison::greater_equal:
      return ">=";
    case comparison::less:
      return "<";
    case comparison::less_equal:
      return "<=";
  }
  return "?";
}

/// How a step rule's `adjustment` applies to the current count. The result saturates:
/// it never goes below 0 nor above max(current, 1e9) replicas (then the autoscaler's
/// min/max apply), whatever the current count — no overflow.
enum class adjustment_type : std::uint8_t {
  change_in_capacity,  ///< current + adjustment; non-zero, in [-1e9, 1e9]
  /// current + adjustment % of current, truncated, at least 1 either way; non-zero, in
  /// [-100, 10000] (−100 % = to zero, +10000 % = ×101)
  percent_change,
  exact_capacity,  ///< adjustment itself; in [0, 1e6]
};

/// "metric op threshold for for_at_least → adjustment".
struct step_rule {
  std::string metric;
  comparison op = comparison::greater;
  double threshold = 0.0;
  std::chrono::nanoseconds for_at_least{0};  ///< [0, 7 days]
  int adjustment = 0;                        ///< range by `type` (see adjustment_type)
  adjustment_type type = adjustment_type::change_in_capacity;
};

struct step_scaling_config {
  /// Checked in order; the first rule that holds decides. Default: the textbook's
  /// "CPU > 70 % for 5 min → +2; CPU < 30 % for 10 min → −1".
  std::vector<step_rule> rules = {
      {"cpu", comparison::greater, 70.0, std::chrono::minutes{5}, +2,
       adjustment_type::change_in_capacity},
      {"cpu", comparison::less, 30.0, std::chrono::minutes{10}, -1,
       adjustment_type::change_in_capacity}};
  /// No scale-up within this time of the last scale-up: 300 s (the textbook's).
  /// [0, 24 h]; only the default when no rule scales up (it is never read then).
  std::chrono::nanoseconds scale_up_cooldown = std::chrono::seconds{300};
  /// No scale-down within this time of the last scaling in either direction: 600 s
  /// (the textbook's; scale up fast, down slowly). [0, 24 h]; only the default when no
  /// rule scales down (an exact_capacity rule may go either way).
  std::chrono::nanoseconds scale_down_cooldown = std::chrono::seconds{600};
};

/// Step (alarm) scaling. A rule holds when every sample of its metric for at least
/// `for_at_least` satisfied the comparison: the run starts at the first satisfying
/// sample, a failing sample or a gap longer than the autoscaler's stale_after between
/// samples restarts it, and the newest sample must be fresh. The first holding rule
/// decides (put bigger steps first); while its direction cools down it holds the
/// current count (limited_by = cooldown). A rule keeps holding after it fired (an
/// alarm stays in alarm), so it fires again once the cooldown is over. No rule
/// holding → no opinion; a rule metric without fresh samples → missing data.
class step_scaling {
 public:
  /// Throws: config_error if rules is empty or a rule is out of range (empty metric,
  /// threshold not finite, for_at_least outside [0, 7 days], adjustment outside its
  /// type's range), a cooldown is outside [0, 24 h], or a cooldown no rule can trigger
  /// differs from its default.
  explicit step_scaling(step_scaling_config config = {})
      : config_(validated(std::move(config))), runs_(config_.rules.size()) {
    for (const step_rule& r : config_.rules) {
      labels_.emplace_back(fmt::format(
          "{} {} {:.4g} for {} -> {}{}{}", r.metric, to_string(r.op), r.threshold,
          detail::describe_duration(r.for_at_least), adjustment_prefix(r), r.adjustment,
          r.type == adjustment_type::percent_change ? "%" : ""));
    }
  }

  [[nodiscard]] std::string_view name() const noexcept { return "step_scaling"; }
  [[nodiscard]] const step_scaling_config& config() const noexcept { return config_; }
  /// The rule as text, e.g. "cpu > 70 for 5min -> +2".
  /// Throws: std::out_of_range if i >= config().rules.size().
  [[nodiscard]] std::string_view rule_text(std::size_t i) const { return labels_.at(i); }

  recommendation recommend(const scaling_context& ctx) {
    const step_rule* missing_rule = nullptr;
    for (std::size_t i = 0; i < config_.rules.size(); ++i) {
      const step_rule& rule = config_.rules[i];
      run& state = runs_[i];
      if (const metric_series* s = ctx.series(rule.metric)) {
        s->for_each_after(state.last_seen, [&](const metric_sample& sample) {
          if (holds(rule, sample.value)) {
            if (!state.active || sample.at - state.last_seen > ctx.stale_after) {
              state.since = sample.at;
            }
            state.active = true;
          } else {
            state.active = false;
          }
          state.last_seen = sample.at;
        });
      }
      if (ctx.fresh(rule.metric) == nullptr) {
        if (missing_rule == nullptr) missing_rule = &rule;
        continue;
      }
      if (!state.active || ctx.now - state.since < rule.for_at_least) continue;
      return fire(ctx, i);
    }
    if (missing_rule != nullptr) return detail::no_fresh_sample(missing_rule->metric);
    return recommendation::none("no rule holds");
  }

 private:
  struct run {
    bool active = false;
    scaling_time_point since{};
    scaling_time_point last_seen{scaling_time_point::min()};
  };

  static std::string_view adjustment_prefix(const step_rule& r) {
    return r.type != adjustment_type::exact_capacity && r.adjustment >= 0 ? "+" : "";
  }

  static bool holds(const step_rule& r, double v) noexcept {
    switch (r.op) {
      case comparison::greater:
        return v > r.threshold;
      case comparison::greater_equal:
        return v >= r.threshold;
      case comparison::less:
        return v < r.threshold;
      case comparison::less_equal:
        return v <= r.threshold;
    }
    return false;
  }

  /// The rule's count from `current`, saturating (detail::add_replicas): in [0,
  /// max(current, 1e9)], no overflow whatever the current count.
  static int apply(const step_rule& r, int current) noexcept {
    switch (r.type) {
      case adjustment_type::change_in_capacity:
        return detail::add_replicas(current, r.adjustment);
      case adjustment_type::percent_change: {
        // |delta| <= 2^31 × 100 (adjustment validated), clamped to ±2^32 before the
        // conversion anyway, so the conversion is always in range.
        const double delta = static_cast<double>(current) * (r.adjustment / 100.0);
        auto step = static_cast<std::int64_t>(
            std::clamp(std::trunc(delta), -4294967296.0, 4294967296.0));
        if (step == 0) step = r.adjustment > 0 ? 1 : -1;
        return detail::add_replicas(current, step);
      }
      case adjustment_type::exact_capacity:
        return r.adjustment;
    }
    return current;
  }

  recommendation fire(const scaling_context& ctx, std::size_t i) const {
    const step_rule& rule = config_.rules[i];
    const metric_sample* s = ctx.fresh(rule.metric);
    recommendation r;
    r.kind = recommendation_kind::replicas;
    r.metric = rule.metric;
    r.value = s->value;
    r.target = rule.threshold;
    const int target = apply(rule, ctx.current);
    std::optional<scaling_time_point> until;
    if (target > ctx.current) {
      if (auto up = ctx.last_scale_up(); up && ctx.now - *up < config_.scale_up_cooldown) {
        until = *up + config_.scale_up_cooldown;
      }
    } else if (target < ctx.current) {
      std::optional<scaling_time_point> last = ctx.last_scale_up();
      if (auto down = ctx.last_scale_down(); down && (!last || *down > *last)) last = down;
      if (last && ctx.now - *last < config_.scale_down_cooldown) {
        until = *last + config_.scale_down_cooldown;
      }
    }
    if (until) {
      r.replicas = ctx.current;
      r.limited_by = scale_limit::cooldown;
      r.reason.format("{} ({}={:.4g}): cooling down for {}s more", labels_[i], rule.metric,
                      s->value,
                      std::chrono::ceil<std::chrono::seconds>(*until - ctx.now).count());
    } else {
      r.replicas = target;
      r.reason.format("{} ({}={:.4g})", labels_[i], rule.metric, s->value);
    }
    return r;
  }

  static step_scaling_config validated(step_scaling_config c) {
    constexpr std::string_view me = "step_scaling";
    constexpr int max_change = detail::max_replica_count;
    constexpr int max_percent = 10'000;
    require(!c.rules.empty(), me, "rules", "non-empty", "an empty list");
    for (const step_rule& r : c.rules) {
      require(!r.metric.empty(), me, "rules.metric", "a non-empty name", "\"\"");
      require(std::isfinite(r.threshold), me, "rules.threshold", "finite", r.threshold);
      require_in_range(me, "rules.for_at_least", r.for_at_least,
                       std::chrono::nanoseconds{0}, std::chrono::hours{24 * 7});
      switch (r.type) {
        case adjustment_type::exact_capacity:
          require_in_range(me, "rules.adjustment (exact)", r.adjustment, 0, 1'000'000);
          break;
        case adjustment_type::change_in_capacity:
          require(r.adjustment != 0 && r.adjustment >= -max_change &&
                      r.adjustment <= max_change,
                  me, "rules.adjustment",
                  "non-zero and in [-1000000000, 1000000000] (replicas)", r.adjustment);
          break;
        case adjustment_type::percent_change:
          require(r.adjustment != 0 && r.adjustment >= -100 && r.adjustment <= max_percent,
                  me, "rules.adjustment (percent)", "non-zero and in [-100, 10000]",
                  r.adjustment);
          break;
      }
    }
    require_in_range(me, "scale_up_cooldown", c.scale_up_cooldown,
                     std::chrono::nanoseconds{0}, std::chrono::hours{24});
    require_in_range(me, "scale_down_cooldown", c.scale_down_cooldown,
                     std::chrono::nanoseconds{0}, std::chrono::hours{24});
    // A cooldown no rule can trigger is never read: only its default.
    const auto can = [&](int sign) {
      return std::any_of(c.rules.begin(), c.rules.end(), [sign](const step_rule& r) {
        return r.type == adjustment_type::exact_capacity || r.adjustment * sign > 0;
      });
    };
    const step_scaling_config defaults;
    require(can(+1) || c.scale_up_cooldown == defaults.scale_up_cooldown, me,
            "scale_up_cooldown", "the default 300s when no rule scales up (never read)",
            c.scale_up_cooldown);
    require(can(-1) || c.scale_down_cooldown == defaults.scale_down_cooldown, me,
            "scale_down_cooldown", "the default 600s when no rule scales down (never read)",
            c.scale_down_cooldown);
    return c;
  }

  step_scaling_config config_;
  std::vector<run> runs_;
  std::vector<std::string> labels_;
};

}  // namespace outgrow
