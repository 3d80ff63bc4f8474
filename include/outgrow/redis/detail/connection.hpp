// outgrow/redis/detail/connection.hpp — the hiredis plumbing every outgrow Redis part
// shares: open a connection, send a command, read a reply, all within deadlines.
//
// One place for what redis_tier, redis_invalidation_bus and redis_stream_queue (and the
// Sentinel / Cluster topologies and the session store of issue 18) do on the wire:
//   - redis_open(redis_connection_config): a blocking connect bounded by connect_timeout,
//     the socket timeout set to command_timeout, TCP keep-alive, AUTH and SELECT;
//   - redis_argv: one command given as binary-safe arguments (no format strings);
//   - redis_flush_until / redis_read_until: write a (pipelined) buffer and read a reply
//     before an absolute deadline, re-arming the socket timeout with the time left before
//     each read or write, so a reply trickling in byte by byte cannot stretch a command
//     past its bound; a read also stops buffering at a size limit.
// The connection pool (detail/pool.hpp) and the reconnect backoff
// (detail/reconnect_gate.hpp) are built on these. redis_open also resolves the topology
// for a single connection: Sentinel's master, or a Cluster's first reachable seed (for
// commands that are not pinned to a slot); detail/cluster.hpp routes by slot.
// redis_open_replica opens one of Sentinel's replicas instead (redis_tier's reads with
// sentinel.read_from_replicas).
#pragma once

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/reply.hpp>

namespace outgrow::detail {

/// A duration as a timeval, at least 1 us (a zero timeval would mean "no timeout").
inline timeval redis_timeval(std::chrono::nanoseconds d) noexcept {
  const auto us = std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(us / 1'000'000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>(us % 1'000'000);
  return tv;
}

/// Runs one command given as arguments; null on a transport error (c->err set).
inline redis_reply_ptr redis_argv(redisContext* c, std::span<const std::string_view> args) {
  constexpr std::size_t small = 8;
  const char* argv[small];
  std::size_t lens[small];
  std::vector<const char*> big_argv;
  std::vector<std::size_t> big_lens;
  const char** av = argv;
  std::size_t* al = lens;
  if (args.size() > small) {
    big_argv.resize(args.size());
    big_lens.resize(args.size());
    av = big_argv.data();
    al = big_lens.data();
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    av[i] = args[i].data();
    al[i] = args[i].size();
  }
  return redis_reply_ptr(
      static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(args.size()), av, al)));
}

/// Appends one command in Redis's protocol (RESP: an array of bulk strings) to `out`;
/// what redisAppendCommandArgv formats, without its per-argument allocations.
inline void redis_format_command(std::string& out, std::span<const std::string_view> args) {
  const auto number = [&out](char tag, std::size_t n) {
    char digits[24];
    digits[0] = tag;
    const auto end = std::to_chars(digits + 1, digits + sizeof digits - 2, n).ptr;
    end[0] = '\r';
    end[1] = '\n';
    out.append(digits, end + 2);
  };
  number('*', args.size());
  for (const std::string_view a : args) {
    number('$', a.size());
    out.append(a);
    out.append("\r\n", 2);
  }
}

/// Writes c's output buffer, re-arming the socket timeout with the time left before
/// `deadline` before each write: the whole write ends by the deadline.
inline bool redis_flush_until(redisContext* c,
                              std::chrono::steady_clock::time_point deadline) noexcept {
  int done = 0;
  while (done == 0) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return false;
    if (redisSetTimeout(c, redis_timeval(left)) != REDIS_OK) return false;
    if (redisBufferWrite(c, &done) != REDIS_OK) return false;
  }
  return true;
}

/// Reads one reply before `deadline` (the socket timeout re-armed with the time left
/// before each read, so a reply trickling in cannot stretch the wait), buffering at most
/// `max_bytes` of it.
inline redis_io redis_read_until(redisContext* c,
                                 std::chrono::steady_clock::time_point deadline,
                                 std::size_t max_bytes, redis_reply_ptr& out) noexcept {
  for (;;) {
    void* raw = nullptr;
    if (redisGetReplyFromReader(c, &raw) != REDIS_OK) return redis_io::transport;
    if (raw != nullptr) {
      out.reset(static_cast<redisReply*>(raw));
      return redis_io::ok;
    }
    if (c->reader->len - c->reader->pos > max_bytes) return redis_io::too_large;
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return redis_io::transport;
    if (redisSetTimeout(c, redis_timeval(left)) != REDIS_OK) return redis_io::transport;
    if (redisBufferRead(c) != REDIS_OK) return redis_io::transport;
  }
}

