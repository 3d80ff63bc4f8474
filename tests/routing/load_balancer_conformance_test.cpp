// Conformance of load_balancer with the systems its header names: nginx's smooth
// weighted round robin and Envoy's outlier detection, panic threshold and slow start.
// Every test case names its source (file and test or document) above it; where we
// differ on purpose, the test pins our behaviour and says what the peer does (the
// header, include/outgrow/routing/load_balancer.hpp, explains why).
#include <outgrow/routing/load_balancer.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::endpoint_status;
using outgrow::manual_clock;

namespace {

template <class Policy>
using lb = outgrow::load_balancer<std::string, Policy, manual_clock>;
using wrr_lb = lb<outgrow::weighted_round_robin>;

/// nginx's ngx_http_upstream_get_peer (src/http/ngx_http_upstream_round_robin.c),
/// transcribed for peers that are all up and never fail (effective_weight == weight):
/// for each peer current_weight += effective_weight and total += effective_weight; the
/// peer with the largest current_weight wins, the first one on ties; then
/// best->current_weight -= total. Peers are named a, b, c, ...
std::string nginx_get_peer_sequence(const std::vector<std::int64_t>& weights,
                                    std::size_t picks) {
  std::vector<std::int64_t> current(weights.size(), 0);
  std::string seq;
  for (std::size_t k = 0; k < picks; ++k) {
    std::int64_t total = 0;
    std::size_t best = weights.size();
    for (std::size_t i = 0; i < weights.size(); ++i) {
      current[i] += weights[i];
      total += weights[i];
      if (best == weights.size() || current[i] > current[best]) best = i;
    }
    current[best] -= total;
    seq += static_cast<char>('a' + best);
  }
  return seq;
}

/// A balancer over endpoints "a", "b", ... with these weights.
wrr_lb make_wrr(const std::vector<double>& weights, manual_clock clock = {}) {
  std::vector<outgrow::weighted_node<std::string>> nodes;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    nodes.push_back({std::string(1, static_cast<char>('a' + i)), weights[i]});
  }
  return wrr_lb(nodes, {}, clock);
}

/// The next `n` picks of `b`, as endpoint names concatenated.
template <class B>
std::string picks(B& b, std::size_t n) {
  std::string seq;
  for (std::size_t i = 0; i < n; ++i) {
    auto l = b.pick();
    REQUIRE(l);
    seq += *l;
    l.success();
  }
  return seq;
}

std::string repeat(const std::string& s, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += s;
  return out;
}

/// Fails `target` (picked with pick_if) `n` times in a row.
template <class B>
void fail(B& b, const std::string& target, int n) {
  for (int i = 0; i < n; ++i) {
    auto l = b.pick_if([&](const std::string& e) { return e == target; });
    REQUIRE(l);
    l.failure();
  }
}

std::vector<std::string> names(std::size_t n) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(fmt::format("e{}", i));
  return out;
}

}  // namespace

// ---- nginx: smooth weighted round robin ---------------------------------------------

// Source: nginx commit 27e94984486058d73157038f7950a0a36ecc6e35 "Upstream: smooth
// weighted round-robin balancing." (nginx 1.3.1): "For edge case weights like
// { 5, 1, 1 } we now produce { a, a, b, a, c, a, a } sequence", and its table of
// current_weight values after each selection.
TEST_CASE("nginx smooth WRR commit: weights 5 1 1 give a a b a c a a",
          "[load_balancer][conformance][nginx]") {
  auto b = make_wrr({5, 1, 1});
  CHECK(picks(b, 21) == repeat("aabacaa", 3));

  outgrow::detail::smooth_wrr wrr({5, 1, 1});
  const std::vector<std::vector<std::int64_t>> after = {
      {-2, 1, 1}, {-4, 2, 2}, {1, -4, 3}, {-1, -3, 4}, {4, -2, -2}, {2, -1, -1}, {0, 0, 0}};
  const std::string chosen = "aabacaa";
  for (std::size_t k = 0; k < after.size(); ++k) {
    INFO("selection " << k + 1);
    CHECK(static_cast<char>('a' + wrr.next()) == chosen[k]);
    CHECK(wrr.current() == after[k]);
  }
}

