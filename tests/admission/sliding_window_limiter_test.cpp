// sliding_window_limiter: the sliding estimate, retry_after, window boundaries and bad
// configuration.
#include <outgrow/admission/sliding_window_limiter.hpp>

#include <chrono>
#include <stdexcept>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::manual_clock;
using limiter = outgrow::basic_sliding_window_limiter<manual_clock>;

TEST_CASE("sliding_window_limiter weighs the previous window by what is left of it",
          "[sliding_window_limiter]") {
  manual_clock clock;
  limiter l({.limit = 10, .window = 1s}, clock);
  for (int i = 0; i < 10; ++i) CHECK(l.try_acquire());
  auto r = l.try_acquire();
  CHECK_FALSE(r);
  // 10 used in this window: wait for the next one, then until 10 x (1 - e) + 1 <= 10.
  CHECK(r.retry_after == 1100ms);
  clock.advance(1500ms);  // half-way through the next window: estimate 10 x 0.5 = 5
  for (int i = 0; i < 5; ++i) CHECK(l.try_acquire());
  r = l.try_acquire();
  CHECK_FALSE(r);
  CHECK(r.retry_after == 100ms);  // at 0.6 s: 10 x 0.4 + 5 + 1 = 10
  clock.advance(100ms);
  CHECK(l.try_acquire());
  const auto m = l.metrics();
  CHECK(m.admitted == 16);
  CHECK(m.rejected == 2);
  CHECK(m.permits == 16);
}

TEST_CASE("sliding_window_limiter does not double the limit around a boundary",
          "[sliding_window_limiter]") {
  manual_clock clock;
  limiter l({.limit = 10, .window = 1s}, clock);
  clock.advance(990ms);
  int admitted = 0;
  for (int i = 0; i < 30; ++i) admitted += l.try_acquire() ? 1 : 0;
  clock.advance(20ms);  // 10 ms into the next window
  for (int i = 0; i < 30; ++i) admitted += l.try_acquire() ? 1 : 0;
  CHECK(admitted == 10);  // a fixed window would admit 20 within 20 ms
}

TEST_CASE("sliding_window_limiter forgets windows older than the previous one",
          "[sliding_window_limiter]") {
  manual_clock clock;
  limiter l({.limit = 5, .window = 1s}, clock);
  for (int i = 0; i < 5; ++i) CHECK(l.try_acquire());
  clock.advance(2s);
  for (int i = 0; i < 5; ++i) CHECK(l.try_acquire());
  CHECK_FALSE(l.try_acquire());
}

TEST_CASE("sliding_window_limiter takes n permits and rejects impossible requests",
          "[sliding_window_limiter]") {
  manual_clock clock;
  limiter l({.limit = 4, .window = 1s}, clock);
  CHECK(l.try_acquire(3));
  CHECK_FALSE(l.try_acquire(2));
  CHECK(l.try_acquire(1));
  CHECK(l.try_acquire(0));
  CHECK_THROWS_AS(l.try_acquire(5), std::invalid_argument);
}

TEST_CASE("sliding_window_limiter rejects bad configuration", "[sliding_window_limiter]") {
  using outgrow::sliding_window_limiter;
  CHECK_THROWS_WITH(sliding_window_limiter({.limit = 0}),
                    "sliding_window_limiter: limit must be in [1, 1000000000000], got 0");
  CHECK_THROWS_WITH(sliding_window_limiter({.window = 0ns}),
                    "sliding_window_limiter: window must be in [1ms, 24h], got 0s");
  CHECK_THROWS_WITH(sliding_window_limiter({.window = 25h}),
                    "sliding_window_limiter: window must be in [1ms, 24h], got 25h");
}
