// outgrow/redis/session_store.hpp — sessions in Redis, so any app instance serves any user.
//
// What: the stateless-services pattern as a primitive. Instead of sticky sessions (a user
// pinned to the instance that holds their session, logged out when it dies) every
// instance keeps its sessions in Redis: `create(user, data)` returns an unguessable
// session id for the cookie; any instance `get`s the session by id (sliding expiry on
// read, capped by an absolute lifetime), `update`s it with optimistic concurrency (a
// version: a concurrent update is detected and reported, never lost silently),
// `rotate`s its id (on login or privilege change, against session fixation) and
// `destroy`s one session or all of a user's (log out everywhere).
//
// When: web / API servers behind a load balancer that must survive losing an instance
// and scale out without sticky routing. Not for data that must outlive Redis (a session
// is a cache of "who is logged in": Redis failing logs users out or makes requests fail).
//
//   outgrow::session_store<std::string> sessions(
//       {.connection = {.host = "127.0.0.1", .port = 6379},
//        .idle_timeout = 30min, .absolute_lifetime = 8h,
//        .max_sessions_per_user = 10});
//   auto made = sessions.create("ada", "cart=3");   // made.status == session_status::ok
//   set_cookie(made->reveal());                      // the only place the id is whole
//   const outgrow::session_id id(cookie_value);      // a later request, any instance
//   auto s = sessions.get(id);
//   if (!s) return login_page();                     // missing, corrupt or unavailable
//   auto r = sessions.update(id, s->version, s->data + ";book");
//   if (r == outgrow::session_status::conflict) { /* re-read, re-apply, retry */ }
//   auto fresh = sessions.rotate(id);                // after login: new id, same data
//   sessions.destroy_all("ada");                     // log out everywhere
//   fmt::print("{}\n", sessions.metrics());          // session_store_metrics{...}
//
// Session ids: "<tag>.<secret>" — the secret is 128 bits from getrandom(2) (the kernel's
// CSPRNG; never a seeded PRNG), printed as 32 hex digits; the tag is 4 hex digits of a
// stable hash of the user (see "Keys"). `session_id` prints only "<tag>.<4 digits>..."
// (fmt, operator<<); the whole id comes out only through reveal(), for the cookie. The
// store never logs, and its errors and metrics never hold an id. An unknown, expired,
// forged or malformed id is a miss (session_status::missing); a malformed one costs no
// round trip.
//
// Keys (the same on a standalone server, under Sentinel and on a Redis Cluster — set
// connection.cluster and each call goes to the master of its session's slot):
//   <key_prefix>{<tag>}:s:<secret>   the session: a hash of user, version, created, data
//   <key_prefix>{<tag>}:u:<user>     the user's index: a sorted set of secrets, scored by
//                                    each session's expiry (user escaped as redis_tier
//                                    escapes keys)
// The {<tag>} hash tag puts a user's sessions and index in one Redis Cluster slot, so
// each operation is one Lua script that changes both atomically on any topology, and the
// id alone says which slot to ask. Trade-off: the tag is a function of the user, so two
// ids of the same user share their first 4 characters — an observer of many ids learns
// which could belong to the same user (16 bits, 65536 buckets; users are spread over all
// 16384 slots). The alternative, a random slot per session, would need a per-user index
// in another slot, and no atomic update across slots. The scripts also touch keys they
// derive (the index named by the user a session holds), always under the same hash tag:
// one slot, one node. Changing the tag function would orphan every live session: it is
// pinned (XXH3-64, core/hash.hpp, golden-tested).
// Anyone who can read Redis keys (MONITOR, KEYS, a dump) sees whole secrets: protect
// Redis like the sessions it holds (AUTH, TLS tunnel, no shared admin access).
//
// Expiry: times are the Redis server's (TIME inside the scripts), so app instances
// agree whatever their clocks say. A session expires idle_timeout after its last
// create/get/update/rotate, and never later than created + absolute_lifetime (the
// lifetime of the store that created it, kept in the session: stores configured
// otherwise during a rolling deploy do not move it; rotate keeps both: rotating cannot
// extend a stolen session). Redis expires the keys itself (PEXPIREAT); the index drops
// entries of expired sessions on the user's next create, and expires itself with its
// user's last possible session (a create never moves that earlier).
//
// Concurrency: update(id, expected_version, data) writes only if the stored version is
// still expected_version (compare-and-set in the script) and then bumps it; otherwise
// session_status::conflict — re-read, re-apply, retry. So two instances updating one
// session never silently lose a write. create / rotate / destroy / destroy_all change a
// session and its index in one script: a session that exists is always in its user's
// index, so destroy_all leaves none of that user's sessions; get also requires the
// session to be in its user's index.
//
// L1 (optional, off by default): with l1_capacity = N, an instance keeps up to N
// sessions it read in process memory and serves repeated gets from there (no round
// trip), without ever serving a session changed or removed in Redis — by any client:
//   outgrow::session_store<std::string> sessions(
//       {.connection = {...}, .l1_capacity = 10'000, .l1_ttl = 1s});
// - Invalidation by Redis itself (Redis >= 6, not with connection.cluster: tracking is
//   per node): the store opens one more connection, with CLIENT TRACKING on REDIRECT
//   <itself> BCAST PREFIX <key_prefix>, subscribed to __redis__:invalidate, so every
//   write to a key under key_prefix (another instance's update / rotate / destroy /
//   destroy_all or sliding get, redis-cli's DEL or HSET, an expiry) reports the key and
//   its entry is dropped; FLUSHDB / FLUSHALL clears the L1. No thread: each get first
//   reads, without blocking, what has arrived on that connection (at most 256 KiB per
//   get: while a flood of writes leaves more pending, gets bypass the L1 until one has
//   read it all). Redis writes a key's
//   notice before it answers the writer (7.0: BCAST notices go out ahead of the replies
//   of the same event-loop turn), so a write that completed before a get began is
//   missed only while its notice is still on the wire to this host (loopback: not seen
//   in the tests; a flush's notice follows its answer by microseconds). This instance's own
//   update / rotate / destroy / destroy_all drop its entries at once.
// - Gaps: if that connection fails (reset, CLIENT KILL, Redis down) or stays silent (a
//   PING after 100 ms without traffic unanswered within command_timeout), the L1 is
//   cleared at once and bypassed (every get goes to Redis: a down Redis is unavailable,
//   never a held copy) until a new connection tracks again; the reconnect is tried in a
//   get (bounded by connect_timeout + one command timeout per handshake command:
//   AUTH / SELECT if set, CLIENT ID, CLIENT TRACKING, SUBSCRIBE; one get at a time, and
//   the other gets bypass the L1 meanwhile instead of waiting for it), then spaced by
//   connection.reconnect_backoff. A get whose Redis read raced with a write the L1
//   heard of meanwhile, or with a gap, does not store what it read.
// - Lifetime: an entry is served for at most min(l1_ttl, the session's time left in
//   Redis when it was read), so the L1 never outlives idle_timeout or
//   absolute_lifetime. A hit returns the session as it was read (its `expires` too) and
//   does not touch Redis; to keep sessions in use alive, a get that goes to Redis slides
//   the expiry only when that moves it by l1_ttl or more (a slide is a write, which
//   Redis reports to every L1, this one included: a get that slid does not fill the L1,
//   the next one does). Trade-off: a session used without pause on L1 hits expires no
//   sooner than idle_timeout - 2 x l1_ttl after its last get (the default 1 s against
//   30 min), never later than idle_timeout after it; index-only changes by foreign
//   clients (ZREM from a user's index) are seen after at most l1_ttl. Under Sentinel,
//   a failover that leaves the tracking connection open on the demoted master is not
//   seen by it: entries may then be stale for up to l1_ttl (not yet tested).
// - Security: entries are keyed by the whole session key (only an id equal to one read
//   from Redis can hit; forged and malformed ids never do); ids are never logged;
//   corrupt values are never held. Costs: N copies of sessions in memory; one more
//   connection per store; Redis sends this connection every write under key_prefix
//   (BCAST), which each get reads (a busy fleet's slides included).
// - Metrics: l1_hits (also counted in hits), l1_misses, l1_invalidations, l1_gaps,
//   l1_bypassed, l1_connect_failures, l1_entries.
//
// Untrusted values: anything at a session key that this store did not write — another
// type, missing or non-numeric fields, a creation time more than 60 s ahead of the
// server's clock (it would lift the absolute lifetime; 60 s allows for clock skew
// between nodes after a failover), a user whose tag differs from the id's, a session
// missing from its user's index, data the codec rejects or over max_value_size — is
// session_status::corrupt (metrics().decode_errors), handled as a miss: never a crash,
// never a session of another user. The value is left in Redis (destroy deletes it).
//
// Redis failing (down, slow, restarting): every operation returns
// session_status::unavailable (counted) within pool_timeout + connect_timeout + one
// command_timeout per handshake command and per script; nothing throws, and after a
// failed connect further attempts wait for connection.reconnect_backoff (calls in between
// return unavailable at once). What is then known: nothing — a get may have slid the
// expiry, a create, update, rotate, destroy or destroy_all may or may not have been
// applied (a lost create leaves a session nobody knows the id of, expired by
// idle_timeout; re-read before retrying an update; retrying destroy / destroy_all is
// safe). A Redis that loses its
// data (restart without persistence, failover with asynchronous replication) logs those
// users out: their gets are misses.
//
// Defaults: idle 30 min and absolute 8 h (OWASP Session Management Cheat Sheet: 15–30
// min idle for low-risk applications, 4–8 h absolute); 4 pooled connections; command
// timeout 100 ms (as redis_tier: a slow Redis fails a request rather than hanging it);
// max_value_size 1 MiB; users of 1 .. 1024 bytes.
//
// Codec: Data is encoded by a `redis_codec` (redis/codec.hpp; redis_default_codec
// stores strings, numbers and trivially copyable structs).
//
// Thread-safety: every member from any thread (each call borrows a pooled connection;
// the L1 is one mutex around its map and tracking connection). No hidden threads. The
// Clock policy times the reconnect backoff and the L1's entry lifetimes and heartbeat.
// Complexity: one round trip per call, none for an L1 hit (the first call also loads
// the scripts: SCRIPT LOAD, six round trips). In Redis: create O(log n + evicted +
// expired) for a user with n sessions, get / update / rotate / destroy O(log n),
// destroy_all O(n). L1: O(1) expected per get plus the notices read; destroy_all
// O(entries).
// Measured cost (an ad-hoc timing loop, not yet a benchmark: -O2, redis-server 7.0 on
// loopback, 64-byte data, one thread, a 2-core machine busy with compiles, 2026-12-02):
// create, get, update and rotate 50–60 us median each, beside 21 us for a plain GET on
// the same machine — the script's work (TIME, TYPE, HMGET, ZSCORE, PEXPIREAT, ZADD) is
// the difference. L1: benchmarks/redis_topology_bench.cpp BM_session_get_l1_hit /
// _l1_miss beside BM_session_get and BM_redis_get (not yet measured on a quiet machine).
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/redis/codec.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/pool.hpp>
#include <outgrow/redis/detail/session_keys.hpp>
#include <outgrow/redis/detail/session_l1.hpp>
#include <outgrow/redis/detail/session_link.hpp>
#include <outgrow/redis/detail/session_scripts.hpp>

