// outgrow/redis/redis_tier.hpp — a shared L2 cache tier in Redis, that survives Redis.
//
// redis_tier<Key, Value, Codec, Breaker, Clock> is a `cache_tier` (cache/tier.hpp) over
// hiredis: the L2 that every instance of a service shares, under in-process L1s, in a
// tiered_cache. Values are encoded by a codec policy, keys get a prefix (a namespace),
// TTLs use `SET key value PX ms`, and get_many / put_many batch keys (MGET, pipelined
// SETs). It is a cache, so Redis failing is a miss, not an outage: a dead, slow or
// restarted Redis makes reads misses and writes fail (returning false), counted in
// metrics(); nothing throws into the read path, no call waits longer than the configured
// timeouts, and the tier reconnects when Redis returns (connect attempts spaced by a
// backoff). With a circuit_breaker (the Breaker parameter) a dead Redis costs nothing
// per request while the breaker is open.
//
//   outgrow::redis_tier<std::string, std::string> l2(
//       {.connection = {.host = "127.0.0.1", .port = 6379, .command_timeout = 50ms},
//        .key_prefix = "shop:v1:", .default_ttl = 10min});
//   l2.put("user:42", "Ada", 30s);                  // SET shop:v1:user%3A42 Ada PX 30000
//   std::optional<std::string> v = l2.get("user:42");   // a miss if Redis is down
//   auto values = l2.get_many(keys);                 // MGET, one round trip per batch
//   outgrow::circuit_breaker<> cb({.failure_threshold = 5, .open_for = 5s});
//   outgrow::redis_tier<std::string, std::string, outgrow::redis_default_codec,
//                       outgrow::circuit_breaker<>> guarded(config, cb);
//   fmt::print("{}\n", l2.metrics());                  // redis_tier_metrics{hits=..., ...}
//
// Topologies (redis/connection.hpp): one server, a master found through Sentinel, or a
// Redis Cluster — same API. On a cluster each key goes to its slot's master (a pool per
// node), get_many / put_many send one MGET / pipeline per hash slot and merge the
// answers back in request order (keys sharing a {hash tag} share a slot, and a round
// trip), size() and clear() SCAN every master, and resharding is absorbed (MOVED / ASK
// followed, metrics().redirects). Measured on 3 masters / 3 replicas with 8 threads
// (tests/integration/redis_cluster_test.cpp): resharding 1000 slots, 0 failed calls;
// SIGKILL of a master, calls to its slots fail until the replica is promoted: last
// failure 2.3-3.1 s after the kill with cluster-node-timeout 1 s. Under Sentinel,
// connection.sentinel.read_from_replicas sends get / get_many to a replica (possibly
// stale: asynchronous replication; see redis/connection.hpp), falling back to the master
// when no replica answers; writes, size and clear stay on the master.
//
// In a tiered_cache: `tiered_cache<tiers<cache<K, V>, redis_tier<K, V>>, Store, ...>`;
// the tier declares `thread_safe` (no extra lock) and `shared` (bus messages and gaps
// clear only the in-process tiers). It has no get_entry: a value promoted from Redis
// into L1 gets tiered_cache_config::default_ttl (or L1's), not Redis's remaining
// TTL — set a default_ttl on the tiered_cache so L1 copies never outlive what you accept.
//
// Codecs (redis/codec.hpp, included): a `redis_codec` policy encodes values and keys;
// redis_default_codec stores strings as bytes, numbers as decimal text and trivially
// copyable structs as tagged bytes. Values read from Redis are untrusted: anything the
// codec or a validation hook rejects — foreign bytes, another type's value, a truncated
// or corrupted one — is a decode error (metrics().decode_errors), answered as a miss,
// never a hit. The value is left in Redis (during a rolling deploy it may be the newer
// version's value): the next put overwrites it, its TTL expires it.
//
// Connection (redis/connection.hpp): `connection` says where Redis is and how long to
// wait (connect_timeout, command_timeout, reconnect_backoff, seed). Its seed is empty by
// default: each tier draws its own reconnect jitter, so a fleet that lost Redis at once
// does not reconnect in lock-step.
//
// Failure isolation, in detail:
//   - Timeouts: connection.connect_timeout bounds a connect; command_timeout a whole
//     command — writing it and reading its reply, however the bytes trickle in (the
//     socket timeout is re-armed with the time left before each read or write; in a
//     pipeline, the writes and then each reply); pool_timeout bounds the wait for a free
//     pooled connection when all are busy. Any transport error (timeout, reset, EOF,
//     protocol) closes that connection: a late reply can never be read as the answer to
//     the next command.
//   - Sizes: max_value_size (16 MiB) bounds an encoded value. A larger put is rejected
//     (false, metrics().oversized and rejected_puts) and DELetes the key, so Redis does not
//     keep serving the value it was meant to replace (put_many: the key is repaired).
//     A larger value read is a decode error (a miss; oversized and decode_errors, not
//     failed_reads): a GET stops buffering the reply at the limit and closes the
//     connection, so memory stays bounded by about max_value_size per connection (per
//     MGET batch: max_batch x max_value_size); in an MGET reply each value is checked.
//   - Reconnects: a closed connection is reopened by the next call that needs it. After
//     a failed connect, further attempts wait for connection.reconnect_backoff (full
//     jitter, random per instance unless connection.seed is set; 10 ms doubling to 1 s
//     by default); until then calls are short-circuited (a miss or a failed write
//     without any I/O), and only one caller at a time probes.
//   - Breaker: with Breaker = circuit_breaker<...> (any `redis_breaker`:
//     redis/breaker.hpp), every call first asks the breaker; transport and connect
//     failures are failures, error replies from a live server (OOM, WRONGTYPE) are
//     ignored. The breaker is the caller's: share one between the tier and other users
//     of the same Redis.
//   - Repair: a put or erase that may not have reached Redis leaves Redis possibly
//     holding an older value (a write_through cache would serve it after Redis comes
//     back with its data). The tier remembers such keys (up to max_repair_keys; beyond
//     that it remembers "clear the namespace") and deletes them on the next healthy
//     connection, before that connection serves anything else. Another connection may
//     serve such a key in between; TTLs bound that window. Repairs die with the process.
//   - Error replies (-OOM, -READONLY, ...) are misses / failed writes (server_errors).
//   - A user codec that throws is treated as a decode or encode failure; allocation
//     failures likewise. Only put(k, v, ttl) and put_many(items, ttl) with ttl <= 0
//     throw (config_error), and put_many when its buffers cannot be allocated.
//
// Guarantees. A hit is a value this tier's codec encoded for this namespace: decoded,
// accepted by the validation hooks and within max_value_size; anything else — absent,
// expired, foreign, corrupt, oversized, or Redis failing — is a miss (counted). No call
// throws (but put / put_many with ttl <= 0 and construction with an invalid config) or
// waits longer than pool_timeout + (when it must connect) connect_timeout and a
// command_timeout per handshake command + command_timeout per command (get, put, erase:
// one; get_many / put_many: one for the writes and one per batch reply; clear / size: one
// per SCAN page and UNLINK), however slowly a reply trickles in. A put that returns true
// was stored; one that returns false may have been, and the key is deleted on recovery
// (repair) so that Redis does not keep an older value — within max_repair_keys and the
// process's lifetime; beyond that, TTLs bound staleness. Memory per read is bounded by
// about max_value_size (an MGET batch: max_batch x max_value_size).
//
// Defaults (outgrow's choices for a cache in front of a database, where a miss costs one
// database read): 4 connections; connect 200 ms; command 100 ms; pool wait = command
// timeout; reconnect backoff full jitter 10 ms .. 1 s. General-purpose clients wait far
// longer (go-redis: dial 5 s, read 3 s; StackExchange.Redis: 5 s), which would turn a
// slow Redis into slow requests. Key prefix "outgrow:"; no default TTL;
// max_value_size 16 MiB.
//
// Key namespaces: the Redis key is key_prefix + the encoded key with '%' written "%25"
// and ':' written "%3A" (so "user:42" is stored as "shop:v1:user%3A42"). A prefix must
// be empty or end with ':' (config_error otherwise). An encoded key then never contains
// ':', so the namespace of a Redis key is everything up to its last ':' and two tiers
// with different prefixes can never share a key, even when one prefix starts with the
// other ("app:" and "app:v2:"): no wrong hits across namespaces, by construction.
//
// clear() deletes the keys of the namespace (SCAN MATCH prefix* + UNLINK, skipping keys
// with a ':' after the prefix: they belong to longer prefixes; with an empty prefix,
// every key without ':') and size() counts them (SCAN): both O(keys in the database),
// meant for tests and administration, not request paths.
//
// Thread-safety: every member from any thread (the pool hands each call its own
// connection). metrics() is a snapshot of relaxed counters.
// Complexity: get/put/erase one round trip; get_many one round trip per max_batch keys
// (MGETs pipelined); put_many one pipelined round trip per max_batch keys. Calls allocate
// what hiredis needs for the command and reply, plus the decoded value.
// Measured cost (-O2, redis-server 7.0 on loopback, 64-byte values, one thread, on a
// 2-core machine busy with compiles, so read these as upper bounds): get 55–140 us, put
// 77–120 us, get_many of 1000 keys 0.9–2.4 ms (about 1–2 us per key): the round trip
// dominates, so batch where you can.
#pragma once

