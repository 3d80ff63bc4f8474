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
// Topology: one standalone redis-server. (Sentinel and Cluster are the next step and will
// be described here, so every part gets them through this one field.)
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

#include <outgrow/core/backoff.hpp>
#include <outgrow/core/error.hpp>

namespace outgrow {

struct redis_connection_config {
  /// Redis host name or address, and port.
  std::string host = "127.0.0.1";
  int port = 6379;  ///< [1, 65535]
  /// AUTH password sent on connect (empty = none).
  std::string password{};
  /// SELECTed database. [0, 1e6]
  int database = 0;
  /// Bound of one connect: 200 ms. (0, 1 h]
  std::chrono::nanoseconds connect_timeout = std::chrono::milliseconds{200};
  /// Bound of each command (its socket reads and writes): empty = the part's own default,
  /// 100 ms for redis_tier and the invalidation bus, 1 s for the stream queue (a queue
  /// waits for its broker, a cache does not) — so writing `.connection = {.host = ...}`
  /// keeps each part's default. (0, 1 h]
  std::optional<std::chrono::nanoseconds> command_timeout{};
  /// Delay between connect attempts while Redis is unreachable.
  full_jitter_backoff reconnect_backoff{std::chrono::milliseconds{10},
                                        std::chrono::seconds{1}};
  /// Seed of the backoff's jitter: empty = random per instance (see core/seed.hpp), so
  /// a fleet that lost Redis at the same moment does not reconnect in lock-step. Set it
  /// only for reproducible tests.
  std::optional<std::uint64_t> seed{};
};

namespace detail {

/// Validates `c` as the `connection` field of part `who`; throws config_error naming
/// "connection.<field>".
inline void validate_connection(std::string_view who, const redis_connection_config& c) {
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
}

/// The command timeout `c` asks for, or the 100 ms default of redis_tier and the bus
/// (the stream queue fills in its own 1 s before connecting).
[[nodiscard]] inline std::chrono::nanoseconds command_timeout(
    const redis_connection_config& c) noexcept {
  return c.command_timeout.value_or(std::chrono::milliseconds{100});
}

}  // namespace detail
}  // namespace outgrow
