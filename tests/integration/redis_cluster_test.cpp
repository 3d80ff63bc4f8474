// redis_tier and redis_stream_queue on a real Redis Cluster (issue 18): 3 masters / 3
// replicas started on loopback ports (tests/support/redis_cluster.hpp). Keys are routed to
// their slot's master; batches are split per slot and merged back in request order. Then
// one load runs through both phases: 8 threads of tier puts / gets, 2 producers and 2
// workers of a stream queue (min_replicas 1). While 1000 slots (the queue's among them)
// are resharded with redis-cli, no caller sees an error (MOVED / ASK absorbed); when the
// queue's master is SIGKILLed, the outage until its replica is promoted (and, for durable
// enqueues, until the old master rejoined as a replica) is bounded and printed, and
// afterwards every acknowledged job was completed exactly once or dead-lettered.
//
// Time: the cluster's own work (resharding, failover) runs in real time; the test polls
// real conditions with bounds and asserts outcomes, printing the outage it measured.
#include <outgrow/admission/redis_rate_limiter.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/redis/redis_invalidation.hpp>
#include <outgrow/redis/redis_stream_queue.hpp>
#include <outgrow/redis/redis_tier.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
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

using str_queue = outgrow::redis_stream_queue<std::string>;
using str_worker = outgrow::redis_stream_worker<std::string>;

outgrow::redis_stream_queue_config queue_config(outgrow_test::redis_cluster& cluster,
                                                std::string stream) {
  outgrow::redis_stream_queue_config c{.stream = std::move(stream), .group = "g"};
  c.connection.connect_timeout = 500ms;
  c.connection.command_timeout = 1s;
  c.connection.reconnect_backoff = outgrow::full_jitter_backoff(5ms, 50ms);
  c.connection.seed = 0x5C1A'57E2ULL;
  c.connection.cluster.nodes = {{cluster.node(0).host(), cluster.node(0).port()},
                                {cluster.node(1).host(), cluster.node(1).port()}};
  c.connection.cluster.max_redirects = 16;
  c.max_attempts = 20;
  c.visibility_timeout = 2s;
  c.retry_delay = 0ms;
  c.block_timeout = 50ms;
  c.claim_interval = 200ms;
  c.batch = 32;
  return c;
}

/// A hash tag "<prefix><j>" whose slot lies in [lo, hi].
std::string tag_in(std::string_view prefix, int lo, int hi) {
  for (int j = 0;; ++j) {
    std::string tag = fmt::format("{}{}", prefix, j);
    const int slot = outgrow::redis_cluster_hash_slot(tag);
    if (slot >= lo && slot <= hi) return tag;
  }
}

double seconds(clock_type::duration d) {
  return std::chrono::duration<double>(d).count();
}

