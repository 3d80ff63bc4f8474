#include <outgrow/autoscale/autoscaler.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <outgrow/autoscale/scaling_policy.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>

#include "catch.hpp"
#include "counting_new.hpp"  // evaluate() and observe() must not allocate once warm

using namespace std::chrono_literals;
using outgrow::recommendation;
using outgrow::scale_limit;
using outgrow::scaling_context;

namespace {

/// The smallest conforming policy: always the same count.
struct fixed_count {
  int replicas;
  recommendation recommend(const scaling_context&) const {
    return recommendation::propose(replicas, "fixed");
  }
};
static_assert(outgrow::scaling_policy<fixed_count>);

/// Proposes one more replica than the current count, on every evaluation.
struct one_more {
  std::string_view name() const { return "one_more"; }
  recommendation recommend(const scaling_context& ctx) const {
    return recommendation::propose(ctx.current + 1, "one more", "none");
  }
};

/// Reports missing data for `metric`.
struct always_missing {
  recommendation recommend(const scaling_context&) const {
    return recommendation::missing("queue", "no fresh queue sample: hold");
  }
};

/// Never has an opinion.
struct silent {
  recommendation recommend(const scaling_context&) const {
    return recommendation::none("nothing");
  }
};

/// Not a policy: no recommend().
struct not_a_policy {
  int recommend() const { return 3; }
};
static_assert(!outgrow::scaling_policy<not_a_policy>);

using scaler_t = outgrow::autoscaler<outgrow::manual_clock>;

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

}  // namespace

TEST_CASE("autoscaler takes the largest proposal over its policies", "[autoscaler]") {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 50}, clock);
  scaler.add_policy(fixed_count{3});
  scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 50.0}}}));
  scaler.add_policy(fixed_count{5});
  scaler.set_replicas(4);
  scaler.observe("cpu", 75.0);  // 6
  auto d = scaler.evaluate();
  CHECK(d.desired == 6);
  CHECK(d.policy == "target_tracking");
  scaler.observe("cpu", 50.0);  // 4
  d = scaler.evaluate();
  CHECK(d.desired == 5);
  CHECK(d.policy == "custom");
  CHECK(d.reason == "fixed");
  CHECK(scaler.policy_count() == 3);
}

TEST_CASE("autoscaler clamps to min and max replicas and says so", "[autoscaler]") {
  outgrow::manual_clock clock;
  SECTION("max") {
    scaler_t scaler({.min_replicas = 2, .max_replicas = 8}, clock);
    scaler.add_policy(fixed_count{20});
    scaler.set_replicas(4);
    const auto d = scaler.evaluate();
    CHECK(d.proposed == 20);
    CHECK(d.desired == 8);
    CHECK(d.limited_by == scale_limit::max_replicas);
  }
  SECTION("min") {
    scaler_t scaler({.min_replicas = 2, .max_replicas = 8}, clock);
    scaler.add_policy(fixed_count{0});
    scaler.set_replicas(4);
    const auto d = scaler.evaluate();
    CHECK(d.desired == 2);
    CHECK(d.limited_by == scale_limit::min_replicas);
  }
  SECTION("min applies even without proposals") {
    scaler_t scaler({.min_replicas = 3, .max_replicas = 8}, clock);
    scaler.add_policy(silent{});
    scaler.set_replicas(1);
    const auto d = scaler.evaluate();
    CHECK(d.desired == 3);
    CHECK(d.limited_by == scale_limit::min_replicas);
  }
}

TEST_CASE("autoscaler never scales down on missing data", "[autoscaler]") {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 50}, clock);
  scaler.add_policy(always_missing{});
  scaler.add_policy(
      outgrow::target_tracking({.metrics = {{"cpu", 50.0}},
                                .behavior = {.scale_down = {.stabilization_window = 0s}}}));
  scaler.set_replicas(10);
  scaler.observe("cpu", 10.0);  // target tracking alone: 2
  auto d = scaler.evaluate();
  CHECK(d.desired == 10);
  CHECK(d.missing_data);
  CHECK(d.limited_by == scale_limit::missing_metrics);
  CHECK(d.metric == "queue");
  CHECK(contains(d.reason.view(), "no fresh queue sample"));
  CHECK(scaler.metrics().missing_holds == 1);

  scaler.observe("cpu", 100.0);  // 20: a scale-up goes ahead
  d = scaler.evaluate();
  CHECK(d.desired == 20);
  CHECK(d.missing_data);
  CHECK(d.limited_by == scale_limit::none);
}

