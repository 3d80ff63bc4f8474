// The flagship demo in its quick mode: the figures it prints are consistent with each
// other, and each section shows what it claims to show.
#include "../../examples/black_friday/shop.hpp"

#include <cstdint>
#include <string>

#include "catch.hpp"

namespace {

black_friday::report quick_run(std::uint64_t seed) {
  black_friday::options o;
  o.quick = true;
  o.seed = seed;
  return black_friday::run(o);
}

}  // namespace

TEST_CASE("the demo's figures add up for two seeds") {
  for (const std::uint64_t seed : {42U, 7U}) {
    const black_friday::report r = quick_run(seed);
    const auto failed = black_friday::check(r);
    INFO("seed " << seed);
    for (const auto& f : failed) INFO(f);
    CHECK(failed.empty());
    CHECK(r.requests > 100'000);
  }
}

TEST_CASE("each section of the demo shows its pattern at work") {
  const black_friday::report r = quick_run(42);
  // App tier: the autoscaler grew the fleet for the spike and shrank it afterwards; the
  // balancer sent the noisy host less than a round-robin share.
  CHECK(r.peak_replicas >= 3 * r.min_replicas);
  CHECK(r.scale_ups > 0);
  CHECK(r.scale_downs > 0);
  CHECK(r.slow_replica_share < r.slow_replica_fair_share / 2);
  // Caches: most reads never reached the database.
  CHECK(r.db_reads * 4 < r.db_reads_without_cache);
  for (const auto& c : r.caches) {
    INFO(c.name);
    CHECK(c.l1_hits > 0);
    CHECK(c.l2_hits > 0);
  }
  CHECK(r.caches.back().coalesced > 0);  // write-behind merged repeated increments
  // Sharding: consistent hashing moves about 1/5 of users going 4 -> 5, hash % N 4/5.
  CHECK(r.reshard_moved_fraction > 0.15);
  CHECK(r.reshard_moved_fraction < 0.25);
  CHECK(r.reshard_moved_fraction_mod > 0.75);
  // Read/write splitting: no stale read under read-your-writes, replicas still serve
  // most reads, and eventual consistency would have served stale ones.
  CHECK(r.stale_reads == 0);
  CHECK(r.stale_reads_eventual > 0);
  CHECK(r.reads_on_replicas * 2 > r.my_order_reads);
  CHECK(r.lag_exclusions > 0);
  // Payments: the breaker opened during the outage and answered without the provider.
  REQUIRE_FALSE(r.breaker_timeline.empty());
  CHECK(r.breaker_timeline.front().find("closed -> open") != std::string::npos);
  CHECK(r.rejected_by_breaker > 0);
  // Fulfilment: poison orders were dead-lettered, then replayed successfully.
  CHECK(r.dead_lettered > 0);
  CHECK(r.replayed == r.dead_lettered);
  CHECK(r.fulfilled == r.orders);
}
