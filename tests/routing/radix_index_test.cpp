#include <outgrow/routing/detail/radix_index.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "catch.hpp"

namespace {
// Checks lower_bound and upper_bound against std:: on the keys themselves, their
// neighbours and random probes.
void check_against_std(std::vector<std::uint64_t> keys, std::mt19937_64& rng) {
  std::sort(keys.begin(), keys.end());
  outgrow::detail::radix_index index;
  index.build(keys);
  std::vector<std::uint64_t> probes = {0, 1, ~std::uint64_t{0}, ~std::uint64_t{0} - 1};
  for (auto k : keys) {
    probes.push_back(k);
    probes.push_back(k + 1);
    probes.push_back(k - 1);
  }
  for (int i = 0; i < 2000; ++i) probes.push_back(rng());
  for (auto x : probes) {
    const auto lb = static_cast<std::size_t>(std::lower_bound(keys.begin(), keys.end(), x) -
                                             keys.begin());
    const auto ub = static_cast<std::size_t>(std::upper_bound(keys.begin(), keys.end(), x) -
                                             keys.begin());
    REQUIRE(index.lower_bound(keys, x) == lb);
    REQUIRE(index.upper_bound(keys, x) == ub);
  }
}
}  // namespace

TEST_CASE("radix_index agrees with std lower_bound and upper_bound", "[radix_index]") {
  std::mt19937_64 rng(7);
  check_against_std({}, rng);
  check_against_std({42}, rng);
  check_against_std({5, 5, 5, 9}, rng);  // duplicates
  std::vector<std::uint64_t> uniform(5000);
  for (auto& k : uniform) k = rng();
  check_against_std(uniform, rng);
  std::vector<std::uint64_t> skewed;
  for (std::uint64_t i = 0; i < 3000; ++i) skewed.push_back(100 + i);  // one dense cluster
  skewed.push_back(~std::uint64_t{0});
  skewed.push_back(std::uint64_t{1} << 40);
  check_against_std(skewed, rng);
  std::vector<std::uint64_t> small_span;
  for (std::uint64_t i = 0; i < 100; ++i) small_span.push_back(1'000'000 + i * 3);
  check_against_std(small_span, rng);
}

TEST_CASE("radix_index uses about one bucket per key", "[radix_index]") {
  std::vector<std::uint64_t> keys(16'000);
  std::mt19937_64 rng(1);
  for (auto& k : keys) k = rng();
  std::sort(keys.begin(), keys.end());
  outgrow::detail::radix_index index;
  index.build(keys);
  CHECK(index.bucket_count() <= 2 * keys.size());
  CHECK(index.bucket_count() >= keys.size() / 2);
}

TEST_CASE("radix_index indexes dense buckets of clustered keys on their own",
          "[radix_index]") {
  // Exponentially growing keys (range_shards' clustered split points in routing_bench):
  // most keys crowd the first top-level bucket.
  std::vector<std::uint64_t> keys;
  double x = 1.0;
  for (int i = 0; i < 9999; ++i) {
    x *= 1.0041;
    keys.push_back(static_cast<std::uint64_t>(x));
  }
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  std::mt19937_64 rng(3);
  check_against_std(keys, rng);
  outgrow::detail::radix_index index;
  index.build(keys);
  CHECK(index.dense_nodes() > 0);
  CHECK(index.bucket_count() <= 5 * keys.size() + 64);  // the budget: about 4 per key
  // Clusters at both ends and in the middle, duplicates inside a dense bucket.
  std::vector<std::uint64_t> clusters;
  for (std::uint64_t i = 0; i < 500; ++i) {
    clusters.push_back(i);
    clusters.push_back((std::uint64_t{1} << 50) + i * i);
    clusters.push_back(~std::uint64_t{0} - i * 7);
    clusters.push_back(std::uint64_t{1} << 30);  // 500 copies of one key
  }
  check_against_std(clusters, rng);
  // Uniform keys need no dense level (the hash ring's case).
  std::vector<std::uint64_t> uniform(16'000);
  for (auto& k : uniform) k = rng();
  std::sort(uniform.begin(), uniform.end());
  outgrow::detail::radix_index flat;
  flat.build(uniform);
  CHECK(flat.dense_nodes() == 0);
}
