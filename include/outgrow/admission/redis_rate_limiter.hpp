// outgrow/admission/redis_rate_limiter.hpp — one rate limit shared by many processes, kept
// in Redis.
//
// What: the GCRA of rate_limiter (same semantics, same rate_limit_result), with the
// bucket in Redis so that every process and thread sharing a key shares one limit: "1,000
// calls/s to the partner API for the whole fleet". Each decision is one round trip: one
// Lua script (EVALSHA; EVAL when Redis answers NOSCRIPT, e.g. after a restart) reads the
// bucket, decides and writes it back atomically, on Redis's own clock (TIME inside the
// script; replicas get the script's effects, not the script: Redis >= 5), so processes
// whose clocks disagree still agree on the limit. The bucket expires (SET ... PX) when
// it would be full again: idle keys cost Redis nothing.
//
// When: a quota shared by several instances (a partner API, a tenant's plan, abuse
// protection per user across the fleet). For a limit per process use rate_limiter
// (lock-free, nanoseconds); per key in one process, keyed_rate_limiter.
//
//   outgrow::redis_rate_limiter limiter(
//       {.connection = {.host = "10.0.0.5", .port = 6379, .command_timeout = 20ms},
//        .permits_per_second = 1000, .burst = 100, .key_prefix = "partner-api:",
//        .failure_mode = outgrow::failure_mode::local_fallback,
//        .fallback_permits_per_second = 250, .fallback_burst = 25});  // 1000 / 4 pods
//   if (auto d = limiter.try_acquire(); !d) reply_429(d.retry_after);
//   if (auto d = limiter.try_acquire(user_id, 2); d) serve();  // one bucket per user
//   fmt::print("{}\n", limiter.metrics());  // redis_rate_limiter_metrics{admitted=...}
//
// Semantics: as rate_limiter's (T = 1 s / permits_per_second, a bucket of burst × T,
// starting full); n = 0 is admitted without a round trip, n > burst throws. Every
// instance sharing a key must use the same rate and burst (the script takes them as
// arguments; Redis keeps only the theoretical arrival time). A rejected request changes
// nothing in Redis.
//
// Keys (hash-tagged for Redis Cluster): try_acquire(key, n) uses the Redis key
// "{" + key_prefix + escaped key + "}" and try_acquire(n) the limiter's own
// "{" + key_prefix + "}" (the same as key ""). The braces make the whole name the hash
// tag, so a bucket (one key per script) is served by whichever cluster node owns that
// slot (a '}' inside the key ends the tag early: still one slot per key). As in
// redis_tier, the prefix ends with ':' and the key has '%' written "%25" and ':' "%3A"
// ("user:42" is "{api:user%3A42}"), so limiters with different prefixes never share a
// bucket, even when one prefix starts with the other.
//
// Precision: the script keeps the interval T in 1/8 ns ticks as rate_limiter does, but
// Redis Lua numbers are doubles (integers exact below 2^53), so every time travels as
// (microseconds, ticks below 8000): Unix microseconds stay below 2^53 until 2255.
// Redis's TIME has microsecond resolution, so buckets refill in 1 us steps; retry_after
// is exact on Redis's clock, not counting the round trip.
//
// Failures: while Redis is unreachable, slow (connection.command_timeout, 100 ms by
// default), answers with an error (OOM, READONLY, the key holding another type) or with
// a reply that is not the script's, the decision is made by `failure_mode`:
//   - fail_open (default, as Envoy's rate limit filter): admitted;
//   - fail_closed: rejected, retry_after = the time n permits take at the limit;
//   - local_fallback: by an in-process keyed_rate_limiter (one bucket per key) at
//     fallback_permits_per_second / fallback_burst — e.g. the shared limit divided by
//     the number of instances, which only the user knows.
// Nothing throws on a Redis failure, and no call waits longer than pool_timeout +
// connect_timeout and a command_timeout per handshake command (when it must connect) +
// command_timeout per command (one; two after a NOSCRIPT). After a failed connect,
// calls skip Redis for connection.reconnect_backoff (no I/O at all; one caller probes),
// so an outage costs a decision no I/O, and decisions go back to Redis once it answers
// again — with whatever state it kept (an empty Redis starts every bucket full). A
// pooled connection that sat idle through a restart fails on its next use (its socket
// is dead; the pool reopens it): up to pool_size more decisions by the failure mode.
// All of it is counted in metrics(): redis_errors, and which decisions the failure mode
// made (fallback_admitted, fallback_rejected).
//
// Trade-offs: one round trip per decision (see Measured cost) — for rates of thousands
// per second per process, put a local rate_limiter in front or take n permits at a time.
// No circuit breaker (the reconnect backoff already costs nothing while Redis is down);
// a slow Redis costs command_timeout per decision: keep it small.
//
// Thread-safety: every member from any thread; `pool_size` connections (a call borrows
// one). No thread of its own. Complexity: O(1) per decision and one round trip, O(length
// of the key) to build its name (in a reused buffer: no allocation in steady state);
// memory O(pool_size), plus the fallback's O(fallback_max_keys).
// Measured cost (BM_redis_rate_limiter_try_acquire, -O2, redis-server 7.0 on loopback,
// one thread, a 2-core machine busy with compiles: read as upper bounds, 2026-12-02):
// one decision 38–108 us of wall time beside 21–121 us for a bare PING round trip;
// 16 us of client CPU; the script itself 11.5 us of Redis's time (INFO commandstats),
// so one Redis core serves at most ~85,000 decisions/s.
#pragma once

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include <outgrow/admission/detail/gcra.hpp>
#include <outgrow/admission/detail/redis_gcra.hpp>
#include <outgrow/admission/keyed_rate_limiter.hpp>
#include <outgrow/admission/rate_limiter.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/cluster.hpp>
#include <outgrow/redis/detail/key_namespace.hpp>
#include <outgrow/redis/detail/pool.hpp>
#include <outgrow/redis/detail/reply.hpp>

