// outgrow/cache/cache.hpp — a bounded in-process cache tier with a pluggable eviction
// policy, capacity by entry count or by cost, and per-entry TTL.
//
// Use it as the L1 of one thread (an event loop, a worker that owns its data, a
// simulation), or as the building block of your own locking scheme. For many threads,
// use outgrow::concurrent_cache. It satisfies `cache_tier` and `cache_tier_with_entries`
// (tier.hpp), so it drops into tiered_cache.
//
//   using namespace std::chrono_literals;
//   outgrow::cache<std::string, std::string> users({.capacity = 10'000,
//                                                  .default_ttl = 5min});
//   users.put("user:42", "Ada");                       // default TTL (5 min)
//   users.put("user:7", "Grace", 30s);                 // per-entry TTL
//   if (std::optional<std::string> v = users.get("user:42")) { /* hit */ }
//   users.erase("user:7");
//   fmt::print("{}\n", users.metrics());   // cache_metrics{hits=1, misses=0, ...}
//
//   // Capacity by cost: at most 64 MiB of values, LRU eviction, manual clock in tests.
//   auto bytes = [](const std::string& k, const std::string& v) {
//     return k.size() + v.size();
//   };
//   outgrow::cache<std::string, std::string, outgrow::lru, decltype(bytes)> blobs(
//       {.capacity = 64 << 20}, outgrow::steady_clock_source{}, bytes);
//
// Eviction: the `Policy` template parameter (eviction.hpp): lru, sieve, s3_fifo,
// w_tiny_lfu (the default) or your own `eviction_policy`; a policy's own configuration
// (s3_fifo_config, w_tiny_lfu_config) is the constructor's second argument. W-TinyLFU
// with its adaptive window is the default because on every workload we test (Zipf, a
// looping scan, recency-biased traces, a real block-I/O trace) it stays within 2 points
// of the best of LRU, SIEVE and S3-FIFO and at LRU's level or above, within 3 points of
// the static top-k oracle on Zipf, and it alone keeps hitting on a scan larger than the
// cache (the table is in eviction.hpp; tests/cache/hit_ratio_test.cpp measures and
// prints it). The cache evicts before it inserts a new key (policies that filter
// admission, as w_tiny_lfu, insert first and may reject the new entry).
//
// Capacity: `capacity` entries, or — with a `Weigher` — a total cost: the weigher
// returns each entry's cost (e.g. bytes) when it is stored. A cost of 0 counts as 1,
// so the number of entries never exceeds the capacity. An entry heavier than the
// whole capacity is not stored: put returns false, counts a rejected put, and removes
// an older value of that key (never serve a value the caller has replaced).
// Before a new entry is stored (after, for insert_before_evict policies, and after an
// update) the policy evicts until the total cost fits; expired entries are reclaimed
// before live ones are evicted.
//
// TTL: put(k, v) uses `default_ttl` (none: never expires), put(k, v, ttl) a per-entry
// TTL; a TTL <= 0 throws config_error. An entry written at t with TTL d is live while
// now < t + d. With `ttl_jitter` = j > 0, every TTL is shortened by a random fraction
// in [0, j) of itself (generator seeded by `jitter_seed`: set = reproducible), so entries
// written together do not all expire — and reload — at once; a TTL is never
// lengthened, so it stays an upper bound on staleness. Expiry is
//   - lazy: get/get_entry/contains/peek treat an expired entry as absent (get counts
//     a miss and an expiration and removes it);
//   - amortized: entries with a TTL sit in a min-heap by expiry time; every get, put,
//     get_entry and erase first removes up to `cleanup_per_op` (default 2) expired
//     entries from its top, in O(cleanup_per_op x log n). cleanup() removes them all.
// The clock is read on put, and on reads only when entries with a TTL exist.
//
// Statistics (cache_metrics): hits and misses (get, get_entry), puts (values stored),
// rejected_puts (values too heavy to store), evictions (removed by the policy to make
// room), expirations (removed because their TTL passed). erase/erase_if/clear count
// nothing. peek and contains count nothing and do not touch the policy.
//
// Memory and allocation: one heap node per stored entry (key, value, the policy's hook
// and 48 bytes of bookkeeping), allocated when a key is inserted and freed when it
// leaves, plus 8-16 bytes of index and up to 8 of expiry heap per entry. The index (a
// chained hash table of pointers), the expiry heap and the policy's tables grow by doubling
// while the entry count grows; once the cache is full, a put of a new key allocates exactly
// its node, and hits, updates, erases and evictions never allocate.
//
// Thread-safety: none. One thread at a time (or your own lock); use concurrent_cache
// for shared access. const members (peek, contains, size, stats) may run concurrently
// with each other but not with any non-const member.
// Complexity: get, put, erase, contains, peek O(1) expected plus the policy's O(1)
// (amortized) work, plus O(cleanup_per_op x log n) when TTLs are used; erase_if and
// cleanup O(n); clear O(n).
#pragma once

