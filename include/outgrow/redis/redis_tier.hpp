// outgrow/redis/redis_tier.hpp — a shared L2 cache tier in Redis, that survives Redis.
//
// redis_tier<Key, Value, Codec, Breaker, Clock> is a `cache_tier` (cache/tier.hpp) over
// hiredis: the L2 that every instance of a service shares, under in-process L1s, in a
// tiered_cache. Values are encoded by a codec policy, keys get a prefix (a namespace),
// TTLs use `SET key value PX ms`, and get_many / put_many batch keys (MGET, pipelined
// SETs). It is a cache, so Redis failing is a miss, not an outage: a dead, slow or
// restarted Redis makes reads misses and writes fail (returning false), counted in
// stats(); nothing throws into the read path, no call waits longer than the configured
// timeouts, and the tier reconnects when Redis returns (connect attempts spaced by a
// backoff). With a circuit_breaker (the Breaker parameter) a dead Redis costs nothing
// per request while the breaker is open.
//
//   outgrow::redis_tier<std::string, std::string> l2(
//       {.host = "127.0.0.1", .port = 6379, .key_prefix = "shop:v1:",
//        .default_ttl = 10min, .command_timeout = 50ms});
//   l2.put("user:42", "Ada", 30s);                  // SET shop:v1:user%3A42 Ada PX 30000
//   std::optional<std::string> v = l2.get("user:42");   // a miss if Redis is down
//   auto values = l2.get_many(keys);                 // MGET, one round trip per batch
//   outgrow::circuit_breaker<> cb({.failure_threshold = 5, .open_for = 5s});
//   outgrow::redis_tier<std::string, std::string, outgrow::redis_default_codec,
//                       outgrow::circuit_breaker<>> guarded(config, cb);
//   fmt::print("{}\n", l2.stats());                  // redis_tier_stats{hits=..., ...}
//
// In a tiered_cache: `tiered_cache<tiers<cache<K, V>, redis_tier<K, V>>, Store, ...>`;
// the tier declares `thread_safe` (no extra lock) and `shared` (bus messages and gaps
// clear only the in-process tiers). It has no get_entry: a value promoted from Redis
// into L1 gets tiered_cache_config::ttl (or L1's default TTL), not Redis's remaining
// TTL — set a ttl on the tiered_cache so L1 copies never outlive what you accept.
//
// Codec: `redis_codec<C, T>` — c.encode(const T&, std::string& out) appends the bytes of
// a value; c.decode(std::string_view, std::type_identity<T>) -> std::optional<T>
// (nullopt = malformed: counted in decode_errors, answered as a miss). Keys are only
// encoded (`redis_key_codec`). One codec object serves both, by overloading. Smallest:
//
//   struct int_codec {
//     void encode(int v, std::string& out) const { out += std::to_string(v); }
//     std::optional<int> decode(std::string_view s, std::type_identity<int>) const {
//       int v{}; auto r = std::from_chars(s.data(), s.data() + s.size(), v);
//       if (r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
//       return v;
//     }
//   };
//
// redis_default_codec: std::string as its bytes; bool, integers and floating point as
// shortest round-trip decimal text (std::to_chars — readable in redis-cli, usable with
// INCR, the same on every platform; parsed strictly); enums as their underlying integer;
// any other trivially copyable type (no pointers) as a tagged copy of its object bytes:
// a 10-byte header (magic 0xFE, codec id 0x01, an 8-byte fingerprint hashing the type's
// name, size and alignment) then sizeof(T) bytes. Instances sharing Redis must share the
// architecture and the type's layout; the default type name is the compiler's spelling
// of T — pin a portable one with `redis_type_name<T>` (a variable template to
// specialize). The raw encoding is for types where every bit pattern of the members is
// valid: the codec cannot know that a bool member must hold 0 or 1, or which values an
// enum names. For those, declare a validation hook `bool redis_validate(const T&)`
// (found by argument-dependent lookup; read bool members through their bytes, as loading
// a bool holding 2 is itself undefined), or give a codec a `bool validate(const T&)`
// member; the tier calls both (when present) after every decode, and the default codec
// calls the hook for enums and raw types.
//
// Values read from Redis are untrusted: anything the codec rejects or a hook refuses —
// foreign bytes, another type's value, a truncated or corrupted one — is a decode error
// (stats().decode_errors), answered as a miss, never a hit. The value is left in Redis
// (not deleted: during a rolling deploy it may be the newer version's value): the next
// put overwrites it, its TTL expires it. Values written by versions before the tagged
// encoding are such decode errors (misses) once.
//
// Failure isolation, in detail:
//   - Timeouts: connect_timeout bounds a connect; command_timeout bounds a whole
//     command — writing it and reading its reply, however the bytes trickle in (the
//     socket timeout is re-armed with the time left before each read or write; in a
//     pipeline, the writes and then each reply); pool_timeout bounds the wait for a free
//     pooled connection when all are busy. Any transport error (timeout, reset, EOF,
//     protocol) closes that connection: a late reply can never be read as the answer to
//     the next command.
//   - Sizes: max_value_size (16 MiB) bounds an encoded value. A larger put is rejected
//     (false, stats().oversized and rejected_puts) and DELetes the key, so Redis does not
//     keep serving the value it was meant to replace (put_many: the key is repaired).
//     A larger value read is a decode error (a miss; oversized and decode_errors, not
//     failed_reads): a GET stops buffering the reply at the limit and closes the
//     connection, so memory stays bounded by about max_value_size per connection (per
//     MGET batch: max_batch x max_value_size); in an MGET reply each value is checked.
//   - Reconnects: a closed connection is reopened by the next call that needs it. After
//     a failed connect, further attempts wait for reconnect_backoff (full jitter, 10 ms
//     doubling to 1 s by default); until then calls are short-circuited (a miss or a
//     failed write without any I/O), and only one caller at a time probes.
//   - Breaker: with Breaker = circuit_breaker<...> (any type with try_acquire() returning
//     a permit: explicit bool, success(), failure(), ignore()), every call first asks
//     the breaker; transport and connect failures are failures, error replies from a
//     live server (OOM, WRONGTYPE) are ignored. The breaker is the caller's: share one
//     between the tier and other users of the same Redis, read its metrics().
//   - Repair: a put or erase that may not have reached Redis leaves Redis possibly
//     holding an older value (a write_through cache would serve it after Redis comes
//     back with its data). The tier remembers such keys (up to max_repair_keys; beyond
//     that it remembers "clear the namespace") and deletes them on the next healthy
//     connection, before that connection serves anything else. Another connection may
//     serve such a key in between; TTLs bound that window. Repairs die with the process.
//   - Error replies (-OOM, -READONLY, ...) are misses / failed writes (server_errors).
//   - A user codec that throws is treated as a decode or encode failure; allocation
//     failures likewise. Only put(k, v, ttl) with ttl <= 0 throws (config_error).
//
// Guarantees. A hit is a value this tier's codec encoded for this namespace: decoded,
// accepted by the validation hooks and within max_value_size; anything else — absent,
// expired, foreign, corrupt, oversized, or Redis failing — is a miss (counted). No call
// throws (but put with ttl <= 0 and construction with an invalid config) or waits longer
// than pool_timeout + (when it must connect) connect_timeout and a command_timeout per
// handshake command + command_timeout per command (get, put, erase: one; get_many /
// put_many: one for the writes and one per batch reply; clear / size: one per SCAN page
// and UNLINK), however slowly a reply trickles in. A put that returns true was stored;
// one that returns false may have been, and the key is deleted on recovery (repair) so
// that Redis does not keep an older value — within max_repair_keys and the process's
// lifetime; beyond that, TTLs bound staleness. Memory per read is bounded by about
// max_value_size (an MGET batch: max_batch x max_value_size).
//
// Defaults (outgrow's choices for a cache in front of a database, where a miss costs one
// database read): 4 connections; connect 200 ms; command 100 ms; pool wait = command
// timeout; reconnect backoff full jitter 10 ms .. 1 s. General-purpose clients wait far
// longer (go-redis: dial 5 s, read 3 s; StackExchange.Redis: 5 s), which would turn a
// slow Redis into slow requests. Key prefix "outgrow:"; no default TTL;
// max_value_size 16 MiB.
//
// Key namespaces: the Redis key is key_prefix + the encoded key with '%' written "%25"
// and ':' written "%3A" (so "user:42" is stored as "shop:v1:user%3A42"). A prefix must
// be empty or end with ':' (config_error otherwise). An encoded key then never contains
// ':', so the namespace of a Redis key is everything up to its last ':' and two tiers
// with different prefixes can never share a key, even when one prefix starts with the
// other ("app:" and "app:v2:"): no wrong hits across namespaces, by construction.
//
// clear() deletes the keys of the namespace (SCAN MATCH prefix* + UNLINK, skipping keys
// with a ':' after the prefix: they belong to longer prefixes; with an empty prefix,
// every key without ':') and size() counts them (SCAN): both O(keys in the database),
// meant for tests and administration, not request paths.
//
// Thread-safety: every member from any thread (the pool hands each call its own
// connection). stats() is a snapshot of relaxed counters.
// Complexity: get/put/erase one round trip; get_many one round trip per max_batch keys
// (MGETs pipelined); put_many one pipelined round trip per max_batch keys. Calls allocate
// what hiredis needs for the command and reply, plus the decoded value.
#pragma once

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/cache/tier.hpp>
#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/stats.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>