TEST_CASE("autoscaler holds when every metric is stale", "[autoscaler]") {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 50, .stale_after = 30s}, clock);
  scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 50.0}, {"rps", 10.0}}}));
  scaler.set_replicas(6);
  scaler.observe("cpu", 5.0);
  scaler.observe("rps", 1.0);
  clock.advance(31s);
  const auto d = scaler.tick();
  CHECK(d.desired == 6);
  CHECK(d.limited_by == scale_limit::missing_metrics);
  CHECK(contains(d.reason.view(), "2 of 2 metrics missing"));
}

TEST_CASE("autoscaler without an opinion holds the current count", "[autoscaler]") {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 50}, clock);
  auto d = scaler.evaluate();
  CHECK(d.desired == 1);  // starts at min_replicas
  CHECK(d.reason == "no policies");
  scaler.add_policy(silent{});
  scaler.set_replicas(7);
  d = scaler.evaluate();
  CHECK(d.desired == 7);
  CHECK_FALSE(d.changes());
  CHECK(d.reason == "no policy proposed a change");
}

TEST_CASE("autoscaler tick calls the actuator and records the new count", "[autoscaler]") {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 50}, clock);
  scaler.add_policy(one_more{});
  scaler.set_replicas(3);
  std::vector<int> calls;
  scaler.on_scale([&](const outgrow::scaling_decision& d) { calls.push_back(d.desired); });
  auto d = scaler.tick();
  CHECK(d.desired == 4);
  CHECK(d.policy == "one_more");
  d = scaler.tick();
  CHECK(d.current == 4);
  CHECK(d.desired == 5);
  CHECK(calls == std::vector<int>{4, 5});
  const auto s = scaler.metrics();
  CHECK(s.current == 5);
  CHECK(s.not_ready == 2);  // added replicas start not ready
  CHECK(s.scale_ups == 2);
  CHECK(s.evaluations == 2);
  scaler.set_replicas(5, 0);
  CHECK(scaler.metrics().not_ready == 0);
  // evaluate() alone never acts.
  scaler.evaluate();
  CHECK(calls.size() == 2);
  CHECK(scaler.metrics().current == 5);
}

TEST_CASE("autoscaler actuator refusing or throwing keeps the count", "[autoscaler]") {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 50}, clock);
  scaler.add_policy(one_more{});
  scaler.set_replicas(3);
  bool fail = true;
  scaler.on_scale([&](const outgrow::scaling_decision&) { return !fail; });
  scaler.tick();
  CHECK(scaler.metrics().current == 3);
  CHECK(scaler.metrics().actuation_failures == 1);
  fail = false;
  scaler.tick();
  CHECK(scaler.metrics().current == 4);
  scaler.on_scale([](const outgrow::scaling_decision&) -> bool {
    throw std::runtime_error("cloud API down");
  });
  CHECK_THROWS_AS(scaler.tick(), std::runtime_error);
  CHECK(scaler.metrics().current == 4);
  CHECK(scaler.metrics().actuation_failures == 2);
}

TEST_CASE("autoscaler rejects out of order and invalid samples", "[autoscaler]") {
  outgrow::manual_clock clock;
  scaler_t scaler({}, clock);
  clock.advance(10s);
  CHECK(scaler.observe("cpu", 50.0));
  CHECK_FALSE(scaler.observe("cpu", 60.0, clock.now() - 1s));
  CHECK_FALSE(scaler.observe("cpu", std::numeric_limits<double>::quiet_NaN()));
  CHECK_FALSE(scaler.observe("cpu", std::numeric_limits<double>::infinity()));
  CHECK_FALSE(scaler.observe("cpu", -1.0));
  CHECK(scaler.observe("rps", 1.0, clock.now() - 1s));  // another metric has its own order
  const auto s = scaler.metrics();
  CHECK(s.samples == 2);
  CHECK(s.rejected_samples == 4);
}

