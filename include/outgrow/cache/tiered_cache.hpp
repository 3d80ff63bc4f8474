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
//       users(db, std::tie(l1, l2), {.default_ttl = 5min, .negative_ttl = 30s});
//   std::optional<user> u = users.get("42");   // L1, L2, then db.load once
//   users.put("42", changed);                   // db.store, then L2 and L1
//   fmt::print("{}\n", users.metrics());          // hits, misses, hit_rate, loads, ...
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
// Store requirements: `backing_store` (backing_store.hpp); optional load_batch (get_all)
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
// Bus gate: connected to a bus that has `delivering()` (the Redis bus; see
// invalidation.hpp), the cache does not trust the tiers bus messages reach (by default
// the non-shared ones: its in-process L1/L2) while delivering() is false — the bus may
// be missing another instance's write. Reads then skip those tiers and the negative
// cache and go through to the shared tiers (Redis) and the store; loads, promotions and
// writes do not fill them (a write erases the key there). Once the bus delivers again
// (after the gap event cleared those tiers) they are used as before. So a Redis outage
// turns L1 hits into L2 reads or store loads: correct, but more load downstream. Cost:
// one relaxed atomic load per read without such a bus; with one, also an indirect call.
// Measured (-O2, an L1-hit get over one outgrow::cache, 1024 keys, best of 7 x 2M gets,
// on a busy 2-core machine): 74.6-75.9 ns before the gate existed, 74.7-75.7 ns with
// it and no such bus, 75.7-76.9 ns with a bus that has delivering().
//
// Stats: metrics() is overall (hits = requests answered without the store, including
// negative and write-behind-buffer hits; misses = requests that went to the store or,
// for cache_aside get(), found nothing; evictions/expirations summed over tiers),
// tier_metrics<I>() is each tier's own. Tiers count their own hits and misses; a
// single-flight leader re-checks the tiers once before loading, which the tiers count.
//
// Layout: this header is the documentation and the public class; tiered_cache_config.hpp
// holds the config and metrics, backing_store.hpp the store concept, xfetch.hpp the
// XFetch rule, and cache/detail/ the engine (tiered_cache_engine.hpp) with its parts:
// the negative cache, refresh-ahead bookkeeping and the background scheduler.
//
// Thread-safety: every member is safe from any thread except start() and connect(),
// which are called once before the cache is shared, and tier<I>(), which returns the
// unguarded tier. Handlers (dead-letter hook, bus handlers) must not call shutdown().
// Complexity: get O(tiers) tier lookups on a hit; a miss adds one store load per key
// for all concurrent callers. put O(tiers) plus the policy's store call.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include <outgrow/cache/backing_store.hpp>
#include <outgrow/cache/detail/tiered_cache_engine.hpp>
#include <outgrow/cache/invalidation.hpp>
#include <outgrow/cache/tier.hpp>
#include <outgrow/cache/tiered_cache_config.hpp>
#include <outgrow/cache/write_policy.hpp>
#include <outgrow/cache/xfetch.hpp>
#include <outgrow/core/clock.hpp>

namespace outgrow {

/// The tiers of a tiered_cache, top (L1) first.
template <class... Tiers>
struct tiers {};

template <class TierList, backing_store Store, write_policy WritePolicy = read_through,
          clock_source Clock = steady_clock_source>
class tiered_cache;

template <cache_tier... Ts, backing_store Store, write_policy WritePolicy,
          clock_source Clock>
class tiered_cache<tiers<Ts...>, Store, WritePolicy, Clock> {
  using engine_type = detail::tiered_cache_engine<Store, WritePolicy, Clock, Ts...>;

 public:
  using key_type = typename Store::key_type;
  using mapped_type = typename Store::mapped_type;
  using store_type = Store;
  using policy_type = WritePolicy;
  using clock_type = Clock;
  using time_point = typename Clock::time_point;
  using hasher = typename engine_type::hasher;
  using config_type = tiered_cache_config<key_type, mapped_type, time_point>;
  using dead_letter = dead_letter_batch<key_type, mapped_type, time_point>;
  using shutdown_report = write_behind_shutdown_report<key_type, mapped_type, time_point>;
  static constexpr std::size_t tier_count = sizeof...(Ts);

