// Conformance: target_tracking and the autoscaler against the Kubernetes HPA.
//
// Cases ported from kubernetes/kubernetes pkg/controller/podautoscaler:
//   replica_calculator_test.go — the replica calculation per metric (called directly
//     through target_tracking::recommend() with no stabilization window and no rate
//     limit, as the Go tests call the ReplicaCalculator alone);
//   horizontal_test.go — the controller: min/max clamps, several metrics, invalid
//     metrics, stabilization windows and rate-limit policies (through the autoscaler).
// Facts (inputs, expected outputs) are the Go tests'; the code is ours. Each TEST_CASE
// names its Go test; table rows are SECTIONs named after the Go row.
//
// Mapping to our concepts:
//   - A Resource metric on CPU with a Utilization target → metric_target_type::utilization.
//     The sample is the utilization the HPA computes: sum(usage) / sum(requests) over
//     the ready pods with a metric, e.g. levels 300, 500, 700 millicores on 1-CPU
//     requests → 50 (%). Pods the HPA counts as unready for CPU — readiness false,
//     Pending, or "hot CPU" (inside the CPU initialization period without a full
//     metric window since readiness) — are our not-ready replicas. Ready pods without
//     a metric are replicas the sample does not cover (`reporting` < ready).
//   - A Pods metric (AverageValue) → per_pod: the sample is the average over every pod
//     that reported, ready or not. Pods/External/Object values are in milli-units as
//     in the Go tests (level 20000 = 20 qps).
//   - External/Object with an AverageValue target → total; with a Value target → value.
//   - Failed pods and pods being deleted are not replicas: `current` leaves them out.
//   - A metric the HPA cannot compute (unknown type, failing metrics API) → a metric
//     that never gets a sample.
//   - `recommendations: []timestampedRecommendation{}` (a controller that has been
//     running, nothing recent in its windows) → quiet_start: the policy first evaluates
//     10 minutes earlier at a steady sample; `nil` → the case's evaluation is the first.
//   - Prior scale events (generateEventsUniformDistribution) → replica-count changes
//     recorded with set_replicas() at the same offsets before now.
//   - A prenormalized desired count (TestScalingWithRules, stabilization tests) → a
//     `total` metric with target 1 and tolerance 0, whose proposal is exactly the value.
//
// Not ported (not expressible here): TestReplicaCalcEmptyCPURequest (no requests),
// TestReplicaCalcDuringRollingUpdateWithMaxSurge(CM) and TestMissingReports (more or
// fewer pods than the replica count), TestGroupPods (pod classification is the
// caller's), TestStoreScaleEvents (event bookkeeping), TestConvertDesiredReplicasWithRules
// (legacy path with a test-only scale-up factor of 8), condition/selector/event tests,
// the container-metric variants (same mapping as their pod-level twins) and
// asymmetric tolerances beyond the direction a case exercises.
#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/autoscale/scaling_policy.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/core/clock.hpp>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::metric_target_type;
using outgrow::rate_limit_type;
using outgrow::scale_limit;
using outgrow::select_policy;

namespace {

constexpr auto util = metric_target_type::utilization;
constexpr auto per_pod = metric_target_type::per_pod;
constexpr auto total = metric_target_type::total;
constexpr auto value = metric_target_type::value;

/// No stabilization window and no rate limit: the replica calculator alone.
outgrow::scaling_behavior no_behavior() {
  outgrow::scaling_behavior b;
  b.scale_up = {.stabilization_window = 0s, .select = select_policy::max, .policies = {}};
  b.scale_down = {.stabilization_window = 0s, .select = select_policy::max, .policies = {}};
  return b;
}

// ---------------------------------------------------------------------------------
// replica_calculator_test.go harness
// ---------------------------------------------------------------------------------

struct calc {
  metric_target_type type = util;
  double target = 0.0;
  int current = 0;
  int not_ready = 0;
  double value = 0.0;
  int reporting = -1;
  double tolerance = 0.1;
};

/// One replica calculation: target_tracking::recommend() on a fresh sample.
outgrow::recommendation replica_calc(const calc& c, bool with_sample = true) {
  std::vector<outgrow::metric_series> metrics;
  metrics.emplace_back("m");
  const outgrow::scaling_time_point now{1h};
  if (with_sample) REQUIRE(metrics[0].push({now, c.value, c.reporting}));
  outgrow::scaling_context ctx;
  ctx.now = now;
  ctx.current = c.current;
  ctx.not_ready = c.not_ready;
  ctx.min_replicas = 0;
  ctx.max_replicas = 1'000'000;
  ctx.metrics = &metrics;
  outgrow::target_tracking policy({.metrics = {{"m", c.target, c.type}},
                                   .tolerance = c.tolerance,
                                   .behavior = no_behavior()});
  return policy.recommend(ctx);
}

int desired(const calc& c) {
  const outgrow::recommendation r = replica_calc(c);
  REQUIRE(r.kind == outgrow::recommendation_kind::replicas);
  return r.replicas;
}

// ---------------------------------------------------------------------------------
// horizontal_test.go harness
// ---------------------------------------------------------------------------------

/// One HPA: an autoscaler on a manual clock.
struct controller {
  outgrow::manual_clock clock;
  outgrow::autoscaler<outgrow::manual_clock> scaler;

