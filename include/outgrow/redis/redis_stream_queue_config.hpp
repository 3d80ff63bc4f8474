// outgrow/redis/redis_stream_queue_config.hpp — the configuration of a queue on a Redis
// stream, shared by redis_stream_queue, redis_stream_worker and redis_dead_letters.
//
// What: one value type that every object of one queue is built from — producers,
// workers and the dead-letter admin of one queue pass the same config (each worker its
// own `consumer`). The semantics of each field are in redis/redis_stream_queue.hpp;
// defaults and ranges are beside each field below.
//
//   outgrow::redis_stream_queue_config cfg{
//       .connection = {.host = "10.0.0.5"},  // an unset command_timeout is 1 s here
//       .stream = "{shop}:orders", .max_attempts = 5};
//
// When: include this header alone where a config is built or loaded (it needs no hiredis);
// include redis_stream_queue.hpp to use the queue.
//
// Validation: every constructor taking the config validates it and throws
// outgrow::config_error naming the field, its value and the allowed range
// ("redis_stream_queue: connection.port must be in [1, 65535], got 0"). Constructing
// never needs Redis.
//
// Trade-offs: one config for all sides keeps the derived keys identical everywhere; a
// field only one side reads (enqueue_deadline: producers; batch: workers) is ignored by
// the others.
//
// Thread-safety: a plain value type. Complexity: validation is O(length of the strings);
// no measurable cost (once per constructed object).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <outgrow/core/error.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/stream_keys.hpp>

namespace outgrow {

/// What enqueue() does when Redis cannot be reached.
enum class redis_unavailable_policy : std::uint8_t {
  fail = 0,   ///< return enqueue_status::unavailable at once
  block = 1,  ///< retry (reconnecting with backoff) until enqueue_deadline
};

struct redis_stream_queue_config {
  /// Where and how to connect (redis/connection.hpp). An unset command_timeout is the
  /// queue's own 1 s (redis_tier's is 100 ms: a queue waits for its broker, a cache does
  /// not); XREADGROUP waits block_timeout longer.
  redis_connection_config connection{};
  /// The stream's key; the other keys derive from it (see redis_stream_queue.hpp). Must not
  /// end in ":dead", ":failures", ":stats" or ":done", nor contain ":done:". On a
  /// cluster (connection.cluster.nodes set) it must contain a {hash tag} — a '{', then a
  /// '}' with at least one byte between, as in "{orders}" or "shop:{orders}" — so that
  /// every derived key lands in the stream's slot.
  std::string stream = "outgrow:jobs";
  /// The consumer group all workers share.
  std::string group = "outgrow:workers";
  /// This worker's consumer name; empty = "<hostname>:<pid>:<random>".
  std::string consumer{};
  /// Deliveries before the dead-letter stream, the first included: 3. [1, 1000]
  std::uint32_t max_attempts = 3;
  /// A pending entry idle this long is claimed by another worker: 30 s (SQS). [1ms, 12h]
  std::chrono::nanoseconds visibility_timeout = std::chrono::seconds{30};
  /// Wait before a failed job may be delivered again: 1 s. [0, visibility_timeout]
  std::chrono::nanoseconds retry_delay = std::chrono::seconds{1};
  /// XREADGROUP BLOCK: 500 ms. Bounds how late request_stop() is seen. [1ms, 1h]
  std::chrono::nanoseconds block_timeout = std::chrono::milliseconds{500};
  /// How often a worker XAUTOCLAIMs idle entries: 1 s. [1ms, 1h]
  std::chrono::nanoseconds claim_interval = std::chrono::seconds{1};
  /// Entries per XREADGROUP / XAUTOCLAIM: 16. [1, 10000]
  std::size_t batch = 16;
  /// MAXLEN ~ of the stream; nullopt (default) = never trim (see redis_stream_queue.hpp).
  std::optional<std::size_t> max_length{};
  /// MAXLEN ~ of the dead-letter stream: 10,000 (Sidekiq's dead set). [1, 2^32]
  std::size_t dead_letter_max_length = 10'000;
  /// How long a completed idempotency key is remembered: 24 h. [1ms, 365 d]
  std::chrono::nanoseconds idempotency_ttl = std::chrono::hours{24};
  /// enqueue() when Redis is unreachable: fail at once (default) or block.
  redis_unavailable_policy on_unavailable = redis_unavailable_policy::fail;
  /// How long a blocking enqueue() keeps trying: 5 s. [0, 1h]
  std::chrono::nanoseconds enqueue_deadline = std::chrono::seconds{5};
  /// Durable enqueue: replicas that must hold a job before enqueue() reports ok (WAIT
  /// after the XADD; see redis_stream_queue.hpp, Durability). 0 (default) = no WAIT: ok
  /// once the master has it. [0, 64]
  int min_replicas = 0;
  /// WAIT's bound with min_replicas > 0: 1 s; fewer acknowledgements by then make the
  /// result enqueue_status::not_durable. [1ms, 1h]
  std::chrono::nanoseconds replica_timeout = std::chrono::seconds{1};
};

namespace detail {

/// `c` checked (throws config_error naming the field, e.g. "connection.port" or
/// "max_attempts"), with an empty consumer replaced by rsq_default_consumer().
inline redis_stream_queue_config rsq_validated(redis_stream_queue_config c) {
  using namespace std::chrono_literals;
  using ns = std::chrono::nanoseconds;
  constexpr std::string_view who = "redis_stream_queue";
  validate_connection(who, c.connection);
  if (!c.connection.command_timeout) c.connection.command_timeout = 1s;
  require(!c.stream.empty(), who, "stream", "a key name", "\"\"");
  require(!rsq_reserved_name(c.stream), who, "stream",
          "a key name not ending in :dead, :failures, :stats or :done nor containing "
          ":done: (the suffixes of the keys a queue derives from its stream)",
          c.stream);
  if (!c.connection.cluster.nodes.empty()) {
    require(rsq_has_hash_tag(c.stream), who, "stream",
            "a key with a {hash tag} on a cluster (\"{orders}\" or \"shop:{orders}\": "
            "the stream and every key derived from it must share one slot)",
            c.stream);
  }
  require(!c.group.empty(), who, "group", "a group name", "\"\"");
  require_in_range(who, "max_attempts", c.max_attempts, std::uint32_t{1},
                   std::uint32_t{1000});
  require_in_range(who, "visibility_timeout", c.visibility_timeout, ns{1ms}, ns{12h});
  require_in_range(who, "retry_delay", c.retry_delay, ns{0}, c.visibility_timeout);
  require_in_range(who, "block_timeout", c.block_timeout, ns{1ms}, ns{1h});
  require_in_range(who, "claim_interval", c.claim_interval, ns{1ms}, ns{1h});
  require_in_range(who, "batch", c.batch, std::size_t{1}, std::size_t{10'000});
  if (c.max_length) {
    require_in_range(who, "max_length", *c.max_length, std::size_t{1},
                     std::size_t{1} << 40);
  }
  require_in_range(who, "dead_letter_max_length", c.dead_letter_max_length, std::size_t{1},
                   std::size_t{1} << 32);
  require_in_range(who, "idempotency_ttl", c.idempotency_ttl, ns{1ms}, ns{24h * 365});
  require_in_range(who, "enqueue_deadline", c.enqueue_deadline, ns{0}, ns{1h});
  require_in_range(who, "min_replicas", c.min_replicas, 0, 64);
  require_in_range(who, "replica_timeout", c.replica_timeout, ns{1ms}, ns{1h});
  if (c.consumer.empty()) c.consumer = rsq_default_consumer();
  return c;
}

}  // namespace detail
}  // namespace outgrow
