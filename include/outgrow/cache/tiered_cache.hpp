// outgrow/cache/tiered_cache.hpp — L1 → L2 → … → backing store, with a write policy.
//
// A read looks in each tier from the top; a hit in a lower tier is copied into the
// tiers above it (promotion, keeping the remaining TTL). A read that misses every tier
// loads from the store once per key however many callers wait (single-flight), and
// stores the value in every tier. A load failure reaches every waiter and is not
// cached; a "not found" can be (negative caching, its own TTL). Writes follow the
// WritePolicy (cache_aside, read_through, write_through, write_behind, refresh_ahead —
// see write_policy.hpp). Invalidation: TTL (the tiers'), erase / erase_if /
// invalidate, and an invalidation bus shared with other instances (invalidation.hpp).
// Optional probabilistic early expiration (XFetch, Vattani et al. 2015) spreads the
// reloads of popular keys before they expire.
//
//   struct users_db {                        // a backing_store
//     using key_type = std::string;
//     using mapped_type = user;
//     // load: nullopt = not found. Any of the three may throw = failure.
//     std::optional<user> load(const std::string& id);
//     void store(const std::string& id, const user& u);
//     void erase(const std::string& id);
//   };
//   outgrow::cache<std::string, user> l1({.capacity = 10'000});
//   outgrow::concurrent_cache<std::string, user> l2({.capacity = 1'000'000});
//   users_db db;
//   outgrow::tiered_cache<outgrow::tiers<decltype(l1), decltype(l2)>, users_db,
//                         outgrow::write_through>
//       users(db, std::tie(l1, l2), {.ttl = 5min, .negative_ttl = 30s});
//   std::optional<user> u = users.get("42");   // L1, L2, then db.load once
//   users.put("42", changed);                   // db.store, then L2 and L1
//   fmt::print("{}\n", users.stats());          // hits, misses, hit_rate, loads, ...
//
// Template shape: tiered_cache<tiers<L1, L2, ...>, Store, WritePolicy = read_through,
// Clock = steady_clock_source>. Key and Value come from the store (key_type,
// mapped_type) and every tier must agree (checked with a static_assert), so they are
// not repeated; tiers are a type list so that the variadic part can come first and
// WritePolicy and Clock keep their defaults.
//
// Ownership: the cache refers to the store and the tiers, which the caller owns and
// which must outlive it (tiers are often shared or non-movable: a Redis connection
// pool, a sharded concurrent_cache). The cache owns its write-behind buffer, its
// negative cache and its background state.
//
// Tier requirements: `cache_tier` (tier.hpp). With `cache_tier_with_entries`
// (get_entry) promotion keeps the remaining TTL and refresh-ahead / XFetch work on
// hits in that tier. erase_if needs every tier to offer
// `std::size_t erase_if(pred)` calling pred(const Key&, const Value&). Declare
// `static constexpr bool thread_safe = true;` in a tier that is safe from any thread
// (concurrent_cache, redis_tier) — otherwise the cache calls it under a per-tier mutex —
// and `static constexpr bool shared = true;` in one shared between instances (Redis):
// bus messages and gaps do not clear shared tiers by default. A tier shared between
// two tiered_caches must be thread-safe. tier_traits can be specialised instead.
//
// Store requirements: `backing_store` below; optional load_batch (used by get_all)
// and store_batch (used by write-behind flushes). The store is called from every
// thread that reads or writes, and from the executor: make it thread-safe.
//
// Background work (write-behind flushes and retries, refresh-ahead reloads) runs only
// after start(executor), on that executor (an io_context's or a thread_pool's). The
// executor's execution context must outlive the cache. Without start(): write-behind
// flushes when you call poll() / run_due(now) / flush(), and refresh-ahead reloads
// inline in the reader that crosses the refresh point. shutdown() (also run by the
// destructor) stops background work — waiting for handlers running at that moment —
// and drains the write-behind buffer, however long the store takes. shutdown(deadline)
// returns at the deadline even if a store call hangs, handing back the writes it could
// not store (write_behind_shutdown_report); calls still running are left to finish,
// and the destructor waits for them (they use the cache).
//
// Consistency: a value loaded or promoted while a write to the same key is in progress
// is returned to its callers but not cached (a per-stripe write counter detects it),
// so a slow load never overwrites a newer put. Writes to one key are serialized;
// under write_through the store call happens under that key's stripe lock.
//
// Stats: stats() is overall (hits = requests answered without the store, including
// negative and write-behind-buffer hits; misses = requests that went to the store or,
// for cache_aside get(), found nothing; evictions/expirations summed over tiers),
// tier_stats<I>() is each tier's own. Tiers count their own hits and misses; a
// single-flight leader re-checks the tiers once before loading, which the tiers count.
//
// Thread-safety: every member is safe from any thread except start() and connect(),
// which are called once before the cache is shared, and tier<I>(), which returns the
// unguarded tier. Handlers (dead-letter hook, bus handlers) must not call shutdown().
// Complexity: get O(tiers) tier lookups on a hit; a miss adds one store load per key
// for all concurrent callers. put O(tiers) plus the policy's store call.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <outgrow/cache/invalidation.hpp>
#include <outgrow/cache/single_flight.hpp>
#include <outgrow/cache/tier.hpp>
#include <outgrow/cache/write_policy.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/deadline.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/stats.hpp>

