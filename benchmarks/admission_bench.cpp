// Admission benchmarks: what a rate limit or a bulkhead adds to every call, beside the
// primitive it is built on.
//
//   BM_atomic_fetch_add                    one relaxed fetch_add on a shared counter
//   BM_rate_limiter_try_acquire            try_acquire (admitted: rate 1e9/s), coarse clock
//   BM_counting_semaphore_acquire_release  std::counting_semaphore acquire + release
//   BM_bulkhead_acquire_release            try_acquire + release of a permit
//
// Threads 1 and 2 share one instance; Google Benchmark reports per-thread time, so the
// total rate of N threads is N / time. Every benchmark reports allocs_per_call (global
// operator new is counted in this binary); the goal is 0.
#include <outgrow/admission/bulkhead.hpp>
#include <outgrow/admission/rate_limiter.hpp>

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

void BM_rate_limiter_try_acquire(benchmark::State& state) {
  alloc_counter allocs;
  std::uint64_t admitted = 0;
  for (auto _ : state) {
    if (limiter.try_acquire()) ++admitted;
  }
  state.counters["admitted_share"] = benchmark::Counter(
      static_cast<double>(admitted) /
          static_cast<double>(state.iterations() == 0 ? 1 : state.iterations()),
      benchmark::Counter::kAvgThreads);
  allocs.report(state);
}
BENCHMARK(BM_rate_limiter_try_acquire)->Threads(1)->Threads(2);

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

}  // namespace
