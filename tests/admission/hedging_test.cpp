// Hedging on a simulated Asio world (tests/support/asio_sim.hpp): with one slow replica
// in ten, hedged calls' p99 falls to the fast replicas' while the extra load stays under
// the budget; the first result wins and the losers are cancelled; bad configuration.
#include <outgrow/admission/hedging.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "asio_sim.hpp"
#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::manual_clock;
namespace sim = outgrow_test::sim;

namespace {

struct outcome {
  std::chrono::nanoseconds p50{}, p99{};
  std::uint64_t calls = 0, attempts = 0, cancelled = 0;
  outgrow::hedging_metrics metrics;
};

std::chrono::nanoseconds quantile(std::vector<std::chrono::nanoseconds> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

// 10 replicas: replica 0 answers in 1 s, the others in a log-normal 10 ms (sigma 0.3).
// A call every 2 ms; attempt k of call i goes to replica (i + k) % 10.
outcome simulate(std::optional<outgrow::hedging_config> hedging, int calls = 5000) {
  sim::world w;
  sim::current = &w;
  std::mt19937_64 rng(11);
  std::lognormal_distribution<double> fast(std::log(0.010) - 0.045, 0.3);
  outgrow::hedging_policy<manual_clock> policy(hedging.value_or(outgrow::hedging_config{}),
                                               w.clock);
  outcome out;
  std::vector<std::chrono::nanoseconds> latencies;
  auto executor = w.io.get_executor();
  for (int i = 0; i < calls; ++i) {
    w.at(w.clock.now() + i * 2ms, [&, i] {
      const auto start = w.clock.now();
      ++out.calls;
      auto op = [&, i](std::size_t attempt, outgrow::hedge_cancellation& cancel,
                       std::function<void(int)> done) {
        ++out.attempts;
        const int replica = (i + static_cast<int>(attempt)) % 10;
        const auto latency =
            replica == 0
                ? std::chrono::nanoseconds(1s)
                : std::chrono::nanoseconds(static_cast<std::int64_t>(fast(rng) * 1e9));
        auto cancelled = std::make_shared<bool>(false);
        cancel.on_cancel([cancelled, &out] {
          *cancelled = true;
          ++out.cancelled;
        });
        w.at(w.clock.now() + latency, [cancelled, done, replica] {
          if (!*cancelled) done(replica);
        });
      };
      auto handler = [&, start](int) { latencies.push_back(w.clock.now() - start); };
      if (hedging) {
        outgrow::async_hedged<int, sim::timer>(executor, policy, op, handler);
      } else {
        // No hedging: the first attempt only.
        outgrow::hedge_cancellation unused;
        op(0, unused, [&, start](int) { latencies.push_back(w.clock.now() - start); });
      }
    });
  }
  w.run();
  sim::current = nullptr;
  REQUIRE(latencies.size() == static_cast<std::size_t>(calls));
  out.p50 = quantile(latencies, 0.50);
  out.p99 = quantile(latencies, 0.99);
  out.metrics = policy.metrics();
  return out;
}

}  // namespace

TEST_CASE("hedging with one slow replica in ten brings p99 back to the fast replicas'",
          "[hedging]") {
  const outcome plain = simulate(std::nullopt);
  CHECK(plain.p99 >= 1s);  // one call in ten waits for the slow replica
  const auto fast_p99 = quantile(
      [] {
        std::mt19937_64 rng(11);
        std::lognormal_distribution<double> fast(std::log(0.010) - 0.045, 0.3);
        std::vector<std::chrono::nanoseconds> v;
        for (int i = 0; i < 5000; ++i) {
          v.emplace_back(static_cast<std::int64_t>(fast(rng) * 1e9));
        }
        return v;
      }(),
      0.99);

  SECTION("fixed delay") {
    const outcome h = simulate(outgrow::hedging_config{
        .delay = 30ms, .budget_percent = 15, .budget_min_per_second = 0});
    INFO("p99 " << h.p99.count() << " ns, fast replicas' p99 " << fast_p99.count());
    CHECK(h.p99 <= 30ms + fast_p99);
    const double extra =
        static_cast<double>(h.metrics.hedges) / static_cast<double>(h.calls);
    CHECK(extra <= 0.15);
    CHECK(h.metrics.hedges == h.attempts - h.calls);
    CHECK(h.metrics.hedge_wins >= h.calls / 10 - 10);  // every slow first attempt rescued
    CHECK(h.cancelled >= h.metrics.hedge_wins);        // their slow attempts cancelled
  }
  SECTION("delay at the observed p90 of winning attempts") {
    const outcome h = simulate(outgrow::hedging_config{.delay = 30ms,
                                                       .delay_quantile = 0.9,
                                                       .quantile_window = 200,
                                                       .budget_percent = 25,
                                                       .budget_min_per_second = 0});
    INFO("p99 " << h.p99.count() << " ns, delay now " << h.metrics.current_delay.count());
    CHECK(h.metrics.current_delay < 30ms);  // learned from the fast winners
    CHECK(h.p99 <= 2 * fast_p99);
    CHECK(static_cast<double>(h.metrics.hedges) / static_cast<double>(h.calls) <= 0.25);
  }
  SECTION("a spent budget stops hedging") {
    const outcome h = simulate(outgrow::hedging_config{
        .delay = 30ms, .budget_percent = 2, .budget_min_per_second = 0});
    CHECK(static_cast<double>(h.metrics.hedges) / static_cast<double>(h.calls) <= 0.02);
    CHECK(h.metrics.over_budget > 0);
    CHECK(h.p99 >= 1s);  // most slow calls could not be hedged
  }
}

TEST_CASE("hedging rejects bad configuration", "[hedging]") {
  using policy = outgrow::hedging_policy<>;
  CHECK_THROWS_WITH(policy({.max_hedged_attempts = 0}),
                    "hedging: max_hedged_attempts must be in [1, 10], got 0");
  CHECK_THROWS_WITH(policy({.delay = -1ms}),
                    "hedging: delay must be in [0s, 1h], got -1ms");
  CHECK_THROWS_WITH(policy({.delay_quantile = 1.0}),
                    "hedging: delay_quantile must be in (0, 1), got 1");
  CHECK_THROWS_AS(policy({.budget_percent = 101}), outgrow::config_error);
  CHECK_THROWS_AS(policy({.quantile_window = 1}), outgrow::config_error);
}

TEST_CASE("a winning attempt cancels the pending hedge delay", "[hedging]") {
  // Real io_context and steady_timer, a one-hour hedge delay, an attempt that answers at
  // once: once the handler has run, nothing may be left for the io_context (run() would
  // otherwise wait the hour). Checked with poll(): no waiting, no timing.
  boost::asio::io_context io;
  outgrow::hedging_policy<outgrow::steady_clock_source> policy({.delay = 1h});
  int answers = 0;
  int attempts = 0;
  outgrow::async_hedged<int>(
      io.get_executor(), policy,
      [&](std::size_t, outgrow::hedge_cancellation&, std::function<void(int)> done) {
        ++attempts;
        done(42);
      },
      [&](int v) { answers += v; });
  while (answers == 0) REQUIRE(io.run_one() == 1);
  CHECK(answers == 42);
  io.poll();  // runs the cancelled wait's completion, if any
  CHECK(io.stopped());
  CHECK(attempts == 1);
  CHECK(policy.metrics().hedges == 0);
}