  controller(int min, int max)
      : scaler({.min_replicas = min, .max_replicas = max}, clock) {}
  void at(std::chrono::seconds t) { clock.set(outgrow::scaling_time_point{t}); }
  void observe(std::string_view metric, double v, int reporting = -1) {
    REQUIRE(scaler.observe(metric, v, clock.now(), reporting));
  }
};

struct hpa_case {
  int min = 1;
  int max = 100;
  int current = 1;
  int not_ready = 0;
  metric_target_type type = util;
  double target = 0.0;
  double value = 0.0;
  int reporting = -1;
  bool quiet_start = false;  ///< Go: recommendations: []timestampedRecommendation{}
  outgrow::scaling_behavior behavior{};
};

/// A sample that holds the count (ratio 1) for the quiet start.
double steady_sample(const hpa_case& c) {
  return c.type == total ? c.target * c.current : c.target;
}

/// One sync of an HPA with one metric: the decision at t = 600 s.
outgrow::scaling_decision sync(const hpa_case& c) {
  controller k(c.min, c.max);
  k.scaler.add_policy(outgrow::target_tracking(
      {.metrics = {{"m", c.target, c.type}}, .behavior = c.behavior}));
  k.scaler.set_replicas(c.current, c.not_ready);
  if (c.quiet_start) {
    k.at(0s);
    k.observe("m", steady_sample(c));
    (void)k.scaler.evaluate();
  }
  k.at(600s);
  k.observe("m", c.value, c.reporting);
  return k.scaler.evaluate();
}

/// generateScalingRules(pods, podsPeriod, percent, percentPeriod, _): the stabilization
/// window argument is left out — TestScalingWithRules calls the rate limit alone.
outgrow::scaling_rules rules(int pods, int pods_period, int percent, int percent_period,
                             select_policy select = select_policy::max) {
  outgrow::scaling_rules r;
  r.stabilization_window = 0s;
  r.select = select;
  if (pods != 0) {
    r.policies.push_back({rate_limit_type::pods, pods, std::chrono::seconds{pods_period}});
  }
  if (percent != 0) {
    r.policies.push_back(
        {rate_limit_type::percent, percent, std::chrono::seconds{percent_period}});
  }
  return r;
}

/// GenerateHPAScaleUpRules(nil) / GenerateHPAScaleDownRules(nil), without the window.
outgrow::scaling_rules default_up() {
  return outgrow::scaling_behavior{}.scale_up;
}
outgrow::scaling_rules default_down() {
  outgrow::scaling_rules r = outgrow::scaling_behavior{}.scale_down;
  r.stabilization_window = 0s;
  return r;
}

/// generateEventsUniformDistribution(changes, 120): event i (oldest first) of n sits in
/// the middle of the i-th of n equal segments of the last 120 s.
std::vector<std::pair<std::chrono::seconds, int>> uniform_events(std::vector<int> changes) {
  std::vector<std::pair<std::chrono::seconds, int>> out;
  const auto n = static_cast<int>(changes.size());
  const int segment = 120 / n;
  for (int i = 0; i < n; ++i) {
    out.emplace_back(std::chrono::seconds{120 - segment * (i + 1) + segment / 2},
                     changes[static_cast<std::size_t>(i)]);
  }
  return out;
}

struct rate_case {
  int current = 0;
  int desired = 0;
  int min = 1;
  int max = 1000;
  outgrow::scaling_rules up = default_up();
  outgrow::scaling_rules down = default_down();
  /// (seconds before now, +added / −removed), oldest first.
  std::vector<std::pair<std::chrono::seconds, int>> events{};
};

/// convertDesiredReplicasWithBehaviorRate: the desired count after the rate limits of
/// the direction taken and min/max; the history holds the given scale events.
outgrow::scaling_decision rate_limited(const rate_case& c) {
  controller k(c.min, c.max);
  k.scaler.add_policy(outgrow::target_tracking({.metrics = {{"desired", 1.0, total}},
                                                .tolerance = 0.0,
                                                .behavior = {c.up, c.down}}));
  int replicas = c.current;
  for (const auto& e : c.events) replicas -= e.second;
  const auto now = 1000s;
  k.at(0s);
  k.scaler.set_replicas(replicas);  // the baseline, before every event
  for (const auto& [ago, change] : c.events) {
    k.at(now - ago);
    replicas += change;
    k.scaler.set_replicas(replicas);
  }
  REQUIRE(replicas == c.current);
  k.at(now);
  k.observe("desired", c.desired);
  return k.scaler.evaluate();
}

struct stabilization_case {
  int current = 0;
  std::chrono::seconds up_window{0};
  std::chrono::seconds down_window{0};
  /// (seconds before now, prenormalized recommendation), any order.
  std::vector<std::pair<std::chrono::seconds, int>> recommendations{};
  int desired = 0;
  bool rate_limits = false;  ///< the HPA defaults (else none: stabilization alone)
};

/// stabilizeRecommendationWithBehaviors: the recommendations are made by evaluations
/// at their times (after a steady one 3 h before, so the first-sight record is old).
int stabilized(stabilization_case c) {
  controller k(0, 1000);
  outgrow::scaling_behavior b = c.rate_limits ? outgrow::scaling_behavior{} : no_behavior();
  b.scale_up.stabilization_window = c.up_window;
  b.scale_down.stabilization_window = c.down_window;
  k.scaler.add_policy(outgrow::target_tracking(
      {.metrics = {{"desired", 1.0, total}}, .tolerance = 0.0, .behavior = b}));
  k.scaler.set_replicas(c.current);
  const auto now = 4h;
  k.at(now - 3h);
  k.observe("desired", c.current);
  (void)k.scaler.evaluate();
  std::sort(c.recommendations.begin(), c.recommendations.end(),
            [](const auto& a, const auto& b2) { return a.first > b2.first; });
  for (const auto& [ago, rec] : c.recommendations) {
    k.at(std::chrono::duration_cast<std::chrono::seconds>(now - ago));
    k.observe("desired", rec);
    (void)k.scaler.evaluate();
  }
  k.at(std::chrono::duration_cast<std::chrono::seconds>(now));
  k.observe("desired", c.desired);
  return k.scaler.evaluate().proposed;
}

}  // namespace

// =================================================================================
// replica_calculator_test.go
// =================================================================================

// TestReplicaCalcScaleUp (TestReplicaCalcResourceScale "scale up")
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUp", "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 30, .current = 3, .value = 50}) == 5);
}

// TestReplicaCalcScaleUpUnreadyLessScale ("scale up: unready pod scales less"): pod 0
// unready; the ready pods use 500 and 700 of 1000 → 60 %.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpUnreadyLessScale",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 30, .current = 3, .not_ready = 1, .value = 60}) ==
        4);
}

// TestReplicaCalcScaleUpHotCpuLessScale ("scale up: hot-CPU pod scales less"): pod 0 is
// inside its CPU initialization period → not ready for CPU.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpHotCpuLessScale",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 30, .current = 3, .not_ready = 1, .value = 60}) ==
        4);
}

// TestReplicaCalcScaleUpUnreadyNoScale ("no scale: unready pods ignored"): 40 % on the one
// ready pod; with the 2 unready at 0 % the ratio falls below 1 → hold.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpUnreadyNoScale",
          "[k8s][calc]") {
  const auto r =
      replica_calc({.type = util, .target = 30, .current = 3, .not_ready = 2, .value = 40});
  CHECK(r.replicas == 3);
}

// TestReplicaCalcScaleHotCpuNoScale ("no scale: hot-CPU pods ignored")
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleHotCpuNoScale",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 30, .current = 3, .not_ready = 2, .value = 40}) ==
        3);
}

// TestReplicaCalcScaleUpIgnoresFailedPods ("scale up: failed pods ignored"): 2 running
// pods at 500 and 700; the 2 failed ones are no replicas.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpIgnoresFailedPods",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 30, .current = 2, .value = 60}) == 4);
}

// TestReplicaCalcScaleUpIgnoresDeletionPods ("scale up: pods being deleted are ignored")
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpIgnoresDeletionPods",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 30, .current = 2, .value = 60}) == 4);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpCM", "[k8s][calc]") {
  // qps 20000, 10000, 30000 (milli) → 20000 average; target 15000.
  CHECK(desired({.type = per_pod, .target = 15000, .current = 3, .value = 20000}) == 4);
}

// The case: pod 2 is unready (and hot), but a Pods metric counts its sample.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale",
          "[k8s][calc]") {
  // 50000, 10000, 30000 → 30000 over all 3 pods: ratio 2 → 6 (not 4).
  CHECK(desired({.type = per_pod,
                 .target = 15000,
                 .current = 3,
                 .not_ready = 1,
                 .value = 30000}) == 6);
}

TEST_CASE(
    "k8s replica_calculator_test.go "
    "TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
    "[k8s][calc]") {
  // 50000, 15000, 30000 with pods 0 and 2 unready: 31666.67 over all 3 → ceil(6.33) = 7.
  CHECK(desired({.type = per_pod,
                 .target = 15000,
                 .current = 3,
                 .not_ready = 2,
                 .value = 95000.0 / 3.0}) == 7);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpCMObject", "[k8s][calc]") {
  CHECK(desired({.type = value, .target = 15000, .current = 3, .value = 20000}) == 4);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpCMPerPodObject",
          "[k8s][calc]") {
  CHECK(desired({.type = total, .target = 5000, .current = 3, .value = 20000}) == 4);
}

// Value target: ceil(ratio × ready pods) — 5 with 1 ready pod (15 if unready ones counted).
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods",
          "[k8s][calc]") {
  CHECK(
      desired(
          {.type = value, .target = 10000, .current = 3, .not_ready = 2, .value = 50000}) ==
      5);
}

TEST_CASE(
    "k8s replica_calculator_test.go TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods",
    "[k8s][calc]") {
  CHECK(desired(
            {.type = value, .target = 4400, .current = 3, .not_ready = 2, .value = 8600}) ==
        2);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpPerPodCMExternal",
          "[k8s][calc]") {
  CHECK(desired({.type = total, .target = 2150, .current = 3, .value = 8600}) == 4);
}

