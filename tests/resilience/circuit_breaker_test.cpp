#include <outgrow/resilience/circuit_breaker.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
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
    clock.advance(i < 3 ? 3s : 2s);  // three slow successes, two fast (exactly 2 s)
    p.success();
  }
  const auto m = cb.metrics();
  CHECK(m.slow_calls == 3);
  CHECK(m.failures == 0);
  CHECK(cb.state() == breaker_state::open);
  CHECK(m.slow_call_rate == 60.0);
}

TEST_CASE("a call lasting exactly slow_call_duration is not slow",
          "[circuit_breaker][slow]") {
  manual_clock clock;
  breaker<outgrow::count_window> cb(
      {.window_size = 2, .slow_call_rate_threshold = 50.0, .slow_call_duration = 2s},
      clock);
  for (auto lasts : {2s, 2s}) {
    auto p = cb.try_acquire();
    REQUIRE(p);
    clock.advance(lasts);
    p.success();
  }
  CHECK(cb.metrics().slow_calls == 0);
  CHECK(cb.state() == breaker_state::closed);
  auto p = cb.try_acquire();
  REQUIRE(p);
  clock.advance(2s + 1ns);  // longer: slow, 1 of the last 2 = 50 %
  p.success();
  CHECK(cb.metrics().slow_calls == 1);
  CHECK(cb.state() == breaker_state::open);
}

TEST_CASE("a success that completes minimum_calls trips a time window",
          "[circuit_breaker][window]") {
  manual_clock clock;
  breaker<outgrow::time_window> cb(
      {.window_size = 5, .minimum_calls = 5, .failure_rate_threshold = 50.0}, clock);
  fail(cb, 3);
  succeed(cb);
  CHECK(cb.state() == breaker_state::closed);  // 4 calls < minimum 5
  succeed(cb);  // the 5th call is a success: 3 of 5 = 60 % >= 50 %
  CHECK(cb.state() == breaker_state::open);
  CHECK(cb.metrics().failure_rate == 60.0);
}

TEST_CASE("a success trips a time window whose good calls aged out",
          "[circuit_breaker][window]") {
  manual_clock clock;
  breaker<outgrow::time_window> cb(
      {.window_size = 10, .minimum_calls = 4, .failure_rate_threshold = 60.0}, clock);
  succeed(cb, 3);  // t = 0
  clock.advance(5s);
  fail(cb, 3);  // t = 5: 3 of 6 = 50 %
  CHECK(cb.state() == breaker_state::closed);
  clock.advance(5s);  // t = 10: the three successes fall out
  succeed(cb);        // 3 failures of 4 = 75 %, decided by a success
  CHECK(cb.state() == breaker_state::open);
}

TEST_CASE("count window minimum_calls defaults to the window size when smaller",
          "[circuit_breaker][window]") {
  manual_clock clock;
  breaker<outgrow::count_window> cb({.window_size = 10}, clock);
  CHECK(cb.config().minimum_calls == 10);  // min(100, window_size), as Resilience4j
  fail(cb, 9);
  CHECK(cb.state() == breaker_state::closed);
  fail(cb);
  CHECK(cb.state() == breaker_state::open);
  CHECK(breaker<outgrow::count_window>({}, clock).config().minimum_calls == 100);
  CHECK(
      breaker<outgrow::count_window>({.window_size = 500}, clock).config().minimum_calls ==
      100);
  CHECK(breaker<outgrow::time_window>({.window_size = 10}, clock).config().minimum_calls ==
        100);
  CHECK(breaker<outgrow::count_window>({.window_size = 10, .minimum_calls = 10}, clock)
            .config()
            .minimum_calls == 10);
  // An explicit minimum the window can never hold is rejected, not silently lowered.
  CHECK_THROWS_WITH(
      breaker<outgrow::count_window>({.window_size = 10, .minimum_calls = 100}),
      "circuit_breaker: minimum_calls must be 0 (the default: min(100, window_size)) or "
      "in [1, window_size (10)]: a count_window never holds more than window_size calls, "
      "got 100");
  // A time window has no such bound.
  CHECK(breaker<outgrow::time_window>({.window_size = 10, .minimum_calls = 1000}, clock)
            .config()
            .minimum_calls == 1000);
}

