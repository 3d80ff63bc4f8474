// outgrow/redis/detail/invalidation_engine.hpp — the machinery behind
// redis_invalidation_bus.
//
// redis_invalidation_bus (redis_invalidation.hpp) documents the behaviour and forwards
// every member to this engine: the publisher connection with its pending messages
// (kept, re-sent in order, overflowing into one clear), the subscriber thread (connect,
// instance-id claim, SUBSCRIBE — in tracking mode after CLIENT TRACKING — reading,
// heartbeat, gaps), decoding and local delivery, and the counters. The message format
// and the tracking helpers are in invalidation_wire.hpp. On a cluster with
// sharded_pubsub, both connections go to the master of the channel's hash slot (asked
// with CLUSTER SLOTS) and use SPUBLISH / SSUBSCRIBE; a publish answered with an error
// (MOVED after resharding or a failover) drops the connection, so the next one asks
// again, and a server-sent "sunsubscribe" (the slot moved away) ends the subscription
// like a lost connection: re-subscribed at the new owner, with a gap.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <outgrow/cache/invalidation.hpp>
#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/detail/deadline_mutex.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/redis/codec.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/cluster.hpp>
#include <outgrow/redis/detail/connection.hpp>
#include <outgrow/redis/detail/invalidation_wire.hpp>
#include <outgrow/redis/detail/reconnect_gate.hpp>
#include <outgrow/redis/redis_invalidation_config.hpp>

#include <fmt/format.h>

namespace outgrow::detail {

/// redis_invalidation_bus<Key, Codec>'s state and algorithms.
template <class Key, class Codec>
class redis_invalidation_engine {
 public:
  // The public members are redis_invalidation_bus's, documented there.
  using key_type = Key;
  using codec_type = Codec;
  using event_type = invalidation_event<Key>;

  redis_invalidation_engine(redis_invalidation_bus_config config, Codec codec)
      : config_(validated(std::move(config))),
        seed_(resolve_seed(config_.connection.seed)),
        codec_(std::move(codec)),
        id_(config_.instance_id != 0 ? config_.instance_id : random_id()),
        publisher_gate_(config_.connection.reconnect_backoff, seed_, {}),
        subscriber_gate_(config_.connection.reconnect_backoff, seed_ ^ 0x5B5CULL, {}) {}

  redis_invalidation_engine(const redis_invalidation_engine&) = delete;
  redis_invalidation_engine& operator=(const redis_invalidation_engine&) = delete;

  ~redis_invalidation_engine() { stop(); }

  // ---- the invalidation_bus concept --------------------------------------------------

  bool publish(const Key& key, std::uint64_t origin) {
    local_.publish(key, origin);
    published_.add();
    if (tracking()) return true;
    std::string message = header('K');
    try {
      codec_.encode(key, message);
    } catch (...) {
      publish_failures_.add();
      return false;
    }
    return send(std::move(message));
  }

  bool publish_clear(std::uint64_t origin) {
    local_.publish_clear(origin);
    published_.add();
    return send(header('C'));
  }

  [[nodiscard]] invalidation_subscription subscribe(invalidation_handler<Key> handler) {
    return local_.subscribe(std::move(handler));
  }

  // ---- the subscriber thread ---------------------------------------------------------

