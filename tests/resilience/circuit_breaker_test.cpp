#include <outgrow/resilience/circuit_breaker.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::breaker_state;
using outgrow::manual_clock;

namespace {
template <class Window = outgrow::consecutive_failures>
using breaker = outgrow::circuit_breaker<Window, manual_clock>;

template <class B>
void fail(B& cb, int n = 1) {
  for (int i = 0; i < n; ++i) {
    auto p = cb.try_acquire();
    REQUIRE(p);
    p.failure();
  }
}
template <class B>
void succeed(B& cb, int n = 1) {
  for (int i = 0; i < n; ++i) {
    auto p = cb.try_acquire();
    REQUIRE(p);
    p.success();
  }
}

struct recorder {
  std::vector<std::pair<breaker_state, breaker_state>> seen;
  std::vector<std::chrono::nanoseconds> open_for;
  auto listener() {
    return [this](const outgrow::breaker_transition& t) {
      seen.emplace_back(t.from, t.to);
      if (t.to == breaker_state::open) open_for.push_back(t.open_for);
    };
  }
};
}  // namespace

TEST_CASE("five consecutive failures open the breaker and a success resets the count",
          "[circuit_breaker]") {
  manual_clock clock;
  breaker<> cb({}, clock);
  recorder r;
  cb.on_transition(r.listener());
  fail(cb, 4);
  succeed(cb);  // resets the run
  fail(cb, 4);
  CHECK(cb.state() == breaker_state::closed);
  fail(cb);
  CHECK(cb.state() == breaker_state::open);
  CHECK_FALSE(cb.try_acquire());
  CHECK_FALSE(cb.try_acquire());
  const auto m = cb.metrics();
  CHECK(m.failures == 9);
  CHECK(m.successes == 1);
  CHECK(m.rejected == 2);
  CHECK(m.calls() == 12);
  REQUIRE(r.seen.size() == 1);
  CHECK(r.seen[0] == std::pair{breaker_state::closed, breaker_state::open});
  CHECK(r.open_for[0] == 30s);
}

TEST_CASE("open turns half_open after open_for and one probe decides",
          "[circuit_breaker]") {
  manual_clock clock;
  breaker<> cb({.failure_threshold = 2, .open_for = 10s}, clock);
  recorder r;
  cb.on_transition(r.listener());
  fail(cb, 2);
  clock.advance(9999ms);
  CHECK_FALSE(cb.try_acquire());
  CHECK(cb.state() == breaker_state::open);
  clock.advance(1ms);
  auto probe = cb.try_acquire();
  REQUIRE(probe);
  CHECK(cb.state() == breaker_state::half_open);
  CHECK_FALSE(cb.try_acquire());  // only one probe (half_open_calls = 1)
  probe.success();
  CHECK(cb.state() == breaker_state::closed);
  succeed(cb);
  REQUIRE(r.seen.size() == 3);
  CHECK(r.seen[1] == std::pair{breaker_state::open, breaker_state::half_open});
  CHECK(r.seen[2] == std::pair{breaker_state::half_open, breaker_state::closed});
}

TEST_CASE("a failed probe re-opens with growing open_for up to the cap",
          "[circuit_breaker]") {
  manual_clock clock;
  breaker<> cb({.failure_threshold = 1,
                .open_for = 1s,
                .open_for_multiplier = 2.0,
                .max_open_for = 5s},
               clock);
  recorder r;
  cb.on_transition(r.listener());
  fail(cb);  // open 1s
  for (auto wait : {1s, 2s, 4s, 5s, 5s}) {
    clock.advance(wait - 1ms);
    CHECK_FALSE(cb.try_acquire());
    clock.advance(1ms);
    fail(cb);  // the probe fails: re-open, longer
  }
  REQUIRE(r.open_for.size() == 6);
  CHECK(r.open_for == std::vector<std::chrono::nanoseconds>{1s, 2s, 4s, 5s, 5s, 5s});
  // Closing resets the growth.
  clock.advance(5s);
  succeed(cb);
  CHECK(cb.state() == breaker_state::closed);
  fail(cb);
  CHECK(r.open_for.back() == 1s);
}