#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/cache/tier.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/redis/breaker.hpp>
#include <outgrow/redis/codec.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/cluster.hpp>
#include <outgrow/redis/detail/connection.hpp>
#include <outgrow/redis/detail/key_namespace.hpp>
#include <outgrow/redis/detail/namespace_scan.hpp>
#include <outgrow/redis/detail/pool.hpp>
#include <outgrow/redis/detail/reconnect_gate.hpp>
#include <outgrow/redis/detail/repair_set.hpp>
#include <outgrow/redis/detail/tier_repair.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>

namespace outgrow {

// ---- config and stats ----------------------------------------------------------------

struct redis_tier_config {
  /// Where Redis is and how long to wait (connect 200 ms, command 100 ms, reconnect
  /// backoff 10 ms .. 1 s, random jitter seed per tier). Errors name "connection.<field>".
  redis_connection_config connection{};
  /// The tier's namespace, prepended to every encoded key: empty or ending with ':'
  /// (see "Key namespaces" in the header comment).
  std::string key_prefix = "outgrow:";
  /// TTL of put(k, v); nullopt = no expiry. > 0.
  std::optional<std::chrono::nanoseconds> default_ttl{};
  /// Pooled connections: 4. [1, 1024]
  std::size_t pool_size = 4;
  /// Wait for a free connection when all are busy; nullopt = connection.command_timeout.
  /// [0, 1 h]
  std::optional<std::chrono::nanoseconds> pool_timeout{};
  /// Keys per MGET / per pipelined batch of SETs: 256. [1, 1e6]
  std::size_t max_batch = 256;
  /// Largest encoded value written or read: 16 MiB. Larger puts are rejected (the key is
  /// deleted instead), larger replies are decode errors. [1, 512 MiB]
  std::size_t max_value_size = std::size_t{16} << 20;
  /// Keys remembered for repair after failed writes (beyond: clear the namespace). 10000.
  /// 0 = no repair. [0, 1e8]
  std::size_t max_repair_keys = 10'000;
};

/// cache_metrics of the tier plus what only a remote tier sees.
struct redis_tier_metrics : cache_metrics {
  static constexpr std::string_view metrics_name = "redis_tier_metrics";
  std::uint64_t failed_reads = 0;      ///< gets answered as misses because of a failure
  std::uint64_t failed_writes = 0;     ///< puts / erases / clears that did not complete
  std::uint64_t transport_errors = 0;  ///< timeouts, resets, EOF: the connection closed
  std::uint64_t server_errors = 0;     ///< error replies (-OOM, -READONLY, ...)
  std::uint64_t decode_errors = 0;     ///< values the codec rejected (answered as misses)
  std::uint64_t oversized = 0;         ///< values over max_value_size: puts rejected, reads
                                       ///< answered as misses (also decode_errors)
  std::uint64_t short_circuited = 0;  ///< calls not sent: breaker open or reconnect backoff
  std::uint64_t pool_timeouts = 0;    ///< calls that found no free connection in time
  std::uint64_t connects = 0;         ///< connections opened (first ones and reconnects)
  std::uint64_t connect_failures = 0;
  std::uint64_t erased = 0;            ///< keys erase() removed
  std::uint64_t repaired = 0;          ///< keys deleted after recovery (failed writes)
  std::uint64_t repair_pending = 0;    ///< keys waiting for repair now
  std::uint64_t open_connections = 0;  ///< now
  /// Cluster only: MOVED / ASK / TRYAGAIN / CLUSTERDOWN replies followed (resharding,
  /// failovers), and slot-map reads.
  std::uint64_t redirects = 0;
  std::uint64_t slot_map_reads = 0;
  /// Sentinel with read_from_replicas only: reads a replica answered, and reads that
  /// went to the master because no replica did.
  std::uint64_t replica_reads = 0;
  std::uint64_t replica_fallbacks = 0;