  void start() {
    std::lock_guard lock(thread_mutex_);
    if (thread_.joinable()) return;
    int fds[2];
    if (::pipe(fds) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    for (const int fd : fds) {
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    wake_read_ = fds[0];
    wake_write_ = fds[1];
    pollfds_.reserve(1 + 16);  // the wake-up pipe and the connections; grows if needed
    stopping_.store(false, std::memory_order_release);
    try {
      thread_ = std::thread([this] { subscriber_loop(); });
    } catch (...) {
      close_pipe();
      throw;
    }
  }

  void stop() noexcept {
    std::lock_guard lock(thread_mutex_);
    if (!thread_.joinable()) return;
    stopping_.store(true, std::memory_order_release);
    const char byte = 1;
    (void)!::write(wake_write_, &byte, 1);
    thread_.join();
    close_pipe();
  }

  [[nodiscard]] bool delivering() const noexcept {
    return delivering_.load(std::memory_order_acquire);
  }

  template <class Rep, class Period>
  bool wait_subscribed(std::chrono::duration<Rep, Period> timeout) {
    std::unique_lock lock(state_mutex_);
    return state_cv_.wait_for(lock, timeout, [&] { return subscribed_; });
  }

  bool flush_pending() {
    const auto deadline = publish_deadline();
    std::unique_lock io(io_mutex_, std::defer_lock);
    if (!io.try_lock_until(deadline)) return false;
    return drain_pending(deadline);
  }

  [[nodiscard]] redis_invalidation_bus_metrics metrics() const {
    redis_invalidation_bus_metrics s;
    s.published = published_.load();
    s.sent = sent_.load();
    s.publish_failures = publish_failures_.load();
    s.publish_busy = busy_.load();
    s.pending_overflows = pending_overflows_.load();
    s.received = received_.load();
    s.own_ignored = own_ignored_.load();
    s.duplicates = duplicates_.load();
    s.decode_errors = decode_errors_.load();
    s.gaps = gaps_.load();
    s.subscribes = subscribes_.load();
    s.connect_failures = connect_failures_.load();
    s.id_conflicts = id_conflicts_.load();
    s.tracked = tracked_.load();
    s.tracked_foreign = tracked_foreign_.load();
    s.flushes = flushes_.load();
    s.heartbeat_timeouts = heartbeat_timeouts_.load();
    s.subscribers = local_.metrics().subscribers;
    {
      std::lock_guard lock(pending_mutex_);
      s.pending = pending_.size() + (pending_clear_ ? 1 : 0);
    }
    {
      std::lock_guard lock(state_mutex_);
      s.subscribed = subscribed_;
    }
    return s;
  }

  [[nodiscard]] std::uint64_t instance_id() const noexcept {
    return id_.load(std::memory_order_acquire);
  }
  [[nodiscard]] const redis_invalidation_bus_config& config() const noexcept {
    return config_;
  }

 private:
  static redis_invalidation_bus_config validated(redis_invalidation_bus_config c) {
    using namespace std::chrono_literals;
    constexpr std::string_view who = "redis_invalidation_bus";
    detail::validate_connection(who, c.connection);
    require(!c.channel.empty(), who, "channel", "a non-empty channel name", "\"\"");
    require(c.mode == redis_invalidation_mode::publish ||
                c.mode == redis_invalidation_mode::tracking,
            who, "mode", "publish or tracking", static_cast<int>(c.mode));
    require(c.tracking_prefix.empty() ||
                c.tracking_prefix.back() == detail::redis_key_separator,
            who, "tracking_prefix", "empty or ending with ':'",
            fmt::format("\"{}\"", c.tracking_prefix));
    if (c.mode == redis_invalidation_mode::tracking) {
      require(c.channel != detail::redis_tracking_channel, who, "channel",
              "not __redis__:invalidate in tracking mode", c.channel);
    }
    require(c.sharded_pubsub || !c.connection.cluster.nodes.empty(), who, "sharded_pubsub",
            "true without connection.cluster (one server has no shards)", false);
    require_in_range(who, "poll_interval", c.poll_interval, std::chrono::nanoseconds{1ms},
                     std::chrono::nanoseconds{1h});
    require_in_range(who, "max_pending", c.max_pending, std::size_t{0},
                     std::size_t{100'000'000});
    require_in_range(who, "dedupe_window", c.dedupe_window, std::size_t{0},
                     std::size_t{10'000'000});
    return c;
  }

  static std::uint64_t random_id() {
    std::random_device rd;
    std::uint64_t id = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    id ^= static_cast<std::uint64_t>(
        std::chrono::steady_clock::now().time_since_epoch().count());
    id ^= static_cast<std::uint64_t>(::getpid()) << 17;
    return id == 0 ? 1 : id;
  }

  bool tracking() const noexcept {
    return config_.mode == redis_invalidation_mode::tracking;
  }

  /// Tracking mode on a cluster: one subscriber connection per master.
  bool cluster_tracking() const noexcept {
    return tracking() && !config_.connection.cluster.nodes.empty();
  }

  /// Sharded pub/sub on a cluster: SPUBLISH / SSUBSCRIBE at the channel's slot master.
  bool sharded() const noexcept {
    return !config_.connection.cluster.nodes.empty() && config_.sharded_pubsub;
  }

  /// A connection for publishing or subscribing: to the master of the channel's slot
  /// when sharded(), else as redis_open (one server, Sentinel's master, a cluster seed).
  detail::redis_context_ptr open(const redis_connection_config& e, std::string& error) {
    if (!sharded()) return detail::redis_open(e, error);
    const auto master =
        detail::redis_cluster_master_of(e, redis_cluster_hash_slot(config_.channel), error);
    if (!master) return nullptr;
    return detail::redis_open_node(e, master->host, master->port, e.password, 0, error);
  }

  std::string header(char kind) {
    return detail::redis_invalidation_header(kind == 'C', instance_id(),
                                             seq_.fetch_add(1, std::memory_order_relaxed));
  }

  /// "outgrow-bus-<channel hash>-<instance id>": the CLIENT SETNAME of the subscriber.
  std::string client_name(std::uint64_t id) const {
    return fmt::format("outgrow-bus-{:016x}-{:016x}", detail::redis_fnv1a(config_.channel),
                       id);
  }

  /// Names the subscriber connection after (channel, instance id) and looks for another
  /// client with the same name: another bus on this channel with our id, which would
  /// drop our messages as its own and we its. Then this bus takes a fresh random id.
  /// Servers that refuse CLIENT SETNAME / CLIENT LIST (ACLs) skip the check.
  void claim_instance_id(redisContext* c) {
    for (int attempt = 0; attempt < 4; ++attempt) {
      const std::string name = client_name(instance_id());
      const std::string_view set[] = {"CLIENT", "SETNAME", name};
      auto r = detail::redis_argv(c, set);
      if (!r || r->type != REDIS_REPLY_STATUS) return;
      const std::string_view list[] = {"CLIENT", "LIST"};
      r = detail::redis_argv(c, list);
      if (!r || r->type != REDIS_REPLY_STRING) return;
      const std::string_view clients(r->str, r->len);
      const std::string field = " name=" + name + " ";
      std::size_t count = 0;
      for (std::size_t at = clients.find(field); at != std::string_view::npos;
           at = clients.find(field, at + 1)) {
        ++count;
      }
      if (count <= 1) return;
      id_conflicts_.add();
      id_.store(random_id(), std::memory_order_release);
    }
  }

  // ---- publishing --------------------------------------------------------------------

  using deadline_type = std::chrono::steady_clock::time_point;

  /// A publish (or flush) gives up at this point: connect_timeout + command_timeout
  /// from its start, whatever other publishers are doing.
  deadline_type publish_deadline() const {
    return std::chrono::steady_clock::now() + config_.connection.connect_timeout +
           detail::command_timeout(config_.connection);
  }

  bool send(std::string message) {
    const auto deadline = publish_deadline();
    std::unique_lock io(io_mutex_, std::defer_lock);
    // Waiting publishers are not serialized behind one blocked connect or PUBLISH: each
    // waits for the connection only until its own deadline.
    if (!io.try_lock_until(deadline)) {
      publish_failures_.add();
      busy_.add();
      keep(std::move(message));
      return false;
    }
    if (!drain_pending(deadline) || !send_once(message, deadline)) {
      keep(std::move(message));
      return false;
    }
    return true;
  }

  /// One PUBLISH, connecting first if needed, all before `deadline`. Under io_mutex_.
  bool send_once(const std::string& message, deadline_type deadline) {
    const auto left = [&] { return deadline - std::chrono::steady_clock::now(); };
    if (!publisher_) {
      if (left() <= std::chrono::nanoseconds::zero() || !publisher_gate_.try_enter()) {
        publish_failures_.add();
        return false;
      }
      redis_connection_config e = config_.connection;
      e.connect_timeout = std::clamp<std::chrono::nanoseconds>(
          left(), std::chrono::microseconds{1}, e.connect_timeout);
      e.command_timeout = std::clamp<std::chrono::nanoseconds>(
          left(), std::chrono::microseconds{1}, detail::command_timeout(e));
      std::string error;
      try {
        publisher_ = open(e, error);
      } catch (...) {
        publisher_.reset();
      }
      if (!publisher_) {
        connect_failures_.add();
        publisher_gate_.failed();
        publish_failures_.add();
        return false;
      }
      publisher_gate_.succeeded();
    }
    const auto budget = left();
    if (budget <= std::chrono::nanoseconds::zero()) {
      publish_failures_.add();
      return false;
    }
    (void)redisSetTimeout(publisher_.get(),
                          detail::redis_timeval(std::min<std::chrono::nanoseconds>(
                              budget, detail::command_timeout(config_.connection))));
    const std::string_view args[] = {sharded() ? "SPUBLISH" : "PUBLISH", config_.channel,
                                     message};
    auto r = detail::redis_argv(publisher_.get(), args);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
      // Sharded: an error is MOVED (the slot moved, a failover): ask for the owner again.
      if (!r || sharded()) publisher_.reset();
      publish_failures_.add();
      return false;
    }
    sent_.add();
    return true;
  }

  void keep(std::string message) {
    std::lock_guard lock(pending_mutex_);
    if (pending_clear_) return;  // one clear covers everything
    if (message[0] == 'c' || pending_.size() >= config_.max_pending) {
      if (message[0] != 'c') pending_overflows_.add();
      pending_.clear();
      pending_clear_ = true;
      return;
    }
    pending_.push_back(std::move(message));
  }

  /// Re-sends pending messages in order before `deadline`. Under io_mutex_ (the only
  /// remover); other threads may add messages meanwhile (keep). A message is taken out
  /// before its send and put back at the front if the send fails, so one kept during a
  /// send is never covered by a clear sent before it.
  bool drain_pending(deadline_type deadline) {
    for (;;) {
      std::string message;
      bool clear = false;
      {
        std::lock_guard lock(pending_mutex_);
        if (pending_clear_) {
          clear = true;
          pending_clear_ = false;
          pending_.clear();
        } else if (!pending_.empty()) {
          message = std::move(pending_.front());
          pending_.pop_front();
        } else {
          return true;
        }
      }
      if (clear) message = header('C');
      if (send_once(message, deadline)) continue;
      std::lock_guard lock(pending_mutex_);
      if (clear || message[0] == 'c') {
        pending_.clear();
        pending_clear_ = true;
      } else if (!pending_clear_) {
        pending_.push_front(std::move(message));
      }
      return false;
    }
  }

  // ---- subscribing -------------------------------------------------------------------

  void set_subscribed(bool on) {
    delivering_.store(on, std::memory_order_release);
    {
      std::lock_guard lock(state_mutex_);
      subscribed_ = on;
    }
    state_cv_.notify_all();
  }

  /// Tracking mode: the subscription is lost (not stopped): every write from now until
  /// the next subscription is missed, so subscribers clear at once (a gap), after
  /// delivering() turned false. Publish mode keeps its single gap on re-subscription.
  void lost() noexcept {
    set_subscribed(false);
    if (!tracking() || stopping_.load(std::memory_order_acquire)) return;
    try {
      local_.notify_gap();
      gaps_.add();
    } catch (...) {  // a handler failed: the gap on re-subscription clears again
    }
  }

  /// Waits up to `d` for the wake-up pipe or input on one of `cs`; true when stop() was
  /// requested.
  bool idle(std::chrono::nanoseconds d, std::span<const redis_context_ptr> cs = {}) {
    pollfds_.assign(1, {wake_read_, POLLIN, 0});
    for (const auto& c : cs) pollfds_.push_back({c->fd, POLLIN, 0});
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
    (void)::poll(pollfds_.data(), pollfds_.size(),
                 static_cast<int>(std::clamp<std::int64_t>(ms, 0, 3'600'000)));
    char buf[64];
    while (::read(wake_read_, buf, sizeof buf) > 0) {
    }
    return stopping_.load(std::memory_order_acquire);
  }

  /// On c: the instance-id claim, tracking (tracking mode: CLIENT TRACKING, SUBSCRIBE
  /// __redis__:invalidate) and, when `with_channel`, (S)SUBSCRIBE `channel`.
  bool subscribe_on(redisContext* c, bool with_channel) {
    claim_instance_id(c);
    if (c->err != 0) return false;
    if (tracking() && !detail::redis_enable_tracking(c, config_.tracking_prefix)) {
      return false;
    }
    int confirmations = 0;
    const auto append = [&](std::string_view command, std::string_view channel) {
      const char* argv[] = {command.data(), channel.data()};
      const std::size_t lens[] = {command.size(), channel.size()};
      ++confirmations;
      return redisAppendCommandArgv(c, 2, argv, lens) == REDIS_OK;
    };
    if (tracking() && !append("SUBSCRIBE", detail::redis_tracking_channel)) return false;
    if (with_channel && !append(sharded() ? "SSUBSCRIBE" : "SUBSCRIBE", config_.channel)) {
      return false;
    }
    for (int i = 0; i < confirmations; ++i) {  // one confirmation per channel
      void* raw = nullptr;
      if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) return false;
      const detail::redis_reply_ptr r(static_cast<redisReply*>(raw));
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return false;
    }
    return true;
  }

