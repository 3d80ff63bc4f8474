#include <outgrow/autoscale/simulator.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
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
  const auto trace =
      load_trace::recurring_spike(1000.0, 5.0, 24h, 14h, 30min, 3, {0.05, 30s, 1});
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

TEST_CASE("trace noise without a seed is random per trace", "[simulator]") {
  // trace_noise::seed empty (the default, and the factories' default noise): each trace
  // draws its own seed (outgrow::resolve_seed), so two traces differ; set, they match.
  const auto a = load_trace::steady(1000.0, 10min, {.relative = 0.1});
  const auto b = load_trace::steady(1000.0, 10min, {.relative = 0.1});
  CHECK(a.rates() != b.rates());
  CHECK(load_trace::steady(1000.0, 10min).rates() !=
        load_trace::steady(1000.0, 10min).rates());
  CHECK(load_trace::steady(1000.0, 10min, {.relative = 0.1, .seed = 0}).rates() ==
        load_trace::steady(1000.0, 10min, {.relative = 0.1, .seed = 0}).rates());
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
    const auto t = load_trace::steady(1000.0, 2h, {0.1, 10s, 1});
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
  const auto trace = load_trace::spike(1000.0, 5.0, 10min, 10min, 30min, {0.05, 30s, 1});
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

// ---------------------------------------------------------------------------------
// Trace and simulator validation: every bad input is a config_error naming load_trace
// (or simulator), the field or CSV line, the allowed range and the value
// ---------------------------------------------------------------------------------

namespace {

/// The message of the config_error `f` throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const outgrow::config_error& e) {
    CHECK(e.primitive() == "load_trace");
    return e.what();
  }
  return "";
}

std::string csv_error(const std::string& text) {
  return error_of([&] {
    std::istringstream in(text);
    (void)load_trace::from_csv(in);
  });
}

bool has(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();
constexpr double infinite = std::numeric_limits<double>::infinity();

}  // namespace

TEST_CASE("load_trace factories reject NaN infinite negative and absurd rates",
          "[simulator][limits]") {
  for (const double bad : {not_a_number, infinite, -infinite, -1.0, 1.5e12}) {
    CHECK(has(error_of([&] { (void)load_trace::steady(bad); }),
              "load_trace: rate must be in"));
    CHECK(has(error_of([&] { (void)load_trace::diurnal(bad, 10.0); }), "load_trace: low "));
    CHECK(has(error_of([&] { (void)load_trace::diurnal(1.0, bad); }), "load_trace: high "));
    CHECK(has(error_of([&] { (void)load_trace::spike(bad); }), "load_trace: base "));
    CHECK(has(error_of([&] { (void)load_trace::black_friday(bad); }), "load_trace: base "));
    CHECK(has(error_of([&] { (void)load_trace::sawtooth(bad, 1.0); }), "load_trace: low "));
    CHECK(
        has(error_of([&] { (void)load_trace::sawtooth(1.0, bad); }), "load_trace: high "));
    CHECK(has(error_of([&] { (void)load_trace::recurring_spike(bad); }),
              "load_trace: base "));
  }
  CHECK(error_of([] { (void)load_trace::steady(not_a_number); }) ==
        "load_trace: rate must be in [0, 1000000000000], got nan");
  for (const double bad : {not_a_number, infinite, -1.0, 2e6}) {
    CHECK(
        has(error_of([&] { (void)load_trace::spike(10.0, bad); }), "load_trace: factor "));
    CHECK(has(error_of([&] { (void)load_trace::black_friday(10.0, bad); }),
              "load_trace: factor "));
    CHECK(has(error_of([&] { (void)load_trace::recurring_spike(10.0, bad); }),
              "load_trace: factor "));
  }
  // The documented maxima are accepted.
  CHECK(load_trace::steady(load_trace::max_rate, 10s, {}).peak() == load_trace::max_rate);
  CHECK(load_trace::spike(load_trace::max_rate, load_trace::max_factor, 1s, 1s, 10s, {})
            .peak() == 1e18);
  CHECK(load_trace::steady(0.0, 10s, {}).peak() == 0.0);
  // The constructor: finite and >= 0, named by index.
  CHECK(error_of([] {
          load_trace("x", {1.0, not_a_number});
        }) == "load_trace: rates[1] must be >= 0 and finite, got nan");
}

