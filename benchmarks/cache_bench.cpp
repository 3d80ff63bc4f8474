// Cache benchmarks: concurrent_cache beside its baselines, in one binary so one run
// gives the ratios.
//
//   BM_cache_get_hit         concurrent_cache<uint64_t, uint64_t>::get, every key cached
//   BM_cache_get_miss        the same with keys that are not cached
//   BM_cache_put             put over 4 x capacity distinct keys (steady-state eviction)
//   BM_cache_put_own_shards  the same, each thread writing only keys of its own half of
//                            the 16 shards (1 thread: one half): how put would scale if
//                            threads never wrote a shard the other had just written
//   BM_cache_put_one_shared_line  own_shards, plus one store per put to one of 16 lines
//                            both threads write (picked by key, like a shard's lock
//                            word): the best a put that takes any per-shard lock can
//                            scale here, everything else left on its own core
//   BM_cache_get_hit_string  get hit with std::string values (shared-lock read path)
//   BM_cache_mixed           90 % get hit / 10 % put overwriting a cached key
//   BM_unordered_map_find    baseline: std::unordered_map<uint64_t, uint64_t>::find
//   BM_mutex_lru_get         baseline: the textbook LRU (std::list + std::unordered_map
//                            behind one std::mutex; every hit moves the node to the front)
//   BM_compute_baseline      xorshift loop, no shared memory: how well this machine scales
//   BM_memory_latency        dependent loads over a random cycle of cache lines, 1 MiB
//                            (L2-sized on recent cores) and 8 MiB (the size of the
//                            working sets below): states whether this run had fast or
//                            slow memory
// With oneTBB and libcuckoo installed (Debian libtbb-dev, libcuckoo-dev; see
// benchmarks/CMakeLists.txt), the concurrent containers a user would pick instead, on
// the same keys and draws (with their default hashes: std::hash, the identity for
// integers, in libcuckoo, a multiplicative hash in TBB; both fine, the keys are random):
//   BM_tbb_hash_map_get / _mixed   tbb::concurrent_hash_map, find with a const_accessor
//                                  (a per-element reader lock) / insert with an accessor
//   BM_cuckoo_get / _mixed         libcuckoo::cuckoohash_map find / insert_or_assign
//   BM_tbb_lru_cache_get           tbb::concurrent_lru_cache operator[] (hits only: it
//                                  has no overwrite, values come from its functor)
//
// Working set (pinned: the same for every container and every run): 100,000 random
// uint64 keys, capacity 200,000 (nothing is evicted in the get and mixed benchmarks).
// That is 1.6 MB of index + 3.2 MB of entries for concurrent_cache, 0.8 MB of buckets +
// 3.2 MB of nodes for unordered_map: larger than L2, so every lookup pays one to three
// dependent misses to L3 or DRAM and the figures move with the memory latency of the
// moment (on a shared VM, with what the neighbours do to the L3). Compare ratios within
// one run only, and read BM_memory_latency/8192 of that run to know which state it saw.
// Every benchmark reads its keys from a precomputed random array of 2^17 draws, so the
// loop overhead is the same everywhere; the second thread starts half-way through the
// array. Threaded cases run with 1 and 2 threads in real time and report items/s for all
// threads together. Results are consumed as a plain value (value_or / has_value, like
// it->second for the map): DoNotOptimize on a whole std::optional would force it through
// memory, where its 8-byte value and 1-byte flag stores stall the 16-byte reload.
//
// Stable figures: run on a quiet machine with repetitions interleaved, so a slow-memory
// spell hits every benchmark alike rather than one of them, and take medians:
//   cache_bench --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//               --benchmark_report_aggregates_only=true
// The binary starts (and joins) a thread before any benchmark runs: until a process has
// started its second thread, glibc's mutexes skip their locked instructions
// (__libc_single_threaded), which would flatter std::mutex code (the mutex LRU) in the
// 1-thread cases that run first, alone in a filter, or early in an interleaved order.
// A real user of these containers is multi-threaded.
//
// Goals (see include/outgrow/cache/concurrent_cache.hpp for the design):
//   1. get hit on one thread <= 2x the time of unordered_map find, in both memory
//      states;
//   2. get hit and put speed-up from 1 to 2 threads >= 0.8x the compute baseline's;
//   3. get hit items/s at 2 threads >= 10x the mutex LRU's;
//   4. at 2 threads, get hit and the 90/10 mix >= 1.0x tbb::concurrent_hash_map and
//      libcuckoo (a cache that also evicts and expires should not lose to a plain map).
#include <outgrow/cache/concurrent_cache.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#if defined(OUTGROW_BENCH_HAVE_TBB)
#define TBB_PREVIEW_CONCURRENT_LRU_CACHE 1
#include <tbb/concurrent_hash_map.h>
#include <tbb/concurrent_lru_cache.h>
#endif
#if defined(OUTGROW_BENCH_HAVE_LIBCUCKOO)
#include <libcuckoo/cuckoohash_map.hh>
#endif

