// Conformance of aimd_limit, vegas_limit, gradient2_limit and windowed_limit with
// Netflix concurrency-limits (concurrency-limits-core, Java). Each case names the Netflix
// test it ports (src/test/java/com/netflix/concurrency/limits/...); cases marked
// "derived" were computed by running Netflix's update rule (AIMDLimit.java @784c960d,
// VegasLimit.java, Gradient2Limit.java @f2528def, WindowedLimit.java @25a05f1f) on the
// given samples, where Netflix has no test of its own. Deliberate difference: an initial
// limit outside [min, max] is a config_error here (Netflix clamps it at the first sample),
// so AIMDLimitTest.testDefault (initial 10 under min 20) is not ported.
#include <outgrow/admission/limit_algorithms.hpp>

#include <chrono>
#include <cmath>
#include <initializer_list>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::aimd_limit;
using outgrow::gradient2_limit;
using outgrow::vegas_limit;
using ns = std::chrono::nanoseconds;

namespace {
struct sample {
  ns rtt;
  int in_flight;
  bool dropped;
};

template <class L>
std::vector<int> run(L& l, std::initializer_list<sample> samples) {
  std::vector<int> out;
  for (const sample& s : samples) {
    l.on_sample(0ns, s.rtt, s.in_flight, s.dropped);
    out.push_back(l.limit());
  }
  return out;
}
}  // namespace

// ---- AIMD (AIMDLimitTest.java) ------------------------------------------------------

TEST_CASE("netflix AIMDLimitTest increaseOnSuccess", "[limit_conformance]") {
  aimd_limit l({.initial_limit = 20});
  CHECK(run(l, {{1ms, 10, false}}) == std::vector<int>{21});
}

TEST_CASE("netflix AIMDLimitTest decreaseOnDrops", "[limit_conformance]") {
  aimd_limit l({.initial_limit = 30});
  CHECK(run(l, {{0ns, 0, true}}) == std::vector<int>{27});
}

TEST_CASE("netflix AIMD derived: timeout, min and max clamps, app-limited, custom backoff",
          "[limit_conformance]") {
  aimd_limit slow({.initial_limit = 30});
  CHECK(run(slow, {{6s, 0, false}}) == std::vector<int>{27});  // rtt over the 5 s timeout
  aimd_limit at_min({.initial_limit = 20});
  CHECK(run(at_min, {{0ns, 0, true}}) == std::vector<int>{20});  // int(18) -> min 20
  aimd_limit half({.initial_limit = 30});
  CHECK(run(half, {{1ms, 14, false}, {1ms, 15, false}}) == std::vector<int>{30, 31});
  aimd_limit at_max({.initial_limit = 200});
  CHECK(run(at_max, {{1ms, 100, false}}) == std::vector<int>{200});
  aimd_limit custom(
      {.initial_limit = 50, .min_limit = 1, .max_limit = 100, .backoff_ratio = 0.5});
  CHECK(run(custom, {{1ms, 25, false},
                     {1ms, 25, true},
                     {1ms, 0, true},
                     {1ms, 6, false},
                     {5s, 6, false},
                     {5s + 1ns, 6, false}}) == std::vector<int>{51, 25, 12, 13, 13, 6});
}

// ---- Vegas (VegasLimitTest.java) ----------------------------------------------------

namespace {
// VegasLimitTest.create(): alpha 3, beta 6, smoothing 1, initial 10, maxConcurrency 20.
outgrow::vegas_limit_config netflix_create() {
  return {.initial_limit = 10,
          .max_limit = 20,
          .smoothing = 1.0,
          .alpha = [](int) { return 3; },
          .beta = [](int) { return 6; },
          .seed = 1};
}
}  // namespace

TEST_CASE("netflix VegasLimitTest largeLimitIncrease", "[limit_conformance]") {
  vegas_limit l({.initial_limit = 10000, .max_limit = 20000, .seed = 1});
  CHECK(run(l, {{10s, 5000, false}, {10s, 6000, false}}) == std::vector<int>{10000, 10024});
}

TEST_CASE("netflix VegasLimitTest increaseLimit", "[limit_conformance]") {
  vegas_limit l(netflix_create());
  CHECK(run(l, {{10ms, 10, false}, {10ms, 11, false}}) == std::vector<int>{10, 16});
}

TEST_CASE("netflix VegasLimitTest decreaseLimit", "[limit_conformance]") {
  vegas_limit l(netflix_create());
  CHECK(run(l, {{10ms, 10, false}, {50ms, 11, false}}) == std::vector<int>{10, 9});
}

