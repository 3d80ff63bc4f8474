// outgrow/redis/codec.hpp — how outgrow's Redis parts turn keys and values into bytes.
//
// What: the `redis_codec` / `redis_key_codec` policies every Redis part takes (redis_tier
// for keys and values, redis_invalidation_bus for keys, redis_stream_queue for jobs),
// and redis_default_codec, the codec they use unless told otherwise.
//
// When: the default codec covers std::string, bool, numbers, enums and trivially
// copyable structs. Write your own (JSON, protobuf, a versioned format) when a value
// holds pointers or owns memory, or must be read by programs in other languages.
//
// Codec: `redis_codec<C, T>` — c.encode(const T&, std::string& out) appends the bytes of
// a value; c.decode(std::string_view, std::type_identity<T>) -> std::optional<T>
// (nullopt = malformed: counted in the part's decode_errors, answered as a miss). Keys
// are only encoded (`redis_key_codec`); the invalidation bus also decodes keys, so its
// Codec must be a redis_codec<C, Key>. One codec object serves keys and values, by
// overloading. Smallest:
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
// member; every Redis part calls both (when present) after every decode, and the
// default codec calls the hook for enums and raw types.
//
// Values read from Redis are untrusted: anything the codec rejects or a hook refuses —
// foreign bytes, another type's value, a truncated or corrupted one — is a decode error
// (metrics().decode_errors), answered as a miss, never a hit. The value is left in Redis
// (not deleted: during a rolling deploy it may be the newer version's value): the next
// put overwrites it, its TTL expires it. Values written by versions before the tagged
// encoding are such decode errors (misses) once.
//
// A codec may throw (an encode or decode that throws is counted as a codec failure by
// the part that called it, never propagated).
//
// Trade-offs: decimal text costs a few bytes more than binary, but is readable in
// redis-cli and works with INCR. The raw encoding is as fast as a memcpy, but ties the
// stored bytes to one architecture and one layout of T (the fingerprint turns a
// mismatch into a miss, not a wrong value).
//
// Thread-safety: redis_default_codec is stateless; parts call a codec from many threads
// through a const reference, so a user codec's const members must be thread-safe.
// Complexity: O(size of the value). Measured cost: not measured on its own;
// benchmarks/redis_bench.cpp measures it inside redis_tier's get and put.
#pragma once

#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace outgrow {

/// Encodes and decodes values of type T (see the header comment for the smallest one).
template <class C, class T>
concept redis_codec =
    std::copy_constructible<C> &&
    requires(const C& c, const T& v, std::string& out, std::string_view in) {
      c.encode(v, out);
      { c.decode(in, std::type_identity<T>{}) } -> std::same_as<std::optional<T>>;
    };

/// Encodes keys of type K (keys are never decoded by redis_tier).
template <class C, class K>
concept redis_key_codec =
    std::copy_constructible<C> &&
    requires(const C& c, const K& k, std::string& out) { c.encode(k, out); };

/// Customization point: the name hashed into the type fingerprint of the raw-bytes
/// encoding (see the header comment). The default is the compiler's spelling of T, which
/// differs between compilers; specialize it to pin a portable, rename-proof name:
///   template <>
///   inline constexpr std::string_view outgrow::redis_type_name<point> = "point/1";
template <class T>
inline constexpr std::string_view redis_type_name = std::string_view{};

namespace detail {
template <class T>
concept redis_text_number =
    (std::is_arithmetic_v<T> && !std::same_as<T, bool> && !std::same_as<T, char> &&
     !std::same_as<T, wchar_t> && !std::same_as<T, char8_t> && !std::same_as<T, char16_t> &&
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
  /// Appends v's encoding to `out`.
  /// Throws: std::bad_alloc if `out` cannot grow.
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
  /// Throws: std::bad_alloc if a std::string value cannot be allocated; what T's
  /// redis_validate hook throws.
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
/// How every Redis part decodes a value read from Redis: at most max_size bytes, the codec,
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

static_assert(redis_codec<redis_default_codec, std::string>);
static_assert(redis_codec<redis_default_codec, std::int64_t>);

}  // namespace outgrow
