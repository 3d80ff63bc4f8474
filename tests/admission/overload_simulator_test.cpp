// The overload simulation the admission area is judged by: a service of capacity C
// offered 0.5x to 5x C. Without admission control goodput collapses and p99 grows
// without bound; with the adaptive concurrency limiter (Vegas over 100 ms windows)
// goodput stays >= 90 % of C and p99 <= 2x the unloaded p99 at 2x and 5x overload. The
// bulkhead and the SRE throttle are shown beside them. The table prints with -s.
#include <outgrow/admission/overload_simulator.hpp>

#include <chrono>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "catch.hpp"

using namespace std::chrono_literals;
using clock_type = outgrow::manual_clock;

namespace {

struct row {
  outgrow::overload_report open, bulkhead, limiter, throttle;
  std::uint64_t throttle_sent = 0;
};

row run_all(double load) {
  row r;
  {
    clock_type clock;
    outgrow::overload_simulator sim({}, clock);
    outgrow::open_gate gate;
    r.open = sim.run(gate, load);
  }
  {
    clock_type clock;
    outgrow::overload_simulator sim({}, clock);
    outgrow::basic_bulkhead<clock_type> b({.max_concurrent_calls = 16}, clock);
    outgrow::bulkhead_gate gate(b);
    r.bulkhead = sim.run(gate, load);
  }
  {
    clock_type clock;
    outgrow::overload_simulator sim({}, clock);
    using limit = outgrow::windowed_limit<outgrow::vegas_limit>;
    outgrow::concurrency_limiter<limit, clock_type> l(
        limit(outgrow::vegas_limit({.initial_limit = 8, .seed = 1}),
              {.min_window = 100ms, .max_window = 100ms}),
        clock);
    outgrow::limiter_gate gate(l);
    r.limiter = sim.run(gate, load);
  }
  {
    clock_type clock;
    outgrow::overload_simulator sim({}, clock);
    outgrow::basic_adaptive_throttle<clock_type> t({.seed = 1}, clock);
    outgrow::basic_bulkhead<clock_type> b({.max_concurrent_calls = 16}, clock);
    outgrow::bulkhead_gate server(b);
    outgrow::throttle_gate gate(t, server);
    r.throttle = sim.run(gate, load);
    r.throttle_sent = gate.sent();
  }
  return r;
}

double ms(std::chrono::nanoseconds d) {
  return static_cast<double>(d.count()) / 1e6;
}

}  // namespace

TEST_CASE("overload: the adaptive limiter keeps goodput and latency where none collapses",
          "[overload_simulator]") {
  const row unloaded = run_all(0.5);
  const double base_p99 = ms(unloaded.open.p99);
  std::printf(
      "load | none goodput p99 | bulkhead(16) goodput p99 | limiter goodput p99 | "
      "throttle+bulkhead goodput p99\n");
  for (const double load : {0.5, 1.0, 2.0, 5.0}) {
    const row r = load == 0.5 ? unloaded : run_all(load);
    std::printf("%.1fx | %.2f %8.1f ms | %.2f %6.1f ms | %.2f %6.1f ms | %.2f %6.1f ms\n",
                load, r.open.goodput_share, ms(r.open.p99), r.bulkhead.goodput_share,
                ms(r.bulkhead.p99), r.limiter.goodput_share, ms(r.limiter.p99),
                r.throttle.goodput_share, ms(r.throttle.p99));
    INFO("load " << load << "x, unloaded p99 " << base_p99 << " ms");
    if (load >= 2.0) {
      CHECK(r.open.goodput_share < 0.1);        // collapse
      CHECK(ms(r.open.p99) > 10.0 * base_p99);  // and latency without bound
      CHECK(r.limiter.goodput_share >= 0.9);
      CHECK(ms(r.limiter.p99) <= 2.0 * base_p99);
      CHECK(r.bulkhead.goodput_share >= 0.9);
      CHECK(r.throttle.goodput_share >= 0.9);
      // The client-side throttle sends about K (2) x what the server accepts, so at 5x
      // most of what would be rejected never reaches the server.
      const double sent_per_s = static_cast<double>(r.throttle_sent) / 30.0;  // whole run
      CHECK(sent_per_s <= 1.1 * 2.0 * r.throttle.goodput_rps);
      if (load >= 5.0) CHECK(sent_per_s < 0.5 * r.throttle.offered_rps);
    } else {
      CHECK(r.limiter.goodput_share >= 0.9 * load);
    }
  }
}

TEST_CASE("overload_simulator is deterministic and validates its input",
          "[overload_simulator]") {
  clock_type c1, c2;
  outgrow::overload_simulator a({.duration = 5s}, c1), b({.duration = 5s}, c2);
  outgrow::open_gate g1, g2;
  const auto r1 = a.run(g1, 1.5);
  const auto r2 = b.run(g2, 1.5);
  CHECK(r1.goodput_rps == r2.goodput_rps);
  CHECK(r1.p99 == r2.p99);
  CHECK_THROWS_WITH(outgrow::overload_simulator({.workers = 0}, c1),
                    "overload_simulator: workers must be in [1, 10000], got 0");
  CHECK_THROWS_AS(outgrow::overload_simulator({.service_sigma = -1}, c1),
                  outgrow::config_error);
  CHECK_THROWS_AS(a.run(g1, 0.0), std::invalid_argument);
}
