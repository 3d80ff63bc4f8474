// Conformance of redis_cluster_hash_slot with Redis Cluster: the cluster specification
// (redis-doc topics/cluster-spec.md: "Keys distribution model", "Keys hash tags",
// "Appendix A"), the CLUSTER KEYSLOT command page (redis-doc
// commands/cluster-keyslot.md) and answers of a real redis-server. Every test case
// names its source above it. tests/integration/redis_cluster_slots_test.cpp compares
// 10,000 more keys with a live server when one is available.
#include <outgrow/routing/redis_cluster_slots.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "catch.hpp"

using namespace std::string_view_literals;
using outgrow::crc16_xmodem;
using outgrow::redis_cluster_hash_slot;

namespace {

/// The specification's "C example code" of HASH_SLOT (cluster-spec.md, "Keys hash
/// tags"), transcribed: find the first '{'; no '{' -> hash the whole key; find the first
/// '}' after it; none, or nothing between them -> hash the whole key; else hash what is
/// between. crc16() is the spec's CRC16 (Appendix A), `& 16383` the slot.
unsigned spec_hash_slot(std::string_view key) {
  const auto crc = [](std::string_view bytes) { return crc16_xmodem(bytes); };
  const std::size_t keylen = key.size();
  std::size_t s = 0;
  for (s = 0; s < keylen; s++) {
    if (key[s] == '{') break;
  }
  if (s == keylen) return crc(key) & 16383U;
  std::size_t e = 0;
  for (e = s + 1; e < keylen; e++) {
    if (key[e] == '}') break;
  }
  if (e == keylen || e == s + 1) return crc(key) & 16383U;
  return crc(key.substr(s + 1, e - s - 1)) & 16383U;
}

/// The CRC16 of the specification's parameters, bit by bit: poly 0x1021, init 0, no
/// reflection, no final xor ("XMODEM").
std::uint16_t crc16_bitwise(std::string_view bytes) {
  std::uint32_t crc = 0;
  for (const char c : bytes) {
    crc ^= static_cast<std::uint32_t>(static_cast<unsigned char>(c)) << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000U) != 0 ? ((crc << 1) ^ 0x1021U) : (crc << 1);
      crc &= 0xffffU;
    }
  }
  return static_cast<std::uint16_t>(crc);
}

}  // namespace

// Source: Redis cluster specification, "Keys distribution model": CRC16 "Name: XMODEM
// ... Poly: 1021 ... Initialization: 0000 ... Output for "123456789": 31C3" (also the
// header comment of redis src/crc16.c), and HASH_SLOT = CRC16(key) mod 16384.
TEST_CASE("Redis cluster spec CRC16 XMODEM check value 31C3",
          "[redis_cluster][conformance][redis]") {
  STATIC_REQUIRE(crc16_xmodem("123456789") == 0x31C3);
  CHECK(crc16_xmodem("123456789") == 0x31C3);
  CHECK(crc16_bitwise("123456789") == 0x31C3);
  CHECK(redis_cluster_hash_slot("123456789") == 12739);  // 0x31C3 < 16384
  // The parameters, bit by bit, agree with the table-driven CRC on assorted inputs.
  for (const std::string_view s :
       {""sv, "a"sv, "foo"sv, "\x01"sv, "{user1000}"sv, "\xff\xfe\0"sv}) {
    CHECK(crc16_xmodem(s) == crc16_bitwise(s));
  }
  CHECK(crc16_xmodem("") == 0);
  CHECK(crc16_xmodem("\x01") == 0x1021);  // one 0x01 byte is the polynomial itself
}

// Source: Redis cluster specification, "Appendix A: CRC16 reference implementation in
// ANSI C": the first and last rows of its crc16tab.
TEST_CASE("Redis cluster spec Appendix A crc16tab", "[redis_cluster][conformance][redis]") {
  const auto& t = outgrow::detail::crc16_xmodem_table;
  const std::uint16_t first[8] = {0x0000, 0x1021, 0x2042, 0x3063,
                                  0x4084, 0x50a5, 0x60c6, 0x70e7};
  const std::uint16_t last[8] = {0x6e17, 0x7e36, 0x4e55, 0x5e74,
                                 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0};
  for (std::size_t i = 0; i < 8; ++i) {
    CHECK(t[i] == first[i]);
    CHECK(t[248 + i] == last[i]);
  }
}

