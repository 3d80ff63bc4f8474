// outgrow/autoscale/target_tracking.hpp — the Kubernetes HPA algorithm as a policy.
//
// desired = ceil(current × value / target) per metric, the largest wins (Kubernetes
// replica_calculator.go, horizontal.go); tolerance 0.1; then the HPA behavior
// (autoscale/scaling_behavior.hpp): scale-up stabilization 0 s and scale-down 300 s,
// rate limits per period (+100 % or +4 replicas per 15 s, whichever is more; −100 %
// per 15 s). Each metric has a kind (metric_target_type) that says which HPA rules
// apply to replicas that are not ready or sent no sample: `utilization` (CPU, the
// default) leaves not-ready replicas out and counts them as 0 % on a scale-up;
// `per_pod` (custom per-replica metrics) counts every replica that reported, starting
// ones included, as the HPA does for every metric but CPU; `total` and `value`
// (external / object metrics) ignore readiness. Use it when a metric grows in
// proportion to the load a replica carries (CPU, requests/s per replica).
//
//   outgrow::autoscaler<> scaler({.min_replicas = 2, .max_replicas = 50});
//   scaler.add_policy(outgrow::target_tracking(
//       {.metrics = {{"cpu", 70.0},
//                    {"rps_per_replica", 80.0, outgrow::metric_target_type::per_pod}}}));
//
// Trade-offs: reactive — it adds replicas once the load is there, so a spike is served
// late by the start-up time (predictive_scaling provisions ahead); the tolerance band
// and the scale-down window trade cost for stability on a noisy metric.
//
// Thread-safety: used by one autoscaler, under that autoscaler's lock.
// Complexity: recommend() O(metrics + stabilization window entries + rate limits); no
// allocation in steady state.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/autoscale/detail/hpa_behavior.hpp>
#include <outgrow/autoscale/detail/policy_base.hpp>
#include <outgrow/autoscale/detail/replica_calculator.hpp>
#include <outgrow/autoscale/scaling_behavior.hpp>
#include <outgrow/autoscale/scaling_context.hpp>
#include <outgrow/core/error.hpp>