  template <class F>
  void for_each_metric(F&& f) const {
    cache_metrics::for_each_metric(f);
    f("failed_reads", failed_reads);
    f("failed_writes", failed_writes);
    f("transport_errors", transport_errors);
    f("server_errors", server_errors);
    f("decode_errors", decode_errors);
    f("oversized", oversized);
    f("short_circuited", short_circuited);
    f("pool_timeouts", pool_timeouts);
    f("connects", connects);
    f("connect_failures", connect_failures);
    f("erased", erased);
    f("repaired", repaired);
    f("repair_pending", repair_pending);
    f("open_connections", open_connections);
    f("redirects", redirects);
    f("slot_map_reads", slot_map_reads);
    f("replica_reads", replica_reads);
    f("replica_fallbacks", replica_fallbacks);
  }
};

// ---- the tier ------------------------------------------------------------------------

template <class Key, class Value, class Codec = redis_default_codec,
          class Breaker = no_breaker, clock_source Clock = steady_clock_source>
requires redis_codec<Codec, Value> && redis_key_codec<Codec, Key> &&
         (std::same_as<Breaker, no_breaker> || redis_breaker<Breaker>)
class redis_tier {
  static constexpr bool has_breaker = !std::same_as<Breaker, no_breaker>;

 public:
  using key_type = Key;
  using mapped_type = Value;
  using codec_type = Codec;
  using breaker_type = Breaker;
  using clock_type = Clock;
  using config_type = redis_tier_config;
  /// Safe from any thread; shared between instances (see tiered_cache's tier_traits).
  static constexpr bool thread_safe = true;
  static constexpr bool shared = true;