// TestReplicaCalcScaleDown ("scale down"): 100, 300, 500, 250, 250 of 1000 → 28 %.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleDown", "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 50, .current = 5, .value = 28}) == 3);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleDownCM", "[k8s][calc]") {
  CHECK(desired({.type = per_pod, .target = 20000, .current = 5, .value = 12000}) == 3);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleDownPerPodCMObject",
          "[k8s][calc]") {
  CHECK(desired({.type = total, .target = 2000, .current = 5, .value = 6000}) == 3);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleDownCMObject",
          "[k8s][calc]") {
  CHECK(desired({.type = value, .target = 20000, .current = 5, .value = 12000}) == 3);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleDownCMExternal",
          "[k8s][calc]") {
  CHECK(desired({.type = value, .target = 14334, .current = 5, .value = 8600}) == 3);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleDownPerPodCMExternal",
          "[k8s][calc]") {
  CHECK(desired({.type = total, .target = 2867, .current = 5, .value = 8600}) == 3);
}

// TestReplicaCalcScaleDownIncludeUnreadyPods ("scale down: exclude unready pods"): the 3
// ready pods at 100, 300, 500 → 30 %; the unready ones are left out of a scale-down.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleDownIncludeUnreadyPods",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 50, .current = 5, .not_ready = 2, .value = 30}) ==
        2);
}

// 4 Pending pods and one running at 10 %.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleDownExcludeUnscheduledPods",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 50, .current = 5, .not_ready = 4, .value = 10}) ==
        1);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleDownIgnoreHotCpuPods",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 50, .current = 5, .not_ready = 2, .value = 30}) ==
        2);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleDownIgnoresFailedPods",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 50, .current = 5, .value = 28}) == 3);
}

// 1010, 1030, 1020 on requests 0.9, 1.0, 1.1 → 102 %.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcTolerance", "[k8s][calc]") {
  const auto r = replica_calc({.type = util, .target = 100, .current = 3, .value = 102});
  CHECK(r.replicas == 3);
  CHECK(r.limited_by == scale_limit::tolerance);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcToleranceCM", "[k8s][calc]") {
  CHECK(desired({.type = per_pod, .target = 20000, .current = 3, .value = 62000.0 / 3.0}) ==
        3);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcToleranceCMObject",
          "[k8s][calc]") {
  CHECK(desired({.type = value, .target = 20000, .current = 3, .value = 20666}) == 3);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcTolerancePerPodCMObject",
          "[k8s][calc]") {
  CHECK(desired({.type = total, .target = 5000, .current = 4, .value = 20166}) == 4);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcToleranceCMExternal",
          "[k8s][calc]") {
  CHECK(desired({.type = value, .target = 8888, .current = 3, .value = 8600}) == 3);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcTolerancePerPodCMExternal",
          "[k8s][calc]") {
  CHECK(desired({.type = total, .target = 2900, .current = 3, .value = 8600}) == 3);
}

// Tolerances{scaleDown, scaleUp}: our tolerance is one value for both directions; each
// row exercises one direction, so the tolerance of that direction is used.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcConfigurableTolerance",
          "[k8s][calc]") {
  SECTION("Outside of a 0% tolerance") {  // 909, 1010, 1111 on 0.9/1.0/1.1 → 101 %
    CHECK(desired(
              {.type = util, .target = 100, .current = 3, .value = 101, .tolerance = 0}) ==
          4);
  }
  SECTION("Within a 200% scale-up tolerance") {  // → 190 %
    CHECK(desired(
              {.type = util, .target = 100, .current = 3, .value = 190, .tolerance = 2}) ==
          3);
  }
  SECTION("Outside 8% scale-up tolerance") {  // → 109 %
    CHECK(
        desired(
            {.type = util, .target = 100, .current = 3, .value = 109, .tolerance = 0.08}) ==
        4);
  }
  SECTION("Within a 36% scale-down tolerance") {  // → 65 %
    CHECK(
        desired(
            {.type = util, .target = 100, .current = 3, .value = 65, .tolerance = 0.36}) ==
        3);
  }
  SECTION("Outside a 34% scale-down tolerance") {
    CHECK(
        desired(
            {.type = util, .target = 100, .current = 3, .value = 65, .tolerance = 0.34}) ==
        2);
  }
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcConfigurableToleranceCM",
          "[k8s][calc]") {
  CHECK(desired({.type = per_pod,
                 .target = 20000,
                 .current = 3,
                 .value = 62000.0 / 3.0,
                 .tolerance = 0.01}) == 4);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcConfigurableToleranceCMObject",
          "[k8s][calc]") {
  CHECK(desired({.type = value,
                 .target = 20000,
                 .current = 3,
                 .value = 20666,
                 .tolerance = 0.01}) == 4);
}

TEST_CASE(
    "k8s replica_calculator_test.go TestReplicaCalcConfigurableTolerancePerPodCMObject",
    "[k8s][calc]") {
  CHECK(desired({.type = total,
                 .target = 5000,
                 .current = 4,
                 .value = 20208,
                 .tolerance = 0.01}) == 5);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcConfigurableToleranceCMExternal",
          "[k8s][calc]") {
  CHECK(desired({.type = value,
                 .target = 8800,
                 .current = 3,
                 .value = 8900,
                 .tolerance = 0.01}) == 4);
}

TEST_CASE(
    "k8s replica_calculator_test.go TestReplicaCalcConfigurableTolerancePerPodCMExternal",
    "[k8s][calc]") {
  CHECK(desired({.type = total,
                 .target = 2800,
                 .current = 3,
                 .value = 8600,
                 .tolerance = 0.01}) == 4);
}

// Six metrics for four pods: the two for unknown pods are not part of the utilization
// (4000, 9500, 3000, 7000 on 1-CPU requests → 587.5 %).
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcSuperfluousMetrics",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 100, .current = 4, .value = 587.5}) == 24);
}

// 2 of 4 pods report (400, 95 of 1000 → 24.75 %); on a scale-down the 2 missing count at
// 100 % of their request.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcMissingMetrics", "[k8s][calc]") {
  CHECK(desired(
            {.type = util, .target = 100, .current = 4, .value = 24.75, .reporting = 2}) ==
        3);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcEmptyMetrics", "[k8s][calc]") {
  const auto r = replica_calc({.type = util, .target = 100, .current = 4}, false);
  CHECK(r.kind == outgrow::recommendation_kind::missing_data);  // the HPA: an error
}

// Metrics only for a pod that is not one of the replicas: the sample covers none.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcDisjointResourcesMetrics",
          "[k8s][calc]") {
  const auto r = replica_calc(
      {.type = util, .target = 100, .current = 1, .value = 100, .reporting = 0});
  CHECK(r.kind == outgrow::recommendation_kind::missing_data);  // the HPA: an error
}

// 3 of 5 pods report 20000, 19000, 21000: exactly at target, missing ones change nothing.
TEST_CASE(
    "k8s replica_calculator_test.go TestPlainMetricReplicaCalcMissingMetricsNoChangeEq",
    "[k8s][calc]") {
  CHECK(desired({.type = per_pod,
                 .target = 20000,
                 .current = 5,
                 .value = 20000,
                 .reporting = 3}) == 5);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcMissingMetricsNoChangeEq",
          "[k8s][calc]") {
  CHECK(
      desired({.type = util, .target = 100, .current = 2, .value = 100, .reporting = 1}) ==
      2);
}

// 190 % on 1 of 2 pods; the missing one at 0 % → 95 %: within tolerance.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcMissingMetricsNoChangeGt",
          "[k8s][calc]") {
  CHECK(
      desired({.type = util, .target = 100, .current = 2, .value = 190, .reporting = 1}) ==
      2);
}

// 60 % on 1 of 2 pods; the missing one at 100 % → 80 %: ceil(1.6) = 2.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcMissingMetricsNoChangeLt",
          "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 100, .current = 2, .value = 60, .reporting = 1}) ==
        2);
}

