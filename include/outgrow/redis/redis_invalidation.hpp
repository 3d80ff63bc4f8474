// outgrow/redis/redis_invalidation.hpp — an invalidation bus across instances, over Redis
// pub/sub or Redis's own client-side caching (tracking).
//
// When one service instance writes a key, every other instance must drop its in-process
// copy (L1). redis_invalidation_bus<Key> satisfies `invalidation_bus`
// (cache/invalidation.hpp): publish(key) PUBLISHes the key on a channel every instance
// SUBSCRIBEs to, and a subscriber thread hands what arrives to the local subscribers
// (tiered_cache::connect does the wiring).
//
//   outgrow::redis_invalidation_bus<std::string> bus(
//       {.connection = {.host = "127.0.0.1", .port = 6379}, .channel = "shop:invalidate"});
//   users.connect(bus);       // a tiered_cache: publishes its writes, drops others'
//   bus.start();              // the subscriber thread (you ask for it; stop() or the
//                             // destructor joins it)
//   bus.wait_subscribed(2s);  // optional: serve reads once invalidations flow
//   ...
//   fmt::print("{}\n", bus.metrics());   // redis_invalidation_bus_metrics{published=...}
//
// Guarantees. Local subscribers get each publish exactly once, synchronously. Each
// other subscribed instance gets it at least once, unless it is covered by a clear: a
// message Redis did not acknowledge is kept and re-sent in order (up to max_pending,
// then one clear replaces them), and a subscriber that was disconnected clears its L1
// (a gap event) once re-subscribed. A re-sent message that had reached Redis after all
// is dropped by the receivers (message ids in a window of the last dedupe_window = 4096),
// so within that window delivery is exactly once; beyond it, and for messages in the
// older format, a duplicate can arrive and is harmless (an invalidation applied twice
// drops an L1 entry that is refilled from Redis). Lost for good: pending messages of a
// process that dies (TTLs bound the staleness). Time: publish, publish_clear and
// flush_pending return within connect_timeout + command_timeout each, however many
// publishers wait behind a frozen Redis; stop() waits for the subscriber thread's current
// step (a connect plus a few commands, or a flush).
//
// Delivery.
//   - Local subscribers (caches in this process connected to this bus object) get every
//     publish synchronously, on the publishing thread, exactly as with
//     in_process_invalidation_bus (origin kept, so a cache ignores its own writes).
//   - Other instances get it through Redis: asynchronously (one network round trip),
//     deduplicated (see "Duplicates"), delivered on the subscriber thread with origin 0
//     (origins are cache ids, unique only within a process). A bus recognises and drops
//     its own messages coming back from Redis by a random 64-bit instance id in each
//     message (they were already delivered locally). Two buses with the same id on a
//     channel would drop each other's messages: on every subscribe the bus names its
//     subscriber connection (CLIENT SETNAME outgrow-bus-<channel hash>-<id>) and, when
//     CLIENT LIST shows another client with that name, takes a fresh random id
//     (metrics().id_conflicts). The bus that subscribed first keeps its id. Servers whose
//     ACLs refuse CLIENT SETNAME / LIST skip the check (keep the default random ids there).
//   - Gaps: Redis pub/sub does not queue for a disconnected subscriber, so messages
//     published while the subscriber was disconnected are lost. When the subscriber
//     reconnects (and has re-subscribed, so nothing later can be missed), the bus
//     delivers one local {kind = clear, cause = gap} event; tiered_cache then CLEARS its
//     in-process tiers (not Redis, which writers keep current). We clear rather than
//     revalidate: revalidating would need a version per key in Redis and a round trip
//     per L1 entry, while clearing costs one L1 refill from Redis (cheap) and is correct
//     whatever was missed. Every subscription but the bus's first is a gap (a
//     stop() / start() pair included); start the bus (and wait_subscribed) before
//     serving reads, so that the first one loses nothing.
//   - Failed publishes: a message that cannot be sent (Redis down, timeout) is kept, up
//     to max_pending messages, and re-sent in order once Redis is reachable again (by the
//     next publish, or by the subscriber thread every poll_interval); beyond max_pending
//     they are replaced by one "clear" message. So an instance whose own link failed
//     still invalidates the others when it comes back. An instance that dies with
//     pending messages loses them: TTLs remain the bound on staleness.
//   - Redis Cluster (connection.cluster): by default sharded pub/sub (Redis >= 7): the
//     bus SPUBLISHes to, and SSUBSCRIBEs at, the master of the channel's hash slot
//     (found with CLUSTER SLOTS from the seeds), so a message costs one node, not a
//     broadcast over the cluster bus to every node (what classic PUBLISH does; keep it
//     with sharded_pubsub = false on Redis < 7, and on every instance of a channel).
//     When the slot moves (resharding) the node ends the subscription ("sunsubscribe")
//     and a publish there is answered MOVED: the bus re-subscribes at the new owner (a
//     gap, as any re-subscription) and re-sends the message there; a failover of that
//     master is a lost connection, as with one server. Shown by
//     tests/integration/redis_cluster_test.cpp.
//
// Tracking mode (mode = tracking; Redis >= 6, RESP2 as hiredis 0.14 speaks): Redis itself
// reports writes, so an L1 is invalidated when ANY client writes — another service, a
// script, redis-cli — not only an outgrow instance that publishes.
//
//   outgrow::redis_invalidation_bus<std::string> bus(
//       {.connection = {.host = "127.0.0.1", .port = 6379},
//        .mode = outgrow::redis_invalidation_mode::tracking,
//        .tracking_prefix = "shop:v1:"});   // the redis_tier's key_prefix
//
//   - The subscriber connection runs CLIENT ID, CLIENT TRACKING on REDIRECT <its own id>
//     BCAST PREFIX <tracking_prefix> (no PREFIX when empty: every key), then SUBSCRIBEs
//     to __redis__:invalidate and to `channel`. Redis then sends, for every write by any
//     client to a key under the prefix, the written key names (BCAST: keys this
//     connection never read are reported too — the price of not tracking reads).
//   - Each reported key in the redis_tier namespace tracking_prefix (prefix + escaped
//     key, see redis_tier "Key namespaces") is decoded with the codec and delivered
//     locally as {kind = key, origin 0} (metrics().tracked); keys of other namespaces
//     under the prefix are ignored (tracked_foreign); a key that does not unescape or
//     decode is counted in decode_errors. FLUSHALL / FLUSHDB (a nil payload) is
//     delivered as a clear (flushes). Redis also reports this process's own writes,
//     including the Redis fill after a store load: a cache then drops the entry it just
//     put in L1 and refills it from Redis on the next read (promotion writes no Redis
//     key, so that copy stays): one extra L2 read per write, never a stale value.
//   - publish(key) only delivers to local subscribers and sends nothing (Redis reports
//     the write); publish_clear() still goes over `channel`, as in publish mode.
//   - Connection loss: tracking state lives in the connection, so a lost connection
//     loses every write until it is re-established. The bus delivers a gap (clear) as
//     soon as it sees the loss, another once re-subscribed, and delivering() is false in
//     between: a connected tiered_cache then reads through to Redis and the store (see
//     tiered_cache "Bus gate"), so no stale L1 value is served. A silent drop (no RST) is
//     found by a PING after poll_interval without traffic, unanswered within the command
//     timeout (heartbeat_timeouts): at most poll_interval + command timeout (200 ms by
//     default) of trust in a dead connection.
//   - Cluster: tracking is per node, so on a cluster (connection.cluster) the subscriber
//     opens one connection per master (from CLUSTER SLOTS), each with CLIENT TRACKING
//     ... REDIRECT to itself and SUBSCRIBE __redis__:invalidate; `channel` (for
//     publish_clear) rides on the connection to its slot's master (SSUBSCRIBE with
//     sharded_pubsub). The subscription is one unit: any of these connections lost
//     (a master's death, a heartbeat unanswered) is a gap for all, and all are opened
//     again — at the masters of the new map, once a replica is promoted. Every second
//     the subscriber also re-reads CLUSTER SLOTS (one short connection to a seed) and
//     re-subscribes (a gap) when the masters changed without a connection breaking (a
//     manual failover, a master added). Resharding between known masters needs nothing:
//     every master is tracked. Under Sentinel the subscriber connects to the master the
//     sentinels name, as in publish mode, and each reconnect is a gap (not yet tested
//     through a failover in tracking mode). Shown by
//     tests/integration/redis_tracking_test.cpp.
//
// Wire format (one PUBLISH payload): 'k' (key) or 'c' (clear), the 8-byte little-endian
// instance id, an 8-byte little-endian message number (a per-bus counter starting at a
// random value), then for 'k' the key's bytes (Codec, as in redis_tier; keys are decoded
// here, so the codec must satisfy redis_codec<Codec, Key>, and its validation hooks
// apply). The older format ('K' / 'C', id, key: no message number) is still accepted.
// Messages that do not parse are counted in decode_errors and dropped.
//
// Duplicates: a PUBLISH whose reply timed out may still have reached Redis; the bus then
// re-sends it (see "Failed publishes"), and subscribers would see it twice. Subscribers
// drop a message whose (instance id, message number) is among the last dedupe_window
// (4096) they delivered, counted in metrics().duplicates. Older-format messages and
// duplicates arriving more than dedupe_window messages later are delivered again:
// harmless, as an invalidation applied twice only drops an L1 entry that is then
// refilled from Redis.
//
// Defaults: channel "outgrow:invalidation"; connect 200 ms, command 100 ms (as
// redis_tier); reconnect backoff full jitter 10 ms .. 1 s; poll_interval 100 ms (how
// often the subscriber thread wakes to retry pending publishes; stop() wakes it at once
// through a pipe); max_pending 10000.
//
// delivering() (the optional invalidation_bus member): true while the subscriber is
// subscribed, in both modes. A tiered_cache connected to the bus skips its in-process
// tiers while it is false (before start(), during reconnects): in publish mode too, as
// messages published meanwhile are lost just the same.
//
// Thread-safety: publish, publish_clear, subscribe, metrics, start, stop from any thread.
// Publishes share one connection: a publisher waits for it only until its own deadline
// (connect_timeout + command_timeout from the call), and its connect and PUBLISH get
// what is left of that budget as their timeouts; so every publish (and flush_pending)
// returns within connect + command timeouts however many publishers wait behind a
// frozen Redis — those that found the connection busy too long keep their message
// (metrics().publish_busy) — and not at all while the reconnect backoff runs. Handlers run
// on the publishing thread (local) or the subscriber thread (remote, gaps); they must be
// quick and must not publish on this bus.
// Complexity: publish O(local subscribers) + one round trip (tracking mode: no round
// trip); receive O(local subscribers) per message (tracking: per reported key).
// Measured cost: not yet measured (a publish is one PUBLISH round trip, as a redis_tier
// put; see redis_tier's figures).
//
// Layout: this header is the documentation and the public class;
// redis_invalidation_config.hpp holds the mode, config and metrics; detail/
// invalidation_engine.hpp the engine (publisher, subscriber thread, delivery) and
// detail/invalidation_wire.hpp the message format and the tracking helpers.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include <outgrow/cache/invalidation.hpp>
#include <outgrow/redis/codec.hpp>
#include <outgrow/redis/detail/invalidation_engine.hpp>
#include <outgrow/redis/redis_invalidation_config.hpp>

