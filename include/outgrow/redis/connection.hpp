// outgrow/redis/connection.hpp — where and how every outgrow Redis part connects.
//
// redis_tier, redis_invalidation_bus and redis_stream_queue (and every Redis part to
// come) take one nested `connection` field of this type instead of repeating host, port,
// timeouts and reconnect settings:
//
//   outgrow::redis_tier<std::string, std::string> l2({
//       .connection = {.host = "10.0.0.5", .port = 6380, .password = "s3cret"},
//       .key_prefix = "shop:"});
//
// Fields left unset keep each part's own default, however the rest is written: an unset
// command_timeout is 1 s for the stream queue (it waits for its broker) and 100 ms for
// the tier and the bus (a cache must not wait).
//
// The wire-level plumbing every part shares (connect with AUTH / SELECT, binary-safe
// commands, reads and writes bounded by deadlines, the connection pool, the reconnect
// backoff) lives in redis/detail/ (connection.hpp, pool.hpp, reconnect_gate.hpp).
//
// Topology: one standalone redis-server (host, port), or a master found through Redis
// Sentinel (`sentinel`): every connect asks the sentinels, in order, for the address of
// `sentinel.master_name` (SENTINEL get-master-addr-by-name), connects there and checks
// with ROLE that the node is a master (a node just demoted, or a stale answer, is not
// used). After a failover the old master's connections break (Sentinel kills its
// clients when it reconfigures it; a -READONLY reply also closes a connection) and the
// next connect finds the new master:
//
//   .connection = {.sentinel = {.sentinels = {{"10.0.0.7", 26379}, {"10.0.0.8", 26379}},
//                               .master_name = "shop"}}
//
// What a failover costs: commands fail (as while a standalone server is down — each part
// reports it its own way) from the master's death until the sentinels promote a replica
// (down-after-milliseconds + the election, ~1-2 s with down-after 1 s in our tests) and
// the part's reconnect backoff lets it connect. Writes the old master acknowledged but
// had not yet replicated are lost (Redis replication is asynchronous). Reads go to the
// master unless `sentinel.read_from_replicas` is set (redis_tier only; every other part
// refuses it, as its reads must see its own writes): redis_tier's get / get_many then go
// to a replica the sentinels list (SENTINEL replicas <name>: one not down, disconnected
// or with its master link down; ROLE checked to be a connected replica on connect; the
// pool's connections spread over them), and fall back to the master when no replica
// answers (metrics().replica_reads / replica_fallbacks). Staleness: replication is
// asynchronous, so a replica may not yet have a write the master acknowledged — a get
// right after a put may miss or return the older value (typically for under a
// millisecond on a LAN, for seconds when a replica lags or resyncs). Use it for read-
// heavy caches that tolerate that; puts, erases, clear and size stay on the master.
//
// Or a Redis Cluster (`cluster`): the slot map is read with CLUSTER SLOTS from the seed
// nodes, and each command goes to the master of its key's hash slot (one connection
// pool per node). A MOVED reply updates that slot (and re-reads the map, at most every
// 100 ms), an ASK reply is followed once with ASKING, TRYAGAIN and CLUSTERDOWN are
// retried after a short pause — all within `cluster.max_redirects` — so resharding is
// invisible to callers. A command whose node fails is not retried (it may have run); the
// map is re-read so the next command finds a promoted replica.
//
//   .connection = {.cluster = {.nodes = {{"10.0.0.7", 7000}, {"10.0.0.8", 7000}}}}
//
// Commands over several keys must keep them in one slot: each part says how its keys are
// laid out (hash tags) and refuses, at construction, a configuration that could not work.
//
// Validation: each part validates its `connection` when constructed and reports errors as
// "<part>: connection.<field> ..." (outgrow::config_error).
//
// Thread-safety: a plain value type. Complexity: validation is O(length of the strings).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <outgrow/core/backoff.hpp>
#include <outgrow/core/error.hpp>