namespace {

// See the header: every case runs in a multi-threaded process.
[[maybe_unused]] const bool kMultiThreaded = [] {
  std::thread([] {}).join();
  return true;
}();

constexpr std::size_t kKeys = 100'000;
constexpr std::size_t kCapacity = 200'000;
constexpr std::size_t kDraws = std::size_t{1} << 17;  // power of two: index with a mask

struct key_sets {
  std::vector<std::uint64_t> keys;    // the working set
  std::vector<std::uint64_t> hits;    // draws from keys
  std::vector<std::uint64_t> misses;  // draws from keys never inserted
  std::vector<std::uint64_t> puts;    // draws from 4 x capacity distinct keys
  std::vector<std::uint8_t> writes;   // mixed benchmarks: 1 = overwrite hits[i] (10 %)
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
    k.writes.resize(kDraws);
    for (auto& x : k.writes) x = rng() % 10 == 0 ? 1 : 0;
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

// Diagnosis, not a use: with two threads putting random keys, the shard a put locks was
// last written by the other core about half the time (whatever the shard count), so its
// header line and the SIEVE neighbours it links to move between cores. Here thread t
// only puts keys whose shard is congruent to t mod 2, so no shard is shared.
// Keys split by shard parity over 16 shards: halves[t] only reaches shards t, t+2, ...
const std::array<std::vector<std::uint64_t>, 2>& own_shard_draws() {
  static const std::array<std::vector<std::uint64_t>, 2> halves = [] {
    std::array<std::vector<std::uint64_t>, 2> h;
    std::mt19937_64 rng(43);
    while (h[0].size() < kDraws || h[1].size() < kDraws) {
      const std::uint64_t k = rng() % (8 * kCapacity);
      auto& v =
          h[outgrow::hash_to_range(outgrow::concurrent_cache_hash<std::uint64_t>{}(k), 16) %
            2];
      if (v.size() < kDraws) v.push_back(k);
    }
    return h;
  }();
  return halves;
}

// Thread t puts only keys of its own shards; with SharedLine, each put first writes one
// of 16 lines that both threads write (picked by a hash of the key that ignores which
// thread owns the key's shard, so about half the stores find the line on the other core).
template <bool SharedLine>
void run_put_own_shards(benchmark::State& state) {
  struct alignas(128) line {
    std::atomic<std::uint64_t> word{0};
  };
  static std::array<line, 16> lines;
  static cache_type cache({.capacity = kCapacity, .shards = 16});
  const auto& draws = own_shard_draws()[static_cast<std::size_t>(state.thread_index()) % 2];
  std::size_t i = 0;
  for (auto _ : state) {
    const std::uint64_t k = draws[i++ & (kDraws - 1)];
    if constexpr (SharedLine) {
      std::atomic<std::uint64_t>& w = lines[(k * 0x9e3779b97f4a7c15U) >> 60].word;
      w.store(w.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    benchmark::DoNotOptimize(cache.put(k, k));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_cache_put_own_shards(benchmark::State& state) {
  run_put_own_shards<false>(state);
}
BENCHMARK(BM_cache_put_own_shards)->Threads(1)->Threads(2)->UseRealTime();

// Diagnosis: own_shards plus one shared line per put. A put into a shared shard must
// write at least its lock word, so this bounds what any design with a per-shard writer
// lock can reach; concurrent_cache's put now writes little else that the other core
// wrote last (see the SIEVE lanes in concurrent_cache.hpp) and scales about as far.
void BM_cache_put_one_shared_line(benchmark::State& state) {
  run_put_own_shards<true>(state);
}
BENCHMARK(BM_cache_put_one_shared_line)->Threads(1)->Threads(2)->UseRealTime();

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

// Runs the 90 % get / 10 % overwrite mix over hits: where writes[i] is set the draw is
// put (the key is always cached, so nothing is inserted or evicted), else looked up.
template <class Get, class Put>
void run_mixed(benchmark::State& state, Get get, Put put) {
  const auto& draws = sets().hits;
  const auto& writes = sets().writes;
  std::size_t i = start_for(state);
  for (auto _ : state) {
    const std::size_t j = i++ & (kDraws - 1);
    const std::uint64_t k = draws[j];
    if (writes[j] != 0) {
      put(k, k * 3);
    } else {
      benchmark::DoNotOptimize(get(k));
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_cache_mixed(benchmark::State& state) {
  cache_type& cache = filled_cache();
  run_mixed(
      state, [&](std::uint64_t k) { return cache.get(k).value_or(0); },
      [&](std::uint64_t k, std::uint64_t v) { cache.put(k, v); });
}
BENCHMARK(BM_cache_mixed)->Threads(1)->Threads(2)->UseRealTime();

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

// ---- memory latency --------------------------------------------------------------

// A random cycle through the cache lines of a buffer of state.range(0) KiB (Sattolo's
// shuffle: one cycle through every line), walked with dependent loads, so no two misses
// overlap: per_load is the latency of one access at that size. At 8 MiB (the working
// sets above do not fit L2) it is what a lookup's misses cost in this run: a few tens of
// ns when the L3 holds the buffer (fast memory), around 100 ns when the lines come from
// DRAM or the L3 is contended (slow memory). The 4 KiB pages are part of the cost, as
// they are for the containers.
void BM_memory_latency(benchmark::State& state) {
  struct alignas(64) line {
    std::size_t next;
  };
  const std::size_t lines = static_cast<std::size_t>(state.range(0)) * 1024 / sizeof(line);
  std::vector<line> buffer(lines);
  std::vector<std::size_t> order(lines);
  for (std::size_t i = 0; i < lines; ++i) order[i] = i;
  std::mt19937_64 rng(7);
  for (std::size_t i = lines - 1; i > 0; --i) {
    std::swap(order[i], order[std::uniform_int_distribution<std::size_t>(0, i - 1)(rng)]);
  }
  for (std::size_t i = 0; i < lines; ++i) buffer[order[i]].next = order[(i + 1) % lines];
  constexpr int kLoadsPerIteration = 16;
  std::size_t p = 0;
  for (auto _ : state) {
    for (int n = 0; n < kLoadsPerIteration; ++n) p = buffer[p].next;
    benchmark::DoNotOptimize(p);
  }
  state.counters["per_load"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kLoadsPerIteration,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_memory_latency)->Arg(1024)->Arg(8192)->ArgName("KiB");

// ---- the concurrent containers a user would pick instead --------------------------

#if defined(OUTGROW_BENCH_HAVE_TBB)
using tbb_map_type = tbb::concurrent_hash_map<std::uint64_t, std::uint64_t>;

tbb_map_type& filled_tbb_map() {
  static tbb_map_type map = [] {
    tbb_map_type m;
    for (const auto k : sets().keys) m.insert({k, k * 3});
    return m;
  }();
  return map;
}

std::uint64_t tbb_map_get(const tbb_map_type& map, std::uint64_t key) {
  tbb_map_type::const_accessor a;  // reader lock on the element while it lives
  return map.find(a, key) ? a->second : 0;
}

void BM_tbb_hash_map_get(benchmark::State& state) {
  const tbb_map_type& map = filled_tbb_map();
  const auto& draws = sets().hits;
  std::size_t i = start_for(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(tbb_map_get(map, draws[i++ & (kDraws - 1)]));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_tbb_hash_map_get)->Threads(1)->Threads(2)->UseRealTime();

void BM_tbb_hash_map_mixed(benchmark::State& state) {
  tbb_map_type& map = filled_tbb_map();
  run_mixed(
      state, [&](std::uint64_t k) { return tbb_map_get(map, k); },
      [&](std::uint64_t k, std::uint64_t v) {
        tbb_map_type::accessor a;  // writer lock on the element
        map.insert(a, k);
        a->second = v;
      });
}
BENCHMARK(BM_tbb_hash_map_mixed)->Threads(1)->Threads(2)->UseRealTime();

std::uint64_t triple(std::uint64_t key) {
  return key * 3;
}
using tbb_lru_type = tbb::concurrent_lru_cache<std::uint64_t, std::uint64_t,
                                               std::uint64_t (*)(std::uint64_t)>;

void BM_tbb_lru_cache_get(benchmark::State& state) {
  static tbb_lru_type lru(&triple, kCapacity);
  static const bool filled = [] {
    for (const auto k : sets().keys) (void)lru[k];
    return true;
  }();
  (void)filled;
  const auto& draws = sets().hits;
  std::size_t i = start_for(state);
  for (auto _ : state) {
    auto handle = lru[draws[i++ & (kDraws - 1)]];
    benchmark::DoNotOptimize(handle.value());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_tbb_lru_cache_get)->Threads(1)->Threads(2)->UseRealTime();
#endif

#if defined(OUTGROW_BENCH_HAVE_LIBCUCKOO)
using cuckoo_map_type = libcuckoo::cuckoohash_map<std::uint64_t, std::uint64_t>;

cuckoo_map_type& filled_cuckoo_map() {
  static cuckoo_map_type map;
  static const bool filled = [] {
    for (const auto k : sets().keys) map.insert(k, k * 3);
    return true;
  }();
  (void)filled;
  return map;
}

std::uint64_t cuckoo_get(const cuckoo_map_type& map, std::uint64_t key) {
  std::uint64_t value = 0;
  return map.find(key, value) ? value : 0;
}

void BM_cuckoo_get(benchmark::State& state) {
  const cuckoo_map_type& map = filled_cuckoo_map();
  const auto& draws = sets().hits;
  std::size_t i = start_for(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cuckoo_get(map, draws[i++ & (kDraws - 1)]));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_cuckoo_get)->Threads(1)->Threads(2)->UseRealTime();

void BM_cuckoo_mixed(benchmark::State& state) {
  cuckoo_map_type& map = filled_cuckoo_map();
  run_mixed(
      state, [&](std::uint64_t k) { return cuckoo_get(map, k); },
      [&](std::uint64_t k, std::uint64_t v) { map.insert_or_assign(k, v); });
}
BENCHMARK(BM_cuckoo_mixed)->Threads(1)->Threads(2)->UseRealTime();
#endif

}  // namespace