/// Opens a blocking connection to host:port with e's timeouts, AUTHed with `password`
/// and SELECTed to `database` (0 = no SELECT); null and `error` set on failure.
/// Throws: std::bad_alloc if memory runs out.
inline redis_context_ptr redis_open_node(const redis_connection_config& e,
                                         const std::string& host, int port,
                                         std::string_view password, int database,
                                         std::string& error) {
  redis_context_ptr c(
      redisConnectWithTimeout(host.c_str(), port, redis_timeval(e.connect_timeout)));
  if (!c) {
    error = "cannot allocate a hiredis context";
    return nullptr;
  }
  if (c->err != 0) {
    error = c->errstr;
    return nullptr;
  }
  if (redisSetTimeout(c.get(), redis_timeval(command_timeout(e))) != REDIS_OK) {
    error = "cannot set the socket timeout";
    return nullptr;
  }
  (void)redisEnableKeepAlive(c.get());
  const auto ok = [&](redis_reply_ptr r) {
    if (!r) {
      error = c->errstr;
      return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      error = std::string(r->str, r->len);
      return false;
    }
    return true;
  };
  if (!password.empty()) {
    const std::string_view args[] = {"AUTH", password};
    if (!ok(redis_argv(c.get(), args))) return nullptr;
  }
  if (database != 0) {
    const std::string db = std::to_string(database);
    const std::string_view args[] = {"SELECT", db};
    if (!ok(redis_argv(c.get(), args))) return nullptr;
  }
  return c;
}

/// The text of a string (or status) reply, empty for any other type.
[[nodiscard]] inline std::string_view redis_text(const redisReply* r) noexcept {
  if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) {
    return {};
  }
  return {r->str, r->len};
}

/// A port given as text by a server: digits only, [1, 65535]; 0 when it is not one.
[[nodiscard]] inline int redis_parse_port(std::string_view text) noexcept {
  if (text.empty() || text.size() > 5) return 0;
  int port = 0;
  for (const char ch : text) {
    if (ch < '0' || ch > '9') return 0;
    port = port * 10 + (ch - '0');
  }
  return port >= 1 && port <= 65535 ? port : 0;
}

/// Asks e's sentinels, in order, where the master named e.sentinel.master_name is; the
/// first well-formed answer wins. Answers are untrusted: a host that is not 1-255
/// printable characters or a port that is not [1, 65535] is skipped as an error.
[[nodiscard]] inline std::optional<redis_endpoint> redis_sentinel_master(
    const redis_connection_config& e, std::string& error) {
  error.clear();
  for (const redis_endpoint& s : e.sentinel.sentinels) {
    std::string why;
    redis_context_ptr c = redis_open_node(e, s.host, s.port, e.sentinel.password, 0, why);
    if (c) {
      const std::string_view args[] = {"SENTINEL", "get-master-addr-by-name",
                                       e.sentinel.master_name};
      const redis_reply_ptr r = redis_argv(c.get(), args);
      if (!r) {
        why = c->errstr;
      } else if (r->type == REDIS_REPLY_NIL) {
        why = "does not know this master name";
      } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        why = r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len)
                                           : std::string("an unexpected reply");
      } else {
        const std::string_view host = redis_text(r->element[0]);
        const int port = redis_parse_port(redis_text(r->element[1]));
        const bool printable = std::all_of(host.begin(), host.end(),
                                           [](char ch) { return ch > ' ' && ch < 127; });
        if (!host.empty() && host.size() <= 255 && printable && port != 0) {
          return redis_endpoint{std::string(host), port};
        }
        why = "a malformed address";
      }
    }
    if (!error.empty()) error += "; ";
    error += "sentinel " + s.host + ":" + std::to_string(s.port) + ": " + why;
  }
  return std::nullopt;
}

/// True if the node c is connected to answers ROLE as a master.
[[nodiscard]] inline bool redis_is_master(redisContext* c, std::string& error) {
  const std::string_view args[] = {"ROLE"};
  const redis_reply_ptr r = redis_argv(c, args);
  if (!r) {
    error = c->errstr;
    return false;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 ||
      redis_text(r->element[0]) != "master") {
    error = "the node the sentinels named is not a master (a failover is under way)";
    return false;
  }
  return true;
}

