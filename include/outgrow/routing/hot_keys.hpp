// outgrow/routing/hot_keys.hpp — hot-key and hot-shard load counters in bounded memory.
//
// A sharded service fails one shard at a time: a celebrity user, a viral product or a
// retry storm on one key sends a single shard past its capacity while the mean looks
// fine. A router needs two cheap reports to see it coming:
//
//   - `shard_load_counters`: one relaxed atomic counter per shard. `report()` gives the
//     per-shard counts, mean, the peak shard and its peak-to-mean ratio, and the hot
//     shards (count > threshold × mean, 1.5 by default).
//   - `hot_key_tracker<Key, Hasher>`: the heaviest keys of an unbounded stream in
//     O(capacity) memory, by the Space-Saving algorithm (Metwally, Agrawal, El Abbadi,
//     "Efficient computation of frequent and top-k elements in data streams", ICDT
//     2005). It keeps k = `capacity` counters; a key not monitored takes over the
//     counter with the smallest count c_min, inheriting c_min as its `error`.
//
//   outgrow::shard_load_counters shards(8);
//   outgrow::hot_key_tracker<std::string> keys({.capacity = 1024});
//   // on every request, from any thread:
//   shards.record(router.route(key));        // out-of-range shards never throw
//   keys.record(key);                         // or keys.record(key, bytes) to weigh
//   // in a reporting task:
//   fmt::print("{}\n", shards.report());     // shard_load_report{shards=8, ...}
//   for (const auto& hk : keys.top(10)) fmt::print("{} ~{}\n", hk.key, hk.count);
//   keys.decay(0.5);                          // once a minute: recent traffic weighs more
//
// Space-Saving guarantees (k = capacity, N = total() = sum of recorded weights):
//   - every reported count over-estimates: count - error <= true count <= count
//     (`hot_key::min_count()` is the lower bound), and error <= N / k;
//   - every key whose true count exceeds N / k is reported: top(n) lists it as long as
//     n is at least the number of keys ahead of it; top-n is exact in order whenever
//     the counts of neighbouring keys differ by more than their errors (in practice,
//     for skewed traffic, the head of the distribution).
// The tracker is striped: each thread records into one of `stripes` independent
// summaries (chosen once per thread), and top() merges them as mergeable summaries do
// (Agarwal et al., "Mergeable summaries", PODS 2012): a key's merged count is the sum
// of its counts, plus the smallest count of every full stripe that does not monitor
// it (its true count there is at most that). Every stripe has k counters, so the
// merged bounds are the same as above: error <= sum of N_i / k = N / k. Memory is
// stripes × capacity entries; one thread alone sees exactly a single Space-Saving
// summary. A key recorded from many threads occupies a counter in each stripe.
//
// decay(factor) multiplies every count, error bound and the total by factor in (0, 1]
// — exponential forgetting for sliding-ish windows: calling decay(0.5) every minute
// makes a request from m minutes ago weigh 2^-m. Counts (and the total) round up and
// lower bounds round down, so `count - error <= decayed true count <= count` stays
// exact; a key whose decayed true count exceeds the smallest monitored count stays
// reported. Rounding up can leave that smallest count above total()/k by less than
// 1/(1 - factor) (e.g. < 2 for 0.5); counts never decay below 1, and such stale keys
// are the first to be replaced.
//
// Memory and allocation: each stripe reserves its k entries, its heap and an
// open-addressing index (2k..4k slots of 4 bytes) in the constructor; record() never
// allocates except to copy a Key that needs heap memory (a std::string longer than its
// small-string buffer, copied into a replaced counter without spare capacity).
// clear() keeps the reservations.
//
// Thread-safety: hot_key_tracker — every member may be called from any thread;
// record() takes its stripe's mutex (distinct threads usually land on distinct
// stripes); top(), total(), clear() and decay() lock each stripe in turn (top() while
// it copies that stripe's k entries), so a snapshot is per stripe, not one atomic cut. The
// Hasher is called concurrently without a lock. shard_load_counters — record(), report(),
// reset() and out_of_range() from any thread (relaxed counters: each exact, the report not
// one atomic cut); resize() needs exclusive access (see below). Complexity:
// hot_key_tracker::record O(log k) worst case (a heap sift; O(1) for an already-heavy key),
// top(n) O(S·k·log(S·k)) for S stripes, decay O(S·k); shard_load_counters::record O(1), one
// relaxed fetch_add; report() O(shards).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