  /// Connects lazily (the first call opens a connection): constructing never fails
  /// because Redis is down.
  /// Throws: config_error if a config field is out of range (see redis_tier_config).
  explicit redis_tier(redis_tier_config config = {}, Codec codec = {}, Clock clock = {})
  requires(!has_breaker)
      : redis_tier(std::move(config), nullptr, std::move(codec), std::move(clock)) {}

  /// As above, asking `breaker` (owned by the caller, outliving the tier) before each
  /// call.
  /// Throws: config_error if a config field is out of range (see redis_tier_config).
  redis_tier(redis_tier_config config, Breaker& breaker, Codec codec = {}, Clock clock = {})
  requires has_breaker
      : redis_tier(std::move(config), &breaker, std::move(codec), std::move(clock)) {}

  redis_tier(const redis_tier&) = delete;
  redis_tier& operator=(const redis_tier&) = delete;

  // ---- the tier concept --------------------------------------------------------------

  /// The value, or nullopt when absent, expired, undecodable or Redis failed. Never
  /// throws; waits at most pool_timeout + connect/command timeouts.
  std::optional<Value> get(const Key& key) noexcept {
    std::optional<Value> out;
    bool oversized = false;
    const bool ok = run_read(slot_of(key), [&](connection& c) {
      if (!encode_key(key, c.key)) return status::codec;
      const std::string_view args[] = {"GET", c.key};
      redis_reply_holder r;
      const status s = exec(c, args, r, reply_limit());
      oversized = s == status::too_large;
      if (s != status::ok) return s;
      if (r->type == REDIS_REPLY_NIL) return status::ok;
      if (r->type != REDIS_REPLY_STRING) return status::server;
      out = decode({r->str, r->len});
      return status::ok;
    });
    if (!ok && !oversized) failed_reads_.add();
    (out ? hits_ : misses_).add();
    return out;
  }

  /// SET with the default TTL (if any). False when Redis could not store it.
  bool put(const Key& key, Value value) noexcept {
    return put_impl(key, value, default_ttl_);
  }

  /// SET … PX ttl (rounded up to whole milliseconds).
  /// Throws: config_error if ttl <= 0.
  bool put(const Key& key, Value value, std::chrono::nanoseconds ttl) {
    require(ttl > std::chrono::nanoseconds::zero(), "redis_tier", "put(ttl)",
            "in (0s, inf)", ttl);
    return put_impl(key, value, ttl);
  }

  /// DEL. True when a key was removed; false when absent or Redis failed.
  bool erase(const Key& key) noexcept {
    bool removed = false;
    const bool ok = run(slot_of(key), [&](connection& c) {
      if (!encode_key(key, c.key)) return status::codec;
      const std::string_view args[] = {"DEL", c.key};
      redis_reply_holder r;
      if (const status s = exec(c, args, r, reply_limit()); s != status::ok) return s;
      if (r->type != REDIS_REPLY_INTEGER) return status::server;
      removed = r->integer > 0;
      return status::ok;
    });
    if (!ok) {
      failed_writes_.add();
      remember_for_repair(key);
    }
    if (removed) erased_.add();
    return removed;
  }

  /// Deletes every key under the prefix (see the header comment). On failure the
  /// namespace is cleared after recovery instead.
  void clear() noexcept {
    const bool ok = run_each_master([&](connection& c) { return clear_namespace(c); });
    if (!ok) {
      failed_writes_.add();
      repairs_.remember_clear();
    }
  }

  /// Keys under the prefix (SCAN; 0 when Redis is unreachable). O(keys in the database).
  [[nodiscard]] std::size_t size() const noexcept {
    std::size_t n = 0;
    (void)run_each_master([&](connection& c) {
      return scan(c, [&](std::span<redisReply* const> keys) {
        n += keys.size();
        return status::ok;
      });
    });
    return n;
  }