// Pod 0 unready, pod 1 at 45 %, pod 2 without a metric: 45 % → scale-down; the missing
// pod at 100 % → 72.5 %: the direction reverses → hold.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcMissingMetricsUnreadyChange",
          "[k8s][calc]") {
  const auto r = replica_calc({.type = util,
                               .target = 50,
                               .current = 3,
                               .not_ready = 1,
                               .value = 45,
                               .reporting = 1});
  CHECK(r.replicas == 3);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcMissingMetricsHotCpuNoChange",
          "[k8s][calc]") {
  CHECK(desired({.type = util,
                 .target = 50,
                 .current = 3,
                 .not_ready = 1,
                 .value = 45,
                 .reporting = 1}) == 3);
}

// Pod 1 at 200 %; unready pod 0 and missing pod 2 at 0 % → 66.7 %: ceil(1.33 × 3) = 4.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcMissingMetricsUnreadyScaleUp",
          "[k8s][calc]") {
  CHECK(desired({.type = util,
                 .target = 50,
                 .current = 3,
                 .not_ready = 1,
                 .value = 200,
                 .reporting = 1}) == 4);
}

TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcMissingMetricsHotCpuScaleUp",
          "[k8s][calc]") {
  CHECK(desired({.type = util,
                 .target = 50,
                 .current = 3,
                 .not_ready = 1,
                 .value = 200,
                 .reporting = 1}) == 4);
}

// Pod 0 unready, pods 1 and 2 at 10 %, pod 3 missing: (10 + 10 + 100) / 3 = 40 % → 3.
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcMissingMetricsUnreadyScaleDown",
          "[k8s][calc]") {
  CHECK(desired({.type = util,
                 .target = 50,
                 .current = 4,
                 .not_ready = 1,
                 .value = 10,
                 .reporting = 2}) == 3);
}

// Target 300 %: a missing pod counts at the target, not 100 %. The ready pods have 1- and
// 2-CPU requests (100 m each → 6.67 % request-weighted); our average weights replicas
// equally, which gives the same answer here: 2.
TEST_CASE(
    "k8s replica_calculator_test.go TestReplicaCalcMissingMetricsScaleDownTargetOver100",
    "[k8s][calc]") {
  CHECK(desired({.type = util,
                 .target = 300,
                 .current = 4,
                 .not_ready = 1,
                 .value = 20.0 / 3.0,
                 .reporting = 2}) == 2);
}

// 150 m used of 300 m requested per pod (50 %); targets 56 % (just outside tolerance → 9)
// and 55 % (just inside → 10).
TEST_CASE(
    "k8s replica_calculator_test.go TestReplicaCalcComputedToleranceAlgImplementation",
    "[k8s][calc]") {
  CHECK(desired({.type = util, .target = 56, .current = 10, .value = 50}) == 9);
  CHECK(desired({.type = util, .target = 55, .current = 10, .value = 50}) == 10);
}

// Deliberate difference: a huge proposal is capped at 1 000 000 000 replicas here, at
// MaxInt32 there — both far above any max_replicas (ours is at most 1 000 000).
TEST_CASE("k8s replica_calculator_test.go TestReplicaCalcScaleUpOverflow", "[k8s][calc]") {
  const double max_int64 = static_cast<double>(std::numeric_limits<std::int64_t>::max());
  CHECK(desired({.type = value, .target = 1, .current = 3, .value = max_int64}) ==
        1'000'000'000);  // the HPA: 2147483647
}

TEST_CASE("k8s replica_calculator_test.go TestExternalPerPodMetricReplicaOverflow",
          "[k8s][calc]") {
  const double max_int64 = static_cast<double>(std::numeric_limits<std::int64_t>::max());
  CHECK(desired({.type = total, .target = 1, .current = 1, .value = max_int64}) ==
        1'000'000'000);  // the HPA: 2147483647 (deliberate difference, see above)
}

TEST_CASE("k8s replica_calculator_test.go TestExternalPerPodMetricUsageOverflow",
          "[k8s][calc]") {
  const double max_int64 = static_cast<double>(std::numeric_limits<std::int64_t>::max());
  CHECK(desired({.type = total, .target = max_int64, .current = 1, .value = max_int64}) ==
        1);
}

// =================================================================================
// horizontal_test.go — the controller
// =================================================================================

TEST_CASE("k8s horizontal_test.go TestScaleUp", "[k8s][hpa]") {
  CHECK(sync({.min = 2, .max = 6, .current = 3, .target = 30, .value = 50}).desired == 5);
}

TEST_CASE("k8s horizontal_test.go TestScaleUpUnreadyLessScale", "[k8s][hpa]") {
  CHECK(sync({.min = 2, .max = 6, .current = 3, .not_ready = 1, .target = 30, .value = 60})
            .desired == 4);
}

TEST_CASE("k8s horizontal_test.go TestScaleUpUnreadyNoScale", "[k8s][hpa]") {
  CHECK(sync({.min = 2, .max = 6, .current = 3, .not_ready = 2, .target = 30, .value = 40})
            .desired == 3);
}

TEST_CASE("k8s horizontal_test.go TestScaleUpCM", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 3,
              .type = per_pod,
              .target = 15000,
              .value = 20000})
            .desired == 4);
}

// Pod 2 unready and hot: a Pods metric still counts its 30000.
TEST_CASE("k8s horizontal_test.go TestScaleUpCMUnreadyAndHotCpuNoLessScale", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 3,
              .not_ready = 1,
              .type = per_pod,
              .target = 15000,
              .value = 30000})
            .desired == 6);
}

// 50000, 15000, 30000 with 2 unready → 7, held to maxReplicas 6.
TEST_CASE("k8s horizontal_test.go TestScaleUpCMUnreadyandCpuHot", "[k8s][hpa]") {
  const auto d = sync({.min = 2,
                       .max = 6,
                       .current = 3,
                       .not_ready = 2,
                       .type = per_pod,
                       .target = 15000,
                       .value = 95000.0 / 3.0});
  CHECK(d.proposed == 7);
  CHECK(d.desired == 6);
  CHECK(d.limited_by == scale_limit::max_replicas);  // the HPA: TooManyReplicas
}

TEST_CASE("k8s horizontal_test.go TestScaleUpHotCpuNoScaleWouldScaleDown", "[k8s][hpa]") {
  const auto d = sync({.min = 2,
                       .max = 6,
                       .current = 3,
                       .type = per_pod,
                       .target = 15000,
                       .value = 95000.0 / 3.0});
  CHECK(d.desired == 6);
  CHECK(d.limited_by == scale_limit::max_replicas);
}

TEST_CASE("k8s horizontal_test.go TestScaleUpCMObject", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 3,
              .type = value,
              .target = 15000,
              .value = 20000})
            .desired == 4);
}

TEST_CASE("k8s horizontal_test.go TestScaleUpFromZeroCMObject", "[k8s][hpa]") {
  CHECK(sync({.min = 0,
              .max = 6,
              .current = 0,
              .type = value,
              .target = 15000,
              .value = 20000})
            .desired == 2);
}

// From zero the tolerance does not apply: ratio 1 → 1 replica.
TEST_CASE("k8s horizontal_test.go TestScaleUpFromZeroIgnoresToleranceCMObject",
          "[k8s][hpa]") {
  CHECK(
      sync({.min = 0, .max = 6, .current = 0, .type = value, .target = 1000, .value = 1000})
          .desired == 1);
}

TEST_CASE("k8s horizontal_test.go TestScaleUpPerPodCMObject", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 3,
              .type = total,
              .target = 10000,
              .value = 40000})
            .desired == 4);
}

TEST_CASE("k8s horizontal_test.go TestScaleUpCMExternal", "[k8s][hpa]") {
  CHECK(
      sync({.min = 2, .max = 6, .current = 3, .type = value, .target = 6666, .value = 8600})
          .desired == 4);
}