// Source: Redis cluster specification, "Keys hash tags", its examples:
// "{user1000}.following and {user1000}.followers will hash to the same hash slot since only
// the substring user1000 will be hashed"; "For the key foo{}{bar} the whole key will be
// hashed"; "For the key foo{{bar}}zap the substring {bar will be hashed"; "For the key
// foo{bar}{zap} the substring bar will be hashed"; "if the key starts with {}, it is
// guaranteed to be hashed as a whole".
TEST_CASE("Redis cluster spec hash tag examples", "[redis_cluster][conformance][redis]") {
  const auto whole = [](std::string_view key) {
    return static_cast<std::uint16_t>(crc16_xmodem(key) & 16383U);
  };
  CHECK(redis_cluster_hash_slot("{user1000}.following") == whole("user1000"));
  CHECK(redis_cluster_hash_slot("{user1000}.followers") == whole("user1000"));
  CHECK(redis_cluster_hash_slot("{user1000}.following") == 3443);
  CHECK(redis_cluster_hash_slot("foo{}{bar}") == whole("foo{}{bar}"));
  CHECK(redis_cluster_hash_slot("foo{}{bar}") == 8363);
  CHECK(redis_cluster_hash_slot("foo{{bar}}zap") == whole("{bar"));
  CHECK(redis_cluster_hash_slot("foo{{bar}}zap") == 4015);
  CHECK(redis_cluster_hash_slot("foo{bar}{zap}") == whole("bar"));
  CHECK(redis_cluster_hash_slot("foo{bar}{zap}") == 5061);
  for (const std::string_view key : {"{}"sv, "{}foo"sv, "{}{bar}"sv, "{}\0{x}"sv}) {
    CHECK(redis_cluster_hash_slot(key) == whole(key));
  }
}

// Source: Redis cluster specification, "Keys hash tags", the HASH_SLOT "C example code"
// (transcribed as spec_hash_slot above). Every key of up to 7 bytes over the alphabet
// { '{', '}', 'a', '\0' } (21,845 keys: every placement of braces, empty tags and NUL
// bytes) gets the slot the specification's code gives.
TEST_CASE("Redis cluster spec HASH_SLOT C example code on every short brace key",
          "[redis_cluster][conformance][redis]") {
  const char alphabet[4] = {'{', '}', 'a', '\0'};
  std::size_t keys = 0, agree = 0;
  std::vector<std::string> level = {std::string()};
  for (int len = 0; len <= 7; ++len) {
    std::vector<std::string> next;
    for (const std::string& key : level) {
      ++keys;
      agree += redis_cluster_hash_slot(key) == spec_hash_slot(key) ? 1U : 0U;
      if (len < 7) {
        for (const char c : alphabet) next.push_back(key + c);
      }
    }
    level = std::move(next);
  }
  CHECK(keys == 21'845);
  CHECK(agree == keys);
}

// Source: redis-doc commands/cluster-keyslot.md, "Example": CLUSTER KEYSLOT somekey ->
// 11058, foo{hash_tag} -> 2515, bar{hash_tag} -> 2515.
TEST_CASE("Redis CLUSTER KEYSLOT documented examples",
          "[redis_cluster][conformance][redis]") {
  STATIC_REQUIRE(redis_cluster_hash_slot("somekey") == 11058);
  CHECK(redis_cluster_hash_slot("somekey") == 11058);
  CHECK(redis_cluster_hash_slot("foo{hash_tag}") == 2515);
  CHECK(redis_cluster_hash_slot("bar{hash_tag}") == 2515);
}

// Source: `CLUSTER KEYSLOT` answers of redis-server 7.0.15 (Debian 12), recorded when
// redis_cluster_slots.hpp was written (moved from redis_cluster_slots_test.cpp).
TEST_CASE("Redis CLUSTER KEYSLOT answers of redis-server 7.0.15",
          "[redis_cluster][conformance][redis]") {
  STATIC_REQUIRE(redis_cluster_hash_slot("foo") == 12182);
  CHECK(redis_cluster_hash_slot("foo") == 12182);
  CHECK(redis_cluster_hash_slot("bar") == 5061);
  CHECK(redis_cluster_hash_slot("user:{42}:cart") == 8000);
  CHECK(redis_cluster_hash_slot("") == 0);
  CHECK(redis_cluster_hash_slot("{}") == 15257);
  CHECK(redis_cluster_hash_slot("}{") == 12793);
  CHECK(redis_cluster_hash_slot("{a}") == 15495);
}
