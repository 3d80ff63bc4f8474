// outgrow/redis/redis_invalidation.hpp — an invalidation bus across instances, over Redis
// pub/sub.
//
// When one service instance writes a key, every other instance must drop its in-process
// copy (L1). redis_invalidation_bus<Key> satisfies `invalidation_bus`
// (cache/invalidation.hpp): publish(key) PUBLISHes the key on a channel every instance
// SUBSCRIBEs to, and a subscriber thread hands what arrives to the local subscribers
// (tiered_cache::connect does the wiring).
//
//   outgrow::redis_invalidation_bus<std::string> bus(
//       {.host = "127.0.0.1", .port = 6379, .channel = "shop:invalidate"});
//   users.connect(bus);       // a tiered_cache: publishes its writes, drops others'
//   bus.start();              // the subscriber thread (you ask for it; stop() or the
//                             // destructor joins it)
//   bus.wait_subscribed(2s);  // optional: serve reads once invalidations flow
//   ...
//   fmt::print("{}\n", bus.stats());   // redis_invalidation_stats{published=...}
//
// Delivery.
//   - Local subscribers (caches in this process connected to this bus object) get every
//     publish synchronously, on the publishing thread, exactly as with
//     in_process_invalidation_bus (origin kept, so a cache ignores its own writes).
//   - Other instances get it through Redis: at most once, asynchronously (one network
//     round trip), delivered on the subscriber thread with origin 0 (origins are cache
//     ids, unique only within a process). A bus recognises and drops its own messages
//     coming back from Redis by a random 64-bit instance id in each message (they were
//     already delivered locally).
//   - Gaps: Redis pub/sub does not queue for a disconnected subscriber, so messages
//     published while the subscriber was disconnected are lost. When the subscriber
//     reconnects (and has re-subscribed, so nothing later can be missed), the bus
//     delivers one local {kind = clear, cause = gap} event; tiered_cache then CLEARS its
//     in-process tiers (not Redis, which writers keep current). We clear rather than
//     revalidate: revalidating would need a version per key in Redis and a round trip
//     per L1 entry, while clearing costs one L1 refill from Redis (cheap) and is correct
//     whatever was missed. Every subscription but the bus's first is a gap (a
//     stop() / start() pair included); start the bus (and wait_subscribed) before
//     serving reads, so that the first one loses nothing.
//   - Failed publishes: a message that cannot be sent (Redis down, timeout) is kept, up
//     to max_pending messages, and re-sent in order once Redis is reachable again (by the
//     next publish, or by the subscriber thread every poll_interval); beyond max_pending
//     they are replaced by one "clear" message. So an instance whose own link failed
//     still invalidates the others when it comes back. An instance that dies with
//     pending messages loses them: TTLs remain the bound on staleness.
//
// Wire format (one PUBLISH payload): 'K' or 'C', the 8-byte little-endian instance id,
// then for 'K' the key's bytes (Codec, as in redis_tier; keys are decoded here, so the
// codec must satisfy redis_codec<Codec, Key>). Messages that do not parse are counted in
// decode_errors and dropped.
//
// Defaults: channel "outgrow:invalidation"; connect 200 ms, command 100 ms (as
// redis_tier); reconnect backoff full jitter 10 ms .. 1 s; poll_interval 100 ms (how
// often the subscriber thread wakes to retry pending publishes; stop() wakes it at once
// through a pipe); max_pending 10000.
//
// Thread-safety: publish, publish_clear, subscribe, stats, start, stop from any thread.
// Publishes share one connection under a mutex (PUBLISH is one round trip; a publish
// waits at most connect + command timeouts, and not at all while the reconnect backoff
// runs). Handlers run on the publishing thread (local) or the subscriber thread
// (remote, gaps); they must be quick and must not publish on this bus.
// Complexity: publish O(local subscribers) + one round trip; receive O(local
// subscribers) per message.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <outgrow/cache/invalidation.hpp>
#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/stats.hpp>
#include <outgrow/redis/redis_tier.hpp>

