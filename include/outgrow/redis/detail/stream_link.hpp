// outgrow/redis/detail/stream_link.hpp — the connection of one redis_stream_queue object
// (producer, worker or dead-letter admin), and helpers to read hiredis replies.
//
// rsq_link owns one blocking hiredis connection: opened on demand, connect attempts spaced
// by a reconnect_gate (full-jitter backoff), the consumer group created (MKSTREAM) and the
// Lua scripts of stream_scripts.hpp loaded on every connect, EVALSHA with one reload on
// NOSCRIPT, and the connection closed after any transport error (the next call
// reconnects). On a Redis Cluster it connects to the master of the stream's slot (read
// from the seeds with CLUSTER SLOTS) and follows MOVED / ASK / TRYAGAIN / CLUSTERDOWN
// per command (exchange(): pipelines keep their order; WAIT for durable writes). It
// counts connects, connect failures, transport errors and redirects for the metrics.
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
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/cluster.hpp>
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

/// A pipeline's output buffer is written once it holds this many bytes (see send_round).
inline constexpr std::size_t rsq_stream_bytes = 2048;

/// One command of a pipeline: its arguments.
using rsq_argv = std::span<const std::string_view>;

/// WAIT after a pipeline's writes: `replicas` must acknowledge within `timeout_ms`.
struct rsq_wait {
  std::string replicas;
  std::string timeout_ms;
};

/// One connection to Redis for a queue object: opened on demand (connect attempts spaced
/// by the reconnect gate), the consumer group created and the scripts loaded on each
/// connect, closed after any transport error. On a Redis Cluster it connects to the
/// master of the queue's slot (every key of a queue shares the stream's hash tag) and
/// follows MOVED / ASK / TRYAGAIN / CLUSTERDOWN replies (see exchange()). Not thread-safe
/// (callers serialize).
template <class Clock>
class rsq_link {
 public:
  /// Connects as `connection` says (its seed, or a random one, seeds the reconnect
  /// jitter) to the queue whose keys are `keys`. Never connects here.
  rsq_link(const redis_connection_config& connection, rsq_keys keys, Clock clock)
      : connection_(connection),
        keys_(std::move(keys)),
        gate_(connection.reconnect_backoff, resolve_seed(connection.seed),
              std::move(clock)),
        clustered_(!connection.cluster.nodes.empty()),
        slot_(redis_cluster_hash_slot(keys_.stream)),
        timeout_(detail::command_timeout(connection)) {}