namespace outgrow {

/// What a limiter whose decisions come from elsewhere does when they cannot.
enum class failure_mode : std::uint8_t {
  fail_open,      ///< admit
  fail_closed,    ///< reject
  local_fallback  ///< decide with an in-process limiter
};

struct redis_rate_limiter_config {
  /// Where Redis is and how long to wait (connect 200 ms, command 100 ms, reconnect
  /// backoff 10 ms .. 1 s). Errors name "connection.<field>".
  redis_connection_config connection{};
  /// Average admitted permits per second, for all instances together. (0, 1e9], finite.
  double permits_per_second = 100.0;
  /// Permits available at once after a quiet period. [1, 1e9]; burst /
  /// permits_per_second at most 365 days.
  std::uint64_t burst = 1;
  /// Namespace of the buckets: Redis key "{" + key_prefix + escaped key + "}" (see
  /// "Keys"). 1 to 1024 bytes, ending with ':'.
  std::string key_prefix = "outgrow:rate:";
  /// What decides while Redis cannot: fail_open (default, as Envoy), fail_closed or
  /// local_fallback.
  outgrow::failure_mode failure_mode = outgrow::failure_mode::fail_open;
  /// The in-process limit of local_fallback, per key (validated in every mode).
  /// (0, 1e9], finite.
  double fallback_permits_per_second = 100.0;
  /// [1, 1e9]; fallback_burst / fallback_permits_per_second at most 365 days.
  std::uint64_t fallback_burst = 1;
  /// Keys the fallback tracks at once (least recently used forgotten). [1, 1e9]
  std::size_t fallback_max_keys = 10'000;
  /// Pooled connections: 4. [1, 1024]
  std::size_t pool_size = 4;
  /// Wait for a free connection; nullopt = the command timeout. [0, 1 h]
  std::optional<std::chrono::nanoseconds> pool_timeout{};
};

struct redis_rate_limiter_metrics {
  static constexpr std::string_view metrics_name = "redis_rate_limiter_metrics";
  std::uint64_t admitted = 0;           ///< every admitted decision (Redis or failure mode)
  std::uint64_t rejected = 0;           ///< every rejected decision
  std::uint64_t redis_errors = 0;       ///< decisions Redis did not make (causes below)
  std::uint64_t fallback_admitted = 0;  ///< admitted by the failure mode
  std::uint64_t fallback_rejected = 0;  ///< rejected by the failure mode
  std::uint64_t transport_errors = 0;   ///< timeouts, resets, EOF: the connection closed
  std::uint64_t server_errors = 0;  ///< error replies (WRONGTYPE, OUTGROW_BADSTATE, OOM)
  std::uint64_t malformed_replies = 0;  ///< replies that are not the script's (or > 64 KiB)
  std::uint64_t short_circuited = 0;    ///< not sent: reconnect backoff
  std::uint64_t pool_timeouts = 0;      ///< no free connection in time
  std::uint64_t script_loads = 0;       ///< NOSCRIPT answered by sending the script (EVAL)
  std::uint64_t connects = 0;
  std::uint64_t connect_failures = 0;

