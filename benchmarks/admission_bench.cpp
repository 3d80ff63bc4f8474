// Admission benchmarks: what a rate limit or a bulkhead adds to every call, beside the
// primitive it is built on.
//
//   BM_atomic_fetch_add                    one relaxed fetch_add on a shared counter
//   BM_rate_limiter_try_acquire            try_acquire (admitted: rate 1e9/s), coarse clock
//   BM_rate_limiter_try_acquire_batched    the same with thread_batch = 64
//   BM_counting_semaphore_acquire_release  std::counting_semaphore acquire + release
//   BM_bulkhead_acquire_release            try_acquire + release of a permit
//   BM_raw_call                            the protected function called directly
//   BM_pipeline_success                    rate limit + bulkhead + retry + breaker around
//                                          it, success path (goal: <= 50 ns over raw,
//                                          0 allocations)
//
// Threads 1 and 2 share one instance; Google Benchmark reports per-thread time, so the
// total rate of N threads is N / time. Every benchmark reports allocs_per_call (global
// operator new is counted in this binary); the goal is 0.
#include <outgrow/admission/bulkhead.hpp>
#include <outgrow/admission/rate_limiter.hpp>
#include <outgrow/admission/resilience_pipeline.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>
#include <outgrow/resilience/retry.hpp>

#include <atomic>
#include <cstdint>
#include <semaphore>

#include <benchmark/benchmark.h>

#include "../tests/support/counting_new.hpp"

namespace {

struct alloc_counter {
  std::size_t start = outgrow_test::allocations();
  void report(benchmark::State& state) const {
    state.counters["allocs_per_call"] = benchmark::Counter(
        static_cast<double>(outgrow_test::allocations() - start) /
        static_cast<double>(state.iterations() == 0 ? 1 : state.iterations()));
  }
};

std::atomic<std::uint64_t> shared_counter{0};

void BM_atomic_fetch_add(benchmark::State& state) {
  alloc_counter allocs;
  for (auto _ : state) {
    benchmark::DoNotOptimize(shared_counter.fetch_add(1, std::memory_order_relaxed));
  }
  allocs.report(state);
}
BENCHMARK(BM_atomic_fetch_add)->Threads(1)->Threads(2);

outgrow::rate_limiter<> limiter({.permits_per_second = 1e9, .burst = 1'000'000'000});
// The same with per-thread batches of 64 permits (rate_limiter_config::thread_batch).
outgrow::rate_limiter<> batched_limiter({.permits_per_second = 1e9,
                                         .burst = 1'000'000'000,
                                         .thread_batch = 64});

void try_acquire_loop(benchmark::State& state, outgrow::rate_limiter<>& l) {
  alloc_counter allocs;
  std::uint64_t admitted = 0;
  for (auto _ : state) {
    if (l.try_acquire()) ++admitted;
  }
  state.counters["admitted_share"] = benchmark::Counter(
      static_cast<double>(admitted) /
          static_cast<double>(state.iterations() == 0 ? 1 : state.iterations()),
      benchmark::Counter::kAvgThreads);
  allocs.report(state);
}

void BM_rate_limiter_try_acquire(benchmark::State& state) {
  try_acquire_loop(state, limiter);
}
BENCHMARK(BM_rate_limiter_try_acquire)->Threads(1)->Threads(2);

void BM_rate_limiter_try_acquire_batched(benchmark::State& state) {
  try_acquire_loop(state, batched_limiter);
}
BENCHMARK(BM_rate_limiter_try_acquire_batched)->Threads(1)->Threads(2);

std::counting_semaphore<1'000'000> semaphore(1000);

void BM_counting_semaphore_acquire_release(benchmark::State& state) {
  alloc_counter allocs;
  for (auto _ : state) {
    semaphore.acquire();
    semaphore.release();
  }
  allocs.report(state);
}
BENCHMARK(BM_counting_semaphore_acquire_release)->Threads(1)->Threads(2);

outgrow::bulkhead bulk({.max_concurrent_calls = 1000});

void BM_bulkhead_acquire_release(benchmark::State& state) {
  alloc_counter allocs;
  for (auto _ : state) {
    auto permit = bulk.try_acquire();
    benchmark::DoNotOptimize(permit);
  }
  allocs.report(state);
}
BENCHMARK(BM_bulkhead_acquire_release)->Threads(1)->Threads(2);

// The protected call: a little work the compiler cannot remove.
[[gnu::noinline]] std::uint64_t dependency(std::uint64_t x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

void BM_raw_call(benchmark::State& state) {
  alloc_counter allocs;
  std::uint64_t x = 1;
  for (auto _ : state) {
    x = dependency(x);
    benchmark::DoNotOptimize(x);
  }
  allocs.report(state);
}
BENCHMARK(BM_raw_call);

void BM_pipeline_success(benchmark::State& state) {
  outgrow::rate_limiter<> rate({.permits_per_second = 1e9, .burst = 1'000'000'000});
  outgrow::bulkhead permits({.max_concurrent_calls = 1000});
  outgrow::retry_budget<> budget;
  outgrow::retry<> retry({.max_attempts = 3}, {}, budget);
  outgrow::circuit_breaker<> breaker;
  outgrow::resilience_pipeline pipeline{
      outgrow::rate_limit_stage{rate}, outgrow::bulkhead_stage{permits},
      outgrow::retry_stage{retry}, outgrow::breaker_stage{breaker}};
  alloc_counter allocs;
  std::uint64_t x = 1;
  for (auto _ : state) {
    auto r = pipeline.execute([&] { return dependency(x); });
    x = *r.value;
    benchmark::DoNotOptimize(x);
  }
  allocs.report(state);
}
BENCHMARK(BM_pipeline_success);

}  // namespace