namespace outgrow {

/// How a metric's samples relate to the replica count: the Kubernetes metric source and
/// target type it stands for, and with it which of the HPA's rules for replicas that are
/// not ready or sent no sample apply (replica_calculator.go; "ratio" = value / target).
enum class metric_target_type : std::uint8_t {
  /// HPA Resource metric on CPU, Utilization target (GetResourceReplicas). The sample is
  /// the average utilization — in % of a replica's request or capacity — over the ready
  /// replicas that reported; `reporting` counts ready replicas (-1 = all of them; more is
  /// cut to the ready count). Not-ready replicas are left out (the HPA ignores a starting
  /// pod's CPU) and, on a scale-up, count as 0 %. Ready replicas without a sample count
  /// as 0 % on a scale-up and as 100 % (the target when that is above 100) on a
  /// scale-down. desired = ceil(adjusted ratio × replicas counted). The default.
  utilization,
  /// HPA Pods metric, AverageValue target (GetMetricReplicas — custom per-replica
  /// metrics such as requests/s per replica). The sample is the average over every
  /// replica that reported, starting ones included: the HPA applies the not-ready rule
  /// to CPU only, so a starting replica's sample counts at its value. `reporting` counts
  /// replicas, ready or not (-1 = all `current` of them: pass the count whenever some
  /// have not reported, e.g. right after a scale-up, or they are counted at the
  /// average). Replicas that did not report are taken to be the starting ones first;
  /// those count as 0 on a scale-up and are left out on a scale-down (the HPA's Pending
  /// pods), the rest (ready, "missing") count as 0 on a scale-up and at the target on
  /// a scale-down. (The HPA treats memory Resource metrics the same way, except that
  /// missing replicas count at 100 % there.)
  per_pod,
  /// HPA External or Object metric, AverageValue target
  /// (GetExternalPerPodMetricReplicas / GetObjectPerPodMetricReplicas): the sample is a
  /// total for the service (queue length, requests/s). Hold while value / (target ×
  /// current) is within tolerance, else ceil(value / target); readiness plays no part.
  total,
  /// HPA External or Object metric, Value target (GetExternalMetricReplicas /
  /// GetObjectMetricReplicas): one service-wide value that falls as replicas are added
  /// (a latency percentile). Hold while the ratio is within tolerance, else
  /// ceil(ratio × ready replicas); from zero replicas ceil(ratio), without tolerance.
  /// Deliberate difference: with replicas but none of them ready the HPA proposes
  /// ceil(ratio × 0) = 0 (then raised to minReplicas); this metric counts as unusable
  /// instead (missing data: no scale-down on it), since a value that no ready replica
  /// produced says nothing about how many replicas it takes.
  value,
};

struct metric_target {
  std::string metric;
  double target = 0.0;  ///< > 0: average per replica (utilization, per_pod, total) or value
  metric_target_type type = metric_target_type::utilization;
};

struct target_tracking_config {
  /// The metrics to track; the largest proposal wins. Default: CPU utilization at 70 %
  /// (the textbook's scale-up threshold as a target).
  std::vector<metric_target> metrics = {{"cpu", 70.0, metric_target_type::utilization}};
  /// No scaling while |ratio − 1| <= tolerance: 0.1 as the HPA. [0, 10]
  double tolerance = 0.1;
  /// Stabilization windows and rate limits: the HPA defaults.
  scaling_behavior behavior{};
};

/// The Kubernetes HPA algorithm over one or more metrics. Per metric, by its kind
/// (metric_target_type): utilization and per_pod through the replica calculator's
/// average rules (not-ready and missing replicas as described there; the adjusted ratio
/// within tolerance or reversing the direction → hold), total and value as the HPA's
/// external / object metrics. The largest proposal wins. A metric that cannot propose —
/// no fresh sample, or no replica its sample covers — is unusable: if the others
/// propose a scale-down (or all are unusable) → missing_data (hold); a scale-up still
/// goes ahead (horizontal.go computeReplicasForMetrics). Then the HPA behavior:
/// stabilization (scale-up: lowest recommendation in its window; scale-down: highest
/// in its window; the current count counts as a recommendation on first sight) and rate
/// limits per period, counted from the replicas at the start of the period
/// (normalizeDesiredReplicasWithBehaviors); min/max replicas are the autoscaler's.
/// Deliberate differences: the replica-count history includes changes made by others
/// (autoscaler.hpp); samples are averages, so the HPA's per-pod requests (a
/// request-weighted CPU average) and its integer truncation of utilization are not
/// modelled.
class target_tracking : public detail::behavior_policy<target_tracking_config> {
 public:
  /// Throws: config_error if metrics is empty, a metric name is empty, a target is not
  /// finite and > 0, tolerance is outside [0, 10] or the behavior is out of range.
  explicit target_tracking(target_tracking_config config = {})
      : behavior_policy(validated(std::move(config))) {}

  [[nodiscard]] std::string_view name() const noexcept { return "target_tracking"; }