// Source: ngx_http_upstream_get_peer (nginx src/http/ngx_http_upstream_round_robin.c),
// worked by hand: {1, 3} -> b (1,-1), a (-2,2), b (-1,1), b (0,0). The outgrow issue
// that motivated this file quotes the same b a b b (we used to give b b a b).
TEST_CASE("nginx get_peer: weights 1 3 give b a b b",
          "[load_balancer][conformance][nginx]") {
  auto b = make_wrr({1, 3});
  CHECK(picks(b, 12) == repeat("babb", 3));
  CHECK(nginx_get_peer_sequence({1, 3}, 12) == repeat("babb", 3));
}

// Source: ngx_http_upstream_get_peer: the sequence repeats after sum(weights) picks,
// when every current_weight is back to 0 ({3, 2, 1}: period 6, a b a c b a). We used to
// repeat only every 2,000 picks.
TEST_CASE("nginx get_peer: weights 3 2 1 repeat every 6 picks",
          "[load_balancer][conformance][nginx]") {
  auto b = make_wrr({3, 2, 1});
  CHECK(picks(b, 18) == repeat("abacba", 3));
  outgrow::detail::smooth_wrr wrr({3, 2, 1});
  for (int k = 0; k < 6; ++k) wrr.next();
  CHECK(wrr.current() == std::vector<std::int64_t>{0, 0, 0});
}

// Source: ngx_http_upstream_get_peer, transcribed above (nginx_get_peer_sequence). For
// every weight vector over 2, 3 and 4 peers with weights 1..6 (1..4 for 4 peers) and a
// few wide ones, the balancer's first three periods equal nginx's, pick for pick,
// including which peer wins a tie.
TEST_CASE("nginx get_peer: every small weight vector gives nginx's sequence",
          "[load_balancer][conformance][nginx]") {
  std::vector<std::vector<std::int64_t>> cases;
  for (std::int64_t x = 1; x <= 6; ++x) {
    for (std::int64_t y = 1; y <= 6; ++y) {
      cases.push_back({x, y});
      for (std::int64_t z = 1; z <= 6; ++z) cases.push_back({x, y, z});
    }
  }
  for (std::int64_t w = 1; w <= 4; ++w) {
    for (std::int64_t x = 1; x <= 4; ++x) {
      for (std::int64_t y = 1; y <= 4; ++y) {
        for (std::int64_t z = 1; z <= 4; ++z) cases.push_back({w, x, y, z});
      }
    }
  }
  cases.push_back({100, 1, 7, 33});
  cases.push_back({1000, 999, 1});
  cases.push_back({2, 4, 6, 8, 10, 12, 14, 16});  // gcd 2: same sequence as 1..8
  cases.push_back({1, 1, 1, 1, 1});               // plain round robin
  std::size_t agree = 0;
  for (const auto& w : cases) {
    std::vector<double> weights(w.begin(), w.end());
    std::int64_t total = 0;
    for (const auto x : w) total += x;
    const auto n = static_cast<std::size_t>(3 * total);
    auto b = make_wrr(weights);
    const std::string ours = picks(b, n);
    const std::string nginx = nginx_get_peer_sequence(w, n);
    INFO("weights " << fmt::format("{}", fmt::join(w, " ")));
    CHECK(ours == nginx);
    agree += ours == nginx ? 1U : 0U;
  }
  CHECK(agree == cases.size());
}

// Source: ngx_http_upstream_get_peer, transcribed above. Periods longer than the
// balancer's table (65,536 picks) run nginx's step on every pick; the sequence is the
// same on both sides of the limit.
TEST_CASE("nginx get_peer: long periods keep nginx's sequence",
          "[load_balancer][conformance][nginx]") {
  for (const std::vector<std::int64_t>& w :
       std::vector<std::vector<std::int64_t>>{{65535, 1},
                                              {65536, 1},
                                              {1000000, 999999, 3},
                                              {999983, 1, 2, 3, 5, 8, 13, 21, 34}}) {
    INFO("weights " << fmt::format("{}", fmt::join(w, " ")));
    auto b = make_wrr(std::vector<double>(w.begin(), w.end()));
    CHECK(picks(b, 20'000) == nginx_get_peer_sequence(w, 20'000));
  }
}

