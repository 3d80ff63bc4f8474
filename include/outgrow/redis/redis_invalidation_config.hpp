// outgrow/redis/redis_invalidation_config.hpp — redis_invalidation_bus's mode, settings
// and counters.
//
// What: `redis_invalidation_mode` (publish: instances PUBLISH their writes; tracking:
// Redis's client-side caching reports every client's writes), `redis_invalidation_bus_
// config` and `redis_invalidation_bus_metrics`. Semantics of each field are in
// redis/redis_invalidation.hpp; defaults and ranges are beside each field below.
// When: you name these types without the bus itself (a config factory, a metrics
// exporter); redis_invalidation.hpp includes this header. It needs no hiredis.
//
//   outgrow::redis_invalidation_bus_config c{
//       .connection = {.host = "10.0.0.5"},
//       .mode = outgrow::redis_invalidation_mode::tracking,
//       .tracking_prefix = "shop:v1:"};      // the redis_tier's key_prefix
//
// Trade-offs: every field has a working default, so `{}` is a valid config; the bus's
// constructor validates (config_error naming the field, its value and the range).
// Thread-safety: plain values. Complexity / measured cost: none (data only).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <outgrow/redis/connection.hpp>

namespace outgrow {

/// How invalidations travel between instances (see redis_invalidation.hpp).
enum class redis_invalidation_mode : std::uint8_t {
  publish,   ///< instances PUBLISH their writes on `channel` (any topology)
  tracking,  ///< Redis reports every client's writes (CLIENT TRACKING; on a cluster, per
             ///< master)
};

struct redis_invalidation_bus_config {
  /// Where Redis is and how long to wait: connect 200 ms, command 100 ms (as redis_tier),
  /// reconnect backoff 10 ms .. 1 s with a random jitter seed per bus, so a fleet does
  /// not reconnect in lock-step (set connection.seed for a reproducible one). Pub/sub
  /// ignores connection.database (kept for AUTH/SELECT symmetry). Errors name
  /// "connection.<field>".
  redis_connection_config connection{};
  /// The channel every instance publishes to and subscribes to (tracking mode: for
  /// publish_clear only). Not "__redis__:invalidate" in tracking mode.
  std::string channel = "outgrow:invalidation";
  /// publish (default) or tracking (on a cluster: one connection per master).
  redis_invalidation_mode mode = redis_invalidation_mode::publish;
  /// Tracking mode: the key_prefix of the redis_tier whose keys are watched; empty or
  /// ending with ':' (validated in both modes). Default as redis_tier's.
  std::string tracking_prefix = "outgrow:";
  /// This instance's id in messages; 0 = random. Must differ between instances: a bus
  /// that finds another one subscribed with its id takes a random one (id_conflicts).
  std::uint64_t instance_id = 0;
  /// Subscriber thread wake-up period (retrying pending publishes). [1 ms, 1 h]
  std::chrono::nanoseconds poll_interval = std::chrono::milliseconds{100};
  /// On a Redis Cluster (connection.cluster): true = sharded pub/sub (SPUBLISH /
  /// SSUBSCRIBE, Redis >= 7): messages go only to the master of the channel's hash slot,
  /// not across the whole cluster bus; false = classic PUBLISH / SUBSCRIBE, broadcast to
  /// every node (Redis < 7, or while a fleet that used it is upgraded: both ends of a
  /// channel must use the same kind). Must stay true without a cluster.
  bool sharded_pubsub = true;
  /// Unsent messages kept for re-sending. [0, 1e8]
  std::size_t max_pending = 10'000;
  /// Message ids (sender, sequence number) remembered to drop re-sent duplicates: 4096.
  /// 0 = no deduplication. [0, 1e7]
  std::size_t dedupe_window = 4096;
};

struct redis_invalidation_bus_metrics {
  static constexpr std::string_view metrics_name = "redis_invalidation_bus_metrics";
  std::uint64_t published = 0;         ///< publish() + publish_clear() calls
  std::uint64_t sent = 0;              ///< messages Redis accepted (re-sent ones included)
  std::uint64_t publish_failures = 0;  ///< send attempts that failed
  std::uint64_t publish_busy = 0;  ///< publishes that found the connection busy too long
  std::uint64_t pending = 0;       ///< messages waiting to be re-sent now
  std::uint64_t pending_overflows = 0;  ///< times pending was replaced by one clear
  std::uint64_t received = 0;           ///< messages from other instances, once delivered
  std::uint64_t own_ignored = 0;        ///< our own messages coming back
  std::uint64_t duplicates = 0;         ///< re-sent messages already delivered (dropped)
  std::uint64_t decode_errors = 0;
  std::uint64_t gaps = 0;              ///< gap events delivered (re-subscriptions)
  std::uint64_t subscribes = 0;        ///< successful SUBSCRIBEs
  std::uint64_t connect_failures = 0;  ///< publisher and subscriber
  std::uint64_t id_conflicts = 0;  ///< another bus had our instance id: we took a new one
  std::uint64_t tracked = 0;       ///< tracking: keys Redis reported, delivered
  std::uint64_t tracked_foreign = 0;  ///< tracking: reported keys of other namespaces
  std::uint64_t flushes = 0;          ///< tracking: FLUSHALL / FLUSHDB, delivered as clears
  std::uint64_t heartbeat_timeouts = 0;  ///< tracking: connections found dead by PING
  std::uint64_t subscribers = 0;         ///< local subscribers now
  bool subscribed = false;               ///< the subscriber is subscribed now

  template <class F>
  void for_each_metric(F&& f) const {
    f("published", published);
    f("sent", sent);
    f("publish_failures", publish_failures);
    f("publish_busy", publish_busy);
    f("pending", pending);
    f("pending_overflows", pending_overflows);
    f("received", received);
    f("own_ignored", own_ignored);
    f("duplicates", duplicates);
    f("decode_errors", decode_errors);
    f("gaps", gaps);
    f("subscribes", subscribes);
    f("connect_failures", connect_failures);
    f("id_conflicts", id_conflicts);
    f("tracked", tracked);
    f("tracked_foreign", tracked_foreign);
    f("flushes", flushes);
    f("heartbeat_timeouts", heartbeat_timeouts);
    f("subscribers", subscribers);
    f("subscribed", subscribed);
  }
};

}  // namespace outgrow