  [[nodiscard]] redis_tier_metrics metrics() const {
    redis_tier_metrics s;
    s.hits = hits_.load();
    s.misses = misses_.load();
    s.puts = puts_.load();
    s.rejected_puts = rejected_puts_.load();
    s.failed_reads = failed_reads_.load();
    s.failed_writes = failed_writes_.load();
    s.transport_errors = router_.transport_errors();
    s.server_errors = server_errors_.load();
    s.decode_errors = decode_errors_.load();
    s.oversized = oversized_.load();
    s.short_circuited = short_circuited_.load();
    s.pool_timeouts = router_.pool_timeouts();
    s.connects = router_.connects();
    s.connect_failures = router_.connect_failures();
    s.erased = erased_.load();
    s.repaired = repaired_.load();
    s.open_connections = router_.open_connections();
    s.redirects = router_.redirects();
    s.slot_map_reads = router_.map_refreshes();
    s.replica_reads = router_.replica_reads_served();
    s.replica_fallbacks = router_.replica_fallbacks();
    s.repair_pending = repairs_.size();
    return s;
  }

  // ---- batches -----------------------------------------------------------------------

  /// One result per key, in order: MGET in batches of max_batch keys, pipelined on one
  /// connection. A failure makes the keys not yet answered misses.
  std::vector<std::optional<Value>> get_many(std::span<const Key> keys) noexcept {
    if (router_.clustered()) {
      std::vector<std::optional<Value>> out;
      try {
        out.resize(keys.size());
        for (const auto& [slot, indexes] : detail::redis_group_by_slot(
                 keys.size(), [&](std::size_t i) { return slot_of(keys[i]); })) {
          std::vector<Key> group;
          group.reserve(indexes.size());
          for (const std::size_t i : indexes) group.push_back(keys[i]);
          auto values = get_many_in_slot(slot, group);
          for (std::size_t j = 0; j < indexes.size() && j < values.size(); ++j) {
            out[indexes[j]] = std::move(values[j]);
          }
        }
      } catch (...) {  // out of memory: the keys not yet answered are misses
      }
      return out;
    }
    return get_many_in_slot(0, keys);
  }

  /// SETs pipelined in batches of max_batch (with `ttl`, else the default TTL). Returns
  /// how many Redis acknowledged. On a cluster, one pipeline per hash slot.
  /// Throws: config_error if ttl <= 0; std::bad_alloc if the batch's buffers cannot be
  /// allocated (nothing was sent then).
  std::size_t put_many(std::span<const std::pair<Key, Value>> items,
                       std::optional<std::chrono::nanoseconds> ttl = std::nullopt) {
    if (ttl) {
      require(*ttl > std::chrono::nanoseconds::zero(), "redis_tier", "put_many(ttl)",
              "in (0s, inf)", *ttl);
    }
    if (!router_.clustered()) return put_many_in_slot(0, items, ttl);
    std::size_t stored = 0;
    for (const auto& [slot, indexes] : detail::redis_group_by_slot(
             items.size(), [&](std::size_t i) { return slot_of(items[i].first); })) {
      std::vector<std::pair<Key, Value>> group;
      group.reserve(indexes.size());
      for (const std::size_t i : indexes) group.push_back(items[i]);
      stored += put_many_in_slot(slot, group, ttl);
    }
    return stored;
  }

 private:
  /// get_many's keys, all of one hash slot (any keys when not clustered).
  std::vector<std::optional<Value>> get_many_in_slot(std::uint16_t slot,
                                                     std::span<const Key> keys) noexcept {
    std::vector<std::optional<Value>> out;
    try {
      out.resize(keys.size());
    } catch (...) {
      return {};
    }
    if (keys.empty()) return out;
    bool oversized = false;
    const bool ok = run_read(slot, [&](connection& c) {
      std::vector<std::string> encoded(keys.size());
      for (std::size_t i = 0; i < keys.size(); ++i) {
        if (!encode_key(keys[i], encoded[i])) return status::codec;
      }
      std::vector<const char*> argv;
      std::vector<std::size_t> lens;
      for (std::size_t begin = 0; begin < keys.size(); begin += config_.max_batch) {
        const std::size_t end = std::min(keys.size(), begin + config_.max_batch);
        argv.assign(1, "MGET");
        lens.assign(1, 4);
        for (std::size_t i = begin; i < end; ++i) {
          argv.push_back(encoded[i].data());
          lens.push_back(encoded[i].size());
        }
        if (redisAppendCommandArgv(c.ctx.get(), static_cast<int>(argv.size()), argv.data(),
                                   lens.data()) != REDIS_OK) {
          return status::transport;
        }
      }
      if (!detail::redis_flush_until(c.ctx.get(), command_deadline())) {
        return status::transport;
      }
      status result = status::ok;
      for (std::size_t begin = 0; begin < keys.size(); begin += config_.max_batch) {
        const std::size_t end = std::min(keys.size(), begin + config_.max_batch);
        redis_reply_holder r;
        const status s = read_reply(c, r, reply_limit(end - begin));
        if (s != status::ok) {
          oversized = s == status::too_large;
          return s;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != end - begin) {
          result = status::server;  // keep reading the other replies: stay in sync
          continue;
        }
        for (std::size_t i = begin; i < end; ++i) {
          const redisReply* e = r->element[i - begin];
          if (e->type != REDIS_REPLY_STRING) continue;
          if (e->len > config_.max_value_size) {
            oversized_.add();
            decode_errors_.add();
            continue;
          }
          out[i] = decode({e->str, e->len});
        }
      }
      return result;
    });
    std::uint64_t found = 0;
    for (const auto& v : out) found += v ? 1U : 0U;
    hits_.add(found);
    misses_.add(keys.size() - found);
    if (!ok && !oversized) failed_reads_.add(keys.size() - found);
    return out;
  }