namespace outgrow {

template <class Key, class Codec = redis_default_codec>
requires redis_codec<Codec, Key>
class redis_invalidation_bus {
 public:
  using key_type = Key;
  using codec_type = Codec;
  using event_type = invalidation_event<Key>;

  /// Connects lazily (publisher) and in start() (subscriber).
  /// Throws: config_error if a config field is out of range (see
  /// redis_invalidation_bus_config).
  explicit redis_invalidation_bus(redis_invalidation_bus_config config = {},
                                  Codec codec = {})
      : engine_(std::move(config), std::move(codec)) {}

  redis_invalidation_bus(const redis_invalidation_bus&) = delete;
  redis_invalidation_bus& operator=(const redis_invalidation_bus&) = delete;

  /// Stops the subscriber thread (see stop()).
  ~redis_invalidation_bus() = default;

  // ---- the invalidation_bus concept --------------------------------------------------

  /// Local subscribers drop `key` now; other instances when the message arrives. False
  /// when the message could not be sent yet (kept for re-sending, see the header).
  /// Tracking mode: local subscribers only, true (Redis reports the write itself).
  /// Throws: what a local subscriber's handler throws; std::bad_alloc if the message
  /// cannot be built.
  bool publish(const Key& key, std::uint64_t origin = 0) {
    return engine_.publish(key, origin);
  }

