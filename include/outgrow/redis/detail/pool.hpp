// outgrow/redis/detail/pool.hpp — a fixed pool of blocking connections to one Redis node.
//
// redis_pool<Clock> holds `size` hiredis connections to the node a redis_connection_config
// names, opened lazily and reopened after a failure through a reconnect_gate (so a dead
// node costs no I/O while its backoff runs). A call borrows one connection (waiting up to
// the pool wait when all are busy), runs its commands within command_timeout (exec,
// read_reply) and gives it back; a transport error or an oversized reply closes that
// connection, so a late reply can never be read as the answer to the next command.
// redis_tier is built on one; the Cluster topology of issue 18 keeps one per node. A
// replica pool (sentinel.read_from_replicas) opens each connection to one of Sentinel's
// replicas in turn (redis_open_replica) instead of the master.
#pragma once

#include <hiredis/hiredis.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/core/metrics.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/connection.hpp>
#include <outgrow/redis/detail/reconnect_gate.hpp>
#include <outgrow/redis/detail/reply.hpp>

namespace outgrow::detail {

/// Outcome of one pooled call. `busy` (no free connection in time) and `backoff` (the
/// reconnect gate is closed: nothing was sent) are not the server's fault.
enum class redis_status : std::uint8_t {
  ok,
  transport,  ///< connect failed, timeout, reset, EOF, protocol error
  server,     ///< an error reply or a reply of an unexpected type
  codec,      ///< the caller's encoding failed (or threw): nothing was sent
  too_large,  ///< a reply over the caller's limit (the connection was closed)
  busy,       ///< no free connection within the pool wait
  backoff,    ///< not tried: the reconnect backoff runs
  unknown,    ///< the caller's op threw once its command may have been sent (e.g. while
              ///< reading the reply): the command may have run. Only callers that tell
              ///< this apart return it (session_link); the pool itself reports an op
              ///< that throws as codec
};

/// One pooled connection and the caller's scratch buffers (reused between calls).
struct redis_pooled_connection {
  redis_context_ptr ctx;
  std::string key;       ///< scratch: an encoded key
  std::string value;     ///< scratch: an encoded value
  bool demoted = false;  ///< a -READONLY reply came: close after this call
  /// The first MOVED / ASK / TRYAGAIN / CLUSTERDOWN error reply of this call (for the
  /// cluster router, detail/cluster.hpp); empty when none came.
  std::string redirect;
};

template <class Clock>
class redis_pool {
 public:
  using deadline_type = std::chrono::steady_clock::time_point;

  /// `seed` seeds the reconnect jitter (resolve_seed(connection.seed)); `replicas`: open
  /// connections to Sentinel's replicas, not to the master.
  redis_pool(const redis_connection_config& connection, std::size_t size,
             std::chrono::nanoseconds wait, std::uint64_t seed, Clock clock,
             bool replicas = false)
      : connection_(connection),
        wait_(wait),
        replicas_(replicas),
        gate_(connection.reconnect_backoff, seed, std::move(clock)),
        connections_(std::make_unique<redis_pooled_connection[]>(size)) {
    free_.reserve(size);
    for (std::size_t i = size; i > 0; --i) free_.push_back(i - 1);
  }

  redis_pool(const redis_pool&) = delete;
  redis_pool& operator=(const redis_pool&) = delete;

  /// Runs op(redis_pooled_connection&) -> redis_status on a borrowed, open connection.
  /// busy, backoff or transport (connect failed) without calling op. An op that throws
  /// is a codec failure. Closes the connection after transport / too_large.
  template <class Op>
  redis_status run(Op&& op) noexcept {
    const auto slot = acquire();
    if (!slot) {
      pool_timeouts_.add();
      return redis_status::busy;
    }
    redis_pooled_connection& c = connections_[*slot];
    redis_status s = ensure_open(c);
    if (s == redis_status::ok) {
      try {
        s = op(c);
      } catch (...) {
        s = redis_status::codec;
      }
      if (s == redis_status::transport) {
        transport_errors_.add();
        close(c);
      } else if (s == redis_status::too_large || c.demoted) {
        close(c);  // unread bytes, or a demoted master: never reuse the connection
      }
    }
    release(*slot);
    return s;
  }

  /// The end of a command started now: command_timeout from now.
  [[nodiscard]] deadline_type command_deadline() const noexcept {
    return std::chrono::steady_clock::now() + command_timeout(connection_);
  }

  /// Reads one (pipelined) reply within command_timeout, buffering at most `limit` bytes.
  redis_status read_reply(redis_pooled_connection& c, redis_reply_ptr& out,
                          std::size_t limit) const noexcept {
    return checked(c, redis_read_until(c.ctx.get(), command_deadline(), limit, out), out);
  }