// ---------------------------------------------------------------------------------
// hot_key_tracker
// ---------------------------------------------------------------------------------

struct hot_key_config {
  /// Counters per stripe, k: 1024, so any key above ~0.1 % of traffic is reported and
  /// every count is within total/1024 of the truth. Valid: [1, 1000000].
  std::size_t capacity = 1024;
  /// Independent summaries threads record into, merged by top(): 4, enough to keep a
  /// few router threads off one lock. The error bound does not depend on it; memory is
  /// stripes × capacity entries. Valid: [1, 64].
  std::size_t stripes = 4;
};

/// One reported key. `count` over-estimates the key's true count by at most `error`.
template <class Key>
struct hot_key {
  Key key;
  std::uint64_t count = 0;
  std::uint64_t error = 0;

  /// The guaranteed part of the count: min_count() <= true count <= count.
  [[nodiscard]] std::uint64_t min_count() const noexcept { return count - error; }

  friend bool operator==(const hot_key&, const hot_key&) = default;
};

namespace detail {

/// The stripe a thread records into: a per-thread number handed out in thread start
/// order, so the first `stripes` recording threads land on distinct stripes.
inline std::size_t thread_stripe_seed() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t seed = next.fetch_add(1, std::memory_order_relaxed);
  return seed;
}

/// ceil(x * factor) for factor in (0, 1]; never more than x.
inline std::uint64_t scale_up(std::uint64_t x, double factor) noexcept {
  const long double scaled = std::ceil(static_cast<long double>(x) * factor);
  return std::min(x, static_cast<std::uint64_t>(scaled));
}

/// floor(x * factor) for factor in (0, 1].
inline std::uint64_t scale_down(std::uint64_t x, double factor) noexcept {
  const long double scaled = std::floor(static_cast<long double>(x) * factor);
  return std::min(x, static_cast<std::uint64_t>(scaled));
}

/// One Space-Saving summary (single-threaded): k counters in a binary min-heap by
/// count, found by key through an open-addressing index (linear probing, load <= 1/2,
/// backward-shift deletion). The caller supplies each key's 64-bit hash.
template <class Key>
class space_saving {
 public:
  struct entry {
    Key key;
    std::uint64_t hash;
    std::uint64_t count;
    std::uint64_t error;
    std::uint32_t heap_pos;
  };

  explicit space_saving(std::size_t capacity) : capacity_(capacity) {
    entries_.reserve(capacity);
    heap_.reserve(capacity);
    const std::size_t slots = std::bit_ceil(capacity * 2);
    slots_.assign(slots, 0);
    shift_ = 64 - std::countr_zero(slots);
  }

  void record(const Key& key, std::uint64_t hash, std::uint64_t weight) {
    std::size_t slot = home(hash);
    for (; slots_[slot] != 0; slot = next(slot)) {
      entry& e = entries_[slots_[slot] - 1];
      if (e.hash == hash && e.key == key) {
        e.count += weight;
        sift_down(e.heap_pos);
        total_ += weight;
        return;
      }
    }
    if (entries_.size() < capacity_) {
      const auto i = static_cast<std::uint32_t>(entries_.size());
      entries_.push_back(entry{key, hash, weight, 0, i});  // reserved: copies the key only
      heap_.push_back(i);
      slots_[slot] = i + 1;
      sift_up(i);
      total_ += weight;
      return;
    }
    // Full: the key takes over the counter with the smallest count.
    const std::uint32_t i = heap_[0];
    entry& e = entries_[i];
    e.key = key;  // first, so that a throwing copy leaves the summary consistent
    erase_slot(slot_of(i));
    e.hash = hash;
    insert_slot(i);
    e.error = e.count;
    e.count += weight;
    sift_down(0);
    total_ += weight;
  }

