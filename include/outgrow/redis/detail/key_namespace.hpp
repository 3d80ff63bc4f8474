// outgrow/redis/detail/key_namespace.hpp — redis_tier's key namespaces: prefix + escaped
// key.
//
// A tier's Redis key is its key_prefix (empty or ending with ':') followed by the
// encoded key with '%' written "%25" and ':' written "%3A". The escaped part never holds
// ':', so the namespace of a Redis key is everything up to its last ':' and tiers with
// different prefixes never share a key, even when one prefix starts with the other.
// Also the SCAN pattern of a namespace, the test that a scanned key belongs to it, and
// the inverse of the escaping (for keys Redis reports, e.g. client-side caching
// invalidations).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace outgrow::detail {

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

/// The inverse of redis_escape_key: "%25" -> '%', "%3A" -> ':'. nullopt for what
/// redis_escape_key never writes (a ':', a '%' not followed by "25" or "3A"), so a
/// foreign key is never mistaken for one of ours. Never throws but std::bad_alloc.
inline std::optional<std::string> redis_unescape_key(std::string_view escaped) {
  std::string out;
  out.reserve(escaped.size());
  for (std::size_t i = 0; i < escaped.size(); ++i) {
    const char c = escaped[i];
    if (c == redis_key_separator) return std::nullopt;
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    const std::string_view code = escaped.substr(i + 1, 2);
    if (code == "25") {
      out.push_back('%');
    } else if (code == "3A") {
      out.push_back(redis_key_separator);
    } else {
      return std::nullopt;
    }
    i += 2;
  }
  return out;
}

}  // namespace outgrow::detail