// Source: ngx_http_upstream_get_peer with the integer weights our doubles stand for.
// nginx only takes integers; a weight of ours is read as the decimal it prints as
// (0.1 is 1/10), so fractional weights give the sequence of the integers with the
// same ratios, and exact long-run shares.
TEST_CASE("nginx get_peer: fractional weights give the sequence of their integer ratios",
          "[load_balancer][conformance][nginx]") {
  auto f1 = make_wrr({2.5, 0.5, 0.5});
  CHECK(picks(f1, 14) == repeat("aabacaa", 2));  // {5, 1, 1}
  auto f2 = make_wrr({0.25, 0.75});
  CHECK(picks(f2, 8) == repeat("babb", 2));  // {1, 3}
  auto f3 = make_wrr({0.1, 0.3});
  CHECK(picks(f3, 8) == repeat("babb", 2));  // {1, 3}, though 0.3 / 0.1 != 3 in doubles
  auto f4 = make_wrr({0.1, 0.2, 0.7});
  CHECK(picks(f4, 30) == nginx_get_peer_sequence({1, 2, 7}, 30));
  auto f5 = make_wrr({1.0 / 3.0, 2.0 / 3.0});
  CHECK(picks(f5, 9) == nginx_get_peer_sequence({1, 2}, 9));
}

// Deliberate difference. Source: ngx_http_upstream_free_round_robin_peer lowers a
// failed peer's effective_weight by weight / max_fails (and get_peer raises it by 1 per
// pass), and max_fails failures within fail_timeout take it out. outgrow does not model
// nginx's passive health: a failure leaves the WRR sequence as it was; repeated
// failures eject the endpoint the Envoy way (tests below).
TEST_CASE("nginx difference: a failure does not lower the WRR weight",
          "[load_balancer][conformance][nginx]") {
  auto b = make_wrr({5, 1, 1});
  std::string seq;
  for (int i = 0; i < 14; ++i) {
    auto l = b.pick();
    REQUIRE(l);
    seq += *l;
    if (i == 0) {
      l.failure();  // nginx: a's effective_weight drops to 0 (max_fails 1)
    } else {
      l.success();
    }
  }
  CHECK(seq == repeat("aabacaa", 2));
  CHECK(b.endpoints()[0].failures == 1);
  CHECK(b.status("a") == endpoint_status::available);
}

// ---- Envoy: outlier detection, panic threshold, slow start ----------------------------

// Source: envoy api/envoy/config/cluster/v3/outlier_detection.proto (consecutive_5xx
// "Defaults to 5", base_ejection_time "Defaults to 30000ms or 30s", max_ejection_time
// "the default value (300000ms or 300s)", max_ejection_percent "Defaults to 10%");
// Envoy docs intro/arch_overview/upstream/load_balancing/panic_threshold ("The default
// panic threshold is 50%") and .../slow_start (min_weight_percent "default is 10%",
// off unless slow_start_window is set). Envoy's `interval` (10 s) has no counterpart:
// see the ejection-time test.
TEST_CASE("Envoy outlier detection defaults", "[load_balancer][conformance][envoy]") {
  constexpr outgrow::load_balancer_config c{};
  STATIC_REQUIRE(c.consecutive_failures == 5);
  STATIC_REQUIRE(c.base_ejection_time == 30s);
  STATIC_REQUIRE(c.max_ejection_time == 300s);
  STATIC_REQUIRE(c.max_ejection_fraction == 0.1);
  STATIC_REQUIRE(c.panic_threshold == 0.5);
  STATIC_REQUIRE(c.slow_start_min_weight == 0.1);
  STATIC_REQUIRE(c.slow_start_window == 0s);
}

// Source: envoy source/common/upstream/outlier_detection_impl.cc: a success resets the
// consecutive-5xx counter, the ejection resets it (onConsecutiveErrorWorker), and so
// does the return to service (unejectHost -> resetConsecutive5xx).
TEST_CASE("Envoy consecutive_5xx: five failures in a row eject",
          "[load_balancer][conformance][envoy]") {
  manual_clock clock;
  lb<outgrow::round_robin> b(names(10), {}, clock);
  fail(b, "e0", 4);
  {
    auto l = b.pick_if([](const std::string& e) { return e == "e0"; });
    l.success();
  }
  fail(b, "e0", 4);
  CHECK(b.status("e0") == endpoint_status::available);
  fail(b, "e0", 1);
  CHECK(b.status("e0") == endpoint_status::ejected);
  clock.advance(30s);
  b.refresh();
  REQUIRE(b.status("e0") == endpoint_status::available);
  fail(b, "e0", 4);  // the counter restarted at the return
  CHECK(b.status("e0") == endpoint_status::available);
  fail(b, "e0", 1);
  CHECK(b.status("e0") == endpoint_status::ejected);
}

