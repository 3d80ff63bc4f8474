// Core benchmarks: the stable placement hash against std::hash (the baseline a user
// would otherwise reach for; not stable across platforms or releases).
#include <outgrow/core/hash.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace {

std::vector<std::string> make_keys(std::size_t n) {
  std::vector<std::string> keys;
  keys.reserve(n);
  for (std::size_t i = 0; i < n; ++i) keys.push_back("user:" + std::to_string(i * 7919));
  return keys;
}

void BM_xxh3_hasher_string(benchmark::State& state) {
  const auto keys = make_keys(1024);
  const outgrow::xxh3_hasher h;
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(h(keys[i++ & 1023]));
  }
}
BENCHMARK(BM_xxh3_hasher_string);

void BM_std_hash_string(benchmark::State& state) {
  const auto keys = make_keys(1024);
  const std::hash<std::string> h;
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(h(keys[i++ & 1023]));
  }
}
BENCHMARK(BM_std_hash_string);

void BM_xxh3_hasher_u64(benchmark::State& state) {
  const outgrow::xxh3_hasher h;
  std::uint64_t k = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(h(k++));
  }
}
BENCHMARK(BM_xxh3_hasher_u64);

void BM_std_hash_u64(benchmark::State& state) {
  // std::hash<uint64_t> is the identity on libstdc++: fast, but no mixing at all.
  const std::hash<std::uint64_t> h;
  std::uint64_t k = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(h(k++));
  }
}
BENCHMARK(BM_std_hash_u64);

}  // namespace
