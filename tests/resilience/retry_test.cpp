#include <outgrow/resilience/retry.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <outgrow/resilience/circuit_breaker.hpp>

#include "asio_sim.hpp"
#include "catch.hpp"
#include "counting_new.hpp"  // a first-time success must not allocate

using namespace std::chrono_literals;
using outgrow::manual_clock;
using outgrow::retry_stop;
using std::chrono::nanoseconds;

namespace {

/// Records every requested delay and moves the manual clock instead of sleeping.
struct recording_sleeper {
  std::vector<nanoseconds>* delays = nullptr;
  void sleep(manual_clock& clock, nanoseconds d) const {
    if (delays != nullptr) delays->push_back(d);
    clock.advance(d);
  }
};
static_assert(outgrow::retry_sleeper<recording_sleeper, manual_clock>);
static_assert(std::is_same_v<outgrow::default_sleeper<manual_clock>,
                             outgrow::clock_advancing_sleeper>);
static_assert(std::is_same_v<outgrow::default_sleeper<outgrow::steady_clock_source>,
                             outgrow::thread_sleeper>);

template <class Backoff = outgrow::constant_backoff>
using test_retry = outgrow::retry<Backoff, manual_clock, recording_sleeper>;

struct timeout_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct read_timeout : timeout_error {
  using timeout_error::timeout_error;
};

/// A dependency that fails its first `failures` calls.
struct flaky {
  int failures = 0;
  int calls = 0;
  int operator()() {
    ++calls;
    if (calls <= failures) throw timeout_error(fmt::format("failure #{}", calls));
    return 42;
  }
};

struct response {
  int status = 200;
  int attempt = 0;
};

// ---- a simulated timer for async_run: a discrete-event loop on a manual clock -------
// (tests/support/asio_sim.hpp)
namespace sim = outgrow_test::sim;

static_assert(outgrow::retry_timer<sim::timer, boost::asio::io_context::executor_type>);
static_assert(outgrow::retry_timer<boost::asio::steady_timer,
                                   boost::asio::io_context::executor_type>);
static_assert(!outgrow::retry_timer<int, boost::asio::io_context::executor_type>);

}  // namespace

TEST_CASE("retry succeeds after k failures", "[retry]") {
  manual_clock clock;
  std::vector<nanoseconds> delays;
  test_retry<> retry({.max_attempts = 4}, outgrow::constant_backoff{50ms}, clock,
                     recording_sleeper{&delays});
  flaky dependency{.failures = 2};
  CHECK(retry.run(std::ref(dependency)) == 42);
  CHECK(dependency.calls == 3);
  CHECK(delays == std::vector<nanoseconds>{50ms, 50ms});
  CHECK(clock.elapsed() == 100ms);  // the sleeper moved simulated time, nobody slept

  const auto m = retry.metrics();
  CHECK(m.calls == 1);
  CHECK(m.attempts == 3);
  CHECK(m.retries == 2);
  CHECK(m.successes == 1);
  CHECK(m.failures == 0);

  // try_run reports the same without throwing.
  flaky again{.failures = 1};
  const auto r = retry.try_run(std::ref(again));
  CHECK(r.ok());
  CHECK(r.stop == retry_stop::success);
  CHECK(r.attempts == 2);
  CHECK(r.waited == 50ms);
  REQUIRE(r.value);
  CHECK(*r.value == 42);
  CHECK(!r.error);
}