TEST_CASE("load_trace factories reject negative and absurd durations",
          "[simulator][limits]") {
  const auto huge = std::chrono::seconds{std::numeric_limits<std::int64_t>::max()};
  const auto neg = std::chrono::seconds{std::numeric_limits<std::int64_t>::min()};
  CHECK(error_of([] { (void)load_trace::steady(10.0, 32 * 24h); }) ==
        "load_trace: length must be in [1s, 744h], got 768h");
  CHECK(has(error_of([&] { (void)load_trace::steady(10.0, huge); }), "length"));
  CHECK(has(error_of([&] { (void)load_trace::steady(10.0, -1s); }), "length"));
  SECTION("the longest trace is accepted") {  // 2.7M samples: built once, not per section
    CHECK(load_trace::steady(10.0, load_trace::max_length, {}).length() == 744h);
  }
  CHECK(has(error_of([&] { (void)load_trace::diurnal(1.0, 2.0, 1h, 0s); }), "period"));
  CHECK(has(error_of([&] { (void)load_trace::diurnal(1.0, 2.0, 1h, huge); }), "period"));
  CHECK(has(error_of([&] { (void)load_trace::sawtooth(1.0, 2.0, -5s); }), "period"));
  SECTION("spike: overflow-free, mark inside the trace") {
    CHECK(has(error_of([&] { (void)load_trace::spike(1.0, 5.0, huge, huge); }), "at"));
    CHECK(has(error_of([&] { (void)load_trace::spike(1.0, 5.0, neg); }), "at"));
    CHECK(error_of([] { (void)load_trace::spike(1.0, 5.0, 2h, 10min, 1h); }) ==
          "load_trace: at must be in [0s, length = 1h) (the spike mark lies in the "
          "trace), got 2h");
    CHECK(has(error_of([&] { (void)load_trace::spike(1.0, 5.0, 10min, huge); }),
              "load_trace: hold must be in [1s, 744h]"));
    CHECK(has(error_of([&] { (void)load_trace::spike(1.0, 5.0, 10min, 0s); }), "hold"));
  }
  SECTION("black_friday") {
    CHECK(
        has(error_of([&] { (void)load_trace::black_friday(1.0, 10.0, huge); }), "lead_in"));
    CHECK(
        has(error_of([&] { (void)load_trace::black_friday(1.0, 10.0, -1s); }), "lead_in"));
    CHECK(
        has(error_of([&] { (void)load_trace::black_friday(1.0, 10.0, 0s, 0s); }), "ramp"));
    CHECK(
        has(error_of([&] { (void)load_trace::black_friday(1.0, 10.0, 0s, neg); }), "ramp"));
    CHECK(has(error_of([&] { (void)load_trace::black_friday(1.0, 10.0, 0s, 1s, huge); }),
              "hold"));
    CHECK(error_of([] { (void)load_trace::black_friday(1.0, 10.0, 3h, 1h, 1h, 4h); }) ==
          "load_trace: lead_in + ramp must be < length = 4h (the spike mark lies in the "
          "trace), got 4h");
  }
  SECTION("recurring_spike") {
    CHECK(has(
        error_of([] { (void)load_trace::recurring_spike(1.0, 5.0, 24h, 14h, 30min, 0); }),
        "cycles"));
    CHECK(error_of(
              [] { (void)load_trace::recurring_spike(1.0, 5.0, 24h, 14h, 30min, 1000); }) ==
          "load_trace: period * cycles must be at most 744h (31 days: the trace's "
          "length), got 24000h");
    CHECK(has(error_of([&] { (void)load_trace::recurring_spike(1.0, 5.0, huge); }),
              "period"));
    CHECK(has(error_of([] { (void)load_trace::recurring_spike(1.0, 5.0, 1h, 1h); }),
              "load_trace: offset must be in [0s, period = 1h), got 1h"));
    CHECK(has(error_of([] { (void)load_trace::recurring_spike(1.0, 5.0, 1h, -1s); }),
              "offset"));
    CHECK(has(error_of([] { (void)load_trace::recurring_spike(1.0, 5.0, 1h, 0s, 0s); }),
              "width"));
    CHECK(has(error_of([] { (void)load_trace::recurring_spike(1.0, 5.0, 1h, 0s, 2h); }),
              "width"));
  }
  SECTION("constructor spike marks") {
    CHECK(has(error_of([] { load_trace("x", {1.0, 2.0}, {2s}); }), "load_trace: spikes"));
    CHECK(has(error_of([] { load_trace("x", {1.0, 2.0}, {-1s}); }), "spikes"));
  }
}