  /// The open connection, connecting if the gate allows; null when unavailable now.
  redisContext* get() {
    if (ctx_) return ctx_.get();
    if (!gate_.try_enter()) return nullptr;
    std::string error;
    redis_context_ptr ctx;
    try {
      ctx = open(error);
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
    if (timeout_ != command_timeout())
      (void)redisSetTimeout(ctx_.get(), redis_timeval(timeout_));
    return ctx_.get();
  }

  /// Closes the connection after a transport error (on a cluster the slot's master is
  /// looked up again on the next connect: a failover may have moved it).
  void drop() {
    if (ctx_) {
      last_error_ = ctx_->errstr;
      transport_errors.add();
      ctx_.reset();
    }
    target_.reset();
  }

  /// Sends `cmds` as one pipeline (one round trip) and reads each reply into out[i], in
  /// order. On a cluster, commands answered with a redirection (they did not run) are
  /// sent again, in order, within connection.cluster.max_redirects: MOVED reconnects to
  /// the named node, ASK sends them once to the named node after ASKING (EVALSHA as EVAL
  /// with the script's source there: that node may not have it), TRYAGAIN / CLUSTERDOWN
  /// wait 10 ms x attempt; past the bound the redirection stays the reply. With `wait`,
  /// each round ends with WAIT and (*acked)[i] is the replica count of command i's round
  /// (-1 if it did not run). False after a transport error: the connection is closed and
  /// the commands without a reply may or may not have run.
  bool exchange(std::span<const rsq_argv> cmds, std::vector<redis_reply_ptr>& out,
                const rsq_wait* wait = nullptr,
                std::vector<std::int64_t>* acked = nullptr) {
    out.clear();
    out.resize(cmds.size());
    if (acked != nullptr) acked->assign(cmds.size(), -1);
    std::vector<std::size_t> todo(cmds.size());
    for (std::size_t i = 0; i < todo.size(); ++i) todo[i] = i;
    std::optional<redis_endpoint> ask;
    for (int attempt = 0;; ++attempt) {
      redis_context_ptr ask_ctx;
      redisContext* c = nullptr;
      if (ask) {
        std::string error;
        ask_ctx = redis_open_node(connection_, ask->host, ask->port, connection_.password,
                                  0, error);
        if (!ask_ctx) {
          last_error_ = std::move(error);
          transport_errors.add();
          return false;
        }
        (void)redisSetTimeout(ask_ctx.get(), redis_timeval(timeout_));
        c = ask_ctx.get();
      } else {
        c = get();
        if (c == nullptr) return false;
      }
      const bool asking = static_cast<bool>(ask);
      if (!send_round(c, cmds, todo, asking, wait) ||
          !read_round(c, todo, asking, wait, out, acked)) {
        if (asking) {
          last_error_ = c->errstr;
          transport_errors.add();
        } else {
          drop();
        }
        return false;
      }
      ask.reset();
      std::vector<std::size_t> again;
      bool readonly = false;
      for (const std::size_t i : todo) {
        if (clustered_ && redis_is_redirect_error(out[i].get())) again.push_back(i);
        readonly = readonly || redis_is_readonly_error(out[i].get());
      }
      if (readonly) drop();
      if (again.empty() || attempt >= connection_.cluster.max_redirects) return true;
      redirects.add();
      std::optional<redis_redirect> moved;
      for (const std::size_t i : again) {
        auto r = redis_parse_redirect(rsq_str(out[i].get()));
        if (r && (!r->ask || !moved)) moved = std::move(r);
        if (moved && !moved->ask) break;
      }
      if (moved && !moved->ask) {
        target_ = std::move(moved->to);  // the slot's new master: reconnect there
        ctx_.reset();
      } else if (moved) {
        ask = std::move(moved->to);  // the keys are being imported there
      } else {
        if (rsq_str(out[again.front()].get()).starts_with("CLUSTERDOWN")) {
          ctx_.reset();  // a failover is under way: look the master up again
          target_.reset();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{10} * (attempt + 1));
      }
      todo = std::move(again);
    }
  }

  /// One command; null after a transport error (the connection is then closed).
  redis_reply_ptr command(rsq_argv args) {
    std::vector<redis_reply_ptr> out;
    const rsq_argv one[] = {args};
    if (!exchange(one, out)) return nullptr;
    return std::move(out[0]);
  }

  /// EVALSHA of a script (reloaded once on NOSCRIPT); null after a transport error.
  redis_reply_ptr eval(rsq_script s, std::span<const std::string_view> keys,
                       std::span<const std::string_view> args) {
    if (get() == nullptr) return nullptr;
    const auto index = static_cast<std::size_t>(s);
    std::vector<std::string_view> argv;
    argv.reserve(3 + keys.size() + args.size());
    const std::string nkeys = std::to_string(keys.size());
    argv.push_back("EVALSHA");
    argv.push_back(sha_[index]);
    argv.push_back(nkeys);
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = command(argv);
    if (r && r->type == REDIS_REPLY_ERROR && rsq_str(r.get()).starts_with("NOSCRIPT")) {
      redisContext* c = get();
      if (c == nullptr) return nullptr;
      std::string error;
      if (!load_scripts(c, error)) {
        drop();
        return nullptr;
      }
      argv[1] = sha_[index];
      r = command(argv);
    }
    return r;
  }

  /// EVALSHA of script `s` once per element of `keys_and_args` (its first nkeys[i]
  /// elements are keys), pipelined in one round trip; replies into out, in order. The
  /// ones answered NOSCRIPT are sent again after the scripts are reloaded. False after a
  /// transport error (replies missing for what may or may not have run).
  bool eval_many(rsq_script s, std::span<const std::size_t> nkeys,
                 std::span<const rsq_argv> keys_and_args,
                 std::vector<redis_reply_ptr>& out) {
    out.clear();
    out.resize(keys_and_args.size());
    if (get() == nullptr) return false;
    const auto index = static_cast<std::size_t>(s);
    std::vector<std::string> counts(keys_and_args.size());
    std::vector<std::vector<std::string_view>> argv(keys_and_args.size());
    std::vector<rsq_argv> cmds;
    cmds.reserve(argv.size());
    for (std::size_t i = 0; i < argv.size(); ++i) {
      counts[i] = std::to_string(nkeys[i]);
      argv[i].reserve(3 + keys_and_args[i].size());
      argv[i] = {"EVALSHA", sha_[index], counts[i]};
      argv[i].insert(argv[i].end(), keys_and_args[i].begin(), keys_and_args[i].end());
      cmds.emplace_back(argv[i]);
    }
    if (!exchange(cmds, out)) return false;
    std::vector<std::size_t> lost;
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (out[i] && out[i]->type == REDIS_REPLY_ERROR &&
          rsq_str(out[i].get()).starts_with("NOSCRIPT")) {
        lost.push_back(i);
      }
    }
    if (lost.empty()) return true;
    redisContext* c = get();
    std::string error;
    if (c == nullptr || !load_scripts(c, error)) {
      drop();
      for (const std::size_t i : lost) out[i].reset();
      return false;
    }
    std::vector<rsq_argv> again;
    for (const std::size_t i : lost) again.push_back(cmds[i]);  // same SHA1: same source
    std::vector<redis_reply_ptr> replies;
    const bool ok = exchange(again, replies);
    for (std::size_t j = 0; j < lost.size(); ++j) out[lost[j]] = std::move(replies[j]);
    return ok;
  }