TEST_CASE("retry gives up after max_attempts with the last error", "[retry]") {
  manual_clock clock;
  test_retry<> retry({.max_attempts = 3}, outgrow::constant_backoff{10ms}, clock);
  flaky down{.failures = 1'000};
  CHECK_THROWS_WITH(retry.run(std::ref(down)), "failure #3");
  CHECK(down.calls == 3);

  const auto r = retry.try_run(std::ref(down));
  CHECK(!r.ok());
  CHECK(r.stop == retry_stop::attempts_exhausted);
  CHECK(r.attempts == 3);
  CHECK(!r.value);
  CHECK_THROWS_AS(outgrow::retry_result<int>(r).get(), timeout_error);

  const auto m = retry.metrics();
  CHECK(m.calls == 2);
  CHECK(m.attempts == 6);
  CHECK(m.retries == 4);
  CHECK(m.failures == 2);
  CHECK(m.gave_up == 2);
  CHECK(m.successes == 0);
  CHECK(m.amplification() == 3.0);

  // max_attempts = 1: a single attempt, never a retry.
  test_retry<> once({.max_attempts = 1}, outgrow::constant_backoff{10ms}, clock);
  flaky one{.failures = 1};
  CHECK_THROWS_AS(once.run(std::ref(one)), timeout_error);
  CHECK(one.calls == 1);
}

TEST_CASE("retry works for functions returning void", "[retry]") {
  manual_clock clock;
  test_retry<> retry({.max_attempts = 3}, outgrow::constant_backoff{1ms}, clock);
  int calls = 0;
  retry.run([&] {
    if (++calls < 3) throw std::runtime_error("not yet");
  });
  CHECK(calls == 3);
  const outgrow::retry_result<void> r =
      retry.try_run([] { throw std::runtime_error("no"); });
  CHECK(r.stop == retry_stop::attempts_exhausted);
  CHECK(r.attempts == 3);
  CHECK(r.error);
}

TEST_CASE("retry_on retries only the listed exception types", "[retry][predicate]") {
  manual_clock clock;
  test_retry<> retry({.max_attempts = 3,
                      .retry_on = outgrow::retry_on<std::system_error, timeout_error>()},
                     outgrow::constant_backoff{1ms}, clock);

  int calls = 0;
  CHECK_THROWS_AS(retry.run([&]() -> int {
    ++calls;
    throw std::logic_error("a bug, not a transient failure");
  }),
                  std::logic_error);
  CHECK(calls == 1);
  CHECK(retry.metrics().not_retryable == 1);

  calls = 0;
  CHECK_THROWS_AS(retry.run([&]() -> int {
    ++calls;
    throw read_timeout("derived from a listed type");
  }),
                  read_timeout);
  CHECK(calls == 3);

  calls = 0;
  CHECK(retry.run([&] {
    if (++calls < 2) throw std::system_error(std::make_error_code(std::errc::timed_out));
    return 7;
  }) == 7);
  CHECK(calls == 2);

  // The helper is a plain predicate on std::exception_ptr.
  const auto pred = outgrow::retry_on<std::runtime_error>();
  CHECK(pred(std::make_exception_ptr(std::runtime_error("x"))));
  CHECK(pred(std::make_exception_ptr(timeout_error("x"))));
  CHECK_FALSE(pred(std::make_exception_ptr(std::logic_error("x"))));
  CHECK_FALSE(pred(std::make_exception_ptr(42)));
  CHECK_FALSE(pred(nullptr));
  // ... which never says yes to a circuit breaker's rejection, even through a base.
  CHECK_FALSE(pred(std::make_exception_ptr(outgrow::circuit_open_error("open"))));
  CHECK_FALSE(outgrow::retry_on<std::exception>()(
      std::make_exception_ptr(outgrow::circuit_open_error("open"))));
}

TEST_CASE("retry by result retries while the predicate says so", "[retry][predicate]") {
  manual_clock clock;
  test_retry<> retry({.max_attempts = 4}, outgrow::constant_backoff{1ms}, clock);
  const auto unavailable = [](const response& r) { return r.status == 503; };

  int calls = 0;
  const response ok = retry.run(
      [&] {
        ++calls;
        return response{calls < 3 ? 503 : 200, calls};
      },
      unavailable);
  CHECK(ok.status == 200);
  CHECK(ok.attempt == 3);

  // Gives up returning the last failing result.
  calls = 0;
  const response last = retry.run(
      [&] {
        ++calls;
        return response{503, calls};
      },
      unavailable);
  CHECK(last.status == 503);
  CHECK(last.attempt == 4);
  const auto r = retry.try_run([] { return response{503, 0}; }, unavailable);
  CHECK(r.stop == retry_stop::attempts_exhausted);
  CHECK(r.value.has_value());
  CHECK(!r.error);
}

TEST_CASE("retry by error code on returned and thrown codes", "[retry][predicate]") {
  manual_clock clock;
  const auto transient = [](std::error_code ec) {
    return ec == std::errc::timed_out || ec == std::errc::connection_refused;
  };

  SECTION("a returned std::error_code is retried while set by default") {
    test_retry<> retry({.max_attempts = 5}, outgrow::constant_backoff{1ms}, clock);
    int calls = 0;
    const std::error_code ec = retry.run([&] {
      return ++calls < 3 ? std::make_error_code(std::errc::timed_out) : std::error_code{};
    });
    CHECK(!ec);
    CHECK(calls == 3);
  }

  SECTION("retry_on_error_code as the result predicate") {
    test_retry<> retry({.max_attempts = 5}, outgrow::constant_backoff{1ms}, clock);
    int calls = 0;
    const auto r = retry.try_run(
        [&] {
          ++calls;
          return calls == 1 ? std::make_error_code(std::errc::connection_refused)
                            : std::make_error_code(std::errc::permission_denied);
        },
        outgrow::retry_on_error_code(transient));
    CHECK(calls == 2);  // permission_denied is not transient: stop, and report it
    CHECK(r.stop == retry_stop::not_retryable);
    CHECK(*r.value == std::errc::permission_denied);
    // boost::system::error_code results too.
    calls = 0;
    const boost::system::error_code b = retry.run(
        [&] {
          return ++calls < 2 ? boost::system::error_code(boost::asio::error::timed_out)
                             : boost::system::error_code();
        },
        outgrow::retry_on_error_code(transient));
    CHECK(!b);
    CHECK(calls == 2);
  }

  SECTION("retry_on_error_code on thrown system errors") {
    test_retry<> retry(
        {.max_attempts = 5, .retry_on = outgrow::retry_on_error_code(transient)},
        outgrow::constant_backoff{1ms}, clock);
    int calls = 0;
    CHECK(retry.run([&] {
      if (++calls < 3) throw std::system_error(std::make_error_code(std::errc::timed_out));
      return 1;
    }) == 1);
    CHECK(calls == 3);
    calls = 0;
    CHECK(retry.run([&] {
      if (++calls < 2) {
        throw boost::system::system_error(boost::asio::error::connection_refused);
      }
      return 2;
    }) == 2);
    CHECK(calls == 2);
    calls = 0;
    CHECK_THROWS_AS(retry.run([&]() -> int {
      ++calls;
      throw std::system_error(std::make_error_code(std::errc::permission_denied));
    }),
                    std::system_error);
    CHECK(calls == 1);
    CHECK_THROWS_AS(retry.run([&]() -> int { throw std::runtime_error("no code"); }),
                    std::runtime_error);
  }
}

TEST_CASE("circuit_open_error is not retried", "[retry][circuit_breaker]") {
  manual_clock clock;
  outgrow::retry_budget<manual_clock> budget({}, clock);

  SECTION("thrown directly") {
    test_retry<> retry({.max_attempts = 5}, outgrow::constant_backoff{1ms}, budget);
    int calls = 0;
    CHECK_THROWS_AS(retry.run([&]() -> int {
      ++calls;
      throw outgrow::circuit_open_error("open");
    }),
                    outgrow::circuit_open_error);
    CHECK(calls == 1);
    CHECK(retry.metrics().not_retryable == 1);
    CHECK(budget.metrics().retries_allowed == 0);  // no budget burnt
  }

  SECTION("retry outside and a real circuit_breaker inside") {
    outgrow::circuit_breaker<outgrow::consecutive_failures, manual_clock> breaker(
        {.failure_threshold = 2, .open_for = 30s}, clock);
    test_retry<> retry({.max_attempts = 5}, outgrow::constant_backoff{100ms}, budget);
    int dependency_calls = 0;
    const auto charge = [&] {
      return breaker.call([&]() -> int {
        ++dependency_calls;
        throw timeout_error("payment provider timed out");
      });
    };
    // Attempts 1 and 2 reach the dependency and trip the breaker; attempt 3 is
    // rejected by it, and retry stops there instead of retrying into the open breaker.
    const auto r = retry.try_run(charge);
    CHECK(r.attempts == 3);
    CHECK(r.stop == retry_stop::not_retryable);
    CHECK_THROWS_AS(outgrow::retry_result<int>(r).get(), outgrow::circuit_open_error);
    CHECK(dependency_calls == 2);
    CHECK(breaker.state() == outgrow::breaker_state::open);
    const auto withdrawn = budget.metrics().retries_allowed;
    CHECK(withdrawn == 2);
    // While it stays open, each call costs one rejected attempt and no retry budget.
    for (int i = 0; i < 100; ++i)
      CHECK_THROWS_AS(retry.run(charge), outgrow::circuit_open_error);
    CHECK(dependency_calls == 2);
    CHECK(budget.metrics().retries_allowed == withdrawn);
    CHECK(retry.metrics().attempts == 103);
  }
}

TEST_CASE("a seeded retry draws reproducible jittered delays", "[retry][determinism]") {
  const outgrow::full_jitter_backoff backoff{100ms, 10s};
  std::vector<nanoseconds> a, b;
  manual_clock clock;
  test_retry<outgrow::full_jitter_backoff> first({.max_attempts = 8, .seed = 42}, backoff,
                                                 clock, recording_sleeper{&a});
  test_retry<outgrow::full_jitter_backoff> second({.max_attempts = 8, .seed = 42}, backoff,
                                                  clock, recording_sleeper{&b});
  flaky x{.failures = 100}, y{.failures = 100};
  CHECK_THROWS(first.run(std::ref(x)));
  CHECK_THROWS(second.run(std::ref(y)));
  REQUIRE(a.size() == 7);
  CHECK(a == b);
  // Exactly the policy's delays for retries 1..7 with std::mt19937_64(42).
  std::mt19937_64 rng(42);
  for (std::uint32_t n = 1; n <= 7; ++n) {
    const nanoseconds expected = backoff.delay(n, 0ns, rng);
    CHECK(a[n - 1] == expected);
    CHECK(a[n - 1] <= backoff.ceiling(n));
  }
  const auto r = first.try_run(flaky{.failures = 100});
  CHECK(r.waited > 0ns);
}

TEST_CASE("max_elapsed stops retrying before the deadline would pass",
          "[retry][deadline]") {
  manual_clock clock;
  std::vector<nanoseconds> delays;
  test_retry<> retry({.max_attempts = 10, .max_elapsed = 2500ms},
                     outgrow::constant_backoff{1s}, clock, recording_sleeper{&delays});
  flaky down{.failures = 1'000};
  const auto r = retry.try_run(std::ref(down));
  CHECK(r.stop == retry_stop::deadline_exceeded);
  CHECK(r.attempts == 3);  // at 0 s, 1 s and 2 s; a fourth would start at 3 s > 2.5 s
  CHECK(delays.size() == 2);
  CHECK(retry.metrics().gave_up == 1);
}

TEST_CASE("retry rejects bad input with exact messages", "[retry][config]") {
  CHECK_THROWS_AS(outgrow::retry<>({.max_attempts = 0}), outgrow::config_error);
  CHECK_THROWS_WITH(outgrow::retry<>({.max_attempts = 0}),
                    "retry: max_attempts must be in [1, 1000], got 0");
  CHECK_THROWS_WITH(outgrow::retry<>({.max_attempts = 1001}),
                    "retry: max_attempts must be in [1, 1000], got 1001");
  CHECK_THROWS_WITH(outgrow::retry<>({.max_elapsed = -1s}),
                    "retry: max_elapsed must be in [0s, 24h], got -1s");
  CHECK_NOTHROW(outgrow::retry<>({.max_attempts = 1}));
  CHECK_NOTHROW(outgrow::retry<>({.max_attempts = 1000}));

  CHECK_THROWS_WITH(outgrow::retry_budget<>({.ratio = -0.1}),
                    "retry_budget: ratio must be in [0, 1000], got -0.1");
  CHECK_THROWS_WITH(outgrow::retry_budget<>({.min_retries_per_second = -1}),
                    "retry_budget: min_retries_per_second must be in [0, 1000000], got -1");
  CHECK_THROWS_WITH(outgrow::retry_budget<>({.window = 0s}),
                    "retry_budget: window must be in [1s, 1min], got 0s");
  CHECK_THROWS_WITH(outgrow::retry_budget<>({.window = 61s}),
                    "retry_budget: window must be in [1s, 1min], got 61s");
  CHECK_THROWS_AS(outgrow::retry_budget<>({.ratio = std::nan("")}), outgrow::config_error);
}

TEST_CASE(
    "retry_budget allows ratio times requests plus the floor and forgets after the "
    "window",
    "[retry_budget]") {
  manual_clock clock;
  outgrow::retry_budget<manual_clock> budget(
      {.ratio = 0.2, .min_retries_per_second = 10, .window = 10s}, clock);
  // The floor: 10/s over a 10 s window = a reserve of 100 retries, even with no traffic.
  CHECK(budget.available() == 100.0);
  int allowed = 0;
  while (budget.try_acquire_retry()) ++allowed;
  CHECK(allowed == 100);
  // 50 requests earn 10 retries (20 %).
  for (int i = 0; i < 50; ++i) budget.record_request();
  allowed = 0;
  while (budget.try_acquire_retry()) ++allowed;
  CHECK(allowed == 10);
  CHECK(budget.available() == Approx(0.0).margin(1e-9));

  // Deposits and withdrawals made in the first second expire 10 s later.
  clock.advance(9s);
  CHECK(!budget.try_acquire_retry());
  clock.advance(1s);
  CHECK(budget.available() == Approx(100.0));

  const auto m = budget.metrics();
  CHECK(m.requests == 50);
  CHECK(m.retries_allowed == 110);
  CHECK(m.retries_rejected == 3);

  // ratio 0 and no floor: never a retry.
  outgrow::retry_budget<manual_clock> none({.ratio = 0, .min_retries_per_second = 0},
                                           clock);
  for (int i = 0; i < 1000; ++i) none.record_request();
  CHECK(!none.try_acquire_retry());
}

TEST_CASE(
    "retry_budget bounds attempts under a total outage of 1000 callers within one "
    "window",
    "[retry_budget][outage]") {
  // 1,000 callers each send one request per second for 9 s into a dependency that is
  // down. Every request wants 3 retries (max_attempts 4); the shared budget must keep
  // total attempts <= 1.2 x requests + floor x window.
  sim::world world;
  sim::current = &world;
  const outgrow::retry_budget_config config{};  // 20 %, 10/s, 10 s
  outgrow::retry_budget<manual_clock> budget(config, world.clock);
  outgrow::retry<outgrow::full_jitter_backoff, manual_clock> retry(
      {.max_attempts = 4, .seed = 7}, outgrow::full_jitter_backoff{100ms, 1s}, budget);

  std::uint64_t attempts = 0, requests = 0, completed = 0, budget_stops = 0;
  const auto down = [&]() -> int {
    ++attempts;
    throw timeout_error("down");
  };
  const auto done = [&](outgrow::retry_result<int> r) {
    ++completed;
    if (r.stop == retry_stop::budget_exhausted) ++budget_stops;
  };
  constexpr int callers = 1'000, seconds = 9;
  for (int c = 0; c < callers; ++c) {
    for (int s = 0; s < seconds; ++s) {
      world.at(manual_clock::time_point{} + std::chrono::seconds{s} +
                   std::chrono::microseconds{c * 997},
               [&] {
                 ++requests;
                 retry.async_run<sim::timer>(world.io.get_executor(), down, done);
               });
    }
  }
  world.run();
  sim::current = nullptr;

  REQUIRE(completed == requests);
  CHECK(requests == 9'000);
  CHECK(world.clock.elapsed() < 10s);  // the whole outage fits in one window
  const double floor =
      config.min_retries_per_second * static_cast<double>(config.window.count());
  const double bound = 1.2 * static_cast<double>(requests) + floor;
  const double ratio = static_cast<double>(attempts) / static_cast<double>(requests);
  fmt::print(
      "outage within one window: {} callers, {} requests, {} attempts = {:.4f} x requests "
      "(bound {:.0f} = 1.2 x requests + {:.0f}; without a budget: {} = 4.0 x); {} calls "
      "stopped by the budget\n",
      callers, requests, attempts, ratio, bound, floor, requests * 4, budget_stops);
  CHECK(static_cast<double>(attempts) <= bound);
  // The budget is spent, not hoarded: every allowed retry was made.
  CHECK(static_cast<double>(attempts) >= bound - 1.0);
  const auto m = retry.metrics();
  CHECK(m.attempts == attempts);
  CHECK(m.calls == requests);
  CHECK(m.budget_exhausted == budget_stops);
  CHECK(m.failures == requests);
}

TEST_CASE("retry_budget bounds attempts over a one minute outage of 1000 callers",
          "[retry_budget][outage]") {
  // The same outage for 60 s (six windows). Over a span T the floor adds up to
  // floor-per-second x (T + window): total attempts <= 1.2 x requests + that.
  sim::world world;
  sim::current = &world;
  const outgrow::retry_budget_config config{};
  outgrow::retry_budget<manual_clock> budget(config, world.clock);
  outgrow::retry<outgrow::full_jitter_backoff, manual_clock> retry(
      {.max_attempts = 4, .seed = 11}, outgrow::full_jitter_backoff{100ms, 1s}, budget);

  std::uint64_t attempts = 0, requests = 0, completed = 0;
  const auto down = [&]() -> int {
    ++attempts;
    throw timeout_error("down");
  };
  const auto done = [&](outgrow::retry_result<int>) { ++completed; };
  constexpr int callers = 1'000, seconds = 60;
  for (int c = 0; c < callers; ++c) {
    for (int s = 0; s < seconds; ++s) {
      world.at(manual_clock::time_point{} + std::chrono::seconds{s} +
                   std::chrono::microseconds{c * 997},
               [&] {
                 ++requests;
                 retry.async_run<sim::timer>(world.io.get_executor(), down, done);
               });
    }
  }
  world.run();
  sim::current = nullptr;

  REQUIRE(completed == requests);
  const double elapsed_s = std::chrono::duration<double>(world.clock.elapsed()).count();
  const double floor_total = config.min_retries_per_second *
                             (elapsed_s + static_cast<double>(config.window.count()));
  const double bound = 1.2 * static_cast<double>(requests) + floor_total;
  const double ratio = static_cast<double>(attempts) / static_cast<double>(requests);
  fmt::print(
      "outage over {:.1f} s: {} requests, {} attempts = {:.4f} x requests (bound {:.0f} = "
      "1.2 x requests + {:.0f}; without a budget: {})\n",
      elapsed_s, requests, attempts, ratio, bound, floor_total, requests * 4);
  CHECK(static_cast<double>(attempts) <= bound);
  CHECK(ratio > 1.19);  // retries still flow at about the budgeted rate
}

TEST_CASE("async_run waits on an asio timer without blocking the executor",
          "[retry][async]") {
  boost::asio::io_context io;
  outgrow::retry<outgrow::constant_backoff> retry({.max_attempts = 3},
                                                  outgrow::constant_backoff{1ms});
  std::vector<std::string> order;
  int calls = 0;
  std::optional<outgrow::retry_result<std::string>> got;
  retry.async_run(
      io.get_executor(),
      [&] {
        order.emplace_back("attempt");
        if (++calls < 3) throw std::runtime_error("flaky");
        return std::string("ok");
      },
      [&](outgrow::retry_result<std::string> r) { got = std::move(r); });
  CHECK(calls == 0);  // nothing runs inside async_run
  boost::asio::post(io, [&] { order.emplace_back("other"); });
  io.run();
  // The other handler ran while the retry waited; a sleeping retry would have run all
  // three attempts first.
  CHECK(order == std::vector<std::string>{"attempt", "other", "attempt", "attempt"});
  REQUIRE(got);
  CHECK(got->ok());
  CHECK(got->attempts == 3);
  CHECK(got->waited == 2ms);
  CHECK(std::move(*got).get() == "ok");

  // With a result predicate, and a void function.
  int status_calls = 0;
  std::optional<outgrow::retry_result<int>> status;
  retry.async_run(
      io.get_executor(), [&] { return ++status_calls < 2 ? 503 : 200; },
      [](int s) { return s == 503; },
      [&](outgrow::retry_result<int> r) { status = std::move(r); });
  std::optional<outgrow::retry_result<void>> nothing;
  retry.async_run(
      io.get_executor(), [] { throw std::runtime_error("always"); },
      [&](outgrow::retry_result<void> r) { nothing = std::move(r); });
  io.restart();
  io.run();
  REQUIRE(status);
  CHECK(*status->value == 200);
  REQUIRE(nothing);
  CHECK(nothing->stop == retry_stop::attempts_exhausted);
  CHECK(nothing->attempts == 3);
}

TEST_CASE("async_run reports an aborted wait with the last error", "[retry][async]") {
  sim::world world;
  sim::current = &world;
  world.abort_waits = true;
  outgrow::retry<outgrow::constant_backoff, manual_clock> retry(
      {.max_attempts = 5}, outgrow::constant_backoff{1s}, world.clock);
  std::optional<outgrow::retry_result<int>> got;
  retry.async_run<sim::timer>(
      world.io.get_executor(), []() -> int { throw timeout_error("down"); },
      [&](outgrow::retry_result<int> r) { got = std::move(r); });
  world.run();
  sim::current = nullptr;
  REQUIRE(got);
  CHECK(got->stop == retry_stop::aborted);
  CHECK(got->attempts == 1);
  CHECK_THROWS_AS(std::move(*got).get(), timeout_error);
  CHECK(retry.metrics().gave_up == 1);
}

TEST_CASE("async_run from many threads shares one budget", "[retry][async][threads]") {
  boost::asio::thread_pool pool(4);
  manual_clock clock;  // never advanced: no budget window expires during the test
  outgrow::retry_budget<manual_clock> budget({}, clock);
  outgrow::retry<outgrow::constant_backoff, manual_clock> retry(
      {.max_attempts = 3}, outgrow::constant_backoff{1ms}, budget);
  constexpr int calls = 400;
  std::atomic<int> completed{0}, succeeded{0}, dependency_calls{0};
  for (int i = 0; i < calls; ++i) {
    retry.async_run(
        pool.get_executor(),
        [&dependency_calls, i, failed = false]() mutable {
          // Every other call fails once, then succeeds.
          dependency_calls.fetch_add(1);
          if (i % 2 == 0 && !failed) {
            failed = true;
            throw timeout_error("transient");
          }
          return i;
        },
        [&](outgrow::retry_result<int> r) {
          if (r.ok()) succeeded.fetch_add(1);
          completed.fetch_add(1);
        });
  }
  pool.join();
  CHECK(completed.load() == calls);
  const auto m = retry.metrics();
  CHECK(m.calls == calls);
  CHECK(m.attempts == m.calls + m.retries);
  CHECK(m.successes + m.failures == m.calls);
  CHECK(static_cast<int>(m.successes) == succeeded.load());
  CHECK(m.attempts == static_cast<std::uint64_t>(dependency_calls.load()));
  CHECK(budget.metrics().retries_allowed == m.retries);
  // 200 calls want one retry each; the budget has at most 100 (floor) + 0.2 x 400.
  CHECK(m.retries <= 180);
  CHECK(m.retries + m.budget_exhausted == 200);
}

TEST_CASE("run from many threads never overdraws the shared budget",
          "[retry_budget][threads]") {
  manual_clock clock;  // frozen: nothing expires, so the bound is exact
  outgrow::retry_budget<manual_clock> budget({}, clock);
  constexpr int threads = 8, calls_per_thread = 2'000;
  std::atomic<std::uint64_t> attempts{0};
  std::vector<std::thread> workers;
  std::vector<std::unique_ptr<outgrow::retry<outgrow::constant_backoff, manual_clock>>>
      retries;
  for (int t = 0; t < threads; ++t) {
    // Several retry instances (one per thread here) share the budget.
    retries.push_back(
        std::make_unique<outgrow::retry<outgrow::constant_backoff, manual_clock>>(
            outgrow::retry_config{.max_attempts = 5}, outgrow::constant_backoff{0ns},
            budget));
  }
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < calls_per_thread; ++i) {
        (void)retries[static_cast<std::size_t>(t)]->try_run([&]() -> int {
          attempts.fetch_add(1);
          throw timeout_error("down");
        });
      }
    });
  }
  for (auto& w : workers) w.join();
  const double requests = threads * calls_per_thread;
  const auto b = budget.metrics();
  CHECK(b.requests == static_cast<std::uint64_t>(requests));
  CHECK(static_cast<double>(b.retries_allowed) <= 0.2 * requests + 100.0);
  CHECK(static_cast<double>(attempts.load()) <= 1.2 * requests + 100.0);
  std::uint64_t retried = 0;
  for (const auto& r : retries) retried += r->metrics().retries;
  CHECK(retried == b.retries_allowed);
  fmt::print("{} threads, {} requests: {} attempts ({:.4f} x), {}\n", threads, requests,
             attempts.load(), static_cast<double>(attempts.load()) / requests, b);
}

