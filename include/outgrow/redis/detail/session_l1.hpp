// outgrow/redis/detail/session_l1.hpp — session_store's optional in-process L1.
//
// session_l1<Value, Clock> holds up to `capacity` sessions that a get loaded, keyed by
// their Redis key "<prefix>{<tag>}:s:<secret>" (the whole secret: only an id that
// equals a loaded one can hit), each for at most min(ttl, what was left of its expiry in
// Redis when loaded), least recently used evicted first. It is kept honest by Redis
// itself: one connection of its own runs CLIENT TRACKING on REDIRECT <itself> BCAST
// PREFIX <prefix> and SUBSCRIBEs to __redis__:invalidate (redis_enable_tracking of
// detail/invalidation_wire.hpp), so every write by ANY client to a key under the prefix
// — another instance's update, rotate, destroy, a get's sliding expiry, a DEL from
// redis-cli, an expiry — is reported as the key's name, and the entry is dropped.
// FLUSHALL / FLUSHDB (a nil payload) clears everything.
//
// No thread: the tracking connection is read without blocking (recv MSG_DONTWAIT) at the
// start of every L1 lookup and insert, under the L1's mutex, so a lookup first applies
// every invalidation that has reached this host — at most 256 KiB of them per call
// (default_drain_budget): while more is pending the L1 is behind, and lookups and
// inserts bypass it until one catches up. Redis 7.0 writes a key's invalidation
// before it answers the writer (BCAST messages are queued in beforeSleep, after the
// command's reply, and pending writes go out newest first), so a write that completed
// before a get started is missed only while its invalidation is still on the wire to
// this host. A flush's nil message is queued during the command: it may follow the
// answer.
//
// Gaps: a connection that fails (EOF, reset, an error, a reply that does not parse) or
// stays silent past a heartbeat (a PING after heartbeat of silence, unanswered within
// the command timeout) loses the writes of that time: the L1 is cleared at once and
// bypassed (lookups miss, inserts are dropped) until a new connection is tracking
// again; the reconnect is tried in a lookup, through a reconnect_gate (full-jitter
// backoff after a failure; an attempt that throws, e.g. std::bad_alloc, is a failure
// too), one attempt at a time and without holding the L1's mutex: while it waits on an
// unreachable or silent Redis (up to the connect and command timeouts), other lookups
// and inserts bypass the L1 instead of queueing behind it. Races: a get's Redis read
// can be overtaken by a write whose invalidation is applied before the get inserts what
// it read; each insert carries a ticket taken before the read — the epoch (bumped by
// every clear, loss and reconnect) and the invalidation count of the key's stripe (1024
// stripes) — and is dropped if either moved.
//
// Thread-safe (one mutex: lookups, inserts, invalidations). Complexity: O(1) expected
// per operation plus the invalidations read; erase_user O(entries).
#pragma once

#include <hiredis/hiredis.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <outgrow/core/metrics.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/connection.hpp>
#include <outgrow/redis/detail/invalidation_wire.hpp>
#include <outgrow/redis/detail/reconnect_gate.hpp>
#include <outgrow/redis/detail/reply.hpp>

namespace outgrow::detail {

/// What an insert must still find unchanged to be applied (taken before the Redis read).
struct session_l1_ticket {
  bool usable = false;  ///< false: the L1 was bypassed (not tracking)
  std::uint64_t epoch = 0;
  std::size_t stripe = 0;
  std::uint64_t stripe_count = 0;
};

/// Counters of the L1 (copied into session_store_metrics).
struct session_l1_counts {
  std::uint64_t hits = 0, misses = 0, invalidations = 0, gaps = 0, bypassed = 0,
                connect_failures = 0, entries = 0;
};

template <class Value, class Clock>
class session_l1 {
 public:
  using time_point = typename Clock::time_point;
  /// Silence after which the tracking connection is PINGed (it must answer within the
  /// command timeout), as redis_invalidation_bus's poll_interval.
  static constexpr std::chrono::milliseconds heartbeat{100};
  /// Most bytes of invalidations one lookup or insert reads (and applies) under the
  /// mutex: a flood of writes under the prefix cannot hold every get for long. While
  /// more is pending the L1 is behind, and lookups and inserts bypass it (a stale entry
  /// may wait there for an invalidation not read yet) until a later one catches up.
  static constexpr std::size_t default_drain_budget = std::size_t{256} << 10;

  session_l1(const redis_connection_config& connection, std::string prefix,
             std::size_t capacity, std::chrono::nanoseconds ttl, std::uint64_t seed,
             Clock clock, std::size_t drain_budget = default_drain_budget)
      : connection_(connection),
        prefix_(std::move(prefix)),
        capacity_(capacity),
        ttl_(ttl),
        answer_within_(command_timeout(connection)),
        drain_budget_(std::max<std::size_t>(drain_budget, 1)),
        gate_(connection.reconnect_backoff, seed, clock),
        clock_(std::move(clock)) {}

  session_l1(const session_l1&) = delete;
  session_l1& operator=(const session_l1&) = delete;

