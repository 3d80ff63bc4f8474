// outgrow/cache/detail/concurrent_cache_shard.hpp — concurrent_cache's storage engine.
//
// One shard of a concurrent_cache: an open-addressing index (linear probing, 16-bit
// tags, backward-shift deletion, load factor <= 1/2) over entries allocated in chunks
// of 256, a SIEVE queue and its hand, a free list and TTL cleanup, all changed under
// the shard's mutex. The SIEVE queue is kept as two lanes (cc_lane), one per inserting
// thread's slot parity, merged by insertion number: the eviction order is exactly one
// queue's, but a put links its entry behind the last entry its own lane received —
// usually one its own thread wrote — instead of behind whatever another core inserted
// last. Lookups may read it without the lock when Key, Value and the time_point are
// trivially copyable (the cells then hold them as relaxed atomic words, cc_atomic_cell):
// a hit is validated by its entry's `version` (odd while the entry is written or not
// live: entry_open / entry_publish / entry_retire), a miss by the shard's `seq` (odd
// while cc_write_section is open). Also:
// dense per-thread slot numbers for the counter stripes, and cc_spin_mutex, the 4-byte
// writer lock that lets everything a write changes in the shard's header share one
// cache line.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace outgrow::detail {

inline constexpr std::size_t cc_cache_line = 64;
/// Distance that keeps two threads' data from interfering: two cache lines, because
/// x86 cores (Intel and AMD) prefetch the adjacent line of a pair.
inline constexpr std::size_t cc_no_false_sharing = 128;

inline void cc_cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

/// Asks for the cache line at p (a hint; no effect on the program's meaning).
inline void cc_prefetch(const void* p) noexcept {
#if defined(__GNUC__)
  __builtin_prefetch(p);
#else
  (void)p;
#endif
}

/// The writer lock of a shard whose readers are optimistic: 4 bytes, so that it shares
/// one cache line with the sequence number and the SIEVE state (std::mutex is 40 bytes
/// with glibc; a write to a shard last written on another core then moves one line
/// instead of four), and released with a plain store: a locked instruction (glibc's
/// unlock in a multi-threaded process is an xchg) waits for every older load, so it
/// would stall each put on the cache misses its eviction left in flight (measured: a
/// put in about 150 ns instead of about 210 ns, one thread, noisy 2-core VM). The price:
/// an unlock wakes nobody, so a waiter spins (pause) for about the length of a put,
/// then yields its core, then naps 50 us at a time; critical sections are a few hundred
/// ns (erase_if's predicate and clear() are the long ones).
class cc_spin_mutex {
 public:
  void lock() noexcept {
    if (!try_lock()) [[unlikely]] {
      lock_contended();
    }
  }
  // One compare-exchange, no load first: when the line is on another core, a load and
  // then a compare-exchange would move it twice.
  [[nodiscard]] bool try_lock() noexcept {
    std::uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }
  void unlock() noexcept { state_.store(0, std::memory_order_release); }

 private:
  static constexpr int spins = 128;  // ~2-20 us of pause, depending on the CPU
  static constexpr int yields = 64;

  [[gnu::noinline]] void lock_contended() noexcept {
    for (int n = 0;; ++n) {
      if (n < spins) {
        cc_cpu_relax();
      } else if (n < spins + yields) {
        std::this_thread::yield();  // the holder may be waiting for this core
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      // Read until free (the line stays shared while the holder works), then try.
      if (state_.load(std::memory_order_relaxed) == 0 && try_lock()) return;
    }
  }

  std::atomic<std::uint32_t> state_{0};  // 0 free, 1 locked
};

/// Dense per-thread slot numbers (0, 1, 2, ...), recycled when a thread exits, so a
/// process with T live threads uses slots below T. A thread owns its slot exclusively
/// while it lives; the registry's mutex orders one owner's writes before the next's.
class cc_thread_slots {
 public:
  static std::size_t acquire() {
    cc_thread_slots& r = instance();
    const std::lock_guard lock(r.mutex_);
    if (!r.free_.empty()) {
      const std::size_t slot = r.free_.back();
      r.free_.pop_back();
      return slot;
    }
    return r.next_++;
  }
  static void release(std::size_t slot) noexcept {
    cc_thread_slots& r = instance();
    const std::lock_guard lock(r.mutex_);
    try {
      r.free_.push_back(slot);
    } catch (...) {  // out of memory: the slot is simply never reused
    }
  }