  /// The subscriber's connections: one; in tracking mode on a cluster one per master
  /// (each tracking the writes made there), `channel` on its slot's master's. Empty when
  /// any of them failed.
  std::vector<detail::redis_context_ptr> subscribe_connections() {
    std::vector<detail::redis_context_ptr> out;
    std::string error;
    if (!cluster_tracking()) {
      auto c = open(config_.connection, error);
      if (c && subscribe_on(c.get(), true)) out.push_back(std::move(c));
      return out;
    }
    std::size_t owner = 0;
    auto masters = detail::redis_cluster_masters(
        config_.connection, masters_, redis_cluster_hash_slot(config_.channel), owner);
    for (std::size_t i = 0; i < masters.size(); ++i) {
      auto c = detail::redis_open_node(config_.connection, masters[i].host, masters[i].port,
                                       config_.connection.password, 0, error);
      if (!c || !subscribe_on(c.get(), i == owner)) return {};
      out.push_back(std::move(c));
    }
    masters_ = std::move(masters);
    return out;
  }

  /// Tracking on a cluster: true when the masters differ from those tracked (a replica
  /// promoted without its master's connection breaking, a master added).
  bool masters_changed() {
    std::size_t owner = 0;
    const auto now = detail::redis_cluster_masters(
        config_.connection, masters_, redis_cluster_hash_slot(config_.channel), owner);
    return !now.empty() &&
           !std::equal(now.begin(), now.end(), masters_.begin(), masters_.end(),
                       [](const redis_endpoint& a, const redis_endpoint& b) {
                         return a.host == b.host && a.port == b.port;
                       });
  }

