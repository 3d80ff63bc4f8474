// Cache benchmarks: concurrent_cache beside its baselines, in one binary so one run
// gives the ratios.
//
//   BM_cache_get_hit         concurrent_cache<uint64_t, uint64_t>::get, every key cached
//   BM_cache_get_miss        the same with keys that are not cached
//   BM_cache_put             put over 4 x capacity distinct keys (steady-state eviction)
//   BM_cache_get_hit_string  get hit with std::string values (shared-lock read path)
//   BM_unordered_map_find    baseline: std::unordered_map<uint64_t, uint64_t>::find
//   BM_mutex_lru_get         baseline: the textbook LRU (std::list + std::unordered_map
//                            behind one std::mutex; every hit moves the node to the front)
//   BM_compute_baseline      xorshift loop, no shared memory: how well this machine scales
//
// Working set: 100,000 random uint64 keys, capacity 200,000 (nothing is evicted in the
// get benchmarks). Every benchmark reads its keys from a precomputed random array of
// 2^17 draws, so the loop overhead is the same everywhere; the second thread starts
// half-way through the array. Threaded cases run with 1 and 2 threads in real time and
// report items/s for all threads together; compare them as ratios within one run.
// Results are consumed as a plain value (value_or / has_value, like it->second for the
// map): DoNotOptimize on a whole std::optional would force it through memory, where
// its 8-byte value and 1-byte flag stores stall the 16-byte reload (store forwarding).
//
// Goals (see include/outgrow/cache/concurrent_cache.hpp for the design):
//   1. get hit on one thread <= 2x the time of unordered_map find;
//   2. get hit speed-up from 1 to 2 threads >= 0.8x the compute baseline's speed-up;
//   3. get hit items/s at 2 threads >= 10x the mutex LRU's.
#include <outgrow/cache/concurrent_cache.hpp>

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

namespace {

constexpr std::size_t kKeys = 100'000;
constexpr std::size_t kCapacity = 200'000;
constexpr std::size_t kDraws = std::size_t{1} << 17;  // power of two: index with a mask

struct key_sets {
  std::vector<std::uint64_t> keys;    // the working set
  std::vector<std::uint64_t> hits;    // draws from keys
  std::vector<std::uint64_t> misses;  // draws from keys never inserted
  std::vector<std::uint64_t> puts;    // draws from 4 x capacity distinct keys
};

const key_sets& sets() {
  static const key_sets s = [] {
    key_sets k;
    std::mt19937_64 rng(42);
    k.keys.resize(kKeys);
    for (auto& x : k.keys) x = rng() | 1U;  // odd: present
    std::uniform_int_distribution<std::size_t> pick(0, kKeys - 1);
    k.hits.resize(kDraws);
    for (auto& x : k.hits) x = k.keys[pick(rng)];
    k.misses.resize(kDraws);
    for (auto& x : k.misses) x = rng() & ~std::uint64_t{1};  // even: absent
    k.puts.resize(kDraws);
    for (auto& x : k.puts) x = rng() % (4 * kCapacity);
    return k;
  }();
  return s;
}

// Each thread walks the draws from its own starting point.
std::size_t start_for(const benchmark::State& state) {
  return static_cast<std::size_t>(state.thread_index()) * (kDraws / 2);
}

using cache_type = outgrow::concurrent_cache<std::uint64_t, std::uint64_t>;

cache_type& filled_cache() {
  static cache_type cache({.capacity = kCapacity});
  static const bool filled = [] {
    for (const auto k : sets().keys) cache.put(k, k * 3);
    return true;
  }();
  (void)filled;
  return cache;
}

// The textbook LRU cache: one mutex, a recency list and a hash index into it.
class mutex_lru {
 public:
  explicit mutex_lru(std::size_t capacity) : capacity_(capacity) {}

  std::optional<std::uint64_t> get(std::uint64_t key) {
    const std::lock_guard lock(mutex_);
    const auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->second;
  }