namespace outgrow {

/// The source of truth behind the tiers. Smallest conforming store:
///
///   struct kv_store {
///     using key_type = int;
///     using mapped_type = std::string;
///     std::optional<std::string> load(const int& k);        // nullopt = not found
///     void store(const int& k, const std::string& v);        // throws on failure
///     void erase(const int& k);                              // throws on failure
///   };
///
/// Optional: `std::vector<std::optional<mapped_type>> load_batch(std::span<const
/// key_type>)` (one result per key, in order) and `void store_batch(std::span<const
/// std::pair<key_type, mapped_type>>)` (all or nothing; throws on failure). A store may
/// declare `using hasher = ...;` for the cache's internal key maps (default std::hash).
template <class S>
concept backing_store = requires(S& s, const typename S::key_type& k,
                                 const typename S::mapped_type& v) {
  typename S::key_type;
  typename S::mapped_type;
  { s.load(k) } -> std::same_as<std::optional<typename S::mapped_type>>;
  s.store(k, v);
  s.erase(k);
};

template <class S>
concept backing_store_with_load_batch = backing_store<S> &&
    requires(S& s, std::span<const typename S::key_type> keys) {
  {
    s.load_batch(keys)
    } -> std::same_as<std::vector<std::optional<typename S::mapped_type>>>;
};

template <class S>
concept backing_store_with_store_batch = backing_store<S> && requires(
    S& s, std::span<const std::pair<typename S::key_type, typename S::mapped_type>> items) {
  s.store_batch(items);
};

/// The tiers of a tiered_cache, top (L1) first.
template <class... Tiers>
struct tiers {};

/// What the cache needs to know about a tier beyond the concept; reads
/// `T::thread_safe` and `T::shared` when present (both default to false).
template <class T>
struct tier_traits {
  static constexpr bool thread_safe = [] {
    if constexpr (requires { T::thread_safe; }) {
      return static_cast<bool>(T::thread_safe);
    } else {
      return false;
    }
  }();
  static constexpr bool shared = [] {
    if constexpr (requires { T::shared; }) {
      return static_cast<bool>(T::shared);
    } else {
      return false;
    }
  }();
};

/// tiered_cache settings. Defaults: each tier's own TTL, no negative caching, no XFetch.
template <class Key, class Value, class TimePoint = std::chrono::steady_clock::time_point>
struct tiered_cache_config {
  /// TTL of entries the cache writes into its tiers (loads, puts, promotions are capped
  /// by it); nullopt = each tier's default TTL. Must be > 0.
  std::optional<std::chrono::nanoseconds> ttl{};
  /// Cache "not found" results this long; nullopt = off. Must be > 0.
  std::optional<std::chrono::nanoseconds> negative_ttl{};
  /// At most this many negative entries (further ones are not cached). >= 1.
  std::size_t negative_capacity = 10'000;
  /// XFetch β: 0 = off; 1 is the paper's recommendation, > 1 reloads earlier. [0, 100].
  double xfetch_beta = 0.0;
  /// XFetch δ (time to recompute); nullopt = the measured average load time. > 0.
  std::optional<std::chrono::nanoseconds> xfetch_delta{};
  /// Seed of XFetch's random draws (fixed seed = reproducible decisions).
  std::uint64_t xfetch_seed = 0x5EED'0F'CAC4E;
  /// Tiers a bus message (or gap) from another instance clears: the top n; nullopt =
  /// every tier whose tier_traits::shared is false. [1, number of tiers].
  std::optional<std::size_t> bus_invalidates_tiers{};
  /// write_behind: receives writes the store kept rejecting (empty = keep them for
  /// take_dead_letters()).
  dead_letter_hook<Key, Value, TimePoint> dead_letter{};
};

/// Overall counters of a tiered_cache (cache_stats, plus what only the whole cache
/// sees). Per-tier counters: tier_stats<I>().
struct tiered_cache_stats : cache_stats {
  static constexpr std::string_view metrics_name = "tiered_cache_stats";
  std::uint64_t negative_hits = 0;        ///< answered "not found" from the negative cache
  std::uint64_t buffer_hits = 0;          ///< answered from the write-behind buffer
  std::uint64_t promotions = 0;           ///< lower-tier hits copied upward
  std::uint64_t shared_loads = 0;         ///< misses that waited for another's load
  std::uint64_t loads_not_cached = 0;     ///< loads raced by a write: returned, not cached
  std::uint64_t early_recomputes = 0;     ///< XFetch decided to reload before expiry
  std::uint64_t refreshes = 0;            ///< refresh-ahead reloads started
  std::uint64_t refresh_failures = 0;     ///< of which failed (old value kept)
  std::uint64_t refreshes_discarded = 0;  ///< results dropped: key written or expired since
  write_behind_stats write_behind{};

  template <class F>
  void for_each_metric(F&& f) const {
    cache_stats::for_each_metric(f);
    f("negative_hits", negative_hits);
    f("buffer_hits", buffer_hits);
    f("promotions", promotions);
    f("shared_loads", shared_loads);
    f("loads_not_cached", loads_not_cached);
    f("early_recomputes", early_recomputes);
    f("refreshes", refreshes);
    f("refresh_failures", refresh_failures);
    f("refreshes_discarded", refreshes_discarded);
    f("write_behind", write_behind);
  }
};

namespace detail {

template <class Store, class = void>
struct store_hasher {
  using type = std::hash<typename Store::key_type>;
};
template <class Store>
struct store_hasher<Store, std::void_t<typename Store::hasher>> {
  using type = typename Store::hasher;
};

template <class Key, class Value>
struct key_value_predicate {
  bool operator()(const Key&, const Value&) const { return false; }
};

template <class T>
concept tier_with_erase_if =
    requires(T& t, key_value_predicate<typename T::key_type, typename T::mapped_type> p) {
  { t.erase_if(p) } -> std::convertible_to<std::size_t>;
};

/// A found entry: its value, the tier it came from, and its times when known.
template <class Value, class TimePoint>
struct tier_hit {
  Value value;
  std::size_t tier = 0;
  bool timed = false;
  TimePoint written{};
  TimePoint expires = TimePoint::max();
};

/// A tier reference, called under a mutex unless tier_traits says it is thread-safe.
template <class T, class TimePoint>
class guarded_tier {
 public:
  explicit guarded_tier(T& t) : tier_(t) {}
  guarded_tier(const guarded_tier&) = delete;
  guarded_tier& operator=(const guarded_tier&) = delete;

  template <class F>
  decltype(auto) with(F&& f) const {
    if constexpr (tier_traits<T>::thread_safe) {
      return f(tier_);
    } else {
      std::lock_guard lock(mutex_);
      return f(tier_);
    }
  }

  std::optional<tier_hit<typename T::mapped_type, TimePoint>> lookup(
      const typename T::key_type& key) const {
    using hit = tier_hit<typename T::mapped_type, TimePoint>;
    if constexpr (cache_tier_with_entries<T>) {
      using entry_times = decltype(tier_.get_entry(key)->expires);
      if constexpr (std::is_convertible_v<entry_times, TimePoint>) {
        auto e = with([&](T& t) { return t.get_entry(key); });
        if (!e) return std::nullopt;
        return hit{std::move(e->value), 0, true, TimePoint(e->written),
                   TimePoint(e->expires)};
      }
    }
    auto v = with([&](T& t) { return t.get(key); });
    if (!v) return std::nullopt;
    return hit{std::move(*v), 0, false, TimePoint{}, TimePoint::max()};
  }

  void put(const typename T::key_type& key, const typename T::mapped_type& value,
           std::optional<std::chrono::nanoseconds> ttl) const {
    with([&](T& t) { return ttl ? t.put(key, value, *ttl) : t.put(key, value); });
  }
  void erase(const typename T::key_type& key) const {
    with([&](T& t) { return t.erase(key); });
  }
  void clear() const {
    with([&](T& t) { t.clear(); });
  }
  cache_stats stats() const {
    return with([&](T& t) { return static_cast<cache_stats>(std::as_const(t).stats()); });
  }
  T& get() const noexcept { return tier_; }

 private:
  T& tier_;
  mutable std::mutex mutex_;
};

/// Shared with background handlers: lets shutdown() stop them and wait for running ones.
struct background_control {
  std::mutex mutex;
  std::condition_variable idle;
  bool stopped = false;
  std::size_t running = 0;

  bool enter() {
    std::lock_guard lock(mutex);
    if (stopped) return false;
    ++running;
    return true;
  }
  void leave() {
    std::lock_guard lock(mutex);
    if (--running == 0) idle.notify_all();
  }
  void stop_and_wait() {
    std::unique_lock lock(mutex);
    stopped = true;
    idle.wait(lock, [&] { return running == 0; });
  }
  /// As stop_and_wait, giving up at `deadline`; true if none is running.
  bool stop_and_wait_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex);
    stopped = true;
    return idle.wait_until(lock, deadline, [&] { return running == 0; });
  }
};

