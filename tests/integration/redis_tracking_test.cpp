// Tests of redis_invalidation_bus in tracking mode (Redis client-side caching): writes by
// a plain client (the redis-cli binary) invalidate the L1 of two outgrow instances; a
// flush clears them; while the invalidation connection is down no L1 value is served
// (tiered_cache's bus gate, also tested here without a server); bad configs. On a Redis
// Cluster (3 masters / 3 replicas, tests/support/redis_cluster.hpp) the bus tracks every
// master, and after a master is SIGKILLed it clears (a gap) and tracks the promoted one.
//
// Delivery through Redis is asynchronous (the subscriber thread): tests wait for a
// counter to move, with bounded waits, never for a fixed time.
#include <signal.h>

#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/invalidation.hpp>
#include <outgrow/cache/tiered_cache.hpp>
#include <outgrow/cache/write_policy.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/prometheus.hpp>
#include <outgrow/redis/detail/invalidation_wire.hpp>
#include <outgrow/redis/detail/key_namespace.hpp>
#include <outgrow/redis/redis_invalidation.hpp>
#include <outgrow/redis/redis_tier.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"
#include "map_store.hpp"
#include "redis_cluster.hpp"  // run_process (redis-cli), the cluster test
#include "redis_server.hpp"

using namespace std::chrono_literals;