/// Asks e's sentinels, in order, for the replicas of e.sentinel.master_name (SENTINEL
/// replicas); the first well-formed answer wins. A replica flagged down or disconnected,
/// or whose master link is not ok, is left out; the answers are untrusted (fields read by
/// name, addresses checked as for the master). Empty (and `error` set) when no sentinel
/// answered or none is usable.
/// Throws: std::bad_alloc if memory runs out.
[[nodiscard]] inline std::vector<redis_endpoint> redis_sentinel_replicas(
    const redis_connection_config& e, std::string& error) {
  error.clear();
  std::vector<redis_endpoint> out;
  for (const redis_endpoint& s : e.sentinel.sentinels) {
    std::string why;
    redis_context_ptr c = redis_open_node(e, s.host, s.port, e.sentinel.password, 0, why);
    if (c) {
      const std::string_view args[] = {"SENTINEL", "replicas", e.sentinel.master_name};
      const redis_reply_ptr r = redis_argv(c.get(), args);
      if (!r || r->type != REDIS_REPLY_ARRAY) {
        why = !r                             ? std::string(c->errstr)
              : r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len)
                                             : std::string("an unexpected reply");
      } else {
        for (std::size_t i = 0; i < r->elements; ++i) {
          const redisReply* fields = r->element[i];
          if (fields->type != REDIS_REPLY_ARRAY) continue;
          std::string_view host, port, flags, link;
          for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
            const std::string_view name = redis_text(fields->element[f]);
            const std::string_view value = redis_text(fields->element[f + 1]);
            if (name == "ip") host = value;
            if (name == "port") port = value;
            if (name == "flags") flags = value;
            if (name == "master-link-status") link = value;
          }
          const int p = redis_parse_port(port);
          const bool printable = std::all_of(host.begin(), host.end(),
                                             [](char ch) { return ch > ' ' && ch < 127; });
          const bool down = flags.find("down") != std::string_view::npos ||
                            flags.find("disconnected") != std::string_view::npos;
          if (!host.empty() && host.size() <= 255 && printable && p != 0 && !down &&
              link == "ok") {
            out.push_back({std::string(host), p});
          }
        }
        if (!out.empty()) return out;
        why = "no usable replica";
      }
    }
    if (!error.empty()) error += "; ";
    error += "sentinel " + s.host + ":" + std::to_string(s.port) + ": " + why;
  }
  return out;
}

/// Opens a connection to one of the replicas the sentinels list for e's master, trying
/// them in turn from the `pick`-th (so a pool's connections spread over them), checked
/// with ROLE to be a replica whose link to its master is up; null and `error` set when
/// none is usable (the caller falls back to the master).
/// Throws: std::bad_alloc if memory runs out.
inline redis_context_ptr redis_open_replica(const redis_connection_config& e,
                                            std::uint64_t pick, std::string& error) {
  const std::vector<redis_endpoint> replicas = redis_sentinel_replicas(e, error);
  for (std::size_t k = 0; k < replicas.size(); ++k) {
    const redis_endpoint& n = replicas[(pick + k) % replicas.size()];
    std::string why;
    redis_context_ptr c = redis_open_node(e, n.host, n.port, e.password, e.database, why);
    if (c) {
      const std::string_view args[] = {"ROLE"};
      const redis_reply_ptr r = redis_argv(c.get(), args);
      if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 4 &&
          redis_text(r->element[0]) == "slave" &&
          redis_text(r->element[3]) == "connected") {
        return c;
      }
      why = r ? "not a replica connected to its master" : std::string(c->errstr);
    }
    if (!error.empty()) error += "; ";
    error += "replica " + n.host + ":" + std::to_string(n.port) + ": " + why;
  }
  return nullptr;
}

/// Opens a blocking connection to the server `e` names — its host and port, under
/// Sentinel the master the sentinels name, checked with ROLE, and on a Cluster the first
/// of cluster.nodes that accepts (for commands not pinned to a slot, such as pub/sub;
/// slot-pinned parts use detail/cluster.hpp) — with both timeouts set, AUTHed and
/// SELECTed; null and `error` set on failure.
/// Throws: std::bad_alloc if memory runs out.
inline redis_context_ptr redis_open(const redis_connection_config& e, std::string& error) {
  if (!e.cluster.nodes.empty()) {
    // Not pinned to a slot (the pub/sub bus: classic PUBLISH / SUBSCRIBE reach the
    // whole cluster): the first seed node that accepts the connection.
    error.clear();
    for (const redis_endpoint& n : e.cluster.nodes) {
      std::string why;
      redis_context_ptr c = redis_open_node(e, n.host, n.port, e.password, 0, why);
      if (c) return c;
      if (!error.empty()) error += "; ";
      error += "node " + n.host + ":" + std::to_string(n.port) + ": " + why;
    }
    return nullptr;
  }
  if (e.sentinel.sentinels.empty()) {
    return redis_open_node(e, e.host, e.port, e.password, e.database, error);
  }
  const std::optional<redis_endpoint> master = redis_sentinel_master(e, error);
  if (!master) return nullptr;
  redis_context_ptr c =
      redis_open_node(e, master->host, master->port, e.password, e.database, error);
  if (!c || !redis_is_master(c.get(), error)) return nullptr;
  return c;
}

/// True for a -READONLY error reply: the connection is to a node that is no longer the
/// master (a failover demoted it); close it so the next connect finds the new one.
[[nodiscard]] inline bool redis_is_readonly_error(const redisReply* r) noexcept {
  return r != nullptr && r->type == REDIS_REPLY_ERROR &&
         std::string_view(r->str, r->len).starts_with("READONLY");
}

}  // namespace outgrow::detail