inline std::uint64_t next_cache_id() noexcept {
  static std::atomic<std::uint64_t> ids{0};
  return ids.fetch_add(1, std::memory_order_relaxed) + 1;
}

/// The n-th draw of a seeded random stream (splitmix64 of seed + n * golden ratio):
/// thread-safe through an atomic counter, reproducible for a fixed seed.
constexpr std::uint64_t seeded_draw(std::uint64_t seed, std::uint64_t n) noexcept {
  std::uint64_t x = seed + n * 0x9E3779B97F4A7C15ULL + 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace detail

/// XFetch: reload early when now - δ·β·ln(u) >= expiry, u uniform in (0, 1].
template <class TimePoint>
[[nodiscard]] bool xfetch_should_recompute(TimePoint now, TimePoint expiry,
                                           std::chrono::nanoseconds delta, double beta,
                                           double u) noexcept {
  if (beta <= 0.0 || delta <= std::chrono::nanoseconds::zero() || u <= 0.0) return false;
  const double gap = static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(expiry - now).count());
  return -static_cast<double>(delta.count()) * beta * std::log(u) >= gap;
}

template <class TierList, backing_store Store, write_policy WritePolicy = read_through,
          clock_source Clock = steady_clock_source>
class tiered_cache;

template <cache_tier... Ts, backing_store Store, write_policy WritePolicy,
          clock_source Clock>
class tiered_cache<tiers<Ts...>, Store, WritePolicy, Clock> {
 public:
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;
  using store_type = Store;
  using policy_type = WritePolicy;
  using clock_type = Clock;
  using time_point = typename Clock::time_point;
  using hasher = typename detail::store_hasher<Store>::type;
  using config_type = tiered_cache_config<key_type, mapped_type, time_point>;
  using dead_letter = dead_letter_batch<key_type, mapped_type, time_point>;
  static constexpr std::size_t tier_count = sizeof...(Ts);

  static_assert(tier_count >= 1, "tiered_cache: give at least one tier");
  static_assert((std::is_same_v<typename Ts::key_type, key_type> && ...),
                "tiered_cache: every tier's key_type must be the store's key_type");
  static_assert((std::is_same_v<typename Ts::mapped_type, mapped_type> && ...),
                "tiered_cache: every tier's mapped_type must be the store's mapped_type");
  static_assert(std::is_copy_constructible_v<mapped_type>,
                "tiered_cache: values are copied into each tier and to each waiter");

 private:
  using Key = key_type;
  using Value = mapped_type;
  static constexpr write_policy_kind kind = WritePolicy::kind;
  static constexpr bool is_write_behind = kind == write_policy_kind::write_behind;
  static constexpr bool is_refresh_ahead = kind == write_policy_kind::refresh_ahead;
  using buffer_type = detail::write_behind_buffer<Key, Value, Clock, hasher>;
  using buffered = typename buffer_type::write;

 public:
  using shutdown_report = write_behind_shutdown_report<Key, Value, time_point>;

 private:
  using hit_type = detail::tier_hit<Value, time_point>;

 public:
  /// Refers to `store` and to the tiers in `tier_refs` (std::tie(l1, l2, ...)), which
  /// must outlive the cache. Throws config_error for an invalid config or policy.
  tiered_cache(Store& store, std::tuple<Ts&...> tier_refs, config_type config = {},
               WritePolicy policy = {}, Clock clock = {})
      : tiered_cache(std::index_sequence_for<Ts...>{}, store, tier_refs, std::move(config),
                     std::move(policy), std::move(clock)) {}

  tiered_cache(const tiered_cache&) = delete;
  tiered_cache& operator=(const tiered_cache&) = delete;

  /// Drains (see shutdown()); dead letters it produces go to the hook. After a
  /// shutdown(deadline) that left store calls or background handlers running, waits
  /// for them (without a deadline: they would otherwise return into freed memory).
  ~tiered_cache() {
    try {
      shutdown();
    } catch (...) {  // a drain never throws store errors (they become dead letters)
    }
    control_->stop_and_wait();
    if (drain_thread_.joinable()) drain_thread_.join();
    if constexpr (is_write_behind) buffer_->wait_quiescent();
  }

  // ---- reads ---------------------------------------------------------------------

  /// The value for `key`: from a tier, else (every policy but cache_aside) from the
  /// store, loaded once for all concurrent callers. nullopt = not found. Rethrows the
  /// store's exception if the load failed (to every caller waiting for it).
  std::optional<Value> get(const Key& key) {
    if constexpr (kind == write_policy_kind::cache_aside) {
      return read(key, static_cast<const store_loader*>(nullptr));
    } else {
      const store_loader load{this};
      return read(key, &load);
    }
  }

  /// As get(), but loads from the store on a miss under every policy (cache_aside too).
  std::optional<Value> get_or_load(const Key& key) {
    const store_loader load{this};
    return read(key, &load);
  }

  /// As get(), loading a miss with `loader(key) -> std::optional<Value>` instead of
  /// the store (once per key for all concurrent callers, whichever loader they pass).
  template <class Loader>
  requires std::is_invocable_r_v<std::optional<Value>, Loader&, const Key&>
      std::optional<Value> get_or_load(const Key& key, Loader&& loader) {
    const auto load = [&](const Key& k) -> std::optional<Value> { return loader(k); };
    return read(key, &load);
  }

