// outgrow/redis/detail/stream_link.hpp — the connection of one redis_stream_queue object
// (producer, worker or dead-letter admin), and helpers to read hiredis replies.
//
// rsq_link owns one blocking hiredis connection: opened on demand, connect attempts spaced
// by a reconnect_gate (full-jitter backoff), the consumer group created (MKSTREAM) and the
// Lua scripts of stream_scripts.hpp loaded on every connect, EVALSHA with one reload on
// NOSCRIPT, and the connection closed after any transport error (the next call
// reconnects). It counts connects, connect failures and transport errors for the metrics.
// The reply helpers read untrusted replies defensively (wrong types give 0 / empty).
// Not thread-safe: each public object serializes its link (a mutex, or one thread).
#pragma once

#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/connection.hpp>
#include <outgrow/redis/detail/reconnect_gate.hpp>
#include <outgrow/redis/detail/reply.hpp>
#include <outgrow/redis/detail/stream_fields.hpp>
#include <outgrow/redis/detail/stream_keys.hpp>
#include <outgrow/redis/detail/stream_scripts.hpp>

namespace outgrow::detail {

/// A duration as whole milliseconds, rounded up, never negative (PX / IDLE arguments).
inline std::string rsq_ms(std::chrono::nanoseconds d) {
  return std::to_string(
      std::max<std::int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(d).count()));
}

/// Milliseconds of a stream ID ("1700000000000-3" -> 1700000000000); 0 if malformed.
inline std::int64_t rsq_id_ms(std::string_view id) noexcept {
  std::int64_t v = 0;
  const auto r = std::from_chars(id.data(), id.data() + id.size(), v);
  return r.ec == std::errc{} ? v : 0;
}

/// An integer reply (or a decimal string / status reply) as a number; 0 otherwise.
inline std::int64_t rsq_int(const redisReply* r) noexcept {
  if (r == nullptr) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return static_cast<std::int64_t>(r->integer);
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
    return rsq_parse_i64(std::string_view(r->str, r->len)).value_or(0);
  }
  return 0;
}

/// The bytes of a string / status / error reply; empty otherwise.
inline std::string_view rsq_str(const redisReply* r) noexcept {
  if (r == nullptr || r->str == nullptr) return {};
  return {r->str, r->len};
}

/// Field `name` of a stream entry's flat field list, or nullptr.
inline const redisReply* rsq_field(const redisReply* fields,
                                   std::string_view name) noexcept {
  if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return nullptr;
  for (std::size_t i = 0; i + 1 < fields->elements; i += 2) {
    if (rsq_str(fields->element[i]) == name) return fields->element[i + 1];
  }
  return nullptr;
}

/// The flat field list of a stream entry as strings; false when `fields` is not an array
/// of strings (a nil entry: deleted).
inline bool rsq_field_list(const redisReply* fields, std::vector<std::string_view>& out) {
  out.clear();
  if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return false;
  out.reserve(fields->elements);
  for (std::size_t i = 0; i < fields->elements; ++i) {
    const redisReply* f = fields->element[i];
    if (f == nullptr || f->type != REDIS_REPLY_STRING) return false;
    out.push_back(rsq_str(f));
  }
  return true;
}

/// Redis's TIME reply as milliseconds since the epoch; 0 when the reply is not TIME's.
inline std::int64_t rsq_time_ms(const redisReply* r) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 2) return 0;
  return rsq_int(r->element[0]) * 1000 + rsq_int(r->element[1]) / 1000;
}

/// Milliseconds of the ID of the first entry of an XRANGE reply; 0 when there is none.
inline std::int64_t rsq_first_id_ms(const redisReply* r) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements == 0) return 0;
  const redisReply* e = r->element[0];
  if (e == nullptr || e->type != REDIS_REPLY_ARRAY || e->elements == 0) return 0;
  return rsq_id_ms(rsq_str(e->element[0]));
}

/// Stores the integers of an array reply of exactly out.size() elements (an HMGET of
/// counters) through `out`, in order; stores nothing when the reply has another shape.
inline void rsq_read_counts(const redisReply* r,
                            std::initializer_list<std::uint64_t*> out) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != out.size()) return;
  std::size_t i = 0;
  for (std::uint64_t* o : out) *o = static_cast<std::uint64_t>(rsq_int(r->element[i++]));
}

/// now - then; 0 when `then` is unknown (<= 0) or not in the past.
inline std::chrono::nanoseconds rsq_age(std::int64_t now_ms,
                                        std::int64_t then_ms) noexcept {
  if (then_ms <= 0 || now_ms <= then_ms) return std::chrono::nanoseconds{0};
  return std::chrono::milliseconds{now_ms - then_ms};
}

/// One connection to Redis for a queue object: opened on demand (connect attempts spaced
/// by the reconnect gate), the consumer group created and the scripts loaded on each
/// connect, closed after any transport error. Not thread-safe (callers serialize).
template <class Clock>
class rsq_link {
 public:
  /// Connects as `connection` says (its seed, or a random one, seeds the reconnect
  /// jitter) to the queue whose keys are `keys`. Never connects here.
  rsq_link(const redis_connection_config& connection, rsq_keys keys, Clock clock)
      : connection_(connection),
        keys_(std::move(keys)),
        gate_(connection.reconnect_backoff, resolve_seed(connection.seed),
              std::move(clock)) {}

