// outgrow/redis/detail/invalidation_wire.hpp — redis_invalidation_bus's message format
// and its window of delivered message ids.
//
// One PUBLISH payload: 'k' (key) or 'c' (clear), the sender's 8-byte little-endian
// instance id, an 8-byte little-endian message number, then for 'k' the key's bytes (the
// bus's codec). The older format ('K' / 'C', id, key: no message number) still parses.
// Parsing treats the payload as untrusted input: anything malformed, or a key the codec
// or a validation hook rejects, is nullopt (never an exception); the fuzz test
// (tests/integration/redis_codec_fuzz_test.cpp) feeds it random and mutated payloads.
//
// Tracking mode (client-side caching, RESP2): the handshake that makes Redis report
// writes to a key prefix to the subscriber connection itself (CLIENT TRACKING ... REDIRECT
// <own id> BCAST PREFIX p), and the decoding of one reported Redis key back to a Key of
// the redis_tier namespace p (untrusted too: foreign and malformed keys are told apart,
// never thrown).
#pragma once

#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <outgrow/redis/codec.hpp>
#include <outgrow/redis/detail/connection.hpp>
#include <outgrow/redis/detail/key_namespace.hpp>

namespace outgrow::detail {

/// One invalidation message as it travels through Redis.
template <class Key>
struct redis_invalidation_message {
  bool clear = false;        ///< 'C' / 'c': drop everything
  std::uint64_t from = 0;    ///< the sender's instance id
  std::uint64_t seq = 0;     ///< the sender's message number (versioned format)
  bool has_seq = false;      ///< false for the older 'K' / 'C' format
  std::optional<Key> key{};  ///< for key messages
};

inline void redis_put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFU));
}

inline std::uint64_t redis_get_u64(std::string_view in) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    v |= std::uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  }
  return v;
}

/// The header of a message: 'k' (key) or 'c' (clear), sender id, sequence number; for
/// 'k' the encoded key follows.
inline std::string redis_invalidation_header(bool clear, std::uint64_t from,
                                             std::uint64_t seq) {
  std::string m;
  m.reserve(40);
  m.push_back(clear ? 'c' : 'k');
  redis_put_u64(m, from);
  redis_put_u64(m, seq);
  return m;
}

/// Parses a PUBLISH payload (both formats); nullopt when malformed, the key's codec
/// rejects it or its validation hook refuses it. Never throws.
template <class Key, class Codec>
std::optional<redis_invalidation_message<Key>> redis_parse_invalidation(
    const Codec& codec, std::string_view m) noexcept {
  try {
    if (m.empty()) return std::nullopt;
    const char kind = m[0];
    redis_invalidation_message<Key> out;
    std::size_t body = 0;
    if (kind == 'K' || kind == 'C') {
      body = 9;
    } else if (kind == 'k' || kind == 'c') {
      body = 17;
      out.has_seq = true;
    } else {
      return std::nullopt;
    }
    if (m.size() < body) return std::nullopt;
    out.clear = kind == 'C' || kind == 'c';
    out.from = redis_get_u64(m.substr(1));
    if (out.has_seq) out.seq = redis_get_u64(m.substr(9));
    if (out.clear) {
      if (m.size() != body) return std::nullopt;
      return out;
    }
    out.key = codec.decode(m.substr(body), std::type_identity<Key>{});
    if (!out.key || !redis_value_valid(codec, *out.key)) return std::nullopt;
    return out;
  } catch (...) {
    return std::nullopt;
  }
}

/// The last `size` message ids (sender, message number) a subscriber delivered, to drop
/// re-sent duplicates. size 0 = no deduplication. Not thread-safe (the subscriber thread).
class redis_message_window {
 public:
  explicit redis_message_window(std::size_t size) : size_(size) {}

  /// Remembers (from, seq); false when it was among the last `size` already.
  /// Throws: std::bad_alloc if memory runs out.
  bool first_time(std::uint64_t from, std::uint64_t seq) {
    if (size_ == 0) return true;
    const std::pair<std::uint64_t, std::uint64_t> id{from, seq};
    if (!seen_.insert(id).second) return false;
    order_.push_back(id);
    if (order_.size() > size_) {
      seen_.erase(order_.front());
      order_.pop_front();
    }
    return true;
  }

 private:
  std::size_t size_;
  std::set<std::pair<std::uint64_t, std::uint64_t>> seen_;
  std::deque<std::pair<std::uint64_t, std::uint64_t>> order_;
};

/// The channel Redis sends client-side caching invalidations to (RESP2 redirection).
inline constexpr std::string_view redis_tracking_channel = "__redis__:invalidate";

/// Turns on broadcast tracking of the keys starting with `prefix` (all keys when empty)
/// on `c`, redirected to `c` itself: once `c` has SUBSCRIBEd to redis_tracking_channel,
/// every write to such a key, by any client, arrives there as a message whose payload
/// is the array of written keys (nil for FLUSHALL / FLUSHDB). False when Redis refuses
/// (before 6.0, ACLs) or the connection fails.
/// Throws: std::bad_alloc if memory runs out.
inline bool redis_enable_tracking(redisContext* c, std::string_view prefix) {
  const std::string_view id_args[] = {"CLIENT", "ID"};
  const redis_reply_ptr id = redis_argv(c, id_args);
  if (!id || id->type != REDIS_REPLY_INTEGER) return false;
  const std::string self = std::to_string(id->integer);
  const std::string_view args[] = {"CLIENT", "TRACKING", "on",     "REDIRECT",
                                   self,     "BCAST",    "PREFIX", prefix};
  const redis_reply_ptr r =
      redis_argv(c, std::span<const std::string_view>(args, prefix.empty() ? 6 : 8));
  return r && r->type == REDIS_REPLY_STATUS;
}

/// What one key of a tracking invalidation is to a bus watching namespace `prefix`.
enum class redis_tracked_kind : std::uint8_t {
  ours,       ///< in the namespace, decoded: `key` is set
  foreign,    ///< another namespace (a longer prefix, or outside the prefix): ignore
  malformed,  ///< in the namespace but not an escaped, decodable, valid key
};

template <class Key>
struct redis_tracked_key {
  redis_tracked_kind kind = redis_tracked_kind::foreign;
  std::optional<Key> key{};
};

/// Decodes `redis_key` (as Redis reported it) to a Key of the redis_tier namespace
/// `prefix`: prefix + escaped encoded key (key_namespace.hpp). Never throws.
template <class Key, class Codec>
redis_tracked_key<Key> redis_parse_tracked_key(const Codec& codec, std::string_view prefix,
                                               std::string_view redis_key) noexcept {
  using kind = redis_tracked_kind;
  if (!redis_key.starts_with(prefix) || !redis_in_namespace(redis_key, prefix)) {
    return {kind::foreign, std::nullopt};
  }
  try {
    const std::optional<std::string> raw =
        redis_unescape_key(redis_key.substr(prefix.size()));
    if (!raw) return {kind::malformed, std::nullopt};
    std::optional<Key> key =
        codec.decode(std::string_view(*raw), std::type_identity<Key>{});
    if (!key || !redis_value_valid(codec, *key)) return {kind::malformed, std::nullopt};
    return {kind::ours, std::move(key)};
  } catch (...) {
    return {kind::malformed, std::nullopt};
  }
}

}  // namespace outgrow::detail