  void subscriber_loop() noexcept {
    while (!stopping_.load(std::memory_order_acquire)) {
      try {
        if (!subscriber_gate_.try_enter()) {
          const auto wait =
              subscriber_gate_.next_attempt() - std::chrono::steady_clock::now();
          if (idle(std::min<std::chrono::nanoseconds>(wait, config_.poll_interval))) break;
          continue;
        }
        std::vector<detail::redis_context_ptr> c = subscribe_connections();
        if (c.empty()) {
          connect_failures_.add();
          subscriber_gate_.failed();
          continue;
        }
        subscriber_gate_.succeeded();
        subscribes_.add();
        if (ever_subscribed_) {  // subscribed again, so nothing later is missed
          local_.notify_gap();
          gaps_.add();  // counted once delivered: a gap counted has been applied
        }
        ever_subscribed_ = true;
        set_subscribed(true);
        read_messages(c);
        lost();
      } catch (...) {  // allocation failure: drop the connection, count a gap later
        lost();
        if (idle(config_.poll_interval)) break;
      }
    }
    set_subscribed(false);
  }

  // Reads until a connection fails or stop() is requested; in tracking mode also until
  // a heartbeat PING goes unanswered, and on a cluster until the masters change.
  void read_messages(std::span<const redis_context_ptr> cs) {
    using clock = std::chrono::steady_clock;
    const std::chrono::nanoseconds answer_within =
        detail::command_timeout(config_.connection);
    std::vector<clock::time_point> heard(cs.size(), clock::now());    // last reply read
    std::vector<std::optional<clock::time_point>> pinged(cs.size());  // unanswered PING
    clock::time_point checked = clock::now();  // the cluster's masters, last compared
    for (;;) {
      std::chrono::nanoseconds wait = config_.poll_interval;
      for (std::size_t i = 0; i < cs.size(); ++i) {
        redisContext* c = cs[i].get();
        for (;;) {
          void* raw = nullptr;
          if (redisGetReplyFromReader(c, &raw) != REDIS_OK) return;
          if (raw == nullptr) break;
          const detail::redis_reply_ptr r(static_cast<redisReply*>(raw));
          heard[i] = clock::now();
          pinged[i].reset();
          if (!on_reply(*r)) return;  // unsubscribed by the server: subscribe again
        }
        if (!tracking()) continue;
        const auto now = clock::now();
        if (pinged[i] && now - *pinged[i] >= answer_within) {
          heartbeat_timeouts_.add();
          return;
        }
        if (!pinged[i] && now - heard[i] >= config_.poll_interval) {
          if (redisAppendCommand(c, "PING") != REDIS_OK ||
              !detail::redis_flush_until(c, now + answer_within)) {
            return;
          }
          pinged[i] = now;
        }
        if (pinged[i]) wait = std::min(wait, *pinged[i] + answer_within - now);
      }
      if (cluster_tracking() && clock::now() - checked >= std::chrono::seconds{1}) {
        if (masters_changed()) return;
        checked = clock::now();
      }
      if (idle(wait, cs)) return;
      for (const auto& c : cs) {
        pollfd p{c->fd, POLLIN, 0};
        if (::poll(&p, 1, 0) > 0 && redisBufferRead(c.get()) != REDIS_OK) {
          return;  // EOF, reset: reconnect
        }
      }
      bool retry = false;
      {
        std::lock_guard lock(pending_mutex_);
        retry = pending_clear_ || !pending_.empty();
      }
      if (retry) (void)flush_pending();
    }
  }

