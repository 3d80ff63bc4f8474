// Eviction-policy benchmarks: the cost of one cache-aside request (get, put on a miss)
// through outgrow::cache with each policy, replaying one Zipf 0.9 trace over 1M keys,
// so one run gives the ratios against LRU (the baseline).
//
//   BM_cache_policy_lru               outgrow::cache with lru (the baseline)
//   BM_cache_policy_sieve             ... sieve
//   BM_cache_policy_s3_fifo           ... s3_fifo (move to main at 2 hits)
//   BM_cache_policy_w_tiny_lfu_fixed  ... w_tiny_lfu, window fixed at 1 %
//   BM_cache_policy_w_tiny_lfu        ... w_tiny_lfu, the default (adaptive window:
//                                     miniature simulations on 1 in capacity/128 keys)
//
// Argument: the capacity (1,000 and 100,000 entries). The trace (2^20 requests,
// precomputed) repeats; caches are warmed by one pass before timing. items/s = requests/s;
// the "hit_ratio" counter is measured over the timed requests.
#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/eviction.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#include <benchmark/benchmark.h>

#include "cache_traces.hpp"

namespace {

constexpr std::size_t kRequests = std::size_t{1} << 20;  // power of two: mask the index

const std::vector<std::uint64_t>& trace() {
  static const std::vector<std::uint64_t> t = outgrow_test::zipf_trace(
      {.keys = 1'000'000, .alpha = 0.9, .requests = kRequests, .seed = 42});
  return t;
}

template <class Cache>
void replay(benchmark::State& state, Cache& cache) {
  const auto& t = trace();
  for (const auto k : t) {
    if (!cache.get(k)) cache.put(k, 1);
  }
  std::size_t i = 0;
  std::size_t hits = 0;
  for (auto _ : state) {
    const std::uint64_t k = t[i++ & (kRequests - 1)];
    if (auto v = cache.get(k)) {
      ++hits;
      benchmark::DoNotOptimize(*v);
    } else {
      cache.put(k, 1);
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["hit_ratio"] =
      static_cast<double>(hits) / static_cast<double>(state.iterations());
}

template <class Policy>
void BM_policy(benchmark::State& state) {
  outgrow::cache<std::uint64_t, std::uint32_t, Policy> c(
      {.capacity = static_cast<std::size_t>(state.range(0))});
  replay(state, c);
}

void BM_cache_policy_lru(benchmark::State& state) {
  BM_policy<outgrow::lru>(state);
}
void BM_cache_policy_sieve(benchmark::State& state) {
  BM_policy<outgrow::sieve>(state);
}
void BM_cache_policy_s3_fifo(benchmark::State& state) {
  BM_policy<outgrow::s3_fifo>(state);
}
void BM_cache_policy_w_tiny_lfu(benchmark::State& state) {
  BM_policy<outgrow::w_tiny_lfu>(state);
}
void BM_cache_policy_w_tiny_lfu_fixed(benchmark::State& state) {
  outgrow::cache<std::uint64_t, std::uint32_t, outgrow::w_tiny_lfu> c(
      {.capacity = static_cast<std::size_t>(state.range(0))}, {.adaptive_window = false});
  replay(state, c);
}

BENCHMARK(BM_cache_policy_lru)->Arg(1'000)->Arg(100'000);
BENCHMARK(BM_cache_policy_sieve)->Arg(1'000)->Arg(100'000);
BENCHMARK(BM_cache_policy_s3_fifo)->Arg(1'000)->Arg(100'000);
BENCHMARK(BM_cache_policy_w_tiny_lfu_fixed)->Arg(1'000)->Arg(100'000);
BENCHMARK(BM_cache_policy_w_tiny_lfu)->Arg(1'000)->Arg(100'000);

}  // namespace
