// Every outgrow Redis part under Redis Sentinel (issue 18): the master is found through
// the sentinels (redis_connection_config::sentinel), and after the master is SIGKILLed
// and a replica promoted, the part follows the failover by itself. Real servers only:
// one master, two replicas, three sentinels (tests/support/redis_sentinel.hpp). With
// sentinel.read_from_replicas, redis_tier's reads are served by replicas (counted by the
// replicas' INFO stats and the tier's metrics) and fall back to the master.
//
// Time: a failover happens in real time (down-after 1 s + the election), so the tests
// poll real conditions with bounds and print how long each part was unavailable; they
// assert outcomes (recovered, no acknowledged job lost), never durations beyond a
// generous bound.
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/redis/redis_invalidation.hpp>
#include <outgrow/redis/redis_stream_queue.hpp>
#include <outgrow/redis/redis_tier.hpp>
#include <outgrow/redis/session_store.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"
#include "key_recorder.hpp"
#include "redis_sentinel.hpp"

using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

outgrow::redis_connection_config via_sentinels(outgrow_test::redis_sentinel_group& group) {
  outgrow::redis_connection_config c{
      .connect_timeout = 500ms,
      .command_timeout = 500ms,
      .reconnect_backoff = outgrow::full_jitter_backoff(5ms, 50ms),
      .seed = 0x5E47'1AE1ULL};
  for (std::size_t i = 0; i < 3; ++i) {
    c.sentinel.sentinels.push_back({group.sentinel(i).host(), group.sentinel(i).port()});
  }
  c.sentinel.master_name = group.master_name();
  return c;
}

/// Polls `ok` every 10 ms until it is true or `bound` passes; the time it took, or
/// nullopt.
template <class F>
std::optional<clock_type::duration> until(F ok, clock_type::duration bound = 30s) {
  const auto start = clock_type::now();
  while (clock_type::now() - start < bound) {
    if (ok()) return clock_type::now() - start;
    std::this_thread::sleep_for(10ms);
  }
  return std::nullopt;
}

double seconds(clock_type::duration d) {
  return std::chrono::duration<double>(d).count();
}

/// Makes sure both replicas have what the master acknowledged so far (WAIT).
void replicate(outgrow_test::redis_sentinel_group& group) {
  const auto r = group.master().command("WAIT 2 5000");
  REQUIRE(r->type == REDIS_REPLY_INTEGER);
  REQUIRE(r->integer == 2);
}

}  // namespace

TEST_CASE("redis_connection_config sentinel fields are validated", "[sentinel]") {
  using outgrow::redis_tier;
  auto make = [](outgrow::redis_connection_config c) {
    redis_tier<std::string, std::string> t({.connection = std::move(c)});
  };
  outgrow::redis_connection_config c;
  c.sentinel.master_name = "shop";  // a name without sentinels is a mistake
  CHECK_THROWS_WITH(
      make(c),
      "redis_tier: connection.sentinel.master_name must be empty without sentinels, "
      "got shop");
  c.sentinel = {.sentinels = {{"127.0.0.1", 26379}}};
  CHECK_THROWS_WITH(make(c),
                    Catch::Contains("connection.sentinel.master_name must be a master name "
                                    "when sentinels are given"));
  c.sentinel = {.sentinels = {{"127.0.0.1", 0}}, .master_name = "shop"};
  CHECK_THROWS_WITH(make(c),
                    "redis_tier: connection.sentinel.sentinels[].port must be in "
                    "[1, 65535], got 0");
  c.sentinel = {.sentinels = {{"", 26379}}, .master_name = "shop"};
  CHECK_THROWS_AS(make(c), outgrow::config_error);
  c.sentinel = {.sentinels = std::vector<outgrow::redis_endpoint>(17), .master_name = "s"};
  CHECK_THROWS_AS(make(c), outgrow::config_error);
  // Reads from replicas: only under Sentinel, and only redis_tier accepts them.
  c.sentinel = {.read_from_replicas = true};
  CHECK_THROWS_WITH(make(c),
                    "redis_tier: connection.sentinel.read_from_replicas must be false "
                    "without sentinels, got true");
  c.sentinel = {.sentinels = {{"127.0.0.1", 26379}},
                .master_name = "shop",
                .read_from_replicas = true};
  CHECK_NOTHROW(make(c));
  CHECK_THROWS_WITH(
      outgrow::redis_stream_queue<std::string>({.connection = c, .stream = "q"}),
      "redis_stream_queue: connection.sentinel.read_from_replicas must be false (only "
      "redis_tier reads from replicas), got true");
  CHECK_THROWS_AS(outgrow::session_store<std::string>({.connection = c}),
                  outgrow::config_error);
  CHECK_THROWS_AS(outgrow::redis_invalidation_bus<std::string>({.connection = c}),
                  outgrow::config_error);
}

