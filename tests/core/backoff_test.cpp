#include <outgrow/core/backoff.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"
#include "counting_new.hpp"  // delay() must never allocate

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

// The smallest conforming policy, as documented in the header.
struct immediate_backoff {
  nanoseconds delay(std::uint32_t, nanoseconds, std::mt19937_64&) const { return 0ns; }
};
struct no_delay_member {};
struct delay_in_milliseconds {
  std::chrono::milliseconds delay(std::uint32_t, nanoseconds, std::mt19937_64&) const {
    return 1ms;
  }
};

static_assert(outgrow::backoff_policy<immediate_backoff>);
static_assert(!outgrow::backoff_policy<no_delay_member>);
static_assert(!outgrow::backoff_policy<delay_in_milliseconds>);  // nanoseconds, exactly
static_assert(outgrow::random_bits_64<std::mt19937_64>);
static_assert(!outgrow::random_bits_64<std::mt19937>);  // 32-bit words are not enough

constexpr std::size_t samples = 100'000;
constexpr std::uint64_t seed = 20240601;

struct summary {
  nanoseconds min = nanoseconds::max();
  nanoseconds max = nanoseconds::min();
  double mean_ns = 0.0;
};

template <class Backoff>
summary sample(const Backoff& backoff, std::uint32_t n, nanoseconds previous) {
  std::mt19937_64 rng(seed);
  summary s;
  double sum = 0.0;
  for (std::size_t i = 0; i < samples; ++i) {
    const nanoseconds d = backoff.delay(n, previous, rng);
    s.min = std::min(s.min, d);
    s.max = std::max(s.max, d);
    sum += static_cast<double>(d.count());
  }
  s.mean_ns = sum / static_cast<double>(samples);
  return s;
}

double ms(double ns) {
  return ns / 1e6;
}
double ms(nanoseconds d) {
  return static_cast<double>(d.count()) / 1e6;
}

}  // namespace

TEST_CASE("backoff defaults are base 100ms and cap 10s", "[backoff]") {
  CHECK(outgrow::constant_backoff{}.interval() == 100ms);
  const outgrow::exponential_backoff e;
  CHECK(e.base() == 100ms);
  CHECK(e.cap() == 10s);
  CHECK(e.multiplier() == 2.0);
  CHECK(outgrow::full_jitter_backoff{}.base() == 100ms);
  CHECK(outgrow::full_jitter_backoff{}.cap() == 10s);
  CHECK(outgrow::equal_jitter_backoff{} == outgrow::equal_jitter_backoff{100ms, 10s});
  CHECK(outgrow::decorrelated_jitter_backoff{} ==
        outgrow::decorrelated_jitter_backoff{100ms, 10s});
}

TEST_CASE("constant_backoff waits the same for every retry", "[backoff][constant]") {
  const outgrow::constant_backoff b{250ms};
  std::mt19937_64 rng(seed);
  for (std::uint32_t n = 1; n <= 50; ++n) CHECK(b.delay(n, 7s, rng) == 250ms);
  CHECK(outgrow::constant_backoff{0ns}.delay(1, 0ns, rng) == 0ns);  // retry at once
}

