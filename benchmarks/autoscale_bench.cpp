// Autoscale benchmarks: what one autoscaler evaluation and one sample cost.
//
//   BM_hpa_formula_baseline              ceil(current x value / target) inline: the floor
//   BM_autoscaler_evaluate_target        one period: 3 observe() + evaluate() with
//                                        target_tracking on one metric (HPA defaults:
//                                        300 s window of 15 s evaluations)
//   BM_autoscaler_evaluate_all_policies  the same with target_tracking (2 metrics),
//                                        step_scaling, backlog and predictive
//   BM_autoscaler_observe                one observe() into a full 1 h history
//                                        (subtract 3 of these to get evaluate() alone)
//   BM_simulator_hour                    one simulated hour (3600 steps, 240 ticks)
//
// Each evaluation runs at a new time 15 s later, with fresh samples, as in production.
// BM_autoscaler_observe also evaluates once per 4096 samples (to prune the history).
// allocs_per_call counts global operator new in this binary; the goal is 0.
#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/autoscale/scaling_policy.hpp>
#include <outgrow/autoscale/simulator.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>

#include <benchmark/benchmark.h>

#include "../tests/support/counting_new.hpp"

namespace {

using namespace std::chrono_literals;
using scaler_t = outgrow::autoscaler<outgrow::manual_clock>;

struct alloc_counter {
  std::size_t start = outgrow_test::allocations();
  void report(benchmark::State& state) const {
    state.counters["allocs_per_call"] =
        benchmark::Counter(static_cast<double>(outgrow_test::allocations() - start),
                           benchmark::Counter::kAvgIterations);
  }
};

double wave(std::uint64_t i) {
  return 1.0 + 0.3 * std::sin(static_cast<double>(i) / 40.0);
}

/// Feeds one round of samples 15 s after the previous one.
void feed(scaler_t& scaler, outgrow::manual_clock& clock, std::uint64_t i) {
  clock.advance(15s);
  scaler.observe("cpu", 60.0 * wave(i));
  scaler.observe("rps", 1000.0 * wave(i));
  scaler.observe("jobs", 300.0 * wave(i));
}

void warm_up(scaler_t& scaler, outgrow::manual_clock& clock) {
  scaler.set_replicas(10);
  for (std::uint64_t i = 0; i < 600; ++i) {
    feed(scaler, clock, i);
    benchmark::DoNotOptimize(scaler.evaluate());
  }
}

void BM_hpa_formula_baseline(benchmark::State& state) {
  std::uint64_t i = 0;
  int current = 10;
  for (auto _ : state) {
    const double ratio = 60.0 * wave(i++) / 70.0;
    const int desired = std::abs(1.0 - ratio) <= 0.1
                            ? current
                            : static_cast<int>(std::ceil(ratio * current));
    benchmark::DoNotOptimize(desired);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_hpa_formula_baseline);

void BM_autoscaler_evaluate_target(benchmark::State& state) {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 100}, clock);
  scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 70.0}}}));
  warm_up(scaler, clock);
  std::uint64_t i = 600;
  alloc_counter allocs;
  for (auto _ : state) {
    feed(scaler, clock, i++);
    benchmark::DoNotOptimize(scaler.evaluate());
  }
  allocs.report(state);
}
BENCHMARK(BM_autoscaler_evaluate_target);

void BM_autoscaler_evaluate_all_policies(benchmark::State& state) {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 100}, clock);
  scaler.add_policy(outgrow::target_tracking(
      {.metrics = {{"cpu", 70.0}, {"rps", 100.0, outgrow::metric_target_type::total}}}));
  scaler.add_policy(outgrow::step_scaling());
  scaler.add_policy(
      outgrow::backlog_scaling({.metric = "jobs", .target_per_replica = 30.0}));
  scaler.add_policy(outgrow::predictive_scaling(
      {.metric = "rps", .target_per_replica = 100.0, .period = 1h, .min_history = 1h}));
  warm_up(scaler, clock);
  std::uint64_t i = 600;
  alloc_counter allocs;
  for (auto _ : state) {
    feed(scaler, clock, i++);
    benchmark::DoNotOptimize(scaler.evaluate());
  }
  allocs.report(state);
}
BENCHMARK(BM_autoscaler_evaluate_all_policies);

void BM_autoscaler_observe(benchmark::State& state) {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 100}, clock);
  scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 70.0}}}));
  warm_up(scaler, clock);
  std::uint64_t i = 0;
  alloc_counter allocs;
  for (auto _ : state) {
    clock.advance(1s);
    benchmark::DoNotOptimize(scaler.observe("cpu", 60.0 * wave(i++)));
    if (i % 4096 == 0) benchmark::DoNotOptimize(scaler.evaluate());  // prunes history
  }
  allocs.report(state);
}
BENCHMARK(BM_autoscaler_observe);

void BM_simulator_hour(benchmark::State& state) {
  const auto trace = outgrow::load_trace::steady(
      1000.0, 1h, {.relative = 0.1, .correlation = std::chrono::seconds{10}, .seed = 1});
  outgrow::simulator sim(trace, {});
  for (auto _ : state) {
    auto run = sim.run("tt", {.min_replicas = 1, .max_replicas = 100},
                       outgrow::target_tracking({.metrics = {{"rps_per_replica", 70.0}}}));
    benchmark::DoNotOptimize(run.report.replica_seconds);
  }
  state.SetItemsProcessed(state.iterations() * 3600);
}
BENCHMARK(BM_simulator_hour)->Unit(benchmark::kMillisecond);

}  // namespace
