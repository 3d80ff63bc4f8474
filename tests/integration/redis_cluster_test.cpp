// redis_tier on a real Redis Cluster (issue 18): 3 masters / 3 replicas started on
// loopback ports (tests/support/redis_cluster.hpp). Keys are routed to their slot's
// master; batches are split per slot and merged back in request order; while slots are
// resharded under load from 8 threads, callers see no error (MOVED / ASK followed);
// when a master is SIGKILLed, the outage until its replica is promoted is bounded and
// measured, and afterwards every thread reads what it wrote.
//
// Time: the cluster's own work (resharding, failover) runs in real time; the test polls
// real conditions with bounds and asserts outcomes, printing the outage it measured.
#include <outgrow/admission/redis_rate_limiter.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/redis/redis_invalidation.hpp>
#include <outgrow/redis/redis_tier.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"
#include "key_recorder.hpp"
#include "redis_cluster.hpp"

using namespace std::chrono_literals;

namespace {

using tier_type = outgrow::redis_tier<std::string, std::string>;
using clock_type = std::chrono::steady_clock;

outgrow::redis_tier_config cluster_config(outgrow_test::redis_cluster& cluster) {
  outgrow::redis_tier_config c{.key_prefix = "c:", .pool_size = 8};
  c.connection.connect_timeout = 500ms;
  c.connection.command_timeout = 1s;
  c.connection.reconnect_backoff = outgrow::full_jitter_backoff(5ms, 50ms);
  c.connection.seed = 0xC1A5'7E12ULL;
  // Two seeds are enough: the other nodes are learnt from the slot map.
  c.connection.cluster.nodes = {{cluster.node(0).host(), cluster.node(0).port()},
                                {cluster.node(1).host(), cluster.node(1).port()}};
  return c;
}

double seconds(clock_type::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

TEST_CASE("redis_connection_config cluster fields are validated", "[cluster]") {
  auto make = [](outgrow::redis_connection_config c) { tier_type t({.connection = c}); };
  outgrow::redis_connection_config c;
  c.cluster.nodes = {{"127.0.0.1", 70000}};
  CHECK_THROWS_WITH(make(c),
                    "redis_tier: connection.cluster.nodes[].port must be in "
                    "[1, 65535], got 70000");
  c.cluster.nodes = {{"", 7000}};
  CHECK_THROWS_AS(make(c), outgrow::config_error);
  c.cluster.nodes = {{"127.0.0.1", 7000}};
  c.cluster.max_redirects = 17;
  CHECK_THROWS_WITH(make(c),
                    "redis_tier: connection.cluster.max_redirects must be in "
                    "[0, 16], got 17");
  c.cluster.max_redirects = 5;
  c.database = 2;
  CHECK_THROWS_WITH(make(c),
                    "redis_tier: connection.database must be 0 with a cluster, "
                    "got 2");
  c.database = 0;
  c.sentinel = {.sentinels = {{"127.0.0.1", 26379}}, .master_name = "m"};
  CHECK_THROWS_AS(make(c), outgrow::config_error);
  c.sentinel = {};
  c.cluster.nodes = std::vector<outgrow::redis_endpoint>(65, {"127.0.0.1", 7000});
  CHECK_THROWS_AS(make(c), outgrow::config_error);
}

TEST_CASE("redis_tier on a cluster routes keys by slot reshards and fails over",
          "[integration][cluster]") {
  outgrow_test::redis_cluster cluster({.masters = 3, .replicas = 1});
  tier_type tier(cluster_config(cluster));

  // ---- routing: every key on its slot's master, batches split and merged ------------
  for (int i = 0; i < 300; ++i) {
    REQUIRE(tier.put(fmt::format("k{}", i), fmt::format("v{}", i)));
  }
  for (int i = 0; i < 300; ++i) {
    REQUIRE(tier.get(fmt::format("k{}", i)) == std::optional(fmt::format("v{}", i)));
  }
  // Each key sits on the master that serves its slot (asked of the server itself).
  for (int i = 0; i < 20; ++i) {
    const std::string key = tier.redis_key(fmt::format("k{}", i));
    const auto owner = cluster.master_of(outgrow::redis_cluster_hash_slot(key)).value();
    const auto r = cluster.node(owner).command("EXISTS %b", key.data(), key.size());
    CHECK(r->integer == 1);
  }
  CHECK(tier.size() == 300);  // SCAN on every master
  std::vector<std::string> keys;
  for (int i = 299; i >= 0; i -= 3) keys.push_back(fmt::format("k{}", i));
  keys.push_back("absent");
  const auto values = tier.get_many(keys);
  REQUIRE(values.size() == keys.size());
  for (std::size_t i = 0; i + 1 < keys.size(); ++i) {
    CHECK(values[i] == std::optional("v" + keys[i].substr(1)));  // request order
  }
  CHECK_FALSE(values.back());
  std::vector<std::pair<std::string, std::string>> items;
  for (int i = 0; i < 100; ++i) items.emplace_back(fmt::format("m{}", i), "x");
  CHECK(tier.put_many(items) == 100);
  CHECK(tier.size() == 400);
  CHECK(tier.metrics().redirects == 0);  // the map was right from the start

  // ---- resharding under load: no caller sees an error -------------------------------
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> ops{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> wrong{0};
  auto load = [&](int t) {
    int i = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::string key = fmt::format("t{}:{}", t, i % 500);
      const std::string value = fmt::format("{}", i);
      if (!tier.put(key, value)) {
        errors.fetch_add(1);
      } else if (const auto got = tier.get(key); !got) {
        errors.fetch_add(1);
      } else if (*got != value) {
        wrong.fetch_add(1);
      }
      ops.fetch_add(2, std::memory_order_relaxed);
      ++i;
    }
  };
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) threads.emplace_back(load, t);
    const std::size_t from = cluster.master_of(0).value();
    const std::size_t to = cluster.master_of(16383).value();
    cluster.reshard(cluster.node_id(from), cluster.node_id(to), 1000);
    stop = true;
    for (auto& th : threads) th.join();
  }
  const auto after_reshard = tier.metrics();
  std::printf(
      "cluster resharding 1000 slots under 8 threads: %llu operations, %llu "
      "errors, %llu redirects followed\n",
      static_cast<unsigned long long>(ops.load()),
      static_cast<unsigned long long>(errors.load()),
      static_cast<unsigned long long>(after_reshard.redirects));
  CHECK(errors.load() == 0);
  CHECK(wrong.load() == 0);
  CHECK(ops.load() > 0);
  CHECK(after_reshard.redirects > 0);  // slots did move under the callers
  for (int i = 0; i < 300; ++i) {
    REQUIRE(tier.get(fmt::format("k{}", i)) == std::optional(fmt::format("v{}", i)));
  }

