// Routing benchmarks: placement policies and the range router beside their baselines.
//
//   BM_hash_ring_lookup      100 nodes x 160 vnodes (ring_placement, bucket-indexed)
//   BM_hash_ring_concurrent  the same through hash_ring (snapshot check per lookup)
//   BM_maglev_lookup         100 nodes, table 65537
//   BM_rendezvous_lookup     100 nodes (O(N) by design)
//   BM_jump_hash_lookup      baseline: jump consistent hash, 100 buckets
//   BM_range_router_lookup   10,000 ranges (range_shards: radix index over the split
//                            points, dense buckets indexed again, detail/radix_index.hpp)
//   BM_std_map_upper_bound   baseline: std::map<uint64_t, shard>::upper_bound,
//                            10,000 ranges
// Goal (issue 20): the range router <= 0.3x std::map::upper_bound, /clustered:1 too.
//
// Each placement runs twice: /prehashed (the key's 64-bit hash is given) and /string
// ("user:N" keys hashed with XXH3 inside the lookup).
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/jump_hash.hpp>
#include <outgrow/routing/maglev.hpp>
#include <outgrow/routing/rendezvous.hpp>
#include <outgrow/routing/shard_router.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

namespace {

constexpr std::uint32_t kNodes = 100;
constexpr std::size_t kKeys = 4096;  // power of two: index with a mask

std::vector<std::uint32_t> node_ids() {
  std::vector<std::uint32_t> ids(kNodes);
  for (std::uint32_t i = 0; i < kNodes; ++i) ids[i] = i;
  return ids;
}

const std::vector<std::uint64_t>& key_hashes() {
  static const std::vector<std::uint64_t> hashes = [] {
    std::vector<std::uint64_t> h(kKeys);
    std::mt19937_64 rng(42);
    for (auto& x : h) x = rng();
    return h;
  }();
  return hashes;
}

const std::vector<std::string>& string_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k(kKeys);
    for (std::size_t i = 0; i < kKeys; ++i) k[i] = fmt::format("user:{}", i * 7919);
    return k;
  }();
  return keys;
}

template <class P>
void run_prehashed(benchmark::State& state, const P& p) {
  const auto& hashes = key_hashes();
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(p.lookup_hash(hashes[i++ & (kKeys - 1)]));
  }
}

template <class P>
void run_string(benchmark::State& state, const P& p) {
  const auto& keys = string_keys();
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(p.lookup(keys[i++ & (kKeys - 1)]));
  }
}

// ---- placements ---------------------------------------------------------------------

void BM_hash_ring_lookup(benchmark::State& state) {
  const outgrow::ring_placement<std::uint32_t> ring(node_ids(), {.vnodes = 160});
  state.range(0) == 0 ? run_prehashed(state, ring) : run_string(state, ring);
}
BENCHMARK(BM_hash_ring_lookup)->ArgName("string")->Arg(0)->Arg(1);

void BM_hash_ring_concurrent_lookup(benchmark::State& state) {
  const outgrow::hash_ring<std::uint32_t> ring(node_ids(), {.vnodes = 160});
  state.range(0) == 0 ? run_prehashed(state, ring) : run_string(state, ring);
}
BENCHMARK(BM_hash_ring_concurrent_lookup)->ArgName("string")->Arg(0)->Arg(1);

void BM_maglev_lookup(benchmark::State& state) {
  const outgrow::maglev_placement<std::uint32_t> maglev(node_ids());
  state.range(0) == 0 ? run_prehashed(state, maglev) : run_string(state, maglev);
}
BENCHMARK(BM_maglev_lookup)->ArgName("string")->Arg(0)->Arg(1);

void BM_rendezvous_lookup(benchmark::State& state) {
  const outgrow::rendezvous_placement<std::uint32_t> hrw(node_ids());
  state.range(0) == 0 ? run_prehashed(state, hrw) : run_string(state, hrw);
}
BENCHMARK(BM_rendezvous_lookup)->ArgName("string")->Arg(0)->Arg(1);

void BM_jump_hash_lookup(benchmark::State& state) {
  const outgrow::jump_placement<std::uint32_t> jump(node_ids());
  state.range(0) == 0 ? run_prehashed(state, jump) : run_string(state, jump);
}
BENCHMARK(BM_jump_hash_lookup)->ArgName("string")->Arg(0)->Arg(1);

// ---- ranges -----------------------------------------------------------------------------

constexpr std::size_t kRanges = 10'000;

std::vector<std::uint64_t> split_points() {
  std::vector<std::uint64_t> s(kRanges - 1);
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = (i + 1) * (~std::uint64_t{0} / kRanges);
  return s;
}

// Split points: /0 evenly cut (the common case: ranges of ids or hash prefixes), /1
// clustered (exponentially growing gaps: most split points crowd one corner of the key
// space, the radix index's worst realistic case).
std::vector<std::uint64_t> range_splits(std::int64_t shape) {
  if (shape == 0) return split_points();
  std::vector<std::uint64_t> s(kRanges - 1);
  double x = 1.0;
  for (auto& v : s) {
    x *= 1.0041;  // 1.0041^9999 ~ 6e17 < 2^64
    v = static_cast<std::uint64_t>(x);
  }
  s.erase(std::unique(s.begin(), s.end()), s.end());
  return s;
}

// Keys spread like the split points, so every range is hit.
std::vector<std::uint64_t> range_keys(const std::vector<std::uint64_t>& splits) {
  std::vector<std::uint64_t> keys(kKeys);
  std::mt19937_64 rng(7);
  for (auto& k : keys) {
    const auto i = static_cast<std::size_t>(rng() % splits.size());
    k = splits[i] + (i + 1 < splits.size() ? (splits[i + 1] - splits[i]) / 2 : 1);
  }
  return keys;
}

void BM_range_router_lookup(benchmark::State& state) {
  const auto splits = range_splits(state.range(0));
  const outgrow::range_shards<std::uint64_t> ranges(splits);
  const auto keys = range_keys(splits);
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ranges.route(keys[i++ & (kKeys - 1)]));
  }
}
BENCHMARK(BM_range_router_lookup)->ArgName("clustered")->Arg(0)->Arg(1);

void BM_std_map_upper_bound(benchmark::State& state) {
  // The usual hand-rolled range map: lower bound of each range -> shard.
  const auto splits = range_splits(state.range(0));
  std::map<std::uint64_t, std::uint32_t> ranges;
  ranges.emplace(0, 0);
  std::uint32_t shard = 1;
  for (auto s : splits) ranges.emplace(s, shard++);
  const auto keys = range_keys(splits);
  std::size_t i = 0;
  for (auto _ : state) {
    auto it = ranges.upper_bound(keys[i++ & (kKeys - 1)]);
    benchmark::DoNotOptimize(std::prev(it)->second);
  }
}
BENCHMARK(BM_std_map_upper_bound)->ArgName("clustered")->Arg(0)->Arg(1);

}  // namespace