TEST_CASE("netflix VegasLimitTest noChangeIfWithinThresholds", "[limit_conformance]") {
  vegas_limit l(netflix_create());
  CHECK(run(l, {{10ms, 10, false}, {14ms, 14, false}}) == std::vector<int>{10, 10});
}

TEST_CASE("netflix VegasLimitTest decreaseSmoothing", "[limit_conformance]") {
  vegas_limit l({.initial_limit = 100,
                 .max_limit = 200,
                 .smoothing = 0.5,
                 .decrease = [](double c) { return c / 2; },
                 .seed = 1});
  CHECK(run(l, {{10ms, 100, false}, {20ms, 100, false}, {20ms, 100, false}}) ==
        std::vector<int>{100, 75, 56});
}

TEST_CASE("netflix VegasLimitTest decreaseWithoutSmoothing", "[limit_conformance]") {
  vegas_limit l({.initial_limit = 100,
                 .max_limit = 200,
                 .decrease = [](double c) { return c / 2; },
                 .seed = 1});
  CHECK(run(l, {{10ms, 100, false}, {20ms, 100, false}, {20ms, 100, false}}) ==
        std::vector<int>{100, 50, 25});
}

TEST_CASE("netflix Vegas derived: defaults, drops, app-limited, new minimum, max clamp",
          "[limit_conformance]") {
  vegas_limit drop({.seed = 1});
  CHECK(run(drop, {{10ms, 20, false}, {10ms, 20, true}}) == std::vector<int>{20, 19});
  vegas_limit steps({.seed = 1});
  CHECK(run(steps, {{10ms, 20, false},
                    {12ms, 20, false},
                    {11ms, 20, false},
                    {20ms, 20, false},
                    {10ms, 5, false}}) == std::vector<int>{20, 20, 21, 20, 20});
  vegas_limit new_min({.seed = 1});
  CHECK(run(new_min, {{10ms, 20, false}, {5ms, 20, true}}) == std::vector<int>{20, 20});
  vegas_limit near_max({.initial_limit = 990, .max_limit = 1000, .seed = 1});
  CHECK(run(near_max, {{10ms, 990, false}, {10ms, 990, false}, {10ms, 1000, false}}) ==
        std::vector<int>{990, 1000, 1000});
}

TEST_CASE("netflix Log10RootIntFunctionTest", "[limit_conformance]") {
  CHECK(outgrow::detail::log10_root(0) == 1);
  CHECK(outgrow::detail::log10_root(100) == 2);
  CHECK(outgrow::detail::log10_root(10000) == 4);
}

// ---- Gradient2 (derived: Netflix has no Gradient2LimitTest) --------------------------

TEST_CASE("netflix Gradient2 derived: steady growth of 0.8 per sample",
          "[limit_conformance]") {
  gradient2_limit l;
  std::vector<int> got;
  for (int i = 0; i < 12; ++i) {
    l.on_sample(0ns, 10ms, 100, false);
    got.push_back(l.limit());
  }
  CHECK(got == std::vector<int>{20, 21, 22, 23, 24, 24, 25, 26, 27, 28, 28, 29});
  gradient2_limit third_party({.max_limit = 200});  // also ConcurrencyEvaluationTest
  CHECK(run(third_party, {{10s, 5000, false}, {10s, 6000, false}}) ==
        std::vector<int>{20, 21});
}

TEST_CASE("netflix Gradient2 derived: application-limited samples do not grow it",
          "[limit_conformance]") {
  gradient2_limit l;
  CHECK(run(l, {{10ms, 9, false}, {10ms, 9, false}, {10ms, 9, false}, {10ms, 10, false}}) ==
        std::vector<int>{20, 20, 20, 20});
}

TEST_CASE("netflix Gradient2 derived: a latency spike cuts the limit, recovery regrows it",
          "[limit_conformance]") {
  gradient2_limit spike({.initial_limit = 100, .min_limit = 1});
  std::vector<int> got;
  for (int i = 0; i < 10; ++i) {
    spike.on_sample(0ns, 10ms, 100, false);
    got.push_back(spike.limit());
  }
  for (int i = 0; i < 3; ++i) {
    spike.on_sample(0ns, 100ms, 100, false);
    got.push_back(spike.limit());
  }
  CHECK(got ==
        std::vector<int>{100, 101, 102, 103, 104, 104, 105, 106, 107, 108, 98, 89, 80});

  gradient2_limit recovery({.initial_limit = 100, .min_limit = 1});
  got.clear();
  for (int i = 0; i < 10; ++i) {
    recovery.on_sample(0ns, 100ms, 100, false);
    got.push_back(recovery.limit());
  }
  for (int i = 0; i < 3; ++i) {
    recovery.on_sample(0ns, 10ms, 100, false);
    got.push_back(recovery.limit());
  }
  CHECK(got ==
        std::vector<int>{100, 101, 102, 103, 104, 104, 105, 106, 107, 108, 108, 109, 110});
}