  // ---- a master dies: bounded outage, then every thread reads what it writes ---------
  REQUIRE(cluster.wait_until_replicas_synced(30s));
  stop = false;
  errors = 0;
  wrong = 0;
  std::atomic<std::int64_t> last_error_ns{0};
  const auto start = clock_type::now();
  auto load_timed = [&](int t) {
    int i = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::string key = fmt::format("f{}:{}", t, i % 500);
      const std::string value = fmt::format("{}", i);
      bool ok = tier.put(key, value);
      if (ok) {
        const auto got = tier.get(key);
        ok = got.has_value();
        if (got && *got != value) wrong.fetch_add(1);
      }
      if (!ok) {
        errors.fetch_add(1);
        last_error_ns.store((clock_type::now() - start).count());
        std::this_thread::sleep_for(5ms);  // a failing node: do not spin
      }
      ++i;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) threads.emplace_back(load_timed, t);
  std::this_thread::sleep_for(200ms);  // load runs before the kill
  const std::size_t victim = cluster.master_of(0).value();
  const auto killed_at = clock_type::now() - start;
  cluster.node(victim).kill();
  REQUIRE(cluster.wait_until_ok(30s));
  std::this_thread::sleep_for(1s);  // load runs on the promoted replica for a while
  stop = true;
  for (auto& th : threads) th.join();
  const auto outage = clock_type::duration(last_error_ns.load()) - killed_at;
  std::printf(
      "cluster master killed under 8 threads: %llu failed calls, last one %.2f s "
      "after the kill (node timeout 1 s)\n",
      static_cast<unsigned long long>(errors.load()), seconds(outage));
  CHECK(wrong.load() == 0);
  CHECK(seconds(outage) < 15.0);
  // After the failover: everything written since is there, through the new master.
  for (int t = 0; t < 8; ++t) {
    CHECK(tier.put(fmt::format("after:{}", t), "ok"));
    CHECK(tier.get(fmt::format("after:{}", t)) == std::optional<std::string>("ok"));
  }
}

TEST_CASE("redis_rate_limiter and the invalidation bus work on a cluster",
          "[integration][cluster]") {
  outgrow_test::redis_cluster cluster({.masters = 3, .replicas = 0});
  // Each bucket lives on its own key's slot master; 30 keys spread over all three.
  outgrow::redis_rate_limiter_config lc{.permits_per_second = 0.001,
                                        .burst = 5,
                                        .key_prefix = "rl:",
                                        .failure_mode = outgrow::failure_mode::fail_closed};
  lc.connection.command_timeout = 1s;
  lc.connection.cluster.nodes = {{cluster.node(0).host(), cluster.node(0).port()}};
  outgrow::redis_rate_limiter<> limiter(lc);
  std::set<std::size_t> masters;
  for (int k = 0; k < 30; ++k) {
    const std::string key = fmt::format("user-{}", k);
    int admitted = 0;
    for (int i = 0; i < 8; ++i) admitted += limiter.try_acquire(key) ? 1 : 0;
    CHECK(admitted == 5);  // the burst, no more: one bucket per key, wherever it lives
    const std::string redis_key = limiter.redis_key(key);
    const auto owner = cluster.master_of(outgrow::redis_cluster_hash_slot(redis_key));
    REQUIRE(owner);
    masters.insert(*owner);
    const auto r =
        cluster.node(*owner).command("EXISTS %b", redis_key.data(), redis_key.size());
    CHECK(r->integer == 1);
  }
  CHECK(masters.size() == 3);
  CHECK(limiter.metrics().redis_errors == 0);

  // Classic pub/sub is broadcast over the whole cluster: buses seeded with different
  // nodes still hear each other.
  auto bus_config = [&](std::size_t node) {
    outgrow::redis_invalidation_bus_config c{.channel = "c:inv", .poll_interval = 10ms};
    c.connection.command_timeout = 1s;
    c.connection.cluster.nodes = {{cluster.node(node).host(), cluster.node(node).port()}};
    return c;
  };
  outgrow::redis_invalidation_bus<std::string> a(bus_config(0));
  outgrow::redis_invalidation_bus<std::string> b(bus_config(2));
  outgrow_test::key_recorder at_b;
  auto sub = b.subscribe(at_b.handler());
  a.start();
  b.start();
  REQUIRE(a.wait_subscribed(10s));
  REQUIRE(b.wait_subscribed(10s));
  REQUIRE(a.publish("user:42", 1));
  CHECK(at_b.wait_seen("user:42", 5s));
}