  /// (Re)creates the consumer group (after NOGROUP: Redis lost its data). False on a
  /// transport error.
  bool ensure_group() {
    redisContext* c = get();
    if (c == nullptr) return false;
    std::string error;
    if (!create_group(c, error, nullptr)) {
      drop();
      return false;
    }
    return true;
  }

  /// Sets the socket timeout of the next reads (XREADGROUP BLOCK and WAIT need more);
  /// kept across reconnects until set again.
  void set_timeout(std::chrono::nanoseconds d) {
    timeout_ = d;
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

  counter connects, connect_failures, transport_errors, redirects;

 private:
  /// A connection to the queue's server, prepared: the standalone / Sentinel server, or
  /// the master of the stream's slot (looked up from the seeds, then MOVED-followed).
  redis_context_ptr open(std::string& error) {
    if (!clustered_) {
      redis_context_ptr ctx = redis_open(connection_, error);
      if (ctx && !prepare(ctx.get(), error, nullptr)) ctx.reset();
      return ctx;
    }
    for (int hop = 0; hop <= connection_.cluster.max_redirects; ++hop) {
      if (!target_) target_ = redis_cluster_master_of(connection_, slot_, error);
      if (!target_) return nullptr;
      redis_context_ptr ctx = redis_open_node(connection_, target_->host, target_->port,
                                              connection_.password, 0, error);
      if (!ctx) {
        target_.reset();
        return nullptr;
      }
      std::optional<redis_endpoint> moved;
      if (prepare(ctx.get(), error, &moved)) return ctx;
      target_ = std::move(moved);  // empty unless MOVED: then the next hop goes there
      if (!target_) return nullptr;
    }
    error = "too many MOVED redirections while connecting";
    return nullptr;
  }

  /// Appends the round's commands (each after ASKING when `asking`) and WAIT. A long
  /// round is streamed: each rsq_stream_bytes of commands is written as soon as it is
  /// formatted, so Redis runs the first commands while the rest are formatted (the
  /// replies are read after the last command, as before).
  bool send_round(redisContext* c, std::span<const rsq_argv> cmds,
                  std::span<const std::size_t> todo, bool asking, const rsq_wait* wait) {
    std::string buffer;  // formatted, not yet in hiredis's output buffer
    std::string source;
    const auto hand_over = [&] {
      const bool ok = buffer.empty() || redisAppendFormattedCommand(
                                            c, buffer.data(), buffer.size()) == REDIS_OK;
      buffer.clear();
      return ok;
    };
    const auto append = [&](rsq_argv args) {
      redis_format_command(buffer, args);
      if (buffer.size() < rsq_stream_bytes) return true;
      if (!hand_over()) return false;
      int done = 0;
      while (done == 0) {  // as redisGetReply writes: until hiredis's buffer is empty
        if (redisBufferWrite(c, &done) != REDIS_OK) return false;
      }
      return true;
    };
    for (const std::size_t i : todo) {
      rsq_argv args = cmds[i];
      std::vector<std::string_view> eval;
      if (asking) {
        const std::string_view asking_args[] = {"ASKING"};
        if (!append(asking_args)) return false;
        if (args.size() >= 2 && args[0] == "EVALSHA") {  // the node may lack the script
          for (std::size_t k = 0; k < rsq_script_count; ++k) {
            if (sha_[k] != args[1]) continue;
            source = std::string(rsq_lua_prelude) + std::string(rsq_scripts[k]);
            eval.assign(args.begin(), args.end());
            eval[0] = "EVAL";
            eval[1] = source;
            args = eval;
            break;
          }
        }
      }
      if (!append(args)) return false;
    }
    if (wait != nullptr) {
      const std::string_view w[] = {"WAIT", wait->replicas, wait->timeout_ms};
      if (!append(w)) return false;
    }
    return hand_over();  // written by the first read (read_round)
  }

  /// Reads the replies of send_round() into out (and the WAIT count into acked).
  static bool read_round(redisContext* c, std::span<const std::size_t> todo, bool asking,
                         const rsq_wait* wait, std::vector<redis_reply_ptr>& out,
                         std::vector<std::int64_t>* acked) {
    const auto read = [&](redis_reply_ptr& r) {
      void* raw = nullptr;
      if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) return false;
      r.reset(static_cast<redisReply*>(raw));
      return true;
    };
    for (const std::size_t i : todo) {
      redis_reply_ptr ignored;
      if (asking && !read(ignored)) return false;
      if (!read(out[i])) return false;
    }
    if (wait != nullptr) {
      redis_reply_ptr w;
      if (!read(w)) return false;
      const std::int64_t n = w->type == REDIS_REPLY_INTEGER ? rsq_int(w.get()) : 0;
      if (acked != nullptr) {
        for (const std::size_t i : todo) {
          if (!redis_is_redirect_error(out[i].get())) (*acked)[i] = n;
        }
      }
    }
    return true;
  }