  /// One command, written and answered within command_timeout in total.
  redis_status exec(redis_pooled_connection& c, int argc, const char** argv,
                    const std::size_t* lens, redis_reply_ptr& out,
                    std::size_t limit) const noexcept {
    const auto deadline = command_deadline();
    if (redisAppendCommandArgv(c.ctx.get(), argc, argv, lens) != REDIS_OK ||
        !redis_flush_until(c.ctx.get(), deadline)) {
      return redis_status::transport;
    }
    return checked(c, redis_read_until(c.ctx.get(), deadline, limit, out), out);
  }

  /// As above for up to 8 arguments.
  redis_status exec(redis_pooled_connection& c, std::span<const std::string_view> args,
                    redis_reply_ptr& out, std::size_t limit) const noexcept {
    const char* argv[8];
    std::size_t lens[8];
    const std::size_t n = std::min<std::size_t>(args.size(), 8);
    for (std::size_t i = 0; i < n; ++i) {
      argv[i] = args[i].data();
      lens[i] = args[i].size();
    }
    return exec(c, static_cast<int>(n), argv, lens, out, limit);
  }

  [[nodiscard]] const redis_connection_config& connection() const noexcept {
    return connection_;
  }

  // Counters (relaxed).
  [[nodiscard]] std::uint64_t pool_timeouts() const noexcept {
    return pool_timeouts_.load();
  }
  [[nodiscard]] std::uint64_t transport_errors() const noexcept {
    return transport_errors_.load();
  }
  [[nodiscard]] std::uint64_t connects() const noexcept { return connects_.load(); }
  [[nodiscard]] std::uint64_t connect_failures() const noexcept {
    return connect_failures_.load();
  }
  [[nodiscard]] std::uint64_t open_connections() const noexcept {
    return open_connections_.load(std::memory_order_relaxed);
  }

 private:
  static redis_status status_of(redis_io io) noexcept {
    switch (io) {
      case redis_io::ok:
        return redis_status::ok;
      case redis_io::too_large:
        return redis_status::too_large;
      default:
        return redis_status::transport;
    }
  }

  static redis_status checked(redis_pooled_connection& c, redis_io io,
                              const redis_reply_ptr& out) noexcept {
    if (io == redis_io::ok && out && out->type == REDIS_REPLY_ERROR) {
      const std::string_view text(out->str, out->len);
      if (text.starts_with("READONLY")) {
        c.demoted = true;
      } else if (c.redirect.empty() &&
                 (text.starts_with("MOVED ") || text.starts_with("ASK ") ||
                  text.starts_with("TRYAGAIN") || text.starts_with("CLUSTERDOWN"))) {
        try {
          c.redirect.assign(text.substr(0, 300));
        } catch (...) {  // out of memory: the command fails as a server error
        }
      }
    }
    return status_of(io);
  }

  std::optional<std::size_t> acquire() noexcept {
    std::unique_lock lock(mutex_);
    if (free_.empty()) {
      const bool got = cv_.wait_for(lock, wait_, [&] { return !free_.empty(); });
      if (!got) return std::nullopt;
    }
    const std::size_t i = free_.back();
    free_.pop_back();
    return i;
  }

  void release(std::size_t i) noexcept {
    {
      std::lock_guard lock(mutex_);
      free_.push_back(i);  // capacity reserved: never allocates
    }
    cv_.notify_one();
  }

  void close(redis_pooled_connection& c) noexcept {
    c.demoted = false;
    if (c.ctx) {
      c.ctx.reset();
      open_connections_.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  /// Opens c if needed: ok, transport (connect failed) or backoff (gate closed).
  redis_status ensure_open(redis_pooled_connection& c) noexcept {
    if (c.ctx) return redis_status::ok;
    if (!gate_.try_enter()) return redis_status::backoff;
    std::string error;
    redis_context_ptr ctx;
    try {
      ctx = replicas_ ? redis_open_replica(connection_, picks_++, error)
                      : redis_open(connection_, error);
    } catch (...) {
      ctx.reset();
    }
    if (!ctx) {
      connect_failures_.add();
      gate_.failed();
      return redis_status::transport;
    }
    gate_.succeeded();
    connects_.add();
    c.ctx = std::move(ctx);
    open_connections_.fetch_add(1, std::memory_order_relaxed);
    return redis_status::ok;
  }

  const redis_connection_config connection_;
  const std::chrono::nanoseconds wait_;
  const bool replicas_;
  std::atomic<std::uint64_t> picks_{0};  // which replica the next connection tries first
  reconnect_gate<Clock> gate_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::size_t> free_;
  std::unique_ptr<redis_pooled_connection[]> connections_;

  std::atomic<std::uint64_t> open_connections_{0};
  counter pool_timeouts_, transport_errors_, connects_, connect_failures_;
};

}  // namespace outgrow::detail
