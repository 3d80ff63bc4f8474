// Conformance: backlog_scaling against KEDA's documented activation and cooldown rules.
//
// Sources (kedacore/keda-docs, content/docs/2.15):
//   concepts/scaling-deployments.md "Activating and Scaling thresholds";
//   reference/scaledobject-spec.md cooldownPeriod, initialCooldownPeriod,
//     minReplicaCount, idleReplicaCount;
//   scalers/aws-sqs.md queueLength / activationQueueLength.
// Each TEST_CASE names its document and the rule; the facts are KEDA's, the code ours.
// KEDA's minReplicaCount is the autoscaler's min_replicas; its scaler metric is the
// backlog sample; its activation threshold is activation_threshold; the scaling phase
// (1 <-> N) is the HPA with an External AverageValue metric, as KEDA generates it.
//
// Not ported: idleReplicaCount (not supported here), fallback (not supported),
// pollingInterval (the autoscaler evaluates when ticked).
#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/autoscale/scaling_policy.hpp>

#include <chrono>
#include <string_view>

#include <outgrow/core/clock.hpp>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::scale_limit;

namespace {

/// A ScaledObject: an autoscaler on a manual clock with one backlog_scaling trigger.
struct scaled_object {
  outgrow::manual_clock clock;
  outgrow::autoscaler<outgrow::manual_clock> scaler;

  scaled_object(int min_replica_count, outgrow::backlog_scaling_config trigger,
                int max_replica_count = 100)
      : scaler({.min_replicas = min_replica_count, .max_replicas = max_replica_count},
               clock) {
    trigger.metric = "queue";
    scaler.add_policy(outgrow::backlog_scaling(std::move(trigger)));
  }
  /// Observes `queue` at `t` and ticks (applies the decision).
  outgrow::scaling_decision poll(std::chrono::seconds t, double queue) {
    clock.set(outgrow::scaling_time_point{t});
    REQUIRE(scaler.observe("queue", queue));
    return scaler.tick();
  }
  int replicas() const { return scaler.metrics().current; }
};

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

}  // namespace

// "Activation only occurs when this value is greater than the set value; not greater
// than or equal to."
TEST_CASE(
    "keda scaling-deployments.md activation only when greater than activationThreshold",
    "[keda]") {
  scaled_object so(0, {.target_per_replica = 5, .activation_threshold = 10});
  so.scaler.set_replicas(0);
  auto d = so.poll(0s, 10.0);
  CHECK(d.desired == 0);
  CHECK(d.limited_by == scale_limit::activation);
  d = so.poll(15s, 11.0);
  CHECK(d.desired == 3);  // active: ceil(11 / 5)
}

// "the activation value is always optional and the default value is 0" — "activation
// Threshold: 0 will only activate when the metric value is 1 or more".
TEST_CASE("keda scaling-deployments.md activationThreshold 0 activates at 1 or more",
          "[keda]") {
  scaled_object so(0, {.target_per_replica = 5});
  so.scaler.set_replicas(0);
  CHECK(so.poll(0s, 0.0).desired == 0);
  CHECK(so.poll(15s, 1.0).desired == 1);
}

// "The activation value has more priority than the scaling value in case of different
// decisions for each. ie: threshold: 10 and activationThreshold: 50, in case of 40
// messages the scaler is not active and it'll be scaled to zero even the HPA requires 4
// instances."
TEST_CASE("keda scaling-deployments.md activation has more priority than the scaling value",
          "[keda]") {
  SECTION("never active: to zero at once") {
    scaled_object so(0, {.target_per_replica = 10, .activation_threshold = 50});
    so.scaler.set_replicas(4);
    const auto d = so.poll(0s, 40.0);
    CHECK(d.desired == 0);
    CHECK(contains(d.reason.view(), "scale to zero"));
  }
  SECTION("after activity: to zero once the cooldown has passed") {
    scaled_object so(0, {.target_per_replica = 10, .activation_threshold = 50});
    so.scaler.set_replicas(4);
    CHECK(so.poll(0s, 60.0).desired == 6);
    for (auto t = 15s; t < 300s; t += 15s) REQUIRE(so.poll(t, 40.0).desired >= 4);
    CHECK(so.poll(300s, 40.0).desired == 0);
  }
}

// "If the minimum replicas is >= 1, the scaler is always active and the activation value
// will be ignored." The issue's case: min 1, activation 50, target 10, 40 queued, 4
// replicas → 4 (the proportional answer), not "scale to zero" clamped to 1.
TEST_CASE(
    "keda scaling-deployments.md activation ignored when minReplicaCount is 1 or more",
    "[keda]") {
  scaled_object so(1, {.target_per_replica = 10, .activation_threshold = 50});
  so.scaler.set_replicas(4);
  for (auto t = 0s; t <= 900s; t += 15s) {
    const auto d = so.poll(t, 40.0);
    REQUIRE(d.desired == 4);
    REQUIRE(d.limited_by == scale_limit::tolerance);  // 40 / (10 × 4) = 1
  }
}