TEST_CASE("retry_budget stays consistent while time moves under concurrent use",
          "[retry_budget][threads]") {
  manual_clock clock;
  outgrow::retry_budget<manual_clock> budget({}, clock);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> requests{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&] {
      while (!stop.load()) {
        budget.record_request();
        requests.fetch_add(1);
        (void)budget.try_acquire_retry();
        (void)budget.available();
      }
    });
  }
  // Time moves in 100 ms steps while the workers deposit and withdraw: buckets expire
  // (and are reused) under their feet.
  for (int step = 0; step < 300; ++step) {
    clock.advance(100ms);
    std::this_thread::yield();
  }
  stop.store(true);
  for (auto& w : workers) w.join();
  const auto m = budget.metrics();
  CHECK(m.requests == requests.load());
  CHECK(m.retries_allowed + m.retries_rejected == requests.load());
  // Once everything has expired, exactly the reserve (10/s x 10 s) is left: no deposit
  // or withdrawal was lost or counted twice.
  clock.advance(11s);
  CHECK(budget.available() == 100.0);
}

TEST_CASE("retry metrics print with fmt", "[retry][metrics]") {
  manual_clock clock;
  test_retry<> retry({.max_attempts = 2}, outgrow::constant_backoff{1ms}, clock);
  (void)retry.try_run(flaky{.failures = 1});
  (void)retry.try_run(flaky{.failures = 5});
  CHECK(fmt::format("{}", retry.metrics()) ==
        "retry_metrics{calls=2, attempts=4, retries=2, successes=1, failures=1, "
        "not_retryable=0, gave_up=1, budget_exhausted=0, amplification=2}");
  CHECK(fmt::format("{}", retry_stop::budget_exhausted) == "budget_exhausted");
}

