// outgrow/core/hash.hpp — the stable hash behind every placement decision.
//
// Which node owns a key must not change between platforms, compilers or outgrow
// releases: a ring that moved keys after an upgrade would empty every cache at once.
// `xxh3_hasher` is XXH3-64 (xxHash, header-only via XXH_INLINE_ALL), with a fixed
// encoding of keys into bytes:
//   - strings (std::string, std::string_view, const char*): their bytes, no terminator;
//   - integers and enums: widened to 64 bits (signed stays signed) and hashed as their
//     8 little-endian bytes, so `int{7}`, `long{7}` and `uint64_t{7}` place alike on
//     every platform (big-endian included);
//   - an optional 64-bit seed selects an independent hash function (used by rendezvous
//     and Maglev to hash (key, node) pairs).
// Golden vectors in tests/unit/core/hash_test.cpp pin these outputs; changing them is a
// breaking change.
//
//   outgrow::xxh3_hasher h;
//   std::uint64_t a = h("user:42");              // string key
//   std::uint64_t b = h(std::uint64_t{42});      // integer key
//   std::uint64_t c = h("user:42", /*seed=*/7);  // another, independent function
//   std::uint64_t bucket = outgrow::hash_to_range(a, 10);   // unbiased-enough 0..9
//
// A custom Hasher policy is any type satisfying `key_hasher<H, Key>`:
//   struct my_hasher { std::uint64_t operator()(const my_key& k) const noexcept; };
//
// Thread-safety: stateless; call from any thread.
// Complexity: O(length of the key); ~10-20 ns for short strings.
#pragma once

#include <bit>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

namespace outgrow {

/// A hash policy for keys of type Key: returns a stable 64-bit hash.
template <class H, class Key>
concept key_hasher = std::copy_constructible<H> && requires(const H& h, const Key& k) {
  { h(k) } -> std::convertible_to<std::uint64_t>;
};

/// A hash policy that also takes a seed (independent hash functions).
template <class H, class Key>
concept seeded_key_hasher = key_hasher<H, Key> && requires(const H& h, const Key& k) {
  { h(k, std::uint64_t{}) } -> std::convertible_to<std::uint64_t>;
};

namespace detail {

template <class T>
concept string_like = std::convertible_to<const T&, std::string_view>;

template <class T>
concept integer_like = (std::integral<T> && !std::same_as<T, bool>) || std::is_enum_v<T>;

inline std::uint64_t xxh3_bytes(const void* data, std::size_t size,
                                std::uint64_t seed) noexcept {
  return seed == 0 ? XXH3_64bits(data, size) : XXH3_64bits_withSeed(data, size, seed);
}

constexpr std::uint64_t byteswap64(std::uint64_t v) noexcept {
  std::uint64_t r = 0;
  for (int i = 0; i < 8; ++i) {
    r = (r << 8) | ((v >> (8 * i)) & 0xffU);
  }
  return r;
}

/// High 64 bits of the 128-bit product a * b.
constexpr std::uint64_t mul_high64(std::uint64_t a, std::uint64_t b) noexcept {
#if defined(__SIZEOF_INT128__)
  __extension__ typedef unsigned __int128 u128;
  return static_cast<std::uint64_t>((static_cast<u128>(a) * b) >> 64);
#else
  const std::uint64_t a_lo = a & 0xffffffffU, a_hi = a >> 32;
  const std::uint64_t b_lo = b & 0xffffffffU, b_hi = b >> 32;
  const std::uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi;
  const std::uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xffffffffU) + lo_hi;
  return a_hi * b_hi + (hi_lo >> 32) + (cross >> 32);
#endif
}

/// The fixed 8-byte little-endian encoding of an integer key.
template <integer_like T>
std::uint64_t integer_key_bits(T value) noexcept {
  std::uint64_t bits;
  if constexpr (std::is_enum_v<T>) {
    return integer_key_bits(static_cast<std::underlying_type_t<T>>(value));
  } else if constexpr (std::is_signed_v<T>) {
    bits = static_cast<std::uint64_t>(static_cast<std::int64_t>(value));
  } else {
    bits = static_cast<std::uint64_t>(value);
  }
  if constexpr (std::endian::native == std::endian::big) {
    bits = byteswap64(bits);
  }
  return bits;
}

}  // namespace detail

/// XXH3-64 over a fixed byte encoding of the key (see the header comment).
struct xxh3_hasher {
  [[nodiscard]] std::uint64_t operator()(std::string_view key,
                                         std::uint64_t seed = 0) const noexcept {
    return detail::xxh3_bytes(key.data(), key.size(), seed);
  }

  template <detail::string_like S>
  requires(!std::same_as<S, std::string_view>)
  [[nodiscard]] std::uint64_t operator()(const S& key,
                                         std::uint64_t seed = 0) const noexcept {
    return (*this)(std::string_view(key), seed);
  }

  template <detail::integer_like T>
  [[nodiscard]] std::uint64_t operator()(T key, std::uint64_t seed = 0) const noexcept {
    const std::uint64_t bits = detail::integer_key_bits(key);
    return detail::xxh3_bytes(&bits, sizeof bits, seed);
  }
};

static_assert(key_hasher<xxh3_hasher, std::string>);
static_assert(key_hasher<xxh3_hasher, std::uint64_t>);
static_assert(seeded_key_hasher<xxh3_hasher, std::string_view>);

/// Maps a 64-bit hash onto [0, n) with Lemire's multiply-shift (no division, no
/// modulo bias worth measuring for n << 2^64). Stable: a pure function of (hash, n).
[[nodiscard]] constexpr std::uint64_t hash_to_range(std::uint64_t hash,
                                                    std::uint64_t n) noexcept {
  return detail::mul_high64(hash, n);
}

/// Maps a 64-bit hash onto the open interval (0, 1) using its top 52 bits (52, not 53,
/// so that the midpoint offset stays exact and the result never rounds up to 1); used
/// by weighted rendezvous hashing (score = -weight / ln(u)).
[[nodiscard]] constexpr double hash_to_unit_open(std::uint64_t hash) noexcept {
  return (static_cast<double>(hash >> 12) + 0.5) * 0x1.0p-52;
}

/// Mixes two 64-bit values into one (the final avalanche of SplitMix64 over a ^ rot(b)).
/// Stable and cheap; used to derive per-(key, node) hashes from two hashes.
[[nodiscard]] constexpr std::uint64_t hash_mix(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t z = a ^ (std::rotl(b, 31) + 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace outgrow