// minReplicaCount: "Minimum number of replicas KEDA will scale the resource down to."
// With a minimum of 2, an idle queue scales down to 2 (through the HPA), never to 0.
TEST_CASE("keda scaledobject-spec.md minReplicaCount is the floor when it is 1 or more",
          "[keda]") {
  scaled_object so(2, {.target_per_replica = 10});
  so.scaler.set_replicas(6);
  for (auto t = 0s; t <= 1200s; t += 15s) REQUIRE(so.poll(t, 0.0).desired >= 2);
  CHECK(so.replicas() == 2);
}

// cooldownPeriod: "The period to wait after the last trigger reported active before
// scaling the resource back to 0 ... By default, it's 300 (5 minutes)."
TEST_CASE("keda scaledobject-spec.md cooldownPeriod waits after the last activity",
          "[keda]") {
  scaled_object so(0, {.target_per_replica = 5});
  so.scaler.set_replicas(2);
  for (auto t = 0s; t <= 60s; t += 15s) REQUIRE(so.poll(t, 10.0).desired == 2);  // active
  for (auto t = 75s; t < 360s; t += 15s) REQUIRE(so.poll(t, 0.0).desired >= 1);
  const auto d = so.poll(360s, 0.0);  // 300 s after the last activity (60 s)
  CHECK(d.desired == 0);
  CHECK(contains(d.reason.view(), "for 5min"));
}

// "the KEDA cooldownPeriod only applies when scaling to 0; scaling from 1 to N replicas
// is handled by the Kubernetes Horizontal Pod Autoscaler": with a 1 h cooldown, a
// busy-but-smaller queue scales 20 → 2 after the HPA's 5-minute window.
TEST_CASE("keda scaledobject-spec.md cooldownPeriod only applies when scaling to zero",
          "[keda]") {
  scaled_object so(0, {.target_per_replica = 5, .cooldown = 1h});
  so.scaler.set_replicas(20);
  CHECK(so.poll(0s, 100.0).desired == 20);
  for (auto t = 15s; t < 300s; t += 15s) REQUIRE(so.poll(t, 10.0).desired == 20);
  CHECK(so.poll(300s, 10.0).desired == 2);  // ceil(10 / 5), long before the cooldown
}

// "The cooldownPeriod only applies after a trigger occurs; when you first create your
// Deployment ... KEDA will immediately scale it to minReplicaCount."
TEST_CASE("keda scaledobject-spec.md cooldownPeriod only applies after a trigger occurs",
          "[keda]") {
  scaled_object so(0, {.target_per_replica = 5});
  so.scaler.set_replicas(3);
  const auto d = so.poll(0s, 0.0);
  CHECK(d.desired == 0);
  CHECK(contains(d.reason.view(), "never active"));
}

// initialCooldownPeriod: "KEDA will not scale the resource back to 0 until 120 seconds
// have passed since the ScaledObject creation".
TEST_CASE("keda scaledobject-spec.md initialCooldownPeriod delays scale to zero",
          "[keda]") {
  scaled_object so(0, {.target_per_replica = 5, .initial_cooldown = 120s});
  so.scaler.set_replicas(3);
  for (auto t = 0s; t < 120s; t += 15s) REQUIRE(so.poll(t, 0.0).desired >= 1);
  CHECK(so.poll(120s, 0.0).desired == 0);
}

// aws-sqs queueLength: "if one pod can handle 10 messages, set the queue length target to
// 10. If the actual messages in the SQS Queue is 30, the scaler scales to 3 pods."
TEST_CASE("keda aws-sqs.md queueLength 10 with 30 messages scales to 3 pods", "[keda]") {
  scaled_object so(0, {.target_per_replica = 10});
  so.scaler.set_replicas(1);
  CHECK(so.poll(0s, 30.0).desired == 3);
}

// Defaults: activationThreshold / activationQueueLength 0, cooldownPeriod 300,
// initialCooldownPeriod 0, aws-sqs queueLength 5.
TEST_CASE("keda scaledobject-spec.md and aws-sqs.md defaults", "[keda]") {
  const outgrow::backlog_scaling_config c;
  CHECK(c.activation_threshold == 0.0);
  CHECK(c.cooldown == 300s);
  CHECK(c.initial_cooldown == 0s);
  CHECK(c.target_per_replica == 5.0);
}

// "Activation phase: ... KEDA takes responsibility for this action ... and only applies
// to 0<->1 scaling"; the HPA then scales 1 <-> N. Deliberate difference
// (scaling_policy.hpp, backlog_scaling): from zero we go straight to the proportional count
// through the HPA's scale-up limit (+4 from 0 by default), where KEDA sets 1 and the HPA
// takes the next step on its next sync.
TEST_CASE("keda scaling-deployments.md activation phase scales 0 to 1", "[keda][differs]") {
  scaled_object so(0, {.target_per_replica = 5});
  so.scaler.set_replicas(0);
  const auto d = so.poll(0s, 100.0);
  CHECK(d.desired == 4);  // KEDA: 1, then the HPA
  CHECK(d.limited_by == scale_limit::scale_up_rate);
}