TEST_CASE("autoscaler keeps samples for the configured history only", "[autoscaler]") {
  outgrow::manual_clock clock;
  scaler_t scaler({.stale_after = 1min, .history = 10min}, clock);
  struct counter_policy {
    std::size_t* seen;
    recommendation recommend(const scaling_context& ctx) {
      *seen = ctx.series("cpu")->size();
      return recommendation::none("counting");
    }
  };
  std::size_t seen = 0;
  scaler.add_policy(counter_policy{&seen});
  for (int i = 0; i < 100; ++i) {
    scaler.observe("cpu", 50.0);
    clock.advance(15s);
  }
  scaler.evaluate();
  CHECK(seen == 40);  // 10 min of 15 s samples
}

TEST_CASE("autoscaler find_policy returns the policy added", "[autoscaler]") {
  scaler_t scaler;
  scaler.add_policy(outgrow::step_scaling());
  scaler.add_policy(outgrow::predictive_scaling({.target_per_replica = 100.0}));
  auto* p = scaler.find_policy<outgrow::predictive_scaling>();
  REQUIRE(p != nullptr);
  CHECK(p->config().target_per_replica == 100.0);
  CHECK(scaler.find_policy<outgrow::backlog_scaling>() == nullptr);
}

TEST_CASE("autoscaler decisions and stats print with fmt", "[autoscaler]") {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 5}, clock);
  scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 50.0}}}));
  scaler.set_replicas(4);
  scaler.observe("cpu", 100.0);
  const auto d = scaler.evaluate();
  const std::string text = fmt::format("{}", d);
  CHECK(text ==
        "scaling_decision{current=4, desired=5, up, by target_tracking/cpu: "
        "\"cpu 100/50: ratio 2.000 -> 8 replicas\", limited_by=max_replicas}");
  CHECK(fmt::format("{}", scaler.last_decision()) == text);
  CHECK(fmt::format("{}", scaler.metrics()) ==
        "autoscaler_metrics{evaluations=1, scale_ups=1, scale_downs=0, missing_holds=0, "
        "samples=1, rejected_samples=0, actuation_failures=0, current=4, not_ready=0, "
        "desired=5}");
  CHECK(
      fmt::format("{}", outgrow::metric_sample{outgrow::scaling_time_point{2s}, 71.5, 3}) ==
      "metric_sample{at=2000ms, value=71.5, reporting=3}");
}

TEST_CASE("autoscaler rejects bad configuration with config_error", "[autoscaler]") {
  using outgrow::config_error;
  CHECK_THROWS_AS(scaler_t({.min_replicas = 5, .max_replicas = 4}), config_error);
  CHECK_THROWS_AS(scaler_t({.min_replicas = -1}), config_error);
  CHECK_THROWS_AS(scaler_t({.max_replicas = 0}), config_error);
  CHECK_THROWS_AS(scaler_t({.stale_after = -1s}), config_error);
  CHECK_THROWS_AS(scaler_t({.stale_after = 2min, .history = 1min}), config_error);
  try {
    scaler_t bad({.min_replicas = 5, .max_replicas = 4});
    FAIL("no exception");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()) == "autoscaler: min_replicas must be in [0, 4], got 5");
  }
  scaler_t scaler({.stale_after = 10s, .history = 10s});
  CHECK_THROWS_AS(scaler.add_policy(outgrow::target_tracking()),
                  config_error);  // 15 s periods
  CHECK_THROWS_AS(scaler.set_replicas(-1), config_error);
  CHECK_THROWS_AS(scaler.set_replicas(3, 4), config_error);
  boost::asio::io_context io;
  CHECK_THROWS_AS(scaler.start(io.get_executor(), 0s), config_error);
}

