// outgrow/autoscale/backlog_scaling.hpp — queue backlog per replica, with scale to zero.
//
// desired = ceil(backlog / target_per_replica), KEDA's rules for activation: with the
// autoscaler's min_replicas at 0 it wakes from zero when the backlog passes the
// activation threshold and scales to zero after `cooldown` without activity (at once
// if it never saw any); with a minimum of 1 or more the activation threshold is
// ignored and it only scales proportionally (KEDA's activationThreshold /
// cooldownPeriod / initialCooldownPeriod / minReplicaCount). Use it for workers that
// drain a queue (outgrow::work_queue, a Redis stream, SQS).
//
//   outgrow::autoscaler<> scaler({.min_replicas = 0, .max_replicas = 40});
//   scaler.add_policy(outgrow::backlog_scaling({.metric = "jobs",
//                                               .target_per_replica = 20,
//                                               .activation_threshold = 5}));
//   scaler.observe("jobs", static_cast<double>(queue.size()));
//
// Trade-offs: the backlog tracks work directly (no CPU proxy) and allows scale to
// zero, at the price of a cold start on the first job after idling; the proportional
// part goes through the HPA behavior (autoscale/scaling_behavior.hpp), so waking from
// zero is rate-limited like any scale-up.
//
// Thread-safety: used by one autoscaler, under that autoscaler's lock.
// Complexity: recommend() O(stabilization window entries + rate limits); no allocation
// in steady state.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <outgrow/autoscale/detail/hpa_behavior.hpp>
#include <outgrow/autoscale/detail/policy_base.hpp>
#include <outgrow/autoscale/detail/replica_calculator.hpp>
#include <outgrow/autoscale/scaling_behavior.hpp>
#include <outgrow/autoscale/scaling_context.hpp>
#include <outgrow/core/error.hpp>

namespace outgrow {

struct backlog_scaling_config {
  /// A total for the service: messages waiting, jobs in flight.
  std::string metric = "backlog";
  /// Backlog one replica should carry: 5, as KEDA's aws-sqs-queue scaler. > 0
  double target_per_replica = 5.0;
  /// Active while backlog > this (strictly): 0 as KEDA's activationThreshold default.
  /// Only consulted while the autoscaler's min_replicas is 0 — with a minimum of 1 or
  /// more KEDA ignores activation and so does this policy. >= 0
  double activation_threshold = 0.0;
  /// Inactive this long after the last activity → scale to zero: 300 s as KEDA's
  /// cooldownPeriod. Like KEDA's it only runs from a seen activity: a service never
  /// seen active is scaled to zero at once (after initial_cooldown). [0, 24 h]
  std::chrono::nanoseconds cooldown = std::chrono::seconds{300};
  /// While never active: no scale to zero within this time of the policy's first
  /// evaluation — 0 s as KEDA's initialCooldownPeriod (counted from the ScaledObject's
  /// creation; like KEDA's scale executor, only until the first activity). Set it to
  /// `cooldown` to treat a fresh start as activity. [0, 24 h]
  std::chrono::nanoseconds initial_cooldown{0};
  /// As target_tracking (KEDA hands the non-zero range to the HPA).
  double tolerance = 0.1;
  scaling_behavior behavior{};
};

/// KEDA-style backlog scaling (KEDA docs: "Activating and Scaling thresholds",
/// ScaledObject cooldownPeriod / initialCooldownPeriod / minReplicaCount). Proportional
/// part, the HPA's External AverageValue: desired = ceil(backlog / target_per_replica),
/// at least 1, held while backlog / (target × current) is within tolerance, then the
/// HPA stabilization and rate limits. Activation (only with the autoscaler's
/// min_replicas = 0, as KEDA scales to zero only when minReplicaCount is 0 and ignores
/// the activation value otherwise): active while backlog > activation_threshold;
/// inactive at zero → stays at zero (limited_by = activation); inactive for `cooldown`
/// since the last activity (never active: `initial_cooldown` since the first
/// evaluation) → 0, bypassing the HPA behavior as KEDA's own scale-to-zero does;
/// inactive otherwise → the proportional count (KEDA's HPA keeps at least 1). The
/// activation decision wins over the proportional one: below the threshold it scales
/// to zero even if the backlog would ask for more. Deliberate differences: waking from
/// zero goes straight to the proportional count (through the scale-up rate limit, so
/// at most +4 from zero by default), where KEDA activates to 1 and leaves the rest to
/// the HPA's next sync; KEDA's idleReplicaCount and fallback are not supported.
class backlog_scaling : public detail::behavior_policy<backlog_scaling_config> {
 public:
  /// Throws: config_error if metric is empty, target_per_replica is not finite and > 0,
  /// activation_threshold is not finite and >= 0, a cooldown is outside [0, 24 h],
  /// tolerance is outside [0, 10] or the behavior is out of range.
  explicit backlog_scaling(backlog_scaling_config config = {})
      : behavior_policy(validated(std::move(config))) {}