namespace {

using bus_type = outgrow::redis_invalidation_bus<std::string>;
using outgrow_test::map_store;

constexpr std::string_view prefix = "track:";

outgrow::redis_connection_config connection(const outgrow_test::redis_server& server) {
  return {.host = server.host(),
          .port = server.port(),
          .connect_timeout = 2s,
          .command_timeout = 2s,
          .reconnect_backoff = outgrow::full_jitter_backoff(1ms, 20ms),
          .seed = 0x7EAC'4ED5'EEDULL};
}

outgrow::redis_invalidation_bus_config tracking_config(
    const outgrow_test::redis_server& server) {
  return {.connection = connection(server),
          .channel = "test:track",
          .mode = outgrow::redis_invalidation_mode::tracking,
          .tracking_prefix = std::string(prefix),
          .poll_interval = 20ms};
}

bool eventually(const std::function<bool()>& condition,
                std::chrono::seconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

/// Runs the redis-cli binary against `server`: a client that is not outgrow.
void cli(const outgrow_test::redis_server& server, std::vector<std::string> args) {
  std::vector<std::string> argv = {OUTGROW_REDIS_CLI, "-h", server.host(), "-p",
                                   std::to_string(server.port())};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = outgrow_test::run_process(argv, 10s);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
}

using l1_type = outgrow::cache<std::string, std::string>;
using l2_type = outgrow::redis_tier<std::string, std::string>;
using tiered = outgrow::tiered_cache<outgrow::tiers<l1_type, l2_type>, map_store,
                                     outgrow::write_through>;

/// One service instance: its own L1, its own connections to the shared Redis, its bus.
struct instance {
  instance(outgrow_test::redis_server& server, map_store& store,
           outgrow::redis_invalidation_bus_config bus_config)
      : l2({.connection = connection(server), .key_prefix = std::string(prefix)}),
        bus(std::move(bus_config)),
        cache(store, std::tie(l1, l2), {.default_ttl = 10min}) {
    cache.connect(bus);
    bus.start();
  }
  std::uint64_t l1_hits() const { return cache.tier_metrics<0>().hits; }
  l1_type l1{{.capacity = 1000}};
  l2_type l2;
  bus_type bus;
  tiered cache;
};

/// A redis-server and two service instances with tracking buses, both subscribed.
struct two_instances {
  two_instances() {
    REQUIRE(a.bus.wait_subscribed(10s));
    REQUIRE(b.bus.wait_subscribed(10s));
  }
  /// Both instances read `key` until it is served from their L1 (the L2 fill of a
  /// store load is itself a write that Redis reports, dropping the fresh L1 copy).
  void warm(const std::string& key, const std::string& expected) {
    for (instance* i : {&a, &b}) {
      REQUIRE(eventually([&] {
        const auto hits = i->l1_hits();
        const auto v = i->cache.get(key);
        REQUIRE(v == expected);
        return i->l1_hits() > hits;
      }));
    }
  }
  /// Waits until Redis has reported `n` more keys to both instances.
  void wait_tracked(std::uint64_t a_before, std::uint64_t b_before, std::uint64_t n = 1) {
    REQUIRE(eventually([&] { return a.bus.metrics().tracked >= a_before + n; }));
    REQUIRE(eventually([&] { return b.bus.metrics().tracked >= b_before + n; }));
  }
  outgrow_test::redis_server server;
  map_store store;
  instance a{server, store, tracking_config(server)};
  instance b{server, store, tracking_config(server)};
};

/// A bus with delivering(), switched by the test: tiered_cache's gate without Redis.
struct switch_bus {
  using key_type = std::string;
  void publish(const std::string& k, std::uint64_t origin) { inner.publish(k, origin); }
  void publish_clear(std::uint64_t origin) { inner.publish_clear(origin); }
  outgrow::invalidation_subscription subscribe(
      outgrow::invalidation_handler<std::string> h) {
    return inner.subscribe(std::move(h));
  }
  bool delivering() const noexcept { return on.load(std::memory_order_relaxed); }
  outgrow::in_process_invalidation_bus<std::string> inner;
  std::atomic<bool> on{false};
};
static_assert(outgrow::invalidation_bus_with_delivering<switch_bus>);
static_assert(!outgrow::invalidation_bus_with_delivering<
              outgrow::in_process_invalidation_bus<std::string>>);

}  // namespace

TEST_CASE("redis_unescape_key inverts redis_escape_key and rejects what it never writes",
          "[redis_tracking]") {
  for (const std::string raw : {"", "plain", "user:42", "100%", "%3A", "a:b%c::%%"}) {
    std::string escaped = "p:" + raw;
    outgrow::detail::redis_escape_key(escaped, 2);
    CHECK(outgrow::detail::redis_unescape_key(std::string_view(escaped).substr(2)) == raw);
  }
  for (const std::string_view bad : {"a:b", "%", "%2", "%3a", "%41", "x%2"}) {
    CHECK_FALSE(outgrow::detail::redis_unescape_key(bad).has_value());
  }
  using kind = outgrow::detail::redis_tracked_kind;
  const outgrow::redis_default_codec codec;
  const auto parse = [&](std::string_view p, std::string_view k) {
    return outgrow::detail::redis_parse_tracked_key<std::string>(codec, p, k);
  };
  const auto ours = parse("app:", "app:user%3A42");
  CHECK(ours.kind == kind::ours);
  CHECK(ours.key == "user:42");
  CHECK(parse("app:", "app:v2:x").kind == kind::foreign);  // a longer prefix's key
  CHECK(parse("app:", "other:x").kind == kind::foreign);
  CHECK(parse("app:", "app:bad%ZZ").kind == kind::malformed);
  CHECK(parse("", "anything").kind == kind::ours);
  CHECK(parse("", "with:colon").kind == kind::foreign);
}

TEST_CASE("tiered_cache skips its L1 while a bus is not delivering", "[redis_tracking]") {
  map_store store;
  store.data["k"] = "v0";
  l1_type l1({.capacity = 100});
  switch_bus bus;
  outgrow::tiered_cache<outgrow::tiers<l1_type>, map_store, outgrow::read_through> cache(
      store, std::tie(l1), {.negative_ttl = 1h});
  cache.connect(bus);

  // Not delivering: every read goes to the store, nothing is cached locally.
  CHECK(cache.get("k") == "v0");
  CHECK(cache.get("k") == "v0");
  CHECK(store.loads == 2);
  CHECK(l1.size() == 0);
  CHECK_FALSE(cache.get("missing").has_value());
  CHECK_FALSE(cache.get("missing").has_value());
  CHECK(store.loads == 4);  // no negative caching either
  l1.put("k", "stale");     // an L1 value from before the outage is not served
  CHECK(cache.get("k") == "v0");
  CHECK(cache.metrics().hits == 0);

  // Delivering: the L1 (and the negative cache) are used again.
  bus.on = true;
  l1.clear();
  CHECK(cache.get("k") == "v0");
  CHECK(cache.get("k") == "v0");
  CHECK(store.loads == 6);
  CHECK(cache.tier_metrics<0>().hits == 1);
  CHECK_FALSE(cache.get("missing").has_value());
  CHECK_FALSE(cache.get("missing").has_value());
  CHECK(store.loads == 7);
  CHECK(cache.metrics().negative_hits == 1);

  // A write while not delivering does not fill the L1 (it erases the key there).
  bus.on = false;
  REQUIRE(cache.put("k", "v1"));
  bus.on = true;
  CHECK(l1.size() == 0);
  // disconnect() lifts the gate.
  bus.on = false;
  cache.disconnect();
  CHECK(cache.get("k") == "v1");
  CHECK(cache.get("k") == "v1");
  CHECK(cache.tier_metrics<0>().hits == 2);
}

TEST_CASE_METHOD(two_instances, "a write by redis-cli invalidates the L1 of two instances",
                 "[redis_tracking][integration]") {
  int stale = 0;
  for (int round = 0; round < 6; ++round) {
    // Keys with ':' and '%' travel escaped ("track:user%3A1%25").
    const std::string key = fmt::format("user:{}%", round % 3);
    const std::string old_value = fmt::format("v{}", round);
    store.store(key, old_value);
    auto ta = a.bus.metrics().tracked;
    auto tb = b.bus.metrics().tracked;
    cli(server, {"SET", a.l2.redis_key(key), old_value});
    wait_tracked(ta, tb);
    warm(key, old_value);  // both L1s hold the old value now
    ta = a.bus.metrics().tracked;
    tb = b.bus.metrics().tracked;
    const std::string value = fmt::format("cli{}", round);
    cli(server, {"SET", a.l2.redis_key(key), value});  // not outgrow: nothing PUBLISHed
    wait_tracked(ta, tb);
    if (a.cache.get(key) != value) ++stale;
    if (b.cache.get(key) != value) ++stale;
  }
  CHECK(stale == 0);

  // Our own writes are reported too: the writer's fresh L1 copy is dropped (refilled
  // from Redis), the other instance's old copy is dropped; publish() sends nothing.
  warm("user:0%", "cli3");
  const auto ta = a.bus.metrics().tracked;
  const auto tb = b.bus.metrics().tracked;
  REQUIRE(a.cache.put("user:0%", "mine"));
  wait_tracked(ta, tb);
  CHECK(a.cache.get("user:0%") == "mine");
  CHECK(b.cache.get("user:0%") == "mine");
  CHECK(a.bus.metrics().sent == 0);

  // Keys of other namespaces under the prefix are ignored, undecodable ones counted,
  // keys outside the prefix never reported (BCAST PREFIX).
  cli(server, {"SET", "unrelated", "x"});
  cli(server, {"SET", "track:other:x", "x"});
  cli(server, {"SET", "track:bad%ZZ", "x"});
  const auto before = b.bus.metrics();
  cli(server, {"SET", a.l2.redis_key("marker"), "x"});
  REQUIRE(eventually([&] { return b.bus.metrics().tracked > before.tracked; }));
  const auto s = b.bus.metrics();
  CHECK(s.tracked_foreign == 1);
  CHECK(s.decode_errors == 1);
  CHECK(s.subscribed);
  CHECK(s.gaps == 0);
  CHECK(s.flushes == 0);
  fmt::print("tracking bus: {}\n", s);
  {  // tracked / tracked_foreign count events: Prometheus counters, not gauges
    outgrow::prometheus_writer w;
    w.add("bus", s);
    const std::string text = w.str();
    CHECK(text.find("# TYPE bus_tracked counter\n") != std::string::npos);
    CHECK(text.find("# TYPE bus_tracked_foreign counter\n") != std::string::npos);
    CHECK(text.find("# TYPE bus_subscribed gauge\n") != std::string::npos);
  }

  // publish_clear still travels over the channel.
  const auto received = b.bus.metrics().received;
  a.cache.invalidate_all();
  REQUIRE(eventually([&] { return b.bus.metrics().received > received; }));
  REQUIRE(eventually([&] { return a.bus.metrics().own_ignored == 1; }));
  CHECK(a.bus.metrics().sent == 1);
}

TEST_CASE_METHOD(two_instances, "FLUSHALL by redis-cli clears the L1 of both instances",
                 "[redis_tracking][integration]") {
  for (int i = 0; i < 3; ++i) {
    const std::string key = fmt::format("k{}", i);
    store.store(key, "v");
    cli(server, {"SET", a.l2.redis_key(key), "v"});
  }
  REQUIRE(eventually([&] { return b.bus.metrics().tracked >= 3; }));
  REQUIRE(eventually([&] { return a.bus.metrics().tracked >= 3; }));
  for (int i = 0; i < 3; ++i) warm(fmt::format("k{}", i), "v");
  for (int i = 0; i < 3; ++i) store.store(fmt::format("k{}", i), "db");
  cli(server, {"FLUSHALL"});
  REQUIRE(eventually([&] { return a.bus.metrics().flushes == 1; }));
  REQUIRE(eventually([&] { return b.bus.metrics().flushes == 1; }));
  // L1 cleared, Redis empty: the store's value, never the old "v".
  for (int i = 0; i < 3; ++i) {
    CHECK(a.cache.get(fmt::format("k{}", i)) == "db");
    CHECK(b.cache.get(fmt::format("k{}", i)) == "db");
  }
}

TEST_CASE_METHOD(two_instances,
                 "while the invalidation connection is down reads bypass L1 and never "
                 "serve stale",
                 "[redis_tracking][integration]") {
  store.store("k", "v0");
  auto ta = a.bus.metrics().tracked;
  auto tb = b.bus.metrics().tracked;
  cli(server, {"SET", a.l2.redis_key("k"), "v0"});
  wait_tracked(ta, tb);
  warm("k", "v0");

  // Keep the buses from subscribing again (no pub/sub rights), then drop them.
  (void)server.command("ACL SETUSER default resetchannels");
  cli(server, {"CLIENT", "KILL", "TYPE", "pubsub"});
  REQUIRE(eventually([&] { return !a.bus.delivering() && !b.bus.delivering(); }));
  REQUIRE(eventually([&] { return a.bus.metrics().gaps >= 1; }));  // cleared at once
  REQUIRE(eventually([&] { return b.bus.metrics().gaps >= 1; }));

  // Writes nobody reports: every read goes to Redis, never to the L1.
  const auto l1_a = a.l1_hits();
  const auto l1_b = b.l1_hits();
  int stale = 0;
  for (int i = 1; i <= 5; ++i) {
    const std::string value = fmt::format("outage{}", i);
    cli(server, {"SET", a.l2.redis_key("k"), value});
    for (int n = 0; n < 3; ++n) {
      if (a.cache.get("k") != value) ++stale;
      if (b.cache.get("k") != value) ++stale;
    }
  }
  CHECK(stale == 0);
  CHECK(a.l1_hits() == l1_a);
  CHECK(b.l1_hits() == l1_b);
  CHECK_FALSE(a.bus.metrics().subscribed);
  CHECK(a.bus.metrics().connect_failures >= 1);  // SUBSCRIBE refused meanwhile

  // Subscribed again (another gap): the L1 is used again, and invalidated again.
  (void)server.command("ACL SETUSER default allchannels");
  REQUIRE(a.bus.wait_subscribed(10s));
  REQUIRE(b.bus.wait_subscribed(10s));
  CHECK(a.bus.metrics().gaps >= 2);
  warm("k", "outage5");
  ta = a.bus.metrics().tracked;
  tb = b.bus.metrics().tracked;
  cli(server, {"SET", a.l2.redis_key("k"), "after"});
  wait_tracked(ta, tb);
  CHECK(a.cache.get("k") == "after");
  CHECK(b.cache.get("k") == "after");
  fmt::print("after the outage: {}\n", a.bus.metrics());
}

TEST_CASE("a tracking bus finds a frozen Redis by its heartbeat",
          "[redis_tracking][integration]") {
  outgrow_test::redis_server server;
  auto config = tracking_config(server);
  config.connection.connect_timeout = 200ms;
  config.connection.command_timeout = 100ms;
  bus_type bus(config);
  bus.start();
  REQUIRE(bus.wait_subscribed(10s));
  ::kill(server.pid(), SIGSTOP);
  struct resume {  // SIGCONT also on failure
    pid_t pid;
    ~resume() { ::kill(pid, SIGCONT); }
  } const resume_server{server.pid()};
  const auto stopped = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return !bus.delivering(); }));
  const auto found = std::chrono::steady_clock::now() - stopped;
  CHECK(bus.metrics().heartbeat_timeouts == 1);
  REQUIRE(eventually([&] { return bus.metrics().gaps == 1; }));  // cleared at once
  // poll_interval + command timeout = 120 ms; 10x for a loaded machine.
  CHECK(found < 1200ms);
  fmt::print("frozen Redis found after {} ms\n",
             std::chrono::duration_cast<std::chrono::milliseconds>(found).count());
  ::kill(server.pid(), SIGCONT);
  REQUIRE(bus.wait_subscribed(10s));
  CHECK(bus.metrics().gaps == 2);
}