TEST_CASE("k8s horizontal_test.go TestScaleUpPerPodCMExternal", "[k8s][hpa]") {
  CHECK(
      sync({.min = 2, .max = 6, .current = 3, .type = total, .target = 2222, .value = 8600})
          .desired == 4);
}

TEST_CASE("k8s horizontal_test.go TestScaleDown", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 5,
              .target = 50,
              .value = 28,
              .quiet_start = true})
            .desired == 3);
}

// recommendations nil: the current count is the first recommendation, so the default
// 5-minute scale-down window holds 5.
TEST_CASE("k8s horizontal_test.go TestScaleDownStabilizeInitialSize", "[k8s][hpa]") {
  const auto d = sync({.min = 2, .max = 6, .current = 5, .target = 50, .value = 28});
  CHECK(d.desired == 5);
  CHECK(d.limited_by == scale_limit::stabilization);  // the HPA: ScaleDownStabilized
}

TEST_CASE("k8s horizontal_test.go TestScaleDownCM", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 5,
              .type = per_pod,
              .target = 20000,
              .value = 12000,
              .quiet_start = true})
            .desired == 3);
}

TEST_CASE("k8s horizontal_test.go TestScaleDownCMObject", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 5,
              .type = value,
              .target = 20000,
              .value = 12000,
              .quiet_start = true})
            .desired == 3);
}

TEST_CASE("k8s horizontal_test.go TestScaleDownToZeroCMObject", "[k8s][hpa]") {
  CHECK(sync({.min = 0,
              .max = 6,
              .current = 5,
              .type = value,
              .target = 20000,
              .value = 0,
              .quiet_start = true})
            .desired == 0);
}

TEST_CASE("k8s horizontal_test.go TestScaleDownPerPodCMObject", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 5,
              .type = total,
              .target = 20000,
              .value = 60000,
              .quiet_start = true})
            .desired == 3);
}

TEST_CASE("k8s horizontal_test.go TestScaleDownCMExternal", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 5,
              .type = value,
              .target = 14400,
              .value = 8600,
              .quiet_start = true})
            .desired == 3);
}

TEST_CASE("k8s horizontal_test.go TestScaleDownToZeroCMExternal", "[k8s][hpa]") {
  CHECK(sync({.min = 0,
              .max = 6,
              .current = 5,
              .type = value,
              .target = 14400,
              .value = 0,
              .quiet_start = true})
            .desired == 0);
}

TEST_CASE("k8s horizontal_test.go TestScaleDownPerPodCMExternal", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 5,
              .type = total,
              .target = 3000,
              .value = 8600,
              .quiet_start = true})
            .desired == 3);
}

TEST_CASE("k8s horizontal_test.go TestScaleDownIncludeUnreadyPods", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 5,
              .not_ready = 2,
              .target = 50,
              .value = 30,
              .quiet_start = true})
            .desired == 2);
}

namespace {

/// CPU at `cpu` % against `target` plus a second metric that never gets a sample (the
/// Go tests' "CheddarCheese" type, or an external metric whose API fails).
outgrow::scaling_decision with_broken_metric(int current, double target, double cpu,
                                             bool quiet_start) {
  controller k(2, 6);
  k.scaler.add_policy(outgrow::target_tracking(
      {.metrics = {{"cpu", target, util}, {"qps", 100.0, value}}}));
  k.scaler.set_replicas(current);
  if (quiet_start) {
    k.at(0s);
    k.observe("cpu", target);
    (void)k.scaler.evaluate();
  }
  k.at(600s);
  k.observe("cpu", cpu);
  return k.scaler.evaluate();
}

}  // namespace

// 300, 400, 500 of 1000 → 40 % against 30: a scale-up goes ahead without the other metric.
TEST_CASE("k8s horizontal_test.go TestScaleUpOneMetricInvalid", "[k8s][hpa]") {
  const auto d = with_broken_metric(3, 30, 40, false);
  CHECK(d.desired == 4);
  CHECK(d.missing_data);
}

TEST_CASE("k8s horizontal_test.go TestScaleUpOneMetricEmpty", "[k8s][hpa]") {
  CHECK(with_broken_metric(3, 30, 40, false).desired == 4);
}

// CPU alone would scale 5 → 3; with an invalid metric the HPA does not scale down.
TEST_CASE("k8s horizontal_test.go TestNoScaleDownOneMetricInvalid", "[k8s][hpa]") {
  const auto d = with_broken_metric(5, 50, 28, true);
  CHECK(d.desired == 5);
  CHECK(d.limited_by == scale_limit::missing_metrics);
}

TEST_CASE("k8s horizontal_test.go TestNoScaleDownOneMetricEmpty", "[k8s][hpa]") {
  const auto d = with_broken_metric(5, 50, 28, true);
  CHECK(d.desired == 5);
  CHECK(d.limited_by == scale_limit::missing_metrics);
}

TEST_CASE("k8s horizontal_test.go TestScaleUpBothMetricsEmpty", "[k8s][hpa]") {
  controller k(2, 6);
  k.scaler.add_policy(outgrow::target_tracking({.metrics = {{"qps", 100.0, value}}}));
  k.scaler.set_replicas(3);
  const auto d = k.scaler.evaluate();
  CHECK(d.desired == 3);
  CHECK(d.limited_by == scale_limit::missing_metrics);
}

TEST_CASE("k8s horizontal_test.go TestEmptyMetrics", "[k8s][hpa]") {
  controller k(2, 6);
  k.scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 100.0, util}}}));
  k.scaler.set_replicas(4);
  const auto d = k.scaler.evaluate();
  CHECK(d.desired == 4);
  CHECK(d.limited_by == scale_limit::missing_metrics);
}

TEST_CASE("k8s horizontal_test.go TestTolerance", "[k8s][hpa]") {
  const auto d = sync({.min = 1, .max = 5, .current = 3, .target = 100, .value = 102});
  CHECK(d.desired == 3);
  CHECK(d.limited_by == scale_limit::tolerance);
}

TEST_CASE("k8s horizontal_test.go TestToleranceCM", "[k8s][hpa]") {
  CHECK(sync({.min = 1,
              .max = 5,
              .current = 3,
              .type = per_pod,
              .target = 20000,
              .value = 61001.0 / 3.0})
            .desired == 3);
}

TEST_CASE("k8s horizontal_test.go TestToleranceCMObject", "[k8s][hpa]") {
  CHECK(sync({.min = 1,
              .max = 5,
              .current = 3,
              .type = value,
              .target = 20000,
              .value = 20050})
            .desired == 3);
}

TEST_CASE("k8s horizontal_test.go TestToleranceCMExternal", "[k8s][hpa]") {
  CHECK(
      sync({.min = 2, .max = 6, .current = 4, .type = value, .target = 8666, .value = 8600})
          .desired == 4);
}

TEST_CASE("k8s horizontal_test.go TestTolerancePerPodCMObject", "[k8s][hpa]") {
  CHECK(
      sync({.min = 2, .max = 6, .current = 4, .type = total, .target = 2200, .value = 8600})
          .desired == 4);
}

TEST_CASE("k8s horizontal_test.go TestTolerancePerPodCMExternal", "[k8s][hpa]") {
  CHECK(
      sync({.min = 2, .max = 6, .current = 4, .type = total, .target = 2200, .value = 8600})
          .desired == 4);
}

// 10, 95, 10 on 0.9/1.0/1.1 → 3.83 % against 90: 1, raised to minReplicas 2.
TEST_CASE("k8s horizontal_test.go TestMinReplicas", "[k8s][hpa]") {
  const auto d = sync({.min = 2,
                       .max = 5,
                       .current = 3,
                       .target = 90,
                       .value = 115.0 / 30.0,
                       .quiet_start = true});
  CHECK(d.desired == 2);
  CHECK(d.limited_by == scale_limit::min_replicas);  // the HPA: TooFewReplicas
}