TEST_CASE("redis_tier finds the master through sentinels and follows a failover",
          "[integration][sentinel]") {
  outgrow_test::redis_sentinel_group group;
  outgrow::redis_tier<std::string, std::string> tier(
      {.connection = via_sentinels(group), .key_prefix = "s:"});
  REQUIRE(tier.put("before", "1"));
  REQUIRE(tier.get("before") == std::optional<std::string>("1"));
  replicate(group);

  // An unknown master name: nothing to connect to, reported as a failure, no throw.
  auto wrong = via_sentinels(group);
  wrong.sentinel.master_name = "nobody";
  outgrow::redis_tier<std::string, std::string> lost({.connection = wrong});
  CHECK_FALSE(lost.put("x", "y"));
  CHECK(lost.metrics().connect_failures >= 1);

  const int old_port = group.master().port();
  group.master().kill();
  const auto recovered = until([&] { return tier.put("after", "2"); });
  REQUIRE(recovered);
  std::printf("redis_tier under Sentinel: writes again %.2f s after the master died\n",
              seconds(*recovered));
  CHECK(group.master_port() != old_port);
  CHECK(tier.get("after") == std::optional<std::string>("2"));
  CHECK(tier.get("before") == std::optional<std::string>("1"));  // replicated before
  CHECK(tier.metrics().connects >= 2);
}

TEST_CASE("redis_tier reads from replicas under Sentinel and falls back to the master",
          "[integration][sentinel]") {
  outgrow_test::redis_sentinel_group group;  // a master, 2 replicas, 3 sentinels
  auto c = via_sentinels(group);
  c.sentinel.read_from_replicas = true;
  outgrow::redis_tier<std::string, std::string> tier({.connection = c, .key_prefix = "r:"});
  std::vector<std::string> keys;
  for (int i = 0; i < 50; ++i) {
    keys.push_back(fmt::format("k{}", i));
    REQUIRE(tier.put(keys.back(), fmt::format("v{}", i)));  // writes: the master
  }
  replicate(group);  // both replicas have them (reads from replicas may be stale)
  auto hits = [](outgrow_test::redis_server& node) {  // INFO stats keyspace_hits
    const auto r = node.command("INFO stats");
    const std::string text(outgrow_test::reply_text(*r));
    const auto at = text.find("keyspace_hits:");
    REQUIRE(at != std::string::npos);
    return std::stol(text.substr(at + 14));
  };
  auto replica_hits = [&] { return hits(group.replica(0)) + hits(group.replica(1)); };
  const long master_before = hits(group.master());
  const long replicas_before = replica_hits();
  for (int i = 0; i < 50; ++i) {
    CHECK(tier.get(keys[static_cast<std::size_t>(i)]) ==
          std::optional(fmt::format("v{}", i)));
  }
  const auto values = tier.get_many(keys);  // one MGET, on a replica too
  REQUIRE(values.size() == keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    CHECK(values[i] == std::optional(fmt::format("v{}", i)));
  }
  const auto m = tier.metrics();
  CHECK(m.replica_reads == 51);
  CHECK(m.replica_fallbacks == 0);
  CHECK(hits(group.master()) == master_before);    // no read reached the master
  CHECK(replica_hits() - replicas_before == 100);  // the replicas served all 100 keys
  CHECK(tier.size() == 50);                        // SCAN: on the master

  // A replica dies: the reads its connection was serving go to the master or the other
  // replica, never a failure.
  group.replica(0).kill();
  for (int i = 0; i < 50; ++i) {
    CHECK(tier.get(keys[static_cast<std::size_t>(i)]) ==
          std::optional(fmt::format("v{}", i)));
  }
  // The master dies: the last replica is promoted, so no replica is left and reads fall
  // back to the new master; writes follow the failover as without replica reads.
  const int old_port = group.master().port();
  group.master().kill();
  const auto recovered = until([&] { return tier.put("after", "2"); });
  REQUIRE(recovered);
  CHECK(group.master_port() != old_port);
  CHECK(until([&] { return tier.get("after") == std::optional<std::string>("2"); }, 10s));
  CHECK(tier.get("k7") == std::optional<std::string>("v7"));  // replicated before
  const auto after = tier.metrics();
  std::printf(
      "redis_tier reading from replicas under Sentinel: %llu reads served by replicas, "
      "%llu fell back to the master; writes again %.2f s after the master died\n",
      static_cast<unsigned long long>(after.replica_reads),
      static_cast<unsigned long long>(after.replica_fallbacks), seconds(*recovered));
  CHECK(after.replica_fallbacks > 0);
  CHECK(after.failed_reads == 0);  // a read never failed: a replica or the master answered
}

