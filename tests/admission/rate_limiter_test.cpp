// rate_limiter: GCRA semantics on a manual clock, reservations, the blocking form,
// configuration errors and a concurrent stress test (run under TSan by scripts/dev check).
#include <outgrow/admission/rate_limiter.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "asio_sim.hpp"
#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::manual_clock;
using limiter = outgrow::rate_limiter<manual_clock>;

TEST_CASE("rate_limiter starts full and then admits one permit per interval",
          "[rate_limiter]") {
  manual_clock clock;
  limiter l({.permits_per_second = 10, .burst = 5}, clock);
  for (int i = 0; i < 5; ++i) CHECK(l.try_acquire());
  const auto r = l.try_acquire();
  CHECK_FALSE(r);
  CHECK(r.retry_after == 100ms);
  clock.advance(99ms);
  CHECK(l.try_acquire().retry_after == 1ms);
  clock.advance(1ms);
  CHECK(l.try_acquire());
  CHECK_FALSE(l.try_acquire());
  // A quiet period refills at most `burst`.
  clock.advance(1h);
  CHECK(l.available() == 5);
  for (int i = 0; i < 5; ++i) CHECK(l.try_acquire());
  CHECK_FALSE(l.try_acquire());
  const auto m = l.metrics();
  CHECK(m.admitted == 11);
  CHECK(m.permits == 11);
  CHECK(m.rejected == 4);
  CHECK(m.waited == 0);
}

TEST_CASE("rate_limiter admits rate x time + burst over a long run", "[rate_limiter]") {
  for (const double rate : {3.0, 10.0, 0.5, 1000.0, 12345.0}) {
    manual_clock clock;
    limiter l({.permits_per_second = rate, .burst = 7}, clock);
    std::uint64_t admitted = 0;
    // Polled 4 times per interval (never long enough to fill the bucket), for 1,000 s
    // or 200,000 polls, whichever is shorter.
    const auto step = std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 / rate / 4));
    const auto total = std::min<std::chrono::nanoseconds>(1000s, step * 200'000);
    for (auto t = 0ns; t <= total; t += step, clock.advance(step)) {
      while (l.try_acquire()) ++admitted;
    }
    const double seconds = std::chrono::duration<double>(total).count();
    const double expected = rate * seconds + 7.0;
    // The documented bound: T rounded to 1/8 ns, relative error <= 1 / (2 T ticks).
    const double interval_ticks = std::round(8e9 / rate);
    const double rounding = rate * seconds / (2.0 * interval_ticks);
    INFO("rate " << rate);
    CHECK(std::abs(static_cast<double>(admitted) - expected) <= 1.0 + rounding);
  }
}

TEST_CASE("rate_limiter takes n permits at once", "[rate_limiter]") {
  manual_clock clock;
  limiter l({.permits_per_second = 2, .burst = 4}, clock);
  CHECK(l.try_acquire(3));
  const auto r = l.try_acquire(3);
  CHECK_FALSE(r);
  CHECK(r.retry_after == 1s);  // 2 more permits at 2/s
  CHECK(l.try_acquire(1));
  CHECK(l.try_acquire(0));  // nothing asked, always admitted
  CHECK_THROWS_AS(l.try_acquire(5), std::invalid_argument);
  CHECK_THROWS_WITH(l.try_acquire(5),
                    "rate_limiter: a request for 5 permits can never be "
                    "admitted (burst is 4)");
}

TEST_CASE("rate_limiter reserve takes future permits within max_wait", "[rate_limiter]") {
  manual_clock clock;
  limiter l({.permits_per_second = 10, .burst = 1}, clock);
  CHECK(l.reserve(1, 0ns) == 0ns);
  CHECK(l.reserve(1, 1s) == 100ms);
  CHECK(l.reserve(1, 1s) == 200ms);
  CHECK_FALSE(l.reserve(1, 250ms));  // would wait 300 ms: nothing taken
  CHECK(l.reserve(1, 300ms) == 300ms);
  CHECK_FALSE(l.try_acquire());
  clock.advance(400ms);
  CHECK(l.try_acquire());
  CHECK(l.metrics().waited == 3);
  CHECK_THROWS_AS(l.reserve(1, -1ns), std::invalid_argument);
}

TEST_CASE("rate_limiter acquire waits through the sleeper or gives up at the deadline",
          "[rate_limiter]") {
  manual_clock clock;
  limiter l({.permits_per_second = 4, .burst = 1}, clock);
  CHECK(l.acquire(1, clock.now()));
  const auto start = clock.now();
  CHECK(l.acquire(1, clock.now() + 1s));  // waits 250 ms: the clock moves
  CHECK(clock.now() - start == 250ms);
  CHECK_FALSE(l.acquire(1, clock.now() + 100ms));  // needs 250 ms
  CHECK(clock.now() - start == 250ms);             // gave up at once
  CHECK_FALSE(l.acquire(1, clock.now() - 1s));     // a deadline in the past
  // A huge deadline saturates instead of overflowing.
  CHECK(l.acquire(1, manual_clock::time_point::max()));
}