  /// get() for many keys: misses are loaded together with store.load_batch when the
  /// store has it (else one load each), single-flight per key. Throws the first load
  /// failure after every key has been resolved.
  std::vector<std::optional<Value>> get_all(std::span<const Key> keys) {
    std::vector<std::optional<Value>> out(keys.size());
    std::vector<std::size_t> missing;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto r = cached(keys[i], true);
      if (r.found) {
        out[i] = std::move(r.value);
      } else {
        missing.push_back(i);
      }
    }
    if (missing.empty() || kind == write_policy_kind::cache_aside) {
      misses_.add(missing.size());
      return out;
    }
    misses_.add(missing.size());
    using ticket = typename single_flight<Key, std::optional<Value>, hasher>::ticket;
    std::vector<ticket> tickets;
    tickets.reserve(missing.size());
    std::vector<std::size_t> led;  // positions in `tickets`
    for (std::size_t j = 0; j < missing.size(); ++j) {
      tickets.push_back(flights_.join(keys[missing[j]]));
      if (tickets.back().leader()) {
        led.push_back(j);
      } else {
        shared_loads_.add();
      }
    }
    // Lead first (never wait while leading), re-checking what a previous leader stored.
    std::vector<std::size_t> to_load;
    std::vector<std::uint64_t> seen;
    for (std::size_t j : led) {
      const Key& key = keys[missing[j]];
      const std::uint64_t g = stripe_for(key).generation.load(std::memory_order_acquire);
      auto r = cached(key, false);
      if (r.found) {
        tickets[j].complete(std::move(r.value));
      } else {
        to_load.push_back(j);
        seen.push_back(g);
      }
    }
    if (!to_load.empty()) load_led(keys, missing, tickets, to_load, seen);
    std::exception_ptr first_error;
    for (std::size_t j = 0; j < missing.size(); ++j) {
      try {
        out[missing[j]] = tickets[j].get();
      } catch (...) {
        if (!first_error) first_error = std::current_exception();
      }
    }
    if (first_error) std::rethrow_exception(first_error);
    return out;
  }

  // ---- writes --------------------------------------------------------------------

  /// Writes `value` as the policy says (see write_policy.hpp). Returns true once
  /// acknowledged; false if rejected (write-behind buffer full, or shut down).
  /// write_through / read_through / refresh_ahead: the store's exception propagates
  /// and the cache is unchanged.
  bool put(const Key& key, Value value) {
    return write(key, std::move(value), config_.ttl);
  }

  /// put() with this entry's TTL (> 0, else config_error).
  bool put(const Key& key, Value value, std::chrono::nanoseconds ttl) {
    require(ttl > std::chrono::nanoseconds::zero(), "tiered_cache", "put(ttl)",
            "in (0s, inf)", ttl);
    return write(key, std::move(value), ttl);
  }

  /// Removes `key` from the tiers and (except under cache_aside) from the store —
  /// through the buffer under write_behind. Returns false only if rejected.
  bool erase(const Key& key) { return write(key, std::nullopt, std::nullopt); }

  /// Removes from every tier the entries for which pred(key, value) holds and
  /// publishes each removed key (once) on the bus; returns how many tier entries
  /// were removed. The
  /// store and the write-behind buffer are not touched (it is an invalidation). An
  /// entry loaded while erase_if runs may survive it.
  template <class Pred>
  requires(detail::tier_with_erase_if<Ts>&&...) &&
      std::is_invocable_r_v<bool, Pred&, const Key&, const Value&> std::size_t
      erase_if(Pred pred) {
    std::vector<Key> removed;
    std::size_t count = 0;
    auto recording = [&](const Key& k, const Value& v) {
      if (!pred(k, v)) return false;
      removed.push_back(k);
      return true;
    };
    for_each_tier([&](auto, auto& g) {
      count +=
          g.with([&](auto& t) { return static_cast<std::size_t>(t.erase_if(recording)); });
    });
    {
      std::unordered_set<Key, hasher> seen_keys;
      std::erase_if(removed, [&](const Key& k) { return !seen_keys.insert(k).second; });
    }
    for (const Key& k : removed) {
      auto& s = stripe_for(k);
      s.generation.fetch_add(1, std::memory_order_acq_rel);
      forget(k);
    }
    if (auto* link = bus_.load(std::memory_order_acquire)) {
      for (const Key& k : removed) link->publish(k, id_);
    }
    return count;
  }

  /// Drops `key` from every tier (and the negative cache) and publishes it on the
  /// bus; the store and the write-behind buffer are untouched.
  void invalidate(const Key& key) {
    drop_local(key, all_tiers());
    if (auto* link = bus_.load(std::memory_order_acquire)) link->publish(key, id_);
  }

  /// Clears every tier and the negative cache; publishes a clear on the bus.
  void invalidate_all() {
    clear_local(all_tiers());
    if (auto* link = bus_.load(std::memory_order_acquire)) link->publish_clear(id_);
  }

  // ---- invalidation bus ----------------------------------------------------------

  /// Publishes this cache's invalidations on `bus` and applies other instances' (see
  /// config bus_invalidates_tiers). Call once, before sharing the cache; the bus must
  /// outlive the cache (or disconnect() first, with no writes in progress).
  template <invalidation_bus Bus>
  requires std::same_as<typename Bus::key_type, Key>
  void connect(Bus& bus) {
    auto link = std::make_unique<bus_link>();
    link->publish = [&bus](const Key& k, std::uint64_t origin) { bus.publish(k, origin); };
    link->publish_clear = [&bus](std::uint64_t origin) { bus.publish_clear(origin); };
    link->subscription =
        bus.subscribe([this](const invalidation_event<Key>& e) { on_bus_event(e); });
    std::lock_guard lock(bus_mutex_);
    bus_.store(link.get(), std::memory_order_release);
    bus_links_.push_back(std::move(link));
  }

  /// Stops publishing and receiving invalidations.
  void disconnect() {
    std::lock_guard lock(bus_mutex_);
    bus_.store(nullptr, std::memory_order_release);
    for (auto& l : bus_links_) l->subscription.reset();
  }

  /// This instance's id: the `origin` of what it publishes.
  [[nodiscard]] std::uint64_t id() const noexcept { return id_; }

  // ---- background work -----------------------------------------------------------

  /// Runs background work on `executor` from now on: write-behind flushes (a
  /// steady_timer for age and retry deadlines, posts for full batches) and
  /// refresh-ahead reloads. Call once, before sharing the cache.
  void start(boost::asio::any_io_executor executor) {
    require(!executor_.has_value(), "tiered_cache", "start(executor)", "called once",
            "a second call");
    executor_.emplace(std::move(executor));
    if constexpr (is_write_behind) {
      timer_.emplace(*executor_);
      schedule_flush();
    }
  }

  /// Write-behind: does at clock.now() what the timer would (flushes due by size or
  /// age, due retries). Returns the number of writes stored. Other policies: 0.
  std::size_t poll() { return run_due(clock_.now()); }

  /// poll() at a given time.
  std::size_t run_due(time_point now) {
    if constexpr (is_write_behind) {
      return buffer_->run_due(now, writer{this});
    } else {
      (void)now;
      return 0;
    }
  }

  /// Write-behind: returns once every write acknowledged before the call is in the
  /// store or dead-lettered. Other policies: nothing to do.
  void flush() {
    if constexpr (is_write_behind) buffer_->flush(writer{this});
  }

  /// Stops accepting writes, stops background work (waiting for handlers running now),
  /// drains the write-behind buffer (failures go to the dead-letter hook) and leaves
  /// the bus. Reads keep working without background refreshes. Idempotent.
  void shutdown() {
    std::lock_guard lock(shutdown_mutex_);
    if (shut_down_) return;
    closed_.store(true, std::memory_order_release);
    control_->stop_and_wait();
    {
      // Destroying the timer cancels its wait; the queued handler only touches control_.
      std::lock_guard timer_lock(timer_mutex_);
      timer_.reset();
      timer_armed_.store(false, std::memory_order_release);
    }
    if constexpr (is_write_behind) {
      buffer_->close();
      buffer_->flush(writer{this});
    }
    disconnect();
    shut_down_ = true;
  }

  /// As shutdown(), but returns at `deadline` (steady_clock, a real wait) even if a
  /// store call or a background handler hangs: the write-behind drain runs on a helper
  /// thread, and what it has not stored by the deadline is reported (see
  /// write_behind_shutdown_report: nothing acknowledged is lost silently). Store calls
  /// still running are left to finish; the destructor waits for them. Other policies:
  /// as shutdown(), except that background handlers are waited for only until the
  /// deadline. A second call (or one after shutdown()) reports drained, empty.
  shutdown_report shutdown(std::chrono::steady_clock::time_point deadline) {
    std::lock_guard lock(shutdown_mutex_);
    shutdown_report report;
    if (shut_down_) return report;
    closed_.store(true, std::memory_order_release);
    const bool handlers_done = control_->stop_and_wait_until(deadline);
    {
      std::lock_guard timer_lock(timer_mutex_);
      timer_.reset();
      timer_armed_.store(false, std::memory_order_release);
    }
    if constexpr (is_write_behind) {
      buffer_->close();
      struct drain_state {
        std::mutex mutex;
        std::condition_variable cv;
        bool done = false;
      };
      auto state = std::make_shared<drain_state>();
      drain_thread_ = std::thread([this, state] {
        try {
          buffer_->flush(writer{this});
        } catch (...) {  // store failures become dead letters; nothing else throws
        }
        std::lock_guard state_lock(state->mutex);
        state->done = true;
        state->cv.notify_all();
      });
      bool drained = false;
      {
        std::unique_lock state_lock(state->mutex);
        drained = state->cv.wait_until(state_lock, deadline, [&] { return state->done; });
      }
      if (drained) {
        drain_thread_.join();
      } else {
        buffer_->abandon(report);
        report.drained = false;
      }
    }
    (void)handlers_done;  // a handler still running is waited for by the destructor
    disconnect();
    shut_down_ = true;
    return report;
  }
  /// shutdown(now + grace), saturating (any duration type, so hours::max() is not
  /// converted to nanoseconds first, which would overflow).
  template <class Rep, class Period>
  shutdown_report shutdown(std::chrono::duration<Rep, Period> grace) {
    return shutdown(saturating_add(std::chrono::steady_clock::now(), grace));
  }

  /// Write-behind dead letters kept because no hook was configured (or it threw).
  [[nodiscard]] std::vector<dead_letter> take_dead_letters() {
    if constexpr (is_write_behind) {
      return buffer_->take_dead_letters();
    } else {
      return {};
    }
  }

  // ---- observation ---------------------------------------------------------------

  [[nodiscard]] tiered_cache_stats stats() const {
    tiered_cache_stats s;
    s.hits = hits_.load();
    s.misses = misses_.load();
    s.load_successes = load_successes_.load();
    s.load_failures = load_failures_.load();
    s.total_load_time = std::chrono::nanoseconds{
        static_cast<std::chrono::nanoseconds::rep>(load_time_ns_.load())};
    s.puts = puts_.load();
    s.rejected_puts = rejected_.load();
    for_each_tier([&](auto, auto& g) {
      const cache_stats t = g.stats();
      s.evictions += t.evictions;
      s.expirations += t.expirations;
    });
    s.negative_hits = negative_hits_.load();
    s.buffer_hits = buffer_hits_.load();
    s.promotions = promotions_.load();
    s.shared_loads = shared_loads_.load();
    s.loads_not_cached = loads_not_cached_.load();
    s.early_recomputes = early_recomputes_.load();
    s.refreshes = refreshes_.load();
    s.refresh_failures = refresh_failures_.load();
    s.refreshes_discarded = refreshes_discarded_.load();
    if constexpr (is_write_behind) s.write_behind = buffer_->stats();
    return s;
  }

  /// Tier I's own counters (0 = L1).
  template <std::size_t I>
  requires(I < tier_count) [[nodiscard]] cache_stats tier_stats() const {
    return std::get<I>(tiers_).stats();
  }

  /// Tier I itself, unguarded: do not use it concurrently with the cache unless the
  /// tier is thread-safe.
  template <std::size_t I>
  requires(I < tier_count) [[nodiscard]] auto& tier() const noexcept {
    return std::get<I>(tiers_).get();
  }

  [[nodiscard]] const config_type& config() const noexcept { return config_; }
  [[nodiscard]] const WritePolicy& policy() const noexcept { return policy_; }
  [[nodiscard]] Store& store() const noexcept { return store_; }

 private:
  struct store_loader {
    tiered_cache* self;
    std::optional<Value> operator()(const Key& key) const { return self->store_.load(key); }
  };

  // Flushes a write-behind batch to the store (see detail::write_behind_buffer).
  struct writer {
    tiered_cache* self;
    std::exception_ptr operator()(const std::vector<const buffered*>& todo,
                                  std::vector<char>& ok) const {
      Store& store = self->store_;
      std::exception_ptr last;
      if constexpr (backing_store_with_store_batch<Store>) {
        std::vector<std::pair<Key, Value>> items;
        std::vector<std::size_t> at;
        for (std::size_t i = 0; i < todo.size(); ++i) {
          if (todo[i]->value) {
            items.emplace_back(todo[i]->key, *todo[i]->value);
            at.push_back(i);
          }
        }
        if (!items.empty()) {
          try {
            store.store_batch(std::span<const std::pair<Key, Value>>(items));
            for (std::size_t i : at) ok[i] = 1;
          } catch (...) {
            last = std::current_exception();
          }
        }
        for (std::size_t i = 0; i < todo.size(); ++i) {
          if (todo[i]->value) continue;
          try {
            store.erase(todo[i]->key);
            ok[i] = 1;
          } catch (...) {
            last = std::current_exception();
          }
        }
      } else {
        for (std::size_t i = 0; i < todo.size(); ++i) {
          try {
            if (todo[i]->value) {
              store.store(todo[i]->key, *todo[i]->value);
            } else {
              store.erase(todo[i]->key);
            }
            ok[i] = 1;
          } catch (...) {
            last = std::current_exception();
          }
        }
      }
      return last;
    }
  };

  struct alignas(64) stripe {
    std::mutex mutex;
    std::atomic<std::uint64_t> generation{0};
  };
  static constexpr std::size_t stripe_count = 64;

  struct bus_link {
    std::function<void(const Key&, std::uint64_t)> publish;
    std::function<void(std::uint64_t)> publish_clear;
    invalidation_subscription subscription;
  };

  struct lookup_result {
    bool found = false;
    std::optional<Value> value;
  };

  template <std::size_t... I>
  tiered_cache(std::index_sequence<I...>, Store& store, std::tuple<Ts&...> refs,
               config_type config, WritePolicy policy, Clock clock)
      : store_(store),
        tiers_(std::get<I>(refs)...),
        config_(std::move(config)),
        policy_(std::move(policy)),
        clock_(std::move(clock)) {
    validate();
    if constexpr (is_write_behind) {
      buffer_ = std::make_unique<buffer_type>(policy_.config, clock_, config_.dead_letter);
    }
    for (std::size_t i = 0; i < tier_count; ++i) {
      bus_reaches_[i] = config_.bus_invalidates_tiers ? i < *config_.bus_invalidates_tiers
                                                      : !tier_shared_[i];
    }
  }

  void validate() const {
    using namespace std::chrono_literals;
    if (config_.ttl) {
      require(*config_.ttl > 0ns, "tiered_cache", "ttl", "in (0s, inf)", *config_.ttl);
    }
    if (config_.negative_ttl) {
      require(*config_.negative_ttl > 0ns, "tiered_cache", "negative_ttl", "in (0s, inf)",
              *config_.negative_ttl);
    }
    require_at_least("tiered_cache", "negative_capacity", config_.negative_capacity,
                     std::size_t{1});
    require_in_range("tiered_cache", "xfetch_beta", config_.xfetch_beta, 0.0, 100.0);
    if (config_.xfetch_delta) {
      require(*config_.xfetch_delta > 0ns, "tiered_cache", "xfetch_delta", "in (0s, inf)",
              *config_.xfetch_delta);
    }
    if (config_.bus_invalidates_tiers) {
      require_in_range("tiered_cache", "bus_invalidates_tiers",
                       *config_.bus_invalidates_tiers, std::size_t{1}, tier_count);
    }
    if constexpr (is_write_behind) write_behind::validate(policy_.config);
    if constexpr (is_refresh_ahead) refresh_ahead::validate(policy_.config);
  }

  template <class F>
  void for_each_tier(F&& f) const {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f(std::integral_constant<std::size_t, I>{}, std::get<I>(tiers_)), ...);
    }
    (std::index_sequence_for<Ts...>{});
  }

  [[nodiscard]] static std::array<bool, tier_count> all_tiers() {
    std::array<bool, tier_count> all{};
    all.fill(true);
    return all;
  }

  stripe& stripe_for(const Key& key) const {
    return stripes_[hasher{}(key) % stripe_count];
  }

  template <std::size_t I = 0>
  std::optional<hit_type> find(const Key& key) const {
    if constexpr (I == tier_count) {
      return std::nullopt;
    } else {
      if (auto h = std::get<I>(tiers_).lookup(key)) {
        h->tier = I;
        return h;
      }
      return find<I + 1>(key);
    }
  }

  // Tiers, then write-behind buffer, then negative cache. Counts hits when `count`.
  lookup_result cached(const Key& key, bool count) {
    const std::uint64_t seen = stripe_for(key).generation.load(std::memory_order_acquire);
    if (auto h = find(key)) {
      if (count) {
        hits_.add();
        if (h->tier > 0) promote(key, *h, seen);
      }
      return {true, std::move(h->value)};
    }
    if constexpr (is_write_behind) {
      if (auto b = buffer_->lookup(key)) {
        if (count) {
          hits_.add();
          buffer_hits_.add();
        }
        return {true, std::move(*b)};
      }
    }
    if (negative_hit(key)) {
      if (count) {
        hits_.add();
        negative_hits_.add();
      }
      return {true, std::nullopt};
    }
    return {};
  }

  template <class Load>
  std::optional<Value> read(const Key& key, const Load* load) {
    stripe& s = stripe_for(key);
    const std::uint64_t seen = s.generation.load(std::memory_order_acquire);
    if (auto h = find(key)) {
      const time_point now = clock_.now();
      if (h->tier > 0) promote(key, *h, seen);
      if (h->timed && h->expires != time_point::max()) {
        if constexpr (is_refresh_ahead) {
          if (refresh_due(*h, now)) {
            start_refresh(key);
          } else if (xfetch_early(*h, now)) {
            early_recomputes_.add();
            start_refresh(key);
          }
        } else {
          if (load != nullptr && xfetch_early(*h, now)) {
            early_recomputes_.add();
            misses_.add();
            return load_once(key, *load, false);
          }
        }
      }
      hits_.add();
      return std::move(h->value);
    }
    if constexpr (is_write_behind) {
      if (auto b = buffer_->lookup(key)) {
        hits_.add();
        buffer_hits_.add();
        return std::move(*b);
      }
    }
    if (negative_hit(key)) {
      hits_.add();
      negative_hits_.add();
      return std::nullopt;
    }
    misses_.add();
    if (load == nullptr) return std::nullopt;
    return load_once(key, *load, true);
  }

  // Single-flight load; `recheck` makes the leader look in the cache first (a caller
  // that missed just before the previous leader stored the value finds it there).
  template <class Load>
  std::optional<Value> load_once(const Key& key, const Load& load, bool recheck) {
    auto t = flights_.join(key);
    if (!t.leader()) {
      shared_loads_.add();
      return t.get();
    }
    try {
      // Read the write counter before looking again: a write after this point makes
      // the load's result uncacheable, a write before it is found by the re-check.
      const std::uint64_t seen = stripe_for(key).generation.load(std::memory_order_acquire);
      if (recheck) {
        if (auto r = cached(key, false); r.found) {
          t.complete(std::move(r.value));
          return t.get();
        }
      }
      const time_point start = clock_.now();
      std::optional<Value> v;
      try {
        v = load(key);
      } catch (...) {
        record_load(start, false);
        throw;
      }
      record_load(start, true);
      store_loaded(key, v, seen, std::nullopt);
      t.complete(std::move(v));
    } catch (...) {
      t.fail(std::current_exception());
    }
    return t.get();
  }

  template <class Tickets>
  void load_led(std::span<const Key> keys, const std::vector<std::size_t>& missing,
                Tickets& tickets, const std::vector<std::size_t>& to_load,
                const std::vector<std::uint64_t>& seen) {
    std::vector<Key> batch;
    for (std::size_t j : to_load) batch.push_back(keys[missing[j]]);
    if constexpr (backing_store_with_load_batch<Store>) {
      const time_point start = clock_.now();
      std::vector<std::optional<Value>> values;
      try {
        values = store_.load_batch(std::span<const Key>(batch));
        if (values.size() != batch.size()) {
          throw std::length_error("tiered_cache: load_batch returned " +
                                  std::to_string(values.size()) + " results for " +
                                  std::to_string(batch.size()) + " keys");
        }
      } catch (...) {
        record_load(start, false);
        const auto error = std::current_exception();
        for (std::size_t j : to_load) tickets[j].fail(error);
        return;
      }
      record_load(start, true);
      for (std::size_t n = 0; n < to_load.size(); ++n) {
        store_loaded(batch[n], values[n], seen[n], std::nullopt);
        tickets[to_load[n]].complete(std::move(values[n]));
      }
    } else {
      for (std::size_t n = 0; n < to_load.size(); ++n) {
        const time_point start = clock_.now();
        try {
          auto v = store_.load(batch[n]);
          record_load(start, true);
          store_loaded(batch[n], v, seen[n], std::nullopt);
          tickets[to_load[n]].complete(std::move(v));
        } catch (...) {
          record_load(start, false);
          tickets[to_load[n]].fail(std::current_exception());
        }
      }
    }
  }

  void record_load(time_point start, bool ok) {
    const auto took =
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.now() - start);
    load_time_ns_.add(static_cast<std::uint64_t>(std::max<std::int64_t>(took.count(), 0)));
    (ok ? load_successes_ : load_failures_).add();
  }

  // Caches a load's result unless the key was written since `seen`; a refresh passes
  // its token, which must still be current. Under write_behind the store may lag the
  // buffer: a buffered write for the key replaces the loaded value (returned and cached).
  bool store_loaded(const Key& key, std::optional<Value>& v, std::uint64_t seen,
                    std::optional<std::uint64_t> refresh_token) {
    stripe& s = stripe_for(key);
    std::lock_guard lock(s.mutex);
    if constexpr (is_write_behind) {
      if (auto buffered_value = buffer_->lookup(key)) v = std::move(*buffered_value);
    }
    bool current = s.generation.load(std::memory_order_acquire) == seen;
    if constexpr (is_refresh_ahead) {
      std::lock_guard refresh_lock(refresh_mutex_);
      auto it = refreshing_.find(key);
      const bool mine =
          refresh_token && it != refreshing_.end() && it->second.token == *refresh_token;
      if (refresh_token) current = current && mine;
      // A refresh's own result, or a fresh load, ends the key's refresh state (a pending
      // refresh is superseded, a failed one's retry delay forgotten).
      if (it != refreshing_.end() && (mine || (!refresh_token && current))) {
        refreshing_.erase(it);
      }
    }
    if (!current) {
      (refresh_token ? refreshes_discarded_ : loads_not_cached_).add();
      return false;
    }
    if (v) {
      for_each_tier([&](auto, auto& g) { g.put(key, *v, config_.ttl); });
      negative_erase(key);
    } else {
      for_each_tier([&](auto, auto& g) { g.erase(key); });
      negative_put(key);
    }
    return true;
  }

  void promote(const Key& key, const hit_type& h, std::uint64_t seen) {
    std::optional<std::chrono::nanoseconds> ttl = config_.ttl;
    if (h.timed && h.expires != time_point::max()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::nanoseconds>(h.expires - clock_.now());
      if (left <= std::chrono::nanoseconds::zero()) return;
      ttl = ttl ? std::min(*ttl, left) : left;
    }
    stripe& s = stripe_for(key);
    std::lock_guard lock(s.mutex);
    if (s.generation.load(std::memory_order_acquire) != seen) return;
    for_each_tier([&](auto index, auto& g) {
      if (decltype(index)::value < h.tier) g.put(key, h.value, ttl);
    });
    promotions_.add();
  }

  bool write(const Key& key, std::optional<Value> value,
             std::optional<std::chrono::nanoseconds> ttl) {
    if (closed_.load(std::memory_order_acquire)) {
      rejected_.add();
      return false;
    }
    stripe& s = stripe_for(key);
    const bool is_put = value.has_value();
    if constexpr (is_write_behind) {
      auto r = buffer_->reserve(key);
      if (!r.accepted()) {
        rejected_.add();
        return false;
      }
      bool due = false;
      {
        std::lock_guard lock(s.mutex);
        s.generation.fetch_add(1, std::memory_order_acq_rel);
        apply_to_tiers(key, value, ttl);
        due = buffer_->enqueue(std::move(r), key, std::move(value));
        forget(key);
      }
      if (executor_) {
        if (due) {
          post_flush();
        } else if (!timer_armed_.load(std::memory_order_acquire)) {
          schedule_flush();
        }
      }
    } else {
      std::lock_guard lock(s.mutex);
      if constexpr (kind != write_policy_kind::cache_aside) {
        if (value) {
          store_.store(key, *value);
        } else {
          store_.erase(key);
        }
      }
      s.generation.fetch_add(1, std::memory_order_acq_rel);
      if constexpr (kind == write_policy_kind::read_through) {
        apply_to_tiers(key, std::nullopt, ttl);
      } else {
        apply_to_tiers(key, value, ttl);
      }
      forget(key);
    }
    if (is_put) puts_.add();
    if (auto* link = bus_.load(std::memory_order_acquire)) link->publish(key, id_);
    return true;
  }

  void apply_to_tiers(const Key& key, const std::optional<Value>& value,
                      std::optional<std::chrono::nanoseconds> ttl) {
    for_each_tier([&](auto, auto& g) {
      if (value) {
        g.put(key, *value, ttl);
      } else {
        g.erase(key);
      }
    });
  }

  // The key changed: drop its negative entry and any pending refresh.
  void forget(const Key& key) {
    negative_erase(key);
    if constexpr (is_refresh_ahead) {
      std::lock_guard lock(refresh_mutex_);
      refreshing_.erase(key);
    }
  }

  void drop_local(const Key& key, const std::array<bool, tier_count>& which) {
    stripe& s = stripe_for(key);
    std::lock_guard lock(s.mutex);
    s.generation.fetch_add(1, std::memory_order_acq_rel);
    for_each_tier([&](auto index, auto& g) {
      if (which[decltype(index)::value]) g.erase(key);
    });
    forget(key);
  }

  void clear_local(const std::array<bool, tier_count>& which) {
    for (auto& s : stripes_) s.generation.fetch_add(1, std::memory_order_acq_rel);
    for_each_tier([&](auto index, auto& g) {
      if (which[decltype(index)::value]) g.clear();
    });
    {
      std::lock_guard lock(negative_mutex_);
      negative_.clear();
    }
    if constexpr (is_refresh_ahead) {
      std::lock_guard lock(refresh_mutex_);
      refreshing_.clear();
    }
  }

  void on_bus_event(const invalidation_event<Key>& e) {
    if (e.origin == id_ && e.cause == invalidation_cause::published) return;
    if (e.kind == invalidation_kind::key) {
      if (e.key) drop_local(*e.key, bus_reaches_);
    } else {
      clear_local(bus_reaches_);
    }
  }

  // ---- negative cache ------------------------------------------------------------

  bool negative_hit(const Key& key) {
    if (!config_.negative_ttl) return false;
    std::lock_guard lock(negative_mutex_);
    auto it = negative_.find(key);
    if (it == negative_.end()) return false;
    if (it->second <= clock_.now()) {
      negative_.erase(it);
      return false;
    }
    return true;
  }

  void negative_put(const Key& key) {
    if (!config_.negative_ttl) return;
    const time_point now = clock_.now();
    std::lock_guard lock(negative_mutex_);
    if (negative_.size() >= config_.negative_capacity && !negative_.contains(key)) {
      std::erase_if(negative_, [&](const auto& kv) { return kv.second <= now; });
      if (negative_.size() >= config_.negative_capacity) return;
    }
    negative_.insert_or_assign(key, saturating_add(now, *config_.negative_ttl));
  }

  void negative_erase(const Key& key) {
    if (!config_.negative_ttl) return;
    std::lock_guard lock(negative_mutex_);
    negative_.erase(key);
  }

  // ---- refresh-ahead and XFetch --------------------------------------------------

  [[nodiscard]] bool refresh_due(const hit_type& h, time_point now) const {
    if constexpr (is_refresh_ahead) {
      const auto full =
          config_.ttl
              ? *config_.ttl
              : std::chrono::duration_cast<std::chrono::nanoseconds>(h.expires - h.written);
      if (full <= std::chrono::nanoseconds::zero()) return false;
      // Lived = full - left; due once lived >= refresh_fraction * full (rounded to ns,
      // so 0.8 of 10 s is exactly 8 s).
      const auto left =
          std::chrono::duration_cast<std::chrono::nanoseconds>(h.expires - now);
      const auto due_after =
          std::chrono::nanoseconds{static_cast<std::chrono::nanoseconds::rep>(std::llround(
              policy_.config.refresh_fraction * static_cast<double>(full.count())))};
      return full - left >= due_after;
    } else {
      (void)h;
      (void)now;
      return false;
    }
  }

  [[nodiscard]] bool xfetch_early(const hit_type& h, time_point now) {
    if (config_.xfetch_beta <= 0.0) return false;
    std::chrono::nanoseconds delta{};
    if (config_.xfetch_delta) {
      delta = *config_.xfetch_delta;
    } else {
      const auto loads = load_successes_.load() + load_failures_.load();
      if (loads == 0) return false;
      delta = std::chrono::nanoseconds{
          static_cast<std::chrono::nanoseconds::rep>(load_time_ns_.load() / loads)};
    }
    const std::uint64_t draw = detail::seeded_draw(
        config_.xfetch_seed, xfetch_draws_.fetch_add(1, std::memory_order_relaxed));
    const double u = static_cast<double>((draw >> 11) + 1) * 0x1.0p-53;  // (0, 1]
    return xfetch_should_recompute(now, h.expires, delta, config_.xfetch_beta, u);
  }

  void start_refresh(const Key& key) {
    if constexpr (is_refresh_ahead) {
      if (closed_.load(std::memory_order_acquire)) return;
      std::uint64_t token = 0;
      {
        const time_point now = clock_.now();
        std::lock_guard lock(refresh_mutex_);
        auto [it, inserted] = refreshing_.try_emplace(key);
        if (!inserted && (it->second.token != 0 || now < it->second.retry_at)) return;
        token = ++refresh_tokens_;
        it->second.token = token;
      }
      refreshes_.add();
      const std::uint64_t seen = stripe_for(key).generation.load(std::memory_order_acquire);
      if (executor_) {
        boost::asio::post(*executor_, [this, ctl = control_, key, token, seen] {
          if (!ctl->enter()) return;
          run_refresh(key, token, seen);
          ctl->leave();
        });
      } else {
        run_refresh(key, token, seen);
      }
    } else {
      (void)key;
    }
  }

  void run_refresh(const Key& key, std::uint64_t token, std::uint64_t seen) noexcept {
    const time_point start = clock_.now();
    std::optional<Value> v;
    try {
      v = store_.load(key);
    } catch (...) {
      record_load(start, false);
      refresh_failures_.add();
      const time_point now = clock_.now();
      std::lock_guard lock(refresh_mutex_);
      if (auto it = refreshing_.find(key);
          it != refreshing_.end() && it->second.token == token) {
        // Keep serving the old value; no new reload for this key before retry_at.
        it->second.token = 0;
        it->second.retry_at = saturating_add(now, policy_.config.retry_after);
      }
      if (refreshing_.size() > 1024) {  // forget failures of keys nobody reads any more
        std::erase_if(refreshing_, [&](const auto& kv) {
          return kv.second.token == 0 && kv.second.retry_at <= now;
        });
      }
      return;
    }
    record_load(start, true);
    try {
      store_loaded(key, v, seen, token);
    } catch (...) {  // a tier that throws: the old value stays
      refresh_failures_.add();
    }
  }

  // ---- write-behind scheduling ---------------------------------------------------

  void post_flush() {
    if (flush_posted_.exchange(true, std::memory_order_acq_rel)) return;
    boost::asio::post(*executor_, [this, ctl = control_] {
      if (!ctl->enter()) return;
      flush_posted_.store(false, std::memory_order_release);
      background_run();
      ctl->leave();
    });
  }

  void background_run() noexcept {
    try {
      (void)run_due(clock_.now());
    } catch (...) {  // run_due turns store failures into retries; nothing else throws
    }
    schedule_flush();
  }

  // Arms the timer for the buffer's next deadline (or posts at once if due).
  void schedule_flush() noexcept {
    if constexpr (is_write_behind) {
      try {
        const auto next = buffer_->next_deadline();
        std::lock_guard lock(timer_mutex_);
        if (!next || !timer_ || closed_.load(std::memory_order_acquire)) {
          timer_armed_.store(false, std::memory_order_release);
          return;
        }
        if (timer_armed_.load(std::memory_order_acquire) && armed_for_ <= *next) return;
        const auto wait = std::max(
            std::chrono::duration_cast<std::chrono::nanoseconds>(*next - clock_.now()),
            std::chrono::nanoseconds::zero());
        timer_->expires_after(wait);
        armed_for_ = *next;
        timer_armed_.store(true, std::memory_order_release);
        timer_->async_wait([this, ctl = control_](const boost::system::error_code& ec) {
          if (ec == boost::asio::error::operation_aborted) return;
          if (!ctl->enter()) return;
          {
            std::lock_guard timer_lock(timer_mutex_);
            timer_armed_.store(false, std::memory_order_release);
          }
          background_run();
          ctl->leave();
        });
      } catch (...) {  // allocation failure arming the timer: poll()/flush() still work
      }
    }
  }

  Store& store_;
  std::tuple<detail::guarded_tier<Ts, time_point>...> tiers_;
  static constexpr std::array<bool, tier_count> tier_shared_{tier_traits<Ts>::shared...};
  std::array<bool, tier_count> bus_reaches_{};
  const config_type config_;
  const WritePolicy policy_;
  Clock clock_;
  const std::uint64_t id_ = detail::next_cache_id();

  mutable std::array<stripe, stripe_count> stripes_;
  single_flight<Key, std::optional<Value>, hasher> flights_;
  std::unique_ptr<buffer_type> buffer_;

  std::mutex negative_mutex_;
  std::unordered_map<Key, time_point, hasher> negative_;

  std::mutex refresh_mutex_;
  struct refresh_state {
    std::uint64_t token = 0;  // of the reload in flight; 0 = none (it failed)
    time_point retry_at{};    // after a failure: no new reload before this
  };
  std::unordered_map<Key, refresh_state, hasher> refreshing_;
  std::uint64_t refresh_tokens_ = 0;
  std::atomic<std::uint64_t> xfetch_draws_{0};

  std::mutex bus_mutex_;
  std::atomic<bus_link*> bus_{nullptr};
  std::vector<std::unique_ptr<bus_link>> bus_links_;

  std::optional<boost::asio::any_io_executor> executor_;
  std::shared_ptr<detail::background_control> control_ =
      std::make_shared<detail::background_control>();
  std::mutex timer_mutex_;
  std::optional<boost::asio::steady_timer> timer_;
  time_point armed_for_{};
  std::atomic<bool> timer_armed_{false};
  std::atomic<bool> flush_posted_{false};
  std::atomic<bool> closed_{false};
  std::mutex shutdown_mutex_;
  bool shut_down_ = false;
  std::thread drain_thread_;  // shutdown(deadline)'s drain; joined by the destructor

  counter hits_, misses_, load_successes_, load_failures_, load_time_ns_, puts_, rejected_,
      negative_hits_, buffer_hits_, promotions_, shared_loads_, loads_not_cached_,
      early_recomputes_, refreshes_, refresh_failures_, refreshes_discarded_;
};

}  // namespace outgrow