/// Polls `done` every 20 ms for at most `bound`; true when it held.
template <class F>
bool wait_for(F done, std::chrono::milliseconds bound) {
  const auto deadline = clock_type::now() + bound;
  while (!done()) {
    if (clock_type::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
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

TEST_CASE("redis_tier and redis_stream_queue on a cluster through resharding and a kill",
          "[integration][cluster]") {
  outgrow_test::redis_cluster cluster({.masters = 3, .replicas = 1});
  const auto test_start = clock_type::now();
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

  // ---- one load through both phases: 8 tier threads, 2 producers, 2 workers ----------
  // 1000 slots move from the master of slot 0 to the master of slot 16383; redis-cli
  // moves the lowest slots first, so the queue's slot (in [400, 600]) migrates while
  // everything runs. Then the queue's new master is SIGKILLed and its replica promoted.
  const std::size_t from = cluster.master_of(0).value();
  const std::size_t to = cluster.master_of(16383).value();
  const std::string tag = tag_in("q", 400, 600);
  const int slot = outgrow::redis_cluster_hash_slot(tag);
  REQUIRE(cluster.master_of(slot) == from);
  const std::string effects = "effects:{" + tag + "}";
  auto qcfg = queue_config(cluster, "jobs:{" + tag + "}");
  qcfg.min_replicas = 1;  // WAIT 1: an acknowledged job is on the replica too
  qcfg.replica_timeout = 1s;
  str_queue queue(qcfg);
  {  // more replicas than exist: the master has it, but it is not durable
    auto strict = qcfg;
    strict.min_replicas = 2;
    strict.replica_timeout = 50ms;
    str_queue s(strict);
    const auto r = s.enqueue("probe");
    CHECK(r.status == outgrow::enqueue_status::not_durable);
    CHECK(r.maybe_enqueued);
    CHECK_FALSE(r.id.empty());
  }

  // Phases: 0 warm-up, 1 resharding, 2 between, 3 after the kill. A failure is counted
  // in the phase current when it is seen (a call can only fail once the kill began).
  std::atomic<int> phase{0};
  std::array<std::atomic<std::uint64_t>, 4> tier_errors{};
  std::array<std::atomic<std::uint64_t>, 4> enqueue_failures{};
  std::array<std::atomic<std::uint64_t>, 4> acked_in{};
  std::atomic<std::uint64_t> tier_ops{0};
  std::atomic<std::uint64_t> wrong{0};
  std::atomic<std::uint64_t> not_durable{0};
  std::atomic<std::uint64_t> unavailable{0};
  std::atomic<std::uint64_t> short_results{0};
  std::atomic<std::int64_t> last_tier_error{0};
  std::atomic<std::int64_t> last_enqueue_failure{0};
  std::atomic<std::int64_t> last_enqueue_ok{0};
  std::atomic<bool> stop{false};
  std::mutex acked_mutex;
  std::vector<std::string> acked;
  const auto start = clock_type::now();
  auto since_start = [&] { return (clock_type::now() - start).count(); };

  auto tier_load = [&](int t) {
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      const std::string key = fmt::format("t{}:{}", t, i % 500);
      const std::string value = fmt::format("{}", i);
      bool ok = tier.put(key, value);
      if (ok) {
        const auto got = tier.get(key);
        ok = got.has_value();
        if (got && *got != value) wrong.fetch_add(1);
      }
      tier_ops.fetch_add(2, std::memory_order_relaxed);
      if (!ok) {
        tier_errors[static_cast<std::size_t>(phase.load())].fetch_add(1);
        last_tier_error.store(since_start());
        std::this_thread::sleep_for(5ms);  // a failing node: do not spin
      }
    }
  };
  auto record = [&](const std::string& job, const outgrow::enqueue_result& r) {
    if (r) {
      std::lock_guard lock(acked_mutex);
      acked.push_back(job);
      acked_in[static_cast<std::size_t>(phase.load())].fetch_add(1);
      last_enqueue_ok.store(since_start());
      return true;
    }
    enqueue_failures[static_cast<std::size_t>(phase.load())].fetch_add(1);
    if (r.status == outgrow::enqueue_status::not_durable) not_durable.fetch_add(1);
    if (r.status == outgrow::enqueue_status::unavailable) unavailable.fetch_add(1);
    last_enqueue_failure.store(since_start());
    return false;
  };
  auto produce = [&](int t) {  // one enqueue at a time, or batches of 8
    for (int i = 0; !stop.load(); ++i) {
      bool ok = true;
      if (t == 0) {
        const std::string job = fmt::format("a{}", i);
        ok = record(job, queue.enqueue(job, job));
      } else {
        std::vector<std::string> batch;
        for (int k = 0; k < 8; ++k) batch.push_back(fmt::format("b{}", i * 8 + k));
        const auto r = queue.enqueue_many(std::span<const std::string>(batch),
                                          [](const std::string& j) { return j; });
        if (r.size() != batch.size()) short_results.fetch_add(1);  // not Catch: a thread
        for (std::size_t k = 0; k < r.size(); ++k) ok = record(batch[k], r[k]) && ok;
      }
      if (!ok) std::this_thread::sleep_for(5ms);
    }
  };
  std::atomic<std::uint64_t> runs{0};
  auto handler = [&](std::string& job, outgrow::redis_job_context& ctx) {
    runs.fetch_add(1);
    ctx.commit({"HINCRBY", effects, job, "1"});  // exactly once per key
  };
  str_worker w0(qcfg, handler);
  str_worker w1(qcfg, handler);
  std::vector<std::jthread> workers;
  workers.emplace_back([&](std::stop_token st) { w0.run(st); });
  workers.emplace_back([&](std::stop_token st) { w1.run(st); });
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) threads.emplace_back(tier_load, t);
  threads.emplace_back(produce, 0);
  threads.emplace_back(produce, 1);

  std::this_thread::sleep_for(200ms);  // load runs before the resharding
  phase = 1;
  const auto reshard_start = clock_type::now();
  cluster.reshard(cluster.node_id(from), cluster.node_id(to), 1000);
  const double reshard_time = seconds(clock_type::now() - reshard_start);
  phase = 2;
  CHECK(cluster.master_of(slot) == to);  // the queue's own slot did move
  const auto after_reshard = tier.metrics();
  const std::uint64_t worker_redirects = w0.metrics().redirects + w1.metrics().redirects;
  for (int i = 0; i < 300; ++i) {  // moved keys are found where they went
    REQUIRE(tier.get(fmt::format("k{}", i)) == std::optional(fmt::format("v{}", i)));
  }
  REQUIRE(cluster.wait_until_replicas_synced(30s));
  std::this_thread::sleep_for(200ms);  // load runs on the new layout before the kill

  const std::size_t victim = to;
  phase = 3;
  const std::int64_t killed_at = since_start();
  cluster.node(victim).kill();
  REQUIRE(cluster.wait_until_ok(30s));
  const double failover = seconds(clock_type::duration(since_start() - killed_at));
  cluster.node(victim).restart();  // rejoins as the new master's replica: WAIT 1 again
  // Both kinds of caller are fine again once nothing failed for 300 ms and an enqueue
  // was acknowledged after the last failure.
  const std::int64_t quiet = std::chrono::nanoseconds(300ms).count();
  const bool resumed = wait_for(
      [&] {
        const std::int64_t now = since_start();
        return last_enqueue_ok.load() > last_enqueue_failure.load() &&
               now - last_enqueue_failure.load() > quiet &&
               now - last_tier_error.load() > quiet;
      },
      20s);
  std::this_thread::sleep_for(300ms);  // load runs on the promoted replica for a while
  stop = true;
  for (auto& th : threads) th.join();

  // Every acknowledged job is finished (completed or dead-lettered) before workers stop.
  const bool drained = wait_for(
      [&] {
        const auto m = queue.metrics();
        return m && m->length == 0;
      },
      20s);
  for (auto& wt : workers) wt.request_stop();
  workers.clear();
  const std::size_t owner = cluster.master_of(slot).value();
  const auto counts = cluster.node(owner).command("HGETALL %s", effects.c_str());
  std::map<std::string, std::string> done;
  for (std::size_t i = 0; i + 1 < counts->elements; i += 2) {
    done[std::string(counts->element[i]->str, counts->element[i]->len)] =
        std::string(counts->element[i + 1]->str, counts->element[i + 1]->len);
  }
  std::set<std::string> dead;
  for (const auto& e : queue.dead_letters().snapshot()) {
    if (e.job) dead.insert(*e.job);
  }
  std::size_t lost = 0;
  std::size_t not_once = 0;
  for (const std::string& j : acked) {
    const auto it = done.find(j);
    if (it == done.end()) {
      lost += dead.count(j) == 0 ? 1U : 0U;
    } else if (it->second != "1") {
      ++not_once;
    }
  }
  auto ns_after_kill = [&](std::int64_t t) {
    return t > killed_at ? seconds(clock_type::duration(t - killed_at)) : 0.0;
  };
  const double tier_outage = ns_after_kill(last_tier_error.load());
  const double queue_outage = ns_after_kill(last_enqueue_failure.load());
  std::printf(
      "cluster resharding (1000 slots, %.2f s, queue slot %d moved) under 8 tier threads, "
      "2 producers and 2 workers: %llu tier errors, %llu enqueue failures, %llu jobs "
      "acknowledged, %llu tier redirects, %llu worker redirects\n",
      reshard_time, slot, static_cast<unsigned long long>(tier_errors[1].load()),
      static_cast<unsigned long long>(enqueue_failures[1].load()),
      static_cast<unsigned long long>(acked_in[1].load()),
      static_cast<unsigned long long>(after_reshard.redirects),
      static_cast<unsigned long long>(worker_redirects));
  std::printf(
      "cluster master killed (the queue's; node timeout 1 s): failover %.2f s; tier: %llu "
      "failed calls, the last %.2f s after the kill; queue: %llu failed enqueues (%llu "
      "unavailable, %llu not_durable until the old master rejoined as a replica), the "
      "last %.2f s after the kill\n",
      failover, static_cast<unsigned long long>(tier_errors[3].load()), tier_outage,
      static_cast<unsigned long long>(enqueue_failures[3].load()),
      static_cast<unsigned long long>(unavailable.load()),
      static_cast<unsigned long long>(not_durable.load()), queue_outage);
  std::printf(
      "cluster load totals: %llu tier operations, %zu jobs acknowledged, %zu completed, "
      "%zu dead letters, %zu lost, %zu not exactly once, %llu handler runs; %.1f s\n",
      static_cast<unsigned long long>(tier_ops.load()), acked.size(), done.size(),
      dead.size(), lost, not_once, static_cast<unsigned long long>(runs.load()),
      seconds(clock_type::now() - test_start));
  // Resharding: MOVED / ASK absorbed, no caller saw an error, and work went on.
  for (std::size_t p = 0; p < 3; ++p) {
    CHECK(tier_errors[p].load() == 0);
    CHECK(enqueue_failures[p].load() == 0);
  }
  CHECK(after_reshard.redirects > 0);  // slots did move under the callers
  CHECK(worker_redirects > 0);
  CHECK(acked_in[1].load() > 0);
  CHECK(wrong.load() == 0);
  CHECK(short_results.load() == 0);  // enqueue_many: one result per job
  // The kill: a bounded outage, then both kinds of caller work again.
  CHECK(resumed);
  CHECK(tier_outage < 15.0);
  CHECK(queue_outage < 15.0);
  CHECK(acked_in[3].load() > 0);
  // None lost: every acknowledged job completed (its effect once) or dead-lettered.
  CHECK(drained);
  CHECK(lost == 0);
  CHECK(not_once == 0);
  CHECK(done.size() >= acked.size() - dead.size());
  // Written (and replicated) long before the kill: still there, wherever they live now.
  for (int i = 0; i < 300; ++i) {
    CHECK(tier.get(fmt::format("k{}", i)) == std::optional(fmt::format("v{}", i)));
  }
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

  // Sharded pub/sub: buses seeded with different nodes meet at the master of the
  // channel's slot (a slot among the lowest of its master, so the reshard below moves it).
  const std::size_t from = cluster.master_of(0).value();
  const std::size_t to = cluster.master_of(16383).value();
  const std::string channel = tag_in("inv", 0, 99);
  const int channel_slot = outgrow::redis_cluster_hash_slot(channel);
  REQUIRE(cluster.master_of(channel_slot) == from);
  auto bus_config = [&](std::size_t node, bool sharded) {
    outgrow::redis_invalidation_bus_config c{.channel = sharded ? channel : "c:inv",
                                             .poll_interval = 10ms,
                                             .sharded_pubsub = sharded};
    c.connection.command_timeout = 1s;
    c.connection.cluster.nodes = {{cluster.node(node).host(), cluster.node(node).port()}};
    return c;
  };
  auto commands = [&](std::size_t node, std::string_view name) {  // INFO commandstats
    const auto r = cluster.node(node).command("INFO commandstats");
    const std::string text(outgrow_test::reply_text(*r));
    const std::string field = fmt::format("cmdstat_{}:calls=", name);
    const auto at = text.find(field);
    return at == std::string::npos ? 0L : std::stol(text.substr(at + field.size()));
  };
  outgrow::redis_invalidation_bus<std::string> a(bus_config(1, true));
  outgrow::redis_invalidation_bus<std::string> b(bus_config(2, true));
  outgrow_test::key_recorder at_b;
  auto sub = b.subscribe(at_b.handler());
  a.start();
  b.start();
  REQUIRE(a.wait_subscribed(10s));
  REQUIRE(b.wait_subscribed(10s));
  REQUIRE(a.publish("user:42", 1));
  CHECK(at_b.wait_seen("user:42", 5s));
  // Both subscribed at the slot's master, the message published there only.
  const auto shard_subscribers =
      cluster.node(from).command("PUBSUB SHARDNUMSUB %s", channel.c_str());
  REQUIRE(shard_subscribers->type == REDIS_REPLY_ARRAY);
  REQUIRE(shard_subscribers->elements == 2);
  CHECK(shard_subscribers->element[1]->integer == 2);
  CHECK(commands(from, "spublish") >= 1);
  for (std::size_t n = 0; n < cluster.size(); ++n) {
    CHECK(commands(n, "publish") == 0);  // nothing broadcast
    if (n != from) CHECK(commands(n, "spublish") == 0);
  }

  // The channel's slot is resharded: the old owner ends the subscriptions, the buses
  // re-subscribe at the new one (a gap) and a publish answered MOVED is re-sent there.
  const auto before = b.metrics();
  cluster.reshard(cluster.node_id(from), cluster.node_id(to), 200);
  REQUIRE(cluster.master_of(channel_slot) == to);
  const auto deadline = clock_type::now() + 10s;
  while (b.metrics().subscribes == before.subscribes && clock_type::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  CHECK(b.metrics().subscribes > before.subscribes);
  CHECK(b.wait_subscribed(10s));
  (void)a.publish("user:43", 1);  // may be answered MOVED: kept, re-sent
  CHECK(at_b.wait_seen("user:43", 5s));
  CHECK(b.metrics().gaps > before.gaps);
  CHECK(commands(to, "spublish") >= 1);
  std::printf(
      "sharded invalidation bus: channel slot %d resharded; subscriber re-subscribed "
      "(%llu gaps), publisher %llu failed sends re-sent\n",
      channel_slot, static_cast<unsigned long long>(b.metrics().gaps),
      static_cast<unsigned long long>(a.metrics().publish_failures));

  // Classic pub/sub (sharded_pubsub = false) is broadcast over the whole cluster: buses
  // seeded with different nodes still hear each other.
  outgrow::redis_invalidation_bus<std::string> c(bus_config(0, false));
  outgrow::redis_invalidation_bus<std::string> d(bus_config(2, false));
  outgrow_test::key_recorder at_d;
  auto sub_d = d.subscribe(at_d.handler());
  c.start();
  d.start();
  REQUIRE(c.wait_subscribed(10s));
  REQUIRE(d.wait_subscribed(10s));
  REQUIRE(c.publish("user:44", 1));
  CHECK(at_d.wait_seen("user:44", 5s));
  CHECK(commands(0, "publish") >= 1);
  CHECK_THROWS_WITH(
      outgrow::redis_invalidation_bus<std::string>({.sharded_pubsub = false}),
      "redis_invalidation_bus: sharded_pubsub must be true without connection.cluster "
      "(one server has no shards), got false");
}