TEST_CASE("rate_limiter rejects bad configuration naming field value and range",
          "[rate_limiter]") {
  using outgrow::config_error;
  auto make = [](outgrow::rate_limiter_config c) { limiter l(c); };
  CHECK_THROWS_WITH(make({.permits_per_second = 0}),
                    "rate_limiter: permits_per_second must be in (0, 1e9], got 0");
  CHECK_THROWS_AS(make({.permits_per_second = -1}), config_error);
  CHECK_THROWS_AS(make({.permits_per_second = std::nan("")}), config_error);
  CHECK_THROWS_AS(make({.permits_per_second = std::numeric_limits<double>::infinity()}),
                  config_error);
  CHECK_THROWS_AS(make({.permits_per_second = 2e9}), config_error);
  CHECK_THROWS_WITH(make({.burst = 0}),
                    "rate_limiter: burst must be in [1, 1000000000], got 0");
  CHECK_THROWS_AS(make({.burst = 1'000'000'001}), config_error);
  CHECK_THROWS_WITH(
      make({.permits_per_second = 1e-3, .burst = 1'000'000}),
      Catch::Contains("rate_limiter: burst must be at most 365 days of refill"));
  CHECK_NOTHROW(make({.permits_per_second = 1e9, .burst = 1'000'000'000}));
  CHECK_THROWS_WITH(make({.burst = 10, .thread_batch = 0}),
                    "rate_limiter: thread_batch must be in [1, 1000000], got 0");
  CHECK_THROWS_WITH(make({.burst = 10, .thread_batch = 11}),
                    "rate_limiter: thread_batch must be at most burst (10), got 11");
  CHECK_THROWS_AS(make({.burst = 10'000'000, .thread_batch = 1'000'001}), config_error);
  CHECK_NOTHROW(make({.burst = 10, .thread_batch = 10}));
}

TEST_CASE("rate_limiter under concurrent callers admits exactly the permits there are",
          "[rate_limiter][concurrency]") {
  manual_clock clock;
  limiter l({.permits_per_second = 500, .burst = 1000}, clock);
  std::atomic<std::uint64_t> admitted{0};
  auto hammer = [&] {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 5000; ++i) {
          if (l.try_acquire()) admitted.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    for (auto& t : threads) t.join();
  };
  hammer();  // time stands still: exactly the burst
  CHECK(admitted.load() == 1000);
  clock.advance(1s);
  hammer();  // one second refills 500
  CHECK(admitted.load() == 1500);
  const auto m = l.metrics();
  CHECK(m.admitted == 1500);
  CHECK(m.rejected == 40'000 - 1500);
}

TEST_CASE("rate_limiter async_acquire waits on a timer without blocking",
          "[rate_limiter][async]") {
  outgrow_test::sim::world w;
  outgrow_test::sim::current = &w;
  outgrow::rate_limiter<manual_clock> l({.permits_per_second = 10, .burst = 1}, w.clock);
  std::vector<std::pair<bool, manual_clock::duration>> seen;
  const auto start = w.clock.now();
  auto record = [&](bool ok) { seen.emplace_back(ok, w.clock.now() - start); };
  auto ex = w.io.get_executor();
  l.async_acquire<outgrow_test::sim::timer>(ex, 1, start + 1s, record);     // at once
  l.async_acquire<outgrow_test::sim::timer>(ex, 1, start + 1s, record);     // after 100 ms
  l.async_acquire<outgrow_test::sim::timer>(ex, 1, start + 150ms, record);  // too late
  CHECK(seen.empty());  // nothing runs inside async_acquire
  w.run();
  outgrow_test::sim::current = nullptr;
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == std::pair{true, manual_clock::duration(0ns)});
  CHECK(seen[1].first == false);  // the refused one is answered at once
  CHECK(seen[2] == std::pair{true, manual_clock::duration(100ms)});
}

TEST_CASE("rate_limiter thread_batch takes permits in batches and spends them locally",
          "[rate_limiter]") {
  manual_clock clock;
  limiter l({.permits_per_second = 10, .burst = 8, .thread_batch = 4}, clock);
  CHECK(l.try_acquire());  // takes 4 from the bucket, spends 1
  CHECK(l.metrics().admitted == 4);
  CHECK(l.available() == 4);
  CHECK(l.try_acquire());
  CHECK(l.try_acquire());
  CHECK(l.try_acquire());
  CHECK(l.metrics().admitted == 4);  // spent locally: nothing shared touched
  CHECK(l.try_acquire());            // next batch: the last 4
  CHECK(l.available() == 0);
  for (int i = 0; i < 3; ++i) CHECK(l.try_acquire());
  const auto r = l.try_acquire();  // slot and bucket empty
  CHECK_FALSE(r);
  CHECK(r.retry_after == 100ms);
  clock.advance(100ms);  // one permit refilled: a batch of what there is
  CHECK(l.try_acquire());
  CHECK_FALSE(l.try_acquire());
  clock.advance(1s);  // full again (8): batches of 4
  for (int i = 0; i < 8; ++i) CHECK(l.try_acquire());
  CHECK_FALSE(l.try_acquire());
  const auto m = l.metrics();
  CHECK(m.admitted == 17);
  CHECK(m.permits == 17);
  CHECK(m.rejected == 3);
  // n > 1 decides on the shared state, beside the batch.
  clock.advance(1s);
  CHECK(l.try_acquire());  // batch of 4: 3 left in the slot, 4 in the bucket
  CHECK(l.try_acquire(4));
  for (int i = 0; i < 3; ++i) CHECK(l.try_acquire());  // n == 1: the slot's 3 first
  CHECK_FALSE(l.try_acquire());
}

TEST_CASE("rate_limiter thread_batch stays within the batch of exact GCRA over a long run",
          "[rate_limiter]") {
  // One thread calling every 700 us for 20 s against 1000/s: the batched limiter admits
  // at most rate x time + burst, and at most batch - 1 fewer than the exact one.
  for (const std::uint64_t batch : {2u, 10u, 64u}) {
    manual_clock exact_clock;
    manual_clock batched_clock;
    limiter exact({.permits_per_second = 1000, .burst = 100}, exact_clock);
    limiter batched({.permits_per_second = 1000, .burst = 100, .thread_batch = batch},
                    batched_clock);
    std::uint64_t e = 0;
    std::uint64_t b = 0;
    for (int i = 0; i < 20'000'000 / 700; ++i) {
      // Twice per step, so the offered load (2 per 700 us) exceeds the rate.
      for (int k = 0; k < 2; ++k) {
        if (exact.try_acquire()) ++e;
        if (batched.try_acquire()) ++b;
      }
      exact_clock.advance(700us);
      batched_clock.advance(700us);
    }
    INFO("batch " << batch << ": exact " << e << ", batched " << b);
    CHECK(b <= 1000 * 20 + 100);
    CHECK(b + (batch - 1) >= e);
    CHECK(b <= e + (batch - 1));
  }
}

TEST_CASE("rate_limiter thread_batch never over-admits when limiters share a slot",
          "[rate_limiter]") {
  // 40 limiters used in turn by one thread: more than the 16 slots, so they evict each
  // other's batches; each still admits at most its burst while time stands still.
  manual_clock clock;
  std::vector<std::unique_ptr<limiter>> limiters;
  for (int i = 0; i < 40; ++i) {
    limiters.push_back(std::make_unique<limiter>(
        outgrow::rate_limiter_config{
            .permits_per_second = 1, .burst = 50, .thread_batch = 8},
        clock));
  }
  std::vector<std::uint64_t> admitted(limiters.size(), 0);
  for (int round = 0; round < 100; ++round) {
    for (std::size_t i = 0; i < limiters.size(); ++i) {
      if (limiters[i]->try_acquire()) ++admitted[i];
    }
  }
  for (std::size_t i = 0; i < limiters.size(); ++i) {
    INFO("limiter " << i);
    CHECK(admitted[i] <= 50);
    CHECK(admitted[i] >= 1);
    CHECK(limiters[i]->metrics().admitted <= 50);
  }
}

TEST_CASE("rate_limiter thread_batch under concurrent callers admits exactly the burst",
          "[rate_limiter][concurrency]") {
  // Every thread calls until rejected, so no batch is left unspent: the callers together
  // are admitted exactly the permits there are.
  manual_clock clock;
  limiter l({.permits_per_second = 500, .burst = 1000, .thread_batch = 16}, clock);
  std::atomic<std::uint64_t> admitted{0};
  std::atomic<std::uint64_t> calls{0};
  auto hammer = [&] {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 5000; ++i) {
          calls.fetch_add(1, std::memory_order_relaxed);
          if (l.try_acquire()) {
            admitted.fetch_add(1, std::memory_order_relaxed);
          } else {
            break;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  };
  hammer();
  CHECK(admitted.load() == 1000);
  clock.advance(1s);
  hammer();
  CHECK(admitted.load() == 1500);
  const auto m = l.metrics();
  CHECK(m.admitted == 1500);
  CHECK(m.rejected == calls.load() - 1500);
}