#include <algorithm>
#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <outgrow/cache/detail/tier_put.hpp>
#include <outgrow/cache/eviction.hpp>
#include <outgrow/cache/tier.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/seed.hpp>

namespace outgrow {

/// A cost function: weigher(key, value) -> the entry's cost in capacity units.
template <class W, class Key, class Value>
concept weigher =
    std::copy_constructible<W> && requires(const W& w, const Key& k, const Value& v) {
      { w(k, v) } -> std::convertible_to<std::size_t>;
    };

/// Every entry costs 1: the capacity is an entry count.
struct unit_weigher {
  template <class Key, class Value>
  constexpr std::size_t operator()(const Key& /*key*/,
                                   const Value& /*value*/) const noexcept {
    return 1;
  }
};

/// Configuration of an outgrow::cache.
struct cache_config {
  /// Entries, or total cost when a weigher is used; in [1, 2^63 - 1]. Required.
  std::size_t capacity = 0;
  /// TTL of put(key, value); std::nullopt (the default) = entries never expire.
  std::optional<std::chrono::nanoseconds> default_ttl = std::nullopt;
  /// Every TTL is shortened by a random fraction in [0, ttl_jitter); in [0, 0.5].
  /// Default 0: exact TTLs.
  double ttl_jitter = 0.0;
  /// Seed of the jitter's generator: empty = random per instance, set = the same TTLs
  /// on every run (see core/seed.hpp). Read only when ttl_jitter > 0.
  std::optional<std::uint64_t> jitter_seed{};
  /// Expired entries removed (at most) by each get/put/erase; in [0, 1024]; default 2.
  std::size_t cleanup_per_op = 2;
};

namespace detail {
/// An intrusive binary min-heap of Node* ordered by `expires`; each node stores its
/// position in `heap_index`.
template <class Node>
class expiry_heap {
 public:
  static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();

  [[nodiscard]] bool empty() const noexcept { return heap_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return heap_.size(); }
  [[nodiscard]] Node* top() const noexcept { return heap_.front(); }
  void reserve(std::size_t n) { heap_.reserve(n); }
  void clear() noexcept { heap_.clear(); }

  /// Needs reserved room (push_back never allocates after reserve(size() + 1)).
  void push(Node* n) noexcept {
    n->heap_index = heap_.size();
    heap_.push_back(n);
    sift_up(n->heap_index);
  }
  void erase(Node* n) noexcept {
    const std::size_t i = n->heap_index;
    Node* last = heap_.back();
    heap_.pop_back();
    n->heap_index = npos;
    if (i < heap_.size()) {
      heap_[i] = last;
      last->heap_index = i;
      fix(i);
    }
  }
  /// Restores the order after n->expires changed.
  void update(Node* n) noexcept { fix(n->heap_index); }