TEST_CASE("load_trace from_csv reports malformed lines by number", "[simulator][limits]") {
  CHECK(csv_error("-5,10\n") ==
        "load_trace: csv line 1 seconds must be in [0, 2678399], got -5");
  CHECK(csv_error("0,1\n1e18,10\n") ==
        "load_trace: csv line 2 seconds must be in [0, 2678399], got 1e+18");
  CHECK(csv_error("1,2,3\n") ==
        "load_trace: csv line 1 must be two numbers \"seconds,rate\", got \"1,2,3\"");
  CHECK(csv_error("seconds,rate\n0,1\n5\n") ==
        "load_trace: csv line 3 must be two numbers \"seconds,rate\", got \"5\"");
  CHECK(has(csv_error("0,1\n1,2x\n"), "csv line 2 must be two numbers"));
  CHECK(has(csv_error("0,1\n1x,2\n"), "csv line 2 must be two numbers"));
  CHECK(has(csv_error("0,1\n1,\n"), "csv line 2 must be two numbers"));
  CHECK(has(csv_error("0,1\n,1\n"), "csv line 2 must be two numbers"));
  CHECK(has(csv_error("0,1\nten,1\n"), "csv line 2 must be two numbers"));
  CHECK(has(csv_error("0,1\n1,2 3\n"), "csv line 2 must be two numbers"));
  CHECK(csv_error("0,1\n1,nan\n") ==
        "load_trace: csv line 2 rate must be in [0, 1000000000000], got nan");
  CHECK(has(csv_error("0,1\n1,inf\n"), "csv line 2 rate"));
  CHECK(has(csv_error("0,1\n1,-3\n"), "csv line 2 rate"));
  CHECK(has(csv_error("0,1\n1,2e12\n"), "csv line 2 rate"));
  CHECK(has(csv_error("0,1\nnan,1\n"), "csv line 2 seconds"));
  CHECK(has(csv_error("0,1\ninf,1\n"), "csv line 2 seconds"));
  CHECK(has(csv_error("0,1\n2678400,1\n"), "csv line 2 seconds"));
  CHECK(csv_error("5,1\n3,1\n") ==
        "load_trace: csv line 2 seconds must be non-decreasing (>= 5), got 3");
  CHECK(has(csv_error("# only a comment\n"), "at least one"));
  CHECK(has(csv_error(std::string(500, 'x') + ",1\n0,1\n1,2,3" + std::string(500, '4')),
            "...\""));  // long lines are cut in the message
  // Accepted: a header, blanks, CRLF, comments, fractions floored, the last second.
  std::istringstream ok("seconds , rate\r\n 0 , 10 \r\n\r\n# c\n2.7,\t20\n2678399,1\n");
  const auto t = load_trace::from_csv(ok);
  CHECK(t.length() == load_trace::max_length);
  CHECK(t.rate(1) == 10.0);
  CHECK(t.rate(2) == 20.0);
  CHECK(t.rate(2678399) == 1.0);
}

TEST_CASE("load_trace rejects noise fields that no noise reads", "[simulator][config]") {
  CHECK(error_of([] {
          (void)load_trace::steady(10.0, 1h, {0.0, 10s, 1});
        }) ==
        "load_trace: noise.correlation must be the default 30s while noise.relative is 0 "
        "(unused), got 10s");
  CHECK(has(error_of([] {
              (void)load_trace::steady(10.0, 1h, {0.0, 30s, 7});
            }),
            "load_trace: noise.seed must be unset (std::nullopt) while noise.relative is 0 "
            "(unused), got 7"));
  CHECK(has(error_of([] {
              (void)load_trace::steady(10.0, 1h, {not_a_number, 30s, 1});
            }),
            "noise.relative"));
  CHECK_NOTHROW(load_trace::steady(10.0, 1h, {}));
  CHECK_NOTHROW(load_trace::steady(10.0, 1h, {0.2, 5s, 7}));
}

