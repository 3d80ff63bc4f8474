// autoscaler: every scaling policy on a simulated Black Friday — traffic ramps to 10×
// over 30 minutes, holds for 90, and ramps back — side by side: SLO-violation seconds,
// cost (replica-hours), flapping (reversals), time to absorb the peak, peak replicas,
// and the replica count over time as a sparkline. Writes an SVG plot to argv[1]
// (default: a file in the temp directory).
//
// The service: each replica serves 100 requests/s, takes 60 s to start, 20 ms per
// request unloaded, SLO 500 ms. The autoscaler evaluates every 15 s (the HPA's sync
// period). Simulated time: runs in well under a second and prints the same every time.
#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/autoscale/scaling_policy.hpp>
#include <outgrow/autoscale/simulator.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const double base_rps = 1000.0;
  // ±5 % noise with a fixed seed: the same trace, and the same table, on every run.
  const auto black_friday =
      outgrow::load_trace::black_friday(base_rps, 10.0, 30min, 30min, 90min, 4h,
                                        {.relative = 0.05, .correlation = 30s, .seed = 1});
  outgrow::simulator sim(black_friday, {.capacity_per_replica = 100.0,
                                        .startup = 60s,
                                        .evaluation_period = 15s,
                                        .service_time = 20ms,
                                        .slo_latency = 500ms});
  const outgrow::autoscaler_config limits{.min_replicas = 2, .max_replicas = 200};

  std::vector<outgrow::simulation_result> runs;
  // Kubernetes HPA defaults: 70 % of a replica's capacity per replica.
  runs.push_back(
      sim.run("target_tracking", limits,
              outgrow::target_tracking({.metrics = {{"rps_per_replica", 70.0}}})));
  // The same on CPU: saturates at 100 %, so it can at most add 43 % per evaluation.
  runs.push_back(sim.run("target_cpu", limits,
                         outgrow::target_tracking({.metrics = {{"cpu", 70.0}}})));
  // The textbook's rules: CPU > 70 % for 5 min -> +2, < 30 % for 10 min -> -1.
  runs.push_back(sim.run("step_scaling", limits, outgrow::step_scaling()));
  // Queue backlog per replica (requests waiting or in service), KEDA style.
  runs.push_back(
      sim.run("backlog", {.min_replicas = 0, .max_replicas = 200},
              outgrow::backlog_scaling({.metric = "backlog", .target_per_replica = 1.4})));
  // Predictive without history: reactive until it has seen a full day.
  const outgrow::predictive_scaling_config predictive{.metric = "rps",
                                                      .target_per_replica = 70.0};
  runs.push_back(
      sim.run("predictive_cold", limits, outgrow::predictive_scaling(predictive)));
  // Predictive that learned yesterday's dress rehearsal (same shape, other noise).
  const auto rehearsal =
      outgrow::load_trace::black_friday(base_rps, 10.0, 30min, 30min, 90min, 4h,
                                        {.relative = 0.05, .correlation = 30s, .seed = 99});
  runs.push_back(sim.run_with("predictive_learned", limits, [&](auto& scaler) {
    outgrow::predictive_scaling p(predictive);
    for (std::int64_t s = 0; s < rehearsal.length().count(); s += 15) {
      p.learn(outgrow::scaling_time_point{std::chrono::seconds{s} - 24h},
              rehearsal.rate(s));
    }
    scaler.add_policy(std::move(p));
  }));

  const auto hours = std::chrono::duration<double, std::ratio<3600>>(black_friday.length());
  fmt::print("Black Friday: {:.0f} rps ramping to 10x (noisy peak {:.0f} rps), {:.0f} h\n",
             base_rps, black_friday.peak(), hours.count());
  fmt::print("replica: 100 rps, 60 s start-up; SLO 500 ms; evaluation every 15 s\n\n");
  fmt::print("{}\n", outgrow::comparison_table(runs));

  // One scale for every line (the largest peak).
  double top = 0.0;
  for (const auto& run : runs) {
    top = std::max(top, static_cast<double>(run.report.peak_replicas));
  }
  const double minutes_per_char = hours.count() * 60.0 / 60;  // 60 characters
  fmt::print("replicas over time, 0 to {:.0f}, {:.0f} min per character:\n", top,
             minutes_per_char);
  fmt::print("{:<20}{}\n", "needed (at 100 %)",
             outgrow::sparkline(runs.front().demand_series(), 60, top));
  for (const auto& run : runs) {
    fmt::print("{:<20}{}  peak {}\n", run.report.policy,
               outgrow::sparkline(run.replica_series(), 60, top), run.report.peak_replicas);
  }

  const std::string svg =
      argc > 1
          ? argv[1]
          : (std::filesystem::temp_directory_path() / "outgrow_autoscaler.svg").string();
  if (outgrow::write_svg_file(svg, runs, {.title = "Black Friday: replicas over time"})) {
    fmt::print("\nplot written to {}\n", svg);
  } else {
    fmt::print(stderr, "could not write {}\n", svg);
    return 1;
  }
  return 0;
}