TEST_CASE("state and metrics report half_open once open_for has passed",
          "[circuit_breaker]") {
  manual_clock clock;
  breaker<> cb({.failure_threshold = 1, .open_for = 30s}, clock);
  recorder r;
  cb.on_transition(r.listener());
  std::vector<std::chrono::nanoseconds> at;
  cb.on_transition(
      [&](const outgrow::breaker_transition& t) { at.push_back(t.at.time_since_epoch()); });
  fail(cb);
  clock.advance(30s - 1ns);
  CHECK(cb.state() == breaker_state::open);
  clock.advance(1ns);
  CHECK(r.seen.size() == 1);  // nothing looked yet
  clock.advance(5s);
  CHECK(cb.state() == breaker_state::half_open);  // no call needed (the clock.hpp example)
  CHECK(cb.metrics().state == breaker_state::half_open);
  CHECK(cb.state() == breaker_state::half_open);
  REQUIRE(r.seen.size() == 2);  // the listeners ran once, when state() first looked
  CHECK(r.seen[1] == std::pair{breaker_state::open, breaker_state::half_open});
  CHECK(at == std::vector<std::chrono::nanoseconds>{0s, 35s});
  CHECK(cb.metrics().transitions == 2);
  auto probe = cb.try_acquire();  // the probe needs no second transition
  REQUIRE(probe);
  CHECK_FALSE(cb.try_acquire());
  probe.success();
  CHECK(cb.state() == breaker_state::closed);
  CHECK(r.seen.size() == 3);
  CHECK(cb.metrics().transitions == 3);
}

TEST_CASE("a listener may read state and metrics during a transition",
          "[circuit_breaker]") {
  manual_clock clock;
  breaker<> cb({.failure_threshold = 1, .open_for = 1s}, clock);
  recorder r;
  cb.on_transition(r.listener());
  std::vector<breaker_state> seen_by_listener;
  cb.on_transition([&](const outgrow::breaker_transition& t) {
    if (t.to == breaker_state::open) {
      clock.advance(1s);                       // open_for passes while this listener runs
      seen_by_listener.push_back(cb.state());  // reported, not made: the lock is held
      seen_by_listener.push_back(cb.metrics().state);
    }
  });
  fail(cb);
  CHECK(seen_by_listener ==
        std::vector<breaker_state>{breaker_state::half_open, breaker_state::half_open});
  CHECK(r.seen.size() == 1);
  CHECK(cb.state() == breaker_state::half_open);  // made now, outside the listener
  CHECK(r.seen.size() == 2);
  CHECK(cb.metrics().transitions == 2);
}

TEST_CASE("manual control to the current state is no transition", "[circuit_breaker]") {
  manual_clock clock;
  breaker<outgrow::count_window> cb({.window_size = 4}, clock);
  recorder r;
  cb.on_transition(r.listener());
  fail(cb, 2);
  cb.reset();  // already closed: the window is emptied, nothing published
  CHECK(cb.metrics().window_calls == 0);
  CHECK(r.seen.empty());
  cb.force_open();
  cb.force_open();
  cb.disable();
  cb.disable();
  cb.metrics_only();
  cb.metrics_only();
  CHECK(r.seen.size() == 3);
  CHECK(cb.metrics().transitions == 3);
}