  /// The value of `key` if held and fresh (a hit); otherwise nullopt, and `t` says what
  /// a later insert must find unchanged. Applies the invalidations that arrived first.
  /// Throws: std::bad_alloc (copying the value, connecting).
  std::optional<Value> lookup(std::string_view key, session_l1_ticket& t) {
    std::unique_lock lock(mutex_);
    sync(lock);
    if (!tracking_ || behind_) {
      bypassed_.add();
      t = {};
      return std::nullopt;
    }
    t.usable = true;
    t.epoch = epoch_;
    t.stripe = stripe_of(key);
    t.stripe_count = stripes_[t.stripe];
    if (const auto it = index_.find(key); it != index_.end()) {
      if (clock_.now() < it->second->deadline) {
        lru_.splice(lru_.begin(), lru_, it->second);  // most recently used first
        hits_.add();
        return it->second->value;
      }
      remove(it);
    }
    misses_.add();
    return std::nullopt;
  }

  /// Holds `value` under `key` for min(ttl, remaining) unless the L1 lost track since
  /// `t` was taken (see the header).
  /// Throws: std::bad_alloc.
  void insert(std::string_view key, Value value, std::chrono::nanoseconds remaining,
              const session_l1_ticket& t) {
    std::unique_lock lock(mutex_);
    sync(lock);
    if (!t.usable || !tracking_ || behind_ || t.epoch != epoch_ ||
        stripes_[t.stripe] != t.stripe_count || remaining <= std::chrono::nanoseconds{0}) {
      return;
    }
    const time_point deadline = clock_.now() + std::min(ttl_, remaining);
    if (const auto it = index_.find(key); it != index_.end()) remove(it);
    if (index_.size() >= capacity_) remove(index_.find(std::string_view(lru_.back().key)));
    lru_.push_front(node{std::string(key), std::move(value), deadline});
    try {
      index_.emplace(std::string_view(lru_.front().key), lru_.begin());
    } catch (...) {  // keep the list and the index in step
      lru_.pop_front();
      throw;
    }
  }

  /// Drops `key` (this instance changed it) and fails the tickets of its stripe.
  void erase(std::string_view key) noexcept {
    std::lock_guard lock(mutex_);
    invalidate(key);
  }

  /// Drops every session whose `user(value)` is `user` and fails every ticket.
  template <class UserOf>
  void erase_user(std::string_view user, UserOf&& user_of) noexcept {
    std::lock_guard lock(mutex_);
    ++epoch_;
    for (auto it = lru_.begin(); it != lru_.end();) {
      const auto next = std::next(it);
      if (user_of(it->value) == user) remove(index_.find(std::string_view(it->key)));
      it = next;
    }
  }

  /// Drops everything and fails every ticket.
  void erase_all() noexcept {
    std::lock_guard lock(mutex_);
    clear();
  }

  /// True while the tracking connection is up (hits possible).
  [[nodiscard]] bool tracking() const noexcept {
    std::lock_guard lock(mutex_);
    return tracking_;
  }

  [[nodiscard]] session_l1_counts counts() const noexcept {
    session_l1_counts c;
    c.hits = hits_.load();
    c.misses = misses_.load();
    c.invalidations = invalidations_.load();
    c.gaps = gaps_.load();
    c.bypassed = bypassed_.load();
    c.connect_failures = connect_failures_.load();
    std::lock_guard lock(mutex_);
    c.entries = index_.size();
    return c;
  }

 private:
  struct node {
    std::string key;
    Value value;
    time_point deadline;
  };
  using list_type = std::list<node>;
  using index_type = std::unordered_map<std::string_view, typename list_type::iterator>;
  static constexpr std::size_t stripe_count = 1024;

  static std::size_t stripe_of(std::string_view key) noexcept {
    return std::hash<std::string_view>{}(key) % stripe_count;
  }

  void remove(typename index_type::iterator it) noexcept {
    const auto node_it = it->second;
    index_.erase(it);
    lru_.erase(node_it);
  }

  void invalidate(std::string_view key) noexcept {
    ++stripes_[stripe_of(key)];
    if (const auto it = index_.find(key); it != index_.end()) {
      remove(it);
      invalidations_.add();
    }
  }

  void clear() noexcept {
    index_.clear();
    lru_.clear();
    ++epoch_;
  }

  /// The tracking connection failed or went silent: every write from now on until a new
  /// one tracks is missed, so clear and bypass.
  void lost() noexcept {
    conn_.reset();
    tracking_ = false;
    behind_ = false;
    pinged_.reset();
    clear();
    gaps_.add();
  }

  /// Applies what arrived, heartbeats, (re)connects. `lock` holds mutex_ (released
  /// while connecting, held again on return).
  void sync(std::unique_lock<std::mutex>& lock) {
    if (conn_) drain();
    if (conn_) beat();
    if (!conn_) connect(lock);
  }

