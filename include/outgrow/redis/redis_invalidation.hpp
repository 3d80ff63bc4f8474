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
//       {.connection = {.host = "127.0.0.1", .port = 6379}, .channel = "shop:invalidate"});
//   users.connect(bus);       // a tiered_cache: publishes its writes, drops others'
//   bus.start();              // the subscriber thread (you ask for it; stop() or the
//                             // destructor joins it)
//   bus.wait_subscribed(2s);  // optional: serve reads once invalidations flow
//   ...
//   fmt::print("{}\n", bus.metrics());   // redis_invalidation_bus_metrics{published=...}
//
// Guarantees. Local subscribers get each publish exactly once, synchronously. Each
// other subscribed instance gets it at least once, unless it is covered by a clear: a
// message Redis did not acknowledge is kept and re-sent in order (up to max_pending,
// then one clear replaces them), and a subscriber that was disconnected clears its L1
// (a gap event) once re-subscribed. A re-sent message that had reached Redis after all
// is dropped by the receivers (message ids in a window of the last dedupe_window = 4096),
// so within that window delivery is exactly once; beyond it, and for messages in the
// older format, a duplicate can arrive and is harmless (an invalidation applied twice
// drops an L1 entry that is refilled from Redis). Lost for good: pending messages of a
// process that dies (TTLs bound the staleness). Time: publish, publish_clear and
// flush_pending return within connect_timeout + command_timeout each, however many
// publishers wait behind a frozen Redis; stop() waits for the subscriber thread's current
// step (a connect plus a few commands, or a flush).
//
// Delivery.
//   - Local subscribers (caches in this process connected to this bus object) get every
//     publish synchronously, on the publishing thread, exactly as with
//     in_process_invalidation_bus (origin kept, so a cache ignores its own writes).
//   - Other instances get it through Redis: asynchronously (one network round trip),
//     deduplicated (see "Duplicates"), delivered on the subscriber thread with origin 0
//     (origins are cache ids, unique only within a process). A bus recognises and drops
//     its own messages coming back from Redis by a random 64-bit instance id in each
//     message (they were already delivered locally). Two buses with the same id on a
//     channel would drop each other's messages: on every subscribe the bus names its
//     subscriber connection (CLIENT SETNAME outgrow-bus-<channel hash>-<id>) and, when
//     CLIENT LIST shows another client with that name, takes a fresh random id
//     (metrics().id_conflicts). The bus that subscribed first keeps its id. Servers whose
//     ACLs refuse CLIENT SETNAME / LIST skip the check (keep the default random ids there).
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
// Wire format (one PUBLISH payload): 'k' (key) or 'c' (clear), the 8-byte little-endian
// instance id, an 8-byte little-endian message number (a per-bus counter starting at a
// random value), then for 'k' the key's bytes (Codec, as in redis_tier; keys are decoded
// here, so the codec must satisfy redis_codec<Codec, Key>, and its validation hooks
// apply). The older format ('K' / 'C', id, key: no message number) is still accepted.
// Messages that do not parse are counted in decode_errors and dropped.
//
// Duplicates: a PUBLISH whose reply timed out may still have reached Redis; the bus then
// re-sends it (see "Failed publishes"), and subscribers would see it twice. Subscribers
// drop a message whose (instance id, message number) is among the last dedupe_window
// (4096) they delivered, counted in metrics().duplicates. Older-format messages and
// duplicates arriving more than dedupe_window messages later are delivered again:
// harmless, as an invalidation applied twice only drops an L1 entry that is then
// refilled from Redis.
//
// Defaults: channel "outgrow:invalidation"; connect 200 ms, command 100 ms (as
// redis_tier); reconnect backoff full jitter 10 ms .. 1 s; poll_interval 100 ms (how
// often the subscriber thread wakes to retry pending publishes; stop() wakes it at once
// through a pipe); max_pending 10000.
//
// Thread-safety: publish, publish_clear, subscribe, metrics, start, stop from any thread.
// Publishes share one connection: a publisher waits for it only until its own deadline
// (connect_timeout + command_timeout from the call), and its connect and PUBLISH get
// what is left of that budget as their timeouts; so every publish (and flush_pending)
// returns within connect + command timeouts however many publishers wait behind a
// frozen Redis — those that found the connection busy too long keep their message
// (metrics().publish_busy) — and not at all while the reconnect backoff runs. Handlers run
// on the publishing thread (local) or the subscriber thread (remote, gaps); they must be
// quick and must not publish on this bus.
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
#include <outgrow/core/detail/deadline_mutex.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/redis/codec.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/connection.hpp>
#include <outgrow/redis/detail/invalidation_wire.hpp>
#include <outgrow/redis/detail/reconnect_gate.hpp>

#include <fmt/format.h>