  static_assert(tier_count >= 1, "tiered_cache: give at least one tier");
  static_assert((std::is_same_v<typename Ts::key_type, key_type> && ...),
                "tiered_cache: every tier's key_type must be the store's key_type");
  static_assert((std::is_same_v<typename Ts::mapped_type, mapped_type> && ...),
                "tiered_cache: every tier's mapped_type must be the store's mapped_type");
  static_assert(std::is_copy_constructible_v<mapped_type>,
                "tiered_cache: values are copied into each tier and to each waiter");

  /// Refers to `store` and to the tiers in `tier_refs` (std::tie(l1, l2, ...)), which
  /// must outlive the cache.
  /// Throws: config_error if a config field or the policy's config is out of range.
  tiered_cache(Store& store, std::tuple<Ts&...> tier_refs, config_type config = {},
               WritePolicy policy = {}, Clock clock = {})
      : engine_(store, tier_refs, std::move(config), std::move(policy), std::move(clock)) {}

  tiered_cache(const tiered_cache&) = delete;
  tiered_cache& operator=(const tiered_cache&) = delete;

  /// Drains (see shutdown()); dead letters it produces go to the hook. After a
  /// shutdown(deadline) that left store calls or background handlers running, waits
  /// for them (without a deadline: they would otherwise return into freed memory).
  ~tiered_cache() = default;

  // ---- reads ---------------------------------------------------------------------

  /// The value for `key`: from a tier, else (every policy but cache_aside) from the
  /// store, loaded once for all concurrent callers. nullopt = not found.
  /// Throws: the store's exception if the load failed (to every caller waiting for it).
  std::optional<mapped_type> get(const key_type& key) { return engine_.get(key); }

  /// As get(), but loads from the store on a miss under every policy (cache_aside too).
  /// Throws: the store's exception if the load failed.
  std::optional<mapped_type> get_or_load(const key_type& key) {
    return engine_.get_or_load(key);
  }

  /// As get(), loading a miss with `loader(key) -> std::optional<Value>` instead of
  /// the store (once per key for all concurrent callers, whichever loader they pass).
  /// Throws: the loader's exception if the load failed.
  template <class Loader>
  requires std::is_invocable_r_v<std::optional<mapped_type>, Loader&, const key_type&>
  std::optional<mapped_type> get_or_load(const key_type& key, Loader&& loader) {
    return engine_.get_or_load(key, std::forward<Loader>(loader));
  }

  /// get() for many keys: misses are loaded together with store.load_batch when the
  /// store has it (else one load each), single-flight per key.
  /// Throws: the first load failure, after every key has been resolved;
  /// std::length_error if load_batch returns a different number of results than keys.
  std::vector<std::optional<mapped_type>> get_all(std::span<const key_type> keys) {
    return engine_.get_all(keys);
  }

  // ---- writes --------------------------------------------------------------------

  /// Writes `value` as the policy says (see write_policy.hpp). Returns true once
  /// acknowledged; false if rejected (write-behind buffer full, or shut down).
  /// Throws: write_through / read_through / refresh_ahead: the store's exception (the
  /// cache is then unchanged).
  bool put(const key_type& key, mapped_type value) {
    return engine_.put(key, std::move(value));
  }

  /// put() with this entry's TTL.
  /// Throws: config_error if ttl <= 0; else as put(key, value).
  bool put(const key_type& key, mapped_type value, std::chrono::nanoseconds ttl) {
    return engine_.put(key, std::move(value), ttl);
  }

  /// Removes `key` from the tiers and (except under cache_aside) from the store —
  /// through the buffer under write_behind. Returns false only if rejected.
  /// Throws: write_through / read_through / refresh_ahead: the store's exception.
  bool erase(const key_type& key) { return engine_.erase(key); }

  /// Removes from every tier the entries for which pred(key, value) holds and
  /// publishes each removed key (once) on the bus; returns how many tier entries
  /// were removed. The store and the write-behind buffer are not touched (it is an
  /// invalidation). An entry loaded while erase_if runs may survive it.
  template <class Pred>
  requires(detail::tier_with_erase_if<Ts> && ...) &&
          std::is_invocable_r_v<bool, Pred&, const key_type&, const mapped_type&>
  std::size_t erase_if(Pred pred) {
    return engine_.erase_if(std::move(pred));
  }

