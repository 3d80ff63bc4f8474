#include <outgrow/autoscale/simulator.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/autoscale/scaling_policy.hpp>
#include <outgrow/core/error.hpp>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::load_trace;
using outgrow::metric_target_type;
using outgrow::simulation_result;
using outgrow::simulator;

namespace {

const outgrow::autoscaler_config limits{.min_replicas = 1, .max_replicas = 300};

outgrow::target_tracking hpa_per_replica() {
  return outgrow::target_tracking({.metrics = {{"rps_per_replica", 70.0}}});
}

outgrow::target_tracking hpa_total() {
  return outgrow::target_tracking({.metrics = {{"rps", 70.0, metric_target_type::total}}});
}

/// Proposes a fixed count.
struct fixed_count {
  int replicas;
  outgrow::recommendation recommend(const outgrow::scaling_context&) const {
    return outgrow::recommendation::propose(replicas, "fixed");
  }
};

/// Flaps between 3 and 2 replicas on every evaluation.
struct flapper {
  outgrow::recommendation recommend(const outgrow::scaling_context& ctx) const {
    return outgrow::recommendation::propose(ctx.current == 3 ? 2 : 3, "flap");
  }
};

std::size_t count_lines(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

std::size_t count_of(const std::string& s, const std::string& part) {
  std::size_t n = 0;
  for (auto pos = s.find(part); pos != std::string::npos; pos = s.find(part, pos + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE(
    "5x spike with 60 s start-up: target tracking asks for enough capacity within 3 "
    "evaluation periods",
    "[simulator]") {
  const auto trace = load_trace::spike(1000.0, 5.0, 30min, 20min, 1h, {0.05, 30s, 7});
  simulator sim(trace, {.capacity_per_replica = 100.0, .startup = 60s});
  const simulation_result run = sim.run("target_tracking", limits, hpa_per_replica());

  const auto spike = trace.spikes().at(0);
  REQUIRE(spike == 1800s);
  double peak = 0.0;  // the spike's demand
  for (std::int64_t s = 1800; s < 3000; ++s) peak = std::max(peak, trace.rate(s));
  const int needed = static_cast<int>(std::ceil(peak / 100.0));
  REQUIRE(needed >= 50);

  // The first evaluation after the spike starts is the first that can see it.
  const auto visible = std::find_if(run.timeline.begin(), run.timeline.end(),
                                    [&](const auto& p) { return p.t > spike; });
  REQUIRE(visible != run.timeline.end());
  REQUIRE(visible->t == 1815s);
  REQUIRE(std::prev(visible)->desired < needed);
  int periods = 0;
  for (auto it = visible; it != run.timeline.end() && it->desired < needed; ++it) ++periods;
  INFO("evaluations after the spike became visible until desired >= " << needed << ": "
                                                                      << periods);
  CHECK(periods < 3);  // reached at the 1st, 2nd or 3rd evaluation
  // ... and the capacity is ready one start-up time later.
  const auto ready = std::find_if(visible, run.timeline.end(),
                                  [&](const auto& p) { return p.ready >= needed; });
  REQUIRE(ready != run.timeline.end());
  CHECK(ready->t <= visible->t + 2 * 15s + 60s);
  CHECK(run.report.absorbed_all);
  CHECK(run.report.time_to_absorb > 0s);
  CHECK(run.report.time_to_absorb < 5min);

  // Step scaling (+2 per 5 min) cannot keep up with the same spike.
  const simulation_result step = sim.run("step", limits, outgrow::step_scaling());
  CHECK(step.report.slo_violation_seconds > 5 * run.report.slo_violation_seconds);
}

TEST_CASE("noisy steady trace: target tracking reverses at most twice per simulated hour",
          "[simulator]") {
  for (std::uint64_t seed : {1U, 2U, 3U}) {
    const auto trace = load_trace::steady(1000.0, 4h, {0.1, 10s, seed});
    simulator sim(trace, {});
    const auto run = sim.run("target_tracking", limits, hpa_per_replica());
    INFO("seed " << seed << ": " << run.report.reversals << " reversals in "
                 << run.report.hours << " h");
    CHECK(run.report.hours == Approx(4.0));
    CHECK(run.report.reversals_per_hour() <= 2.0);
    CHECK(run.report.slo_violation_seconds < 10.0);  // noise peaks may touch the SLO
  }
}

TEST_CASE("slowly drifting noise: a scale-up stabilization window stops the flapping",
          "[simulator]") {
  outgrow::scaling_behavior calm;
  calm.scale_up.stabilization_window = 120s;
  std::uint64_t default_total = 0;
  std::uint64_t calm_total = 0;
  for (std::uint64_t seed : {1U, 2U, 3U}) {
    const auto trace = load_trace::steady(1000.0, 4h, {0.1, 60s, seed});
    simulator sim(trace, {});
    const auto hpa = sim.run("hpa", limits, hpa_per_replica());
    const auto windowed =
        sim.run("hpa+window", limits,
                outgrow::target_tracking(
                    {.metrics = {{"rps_per_replica", 70.0}}, .behavior = calm}));
    INFO("seed " << seed << ": default " << hpa.report.reversals << ", 120 s window "
                 << windowed.report.reversals);
    CHECK(windowed.report.reversals_per_hour() <= 2.0);
    default_total += hpa.report.reversals;
    calm_total += windowed.report.reversals;
  }
  CHECK(calm_total * 2 < default_total);
}

TEST_CASE(
    "recurring daily spike: predictive halves SLO violations at no more than 110 percent "
    "of the cost",
    "[simulator]") {
  const auto trace = load_trace::recurring_spike(1000.0, 5.0, 24h, 14h, 30min, 3);
  simulator sim(trace, {.capacity_per_replica = 100.0, .startup = 60s});
  const auto reactive = sim.run("target_tracking", limits, hpa_total());
  const auto predictive =
      sim.run("predictive", limits,
              outgrow::predictive_scaling({.metric = "rps", .target_per_replica = 70.0}));
  INFO("SLO-violation s: target tracking " << reactive.report.slo_violation_seconds
                                           << ", predictive "
                                           << predictive.report.slo_violation_seconds);
  INFO("replica-s: target tracking " << reactive.report.replica_seconds << ", predictive "
                                     << predictive.report.replica_seconds);
  REQUIRE(reactive.report.slo_violation_seconds > 0.0);
  CHECK(predictive.report.slo_violation_seconds <=
        0.5 * reactive.report.slo_violation_seconds);
  CHECK(predictive.report.replica_seconds <= 1.1 * reactive.report.replica_seconds);

  // After the first (learning) day the spikes cause no violation at all.
  simulator later(trace, {.capacity_per_replica = 100.0, .startup = 60s, .warmup = 24h});
  const auto learned =
      later.run("predictive", limits,
                outgrow::predictive_scaling({.metric = "rps", .target_per_replica = 70.0}));
  CHECK(learned.report.slo_violation_seconds == 0.0);
  CHECK(learned.report.absorbed_all);
}

TEST_CASE("backlog policy scales to zero when idle and wakes on work", "[simulator]") {
  std::vector<double> rates(3600, 0.0);
  std::fill(rates.begin() + 1800, rates.begin() + 2400, 200.0);
  simulator sim(load_trace("idle_then_busy", rates), {.initial_replicas = 2});
  const auto run =
      sim.run("backlog", {.min_replicas = 0, .max_replicas = 20},
              outgrow::backlog_scaling({.metric = "backlog", .target_per_replica = 1.4}));
  const auto at = [&](std::chrono::seconds t) {
    return std::find_if(run.timeline.begin(), run.timeline.end(),
                        [&](const auto& p) { return p.t >= t; });
  };
  CHECK(at(1700s)->replicas == 0);                // idle for > 300 s: scaled to zero
  CHECK(at(2300s)->ready >= 3);                   // 200 rps / 100 per replica at 70 %
  CHECK(at(3500s)->replicas == 0);                // and back to zero
  CHECK(run.report.slo_violation_seconds > 0.0);  // the cold start costs
  CHECK(run.report.slo_violation_seconds < 180.0);
}

TEST_CASE("simulation runs are deterministic for a fixed seed", "[simulator]") {
  const auto a =
      load_trace::black_friday(500.0, 10.0, 10min, 20min, 30min, 2h, {0.1, 30s, 42});
  const auto b =
      load_trace::black_friday(500.0, 10.0, 10min, 20min, 30min, 2h, {0.1, 30s, 42});
  const auto c =
      load_trace::black_friday(500.0, 10.0, 10min, 20min, 30min, 2h, {0.1, 30s, 43});
  CHECK(a.rates() == b.rates());
  CHECK(a.rates() != c.rates());
  const auto r1 = simulator(a).run("tt", limits, hpa_per_replica());
  const auto r2 = simulator(b).run("tt", limits, hpa_per_replica());
  CHECK(r1.report.slo_violation_seconds == r2.report.slo_violation_seconds);
  CHECK(r1.report.replica_seconds == r2.report.replica_seconds);
  CHECK(r1.report.reversals == r2.report.reversals);
  REQUIRE(r1.timeline.size() == r2.timeline.size());
  for (std::size_t i = 0; i < r1.timeline.size(); ++i) {
    REQUIRE(r1.timeline[i].replicas == r2.timeline[i].replicas);
  }
}

TEST_CASE("report figures add up on a hand-checked run", "[simulator]") {
  const load_trace flat("flat", std::vector<double>(600, 100.0));
  SECTION("replica-seconds peak and SLO seconds") {
    // 1 replica at 100 % (latency 20 ms / 0.01 = 2 s: violating) until the 2 added at
    // t = 15 s are ready at 75 s; then 3 replicas (30 ms).
    simulator sim(flat, {.startup = 60s, .initial_replicas = 1});
    const auto run = sim.run("fixed", limits, fixed_count{3});
    CHECK(run.report.replica_seconds == 15.0 * 1 + 585.0 * 3);
    CHECK(run.report.peak_replicas == 3);
    CHECK(run.report.slo_violation_seconds == 75.0);
    CHECK(run.report.reversals == 0);
    CHECK(run.report.scale_ups == 1);
    CHECK(run.report.time_to_absorb == -1s);  // no spike in this trace
    CHECK(run.report.evaluations == 40);
  }
  SECTION("warmup is not counted") {
    simulator sim(flat, {.startup = 60s, .initial_replicas = 1, .warmup = 100s});
    const auto run = sim.run("fixed", limits, fixed_count{3});
    CHECK(run.report.replica_seconds == 500.0 * 3);
    CHECK(run.report.slo_violation_seconds == 0.0);
    CHECK(run.report.hours == Approx(500.0 / 3600.0));
  }
  SECTION("every change of direction is a reversal") {
    simulator sim(flat, {.startup = 0s, .initial_replicas = 1});
    const auto run = sim.run("flapper", limits, flapper{});
    CHECK(run.report.scale_ups == 20);  // 1 -> 3, then 2 -> 3 nineteen times
    CHECK(run.report.scale_downs == 20);
    CHECK(run.report.reversals == 39);
  }
}

TEST_CASE("load traces have the documented shapes", "[simulator]") {
  SECTION("steady") {
    const auto t = load_trace::steady(1000.0, 2h);
    const double mean = std::accumulate(t.rates().begin(), t.rates().end(), 0.0) /
                        static_cast<double>(t.rates().size());
    CHECK(t.length() == 2h);
    CHECK(mean == Approx(1000.0).epsilon(0.03));
    CHECK(*std::min_element(t.rates().begin(), t.rates().end()) > 500.0);
  }
  SECTION("spike") {
    const auto t = load_trace::spike(100.0, 5.0, 10min, 5min, 30min, {});
    CHECK(t.rate(599) == 100.0);
    CHECK(t.rate(600) == 500.0);
    CHECK(t.rate(899) == 500.0);
    CHECK(t.rate(900) == 100.0);
    CHECK(t.spikes() == std::vector<std::chrono::seconds>{600s});
  }
  SECTION("black friday") {
    const auto t = load_trace::black_friday(100.0, 10.0, 30min, 30min, 90min, 4h, {});
    CHECK(t.rate(0) == 100.0);
    CHECK(t.rate(45 * 60) == Approx(550.0));
    CHECK(t.rate(60 * 60) == 1000.0);
    CHECK(t.peak() == 1000.0);
    CHECK(t.rate(4 * 3600 - 1) == 100.0);
    CHECK(t.spikes() == std::vector<std::chrono::seconds>{3600s});
  }
  SECTION("diurnal and sawtooth") {
    const auto d = load_trace::diurnal(100.0, 300.0, 24h, 24h, {});
    CHECK(d.rate(0) == Approx(100.0));
    CHECK(d.rate(12 * 3600) == Approx(300.0));
    const auto s = load_trace::sawtooth(0.0, 100.0, 100s, 300s);
    CHECK(s.rate(50) == Approx(50.0));
    CHECK(s.rate(100) == 0.0);
    CHECK(s.rate(199) == Approx(99.0));
  }
  SECTION("recurring spike") {
    const auto t = load_trace::recurring_spike(10.0, 5.0, 24h, 14h, 30min, 3, {});
    CHECK(t.length() == 72h);
    CHECK(t.spikes() == std::vector<std::chrono::seconds>{14h, 38h, 62h});
    CHECK(t.rate(38 * 3600 + 60) == 50.0);
    CHECK(t.rate(38 * 3600 + 31 * 60) == 10.0);
  }
  SECTION("csv") {
    std::istringstream in("seconds,rate\n0,10\n5,20\n# a comment\n7,5.5\n");
    const auto t = load_trace::from_csv(in, "mine");
    CHECK(t.name() == "mine");
    CHECK(t.length() == 8s);
    CHECK(t.rate(4) == 10.0);
    CHECK(t.rate(5) == 20.0);
    CHECK(t.rate(7) == 5.5);
    std::istringstream bad("0,10\nnot a line\n");
    CHECK_THROWS_AS(load_trace::from_csv(bad), outgrow::config_error);
    std::istringstream backwards("5,1\n3,1\n");
    CHECK_THROWS_AS(load_trace::from_csv(backwards), outgrow::config_error);
    std::istringstream negative("0,-1\n");
    CHECK_THROWS_AS(load_trace::from_csv(negative), outgrow::config_error);
    CHECK_THROWS_AS(load_trace::from_csv_file("/nonexistent/trace.csv"),
                    outgrow::config_error);
  }
  SECTION("bad traces") {
    CHECK_THROWS_AS(load_trace("empty", {}), outgrow::config_error);
    CHECK_THROWS_AS(load_trace::steady(10.0, 1h, {1.5, 10s, 1}), outgrow::config_error);
    CHECK_THROWS_AS(load_trace::steady(10.0, 0s), outgrow::config_error);
  }
}

TEST_CASE("simulator outputs: table csv svg and sparkline", "[simulator]") {
  const auto trace = load_trace::spike(1000.0, 5.0, 10min, 10min, 30min);
  simulator sim(trace, {});
  std::vector<simulation_result> runs;
  runs.push_back(sim.run("target_tracking", limits, hpa_per_replica()));
  runs.push_back(sim.run("step", limits, outgrow::step_scaling()));

  const std::string table = outgrow::comparison_table(runs);
  CHECK(count_lines(table) == 3);
  CHECK(table.find("SLO-viol. s") != std::string::npos);
  CHECK(table.find("target_tracking") != std::string::npos);
  CHECK(table.find("step") != std::string::npos);

  std::ostringstream csv;
  outgrow::write_csv(csv, runs);
  CHECK(count_lines(csv.str()) == runs[0].timeline.size() + 1);
  CHECK(
      csv.str().starts_with("t_s,load_rps,needed_replicas,target_tracking_replicas,"
                            "target_tracking_ready,target_tracking_latency_ms,"
                            "step_replicas,step_ready,step_latency_ms\n"));

  std::ostringstream report;
  outgrow::write_report_csv(report, runs);
  CHECK(count_lines(report.str()) == 3);

  std::ostringstream svg;
  outgrow::write_svg(svg, runs, {.title = "spike"});
  CHECK(svg.str().starts_with("<svg"));
  CHECK(svg.str().ends_with("</svg>\n"));
  CHECK(count_of(svg.str(), "<polyline") == 2);
  CHECK(svg.str().find(">spike</text>") != std::string::npos);

  const auto path =
      (std::filesystem::temp_directory_path() / "outgrow_simulator_test.svg").string();
  REQUIRE(outgrow::write_svg_file(path, runs, {.title = "spike"}));
  CHECK(std::filesystem::file_size(path) == svg.str().size());
  std::filesystem::remove(path);
  CHECK_FALSE(outgrow::write_svg_file("/nonexistent-dir/x.svg", runs));

  const std::vector<double> ramp{0, 1, 2, 3, 4, 5, 6, 7, 8};
  CHECK(outgrow::sparkline(ramp, 9) == "▁▁▂▃▄▅▆▇█");
  CHECK(outgrow::sparkline(ramp, 3) == "▂▅█");  // the maximum of each slice
  CHECK(outgrow::sparkline({}, 10).empty());
  const auto line = outgrow::sparkline(runs[0].replica_series(), 40);
  CHECK(line.size() == 40 * std::string("█").size());
}

TEST_CASE("simulator rejects bad configuration with config_error", "[simulator]") {
  const load_trace flat("flat", std::vector<double>(10, 1.0));
  using outgrow::config_error;
  CHECK_THROWS_AS(simulator(flat, {.capacity_per_replica = 0.0}), config_error);
  CHECK_THROWS_AS(simulator(flat, {.startup = -1s}), config_error);
  CHECK_THROWS_AS(simulator(flat, {.evaluation_period = 0s}), config_error);
  CHECK_THROWS_AS(simulator(flat, {.service_time = 20ms, .slo_latency = 20ms}),
                  config_error);
  CHECK_THROWS_AS(simulator(flat, {.initial_replicas = -2}), config_error);
  CHECK_THROWS_AS(simulator(flat, {.warmup = -1s}), config_error);
  simulator sim(flat);
  CHECK_THROWS_AS(sim.run("x", {.min_replicas = 3, .max_replicas = 2}, fixed_count{1}),
                  config_error);
}