namespace outgrow {

// ---- config, results, metrics --------------------------------------------------------

struct session_store_config {
  /// Where Redis is and how long to wait (connect 200 ms, command 100 ms, reconnect
  /// backoff 10 ms .. 1 s). Errors name "connection.<field>".
  redis_connection_config connection{};
  /// Namespace of the keys: empty or ending with ':', without '{' or '}' (the hash tag
  /// that follows must be the key's first). At most 1024 bytes.
  std::string key_prefix = "outgrow:session:";
  /// Sliding expiry: a session unused this long expires. 30 min (OWASP). [1 ms, 366 d];
  /// at least 4 ms with an L1 (room for l1_ttl).
  std::chrono::nanoseconds idle_timeout = std::chrono::minutes{30};
  /// Cap: a session expires this long after create, however it is used. 8 h (OWASP).
  /// [idle_timeout, 366 d]. Fixed in the session when it is created: stores configured
  /// otherwise later (a rolling deploy) neither shorten nor extend it.
  std::chrono::nanoseconds absolute_lifetime = std::chrono::hours{8};
  /// A create beyond this many live sessions of one user destroys the ones expiring
  /// soonest (least recently used). Empty = no limit. [1, 1e6]
  std::optional<std::size_t> max_sessions_per_user{};
  /// Pooled connections: 4. [1, 1024]
  std::size_t pool_size = 4;
  /// Wait for a free connection; empty = connection.command_timeout. [0, 1 h]
  std::optional<std::chrono::nanoseconds> pool_timeout{};
  /// Largest encoded data written or read: 1 MiB. [1, 512 MiB]
  std::size_t max_value_size = std::size_t{1} << 20;
  /// Sessions held in the in-process L1 (see "L1"); 0 = no L1 (the default). Not with
  /// connection.cluster. [0, 1e7]
  std::size_t l1_capacity = 0;
  /// Longest an L1 entry is served without asking Redis: 1 s; also how far a get may
  /// leave the expiry unslid. Only with l1_capacity > 0. [1 ms, idle_timeout / 4]
  std::chrono::nanoseconds l1_ttl = std::chrono::seconds{1};
};

/// Outcome of a session_store call.
enum class session_status : std::uint8_t {
  ok,           ///< done (update: updated)
  missing,      ///< no such session: unknown, expired, destroyed, forged or malformed id
  conflict,     ///< update: the session's version is no longer the expected one
  corrupt,      ///< the value in Redis is not a session of this store (a decode error)
  unavailable,  ///< Redis failed (down, timeout, error reply) or memory ran out: the
                ///< outcome is unknown (see "Redis failing")
  rejected,     ///< not sent: data over max_value_size or not encodable, user empty or
                ///< over 1024 bytes, or no random bytes from the kernel
};

[[nodiscard]] constexpr std::string_view to_string(session_status s) noexcept {
  constexpr std::string_view names[] = {"ok",      "missing",     "conflict",
                                        "corrupt", "unavailable", "rejected"};
  return names[static_cast<std::size_t>(s)];
}

inline std::ostream& operator<<(std::ostream& os, session_status s) {
  return os << to_string(s);
}

/// A session id: the cookie's value. Printing it (fmt, operator<<) shows only its tag and
/// 4 digits of its secret; reveal() gives it whole. Built from any text (untrusted
/// input): a malformed one is a miss in every call.
class session_id {
 public:
  session_id() = default;
  explicit session_id(std::string_view text) : text_(text) {}

