// Load balancer and read/write splitter benchmarks beside the cost of a shared counter.
//
//   BM_atomic_fetch_add            baseline: one fetch_add on a shared std::atomic counter
//   BM_private_fetch_add           baseline: one fetch_add on a counter of the thread's
//                                  own (cache lines apart): what 2 threads can gain at
//                                  most on this machine right now (1 → 2 threads ratio)
//   BM_lb_pick_round_robin         pick() + success() on 8 endpoints, round_robin
//   BM_lb_pick_p2c                 the same, power_of_two_choices
//   BM_lb_pick_least_connections   the same, least_connections (O(N) scan)
//   BM_lb_pick_wrr                 the same, smooth weighted round robin (weights 1..8)
//   BM_lb_pick_p2c_exact           p2c reading every stripe on every pick (a policy
//                                  derived from p2c with approximate_load = false):
//                                  what p2c's approximate loads save on 2 threads
//   BM_lb_pick_least_connections_approx  least_connections with approximate_load = true:
//                                  what exact counts cost least_connections on 2 threads
//   BM_rw_route_read               read_write_splitter (3 replicas, read_your_writes,
//                                  least_connections): read() + success() for a session
//                                  without writes
//   BM_rw_route_read_after_write   the same for a session whose last write every replica
//                                  has applied (the position check on the chosen replica)
//
// Every case runs at 1 and 2 threads on one shared instance (UseRealTime; items/s =
// picks or routed reads). Goals on one thread, as ratios to BM_atomic_fetch_add/1:
// round robin and WRR <= 4x, p2c <= 6x, a routed read <= 8x. On 2 threads (issue 20):
// RR, WRR and p2c (the least-request policy, on approximate loads) pick >= 1.5x one
// thread's total; least_connections keeps exact counts (see "Per-thread stripes" in
// load_balancer.hpp) and is reported, with the two variants above, for comparison.
// Compare with BM_private_fetch_add's own 1 → 2 ratio: on a loaded machine (other
// processes on the cores) no code reaches 2x, and that ratio says how far this run
// could go (when it is near 1, the two threads mostly take turns on one core and the
// cross-core misses the stripes avoid hardly happen: such a run shows nothing about
// scaling). Run with --benchmark_repetitions=5 and read the medians.
#include <outgrow/routing/load_balancer.hpp>
#include <outgrow/routing/read_write_splitter.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

namespace {

std::vector<outgrow::weighted_node<std::string>> endpoints(bool weighted) {
  std::vector<outgrow::weighted_node<std::string>> out;
  for (int i = 0; i < 8; ++i) {
    out.push_back({fmt::format("10.0.0.{}:8080", i + 1), weighted ? i + 1.0 : 1.0});
  }
  return out;
}

std::atomic<std::uint64_t> shared_counter{0};

void BM_atomic_fetch_add(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(shared_counter.fetch_add(1));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_atomic_fetch_add)->Threads(1)->Threads(2)->UseRealTime();

struct alignas(128) private_counter {
  std::atomic<std::uint64_t> value{0};
};
private_counter private_counters[2];

void BM_private_fetch_add(benchmark::State& state) {
  auto& c = private_counters[static_cast<std::size_t>(state.thread_index()) % 2].value;
  for (auto _ : state) {
    benchmark::DoNotOptimize(c.fetch_add(1));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_private_fetch_add)->Threads(1)->Threads(2)->UseRealTime();

template <class Policy>
outgrow::load_balancer<std::string, Policy>& balancer(bool weighted) {
  // A seed only for the policies that draw random numbers (config_error otherwise).
  constexpr bool draws = outgrow::detail::lb_policy_traits<Policy>::draws_random;
  static outgrow::load_balancer<std::string, Policy> lb(
      endpoints(weighted),
      {.seed = draws ? std::optional<std::uint64_t>{42} : std::nullopt});
  return lb;
}

template <class Policy>
void pick_and_release(benchmark::State& state, bool weighted) {
  auto& lb = balancer<Policy>(weighted);
  for (auto _ : state) {
    auto lease = lb.pick();
    benchmark::DoNotOptimize(&lease.endpoint());
    lease.success();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_lb_pick_round_robin(benchmark::State& state) {
  pick_and_release<outgrow::round_robin>(state, false);
}
BENCHMARK(BM_lb_pick_round_robin)->Threads(1)->Threads(2)->UseRealTime();

void BM_lb_pick_p2c(benchmark::State& state) {
  pick_and_release<outgrow::power_of_two_choices>(state, false);
}
BENCHMARK(BM_lb_pick_p2c)->Threads(1)->Threads(2)->UseRealTime();

void BM_lb_pick_least_connections(benchmark::State& state) {
  pick_and_release<outgrow::least_connections>(state, false);
}
BENCHMARK(BM_lb_pick_least_connections)->Threads(1)->Threads(2)->UseRealTime();

void BM_lb_pick_wrr(benchmark::State& state) {
  pick_and_release<outgrow::weighted_round_robin>(state, true);
}
BENCHMARK(BM_lb_pick_wrr)->Threads(1)->Threads(2)->UseRealTime();

struct p2c_exact : outgrow::power_of_two_choices {
  static constexpr std::string_view name = "p2c_exact";
  static constexpr bool approximate_load = false;
};

void BM_lb_pick_p2c_exact(benchmark::State& state) {
  pick_and_release<p2c_exact>(state, false);
}
BENCHMARK(BM_lb_pick_p2c_exact)->Threads(1)->Threads(2)->UseRealTime();

struct least_connections_approx : outgrow::least_connections {
  static constexpr std::string_view name = "least_connections_approx";
  static constexpr bool approximate_load = true;
};

void BM_lb_pick_least_connections_approx(benchmark::State& state) {
  pick_and_release<least_connections_approx>(state, false);
}
BENCHMARK(BM_lb_pick_least_connections_approx)->Threads(1)->Threads(2)->UseRealTime();

outgrow::read_write_splitter<std::string>& splitter() {
  static outgrow::read_write_splitter<std::string> db(
      "10.0.1.1:5432", {{"10.0.1.2:5432"}, {"10.0.1.3:5432"}, {"10.0.1.4:5432"}});
  return db;
}

void BM_rw_route_read(benchmark::State& state) {
  auto& db = splitter();
  outgrow::session_token session;
  for (auto _ : state) {
    auto r = db.read(session);
    benchmark::DoNotOptimize(&r.connection());
    r.success();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_rw_route_read)->Threads(1)->Threads(2)->UseRealTime();

void BM_rw_route_read_after_write(benchmark::State& state) {
  auto& db = splitter();
  if (state.thread_index() == 0) {
    for (const char* r : {"10.0.1.2:5432", "10.0.1.3:5432", "10.0.1.4:5432"}) {
      db.report_applied(r, 1000);
    }
  }
  outgrow::session_token session{.last_write_position = 900, .last_write_ns = 0};
  for (auto _ : state) {
    auto r = db.read(session);
    benchmark::DoNotOptimize(&r.connection());
    r.success();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_rw_route_read_after_write)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