TEST_CASE("redis_invalidation_bus delivers only while subscribed, in publish mode too",
          "[redis_tracking][integration]") {
  outgrow_test::redis_server server;
  bus_type bus({.connection = connection(server), .channel = "test:publish"});
  CHECK_FALSE(bus.delivering());  // not started: a connected cache skips its L1
  bus.start();
  REQUIRE(bus.wait_subscribed(10s));
  CHECK(bus.delivering());
  // Publish mode keeps its single gap, on re-subscription (no gap on loss).
  (void)server.command("CLIENT KILL TYPE pubsub");
  REQUIRE(eventually([&] { return bus.metrics().gaps == 1; }));
  REQUIRE(bus.wait_subscribed(10s));
  CHECK(bus.delivering());
  CHECK(bus.metrics().subscribes == 2);
  CHECK(bus.metrics().heartbeat_timeouts == 0);
  bus.stop();
  CHECK_FALSE(bus.delivering());
}

TEST_CASE("redis_invalidation_bus rejects bad tracking configs", "[redis_tracking]") {
  using outgrow::redis_invalidation_mode;
  const auto rejects = [](outgrow::redis_invalidation_bus_config c,
                          std::string_view field) {
    try {
      bus_type bus(std::move(c));
      FAIL("no config_error for " << field);
    } catch (const outgrow::config_error& e) {
      CHECK_THAT(e.what(), Catch::Contains(std::string(field)));
    }
  };
  rejects({.mode = redis_invalidation_mode::tracking, .tracking_prefix = "no-colon"},
          "tracking_prefix");
  // Validated in publish mode too.
  rejects({.tracking_prefix = "no-colon"}, "tracking_prefix");
  rejects({.channel = "__redis__:invalidate", .mode = redis_invalidation_mode::tracking},
          "channel");
  rejects({.mode = static_cast<redis_invalidation_mode>(7)}, "mode");
  // Fine: an empty prefix (every key), both modes on a cluster.
  CHECK_NOTHROW(
      bus_type({.mode = redis_invalidation_mode::tracking, .tracking_prefix = ""}));
  CHECK_NOTHROW(bus_type({.connection = {.cluster = {.nodes = {{"127.0.0.1", 7000}}}}}));
  CHECK_NOTHROW(bus_type({.connection = {.cluster = {.nodes = {{"127.0.0.1", 7000}}}},
                          .mode = redis_invalidation_mode::tracking}));
}