  /// put_many's items, all of one hash slot (any items when not clustered).
  std::size_t put_many_in_slot(std::uint16_t slot,
                               std::span<const std::pair<Key, Value>> items,
                               std::optional<std::chrono::nanoseconds> ttl) {
    if (!ttl) ttl = default_ttl_;
    std::size_t stored = 0;
    std::vector<char> acked(items.size(), 0);
    std::vector<std::string> keys(items.size());
    std::vector<std::string> values(items.size());
    std::vector<char> encoded(items.size(), 0);
    for (std::size_t i = 0; i < items.size(); ++i) {
      encoded[i] =
          encode_key(items[i].first, keys[i]) && encode_value(items[i].second, values[i]);
      if (encoded[i] != 0 && values[i].size() > config_.max_value_size) {
        oversized_.add();  // rejected below; repair deletes the key's older value
        encoded[i] = 0;
      }
    }
    (void)run(slot, [&](connection& c) {
      const std::string px = ttl ? std::to_string(ttl_ms(*ttl)) : std::string{};
      for (std::size_t begin = 0; begin < items.size(); begin += config_.max_batch) {
        const std::size_t end = std::min(items.size(), begin + config_.max_batch);
        for (std::size_t i = begin; i < end; ++i) {
          if (encoded[i] == 0) continue;
          const char* argv[] = {"SET", keys[i].data(), values[i].data(), "PX", px.data()};
          const std::size_t lens[] = {3, keys[i].size(), values[i].size(), 2, px.size()};
          if (redisAppendCommandArgv(c.ctx.get(), ttl ? 5 : 3, argv, lens) != REDIS_OK) {
            return status::transport;
          }
        }
        if (!detail::redis_flush_until(c.ctx.get(), command_deadline())) {
          return status::transport;
        }
        status result = status::ok;
        for (std::size_t i = begin; i < end; ++i) {
          if (encoded[i] == 0) continue;
          redis_reply_holder r;
          if (const status s = read_reply(c, r, reply_limit()); s != status::ok) return s;
          if (r && r->type == REDIS_REPLY_STATUS) {
            acked[i] = 1;
            ++stored;
          } else {
            result = status::server;
          }
        }
        if (result != status::ok) return result;
      }
      return status::ok;
    });
    puts_.add(stored);
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (acked[i] != 0) continue;
      rejected_puts_.add();
      failed_writes_.add();
      remember_for_repair(items[i].first);
    }
    return stored;
  }

 public:
  // ---- operations --------------------------------------------------------------------

  /// PING on a pooled connection (connecting if needed): true when Redis answered.
  bool ping() noexcept {
    return run_each_master([&](connection& c) {
      const std::string_view args[] = {"PING"};
      redis_reply_holder r;
      if (const status s = exec(c, args, r, reply_limit()); s != status::ok) return s;
      return r->type == REDIS_REPLY_STATUS ? status::ok : status::server;
    });
  }

  /// The key Redis stores for `key` (prefix + encoded key), e.g. for redis-cli.
  [[nodiscard]] std::string redis_key(const Key& key) const {
    std::string out;
    if (!encode_key(key, out)) return {};
    return out;
  }

  [[nodiscard]] const redis_tier_config& config() const noexcept { return config_; }
  [[nodiscard]] const Codec& codec() const noexcept { return codec_; }

 private:
  using status = detail::redis_status;
  using redis_reply_holder = detail::redis_reply_ptr;
  using connection = detail::redis_pooled_connection;

