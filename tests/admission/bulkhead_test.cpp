// bulkhead: permits, the bounded first-come-first-served line, deadlines, configuration
// errors and a concurrent stress test (run under TSan by scripts/dev check).
#include <outgrow/admission/bulkhead.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::manual_clock;
using bulkhead = outgrow::basic_bulkhead<manual_clock>;

namespace {
// Waits (really) until `b` reports `n` callers in its line: a condition, not a duration.
void wait_for_line(const bulkhead& b, std::uint64_t n) {
  while (b.metrics().waiting != n) std::this_thread::yield();
}
}  // namespace

TEST_CASE("bulkhead hands out at most max_concurrent_calls permits", "[bulkhead]") {
  manual_clock clock;
  bulkhead b({.max_concurrent_calls = 2}, clock);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  CHECK(p1);
  CHECK(p2);
  CHECK_FALSE(b.try_acquire());
  CHECK(b.metrics().active == 2);
  p1.release();
  CHECK_FALSE(p1);
  p1.release();  // idempotent
  {
    auto p3 = b.try_acquire();
    CHECK(p3);
    auto moved = std::move(p3);
    CHECK(moved);
    CHECK_FALSE(p3);  // NOLINT(bugprone-use-after-move): a moved-from permit is empty
  }                   // released here
  CHECK(b.metrics().active == 1);
  const auto m = b.metrics();
  CHECK(m.admitted == 3);
  CHECK(m.rejected == 1);
}

TEST_CASE("bulkhead without a line rejects at once and with one honours past deadlines",
          "[bulkhead]") {
  manual_clock clock;
  bulkhead no_line({.max_concurrent_calls = 1, .max_waiting = 0}, clock);
  auto held = no_line.acquire(clock.now() + 1h);
  CHECK(held);
  CHECK_FALSE(no_line.acquire(clock.now() + 1h));  // would wait: not allowed
  CHECK(no_line.metrics().rejected == 1);

  bulkhead with_line({.max_concurrent_calls = 1, .max_waiting = 4}, clock);
  auto h = with_line.acquire(clock.now());
  CHECK(h);
  CHECK_FALSE(with_line.acquire(clock.now()));  // deadline now: no wait
  CHECK(with_line.metrics().timed_out == 1);
}

TEST_CASE("bulkhead line is first come first served and bounded", "[bulkhead]") {
  manual_clock clock;
  bulkhead b({.max_concurrent_calls = 1, .max_waiting = 3}, clock);
  auto held = b.try_acquire();
  REQUIRE(held);
  std::vector<int> order;
  std::mutex order_mutex;
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      auto p = b.acquire(clock.now() + 24h);
      REQUIRE(p);
      std::lock_guard lock(order_mutex);
      order.push_back(i);
    });  // permit released when the thread's lambda returns
    wait_for_line(b, static_cast<std::uint64_t>(i) + 1);
  }
  CHECK_FALSE(b.acquire(clock.now() + 24h));  // the line is full
  CHECK(b.metrics().rejected == 1);
  CHECK_FALSE(b.try_acquire());  // does not barge ahead of the line
  held.release();
  for (auto& t : threads) t.join();
  CHECK(order == std::vector<int>{0, 1, 2});
  const auto m = b.metrics();
  CHECK(m.waited == 3);
  CHECK(m.active == 0);
  CHECK(m.waiting == 0);
}

TEST_CASE("bulkhead waiter gives up at its deadline", "[bulkhead]") {
  manual_clock clock;
  bulkhead b({.max_concurrent_calls = 1, .max_waiting = 1}, clock);
  auto held = b.try_acquire();
  CHECK_FALSE(b.acquire(clock.now() + 2ms));  // waits 2 ms of real time, then gives up
  CHECK(b.metrics().timed_out == 1);
  CHECK(b.metrics().waiting == 0);
  held.release();
  CHECK(b.try_acquire());
}

TEST_CASE("bulkhead rejects bad configuration", "[bulkhead]") {
  CHECK_THROWS_WITH(outgrow::bulkhead({.max_concurrent_calls = 0}),
                    "bulkhead: max_concurrent_calls must be in [1, 1000000], got 0");
  CHECK_THROWS_WITH(outgrow::bulkhead({.max_waiting = 2'000'000}),
                    "bulkhead: max_waiting must be in [0, 1000000], got 2000000");
}

TEST_CASE("bulkhead under concurrent callers never exceeds its limit",
          "[bulkhead][concurrency]") {
  outgrow::bulkhead b({.max_concurrent_calls = 3, .max_waiting = 8});
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::atomic<std::uint64_t> ran{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3000; ++i) {
        auto p = (t % 2 == 0) ? b.try_acquire()
                              : b.acquire(std::chrono::steady_clock::now() + 10s);
        if (!p) continue;
        const int now = inside.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        ran.fetch_add(1);
        inside.fetch_sub(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(most.load() <= 3);
  const auto m = b.metrics();
  CHECK(m.active == 0);
  CHECK(m.waiting == 0);
  CHECK(m.admitted == ran.load());
  CHECK(m.admitted + m.rejected + m.timed_out == 18'000);
  CHECK(m.timed_out == 0);
}
