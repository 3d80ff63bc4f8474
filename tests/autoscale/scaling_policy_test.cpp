#include <outgrow/autoscale/scaling_policy.hpp>

#include <chrono>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::metric_target_type;
using outgrow::rate_limit_type;
using outgrow::scale_limit;

namespace {

/// An autoscaler on a manual clock; every call is made at `t` seconds.
struct rig {
  outgrow::manual_clock clock;
  outgrow::autoscaler<outgrow::manual_clock> scaler;

  explicit rig(outgrow::autoscaler_config config = {.min_replicas = 1, .max_replicas = 100})
      : scaler(config, clock) {}

  void at(std::chrono::seconds t) { clock.set(outgrow::scaling_time_point{t}); }
  void observe(std::string_view metric, double value, int reporting = -1) {
    REQUIRE(scaler.observe(metric, value, clock.now(), reporting));
  }
  /// Decides and applies (no actuator: the count changes to the decision).
  outgrow::scaling_decision tick() { return scaler.tick(); }
};

outgrow::target_tracking cpu_target(double target,
                                    outgrow::scaling_behavior behavior = {}) {
  return outgrow::target_tracking(
      {.metrics = {{"cpu", target, metric_target_type::utilization}},
       .behavior = behavior});
}

outgrow::scaling_behavior no_down_window() {
  outgrow::scaling_behavior b;
  b.scale_down.stabilization_window = 0s;
  return b;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

}  // namespace

// ---------------------------------------------------------------------------------
// target_tracking: the Kubernetes HPA algorithm
// ---------------------------------------------------------------------------------

TEST_CASE("target_tracking desired is ceil of current times value over target", "[hpa]") {
  rig r;
  r.scaler.add_policy(cpu_target(50.0));
  r.scaler.set_replicas(4);
  r.observe("cpu", 90.0);  // ratio 1.8: ceil(4 x 1.8) = ceil(7.2) = 8
  const auto d = r.scaler.evaluate();
  CHECK(d.desired == 8);
  CHECK(d.direction() == outgrow::scale_direction::up);
  CHECK(d.limited_by == scale_limit::none);
  CHECK(d.policy == "target_tracking");
  CHECK(d.metric == "cpu");
  CHECK(d.value == 90.0);
  CHECK(d.target == 50.0);
}

TEST_CASE("target_tracking holds within the 0.1 tolerance band", "[hpa]") {
  SECTION("ratio 1.09 holds and 1.11 scales up") {
    rig r;
    r.scaler.add_policy(cpu_target(50.0));
    r.scaler.set_replicas(10);
    r.observe("cpu", 54.5);
    auto d = r.scaler.evaluate();
    CHECK(d.desired == 10);
    CHECK(d.limited_by == scale_limit::tolerance);
    CHECK(contains(d.reason.view(), "within tolerance"));
    r.observe("cpu", 55.5);  // ratio 1.11: ceil(11.1) = 12
    d = r.scaler.evaluate();
    CHECK(d.desired == 12);
  }
  SECTION("ratio 0.91 holds and 0.89 scales down") {
    rig r;
    r.scaler.add_policy(cpu_target(50.0, no_down_window()));
    r.scaler.set_replicas(10);
    r.observe("cpu", 45.5);
    auto d = r.scaler.evaluate();
    CHECK(d.desired == 10);
    CHECK(d.limited_by == scale_limit::tolerance);
    r.observe("cpu", 44.5);  // ratio 0.89: ceil(8.9) = 9
    d = r.scaler.evaluate();
    CHECK(d.desired == 9);
  }
  SECTION("a custom tolerance") {
    rig r;
    r.scaler.add_policy(outgrow::target_tracking(
        {.metrics = {{"cpu", 50.0}}, .tolerance = 0.0, .behavior = no_down_window()}));
    r.scaler.set_replicas(10);
    r.observe("cpu", 52.5);  // ratio 1.05 scales with tolerance 0
    CHECK(r.scaler.evaluate().desired == 11);
  }
}

TEST_CASE("target_tracking scale-down waits for the 300 s stabilization window", "[hpa]") {
  rig r;
  r.scaler.add_policy(cpu_target(50.0));
  r.scaler.set_replicas(10);
  r.at(0s);
  r.observe("cpu", 50.0);
  CHECK(r.tick().desired == 10);
  for (auto t = 15s; t <= 285s; t += 15s) {
    r.at(t);
    r.observe("cpu", 25.0);  // ratio 0.5: the metrics alone ask for 5
    const auto d = r.tick();
    REQUIRE(d.desired == 10);
    REQUIRE(d.limited_by == scale_limit::stabilization);
  }
  r.at(300s);  // the recommendation of 10 made at t = 0 leaves the window
  r.observe("cpu", 25.0);
  const auto d = r.tick();
  CHECK(d.desired == 5);
  CHECK(d.limited_by == scale_limit::none);
}

TEST_CASE("target_tracking scale-down takes the highest recommendation in the window",
          "[hpa]") {
  rig r;
  r.scaler.add_policy(cpu_target(50.0));
  r.scaler.set_replicas(10);
  r.at(0s);
  r.observe("cpu", 40.0);  // 8
  CHECK(r.tick().desired == 10);
  r.at(200s);
  r.observe("cpu", 30.0);  // 6
  CHECK(r.tick().desired == 10);
  r.at(301s);              // 10 and 8 (t = 0) have left the window; 6 (t = 200) has not
  r.observe("cpu", 20.0);  // 4
  auto d = r.tick();
  CHECK(d.desired == 6);
  CHECK(d.limited_by == scale_limit::stabilization);
  r.at(501s);  // only 4 (t = 301) is left; the metrics now ask for ceil(0.4 x 6) = 3
  r.observe("cpu", 20.0);
  d = r.tick();
  CHECK(d.desired == 4);
}

TEST_CASE("target_tracking scale-up is immediate with the default zero window", "[hpa]") {
  rig r;
  r.scaler.add_policy(cpu_target(50.0));
  r.scaler.set_replicas(10);
  r.at(0s);
  r.observe("cpu", 100.0);
  CHECK(r.tick().desired == 20);
}

TEST_CASE(
    "target_tracking scale-up stabilization takes the lowest recommendation in the window",
    "[hpa]") {
  outgrow::scaling_behavior b;
  b.scale_up.stabilization_window = 60s;
  rig r;
  r.scaler.add_policy(cpu_target(50.0, b));
  r.scaler.set_replicas(10);
  r.at(0s);
  r.observe("cpu", 50.0);
  CHECK(r.tick().desired == 10);
  for (auto t = 15s; t <= 45s; t += 15s) {
    r.at(t);
    r.observe("cpu", 100.0);  // asks for 20; 10 (t = 0) is still in the window
    const auto d = r.tick();
    REQUIRE(d.desired == 10);
    REQUIRE(d.limited_by == scale_limit::stabilization);
  }
  r.at(60s);
  r.observe("cpu", 100.0);
  CHECK(r.tick().desired == 20);
}

TEST_CASE("target_tracking default rate limit is max of +100 percent and +4 per 15 s",
          "[hpa]") {
  SECTION("from 3 replicas +4 allows more than +100 percent") {
    rig r;
    r.scaler.add_policy(cpu_target(50.0));
    r.scaler.set_replicas(3);
    r.observe("cpu", 200.0);  // asks for 12; limits: 6 (100 %) and 7 (+4) -> 7
    const auto d = r.scaler.evaluate();
    CHECK(d.proposed == 7);
    CHECK(d.desired == 7);
    CHECK(d.limited_by == scale_limit::scale_up_rate);
  }
  SECTION("from 10 replicas +100 percent allows more than +4") {
    rig r;
    r.scaler.add_policy(cpu_target(50.0));
    r.scaler.set_replicas(10);
    r.observe("cpu", 500.0);  // asks for 100; limits 20 and 14 -> 20
    CHECK(r.scaler.evaluate().desired == 20);
  }
  SECTION("down: 100 percent per 15 s lets any scale-down through") {
    rig r;
    r.scaler.add_policy(cpu_target(50.0, no_down_window()));
    r.scaler.set_replicas(10);
    r.observe("cpu", 5.0);
    CHECK(r.scaler.evaluate().desired == 1);
  }
}

TEST_CASE("target_tracking rate limits count from the replicas at the period start",
          "[hpa]") {
  outgrow::scaling_behavior b;
  b.scale_up.policies = {{rate_limit_type::pods, 4, 60s}};
  rig r;
  r.scaler.add_policy(cpu_target(50.0, b));
  r.scaler.set_replicas(10);
  r.at(0s);
  r.observe("cpu", 200.0);
  auto d = r.tick();
  CHECK(d.desired == 14);
  CHECK(d.limited_by == scale_limit::scale_up_rate);
  for (auto t = 15s; t <= 45s; t += 15s) {
    r.at(t);
    r.observe("cpu", 200.0);
    d = r.tick();
    REQUIRE(d.desired == 14);  // 10 at the start of the last 60 s: 10 + 4
    REQUIRE(d.limited_by == scale_limit::scale_up_rate);
  }
  r.at(60s);
  r.observe("cpu", 200.0);
  CHECK(r.tick().desired == 18);
}

TEST_CASE("target_tracking selectPolicy min and disabled", "[hpa]") {
  SECTION("min takes the policy allowing the smallest change") {
    outgrow::scaling_behavior b;
    b.scale_up.select = outgrow::select_policy::min;
    rig r;
    r.scaler.add_policy(cpu_target(50.0, b));
    r.scaler.set_replicas(10);
    r.observe("cpu", 500.0);  // limits 20 (100 %) and 14 (+4): min -> 14
    CHECK(r.scaler.evaluate().desired == 14);
  }
  SECTION("disabled never scales in that direction") {
    outgrow::scaling_behavior b;
    b.scale_down.select = outgrow::select_policy::disabled;
    b.scale_down.stabilization_window = 0s;
    rig r;
    r.scaler.add_policy(cpu_target(50.0, b));
    r.scaler.set_replicas(10);
    r.observe("cpu", 5.0);
    const auto d = r.scaler.evaluate();
    CHECK(d.desired == 10);
    CHECK(d.limited_by == scale_limit::scale_down_rate);
    r.observe("cpu", 100.0);  // scale-up still works
    CHECK(r.scaler.evaluate().desired == 20);
  }
  SECTION("no policies means no rate limit") {
    outgrow::scaling_behavior b;
    b.scale_up.policies.clear();
    rig r;
    r.scaler.add_policy(cpu_target(50.0, b));
    r.scaler.set_replicas(2);
    r.observe("cpu", 1000.0);
    CHECK(r.scaler.evaluate().desired == 40);
  }
}

TEST_CASE("target_tracking scale-down rate limit of 10 percent per minute", "[hpa]") {
  outgrow::scaling_behavior b;
  b.scale_down = {.stabilization_window = 0s,
                  .policies = {{rate_limit_type::percent, 10, 60s}}};
  rig r;
  r.scaler.add_policy(cpu_target(50.0, b));
  r.scaler.set_replicas(10);
  r.at(0s);
  r.observe("cpu", 10.0);  // asks for 2
  auto d = r.tick();
  CHECK(d.desired == 9);  // trunc(10 x 0.9)
  CHECK(d.limited_by == scale_limit::scale_down_rate);
  r.at(30s);
  r.observe("cpu", 10.0);
  CHECK(r.tick().desired == 9);  // still 10 at the start of the last 60 s
  r.at(60s);
  r.observe("cpu", 10.0);
  CHECK(r.tick().desired == 8);  // trunc(9 x 0.9)
}

TEST_CASE("target_tracking with several metrics takes the largest proposal", "[hpa]") {
  rig r;
  r.scaler.add_policy(outgrow::target_tracking(
      {.metrics = {{"cpu", 50.0}, {"rps", 100.0, metric_target_type::per_pod}}}));
  r.scaler.set_replicas(6);
  r.observe("cpu", 75.0);   // 9
  r.observe("rps", 200.0);  // 12
  const auto d = r.scaler.evaluate();
  CHECK(d.desired == 12);
  CHECK(d.metric == "rps");
  r.observe("cpu", 150.0);  // 18 -> cpu decides, rate-limited to 12 (100 %) vs 10
  const auto d2 = r.scaler.evaluate();
  CHECK(d2.metric == "cpu");
  CHECK(d2.desired == 12);
}

TEST_CASE("target_tracking missing metric blocks scale-down but not scale-up", "[hpa]") {
  rig r;
  r.scaler.add_policy(outgrow::target_tracking(
      {.metrics = {{"cpu", 50.0}, {"rps", 100.0}}, .behavior = no_down_window()}));
  r.scaler.set_replicas(10);
  r.observe("cpu", 25.0);  // cpu alone: 5; rps never reported
  auto d = r.scaler.evaluate();
  CHECK(d.desired == 10);
  CHECK(d.missing_data);
  CHECK(d.limited_by == scale_limit::missing_metrics);
  CHECK(d.metric == "rps");
  CHECK(contains(d.reason.view(), "no fresh rps sample"));

  r.observe("cpu", 100.0);  // cpu alone: 20 -> scale up despite rps missing
  d = r.scaler.evaluate();
  CHECK(d.desired == 20);
  CHECK(d.missing_data);
  CHECK(d.metric == "cpu");
}

TEST_CASE("target_tracking treats a stale sample as missing", "[hpa]") {
  rig r({.min_replicas = 1, .max_replicas = 100, .stale_after = 60s});
  r.scaler.add_policy(cpu_target(50.0, no_down_window()));
  r.scaler.set_replicas(10);
  r.at(0s);
  r.observe("cpu", 25.0);
  r.at(60s);
  CHECK(r.scaler.evaluate().desired == 5);  // 60 s old: still fresh
  r.at(61s);
  const auto d = r.scaler.evaluate();
  CHECK(d.desired == 10);
  CHECK(d.limited_by == scale_limit::missing_metrics);
}

TEST_CASE("target_tracking counts not-ready replicas as 0 percent on scale-up", "[hpa]") {
  rig r;
  r.scaler.add_policy(cpu_target(70.0));
  r.scaler.set_replicas(4, 2);  // 2 ready, 2 starting
  SECTION("the adjusted ratio falls within tolerance: hold") {
    r.observe("cpu", 140.0);  // ready-only ratio 2; with 2 at 0 %: 280 / (70 x 4) = 1.0
    const auto d = r.scaler.evaluate();
    CHECK(d.desired == 4);
    CHECK(d.limited_by == scale_limit::tolerance);
  }
  SECTION("the adjusted ratio decides the count") {
    r.observe("cpu", 210.0);  // 420 / 280 = 1.5: ceil(1.5 x 4) = 6
    CHECK(r.scaler.evaluate().desired == 6);
  }
  SECTION("the adjusted ratio reverses the direction: hold") {
    r.scaler.set_replicas(10, 8);  // 2 ready: 210 -> ratio 3; 420 / (70 x 10) = 0.6
    r.observe("cpu", 210.0);
    const auto d = r.scaler.evaluate();
    CHECK(d.desired == 10);
    CHECK(contains(d.reason.view(), "reverses direction"));
  }
}

TEST_CASE("target_tracking leaves not-ready replicas out on scale-down", "[hpa]") {
  rig r;
  r.scaler.add_policy(cpu_target(70.0, no_down_window()));
  r.scaler.set_replicas(6, 2);  // 4 ready
  r.observe("cpu", 35.0);       // ratio 0.5 over the 4 ready: ceil(2.0) = 2
  CHECK(r.scaler.evaluate().desired == 2);
}

TEST_CASE(
    "target_tracking replicas without samples: 0 on scale-up and 100 percent on scale-down",
    "[hpa]") {
  rig r;
  r.scaler.add_policy(cpu_target(70.0, no_down_window()));
  r.scaler.set_replicas(4);
  SECTION("scale-up: missing replicas at 0 percent") {
    r.observe("cpu", 140.0, 2);  // 2 of 4 reported 140: (280 + 0) / (70 x 4) = 1.0
    const auto d = r.scaler.evaluate();
    CHECK(d.desired == 4);
    r.observe("cpu", 280.0, 2);  // 560 / 280 = 2.0: ceil(2 x 4) = 8
    CHECK(r.scaler.evaluate().desired == 8);
  }
  SECTION("scale-down: missing replicas at 100 percent of their request") {
    r.observe("cpu", 5.0, 2);  // (2 x 5 + 2 x 100) / (70 x 4) = 0.75: ceil(3) = 3
    CHECK(r.scaler.evaluate().desired == 3);
    r.observe("cpu", 35.0, 2);  // (70 + 200) / 280 = 0.96: within tolerance
    CHECK(r.scaler.evaluate().limited_by == scale_limit::tolerance);
  }
  SECTION("scale-down: with a target above 100 percent missing replicas count at it") {
    rig q;
    q.scaler.add_policy(cpu_target(150.0, no_down_window()));
    q.scaler.set_replicas(4);
    q.observe("cpu", 15.0, 2);  // (30 + 2 x 150) / (150 x 4) = 0.55: ceil(2.2) = 3
    CHECK(q.scaler.evaluate().desired == 3);
  }
}

TEST_CASE("target_tracking total and value metric types", "[hpa]") {
  SECTION("total: ceil(value / target)") {
    rig r;
    r.scaler.add_policy(
        outgrow::target_tracking({.metrics = {{"rps", 100.0, metric_target_type::total}}}));
    r.scaler.set_replicas(6);
    r.observe("rps", 1000.0);
    CHECK(r.scaler.evaluate().desired == 10);
    r.observe("rps", 630.0);  // 630 / (100 x 6) = 1.05: within tolerance
    CHECK(r.scaler.evaluate().limited_by == scale_limit::tolerance);
  }
  SECTION("value: ceil(value / target x ready)") {
    rig r;
    r.scaler.add_policy(outgrow::target_tracking(
        {.metrics = {{"p99_ms", 200.0, metric_target_type::value}}}));
    r.scaler.set_replicas(4);
    r.observe("p99_ms", 300.0);
    CHECK(r.scaler.evaluate().desired == 6);
  }
}

TEST_CASE("target_tracking applies the not-ready rule to utilization metrics only",
          "[hpa]") {
  // 3 replicas, 1 still starting; per-replica samples 50, 10 and 30 (qps), target 15.
  SECTION("per_pod: the starting replica's sample counts at its value") {
    rig r;
    r.scaler.add_policy(outgrow::target_tracking(
        {.metrics = {{"qps", 15.0, metric_target_type::per_pod}}}));
    r.scaler.set_replicas(3, 1);
    r.observe("qps", 30.0);  // -1: all 3 reported; ratio 2: ceil(2 x 3) = 6
    CHECK(r.scaler.evaluate().desired == 6);
  }
  SECTION("per_pod: a starting replica without a sample counts as 0 on a scale-up") {
    rig r;
    r.scaler.add_policy(outgrow::target_tracking(
        {.metrics = {{"qps", 15.0, metric_target_type::per_pod}}}));
    r.scaler.set_replicas(3, 1);
    r.observe("qps", 30.0, 2);  // (60 + 0) / (15 x 3) = 1.33: ceil(4) = 4
    CHECK(r.scaler.evaluate().desired == 4);
  }
  SECTION("utilization: not-ready replicas count as 0 percent on a scale-up") {
    rig r;
    r.scaler.add_policy(cpu_target(15.0));
    r.scaler.set_replicas(3, 1);
    r.observe("cpu", 30.0);  // the 2 ready at 30: (60 + 0) / 45 = 1.33: 4
    CHECK(r.scaler.evaluate().desired == 4);
  }
}

TEST_CASE("target_tracking value metrics with no ready replica are unusable", "[hpa]") {
  rig r;
  r.scaler.add_policy(outgrow::target_tracking(
      {.metrics = {{"p99_ms", 200.0, metric_target_type::value}}}));
  r.scaler.set_replicas(4, 4);
  r.observe("p99_ms", 100.0);
  const auto d = r.scaler.evaluate();
  CHECK(d.desired == 4);
  CHECK(d.limited_by == scale_limit::missing_metrics);
  CHECK(contains(d.reason.view(), "covers no replica"));
}

// ---------------------------------------------------------------------------------
// Samples are validated where they enter: metric_series::push
// ---------------------------------------------------------------------------------

TEST_CASE("metric_series rejects non-finite negative and out-of-order samples",
          "[samples]") {
  using outgrow::sample_error;
  outgrow::metric_series s("cpu");
  const outgrow::scaling_time_point t0{10s};
  CHECK(s.push({t0, 50.0}));
  CHECK_FALSE(s.push({t0, std::numeric_limits<double>::quiet_NaN()}));
  CHECK(s.last_error() == sample_error::not_finite);
  CHECK_FALSE(s.push({t0, std::numeric_limits<double>::infinity()}));
  CHECK_FALSE(s.push({t0, -std::numeric_limits<double>::infinity()}));
  CHECK_FALSE(s.push({t0, -1.0}));
  CHECK(s.last_error() == sample_error::negative);
  CHECK_FALSE(s.push({t0, 1.0, -2}));
  CHECK(s.last_error() == sample_error::bad_reporting);
  CHECK_FALSE(s.push({outgrow::scaling_time_point{5s}, 1.0}));
  CHECK(s.last_error() == sample_error::out_of_order);
  CHECK(outgrow::to_string(s.last_error()) == "out_of_order");
  CHECK(s.rejected() == 6);
  REQUIRE(s.size() == 1);
  CHECK(s.latest()->value == 50.0);
  CHECK(s.push({t0, 0.0}));  // zero is a valid value
  CHECK(s.size() == 2);
}

TEST_CASE("target_tracking called directly never turns a NaN sample into 0 replicas",
          "[samples]") {
  std::vector<outgrow::metric_series> metrics;
  metrics.emplace_back("cpu");
  const outgrow::scaling_time_point now{100s};
  outgrow::scaling_context ctx;
  ctx.now = now;
  ctx.current = 4;
  ctx.min_replicas = 1;
  ctx.max_replicas = 10;
  ctx.metrics = &metrics;
  outgrow::target_tracking policy(
      {.metrics = {{"cpu", 50.0}, {"p99_ms", 200.0, metric_target_type::value}}});
  CHECK_FALSE(metrics[0].push({now, std::numeric_limits<double>::quiet_NaN()}));
  auto r = policy.recommend(ctx);
  CHECK(r.kind == outgrow::recommendation_kind::missing_data);  // hold, not 0
  CHECK(contains(r.reason.view(), "no fresh cpu sample"));

  metrics.emplace_back("p99_ms");
  CHECK(metrics[1].push({now, 200.0}));
  CHECK_FALSE(metrics[0].push({now, -5.0}));
  r = policy.recommend(ctx);  // p99 at its target holds 4; cpu has no usable sample
  CHECK(r.kind == outgrow::recommendation_kind::replicas);
  CHECK(r.replicas == 4);
  CHECK(r.missing_data);
  CHECK(metrics[0].rejected() == 2);
}

TEST_CASE("backlog_scaling called directly never turns a NaN sample into 0 replicas",
          "[samples]") {
  std::vector<outgrow::metric_series> metrics;
  metrics.emplace_back("jobs");
  const outgrow::scaling_time_point now{100s};
  outgrow::scaling_context ctx;
  ctx.now = now;
  ctx.current = 4;
  ctx.metrics = &metrics;  // min_replicas 0: scale to zero allowed
  outgrow::backlog_scaling policy({.metric = "jobs", .target_per_replica = 10});
  CHECK_FALSE(metrics[0].push({now, std::numeric_limits<double>::quiet_NaN()}));
  const auto r = policy.recommend(ctx);
  CHECK(r.kind == outgrow::recommendation_kind::missing_data);
}

// ---------------------------------------------------------------------------------
// step_scaling: the textbook's rules
// ---------------------------------------------------------------------------------

namespace {

/// Samples `cpu` every 15 s over [from, to] and ticks after each; returns the last
/// decision. `check(t, decision)` sees every tick.
template <class Check>
outgrow::scaling_decision run_cpu(rig& r, std::chrono::seconds from,
                                  std::chrono::seconds to, double cpu, Check&& check) {
  outgrow::scaling_decision d;
  for (auto t = from; t <= to; t += 15s) {
    r.at(t);
    r.observe("cpu", cpu);
    d = r.tick();
    check(t, d);
  }
  return d;
}

}  // namespace

TEST_CASE("step_scaling textbook default: CPU above 70 percent for 5 minutes adds 2",
          "[step]") {
  rig r({.min_replicas = 1, .max_replicas = 20});
  r.scaler.add_policy(outgrow::step_scaling());
  r.scaler.set_replicas(4);
  run_cpu(r, 0s, 285s, 80.0, [](auto, const auto& d) { REQUIRE(d.desired == 4); });
  r.at(300s);
  r.observe("cpu", 80.0);
  const auto d = r.tick();
  CHECK(d.desired == 6);
  CHECK(d.policy == "step_scaling");
  CHECK(d.reason.view().starts_with("cpu > 70 for 5min -> +2"));

  SECTION("then the 300 s scale-up cooldown, then +2 again") {
    run_cpu(r, 315s, 585s, 80.0, [](auto, const auto& dd) {
      REQUIRE(dd.desired == 6);
      REQUIRE(dd.limited_by == scale_limit::cooldown);
    });
    r.at(600s);
    r.observe("cpu", 80.0);
    CHECK(r.tick().desired == 8);
  }
  SECTION("CPU at exactly 70 percent is not above 70") {
    run_cpu(r, 315s, 1200s, 70.0, [](auto, const auto& dd) { REQUIRE(dd.desired == 6); });
  }
}

TEST_CASE("step_scaling textbook default: CPU below 30 percent for 10 minutes removes 1",
          "[step]") {
  rig r({.min_replicas = 1, .max_replicas = 20});
  r.scaler.add_policy(outgrow::step_scaling());
  r.scaler.set_replicas(4);
  run_cpu(r, 0s, 585s, 20.0, [](auto, const auto& d) {
    REQUIRE(d.desired == 4);
    REQUIRE(d.reason == "no policy proposed a change");
  });
  r.at(600s);
  r.observe("cpu", 20.0);
  const auto d = r.tick();
  CHECK(d.desired == 3);
  CHECK(d.reason.view().starts_with("cpu < 30 for 10min -> -1"));
  // 600 s scale-down cooldown: the rule still holds, the next -1 waits until 1200 s.
  run_cpu(r, 615s, 1185s, 20.0, [](auto, const auto& dd) {
    REQUIRE(dd.desired == 3);
    REQUIRE(dd.limited_by == scale_limit::cooldown);
  });
  r.at(1200s);
  r.observe("cpu", 20.0);
  CHECK(r.tick().desired == 2);
}

TEST_CASE("step_scaling scale-down cooldown runs from any scaling", "[step]") {
  rig r({.min_replicas = 1, .max_replicas = 20});
  r.scaler.add_policy(outgrow::step_scaling());
  r.scaler.set_replicas(4);
  run_cpu(r, 0s, 90s, 20.0, [](auto, const auto&) {});
  r.at(100s);
  r.scaler.set_replicas(5);  // an operator scaled up at t = 100 s
  run_cpu(r, 105s, 690s, 20.0, [](auto t, const auto& d) {
    REQUIRE(d.desired == 5);
    if (t >= 600s) REQUIRE(d.limited_by == scale_limit::cooldown);  // rule holds, cooling
  });
  r.at(700s);
  r.observe("cpu", 20.0);
  CHECK(r.tick().desired == 4);
}

TEST_CASE("step_scaling up then down waits 10 minutes of low CPU", "[step]") {
  rig r({.min_replicas = 1, .max_replicas = 20});
  r.scaler.add_policy(outgrow::step_scaling());
  r.scaler.set_replicas(4);
  run_cpu(r, 0s, 300s, 80.0, [](auto, const auto&) {});
  REQUIRE(r.scaler.metrics().current == 6);
  run_cpu(r, 315s, 900s, 20.0, [](auto, const auto& d) { REQUIRE(d.desired == 6); });
  r.at(915s);  // low since 315 s: 600 s; last scaling at 300 s: cooled down
  r.observe("cpu", 20.0);
  CHECK(r.tick().desired == 5);
}

TEST_CASE("step_scaling a sample outside the condition restarts the duration", "[step]") {
  rig r({.min_replicas = 1, .max_replicas = 20});
  r.scaler.add_policy(outgrow::step_scaling());
  r.scaler.set_replicas(4);
  run_cpu(r, 0s, 225s, 80.0, [](auto, const auto&) {});
  run_cpu(r, 240s, 240s, 60.0, [](auto, const auto&) {});
  run_cpu(r, 255s, 540s, 80.0, [](auto, const auto& d) { REQUIRE(d.desired == 4); });
  r.at(555s);
  r.observe("cpu", 80.0);
  CHECK(r.tick().desired == 6);
}

TEST_CASE("step_scaling a gap longer than stale_after restarts the duration", "[step]") {
  rig r({.min_replicas = 1, .max_replicas = 20, .stale_after = 60s});
  r.scaler.add_policy(outgrow::step_scaling());
  r.scaler.set_replicas(4);
  run_cpu(r, 0s, 120s, 80.0, [](auto, const auto&) {});
  run_cpu(r, 200s, 485s, 80.0, [](auto, const auto& d) { REQUIRE(d.desired == 4); });
  r.at(500s);
  r.observe("cpu", 80.0);
  CHECK(r.tick().desired == 6);
}

TEST_CASE("step_scaling the first holding rule decides", "[step]") {
  rig r({.min_replicas = 1, .max_replicas = 20});
  r.scaler.add_policy(outgrow::step_scaling(
      {.rules = {{"cpu", outgrow::comparison::greater, 90.0, 60s, +4},
                 {"cpu", outgrow::comparison::greater, 70.0, 60s, +2}}}));
  r.scaler.set_replicas(4);
  run_cpu(r, 0s, 45s, 95.0, [](auto, const auto&) {});
  r.at(60s);
  r.observe("cpu", 95.0);
  CHECK(r.tick().desired == 8);
}

TEST_CASE("step_scaling percent and exact adjustments", "[step]") {
  rig r({.min_replicas = 1, .max_replicas = 20});
  r.scaler.add_policy(
      outgrow::step_scaling({.rules = {{"cpu", outgrow::comparison::greater_equal, 70.0, 0s,
                                        50, outgrow::adjustment_type::percent_change},
                                       {"cpu", outgrow::comparison::less_equal, 30.0, 0s, 2,
                                        outgrow::adjustment_type::exact_capacity}},
                             .scale_up_cooldown = 0s,
                             .scale_down_cooldown = 0s}));
  r.scaler.set_replicas(4);
  r.observe("cpu", 70.0);
  CHECK(r.tick().desired == 6);
  r.at(15s);
  r.observe("cpu", 30.0);
  CHECK(r.tick().desired == 2);
}

TEST_CASE("step_scaling without a fresh sample holds for missing data", "[step]") {
  rig r({.min_replicas = 1, .max_replicas = 20});
  r.scaler.add_policy(outgrow::step_scaling());
  r.scaler.set_replicas(4);
  const auto d = r.scaler.evaluate();
  CHECK(d.desired == 4);
  CHECK(d.limited_by == scale_limit::missing_metrics);
}

TEST_CASE("step_scaling rule text names the rule", "[step]") {
  outgrow::step_scaling s;
  CHECK(s.rule_text(0) == "cpu > 70 for 5min -> +2");
  CHECK(s.rule_text(1) == "cpu < 30 for 10min -> -1");
  CHECK(s.config().scale_up_cooldown == 300s);
  CHECK(s.config().scale_down_cooldown == 600s);
}

// ---------------------------------------------------------------------------------
// backlog_scaling: KEDA-style
// ---------------------------------------------------------------------------------

TEST_CASE("backlog_scaling desired is ceil of backlog over target per replica",
          "[backlog]") {
  rig r;
  r.scaler.add_policy(
      outgrow::backlog_scaling({.metric = "jobs", .target_per_replica = 10}));
  r.scaler.set_replicas(6);
  r.observe("jobs", 95.0);
  const auto d = r.scaler.evaluate();
  CHECK(d.desired == 10);
  CHECK(d.policy == "backlog_scaling");
}

TEST_CASE("backlog_scaling scales to zero after the cooldown without work", "[backlog]") {
  rig r({.min_replicas = 0, .max_replicas = 20});
  r.scaler.add_policy(
      outgrow::backlog_scaling({.metric = "jobs", .target_per_replica = 5}));
  r.scaler.set_replicas(2);
  r.at(0s);
  r.observe("jobs", 10.0);  // active
  REQUIRE(r.tick().desired == 2);
  for (auto t = 15s; t <= 285s; t += 15s) {
    r.at(t);
    r.observe("jobs", 0.0);
    REQUIRE(r.tick().desired >= 1);
  }
  r.at(300s);  // 300 s since the last activity
  r.observe("jobs", 0.0);
  const auto d = r.tick();
  CHECK(d.desired == 0);
  CHECK(contains(d.reason.view(), "scale to zero"));
  r.at(315s);
  r.observe("jobs", 0.0);
  CHECK(r.tick().limited_by == scale_limit::activation);
}

TEST_CASE("backlog_scaling never active scales to zero at once unless initial_cooldown",
          "[backlog]") {
  SECTION("default: no initial cooldown") {
    rig r({.min_replicas = 0, .max_replicas = 20});
    r.scaler.add_policy(
        outgrow::backlog_scaling({.metric = "jobs", .target_per_replica = 5}));
    r.scaler.set_replicas(2);
    r.observe("jobs", 0.0);
    const auto d = r.tick();
    CHECK(d.desired == 0);
    CHECK(contains(d.reason.view(), "never active"));
  }
  SECTION("initial_cooldown = cooldown treats a fresh start as activity") {
    rig r({.min_replicas = 0, .max_replicas = 20});
    r.scaler.add_policy(outgrow::backlog_scaling(
        {.metric = "jobs", .target_per_replica = 5, .initial_cooldown = 300s}));
    r.scaler.set_replicas(2);
    for (auto t = 0s; t <= 285s; t += 15s) {
      r.at(t);
      r.observe("jobs", 0.0);
      REQUIRE(r.tick().desired >= 1);
    }
    r.at(300s);
    r.observe("jobs", 0.0);
    CHECK(r.tick().desired == 0);
  }
}

TEST_CASE("backlog_scaling ignores activation with a minimum of 1 or more", "[backlog]") {
  // The case: min 1, activation 50, target 10, 40 queued, 4 replicas.
  rig r({.min_replicas = 1, .max_replicas = 20});
  r.scaler.add_policy(outgrow::backlog_scaling(
      {.metric = "jobs", .target_per_replica = 10, .activation_threshold = 50}));
  r.scaler.set_replicas(4);
  for (auto t = 0s; t <= 900s; t += 15s) {
    r.at(t);
    r.observe("jobs", 40.0);
    const auto d = r.tick();
    REQUIRE(d.desired == 4);  // ceil(40 / 10), never "scale to zero" clamped to 1
    REQUIRE_FALSE(contains(d.reason.view(), "zero"));
  }
}

TEST_CASE("backlog_scaling wakes from zero above the activation threshold", "[backlog]") {
  rig r({.min_replicas = 0, .max_replicas = 20});
  r.scaler.add_policy(outgrow::backlog_scaling(
      {.metric = "jobs", .target_per_replica = 5, .activation_threshold = 10}));
  r.scaler.set_replicas(0);
  r.observe("jobs", 8.0);
  auto d = r.scaler.evaluate();
  CHECK(d.desired == 0);
  CHECK(d.limited_by == scale_limit::activation);
  r.observe("jobs", 12.0);  // ceil(12 / 5) = 3
  d = r.scaler.evaluate();
  CHECK(d.desired == 3);
  r.observe("jobs", 100.0);  // 20 wanted; from zero the +4 pods limit applies
  d = r.scaler.evaluate();
  CHECK(d.desired == 4);
  CHECK(d.limited_by == scale_limit::scale_up_rate);
}

// ---------------------------------------------------------------------------------
// predictive_scaling
// ---------------------------------------------------------------------------------

namespace {

constexpr auto day = std::chrono::hours{24};

double daily_load(std::chrono::seconds t) {
  const auto in_day = t % day;
  return in_day >= 14h && in_day < 14h + 30min ? 500.0 : 100.0;
}

outgrow::predictive_scaling_config daily_config() {
  return {.metric = "rps", .target_per_replica = 10.0};
}

/// Learns one day [0, 24 h) of `daily_load` at 15 s resolution.
void learn_yesterday(outgrow::predictive_scaling& p) {
  for (auto t = 0s; t < day; t += 15s) {
    p.learn(outgrow::scaling_time_point{t}, daily_load(t));
  }
}

}  // namespace

TEST_CASE("predictive_scaling forecasts the learned daily shape", "[predictive]") {
  outgrow::predictive_scaling p(daily_config());
  learn_yesterday(p);
  CHECK(p.forecast(outgrow::scaling_time_point{day + 10h}) == Approx(100.0));
  CHECK(p.forecast(outgrow::scaling_time_point{day + 14h + 10min}) == Approx(500.0));
  CHECK(p.forecast_error() == 0.0);  // nothing to check against on the first day
}

TEST_CASE("predictive_scaling scales ahead of a recurring spike by the start-up time",
          "[predictive]") {
  rig r({.min_replicas = 1, .max_replicas = 100});
  r.scaler.add_policy(outgrow::predictive_scaling(daily_config()));
  learn_yesterday(*r.scaler.find_policy<outgrow::predictive_scaling>());
  r.scaler.set_replicas(10);
  outgrow::scaling_decision d;
  for (std::chrono::seconds t = day + 13h + 30min; t <= day + 13h + 57min + 45s; t += 15s) {
    r.at(t);
    r.observe("rps", daily_load(t));
    d = r.tick();
    REQUIRE(d.desired == 10);  // the spike is more than start-up + margin away
  }
  r.at(day + 13h + 58min);  // 120 s (60 s start-up + 60 s margin) before 14:00
  r.observe("rps", 100.0);
  d = r.tick();
  CHECK(d.desired == 20);  // 50 forecast; +100 % per 15 s
  CHECK(d.limited_by == scale_limit::scale_up_rate);
  CHECK(contains(d.reason.view(), "forecast 500"));
  r.at(day + 13h + 58min + 15s);
  r.observe("rps", 100.0);
  CHECK(r.tick().desired == 40);
  r.at(day + 13h + 58min + 30s);
  r.observe("rps", 100.0);
  CHECK(r.tick().desired == 50);  // ready before the load arrives
}

TEST_CASE("predictive_scaling falls back to reactive when the forecast is wrong",
          "[predictive]") {
  rig r({.min_replicas = 1, .max_replicas = 100});
  r.scaler.add_policy(outgrow::predictive_scaling(daily_config()));
  auto* p = r.scaler.find_policy<outgrow::predictive_scaling>();
  REQUIRE(p != nullptr);
  learn_yesterday(*p);
  r.scaler.set_replicas(10);
  outgrow::scaling_decision d;
  // Today the 14:00 rush does not come: the load stays at 100.
  for (std::chrono::seconds t = day + 13h + 50min; t <= day + 14h + 5min; t += 15s) {
    r.at(t);
    r.observe("rps", 100.0);
    d = r.tick();
  }
  CHECK_FALSE(p->trusted(r.clock.now()));
  CHECK(p->forecast_error() > 0.3);
  CHECK(contains(d.reason.view(), "reactive"));
  CHECK(contains(d.reason.view(), "forecast error"));
  // The pre-scaled replicas go once the scale-down window has passed.
  for (std::chrono::seconds t = day + 14h + 5min + 15s; t <= day + 14h + 12min; t += 15s) {
    r.at(t);
    r.observe("rps", 100.0);
    d = r.tick();
  }
  CHECK(d.desired == 10);
}

TEST_CASE("predictive_scaling is reactive until it has seen min_history", "[predictive]") {
  rig r({.min_replicas = 1, .max_replicas = 100});
  r.scaler.add_policy(outgrow::predictive_scaling(daily_config()));
  r.scaler.set_replicas(10);
  r.observe("rps", 300.0);
  const auto d = r.scaler.evaluate();
  CHECK(d.desired == 20);  // reactive ceil(300 / 10) = 30, +100 % per 15 s
  CHECK(contains(d.reason.view(), "learning"));
}

// ---------------------------------------------------------------------------------
// Bad configuration
// ---------------------------------------------------------------------------------

TEST_CASE("scaling policies reject bad configuration with config_error", "[config]") {
  using outgrow::config_error;
  SECTION("target <= 0") {
    CHECK_THROWS_AS(outgrow::target_tracking({.metrics = {{"cpu", 0.0}}}), config_error);
    CHECK_THROWS_AS(outgrow::target_tracking({.metrics = {{"cpu", -5.0}}}), config_error);
    CHECK_THROWS_AS(outgrow::backlog_scaling({.target_per_replica = 0.0}), config_error);
    CHECK_THROWS_AS(outgrow::predictive_scaling({.target_per_replica = -1.0}),
                    config_error);
    CHECK_THROWS_AS(outgrow::target_tracking({.metrics = {}}), config_error);
  }
  SECTION("tolerance < 0") {
    CHECK_THROWS_AS(outgrow::target_tracking({.tolerance = -0.01}), config_error);
    CHECK_THROWS_AS(outgrow::backlog_scaling({.tolerance = -1.0}), config_error);
    CHECK_THROWS_AS(outgrow::predictive_scaling({.tolerance = -0.1}), config_error);
  }
  SECTION("negative windows, periods and cooldowns") {
    outgrow::scaling_behavior b;
    b.scale_down.stabilization_window = -1s;
    CHECK_THROWS_AS(outgrow::target_tracking({.behavior = b}), config_error);
    b = {};
    b.scale_up.stabilization_window = -300s;
    CHECK_THROWS_AS(outgrow::backlog_scaling({.behavior = b}), config_error);
    b = {};
    b.scale_up.policies = {{rate_limit_type::pods, 4, -15s}};
    CHECK_THROWS_AS(outgrow::target_tracking({.behavior = b}), config_error);
    b = {};
    b.scale_up.policies = {{rate_limit_type::pods, 0, 15s}};
    CHECK_THROWS_AS(outgrow::target_tracking({.behavior = b}), config_error);
    CHECK_THROWS_AS(outgrow::step_scaling({.scale_up_cooldown = -1s}), config_error);
    CHECK_THROWS_AS(outgrow::step_scaling({.scale_down_cooldown = -1s}), config_error);
    CHECK_THROWS_AS(outgrow::step_scaling(
                        {.rules = {{"cpu", outgrow::comparison::greater, 70.0, -5min, 2}}}),
                    config_error);
    CHECK_THROWS_AS(outgrow::backlog_scaling({.cooldown = -1s}), config_error);
    CHECK_THROWS_AS(outgrow::predictive_scaling({.startup_time = -1s}), config_error);
  }
  SECTION("other bad values") {
    CHECK_THROWS_AS(outgrow::step_scaling({.rules = {}}), config_error);
    CHECK_THROWS_AS(outgrow::step_scaling(
                        {.rules = {{"cpu", outgrow::comparison::greater, 70.0, 5min, 0}}}),
                    config_error);
    CHECK_THROWS_AS(outgrow::predictive_scaling({.period = 1h, .bucket = 2h}),
                    config_error);
    CHECK_THROWS_AS(outgrow::predictive_scaling({.max_error = 0.0}), config_error);
    CHECK_THROWS_AS(outgrow::backlog_scaling({.activation_threshold = -1.0}), config_error);
  }
  SECTION("the message names primitive field requirement and value") {
    try {
      outgrow::target_tracking t({.tolerance = -0.5});
      FAIL("no exception");
    } catch (const config_error& e) {
      CHECK(e.primitive() == "target_tracking");
      CHECK(e.field() == "tolerance");
      CHECK(std::string(e.what()) ==
            "target_tracking: tolerance must be in [0, 10], got -0.5");
    }
  }
}

// ---------------------------------------------------------------------------------
// Huge inputs: bounded adjustments, saturating arithmetic, no UB (run under UBSan)
// ---------------------------------------------------------------------------------

namespace {

constexpr int int_max = std::numeric_limits<int>::max();

/// A context at `current` replicas with one fresh sample of `metric`.
struct direct_ctx {
  std::vector<outgrow::metric_series> metrics;
  outgrow::scaling_context ctx;