 private:
  void fix(std::size_t i) noexcept {
    if (i > 0 && heap_[i]->expires < heap_[(i - 1) / 2]->expires) {
      sift_up(i);
    } else {
      sift_down(i);
    }
  }
  void sift_up(std::size_t i) noexcept {
    Node* n = heap_[i];
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!(n->expires < heap_[parent]->expires)) break;
      heap_[i] = heap_[parent];
      heap_[i]->heap_index = i;
      i = parent;
    }
    heap_[i] = n;
    n->heap_index = i;
  }
  void sift_down(std::size_t i) noexcept {
    Node* n = heap_[i];
    const std::size_t size = heap_.size();
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && heap_[child + 1]->expires < heap_[child]->expires) ++child;
      if (!(heap_[child]->expires < n->expires)) break;
      heap_[i] = heap_[child];
      heap_[i]->heap_index = i;
      i = child;
    }
    heap_[i] = n;
    n->heap_index = i;
  }

  std::vector<Node*> heap_;
};
}  // namespace detail

/// A single-threaded bounded cache tier (see the header comment).
template <class Key, class Value, eviction_policy Policy = w_tiny_lfu,
          class Weigher = unit_weigher, clock_source Clock = steady_clock_source,
          class Hash = std::hash<Key>>
requires weigher<Weigher, Key, Value> && std::copy_constructible<Key> &&
         std::equality_comparable<Key> && std::copy_constructible<Value> &&
         std::is_move_assignable_v<Value> && requires(const Hash& h, const Key& k) {
           { h(k) } -> std::convertible_to<std::size_t>;
         }