TEST_CASE("a time window agrees with a brute-force count over random traffic",
          "[circuit_breaker][window]") {
  for (std::uint32_t size : {1U, 3U, 10U}) {
    manual_clock clock;
    breaker<outgrow::time_window> cb({.window_size = size}, clock);
    cb.metrics_only();  // record without ever opening
    struct call {
      std::int64_t second;
      bool failed;
    };
    std::vector<call> history;
    std::uint64_t x = 0x9E3779B97F4A7C15ULL + size;
    for (int i = 0; i < 5000; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      const auto step = x % 64;
      clock.advance(step < 40   ? 0ms
                    : step < 60 ? std::chrono::milliseconds(step * 37)
                                : std::chrono::milliseconds(step * 400));
      const bool failed = (x >> 8) % 3 == 0;
      failed ? fail(cb) : succeed(cb);
      const auto now = std::chrono::duration_cast<std::chrono::seconds>(clock.elapsed());
      history.push_back({now.count(), failed});
      std::uint64_t calls = 0, failures = 0;
      for (const call& c : history) {
        if (c.second > now.count() - static_cast<std::int64_t>(size)) {
          ++calls;
          failures += c.failed ? 1 : 0;
        }
      }
      const auto m = cb.metrics();
      REQUIRE(m.window_calls == calls);
      REQUIRE(m.failure_rate ==
              Approx(100.0 * static_cast<double>(failures) / static_cast<double>(calls)));
    }
  }
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
  CHECK(
      fmt::format("{}", cb.metrics()) ==
      "circuit_breaker_metrics{state=closed, calls=3, successes=3, failures=0, ignored=0, "
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
      breaker<>({.open_for = 1min, .open_for_multiplier = 2.0, .max_open_for = 30s}),
      "circuit_breaker: max_open_for must be in [open_for (1min), 24h], got 30s");
  CHECK_NOTHROW(breaker<>({.open_for = 1h}));  // max_open_for is not read: not checked
  CHECK_THROWS_WITH(breaker<outgrow::count_window>(
                        {.slow_call_rate_threshold = 0.0, .slow_call_duration = 1s}),
                    "circuit_breaker: slow_call_rate_threshold must be in (0, 100], got 0");
  CHECK_THROWS_AS(breaker<>({.half_open_calls = 2, .success_threshold = 3}),
                  outgrow::config_error);
}