namespace outgrow {

/// A node's address: a Sentinel's, or a Redis server's.
struct redis_endpoint {
  std::string host = "127.0.0.1";
  int port = 26379;  ///< [1, 65535]
};

/// Where to find the master when Redis runs under Sentinel.
struct redis_sentinel_config {
  /// Sentinels to ask, first to last, on every connect. Empty = no Sentinel: `host` and
  /// `port` name the server. At most 16.
  std::vector<redis_endpoint> sentinels{};
  /// The monitored master's name (`sentinel monitor <name> ...`); required with
  /// sentinels, and must be empty without them.
  std::string master_name{};
  /// AUTH password of the sentinels (empty = none); the data nodes use `password`.
  /// Must be empty without sentinels.
  std::string password{};
  /// Serve redis_tier's reads from the replicas (see above: possibly stale); false =
  /// every command to the master. Only with sentinels, and only redis_tier accepts it.
  bool read_from_replicas = false;
};

/// Where to find the nodes when Redis runs as a Redis Cluster.
struct redis_cluster_config {
  /// Seed nodes (any masters or replicas): the slot map is read from the first that
  /// answers CLUSTER SLOTS, and the other nodes are learnt from it. Empty = no cluster.
  /// At most 64.
  std::vector<redis_endpoint> nodes{};
  /// How many MOVED / ASK redirections and TRYAGAIN / CLUSTERDOWN retries one command
  /// follows before it fails. [0, 16]
  int max_redirects = 5;
};

struct redis_connection_config {
  /// Redis host name or address, and port (unused, still validated, under Sentinel).
  std::string host = "127.0.0.1";
  int port = 6379;  ///< [1, 65535]
  /// AUTH password sent on connect (empty = none).
  std::string password{};
  /// SELECTed database. [0, 1e6]
  int database = 0;
  /// Bound of one connect: 200 ms. (0, 1 h]
  std::chrono::nanoseconds connect_timeout = std::chrono::milliseconds{200};
  /// Bound of each command (its socket reads and writes): empty = the part's own default,
  /// 100 ms for redis_tier, the invalidation bus and session_store, 1 s for the stream
  /// queue (a queue waits for its broker, a cache does not) — so writing
  /// `.connection = {.host = ...}` keeps each part's default. (0, 1 h]
  std::optional<std::chrono::nanoseconds> command_timeout{};
  /// Delay between connect attempts while Redis is unreachable.
  full_jitter_backoff reconnect_backoff{std::chrono::milliseconds{10},
                                        std::chrono::seconds{1}};
  /// Seed of the backoff's jitter: empty = random per instance (see core/seed.hpp), so
  /// a fleet that lost Redis at the same moment does not reconnect in lock-step. Set it
  /// only for reproducible tests.
  std::optional<std::uint64_t> seed{};
  /// Sentinel topology: find the master through these sentinels (see above).
  redis_sentinel_config sentinel{};
  /// Cluster topology: route each key to its slot's master (see above). Not together
  /// with sentinel; `database` must be 0 (a cluster has only database 0).
  redis_cluster_config cluster{};
};

namespace detail {

/// Validates `c` as the `connection` field of part `who`; throws config_error naming
/// "connection.<field>". Only a part that can read from replicas (redis_tier) passes
/// `replica_reads` = true; the others refuse sentinel.read_from_replicas.
inline void validate_connection(std::string_view who, const redis_connection_config& c,
                                bool replica_reads = false) {
  using namespace std::chrono_literals;
  require(!c.host.empty(), who, "connection.host", "a host name or address", "\"\"");
  require_in_range(who, "connection.port", c.port, 1, 65535);
  require_in_range(who, "connection.database", c.database, 0, 1'000'000);
  require_in_range(who, "connection.connect_timeout", c.connect_timeout,
                   std::chrono::nanoseconds{1}, std::chrono::nanoseconds{1h});
  if (c.command_timeout) {
    require_in_range(who, "connection.command_timeout", *c.command_timeout,
                     std::chrono::nanoseconds{1}, std::chrono::nanoseconds{1h});
  }
  const redis_sentinel_config& s = c.sentinel;
  require_in_range(who, "connection.sentinel.sentinels (count)", s.sentinels.size(),
                   std::size_t{0}, std::size_t{16});
  for (const redis_endpoint& e : s.sentinels) {
    require(!e.host.empty(), who, "connection.sentinel.sentinels[].host",
            "a host name or address", "\"\"");
    require_in_range(who, "connection.sentinel.sentinels[].port", e.port, 1, 65535);
  }
  const redis_cluster_config& k = c.cluster;
  require_in_range(who, "connection.cluster.nodes (count)", k.nodes.size(), std::size_t{0},
                   std::size_t{64});
  for (const redis_endpoint& e : k.nodes) {
    require(!e.host.empty(), who, "connection.cluster.nodes[].host",
            "a host name or address", "\"\"");
    require_in_range(who, "connection.cluster.nodes[].port", e.port, 1, 65535);
  }
  require_in_range(who, "connection.cluster.max_redirects", k.max_redirects, 0, 16);
  if (!k.nodes.empty()) {
    require(s.sentinels.empty(), who, "connection.sentinel.sentinels",
            "empty with a cluster (a cluster fails over by itself)", s.sentinels.size());
    require(c.database == 0, who, "connection.database", "0 with a cluster", c.database);
  }
  if (s.sentinels.empty()) {
    require(s.master_name.empty(), who, "connection.sentinel.master_name",
            "empty without sentinels", s.master_name);
    require(s.password.empty(), who, "connection.sentinel.password",
            "empty without sentinels (only the sentinels use it; the server's is "
            "`password`)",
            "a password (not shown)");
  } else {
    require(!s.master_name.empty(), who, "connection.sentinel.master_name",
            "a master name when sentinels are given", "\"\"");
  }
  if (s.read_from_replicas) {
    require(replica_reads, who, "connection.sentinel.read_from_replicas",
            "false (only redis_tier reads from replicas)", true);
    require(!s.sentinels.empty(), who, "connection.sentinel.read_from_replicas",
            "false without sentinels", true);
  }
}

/// The command timeout `c` asks for, or the 100 ms default of redis_tier and the bus
/// (the stream queue fills in its own 1 s before connecting).
[[nodiscard]] inline std::chrono::nanoseconds command_timeout(
    const redis_connection_config& c) noexcept {
  return c.command_timeout.value_or(std::chrono::milliseconds{100});
}

}  // namespace detail
}  // namespace outgrow