namespace outgrow {

struct redis_invalidation_bus_config {
  /// Where Redis is and how long to wait: connect 200 ms, command 100 ms (as redis_tier),
  /// reconnect backoff 10 ms .. 1 s with a random jitter seed per bus, so a fleet does
  /// not reconnect in lock-step (set connection.seed for a reproducible one). Pub/sub
  /// ignores connection.database (kept for AUTH/SELECT symmetry). Errors name
  /// "connection.<field>".
  redis_connection_config connection{};
  /// The channel every instance publishes to and subscribes to.
  std::string channel = "outgrow:invalidation";
  /// This instance's id in messages; 0 = random. Must differ between instances: a bus
  /// that finds another one subscribed with its id takes a random one (id_conflicts).
  std::uint64_t instance_id = 0;
  /// Subscriber thread wake-up period (retrying pending publishes). [1 ms, 1 h]
  std::chrono::nanoseconds poll_interval = std::chrono::milliseconds{100};
  /// Unsent messages kept for re-sending. [0, 1e8]
  std::size_t max_pending = 10'000;
  /// Message ids (sender, sequence number) remembered to drop re-sent duplicates: 4096.
  /// 0 = no deduplication. [0, 1e7]
  std::size_t dedupe_window = 4096;
};

struct redis_invalidation_bus_metrics {
  static constexpr std::string_view metrics_name = "redis_invalidation_bus_metrics";
  std::uint64_t published = 0;         ///< publish() + publish_clear() calls
  std::uint64_t sent = 0;              ///< messages Redis accepted (re-sent ones included)
  std::uint64_t publish_failures = 0;  ///< send attempts that failed
  std::uint64_t publish_busy = 0;  ///< publishes that found the connection busy too long
  std::uint64_t pending = 0;       ///< messages waiting to be re-sent now
  std::uint64_t pending_overflows = 0;  ///< times pending was replaced by one clear
  std::uint64_t received = 0;           ///< messages from other instances, once delivered
  std::uint64_t own_ignored = 0;        ///< our own messages coming back
  std::uint64_t duplicates = 0;         ///< re-sent messages already delivered (dropped)
  std::uint64_t decode_errors = 0;
  std::uint64_t gaps = 0;              ///< gap events delivered (re-subscriptions)
  std::uint64_t subscribes = 0;        ///< successful SUBSCRIBEs
  std::uint64_t connect_failures = 0;  ///< publisher and subscriber
  std::uint64_t id_conflicts = 0;  ///< another bus had our instance id: we took a new one
  std::uint64_t subscribers = 0;   ///< local subscribers now
  bool subscribed = false;         ///< the subscriber is subscribed now

  template <class F>
  void for_each_metric(F&& f) const {
    f("published", published);
    f("sent", sent);
    f("publish_failures", publish_failures);
    f("publish_busy", publish_busy);
    f("pending", pending);
    f("pending_overflows", pending_overflows);
    f("received", received);
    f("own_ignored", own_ignored);
    f("duplicates", duplicates);
    f("decode_errors", decode_errors);
    f("gaps", gaps);
    f("subscribes", subscribes);
    f("connect_failures", connect_failures);
    f("id_conflicts", id_conflicts);
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

  /// Connects lazily (publisher) and in start() (subscriber).
  /// Throws: config_error if a config field is out of range (see
  /// redis_invalidation_bus_config).
  explicit redis_invalidation_bus(redis_invalidation_bus_config config = {},
                                  Codec codec = {})
      : config_(validated(std::move(config))),
        seed_(resolve_seed(config_.connection.seed)),
        codec_(std::move(codec)),
        id_(config_.instance_id != 0 ? config_.instance_id : random_id()),
        publisher_gate_(config_.connection.reconnect_backoff, seed_, {}),
        subscriber_gate_(config_.connection.reconnect_backoff, seed_ ^ 0x5B5CULL, {}) {}

  redis_invalidation_bus(const redis_invalidation_bus&) = delete;
  redis_invalidation_bus& operator=(const redis_invalidation_bus&) = delete;

  ~redis_invalidation_bus() { stop(); }

  // ---- the invalidation_bus concept --------------------------------------------------

  /// Local subscribers drop `key` now; other instances when the message arrives. False
  /// when the message could not be sent yet (kept for re-sending, see the header).
  /// Throws: what a local subscriber's handler throws; std::bad_alloc if the message
  /// cannot be built.
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
  /// Throws: what a local subscriber's handler throws; std::bad_alloc if the message
  /// cannot be built.
  bool publish_clear(std::uint64_t origin = 0) {
    local_.publish_clear(origin);
    published_.add();
    return send(header('C'));
  }

  /// Calls `handler` for every local publish and every message from other instances
  /// until the subscription is destroyed.
  /// Throws: std::bad_alloc if the subscription cannot be allocated.
  [[nodiscard]] invalidation_subscription subscribe(invalidation_handler<Key> handler) {
    return local_.subscribe(std::move(handler));
  }

  // ---- the subscriber thread ---------------------------------------------------------

  /// Starts the subscriber thread (idempotent while running).
  /// Throws: std::system_error if the thread or its wake-up pipe cannot be created.
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

  /// Stops and joins the subscriber thread (waits for its current step: a connect and
  /// its handshake commands, or a flush bounded by connect + command timeouts).
  /// Idempotent. Local publishes keep working.
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

  /// This instance's id in messages (changes once if another bus already uses it).
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
        publisher_ = detail::redis_open(e, error);
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
    auto c = detail::redis_open(config_.connection, error);
    if (!c) return nullptr;
    claim_instance_id(c.get());
    if (c->err != 0) return nullptr;
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
        std::lock_guard lock(pending_mutex_);
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
    const auto m = detail::redis_parse_invalidation<Key>(
        codec_, std::string_view(payload->str, payload->len));
    if (!m) {
      decode_errors_.add();
      return;
    }
    if (m->from == instance_id()) {
      own_ignored_.add();
      return;
    }
    if (m->has_seq && !seen_.first_time(m->from, m->seq)) {
      duplicates_.add();
      return;
    }
    if (m->clear) {
      local_.publish_clear(0);
    } else {
      local_.publish(*m->key, 0);
    }
    received_.add();  // counted once delivered
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

  mutable std::mutex state_mutex_;
  std::condition_variable state_cv_;
  bool subscribed_ = false;

  counter published_, sent_, publish_failures_, pending_overflows_, received_, own_ignored_,
      decode_errors_, gaps_, subscribes_, connect_failures_, id_conflicts_, duplicates_,
      busy_;
};

static_assert(invalidation_bus<redis_invalidation_bus<std::string>>);

}  // namespace outgrow