  template <class F>
  void for_each_metric(F&& f) const {
    f("admitted", admitted);
    f("rejected", rejected);
    f("redis_errors", redis_errors);
    f("fallback_admitted", fallback_admitted);
    f("fallback_rejected", fallback_rejected);
    f("transport_errors", transport_errors);
    f("server_errors", server_errors);
    f("malformed_replies", malformed_replies);
    f("short_circuited", short_circuited);
    f("pool_timeouts", pool_timeouts);
    f("script_loads", script_loads);
    f("connects", connects);
    f("connect_failures", connect_failures);
  }
};

template <clock_source Clock = steady_clock_source>
class redis_rate_limiter {
 public:
  using clock_type = Clock;

  /// Connects lazily: constructing never fails because Redis is down.
  /// Throws: config_error if a field is out of range.
  explicit redis_rate_limiter(redis_rate_limiter_config config = {}, Clock clock = {})
      : config_(validated(std::move(config))),
        interval_(detail::gcra::interval_ticks(config_.permits_per_second)),
        capacity_(detail::redis_gcra::pair_text(static_cast<std::int64_t>(config_.burst) *
                                                interval_)),
        pool_(config_.connection, config_.pool_size,
              config_.pool_timeout.value_or(detail::command_timeout(config_.connection)),
              resolve_seed(config_.connection.seed), clock) {
    if (config_.failure_mode == failure_mode::local_fallback) {
      fallback_.emplace(
          keyed_rate_limiter_config{
              .permits_per_second = config_.fallback_permits_per_second,
              .burst = config_.fallback_burst,
              .max_keys = config_.fallback_max_keys,
              .stripes = std::min<std::size_t>(16, config_.fallback_max_keys)},
          clock);
    }
  }

  redis_rate_limiter(const redis_rate_limiter&) = delete;
  redis_rate_limiter& operator=(const redis_rate_limiter&) = delete;

  /// Takes n permits from the limiter's own bucket ("{key_prefix}") if available now.
  /// Throws: std::invalid_argument if n > burst (it could never be admitted).
  rate_limit_result try_acquire(std::uint64_t n = 1) { return try_acquire({}, n); }