namespace outgrow {

struct redis_invalidation_config {
  std::string host = "127.0.0.1";
  int port = 6379;  ///< [1, 65535]
  std::string password{};
  int database = 0;  ///< pub/sub ignores the database; kept for AUTH/SELECT symmetry
  /// The channel every instance publishes to and subscribes to.
  std::string channel = "outgrow:invalidation";
  /// This instance's id in messages; 0 = random. Must differ between instances.
  std::uint64_t instance_id = 0;
  std::chrono::nanoseconds connect_timeout = std::chrono::milliseconds{200};  ///< (0, 1 h]
  std::chrono::nanoseconds command_timeout = std::chrono::milliseconds{100};  ///< (0, 1 h]
  full_jitter_backoff reconnect_backoff{std::chrono::milliseconds{10},
                                        std::chrono::seconds{1}};
  std::uint64_t seed = 0x1A7A'11D8'5EEDULL;
  /// Subscriber thread wake-up period (retrying pending publishes). [1 ms, 1 h]
  std::chrono::nanoseconds poll_interval = std::chrono::milliseconds{100};
  /// Unsent messages kept for re-sending. [0, 1e8]
  std::size_t max_pending = 10'000;
};

struct redis_invalidation_stats {
  static constexpr std::string_view metrics_name = "redis_invalidation_stats";
  std::uint64_t published = 0;          ///< publish() + publish_clear() calls
  std::uint64_t sent = 0;               ///< messages Redis accepted (re-sent ones included)
  std::uint64_t publish_failures = 0;   ///< send attempts that failed
  std::uint64_t pending = 0;            ///< messages waiting to be re-sent now
  std::uint64_t pending_overflows = 0;  ///< times pending was replaced by one clear
  std::uint64_t received = 0;           ///< messages from other instances, once delivered
  std::uint64_t own_ignored = 0;        ///< our own messages coming back
  std::uint64_t decode_errors = 0;
  std::uint64_t gaps = 0;              ///< gap events delivered (re-subscriptions)
  std::uint64_t subscribes = 0;        ///< successful SUBSCRIBEs
  std::uint64_t connect_failures = 0;  ///< publisher and subscriber
  std::uint64_t subscribers = 0;       ///< local subscribers now
  bool subscribed = false;             ///< the subscriber is subscribed now

  template <class F>
  void for_each_metric(F&& f) const {
    f("published", published);
    f("sent", sent);
    f("publish_failures", publish_failures);
    f("pending", pending);
    f("pending_overflows", pending_overflows);
    f("received", received);
    f("own_ignored", own_ignored);
    f("decode_errors", decode_errors);
    f("gaps", gaps);
    f("subscribes", subscribes);
    f("connect_failures", connect_failures);
    f("subscribers", subscribers);
    f("subscribed", subscribed);
  }
};

template <class Key, class Codec = redis_default_codec>
requires redis_codec<Codec, Key>
class redis_invalidation_bus {
 public:
  using key_type = Key;
  using codec_type = Codec;
  using event_type = invalidation_event<Key>;

  /// Connects lazily (publisher) and in start() (subscriber). config_error when invalid.
  explicit redis_invalidation_bus(redis_invalidation_config config = {}, Codec codec = {})
      : config_(validated(std::move(config))),
        endpoint_(detail::redis_endpoint::of(config_)),
        codec_(std::move(codec)),
        id_(config_.instance_id != 0 ? config_.instance_id : random_id()),
        publisher_gate_(config_.reconnect_backoff, config_.seed, {}),
        subscriber_gate_(config_.reconnect_backoff, config_.seed ^ 0x5B5CULL, {}) {}

  redis_invalidation_bus(const redis_invalidation_bus&) = delete;
  redis_invalidation_bus& operator=(const redis_invalidation_bus&) = delete;

  ~redis_invalidation_bus() { stop(); }

  // ---- the invalidation_bus concept --------------------------------------------------

  /// Local subscribers drop `key` now; other instances when the message arrives. False
  /// when the message could not be sent yet (kept for re-sending, see the header).
  bool publish(const Key& key, std::uint64_t origin = 0) {
    local_.publish(key, origin);
    published_.add();
    std::string message = header('K');
    try {
      codec_.encode(key, message);
    } catch (...) {
      publish_failures_.add();
      return false;
    }
    return send(std::move(message));
  }

  /// Every subscriber (local and remote) drops everything.
  bool publish_clear(std::uint64_t origin = 0) {
    local_.publish_clear(origin);
    published_.add();
    return send(header('C'));
  }

  [[nodiscard]] invalidation_subscription subscribe(invalidation_handler<Key> handler) {
    return local_.subscribe(std::move(handler));
  }

  // ---- the subscriber thread ---------------------------------------------------------

  /// Starts the subscriber thread (idempotent while running). Throws std::system_error
  /// if the thread or its wake-up pipe cannot be created.
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
    stopping_.store(false, std::memory_order_release);
    try {
      thread_ = std::thread([this] { subscriber_loop(); });
    } catch (...) {
      close_pipe();
      throw;
    }
  }