TEST_CASE("a call that succeeds first time does not allocate", "[retry][allocation]") {
  manual_clock clock;
  outgrow::retry_budget<manual_clock> budget({}, clock);
  outgrow::retry<outgrow::full_jitter_backoff, manual_clock> retry({.seed = 1}, {}, budget);
  const auto before = outgrow_test::allocations();
  int sum = 0;
  for (int i = 0; i < 1000; ++i) sum += retry.run([i] { return i; });
  CHECK(outgrow_test::allocations() == before);
  CHECK(sum == 499'500);
}

TEST_CASE("retry try_run_until never waits a backoff that ends after the deadline",
          "[retry][deadline]") {
  manual_clock clock;
  std::vector<nanoseconds> delays;
  test_retry<> retry({.max_attempts = 10}, outgrow::constant_backoff{50ms}, clock,
                     recording_sleeper{&delays});
  flaky dependency{.failures = 100};
  const auto deadline = clock.now() + 120ms;
  const auto r = retry.try_run_until(
      std::ref(dependency), [](int) { return false; }, deadline);
  // Attempts at 0, 50 and 100 ms; the next backoff would end at 150 ms > 120 ms.
  CHECK(r.stop == retry_stop::call_deadline);
  CHECK(to_string(r.stop) == "call_deadline");
  CHECK(r.attempts == 3);
  CHECK(delays == std::vector<nanoseconds>{50ms, 50ms});
  CHECK(clock.elapsed() == 100ms);
  REQUIRE(r.error);
  const auto m = retry.metrics();
  CHECK(m.failures == 1);
  CHECK(m.gave_up == 1);

  // A deadline already past: the first attempt still runs (the caller checks before).
  flaky once{.failures = 5};
  const auto late = retry.try_run_until(
      std::ref(once), [](int) { return false; }, clock.now());
  CHECK(late.stop == retry_stop::call_deadline);
  CHECK(late.attempts == 1);
  // A deadline far away changes nothing: success after two failures.
  flaky two{.failures = 2};
  const auto ok = retry.try_run_until(
      std::ref(two), [](int) { return false; }, clock.now() + 1h);
  CHECK(ok.ok());
  CHECK(ok.attempts == 3);
}