  /// Every subscriber (local and remote) drops everything.
  /// Throws: what a local subscriber's handler throws; std::bad_alloc if the message
  /// cannot be built.
  bool publish_clear(std::uint64_t origin = 0) { return engine_.publish_clear(origin); }

  /// Calls `handler` for every local publish and every message from other instances
  /// until the subscription is destroyed.
  /// Throws: std::bad_alloc if the subscription cannot be allocated.
  [[nodiscard]] invalidation_subscription subscribe(invalidation_handler<Key> handler) {
    return engine_.subscribe(std::move(handler));
  }

  /// True while the subscriber is subscribed, so that other instances' invalidations
  /// (tracking mode: every client's writes) arrive; see "delivering()" in the header.
  [[nodiscard]] bool delivering() const noexcept { return engine_.delivering(); }

  // ---- the subscriber thread ---------------------------------------------------------

  /// Starts the subscriber thread (idempotent while running).
  /// Throws: std::system_error if the thread or its wake-up pipe cannot be created.
  void start() { engine_.start(); }

  /// Stops and joins the subscriber thread (waits for its current step: a connect and
  /// its handshake commands, or a flush bounded by connect + command timeouts).
  /// Idempotent. Local publishes keep working.
  void stop() noexcept { engine_.stop(); }

  /// Waits until the subscriber is subscribed (true) or `timeout` passed (false).
  template <class Rep, class Period>
  bool wait_subscribed(std::chrono::duration<Rep, Period> timeout) {
    return engine_.wait_subscribed(timeout);
  }

  /// Re-sends pending messages now (the subscriber thread also does it). True when
  /// nothing is left pending.
  bool flush_pending() { return engine_.flush_pending(); }

  [[nodiscard]] redis_invalidation_bus_metrics metrics() const { return engine_.metrics(); }

  /// This instance's id in messages (changes once if another bus already uses it).
  [[nodiscard]] std::uint64_t instance_id() const noexcept { return engine_.instance_id(); }
  [[nodiscard]] const redis_invalidation_bus_config& config() const noexcept {
    return engine_.config();
  }

 private:
  detail::redis_invalidation_engine<Key, Codec> engine_;
};

static_assert(invalidation_bus_with_delivering<redis_invalidation_bus<std::string>>);

}  // namespace outgrow
