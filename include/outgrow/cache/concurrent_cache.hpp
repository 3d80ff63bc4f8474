// outgrow/cache/concurrent_cache.hpp — a sharded in-process cache tier that any number of
// threads read and write at once; hits do not serialize threads.
//
// Use it as the L1 of a service whose request threads share one cache (for one thread,
// outgrow::cache is simpler and smaller). It is a count-bounded cache with SIEVE
// eviction (Zhang et al., NSDI 2024: a FIFO queue plus one "visited" bit per entry and
// a hand that evicts the first unvisited entry; hit ratios on par with S3-FIFO and
// W-TinyLFU, see REFERENCE.md), per-entry TTL and exact statistics. It satisfies
// `cache_tier` and `cache_tier_with_entries` (tier.hpp), so it drops into tiered_cache.
//
//   outgrow::concurrent_cache<std::uint64_t, std::uint64_t> users(
//       {.capacity = 200'000, .default_ttl = std::chrono::minutes(5)});
//   users.put(42, 1337);                                    // any thread
//   if (std::optional<std::uint64_t> v = users.get(42)) {}  // any thread, lock-free
//   users.put(7, 99, std::chrono::seconds(30));             // per-entry TTL
//   users.erase(42);
//   fmt::print("{}\n", users.metrics());  // cache_metrics{hits=1, misses=0, ...}
//
// Design. Keys are hashed once (XXH3 for integers and strings, see
// concurrent_cache_hash) and split over `shards` independent shards (auto: the next
// power of two of 4 x hardware threads, at least 16, but no shard below 64 entries).
// Each shard (at most 65,535 entries) holds an open-addressing index (linear probing
// over 2 x capacity + 1 slots of 4 bytes: a 16-bit hash tag and a 16-bit entry id, so
// the index of a 200k cache is 1.6 MB and mostly stays in L2), entries allocated in
// chunks of 256 as the shard fills and then reused (no allocation in steady state), a
// SIEVE queue threaded through the entries, a sequence number and a writer lock.
//   - A hit writes no cache line that another thread reads or writes. It sets the
//     entry's visited bit only if the bit is clear (so a hot entry is written once per
//     pass of the SIEVE hand, not once per hit); SIEVE never reorders its queue on a
//     hit, unlike LRU, whose every hit relinks a list under a lock. Hits and misses
//     (puts, evictions and expirations too) are counted in per-thread counters, 128
//     bytes apart (two cache lines: the adjacent-line prefetcher pairs them),
//     incremented with a plain load + store: not per shard (two threads hitting one
//     shard would bounce its counter line between cores) and not with an atomic add (a
//     locked instruction costs ~15 ns here, mostly because it stops the CPU from
//     overlapping the cache misses of consecutive lookups). Each thread owns one
//     counter slot while it lives (slots are recycled when threads exit); threads beyond 4
//     x hardware threads (at least 64) share a few extra slots updated with atomic adds.
//   - Reads of trivially copyable keys and values (integers, ids, POD structs; see
//     `lock_free_reads`) are optimistic, with a seqlock per entry for hits and one per
//     shard for misses: the reader probes the index, reads the entry's version (odd
//     while a writer changes the entry or while it is not live), copies the entry with
//     relaxed atomic word loads and keeps the copy only if the version has not moved.
//     So a hit reads nothing that writes of other keys change; validated by the
//     shard's sequence number (which every write to the shard moves), a 90 % get / 10 %
//     overwrite mix on two threads lost a cross-core miss each time the other core had
//     written the shard (BM_cache_mixed, 2 threads: 33-36M/s before, 47-52M/s after, on
//     a 2-core AMD EPYC VM). A miss cannot be trusted from one entry (an erase may have
//     moved the key's index word behind the probe), so it is confirmed by a second probe
//     under the shard's sequence number (writers make it odd while they change the
//     shard): about 3 ns more per miss there (12 -> 15 ns). A torn copy is never turned
//     into a Key or Value, and entry memory is never freed while the cache lives, so a
//     reader racing a writer only retries. After 32 failed attempts it takes the
//     shard's lock, so it always makes progress.
//   - Other types (std::string, std::vector, ...) cannot be copied while a writer may
//     change them, so their reads take the shard's std::shared_mutex in shared mode.
//     Readers still run in parallel, but each read does two atomic read-modify-writes
//     on the shard's lock word (see BM_cache_get_hit_string: several times slower than
//     the optimistic path). For hot string values prefer a trivially copyable handle
//     (an id, an index into an immutable table) or accept the shared-lock cost.
//   - Writers (put, erase, clear, expiry) lock one shard; writers of different shards
//     never contend, and a write only makes readers of its entry (and misses of its
//     shard) retry. Everything a write changes in the shard's header (sequence number,
//     writer lock, size, SIEVE lanes, free list) is one cache line, next to a read-only
//     line with what lookups need: with two threads writing all shards, a put finds
//     that line on the other core about half the time, and moves one line instead of
//     four (std::mutex alone is 40 bytes; per-shard counters were another line). The
//     lock (detail::cc_spin_mutex) is 4 bytes and is released with a plain store, not a
//     locked instruction that would wait for the put's outstanding cache misses; a put
//     also prefetches its index slot before it locks. The price: a writer that finds
//     the lock taken spins, then yields, then naps 50 us at a time (nobody wakes it),
//     which matters only when a shard's lock is held long: erase_if's predicate,
//     clear().
//   - The SIEVE queue of a shard is two lanes, one per parity of the inserting thread's
//     slot, each a FIFO of its own; every entry carries an insertion number and the
//     hand takes the lanes' candidates in that order, so the eviction order is exactly
//     one queue's (a test drives one shard from two threads and compares every result
//     with one thread's). What it saves: a put links its entry behind its own lane's
//     newest, which its own thread wrote, not behind the entry another core inserted
//     last; and evicting a lane's oldest entry writes nothing into its successor (a
//     lane's tail keeps no backward link), whose line the next eviction would fetch.
//     With more than two writing threads, lanes are shared by slot parity.
//   - TTL: an expired entry is a miss; the reader that finds it removes it (one
//     expiration, however many readers saw it). Each insert also checks
//     `cleanup_per_write` entries of its shard in turn (default 2), and the SIEVE hand
//     evicts expired entries first (counted as expirations, not evictions), so dead
//     entries do not hold capacity for long. Lookups read the clock only for entries
//     that have a TTL; writers read it once per put.
//
// Capacity: the capacity is split exactly over the shards (their capacities differ by
// at most one) and each shard evicts when full, so size() never exceeds capacity: the
// per-shard slack is zero. The price is that a shard may evict while others still have
// room; with uniform hashing that starts at about capacity - sqrt(2 x capacity x
// shards x ln(shards)) entries (about 98 % for 200k entries over 16 shards), and once
// every shard is full the whole capacity is in use.
//
// Measured (benchmarks/cache_bench.cpp, uint64 keys and values, 100k keys cached in a
// 200k cache, one run on a shared 2-core AMD EPYC VM, GCC 12 -O2, medians of 3):
//                        1 thread        2 threads (total)
//   get hit             21.3 ns  46.9M/s  79.9M/s   (x1.70)
//   unordered_map find  11.4 ns  88.0M/s  176M/s    (x2.00, not thread-safe)
//   mutex LRU get       85.6 ns  11.7M/s  3.1M/s    (x0.27)
//   compute baseline    13.2 ns  75.9M/s  150M/s    (x1.97)
//   get miss 14.4 ns; put 147 ns (steady-state eviction); get hit, string value 126 ns.
//   Hit = 1.87x unordered_map find; speed-up 0.86x the compute baseline's; at 2 threads
//   25.6x the mutex LRU.
// Put scaling (2026-12-03, 2-core Xeon VM, memory mostly 130-150 ns per random load;
// 14 runs alternating with the single-queue build, BM_cache_put, 3 repetitions each):
// 1 -> 2 threads 1.43-1.63x (median 1.50x), 0.72-0.83x the compute baseline's speed-up
// (median 0.75x; the single queue: 1.14-1.51x, 0.57-0.77x, median 0.71x); 2 threads
// together 10.0-12.7M puts/s (median 11.4M; single queue 10.4M). The rest is the shard's
// lock line: BM_cache_put_one_shared_line, a put that shares nothing else with the other
// core, scales about as far, and a per-shard writer lock cannot avoid that line.
//
// Thread-safety: every member function may be called from any thread at any time.
// metrics() and size() sum relaxed counters: each count is exact, but the sum is not one
// atomic cut while traffic runs (after the threads are joined it is exact).
// Complexity: get O(1) expected: one hash, an index probe (load factor <= 1/2) and
// one entry, no atomic read-modify-write for lock-free types; put/erase O(1) expected,
// eviction amortized O(1) (the SIEVE hand); clear O(capacity); erase_if O(entries).
// Memory: 8 bytes of index per unit of capacity, allocated up front, plus per entry
// ever stored at once (high-water mark, kept until destruction): the key, value,
// expiry, version and visited bit (32 bytes for 8-byte keys and values, aligned to stay
// in one cache line) and 32 bytes of bookkeeping (write time, hash, SIEVE links,
// insertion number, lane).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <outgrow/cache/detail/concurrent_cache_shard.hpp>
#include <outgrow/cache/detail/tier_put.hpp>
#include <outgrow/cache/tier.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