  void decay(double factor) noexcept {
    // ceil is monotone, so the heap order survives the scaling.
    for (entry& e : entries_) {
      const std::uint64_t lower = scale_down(e.count - e.error, factor);
      e.count = scale_up(e.count, factor);
      e.error = e.count - lower;
    }
    total_ = scale_up(total_, factor);
  }

  void clear() noexcept {
    entries_.clear();
    heap_.clear();
    std::fill(slots_.begin(), slots_.end(), 0U);
    total_ = 0;
  }

  [[nodiscard]] const std::vector<entry>& entries() const noexcept { return entries_; }
  [[nodiscard]] std::uint64_t total() const noexcept { return total_; }
  [[nodiscard]] bool full() const noexcept { return entries_.size() == capacity_; }
  /// The smallest monitored count: a key not monitored has a true count <= this.
  [[nodiscard]] std::uint64_t min_count() const noexcept {
    return full() ? entries_[heap_[0]].count : 0;
  }

 private:
  [[nodiscard]] std::size_t home(std::uint64_t hash) const noexcept {
    // Fibonacci hashing: robust to weak user hashers (e.g. identity on integers).
    return static_cast<std::size_t>((hash * 0x9e3779b97f4a7c15ULL) >> shift_);
  }
  [[nodiscard]] std::size_t next(std::size_t slot) const noexcept {
    return (slot + 1) & (slots_.size() - 1);
  }
  [[nodiscard]] std::uint64_t count_at(std::size_t heap_pos) const noexcept {
    return entries_[heap_[heap_pos]].count;
  }
  void place(std::size_t heap_pos, std::uint32_t i) noexcept {
    heap_[heap_pos] = i;
    entries_[i].heap_pos = static_cast<std::uint32_t>(heap_pos);
  }
  void sift_up(std::size_t pos) noexcept {
    const std::uint32_t item = heap_[pos];
    const std::uint64_t c = entries_[item].count;
    while (pos > 0) {
      const std::size_t parent = (pos - 1) / 2;
      if (count_at(parent) <= c) break;
      place(pos, heap_[parent]);
      pos = parent;
    }
    place(pos, item);
  }
  void sift_down(std::size_t pos) noexcept {
    const std::uint32_t item = heap_[pos];
    const std::uint64_t c = entries_[item].count;
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t child = 2 * pos + 1;
      if (child >= n) break;
      if (child + 1 < n && count_at(child + 1) < count_at(child)) ++child;
      if (count_at(child) >= c) break;
      place(pos, heap_[child]);
      pos = child;
    }
    place(pos, item);
  }
  [[nodiscard]] std::size_t slot_of(std::uint32_t i) const noexcept {
    std::size_t slot = home(entries_[i].hash);
    while (slots_[slot] != i + 1) slot = next(slot);
    return slot;
  }
  void insert_slot(std::uint32_t i) noexcept {
    std::size_t slot = home(entries_[i].hash);
    while (slots_[slot] != 0) slot = next(slot);
    slots_[slot] = i + 1;
  }
  void erase_slot(std::size_t hole) noexcept {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t j = next(hole); slots_[j] != 0; j = next(j)) {
      const std::size_t h = home(entries_[slots_[j] - 1].hash);
      // Move j back into the hole unless its home lies cyclically in (hole, j].
      if (((j - h) & mask) >= ((j - hole) & mask)) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = 0;
  }

  std::size_t capacity_;
  std::vector<entry> entries_;
  std::vector<std::uint32_t> heap_;   // entry indices, min-heap by count
  std::vector<std::uint32_t> slots_;  // entry index + 1; 0 = empty
  int shift_ = 63;
  std::uint64_t total_ = 0;
};

}  // namespace detail