  /// The open connection, connecting if the gate allows; null when unavailable now.
  redisContext* get() {
    if (ctx_) return ctx_.get();
    if (!gate_.try_enter()) return nullptr;
    std::string error;
    redis_context_ptr ctx;
    try {
      ctx = redis_open(connection_, error);
      if (ctx && !prepare(ctx.get(), error)) ctx.reset();
    } catch (...) {
      ctx.reset();
      error = "exception while connecting";
    }
    if (!ctx) {
      last_error_ = std::move(error);
      connect_failures.add();
      gate_.failed();
      return nullptr;
    }
    gate_.succeeded();
    connects.add();
    ctx_ = std::move(ctx);
    return ctx_.get();
  }

  /// Closes the connection after a transport error.
  void drop() {
    if (ctx_) {
      last_error_ = ctx_->errstr;
      transport_errors.add();
      ctx_.reset();
    }
  }

  /// One command; null after a transport error (the connection is then closed).
  redis_reply_ptr command(std::span<const std::string_view> args) {
    redisContext* c = get();
    if (c == nullptr) return nullptr;
    auto r = redis_argv(c, args);
    if (!r || redis_is_readonly_error(r.get())) drop();
    return r;
  }

  /// EVALSHA of a script (reloaded once on NOSCRIPT); null after a transport error.
  redis_reply_ptr eval(rsq_script s, std::span<const std::string_view> keys,
                       std::span<const std::string_view> args) {
    redisContext* c = get();
    if (c == nullptr) return nullptr;
    const auto index = static_cast<std::size_t>(s);
    std::vector<std::string_view> argv;
    argv.reserve(3 + keys.size() + args.size());
    const std::string nkeys = std::to_string(keys.size());
    argv.push_back("EVALSHA");
    argv.push_back(sha_[index]);
    argv.push_back(nkeys);
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = redis_argv(c, argv);
    if (r && r->type == REDIS_REPLY_ERROR && rsq_str(r.get()).starts_with("NOSCRIPT")) {
      std::string error;
      if (!load_scripts(c, error)) {
        drop();
        return nullptr;
      }
      argv[1] = sha_[index];
      r = redis_argv(c, argv);
    }
    if (!r || redis_is_readonly_error(r.get())) drop();
    return r;
  }

  /// (Re)creates the consumer group (after NOGROUP: Redis lost its data). False on a
  /// transport error.
  bool ensure_group() {
    redisContext* c = get();
    if (c == nullptr) return false;
    std::string error;
    if (!create_group(c, error)) {
      drop();
      return false;
    }
    return true;
  }

  /// Sets the socket timeout of the next reads (XREADGROUP BLOCK needs more).
  void set_timeout(std::chrono::nanoseconds d) {
    if (ctx_) (void)redisSetTimeout(ctx_.get(), redis_timeval(d));
  }
  [[nodiscard]] std::chrono::nanoseconds command_timeout() const noexcept {
    return detail::command_timeout(connection_);
  }
  [[nodiscard]] bool connected() const noexcept { return static_cast<bool>(ctx_); }
  [[nodiscard]] typename Clock::time_point next_attempt() const {
    return gate_.next_attempt();
  }
  [[nodiscard]] const Clock& clock() const noexcept { return gate_.clock(); }
  [[nodiscard]] const std::string& last_error() const noexcept { return last_error_; }
  [[nodiscard]] const rsq_keys& keys() const noexcept { return keys_; }

  counter connects, connect_failures, transport_errors;

 private:
  bool create_group(redisContext* c, std::string& error) {
    const std::string_view args[] = {"XGROUP",    "CREATE", keys_.stream,
                                     keys_.group, "0",      "MKSTREAM"};
    auto r = redis_argv(c, args);
    if (!r) {
      error = c->errstr;
      return false;
    }
    if (r->type == REDIS_REPLY_ERROR && !rsq_str(r.get()).starts_with("BUSYGROUP")) {
      error = std::string(rsq_str(r.get()));
      return false;
    }
    return true;
  }

  bool load_scripts(redisContext* c, std::string& error) {
    for (std::size_t i = 0; i < rsq_script_count; ++i) {
      std::string source(rsq_lua_prelude);
      source += rsq_scripts[i];
      const std::string_view args[] = {"SCRIPT", "LOAD", source};
      auto r = redis_argv(c, args);
      if (!r || r->type != REDIS_REPLY_STRING) {
        error = r ? std::string(rsq_str(r.get())) : std::string(c->errstr);
        return false;
      }
      sha_[i].assign(r->str, r->len);
    }
    return true;
  }

  bool prepare(redisContext* c, std::string& error) {
    return create_group(c, error) && load_scripts(c, error);
  }

  const redis_connection_config connection_;
  const rsq_keys keys_;
  reconnect_gate<Clock> gate_;
  redis_context_ptr ctx_;
  std::string sha_[rsq_script_count];
  std::string last_error_;
};

}  // namespace outgrow::detail