  /// Handles one reply of the subscriber connection; false when the server ended the
  /// subscription ("sunsubscribe": the channel's slot moved to another node).
  bool on_reply(const redisReply& r) {
    if (r.type != REDIS_REPLY_ARRAY || r.elements != 3) return true;
    const redisReply* kind = r.element[0];
    const redisReply* payload = r.element[2];
    const std::string_view what = detail::redis_text(kind);
    if (what == "sunsubscribe") return false;
    if (what != "message" && what != "smessage") return true;  // confirmations, PONGs
    if (tracking() && detail::redis_text(r.element[1]) == detail::redis_tracking_channel) {
      on_tracking(*payload);
      return true;
    }
    if (payload->type != REDIS_REPLY_STRING) return true;
    const auto m = detail::redis_parse_invalidation<Key>(
        codec_, std::string_view(payload->str, payload->len));
    if (!m) {
      decode_errors_.add();
      return true;
    }
    if (m->from == instance_id()) {
      own_ignored_.add();
      return true;
    }
    if (m->has_seq && !seen_.first_time(m->from, m->seq)) {
      duplicates_.add();
      return true;
    }
    if (m->clear) {
      local_.publish_clear(0);
    } else {
      local_.publish(*m->key, 0);
    }
    received_.add();  // counted once delivered
    return true;
  }

