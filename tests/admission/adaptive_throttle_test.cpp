// adaptive_throttle: the SRE book's formula, its steady state against a backend that
// accepts a fixed rate, criticality ordering, the sliding window and bad configuration.
#include <outgrow/admission/adaptive_throttle.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::criticality;
using outgrow::manual_clock;
using throttle = outgrow::basic_adaptive_throttle<manual_clock>;

TEST_CASE("adaptive_throttle never throttles while the backend accepts everything",
          "[adaptive_throttle]") {
  manual_clock clock;
  throttle t({.seed = 1}, clock);
  for (int i = 0; i < 10'000; ++i) {
    REQUIRE(t.try_send(criticality::sheddable));
    t.record_accept();
    clock.advance(10ms);
  }
  CHECK(t.metrics().throttled == 0);
}

TEST_CASE(
    "adaptive_throttle rejects with probability (requests - K accepts) / (requests + 1)",
    "[adaptive_throttle]") {
  manual_clock clock;
  throttle t({.k = 2.0, .seed = 7}, clock);
  for (int i = 0; i < 10; ++i) {
    (void)t.try_send();
    t.record_accept();
  }
  CHECK(t.reject_probability() == 0.0);  // 10 - 2*10 < 0
  std::uint64_t requests = 10;
  while (t.metrics().requests < 100) {
    (void)t.try_send();
    ++requests;
  }
  // 100 requests, 10 accepts: (100 - 20) / 101 for critical, K x scale for the others.
  CHECK(t.reject_probability(criticality::critical) == Approx(80.0 / 101.0));
  CHECK(t.reject_probability(criticality::critical_plus) == Approx((100.0 - 30.0) / 101.0));
  CHECK(t.reject_probability(criticality::sheddable_plus) ==
        Approx((100.0 - 15.0) / 101.0));
  CHECK(t.reject_probability(criticality::sheddable) == Approx((100.0 - 10.0) / 101.0));
  const auto m = t.metrics();
  CHECK(m.requests == requests);
  CHECK(m.accepts == 10);
  CHECK(m.sent + m.throttled == requests);
}

TEST_CASE("adaptive_throttle sends about K times what an overloaded backend accepts",
          "[adaptive_throttle]") {
  // The application offers 1,000 requests/s; the backend accepts at most 100/s and
  // rejects the rest. After the window fills, the client sends about K x 100 per second.
  for (const double k : {1.5, 2.0, 3.0}) {
    manual_clock clock;
    throttle t(
        {.k = k, .k_scale = {1.0, 1.0, 1.0, 1.0}, .window = 10s, .buckets = 10, .seed = 42},
        clock);
    std::uint64_t sent_last_10s = 0;
    for (int second = 0; second < 60; ++second) {
      int accepted_this_second = 0;
      for (int i = 0; i < 1000; ++i) {
        if (t.try_send()) {
          if (second >= 50) ++sent_last_10s;
          if (accepted_this_second < 100) {
            ++accepted_this_second;
            t.record_accept();
          }
        }
        clock.advance(1ms);
      }
    }
    INFO("K = " << k);
    const double per_second = static_cast<double>(sent_last_10s) / 10.0;
    CHECK(per_second == Approx(k * 100.0).epsilon(0.1));
  }
}

TEST_CASE("adaptive_throttle forgets what fell out of its window", "[adaptive_throttle]") {
  manual_clock clock;
  throttle t({.window = 10s, .buckets = 10, .seed = 3}, clock);
  for (int i = 0; i < 500; ++i) (void)t.try_send();  // all rejected by the backend
  CHECK(t.reject_probability() > 0.9);
  clock.advance(5s);
  CHECK(t.metrics().requests == 500);
  clock.advance(6s);
  CHECK(t.metrics().requests == 0);
  CHECK(t.reject_probability() == 0.0);
  CHECK(t.try_send());
}

TEST_CASE("adaptive_throttle keeps its window with a clock at the end of its range",
          "[adaptive_throttle]") {
  // A clock whose time is within one window slice of time_point::max(): the window must
  // not compute head + slice (a signed overflow, caught by UBSan in the sanitizer
  // build), and it still counts the requests of the current slice.
  manual_clock clock(manual_clock::time_point::max() - 500ms);
  throttle t({.k = 2.0, .seed = 7}, clock);
  for (int i = 0; i < 10; ++i) {
    (void)t.try_send();
    t.record_accept();
  }
  while (t.metrics().requests < 100) (void)t.try_send();
  CHECK(t.reject_probability(criticality::critical) == Approx(80.0 / 101.0));
  clock.advance(std::chrono::hours(1));  // saturates at max(): still inside the slice
  CHECK(t.reject_probability(criticality::critical) == Approx(80.0 / 101.0));
}

TEST_CASE("adaptive_throttle rejects bad configuration", "[adaptive_throttle]") {
  using outgrow::adaptive_throttle;
  CHECK_THROWS_WITH(adaptive_throttle({.k = 0.5}),
                    "adaptive_throttle: k must be in [1, 100], got 0.5");
  CHECK_THROWS_WITH(adaptive_throttle({.k = std::nan("")}),
                    "adaptive_throttle: k must be in [1, 100], got nan");
  CHECK_THROWS_WITH(
      adaptive_throttle({.k_scale = {1.0, 1.0, 0.25, 0.25}}),
      Catch::StartsWith("adaptive_throttle: k_scale[2] (sheddable_plus) must be "
                        "such that k x k_scale is in [1, 100], got 0.25"));
  CHECK_THROWS_WITH(adaptive_throttle({.k_scale = {1.0, 1.5, 1.0, 1.0}}),
                    Catch::StartsWith("adaptive_throttle: k_scale[1] (critical) must be at "
                                      "most the scale of the class before it"));
  CHECK_THROWS_WITH(adaptive_throttle({.window = 10ms}),
                    "adaptive_throttle: window must be in [1s, 1h], got 10ms");
  CHECK_THROWS_WITH(adaptive_throttle({.buckets = 0}),
                    "adaptive_throttle: buckets must be in [1, 3600], got 0");
}