  void put(std::uint64_t key, std::uint64_t value) {
    const std::lock_guard lock(mutex_);
    if (const auto it = index_.find(key); it != index_.end()) {
      it->second->second = value;
      order_.splice(order_.begin(), order_, it->second);
      return;
    }
    if (index_.size() == capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    order_.emplace_front(key, value);
    index_.emplace(key, order_.begin());
  }

 private:
  std::mutex mutex_;
  std::size_t capacity_;
  std::list<std::pair<std::uint64_t, std::uint64_t>> order_;
  std::unordered_map<std::uint64_t,
                     std::list<std::pair<std::uint64_t, std::uint64_t>>::iterator>
      index_;
};

// ---- concurrent_cache ------------------------------------------------------------

void BM_cache_get_hit(benchmark::State& state) {
  cache_type& cache = filled_cache();
  const auto& draws = sets().hits;
  std::size_t i = start_for(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cache.get(draws[i++ & (kDraws - 1)]).value_or(0));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_cache_get_hit)->Threads(1)->Threads(2)->UseRealTime();

void BM_cache_get_miss(benchmark::State& state) {
  cache_type& cache = filled_cache();
  const auto& draws = sets().misses;
  std::size_t i = start_for(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cache.get(draws[i++ & (kDraws - 1)]).has_value());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_cache_get_miss)->Threads(1)->Threads(2)->UseRealTime();

void BM_cache_put(benchmark::State& state) {
  static cache_type cache({.capacity = kCapacity});
  const auto& draws = sets().puts;
  std::size_t i = start_for(state);
  for (auto _ : state) {
    const std::uint64_t k = draws[i++ & (kDraws - 1)];
    benchmark::DoNotOptimize(cache.put(k, k));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_cache_put)->Threads(1)->Threads(2)->UseRealTime();

// Values that are not trivially copyable (std::string) cannot be read optimistically:
// their gets take the shard's shared_mutex in shared mode (for comparison; no goal).
void BM_cache_get_hit_string(benchmark::State& state) {
  using string_cache = outgrow::concurrent_cache<std::uint64_t, std::string>;
  static string_cache cache({.capacity = kCapacity});
  static const bool filled = [] {
    for (const auto k : sets().keys) cache.put(k, std::to_string(k % 10'000'000));
    return true;
  }();
  (void)filled;
  const auto& draws = sets().hits;
  std::size_t i = start_for(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cache.get(draws[i++ & (kDraws - 1)]));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_cache_get_hit_string)->Threads(1)->Threads(2)->UseRealTime();

// ---- baselines -------------------------------------------------------------------

void BM_unordered_map_find(benchmark::State& state) {
  static const std::unordered_map<std::uint64_t, std::uint64_t> map = [] {
    std::unordered_map<std::uint64_t, std::uint64_t> m;
    for (const auto k : sets().keys) m.emplace(k, k * 3);
    return m;
  }();
  const auto& draws = sets().hits;
  std::size_t i = start_for(state);
  for (auto _ : state) {
    const auto it = map.find(draws[i++ & (kDraws - 1)]);
    benchmark::DoNotOptimize(it->second);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
// 1 thread is the goal's reference; 2 threads (read-only, no synchronization at all)
// shows how well a memory-bound lookup can scale here.
BENCHMARK(BM_unordered_map_find)->Threads(1)->Threads(2)->UseRealTime();

void BM_mutex_lru_get(benchmark::State& state) {
  static mutex_lru lru(kCapacity);
  static const bool filled = [] {
    for (const auto k : sets().keys) lru.put(k, k * 3);
    return true;
  }();
  (void)filled;
  const auto& draws = sets().hits;
  std::size_t i = start_for(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(lru.get(draws[i++ & (kDraws - 1)]).value_or(0));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_mutex_lru_get)->Threads(1)->Threads(2)->UseRealTime();

void BM_compute_baseline(benchmark::State& state) {
  // Per-thread state only: the best scaling this machine offers.
  std::uint64_t x =
      std::uint64_t{0x9e3779b97f4a7c15} ^ static_cast<std::uint64_t>(state.thread_index());
  for (auto _ : state) {
    for (int step = 0; step < 8; ++step) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
    }
    benchmark::DoNotOptimize(x);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_compute_baseline)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