/// Configuration of a concurrent_cache.
struct concurrent_cache_config {
  /// Maximum number of entries, in [1, 2^31]. Required.
  std::size_t capacity = 0;
  /// Number of shards, 0 = auto: the next power of two of 4 x hardware threads, at
  /// least 16, but at most capacity / 64 (small caches are not cut into tiny shards),
  /// and always enough for 65,535 entries per shard. Explicit values are in
  /// [ceil(capacity / 65535), min(capacity, 65536)]: a shard holds at most 65,535
  /// entries (16-bit entry ids keep its index at 4 bytes per slot).
  std::size_t shards = 0;
  /// TTL of put(key, value); std::nullopt (the default) = entries never expire.
  std::optional<std::chrono::nanoseconds> default_ttl = std::nullopt;
  /// Entries checked for expiry on each insert, in [0, 1024]; default 2.
  std::size_t cleanup_per_write = 2;
};

/// The default hasher: XXH3 (xxh3_hasher) for integers, enums and strings, else
/// std::hash<Key> mixed with hash_mix (std::hash of an integer is often the identity).
template <class Key>
struct concurrent_cache_hash {
  [[nodiscard]] std::uint64_t operator()(const Key& key) const {
    if constexpr (key_hasher<xxh3_hasher, Key>) {
      return xxh3_hasher{}(key);
    } else {
      return hash_mix(static_cast<std::uint64_t>(std::hash<Key>{}(key)), 0);
    }
  }
};

