// Conformance of outgrow::jump_hash with other implementations of Lamping & Veach's jump
// consistent hash: Guava's Hashing.consistentHash (its HashingTest), ClickHouse's
// jumpConsistentHash and the Rust crate jump-consistent-hash. Every test case names its
// source above it.
#include <outgrow/routing/jump_hash.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "catch.hpp"

using outgrow::jump_hash;

namespace {

/// java.util.Random as its Javadoc specifies it (48-bit LCG, multiplier 0x5DEECE66D,
/// addend 0xB; nextLong() = (next(32) << 32) + next(32)): Guava's tests draw their keys
/// from it.
class java_random {
 public:
  explicit java_random(std::int64_t seed)
      : seed_((static_cast<std::uint64_t>(seed) ^ multiplier) & mask) {}
  std::int64_t next_long() {
    const auto hi = static_cast<std::uint64_t>(static_cast<std::int64_t>(next(32)));
    const auto lo = static_cast<std::uint64_t>(static_cast<std::int64_t>(next(32)));
    return static_cast<std::int64_t>((hi << 32) + lo);
  }

 private:
  static constexpr std::uint64_t multiplier = 0x5DEECE66DULL;
  static constexpr std::uint64_t mask = (std::uint64_t{1} << 48) - 1;
  std::int32_t next(int bits) {
    seed_ = (seed_ * multiplier + 0xBULL) & mask;
    return static_cast<std::int32_t>(static_cast<std::uint32_t>(seed_ >> (48 - bits)));
  }
  std::uint64_t seed_;
};

/// Guava's consistentHash(long input, int buckets) takes a Java long: the same 64 bits.
std::int32_t guava_consistent_hash(std::int64_t input, std::int32_t buckets) {
  return jump_hash(static_cast<std::uint64_t>(input), buckets);
}

/// Guava HashingTest.checkConsistentHashCorrectness: as the shard count grows from 1 to
/// 100,000 a key only ever moves to the newest shard. Returns the violations.
int consistent_hash_violations(std::int64_t hash_code) {
  int violations = 0;
  std::int32_t last = 0;
  for (std::int32_t shards = 1; shards <= 100'000; ++shards) {
    const std::int32_t b = guava_consistent_hash(hash_code, shards);
    if (b != last) {
      violations += b == shards - 1 ? 0 : 1;
      last = b;
    }
  }
  return violations;
}

}  // namespace

// Source: java.util.Random Javadoc; values printed by OpenJDK 17.0.15
// (`new java.util.Random(7).nextLong()`, the stream Guava's testConsistentHash_correctness
// draws from). Checks the generator the Guava ports below rely on.
TEST_CASE("java.util.Random seed 7 stream used by Guava's tests",
          "[jump_hash][conformance]") {
  java_random r(7);
  CHECK(r.next_long() == -4967725919621401576LL);
  CHECK(r.next_long() == -4627004027837150407LL);
  CHECK(r.next_long() == 6425179856112732765LL);
  CHECK(r.next_long() == -1894902459288369262LL);
}

// Source: Guava guava-tests/test/com/google/common/hash/HashingTest.java,
// testConsistentHash_linearCongruentialGeneratorCompatibility ("Check a few golden
// values to see that implementations across languages are equivalent").
TEST_CASE("Guava HashingTest testConsistentHash_linearCongruentialGeneratorCompatibility",
          "[jump_hash][conformance][guava]") {
  const std::array<std::int32_t, 20> golden100 = {0,  55, 62, 8,  45, 59, 86, 97, 82, 59,
                                                  73, 37, 17, 56, 86, 21, 90, 37, 38, 83};
  for (std::size_t i = 0; i < golden100.size(); ++i) {
    INFO("consistentHash(" << i << ", 100)");
    CHECK(guava_consistent_hash(static_cast<std::int64_t>(i), 100) == golden100[i]);
  }
  CHECK(guava_consistent_hash(10863919174838991LL, 11) == 6);
  CHECK(guava_consistent_hash(2016238256797177309LL, 11) == 3);
  CHECK(guava_consistent_hash(1673758223894951030LL, 11) == 5);
  CHECK(guava_consistent_hash(2, 100001) == 80343);
  CHECK(guava_consistent_hash(2201, 100001) == 22152);
  CHECK(guava_consistent_hash(2202, 100001) == 15018);
}

// Source: Guava HashingTest.java, testConsistentHash_correctness and
// checkConsistentHashCorrectness: the keys -1, 0, 1, 2, Long.MAX_VALUE, Long.MIN_VALUE
// and 20 draws of new Random(7), each over 1..100,000 shards.
TEST_CASE("Guava HashingTest testConsistentHash_correctness",
          "[jump_hash][conformance][guava]") {
  std::vector<std::int64_t> keys = {-1, 0, 1, 2, INT64_MAX, INT64_MIN};
  java_random r(7);
  for (int i = 0; i < 20; ++i) keys.push_back(r.next_long());
  for (const std::int64_t h : keys) {
    INFO("key " << h);
    CHECK(consistent_hash_violations(h) == 0);
  }
}

// Source: Guava HashingTest.java, testConsistentHash_probabilities and countRemaps:
// 10,000 keys from new Random(9); for every shard count 2..500 the keys that move when
// it grows by one stay at most 1.2 × 10,000 / shards + 20.
TEST_CASE("Guava HashingTest testConsistentHash_probabilities",
          "[jump_hash][conformance][guava]") {
  constexpr int iters = 10'000;
  constexpr std::int32_t max_shards = 500;
  std::map<std::int32_t, int> remaps;
  java_random r(9);
  for (int i = 0; i < iters; ++i) {
    const std::int64_t h = r.next_long();
    std::int32_t last = 0;
    for (std::int32_t shards = 2; shards <= max_shards; ++shards) {
      const std::int32_t chosen = guava_consistent_hash(h, shards);
      if (chosen != last) {
        ++remaps[shards];
        last = chosen;
      }
    }
  }
  int over = 0;
  for (std::int32_t shard = 2; shard <= max_shards; ++shard) {
    over += remaps[shard] <= 1.2 * iters / shard + 20 ? 0 : 1;
  }
  CHECK(over == 0);
}

// Deliberate difference. Source: Guava HashingTest.java, testConsistentHash_outOfRange:
// consistentHash(5L, 0) throws IllegalArgumentException. jump_hash is constexpr and
// noexcept and returns -1 for no buckets instead (jump_hash.hpp).
TEST_CASE("Guava difference: no buckets gives -1 instead of an exception",
          "[jump_hash][conformance][guava]") {
  CHECK(guava_consistent_hash(5, 0) == -1);
}

// Source: known answers of the published algorithm (Lamping & Veach 2014, the paper's
// C++) from other implementations' test suites: ClickHouse's jumpConsistentHash
// (tests/queries/0_stateless/00580_consistent_hashing_functions.reference) and the Rust
// crate jump-consistent-hash's documented examples. (Moved from jump_hash_test.cpp.)
TEST_CASE("ClickHouse and jump-consistent-hash crate known answers",
          "[jump_hash][conformance][golden]") {
  CHECK(jump_hash(1, 1) == 0);
  CHECK(jump_hash(42, 57) == 43);
  CHECK(jump_hash(256, 1024) == 520);
  CHECK(jump_hash(0xDEAD10CCULL, 1) == 0);
  CHECK(jump_hash(0xDEAD10CCULL, 666) == 361);
  CHECK(jump_hash(16045690984833335023ULL, 255) == 237);
  CHECK(jump_hash(0, 60) == 0);
  CHECK(jump_hash(1, 60) == 55);
  CHECK(jump_hash(2, 60) == 46);
}
