// outgrow/redis/detail/session_keys.hpp — session ids and the Redis keys of session_store.
//
// A session id is "<tag>.<secret>": tag = 4 lowercase hex digits, the low 16 bits of
// XXH3-64 of the user name (stable: core/hash.hpp); secret = 32 lowercase hex digits,
// 128 bits from getrandom(2). The tag puts a session, and its user's index, under the
// hash tag {<tag>}: one Redis Cluster slot per user, so a Lua script changes both
// atomically on every topology; the id alone leads to that slot. Keys:
//   <prefix>{<tag>}:s:<secret>      the session (a hash)
//   <prefix>{<tag>}:u:<user>        the user's index, the user escaped as redis_tier
//                                   escapes keys ('%' -> "%25", ':' -> "%3A")
// Redaction: the only text of an id that may be printed is its tag and the first 4 digits
// of its secret (16 of 128 bits). No hiredis here.
#pragma once

#include <sys/random.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <outgrow/core/hash.hpp>
#include <outgrow/redis/detail/key_namespace.hpp>

namespace outgrow::detail {

inline constexpr std::size_t session_tag_size = 4;
inline constexpr std::size_t session_secret_bytes = 16;  ///< 128 bits
inline constexpr std::size_t session_secret_size = 2 * session_secret_bytes;
inline constexpr std::size_t session_id_size = session_tag_size + 1 + session_secret_size;
/// Digits of the secret a redacted id shows.
inline constexpr std::size_t session_shown_digits = 4;

inline constexpr char session_hex_digits[] = "0123456789abcdef";

/// Appends the tag of `user`: 4 lowercase hex digits of XXH3-64(user) (seed 0).
inline void session_append_tag(std::string_view user, std::string& out) {
  const std::uint64_t h = xxh3_hasher{}(user);
  for (int shift = 12; shift >= 0; shift -= 4) {
    out.push_back(session_hex_digits[(h >> static_cast<unsigned>(shift)) & 0xFU]);
  }
}

/// Appends 32 hex digits of 128 bits from getrandom(2) (the kernel's CSPRNG, never a
/// seeded PRNG). False when the kernel refused (nothing usable appended).
inline bool session_append_secret(std::string& out) noexcept {
  unsigned char bytes[session_secret_bytes];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    got += static_cast<std::size_t>(n);
  }
  try {
    for (const unsigned char b : bytes) {
      out.push_back(session_hex_digits[b >> 4U]);
      out.push_back(session_hex_digits[b & 0xFU]);
    }
  } catch (...) {
    return false;
  }
  return true;
}

inline bool session_is_hex(std::string_view s) noexcept {
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

/// True when `id` has the shape "<4 hex>.<32 hex>" (lowercase).
inline bool session_id_well_formed(std::string_view id) noexcept {
  return id.size() == session_id_size && id[session_tag_size] == '.' &&
         session_is_hex(id.substr(0, session_tag_size)) &&
         session_is_hex(id.substr(session_tag_size + 1));
}

/// The tag of a well-formed id.
inline std::string_view session_id_tag(std::string_view id) noexcept {
  return id.substr(0, session_tag_size);
}
/// The secret of a well-formed id.
inline std::string_view session_id_secret(std::string_view id) noexcept {
  return id.substr(session_tag_size + 1);
}

/// "<tag>.<4 digits>..." for a well-formed id; a description without any of its bytes
/// otherwise.
inline std::string session_id_redacted(std::string_view id) {
  if (!session_id_well_formed(id)) {
    return id.empty() ? std::string("<no session id>")
                      : "<malformed session id, " + std::to_string(id.size()) + " bytes>";
  }
  std::string out(id.substr(0, session_tag_size + 1 + session_shown_digits));
  out += "...";
  return out;
}

/// The keys of one session store: "<prefix>{<tag>}:" and what hangs off it.
struct session_keys {
  /// "<prefix>{<tag>}:"
  static void base(std::string_view prefix, std::string_view tag, std::string& out) {
    out.assign(prefix);
    out.push_back('{');
    out.append(tag);
    out.append("}:");
  }
  /// "<base>s:<secret>"
  static void session(std::string_view base, std::string_view secret, std::string& out) {
    out.assign(base);
    out.append("s:");
    out.append(secret);
  }
  /// "<base>u:<escaped user>"
  static void index(std::string_view base, std::string_view user, std::string& out) {
    out.assign(base);
    out.append("u:");
    const std::size_t from = out.size();
    out.append(user);
    redis_escape_key(out, from);
  }
};

}  // namespace outgrow::detail