  /// A client-side caching invalidation: the written keys, or nil for a flush.
  void on_tracking(const redisReply& payload) {
    if (payload.type == REDIS_REPLY_NIL) {
      local_.publish_clear(0);
      flushes_.add();  // counted once delivered
      return;
    }
    if (payload.type != REDIS_REPLY_ARRAY) {
      decode_errors_.add();
      return;
    }
    for (std::size_t i = 0; i < payload.elements; ++i) {
      const redisReply* k = payload.element[i];
      if (k->type != REDIS_REPLY_STRING) {
        decode_errors_.add();
        continue;
      }
      auto t = detail::redis_parse_tracked_key<Key>(codec_, config_.tracking_prefix,
                                                    std::string_view(k->str, k->len));
      if (t.kind == detail::redis_tracked_kind::ours) {
        local_.publish(*t.key, 0);
        tracked_.add();
      } else {
        (t.kind == detail::redis_tracked_kind::foreign ? tracked_foreign_ : decode_errors_)
            .add();
      }
    }
  }

  void close_pipe() noexcept {
    if (wake_read_ >= 0) ::close(wake_read_);
    if (wake_write_ >= 0) ::close(wake_write_);
    wake_read_ = wake_write_ = -1;
  }

  const redis_invalidation_bus_config config_;
  const std::uint64_t seed_;  // of both reconnect gates' jitter
  const Codec codec_;
  std::atomic<std::uint64_t> id_;
  in_process_invalidation_bus<Key> local_;

  detail::deadline_mutex io_mutex_;  // the publisher connection and its gate
  detail::redis_context_ptr publisher_;
  mutable std::mutex pending_mutex_;  // pending_, pending_clear_
  detail::reconnect_gate<steady_clock_source> publisher_gate_;
  std::deque<std::string> pending_;
  bool pending_clear_ = false;

  detail::reconnect_gate<steady_clock_source> subscriber_gate_;
  std::mutex thread_mutex_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool ever_subscribed_ = false;  // only the subscriber thread (threads are joined)
  detail::redis_message_window seen_{config_.dedupe_window};  // likewise
  std::atomic<std::uint64_t> seq_{random_id()};
  int wake_read_ = -1;
  int wake_write_ = -1;
  std::vector<pollfd> pollfds_;          // idle()'s, reused: subscriber thread only
  std::vector<redis_endpoint> masters_;  // tracking on a cluster: those tracked

  mutable std::mutex state_mutex_;
  std::condition_variable state_cv_;
  bool subscribed_ = false;
  std::atomic<bool> delivering_{false};  // = subscribed_, read without the mutex

  counter published_, sent_, publish_failures_, pending_overflows_, received_, own_ignored_,
      decode_errors_, gaps_, subscribes_, connect_failures_, id_conflicts_, duplicates_,
      busy_, tracked_, tracked_foreign_, flushes_, heartbeat_timeouts_;
};

}  // namespace outgrow::detail
