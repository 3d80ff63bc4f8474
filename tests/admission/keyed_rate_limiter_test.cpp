// keyed_rate_limiter: independent buckets per key, idle keys dropped when their bucket is
// full again, bounded memory under many keys, concurrency, bad configuration.
#include <outgrow/admission/keyed_rate_limiter.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::manual_clock;
using limiter = outgrow::keyed_rate_limiter<std::string, manual_clock>;

TEST_CASE("keyed_rate_limiter gives every key its own bucket", "[keyed_rate_limiter]") {
  manual_clock clock;
  limiter l({.permits_per_second = 10, .burst = 2}, clock);
  CHECK(l.try_acquire("ada"));
  CHECK(l.try_acquire("ada"));
  const auto r = l.try_acquire("ada");
  CHECK_FALSE(r);
  CHECK(r.retry_after == 100ms);
  CHECK(l.try_acquire("grace"));  // another key is not affected
  CHECK(l.try_acquire("grace"));
  CHECK_FALSE(l.try_acquire("grace"));
  clock.advance(100ms);
  CHECK(l.try_acquire("ada"));
  CHECK_FALSE(l.try_acquire("ada"));
  const auto m = l.metrics();
  CHECK(m.admitted == 5);
  CHECK(m.rejected == 3);
  CHECK_THROWS_AS(l.try_acquire("ada", 3), std::invalid_argument);
}

TEST_CASE("keyed_rate_limiter forgets a key once its bucket is full again",
          "[keyed_rate_limiter]") {
  manual_clock clock;
  limiter l({.permits_per_second = 1, .burst = 5, .max_keys = 64, .stripes = 4}, clock);
  for (int i = 0; i < 3; ++i) CHECK(l.try_acquire("ada"));
  clock.advance(3s);  // bucket full again after 3 s: the entry expires
  for (int i = 0; i < 5; ++i) CHECK(l.try_acquire("ada"));  // a full burst, as it should
  CHECK_FALSE(l.try_acquire("ada"));
}

TEST_CASE("keyed_rate_limiter stays within max_keys under a flood of keys",
          "[keyed_rate_limiter]") {
  manual_clock clock;
  limiter l({.permits_per_second = 1, .burst = 3, .max_keys = 1000, .stripes = 8}, clock);
  for (int i = 0; i < 100'000; ++i) (void)l.try_acquire("key" + std::to_string(i));
  const auto m = l.metrics();
  CHECK(m.keys <= 1000);
  CHECK(m.evicted >= 99'000);
  CHECK(m.admitted == 100'000);  // each key's first request fits its burst
}

TEST_CASE("keyed_rate_limiter under concurrent callers admits each key's burst once",
          "[keyed_rate_limiter][concurrency]") {
  manual_clock clock;
  outgrow::keyed_rate_limiter<int, manual_clock> l(
      {.permits_per_second = 1, .burst = 50, .max_keys = 1000}, clock);
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 4000; ++i) {
        if (l.try_acquire(i % 20)) admitted.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(admitted.load() == 20 * 50);  // time stands still: 20 keys x burst 50
}

TEST_CASE("keyed_rate_limiter rejects bad configuration", "[keyed_rate_limiter]") {
  CHECK_THROWS_WITH(limiter({.permits_per_second = 0}),
                    "keyed_rate_limiter: permits_per_second must be in (0, 1e9], got 0");
  CHECK_THROWS_WITH(limiter({.burst = 0}),
                    "keyed_rate_limiter: burst must be in [1, 1000000000], got 0");
  CHECK_THROWS_WITH(limiter({.max_keys = 4, .stripes = 16}),
                    "keyed_rate_limiter: max_keys must be in [16, 1000000000], got 4");
  CHECK_THROWS_WITH(limiter({.stripes = 0}),
                    "keyed_rate_limiter: stripes must be in [1, 4096], got 0");
}

TEST_CASE("keyed_rate_limiter spreads keys whose std::hash is the identity",
          "[keyed_rate_limiter]") {
  // Pointers to 16-byte objects: std::hash is their address, a multiple of 16, which
  // taken modulo 16 stripes put every key in one stripe with room for max_keys / 16.
  struct alignas(16) session {
    char bytes[16];
  };
  std::vector<session> sessions(64);
  manual_clock clock;
  outgrow::keyed_rate_limiter<const session*, manual_clock> l(
      {.permits_per_second = 1, .burst = 1, .max_keys = 16 * 32, .stripes = 16}, clock);
  for (const session& s : sessions) CHECK(l.try_acquire(&s));
  // Every bucket is still remembered (empty): none of the 64 keys is forgotten.
  for (const session& s : sessions) CHECK_FALSE(l.try_acquire(&s));
  CHECK(l.metrics().evicted == 0);
}