/// Space-Saving heavy hitters over a stream of keys; see the header comment.
/// Key: copyable and equality-comparable; Hasher: outgrow::key_hasher for Key.
template <class Key, class Hasher = xxh3_hasher>
requires std::copyable<Key> && std::equality_comparable<Key> && key_hasher<Hasher, Key>
class hot_key_tracker {
 public:
  using key_type = Key;
  using hasher_type = Hasher;

  /// Throws: config_error if config.capacity is not in [1, 1000000] or config.stripes
  /// is not in [1, 64].
  explicit hot_key_tracker(hot_key_config config = {}, Hasher hasher = {})
      : config_(validated(config)), hasher_(std::move(hasher)) {
    stripes_.reserve(config_.stripes);
    for (std::size_t i = 0; i < config_.stripes; ++i) {
      stripes_.push_back(std::make_unique<stripe>(config_.capacity));
    }
  }

  hot_key_tracker(const hot_key_tracker&) = delete;
  hot_key_tracker& operator=(const hot_key_tracker&) = delete;

  /// Counts `weight` occurrences of `key` (weight 0 is a no-op). Never allocates in
  /// steady state, never throws unless copying the Key does.
  void record(const Key& key, std::uint64_t weight = 1) noexcept(
      std::is_nothrow_copy_constructible_v<Key>&& std::is_nothrow_copy_assignable_v<Key>) {
    if (weight == 0) return;
    const auto hash = static_cast<std::uint64_t>(hasher_(key));
    stripe& s = *stripes_[detail::thread_stripe_seed() % stripes_.size()];
    const std::lock_guard lock(s.mutex);
    s.summary.record(key, hash, weight);
  }

