#include <outgrow/routing/concurrent_placement.hpp>
#include <outgrow/routing/maglev.hpp>
#include <outgrow/routing/placement.hpp>
#include <outgrow/routing/shard_router.hpp>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/thread_pool.hpp>

#include "catch.hpp"

using outgrow::shard_id;
using outgrow::shard_router;

namespace {
std::vector<std::uint64_t> user_ids(std::uint64_t n) {
  std::vector<std::uint64_t> ids(n);
  std::iota(ids.begin(), ids.end(), std::uint64_t{1});
  return ids;
}
}  // namespace

TEST_CASE("hash_mod routes like the textbook and plans the 4 to 5 pain exactly",
          "[shard_router][hash_mod]") {
  const outgrow::hash_mod<> textbook({.shards = 4, .hash_keys = false});
  CHECK(textbook.route(std::uint64_t{10}) == 2);
  CHECK(textbook.route(std::uint64_t{13}) == 1);

  shard_router<std::uint64_t, outgrow::hash_mod<>> users(outgrow::hash_mod<>(4));
  const auto plan = users.plan(outgrow::hash_mod<>(5));
  CHECK(plan.exact);
  CHECK(plan.moved_fraction == 0.8);  // 16 of the 20 residues mod lcm(4, 5) move
  CHECK(plan.shards_before == 4);
  CHECK(plan.shards_after == 5);
  double total = 0.0;
  for (const auto& m : plan.moves) {
    CHECK(m.from != m.to);
    total += m.fraction;
  }
  CHECK(total == Approx(0.8));
  // Measured on real keys too.
  const auto ids = user_ids(100'000);
  std::size_t moved = 0;
  const outgrow::hash_mod<> five(5);
  for (auto id : ids) {
    if (users.route(id) != five.route(id)) ++moved;
  }
  CHECK(static_cast<double>(moved) / 100'000.0 == Approx(0.8).margin(0.01));
  // Doubling moves half.
  CHECK(users.plan(outgrow::hash_mod<>(8)).moved_fraction == 0.5);
}

TEST_CASE("consistent sharding moves about a fifth of keys from 4 to 5 shards",
          "[shard_router][consistent]") {
  using ring = outgrow::consistent_shards<outgrow::ring_placement<shard_id>>;
  shard_router<std::string, ring> router(ring(4));
  const auto plan = router.plan(ring(5));
  CHECK(plan.exact);
  fmt::print("consistent (ring) 4 -> 5: {:.4f} moved\n", plan.moved_fraction);
  CHECK(plan.moved_fraction <= 1.10 * 0.2);
  CHECK(plan.moved_fraction >= 0.90 * 0.2);
  for (const auto& m : plan.moves) CHECK(m.to == 4);  // only to the new shard

  // Measured on 100k real keys, the same story.
  std::vector<std::string> keys;
  for (int i = 0; i < 100'000; ++i) keys.push_back(fmt::format("user:{}", i));
  const ring five(5);
  std::size_t moved = 0;
  for (const auto& k : keys) {
    if (router.route(k) != five.route(k)) ++moved;
  }
  CHECK(static_cast<double>(moved) / 100'000.0 == Approx(plan.moved_fraction).margin(0.01));
}

TEST_CASE("range_shards puts split points in the range above", "[shard_router][range]") {
  const outgrow::range_shards<std::uint64_t> r({100, 200, 300});
  CHECK(r.shard_count() == 4);
  CHECK(r.route(std::uint64_t{0}) == 0);
  CHECK(r.route(std::uint64_t{99}) == 0);
  CHECK(r.route(std::uint64_t{100}) == 1);  // a split point belongs to the range above
  CHECK(r.route(std::uint64_t{199}) == 1);
  CHECK(r.route(std::uint64_t{200}) == 2);
  CHECK(r.route(std::uint64_t{300}) == 3);
  CHECK(r.route(~std::uint64_t{0}) == 3);

  // Strings, with ranges mapped to arbitrary shards.
  const outgrow::range_shards<std::string> names({"g", "n", "t"}, {0, 1, 0, 2});
  CHECK(names.route(std::string("alice")) == 0);
  CHECK(names.route(std::string("george")) == 1);
  CHECK(names.route(std::string("n")) == 0);
  CHECK(names.route(std::string("zoe")) == 2);
  CHECK(names.shard_count() == 3);

  // Signed bounds keep their order (negative below positive).
  const outgrow::range_shards<int> temps({-10, 0, 25});
  CHECK(temps.route(-40) == 0);
  CHECK(temps.route(-10) == 1);
  CHECK(temps.route(-1) == 1);
  CHECK(temps.route(0) == 2);
  CHECK(temps.route(30) == 3);

  // Skewed split points (most of them in one corner of the key space) still route
  // exactly like std::upper_bound.
  std::vector<std::uint64_t> skewed;
  for (std::uint64_t s = 0; s < 500; ++s) skewed.push_back(1'000 + s);
  skewed.push_back(std::uint64_t{1} << 62);
  const outgrow::range_shards<std::uint64_t> skew(skewed);
  for (std::uint64_t key :
       {std::uint64_t{0}, std::uint64_t{999}, std::uint64_t{1000}, std::uint64_t{1250},
        std::uint64_t{1499}, std::uint64_t{1500}, std::uint64_t{1} << 61,
        std::uint64_t{1} << 62, ~std::uint64_t{0}}) {
    const auto expect = static_cast<shard_id>(
        std::upper_bound(skewed.begin(), skewed.end(), key) - skewed.begin());
    CHECK(skew.route(key) == expect);
  }

  // Agrees with std::upper_bound on every key 0..1000 for 1..40 split points.
  for (std::uint64_t k = 1; k <= 40; ++k) {
    std::vector<std::uint64_t> splits;
    for (std::uint64_t s = 0; s < k; ++s) splits.push_back(7 + s * 23);
    const outgrow::range_shards<std::uint64_t> rr(splits);
    for (std::uint64_t key = 0; key < 1000; ++key) {
      const auto expect = static_cast<shard_id>(
          std::upper_bound(splits.begin(), splits.end(), key) - splits.begin());
      REQUIRE(rr.route(key) == expect);
    }
  }
}

TEST_CASE("range_shards plan lists the moving key ranges", "[shard_router][range]") {
  using ranges = outgrow::range_shards<std::uint64_t>;
  shard_router<std::uint64_t, ranges> router(ranges({100, 200}));
  // Split range [100, 200) at 150; the upper half goes to a new shard 3.
  const ranges next({100, 150, 200}, {0, 1, 3, 2});
  const auto plan = router.plan(next);
  REQUIRE(plan.moves.size() == 1);
  CHECK(plan.moves[0].what == "keys in [150, 200)");
  CHECK(plan.moves[0].from == 1);
  CHECK(plan.moves[0].to == 3);
  CHECK(std::isnan(plan.moved_fraction));  // needs sample keys

  const auto sample = user_ids(299);  // 1..299
  const auto measured = router.plan(next, sample);
  CHECK(measured.sample_size == 299);
  CHECK(measured.moved_fraction == Approx(50.0 / 299.0));
  CHECK(measured.moves[0].fraction == Approx(50.0 / 299.0));
  CHECK(fmt::format("{}", measured) ==
        "reshard plan 3 -> 4 shards: 16.7% of keys move (measured on 299 keys)\n"
        "  1 -> 3: 16.72%  keys in [150, 200)");
}

TEST_CASE("directory geo and entity strategies route by their tables",
          "[shard_router][directory][geo][entity]") {
  outgrow::directory_shards<std::string> dir(4, 0, {{"tenant:big", 3}, {"tenant:vip", 2}});
  CHECK(dir.route("tenant:big") == 3);
  CHECK(dir.route("tenant:small") == 0);
  auto moved = dir;
  moved.assign("tenant:big", 1).assign("tenant:new", 2);
  const auto plan = dir.diff(moved);
  REQUIRE(plan.moves.size() == 2);

  using geo = outgrow::geo_shards<outgrow::hash_mod<>>;
  const geo world({{"eu", outgrow::hash_mod<>(2)},
                   {"us", outgrow::hash_mod<>(3)},
                   {"ap", outgrow::hash_mod<>(1)}},
                  "us");
  CHECK(world.shard_count() == 6);
  shard_router<outgrow::regional_key<std::string_view>, geo> geo_router(world);
  for (int i = 0; i < 100; ++i) {
    const std::string id = fmt::format("user:{}", i);
    const shard_id eu = geo_router.route({"eu", id});
    const shard_id us = geo_router.route({"us", id});
    CHECK(eu < 2);
    CHECK(us >= 2);
    CHECK(us < 5);
    CHECK(geo_router.route({"ap", id}) == 5);
    CHECK(geo_router.route({"mars", id}) == us);  // unknown region: the default group
  }

  const outgrow::entity_shards vertical(3, {{"users", 0}, {"orders", 1}, {"products", 2}});
  CHECK(vertical.route(outgrow::entity_key<int>{"orders", 7}) == 1);
  CHECK(vertical.route(outgrow::entity_key<int>{"reviews", 7}) == 0);
  const outgrow::entity_shards split_orders(4,
                                            {{"users", 0}, {"orders", 3}, {"products", 2}});
  const auto vplan = vertical.diff(split_orders);
  REQUIRE(vplan.moves.size() == 1);
  CHECK(vplan.moves[0].what == "entity orders");
}

TEST_CASE("redis_cluster_slots plugs into the router with an exact plan",
          "[shard_router][redis]") {
  shard_router<std::string_view, outgrow::redis_cluster_slots> router(
      outgrow::redis_cluster_slots(3));
  CHECK(router.route("foo") == 2);  // slot 12182 is in 10923-16383
  CHECK(router.route("{user1000}.following") == router.route("{user1000}.followers"));
  const auto plan = router.plan(outgrow::redis_cluster_slots(4));
  CHECK(plan.exact);
  CHECK(plan.moved_fraction > 0.3);
  CHECK_FALSE(plan.moves.empty());
}

namespace {
// Policies written outside the library, as a user would: the smallest conforming
// types from the header comments of routing/placement.hpp and shard_router.hpp.
struct one_node {
  using node_type = int;
  int n = 0;
  const int* lookup_hash(std::uint64_t) const noexcept { return &n; }
  std::size_t size() const noexcept { return 1; }
};

struct everything_on_zero {
  shard_id route(const auto&) const noexcept { return 0; }
  std::size_t shard_count() const noexcept { return 1; }
};
}  // namespace

TEST_CASE("a user placement policy works with the measuring helpers and the wrapper",
          "[shard_router][placement][user]") {
  static_assert(outgrow::placement<one_node>);
  const one_node p{.n = 7};
  CHECK(outgrow::moved_fraction(p, p, 1'000) == 0.0);
  CHECK(outgrow::peak_to_mean(p, 1'000) == 1.0);
  const auto counts = outgrow::key_counts(p, 1'000);
  REQUIRE(counts.size() == 1);
  CHECK(counts[0].first == 7);
  CHECK(counts[0].second == 1'000);
  // Against a library policy: every key whose owner is not 7 moved.
  const outgrow::maglev_placement<int> m({7, 8});
  const double moved = outgrow::moved_fraction(p, m, 10'000);
  CHECK(moved > 0.4);
  CHECK(moved < 0.6);
  outgrow::concurrent_placement<one_node> shared(one_node{.n = 3});
  CHECK(shared.lookup_hash(42) == 3);
  shared.update([](one_node& q) { q.n = 4; });
  CHECK(shared.lookup_hash(42) == 4);
  CHECK(shared.size() == 1);
}

TEST_CASE("a user shard strategy plugs into the router", "[shard_router][user]") {
  static_assert(outgrow::shard_strategy<everything_on_zero, std::string>);
  shard_router<std::string, everything_on_zero> router(everything_on_zero{});
  CHECK(router.route("user:1") == 0);
  CHECK(router.route("user:2") == 0);
  CHECK(router.shard_count() == 1);
  CHECK(router.load_report().total() == 2);
  // No diff(): the plan knows the shard counts only, until sample keys are given.
  const std::vector<std::string> sample{"a", "b"};
  const auto unknown = router.plan(everything_on_zero{});
  CHECK(std::isnan(unknown.moved_fraction));
  CHECK(unknown.shards_after == 1);
  const auto measured = router.plan(everything_on_zero{}, sample);
  CHECK(measured.moved_fraction == 0.0);
  CHECK(measured.sample_size == 2);
}

TEST_CASE("group_by_shard and scatter_gather cover every key once",
          "[shard_router][scatter]") {
  shard_router<std::uint64_t, outgrow::hash_mod<>> router(outgrow::hash_mod<>(8));
  const auto ids = user_ids(10'000);
  const auto batches = router.group_by_shard(ids);
  std::size_t total = 0;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    total += batches[i].keys.size();
    if (i > 0) CHECK(batches[i - 1].shard < batches[i].shard);
    for (auto k : batches[i].keys) CHECK(router.route(k) == batches[i].shard);
  }
  CHECK(total == ids.size());

  boost::asio::thread_pool pool(4);
  auto sum_ids = [](shard_id, std::span<const std::uint64_t> keys) {
    return std::accumulate(keys.begin(), keys.end(), std::uint64_t{0});
  };
  auto add_all = [](std::vector<std::uint64_t> parts) {
    return std::accumulate(parts.begin(), parts.end(), std::uint64_t{0});
  };
  const std::uint64_t expected = 10'000ULL * 10'001ULL / 2;
  CHECK(router.scatter_gather(ids, sum_ids, add_all, pool.get_executor()) == expected);
  CHECK(router.scatter_gather(ids, sum_ids, add_all) == expected);

  // A failing shard: the exception reaches the caller after every task finished.
  std::atomic<int> ran{0};
  auto fail_on_3 = [&](shard_id s, std::span<const std::uint64_t>) -> std::uint64_t {
    ran.fetch_add(1);
    if (s == 3) throw std::runtime_error("shard 3 down");
    return 1;
  };
  CHECK_THROWS_WITH(router.scatter_gather(ids, fail_on_3, add_all, pool.get_executor()),
                    "shard 3 down");
  CHECK(ran.load() == 8);
  pool.join();
}

TEST_CASE("load report and hot keys find the hot shard", "[shard_router][load]") {
  shard_router<std::string, outgrow::hash_mod<>> router(outgrow::hash_mod<>(4),
                                                        {.hot_key_capacity = 64});
  for (int i = 0; i < 4000; ++i) (void)router.route(fmt::format("user:{}", i));
  const std::string celebrity = "user:taylor";
  for (int i = 0; i < 6000; ++i) (void)router.route(celebrity);
  const auto report = router.load_report();
  CHECK(report.total() == 10'000);
  CHECK(report.peak_shard() == router.route(celebrity));
  CHECK(report.hot_shards().size() == 1);
  const auto top = router.hot_keys(1);
  REQUIRE(top.size() == 1);
  CHECK(top[0].key == celebrity);

  // apply() hands back the old topology's report and starts fresh counters.
  const auto old = router.apply(outgrow::hash_mod<>(8));
  CHECK(old.total() == 10'001);  // the route(celebrity) call above counted too
  CHECK(router.load_report().total() == 0);
  CHECK(router.shard_count() == 8);
}

TEST_CASE("bad router input throws config_error", "[shard_router][errors]") {
  CHECK_THROWS_WITH(outgrow::hash_mod<>(0),
                    "hash_mod: shards must be in [1, 1000000], got 0");
  CHECK_THROWS_WITH(outgrow::range_shards<int>({10, 5}),
                    "range_shards: split_points must be strictly increasing (sorted, no "
                    "duplicate or overlapping ranges), got entry 1 not above entry 0");
  CHECK_THROWS_AS(outgrow::range_shards<int>({10, 10}), outgrow::config_error);
  CHECK_THROWS_WITH(
      outgrow::range_shards<int>({10}, {0}),
      "range_shards: owners.size() must be split_points.size() + 1 = 2, got 1");
  CHECK_THROWS_WITH(outgrow::directory_shards<std::string>(2, 5),
                    "directory_shards: default_shard must be in [0, 1], got 5");
  CHECK_THROWS_WITH((outgrow::consistent_shards<outgrow::ring_placement<shard_id>>(
                        outgrow::ring_placement<shard_id>{})),
                    "consistent_shards: nodes must be at least one shard, got 0");
  CHECK_THROWS_WITH(outgrow::entity_shards(2, {{"users", 0}, {"users", 1}}),
                    "entity_shards: entity must be listed once, got users");
  CHECK_THROWS_WITH((outgrow::geo_shards<outgrow::hash_mod<>>({}, "eu")),
                    "geo_shards: groups must be non-empty, got 0");
  CHECK_THROWS_WITH(
      (shard_router<outgrow::regional_key<>, outgrow::geo_shards<outgrow::hash_mod<>>>(
          outgrow::geo_shards<outgrow::hash_mod<>>({{"eu", outgrow::hash_mod<>(1)}}),
          {.hot_key_capacity = 8})),
      "shard_router: hot_key_capacity must be 0 for keys xxh3_hasher cannot "
      "hash, got 8");
}

TEST_CASE("hostile router input is rejected instead of routing wrongly",
          "[shard_router][errors]") {
  // NaN orders nothing: every key would fall into one range.
  CHECK_THROWS_WITH(outgrow::range_shards<double>({std::nan("")}),
                    "range_shards: split_points must be numbers (NaN orders nothing), got "
                    "entry 0 is NaN");
  CHECK_THROWS_AS(outgrow::range_shards<double>({1.0, std::nan(""), 3.0}),
                  outgrow::config_error);
  CHECK(outgrow::range_shards<double>({1.0, 2.0}).shard_count() == 3);
  // A node id of UINT32_MAX would wrap the shard count to 0.
  outgrow::ring_placement<shard_id> ring;
  ring.add(UINT32_MAX, 1.0);
  CHECK_THROWS_WITH(outgrow::consistent_shards<outgrow::ring_placement<shard_id>>(ring),
                    "consistent_shards: shards must be in [1, 1000000], got 4294967296");
}

TEST_CASE("errors from primitives built inside name the outer primitive",
          "[shard_router][errors]") {
  CHECK_THROWS_WITH(outgrow::consistent_shards<outgrow::ring_placement<shard_id>>(60'000),
                    "consistent_shards: hash_ring: vnodes x total weight must be at most "
                    "8388608 points, got 9600000");
  CHECK_THROWS_WITH(outgrow::consistent_shards<outgrow::maglev_placement<shard_id>>(70'000),
                    "consistent_shards: maglev: number of nodes must be at most table_size "
                    "(65537), got 70000");
  CHECK_THROWS_WITH((shard_router<std::string, outgrow::hash_mod<>>(
                        outgrow::hash_mod<>(4), {.hot_key_capacity = 2'000'000})),
                    "shard_router: hot_key_capacity must be in [0, 1000000], got 2000000");
}

TEST_CASE("routing runs while the topology changes", "[shard_router][stress]") {
  shard_router<std::uint64_t, outgrow::hash_mod<>> router(outgrow::hash_mod<>(4));
  std::atomic<bool> stop{false};
  std::atomic<int> out_of_range{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::uint64_t k = static_cast<std::uint64_t>(t) * 1'000'000;
      while (!stop.load(std::memory_order_relaxed)) {
        if (router.route(k++) >= 8) out_of_range.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 300; ++i)
    (void)router.apply(outgrow::hash_mod<>(4 + static_cast<std::uint32_t>(i % 5)));
  stop = true;
  for (auto& t : threads) t.join();
  CHECK(out_of_range.load() == 0);
  CHECK(router.load_report().out_of_range == 0);
}