  /// Takes n permits from `key`'s bucket ("{key_prefix + escaped key}") if available now.
  /// Throws: std::invalid_argument if n > burst (it could never be admitted).
  rate_limit_result try_acquire(std::string_view key, std::uint64_t n = 1) {
    if (n > config_.burst) [[unlikely]] {
      throw std::invalid_argument(
          fmt::format("redis_rate_limiter: a request for {} permits can never be admitted "
                      "(burst is {})",
                      n, config_.burst));
    }
    if (n == 0) return count({.admitted = true});
    const std::int64_t cost = static_cast<std::int64_t>(n) * interval_;
    detail::redis_gcra::answer answer;
    bool malformed = false;
    bool reloaded = false;
    // On a Redis Cluster the bucket's key goes to its slot's master (the key is one hash
    // tag, so the slot is that of prefix + key).
    const std::uint16_t slot = pool_.clustered() ? pool_.slot_of(redis_key(key)) : 0;
    const status s = pool_.run(slot, [&](detail::redis_pooled_connection& c) {
      return decide(c, key, cost, answer, malformed, reloaded);
    });
    if (reloaded) script_loads_.add();
    if (s == status::ok) {
      return count({.admitted = answer.admitted,
                    .retry_after = detail::gcra::from_ticks(answer.wait)});
    }
    redis_errors_.add();
    if (malformed || s == status::too_large) {
      malformed_replies_.add();
    } else if (s == status::server) {
      server_errors_.add();
    } else if (s == status::backoff) {
      short_circuited_.add();
    }
    return count_fallback(fallback(key, n, cost));
  }

  [[nodiscard]] redis_rate_limiter_metrics metrics() const noexcept {
    return {.admitted = admitted_.load(),
            .rejected = rejected_.load(),
            .redis_errors = redis_errors_.load(),
            .fallback_admitted = fallback_admitted_.load(),
            .fallback_rejected = fallback_rejected_.load(),
            .transport_errors = pool_.transport_errors(),
            .server_errors = server_errors_.load(),
            .malformed_replies = malformed_replies_.load(),
            .short_circuited = short_circuited_.load(),
            .pool_timeouts = pool_.pool_timeouts(),
            .script_loads = script_loads_.load(),
            .connects = pool_.connects(),
            .connect_failures = pool_.connect_failures()};
  }

  /// The Redis key of `key`'s bucket ("{" + key_prefix + escaped key + "}"), e.g. for
  /// redis-cli.
  /// Throws: std::bad_alloc.
  [[nodiscard]] std::string redis_key(std::string_view key = {}) const {
    std::string out;
    build_key(out, key);
    return out;
  }

  [[nodiscard]] const redis_rate_limiter_config& config() const noexcept { return config_; }