  /// The whole id — for the cookie or header that carries it, never for logs.
  [[nodiscard]] std::string_view reveal() const noexcept { return text_; }
  /// True when it has the shape of an id (it may still be unknown or expired).
  [[nodiscard]] bool well_formed() const noexcept {
    return detail::session_id_well_formed(text_);
  }
  /// "<tag>.<4 digits>..." (or a description of a malformed id without its bytes).
  /// Throws: std::bad_alloc.
  [[nodiscard]] std::string redacted() const { return detail::session_id_redacted(text_); }

  friend bool operator==(const session_id&, const session_id&) = default;
  friend std::ostream& operator<<(std::ostream& os, const session_id& id) {
    return os << id.redacted();
  }

 private:
  std::string text_;
};

/// A session as get() returns it. Times are the Redis server's clock.
template <class Data>
struct session {
  Data data;
  std::string user;
  std::uint64_t version = 0;  ///< 1 after create, +1 per update
  std::chrono::system_clock::time_point created{};
  std::chrono::system_clock::time_point expires{};  ///< after this read's sliding
};

/// A status and, when it is ok, a value (`*` and `->` only then).
template <class T>
struct session_result {
  session_status status = session_status::unavailable;
  std::optional<T> value{};

  explicit operator bool() const noexcept { return status == session_status::ok; }
  T& operator*() noexcept { return *value; }
  const T& operator*() const noexcept { return *value; }
  T* operator->() noexcept { return &*value; }
  const T* operator->() const noexcept { return &*value; }
};

struct session_store_metrics {
  static constexpr std::string_view metrics_name = "session_store_metrics";
  std::uint64_t created = 0;
  std::uint64_t hits = 0;           ///< gets that returned a session
  std::uint64_t misses = 0;         ///< gets answered missing or corrupt
  std::uint64_t malformed_ids = 0;  ///< ids refused without a round trip
  std::uint64_t decode_errors = 0;  ///< values that were not this store's sessions
  std::uint64_t updates = 0;
  std::uint64_t conflicts = 0;  ///< updates refused: version changed
  std::uint64_t rotations = 0;
  std::uint64_t destroyed = 0;    ///< sessions destroy / destroy_all deleted
  std::uint64_t evicted = 0;      ///< sessions max_sessions_per_user destroyed
  std::uint64_t unavailable = 0;  ///< calls answered unavailable
  std::uint64_t rejected = 0;     ///< calls answered rejected
  std::uint64_t transport_errors = 0;
  std::uint64_t server_errors = 0;    ///< error replies or replies of the wrong shape
  std::uint64_t short_circuited = 0;  ///< calls not sent: reconnect backoff
  std::uint64_t pool_timeouts = 0;
  std::uint64_t connects = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t redirects = 0;            ///< Cluster MOVED / ASK / TRYAGAIN followed
  std::uint64_t open_connections = 0;     ///< now
  std::uint64_t l1_hits = 0;              ///< gets served by the L1 (also in hits)
  std::uint64_t l1_misses = 0;            ///< gets the L1 could not serve while tracking
  std::uint64_t l1_invalidations = 0;     ///< L1 entries dropped: the session changed
  std::uint64_t l1_gaps = 0;              ///< L1 cleared: tracking connection lost, flush
  std::uint64_t l1_bypassed = 0;          ///< gets that skipped the L1: not tracking
  std::uint64_t l1_connect_failures = 0;  ///< tracking connection attempts that failed
  std::uint64_t l1_entries = 0;           ///< now