TEST_CASE("half_open needs success_threshold successes among half_open_calls probes",
          "[circuit_breaker]") {
  manual_clock clock;
  breaker<> cb({.failure_threshold = 1,
                .open_for = 1s,
                .half_open_calls = 3,
                .success_threshold = 2},
               clock);
  fail(cb);
  clock.advance(1s);
  auto a = cb.try_acquire();
  auto b = cb.try_acquire();
  auto c = cb.try_acquire();
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(c);
  CHECK_FALSE(cb.try_acquire());
  c.ignore();  // an ignored probe gives its slot back
  auto d = cb.try_acquire();
  REQUIRE(d);
  a.success();
  CHECK(cb.state() == breaker_state::half_open);
  b.success();
  CHECK(cb.state() == breaker_state::closed);
  d.failure();  // stale: the breaker already closed on two successes
  CHECK(cb.state() == breaker_state::closed);
}

TEST_CASE("count window trips on failure rate only after minimum calls",
          "[circuit_breaker][window]") {
  manual_clock clock;
  breaker<outgrow::count_window> cb(
      {.window_size = 10, .minimum_calls = 6, .failure_rate_threshold = 50.0}, clock);
  fail(cb, 4);
  succeed(cb);
  CHECK(cb.state() == breaker_state::closed);  // 5 calls < minimum 6, though 80 % failed
  succeed(cb);  // the 6th call completes minimum_calls: 4 of 6 = 67 % >= 50 %
  CHECK(cb.state() == breaker_state::open);
  CHECK(cb.metrics().window_calls == 6);
  // The window is kept while open (the metrics show the rate that tripped it) and
  // cleared when the breaker closes again.
  CHECK(cb.metrics().failure_rate == Approx(400.0 / 6.0));

  // Below the threshold at minimum_calls, a later failure trips it.
  manual_clock clock2;
  breaker<outgrow::count_window> cb2(
      {.window_size = 10, .minimum_calls = 4, .failure_rate_threshold = 50.0}, clock2);
  fail(cb2);
  succeed(cb2, 3);  // 25 % at minimum: stays closed
  CHECK(cb2.state() == breaker_state::closed);
  fail(cb2);  // 2 of 5 = 40 %
  CHECK(cb2.state() == breaker_state::closed);
  fail(cb2);  // 3 of 6 = 50 %
  CHECK(cb2.state() == breaker_state::open);
}

TEST_CASE("count window forgets calls older than its size", "[circuit_breaker][window]") {
  manual_clock clock;
  breaker<outgrow::count_window> cb(
      {.window_size = 4, .minimum_calls = 4, .failure_rate_threshold = 75.0}, clock);
  fail(cb, 2);
  succeed(cb, 6);  // the two failures slid out
  CHECK(cb.metrics().window_calls == 4);
  CHECK(cb.metrics().failure_rate == 0.0);
  fail(cb, 2);
  CHECK(cb.metrics().failure_rate == 50.0);
  CHECK(cb.state() == breaker_state::closed);
  fail(cb);  // 3 of the last 4
  CHECK(cb.state() == breaker_state::open);
}

TEST_CASE("time window counts the last N seconds", "[circuit_breaker][window]") {
  manual_clock clock;
  breaker<outgrow::time_window> cb(
      {.window_size = 10, .minimum_calls = 4, .failure_rate_threshold = 50.0}, clock);
  fail(cb, 3);
  clock.advance(11s);  // those failures age out
  succeed(cb, 2);
  fail(cb);
  CHECK(cb.metrics().window_calls == 3);
  CHECK(cb.state() == breaker_state::closed);
  clock.advance(1s);
  fail(cb);  // 2 failures of 4 calls in the last 10 s = 50 %
  CHECK(cb.state() == breaker_state::open);
}

TEST_CASE("slow calls trip a rate window", "[circuit_breaker][slow]") {
  manual_clock clock;
  breaker<outgrow::count_window> cb({.window_size = 5,
                                     .minimum_calls = 5,
                                     .slow_call_rate_threshold = 60.0,
                                     .slow_call_duration = 2s},
                                    clock);
  for (int i = 0; i < 5; ++i) {
    auto p = cb.try_acquire();
    REQUIRE(p);
    clock.advance(i < 3 ? 2s : 1s);  // three slow successes, two fast
    p.success();
  }
  const auto m = cb.metrics();
  CHECK(m.slow_calls == 3);
  CHECK(m.failures == 0);
  CHECK(cb.state() == breaker_state::open);
  CHECK(m.slow_call_rate == 60.0);
}