  /// Throws: config_error naming the first bad field.
  static void validate(const redis_rate_limiter_config& c) {
    using namespace std::chrono_literals;
    constexpr std::string_view who = "redis_rate_limiter";
    detail::validate_connection(who, c.connection);
    detail::gcra::validate_rate(who, c.permits_per_second, c.burst);
    require(!c.key_prefix.empty() && c.key_prefix.size() <= 1024 &&
                c.key_prefix.back() == detail::redis_key_separator,
            who, "key_prefix", "1 to 1024 bytes ending with ':'",
            fmt::format("\"{}\"", c.key_prefix));
    require(c.failure_mode == failure_mode::fail_open ||
                c.failure_mode == failure_mode::fail_closed ||
                c.failure_mode == failure_mode::local_fallback,
            who, "failure_mode", "fail_open, fail_closed or local_fallback",
            static_cast<int>(c.failure_mode));
    // The fallback's rate and burst, with rate_limiter's bounds under their own names.
    const double rate = c.fallback_permits_per_second;
    require(std::isfinite(rate) && rate > 0.0 && rate <= 1e9, who,
            "fallback_permits_per_second", "in (0, 1e9]", rate);
    require_in_range(who, "fallback_burst", c.fallback_burst, std::uint64_t{1},
                     std::uint64_t{1'000'000'000});
    require(static_cast<double>(c.fallback_burst) / rate <= 365.0 * 86'400.0, who,
            "fallback_burst", "at most 365 days of refill", c.fallback_burst);
    require_in_range(who, "fallback_max_keys", c.fallback_max_keys, std::size_t{1},
                     std::size_t{1'000'000'000});
    require_in_range(who, "pool_size", c.pool_size, std::size_t{1}, std::size_t{1024});
    if (c.pool_timeout) {
      require_in_range(who, "pool_timeout", *c.pool_timeout, std::chrono::nanoseconds{0},
                       std::chrono::nanoseconds{1h});
    }
  }

 private:
  using status = detail::redis_status;

  static redis_rate_limiter_config validated(redis_rate_limiter_config c) {
    validate(c);
    return c;
  }

  void build_key(std::string& out, std::string_view key) const {
    out.assign(1, '{');
    out.append(config_.key_prefix);
    out.append(key);
    detail::redis_escape_key(out, 1 + config_.key_prefix.size());
    out.push_back('}');
  }

  /// One EVALSHA (EVAL after NOSCRIPT) on c; ok with `answer` set, or why not.
  status decide(detail::redis_pooled_connection& c, std::string_view key, std::int64_t cost,
                detail::redis_gcra::answer& answer, bool& malformed, bool& reloaded) const {
    build_key(c.key, key);
    const detail::redis_gcra::pair_text n(cost);
    std::string_view args[] = {"EVALSHA",
                               detail::redis_gcra::script_sha1,
                               "1",
                               c.key,
                               n.micros(),
                               n.remainder(),
                               capacity_.micros(),
                               capacity_.remainder()};
    detail::redis_reply_ptr r;
    status s = pool_.exec(c, args, r, reply_limit);
    if (s == status::ok && is_noscript(r.get())) {
      reloaded = true;
      args[0] = "EVAL";
      args[1] = detail::redis_gcra::script;
      s = pool_.exec(c, args, r, reply_limit);
    }
    if (s != status::ok) return s;
    if (r->type == REDIS_REPLY_ERROR) return status::server;
    const std::optional<detail::redis_gcra::answer> a = detail::redis_gcra::parse(r.get());
    if (!a) {
      malformed = true;
      return status::server;
    }
    answer = *a;
    return status::ok;
  }

  static bool is_noscript(const redisReply* r) noexcept {
    return r->type == REDIS_REPLY_ERROR && r->str != nullptr &&
           std::string_view(r->str, r->len).starts_with("NOSCRIPT");
  }

  /// The failure mode's decision for n permits (cost ticks at the shared limit).
  rate_limit_result fallback(std::string_view key, std::uint64_t n, std::int64_t cost) {
    switch (config_.failure_mode) {
      case failure_mode::fail_open:
        return {.admitted = true};
      case failure_mode::local_fallback:
        if (n <= config_.fallback_burst) return fallback_->try_acquire(std::string(key), n);
        // More than the fallback's burst: it could never admit it; wait as fail_closed.
        [[fallthrough]];
      case failure_mode::fail_closed:
        break;
    }
    return {.admitted = false, .retry_after = detail::gcra::from_ticks(cost)};
  }

  rate_limit_result count(rate_limit_result r) noexcept {
    (r.admitted ? admitted_ : rejected_).add();
    return r;
  }

  rate_limit_result count_fallback(rate_limit_result r) noexcept {
    (r.admitted ? fallback_admitted_ : fallback_rejected_).add();
    return count(r);
  }

  /// A script reply is three integers; error replies are short. Anything larger closes
  /// the connection (too_large).
  static constexpr std::size_t reply_limit = 64 << 10;

  const redis_rate_limiter_config config_;
  const std::int64_t interval_;                   ///< T in ticks
  const detail::redis_gcra::pair_text capacity_;  ///< burst × T as the script's pair
  mutable detail::redis_router<Clock> pool_;      // one pool, or one per Cluster node
  std::optional<keyed_rate_limiter<std::string, Clock>> fallback_;

  counter admitted_, rejected_, redis_errors_, fallback_admitted_, fallback_rejected_,
      server_errors_, malformed_replies_, short_circuited_, script_loads_;
};

}  // namespace outgrow