  [[nodiscard]] std::string_view name() const noexcept { return "backlog_scaling"; }

  recommendation recommend(const scaling_context& ctx) {
    const metric_sample* s = ctx.fresh(config_.metric);
    if (s == nullptr) return detail::no_fresh_sample(config_.metric);
    if (!first_seen_) first_seen_ = ctx.now;
    const bool above = s->value > config_.activation_threshold;
    if (above) last_active_ = ctx.now;

    recommendation r;
    r.kind = recommendation_kind::replicas;
    r.metric = config_.metric;
    r.value = s->value;
    r.target = config_.target_per_replica;
    // KEDA: activation (and scaling to zero) only with a minimum of 0 replicas.
    if (ctx.min_replicas <= 0 && !above) {
      if (ctx.current <= 0) {
        r.replicas = 0;
        r.limited_by = scale_limit::activation;
        r.reason.format("{} {:.4g} <= activation {:.4g}: stay at zero", config_.metric,
                        s->value, config_.activation_threshold);
        return r;
      }
      // KEDA's scale executor: cooldown from the last activity; never active → the
      // initial cooldown from the first evaluation (its ScaledObject's creation).
      const bool idle_long_enough =
          last_active_ ? ctx.now - *last_active_ >= config_.cooldown
                       : ctx.now - *first_seen_ >= config_.initial_cooldown;
      if (idle_long_enough) {
        r.replicas = 0;
        if (last_active_) {
          r.reason.format("{} {:.4g} <= activation {:.4g} for {}: scale to zero",
                          config_.metric, s->value, config_.activation_threshold,
                          detail::describe_duration(config_.cooldown));
        } else {
          r.reason.format("{} {:.4g} <= activation {:.4g}, never active: scale to zero",
                          config_.metric, s->value, config_.activation_threshold);
        }
        return r;
      }
    }
    const detail::hpa_proposal proportional = detail::hpa_total(
        s->value, config_.target_per_replica, ctx.current, config_.tolerance);
    const bool within = proportional.within_tolerance;
    const int raw = std::max(proportional.replicas, 1);
    auto out = behavior_.apply(ctx, raw);
    if (ctx.current == 0) out.replicas = std::max(out.replicas, 1);  // activation 0 → 1
    r.replicas = out.replicas;
    r.limited_by = out.limited_by == scale_limit::none && within ? scale_limit::tolerance
                                                                 : out.limited_by;
    r.reason.format("{} {:.4g} / {:.4g} per replica -> {}", config_.metric, s->value,
                    config_.target_per_replica, raw);
    return r;
  }

 private:
  static backlog_scaling_config validated(backlog_scaling_config c) {
    constexpr std::string_view me = "backlog_scaling";
    require(!c.metric.empty(), me, "metric", "a non-empty name", "\"\"");
    require(std::isfinite(c.target_per_replica) && c.target_per_replica > 0.0, me,
            "target_per_replica", "> 0 and finite", c.target_per_replica);
    require(std::isfinite(c.activation_threshold) && c.activation_threshold >= 0.0, me,
            "activation_threshold", ">= 0 and finite", c.activation_threshold);
    require_in_range(me, "cooldown", c.cooldown, std::chrono::nanoseconds{0},
                     std::chrono::hours{24});
    require_in_range(me, "initial_cooldown", c.initial_cooldown,
                     std::chrono::nanoseconds{0}, std::chrono::hours{24});
    detail::validate_reactive(me, c.tolerance, c.behavior);
    return c;
  }

  std::optional<scaling_time_point> first_seen_;
  std::optional<scaling_time_point> last_active_;
};

}  // namespace outgrow