 private:
  static cc_thread_slots& instance() {
    // Immortal: threads may exit (and release) during static destruction.
    static cc_thread_slots* const registry = new cc_thread_slots;
    return *registry;
  }
  std::mutex mutex_;
  std::vector<std::size_t> free_;
  std::size_t next_ = 0;
};

struct cc_thread_slot_owner {
  std::size_t slot = cc_thread_slots::acquire();
  cc_thread_slot_owner() = default;
  cc_thread_slot_owner(const cc_thread_slot_owner&) = delete;
  cc_thread_slot_owner& operator=(const cc_thread_slot_owner&) = delete;
  ~cc_thread_slot_owner() { cc_thread_slots::release(slot); }
};

/// This thread's slot (see cc_thread_slots).
inline std::size_t cc_thread_slot() {
  thread_local const cc_thread_slot_owner owner;
  return owner.slot;
}

/// A trivially copyable T stored as relaxed atomic 64-bit words, so a seqlock reader
/// may copy it while a writer changes it (no data race). The copy is a bag of words
/// until the reader has validated it; only then is it turned into a T.
template <class T>
class cc_atomic_cell {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  static constexpr std::size_t words = (sizeof(T) + 7) / 8;
  using raw_type = std::array<std::uint64_t, words>;

  void store(const T& value) noexcept {
    raw_type raw{};
    std::memcpy(raw.data(), &value, sizeof(T));
    for (std::size_t i = 0; i < words; ++i) {
      words_[i].store(raw[i], std::memory_order_relaxed);
    }
  }
  [[nodiscard]] raw_type load_raw() const noexcept {
    raw_type raw;
    for (std::size_t i = 0; i < words; ++i) {
      raw[i] = words_[i].load(std::memory_order_relaxed);
    }
    return raw;
  }
  [[nodiscard]] static T materialize(const raw_type& raw) noexcept {
    std::array<unsigned char, sizeof(T)> bytes;
    std::memcpy(bytes.data(), raw.data(), sizeof(T));
    return std::bit_cast<T>(bytes);
  }
  /// The value, for readers that hold the shard's lock (no concurrent writer).
  [[nodiscard]] T get() const noexcept { return materialize(load_raw()); }
  void reset() noexcept {}

 private:
  std::array<std::atomic<std::uint64_t>, words> words_{};
};

/// Any T, read and written only under the shard's lock.
template <class T>
class cc_plain_cell {
 public:
  template <class U>
  void store(U&& value) {
    slot_ = std::forward<U>(value);
  }
  [[nodiscard]] const T& get() const noexcept { return *slot_; }
  void reset() noexcept { slot_.reset(); }

 private:
  std::optional<T> slot_;
};

/// One lane of a shard's SIEVE queue: the entries inserted by threads of one slot
/// parity, oldest (tail) to newest (head), and the lane's share of the hand (its oldest
/// entry not yet passed in this sweep, npos when the sweep has passed them all).
struct cc_lane {
  std::uint32_t head = std::numeric_limits<std::uint32_t>::max();
  std::uint32_t tail = std::numeric_limits<std::uint32_t>::max();
  std::uint32_t hand = std::numeric_limits<std::uint32_t>::max();
};

/// Outcome of one lookup attempt.
enum class cc_probe : std::uint8_t { hit, miss, expired, retry };

/// One shard (see the header comment). Writers hold `mutex`; see concurrent_cache for
/// how readers use `seq`, `index` and `chunks`. Counters (puts, evictions, expirations)
/// are not here: the cache counts them in per-thread stripes, and the functions below
/// report what they removed.
template <class Key, class Value, class Clock, bool LockFreeReads>
struct cc_shard {
  using time_point = typename Clock::time_point;
  static constexpr bool lock_free_reads = LockFreeReads;
  static constexpr std::uint32_t npos = std::numeric_limits<std::uint32_t>::max();
  static constexpr unsigned chunk_bits = 8;  // 256 entries per chunk
  static constexpr std::size_t chunk_size = std::size_t{1} << chunk_bits;
  static constexpr std::size_t lane_count = 2;  // link_head, hand_lane assume two

  template <class T>
  using cell = std::conditional_t<lock_free_reads, cc_atomic_cell<T>, cc_plain_cell<T>>;
  using mutex_type = std::conditional_t<lock_free_reads, cc_spin_mutex, std::shared_mutex>;