TEST_CASE("redis_invalidation_bus tracks every master of a cluster and follows a failover",
          "[integration][redis_tracking][cluster]") {
  outgrow_test::redis_cluster cluster({.masters = 3, .replicas = 1});
  auto bus_config = [&](std::size_t seed) {
    outgrow::redis_invalidation_bus_config c{
        .channel = "test:track",
        .mode = outgrow::redis_invalidation_mode::tracking,
        .tracking_prefix = std::string(prefix),
        .poll_interval = 20ms};
    c.connection.connect_timeout = 500ms;
    c.connection.command_timeout = 500ms;
    c.connection.reconnect_backoff = outgrow::full_jitter_backoff(5ms, 50ms);
    c.connection.seed = 0x7EAC'C105ULL;
    c.connection.cluster.nodes = {{cluster.node(seed).host(), cluster.node(seed).port()}};
    return c;
  };
  struct recorder {
    std::mutex m;
    std::set<std::string> keys;
    std::uint64_t clears = 0;
    outgrow::invalidation_handler<std::string> handler() {
      return [this](const outgrow::invalidation_event<std::string>& e) {
        std::lock_guard lock(m);
        if (e.key) keys.insert(*e.key);
        if (e.kind == outgrow::invalidation_kind::clear) ++clears;
      };
    }
    bool seen(const std::string& k) {
      std::lock_guard lock(m);
      return keys.count(k) == 1;
    }
    std::uint64_t clear_count() {
      std::lock_guard lock(m);
      return clears;
    }
  };
  bus_type a(bus_config(0));
  bus_type b(bus_config(1));
  recorder at_a, at_b;
  auto sub_a = a.subscribe(at_a.handler());
  auto sub_b = b.subscribe(at_b.handler());
  a.start();
  b.start();
  REQUIRE(a.wait_subscribed(10s));
  REQUIRE(b.wait_subscribed(10s));
  // A key on each master, written by a plain client there (not outgrow): both hear all.
  auto write_on_each_master = [&](std::string_view tag) {
    std::set<std::size_t> masters;
    std::vector<std::string> keys;
    for (int i = 0; masters.size() < 3 && i < 1000; ++i) {
      const std::string key = fmt::format("{}{}", tag, i);
      const std::string redis_key = std::string(prefix) + key;
      const auto owner = cluster.master_of(outgrow::redis_cluster_hash_slot(redis_key));
      REQUIRE(owner);
      if (!masters.insert(*owner).second) continue;
      keys.push_back(key);
      const auto r =
          cluster.node(*owner).command("SET %b x", redis_key.data(), redis_key.size());
      REQUIRE(r->type == REDIS_REPLY_STATUS);
    }
    REQUIRE(keys.size() == 3);
    return keys;
  };
  for (const std::string& key : write_on_each_master("before")) {
    CHECK(eventually([&] { return at_a.seen(key) && at_b.seen(key); }));
  }
  CHECK(a.metrics().tracked >= 3);
  CHECK(a.metrics().subscribes == 1);
  // publish_clear still travels over the channel (sharded, at its slot's master).
  REQUIRE(a.publish_clear());
  CHECK(eventually([&] { return at_b.clear_count() >= 1; }));

  // A master dies: its tracking connection breaks, so both buses clear at once (a gap)
  // and, once its replica is promoted, track the new master too.
  REQUIRE(cluster.wait_until_replicas_synced(30s));
  const auto gaps_before = b.metrics().gaps;
  const std::size_t victim = cluster.master_of(0).value();
  cluster.node(victim).kill();
  CHECK(eventually([&] { return b.metrics().gaps > gaps_before; }));
  REQUIRE(cluster.wait_until_ok(30s));
  CHECK(eventually([&] { return a.delivering() && b.delivering(); }, 20s));
  std::vector<std::string> after;
  int round = 0;
  CHECK(eventually([&] {  // the masters may still settle: write until both hear all
    after = write_on_each_master(fmt::format("after{}-", round++));
    return eventually(
        [&] {
          return std::all_of(after.begin(), after.end(), [&](const std::string& k) {
            return at_a.seen(k) && at_b.seen(k);
          });
        },
        2s);
  }));
  const auto m = b.metrics();
  std::printf(
      "tracking bus on a cluster: %llu keys tracked, %llu subscriptions, %llu gaps "
      "through a master's failover\n",
      static_cast<unsigned long long>(m.tracked),
      static_cast<unsigned long long>(m.subscribes),
      static_cast<unsigned long long>(m.gaps));
  CHECK(m.subscribes >= 2);
  CHECK(m.heartbeat_timeouts + m.gaps >= 1);
}
