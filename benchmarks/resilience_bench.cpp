// Resilience benchmarks: the cost a circuit breaker adds to every call.
//
//   BM_raw_call                          the protected function called directly
//   BM_breaker_closed_success            try_acquire + success, default config
//                                        (5 consecutive failures, coarse clock)
//   BM_breaker_closed_success_2threads   the same from 2 threads on one breaker
//   BM_breaker_open_reject               try_acquire while open (rejected)
//   BM_breaker_time_window_success       time_window + slow-call tracking (reads the
//                                        clock twice per call), 1 and 2 threads
//   BM_breaker_call_helper               call(f, fallback) in the closed state
//
// Every benchmark reports allocs_per_call, counted by replacing global operator new in
// this binary; the goal is 0.
#include <outgrow/resilience/circuit_breaker.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>

#include <benchmark/benchmark.h>

#include "../tests/support/counting_new.hpp"

namespace {

using namespace std::chrono_literals;

// The protected call: a little work the compiler cannot remove.
[[gnu::noinline]] std::uint64_t dependency(std::uint64_t x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

struct alloc_counter {
  std::size_t start = outgrow_test::allocations();
  void report(benchmark::State& state) const {
    state.counters["allocs_per_call"] =
        benchmark::Counter(static_cast<double>(outgrow_test::allocations() - start),
                           benchmark::Counter::kAvgIterations);
  }
};

void BM_raw_call(benchmark::State& state) {
  std::uint64_t x = 88172645463325252ULL;
  for (auto _ : state) {
    x = dependency(x);
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(BM_raw_call);

outgrow::circuit_breaker<>& shared_breaker() {
  static outgrow::circuit_breaker<> cb;
  return cb;
}

void BM_breaker_closed_success(benchmark::State& state) {
  auto& cb = shared_breaker();
  std::uint64_t x =
      std::uint64_t{88172645463325252} + static_cast<std::uint64_t>(state.thread_index());
  alloc_counter allocs;
  for (auto _ : state) {
    if (auto p = cb.try_acquire()) {
      x = dependency(x);
      p.success();
    }
    benchmark::DoNotOptimize(x);
  }
  allocs.report(state);
}
BENCHMARK(BM_breaker_closed_success);

void BM_breaker_closed_success_2threads(benchmark::State& state) {
  BM_breaker_closed_success(state);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_breaker_closed_success_2threads)->Threads(2)->UseRealTime();

void BM_breaker_open_reject(benchmark::State& state) {
  outgrow::circuit_breaker<> cb({.open_for = 1h});
  cb.force_open();
  // A tripped breaker, not a forced one: open for an hour.
  cb.reset();
  for (int i = 0; i < 5; ++i) cb.try_acquire().failure();
  std::uint64_t x = 1;
  alloc_counter allocs;
  for (auto _ : state) {
    if (auto p = cb.try_acquire()) {
      x = dependency(x);
      p.success();
    }
    benchmark::DoNotOptimize(x);
  }
  allocs.report(state);
  if (cb.state() != outgrow::breaker_state::open) state.SkipWithError("breaker not open");
}
BENCHMARK(BM_breaker_open_reject);

outgrow::circuit_breaker<outgrow::time_window>& time_window_breaker() {
  static outgrow::circuit_breaker<outgrow::time_window> cb(
      {.window_size = 10, .slow_call_duration = 1s});
  return cb;
}

void BM_breaker_time_window_success(benchmark::State& state) {
  auto& cb = time_window_breaker();
  std::uint64_t x = 7 + static_cast<std::uint64_t>(state.thread_index());
  alloc_counter allocs;
  for (auto _ : state) {
    if (auto p = cb.try_acquire()) {
      x = dependency(x);
      p.success();
    }
    benchmark::DoNotOptimize(x);
  }
  allocs.report(state);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_breaker_time_window_success)->Threads(1)->Threads(2)->UseRealTime();

void BM_breaker_call_helper(benchmark::State& state) {
  outgrow::circuit_breaker<> cb;
  std::uint64_t x = 3;
  alloc_counter allocs;
  for (auto _ : state) {
    x = cb.call([&] { return dependency(x); }, [] { return std::uint64_t{0}; });
    benchmark::DoNotOptimize(x);
  }
  allocs.report(state);
}
BENCHMARK(BM_breaker_call_helper);

}  // namespace
