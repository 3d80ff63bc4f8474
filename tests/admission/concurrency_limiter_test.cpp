// concurrency_limiter: admission against the limit, outcomes feeding the algorithm
// (Netflix SimpleLimiter / AbstractLimiter semantics), a user-defined algorithm, and a
// concurrent stress test (SimpleLimiterTest.testConcurrentSimple; run under TSan).
#include <outgrow/admission/concurrency_limiter.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::manual_clock;

namespace {
// The smallest conforming limit algorithm, defined outside the library.
struct fixed_limit {
  int value = 10;
  int limit() const noexcept { return value; }
  void on_sample(std::chrono::nanoseconds, std::chrono::nanoseconds, int, bool) {}
};

// Records what the limiter feeds in.
struct recording_limit {
  struct seen {
    std::chrono::nanoseconds rtt;
    int in_flight;
    bool dropped;
  };
  std::shared_ptr<std::vector<seen>> log = std::make_shared<std::vector<seen>>();
  int limit() const noexcept { return 3; }
  void on_sample(std::chrono::nanoseconds, std::chrono::nanoseconds rtt, int in_flight,
                 bool dropped) {
    log->push_back({rtt, in_flight, dropped});
  }
};
}  // namespace

TEST_CASE(
    "netflix SimpleLimiterTest useLimiterCapacityUntilTotalLimit and testReleaseLimit",
    "[concurrency_limiter]") {
  outgrow::concurrency_limiter<fixed_limit> limiter;
  std::vector<decltype(limiter)::permit> held;
  for (int i = 0; i < 10; ++i) {
    auto p = limiter.try_acquire();
    REQUIRE(p);
    held.push_back(std::move(*p));
  }
  CHECK_FALSE(limiter.try_acquire());
  CHECK(limiter.in_flight() == 10);
  held.back().success();
  CHECK(limiter.in_flight() == 9);
  CHECK(limiter.try_acquire());  // admitted, then released (ignored) at once
  const auto m = limiter.metrics();
  CHECK(m.admitted == 11);
  CHECK(m.rejected == 1);
  CHECK(m.succeeded == 1);
  CHECK(m.ignored == 1);
}

TEST_CASE("concurrency_limiter admits one call when its algorithm starts at a limit of 0",
          "[concurrency_limiter]") {
  // A user algorithm may start at 0 (or below): the limiter clamps the limit it admits
  // by to at least 1 from the start, as after every sample, so calls are never all
  // refused.
  outgrow::concurrency_limiter<fixed_limit> limiter(fixed_limit{.value = 0});
  CHECK(limiter.limit() == 1);
  auto first = limiter.try_acquire();
  REQUIRE(first);
  CHECK_FALSE(limiter.try_acquire());
  first->success();
  CHECK(limiter.try_acquire());
}

TEST_CASE("concurrency_limiter feeds rtt and in-flight at acquire and ignore feeds nothing",
          "[concurrency_limiter]") {
  manual_clock clock;
  recording_limit rec;
  auto log = rec.log;
  outgrow::concurrency_limiter<recording_limit, manual_clock> limiter(rec, clock);
  auto a = limiter.try_acquire();
  auto b = limiter.try_acquire();
  clock.advance(7ms);
  auto c = limiter.try_acquire();
  CHECK_FALSE(limiter.try_acquire());  // limit 3
  clock.advance(3ms);
  a->success();
  b->dropped();
  c->ignore();
  a->dropped();  // a second outcome does nothing
  REQUIRE(log->size() == 2);
  CHECK((*log)[0].rtt == 10ms);
  CHECK((*log)[0].in_flight == 1);
  CHECK_FALSE((*log)[0].dropped);
  CHECK((*log)[1].rtt == 10ms);
  CHECK((*log)[1].in_flight == 2);
  CHECK((*log)[1].dropped);
  {
    auto d = limiter.try_acquire();
    REQUIRE(d);
  }  // destroyed without an outcome: ignored
  CHECK(log->size() == 2);
  CHECK(limiter.metrics().ignored == 2);
  CHECK(limiter.in_flight() == 0);
}

TEST_CASE("concurrency_limiter moves its limit with the algorithm",
          "[concurrency_limiter]") {
  manual_clock clock;
  outgrow::concurrency_limiter<outgrow::aimd_limit, manual_clock> limiter(
      outgrow::aimd_limit({.initial_limit = 4, .min_limit = 1, .max_limit = 10}), clock);
  CHECK(limiter.limit() == 4);
  {
    std::vector<decltype(limiter)::permit> held;
    for (int i = 0; i < 4; ++i) held.push_back(std::move(*limiter.try_acquire()));
    clock.advance(1ms);
    // In flight 1, 2, 3, 4 at acquire; +1 whenever 2 x in_flight >= the limit then:
    // 4 (no), 4 -> 5, 5 -> 6, 6 -> 7.
    for (auto& p : held) p.success();
  }
  CHECK(limiter.limit() == 7);
  auto p = limiter.try_acquire();
  p->dropped();  // int(7 x 0.9) = 6
  CHECK(limiter.limit() == 6);
  CHECK(limiter.algorithm().limit() == 6);
}

TEST_CASE("netflix SimpleLimiterTest testConcurrentSimple",
          "[concurrency_limiter][concurrency]") {
  outgrow::concurrency_limiter<fixed_limit> limiter;
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::atomic<int> ok{0};
  std::atomic<int> rejected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto p = limiter.try_acquire();
        if (!p) {
          rejected.fetch_add(1);
          continue;
        }
        const int now = inside.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        inside.fetch_sub(1);
        ok.fetch_add(1);
        p->success();
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(most.load() <= 10);
  CHECK(ok.load() + rejected.load() == 16'000);
  const auto m = limiter.metrics();
  CHECK(m.succeeded == static_cast<std::uint64_t>(ok.load()));
  CHECK(m.rejected == static_cast<std::uint64_t>(rejected.load()));
  CHECK(m.in_flight == 0);
}