  // What a lookup reads, packed together (32 bytes for 8-byte keys and values) and
  // aligned so that it never straddles two cache lines: a hit touches one line here.
  // `version` is the entry's own seqlock for lock-free hits: odd while a writer changes
  // the entry and while it is not live (free, or removed), even while it is live and
  // stable; every change adds one (see entry_open, entry_publish, entry_retire). 32 bits
  // keep 8-byte keys and values in 32 bytes; like Linux's seqcount it may wrap, so a
  // reader stalled between its two reads while one entry changes exactly 2^31 times
  // (minutes of pause at millions of writes a second to that entry) could accept a
  // torn copy.
  struct entry_fields {
    cell<Key> key;
    cell<Value> value;
    cell<time_point> expires;
    std::atomic<std::uint32_t> version{1};
    std::atomic<std::uint8_t> visited{0};
  };
  static constexpr std::size_t entry_align =
      std::min<std::size_t>(cc_cache_line, std::bit_ceil(sizeof(entry_fields)));
  struct alignas(entry_align) entry : entry_fields {};

  // The rest, in a parallel array: the write time (read by get_entry only) and the
  // writers' bookkeeping (under the shard's lock).
  struct meta {
    cell<time_point> written;
    std::uint64_t hash = 0;
    std::uint32_t newer = npos;  // SIEVE lane: towards the head (newest)
    // Towards the tail (oldest); free-list link when free. Not kept for a lane's tail
    // (an eviction there writes no neighbour, whose line the next one would fetch).
    std::uint32_t older = npos;
    std::uint32_t order = 0;  // insertion number: merges the lanes (wrapping compare)
    std::uint8_t lane = 0;
    bool live = false;
  };

  struct chunk_ref {
    std::atomic<entry*> entries{nullptr};
    std::atomic<meta*> metas{nullptr};
  };

  // Tag: hash bits 32..47. The shard comes from the top bits (multiply-shift) and the
  // index position from the low 32 bits, so the tag is independent of both.
  [[nodiscard]] static std::uint32_t tag_of(std::uint64_t h) noexcept {
    return static_cast<std::uint32_t>(h >> 32) & 0xffffU;
  }

  // ---- one cache line, read-only after init(): where lookups find the index and
  // entries (never written, so it stays cached on every core) ----
  alignas(cc_no_false_sharing) std::unique_ptr<std::atomic<std::uint32_t>[]> index;
  std::unique_ptr<chunk_ref[]> chunks;  // index words: 0 = empty, else tag|id+1
  std::uint32_t slots = 0;              // 2 x capacity + 1: load factor <= 1/2
  std::uint32_t chunk_count = 0;
  std::uint32_t capacity = 0;

  // ---- the next cache line (60 bytes with cc_spin_mutex): the sequence number lookups
  // check and all that a put, erase or eviction writes in the header, so a write to a
  // shard last written on another core moves this one line (seq must move anyway) ----
  alignas(cc_cache_line) std::atomic<std::uint64_t> seq{0};  // odd: writing
  std::atomic<std::uint32_t> size{0};                        // also read by size()
  std::uint32_t fresh = 0;  // ids below were handed out since clear()
  std::uint32_t free_head = npos;
  std::uint32_t ttl_entries = 0;  // live entries with a finite expiry
  std::uint32_t next_order = 0;   // insertion number of the next entry
  std::array<cc_lane, lane_count> lanes{};
  mutable mutex_type mutex;

  // ---- the TTL cleanup position, and the entry memory (lookups reach it by chunks) ----
  std::uint32_t cursor = 0;  // cleanup position
  std::vector<std::unique_ptr<entry[]>> owned_entries;
  std::vector<std::unique_ptr<meta[]>> owned_metas;

  void init(std::size_t cap) {  // cap <= 65535
    capacity = static_cast<std::uint32_t>(cap);
    slots = 2 * capacity + 1;
    index = std::make_unique<std::atomic<std::uint32_t>[]>(slots);
    chunk_count = static_cast<std::uint32_t>((cap + chunk_size - 1) / chunk_size);
    chunks = std::make_unique<chunk_ref[]>(chunk_count);
    owned_entries.resize(chunk_count);
    owned_metas.resize(chunk_count);
  }