namespace outgrow {

// ---- codecs ------------------------------------------------------------------------

/// Encodes and decodes values of type T (see the header comment for the smallest one).
template <class C, class T>
concept redis_codec = std::copy_constructible<C> &&
    requires(const C& c, const T& v, std::string& out, std::string_view in) {
  c.encode(v, out);
  { c.decode(in, std::type_identity<T>{}) } -> std::same_as<std::optional<T>>;
};

/// Encodes keys of type K (keys are never decoded by redis_tier).
template <class C, class K>
concept redis_key_codec = std::copy_constructible<C> &&
    requires(const C& c, const K& k, std::string& out) {
  c.encode(k, out);
};

/// Customization point: the name hashed into the type fingerprint of the raw-bytes
/// encoding (see the header comment). The default is the compiler's spelling of T, which
/// differs between compilers; specialize it to pin a portable, rename-proof name:
///   template <> inline constexpr std::string_view outgrow::redis_type_name<point> =
///   "point/1";
template <class T>
inline constexpr std::string_view redis_type_name = std::string_view{};

namespace detail {
template <class T>
concept redis_text_number = (std::is_arithmetic_v<T> && !std::same_as<T, bool> &&
                             !std::same_as<T, char> && !std::same_as<T, wchar_t> &&
                             !std::same_as<T, char8_t> && !std::same_as<T, char16_t> &&
                             !std::same_as<T, char32_t>);

template <class T>
concept redis_raw_bytes = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
                          !std::is_member_pointer_v<T> && !std::is_arithmetic_v<T> &&
                          !std::is_enum_v<T> && !std::is_empty_v<T>;

template <class T>
concept redis_default_encodable =
    std::same_as<T, std::string> || std::same_as<T, bool> || redis_text_number<T> ||
    std::is_enum_v<T> || std::same_as<T, char> || redis_raw_bytes<T>;

template <class T>
constexpr std::string_view redis_compiler_type_name() noexcept {
#if defined(__GNUC__) || defined(__clang__)
  return __PRETTY_FUNCTION__;  // contains T's spelling: unique per T for one compiler
#else
  return __FUNCSIG__;
#endif
}

constexpr std::uint64_t redis_fnv1a(std::string_view s,
                                    std::uint64_t h = 0xcbf29ce484222325ULL) noexcept {
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

/// Type fingerprint of the raw-bytes encoding: a hash of the type's name, size and
/// alignment.
template <class T>
constexpr std::uint64_t redis_type_fingerprint() noexcept {
  constexpr std::string_view pinned = redis_type_name<T>;
  std::uint64_t h = redis_fnv1a(pinned.empty() ? redis_compiler_type_name<T>() : pinned);
  for (const std::uint64_t x : {std::uint64_t{sizeof(T)}, std::uint64_t{alignof(T)}}) {
    for (int i = 0; i < 8; ++i) {
      h ^= (x >> (8 * i)) & 0xFFU;
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

/// Header of the raw-bytes encoding: magic, codec id, 8-byte little-endian fingerprint.
inline constexpr unsigned char redis_raw_magic = 0xFE;
inline constexpr unsigned char redis_raw_codec_id = 0x01;
inline constexpr std::size_t redis_raw_header_size = 10;

/// A user-declared validation hook for T, found by argument-dependent lookup.
template <class T>
concept redis_has_validate_hook = requires(const T& v) {
  { redis_validate(v) } -> std::convertible_to<bool>;
};

/// The codec's `validate(const T&)` and T's `redis_validate(const T&)` (whichever exist)
/// accept v.
template <class Codec, class T>
bool redis_value_valid(const Codec& codec, const T& v) {
  if constexpr (requires {
                  { codec.validate(v) } -> std::convertible_to<bool>;
                }) {
    if (!static_cast<bool>(codec.validate(v))) return false;
  }
  if constexpr (redis_has_validate_hook<T>) {
    if (!static_cast<bool>(redis_validate(v))) return false;
  }
  return true;
}
}  // namespace detail

/// std::string as bytes; bool / numbers / enums as decimal text; other trivially
/// copyable types as a tagged copy of their object bytes (see the header comment).
struct redis_default_codec {
  template <detail::redis_default_encodable T>
  void encode(const T& v, std::string& out) const {
    if constexpr (std::same_as<T, std::string>) {
      out.append(v);
    } else if constexpr (std::same_as<T, bool>) {
      out.push_back(v ? '1' : '0');
    } else if constexpr (std::same_as<T, char>) {
      out.push_back(v);
    } else if constexpr (std::is_enum_v<T>) {
      encode(static_cast<std::underlying_type_t<T>>(v), out);
    } else if constexpr (detail::redis_text_number<T>) {
      char buf[64];
      const auto r = std::to_chars(buf, buf + sizeof buf, v);
      out.append(buf, r.ptr);
    } else {
      constexpr std::uint64_t fp = detail::redis_type_fingerprint<T>();
      out.push_back(static_cast<char>(detail::redis_raw_magic));
      out.push_back(static_cast<char>(detail::redis_raw_codec_id));
      for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((fp >> (8 * i)) & 0xFFU));
      const auto* p = reinterpret_cast<const char*>(&v);
      out.append(p, sizeof(T));
    }
  }

  /// nullopt for anything `encode` cannot have produced for T, and for values that T's
  /// redis_validate hook (if any) rejects.
  template <detail::redis_default_encodable T>
  std::optional<T> decode(std::string_view in, std::type_identity<T>) const {
    if constexpr (std::same_as<T, std::string>) {
      return std::string(in);
    } else if constexpr (std::same_as<T, bool>) {
      if (in == "1") return true;
      if (in == "0") return false;
      return std::nullopt;
    } else if constexpr (std::same_as<T, char>) {
      if (in.size() != 1) return std::nullopt;
      return in[0];
    } else if constexpr (std::is_enum_v<T>) {
      auto u = decode(in, std::type_identity<std::underlying_type_t<T>>{});
      if (!u) return std::nullopt;
      const T v = static_cast<T>(*u);
      if (!detail::redis_value_valid(*this, v)) return std::nullopt;
      return v;
    } else if constexpr (detail::redis_text_number<T>) {
      T v{};
      const char* end = in.data() + in.size();
      const auto r = std::from_chars(in.data(), end, v);
      if (r.ec != std::errc{} || r.ptr != end || in.empty()) return std::nullopt;
      return v;
    } else {
      constexpr std::size_t h = detail::redis_raw_header_size;
      if (in.size() != h + sizeof(T)) return std::nullopt;
      if (static_cast<unsigned char>(in[0]) != detail::redis_raw_magic ||
          static_cast<unsigned char>(in[1]) != detail::redis_raw_codec_id) {
        return std::nullopt;
      }
      std::uint64_t fp = 0;
      for (std::size_t i = 0; i < 8; ++i) {
        fp |= std::uint64_t{static_cast<unsigned char>(in[2 + i])} << (8 * i);
      }
      if (fp != detail::redis_type_fingerprint<T>()) return std::nullopt;
      T v;
      std::memcpy(static_cast<void*>(&v), in.data() + h, sizeof(T));
      if (!detail::redis_value_valid(*this, v)) return std::nullopt;
      return v;
    }
  }
};

namespace detail {
/// How redis_tier decodes a value read from Redis: at most max_size bytes, the codec,
/// then the validation hooks. nullopt (a decode error) for anything else; never throws.
template <class T, class Codec>
std::optional<T> redis_decode_value(const Codec& codec, std::string_view bytes,
                                    std::size_t max_size) noexcept {
  if (bytes.size() > max_size) return std::nullopt;
  try {
    auto v = codec.decode(bytes, std::type_identity<T>{});
    if (v && !redis_value_valid(codec, *v)) v.reset();
    return v;
  } catch (...) {
    return std::nullopt;
  }
}
}  // namespace detail

// ---- breaker -------------------------------------------------------------------------

/// No circuit breaker (the default Breaker of redis_tier).
struct no_breaker {};

/// What redis_tier needs from a breaker: circuit_breaker<...> satisfies it.
template <class B>
concept redis_breaker = requires(B& b) {
  b.try_acquire();
  requires requires(decltype(b.try_acquire())& p) {
    static_cast<bool>(p);
    p.success();
    p.failure();
    p.ignore();
  };
};

// ---- config and stats ----------------------------------------------------------------

struct redis_tier_config {
  /// Redis host name or address, and port.
  std::string host = "127.0.0.1";
  int port = 6379;  ///< [1, 65535]
  /// AUTH password sent on connect (empty = none) and SELECTed database. [0, 1e6]
  std::string password{};
  int database = 0;
  /// The tier's namespace, prepended to every encoded key: empty or ending with ':'
  /// (see "Key namespaces" in the header comment).
  std::string key_prefix = "outgrow:";
  /// TTL of put(k, v); nullopt = no expiry. > 0.
  std::optional<std::chrono::nanoseconds> default_ttl{};
  /// Pooled connections: 4. [1, 1024]
  std::size_t pool_size = 4;
  /// Bound of one connect: 200 ms. (0, 1 h]
  std::chrono::nanoseconds connect_timeout = std::chrono::milliseconds{200};
  /// Bound of each socket read / write of a command: 100 ms. (0, 1 h]
  std::chrono::nanoseconds command_timeout = std::chrono::milliseconds{100};
  /// Wait for a free connection when all are busy; nullopt = command_timeout. [0, 1 h]
  std::optional<std::chrono::nanoseconds> pool_timeout{};
  /// Delay between connect attempts while Redis is unreachable.
  full_jitter_backoff reconnect_backoff{std::chrono::milliseconds{10},
                                        std::chrono::seconds{1}};
  /// Seed of the backoff's jitter.
  std::uint64_t seed = 0x0E15'7ED1'5EEDULL;
  /// Keys per MGET / per pipelined batch of SETs: 256. [1, 1e6]
  std::size_t max_batch = 256;
  /// Largest encoded value written or read: 16 MiB. Larger puts are rejected (the key is
  /// deleted instead), larger replies are decode errors. [1, 512 MiB]
  std::size_t max_value_size = std::size_t{16} << 20;
  /// Keys remembered for repair after failed writes (beyond: clear the namespace). 10000.
  /// 0 = no repair. [0, 1e8]
  std::size_t max_repair_keys = 10'000;
};

/// cache_stats of the tier plus what only a remote tier sees.
struct redis_tier_stats : cache_stats {
  static constexpr std::string_view metrics_name = "redis_tier_stats";
  std::uint64_t failed_reads = 0;      ///< gets answered as misses because of a failure
  std::uint64_t failed_writes = 0;     ///< puts / erases / clears that did not complete
  std::uint64_t transport_errors = 0;  ///< timeouts, resets, EOF: the connection closed
  std::uint64_t server_errors = 0;     ///< error replies (-OOM, -READONLY, ...)
  std::uint64_t decode_errors = 0;     ///< values the codec rejected (answered as misses)
  std::uint64_t oversized = 0;         ///< values over max_value_size: puts rejected, reads
                                       ///< answered as misses (also decode_errors)
  std::uint64_t short_circuited = 0;  ///< calls not sent: breaker open or reconnect backoff
  std::uint64_t pool_timeouts = 0;    ///< calls that found no free connection in time
  std::uint64_t connects = 0;         ///< connections opened (first ones and reconnects)
  std::uint64_t connect_failures = 0;
  std::uint64_t erased = 0;            ///< keys erase() removed
  std::uint64_t repaired = 0;          ///< keys deleted after recovery (failed writes)
  std::uint64_t repair_pending = 0;    ///< keys waiting for repair now
  std::uint64_t open_connections = 0;  ///< now

  template <class F>
  void for_each_metric(F&& f) const {
    cache_stats::for_each_metric(f);
    f("failed_reads", failed_reads);
    f("failed_writes", failed_writes);
    f("transport_errors", transport_errors);
    f("server_errors", server_errors);
    f("decode_errors", decode_errors);
    f("oversized", oversized);
    f("short_circuited", short_circuited);
    f("pool_timeouts", pool_timeouts);
    f("connects", connects);
    f("connect_failures", connect_failures);
    f("erased", erased);
    f("repaired", repaired);
    f("repair_pending", repair_pending);
    f("open_connections", open_connections);
  }
};

namespace detail {

struct redis_context_free {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using redis_context_ptr = std::unique_ptr<redisContext, redis_context_free>;

struct redis_reply_free {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_free>;

inline timeval redis_timeval(std::chrono::nanoseconds d) noexcept {
  const auto us = std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(us / 1'000'000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>(us % 1'000'000);
  return tv;
}

/// Where to connect and how (shared by redis_tier and redis_invalidation_bus).
struct redis_endpoint {
  std::string host;
  int port = 6379;
  std::string password;
  int database = 0;
  std::chrono::nanoseconds connect_timeout{};
  std::chrono::nanoseconds command_timeout{};

  /// The connection fields of any config that has them (tier, bus, stream queue).
  template <class Config>
  [[nodiscard]] static redis_endpoint of(const Config& c) {
    return {c.host, c.port, c.password, c.database, c.connect_timeout, c.command_timeout};
  }
};

inline void validate_endpoint(std::string_view who, const redis_endpoint& e) {
  using namespace std::chrono_literals;
  require(!e.host.empty(), who, "host", "a host name or address", "\"\"");
  require_in_range(who, "port", e.port, 1, 65535);
  require_in_range(who, "database", e.database, 0, 1'000'000);
  require_in_range(who, "connect_timeout", e.connect_timeout, std::chrono::nanoseconds{1},
                   std::chrono::nanoseconds{1h});
  require_in_range(who, "command_timeout", e.command_timeout, std::chrono::nanoseconds{1},
                   std::chrono::nanoseconds{1h});
}

/// Runs one command given as arguments; null on a transport error (c->err set).
inline redis_reply_ptr redis_argv(redisContext* c, std::span<const std::string_view> args) {
  constexpr std::size_t small = 8;
  const char* argv[small];
  std::size_t lens[small];
  std::vector<const char*> big_argv;
  std::vector<std::size_t> big_lens;
  const char** av = argv;
  std::size_t* al = lens;
  if (args.size() > small) {
    big_argv.resize(args.size());
    big_lens.resize(args.size());
    av = big_argv.data();
    al = big_lens.data();
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    av[i] = args[i].data();
    al[i] = args[i].size();
  }
  return redis_reply_ptr(
      static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(args.size()), av, al)));
}

/// Outcome of a bounded read: a reply, a transport failure (the connection is unusable),
/// or a reply larger than allowed (unread bytes remain: close the connection too).
enum class redis_io : std::uint8_t { ok, transport, too_large };

/// Writes c's output buffer, re-arming the socket timeout with the time left before
/// `deadline` before each write: the whole write ends by the deadline.
inline bool redis_flush_until(redisContext* c,
                              std::chrono::steady_clock::time_point deadline) noexcept {
  int done = 0;
  while (done == 0) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return false;
    if (redisSetTimeout(c, redis_timeval(left)) != REDIS_OK) return false;
    if (redisBufferWrite(c, &done) != REDIS_OK) return false;
  }
  return true;
}

/// Reads one reply before `deadline` (the socket timeout re-armed with the time left
/// before each read, so a reply trickling in cannot stretch the wait), buffering at most
/// `max_bytes` of it.
inline redis_io redis_read_until(redisContext* c,
                                 std::chrono::steady_clock::time_point deadline,
                                 std::size_t max_bytes, redis_reply_ptr& out) noexcept {
  for (;;) {
    void* raw = nullptr;
    if (redisGetReplyFromReader(c, &raw) != REDIS_OK) return redis_io::transport;
    if (raw != nullptr) {
      out.reset(static_cast<redisReply*>(raw));
      return redis_io::ok;
    }
    if (c->reader->len - c->reader->pos > max_bytes) return redis_io::too_large;
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return redis_io::transport;
    if (redisSetTimeout(c, redis_timeval(left)) != REDIS_OK) return redis_io::transport;
    if (redisBufferRead(c) != REDIS_OK) return redis_io::transport;
  }
}

/// Opens a blocking connection with both timeouts set, AUTHed and SELECTed; null and
/// `error` set on failure.
inline redis_context_ptr redis_open(const redis_endpoint& e, std::string& error) {
  redis_context_ptr c(
      redisConnectWithTimeout(e.host.c_str(), e.port, redis_timeval(e.connect_timeout)));
  if (!c) {
    error = "cannot allocate a hiredis context";
    return nullptr;
  }
  if (c->err != 0) {
    error = c->errstr;
    return nullptr;
  }
  if (redisSetTimeout(c.get(), redis_timeval(e.command_timeout)) != REDIS_OK) {
    error = "cannot set the socket timeout";
    return nullptr;
  }
  (void)redisEnableKeepAlive(c.get());
  const auto ok = [&](redis_reply_ptr r) {
    if (!r) {
      error = c->errstr;
      return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      error = std::string(r->str, r->len);
      return false;
    }
    return true;
  };
  if (!e.password.empty()) {
    const std::string_view args[] = {"AUTH", e.password};
    if (!ok(redis_argv(c.get(), args))) return nullptr;
  }
  if (e.database != 0) {
    const std::string db = std::to_string(e.database);
    const std::string_view args[] = {"SELECT", db};
    if (!ok(redis_argv(c.get(), args))) return nullptr;
  }
  return c;
}

/// Spaces connect attempts while a server is unreachable: after a failed attempt the
/// next one waits for the backoff, and only one caller probes at a time. While healthy
/// (no failure since the last success) anyone may connect.
template <class Clock>
class reconnect_gate {
 public:
  using time_point = typename Clock::time_point;
  reconnect_gate(full_jitter_backoff backoff, std::uint64_t seed, Clock clock)
      : backoff_(backoff), rng_(seed), clock_(std::move(clock)) {}

  /// True when the caller may attempt a connect now (and must report the outcome).
  bool try_enter() {
    std::lock_guard lock(mutex_);
    if (failures_ == 0) return true;
    if (probing_ || clock_.now() < next_) return false;
    probing_ = true;
    return true;
  }
  void succeeded() {
    std::lock_guard lock(mutex_);
    failures_ = 0;
    previous_ = {};
    probing_ = false;
  }
  void failed() {
    std::lock_guard lock(mutex_);
    ++failures_;
    previous_ = backoff_.delay(std::min<std::uint32_t>(failures_, 64), previous_, rng_);
    next_ = clock_.now() + previous_;
    probing_ = false;
  }
  /// When the next attempt may happen (time_point{} when healthy).
  time_point next_attempt() const {
    std::lock_guard lock(mutex_);
    return failures_ == 0 ? time_point{} : next_;
  }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  mutable std::mutex mutex_;
  full_jitter_backoff backoff_;
  std::mt19937_64 rng_;
  Clock clock_;
  std::uint32_t failures_ = 0;
  std::chrono::nanoseconds previous_{};
  time_point next_{};
  bool probing_ = false;
};

/// "*" glob pattern matching every key that starts with `prefix`.
inline std::string redis_prefix_pattern(std::string_view prefix) {
  std::string p;
  for (const char c : prefix) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') p.push_back('\\');
    p.push_back(c);
  }
  p.push_back('*');
  return p;
}

/// Ends every key prefix of redis_tier; never appears unescaped in an encoded key.
inline constexpr char redis_key_separator = ':';

/// Escapes out[from, end) in place: '%' -> "%25", ':' -> "%3A". The escaped part holds no
/// ':', so with prefixes that end with ':' no prefix + key equals another prefix + key.
inline void redis_escape_key(std::string& out, std::size_t from) {
  std::size_t extra = 0;
  for (std::size_t i = from; i < out.size(); ++i) {
    if (out[i] == '%' || out[i] == redis_key_separator) extra += 2;
  }
  if (extra == 0) return;
  std::size_t r = out.size();
  out.resize(out.size() + extra);
  std::size_t w = out.size();
  while (r > from) {
    const char c = out[--r];
    if (c == '%' || c == redis_key_separator) {
      out[--w] = c == '%' ? '5' : 'A';
      out[--w] = c == '%' ? '2' : '3';
      out[--w] = '%';
    } else {
      out[--w] = c;
    }
  }
}

/// True when `key` (a Redis key matching prefix*) belongs to the namespace `prefix`:
/// no ':' after the prefix (a longer prefix's keys have one).
inline bool redis_in_namespace(std::string_view key, std::string_view prefix) noexcept {
  return key.size() >= prefix.size() &&
         key.substr(prefix.size()).find(redis_key_separator) == std::string_view::npos;
}

}  // namespace detail

// ---- the tier ------------------------------------------------------------------------

template <class Key, class Value, class Codec = redis_default_codec,
          class Breaker = no_breaker, clock_source Clock = steady_clock_source>
requires redis_codec<Codec, Value> && redis_key_codec<Codec, Key> &&
    (std::same_as<Breaker, no_breaker> || redis_breaker<Breaker>)class redis_tier {
  static constexpr bool has_breaker = !std::same_as<Breaker, no_breaker>;

 public:
  using key_type = Key;
  using mapped_type = Value;
  using codec_type = Codec;
  using breaker_type = Breaker;
  using clock_type = Clock;
  using config_type = redis_tier_config;
  /// Safe from any thread; shared between instances (see tiered_cache's tier_traits).
  static constexpr bool thread_safe = true;
  static constexpr bool shared = true;

  /// Connects lazily (the first call opens a connection): constructing never fails
  /// because Redis is down. Throws config_error for an invalid config.
  explicit redis_tier(redis_tier_config config = {}, Codec codec = {},
                      Clock clock = {}) requires(!has_breaker)
      : redis_tier(std::move(config), nullptr, std::move(codec), std::move(clock)) {}

  /// As above, asking `breaker` (owned by the caller, outliving the tier) before each
  /// call.
  redis_tier(redis_tier_config config, Breaker& breaker, Codec codec = {},
             Clock clock = {}) requires has_breaker
      : redis_tier(std::move(config), &breaker, std::move(codec), std::move(clock)) {}

  redis_tier(const redis_tier&) = delete;
  redis_tier& operator=(const redis_tier&) = delete;

  // ---- the tier concept --------------------------------------------------------------

  /// The value, or nullopt when absent, expired, undecodable or Redis failed. Never
  /// throws; waits at most pool_timeout + connect/command timeouts.
  std::optional<Value> get(const Key& key) noexcept {
    std::optional<Value> out;
    bool oversized = false;
    const bool ok = run([&](connection& c) {
      if (!encode_key(key, c.key)) return status::codec;
      const std::string_view args[] = {"GET", c.key};
      redis_reply_holder r;
      const status s = exec(c, args, r, reply_limit());
      oversized = s == status::too_large;
      if (s != status::ok) return s;
      if (r->type == REDIS_REPLY_NIL) return status::ok;
      if (r->type != REDIS_REPLY_STRING) return status::server;
      out = decode({r->str, r->len});
      return status::ok;
    });
    if (!ok && !oversized) failed_reads_.add();
    (out ? hits_ : misses_).add();
    return out;
  }

  /// SET with the default TTL (if any). False when Redis could not store it.
  bool put(const Key& key, Value value) noexcept {
    return put_impl(key, value, default_ttl_);
  }

  /// SET … PX ttl (rounded up to whole milliseconds). ttl <= 0: config_error.
  bool put(const Key& key, Value value, std::chrono::nanoseconds ttl) {
    require(ttl > std::chrono::nanoseconds::zero(), "redis_tier", "put(ttl)",
            "in (0s, inf)", ttl);
    return put_impl(key, value, ttl);
  }

  /// DEL. True when a key was removed; false when absent or Redis failed.
  bool erase(const Key& key) noexcept {
    bool removed = false;
    const bool ok = run([&](connection& c) {
      if (!encode_key(key, c.key)) return status::codec;
      const std::string_view args[] = {"DEL", c.key};
      redis_reply_holder r;
      if (const status s = exec(c, args, r, reply_limit()); s != status::ok) return s;
      if (r->type != REDIS_REPLY_INTEGER) return status::server;
      removed = r->integer > 0;
      return status::ok;
    });
    if (!ok) {
      failed_writes_.add();
      remember_for_repair(key);
    }
    if (removed) erased_.add();
    return removed;
  }

  /// Deletes every key under the prefix (see the header comment). On failure the
  /// namespace is cleared after recovery instead.
  void clear() noexcept {
    const bool ok = run([&](connection& c) { return clear_namespace(c); });
    if (!ok) {
      failed_writes_.add();
      if (config_.max_repair_keys > 0) {
        std::lock_guard lock(repair_mutex_);
        repair_clear_ = true;
        repair_keys_.clear();
        repair_flag_.store(true, std::memory_order_release);
      }
    }
  }

  /// Keys under the prefix (SCAN; 0 when Redis is unreachable). O(keys in the database).
  [[nodiscard]] std::size_t size() const noexcept {
    std::size_t n = 0;
    (void)run([&](connection& c) {
      return scan(c, [&](std::span<redisReply* const> keys) {
        n += keys.size();
        return status::ok;
      });
    });
    return n;
  }

  [[nodiscard]] redis_tier_stats stats() const {
    redis_tier_stats s;
    s.hits = hits_.load();
    s.misses = misses_.load();
    s.puts = puts_.load();
    s.rejected_puts = rejected_puts_.load();
    s.failed_reads = failed_reads_.load();
    s.failed_writes = failed_writes_.load();
    s.transport_errors = transport_errors_.load();
    s.server_errors = server_errors_.load();
    s.decode_errors = decode_errors_.load();
    s.oversized = oversized_.load();
    s.short_circuited = short_circuited_.load();
    s.pool_timeouts = pool_timeouts_.load();
    s.connects = connects_.load();
    s.connect_failures = connect_failures_.load();
    s.erased = erased_.load();
    s.repaired = repaired_.load();
    s.open_connections = open_connections_.load(std::memory_order_relaxed);
    {
      std::lock_guard lock(repair_mutex_);
      s.repair_pending = repair_keys_.size();
    }
    return s;
  }

  // ---- batches -----------------------------------------------------------------------

  /// One result per key, in order: MGET in batches of max_batch keys, pipelined on one
  /// connection. A failure makes the keys not yet answered misses.
  std::vector<std::optional<Value>> get_many(std::span<const Key> keys) noexcept {
    std::vector<std::optional<Value>> out;
    try {
      out.resize(keys.size());
    } catch (...) {
      return {};
    }
    if (keys.empty()) return out;
    bool oversized = false;
    const bool ok = run([&](connection& c) {
      std::vector<std::string> encoded(keys.size());
      for (std::size_t i = 0; i < keys.size(); ++i) {
        if (!encode_key(keys[i], encoded[i])) return status::codec;
      }
      std::vector<const char*> argv;
      std::vector<std::size_t> lens;
      for (std::size_t begin = 0; begin < keys.size(); begin += config_.max_batch) {
        const std::size_t end = std::min(keys.size(), begin + config_.max_batch);
        argv.assign(1, "MGET");
        lens.assign(1, 4);
        for (std::size_t i = begin; i < end; ++i) {
          argv.push_back(encoded[i].data());
          lens.push_back(encoded[i].size());
        }
        if (redisAppendCommandArgv(c.ctx.get(), static_cast<int>(argv.size()), argv.data(),
                                   lens.data()) != REDIS_OK) {
          return status::transport;
        }
      }
      if (!detail::redis_flush_until(c.ctx.get(), command_deadline())) {
        return status::transport;
      }
      status result = status::ok;
      for (std::size_t begin = 0; begin < keys.size(); begin += config_.max_batch) {
        const std::size_t end = std::min(keys.size(), begin + config_.max_batch);
        redis_reply_holder r;
        const status s = read_reply(c, r, reply_limit(end - begin));
        if (s != status::ok) {
          oversized = s == status::too_large;
          return s;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != end - begin) {
          result = status::server;  // keep reading the other replies: stay in sync
          continue;
        }
        for (std::size_t i = begin; i < end; ++i) {
          const redisReply* e = r->element[i - begin];
          if (e->type != REDIS_REPLY_STRING) continue;
          if (e->len > config_.max_value_size) {
            oversized_.add();
            decode_errors_.add();
            continue;
          }
          out[i] = decode({e->str, e->len});
        }
      }
      return result;
    });
    std::uint64_t found = 0;
    for (const auto& v : out) found += v ? 1U : 0U;
    hits_.add(found);
    misses_.add(keys.size() - found);
    if (!ok && !oversized) failed_reads_.add(keys.size() - found);
    return out;
  }

  /// SETs pipelined in batches of max_batch (with `ttl`, else the default TTL). Returns
  /// how many Redis acknowledged.
  std::size_t put_many(std::span<const std::pair<Key, Value>> items,
                       std::optional<std::chrono::nanoseconds> ttl = std::nullopt) {
    if (ttl) {
      require(*ttl > std::chrono::nanoseconds::zero(), "redis_tier", "put_many(ttl)",
              "in (0s, inf)", *ttl);
    } else {
      ttl = default_ttl_;
    }
    std::size_t stored = 0;
    std::vector<char> acked(items.size(), 0);
    std::vector<std::string> keys(items.size());
    std::vector<std::string> values(items.size());
    std::vector<char> encoded(items.size(), 0);
    for (std::size_t i = 0; i < items.size(); ++i) {
      encoded[i] =
          encode_key(items[i].first, keys[i]) && encode_value(items[i].second, values[i]);
      if (encoded[i] != 0 && values[i].size() > config_.max_value_size) {
        oversized_.add();  // rejected below; repair deletes the key's older value
        encoded[i] = 0;
      }
    }
    (void)run([&](connection& c) {
      const std::string px = ttl ? std::to_string(ttl_ms(*ttl)) : std::string{};
      for (std::size_t begin = 0; begin < items.size(); begin += config_.max_batch) {
        const std::size_t end = std::min(items.size(), begin + config_.max_batch);
        for (std::size_t i = begin; i < end; ++i) {
          if (encoded[i] == 0) continue;
          const char* argv[] = {"SET", keys[i].data(), values[i].data(), "PX", px.data()};
          const std::size_t lens[] = {3, keys[i].size(), values[i].size(), 2, px.size()};
          if (redisAppendCommandArgv(c.ctx.get(), ttl ? 5 : 3, argv, lens) != REDIS_OK) {
            return status::transport;
          }
        }
        if (!detail::redis_flush_until(c.ctx.get(), command_deadline())) {
          return status::transport;
        }
        status result = status::ok;
        for (std::size_t i = begin; i < end; ++i) {
          if (encoded[i] == 0) continue;
          redis_reply_holder r;
          if (const status s = read_reply(c, r, reply_limit()); s != status::ok) return s;
          if (r && r->type == REDIS_REPLY_STATUS) {
            acked[i] = 1;
            ++stored;
          } else {
            result = status::server;
          }
        }
        if (result != status::ok) return result;
      }
      return status::ok;
    });
    puts_.add(stored);
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (acked[i] != 0) continue;
      rejected_puts_.add();
      failed_writes_.add();
      remember_for_repair(items[i].first);
    }
    return stored;
  }

  // ---- operations --------------------------------------------------------------------

  /// PING on a pooled connection (connecting if needed): true when Redis answered.
  bool ping() noexcept {
    return run([&](connection& c) {
      const std::string_view args[] = {"PING"};
      redis_reply_holder r;
      if (const status s = exec(c, args, r, reply_limit()); s != status::ok) return s;
      return r->type == REDIS_REPLY_STATUS ? status::ok : status::server;
    });
  }

  /// The key Redis stores for `key` (prefix + encoded key), e.g. for redis-cli.
  [[nodiscard]] std::string redis_key(const Key& key) const {
    std::string out;
    if (!encode_key(key, out)) return {};
    return out;
  }

  [[nodiscard]] const redis_tier_config& config() const noexcept { return config_; }
  [[nodiscard]] const Codec& codec() const noexcept { return codec_; }

 private:
  enum class status : std::uint8_t { ok, transport, server, codec, too_large };
  using redis_reply_holder = detail::redis_reply_ptr;

  struct connection {
    detail::redis_context_ptr ctx;
    std::string key;    // scratch: the encoded key
    std::string value;  // scratch: the encoded value
  };

  redis_tier(redis_tier_config config, Breaker* breaker, Codec codec, Clock clock)
      : config_(validated(std::move(config))),
        endpoint_(detail::redis_endpoint::of(config_)),
        default_ttl_(config_.default_ttl),
        pool_wait_(config_.pool_timeout.value_or(config_.command_timeout)),
        codec_(std::move(codec)),
        breaker_(breaker),
        gate_(config_.reconnect_backoff, config_.seed, std::move(clock)),
        connections_(std::make_unique<connection[]>(config_.pool_size)) {
    free_.reserve(config_.pool_size);
    for (std::size_t i = config_.pool_size; i > 0; --i) free_.push_back(i - 1);
  }

  static redis_tier_config validated(redis_tier_config c) {
    using namespace std::chrono_literals;
    constexpr std::string_view who = "redis_tier";
    detail::validate_endpoint(who, {c.host, c.port, c.password, c.database,
                                    c.connect_timeout, c.command_timeout});
    require(c.key_prefix.empty() || c.key_prefix.back() == detail::redis_key_separator, who,
            "key_prefix", "empty or ending with ':'", fmt::format("\"{}\"", c.key_prefix));
    if (c.default_ttl) {
      require(*c.default_ttl > 0ns, who, "default_ttl", "in (0s, inf)", *c.default_ttl);
    }
    require_in_range(who, "pool_size", c.pool_size, std::size_t{1}, std::size_t{1024});
    if (c.pool_timeout) {
      require_in_range(who, "pool_timeout", *c.pool_timeout, std::chrono::nanoseconds{0},
                       std::chrono::nanoseconds{1h});
    }
    require_in_range(who, "max_batch", c.max_batch, std::size_t{1}, std::size_t{1'000'000});
    require_in_range(who, "max_value_size", c.max_value_size, std::size_t{1},
                     std::size_t{512} << 20);
    require_in_range(who, "max_repair_keys", c.max_repair_keys, std::size_t{0},
                     std::size_t{100'000'000});
    return c;
  }

  static std::int64_t ttl_ms(std::chrono::nanoseconds ttl) noexcept {
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(ttl).count();
    return std::max<std::int64_t>(ms, 1);
  }

  bool encode_key(const Key& key, std::string& out) const noexcept {
    try {
      out.assign(config_.key_prefix);
      codec_.encode(key, out);
      detail::redis_escape_key(out, config_.key_prefix.size());
      return true;
    } catch (...) {
      return false;
    }
  }

  bool encode_value(const Value& value, std::string& out) const noexcept {
    try {
      out.clear();
      codec_.encode(value, out);
      return true;
    } catch (...) {
      return false;
    }
  }

  std::optional<Value> decode(std::string_view bytes) const noexcept {
    auto v = detail::redis_decode_value<Value>(codec_, bytes, config_.max_value_size);
    if (!v) decode_errors_.add();
    return v;
  }

  using deadline_type = std::chrono::steady_clock::time_point;

  deadline_type command_deadline() const noexcept {
    return std::chrono::steady_clock::now() + config_.command_timeout;
  }

  /// Bytes a reply carrying `values` values may buffer.
  std::size_t reply_limit(std::size_t values = 1) const noexcept {
    return std::max<std::size_t>(values, 1) * (config_.max_value_size + 64) + (64U << 10);
  }

  static status io_status(detail::redis_io io) noexcept {
    switch (io) {
      case detail::redis_io::ok:
        return status::ok;
      case detail::redis_io::too_large:
        return status::too_large;
      default:
        return status::transport;
    }
  }

  /// Reads one (pipelined) reply within command_timeout.
  status read_reply(connection& c, redis_reply_holder& out,
                    std::size_t limit) const noexcept {
    return io_status(detail::redis_read_until(c.ctx.get(), command_deadline(), limit, out));
  }

  /// One command, written and answered within command_timeout in total.
  status exec(connection& c, int argc, const char** argv, const std::size_t* lens,
              redis_reply_holder& out, std::size_t limit) const noexcept {
    const auto deadline = command_deadline();
    if (redisAppendCommandArgv(c.ctx.get(), argc, argv, lens) != REDIS_OK ||
        !detail::redis_flush_until(c.ctx.get(), deadline)) {
      return status::transport;
    }
    return io_status(detail::redis_read_until(c.ctx.get(), deadline, limit, out));
  }

  status exec(connection& c, std::span<const std::string_view> args,
              redis_reply_holder& out, std::size_t limit) const {
    const char* argv[8];
    std::size_t lens[8];
    const std::size_t n = std::min<std::size_t>(args.size(), 8);
    for (std::size_t i = 0; i < n; ++i) {
      argv[i] = args[i].data();
      lens[i] = args[i].size();
    }
    return exec(c, static_cast<int>(n), argv, lens, out, limit);
  }

  bool put_impl(const Key& key, const Value& value,
                std::optional<std::chrono::nanoseconds> ttl) noexcept {
    bool oversized = false;
    const bool ok = run([&](connection& c) {
      if (!encode_key(key, c.key) || !encode_value(value, c.value)) return status::codec;
      if (c.value.size() > config_.max_value_size) {
        // Rejected; delete the key so that Redis does not keep serving the value this
        // put was meant to replace.
        oversized = true;
        const std::string_view args[] = {"DEL", c.key};
        redis_reply_holder r;
        if (const status s = exec(c, args, r, reply_limit()); s != status::ok) return s;
        return r->type == REDIS_REPLY_INTEGER ? status::ok : status::server;
      }
      char px[24];
      std::size_t px_len = 0;
      if (ttl)
        px_len = static_cast<std::size_t>(
            std::to_chars(px, px + sizeof px, ttl_ms(*ttl)).ptr - px);
      const char* argv[] = {"SET", c.key.data(), c.value.data(), "PX", px};
      const std::size_t lens[] = {3, c.key.size(), c.value.size(), 2, px_len};
      redis_reply_holder r;
      if (const status s = exec(c, ttl ? 5 : 3, argv, lens, r, reply_limit());
          s != status::ok)
        return s;
      return r->type == REDIS_REPLY_STATUS ? status::ok : status::server;
    });
    if (oversized) {
      oversized_.add();
      rejected_puts_.add();
      failed_writes_.add();
      if (!ok) remember_for_repair(key);
      return false;
    }
    if (ok) {
      puts_.add();
    } else {
      rejected_puts_.add();
      failed_writes_.add();
      remember_for_repair(key);
    }
    return ok;
  }
  // ---- the pool ------------------------------------------------------------------------

  std::optional<std::size_t> acquire() const noexcept {
    std::unique_lock lock(pool_mutex_);
    if (free_.empty()) {
      const bool got = pool_cv_.wait_for(lock, pool_wait_, [&] { return !free_.empty(); });
      if (!got) return std::nullopt;
    }
    const std::size_t i = free_.back();
    free_.pop_back();
    return i;
  }

  void release(std::size_t i) const noexcept {
    {
      std::lock_guard lock(pool_mutex_);
      free_.push_back(i);  // capacity reserved: never allocates
    }
    pool_cv_.notify_one();
  }

  void close(connection& c) const noexcept {
    if (c.ctx) {
      c.ctx.reset();
      open_connections_.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  /// Opens c if needed. ok, transport (connect failed) or codec (gate closed: not tried).
  status ensure_open(connection& c) const noexcept {
    if (c.ctx) return status::ok;
    if (!gate_.try_enter()) return status::codec;
    std::string error;
    detail::redis_context_ptr ctx;
    try {
      ctx = detail::redis_open(endpoint_, error);
    } catch (...) {
      ctx.reset();
    }
    if (!ctx) {
      connect_failures_.add();
      gate_.failed();
      return status::transport;
    }
    gate_.succeeded();
    connects_.add();
    c.ctx = std::move(ctx);
    open_connections_.fetch_add(1, std::memory_order_relaxed);
    return status::ok;
  }

  /// Runs op(connection) -> status with a pooled, open connection, under the breaker.
  /// True when op returned ok. Never throws.
  template <class Op>
  bool run(Op&& op) const noexcept {
    if constexpr (has_breaker) {
      auto permit = breaker_->try_acquire();
      if (!permit) {
        short_circuited_.add();
        return false;
      }
      const status s = run_pooled(op);
      if (s == status::ok) {
        permit.success();
      } else if (s == status::transport) {
        permit.failure();
      } else {
        permit.ignore();
      }
      return s == status::ok;
    } else {
      return run_pooled(op) == status::ok;
    }
  }

  template <class Op>
  status run_pooled(Op& op) const noexcept {
    const auto slot = acquire();
    if (!slot) {
      pool_timeouts_.add();
      return status::codec;  // not the server's fault as far as the breaker knows
    }
    connection& c = connections_[*slot];
    status s = ensure_open(c);
    if (s == status::codec) {
      short_circuited_.add();
    } else if (s == status::ok) {
      if (repair_flag_.load(std::memory_order_acquire)) s = repair(c);
      if (s == status::ok) {
        try {
          s = op(c);
        } catch (...) {
          s = status::codec;
        }
      }
      if (s == status::transport) {
        transport_errors_.add();
        close(c);
      } else if (s == status::too_large) {
        oversized_.add();
        decode_errors_.add();
        close(c);  // the rest of the reply is unread: never reuse the connection
      } else if (s == status::server) {
        server_errors_.add();
      }
    }
    release(*slot);
    return s;
  }

  // ---- repair after failed writes --------------------------------------------------

  void remember_for_repair(const Key& key) const noexcept {
    if (config_.max_repair_keys == 0) return;
    try {
      std::string k;
      if (!encode_key(key, k)) return;
      std::lock_guard lock(repair_mutex_);
      if (repair_clear_) return;
      if (repair_keys_.size() >= config_.max_repair_keys && !repair_keys_.contains(k)) {
        repair_clear_ = true;
        repair_keys_.clear();
      } else {
        repair_keys_.insert(std::move(k));
      }
      repair_flag_.store(true, std::memory_order_release);
    } catch (...) {  // cannot remember it: TTLs remain the bound
    }
  }

  /// Deletes remembered keys (or clears the namespace) on c. Keys that were not deleted
  /// stay remembered.
  status repair(connection& c) const noexcept {
    std::vector<std::string> keys;
    bool clear_all = false;
    {
      std::lock_guard lock(repair_mutex_);
      if (!repair_flag_.load(std::memory_order_relaxed)) return status::ok;
      try {
        keys.assign(std::make_move_iterator(repair_keys_.begin()),
                    std::make_move_iterator(repair_keys_.end()));
      } catch (...) {
        return status::ok;
      }
      repair_keys_.clear();
      clear_all = std::exchange(repair_clear_, false);
      repair_flag_.store(false, std::memory_order_release);
    }
    status s = status::ok;
    try {
      if (clear_all) {
        s = clear_namespace(c);
      } else {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        std::size_t done = 0;
        while (done < keys.size() && s == status::ok) {
          const std::size_t end = std::min(keys.size(), done + config_.max_batch);
          argv.assign(1, "UNLINK");
          lens.assign(1, 6);
          for (std::size_t i = done; i < end; ++i) {
            argv.push_back(keys[i].data());
            lens.push_back(keys[i].size());
          }
          redis_reply_holder r;
          s = exec(c, static_cast<int>(argv.size()), argv.data(), lens.data(), r,
                   reply_limit());
          if (s != status::ok) {
            if (s == status::too_large) s = status::transport;
          } else if (r->type != REDIS_REPLY_INTEGER) {
            s = status::server;
          } else {
            repaired_.add(end - done);
            done = end;
          }
        }
        keys.erase(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(done));
      }
    } catch (...) {
      s = status::codec;
    }
    if (s != status::ok) {  // put back what is left
      std::lock_guard lock(repair_mutex_);
      if (clear_all) {
        repair_clear_ = true;
        repair_keys_.clear();
      } else if (!repair_clear_) {
        try {
          for (auto& k : keys) repair_keys_.insert(std::move(k));
        } catch (...) {
          repair_clear_ = true;
          repair_keys_.clear();
        }
      }
      repair_flag_.store(true, std::memory_order_release);
    }
    return s;
  }

  // ---- SCAN ----------------------------------------------------------------------------

  template <class F>
  status scan(connection& c, F&& on_keys) const {
    const std::string pattern = detail::redis_prefix_pattern(config_.key_prefix);
    std::string cursor = "0";
    std::vector<redisReply*> ours;
    do {
      const std::string_view args[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
      redis_reply_holder r;
      if (const status s = exec(c, args, r, reply_limit()); s != status::ok) return s;
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
          r->element[0]->type != REDIS_REPLY_STRING ||
          r->element[1]->type != REDIS_REPLY_ARRAY) {
        return status::server;
      }
      cursor.assign(r->element[0]->str, r->element[0]->len);
      const redisReply* keys = r->element[1];
      ours.clear();
      for (std::size_t i = 0; i < keys->elements; ++i) {
        const redisReply* k = keys->element[i];
        if (k->type == REDIS_REPLY_STRING &&
            detail::redis_in_namespace({k->str, k->len}, config_.key_prefix)) {
          ours.push_back(keys->element[i]);
        }
      }
      if (!ours.empty()) {
        const status s = on_keys(std::span<redisReply* const>(ours.data(), ours.size()));
        if (s != status::ok) return s;
      }
    } while (cursor != "0");
    return status::ok;
  }

  status clear_namespace(connection& c) const {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    return scan(c, [&](std::span<redisReply* const> keys) {
      argv.assign(1, "UNLINK");
      lens.assign(1, 6);
      for (const redisReply* k : keys) {
        argv.push_back(k->str);
        lens.push_back(k->len);
      }
      redis_reply_holder r;
      const status s = exec(c, static_cast<int>(argv.size()), argv.data(), lens.data(), r,
                            reply_limit());
      if (s != status::ok) return s;
      return r->type == REDIS_REPLY_INTEGER ? status::ok : status::server;
    });
  }

  const redis_tier_config config_;
  const detail::redis_endpoint endpoint_;
  const std::optional<std::chrono::nanoseconds> default_ttl_;
  const std::chrono::nanoseconds pool_wait_;
  const Codec codec_;
  Breaker* const breaker_;
  mutable detail::reconnect_gate<Clock> gate_;

  mutable std::mutex pool_mutex_;
  mutable std::condition_variable pool_cv_;
  mutable std::vector<std::size_t> free_;
  std::unique_ptr<connection[]> connections_;

  mutable std::mutex repair_mutex_;
  mutable std::unordered_set<std::string> repair_keys_;
  mutable bool repair_clear_ = false;
  mutable std::atomic<bool> repair_flag_{false};

  mutable std::atomic<std::uint64_t> open_connections_{0};
  mutable counter hits_, misses_, puts_, rejected_puts_, failed_reads_, failed_writes_,
      transport_errors_, server_errors_, decode_errors_, short_circuited_, pool_timeouts_,
      connects_, connect_failures_, erased_, repaired_, oversized_;
};

static_assert(redis_breaker<circuit_breaker<>>);
static_assert(redis_codec<redis_default_codec, std::string>);
static_assert(redis_codec<redis_default_codec, std::int64_t>);
static_assert(cache_tier<redis_tier<std::string, std::string>>);

}  // namespace outgrow