  template <class F>
  void for_each_metric(F&& f) const {
    f("created", created);
    f("hits", hits);
    f("misses", misses);
    f("malformed_ids", malformed_ids);
    f("decode_errors", decode_errors);
    f("updates", updates);
    f("conflicts", conflicts);
    f("rotations", rotations);
    f("destroyed", destroyed);
    f("evicted", evicted);
    f("unavailable", unavailable);
    f("rejected", rejected);
    f("transport_errors", transport_errors);
    f("server_errors", server_errors);
    f("short_circuited", short_circuited);
    f("pool_timeouts", pool_timeouts);
    f("connects", connects);
    f("connect_failures", connect_failures);
    f("redirects", redirects);
    f("open_connections", open_connections);
    f("l1_hits", l1_hits);
    f("l1_misses", l1_misses);
    f("l1_invalidations", l1_invalidations);
    f("l1_gaps", l1_gaps);
    f("l1_bypassed", l1_bypassed);
    f("l1_connect_failures", l1_connect_failures);
    f("l1_entries", l1_entries);
  }
};

// ---- the store -----------------------------------------------------------------------

template <class Data, class Codec = redis_default_codec,
          clock_source Clock = steady_clock_source>
requires redis_codec<Codec, Data>
class session_store {
 public:
  using data_type = Data;
  using codec_type = Codec;
  using clock_type = Clock;
  using config_type = session_store_config;
  using session_type = session<Data>;
  /// Longest user name, in bytes.
  static constexpr std::size_t max_user_size = 1024;
  /// Longest config().key_prefix, in bytes (as max_user_size: each key holds both).
  static constexpr std::size_t max_key_prefix_size = 1024;