  /// Stops and joins the subscriber thread (waits at most one connect or command
  /// timeout). Idempotent. Local publishes keep working.
  void stop() noexcept {
    std::lock_guard lock(thread_mutex_);
    if (!thread_.joinable()) return;
    stopping_.store(true, std::memory_order_release);
    const char byte = 1;
    (void)!::write(wake_write_, &byte, 1);
    thread_.join();
    close_pipe();
  }

  /// Waits until the subscriber is subscribed (true) or `timeout` passed (false).
  template <class Rep, class Period>
  bool wait_subscribed(std::chrono::duration<Rep, Period> timeout) {
    std::unique_lock lock(state_mutex_);
    return state_cv_.wait_for(lock, timeout, [&] { return subscribed_; });
  }

  /// Re-sends pending messages now (the subscriber thread also does it). True when
  /// nothing is left pending.
  bool flush_pending() {
    std::lock_guard lock(publish_mutex_);
    return drain_pending_locked();
  }

  [[nodiscard]] redis_invalidation_stats stats() const {
    redis_invalidation_stats s;
    s.published = published_.load();
    s.sent = sent_.load();
    s.publish_failures = publish_failures_.load();
    s.pending_overflows = pending_overflows_.load();
    s.received = received_.load();
    s.own_ignored = own_ignored_.load();
    s.decode_errors = decode_errors_.load();
    s.gaps = gaps_.load();
    s.subscribes = subscribes_.load();
    s.connect_failures = connect_failures_.load();
    s.subscribers = local_.stats().subscribers;
    {
      std::lock_guard lock(publish_mutex_);
      s.pending = pending_.size() + (pending_clear_ ? 1 : 0);
    }
    {
      std::lock_guard lock(state_mutex_);
      s.subscribed = subscribed_;
    }
    return s;
  }

  [[nodiscard]] std::uint64_t instance_id() const noexcept { return id_; }
  [[nodiscard]] const redis_invalidation_config& config() const noexcept { return config_; }

 private:
  static redis_invalidation_config validated(redis_invalidation_config c) {
    using namespace std::chrono_literals;
    constexpr std::string_view who = "redis_invalidation_bus";
    detail::validate_endpoint(who, {c.host, c.port, c.password, c.database,
                                    c.connect_timeout, c.command_timeout});
    require(!c.channel.empty(), who, "channel", "a non-empty channel name", "\"\"");
    require_in_range(who, "poll_interval", c.poll_interval, std::chrono::nanoseconds{1ms},
                     std::chrono::nanoseconds{1h});
    require_in_range(who, "max_pending", c.max_pending, std::size_t{0},
                     std::size_t{100'000'000});
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

  std::string header(char kind) const {
    std::string m;
    m.reserve(32);
    m.push_back(kind);
    for (int i = 0; i < 8; ++i) {
      m.push_back(static_cast<char>(static_cast<unsigned char>(id_ >> (8 * i))));
    }
    return m;
  }

  // ---- publishing --------------------------------------------------------------------

  bool send(std::string message) {
    std::lock_guard lock(publish_mutex_);
    if (!drain_pending_locked() || !send_locked(message)) {
      keep_locked(std::move(message));
      return false;
    }
    return true;
  }

  bool send_locked(const std::string& message) {
    if (!publisher_) {
      if (!publisher_gate_.try_enter()) return false;
      std::string error;
      publisher_ = detail::redis_open(endpoint_, error);
      if (!publisher_) {
        connect_failures_.add();
        publisher_gate_.failed();
        publish_failures_.add();
        return false;
      }
      publisher_gate_.succeeded();
    }
    const std::string_view args[] = {"PUBLISH", config_.channel, message};
    auto r = detail::redis_argv(publisher_.get(), args);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
      if (!r) publisher_.reset();
      publish_failures_.add();
      return false;
    }
    sent_.add();
    return true;
  }

  void keep_locked(std::string message) {
    if (pending_clear_) return;  // one clear covers everything
    if (message[0] == 'C' || pending_.size() >= config_.max_pending) {
      if (message[0] != 'C') pending_overflows_.add();
      pending_.clear();
      pending_clear_ = true;
      return;
    }
    pending_.push_back(std::move(message));
  }

  bool drain_pending_locked() {
    if (pending_clear_) {
      if (!send_locked(header('C'))) return false;
      pending_clear_ = false;
      pending_.clear();
    }
    while (!pending_.empty()) {
      if (!send_locked(pending_.front())) return false;
      pending_.pop_front();
    }
    return true;
  }

  // ---- subscribing -------------------------------------------------------------------

  void set_subscribed(bool on) {
    {
      std::lock_guard lock(state_mutex_);
      subscribed_ = on;
    }
    state_cv_.notify_all();
  }

