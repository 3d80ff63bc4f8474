// Redis topology benchmarks: what a Redis Cluster, a session and a fleet-wide rate limit
// cost per call, each beside its baseline in the same binary. The binary starts its own
// servers on loopback (tests/support: one redis-server, and a 3-master Redis Cluster
// without replicas), once for the run; one client thread, so the figures are round-trip
// bound: every case UseRealTime().
//
//   BM_tier_get_standalone         redis_tier::get of a present key, one server
//   BM_tier_get_cluster            the same on the cluster (the key's slot's master: one
//                                  hop, routed by the client's slot map)
//   BM_redis_get                   raw hiredis GET of a present key (the floor)
//   BM_session_get                 session_store::get (one EVALSHA: read, sliding expiry,
//                                  index check) beside BM_redis_get
//   BM_session_get_l1_hit          the same with the L1 on, served by the L1 (a lookup
//                                  and a non-blocking read of the tracking connection)
//   BM_session_get_l1_miss         L1 on, every get misses it (lookup + script + insert)
//   BM_redis_rate_limiter_try_acquire  one GCRA decision (one EVALSHA) beside
//   BM_redis_ping                  a raw PING round trip
#include <outgrow/admission/redis_rate_limiter.hpp>
#include <outgrow/redis/redis_tier.hpp>
#include <outgrow/redis/session_store.hpp>

#include <hiredis/hiredis.h>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "redis_cluster.hpp"
#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;

template <class T>
struct started {
  std::unique_ptr<T> server;
  std::string error;
};

/// The server `slot` holds, or null after SkipWithError when it could not start.
template <class T>
T* start_once(benchmark::State& state, started<T>& slot) {
  if (slot.server == nullptr) {
    state.SkipWithError(fmt::format("server did not start: {}", slot.error).c_str());
  }
  return slot.server.get();
}

started<outgrow_test::redis_server>& standalone() {
  static started<outgrow_test::redis_server> slot = [] {
    started<outgrow_test::redis_server> s;
    try {
      s.server = std::make_unique<outgrow_test::redis_server>();
    } catch (const std::exception& e) {
      s.error = e.what();
    }
    return s;
  }();
  return slot;
}

started<outgrow_test::redis_cluster>& cluster() {
  static started<outgrow_test::redis_cluster> slot = [] {
    started<outgrow_test::redis_cluster> s;
    try {
      s.server = std::make_unique<outgrow_test::redis_cluster>(
          outgrow_test::redis_cluster_options{.masters = 3, .replicas = 0});
    } catch (const std::exception& e) {
      s.error = e.what();
    }
    return s;
  }();
  return slot;
}

constexpr int kKeys = 1000;

template <class Tier>
void tier_get_loop(benchmark::State& state, Tier& tier) {
  for (int i = 0; i < kKeys; ++i) {
    if (!tier.put(fmt::format("k{}", i), std::string(64, 'v'))) {
      state.SkipWithError("put failed");
      return;
    }
  }
  int i = 0;
  std::int64_t misses = 0;
  for (auto _ : state) {
    auto v = tier.get(fmt::format("k{}", i++ % kKeys));
    if (!v) ++misses;
    benchmark::DoNotOptimize(v);
  }
  if (misses != 0) state.SkipWithError("a get missed");
}

void BM_tier_get_standalone(benchmark::State& state) {
  auto* s = start_once(state, standalone());
  if (s == nullptr) return;
  outgrow::redis_tier<std::string, std::string> tier(
      {.connection = {.host = s->host(), .port = s->port(), .command_timeout = 1s},
       .key_prefix = "bench:tier:"});
  tier_get_loop(state, tier);
}
BENCHMARK(BM_tier_get_standalone)->UseRealTime();

void BM_tier_get_cluster(benchmark::State& state) {
  auto* c = start_once(state, cluster());
  if (c == nullptr) return;
  outgrow::redis_tier_config config{.key_prefix = "bench:tier:"};
  config.connection.command_timeout = 1s;
  config.connection.cluster.nodes = {{c->node(0).host(), c->node(0).port()}};
  outgrow::redis_tier<std::string, std::string> tier(config);
  tier_get_loop(state, tier);
  state.counters["redirects"] = static_cast<double>(tier.metrics().redirects);
}
BENCHMARK(BM_tier_get_cluster)->UseRealTime();

void BM_redis_get(benchmark::State& state) {
  auto* s = start_once(state, standalone());
  if (s == nullptr) return;
  outgrow_test::redis_context c = s->connect();
  (void)s->command("SET bench:raw %s", std::string(64, 'v').c_str());
  for (auto _ : state) {
    outgrow_test::redis_reply r(
        static_cast<redisReply*>(redisCommand(c.get(), "GET bench:raw")));
    benchmark::DoNotOptimize(r.get());
  }
}
BENCHMARK(BM_redis_get)->UseRealTime();