TEST_CASE("k8s horizontal_test.go TestZeroMinReplicasDesiredZero", "[k8s][hpa]") {
  CHECK(
      sync(
          {.min = 0, .max = 5, .current = 3, .target = 90, .value = 0, .quiet_start = true})
          .desired == 0);
}

TEST_CASE("k8s horizontal_test.go TestMinReplicasDesiredZero", "[k8s][hpa]") {
  const auto d = sync(
      {.min = 2, .max = 5, .current = 3, .target = 90, .value = 0, .quiet_start = true});
  CHECK(d.desired == 2);
  CHECK(d.limited_by == scale_limit::min_replicas);
}

// Deliberate difference (autoscaler.hpp): the HPA reads a target scaled to 0 with
// minReplicas 3 as "scaling disabled" and leaves 0; we bring the count up to min.
TEST_CASE("k8s horizontal_test.go TestZeroReplicas", "[k8s][hpa][differs]") {
  controller k(3, 5);
  k.scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 90.0, util}}}));
  k.scaler.set_replicas(0);
  const auto d = k.scaler.evaluate();
  CHECK(d.desired == 3);  // the HPA: 0
  CHECK(d.limited_by == scale_limit::min_replicas);
}

// Below minReplicas: brought up at once, metrics or not.
TEST_CASE("k8s horizontal_test.go TestTooFewReplicas", "[k8s][hpa]") {
  controller k(3, 5);
  k.scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 90.0, util}}}));
  k.scaler.set_replicas(2);
  CHECK(k.scaler.evaluate().desired == 3);
}

TEST_CASE("k8s horizontal_test.go TestTooManyReplicas", "[k8s][hpa]") {
  controller k(3, 5);
  k.scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 90.0, util}}}));
  k.scaler.set_replicas(10);
  const auto d = k.scaler.evaluate();
  CHECK(d.desired == 5);
  CHECK(d.limited_by == scale_limit::max_replicas);
}

// 8000, 9500, 1000 on 0.9/1.0/1.1 → 616.7 % against 90.
TEST_CASE("k8s horizontal_test.go TestMaxReplicas", "[k8s][hpa]") {
  const auto d =
      sync({.min = 2, .max = 5, .current = 3, .target = 90, .value = 18500.0 / 30.0});
  CHECK(d.desired == 5);
  CHECK(d.limited_by == scale_limit::max_replicas);
}

TEST_CASE("k8s horizontal_test.go TestSuperfluousMetrics", "[k8s][hpa]") {
  const auto d = sync({.min = 2, .max = 6, .current = 4, .target = 100, .value = 587.5});
  CHECK(d.desired == 6);
  CHECK(d.limited_by == scale_limit::max_replicas);
}

TEST_CASE("k8s horizontal_test.go TestMissingMetrics", "[k8s][hpa]") {
  CHECK(sync({.min = 2,
              .max = 6,
              .current = 4,
              .target = 100,
              .value = 24.75,
              .reporting = 2,
              .quiet_start = true})
            .desired == 3);
}

// 200 m on a 200 m request: 100 % against 50.
TEST_CASE("k8s horizontal_test.go TestEventCreated", "[k8s][hpa]") {
  CHECK(sync({.min = 1, .max = 5, .current = 1, .target = 50, .value = 100}).desired == 2);
}

TEST_CASE("k8s horizontal_test.go TestEventNotCreated", "[k8s][hpa]") {
  CHECK(sync({.min = 1, .max = 5, .current = 2, .target = 50, .value = 50}).desired == 2);
}

// generateScalingRules(0, 0, 700, 60, 0): +700 % per minute; 200 % against 10 wants 60.
TEST_CASE("k8s horizontal_test.go TestUpscaleCap", "[k8s][hpa]") {
  const auto d = sync({.min = 1,
                       .max = 100,
                       .current = 3,
                       .target = 10,
                       .value = 200,
                       .behavior = {rules(0, 0, 700, 60), default_down()}});
  CHECK(d.desired == 24);
  CHECK(d.limited_by == scale_limit::scale_up_rate);  // the HPA: ScaleUpLimit
}

TEST_CASE("k8s horizontal_test.go TestUpscaleCapGreaterThanMaxReplicas", "[k8s][hpa]") {
  const auto d = sync({.min = 1,
                       .max = 20,
                       .current = 3,
                       .target = 10,
                       .value = 200,
                       .behavior = {rules(0, 0, 700, 60), default_down()}});
  CHECK(d.desired == 20);
  CHECK(d.limited_by == scale_limit::max_replicas);
}

// The scale update fails: the count stays 3.
TEST_CASE("k8s horizontal_test.go TestConditionFailedUpdateScale", "[k8s][hpa]") {
  controller k(1, 5);
  k.scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 100.0, util}}}));
  k.scaler.on_scale([](const outgrow::scaling_decision&) { return false; });
  k.scaler.set_replicas(3);
  k.observe("cpu", 150);
  const auto d = k.scaler.tick();
  CHECK(d.desired == 5);
  CHECK(k.scaler.metrics().current == 3);
  CHECK(k.scaler.metrics().actuation_failures == 1);
}

TEST_CASE("k8s horizontal_test.go TestNoBackoffUpscaleCM", "[k8s][hpa]") {
  CHECK(sync({.min = 1,
              .max = 5,
              .current = 3,
              .type = per_pod,
              .target = 15000,
              .value = 20000})
            .desired == 4);
}

// CPU (20000, 10000, 30000 m on 1-CPU requests → 2000 % against 10) and qps together.
TEST_CASE("k8s horizontal_test.go TestNoBackoffUpscaleCMNoBackoffCpu", "[k8s][hpa]") {
  controller k(1, 5);
  k.scaler.add_policy(outgrow::target_tracking(
      {.metrics = {{"cpu", 10.0, util}, {"qps", 15000.0, per_pod}}}));
  k.scaler.set_replicas(3);
  k.observe("cpu", 2000);
  k.observe("qps", 20000);
  const auto d = k.scaler.evaluate();
  CHECK(d.desired == 5);
  CHECK(d.limited_by == scale_limit::max_replicas);
}

// recommendations {10, 10 min ago}, {4, 1 min ago}; 50 % against 100 asks for 2.
TEST_CASE("k8s horizontal_test.go TestStabilizeDownscale", "[k8s][hpa]") {
  controller k(1, 5);
  k.scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 100.0, util}}}));
  k.scaler.set_replicas(4);
  k.at(0s);
  k.observe("cpu", 250);                       // recommends 10 (not applied)
  REQUIRE(k.scaler.evaluate().proposed == 8);  // +100 % per 15 s from 4
  k.at(540s);
  k.observe("cpu", 100);  // recommends 4
  (void)k.scaler.evaluate();
  k.at(600s);
  k.observe("cpu", 50);
  const auto d = k.scaler.evaluate();
  CHECK(d.desired == 4);
  CHECK(d.limited_by == scale_limit::stabilization);
}

TEST_CASE("k8s horizontal_test.go TestComputedToleranceAlgImplementation", "[k8s][hpa]") {
  CHECK(sync({.min = 0,
              .max = 1000,
              .current = 10,
              .target = 56,
              .value = 50,
              .quiet_start = true})
            .desired == 9);
  CHECK(sync({.min = 0,
              .max = 1000,
              .current = 10,
              .target = 55,
              .value = 50,
              .quiet_start = true})
            .desired == 10);
}

// 1 replica, minReplicas 2: up at once (CPU at 0 %; target 80, the HPA's default).
TEST_CASE("k8s horizontal_test.go TestScaleUpRCImmediately", "[k8s][hpa]") {
  const auto d = sync({.min = 2, .max = 6, .current = 1, .target = 80, .value = 0});
  CHECK(d.desired == 2);
  CHECK(d.limited_by == scale_limit::min_replicas);
}