/// A sharded, thread-safe cache tier with SIEVE eviction and TTL (see the header).
template <class Key, class Value, class Clock = steady_clock_source,
          class Hash = concurrent_cache_hash<Key>>
requires clock_source<Clock> && key_hasher<Hash, Key> && std::copy_constructible<Key> &&
         std::copy_constructible<Value> && std::equality_comparable<Key>
class concurrent_cache
    : public detail::tier_put<concurrent_cache<Key, Value, Clock, Hash>, Key, Value> {
 public:
  using key_type = Key;
  using mapped_type = Value;
  using clock_type = Clock;
  using hasher = Hash;
  using time_point = typename Clock::time_point;
  /// True when reads are optimistic (seqlock, no lock, no shared write): Key, Value and
  /// the clock's time_point are trivially copyable. Otherwise reads take the shard's
  /// shared_mutex in shared mode.
  static constexpr bool lock_free_reads = std::is_trivially_copyable_v<Key> &&
                                          std::is_trivially_copyable_v<Value> &&
                                          std::is_trivially_copyable_v<time_point>;
  using entry_type = cache_entry<Value, time_point>;
  using config_type = concurrent_cache_config;
  /// The name config_error messages give this primitive.
  static constexpr std::string_view primitive_name = "concurrent_cache";

  /// Safe to call from any thread (read by tiered_cache's tier_traits).
  static constexpr bool thread_safe = true;

  static constexpr std::size_t max_capacity = std::size_t{1} << 31;
  static constexpr std::size_t max_shards = 65536;
  static constexpr std::size_t max_shard_capacity = 65535;

  /// Throws: config_error if a concurrent_cache_config field is out of its range.
  explicit concurrent_cache(const concurrent_cache_config& config, Clock clock = Clock{},
                            Hash hash = Hash{})
      : config_(validated(config)),
        clock_(std::move(clock)),
        hash_(std::move(hash)),
        shard_count_(config_.shards) {
    shards_ = std::make_unique<shard[]>(shard_count_);
    for (std::size_t i = 0; i < shard_count_; ++i) {
      const std::size_t cap =
          config_.capacity / shard_count_ + (i < config_.capacity % shard_count_ ? 1 : 0);
      shards_[i].init(cap);
    }
    const std::size_t hw = std::max(1U, std::thread::hardware_concurrency());
    owned_stripes_ = std::clamp<std::size_t>(std::bit_ceil(4 * hw), 64, 1024);
    shared_stripes_ = std::clamp<std::size_t>(std::bit_ceil(hw), 8, 256);
    stripes_ = std::make_unique<stripe[]>(owned_stripes_ + shared_stripes_);
  }

  concurrent_cache(const concurrent_cache&) = delete;
  concurrent_cache& operator=(const concurrent_cache&) = delete;

  /// The value if present and not expired; counts a hit or a miss (an expired entry is
  /// a miss and is removed, counted as an expiration).
  [[nodiscard]] std::optional<Value> get(const Key& key) { return read<false>(key); }

  /// Like get(), with the entry's write time and expiry (time_point::max() = none).
  [[nodiscard]] std::optional<entry_type> get_entry(const Key& key) {
    return read<true>(key);
  }

  // put(key, value) with the default TTL, put(key, value, ttl): see detail::tier_put.
  // Inserts or replaces; always stores (evicting one entry of the key's shard when it
  // is full) and returns true.
  using detail::tier_put<concurrent_cache, Key, Value>::put;

  /// Removes `key`; true if an unexpired entry was removed (an expired one is removed
  /// too, counted as an expiration, and false is returned).
  bool erase(const Key& key) {
    const std::uint64_t h = hash_of(key);
    shard& s = shard_for(h);
    const std::unique_lock lock(s.mutex);
    const std::uint32_t id = s.find(h, key);
    if (id == npos) return false;  // readers of the shard are not disturbed
    const write_section section(s);
    const bool expired = s.is_expired(s.at(id), clock_);
    s.remove(id);
    if (expired) add(&stripe::expirations);
    return !expired;
  }

  /// Removes the entries for which pred(const Key&, const Value&) is true and returns
  /// how many. Expired entries met on the way are removed as expirations and not
  /// offered to pred. pred runs under one shard's lock at a time (readers of that shard
  /// keep reading); it must not call into this cache. O(entries).
  template <class Pred>
  requires std::predicate<Pred&, const Key&, const Value&>
  std::size_t erase_if(Pred pred) {
    std::size_t erased = 0;
    std::vector<std::uint32_t> doomed;
    const time_point now = clock_.now();
    for (std::size_t i = 0; i < shard_count_; ++i) {
      shard& s = shards_[i];
      const std::unique_lock lock(s.mutex);
      doomed.clear();
      std::size_t expired = 0;
      for (std::uint32_t id = 0; id < s.fresh; ++id) {
        if (!s.info(id).live) continue;
        const entry& e = s.at(id);
        if (s.expired_at(e, now)) {
          doomed.push_back(id);
          ++expired;
        } else if (pred(static_cast<const Key&>(e.key.get()),
                        static_cast<const Value&>(e.value.get()))) {
          doomed.push_back(id);
        }
      }
      if (doomed.empty()) continue;
      const write_section section(s);
      for (const std::uint32_t id : doomed) s.remove(id);
      add(&stripe::expirations, expired);
      erased += doomed.size() - expired;
    }
    return erased;
  }

  /// Removes every entry (not counted as evictions). Keeps the entry memory for reuse.
  void clear() {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      shard& s = shards_[i];
      const std::unique_lock lock(s.mutex);
      const write_section section(s);
      s.clear();
    }
  }

  /// Entries stored, expired ones not yet removed included. Never above capacity().
  [[nodiscard]] std::size_t size() const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      n += std::size_t{shards_[i].size.load(std::memory_order_relaxed)};
    }
    return n;
  }

  /// A snapshot of the counters (load_* stay 0: this tier never loads; rejected_puts
  /// stays 0: a count-bounded tier can always store).
  [[nodiscard]] cache_metrics metrics() const noexcept {
    cache_metrics out;
    for (std::size_t i = 0; i < owned_stripes_ + shared_stripes_; ++i) {
      const stripe& st = stripes_[i];
      out.hits += st.hits.load(std::memory_order_relaxed);
      out.misses += st.misses.load(std::memory_order_relaxed);
      out.puts += st.puts.load(std::memory_order_relaxed);
      out.evictions += st.evictions.load(std::memory_order_relaxed);
      out.expirations += st.expirations.load(std::memory_order_relaxed);
    }
    return out;
  }

  [[nodiscard]] std::size_t capacity() const noexcept { return config_.capacity; }
  [[nodiscard]] std::size_t shard_count() const noexcept { return shard_count_; }
  /// The configuration in use (shards resolved when it was 0).
  [[nodiscard]] const concurrent_cache_config& config() const noexcept { return config_; }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  friend detail::tier_put<concurrent_cache, Key, Value>;

  using shard = detail::cc_shard<Key, Value, Clock, lock_free_reads>;
  using entry = typename shard::entry;
  using meta = typename shard::meta;
  using probe = detail::cc_probe;
  using shard_mutex = typename shard::mutex_type;
  using write_section = detail::cc_write_section<shard>;
  static constexpr std::uint32_t npos = shard::npos;
  static constexpr unsigned chunk_bits = shard::chunk_bits;
  static constexpr std::size_t chunk_size = shard::chunk_size;
  static constexpr int optimistic_attempts = 32;

  // The counters of one thread slot (or a few, for the shared stripes).
  struct alignas(detail::cc_no_false_sharing) stripe {
    std::atomic<std::uint64_t> hits{0};
    std::atomic<std::uint64_t> misses{0};
    std::atomic<std::uint64_t> puts{0};
    std::atomic<std::uint64_t> evictions{0};
    std::atomic<std::uint64_t> expirations{0};
  };

  static concurrent_cache_config validated(concurrent_cache_config c) {
    require_in_range("concurrent_cache", "capacity", c.capacity, std::size_t{1},
                     max_capacity);
    // A shard holds at most max_shard_capacity entries (16-bit entry ids).
    const std::size_t min_shards =
        (c.capacity + max_shard_capacity - 1) / max_shard_capacity;
    if (c.shards != 0) {
      require_in_range("concurrent_cache", "shards", c.shards, min_shards,
                       std::min(c.capacity, max_shards));
    }
    detail::require_default_ttl("concurrent_cache", c.default_ttl);
    require_in_range("concurrent_cache", "cleanup_per_write", c.cleanup_per_write,
                     std::size_t{0}, std::size_t{1024});
    if (c.shards == 0) {
      const std::size_t hw = std::max(1U, std::thread::hardware_concurrency());
      const std::size_t wanted = std::max<std::size_t>(16, std::bit_ceil(4 * hw));
      c.shards = std::max(min_shards, std::clamp<std::size_t>(c.capacity / 64, 1, wanted));
    }
    return c;
  }

  [[nodiscard]] std::uint64_t hash_of(const Key& key) const {
    return static_cast<std::uint64_t>(hash_(key));
  }
  [[nodiscard]] shard& shard_for(std::uint64_t h) const noexcept {
    return shards_[hash_to_range(h, shard_count_)];
  }

  [[nodiscard]] time_point expiry_after(time_point now,
                                        std::chrono::nanoseconds ttl) const {
    using duration = typename time_point::duration;
    const duration d = std::chrono::ceil<duration>(ttl);
    if (d >= time_point::max() - now) return time_point::max();
    return now + d;
  }

  // Adds n to one counter of this thread's stripe.
  void add(std::atomic<std::uint64_t> stripe::*counter,
           std::uint64_t n = 1) const noexcept {
    const std::size_t slot = detail::cc_thread_slot();
    if (slot < owned_stripes_) [[likely]] {
      std::atomic<std::uint64_t>& c = stripes_[slot].*counter;
      c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    } else {
      stripe& st = stripes_[owned_stripes_ + (slot & (shared_stripes_ - 1))];
      (st.*counter).fetch_add(n, std::memory_order_relaxed);
    }
  }
  void count(bool hit) const noexcept { add(hit ? &stripe::hits : &stripe::misses); }

  static void mark_visited(entry& e) noexcept {
    // Write only when the bit changes: a hot entry's line stays shared between cores.
    if (e.visited.load(std::memory_order_relaxed) == 0) {
      e.visited.store(1, std::memory_order_relaxed);
    }
  }

  template <bool WithEntry>
  using result_t = std::optional<std::conditional_t<WithEntry, entry_type, Value>>;

  // Words copied by one optimistic attempt; turned into objects only once validated.
  template <class T>
  using raw_t = typename detail::cc_atomic_cell<T>::raw_type;
  struct snapshot {
    probe status = probe::retry;
    entry* found = nullptr;
    raw_t<Value> value{};
    time_point expires{};
    meta* info = nullptr;  // get_entry only
    raw_t<time_point> written{};
  };

  // One optimistic lookup attempt: no lock, no write. A hit is validated by the entry's
  // own version (the same even version before and after the copy), so a hit reads
  // nothing that writes of other keys change — not the shard's sequence number, which
  // every write to the shard changes and which would then cost a cross-core miss. A miss
  // cannot be validated by one entry (an erase may have moved the key's index word
  // behind the probe): it is confirmed by a probe under the shard's sequence number
  // (ByEntry = false, try_read_shard: no writer of the shard ran meanwhile).
  template <bool WithEntry, bool ByEntry = true>
  snapshot try_read(const shard& s, std::uint64_t h, const Key& key) const
  requires lock_free_reads
  {
    using key_cell = detail::cc_atomic_cell<Key>;
    using time_cell = detail::cc_atomic_cell<time_point>;
    snapshot out;
    std::uint64_t seq = 0;
    if constexpr (!ByEntry) {
      seq = s.seq.load(std::memory_order_acquire);
      if ((seq & 1U) != 0) return out;
    }
    const std::uint32_t tag = shard::tag_of(h);
    std::uint64_t pos = s.home_of(h);
    for (std::uint64_t n = 0; n < s.slots; ++n, pos = s.next(pos)) {
      // Acquire for hits (a plain load on x86): pairs with the release store of the
      // word, so the entry's version read below is at least the one published before it.
      const std::uint32_t w = s.index[pos].load(ByEntry ? std::memory_order_acquire
                                                        : std::memory_order_relaxed);
      if (w == 0) {
        if constexpr (ByEntry) {
          return try_read_shard<WithEntry>(s, h, key);
        } else {
          std::atomic_thread_fence(std::memory_order_acquire);
          if (s.seq.load(std::memory_order_relaxed) == seq) out.status = probe::miss;
          return out;
        }
      }
      if ((w >> 16) != tag) continue;
      const std::uint32_t id = shard::id_of(w);
      const std::uint32_t c = id >> chunk_bits;
      if (c >= s.chunk_count) return out;
      entry* const chunk = s.chunks[c].entries.load(std::memory_order_acquire);
      if (chunk == nullptr) return out;
      entry& e = chunk[id & (chunk_size - 1)];
      std::uint32_t version = 0;
      if constexpr (ByEntry) {
        version = e.version.load(std::memory_order_acquire);
        if ((version & 1U) != 0) return out;  // being written, or not live: retry
      }
      const auto k = e.key.load_raw();
      out.value = e.value.load_raw();
      const auto x = e.expires.load_raw();
      if constexpr (WithEntry) {
        meta* const metas = s.chunks[c].metas.load(std::memory_order_acquire);
        if (metas == nullptr) return out;
        out.written = metas[id & (chunk_size - 1)].written.load_raw();
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if constexpr (ByEntry) {
        if (e.version.load(std::memory_order_relaxed) != version) return out;
      } else {
        if (s.seq.load(std::memory_order_relaxed) != seq) return out;
      }
      // Validated: the words are one consistent live entry, safe to turn into objects.
      if (!(key_cell::materialize(k) == key)) continue;
      out.found = &e;
      out.expires = time_cell::materialize(x);
      const bool expired = out.expires != time_point::max() && clock_.now() >= out.expires;
      out.status = expired ? probe::expired : probe::hit;
      return out;
    }
    return out;  // wrapped around: only while writers move words
  }

  // try_read validated by the shard's sequence number: confirms misses (out of line, so
  // the hit path stays short).
  template <bool WithEntry>
  [[gnu::noinline]] snapshot try_read_shard(const shard& s, std::uint64_t h,
                                            const Key& key) const
  requires lock_free_reads
  {
    return try_read<WithEntry, false>(s, h, key);
  }

  // Hit / miss / expired handling of a validated optimistic read.
  template <bool WithEntry>
  result_t<WithEntry> finish(shard& s, std::uint64_t h, const Key& key, const snapshot& r) {
    if (r.status == probe::hit) [[likely]] {
      mark_visited(*r.found);
      count(true);
      const Value value = detail::cc_atomic_cell<Value>::materialize(r.value);
      if constexpr (WithEntry) {
        return result_t<true>(
            std::in_place,
            entry_type{value, detail::cc_atomic_cell<time_point>::materialize(r.written),
                       r.expires});
      } else {
        return result_t<false>(std::in_place, value);
      }
    }
    if (r.status == probe::expired) remove_if_expired(s, h, key);
    count(false);
    return std::nullopt;
  }

  // Readers that lost the race with writers: retry a few times, then take the lock.
  template <bool WithEntry>
  [[gnu::noinline]] result_t<WithEntry> read_contended(shard& s, std::uint64_t h,
                                                       const Key& key) {
    for (int attempt = 1; attempt < optimistic_attempts; ++attempt) {
      detail::cc_cpu_relax();
      const snapshot r = try_read<WithEntry>(s, h, key);
      if (r.status != probe::retry) return finish<WithEntry>(s, h, key, r);
    }
    return read_locked<WithEntry>(s, h, key);
  }

  // A lookup under the shard's lock: shared for types copied under the lock, exclusive
  // for the lock-free types' fallback.
  template <bool WithEntry>
  result_t<WithEntry> read_locked(shard& s, std::uint64_t h, const Key& key) {
    result_t<WithEntry> out;
    bool expired = false;
    {
      using lock_type = std::conditional_t<lock_free_reads, std::unique_lock<shard_mutex>,
                                           std::shared_lock<shard_mutex>>;
      const lock_type lock(s.mutex);
      const std::uint32_t id = s.find(h, key);
      if (id != npos) {
        entry& e = s.at(id);
        const time_point expires = e.expires.get();
        if (expires != time_point::max() && clock_.now() >= expires) {
          expired = true;
        } else {
          if constexpr (WithEntry) {
            out.emplace(entry_type{e.value.get(), s.info(id).written.get(), expires});
          } else {
            out.emplace(e.value.get());
          }
          mark_visited(e);
        }
      }
    }
    if (expired) remove_if_expired(s, h, key);
    count(out.has_value());
    return out;
  }

  template <bool WithEntry>
  result_t<WithEntry> read(const Key& key) {
    const std::uint64_t h = hash_of(key);
    shard& s = shard_for(h);
    if constexpr (lock_free_reads) {
      const snapshot r = try_read<WithEntry>(s, h, key);
      if (r.status == probe::retry) [[unlikely]] {
        return read_contended<WithEntry>(s, h, key);
      }
      return finish<WithEntry>(s, h, key, r);
    } else {
      return read_locked<WithEntry>(s, h, key);
    }
  }

  void remove_if_expired(shard& s, std::uint64_t h, const Key& key) {
    const std::unique_lock lock(s.mutex);
    const std::uint32_t id = s.find(h, key);
    if (id == npos || !s.is_expired(s.at(id), clock_)) return;  // another thread did it
    const write_section section(s);
    s.remove(id);
    add(&stripe::expirations);
  }

  bool store_entry(const Key& key, Value&& value,
                   std::optional<std::chrono::nanoseconds> ttl) {
    const std::uint64_t h = hash_of(key);
    shard& s = shard_for(h);
    // Start the index miss before the lock, which waits for every older load.
    detail::cc_prefetch(&s.index[s.home_of(h)]);
    const time_point now = clock_.now();
    const time_point expires = ttl ? expiry_after(now, *ttl) : time_point::max();
    const bool has_ttl = expires != time_point::max();
    const std::unique_lock lock(s.mutex);
    const write_section section(s);
    std::uint32_t id = s.find(h, key);
    if (id != npos) {
      entry& e = s.at(id);
      shard::entry_open(e);
      e.value.store(std::move(value));
      const bool had_ttl = e.expires.get() != time_point::max();
      s.ttl_entries = s.ttl_entries + (has_ttl ? 1U : 0U) - (had_ttl ? 1U : 0U);
      e.expires.store(expires);
      s.info(id).written.store(now);
      shard::entry_publish(e);
      mark_visited(e);  // a write is an access, as a request for a cached object
    } else {
      if (const std::size_t n = s.cleanup(now, config_.cleanup_per_write); n != 0) {
        add(&stripe::expirations, n);
      }
      if (s.size.load(std::memory_order_relaxed) >= s.capacity) {
        add(s.evict_one(now) ? &stripe::expirations : &stripe::evictions);
      }
      id = s.allocate();
      entry& e = s.at(id);
      try {
        e.key.store(key);
        e.value.store(std::move(value));
      } catch (...) {
        e.key.reset();
        e.value.reset();
        s.release(id);
        throw;
      }
      e.expires.store(expires);
      e.visited.store(0, std::memory_order_relaxed);
      meta& m = s.info(id);
      m.written.store(now);
      m.hash = h;
      m.live = true;
      if (has_ttl) ++s.ttl_entries;
      shard::entry_publish(e);  // free (odd) until now: live once its index word is in
      s.index_insert(h, id);
      s.link_head(id, detail::cc_thread_slot() % shard::lane_count);
      s.size.store(s.size.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    add(&stripe::puts);
    return true;
  }

  concurrent_cache_config config_;
  Clock clock_;
  Hash hash_;
  std::size_t shard_count_;
  std::unique_ptr<shard[]> shards_;
  // Hit/miss counters: stripes_[slot] for thread slots below owned_stripes_ (written by
  // that thread only: a plain increment, no locked instruction, which would also stop
  // the CPU from overlapping this lookup's cache misses with the next one's), then
  // shared_stripes_ stripes for any further threads (atomic increments).
  std::unique_ptr<stripe[]> stripes_;
  std::size_t owned_stripes_ = 0;
  std::size_t shared_stripes_ = 0;
};

static_assert(cache_tier<concurrent_cache<std::uint64_t, std::uint64_t>>);
static_assert(cache_tier_with_entries<concurrent_cache<std::uint64_t, std::uint64_t>>);

}  // namespace outgrow