  /// Connects lazily: constructing never fails because Redis is down.
  /// Throws: config_error if a config field is out of range (see session_store_config).
  explicit session_store(session_store_config config = {}, Codec codec = {},
                         Clock clock = {})
      : config_(validated(std::move(config))),
        codec_(std::move(codec)),
        idle_ms_(std::to_string(to_ms(config_.idle_timeout))),
        absolute_ms_(std::to_string(to_ms(config_.absolute_lifetime))),
        max_per_user_(std::to_string(config_.max_sessions_per_user.value_or(0))),
        min_slide_ms_(std::to_string(config_.l1_capacity > 0 ? to_ms(config_.l1_ttl) : 0)),
        l1_(config_.l1_capacity > 0
                ? std::make_unique<l1_type>(config_.connection, config_.key_prefix,
                                            config_.l1_capacity, config_.l1_ttl,
                                            resolve_seed(config_.connection.seed), clock)
                : nullptr),
        link_(config_.connection, config_.pool_size,
              config_.pool_timeout.value_or(detail::command_timeout(config_.connection)),
              resolve_seed(config_.connection.seed), std::move(clock),
              config_.max_value_size + max_user_size + (std::size_t{64} << 10)) {}

  session_store(const session_store&) = delete;
  session_store& operator=(const session_store&) = delete;