// Source: outlier_detection.proto base_ejection_time: "The real time is equal to the
// base time multiplied by the number of times the host has been ejected and is capped
// by max_ejection_time"; outlier_detection_impl.cc ejectHost: the multiplier
// (ejectTimeBackoff) grows while backoff * base < max + base, so with the defaults it
// stops at 11 and every later ejection lasts 300 s.
// Deliberate difference: Envoy returns a host at the first `interval` sweep (10 s)
// after its time is up; we return it exactly when the time is up.
TEST_CASE("Envoy ejection time is base times ejections capped at max",
          "[load_balancer][conformance][envoy]") {
  manual_clock clock;
  lb<outgrow::round_robin> b(names(10), {}, clock);
  const std::vector<int> expected = {30,  60,  90,  120, 150, 180,
                                     210, 240, 270, 300, 300, 300};
  for (std::size_t k = 0; k < expected.size(); ++k) {
    INFO("ejection " << k + 1);
    fail(b, "e3", 5);
    REQUIRE(b.status("e3") == endpoint_status::ejected);
    clock.advance(std::chrono::seconds(expected[k]) - 1ns);
    b.refresh();
    CHECK(b.status("e3") == endpoint_status::ejected);
    clock.advance(1ns);
    b.refresh();
    CHECK(b.status("e3") == endpoint_status::available);
  }
  CHECK(b.metrics().ejections == expected.size());
  // The multiplier stopped at 11 (Envoy's cap), not 12: after 10 × 30 s in service it
  // has decayed to 1, so the next ejection is the second step, 60 s.
  clock.advance(300s);
  fail(b, "e3", 5);
  clock.advance(60s - 1ns);
  b.refresh();
  CHECK(b.status("e3") == endpoint_status::ejected);
  clock.advance(1ns);
  b.refresh();
  CHECK(b.status("e3") == endpoint_status::available);
}

// Deliberate difference. Source: outlier_detection_impl.cc onIntervalTimer: "Decrement
// time backoff for all hosts which have not been ejected", once per `interval` (10 s)
// sweep. We have no sweep: the multiplier decays by one per base_ejection_time (30 s) in
// service. A host that fails again 25 s after returning is ejected for 60 s here; Envoy
// would have decayed it twice and eject it for 30 s.
TEST_CASE("Envoy difference: the ejection multiplier decays per base_ejection_time",
          "[load_balancer][conformance][envoy]") {
  manual_clock clock;
  lb<outgrow::round_robin> b(names(10), {}, clock);
  fail(b, "e1", 5);
  clock.advance(30s);
  b.refresh();
  REQUIRE(b.status("e1") == endpoint_status::available);
  clock.advance(25s);
  fail(b, "e1", 5);
  clock.advance(60s - 1ns);
  b.refresh();
  CHECK(b.status("e1") == endpoint_status::ejected);  // Envoy: back after 30 s
  clock.advance(1ns);
  b.refresh();
  CHECK(b.status("e1") == endpoint_status::available);
  clock.advance(30s);  // one base_ejection_time in service: multiplier 2 -> 1
  fail(b, "e1", 5);
  clock.advance(60s - 1ns);
  b.refresh();
  CHECK(b.status("e1") == endpoint_status::ejected);
  clock.advance(1ns);
  b.refresh();
  CHECK(b.status("e1") == endpoint_status::available);
}

