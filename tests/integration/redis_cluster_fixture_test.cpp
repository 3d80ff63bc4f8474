// The Redis Cluster test fixture (tests/support/redis_cluster.hpp) against real servers:
// a 3-master / 3-replica cluster forms, a reshard moves slots, and killing a master
// promotes its replica.
#include "redis_cluster.hpp"

#include <chrono>
#include <cstddef>
#include <map>

#include "catch.hpp"

namespace {

using outgrow_test::cluster_node_info;
using outgrow_test::redis_cluster;

std::map<std::string, int> slots_per_master(const std::vector<cluster_node_info>& nodes) {
  std::map<std::string, int> out;
  for (const auto& n : nodes) {
    if (!n.master || n.failed) continue;
    for (const auto& [lo, hi] : n.slots) out[n.id] += hi - lo + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("redis_cluster fixture forms reshards and fails over", "[integration][cluster]") {
  redis_cluster cluster({.masters = 3, .replicas = 1});
  REQUIRE(cluster.size() == 6);

  auto before = slots_per_master(cluster.topology());
  REQUIRE(before.size() == 3);
  int total = 0;
  for (const auto& [id, n] : before) total += n;
  CHECK(total == 16384);

  // Move 50 slots from slot 0's master to slot 16383's master.
  const std::size_t from = cluster.master_of(0).value();
  const std::size_t to = cluster.master_of(16383).value();
  REQUIRE(from != to);
  const std::string from_id = cluster.node_id(from);
  const std::string to_id = cluster.node_id(to);
  cluster.reshard(from_id, to_id, 50);
  REQUIRE(cluster.wait_until_ok(std::chrono::seconds(30)));
  auto after = slots_per_master(cluster.topology());
  CHECK(after[from_id] == before[from_id] - 50);
  CHECK(after[to_id] == before[to_id] + 50);

  // SIGKILL the master of slot 0: its replica takes over every slot it served.
  const std::size_t victim = cluster.master_of(0).value();
  const std::string victim_id = cluster.node_id(victim);
  cluster.node(victim).kill();
  REQUIRE(cluster.wait_until_ok(std::chrono::seconds(30)));
  const std::size_t promoted = cluster.master_of(0).value();
  CHECK(promoted != victim);
  CHECK(cluster.node(promoted).running());
  const auto final_slots = slots_per_master(cluster.topology());
  CHECK(final_slots.count(victim_id) == 0);
  int final_total = 0;
  for (const auto& [id, n] : final_slots) final_total += n;
  CHECK(final_total == 16384);
}