TEST_CASE("a field the configuration never reads must keep its default",
          "[circuit_breaker][errors]") {
  const auto field_of = [](auto make) -> std::string {
    try {
      make();
    } catch (const outgrow::config_error& e) {
      CHECK(e.primitive() == "circuit_breaker");
      return e.field();
    }
    return "(accepted)";
  };
  const std::string under_consecutive =
      "consecutive_failures never reads it (only count_window and time_window do)";
  CHECK_THROWS_WITH(breaker<>({.window_size = 10}),
                    "circuit_breaker: window_size must be left at its default (100): " +
                        under_consecutive + ", got 10");
  CHECK_THROWS_WITH(breaker<>({.minimum_calls = 5}),
                    "circuit_breaker: minimum_calls must be left at its default (0): " +
                        under_consecutive + ", got 5");
  CHECK_THROWS_WITH(
      breaker<>({.failure_rate_threshold = 25.0}),
      "circuit_breaker: failure_rate_threshold must be left at its default (50): " +
          under_consecutive + ", got 25");
  CHECK_THROWS_WITH(
      breaker<>({.slow_call_rate_threshold = 60.0}),
      "circuit_breaker: slow_call_rate_threshold must be left at its default (100): " +
          under_consecutive + ", got 60");
  CHECK_THROWS_WITH(
      breaker<>({.slow_call_duration = 1s}),
      "circuit_breaker: slow_call_duration must be left at its default (0s): " +
          under_consecutive + ", got 1s");
  CHECK_THROWS_WITH(
      breaker<outgrow::count_window>({.failure_threshold = 3}),
      "circuit_breaker: failure_threshold must be left at its default (5): count_window "
      "never reads it (only consecutive_failures does; count_window trips on "
      "failure_rate_threshold), got 3");
  CHECK_THROWS_WITH(
      breaker<outgrow::time_window>({.failure_threshold = 3}),
      "circuit_breaker: failure_threshold must be left at its default (5): time_window "
      "never reads it (only consecutive_failures does; time_window trips on "
      "failure_rate_threshold), got 3");
  CHECK_THROWS_WITH(
      breaker<outgrow::count_window>({.slow_call_rate_threshold = 60.0}),
      "circuit_breaker: slow_call_rate_threshold must be left at its default (100): it is "
      "never read while slow_call_duration is 0 (slow-call tracking off), got 60");
  CHECK(field_of([] {
          breaker<outgrow::time_window>({.slow_call_rate_threshold = 60.0});
        }) == "slow_call_rate_threshold");
  CHECK_THROWS_WITH(
      breaker<>({.max_open_for = 1h}),
      "circuit_breaker: max_open_for must be left at its default (10min): it is never "
      "read while open_for_multiplier is 1 (open_for never grows), got 1h");
  CHECK(field_of([] { breaker<outgrow::count_window>({.max_open_for = 1h}); }) ==
        "max_open_for");
  // Defaults, written out or not, and fields that are read are all accepted.
  CHECK(field_of([] {
          breaker<>({.failure_threshold = 3,
                     .window_size = 100,
                     .minimum_calls = 0,
                     .failure_rate_threshold = 50.0,
                     .open_for_multiplier = 2.0,
                     .max_open_for = 1h});
        }) == "(accepted)");
  CHECK(field_of([] {
          breaker<outgrow::time_window>({.failure_threshold = 5,
                                         .window_size = 10,
                                         .minimum_calls = 20,
                                         .failure_rate_threshold = 25.0,
                                         .slow_call_rate_threshold = 60.0,
                                         .slow_call_duration = 1s});
        }) == "(accepted)");
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
  // A third of the recorded calls fail. The count window (20 calls) swings above 40 %
  // often; the time window holds ~200k calls and settles at 33 %, so it trips at 30 %.
  const auto hammer = [](auto window, std::uint32_t window_size, double threshold) {
    manual_clock clock;
    breaker<decltype(window)> cb({.window_size = window_size,
                                  .minimum_calls = 10,
                                  .failure_rate_threshold = threshold,
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
    // The window's counts never drifted from its slots or buckets, whatever raced with
    // the clears: once emptied, it holds exactly what comes next.
    cb.metrics_only();
    CHECK(cb.metrics().window_calls == 0);
    fail(cb, 3);
    CHECK(cb.metrics().window_calls == 3);
    CHECK(cb.metrics().failure_rate == 100.0);
  };
  hammer(outgrow::count_window{}, 20, 40.0);
  hammer(outgrow::time_window{}, 2, 30.0);
}

TEST_CASE("two threads recording into a time window leave it consistent",
          "[circuit_breaker][stress][window]") {
  manual_clock clock;
  breaker<outgrow::time_window> cb({.window_size = 3}, clock);
  cb.metrics_only();  // record, never open: the window alone
  std::atomic<std::uint64_t> recorded{0}, refused{0}, bad_rates{0};
  auto worker = [&](std::uint64_t seed) {
    std::uint64_t x = seed;
    for (int i = 0; i < 200'000; ++i) {
      if (seed == 1 && i % 50 == 49) clock.advance(7ms);  // buckets turn over under load
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      auto p = cb.try_acquire();
      if (!p) {
        refused.fetch_add(1, std::memory_order_relaxed);  // no Catch2 macros off-thread
        continue;
      }
      x % 3 == 0 ? p.failure() : p.success();
      recorded.fetch_add(1, std::memory_order_relaxed);
      if (seed == 2 && i % 1000 == 0) {
        const auto m = cb.metrics();  // re-sums the window concurrently with the writers
        if (m.failure_rate < 0.0 || m.failure_rate > 100.0) bad_rates.fetch_add(1);
      }
    }
  };
  std::thread a(worker, 1);
  std::thread b(worker, 2);
  a.join();
  b.join();
  CHECK(refused.load() == 0);
  CHECK(bad_rates.load() == 0);
  const auto m = cb.metrics();
  CHECK(m.successes + m.failures == recorded.load());
  CHECK(m.window_calls <= recorded.load());
  // Nothing drifted: once the window has moved past everything, it holds exactly what
  // is recorded next.
  clock.advance(3s);
  CHECK(cb.metrics().window_calls == 0);
  auto p = cb.try_acquire();
  REQUIRE(p);
  p.failure();
  CHECK(cb.metrics().window_calls == 1);
  CHECK(cb.metrics().failure_rate == 100.0);
}

TEST_CASE("tripping on a clock near time_point max does not overflow",
          "[circuit_breaker]") {
  // open_until saturates (UBSan checks the arithmetic); past the 61-bit state word's
  // range (73 years of nanoseconds) open_for is no longer honoured.
  manual_clock clock(manual_clock::time_point::max() - 1s);
  breaker<> cb({.failure_threshold = 1}, clock);
  fail(cb);
  CHECK(cb.state() != breaker_state::closed);
  CHECK(cb.metrics().transitions >= 1);
}

// ---- a user-defined window: breaker_window is an open concept ----------------------

namespace user {

/// Opens after `failure_threshold` failures since the breaker last closed, in a row or
/// not (a success does not forgive them), and reports its counts as a window. Defined
/// here, outside the library: a window needs no edit of circuit_breaker.hpp.
class total_failures_window {
 public:
  explicit total_failures_window(const outgrow::circuit_breaker_config& c) noexcept
      : limit_(c.failure_threshold) {}
  static void validate(outgrow::circuit_breaker_config& c) {
    outgrow::require_in_range("circuit_breaker", "failure_threshold", c.failure_threshold,
                              1U, 100U);
  }
  bool record(const outgrow::breaker_outcome& o) noexcept {
    calls_.fetch_add(1, std::memory_order_relaxed);
    if (!o.failed) return false;
    return failures_.fetch_add(1, std::memory_order_relaxed) + 1 >= limit_;
  }
  outgrow::breaker_window_counts counts(std::chrono::nanoseconds) const noexcept {
    return {.calls = calls_.load(std::memory_order_relaxed),
            .failures = failures_.load(std::memory_order_relaxed),
            .slow = 0};
  }
  void clear() noexcept {
    calls_.store(0, std::memory_order_relaxed);
    failures_.store(0, std::memory_order_relaxed);
  }

 private:
  std::uint64_t limit_;
  std::atomic<std::uint64_t> calls_{0};
  std::atomic<std::uint64_t> failures_{0};
};

/// The smallest conforming window (as in breaker_window.hpp's header comment).
struct first_failure_window {
  explicit first_failure_window(const outgrow::circuit_breaker_config&) {}
  bool record(const outgrow::breaker_outcome& o) noexcept { return o.failed; }
  outgrow::breaker_window_counts counts(std::chrono::nanoseconds) const noexcept {
    return {};
  }
  void clear() noexcept {}
};

}  // namespace user

static_assert(outgrow::breaker_window<user::total_failures_window>);
static_assert(outgrow::breaker_window<user::first_failure_window>);
static_assert(!outgrow::breaker_window<int>);

TEST_CASE("a user-defined window decides when the breaker opens",
          "[circuit_breaker][window]") {
  manual_clock clock;
  breaker<user::total_failures_window> cb({.failure_threshold = 3}, clock);
  // S F S F S: two failures, never two in a row; consecutive_failures{3} would not open.
  succeed(cb);
  fail(cb);
  succeed(cb);
  fail(cb);
  succeed(cb);
  CHECK(cb.state() == breaker_state::closed);
  auto m = cb.metrics();
  CHECK(m.window_calls == 5);
  CHECK(m.failure_rate == 40.0);
  CHECK(m.consecutive_failures == 0);
  fail(cb);  // the third failure opens it
  CHECK(cb.state() == breaker_state::open);
  // Closing again clears the window: the count starts over.
  cb.reset();
  CHECK(cb.metrics().window_calls == 0);
  fail(cb, 2);
  CHECK(cb.state() == breaker_state::closed);
  // The window's validate() runs with the breaker's own checks.
  CHECK_THROWS_AS(breaker<user::total_failures_window>({.failure_threshold = 0}, clock),
                  outgrow::config_error);
  CHECK_THROWS_AS(breaker<user::total_failures_window>({.open_for = 0s}, clock),
                  outgrow::config_error);

  breaker<user::first_failure_window> strict({}, clock);
  succeed(strict, 10);
  CHECK(strict.state() == breaker_state::closed);
  fail(strict);
  CHECK(strict.state() == breaker_state::open);
  CHECK(strict.metrics().window_calls == 0);  // it keeps no counts
}