  /// A new session of `user` holding `data` (version 1): ok and its id, or unavailable /
  /// rejected. With max_sessions_per_user, the user's sessions expiring soonest make room.
  session_result<session_id> create(std::string_view user, const Data& data) noexcept {
    return finish(create_impl(user, data));
  }

  /// The session, its expiry slid to min(now + idle_timeout, created + absolute_lifetime);
  /// or missing / corrupt / unavailable. With the L1, possibly a copy held in this
  /// process (see "L1": expiry as of the load, not slid).
  session_result<session_type> get(const session_id& id) noexcept {
    auto r = finish(l1_ ? get_l1(id.reveal()) : get_impl(id.reveal(), nullptr));
    if (r.status == session_status::ok) {
      hits_.add();
    } else if (r.status == session_status::missing || r.status == session_status::corrupt) {
      misses_.add();
    }
    return r;
  }

  /// Replaces the data if the version is still `expected_version` (then version + 1, and
  /// the expiry slides): ok, conflict, missing, corrupt, unavailable or rejected.
  session_status update(const session_id& id, std::uint64_t expected_version,
                        const Data& data) noexcept {
    const session_status s = count(update_impl(id.reveal(), expected_version, data).status);
    forget(id.reveal());
    return s;
  }

  /// A new id for the same session (data, version, user, created); the old id is gone,
  /// in the same step: ok and the new id, or missing / corrupt / unavailable / rejected.
  session_result<session_id> rotate(const session_id& id) noexcept {
    auto r = finish(rotate_impl(id.reveal()));
    forget(id.reveal());
    return r;
  }

  /// Deletes the session: ok, missing, corrupt (a foreign value was there; deleted) or
  /// unavailable.
  session_status destroy(const session_id& id) noexcept {
    const session_status s = count(destroy_impl(id.reveal()).status);
    forget(id.reveal());
    return s;
  }

  /// Deletes every session of `user`: ok and how many, or corrupt (the index was not
  /// one; deleted) / unavailable / rejected.
  session_result<std::size_t> destroy_all(std::string_view user) noexcept {
    auto r = finish(destroy_all_impl(user));
    if (l1_) {
      l1_->erase_user(user, [](const session_type& s) { return std::string_view(s.user); });
    }
    return r;
  }

  /// The Redis keys of a session id (empty when malformed), e.g. for redis-cli in tests:
  /// {session key, its base "<prefix>{<tag>}:"}.
  /// Throws: std::bad_alloc.
  [[nodiscard]] std::pair<std::string, std::string> redis_keys(const session_id& id) const {
    if (!id.well_formed()) return {};
    std::string base, key;
    detail::session_keys::base(config_.key_prefix, detail::session_id_tag(id.reveal()),
                               base);
    detail::session_keys::session(base, detail::session_id_secret(id.reveal()), key);
    return {key, base};
  }

  /// The Redis key of `user`'s index.
  /// Throws: std::bad_alloc.
  [[nodiscard]] std::string redis_index_key(std::string_view user) const {
    std::string tag, base, key;
    user_keys(user, tag, base, key);
    return key;
  }

  [[nodiscard]] session_store_metrics metrics() const noexcept {
    session_store_metrics m;
    m.created = created_.load();
    m.hits = hits_.load();
    m.misses = misses_.load();
    m.malformed_ids = malformed_.load();
    m.decode_errors = decode_errors_.load();
    m.updates = updates_.load();
    m.conflicts = conflicts_.load();
    m.rotations = rotations_.load();
    m.destroyed = destroyed_.load();
    m.evicted = evicted_.load();
    m.unavailable = unavailable_.load();
    m.rejected = rejected_.load();
    const auto& router = link_.router();
    m.transport_errors = router.transport_errors();
    m.server_errors = link_.server_errors();
    m.short_circuited = link_.short_circuited();
    m.pool_timeouts = router.pool_timeouts();
    m.connects = router.connects();
    m.connect_failures = router.connect_failures();
    m.redirects = router.redirects();
    m.open_connections = router.open_connections();
    if (l1_) {
      const detail::session_l1_counts c = l1_->counts();
      m.l1_hits = c.hits;
      m.l1_misses = c.misses;
      m.l1_invalidations = c.invalidations;
      m.l1_gaps = c.gaps;
      m.l1_bypassed = c.bypassed;
      m.l1_connect_failures = c.connect_failures;
      m.l1_entries = c.entries;
    }
    return m;
  }