  /// The n keys with the highest (merged) counts, by count descending (then error
  /// ascending); fewer when fewer keys are monitored.
  [[nodiscard]] std::vector<hot_key<Key>> top(std::size_t n) const {
    struct item {
      hot_key<Key> key;
      std::uint64_t hash;
      std::uint64_t floor;  // its stripe's smallest count if full, else 0
    };
    std::vector<item> items;
    std::uint64_t floor_sum = 0;
    for (const auto& s : stripes_) {
      const std::lock_guard lock(s->mutex);
      const std::uint64_t floor = s->summary.min_count();
      floor_sum += floor;
      for (const auto& e : s->summary.entries()) {
        items.push_back(item{hot_key<Key>{e.key, e.count, e.error}, e.hash, floor});
      }
    }
    std::vector<item> merged;
    if (stripes_.size() == 1) {
      merged = std::move(items);
    } else {
      merged.reserve(items.size());
      // Group equal keys (equal hashes first), then add the floors of the full
      // stripes that do not monitor the key: sum of counts + floor_sum - own floors.
      std::sort(items.begin(), items.end(),
                [](const item& a, const item& b) { return a.hash < b.hash; });
      std::vector<bool> taken(items.size(), false);
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (taken[i]) continue;
        item sum = items[i];
        for (std::size_t j = i + 1; j < items.size() && items[j].hash == sum.hash; ++j) {
          if (taken[j] || !(items[j].key.key == sum.key.key)) continue;
          taken[j] = true;
          sum.key.count += items[j].key.count;
          sum.key.error += items[j].key.error;
          sum.floor += items[j].floor;
        }
        sum.key.count += floor_sum - sum.floor;
        sum.key.error += floor_sum - sum.floor;
        merged.push_back(std::move(sum));
      }
    }
    const auto by_rank = [](const item& a, const item& b) {
      if (a.key.count != b.key.count) return a.key.count > b.key.count;
      if (a.key.error != b.key.error) return a.key.error < b.key.error;
      return a.hash < b.hash;
    };
    const std::size_t keep = std::min(n, merged.size());
    const auto middle = merged.begin() + static_cast<std::ptrdiff_t>(keep);
    std::partial_sort(merged.begin(), middle, merged.end(), by_rank);
    std::vector<hot_key<Key>> out;
    out.reserve(keep);
    for (auto it = merged.begin(); it != middle; ++it) out.push_back(std::move(it->key));
    return out;
  }

  /// Sum of all recorded weights (decayed by decay()).
  [[nodiscard]] std::uint64_t total() const {
    std::uint64_t sum = 0;
    for (const auto& s : stripes_) {
      const std::lock_guard lock(s->mutex);
      sum += s->summary.total();
    }
    return sum;
  }

  /// Forgets every key and the total; keeps the reserved memory.
  void clear() {
    for (const auto& s : stripes_) {
      const std::lock_guard lock(s->mutex);
      s->summary.clear();
    }
  }

  /// Multiplies counts, error bounds and the total by `factor` in (0, 1] (see the
  /// header comment).
  /// Throws: config_error if factor is not in (0, 1].
  void decay(double factor) {
    require(factor > 0.0 && factor <= 1.0, "hot_key_tracker", "decay(factor)", "in (0, 1]",
            factor);
    for (const auto& s : stripes_) {
      const std::lock_guard lock(s->mutex);
      s->summary.decay(factor);
    }
  }

  [[nodiscard]] const hot_key_config& config() const noexcept { return config_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return config_.capacity; }

 private:
  struct alignas(64) stripe {
    explicit stripe(std::size_t capacity) : summary(capacity) {}
    mutable std::mutex mutex;
    detail::space_saving<Key> summary;
  };

  static hot_key_config validated(const hot_key_config& c) {
    require_in_range("hot_key_tracker", "capacity", c.capacity, std::size_t{1},
                     std::size_t{1'000'000});
    require_in_range("hot_key_tracker", "stripes", c.stripes, std::size_t{1},
                     std::size_t{64});
    return c;
  }

  hot_key_config config_;
  Hasher hasher_;
  std::vector<std::unique_ptr<stripe>> stripes_;
};

// ---------------------------------------------------------------------------------
// shard_load_counters
// ---------------------------------------------------------------------------------

/// A snapshot of per-shard load; prints with {fmt} as
/// `shard_load_report{shards=4, total=100, mean=25, peak_shard=2, peak=40,
///  peak_to_mean=1.6, hot_shards=[2], out_of_range=0}` (hot_shards at threshold 1.5).
struct shard_load_report {
  static constexpr std::string_view metrics_name = "shard_load_report";

  /// Events per shard, indexed by shard.
  std::vector<std::uint64_t> counts;
  /// Events recorded for a shard index >= the number of shards (not in `counts`).
  std::uint64_t out_of_range = 0;

  [[nodiscard]] std::size_t shards() const noexcept { return counts.size(); }

  /// Sum of `counts` (out_of_range excluded).
  [[nodiscard]] std::uint64_t total() const noexcept {
    std::uint64_t sum = 0;
    for (const std::uint64_t c : counts) sum += c;
    return sum;
  }

  /// total() / shards(); 0 when there are no shards.
  [[nodiscard]] double mean() const noexcept {
    return counts.empty()
               ? 0.0
               : static_cast<double>(total()) / static_cast<double>(counts.size());
  }

  /// The busiest shard (the lowest index among equals); 0 when there are no shards.
  [[nodiscard]] std::size_t peak_shard() const noexcept {
    return counts.empty()
               ? 0
               : static_cast<std::size_t>(std::max_element(counts.begin(), counts.end()) -
                                          counts.begin());
  }

  /// The busiest shard's count.
  [[nodiscard]] std::uint64_t peak() const noexcept {
    return counts.empty() ? 0 : counts[peak_shard()];
  }

