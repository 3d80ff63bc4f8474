// The Sentinel test fixture (tests/support/redis_sentinel.hpp) against real servers: one
// master, two replicas and three sentinels; SIGKILL the master and a replica is promoted.
#include "redis_sentinel.hpp"

#include <chrono>
#include <cstdio>

#include "catch.hpp"

TEST_CASE("redis_sentinel_group fixture fails over when the master dies",
          "[integration][sentinel]") {
  outgrow_test::redis_sentinel_group group({.replicas = 2, .sentinels = 3});
  const int old_port = group.master().port();
  REQUIRE(group.master_port() == old_port);
  CHECK(group.sentinel_addresses().size() == 3);

  const auto killed = std::chrono::steady_clock::now();
  group.master().kill();
  const auto promoted = group.wait_for_new_master(old_port, std::chrono::seconds(30));
  REQUIRE(promoted);
  const auto took = std::chrono::steady_clock::now() - killed;
  std::printf("sentinel failover: new master after %.2f s\n",
              std::chrono::duration<double>(took).count());
  CHECK((group.replica(0).port() == *promoted || group.replica(1).port() == *promoted));
  CHECK(group.master_port() == *promoted);
}