  direct_ctx(std::string_view metric, double value, int current, int not_ready = 0,
             int reporting = -1) {
    metrics.emplace_back(std::string(metric));
    const outgrow::scaling_time_point now{1h};
    REQUIRE(metrics[0].push({now, value, reporting}));
    ctx.now = now;
    ctx.current = current;
    ctx.not_ready = not_ready;
    ctx.min_replicas = 0;
    ctx.max_replicas = 1'000'000;
    ctx.metrics = &metrics;
  }
};

/// The count one step rule proposes at `current` (the rule always holds).
int step_result(int adjustment, outgrow::adjustment_type type, int current) {
  outgrow::step_scaling policy(
      {.rules = {{"cpu", outgrow::comparison::greater_equal, 0.0, 0s, adjustment, type}}});
  direct_ctx d("cpu", 50.0, current);
  const auto r = policy.recommend(d.ctx);
  REQUIRE(r.kind == outgrow::recommendation_kind::replicas);
  return r.replicas;
}

outgrow::scaling_behavior unlimited() {
  outgrow::scaling_behavior b;
  b.scale_up = {.stabilization_window = 0s, .policies = {}};
  b.scale_down = {.stabilization_window = 0s, .policies = {}};
  return b;
}

}  // namespace

TEST_CASE("step_scaling rejects adjustments outside the documented range",
          "[step][limits]") {
  using outgrow::adjustment_type;
  using outgrow::config_error;
  const auto make = [](int adjustment, adjustment_type type) {
    return outgrow::step_scaling(
        {.rules = {{"cpu", outgrow::comparison::greater, 70.0, 0s, adjustment, type}}});
  };
  const auto change = adjustment_type::change_in_capacity;
  const auto percent = adjustment_type::percent_change;
  CHECK_THROWS_AS(make(int_max, change), config_error);
  CHECK_THROWS_AS(make(-int_max, change), config_error);
  CHECK_THROWS_AS(make(std::numeric_limits<int>::min(), change), config_error);
  CHECK_THROWS_AS(make(1'000'000'001, change), config_error);
  CHECK_THROWS_AS(make(-1'000'000'001, change), config_error);
  CHECK_NOTHROW(make(1'000'000'000, change));
  CHECK_NOTHROW(make(-1'000'000'000, change));
  CHECK_THROWS_AS(make(int_max, percent), config_error);
  CHECK_THROWS_AS(make(10'001, percent), config_error);
  CHECK_THROWS_AS(make(-101, percent), config_error);
  CHECK_THROWS_AS(make(0, percent), config_error);
  CHECK_NOTHROW(make(10'000, percent));
  CHECK_NOTHROW(make(-100, percent));
  CHECK_THROWS_AS(make(1'000'001, adjustment_type::exact_capacity), config_error);
  try {
    make(int_max, change);
    FAIL("no exception");
  } catch (const config_error& e) {
    CHECK(e.primitive() == "step_scaling");
    CHECK(std::string(e.what()) ==
          "step_scaling: rules.adjustment must be non-zero and in [-1000000000, "
          "1000000000] (replicas), got 2147483647");
  }
  try {
    make(20'000, percent);
    FAIL("no exception");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()) ==
          "step_scaling: rules.adjustment (percent) must be non-zero and in [-100, "
          "10000], got 20000");
  }
}

TEST_CASE("step_scaling adjustments saturate whatever the current count",
          "[step][limits]") {
  using outgrow::adjustment_type;
  const auto change = adjustment_type::change_in_capacity;
  const auto percent = adjustment_type::percent_change;
  // The cap is 1e9 replicas; a scale-up never proposes fewer than the current count.
  CHECK(step_result(1'000'000'000, change, 1'000) == 1'000'000'000);
  CHECK(step_result(1'000'000'000, change, int_max) == int_max);
  CHECK(step_result(2, change, int_max - 1) == int_max - 1);
  CHECK(step_result(2, change, 999'999'999) == 1'000'000'000);
  CHECK(step_result(-1'000'000'000, change, int_max) == int_max - 1'000'000'000);
  CHECK(step_result(-1'000'000'000, change, 5) == 0);
  CHECK(step_result(10'000, percent, 1'000) == 101'000);
  CHECK(step_result(10'000, percent, 100'000'000) == 1'000'000'000);
  CHECK(step_result(10'000, percent, int_max) == int_max);
  CHECK(step_result(-100, percent, int_max) == 0);
  CHECK(step_result(-50, percent, int_max) == int_max - int_max / 2);
  CHECK(step_result(1, percent, 0) == 1);
  CHECK(step_result(-1, percent, 0) == 0);
  // Through the autoscaler: a count far above max_replicas comes down to it.
  rig r({.min_replicas = 1, .max_replicas = 1'000'000});
  r.scaler.add_policy(outgrow::step_scaling(
      {.rules = {{"cpu", outgrow::comparison::greater, 70.0, 0s, 1'000'000'000}}}));
  r.scaler.set_replicas(int_max);
  r.observe("cpu", 90.0);
  CHECK(r.tick().desired == 1'000'000);
}

TEST_CASE("target tracking backlog and predictive clamp huge metrics and tiny targets",
          "[limits]") {
  const double huge = 1e300;
  const double tiny = 1e-300;
  const double dmax = std::numeric_limits<double>::max();
  SECTION("target_tracking every metric type, near the cap") {
    for (const auto type : {metric_target_type::utilization, metric_target_type::per_pod,
                            metric_target_type::total, metric_target_type::value}) {
      for (const int current : {1, 1'000, 999'999'999, int_max}) {
        for (const double target : {tiny, 1.0}) {
          outgrow::target_tracking policy(
              {.metrics = {{"m", target, type}}, .behavior = unlimited()});
          direct_ctx d("m", huge, current);
          const auto r = policy.recommend(d.ctx);
          REQUIRE(r.kind == outgrow::recommendation_kind::replicas);
          CHECK(r.replicas >= std::min(current, 1'000'000'000));
          CHECK(r.replicas <= std::max(current, 1'000'000'000));
        }
      }
    }
  }
  SECTION("target_tracking values and targets near DBL_MAX never propose 0") {
    // Ratio 1 with missing replicas: sum and target × count overflow to inf.
    for (const auto type : {metric_target_type::utilization, metric_target_type::per_pod}) {
      outgrow::target_tracking policy(
          {.metrics = {{"m", dmax, type}}, .behavior = unlimited()});
      direct_ctx d("m", dmax, 10, 0, 5);
      const auto r = policy.recommend(d.ctx);
      REQUIRE(r.kind == outgrow::recommendation_kind::replicas);
      CHECK(r.replicas == 10);  // ratio 1, missing replicas at the target: hold (not 0)
    }
    outgrow::target_tracking total(
        {.metrics = {{"m", dmax, metric_target_type::total}}, .behavior = unlimited()});
    direct_ctx d("m", dmax, 10);
    const auto r = total.recommend(d.ctx);
    CHECK(r.replicas == 1);
    CHECK(r.value == dmax);
  }
  SECTION("the autoscaler clamps the proposal to max_replicas") {
    rig r({.min_replicas = 1, .max_replicas = 1'000'000});
    r.scaler.add_policy(outgrow::target_tracking(
        {.metrics = {{"m", tiny, metric_target_type::total}}, .behavior = unlimited()}));
    r.scaler.set_replicas(999'999);
    r.observe("m", huge);
    const auto dec = r.tick();
    CHECK(dec.desired == 1'000'000);
    CHECK(dec.limited_by == scale_limit::max_replicas);
  }
  SECTION("backlog_scaling") {
    for (const int current : {0, 1, 999'999'999, int_max}) {
      outgrow::backlog_scaling policy(
          {.metric = "q", .target_per_replica = tiny, .behavior = unlimited()});
      direct_ctx d("q", huge, current);
      const auto r = policy.recommend(d.ctx);
      CHECK(r.replicas >= std::min(current, 1'000'000'000));
      CHECK(r.replicas <= std::max(current, 1'000'000'000));
    }
    outgrow::backlog_scaling big({.metric = "q", .target_per_replica = dmax});
    direct_ctx d("q", dmax, 3);
    CHECK(big.recommend(d.ctx).replicas >= 1);
  }
  SECTION("predictive_scaling learns values near DBL_MAX and stays finite") {
    outgrow::predictive_scaling policy({.metric = "rps",
                                        .target_per_replica = tiny,
                                        .period = 1h,
                                        .bucket = 5min,
                                        .min_history = 0s,
                                        .behavior = unlimited()});
    const outgrow::scaling_time_point t0{0s};
    for (int i = 0; i < 3; ++i) policy.learn(t0 + std::chrono::seconds{i}, dmax);
    policy.learn(t0 + 10min, 1.0);  // closes the first bucket: its sum overflowed
    policy.learn(t0 + 1h, dmax);    // the next cycle: blend and error near DBL_MAX
    policy.learn(t0 + 1h + 10min, dmax);
    policy.learn(t0 + 2h, -5.0);  // ignored, as NaN and infinities are
    policy.learn(t0 + 2h, std::numeric_limits<double>::quiet_NaN());
    REQUIRE(policy.forecast(t0 + 2h).has_value());
    CHECK(*policy.forecast(t0 + 2h) == dmax);
    CHECK(std::isfinite(policy.forecast_error()));
    direct_ctx d("rps", huge, int_max);
    d.ctx.now = t0 + 2h;
    d.metrics[0] = outgrow::metric_series("rps");
    REQUIRE(d.metrics[0].push({t0 + 2h, huge}));
    const auto r = policy.recommend(d.ctx);
    REQUIRE(r.kind == outgrow::recommendation_kind::replicas);
    CHECK(r.replicas == 1'000'000'000);  // the cap, not an overflow
  }
}

TEST_CASE("scaling policies reject fields their configuration never reads", "[config]") {
  using outgrow::config_error;
  SECTION("rate limits with select disabled") {
    outgrow::scaling_behavior b;
    b.scale_down.select = outgrow::select_policy::disabled;  // default limits: fine
    CHECK_NOTHROW(outgrow::target_tracking({.behavior = b}));
    b.scale_down.policies = {};
    CHECK_NOTHROW(outgrow::backlog_scaling({.behavior = b}));
    b.scale_down.policies = {{rate_limit_type::pods, 1, 60s}};
    CHECK_THROWS_AS(outgrow::target_tracking({.behavior = b}), config_error);
    CHECK_THROWS_AS(outgrow::backlog_scaling({.behavior = b}), config_error);
    CHECK_THROWS_AS(outgrow::predictive_scaling({.behavior = b}), config_error);
    outgrow::scaling_behavior up;
    up.scale_up.select = outgrow::select_policy::disabled;
    up.scale_up.policies = {{rate_limit_type::percent, 100, 15s}};  // not the default pair
    try {
      outgrow::target_tracking t({.behavior = up});
      FAIL("no exception");
    } catch (const config_error& e) {
      CHECK(e.field() == "behavior.scale_up.policies");
      CHECK(std::string(e.what()) ==
            "target_tracking: behavior.scale_up.policies must be empty or the default "
            "while select is disabled (never read), got 1 rate limits");
    }
  }
  SECTION("step_scaling cooldowns no rule can trigger") {
    using outgrow::comparison;
    const std::vector<outgrow::step_rule> up_only = {
        {"cpu", comparison::greater, 70.0, 0s, +2}};
    const std::vector<outgrow::step_rule> down_only = {
        {"cpu", comparison::less, 30.0, 0s, -50, outgrow::adjustment_type::percent_change}};
    CHECK_NOTHROW(outgrow::step_scaling({.rules = up_only, .scale_up_cooldown = 0s}));
    CHECK_NOTHROW(outgrow::step_scaling({.rules = down_only, .scale_down_cooldown = 0s}));
    try {
      outgrow::step_scaling s({.rules = up_only, .scale_down_cooldown = 0s});
      FAIL("no exception");
    } catch (const config_error& e) {
      CHECK(std::string(e.what()) ==
            "step_scaling: scale_down_cooldown must be the default 600s when no rule "
            "scales down (never read), got 0s");
    }
    CHECK_THROWS_AS(outgrow::step_scaling({.rules = down_only, .scale_up_cooldown = 1min}),
                    config_error);
    // An exact_capacity rule may go either way: both cooldowns are read.
    CHECK_NOTHROW(
        outgrow::step_scaling({.rules = {{"cpu", comparison::greater, 70.0, 0s, 5,
                                          outgrow::adjustment_type::exact_capacity}},
                               .scale_up_cooldown = 0s,
                               .scale_down_cooldown = 0s}));
  }
}

TEST_CASE("HPA rate limits stay in range at replica counts near INT_MAX", "[hpa][limits]") {
  outgrow::scaling_behavior b;  // the defaults: +100 % / +4 up, -100 % down
  b.scale_up.policies.push_back({rate_limit_type::pods, int_max, 15s});
  b.scale_down.stabilization_window = 0s;
  b.scale_down.policies.push_back({rate_limit_type::pods, int_max, 15s});
  b.scale_down.policies.push_back({rate_limit_type::percent, 1'000'000, 15s});
  for (const int current : {int_max, int_max - 1, 1'000'000'000}) {
    for (const double value : {1e300, 1e-300}) {
      outgrow::target_tracking policy(
          {.metrics = {{"m", 1.0, metric_target_type::total}}, .behavior = b});
      direct_ctx d("m", value, current);
      const auto r = policy.recommend(d.ctx);
      REQUIRE(r.kind == outgrow::recommendation_kind::replicas);
      CHECK(r.replicas >= 1);
      CHECK(r.replicas <= current);
    }
  }
  for (const auto sel : {outgrow::select_policy::max, outgrow::select_policy::min}) {
    outgrow::scaling_behavior m = b;
    m.scale_up.select = sel;
    m.scale_down.select = sel;
    outgrow::target_tracking policy(
        {.metrics = {{"m", 1.0, metric_target_type::total}}, .behavior = m});
    direct_ctx d("m", 1e300, 1);
    const auto r = policy.recommend(d.ctx);
    CHECK(r.replicas >= 1);
    CHECK(r.replicas <= 1'000'000'000);
  }
}