// Source: outlier_detection_impl.cc ejectHost: a host is ejected only while
// 100 * (ejected + 1) / hosts <= max_ejection_percent, unless always_eject_one_host is
// set and nothing is ejected yet; refused ejections count as ejections_overflow.
// Deliberate difference: we always allow one ejection, as Envoy did by default before
// always_eject_one_host (default false) existed ("Defaults to 10% but will eject at
// least one host regardless of the value"), so a pool of fewer than 10 endpoints still
// has passive health at the default 10 %. Equal to Envoy with always_eject_one_host.
TEST_CASE("Envoy max_ejection_percent caps concurrent ejections",
          "[load_balancer][conformance][envoy]") {
  const auto envoy_allowed = [](std::size_t hosts, bool always_eject_one_host) {
    std::size_t ejected = 0;
    while (ejected < hosts) {
      const double percent =
          100.0 * static_cast<double>(ejected + 1) / static_cast<double>(hosts);
      const bool should_eject = percent <= 10.0 || (always_eject_one_host && ejected == 0);
      if (!should_eject) break;
      ++ejected;
    }
    return ejected;
  };
  for (const std::size_t n : std::vector<std::size_t>{1, 2, 3, 5, 9, 10, 11, 19, 20, 21, 25,
                                                      29, 30, 31, 99, 100}) {
    INFO(n << " endpoints");
    manual_clock clock;
    lb<outgrow::round_robin> b(names(n), {.panic_threshold = 0.0}, clock);
    for (const auto& e : names(n)) fail(b, e, 5);
    const auto m = b.metrics();
    CHECK(m.ejected == envoy_allowed(n, true));
    CHECK(m.ejections_overflow == n - m.ejected);
    if (n >= 10) CHECK(m.ejected == envoy_allowed(n, false));
    if (n < 10) CHECK(envoy_allowed(n, false) == 0);  // where Envoy's default differs
  }
}

// Source: envoy load_balancer_impl.cc LoadBalancerBase::isHostSetInPanic: panic when
// 100 * healthy / (hosts - excluded) < healthy_panic_threshold (50), strictly; in panic
// Envoy balances across all hosts. Drained endpoints leave the count as Envoy's
// excluded hosts do.
TEST_CASE("Envoy panic threshold is strictly below 50 percent healthy",
          "[load_balancer][conformance][envoy]") {
  manual_clock clock;
  lb<outgrow::round_robin> b({"a", "b", "c", "d"}, {.unhealthy_threshold = 1}, clock);
  b.report_health("a", false);
  b.report_health("b", false);
  CHECK_FALSE(b.panic());  // 2 of 4 healthy = 50 %: not below
  CHECK(b.routable() == 2);
  b.report_health("c", false);
  CHECK(b.panic());  // 1 of 4 = 25 %
  CHECK(b.routable() == 4);
  picks(b, 8);
  CHECK(b.metrics().panic_picks == 8);

  lb<outgrow::round_robin> d({"a", "b", "c", "d"}, {.unhealthy_threshold = 1}, clock);
  d.drain("d");
  d.report_health("a", false);
  CHECK_FALSE(d.panic());  // 2 of 3 counted
  d.report_health("b", false);
  CHECK(d.panic());  // 1 of 3
  CHECK(d.routable() == 3);
}

// Source: Envoy docs intro/arch_overview/upstream/load_balancing/slow_start: NewWeight =
// Weight * max(MinWeightPercent, TimeFactor^(1/Aggression)), MinWeightPercent 10 %,
// Aggression 1.0 by default. Deliberate difference: our ramp moves in
// slow_start_steps steps (each step republishes the snapshot), so the factor is the
// last step reached, floor(t / window * steps) / steps, where Envoy's is continuous.
TEST_CASE("Envoy slow start starts at 10 percent and ramps to the full weight",
          "[load_balancer][conformance][envoy]") {
  manual_clock clock;
  lb<outgrow::weighted_round_robin> b({"a", "b"}, {.slow_start_window = 100s}, clock);
  b.add("c", 2.0);
  const auto weight_of_c = [&] { return b.endpoints()[2].effective_weight; };
  CHECK(weight_of_c() == Approx(0.2));  // 10 % of 2
  clock.advance(55s);
  b.refresh();
  CHECK(weight_of_c() == Approx(1.0));  // step 5 of 10; Envoy: 2 * 0.55 = 1.1
  clock.advance(45s);
  b.refresh();
  CHECK(weight_of_c() == Approx(2.0));
  CHECK(b.status("c") == endpoint_status::available);
}