  redis_tier(redis_tier_config config, Breaker* breaker, Codec codec, Clock clock)
      : config_(validated(std::move(config))),
        default_ttl_(config_.default_ttl),
        codec_(std::move(codec)),
        breaker_(breaker),
        router_(config_.connection, config_.pool_size,
                config_.pool_timeout.value_or(detail::command_timeout(config_.connection)),
                resolve_seed(config_.connection.seed), std::move(clock)) {}

  static redis_tier_config validated(redis_tier_config c) {
    using namespace std::chrono_literals;
    constexpr std::string_view who = "redis_tier";
    detail::validate_connection(who, c.connection, /*replica_reads=*/true);
    require(c.key_prefix.empty() || c.key_prefix.back() == detail::redis_key_separator, who,
            "key_prefix", "empty or ending with ':'", fmt::format("\"{}\"", c.key_prefix));
    if (c.default_ttl) {
      require(*c.default_ttl > 0ns, who, "default_ttl", "in (0s, inf)", *c.default_ttl);
    }
    require_in_range(who, "pool_size", c.pool_size, std::size_t{1}, std::size_t{1024});
    if (c.pool_timeout) {
      require_in_range(who, "pool_timeout", *c.pool_timeout, std::chrono::nanoseconds{0},
                       std::chrono::nanoseconds{1h});
    }
    require_in_range(who, "max_batch", c.max_batch, std::size_t{1}, std::size_t{1'000'000});
    require_in_range(who, "max_value_size", c.max_value_size, std::size_t{1},
                     std::size_t{512} << 20);
    require_in_range(who, "max_repair_keys", c.max_repair_keys, std::size_t{0},
                     std::size_t{100'000'000});
    return c;
  }

  static std::int64_t ttl_ms(std::chrono::nanoseconds ttl) noexcept {
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(ttl).count();
    return std::max<std::int64_t>(ms, 1);
  }

  bool encode_key(const Key& key, std::string& out) const noexcept {
    try {
      out.assign(config_.key_prefix);
      codec_.encode(key, out);
      detail::redis_escape_key(out, config_.key_prefix.size());
      return true;
    } catch (...) {
      return false;
    }
  }

  bool encode_value(const Value& value, std::string& out) const noexcept {
    try {
      out.clear();
      codec_.encode(value, out);
      return true;
    } catch (...) {
      return false;
    }
  }

  std::optional<Value> decode(std::string_view bytes) const noexcept {
    auto v = detail::redis_decode_value<Value>(codec_, bytes, config_.max_value_size);
    if (!v) decode_errors_.add();
    return v;
  }

  /// Bytes a reply carrying `values` values may buffer.
  std::size_t reply_limit(std::size_t values = 1) const noexcept {
    return std::max<std::size_t>(values, 1) * (config_.max_value_size + 64) + (64U << 10);
  }

  status read_reply(connection& c, redis_reply_holder& out,
                    std::size_t limit) const noexcept {
    return router_.read_reply(c, out, limit);
  }

  template <class... Args>
  status exec(connection& c, Args&&... args) const noexcept {
    return router_.exec(c, std::forward<Args>(args)...);
  }

  auto command_deadline() const noexcept { return router_.command_deadline(); }

  bool put_impl(const Key& key, const Value& value,
                std::optional<std::chrono::nanoseconds> ttl) noexcept {
    bool oversized = false;
    const bool ok = run(slot_of(key), [&](connection& c) {
      if (!encode_key(key, c.key) || !encode_value(value, c.value)) return status::codec;
      if (c.value.size() > config_.max_value_size) {
        // Rejected; delete the key so that Redis does not keep serving the value this
        // put was meant to replace.
        oversized = true;
        const std::string_view args[] = {"DEL", c.key};
        redis_reply_holder r;
        if (const status s = exec(c, args, r, reply_limit()); s != status::ok) return s;
        return r->type == REDIS_REPLY_INTEGER ? status::ok : status::server;
      }
      char px[24];
      std::size_t px_len = 0;
      if (ttl)
        px_len = static_cast<std::size_t>(
            std::to_chars(px, px + sizeof px, ttl_ms(*ttl)).ptr - px);
      const char* argv[] = {"SET", c.key.data(), c.value.data(), "PX", px};
      const std::size_t lens[] = {3, c.key.size(), c.value.size(), 2, px_len};
      redis_reply_holder r;
      if (const status s = exec(c, ttl ? 5 : 3, argv, lens, r, reply_limit());
          s != status::ok)
        return s;
      return r->type == REDIS_REPLY_STATUS ? status::ok : status::server;
    });
    if (oversized) {
      oversized_.add();
      rejected_puts_.add();
      failed_writes_.add();
      if (!ok) remember_for_repair(key);
      return false;
    }
    if (ok) {
      puts_.add();
    } else {
      rejected_puts_.add();
      failed_writes_.add();
      remember_for_repair(key);
    }
    return ok;
  }
  // ---- calls ---------------------------------------------------------------------------

