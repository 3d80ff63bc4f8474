// A balancing policy written outside the library (the open `balancing_policy` concept),
// used through load_balancer and read_write_splitter.
#include <outgrow/routing/load_balancer.hpp>
#include <outgrow/routing/read_write_splitter.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "catch.hpp"

namespace {

/// The smallest conforming policy (as in load_balancer.hpp's header comment): the first
/// endpoint that is not ejected or failing its checks.
struct first_usable {
  static constexpr std::string_view name = "first_usable";
  std::size_t pick(const outgrow::balancer_view& v, outgrow::pick_context&) const noexcept {
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v.usable(i)) return i;
    return 0;  // panic mode: none usable, all routable
  }
};

/// A policy with per-snapshot state: the heaviest endpoint by configured weight, found
/// once per membership change by build(); draws a random endpoint on ties of weight.
struct heaviest {
  static constexpr std::string_view name = "heaviest";
  static constexpr bool draws_random = true;
  struct table {
    std::size_t best = 0;
    int builds = 0;
  };
  void build(table& t, const outgrow::balancer_view& v,
             const outgrow::load_balancer_config&) const {
    for (std::size_t i = 1; i < v.size(); ++i)
      if (v.weight(i) > v.weight(t.best)) t.best = i;
    ++t.builds;
  }
  std::size_t pick(const outgrow::balancer_view&, const table& t,
                   outgrow::pick_context&) const noexcept {
    return t.best;
  }
};

struct no_pick {
  static constexpr std::string_view name = "no_pick";
};
struct throwing_pick {  // pick must be noexcept: the balancer's pick() is
  static constexpr std::string_view name = "throwing_pick";
  std::size_t pick(const outgrow::balancer_view&, outgrow::pick_context&) const {
    return 0;
  }
};

static_assert(outgrow::balancing_policy<first_usable>);
static_assert(outgrow::balancing_policy<heaviest>);
static_assert(!outgrow::balancing_policy<no_pick>);
static_assert(!outgrow::balancing_policy<throwing_pick>);
// The built-in policies are written the same way.
static_assert(outgrow::balancing_policy<outgrow::round_robin>);
static_assert(outgrow::balancing_policy<outgrow::weighted_round_robin>);
static_assert(outgrow::balancing_policy<outgrow::key_hash>);

template <class Policy>
using lb = outgrow::load_balancer<std::string, Policy, outgrow::manual_clock>;

}  // namespace

TEST_CASE("user policy: first_usable through load_balancer") {
  lb<first_usable> b({"a", "b", "c"},
                     {.consecutive_failures = 2, .max_ejection_fraction = 1.0});
  for (int i = 0; i < 5; ++i) {
    auto l = b.pick();
    REQUIRE(l);
    CHECK(*l == "a");
    l.success();
  }
  // Passive ejection takes "a" out of rotation: the next usable is "b".
  for (int i = 0; i < 2; ++i) b.pick().failure();
  CHECK(b.status("a") == outgrow::endpoint_status::ejected);
  CHECK(*b.pick() == "b");
  // Panic (1 healthy of 3 < 50 %): every endpoint is routable again, usable() tells.
  for (int i = 0; i < 3; ++i) b.report_health("b", false);
  CHECK(b.panic());
  CHECK(b.routable() == 3);
  CHECK(*b.pick() == "c");
  CHECK(b.metrics().panic_picks == 1);
  // pick_if: a policy that is not load_aware falls back to the next accepted endpoint.
  auto l = b.pick_if([](const std::string& e) { return e != "c"; });
  REQUIRE(l);
  CHECK(*l == "a");
}

TEST_CASE("user policy: first_usable reads no seed, no slow start") {
  CHECK_THROWS_WITH(lb<first_usable>({"a"}, {.seed = 1}),
                    "load_balancer: seed must be unset (the default) under first_usable: "
                    "the policy draws no random numbers, got 1");
  CHECK_THROWS_AS(lb<first_usable>({"a"}, {.slow_start_window = std::chrono::seconds{1}}),
                  outgrow::config_error);
  CHECK_NOTHROW(lb<heaviest>({"a"}, {.seed = 1}));  // declares draws_random
}

TEST_CASE("user policy: a per-snapshot table built on membership changes") {
  lb<heaviest> b({{"a", 1.0}, {"b", 3.0}, {"c", 2.0}});
  CHECK(*b.pick() == "b");
  b.set_weight("c", 5.0);
  CHECK(*b.pick() == "c");
  b.drain("c");
  CHECK(*b.pick() == "b");
  b.remove("b");
  CHECK(*b.pick() == "a");
}

TEST_CASE("user policy: first_usable through read_write_splitter") {
  outgrow::read_write_splitter<std::string, first_usable, outgrow::manual_clock> db(
      "primary", {{"r1"}, {"r2"}, {"r3"}},
      {.default_consistency = outgrow::consistency::eventual});
  outgrow::session_token session;
  {
    auto r = db.read(session);
    REQUIRE(r);
    CHECK(*r == "r1");
    CHECK(r.reason() == outgrow::route_reason::replica);
    r.success();
  }
  for (int i = 0; i < 3; ++i) db.report_replica_health("r1", false);
  auto r = db.read(session);
  REQUIRE(r);
  CHECK(*r == "r2");
  auto w = db.write(session);
  REQUIRE(w);
  CHECK(*w == "primary");
}