TEST_CASE("k8s horizontal_test.go TestScaleDownRCImmediately", "[k8s][hpa]") {
  const auto d =
      sync({.min = 2, .max = 5, .current = 6, .target = 50, .value = 18500.0 / 30.0});
  CHECK(d.desired == 5);
  CHECK(d.limited_by == scale_limit::max_replicas);
}

// ---------------------------------------------------------------------------------
// horizontal_test.go — rate limits (convertDesiredReplicasWithBehaviorRate)
// ---------------------------------------------------------------------------------

TEST_CASE("k8s horizontal_test.go TestScalingWithRules", "[k8s][hpa][rules]") {
  const auto check = [](const rate_case& c, int expected, scale_limit limit) {
    const auto d = rate_limited(c);
    CHECK(d.desired == expected);
    if (limit != scale_limit::none) CHECK(d.limited_by == limit);
  };
  constexpr auto within = scale_limit::none;  // the HPA: DesiredWithinRange
  constexpr auto up_limit = scale_limit::scale_up_rate;
  constexpr auto down_limit = scale_limit::scale_down_rate;
  constexpr auto too_few = scale_limit::min_replicas;
  constexpr auto too_many = scale_limit::max_replicas;
  SECTION("prenormalized desired replicas within range") {
    check({.current = 5, .desired = 7, .min = 3, .max = 8}, 7, within);
  }
  SECTION("prenormalized desired replicas < minReplicas") {
    check({.current = 3, .desired = 1, .min = 2, .max = 8}, 2, too_few);
  }
  SECTION("prenormalized desired replicas within range when minReplicas is 0") {
    check({.current = 1, .desired = 0, .min = 0, .max = 10}, 0, within);
  }
  SECTION("maxReplicas is the limit because maxReplicas < scaleUpLimit") {
    check({.current = 20, .desired = 1000, .min = 1, .max = 10}, 10, too_many);
  }
  SECTION("desired replica count is more than the maximum replica count") {
    check({.current = 100, .desired = 1000, .min = 100, .max = 150}, 150, too_many);
  }
  SECTION(
      "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies") {
    check({.current = 3, .desired = 1000, .min = 1, .max = 2000, .up = rules(0, 0, 1, 60)},
          4, up_limit);
  }
  SECTION("scaleUp with default behavior") {
    check({.current = 10, .desired = 50}, 20, up_limit);
  }
  SECTION("scaleUp with pods policy larger than percent policy") {
    check({.current = 10, .desired = 500, .up = rules(100, 60, 100, 60)}, 110, up_limit);
  }
  SECTION("scaleUp with percent policy larger than pods policy") {
    check({.current = 10, .desired = 500, .up = rules(2, 60, 100, 60)}, 20, up_limit);
  }
  SECTION("scaleUp with spec MaxReplicas limitation with large pod policy") {
    check({.current = 10, .desired = 50, .up = rules(100, 60, 0, 0)}, 50, within);
  }
  SECTION("scaleUp with spec MaxReplicas limitation with large percent policy") {
    check({.current = 10, .desired = 50, .up = rules(10000, 60, 0, 0)}, 50, within);
  }
  SECTION("scaleUp with pod policy limitation") {
    check({.current = 10, .desired = 50, .up = rules(30, 60, 0, 0)}, 40, up_limit);
  }
  SECTION("scaleUp with percent policy limitation") {
    check({.current = 10, .desired = 50, .up = rules(0, 0, 200, 60)}, 30, up_limit);
  }
  SECTION("scaleDown with percent policy larger than pod policy") {
    check({.current = 100, .desired = 2, .down = rules(20, 60, 1, 60)}, 80, down_limit);
  }
  SECTION("scaleDown with pod policy larger than percent policy") {
    check({.current = 100, .desired = 2, .down = rules(2, 60, 1, 60)}, 98, down_limit);
  }
  SECTION("scaleDown with spec MinReplicas=nil limitation with large pod policy") {
    check({.current = 10, .desired = 0, .down = rules(100, 60, 0, 0)}, 1, too_few);
  }
  SECTION("scaleDown with spec MinReplicas limitation with large pod policy") {
    check({.current = 10, .desired = 0, .down = rules(100, 60, 0, 0)}, 1, too_few);
  }
  SECTION("scaleDown with spec MinReplicas limitation with large percent policy") {
    check({.current = 10, .desired = 2, .min = 5, .down = rules(0, 0, 100, 60)}, 5,
          too_few);
  }
  SECTION("scaleDown with pod policy limitation") {
    check({.current = 10, .desired = 2, .down = rules(5, 60, 0, 0)}, 5, down_limit);
  }
  SECTION("scaleDown with percent policy limitation") {
    check({.current = 10, .desired = 5, .down = rules(0, 0, 50, 60)}, 5, within);
  }
  SECTION("scaleUp with spec MaxReplicas limitation with large pod policy and events") {
    check({.current = 100,
           .desired = 500,
           .max = 200,
           .up = rules(300, 60, 0, 0),
           .events = uniform_events({1, 5, 9})},
          200, too_many);
  }
  SECTION("scaleUp with spec MaxReplicas limitation with large percent policy and events") {
    check({.current = 100,
           .desired = 500,
           .max = 200,
           .up = rules(0, 0, 10000, 60),
           .events = uniform_events({1, 5, 9})},
          200, too_many);
  }
  SECTION(
      "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of "
      "recent "
      "scale up events") {
    // 120 s ago there were 85: 85 + 5 < 100, so no scale-up at all.
    check({.current = 100,
           .desired = 500,
           .up = rules(5, 120, 0, 0),
           .events = uniform_events({1, 5, 9})},
          100, up_limit);
  }
  SECTION("scaleUp with pod policy and previous scale up events") {
    check({.current = 100,
           .desired = 500,
           .up = rules(150, 120, 0, 0),
           .events = uniform_events({1, 5, 9})},
          235, up_limit);
  }
  SECTION("scaleUp with percent policy and previous scale up events") {
    check({.current = 100,
           .desired = 500,
           .up = rules(0, 0, 200, 120),
           .events = uniform_events({1, 5, 9})},
          255, up_limit);
  }
  SECTION("scaleUp with percent policy and previous scale up and down events") {
    // +4 and −2, both 60 s ago: 4 at the period start, +300 % → 16.
    check({.current = 6,
           .desired = 24,
           .up = rules(0, 0, 300, 300),
           .events = {{60s, +4}, {60s, -2}}},
          16, up_limit);
  }
  SECTION("scaleDown with default policy and previous events") {
    check({.current = 10, .desired = 5, .events = uniform_events({-1, -5, -9})}, 5, within);
  }
  SECTION(
      "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous "
      "events") {
    check({.current = 100,
           .desired = 0,
           .down = rules(115, 120, 0, 0),
           .events = uniform_events({-1, -5, -9})},
          1, too_few);
  }
  SECTION(
      "scaleDown with spec MinReplicas limitation with large pod policy and previous "
      "events") {
    check({.current = 100,
           .desired = 0,
           .min = 5,
           .down = rules(130, 120, 0, 0),
           .events = uniform_events({-1, -5, -9})},
          5, too_few);
  }
  SECTION(
      "scaleDown with spec MinReplicas limitation with large percent policy and previous "
      "events") {
    check({.current = 100,
           .desired = 2,
           .min = 5,
           .down = rules(0, 0, 100, 120),
           .events = uniform_events({-1, -5, -9})},
          5, too_few);
  }
  SECTION("scaleDown with pod policy limitation and previous events") {
    // 115 at the period start − 5 = 110 > 100: no scale-down.
    check({.current = 100,
           .desired = 2,
           .down = rules(5, 120, 0, 0),
           .events = uniform_events({-1, -5, -9})},
          100, down_limit);
  }
  SECTION("scaleDown with percent policy limitation and previous events") {
    check({.current = 100,
           .desired = 0,
           .down = rules(0, 0, 50, 120),
           .events = uniform_events({-2, -4, -6})},
          56, down_limit);
  }
  SECTION("scaleDown with percent policy and previous scale up and down events") {
    check({.current = 10,
           .desired = 1,
           .down = rules(0, 0, 50, 180),
           .events = {{60s, +2}, {60s, -4}}},
          6, down_limit);
  }
  SECTION("scaleDown with previous events preventing further scale down") {
    check({.current = 100,
           .desired = 0,
           .down = rules(0, 0, 10, 120),
           .events = uniform_events({-10, -10, -10})},
          100, down_limit);
  }
  SECTION("scaleDown with with previous events still allowing more scale down") {
    check({.current = 10,
           .desired = 5,
           .down = rules(0, 0, 1000, 120),
           .events = uniform_events({-10, -10, -10})},
          5, within);
  }
  SECTION("check outdated flag for events for one behavior for up") {
    check({.current = 100,
           .desired = 200,
           .up = rules(1000, 60, 0, 0),
           .events = uniform_events({8, 12, 9, 11})},
          200, within);
  }
  SECTION(
      "check that events were not marked outdated for two different policies in the "
      "behavior "
      "for up") {
    check({.current = 100,
           .desired = 200,
           .up = rules(1000, 120, 100, 60),
           .events = uniform_events({8, 12, 9, 11})},
          200, within);
  }
  SECTION(
      "check that events were marked outdated for two different policies in the behavior "
      "for "
      "up") {
    check({.current = 100,
           .desired = 200,
           .up = rules(1000, 30, 100, 60),
           .events = uniform_events({8, 12, 9, 11})},
          200, within);
  }
  SECTION("check outdated flag for events for one behavior for down") {
    check({.current = 100,
           .desired = 5,
           .down = rules(1000, 60, 0, 0),
           .events = uniform_events({-8, -12, -9, -11})},
          5, within);
  }
  SECTION(
      "check that events were not marked outdated for two different policies in the "
      "behavior "
      "for down") {
    check({.current = 100,
           .desired = 5,
           .down = rules(1000, 120, 100, 60),
           .events = uniform_events({-8, -12, -9, -11})},
          5, within);
  }
  SECTION(
      "check that events were marked outdated for two different policies in the behavior "
      "for "
      "down") {
    check({.current = 100,
           .desired = 5,
           .down = rules(1000, 30, 100, 60),
           .events = uniform_events({-8, -12, -9, -11})},
          5, within);
  }
}