TEST_CASE("simulator rejects absurd config fields and never clamps initial_replicas",
          "[simulator][config]") {
  const load_trace flat("flat", std::vector<double>(100, 1.0));
  using outgrow::config_error;
  const auto message = [&](const outgrow::simulation_config& c) -> std::string {
    try {
      simulator sim(flat, c);
    } catch (const config_error& e) {
      CHECK(e.primitive() == "simulator");
      return e.what();
    }
    return "";
  };
  CHECK(
      message({.capacity_per_replica = not_a_number}) ==
      "simulator: capacity_per_replica must be in (0, 1000000000000] requests/s, got nan");
  CHECK(has(message({.capacity_per_replica = infinite}), "capacity_per_replica"));
  CHECK(has(message({.capacity_per_replica = 2e12}), "capacity_per_replica"));
  CHECK(message({.slo_latency = 2h}) ==
        "simulator: slo_latency must be in (service_time = 20ms, 1h], got 2h");
  CHECK(message({.warmup = 100s}) ==
        "simulator: warmup must be in [0s, the trace's length = 100s), got 100s");
  CHECK(has(message({.record_every = 101s}), "record_every"));
  CHECK(has(message({.record_every = -1s}), "record_every"));
  CHECK(has(message({.settle = 0s}), "settle"));
  CHECK(has(message({.initial_replicas = 1'000'001}), "initial_replicas"));
  CHECK(message({.warmup = 99s, .record_every = 100s}).empty());

  // An explicit initial count outside the run's limits is an error, not a clamp.
  simulator sim(flat, {.initial_replicas = 50});
  try {
    (void)sim.run("x", {.min_replicas = 1, .max_replicas = 10}, fixed_count{1});
    FAIL("no exception");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()) ==
          "simulator: initial_replicas must be in [1, 10], got 50");
  }
  CHECK_THROWS_AS(sim.run("x", {.min_replicas = 60, .max_replicas = 100}, fixed_count{60}),
                  config_error);
  const auto ok = sim.run("x", {.min_replicas = 1, .max_replicas = 50}, fixed_count{50});
  CHECK(ok.timeline.front().replicas == 50);
  // 0 = automatic: enough for the first second, within the limits (documented).
  simulator automatic(load_trace("busy", std::vector<double>(100, 1e6)), {});
  CHECK(automatic.run("x", {.min_replicas = 1, .max_replicas = 10}, fixed_count{10})
            .timeline.front()
            .replicas == 10);
}

TEST_CASE("simulator rejects settle without a spike to measure and bad svg sizes",
          "[simulator][config]") {
  using outgrow::config_error;
  const load_trace flat("flat", std::vector<double>(100, 1.0));
  CHECK_NOTHROW(simulator(flat, {}));
  try {
    simulator sim(flat, {.settle = 30s});
    FAIL("no exception");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()) ==
          "simulator: settle must be the default 60s when the trace has no spike mark at "
          "or after warmup (never read), got 30s");
  }
  const load_trace marked("marked", std::vector<double>(100, 1.0), {50s});
  CHECK_NOTHROW(simulator(marked, {.settle = 30s}));
  CHECK_NOTHROW(simulator(marked, {.warmup = 50s, .settle = 30s}));
  CHECK_THROWS_AS(simulator(marked, {.warmup = 51s, .settle = 30s}), config_error);

  simulator sim(flat, {});
  std::vector<simulation_result> runs;
  runs.push_back(sim.run("x", limits, fixed_count{2}));
  std::ostringstream out;
  CHECK_THROWS_AS(outgrow::write_svg(out, runs, {.width = 100}), config_error);
  CHECK_THROWS_AS(outgrow::write_svg(out, runs, {.height = -5}), config_error);
  CHECK_THROWS_AS(outgrow::write_svg(out, runs, {.width = 1'000'000}), config_error);
  CHECK(out.str().empty());
  const auto path =
      (std::filesystem::temp_directory_path() / "outgrow_simulator_bad.svg").string();
  std::filesystem::remove(path);
  CHECK_THROWS_AS(outgrow::write_svg_file(path, runs, {.height = 10}), config_error);
  CHECK_FALSE(std::filesystem::exists(path));  // checked before the file is created
  CHECK_NOTHROW(outgrow::write_svg(out, runs, {.width = 220, .height = 80}));
}