  recommendation recommend(const scaling_context& ctx) {
    int best = -1;
    const metric_target* best_metric = nullptr;
    detail::hpa_proposal best_proposal{};
    double best_value = 0.0;
    int invalid = 0;
    const metric_target* first_invalid = nullptr;
    bool first_invalid_sampled = false;
    for (const metric_target& m : config_.metrics) {
      const metric_sample* s = ctx.fresh(m.metric);
      std::optional<detail::hpa_proposal> p;
      if (s != nullptr) p = propose(ctx, m, *s);
      if (!p) {
        if (invalid++ == 0) {
          first_invalid = &m;
          first_invalid_sampled = s != nullptr;
        }
        continue;
      }
      if (p->replicas > best) {
        best = p->replicas;
        best_metric = &m;
        best_proposal = *p;
        best_value = s->value;
      }
    }
    const auto n = static_cast<int>(config_.metrics.size());
    if (invalid == n || (invalid > 0 && best < ctx.current)) {
      recommendation r = recommendation::missing(first_invalid->metric, {});
      if (first_invalid_sampled) {
        r.reason.format("{} sample covers no replica ({} of {} metrics unusable): hold",
                        first_invalid->metric, invalid, n);
      } else {
        r.reason.format("no fresh {} sample ({} of {} metrics missing): hold",
                        first_invalid->metric, invalid, n);
      }
      return r;
    }
    const auto out = behavior_.apply(ctx, best);
    recommendation r;
    r.kind = recommendation_kind::replicas;
    r.replicas = out.replicas;
    r.metric = best_metric->metric;
    r.value = best_value;
    r.target = best_metric->target;
    r.missing_data = invalid > 0;
    r.limited_by = out.limited_by == scale_limit::none && best_proposal.within_tolerance
                       ? scale_limit::tolerance
                       : out.limited_by;
    if (best_proposal.reversed) {
      r.reason.format(
          "{} {:.4g}/{:.4g}: ratio {:.3f} with not-ready/missing replicas "
          "reverses direction: hold",
          best_metric->metric, best_value, best_metric->target, best_proposal.ratio);
    } else if (best_proposal.within_tolerance) {
      r.reason.format("{} {:.4g}/{:.4g}: ratio {:.3f} within tolerance {:.2f}",
                      best_metric->metric, best_value, best_metric->target,
                      best_proposal.ratio, config_.tolerance);
    } else {
      r.reason.format("{} {:.4g}/{:.4g}: ratio {:.3f} -> {} replicas", best_metric->metric,
                      best_value, best_metric->target, best_proposal.ratio, best);
    }
    return r;
  }

 private:
  static target_tracking_config validated(target_tracking_config c) {
    constexpr std::string_view me = "target_tracking";
    require(!c.metrics.empty(), me, "metrics", "non-empty", "an empty list");
    for (const metric_target& m : c.metrics) {
      require(!m.metric.empty(), me, "metrics.metric", "a non-empty name", "\"\"");
      require(std::isfinite(m.target) && m.target > 0.0, me, "metrics.target",
              "> 0 and finite", m.target);
    }
    detail::validate_reactive(me, c.tolerance, c.behavior);
    return c;
  }

  /// The metric's proposal; nullopt when its sample covers no replica it can count.
  std::optional<detail::hpa_proposal> propose(const scaling_context& ctx,
                                              const metric_target& m,
                                              const metric_sample& s) const {
    const int current = std::max(ctx.current, 0);
    const int ready = ctx.ready();
    const int not_ready = current - ready;
    const double tolerance = config_.tolerance;
    switch (m.type) {
      case metric_target_type::utilization: {
        const int reporting = s.reporting < 0 ? ready : std::min(s.reporting, ready);
        if (reporting <= 0) return std::nullopt;
        return detail::hpa_average(
            s.value, m.target,
            {reporting, ready - reporting, not_ready, std::max(100.0, m.target)}, current,
            tolerance);
      }
      case metric_target_type::per_pod: {
        const int reporting = s.reporting < 0 ? current : std::min(s.reporting, current);
        if (reporting <= 0) return std::nullopt;
        const int silent = current - reporting;
        const int unready = std::min(not_ready, silent);  // starting ones first
        return detail::hpa_average(s.value, m.target,
                                   {reporting, silent - unready, unready, m.target},
                                   current, tolerance);
      }
      case metric_target_type::total:
        return detail::hpa_total(s.value, m.target, current, tolerance);
      case metric_target_type::value: {
        const double ratio = s.value / m.target;
        if (current == 0)
          return detail::hpa_proposal{detail::ceil_replicas(ratio), false, ratio};
        if (ready <= 0) return std::nullopt;  // see metric_target_type::value
        if (std::abs(1.0 - ratio) <= tolerance) {
          return detail::hpa_proposal{current, true, ratio};
        }
        return detail::hpa_proposal{detail::ceil_replicas(ratio * ready), false, ratio};
      }
    }
    return std::nullopt;
  }
};

}  // namespace outgrow