TEST_CASE("redis_stream_queue follows a failover and loses no replicated job",
          "[integration][sentinel]") {
  outgrow_test::redis_sentinel_group group;
  outgrow::manual_clock clock;
  outgrow::redis_stream_queue_config config{.connection = via_sentinels(group),
                                            .stream = "s:jobs",
                                            .group = "g",
                                            .consumer = "w1",
                                            .max_attempts = 3,
                                            .visibility_timeout = 30s,
                                            .retry_delay = 0ms,
                                            .block_timeout = 1ms,
                                            .claim_interval = 1s,
                                            .batch = 16};
  outgrow::redis_stream_queue<std::string> queue(config);
  std::set<std::string> done;
  outgrow::redis_stream_worker<std::string, outgrow::redis_default_codec,
                               outgrow::manual_clock>
      worker(
          config, [&](std::string& job) { done.insert(job); }, {}, clock);
  std::set<std::string> acknowledged;
  for (int i = 0; i < 100; ++i) {
    const std::string job = fmt::format("before-{}", i);
    REQUIRE(queue.enqueue(job).ok());
    acknowledged.insert(job);
  }
  // Redis replicates asynchronously: what the master acknowledged but had not sent to a
  // replica is lost with it. WAIT makes these 100 durable across the failover.
  replicate(group);

  group.master().kill();
  int attempt = 0;
  const auto recovered = until([&] {
    const std::string job = fmt::format("after-{}", attempt);
    if (!queue.enqueue(job).ok()) return false;
    acknowledged.insert(job);
    ++attempt;
    return true;
  });
  REQUIRE(recovered);
  std::printf(
      "redis_stream_queue under Sentinel: enqueues again %.2f s after the master "
      "died\n",
      seconds(*recovered));
  for (int i = 1; i < 50; ++i) {
    const std::string job = fmt::format("after-{}", i);
    REQUIRE(queue.enqueue(job).ok());
    acknowledged.insert(job);
  }
  for (int round = 0; round < 400 && done.size() < acknowledged.size(); ++round) {
    clock.advance(2s);
    (void)worker.poll();
  }
  CHECK(done == acknowledged);  // every acknowledged job ran; none lost, none invented
  const auto m = queue.metrics();
  REQUIRE(m);
  CHECK(m->pending == 0);
}

TEST_CASE("redis_invalidation_bus follows a failover", "[integration][sentinel]") {
  outgrow_test::redis_sentinel_group group;
  auto bus_config = [&] {
    return outgrow::redis_invalidation_bus_config{
        .connection = via_sentinels(group), .channel = "s:inv", .poll_interval = 10ms};
  };
  outgrow::redis_invalidation_bus<std::string> a(bus_config());
  outgrow::redis_invalidation_bus<std::string> b(bus_config());
  outgrow_test::key_recorder at_b;
  auto sub = b.subscribe(at_b.handler());
  a.start();
  b.start();
  REQUIRE(a.wait_subscribed(10s));
  REQUIRE(b.wait_subscribed(10s));
  REQUIRE(a.publish("before", 1));
  REQUIRE(at_b.wait_seen("before", 10s));

  group.master().kill();
  // Publish until one arrives through the new master (a publish into the gap is
  // reported as a gap to subscribers, not delivered late).
  int n = 0;
  const auto recovered = until([&] {
    const std::string key = fmt::format("after-{}", n++);
    (void)a.publish(key, 1);
    return at_b.wait_seen(key, 200ms);
  });
  REQUIRE(recovered);
  std::printf(
      "redis_invalidation_bus under Sentinel: delivers again %.2f s after the "
      "master died\n",
      seconds(*recovered));
  CHECK(b.metrics().subscribed);
}

TEST_CASE("session_store follows a failover and keeps replicated sessions",
          "[integration][sentinel]") {
  outgrow_test::redis_sentinel_group group;
  outgrow::session_store<std::string> store(
      {.connection = via_sentinels(group), .key_prefix = "s:session:"});
  const auto id = store.create("ada", "cart=book;");
  REQUIRE(id);
  REQUIRE(store.get(*id));
  replicate(group);

  group.master().kill();
  std::optional<outgrow::session<std::string>> after;
  const auto recovered = until([&] {
    auto r = store.get(*id);
    if (r) after = *r;
    return static_cast<bool>(r);
  });
  REQUIRE(recovered);
  std::printf(
      "session_store under Sentinel: sessions readable again %.2f s after the "
      "master died\n",
      seconds(*recovered));
  REQUIRE(after);
  CHECK(after->user == "ada");  // the login survived the failover
  CHECK(after->data == "cart=book;");
  CHECK(store.update(*id, after->version, "cart=book;pen;") == outgrow::session_status::ok);
  CHECK(store.get(*id)->data == "cart=book;pen;");
}
