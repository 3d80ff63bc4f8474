// outgrow/autoscale/scaling_policy.hpp — how many replicas a service needs, by policy.
//
// The policies an `outgrow::autoscaler` (autoscale/autoscaler.hpp) consults on every
// evaluation, and the `scaling_policy` concept they satisfy. Each reads the metric
// samples the autoscaler holds and answers with a `recommendation`: a replica count
// and the reason (metric, rule, which limit held it back), "no opinion", or "missing
// data" (autoscale/scaling_context.hpp). This header includes all four; each also has
// its own:
//
//   target_tracking (target_tracking.hpp) — the Kubernetes HPA algorithm
//     (replica_calculator.go, horizontal.go): desired = ceil(current × value / target)
//     per metric, the largest wins; tolerance 0.1; scale-up stabilization 0 s and
//     scale-down 300 s; rate limits per period (+100 % or +4 replicas per 15 s,
//     whichever is more; −100 % per 15 s). Each metric has a kind
//     (metric_target_type) that says which HPA rules apply to replicas that are not
//     ready or sent no sample: `utilization` (CPU, the default) leaves not-ready
//     replicas out and counts them as 0 % on a scale-up; `per_pod` (custom per-replica
//     metrics) counts every replica that reported, starting ones included, as the HPA
//     does for every metric but CPU; `total` and `value` (external / object metrics)
//     ignore readiness. See metric_target_type.
//   step_scaling (step_scaling.hpp) — ordered rules "metric op threshold for duration
//     → ±n" with per-direction cooldowns. Default: the textbook's "CPU > 70 % for
//     5 min → +2; CPU < 30 % for 10 min → −1", cooldowns 300 s up / 600 s down.
//   backlog_scaling (backlog_scaling.hpp) — desired = ceil(backlog / target_per_replica);
//     KEDA's activation rules: with the autoscaler's min_replicas at 0 it wakes from zero
//     when the backlog passes the activation threshold and scales to zero after `cooldown`
//     without activity (at once if it never saw any); with a minimum of 1 or more the
//     activation threshold is ignored and it only scales proportionally (KEDA's
//     activationThreshold / cooldownPeriod / initialCooldownPeriod / minReplicaCount).
//   predictive_scaling (predictive_scaling.hpp) — learns a recurring load shape (daily by
//     default, 5-minute buckets) and provisions for the forecast `startup_time + margin`
//     ahead; falls back to reactive target tracking while the forecast error is large.
//
// The HPA behavior the three proportional policies apply after their metrics
// (stabilization windows, rate limits) is autoscale/scaling_behavior.hpp.
//
//   outgrow::autoscaler<> scaler({.min_replicas = 2, .max_replicas = 50});
//   scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 70.0}}}));
//   scaler.add_policy(outgrow::step_scaling());  // the textbook's rules
//   scaler.add_policy(outgrow::backlog_scaling({.metric = "queue",
//                                               .target_per_replica = 20}));
//
// Huge inputs: every proposal is a replica count in [0, 1e9] (a metric of 1e300 over a
// target of 1e-300 proposes 1e9; values and targets near DBL_MAX never overflow into
// NaN or 0), step adjustments saturate the same way whatever the current count (a
// count already above 1e9 is never raised), and the autoscaler then applies its
// max_replicas (at most 1e6). No signed overflow, no out-of-range conversion.
//
// Your own policy: any movable type with `recommendation recommend(const
// scaling_context&)` satisfies `scaling_policy`. The smallest one:
//
//   struct always_three {
//     outgrow::recommendation recommend(const outgrow::scaling_context&) {
//       return outgrow::recommendation::propose(3, "always three");
//     }
//   };
//
// Optional members the autoscaler uses when present: `std::string_view name() const`
// (shown in decisions) and `std::chrono::nanoseconds history_needed() const` (how much
// replica history the policy reads; checked against autoscaler_config::history).
//
// Thread-safety: a policy is used by one autoscaler, under that autoscaler's lock.
// Complexity: recommend() is O(metrics + samples since the last call + stabilization
// window entries); predictive_scaling also O(buckets in its look-ahead). No allocation
// in steady state (histories live in ring buffers that only grow to their peak size).
// Which policy fits a traffic shape: autoscale/simulator.hpp replays a trace under
// each (examples/autoscaler.cpp compares all four on a Black Friday ramp).
#pragma once

#include <concepts>

#include <outgrow/autoscale/backlog_scaling.hpp>
#include <outgrow/autoscale/predictive_scaling.hpp>
#include <outgrow/autoscale/scaling_behavior.hpp>
#include <outgrow/autoscale/scaling_context.hpp>
#include <outgrow/autoscale/step_scaling.hpp>
#include <outgrow/autoscale/target_tracking.hpp>

namespace outgrow {

/// A replica-count policy the autoscaler can consult (see the header comment).
template <class P>
concept scaling_policy =
    std::move_constructible<P> && requires(P& p, const scaling_context& ctx) {
      { p.recommend(ctx) } -> std::same_as<recommendation>;
    };

static_assert(scaling_policy<target_tracking>);
static_assert(scaling_policy<step_scaling>);
static_assert(scaling_policy<backlog_scaling>);
static_assert(scaling_policy<predictive_scaling>);

}  // namespace outgrow