// selectPolicy Min: +2 pods → 3, +50 % → ceil(1.5) = 2; the smaller change wins.
TEST_CASE("k8s horizontal_test.go TestCalculateScaleUpLimitWithScalingRules",
          "[k8s][hpa][rules]") {
  CHECK(rate_limited(
            {.current = 1, .desired = 1000, .up = rules(2, 60, 50, 60, select_policy::min)})
            .desired == 2);
}

// selectPolicy Min: −2 pods → 3, −50 % → trunc(2.5) = 2; the smaller change wins.
TEST_CASE("k8s horizontal_test.go TestCalculateScaleDownLimitWithBehaviors",
          "[k8s][hpa][rules]") {
  CHECK(rate_limited(
            {.current = 5, .desired = 0, .down = rules(2, 60, 50, 60, select_policy::min)})
            .desired == 3);
}

// ---------------------------------------------------------------------------------
// horizontal_test.go — stabilization windows
// ---------------------------------------------------------------------------------

TEST_CASE("k8s horizontal_test.go TestNormalizeDesiredReplicasWithBehavior",
          "[k8s][hpa][stabilization]") {
  SECTION("empty recommendations for scaling down") {
    CHECK(stabilized({.current = 100, .desired = 5}) == 5);
  }
  SECTION("simple scale down stabilization") {
    CHECK(stabilized({.current = 100,
                      .down_window = 180s,
                      .recommendations = {{120s, 4}, {60s, 5}},
                      .desired = 3}) == 5);
  }
  SECTION("simple scale up stabilization") {
    CHECK(stabilized({.current = 1,
                      .up_window = 300s,
                      .recommendations = {{120s, 4}, {60s, 5}},
                      .desired = 7}) == 4);
  }
  SECTION("no scale down stabilization") {
    CHECK(stabilized({.current = 100,
                      .up_window = 300s,
                      .recommendations = {{120s, 1}, {60s, 2}},
                      .desired = 3}) == 3);
  }
  SECTION("no scale up stabilization") {
    CHECK(stabilized({.current = 1,
                      .down_window = 300s,
                      .recommendations = {{120s, 4}, {60s, 5}},
                      .desired = 3}) == 3);
  }
  SECTION("no scale down stabilization and reuse recommendation element") {
    CHECK(stabilized(
              {.current = 100, .recommendations = {{600s, 10}, {540s, 9}}, .desired = 3}) ==
          3);
  }
  SECTION("no scale up stabilization and reuse recommendation element") {
    CHECK(stabilized(
              {.current = 1, .recommendations = {{600s, 10}, {540s, 9}}, .desired = 100}) ==
          100);
  }
  SECTION("scale down stabilization and reuse one of obsolete recommendation element") {
    CHECK(stabilized({.current = 100,
                      .down_window = 180s,
                      .recommendations = {{600s, 10}, {60s, 4}, {120s, 5}, {540s, 9}},
                      .desired = 3}) == 5);
  }
  SECTION("scale up stabilization and reuse one of obsolete recommendation element") {
    CHECK(stabilized({.current = 1,
                      .up_window = 300s,
                      .recommendations = {{6000s, 10}, {60s, 6}, {120s, 5}, {180s, 9}},
                      .desired = 100}) == 5);
  }
  SECTION(
      "scale up and down stabilization and do not scale up when prenormalized rec goes "
      "down") {
    CHECK(stabilized({.current = 2,
                      .up_window = 300s,
                      .down_window = 300s,
                      .recommendations = {{6000s, 2}, {180s, 3}},
                      .desired = 1}) == 2);
  }
  SECTION(
      "scale up and down stabilization and do not scale down when prenormalized rec goes "
      "up") {
    CHECK(stabilized({.current = 2,
                      .up_window = 300s,
                      .down_window = 300s,
                      .recommendations = {{6000s, 2}, {180s, 1}},
                      .desired = 3}) == 2);
  }
}

// The legacy stabilization (no behavior): the highest recommendation of the last 5 min.
TEST_CASE("k8s horizontal_test.go TestNormalizeDesiredReplicas",
          "[k8s][hpa][stabilization]") {
  const auto legacy = [](std::vector<std::pair<std::chrono::seconds, int>> recs,
                         int desired_now) {
    return stabilized({.current = 100,
                       .down_window = 300s,
                       .recommendations = std::move(recs),
                       .desired = desired_now,
                       .rate_limits = true});
  };
  SECTION("empty log") {
    CHECK(legacy({}, 5) == 5);
  }
  SECTION("stabilize") {
    CHECK(legacy({{120s, 4}, {60s, 5}}, 3) == 5);
  }
  SECTION("no stabilize") {
    CHECK(legacy({{120s, 1}, {60s, 2}}, 3) == 3);
  }
  SECTION("no stabilize - old recommendations") {
    CHECK(legacy({{600s, 10}, {540s, 9}}, 3) == 3);
  }
  SECTION("stabilize - old recommendations") {
    CHECK(legacy({{600s, 10}, {60s, 4}, {120s, 5}, {540s, 9}}, 3) == 5);
  }
}