  /// Drops `key` from every tier (and the negative cache) and publishes it on the
  /// bus; the store and the write-behind buffer are untouched.
  void invalidate(const key_type& key) { engine_.invalidate(key); }

  /// Clears every tier and the negative cache; publishes a clear on the bus.
  void invalidate_all() { engine_.invalidate_all(); }

  // ---- invalidation bus ----------------------------------------------------------

  /// Publishes this cache's invalidations on `bus` and applies other instances' (see
  /// config bus_invalidates_tiers). Call once, before sharing the cache; the bus must
  /// outlive the cache (or disconnect() first, with no writes in progress). A bus with
  /// delivering() gates the tiers it reaches (see "Bus gate").
  template <invalidation_bus Bus>
  requires std::same_as<typename Bus::key_type, key_type>
  void connect(Bus& bus) {
    engine_.connect(bus);
  }

  /// Stops publishing and receiving invalidations.
  void disconnect() { engine_.disconnect(); }

  /// This instance's id: the `origin` of what it publishes.
  [[nodiscard]] std::uint64_t id() const noexcept { return engine_.id(); }

  // ---- background work -----------------------------------------------------------

  /// Runs background work on `executor` from now on: write-behind flushes (a
  /// steady_timer for age and retry deadlines, posts for full batches) and
  /// refresh-ahead reloads. Call once, before sharing the cache.
  /// Throws: config_error if called a second time.
  void start(boost::asio::any_io_executor executor) { engine_.start(std::move(executor)); }

  /// Write-behind: does at clock.now() what the timer would (flushes due by size or
  /// age, due retries). Returns the number of writes stored. Other policies: 0.
  std::size_t poll() { return engine_.poll(); }

  /// poll() at a given time.
  std::size_t run_due(time_point now) { return engine_.run_due(now); }

  /// Write-behind: returns once every write acknowledged before the call is in the
  /// store or dead-lettered. Other policies: nothing to do.
  void flush() { engine_.flush(); }

  /// Stops accepting writes, stops background work (waiting for handlers running now),
  /// drains the write-behind buffer (failures go to the dead-letter hook) and leaves
  /// the bus. Reads keep working without background refreshes. Idempotent.
  void shutdown() { engine_.shutdown(); }

  /// As shutdown(), but returns at `deadline` (steady_clock, a real wait) even if a
  /// store call or a background handler hangs: the write-behind drain runs on a helper
  /// thread, and what it has not stored by the deadline is reported (see
  /// write_behind_shutdown_report: nothing acknowledged is lost silently). Store calls
  /// still running are left to finish; the destructor waits for them. Other policies:
  /// as shutdown(), except that background handlers are waited for only until the
  /// deadline. A second call (or one after shutdown()) reports drained, empty.
  shutdown_report shutdown(std::chrono::steady_clock::time_point deadline) {
    return engine_.shutdown(deadline);
  }
  /// shutdown(now + grace), saturating (any duration type, so hours::max() is not
  /// converted to nanoseconds first, which would overflow).
  template <class Rep, class Period>
  shutdown_report shutdown(std::chrono::duration<Rep, Period> grace) {
    return engine_.shutdown(grace);
  }

  /// Write-behind dead letters kept because no hook was configured (or it threw).
  [[nodiscard]] std::vector<dead_letter> take_dead_letters() {
    return engine_.take_dead_letters();
  }

  // ---- observation ---------------------------------------------------------------

  /// Overall counters (see "Stats" above); evictions and expirations summed over tiers.
  [[nodiscard]] tiered_cache_metrics metrics() const { return engine_.metrics(); }

  /// Tier I's own counters (0 = L1).
  template <std::size_t I>
  requires(I < tier_count)
  [[nodiscard]] cache_metrics tier_metrics() const {
    return engine_.template tier_metrics<I>();
  }

  /// Tier I itself, unguarded: do not use it concurrently with the cache unless the
  /// tier is thread-safe.
  template <std::size_t I>
  requires(I < tier_count)
  [[nodiscard]] auto& tier() const noexcept {
    return engine_.template tier<I>();
  }

  [[nodiscard]] const config_type& config() const noexcept { return engine_.config(); }
  [[nodiscard]] const WritePolicy& policy() const noexcept { return engine_.policy(); }
  [[nodiscard]] Store& store() const noexcept { return engine_.store(); }

 private:
  engine_type engine_;
};

}  // namespace outgrow