TEST_CASE("netflix Gradient2 derived: rtt tolerance and ignored drops",
          "[limit_conformance]") {
  gradient2_limit l({.initial_limit = 100, .min_limit = 1});
  for (int i = 0; i < 10; ++i) l.on_sample(0ns, 10ms, 100, false);
  CHECK(run(l, {{14ms, 100, false}, {20ms, 100, false}, {30ms, 100, false}}) ==
        std::vector<int>{108, 104, 94});
  gradient2_limit drops;
  CHECK(run(drops, {{10ms, 100, true}, {10ms, 100, true}, {10ms, 100, true}}) ==
        std::vector<int>{20, 21, 22});
}

// ---- WindowedLimit (ImmutableAverageSampleWindowTest.java + derived) ------------------

namespace {
struct recording_limit {
  struct seen {
    ns rtt;
    int in_flight;
    bool dropped;
  };
  std::vector<seen>* log;
  int limit() const noexcept { return 10; }
  void on_sample(ns, ns rtt, int in_flight, bool dropped) {
    log->push_back({rtt, in_flight, dropped});
  }
};
}  // namespace

TEST_CASE("netflix WindowedLimit average window and window boundaries",
          "[limit_conformance]") {
  std::vector<recording_limit::seen> log;
  outgrow::windowed_limit<recording_limit> w(recording_limit{&log});
  // The first sample always closes a (one-sample, not ready) window: discarded.
  w.on_sample(0ns, 5ms, 1, false);
  CHECK(log.empty());
  // Ten samples within the next second, then one after it closes the window.
  for (int i = 0; i < 10; ++i) w.on_sample(100ms, 5ms + ns{i * 1000}, i + 1, i == 3);
  CHECK(log.empty());
  w.on_sample(1100ms, 5ms, 2, false);
  REQUIRE(log.size() == 1);
  // Average of 11 rtts (integer division), the largest in-flight count, any drop.
  const std::int64_t sum = 10 * 5'000'000 + 45'000 + 5'000'000;
  CHECK(log[0].rtt == ns{sum / 11});
  CHECK(log[0].in_flight == 10);
  CHECK(log[0].dropped);
  // Faster than min_rtt_threshold (100 us): ignored entirely, even a drop.
  w.on_sample(1200ms, 50us, 99, true);
  for (int i = 0; i < 10; ++i) w.on_sample(1300ms, 1ms, 1, false);
  w.on_sample(2200ms, 1ms, 1, false);
  REQUIRE(log.size() == 2);
  CHECK(log[1].in_flight == 1);
  CHECK_FALSE(log[1].dropped);
}

TEST_CASE("limit algorithms reject bad configuration", "[limit_conformance]") {
  using outgrow::config_error;
  CHECK_THROWS_WITH(aimd_limit({.initial_limit = 10}),
                    "aimd_limit: initial_limit must be in [20, 200], got 10");
  CHECK_THROWS_WITH(aimd_limit({.min_limit = 50, .max_limit = 10}),
                    "aimd_limit: max_limit must be at least min_limit, got 10");
  CHECK_THROWS_WITH(aimd_limit({.backoff_ratio = 1.0}),
                    "aimd_limit: backoff_ratio must be in [0.5, 1), got 1");
  CHECK_THROWS_AS(aimd_limit({.timeout = -1s}), config_error);
  CHECK_THROWS_AS(vegas_limit({.smoothing = 0.0}), config_error);
  CHECK_THROWS_AS(vegas_limit({.initial_limit = 2000}), config_error);
  CHECK_THROWS_WITH(gradient2_limit({.rtt_tolerance = 0.5}),
                    "gradient2_limit: rtt_tolerance must be in [1, 100], got 0.5");
  CHECK_THROWS_AS(gradient2_limit({.smoothing = std::nan("")}), config_error);
  CHECK_THROWS_AS(gradient2_limit({.queue_size = -1}), config_error);
  CHECK_THROWS_AS(
      outgrow::windowed_limit<gradient2_limit>(gradient2_limit{}, {.window_size = 5}),
      config_error);
  CHECK_THROWS_AS(vegas_limit({.seed = 1}).on_sample(0ns, 0ns, 1, false),
                  std::invalid_argument);
}