class cache
    : public detail::tier_put<cache<Key, Value, Policy, Weigher, Clock, Hash>, Key, Value> {
 public:
  using key_type = Key;
  using mapped_type = Value;
  using policy_type = Policy;
  using weigher_type = Weigher;
  using clock_type = Clock;
  using hasher = Hash;
  using time_point = typename Clock::time_point;
  using entry_type = cache_entry<Value, time_point>;
  using config_type = cache_config;
  /// The name config_error messages give this primitive.
  static constexpr std::string_view primitive_name = "cache";

  /// The largest capacity (so that capacity + one entry's cost never overflows).
  static constexpr std::size_t max_capacity = std::numeric_limits<std::size_t>::max() / 2;

  /// Throws: config_error if a cache_config field is out of its range.
  explicit cache(const cache_config& config, Clock clock = Clock{}, Weigher weigher = {},
                 Hash hash = {})
      : config_(validated(config)),
        clock_(std::move(clock)),
        weigher_(std::move(weigher)),
        hash_(std::move(hash)),
        policy_(config_.capacity),
        rng_{jitter_seed(config_)} {}

  /// With the eviction policy's own configuration (e.g. s3_fifo_config,
  /// w_tiny_lfu_config).
  /// Throws: config_error if a cache_config or policy config field is out of range.
  cache(const cache_config& config, const policy_config_t<Policy>& policy_config,
        Clock clock = Clock{}, Weigher weigher = {}, Hash hash = {})
  requires configurable_eviction_policy<Policy>
      : config_(validated(config)),
        clock_(std::move(clock)),
        weigher_(std::move(weigher)),
        hash_(std::move(hash)),
        policy_(config_.capacity, policy_config),
        rng_{jitter_seed(config_)} {}

  cache(const cache&) = delete;
  cache& operator=(const cache&) = delete;

  /// Moves the entries; the moved-from cache is empty and usable (it keeps copies of
  /// its configuration, clock, weigher and hasher).
  cache(cache&& other) noexcept(nothrow_move_constructible)
      : config_(other.config_),
        clock_(other.clock_),
        weigher_(other.weigher_),
        hash_(other.hash_),
        policy_(std::move(other.policy_)),
        buckets_(std::move(other.buckets_)),
        bucket_count_(std::exchange(other.bucket_count_, 0)),
        size_(std::exchange(other.size_, 0)),
        total_weight_(std::exchange(other.total_weight_, 0)),
        policy_planned_(std::exchange(other.policy_planned_, 0)),
        heap_(std::move(other.heap_)),
        stats_(other.stats_),
        rng_(other.rng_) {
    other.forget_after_move();
  }

  /// Frees this cache's entries and takes `other`'s; `other` is left empty.
  cache& operator=(cache&& other) noexcept(nothrow_move_assignable) {
    if (this == &other) return *this;
    free_all_nodes();
    config_ = other.config_;
    clock_ = other.clock_;
    weigher_ = other.weigher_;
    hash_ = other.hash_;
    policy_ = std::move(other.policy_);
    buckets_ = std::move(other.buckets_);
    bucket_count_ = std::exchange(other.bucket_count_, 0);
    size_ = std::exchange(other.size_, 0);
    total_weight_ = std::exchange(other.total_weight_, 0);
    policy_planned_ = std::exchange(other.policy_planned_, 0);
    heap_ = std::move(other.heap_);
    stats_ = other.stats_;
    rng_ = other.rng_;
    other.forget_after_move();
    return *this;
  }

  ~cache() { free_all_nodes(); }

  // ---- cache_tier ------------------------------------------------------------

  /// The value of `key` if present and not expired; counts a hit or a miss.
  [[nodiscard]] std::optional<Value> get(const Key& key) {
    node* n = lookup(key);
    if (n == nullptr) return std::nullopt;
    return n->value;
  }

  // put(key, value) with the default TTL, put(key, value, ttl): see detail::tier_put.
  // False (and a rejected put) if the entry is heavier than the whole capacity.
  using detail::tier_put<cache, Key, Value>::put;

  /// Removes `key`; true if a live entry was removed (an expired one is removed and
  /// counted as an expiration, and erase returns false).
  bool erase(const Key& key) {
    const std::uint64_t hash = hash_of(key);
    cleanup_some();
    node* n = find(key, hash);
    if (n == nullptr) return false;
    if (is_expired(n, clock_now_if_ttl(n))) {
      expire(n);
      return false;
    }
    policy_.on_erase(*n);
    destroy(n);
    return true;
  }

  /// Removes every entry (not counted anywhere). Keeps the index and tables.
  void clear() noexcept {
    free_all_nodes();
    if (bucket_count_ != 0) std::fill_n(buckets_.get(), bucket_count_, nullptr);
    heap_.clear();
    policy_.clear();
    size_ = 0;
    total_weight_ = 0;
  }

  /// Entries stored, including expired ones not removed yet.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

  /// A snapshot of the counters (load_* stay 0: this tier never loads).
  [[nodiscard]] cache_metrics metrics() const noexcept { return stats_; }

  // ---- cache_tier_with_entries -------------------------------------------------

  /// Like get, with the entry's write time and expiry (time_point::max(): none).
  [[nodiscard]] std::optional<entry_type> get_entry(const Key& key) {
    node* n = lookup(key);
    if (n == nullptr) return std::nullopt;
    return entry_type{n->value, n->written, n->expires};
  }

  // ---- beyond the tier concept ---------------------------------------------------

  /// Whether `key` has a live entry. No statistics, no policy update, no removal.
  [[nodiscard]] bool contains(const Key& key) const {
    const node* n = find(key, hash_of(key));
    return n != nullptr && !is_expired(n, clock_now_if_ttl(n));
  }

  /// The value of `key` if live. No statistics, no policy update, no removal.
  [[nodiscard]] std::optional<Value> peek(const Key& key) const {
    const node* n = find(key, hash_of(key));
    if (n == nullptr || is_expired(n, clock_now_if_ttl(n))) return std::nullopt;
    return n->value;
  }

  /// Removes every live entry for which pred(key, value) is true (not counted as
  /// evictions) and every expired entry (counted as expirations). Returns how many
  /// live entries pred removed. pred must not touch the cache.
  template <class Pred>
  std::size_t erase_if(Pred pred)
  requires std::predicate<Pred&, const Key&, const Value&>
  {
    std::size_t removed = 0;
    const time_point now = heap_.empty() ? time_point{} : clock_.now();
    for (std::size_t b = 0; b < bucket_count_; ++b) {
      node* n = buckets_[b];
      while (n != nullptr) {
        node* next = n->next_in_bucket;
        if (is_expired(n, now)) {
          expire(n);
        } else if (pred(std::as_const(n->key), std::as_const(n->value))) {
          policy_.on_erase(*n);
          destroy(n);
          ++removed;
        }
        n = next;
      }
    }
    return removed;
  }

  /// Removes every expired entry now; returns how many.
  std::size_t cleanup() {
    if (heap_.empty()) return 0;
    return cleanup_until(clock_.now(), std::numeric_limits<std::size_t>::max());
  }

  /// Total cost of the stored entries (== size() with unit_weigher).
  [[nodiscard]] std::size_t weight() const noexcept { return total_weight_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return config_.capacity; }
  [[nodiscard]] const cache_config& config() const noexcept { return config_; }
  /// The eviction policy's state (read-only; for inspection and tests).
  [[nodiscard]] const Policy& policy() const noexcept { return policy_; }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  friend detail::tier_put<cache, Key, Value>;

  struct node : Policy::hook {
    node(std::uint64_t h, std::size_t w, time_point written_at, time_point expires_at,
         const Key& k, Value&& v)
        : hash(h),
          weight(w),
          written(written_at),
          expires(expires_at),
          key(k),
          value(std::move(v)) {}
    node* next_in_bucket = nullptr;
    std::uint64_t hash;
    std::size_t weight;
    std::size_t heap_index = detail::expiry_heap<node>::npos;
    time_point written;
    time_point expires;
    Key key;
    Value value;
  };

  static constexpr bool nothrow_move_constructible =
      std::is_nothrow_move_constructible_v<Policy> &&
      std::is_nothrow_copy_constructible_v<Clock> &&
      std::is_nothrow_copy_constructible_v<Weigher> &&
      std::is_nothrow_copy_constructible_v<Hash>;
  static constexpr bool nothrow_move_assignable =
      std::is_nothrow_move_assignable_v<Policy> &&
      std::is_nothrow_copy_assignable_v<Clock> &&
      std::is_nothrow_copy_assignable_v<Weigher> && std::is_nothrow_copy_assignable_v<Hash>;
  static constexpr time_point never = time_point::max();
  static constexpr std::size_t min_buckets = 16;

  // No random_device read for a cache without jitter (the generator is then unused).
  static std::uint64_t jitter_seed(const cache_config& c) {
    return c.ttl_jitter > 0.0 ? resolve_seed(c.jitter_seed) : 0;
  }

  static cache_config validated(const cache_config& c) {
    require_in_range("cache", "capacity", c.capacity, std::size_t{1}, max_capacity);
    detail::require_default_ttl("cache", c.default_ttl);
    require_in_range("cache", "ttl_jitter", c.ttl_jitter, 0.0, 0.5);
    require_in_range("cache", "cleanup_per_op", c.cleanup_per_op, std::size_t{0},
                     std::size_t{1024});
    return c;
  }

  [[nodiscard]] std::uint64_t hash_of(const Key& key) const {
    // std::hash of an integer is often the identity: mix before using bits.
    return hash_mix(static_cast<std::uint64_t>(hash_(key)), 0);
  }

  [[nodiscard]] node* find(const Key& key, std::uint64_t hash) const {
    if (bucket_count_ == 0) return nullptr;
    for (node* n = buckets_[bucket_of(hash)]; n != nullptr; n = n->next_in_bucket) {
      if (n->hash == hash && n->key == key) return n;
    }
    return nullptr;
  }

  [[nodiscard]] std::size_t bucket_of(std::uint64_t hash) const noexcept {
    return static_cast<std::size_t>(hash) & (bucket_count_ - 1);
  }

  [[nodiscard]] time_point clock_now_if_ttl(const node* n) const {
    return n->expires == never ? time_point{} : clock_.now();
  }
  [[nodiscard]] static bool is_expired(const node* n, time_point now) noexcept {
    return n->expires != never && n->expires <= now;
  }

  /// get/get_entry: cleanup, find, lazy expiry, statistics and the policy's access.
  node* lookup(const Key& key) {
    const std::uint64_t hash = hash_of(key);
    cleanup_some();
    node* n = find(key, hash);
    if (n != nullptr && is_expired(n, clock_now_if_ttl(n))) {
      expire(n);
      n = nullptr;
    }
    if (n == nullptr) {
      ++stats_.misses;
      return nullptr;
    }
    ++stats_.hits;
    policy_.on_access(*n, hash);
    return n;
  }

  bool store_entry(const Key& key, Value&& value,
                   std::optional<std::chrono::nanoseconds> ttl) {
    const std::uint64_t hash = hash_of(key);
    const time_point now = clock_.now();
    if (!heap_.empty()) cleanup_until(now, config_.cleanup_per_op);
    const std::size_t weight =
        std::max<std::size_t>(static_cast<std::size_t>(weigher_(key, value)), 1);
    node* n = find(key, hash);
    if (weight > config_.capacity) {
      if (n != nullptr) {
        policy_.on_erase(*n);
        destroy(n);
      }
      ++stats_.rejected_puts;
      return false;
    }
    const time_point expires = ttl ? expiry(now, *ttl) : never;
    if (n != nullptr) {
      n->value = std::move(value);
      total_weight_ = total_weight_ - n->weight + weight;
      n->weight = weight;
      n->written = now;
      set_expiry(n, expires);
      policy_.on_update(*n, hash, weight);
    } else {
      if (size_ + 1 > bucket_count_) grow();  // may throw: nothing changed yet
      plan_policy(size_ + 1);                 // may throw: nothing changed yet
      n = new node(hash, weight, now, expires, key, std::move(value));
      // Evict before inserting (so the policy never picks the entry being stored),
      // unless the policy asks to see the new entry first (insert_before_evict).
      if constexpr (!inserts_before_evicting_v<Policy>) make_room(now, weight);
      node*& bucket = buckets_[bucket_of(hash)];
      n->next_in_bucket = bucket;
      bucket = n;
      ++size_;
      total_weight_ += weight;
      if (expires != never) heap_.push(n);
      policy_.on_insert(*n, hash, weight);
    }
    ++stats_.puts;
    make_room(now, 0);
    return true;
  }

  /// Evicts until the total cost plus `incoming` fits, reclaiming expired entries
  /// first.
  void make_room(time_point now, std::size_t incoming) noexcept {
    while (total_weight_ + incoming > config_.capacity && size_ != 0) {
      if (!heap_.empty() && heap_.top()->expires <= now) {
        expire(heap_.top());
        continue;
      }
      auto* victim = policy_.evict();
      if (victim == nullptr) break;  // a broken policy; never loop forever
      destroy(static_cast<node*>(victim));
      ++stats_.evictions;
    }
  }

  [[nodiscard]] time_point expiry(time_point now, std::chrono::nanoseconds ttl) noexcept {
    if (config_.ttl_jitter > 0.0) {
      const double u = static_cast<double>(rng_() >> 11U) * 0x1.0p-53;
      const auto cut = static_cast<std::chrono::nanoseconds::rep>(
          static_cast<double>(ttl.count()) * config_.ttl_jitter * u);
      ttl -= std::chrono::nanoseconds{cut};  // >= ttl / 2 > 0
    }
    const auto d = std::chrono::ceil<typename Clock::duration>(ttl);
    if (d >= never - now) return never;
    return now + d;
  }

  void set_expiry(node* n, time_point expires) noexcept {
    const bool was = n->expires != never;
    n->expires = expires;
    if (expires == never) {
      if (was) heap_.erase(n);
    } else if (was) {
      heap_.update(n);
    } else {
      heap_.push(n);
    }
  }

  void cleanup_some() {
    if (heap_.empty() || config_.cleanup_per_op == 0) return;
    cleanup_until(clock_.now(), config_.cleanup_per_op);
  }

  std::size_t cleanup_until(time_point now, std::size_t limit) noexcept {
    std::size_t removed = 0;
    while (removed < limit && !heap_.empty() && heap_.top()->expires <= now) {
      expire(heap_.top());
      ++removed;
    }
    return removed;
  }

  void expire(node* n) noexcept {
    policy_.on_erase(*n);
    destroy(n);
    ++stats_.expirations;
  }

  /// Unlinks n from the index and the heap and frees it (the policy already forgot it).
  void destroy(node* n) noexcept {
    node** link = &buckets_[bucket_of(n->hash)];
    while (*link != n) link = &(*link)->next_in_bucket;
    *link = n->next_in_bucket;
    if (n->heap_index != detail::expiry_heap<node>::npos) heap_.erase(n);
    total_weight_ -= n->weight;
    --size_;
    delete n;
  }

  /// Doubles the index (and the heap's reservation) before it would exceed one entry
  /// per bucket.
  void grow() {
    const std::size_t count = std::max(min_buckets, bucket_count_ * 2);
    auto fresh = std::make_unique<node*[]>(count);  // value-initialized: nullptr
    heap_.reserve(count);
    for (std::size_t b = 0; b < bucket_count_; ++b) {
      node* n = buckets_[b];
      while (n != nullptr) {
        node* next = n->next_in_bucket;
        node*& head = fresh[static_cast<std::size_t>(n->hash) & (count - 1)];
        n->next_in_bucket = head;
        head = n;
        n = next;
      }
    }
    buckets_ = std::move(fresh);
    bucket_count_ = count;
  }

  /// Tells a reserving policy how many entries to plan for: 64, then doubling each
  /// time the cache holds more than half of the plan, up to the capacity (an upper
  /// bound on the entry count, as every entry costs at least 1). A unit-weight cache
  /// therefore sizes the policy for its full capacity once it is about half full, as
  /// Caffeine does with its sketch; growing a sketch forgets its counts, so they do
  /// not stop in the middle of a warm cache.
  void plan_policy(std::size_t entries) {
    if constexpr (reserving_eviction_policy<Policy>) {
      if (entries * 2 <= policy_planned_ || policy_planned_ >= config_.capacity) return;
      const std::size_t next = std::min(
          config_.capacity, std::max({std::size_t{64}, policy_planned_ * 2, entries * 2}));
      policy_.reserve(next);
      policy_planned_ = next;
    }
  }

  void free_all_nodes() noexcept {
    for (std::size_t b = 0; b < bucket_count_; ++b) {
      node* n = buckets_[b];
      while (n != nullptr) {
        node* next = n->next_in_bucket;
        delete n;
        n = next;
      }
    }
  }

  void forget_after_move() noexcept {
    policy_planned_ = 0;
    buckets_.reset();
    bucket_count_ = 0;
    size_ = 0;
    total_weight_ = 0;
    heap_.clear();
    policy_.clear();
  }

  cache_config config_;
  Clock clock_;
  Weigher weigher_;
  Hash hash_;
  Policy policy_;
  std::unique_ptr<node*[]> buckets_;
  std::size_t bucket_count_ = 0;
  std::size_t size_ = 0;
  std::size_t total_weight_ = 0;
  std::size_t policy_planned_ = 0;
  detail::expiry_heap<node> heap_;
  cache_metrics stats_;
  detail::splitmix64 rng_;
};

static_assert(cache_tier<cache<std::uint64_t, std::uint64_t>>);
static_assert(cache_tier_with_entries<cache<std::uint64_t, std::uint64_t>>);

}  // namespace outgrow