  // Accessors for lock holders.
  [[nodiscard]] entry& at(std::uint32_t id) const noexcept {
    return owned_entries[id >> chunk_bits][id & (chunk_size - 1)];
  }
  [[nodiscard]] meta& info(std::uint32_t id) const noexcept {
    return owned_metas[id >> chunk_bits][id & (chunk_size - 1)];
  }
  // Index position: the low 32 bits of the hash scaled onto [0, slots).
  [[nodiscard]] std::uint64_t home_of(std::uint64_t h) const noexcept {
    return ((h & 0xffff'ffffU) * std::uint64_t{slots}) >> 32;
  }
  [[nodiscard]] std::uint64_t next(std::uint64_t pos) const noexcept {
    return pos + 1 == slots ? 0 : pos + 1;
  }
  [[nodiscard]] static std::uint32_t id_of(std::uint32_t word) noexcept {
    return (word & 0xffffU) - 1U;
  }
  [[nodiscard]] static std::uint32_t word_for(std::uint64_t h, std::uint32_t id) noexcept {
    return (tag_of(h) << 16) | (id + 1U);
  }

  /// Entry id of `key`, or npos. Caller holds the lock (shared or exclusive).
  [[nodiscard]] std::uint32_t find(std::uint64_t h, const Key& key) const {
    const std::uint32_t tag = tag_of(h);
    for (std::uint64_t pos = home_of(h);; pos = next(pos)) {
      const std::uint32_t w = index[pos].load(std::memory_order_relaxed);
      if (w == 0) return npos;
      if ((w >> 16) == tag) {
        const std::uint32_t id = id_of(w);
        if (at(id).key.get() == key) return id;
      }
    }
  }

  // The entry seqlock (lock holders only). A hit read without the lock trusts an entry
  // only if it read the same even version before and after copying it.
  /// A live entry is about to change (overwrite): even -> odd.
  static void entry_open(entry& e) noexcept {
    if constexpr (lock_free_reads) {
      e.version.store(e.version.load(std::memory_order_relaxed) + 1,
                      std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
    }
  }
  /// The entry is written and live (after entry_open, or an insert into a free entry):
  /// odd -> even.
  static void entry_publish(entry& e) noexcept {
    if constexpr (lock_free_reads) {
      e.version.store(e.version.load(std::memory_order_relaxed) + 1,
                      std::memory_order_release);
    }
  }
  /// A live entry stops being live (before its index word goes): even -> odd, and odd
  /// it stays until an insert publishes it again.
  static void entry_retire(entry& e) noexcept { entry_open(e); }

  [[nodiscard]] static bool expired_at(const entry& e, time_point now) {
    const time_point exp = e.expires.get();
    return exp != time_point::max() && now >= exp;
  }
  [[nodiscard]] static bool is_expired(const entry& e, const Clock& clock) {
    const time_point exp = e.expires.get();
    return exp != time_point::max() && clock.now() >= exp;
  }

  /// A free entry id (allocating a chunk the first time the shard grows there).
  [[nodiscard]] std::uint32_t allocate() {
    if (free_head != npos) {
      const std::uint32_t id = free_head;
      free_head = info(id).older;
      return id;
    }
    const std::uint32_t id = fresh;
    const std::size_t c = id >> chunk_bits;
    if (!owned_entries[c]) {
      const std::size_t n = std::min(chunk_size, std::size_t{capacity} - c * chunk_size);
      auto metas = std::make_unique<meta[]>(n);
      owned_entries[c] = std::make_unique<entry[]>(n);
      owned_metas[c] = std::move(metas);
      chunks[c].metas.store(owned_metas[c].get(), std::memory_order_release);
      chunks[c].entries.store(owned_entries[c].get(), std::memory_order_release);
    }
    ++fresh;
    return id;
  }

  void release(std::uint32_t id) noexcept {
    info(id).older = free_head;
    free_head = id;
  }

  // Index words are stored with release and read by lock-free hits with acquire: a
  // reader that sees a word also sees the entry as published before it (its version),
  // not an older life of the same recycled entry.
  void index_insert(std::uint64_t h, std::uint32_t id) noexcept {
    std::uint64_t pos = home_of(h);
    while (index[pos].load(std::memory_order_relaxed) != 0) pos = next(pos);
    index[pos].store(word_for(h, id), std::memory_order_release);
  }

  /// Removes id's index word, then closes the gap (backward-shift deletion), so
  /// probes never need tombstones.
  void index_erase(std::uint64_t h, std::uint32_t id) noexcept {
    std::uint64_t i = home_of(h);
    while (id_of(index[i].load(std::memory_order_relaxed)) != id) i = next(i);
    for (std::uint64_t j = next(i);; j = next(j)) {
      const std::uint32_t w = index[j].load(std::memory_order_relaxed);
      if (w == 0) break;
      const std::uint64_t home = home_of(info(id_of(w)).hash);
      // The word at j may move back to i unless its home lies cyclically in (i, j].
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!stays) {
        index[i].store(w, std::memory_order_release);
        i = j;
      }
    }
    index[i].store(0, std::memory_order_relaxed);
  }

  /// Appends id as the newest entry of lane `l` (the inserting thread's).
  void link_head(std::uint32_t id, std::size_t l) noexcept {
    cc_lane& lane = lanes[l];
    meta& m = info(id);
    m.newer = npos;
    m.older = lane.head;
    m.order = next_order++;
    m.lane = static_cast<std::uint8_t>(l);
    if (lane.head != npos) {
      info(lane.head).newer = id;
    } else {
      lane.tail = id;
    }
    lane.head = id;
    // A sweep in progress (another lane still has entries ahead of the hand) reaches
    // the newest entry before it wraps, as the hand of a single queue would.
    if (lane.hand == npos && lanes[1 - l].hand != npos) lane.hand = id;
  }

  void unlink(std::uint32_t id) noexcept {
    const meta& m = info(id);
    cc_lane& lane = lanes[m.lane];
    const bool is_tail = lane.tail == id;
    if (is_tail) {
      lane.tail = m.newer;  // the new tail's `older` is left as it was (not kept)
    } else {
      info(m.older).newer = m.newer;
    }
    if (lane.head == id) {
      lane.head = is_tail ? npos : m.older;
    } else if (!is_tail) {
      info(m.newer).older = m.older;
    }
    if (lane.hand == id) lane.hand = m.newer;
  }

  /// The lane whose hand entry was inserted first (the hand of the merged queue);
  /// wraps every lane's hand to its tail when the sweep has passed all of them.
  [[nodiscard]] std::size_t hand_lane() noexcept {
    static_assert(lane_count == 2, "hand_lane and link_head merge exactly two lanes");
    if (lanes[0].hand == npos && lanes[1].hand == npos) {
      for (cc_lane& lane : lanes) lane.hand = lane.tail;
    }
    if (lanes[0].hand == npos) return std::size_t{1};
    if (lanes[1].hand == npos) return std::size_t{0};
    // Insertion numbers wrap: compare their difference (exact while the two entries
    // were inserted fewer than 2^31 inserts apart).
    const auto ahead =
        static_cast<std::int32_t>(info(lanes[1].hand).order - info(lanes[0].hand).order);
    return ahead < 0 ? std::size_t{1} : std::size_t{0};
  }

  void remove(std::uint32_t id) noexcept {
    entry& e = at(id);
    meta& m = info(id);
    entry_retire(e);
    index_erase(m.hash, id);
    unlink(id);
    if (e.expires.get() != time_point::max()) --ttl_entries;
    m.live = false;
    e.key.reset();
    e.value.reset();
    release(id);
    size.store(size.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }

  /// SIEVE: from the hand towards the head (wrapping to the tail), clear visited bits
  /// until an unvisited (or expired) entry, and evict it. True if it had expired (an
  /// expiration, else an eviction).
  bool evict_one(time_point now) noexcept {
    for (;;) {
      cc_lane& lane = lanes[hand_lane()];
      const std::uint32_t id = lane.hand;
      entry& e = at(id);
      const bool expired = expired_at(e, now);
      if (expired || e.visited.load(std::memory_order_relaxed) == 0) {
        remove(id);  // moves the lane's hand to the next newer entry
        return expired;
      }
      e.visited.store(0, std::memory_order_relaxed);
      lane.hand = info(id).newer;
    }
  }

  /// Checks up to `budget` entries (in id order, round robin) for expiry; returns how
  /// many it removed.
  std::size_t cleanup(time_point now, std::size_t budget) noexcept {
    std::size_t removed = 0;
    if (ttl_entries == 0 || fresh == 0) return removed;
    for (std::size_t n = 0; n < budget && ttl_entries > 0; ++n) {
      if (cursor >= fresh) cursor = 0;
      const std::uint32_t id = cursor++;
      if (info(id).live && expired_at(at(id), now)) {
        remove(id);
        ++removed;
      }
    }
    return removed;
  }

  void clear() noexcept {
    for (std::uint64_t i = 0; i < slots; ++i) index[i].store(0, std::memory_order_relaxed);
    for (std::uint32_t id = 0; id < fresh; ++id) {
      if (info(id).live) entry_retire(at(id));
      info(id).live = false;
      at(id).key.reset();
      at(id).value.reset();
    }
    fresh = 0;
    free_head = npos;
    lanes = {};
    cursor = 0;
    ttl_entries = 0;
    size.store(0, std::memory_order_relaxed);
  }
};

/// Makes the shard's sequence number odd while a writer changes it (lock-free readers
/// retry), even again afterwards. No-op when reads take the shared lock.
template <class Shard>
struct cc_write_section {
  explicit cc_write_section(Shard& sh) noexcept : s(sh) {
    if constexpr (Shard::lock_free_reads) {
      s.seq.store(s.seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
    }
  }
  ~cc_write_section() {
    if constexpr (Shard::lock_free_reads) {
      s.seq.store(s.seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
  }
  cc_write_section(const cc_write_section&) = delete;
  cc_write_section& operator=(const cc_write_section&) = delete;
  Shard& s;
};

}  // namespace outgrow::detail