  /// One connect attempt at a time, made without holding mutex_: with Redis unreachable
  /// or silent an attempt lasts up to the connect and command timeouts, and meanwhile
  /// the other lookups and inserts go on, bypassing the L1 (not tracking), instead of
  /// queueing behind the attempt.
  void connect(std::unique_lock<std::mutex>& lock) {
    if (connecting_ || !gate_.try_enter()) return;
    // Whatever ends this attempt short of succeeded() — a refusal or an exception
    // (std::bad_alloc) — reports it as failed: a gate left probing would never let
    // another attempt in.
    struct attempt_guard {
      session_l1& l1;
      bool done = false;
      ~attempt_guard() {
        if (done) return;
        l1.connect_failures_.add();
        try {
          l1.gate_.failed();
        } catch (...) {  // std::system_error from its mutex: nothing more to do
        }
      }
    } attempt{*this};
    // Clears connecting_ and takes mutex_ back however the attempt ends (an exception
    // leaves with the lock held, as it came).
    struct relock {
      std::unique_lock<std::mutex>& lock;
      bool& connecting;
      ~relock() {
        lock.lock();
        connecting = false;
      }
    };
    connecting_ = true;
    lock.unlock();
    redis_context_ptr c;
    bool ok = false;
    {
      const relock again{lock, connecting_};
      std::string error;
      c = redis_open(connection_, error);
      ok = c && redis_enable_tracking(c.get(), prefix_);
      if (ok) {
        const std::string_view args[] = {"SUBSCRIBE", redis_tracking_channel};
        const redis_reply_ptr r = redis_argv(c.get(), args);
        ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3;
      }
    }
    if (!ok) return;  // failed (attempt)
    gate_.succeeded();
    attempt.done = true;
    conn_ = std::move(c);
    tracking_ = true;
    heard_ = clock_.now();
    pinged_.reset();
    clear();  // empty already (cleared when lost); fails tickets of the bypass time
    drain();  // invalidations that came with the confirmation
  }

  /// Reads what the tracking connection has received, without blocking, and applies it:
  /// at most drain_budget_ bytes, then behind_ says whether more may be waiting.
  void drain() {
    char buf[16 << 10];
    std::size_t budget = drain_budget_;
    behind_ = false;
    for (;;) {
      if (!apply_replies()) return lost();
      if (budget == 0) {
        behind_ = true;
        return;
      }
      const ssize_t n = ::recv(conn_->fd, buf, std::min(sizeof buf, budget), MSG_DONTWAIT);
      if (n > 0) {
        budget -= static_cast<std::size_t>(n);
        heard_ = clock_.now();
        pinged_.reset();
        if (redisReaderFeed(conn_->reader, buf, static_cast<std::size_t>(n)) != REDIS_OK) {
          return lost();
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      return lost();  // 0: closed (CLIENT KILL, restart); < 0: reset
    }
  }

  /// PINGs after `heartbeat` of silence; a PING unanswered within the command timeout
  /// means a dead connection.
  void beat() {
    const time_point now = clock_.now();
    if (pinged_) {
      if (now - *pinged_ >= answer_within_) lost();
      return;
    }
    if (now - heard_ < heartbeat) return;
    if (redisAppendCommand(conn_.get(), "PING") != REDIS_OK ||
        !redis_flush_until(conn_.get(),
                           std::chrono::steady_clock::now() + answer_within_)) {
      return lost();
    }
    pinged_ = now;
  }

  /// Applies every whole reply buffered; false when the stream does not parse.
  bool apply_replies() {
    for (;;) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(conn_.get(), &raw) != REDIS_OK) return false;
      if (raw == nullptr) return true;
      const redis_reply_ptr r(static_cast<redisReply*>(raw));
      on_reply(*r);
    }
  }

  /// ["message", "__redis__:invalidate", [keys] | nil]; other pushes (the PING's
  /// ["pong", ""]) only show the connection is alive.
  void on_reply(const redisReply& r) noexcept {
    if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 ||
        redis_text(r.element[0]) != "message" ||
        redis_text(r.element[1]) != redis_tracking_channel) {
      return;
    }
    const redisReply& payload = *r.element[2];
    if (payload.type == REDIS_REPLY_ARRAY) {
      for (std::size_t i = 0; i < payload.elements; ++i) {
        const redisReply* k = payload.element[i];
        if (k != nullptr && k->type == REDIS_REPLY_STRING) {
          invalidate(std::string_view(k->str, k->len));
        }
      }
      return;
    }
    clear();  // nil: FLUSHALL / FLUSHDB; anything else: not understood, be safe
    gaps_.add();
  }

  const redis_connection_config connection_;
  const std::string prefix_;
  const std::size_t capacity_;
  const std::chrono::nanoseconds ttl_;
  const std::chrono::nanoseconds answer_within_;
  const std::size_t drain_budget_;
  reconnect_gate<Clock> gate_;
  Clock clock_;

  mutable std::mutex mutex_;
  redis_context_ptr conn_;
  bool connecting_ = false;  // an attempt runs (without mutex_)
  bool tracking_ = false;
  bool behind_ = false;  // the last drain stopped at its budget: more may be pending
  time_point heard_{};
  std::optional<time_point> pinged_;
  std::uint64_t epoch_ = 0;
  std::array<std::uint64_t, stripe_count> stripes_{};
  list_type lru_;
  index_type index_;
  counter hits_, misses_, invalidations_, gaps_, bypassed_, connect_failures_;
};

}  // namespace outgrow::detail