TEST_CASE("forced_open disabled and metrics_only states", "[circuit_breaker]") {
  manual_clock clock;
  breaker<> cb({.failure_threshold = 1}, clock);
  recorder r;
  cb.on_transition(r.listener());
  cb.force_open();
  CHECK_FALSE(cb.try_acquire());
  clock.advance(1h);
  CHECK_FALSE(cb.try_acquire());  // forced open never half-opens

  cb.disable();
  for (int i = 0; i < 10; ++i) fail(cb);  // allowed, nothing recorded
  CHECK(cb.state() == breaker_state::disabled);
  CHECK(cb.metrics().failures == 0);

  cb.metrics_only();
  fail(cb, 10);  // recorded, never opens
  CHECK(cb.state() == breaker_state::metrics_only);
  CHECK(cb.metrics().failures == 10);

  cb.reset();
  CHECK(cb.state() == breaker_state::closed);
  fail(cb);
  CHECK(cb.state() == breaker_state::open);
  CHECK(r.seen.size() == 5);  // forced_open, disabled, metrics_only, closed, open
  CHECK(cb.metrics().transitions == 5);
}

TEST_CASE("call helpers handle values optionals exceptions and fallbacks",
          "[circuit_breaker][call]") {
  manual_clock clock;
  breaker<> cb({.failure_threshold = 2}, clock);
  CHECK(cb.call([] { return 42; }) == 42);
  CHECK_THROWS_AS(cb.call([]() -> int { throw std::runtime_error("down"); }),
                  std::runtime_error);
  CHECK(
      cb.call([] { return std::optional<int>{}; }, [] { return std::optional<int>{7}; }) ==
      7);  // nullopt is a failure: 2 in a row → open
  CHECK(cb.state() == breaker_state::open);
  CHECK_THROWS_AS(cb.call([] { return 1; }), outgrow::circuit_open_error);
  std::exception_ptr seen = std::make_exception_ptr(1);
  CHECK(cb.call([] { return 1; },
                [&](std::exception_ptr e) {
                  seen = e;
                  return -1;
                }) == -1);
  CHECK(seen == nullptr);  // rejected: no exception
  const auto m = cb.metrics();
  CHECK(m.successes == 1);
  CHECK(m.failures == 2);
  CHECK(m.rejected == 2);
}

TEST_CASE("is_failure decides which exceptions count", "[circuit_breaker][call]") {
  manual_clock clock;
  breaker<> cb({.failure_threshold = 1,
                .is_failure =
                    [](const std::exception_ptr& e) {
                      try {
                        std::rethrow_exception(e);
                      } catch (const std::invalid_argument&) {
                        return false;  // the caller's fault, not the dependency's
                      } catch (...) {
                        return true;
                      }
                    }},
               clock);
  CHECK_THROWS(cb.call([]() -> int { throw std::invalid_argument("bad id"); }));
  CHECK(cb.state() == breaker_state::closed);
  CHECK(cb.metrics().ignored == 1);
  CHECK_THROWS(cb.call([]() -> int { throw std::runtime_error("timeout"); }));
  CHECK(cb.state() == breaker_state::open);
}

TEST_CASE("an abandoned permit counts as ignored", "[circuit_breaker]") {
  manual_clock clock;
  breaker<> cb({}, clock);
  { auto p = cb.try_acquire(); }
  auto moved_from = cb.try_acquire();
  auto target = std::move(moved_from);
  target.success();
  const auto m = cb.metrics();
  CHECK(m.ignored == 1);
  CHECK(m.successes == 1);
  CHECK(m.calls() == 2);
}

TEST_CASE("metrics print with fmt", "[circuit_breaker]") {
  manual_clock clock;
  breaker<> cb({}, clock);
  succeed(cb, 3);
  CHECK(fmt::format("{}", cb.metrics()) ==
        "breaker_metrics{state=closed, calls=3, successes=3, failures=0, ignored=0, "
        "rejected=0, slow_calls=0, transitions=0, failure_rate=0, slow_call_rate=0}");
  CHECK(fmt::format("{}", breaker_state::half_open) == "half_open");
}