  [[nodiscard]] const session_store_config& config() const noexcept { return config_; }
  [[nodiscard]] const Codec& codec() const noexcept { return codec_; }

 private:
  using status = detail::redis_status;
  using script = detail::session_script;
  static constexpr int id_attempts = 3;  // a taken id (never seen: 2^-128) is redrawn

  static std::int64_t to_ms(std::chrono::nanoseconds d) noexcept {
    return std::chrono::ceil<std::chrono::milliseconds>(d).count();
  }

  /// Throws: config_error (see session_store_config).
  static session_store_config validated(session_store_config c);

  /// The status of a call the pool or the link could not complete. codec (rejected)
  /// only when the link sent nothing; an exception in a call, even in reply handling
  /// (unknown), is unavailable: the script may have run.
  static session_status failed(status s) noexcept {
    switch (s) {
      case status::codec:
        return session_status::rejected;
      case status::too_large:
        return session_status::corrupt;
      default:
        return session_status::unavailable;
    }
  }

  /// A script's reply code (see detail/session_scripts.hpp), or nullopt.
  static std::optional<std::int64_t> code_of(const redisReply& r) noexcept {
    const auto c = detail::session_int(r, 0);
    if (!c || *c < 0 || *c > 5) return std::nullopt;
    return c;
  }

  static session_status status_of(std::int64_t code) noexcept {
    switch (code) {
      case 0:
        return session_status::missing;
      case 1:
        return session_status::ok;
      case 4:
        return session_status::conflict;
      default:
        return session_status::corrupt;  // 2 corrupt, 3 foreign
    }
  }

  /// A time in a script's reply (ms since the epoch) as a system_clock time; nullopt
  /// when system_clock cannot represent it (a corrupt value: its nanoseconds overflow
  /// 64 bits after 2262), or before the epoch.
  static std::optional<std::chrono::system_clock::time_point> server_time(
      std::int64_t ms) noexcept {
    using time_point = std::chrono::system_clock::time_point;
    constexpr std::int64_t most =
        std::chrono::duration_cast<std::chrono::milliseconds>(time_point::duration::max())
            .count();
    if (ms < 0 || ms > most) return std::nullopt;
    return time_point(std::chrono::milliseconds{ms});
  }

  /// Counts what a call ended with; returns it.
  session_status count(session_status s) const noexcept {
    if (s == session_status::unavailable) {
      unavailable_.add();
    } else if (s == session_status::rejected) {
      rejected_.add();
    } else if (s == session_status::corrupt) {
      decode_errors_.add();
    }
    return s;
  }
  template <class T>
  session_result<T> finish(session_result<T> r) const noexcept {
    count(r.status);
    return r;
  }

  bool encode(const Data& data, std::string& out) const noexcept {
    try {
      codec_.encode(data, out);
    } catch (...) {
      return false;
    }
    return out.size() <= config_.max_value_size;
  }

  static bool valid_user(std::string_view user) noexcept {
    return !user.empty() && user.size() <= max_user_size;
  }

  /// A new id of `tag` into `id` and its session key into `key`; false without random
  /// bytes.
  static bool draw_id(std::string_view tag, std::string_view base, std::string& id,
                      std::string& key) {
    id.assign(tag);
    id.push_back('.');
    if (!detail::session_append_secret(id)) return false;
    detail::session_keys::session(base, detail::session_id_secret(id), key);
    return true;
  }

  /// Tag, base and index key of `user`.
  void user_keys(std::string_view user, std::string& tag, std::string& base,
                 std::string& index) const {
    detail::session_append_tag(user, tag);
    detail::session_keys::base(config_.key_prefix, tag, base);
    detail::session_keys::index(base, user, index);
  }

