// outgrow/redis/detail/session_link.hpp — how session_store runs its Lua scripts.
//
// session_link<Clock> owns the store's connections — a redis_router (detail/cluster.hpp):
// one pool for a standalone or Sentinel server, one per node of a Redis Cluster, with
// lazy connects, reconnect backoff and deadlines — and runs one script of
// session_scripts.hpp per call on the node of its first key's slot (MOVED / ASK followed
// by the router): EVALSHA with the SHA1s that SCRIPT LOAD returned on first use (the
// same source always has the same SHA1, so they are loaded once per store), falling back
// to EVAL of the source on NOSCRIPT (a restarted or failed-over Redis, or another
// cluster node, lacks the script; EVAL caches it there). Error replies count as server
// errors; replies are handed to the caller's parser, and the helpers below read them
// defensively (wrong types give nullopt). An exception during a call (the parser's
// included) is an unknown outcome (redis_status::unknown), never "nothing sent".
// Thread-safe: each call borrows its own pooled connection.
#pragma once

#include <hiredis/hiredis.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <outgrow/core/metrics.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/cluster.hpp>
#include <outgrow/redis/detail/pool.hpp>
#include <outgrow/redis/detail/reply.hpp>
#include <outgrow/redis/detail/session_scripts.hpp>

namespace outgrow::detail {

/// Element i of an array reply as an integer; nullopt when absent or not an integer.
inline std::optional<std::int64_t> session_int(const redisReply& r,
                                               std::size_t i) noexcept {
  if (r.type != REDIS_REPLY_ARRAY || i >= r.elements || r.element[i] == nullptr ||
      r.element[i]->type != REDIS_REPLY_INTEGER) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(r.element[i]->integer);
}

/// Element i of an array reply as bytes; nullopt when absent or not a string.
inline std::optional<std::string_view> session_str(const redisReply& r,
                                                   std::size_t i) noexcept {
  if (r.type != REDIS_REPLY_ARRAY || i >= r.elements || r.element[i] == nullptr ||
      r.element[i]->type != REDIS_REPLY_STRING) {
    return std::nullopt;
  }
  return std::string_view(r.element[i]->str, r.element[i]->len);
}

template <class Clock>
class session_link {
 public:
  /// Most arguments of one script call after EVALSHA sha numkeys.
  static constexpr std::size_t max_args = 12;

  session_link(const redis_connection_config& connection, std::size_t pool_size,
               std::chrono::nanoseconds pool_wait, std::uint64_t seed, Clock clock,
               std::size_t reply_limit)
      : reply_limit_(reply_limit),
        router_(connection, pool_size, pool_wait, seed, std::move(clock)) {}

  /// Runs script `s` with `nkeys` (>= 1) keys followed by its arguments (`args`, at most
  /// max_args) on a pooled connection to the master of the first key's slot, and
  /// on_reply(const redisReply&) -> redis_status on a reply that is not an error (it may
  /// run again after a redirection). busy / backoff / transport / too_large as the pool
  /// says; server for an error reply; unknown when anything in the call throws (loading
  /// the scripts, sending, on_reply): the script may have run, so it is never reported
  /// as codec ("nothing was sent") — codec only for arguments that do not fit.
  template <class OnReply>
  redis_status eval(session_script s, std::size_t nkeys,
                    std::span<const std::string_view> args, OnReply&& on_reply) noexcept {
    if (args.size() > max_args || nkeys == 0 || nkeys > args.size()) {
      return redis_status::codec;
    }
    const auto slot = router_.slot_of(args[0]);
    const redis_status st =
        router_.run(slot, [&](redis_pooled_connection& c) -> redis_status {
          // The pool would report an exception as codec (nothing sent); here one may
          // come after the script ran (on_reply: out of memory, a throwing Data).
          try {
            if (!ready_.load(std::memory_order_acquire)) {
              if (const redis_status l = load_scripts(c); l != redis_status::ok) return l;
            }
            const auto i = static_cast<std::size_t>(s);
            redis_reply_ptr r;
            redis_status e = call(c, "EVALSHA", shas_[i], nkeys, args, r);
            if (e == redis_status::ok && is_error(*r, "NOSCRIPT")) {
              e = call(c, "EVAL", sources()[i], nkeys, args, r);
            }
            if (e != redis_status::ok) return e;
            if (r->type == REDIS_REPLY_ERROR) return redis_status::server;
            return on_reply(*r);
          } catch (...) {
            return redis_status::unknown;
          }
        });
    if (st == redis_status::backoff) {
      short_circuited_.add();
    } else if (st == redis_status::server) {
      server_errors_.add();
    }
    return st;
  }

  [[nodiscard]] const redis_router<Clock>& router() const noexcept { return router_; }
  [[nodiscard]] std::uint64_t server_errors() const noexcept {
    return server_errors_.load();
  }
  [[nodiscard]] std::uint64_t short_circuited() const noexcept {
    return short_circuited_.load();
  }

 private:
  /// prelude + script, built once per process.
  static const std::array<std::string, session_script_count>& sources() {
    static const std::array<std::string, session_script_count> all = [] {
      std::array<std::string, session_script_count> out;
      for (std::size_t i = 0; i < session_script_count; ++i) {
        out[i] = std::string(session_lua_prelude) + std::string(session_scripts[i]);
      }
      return out;
    }();
    return all;
  }

  static bool is_error(const redisReply& r, std::string_view prefix) noexcept {
    return r.type == REDIS_REPLY_ERROR && r.str != nullptr &&
           std::string_view(r.str, r.len).starts_with(prefix);
  }

  redis_status call(redis_pooled_connection& c, std::string_view verb,
                    std::string_view script, std::size_t nkeys,
                    std::span<const std::string_view> args, redis_reply_ptr& out) const {
    std::array<const char*, max_args + 3> argv{};
    std::array<std::size_t, max_args + 3> lens{};
    const std::string n = std::to_string(nkeys);
    argv[0] = verb.data();
    lens[0] = verb.size();
    argv[1] = script.data();
    lens[1] = script.size();
    argv[2] = n.data();
    lens[2] = n.size();
    for (std::size_t i = 0; i < args.size(); ++i) {
      argv[3 + i] = args[i].data();
      lens[3 + i] = args[i].size();
    }
    return router_.exec(c, static_cast<int>(3 + args.size()), argv.data(), lens.data(), out,
                        reply_limit_);
  }

  /// SCRIPT LOAD of every script, once per store (the first caller loads, others wait);
  /// other cluster nodes learn them from the EVAL after their NOSCRIPT.
  redis_status load_scripts(redis_pooled_connection& c) {
    std::lock_guard lock(load_mutex_);
    if (ready_.load(std::memory_order_relaxed)) return redis_status::ok;
    for (std::size_t i = 0; i < session_script_count; ++i) {
      const std::string_view args[] = {"SCRIPT", "LOAD", sources()[i]};
      redis_reply_ptr r;
      if (const redis_status s = router_.exec(c, args, r, reply_limit_);
          s != redis_status::ok) {
        return s;
      }
      if (r->type != REDIS_REPLY_STRING) return redis_status::server;
      shas_[i].assign(r->str, r->len);
    }
    ready_.store(true, std::memory_order_release);
    return redis_status::ok;
  }

  const std::size_t reply_limit_;
  mutable redis_router<Clock> router_;
  std::mutex load_mutex_;
  std::atomic<bool> ready_{false};
  std::array<std::string, session_script_count> shas_;
  counter server_errors_, short_circuited_;
};

}  // namespace outgrow::detail