  /// XGROUP CREATE ... MKSTREAM. On a cluster a MOVED reply stores the node in *moved
  /// and fails; ASK / TRYAGAIN (the slot is migrating: the stream, and its group, exist
  /// elsewhere already) count as done.
  bool create_group(redisContext* c, std::string& error,
                    std::optional<redis_endpoint>* moved) {
    const std::string_view args[] = {"XGROUP",    "CREATE", keys_.stream,
                                     keys_.group, "0",      "MKSTREAM"};
    auto r = redis_argv(c, args);
    if (!r) {
      error = c->errstr;
      return false;
    }
    if (r->type != REDIS_REPLY_ERROR) return true;
    const std::string_view text = rsq_str(r.get());
    if (text.starts_with("BUSYGROUP")) return true;
    if (clustered_ && (text.starts_with("ASK ") || text.starts_with("TRYAGAIN")))
      return true;
    if (clustered_ && moved != nullptr) {
      if (auto to = redis_parse_redirect(text); to && !to->ask) *moved = std::move(to->to);
    }
    error = std::string(text);
    return false;
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

  bool prepare(redisContext* c, std::string& error, std::optional<redis_endpoint>* moved) {
    return create_group(c, error, moved) && load_scripts(c, error);
  }

  const redis_connection_config connection_;
  const rsq_keys keys_;
  reconnect_gate<Clock> gate_;
  const bool clustered_;
  const std::uint16_t slot_;
  std::chrono::nanoseconds timeout_;
  std::optional<redis_endpoint> target_;  // the slot's master (cluster), when known
  redis_context_ptr ctx_;
  std::string sha_[rsq_script_count];
  std::string last_error_;
};

}  // namespace outgrow::detail
