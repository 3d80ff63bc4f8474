#include <outgrow/core/clock.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;

TEST_CASE("manual_clock starts where told and moves only when told", "[clock]") {
  outgrow::manual_clock clock;
  CHECK(clock.now() == outgrow::manual_clock::time_point{});
  CHECK(clock.now() == clock.now());
  clock.advance(30s);
  CHECK(clock.elapsed() == 30s);
  clock.advance(250ms);
  CHECK(clock.elapsed() == 30250ms);

  outgrow::manual_clock later(outgrow::manual_clock::time_point{} + 1h);
  CHECK(later.elapsed() == 1h);
}

TEST_CASE("manual_clock copies share one time line", "[clock]") {
  outgrow::manual_clock clock;
  outgrow::manual_clock copy = clock;  // what a primitive holds
  clock.advance(5s);
  CHECK(copy.elapsed() == 5s);
  copy.set(copy.now() + 1min);
  CHECK(clock.elapsed() == 65s);
}

TEST_CASE("manual_clock refuses to go backwards", "[clock]") {
  outgrow::manual_clock clock;
  clock.advance(10s);
  CHECK_THROWS_AS(clock.advance(-1s), std::invalid_argument);
  CHECK_THROWS_WITH(clock.set(clock.now() - 1s),
                    "manual_clock: set(t) must be >= now() (10000000000ns since epoch), "
                    "got 9000000000ns");
  CHECK(clock.elapsed() == 10s);  // unchanged by the failed calls
  clock.advance(0s);
  clock.set(clock.now());
  CHECK(clock.elapsed() == 10s);
}

TEST_CASE("manual_clock is safe to advance from many threads", "[clock][stress]") {
  outgrow::manual_clock clock;
  constexpr int threads = 4;
  constexpr int steps = 10'000;
  std::atomic<int> went_backwards{0};  // Catch2 assertions are not thread-safe
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([copy = clock, &went_backwards]() mutable {
      for (int i = 0; i < steps; ++i) {
        const auto before = copy.now();
        copy.advance(1ns);
        if (copy.now() <= before) went_backwards.fetch_add(1);
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(went_backwards.load() == 0);
  CHECK(clock.elapsed() == std::chrono::nanoseconds{threads * steps});
}

TEST_CASE("steady_clock_source is monotonic", "[clock]") {
  const outgrow::steady_clock_source clock;
  const auto a = clock.now();
  const auto b = clock.now();
  CHECK(b >= a);
}

namespace {
struct not_a_clock {
  int now() const { return 0; }
};
}  // namespace
static_assert(!outgrow::clock_source<not_a_clock>);
static_assert(!outgrow::clock_source<int>);

TEST_CASE("coarse_steady_clock shares steady_clock's time line", "[clock]") {
  const outgrow::coarse_steady_clock coarse;
  const auto fine_before = std::chrono::steady_clock::now();
  const auto c = coarse.now();
  const auto fine_after = std::chrono::steady_clock::now();
  // Coarse time lags by at most a scheduler tick (generously 50 ms) and never leads.
  CHECK(c <= fine_after);
  CHECK(fine_before - c < std::chrono::milliseconds(50));
  CHECK(coarse.now() >= c);
}

TEST_CASE("manual_clock advance saturates instead of overflowing", "[clock]") {
  using tp = outgrow::manual_clock::time_point;
  outgrow::manual_clock clock;
  clock.advance(1h);
  clock.advance(std::chrono::hours::max());  // does not fit in nanoseconds
  CHECK(clock.now() == tp::max());
  clock.advance(1ns);  // stays at the far end
  CHECK(clock.now() == tp::max());
  clock.advance(std::chrono::nanoseconds::max());
  CHECK(clock.now() == tp::max());
  CHECK_THROWS_AS(clock.advance(-std::chrono::hours::max()), std::invalid_argument);
  CHECK(clock.now() == tp::max());

  outgrow::manual_clock fractional;
  fractional.advance(std::chrono::duration<double>(1.5));  // floating durations still work
  CHECK(fractional.elapsed() == 1500ms);
  fractional.advance(std::chrono::duration<double>(1e300));
  CHECK(fractional.now() == tp::max());

  outgrow::manual_clock near_end(tp::max() - 5ns);
  near_end.advance(std::chrono::nanoseconds::max());
  CHECK(near_end.now() == tp::max());

  outgrow::manual_clock from_min(tp::min());
  from_min.advance(std::chrono::nanoseconds::max());  // exactly representable
  CHECK(from_min.elapsed() == -1ns);
  from_min.set(tp::max());
  from_min.advance(std::chrono::seconds::max());
  CHECK(from_min.now() == tp::max());
}