TEST_CASE("autoscaler periodic driver ticks on the executor until stopped",
          "[autoscaler]") {
  boost::asio::io_context io;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 100});
  scaler.add_policy(one_more{});
  int ticks = 0;
  scaler.on_scale([&](const outgrow::scaling_decision&) {
    if (++ticks == 3) scaler.stop();  // the actuator may stop the driver
  });
  scaler.start(io.get_executor(), 1ms);
  CHECK(scaler.running());
  CHECK_THROWS_AS(scaler.start(io.get_executor(), 1ms), outgrow::config_error);
  io.run();  // returns once the driver stopped re-arming its timer
  CHECK(ticks == 3);
  CHECK_FALSE(scaler.running());
  CHECK(scaler.metrics().current == 4);
}

TEST_CASE("autoscaler destroyed while its driver is armed does not tick again",
          "[autoscaler]") {
  boost::asio::io_context io;
  int ticks = 0;
  {
    scaler_t scaler;
    scaler.add_policy(one_more{});
    scaler.on_scale([&](const outgrow::scaling_decision&) { ++ticks; });
    scaler.start(io.get_executor(), 1ms);
  }
  io.run();
  CHECK(ticks == 0);
}

TEST_CASE("autoscaler observe and a threaded driver run concurrently",
          "[autoscaler][threads]") {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 1000}, clock);
  scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 50.0}}}));
  std::atomic<int> actuations{0};
  scaler.on_scale([&](const outgrow::scaling_decision&) { actuations.fetch_add(1); });
  boost::asio::thread_pool pool(2);
  scaler.start(pool.get_executor(), 100us);
  constexpr int per_thread = 2000;
  std::vector<std::thread> feeders;
  std::atomic<int> accepted{0};
  for (int f = 0; f < 2; ++f) {
    feeders.emplace_back([&, f] {
      for (int i = 0; i < per_thread; ++i) {
        if (scaler.observe(f == 0 ? "cpu" : "rps", 40.0 + i % 30)) accepted.fetch_add(1);
        if (i % 100 == 0) scaler.set_replicas(4 + i % 3);
        if (f == 0 && i % 50 == 0) clock.advance(1s);
        if (i % 500 == 0) (void)scaler.metrics();
      }
    });
  }
  for (auto& t : feeders) t.join();
  scaler.stop();
  pool.join();
  const auto s = scaler.metrics();
  CHECK(s.samples == static_cast<std::uint64_t>(accepted.load()));
  CHECK(s.samples + s.rejected_samples == 2 * per_thread);
}

TEST_CASE("autoscaler observe and tick allocate nothing in steady state", "[autoscaler]") {
  outgrow::manual_clock clock;
  scaler_t scaler({.min_replicas = 1, .max_replicas = 100}, clock);
  scaler.add_policy(outgrow::target_tracking(
      {.metrics = {{"cpu", 60.0}, {"rps", 100.0, outgrow::metric_target_type::total}}}));
  scaler.add_policy(outgrow::step_scaling());
  scaler.add_policy(
      outgrow::backlog_scaling({.metric = "jobs", .target_per_replica = 50.0}));
  scaler.add_policy(outgrow::predictive_scaling(
      {.metric = "rps", .target_per_replica = 100.0, .period = 1h, .min_history = 1h}));
  int changes = 0;
  scaler.on_scale([&](const outgrow::scaling_decision&) { ++changes; });
  scaler.set_replicas(10);
  auto feed = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      const double wave = 1.0 + 0.5 * std::sin(i / 20.0);  // load goes up and down
      const double replicas = std::max(1, scaler.metrics().current);
      scaler.observe("cpu", 60.0 * wave * 10.0 / replicas);
      scaler.observe("rps", 1000.0 * wave);
      scaler.observe("jobs", 400.0 * wave);
      scaler.set_replicas(scaler.metrics().current, 0);
      scaler.tick();
      clock.advance(15s);
    }
  };
  feed(0, 600);  // 2.5 h: histories reach their steady size
  const auto before = outgrow_test::allocations();
  const int changes_before = changes;
  feed(600, 1200);
  CHECK(outgrow_test::allocations() == before);
  CHECK(changes > changes_before);  // it kept scaling meanwhile
}