  /// Waits up to `d` for the wake-up pipe; true when stop() was requested.
  bool idle(std::chrono::nanoseconds d, int fd = -1) {
    pollfd fds[2] = {{wake_read_, POLLIN, 0}, {fd, POLLIN, 0}};
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
    (void)::poll(fds, fd >= 0 ? 2 : 1,
                 static_cast<int>(std::clamp<std::int64_t>(ms, 0, 3'600'000)));
    char buf[64];
    while (::read(wake_read_, buf, sizeof buf) > 0) {
    }
    return stopping_.load(std::memory_order_acquire);
  }

  detail::redis_context_ptr subscribe_connection() {
    std::string error;
    auto c = detail::redis_open(endpoint_, error);
    if (!c) return nullptr;
    const std::string_view args[] = {"SUBSCRIBE", config_.channel};
    auto r = detail::redis_argv(c.get(), args);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return nullptr;
    return c;
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
        detail::redis_context_ptr c = subscribe_connection();
        if (!c) {
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
        read_messages(c.get());
        set_subscribed(false);
      } catch (...) {  // allocation failure: drop the connection, count a gap later
        set_subscribed(false);
        if (idle(config_.poll_interval)) break;
      }
    }
    set_subscribed(false);
  }

  // Reads until the connection fails or stop() is requested.
  void read_messages(redisContext* c) {
    for (;;) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(c, &raw) != REDIS_OK) return;
      if (raw != nullptr) {
        const detail::redis_reply_ptr r(static_cast<redisReply*>(raw));
        on_reply(*r);
        continue;
      }
      if (idle(config_.poll_interval, c->fd)) return;
      pollfd p{c->fd, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0) {
        if (redisBufferRead(c) != REDIS_OK) return;  // EOF, reset: reconnect
      }
      bool retry = false;
      {
        std::lock_guard lock(publish_mutex_);
        retry = pending_clear_ || !pending_.empty();
      }
      if (retry) (void)flush_pending();
    }
  }

  void on_reply(const redisReply& r) {
    if (r.type != REDIS_REPLY_ARRAY || r.elements != 3) return;
    const redisReply* kind = r.element[0];
    const redisReply* payload = r.element[2];
    if (kind->type != REDIS_REPLY_STRING ||
        std::string_view(kind->str, kind->len) != "message" ||
        payload->type != REDIS_REPLY_STRING) {
      return;  // subscribe confirmations and the like
    }
    const std::string_view m(payload->str, payload->len);
    if (m.size() < 9 || (m[0] != 'K' && m[0] != 'C')) {
      decode_errors_.add();
      return;
    }
    std::uint64_t from = 0;
    for (int i = 0; i < 8; ++i) {
      from |= static_cast<std::uint64_t>(
                  static_cast<unsigned char>(m[1 + static_cast<std::size_t>(i)]))
              << (8 * i);
    }
    if (from == id_) {
      own_ignored_.add();
      return;
    }
    if (m[0] == 'C') {
      if (m.size() != 9) {
        decode_errors_.add();
        return;
      }
      local_.publish_clear(0);
      received_.add();
      return;
    }
    std::optional<Key> key;
    try {
      key = codec_.decode(m.substr(9), std::type_identity<Key>{});
    } catch (...) {
      key.reset();
    }
    if (!key) {
      decode_errors_.add();
      return;
    }
    local_.publish(*key, 0);
    received_.add();  // counted once delivered
  }

  void close_pipe() noexcept {
    if (wake_read_ >= 0) ::close(wake_read_);
    if (wake_write_ >= 0) ::close(wake_write_);
    wake_read_ = wake_write_ = -1;
  }

  const redis_invalidation_config config_;
  const detail::redis_endpoint endpoint_;
  const Codec codec_;
  const std::uint64_t id_;
  in_process_invalidation_bus<Key> local_;

  mutable std::mutex publish_mutex_;
  detail::redis_context_ptr publisher_;
  detail::reconnect_gate<steady_clock_source> publisher_gate_;
  std::deque<std::string> pending_;
  bool pending_clear_ = false;

  detail::reconnect_gate<steady_clock_source> subscriber_gate_;
  std::mutex thread_mutex_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool ever_subscribed_ = false;  // only the subscriber thread (threads are joined)
  int wake_read_ = -1;
  int wake_write_ = -1;

  mutable std::mutex state_mutex_;
  std::condition_variable state_cv_;
  bool subscribed_ = false;

  counter published_, sent_, publish_failures_, pending_overflows_, received_, own_ignored_,
      decode_errors_, gaps_, subscribes_, connect_failures_;
};

static_assert(invalidation_bus<redis_invalidation_bus<std::string>>);

}  // namespace outgrow