void BM_session_get(benchmark::State& state) {
  auto* s = start_once(state, standalone());
  if (s == nullptr) return;
  outgrow::session_store<std::string> store(
      {.connection = {.host = s->host(), .port = s->port(), .command_timeout = 1s},
       .key_prefix = "bench:session:"});
  std::vector<outgrow::session_id> ids;
  for (int i = 0; i < 100; ++i) {
    auto id = store.create(fmt::format("user-{}", i), std::string(64, 'd'));
    if (!id) {
      state.SkipWithError("create failed");
      return;
    }
    ids.push_back(*id);
  }
  std::size_t i = 0;
  std::int64_t misses = 0;
  for (auto _ : state) {
    auto got = store.get(ids[i++ % ids.size()]);
    if (!got) ++misses;
    benchmark::DoNotOptimize(got);
  }
  if (misses != 0) state.SkipWithError("a session get missed");
}
BENCHMARK(BM_session_get)->UseRealTime();

/// session_store::get with the L1 on: `capacity` 1000 holds all 100 sessions (hits);
/// capacity 1 holds none of the 100 read in turn (every get misses the L1, pays its
/// lookup and insert beside the script: compare with BM_session_get).
void session_get_l1_loop(benchmark::State& state, std::size_t capacity, bool hits) {
  auto* s = start_once(state, standalone());
  if (s == nullptr) return;
  outgrow::session_store<std::string> store(
      {.connection = {.host = s->host(), .port = s->port(), .command_timeout = 1s},
       .key_prefix = "bench:session-l1:",
       .l1_capacity = capacity});
  std::vector<outgrow::session_id> ids;
  for (int i = 0; i < 100; ++i) {
    auto id = store.create(fmt::format("user-{}", i), std::string(64, 'd'));
    if (!id) {
      state.SkipWithError("create failed");
      return;
    }
    ids.push_back(*id);
  }
  for (int round = 0; hits && round < 2; ++round) {  // fill (a get that slid is not held)
    for (const auto& id : ids) (void)store.get(id);
  }
  const auto before = store.metrics();
  std::size_t i = 0;
  std::int64_t misses = 0;
  for (auto _ : state) {
    auto got = store.get(ids[i++ % ids.size()]);
    if (!got) ++misses;
    benchmark::DoNotOptimize(got);
  }
  const auto after = store.metrics();
  const auto served = static_cast<double>(after.l1_hits - before.l1_hits);
  state.counters["l1_hit_ratio"] = served / static_cast<double>(state.iterations());

  if (misses != 0) state.SkipWithError("a session get missed");
  if (hits && after.l1_hits == before.l1_hits) state.SkipWithError("no L1 hit");
  // The miss case holds one entry and reads 100 sessions in turn, so a hit is rare (a
  // get finding the entry an invalidation race left is possible): at most 1 %.
  if (!hits && served > 0.01 * static_cast<double>(state.iterations())) {
    state.SkipWithError("more than 1 % L1 hits");
  }
}

void BM_session_get_l1_hit(benchmark::State& state) {
  session_get_l1_loop(state, 1000, true);
}
BENCHMARK(BM_session_get_l1_hit)->UseRealTime();

void BM_session_get_l1_miss(benchmark::State& state) {
  session_get_l1_loop(state, 1, false);
}
BENCHMARK(BM_session_get_l1_miss)->UseRealTime();

void BM_redis_ping(benchmark::State& state) {
  auto* s = start_once(state, standalone());
  if (s == nullptr) return;
  outgrow_test::redis_context c = s->connect();
  for (auto _ : state) {
    outgrow_test::redis_reply r(static_cast<redisReply*>(redisCommand(c.get(), "PING")));
    benchmark::DoNotOptimize(r.get());
  }
}
BENCHMARK(BM_redis_ping)->UseRealTime();

void BM_redis_rate_limiter_try_acquire(benchmark::State& state) {
  auto* s = start_once(state, standalone());
  if (s == nullptr) return;
  // A limit high enough that every call is admitted (the script's write path each time).
  outgrow::redis_rate_limiter<> limiter(
      {.connection = {.host = s->host(), .port = s->port(), .command_timeout = 1s},
       .permits_per_second = 1e9,
       .burst = 1'000'000'000,
       .key_prefix = "bench:",
       .failure_mode = outgrow::failure_mode::fail_closed});
  for (auto _ : state) benchmark::DoNotOptimize(limiter.try_acquire());
  const auto m = limiter.metrics();
  if (m.redis_errors != 0 || m.rejected != 0)
    state.SkipWithError("not every call admitted");
}
BENCHMARK(BM_redis_rate_limiter_try_acquire)->UseRealTime();

}  // namespace