  /// peak() / mean(): 1.0 is perfect balance; 0 when nothing was recorded.
  [[nodiscard]] double peak_to_mean() const noexcept {
    const double m = mean();
    return m == 0.0 ? 0.0 : static_cast<double>(peak()) / m;
  }

  /// Shards whose count exceeds threshold × mean(), ascending. Default 1.5: a shard
  /// carrying 50 % more than its share.
  /// Throws: config_error if threshold < 0 (or NaN).
  [[nodiscard]] std::vector<std::size_t> hot_shards(double threshold = 1.5) const {
    require_at_least("shard_load_report", "hot_shards(threshold)", threshold, 0.0);
    const double limit = threshold * mean();
    std::vector<std::size_t> hot;
    for (std::size_t i = 0; i < counts.size(); ++i) {
      if (static_cast<double>(counts[i]) > limit) hot.push_back(i);
    }
    return hot;
  }

  template <class F>
  void for_each_metric(F&& f) const {
    f("shards", shards());
    f("total", total());
    f("mean", mean());
    f("peak_shard", peak_shard());
    f("peak", peak());
    f("peak_to_mean", peak_to_mean());
    f("hot_shards", hot_shards());
    f("out_of_range", out_of_range);
  }
};

/// Per-shard request counters for a fixed number of shards; see the header comment.
///
/// record() is a hot path and never throws: a shard index >= size() is counted in
/// `out_of_range` (a routing bug or a topology race worth alerting on), not rejected.
/// resize() is for topology changes and is not safe against concurrent record() or
/// report(): call it from the thread that owns the topology while no other thread
/// records, or keep one shard_load_counters per published topology (build a new one
/// for the new topology and let the old one retire with its snapshot).
class shard_load_counters {
 public:
  /// Throws: config_error if shards is not in [1, 1000000].
  explicit shard_load_counters(std::size_t shards)
      : size_(validated(shards)), counts_(std::make_unique<slot[]>(size_)) {}

  shard_load_counters(const shard_load_counters&) = delete;
  shard_load_counters& operator=(const shard_load_counters&) = delete;

  /// Counts n events for `shard`; out-of-range shards go to out_of_range().
  void record(std::size_t shard, std::uint64_t n = 1) noexcept {
    if (shard < size_) [[likely]] {
      counts_[shard].value.add(n);
    } else {
      out_of_range_.add(n);
    }
  }

  /// A snapshot (per-counter exact, not one atomic cut across shards).
  [[nodiscard]] shard_load_report report() const {
    shard_load_report r;
    r.counts.reserve(size_);
    for (std::size_t i = 0; i < size_; ++i) r.counts.push_back(counts_[i].value.load());
    r.out_of_range = out_of_range_.load();
    return r;
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::uint64_t out_of_range() const noexcept { return out_of_range_.load(); }

  /// Zeroes every counter (safe concurrently: racing records may land either side).
  void reset() noexcept {
    for (std::size_t i = 0; i < size_; ++i) counts_[i].value.reset();
    out_of_range_.reset();
  }

  /// A new topology of `shards` shards, every count (and out_of_range) back to zero.
  /// Needs exclusive access.
  /// Throws: config_error if shards is not in [1, 1000000] (nothing changes).
  void resize(std::size_t shards) {
    validated(shards);
    counts_ = std::make_unique<slot[]>(shards);
    size_ = shards;
    out_of_range_.reset();
  }

 private:
  struct alignas(64) slot {  // one cache line per shard: no false sharing
    counter value;
  };

  static std::size_t validated(std::size_t shards) {
    require_in_range("shard_load_counters", "shards", shards, std::size_t{1},
                     std::size_t{1'000'000});
    return shards;
  }

  std::size_t size_;
  std::unique_ptr<slot[]> counts_;
  counter out_of_range_;
};

static_assert(metrics_snapshot<shard_load_report>);

}  // namespace outgrow