TEST_CASE("bad breaker configuration throws config_error", "[circuit_breaker][errors]") {
  CHECK_THROWS_WITH(breaker<>({.failure_threshold = 0}),
                    "circuit_breaker: failure_threshold must be in [1, 1000000], got 0");
  CHECK_THROWS_WITH(breaker<outgrow::count_window>({.failure_rate_threshold = 0.0}),
                    "circuit_breaker: failure_rate_threshold must be in (0, 100], got 0");
  CHECK_THROWS_WITH(breaker<outgrow::count_window>({.failure_rate_threshold = 101.0}),
                    "circuit_breaker: failure_rate_threshold must be in (0, 100], got 101");
  CHECK_THROWS_WITH(breaker<outgrow::count_window>({.window_size = 0}),
                    "circuit_breaker: window_size must be in [1, 100000], got 0");
  CHECK_THROWS_WITH(breaker<outgrow::time_window>({.window_size = 0}),
                    "circuit_breaker: window_size (seconds) must be in [1, 3600], got 0");
  CHECK_THROWS_WITH(breaker<>({.open_for = 0s}),
                    "circuit_breaker: open_for must be in (0s, 24h], got 0s");
  CHECK_THROWS_WITH(breaker<>({.half_open_calls = 0}),
                    "circuit_breaker: half_open_calls must be in [1, 1000000], got 0");
  CHECK_THROWS_WITH(
      breaker<>({.open_for = 1min, .max_open_for = 30s}),
      "circuit_breaker: max_open_for must be in [open_for (1min), 24h], got 30s");
  CHECK_THROWS_WITH(
      breaker<>({.slow_call_duration = 1s}),
      "circuit_breaker: slow_call_duration must be 0 with consecutive_failures "
      "(slow calls need a rate window), got 1s");
  CHECK_THROWS_AS(breaker<>({.half_open_calls = 2, .success_threshold = 3}),
                  outgrow::config_error);
}

TEST_CASE("64 threads racing through half_open get exactly half_open_calls permits",
          "[circuit_breaker][stress]") {
  for (std::uint32_t probes : {1U, 5U}) {
    manual_clock clock;
    breaker<> cb({.failure_threshold = 1, .open_for = 1s, .half_open_calls = probes},
                 clock);
    fail(cb);
    clock.advance(1s);
    std::atomic<int> granted{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    std::vector<breaker<>::permit> held(64);
    for (int t = 0; t < 64; ++t) {
      threads.emplace_back([&, t] {
        while (!go.load()) std::this_thread::yield();
        auto p = cb.try_acquire();
        if (p) {
          granted.fetch_add(1);
          held[static_cast<std::size_t>(t)] = std::move(p);  // keep it: no slot returns
        }
      });
    }
    go = true;
    for (auto& th : threads) th.join();
    CHECK(granted.load() == static_cast<int>(probes));
    CHECK(cb.metrics().rejected == 64 - probes);
    for (auto& p : held) {
      if (p) p.success();
    }
    CHECK(cb.state() == breaker_state::closed);
  }
}

TEST_CASE("two threads hammering transitions keep counts consistent",
          "[circuit_breaker][stress]") {
  manual_clock clock;
  breaker<outgrow::count_window> cb({.window_size = 20,
                                     .minimum_calls = 10,
                                     .failure_rate_threshold = 40.0,
                                     .open_for = 1ms,
                                     .half_open_calls = 2},
                                    clock);
  // Both threads call through the breaker until 10 s of simulated time have passed;
  // thread 1 moves the clock 1 ms every 100 of its calls (1M calls in all).
  std::atomic<std::uint64_t> attempts{0};
  auto worker = [&](std::uint64_t seed) {
    std::uint64_t x = seed;
    for (std::uint64_t i = 0; clock.elapsed() < 10s; ++i) {
      if (seed == 1 && i % 100 == 99) clock.advance(1ms);
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      attempts.fetch_add(1, std::memory_order_relaxed);
      auto p = cb.try_acquire();
      if (!p) continue;
      switch (x % 4) {
        case 0:
          p.failure();
          break;
        case 1:
          p.ignore();
          break;
        default:
          p.success();
          break;
      }
    }
  };
  std::thread a(worker, 1);
  std::thread b(worker, 2);
  a.join();
  b.join();
  const auto m = cb.metrics();
  CHECK(m.calls() == attempts.load());
  CHECK(m.calls() == m.successes + m.failures + m.ignored + m.rejected);
  CHECK(m.transitions > 10);  // it really went round the states
  CHECK(m.rejected > 0);
}