TEST_CASE("exponential_backoff multiplies from base and stops at cap",
          "[backoff][exponential]") {
  std::mt19937_64 rng(seed);
  const outgrow::exponential_backoff doubling{100ms, 1s};
  const std::array<nanoseconds, 7> expected{100ms, 200ms, 400ms, 800ms, 1s, 1s, 1s};
  for (std::uint32_t n = 1; n <= expected.size(); ++n) {
    CHECK(doubling.delay(n, 0ns, rng) == expected[n - 1]);
  }
  // Far-away retries stay at cap without overflowing (or looping n times).
  CHECK(doubling.delay(4'000'000'000U, 0ns, rng) == 1s);
  CHECK(doubling.delay(std::numeric_limits<std::uint32_t>::max(), 0ns, rng) == 1s);

  const outgrow::exponential_backoff gentle{100ms, 10s, 1.5};
  CHECK(gentle.delay(1, 0ns, rng) == 100ms);
  CHECK(gentle.delay(2, 0ns, rng) == 150ms);
  CHECK(gentle.delay(3, 0ns, rng) == 225ms);
  CHECK(gentle.delay(4, 0ns, rng) == 337'500us);
  // Every retry respects cap and never shrinks.
  nanoseconds last{0};
  for (std::uint32_t n = 1; n <= 64; ++n) {
    const nanoseconds d = gentle.delay(n, 0ns, rng);
    CHECK(d <= 10s);
    CHECK(d >= last);
    last = d;
  }
  CHECK(last == 10s);

  const outgrow::exponential_backoff flat{100ms, 10s, 1.0};
  CHECK(flat.delay(1'000, 0ns, rng) == 100ms);
  const outgrow::exponential_backoff capped_at_base{100ms, 100ms};
  CHECK(capped_at_base.delay(5, 0ns, rng) == 100ms);
}

TEST_CASE("full jitter stays within its ceiling and averages half of it",
          "[backoff][jitter][full]") {
  const outgrow::full_jitter_backoff b{100ms, 10s};
  fmt::print("full jitter rand(0, min(10s, 100ms*2^(n-1))), {} samples:\n", samples);
  for (std::uint32_t n = 1; n <= 9; ++n) {
    const nanoseconds t = std::min<nanoseconds>(10s, 100ms * (1LL << (n - 1)));
    CHECK(b.ceiling(n) == t);
    const summary s = sample(b, n, 0ns);
    const double analytic = static_cast<double>(t.count()) / 2.0;
    fmt::print(
        "  n={} ceiling {:>8.1f} ms: mean {:>8.2f} ms (analytic {:>8.2f}, {:+.3f} %)\n", n,
        ms(t), ms(s.mean_ns), ms(analytic), 100.0 * (s.mean_ns / analytic - 1.0));
    CHECK(s.min >= 0ns);
    CHECK(s.max <= t);
    CHECK(s.mean_ns == Approx(analytic).epsilon(0.01));
    // The whole range is used.
    CHECK(static_cast<double>(s.min.count()) < 0.001 * static_cast<double>(t.count()));
    CHECK(static_cast<double>(s.max.count()) > 0.999 * static_cast<double>(t.count()));
  }
}

TEST_CASE(
    "equal jitter stays between half and all of its ceiling and averages three "
    "quarters",
    "[backoff][jitter][equal]") {
  const outgrow::equal_jitter_backoff b{100ms, 10s};
  fmt::print("equal jitter t/2 + rand(0, t/2), {} samples:\n", samples);
  for (std::uint32_t n = 1; n <= 9; ++n) {
    const nanoseconds t = std::min<nanoseconds>(10s, 100ms * (1LL << (n - 1)));
    CHECK(b.ceiling(n) == t);
    const summary s = sample(b, n, 0ns);
    const double analytic = 0.75 * static_cast<double>(t.count());
    fmt::print(
        "  n={} ceiling {:>8.1f} ms: mean {:>8.2f} ms (analytic {:>8.2f}, {:+.3f} %)\n", n,
        ms(t), ms(s.mean_ns), ms(analytic), 100.0 * (s.mean_ns / analytic - 1.0));
    CHECK(s.min >= t / 2);
    CHECK(s.max <= t);
    CHECK(s.mean_ns == Approx(analytic).epsilon(0.01));
  }
}

TEST_CASE("decorrelated jitter stays between base and three times the previous delay",
          "[backoff][jitter][decorrelated]") {
  const nanoseconds base = 100ms, cap = 10s;
  const outgrow::decorrelated_jitter_backoff b{base, cap};
  fmt::print("decorrelated jitter min(cap, rand(base, 3*prev)), {} samples:\n", samples);
  // previous = 0 is the first retry (treated as base).
  for (const nanoseconds previous :
       {0ns, nanoseconds{100ms}, nanoseconds{250ms}, nanoseconds{1s}, nanoseconds{3s},
        nanoseconds{5s}, nanoseconds{10s}}) {
    const double lo = static_cast<double>(base.count());
    const double hi = 3.0 * static_cast<double>(std::max(previous, base).count());
    const double c = static_cast<double>(cap.count());
    // E[min(c, U(lo, hi))]
    const double analytic =
        hi <= c ? (lo + hi) / 2.0 : ((c - lo) * (c + lo) / 2.0 + (hi - c) * c) / (hi - lo);
    const summary s = sample(b, 1, previous);
    fmt::print(
        "  prev {:>6.0f} ms: in [{:.1f}, {:.1f}] ms, mean {:>8.2f} ms (analytic "
        "{:>8.2f}, {:+.3f} %)\n",
        ms(previous), ms(s.min), ms(s.max), ms(s.mean_ns), ms(analytic),
        100.0 * (s.mean_ns / analytic - 1.0));
    CHECK(s.min >= base);
    CHECK(s.max <= std::min(cap, 3 * std::max(previous, base)));
    CHECK(s.mean_ns == Approx(analytic).epsilon(0.01));
  }

  // Fed its own output, as retry does: always within [base, cap], and it reaches cap.
  std::mt19937_64 rng(seed);
  nanoseconds previous{0};
  std::size_t at_cap = 0;
  for (std::uint32_t n = 1; n <= samples; ++n) {
    const nanoseconds d = b.delay(n, previous, rng);
    REQUIRE(d >= base);
    REQUIRE(d <= std::min(cap, 3 * std::max(previous, base)));
    if (d == cap) ++at_cap;
    previous = d;
  }
  CHECK(at_cap > 0);
}

TEST_CASE("a seed gives the same delays on every platform", "[backoff][determinism]") {
  // Golden values: std::mt19937_64(42) (specified by the standard) through our
  // mapping, cross-checked with an independent implementation of MT19937-64.
  const outgrow::full_jitter_backoff full;
  const outgrow::equal_jitter_backoff equal;
  const outgrow::decorrelated_jitter_backoff decorrelated;
  const std::array<std::int64_t, 6> full_golden{75515554,  127806279,  300858081,
                                                109018147, 1445230347, 301018597};
  const std::array<std::int64_t, 6> equal_golden{87757777,  163903140,  350429040,
                                                 454509073, 1522615174, 1750509298};
  const std::array<std::int64_t, 6> decorrelated_golden{251031107, 517347135,  1192145974,
                                                        573743525, 1564407266, 532076620};
  std::mt19937_64 a(42), b(42), c(42);
  nanoseconds previous{0};
  for (std::uint32_t n = 1; n <= 6; ++n) {
    CHECK(full.delay(n, 0ns, a).count() == full_golden[n - 1]);
    CHECK(equal.delay(n, 0ns, b).count() == equal_golden[n - 1]);
    previous = decorrelated.delay(n, previous, c);
    CHECK(previous.count() == decorrelated_golden[n - 1]);
  }

  // Same seed, same sequence; another seed, another sequence.
  std::mt19937_64 x(7), y(7), z(8);
  std::size_t differ = 0;
  for (std::uint32_t n = 1; n <= 100; ++n) {
    const nanoseconds dx = full.delay(n, 0ns, x);
    CHECK(dx == full.delay(n, 0ns, y));
    if (dx != full.delay(n, 0ns, z)) ++differ;
  }
  CHECK(differ > 90);
}

TEST_CASE("backoff policies reject bad input with exact messages", "[backoff][config]") {
  CHECK_THROWS_WITH(outgrow::exponential_backoff(100ms, 10ms),
                    "exponential_backoff: cap must be in [base (100ms), inf), got 10ms");
  CHECK_THROWS_WITH(outgrow::exponential_backoff(100ms, 1s, 0.5),
                    "exponential_backoff: multiplier must be in [1, inf), got 0.5");
  CHECK_THROWS_WITH(
      outgrow::exponential_backoff(100ms, 1s, std::numeric_limits<double>::infinity()),
      "exponential_backoff: multiplier must be in [1, inf), got inf");
  CHECK_THROWS_AS(outgrow::exponential_backoff(100ms, 1s, std::nan("")),
                  outgrow::config_error);
  CHECK_THROWS_WITH(outgrow::full_jitter_backoff(0ns, 1s),
                    "full_jitter_backoff: base must be in (0s, inf), got 0s");
  CHECK_THROWS_WITH(outgrow::equal_jitter_backoff(-5ms, 1s),
                    "equal_jitter_backoff: base must be in (0s, inf), got -5ms");
  CHECK_THROWS_WITH(
      outgrow::decorrelated_jitter_backoff(1s, 500ms),
      "decorrelated_jitter_backoff: cap must be in [base (1s), inf), got 500ms");
  CHECK_THROWS_WITH(outgrow::constant_backoff(-1ms),
                    "constant_backoff: delay must be in [0s, inf), got -1ms");
  try {
    outgrow::full_jitter_backoff bad(2s, 1s);
    FAIL("no exception");
  } catch (const outgrow::config_error& e) {
    CHECK(e.primitive() == "full_jitter_backoff");
    CHECK(e.field() == "cap");
  }
  // Edges are accepted: cap == base, multiplier 1, a zero constant delay.
  CHECK_NOTHROW(outgrow::exponential_backoff(1ns, 1ns, 1.0));
  CHECK_NOTHROW(outgrow::constant_backoff(0ns));
}

TEST_CASE("huge caps and previous delays saturate instead of overflowing",
          "[backoff][edge]") {
  std::mt19937_64 rng(seed);
  const nanoseconds huge = nanoseconds::max();
  const outgrow::decorrelated_jitter_backoff d{1s, huge};
  for (int i = 0; i < 1000; ++i) {
    const nanoseconds x = d.delay(1, huge / 2, rng);
    REQUIRE(x >= 1s);
    REQUIRE(x <= huge);
  }
  const outgrow::full_jitter_backoff f{1s, huge};
  CHECK(f.ceiling(200) == huge);
  for (int i = 0; i < 1000; ++i) REQUIRE(f.delay(200, 0ns, rng) >= 0ns);
  const outgrow::exponential_backoff e{1ns, huge, 1e300};
  CHECK(e.delay(3, 0ns, rng) == huge);
}

TEST_CASE("computing a delay never allocates", "[backoff][allocation]") {
  std::mt19937_64 rng(seed);
  const outgrow::constant_backoff c;
  const outgrow::exponential_backoff e;
  const outgrow::full_jitter_backoff f;
  const outgrow::equal_jitter_backoff q;
  const outgrow::decorrelated_jitter_backoff d;
  const auto before = outgrow_test::allocations();
  nanoseconds sum{0}, previous{0};
  for (std::uint32_t n = 1; n <= 1000; ++n) {
    sum += c.delay(n, previous, rng) + e.delay(n, previous, rng) +
           f.delay(n, previous, rng) + q.delay(n, previous, rng);
    previous = d.delay(n, previous, rng);
  }
  CHECK(outgrow_test::allocations() == before);
  CHECK(sum > 0ns);
}