  /// Runs op(connection) -> status with a pooled, open connection to the master of
  /// `slot` (the one server when not clustered), under the breaker. True when op
  /// returned ok. Never throws.
  template <class Op>
  bool run(std::uint16_t slot, Op&& op) const noexcept {
    return guarded([&](auto&& wrapped) { return router_.run(slot, wrapped); }, op);
  }

  /// As run for a read: on a replica first with sentinel.read_from_replicas.
  template <class Op>
  bool run_read(std::uint16_t slot, Op&& op) const noexcept {
    return guarded([&](auto&& wrapped) { return router_.run_read(slot, wrapped); }, op);
  }

  /// As run, once on every master (SCAN-based operations).
  template <class Op>
  bool run_each_master(Op&& op) const noexcept {
    return guarded([&](auto&& wrapped) { return router_.run_each_master(wrapped); }, op);
  }

  template <class Dispatch, class Op>
  bool guarded(Dispatch dispatch, Op& op) const noexcept {
    if constexpr (has_breaker) {
      auto permit = breaker_->try_acquire();
      if (!permit) {
        short_circuited_.add();
        return false;
      }
      const status s = run_pooled(dispatch, op);
      if (s == status::ok) {
        permit.success();
      } else if (s == status::transport) {
        permit.failure();
      } else {
        permit.ignore();
      }
      return s == status::ok;
    } else {
      return run_pooled(dispatch, op) == status::ok;
    }
  }

  /// One call: first the pending repairs, then op; counts what went wrong (the pools
  /// count transport errors and connects). On a cluster (or reading from replicas) the
  /// repairs go key by key to their masters; otherwise they run on op's connection first.
  template <class Dispatch, class Op>
  status run_pooled(Dispatch& dispatch, Op& op) const noexcept {
    status s = status::ok;
    if (router_.clustered() || router_.replica_reads()) {
      if (repairs_.flagged()) {
        s = detail::redis_tier_repair_by_key(router_, repairs_, config_.key_prefix,
                                             reply_limit(), repaired_);
      }
      if (s == status::ok) s = dispatch(op);
    } else {
      s = dispatch([&](connection& c) {
        status r = status::ok;
        if (repairs_.flagged()) {
          r = detail::redis_tier_repair_on(router_, c, repairs_, config_.key_prefix,
                                           config_.max_batch, reply_limit(), repaired_);
        }
        return r == status::ok ? op(c) : r;
      });
    }
    if (s == status::backoff) {
      short_circuited_.add();
    } else if (s == status::too_large) {
      oversized_.add();
      decode_errors_.add();
    } else if (s == status::server) {
      server_errors_.add();
    }
    return s;
  }

  /// The hash slot of key's Redis key (0 when not clustered).
  std::uint16_t slot_of(const Key& key) const noexcept {
    if (!router_.clustered()) return 0;
    thread_local std::string scratch;
    return encode_key(key, scratch) ? router_.slot_of(scratch) : std::uint16_t{0};
  }

  // ---- repair after failed writes --------------------------------------------------

  void remember_for_repair(const Key& key) const noexcept {
    if (config_.max_repair_keys == 0) return;
    try {
      std::string k;
      if (encode_key(key, k)) repairs_.remember(std::move(k));
    } catch (...) {  // cannot remember it: TTLs remain the bound
    }
  }

  template <class F>
  status scan(connection& c, F&& on_keys) const {
    return detail::redis_scan_namespace(router_.first_pool(), c, config_.key_prefix,
                                        reply_limit(), std::forward<F>(on_keys));
  }

  status clear_namespace(connection& c) const {
    return detail::redis_unlink_namespace(router_.first_pool(), c, config_.key_prefix,
                                          reply_limit());
  }

  const redis_tier_config config_;
  const std::optional<std::chrono::nanoseconds> default_ttl_;
  const Codec codec_;
  Breaker* const breaker_;
  mutable detail::redis_router<Clock> router_;

  mutable detail::redis_repair_set repairs_{config_.max_repair_keys};

  mutable counter hits_, misses_, puts_, rejected_puts_, failed_reads_, failed_writes_,
      server_errors_, decode_errors_, short_circuited_, erased_, repaired_, oversized_;
};

static_assert(redis_breaker<circuit_breaker<>>);
static_assert(cache_tier<redis_tier<std::string, std::string>>);

}  // namespace outgrow