  /// body(base, session key, secret) -> session_result<T> for a well-formed id; missing
  /// (counted, no round trip) for any other; unavailable if memory runs out.
  template <class T, class Body>
  session_result<T> on_id(std::string_view id, Body&& body) noexcept {
    if (!detail::session_id_well_formed(id)) {
      malformed_.add();
      return {session_status::missing};
    }
    try {
      std::string base, key;
      detail::session_keys::base(config_.key_prefix, detail::session_id_tag(id), base);
      detail::session_keys::session(base, detail::session_id_secret(id), key);
      return body(base, key, detail::session_id_secret(id));
    } catch (...) {
      return {session_status::unavailable};
    }
  }

  /// attempt(id, session key, code&) -> session_status with fresh ids of `tag` until one
  /// is not taken (code 5): ok and that id, or attempt's status.
  template <class Attempt>
  session_result<session_id> with_fresh_id(std::string_view tag, std::string_view base,
                                           Attempt&& attempt) {
    std::string id, key;
    for (int i = 0; i < id_attempts; ++i) {
      if (!draw_id(tag, base, id, key)) return {session_status::rejected};
      std::int64_t code = 0;
      const session_status s = attempt(std::string_view(id), std::string_view(key), code);
      if (code == 5) continue;  // taken: draw another
      if (s != session_status::ok) return {s};
      return {session_status::ok, session_id(id)};
    }
    return {session_status::unavailable};
  }

  /// Runs a script whose reply is only a code (plus what `extra` reads from it).
  template <class Extra>
  session_status run_coded(script s, std::size_t nkeys,
                           std::span<const std::string_view> args, std::int64_t& code,
                           Extra&& extra) noexcept {
    const status st = link_.eval(s, nkeys, args, [&](const redisReply& r) {
      const auto c = code_of(r);
      if (!c) return status::server;
      code = *c;
      return extra(r, code) ? status::ok : status::server;
    });
    return st == status::ok ? status_of(code) : failed(st);
  }
  session_status run_coded(script s, std::size_t nkeys,
                           std::span<const std::string_view> args) noexcept {
    std::int64_t code = 0;
    return run_coded(s, nkeys, args, code,
                     [](const redisReply&, std::int64_t) { return true; });
  }

  // ---- operations (defined in detail/session_ops.hpp) --------------------------------

  session_result<session_id> create_impl(std::string_view user, const Data& data) noexcept;
  /// What a get's script adds for the L1: the server's time and whether it slid.
  struct l1_fill {
    std::chrono::system_clock::time_point now{};
    bool slid = true;
  };
  using l1_type = detail::session_l1<session_type, Clock>;

  session_result<session_type> get_impl(std::string_view id, l1_fill* fill) noexcept;
  session_result<session_type> get_l1(std::string_view id) noexcept;
  /// Drops the L1 entry of `id` (this instance changed or removed it).
  void forget(std::string_view id) noexcept;
  session_result<bool> update_impl(std::string_view id, std::uint64_t expected,
                                   const Data& data) noexcept;
  session_result<session_id> rotate_impl(std::string_view id) noexcept;
  session_result<bool> destroy_impl(std::string_view id) noexcept;
  session_result<std::size_t> destroy_all_impl(std::string_view user) noexcept;

  const session_store_config config_;
  const Codec codec_;
  const std::string idle_ms_, absolute_ms_, max_per_user_, min_slide_ms_;
  const std::unique_ptr<l1_type> l1_;  // null without an L1
  detail::session_link<Clock> link_;
  mutable counter created_, hits_, misses_, malformed_, decode_errors_, updates_,
      conflicts_, rotations_, destroyed_, evicted_, unavailable_, rejected_;
};

}  // namespace outgrow

#include <outgrow/redis/detail/session_ops.hpp>

template <>
struct fmt::formatter<outgrow::session_id> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const outgrow::session_id& id, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(id.redacted(), ctx);
  }
};

template <>
struct fmt::formatter<outgrow::session_status> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(outgrow::session_status s, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(outgrow::to_string(s), ctx);
  }
};
