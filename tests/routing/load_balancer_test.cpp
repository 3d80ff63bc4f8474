#include <outgrow/routing/load_balancer.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::endpoint_status;
using outgrow::manual_clock;

namespace {

template <class Policy, class Clock = manual_clock>
using lb = outgrow::load_balancer<std::string, Policy, Clock>;

/// Picks `n` times (success each) and counts picks per endpoint.
template <class B>
std::map<std::string, int> spread(B& b, int n) {
  std::map<std::string, int> counts;
  for (int i = 0; i < n; ++i) {
    auto l = b.pick();
    REQUIRE(l);
    ++counts[*l];
    l.success();
  }
  return counts;
}

/// Picks until `target` was picked `failures` times, failing only `target`.
template <class B>
void fail_endpoint(B& b, const std::string& target, int failures) {
  int failed = 0;
  for (int guard = 0; failed < failures && guard < 10'000; ++guard) {
    auto l = b.pick();
    REQUIRE(l);
    if (*l == target) {
      l.failure();
      ++failed;
    } else {
      l.success();
    }
  }
  REQUIRE(failed == failures);
}

}  // namespace

static_assert(outgrow::balancing_policy<outgrow::round_robin>);
static_assert(outgrow::balancing_policy<outgrow::ip_hash>);
static_assert(!outgrow::balancing_policy<int>);
static_assert(outgrow::metrics_snapshot<outgrow::load_balancer_metrics>);
static_assert(outgrow::metrics_snapshot<outgrow::endpoint_metrics<std::string>>);

// nginx conformance of the sequences: load_balancer_conformance_test.cpp. These pin how
// double weights become nginx's integer weights (see "Smooth WRR" in the header).
TEST_CASE("smooth WRR reads weights as exact integer ratios", "[load_balancer][wrr]") {
  using outgrow::detail::wrr_binary;
  using outgrow::detail::wrr_decimal;
  using outgrow::detail::wrr_rational;
  using outgrow::detail::wrr_weight;
  using ints = std::vector<std::int64_t>;
  const auto integers = [](std::vector<double> weights) {
    std::vector<wrr_weight> in;
    for (const double w : weights) in.push_back({w, {1, 1}, 1.0});
    return outgrow::detail::wrr_integer_weights(in);
  };
  const auto same = [](std::optional<wrr_rational> r, std::uint64_t num,
                       std::uint64_t den) { return r && r->num == num && r->den == den; };
  // Integers are used as they are (divided by their gcd).
  CHECK(integers({1, 3}) == ints{1, 3});
  CHECK(integers({5000, 1000, 1000}) == ints{5, 1, 1});
  CHECK(integers({1e6, 1}) == ints{1'000'000, 1});
  // Fractions: the shortest decimal, else the exact binary value.
  CHECK(same(wrr_decimal(0.1), 1, 10));
  CHECK(same(wrr_decimal(2.5), 5, 2));
  CHECK(same(wrr_decimal(1.0 / 3.0), 3333333333333333, 10'000'000'000'000'000));
  CHECK_FALSE(wrr_decimal(0.1 + 0.2));  // 0.30000000000000004: 17 digits
  CHECK(same(wrr_binary(0.1 + 0.2), 1351079888211149, std::uint64_t{1} << 52));
  CHECK(same(wrr_binary(0.5), 1, 2));
  CHECK_FALSE(wrr_decimal(1e-300));
  CHECK_FALSE(wrr_binary(1e-300));
  CHECK(integers({0.1, 0.3}) == ints{1, 3});
  CHECK(integers({2.5, 0.5, 0.5}) == ints{5, 1, 1});
  CHECK(integers({1.0 / 3.0, 2.0 / 3.0}) == ints{1, 2});
  CHECK(integers({1e6, 1e-12}) == ints{1'000'000'000'000'000'000, 1});
  CHECK(integers({0.1 + 0.2, 0.1}) == ints{6755399441055745, 2251799813685248});
  // Beyond 2^62 / N in total: rounded at 2^-57 of the largest (N = 2), never below 1.
  const ints rounded = integers({1e6, 1e-13});
  CHECK(rounded[0] > (std::int64_t{1} << 56));
  CHECK(rounded[1] == 1);
  const ints tiny = integers({1.0, 1e-300});
  CHECK(tiny[1] == 1);
  // Slow start multiplies by exactly step / steps.
  CHECK(outgrow::detail::wrr_integer_weights(
            {{3.0, {1, 1}, 1.0}, {3.0, {3, 10}, 0.3}, {0.5, {1, 10}, 0.1}}) ==
        ints{60, 18, 1});
}

TEST_CASE("smooth WRR with a long period keeps nginx's sequence across threads",
          "[load_balancer][wrr]") {
  // 65,537 picks per period: not tabulated, every pick runs nginx's step under a lock,
  // so whatever the interleaving the picks are exactly the sequence's prefix.
  lb<outgrow::weighted_round_robin> b({{"a", 65536.0}, {"b", 1.0}});
  outgrow::detail::smooth_wrr reference({65536, 1});
  constexpr int per_thread = 40'000, threads = 2;
  int expected_b = 0;
  for (int i = 0; i < per_thread * threads; ++i)
    expected_b += reference.next() == 1 ? 1 : 0;
  std::atomic<int> got_b{0};
  std::vector<std::thread> pickers;
  for (int t = 0; t < threads; ++t) {
    pickers.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        auto l = b.pick();
        if (*l == "b") got_b.fetch_add(1);
        l.success();
      }
    });
  }
  for (auto& t : pickers) t.join();
  CHECK(got_b.load() == expected_b);
  CHECK(b.metrics().picks == per_thread * threads);

  // Weights switching between tabulated and live periods while threads pick.
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> busy;
  for (int t = 0; t < threads; ++t) {
    busy.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        auto l = b.pick();
        if (!l || (*l != "a" && *l != "b")) bad.fetch_add(1);
      }
    });
  }
  for (int round = 0; round < 200; ++round) {
    b.set_weight("a", round % 2 == 0 ? 3.0 : 100'000.0 + round);
  }
  stop = true;
  for (auto& t : busy) t.join();
  CHECK(bad.load() == 0);
}

TEST_CASE("round robin visits every endpoint in turn", "[load_balancer]") {
  lb<outgrow::round_robin> b({"a", "b", "c"});
  std::string seq;
  for (int i = 0; i < 6; ++i) seq += *b.pick();
  CHECK(seq == "abcabc");
}

TEST_CASE("weighted shares stay within one percent over 100k picks", "[load_balancer]") {
  const std::vector<outgrow::weighted_node<std::string>> nodes = {
      {"a", 1.0}, {"b", 2.0}, {"c", 3.0}, {"d", 4.0}};
  const auto check_weighted = [](const std::map<std::string, int>& counts) {
    const std::map<std::string, double> want = {
        {"a", 0.1}, {"b", 0.2}, {"c", 0.3}, {"d", 0.4}};
    for (const auto& [name, share] : want) {
      const double got = counts.count(name) ? counts.at(name) / 100'000.0 : 0.0;
      INFO(name << " share " << got << " want " << share);
      CHECK(std::abs(got - share) <= 0.01);
    }
  };
  const auto check_even = [](const std::map<std::string, int>& counts) {
    REQUIRE(counts.size() == 4);
    for (const auto& [name, c] : counts) {
      INFO(name << " " << c);
      CHECK(std::abs(c / 100'000.0 - 0.25) <= 0.01);
    }
  };
  SECTION("weighted round robin") {
    lb<outgrow::weighted_round_robin> b(nodes);
    check_weighted(spread(b, 100'000));
  }
  SECTION("weighted random") {
    lb<outgrow::weighted_random> b(nodes, {.seed = 42});
    check_weighted(spread(b, 100'000));
  }
  SECTION("round robin random and power of two choices are even") {
    lb<outgrow::round_robin> rr(nodes);
    check_even(spread(rr, 100'000));
    lb<outgrow::random_choice> rnd(nodes, {.seed = 7});
    check_even(spread(rnd, 100'000));
    lb<outgrow::power_of_two_choices> p2c({"a", "b", "c", "d"}, {.seed = 7});
    check_even(spread(p2c, 100'000));
  }
}

TEST_CASE("least connections and p2c avoid busy endpoints", "[load_balancer]") {
  lb<outgrow::least_connections> lc({"a", "b", "c"});
  auto held1 = lc.pick();
  auto held2 = lc.pick();
  REQUIRE(*held1 != *held2);
  auto l = lc.pick();
  CHECK(*l != *held1);
  CHECK(*l != *held2);
  CHECK(lc.in_flight(*held1) == 1);

  lb<outgrow::power_of_two_choices> p2c({"a", "b"}, {.seed = 3});
  std::vector<decltype(p2c.pick())> busy;
  for (int i = 0; i < 5; ++i)
    busy.push_back(p2c.pick_if([](const std::string& e) { return e == "a"; }));
  CHECK(p2c.in_flight("a") == 5);
  for (int i = 0; i < 50; ++i) CHECK(*p2c.pick() == "b");  // each lease released at once
}

TEST_CASE("least response time sends a ten times slower endpoint at most 15 percent",
          "[load_balancer]") {
  manual_clock clock;
  lb<outgrow::least_response_time> b({"fast-1", "fast-2", "slow"}, {.seed = 11}, clock);
  struct done {
    manual_clock::time_point at;
    std::size_t slot;
    bool operator>(const done& o) const { return at > o.at; }
  };
  std::priority_queue<done, std::vector<done>, std::greater<>> events;
  std::vector<decltype(b.pick())> leases;
  std::vector<std::size_t> free_slots;
  std::map<std::string, int> counts;
  std::mt19937_64 rng(5);
  constexpr int total = 20'000, concurrency = 8;
  int started = 0;
  while (started < total || !events.empty()) {
    if (started < total && events.size() < concurrency) {
      auto l = b.pick();
      REQUIRE(l);
      ++counts[*l];
      const auto base = *l == "slow" ? 10ms : 1ms;
      const auto latency = base + std::chrono::microseconds(rng() % 200);
      std::size_t slot;
      if (free_slots.empty()) {
        slot = leases.size();
        leases.push_back(std::move(l));
      } else {
        slot = free_slots.back();
        free_slots.pop_back();
        leases[slot] = std::move(l);
      }
      events.push({clock.now() + latency, slot});
      ++started;
      continue;
    }
    const done d = events.top();
    events.pop();
    clock.set(d.at);
    leases[d.slot].success();  // latency measured by the balancer's clock
    free_slots.push_back(d.slot);
  }
  const double slow_share = counts["slow"] / static_cast<double>(total);
  INFO("slow endpoint share " << slow_share);
  CHECK(slow_share <= 0.15);
  CHECK(counts["slow"] > 0);  // it was probed
  const auto stats = b.endpoints();
  REQUIRE(stats.size() == 3);
  CHECK(stats[2].latency_ewma > 5 * stats[0].latency_ewma);
}

TEST_CASE("key hash is consistent and moves only the keys of an endpoint that leaves",
          "[load_balancer]") {
  lb<outgrow::key_hash> b({"a", "b", "c", "d"});
  std::map<int, std::string> owner;
  for (int k = 0; k < 2000; ++k) {
    auto l = b.pick(fmt::format("user:{}", k));
    REQUIRE(l);
    owner[k] = *l;
    CHECK(*b.pick(fmt::format("user:{}", k)) == *l);  // stable
  }
  std::set<std::string> owners;
  for (const auto& [k, o] : owner) owners.insert(o);
  CHECK(owners.size() == 4);
  b.drain("c");
  int moved = 0;
  for (int k = 0; k < 2000; ++k) {
    const std::string now = *b.pick(fmt::format("user:{}", k));
    if (owner[k] == "c") {
      CHECK(now != "c");
    } else {
      moved += now != owner[k] ? 1 : 0;
    }
  }
  CHECK(moved == 0);
  b.undrain("c");
  for (int k = 0; k < 2000; ++k) CHECK(*b.pick(fmt::format("user:{}", k)) == owner[k]);
}

TEST_CASE("passive ejection and return with manual_clock", "[load_balancer]") {
  manual_clock clock;
  lb<outgrow::round_robin> b({"a", "b", "c"},
                             {.consecutive_failures = 5,
                              .base_ejection_time = 30s,
                              .max_ejection_time = 75s,
                              .max_ejection_fraction = 0.5},
                             clock);
  // Four failures and a success: no ejection (the run resets).
  fail_endpoint(b, "a", 4);
  {
    auto l = b.pick_if([](const std::string& e) { return e == "a"; });
    l.success();
  }
  fail_endpoint(b, "a", 4);
  CHECK(b.status("a") == endpoint_status::available);
  fail_endpoint(b, "a", 1);
  CHECK(b.status("a") == endpoint_status::ejected);
  CHECK(b.metrics().ejections == 1);

  const auto ejected_for = [&](std::chrono::seconds expected) {
    // Still out one second before the end, back at the end (noticed by a pick).
    clock.advance(expected - 1s);
    auto counts = spread(b, 30);
    CHECK(counts.count("a") == 0);
    clock.advance(1s);
    counts = spread(b, 30);
    CHECK(counts["a"] == 10);
    CHECK(b.status("a") == endpoint_status::available);
  };
  ejected_for(30s);
  CHECK(b.metrics().returns == 1);
  fail_endpoint(b, "a", 5);  // second ejection soon after: 2 × 30 s
  ejected_for(60s);
  fail_endpoint(b, "a", 5);  // third: 90 s, capped at 75 s
  ejected_for(75s);
  const auto m = b.metrics();
  CHECK(m.ejections == 3);
  CHECK(m.returns == 3);
  // After a long healthy spell the multiplier decays: back to 30 s.
  clock.advance(10min);
  fail_endpoint(b, "a", 5);
  ejected_for(30s);
}

TEST_CASE("max ejected fraction caps ejections", "[load_balancer]") {
  manual_clock clock;
  std::vector<std::string> names;
  for (int i = 0; i < 10; ++i) names.push_back(fmt::format("e{}", i));
  lb<outgrow::round_robin> b(names, {.max_ejection_fraction = 0.1}, clock);
  fail_endpoint(b, "e1", 5);
  fail_endpoint(b, "e2", 5);
  CHECK(b.status("e1") == endpoint_status::ejected);
  CHECK(b.status("e2") == endpoint_status::available);  // 10 % of 10 = 1 at a time
  auto m = b.metrics();
  CHECK(m.ejected == 1);
  CHECK(m.ejections_overflow >= 1);
  // Once e1 returns, e2's next failure is ejected.
  clock.advance(30s);
  b.refresh();
  fail_endpoint(b, "e2", 1);
  CHECK(b.status("e2") == endpoint_status::ejected);

  // Small pools may always eject one, even at 10 % of 3 (Envoy with
  // always_eject_one_host; see load_balancer_conformance_test.cpp).
  lb<outgrow::round_robin> small({"a", "b", "c"}, {}, clock);
  fail_endpoint(small, "a", 5);
  fail_endpoint(small, "b", 5);
  CHECK(small.status("a") == endpoint_status::ejected);
  CHECK(small.status("b") == endpoint_status::available);
}

TEST_CASE("panic mode balances across all endpoints when too few are healthy",
          "[load_balancer]") {
  manual_clock clock;
  lb<outgrow::round_robin> b({"a", "b", "c", "d"}, {.unhealthy_threshold = 2}, clock);
  for (const char* e : {"a", "b"}) {
    b.report_health(e, false);
    b.report_health(e, false);
  }
  // 2 of 4 healthy = 50 %: not below the threshold, so only c and d serve.
  auto counts = spread(b, 40);
  CHECK(counts.size() == 2);
  CHECK_FALSE(b.metrics().panic);
  b.report_health("c", false);
  b.report_health("c", false);
  // 1 of 4 healthy: panic, all four serve.
  counts = spread(b, 40);
  CHECK(counts.size() == 4);
  auto m = b.metrics();
  CHECK(m.panic);
  CHECK(m.unhealthy == 3);
  CHECK(m.panic_picks == 40);
  // Two passing checks bring c back: out of panic.
  b.report_health("c", true);
  CHECK(b.status("c") == endpoint_status::unhealthy);
  b.report_health("c", true);
  CHECK(b.status("c") == endpoint_status::available);
  counts = spread(b, 40);
  CHECK(counts.size() == 2);
  CHECK_FALSE(b.metrics().panic);

  // panic_threshold 0: nothing healthy means nothing to pick.
  lb<outgrow::round_robin> strict({"a"}, {.unhealthy_threshold = 1, .panic_threshold = 0.0},
                                  clock);
  strict.report_health("a", false);
  CHECK_FALSE(strict.pick());
  CHECK(strict.metrics().no_endpoint == 1);
}

TEST_CASE("active health checks run on an asio timer", "[load_balancer]") {
  boost::asio::io_context io;
  lb<outgrow::round_robin, outgrow::steady_clock_source> b(
      {"a", "b"},
      {.health_check_interval = 1ms, .healthy_threshold = 2, .unhealthy_threshold = 3});
  std::atomic<int> rounds{0};
  std::atomic<bool> b_up{false};
  b.start_health_checks(io.get_executor(), [&](const std::string& e) {
    if (e == "a") rounds.fetch_add(1);
    return e == "a" || b_up.load();
  });
  while (rounds.load() < 3) io.run_one();
  CHECK(b.status("b") == endpoint_status::unhealthy);
  CHECK(b.status("a") == endpoint_status::available);
  b_up = true;
  while (rounds.load() < 5) io.run_one();
  CHECK(b.status("b") == endpoint_status::available);
  b.stop_health_checks();
  const int after = rounds.load();
  io.poll();
  CHECK(rounds.load() == after);  // nothing runs after stop

  // run_health_checks: one synchronous round; a throwing check counts as failed.
  lb<outgrow::round_robin> c({"x"}, {.unhealthy_threshold = 1});
  c.run_health_checks([](const std::string&) -> bool { throw std::runtime_error("down"); });
  CHECK(c.status("x") == endpoint_status::unhealthy);
}

TEST_CASE("slow start ramps a new endpoint's weight", "[load_balancer]") {
  manual_clock clock;
  lb<outgrow::weighted_round_robin> b(
      {"a", "b"},
      {.slow_start_window = 10s, .slow_start_min_weight = 0.1, .slow_start_steps = 10},
      clock);
  b.add("c");
  CHECK(b.status("c") == endpoint_status::slow_start);
  auto counts = spread(b, 2100);  // weights 10 : 10 : 1
  CHECK(counts["c"] == 100);
  clock.advance(5s);
  counts = spread(b, 2500);  // 10 : 10 : 5
  CHECK(counts["c"] == 500);
  CHECK(b.endpoints()[2].effective_weight == Approx(0.5));
  clock.advance(5s);
  counts = spread(b, 3000);
  CHECK(counts["c"] == 1000);
  CHECK(b.status("c") == endpoint_status::available);

  // A returning (previously ejected) endpoint ramps too.
  lb<outgrow::weighted_round_robin> r(
      {"a", "b"}, {.max_ejection_fraction = 0.5, .slow_start_window = 10s}, clock);
  fail_endpoint(r, "a", 5);
  clock.advance(30s);
  r.refresh();
  CHECK(r.status("a") == endpoint_status::slow_start);
  CHECK(r.endpoints()[0].effective_weight == Approx(0.1));
}

TEST_CASE("lease outcomes and abandoned leases are counted", "[load_balancer]") {
  lb<outgrow::round_robin> b({"a", "b"});
  {
    auto l = b.pick();
    l.success();
  }
  {
    auto l = b.pick();
    l.failure();
  }
  { auto l = b.pick(); }  // dropped: abandoned
  auto held = b.pick();
  auto m = b.metrics();
  CHECK(m.picks == 4);
  CHECK(m.successes == 1);
  CHECK(m.failures == 1);
  CHECK(m.abandoned == 1);
  CHECK(m.in_flight == 1);
  auto moved = std::move(held);
  CHECK_FALSE(held);
  moved.success(3ms);
  m = b.metrics();
  CHECK(m.successes == 2);
  CHECK(m.in_flight == 0);
  // An explicit latency feeds the EWMA.
  CHECK(b.endpoints()[1].latency_ewma == 3ms);
}

TEST_CASE("drain and remove while leases are in flight", "[load_balancer]") {
  lb<outgrow::round_robin> b({"a", "b"});
  auto held = b.pick_if([](const std::string& e) { return e == "a"; });
  b.drain("a");
  CHECK(b.status("a") == endpoint_status::draining);
  for (int i = 0; i < 10; ++i) CHECK(*b.pick() == "b");
  CHECK(b.in_flight("a") == 1);
  b.remove("a");  // the lease stays valid
  CHECK_FALSE(b.contains("a"));
  CHECK(*held == "a");
  held.success();
  b.add("a", 2.0);
  CHECK(b.size() == 2);
  b.remove("a");
  b.remove("b");
  CHECK_FALSE(b.pick());  // empty at run time: no endpoint, no throw
  CHECK(b.metrics().no_endpoint == 1);
}

// A front whose instances register after it starts (the live shop's does) builds its
// balancer on no endpoint: every policy then picks nothing, counts it, and routes as
// soon as add() brings the first endpoint.
template <class Policy>
void starts_empty_then_routes() {
  lb<Policy> b(std::vector<std::string>{});
  CHECK(b.size() == 0);
  CHECK(b.routable() == 0);
  CHECK_FALSE(b.pick());
  if constexpr (requires { b.pick(std::string("user-1")); }) {
    CHECK_FALSE(b.pick(std::string("user-1")));
  }
  CHECK(b.metrics().no_endpoint >= 1);
  b.add("a");
  b.add("b", 2.0);
  CHECK(b.size() == 2);
  for (int i = 0; i < 6; ++i) {
    auto lease = b.pick();
    REQUIRE(lease);
    CHECK((*lease == "a" || *lease == "b"));
    lease.success();
  }
  if constexpr (requires { b.pick(std::string("user-1")); }) {
    auto first = b.pick(std::string("user-1"));
    REQUIRE(first);
    const std::string owner = *first;
    first.success();
    CHECK(*b.pick(std::string("user-1")) == owner);  // the same key, the same endpoint
  }
}

TEST_CASE("every policy starts with no endpoint and routes once one is added",
          "[load_balancer]") {
  starts_empty_then_routes<outgrow::round_robin>();
  starts_empty_then_routes<outgrow::weighted_round_robin>();
  starts_empty_then_routes<outgrow::random_choice>();
  starts_empty_then_routes<outgrow::weighted_random>();
  starts_empty_then_routes<outgrow::least_connections>();
  starts_empty_then_routes<outgrow::power_of_two_choices>();
  starts_empty_then_routes<outgrow::least_response_time>();
  starts_empty_then_routes<outgrow::key_hash>();
}

TEST_CASE("a lease outcome counts after its endpoint is removed", "[load_balancer]") {
  lb<outgrow::round_robin> b({"a", "b"});
  auto failed = b.pick_if([](const std::string& e) { return e == "a"; });
  auto held = b.pick_if([](const std::string& e) { return e == "a"; });
  b.remove("a");
  auto m = b.metrics();
  CHECK(m.picks == 2);
  CHECK(m.in_flight == 2);  // leases on removed endpoints are still in flight
  failed.failure();
  m = b.metrics();
  CHECK(m.failures == 1);
  CHECK(m.in_flight == 1);
  CHECK(m.successes == 0);
  auto r = b.removed_endpoints();
  CHECK(r.picks == 2);
  CHECK(r.failures == 1);
  CHECK(r.in_flight == 1);
  held.success();
  r = b.removed_endpoints();
  CHECK(r.successes == 1);
  CHECK(r.in_flight == 0);
  m = b.metrics();
  CHECK(m.picks == 2);
  CHECK(m.successes == 1);
  CHECK(m.failures == 1);
  CHECK(m.in_flight == 0);
  CHECK(m.endpoints == 1);
  CHECK(b.endpoints().size() == 1);  // only members are listed
}

TEST_CASE("a lease outcome counts after its endpoint is replaced by add",
          "[load_balancer]") {
  lb<outgrow::round_robin> b({"a", "b"});
  auto old_a = b.pick_if([](const std::string& e) { return e == "a"; });
  b.remove("a");
  b.add("a");  // a new "a": the lease belongs to the old one
  {
    auto new_a = b.pick_if([](const std::string& e) { return e == "a"; });
    new_a.success();
  }
  old_a.failure();
  {
    auto dropped = b.pick_if([](const std::string& e) { return e == "b"; });
  }
  const auto m = b.metrics();
  CHECK(m.picks == 3);
  CHECK(m.successes == 1);
  CHECK(m.failures == 1);
  CHECK(m.abandoned == 1);
  CHECK(m.in_flight == 0);
  const auto r = b.removed_endpoints();
  CHECK(r.picks == 1);
  CHECK(r.failures == 1);
  CHECK(r.successes == 0);
  const auto e = b.endpoints();
  REQUIRE(e.size() == 2);
  CHECK(e[1].endpoint == "a");
  CHECK(e[1].picks == 1);
  CHECK(e[1].successes == 1);
  CHECK(e[1].failures == 0);
  // The old "a" failing does not touch the new one's health.
  CHECK(b.status("a") == endpoint_status::available);
  const std::string text = fmt::format("{}", r);
  CHECK(text.rfind("removed_endpoint_metrics{picks=1, successes=0, failures=1,", 0) == 0);
}

TEST_CASE("bad balancer input throws config_error", "[load_balancer]") {
  using outgrow::config_error;
  CHECK_THROWS_AS(lb<outgrow::weighted_round_robin>({{"a", 0.0}}), config_error);
  CHECK_THROWS_AS(lb<outgrow::weighted_round_robin>({{"a", -1.0}}), config_error);
  CHECK_THROWS_WITH(lb<outgrow::round_robin>({"a", "b", "a"}),
                    "load_balancer: add(node) must be a node not already present, got a");
  CHECK_THROWS_AS(lb<outgrow::round_robin>({"a"}, {.max_ejection_fraction = 1.5}),
                  config_error);
  CHECK_THROWS_AS(lb<outgrow::round_robin>({"a"}, {.panic_threshold = -0.1}), config_error);
  CHECK_THROWS_AS(lb<outgrow::round_robin>({"a"}, {.base_ejection_time = 0s}),
                  config_error);
  CHECK_THROWS_AS(lb<outgrow::round_robin>({"a"}, {.healthy_threshold = 0}), config_error);
  CHECK_THROWS_AS(lb<outgrow::round_robin>({"a"}, {.ewma_weight = 0.0}), config_error);
  lb<outgrow::round_robin> b({"a"});
  CHECK_THROWS_AS(b.add("a"), config_error);
  CHECK_THROWS_AS(b.add("z", 0.0), config_error);
  CHECK_THROWS_AS(b.remove("z"), config_error);
  CHECK_THROWS_AS(b.drain("z"), config_error);
  CHECK(b.size() == 1);  // failed changes publish nothing
}

TEST_CASE("max_ejection_time below base_ejection_time throws config_error",
          "[load_balancer]") {
  CHECK_THROWS_WITH(lb<outgrow::round_robin>(
                        {"a"}, {.base_ejection_time = 60s, .max_ejection_time = 30s}),
                    "load_balancer: max_ejection_time must be in [1min, 24h] (not below "
                    "base_ejection_time), got 30s");
  // Equal is allowed: every ejection then lasts base_ejection_time.
  manual_clock clock;
  lb<outgrow::round_robin> b(
      {"a", "b"},
      {.base_ejection_time = 60s, .max_ejection_time = 60s, .max_ejection_fraction = 0.5},
      clock);
  for (int round = 0; round < 3; ++round) {
    fail_endpoint(b, "a", 5);
    CHECK(b.status("a") == endpoint_status::ejected);
    clock.advance(59s);
    b.refresh();
    CHECK(b.status("a") == endpoint_status::ejected);
    clock.advance(1s);
    b.refresh();
    CHECK(b.status("a") == endpoint_status::available);
  }
}

TEST_CASE("max_ejection_fraction 0 throws config_error instead of ejecting one",
          "[load_balancer]") {
  CHECK_THROWS_WITH(lb<outgrow::round_robin>({"a"}, {.max_ejection_fraction = 0.0}),
                    "load_balancer: max_ejection_fraction must be in (0, 1] (one endpoint "
                    "may always be ejected; consecutive_failures = 0 turns ejection off), "
                    "got 0");
}

TEST_CASE("config fields the configuration never reads must keep their defaults",
          "[load_balancer]") {
  using outgrow::key_hash;
  using outgrow::least_connections;
  using outgrow::least_response_time;
  using outgrow::round_robin;
  using outgrow::weighted_round_robin;
  // Passive ejection off: its three fields are never read.
  CHECK_THROWS_WITH(
      lb<round_robin>({"a"}, {.consecutive_failures = 0, .base_ejection_time = 10s}),
      "load_balancer: base_ejection_time must be 30s (the default) when "
      "consecutive_failures = 0: passive ejection is off and never reads it, "
      "got 10s");
  CHECK_THROWS_WITH(
      lb<round_robin>({"a"}, {.consecutive_failures = 0, .max_ejection_time = 10min}),
      "load_balancer: max_ejection_time must be 5min (the default) when "
      "consecutive_failures = 0: passive ejection is off and never reads it, "
      "got 10min");
  CHECK_THROWS_WITH(
      lb<round_robin>({"a"}, {.consecutive_failures = 0, .max_ejection_fraction = 0.5}),
      "load_balancer: max_ejection_fraction must be 0.1 (the default) when "
      "consecutive_failures = 0: passive ejection is off and never reads it, "
      "got 0.5");
  CHECK_NOTHROW(lb<round_robin>({"a"}, {.consecutive_failures = 0}));
  // Slow start: not for policies without weights to ramp; its details need a window.
  CHECK_THROWS_WITH(
      lb<round_robin>({"a"}, {.slow_start_window = 10s}),
      "load_balancer: slow_start_window must be 0s (the default) under "
      "round_robin: slow start ramps weights, which it does not use, got 10s");
  CHECK_THROWS_WITH(
      lb<outgrow::random_choice>({"a"}, {.slow_start_window = 10s}),
      "load_balancer: slow_start_window must be 0s (the default) under "
      "random_choice: slow start ramps weights, which it does not use, got 10s");
  CHECK_THROWS_WITH(lb<key_hash>({"a"}, {.slow_start_window = 10s}),
                    "load_balancer: slow_start_window must be 0s (the default) under "
                    "key_hash: slow start ramps weights, which it keeps as configured on "
                    "the ring so keys do not move, got 10s");
  CHECK_THROWS_WITH(lb<weighted_round_robin>({"a"}, {.slow_start_steps = 5}),
                    "load_balancer: slow_start_steps must be 10 (the default) when "
                    "slow_start_window = 0s: slow start is off and never reads it, got 5");
  CHECK_THROWS_WITH(
      lb<least_connections>({"a"}, {.slow_start_min_weight = 0.5}),
      "load_balancer: slow_start_min_weight must be 0.1 (the default) when "
      "slow_start_window = 0s: slow start is off and never reads it, got 0.5");
  CHECK_NOTHROW(lb<weighted_round_robin>(
      {"a"},
      {.slow_start_window = 10s, .slow_start_min_weight = 0.5, .slow_start_steps = 5}));
  // Policy-specific fields.
  CHECK_THROWS_WITH(lb<round_robin>({"a"}, {.ring_vnodes = 100}),
                    "load_balancer: ring_vnodes must be 160 (the default) under "
                    "round_robin: only key_hash reads it, got 100");
  CHECK_NOTHROW(lb<key_hash>({"a"}, {.ring_vnodes = 100}));
  CHECK_THROWS_WITH(lb<outgrow::power_of_two_choices>({"a"}, {.latency_stale_after = 1s}),
                    "load_balancer: latency_stale_after must be 10s (the default) under "
                    "power_of_two_choices: only least_response_time reads it, got 1s");
  CHECK_NOTHROW(lb<least_response_time>({"a"}, {.latency_stale_after = 1s}));
  CHECK_THROWS_WITH(
      lb<least_connections>({"a"}, {.seed = 42}),
      "load_balancer: seed must be unset (the default) under least_connections: "
      "the policy draws no random numbers, got 42");
  CHECK_THROWS_AS(lb<round_robin>({"a"}, {.seed = 42}), outgrow::config_error);
  CHECK_THROWS_AS(lb<weighted_round_robin>({"a"}, {.seed = 42}), outgrow::config_error);
  CHECK_NOTHROW(lb<key_hash>({"a"}, {.seed = 42}));  // pick() without a key draws
  CHECK_NOTHROW(lb<outgrow::weighted_random>({"a"}, {.seed = 42}));
  // Redundant but consistent: least_response_time measures anyway.
  CHECK_NOTHROW(lb<least_response_time>({"a"}, {.measure_latency = true}));
  // The check is reusable with another owner's name (read_write_splitter).
  CHECK_THROWS_WITH(
      lb<round_robin>::validate({.ring_vnodes = 7}, "read_write_splitter", "replicas."),
      "read_write_splitter: replicas.ring_vnodes must be 160 (the default) "
      "under round_robin: only key_hash reads it, got 7");
}

TEST_CASE("bad key_hash ring sizes name load_balancer and change nothing",
          "[load_balancer]") {
  using kh = lb<outgrow::key_hash>;
  const std::string too_many =
      "load_balancer: ring_vnodes x total weight must be at most 8388608 ring points "
      "(key_hash, ring_vnodes = 160), got ";
  CHECK_THROWS_WITH(kh({{"a", 60'000.0}}), too_many + "9600000");
  CHECK_THROWS_WITH(kh({{"a", 100.0}}, {.ring_vnodes = 100'000}, {}),
                    "load_balancer: ring_vnodes x total weight must be at most 8388608 "
                    "ring points (key_hash, ring_vnodes = 100000), got 10000000");
  CHECK_THROWS_WITH(
      kh({{"a", 0.001}}),
      "load_balancer: weight must be at least 0.003125 under key_hash (1 / (2 "
      "x ring_vnodes): a smaller weight has no ring point of its own), got "
      "0.001");
  // A small ring: each refused change would need over 8,388,608 points (building a
  // ring near the limit takes seconds in a Debug build and shows nothing more).
  kh b({{"a", 1.0}, {"b", 1.0}});
  CHECK_THROWS_WITH(b.add("c", 60'000.0), too_many + "9600320");
  CHECK_THROWS_WITH(
      b.add("c", 0.001),
      "load_balancer: weight must be at least 0.003125 under key_hash (1 / (2 "
      "x ring_vnodes): a smaller weight has no ring point of its own), got "
      "0.001");
  CHECK_THROWS_WITH(b.set_weight("b", 60'000.0), too_many + "9600160");
  CHECK_THROWS_AS(b.set_weight("b", 0.001), outgrow::config_error);
  // Nothing changed: the failed calls left no member behind and no weight changed, so
  // every later change still publishes (before, each one rethrew the ring's message).
  CHECK_FALSE(b.contains("c"));
  CHECK(b.size() == 2);
  CHECK(b.endpoints()[1].weight == 1.0);
  b.drain("a");
  CHECK(*b.pick_hash(42) == "b");
  b.undrain("a");
  b.report_health("a", false);
  b.set_excluded("b", true);
  b.refresh();
  b.set_excluded("b", false);
  b.remove("a");
  b.add("c", 2'500.0);  // fits now that a is gone
  b.set_weight("b", 100.0);
  CHECK(b.size() == 2);
  CHECK(b.routable() == 2);
}

TEST_CASE("balancer metrics print with fmt", "[load_balancer]") {
  lb<outgrow::round_robin> b({"a"});
  {
    auto l = b.pick();
    l.success();
  }
  const std::string m = fmt::format("{}", b.metrics());
  CHECK(m.rfind("load_balancer_metrics{picks=1, successes=1,", 0) == 0);
  const std::string e = fmt::format("{}", b.endpoints()[0]);
  CHECK(e.rfind("endpoint_metrics{endpoint=a, status=available,", 0) == 0);
  CHECK(fmt::format("{}", endpoint_status::ejected) == "ejected");
}

namespace {
template <class Policy>
void membership_stress() {
  // seed only where the policy reads it (config_error otherwise).
  outgrow::load_balancer_config config;
  if constexpr (!std::is_same_v<Policy, outgrow::round_robin> &&
                !std::is_same_v<Policy, outgrow::weighted_round_robin>) {
    config.seed = 9;
  }
  outgrow::load_balancer<std::string, Policy> b({"s0", "s1", "s2"}, config);
  std::atomic<bool> stop{false};
  std::atomic<int> ready{0};
  constexpr int pickers = 3;
  std::vector<int> bad(pickers, 0), picked(pickers, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < pickers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      while (!stop.load(std::memory_order_relaxed)) {
        auto l = b.pick();
        if (!l) continue;
        if (++picked[static_cast<std::size_t>(t)] == 1) ready.fetch_add(1);
        const std::string& e = *l;
        if (e.size() != 2 || (e[0] != 's' && e[0] != 'd'))
          ++bad[static_cast<std::size_t>(t)];
        switch (rng() % 4) {
          case 0:
            l.failure();
            break;
          case 1:
            break;  // abandoned
          default:
            l.success();
            break;
        }
      }
    });
  }
  while (ready.load() < pickers) std::this_thread::yield();
  for (int round = 0; round < 300; ++round) {
    const std::string d = fmt::format("d{}", round % 10);
    b.add(d, 1.0 + round % 3);
    if (round % 3 == 0) b.drain("s1");
    if (round % 3 == 1) b.undrain("s1");
    b.report_health("s2", round % 2 == 0);
    b.set_weight("s0", 1.0 + round % 5);
    b.remove(d);
  }
  stop = true;
  for (auto& t : threads) t.join();
  for (int t = 0; t < pickers; ++t) {
    CHECK(bad[static_cast<std::size_t>(t)] == 0);
    CHECK(picked[static_cast<std::size_t>(t)] > 0);
  }
  const auto m = b.metrics();
  CHECK(m.in_flight == 0);
  CHECK(m.endpoints == 3);
}
}  // namespace

namespace {
/// Pickers count their own outcomes while one thread adds and removes endpoints (some
/// removed under leases held across the removal); the balancer's totals must equal the
/// pickers' counts exactly at the end.
template <class Policy>
void churn_totals(std::uint32_t seed) {
  outgrow::load_balancer<std::string, Policy> b({"s0", "s1"});
  constexpr int pickers = 3;
  constexpr int picks_each = 2000;  // at least; pickers go on until the churn ends
  constexpr int churn_rounds = 300;
  struct tally {
    std::uint64_t picks = 0, successes = 0, failures = 0, abandoned = 0, empty = 0;
  };
  std::vector<tally> tallies(pickers);
  std::atomic<bool> churned{false};
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < pickers; ++t) {
    threads.emplace_back([&, t] {
      tally& mine = tallies[static_cast<std::size_t>(t)];
      std::mt19937 rng(seed + static_cast<std::uint32_t>(t));
      std::deque<typename outgrow::load_balancer<std::string, Policy>::lease> held;
      started.fetch_add(1);
      for (int i = 0; i < picks_each || !churned.load(std::memory_order_relaxed); ++i) {
        auto l = b.pick();
        if (!l) {
          ++mine.empty;
          continue;
        }
        ++mine.picks;
        held.push_back(std::move(l));
        if (held.size() <= rng() % 4) continue;  // hold up to 3 leases across churn
        auto& oldest = held.front();
        switch (rng() % 4) {
          case 0:
            oldest.failure();
            ++mine.failures;
            break;
          case 1:
            oldest.abandon();
            ++mine.abandoned;
            break;
          case 2:
            oldest = {};  // dropped by move-assignment: abandoned
            ++mine.abandoned;
            break;
          default:
            oldest.success();
            ++mine.successes;
            break;
        }
        held.pop_front();
      }
      for (auto& l : held) {
        l.success();
        ++mine.successes;
      }
    });
  }
  while (started.load() < pickers) std::this_thread::yield();
  std::mt19937 rng(seed);
  std::vector<std::string> extra;
  for (int round = 0; round < churn_rounds; ++round) {
    const std::string e = fmt::format("d{}", rng() % 6);
    if (std::find(extra.begin(), extra.end(), e) == extra.end()) {
      b.add(e, static_cast<double>(1 + rng() % 3));
      extra.push_back(e);
    } else {
      b.remove(e);  // leases on it may be in flight
      extra.erase(std::find(extra.begin(), extra.end(), e));
    }
    if (round % 7 == 0) {
      b.remove("s1");  // a base endpoint too, replaced by add() of the same id
      b.add("s1");
    }
  }
  churned = true;
  for (auto& t : threads) t.join();
  tally sum;
  for (const tally& t : tallies) {
    sum.picks += t.picks;
    sum.successes += t.successes;
    sum.failures += t.failures;
    sum.abandoned += t.abandoned;
    sum.empty += t.empty;
  }
  const auto m = b.metrics();
  CHECK(sum.empty == 0);  // s0 is always routable
  CHECK(m.in_flight == 0);
  CHECK(m.picks == sum.picks);
  CHECK(m.successes == sum.successes);
  CHECK(m.failures == sum.failures);
  CHECK(m.abandoned == sum.abandoned);
  CHECK(m.picks == m.successes + m.failures + m.abandoned);
  // Members plus removed endpoints make up the totals.
  const auto r = b.removed_endpoints();
  std::uint64_t picks = r.picks, failures = r.failures, abandoned = r.abandoned;
  for (const auto& e : b.endpoints()) {
    picks += e.picks;
    failures += e.failures;
    abandoned += e.abandoned;
  }
  CHECK(r.in_flight == 0);
  CHECK(picks == m.picks);
  CHECK(failures == m.failures);
  CHECK(abandoned == m.abandoned);
}
}  // namespace

TEST_CASE("totals add up exactly under endpoint churn", "[load_balancer][stress]") {
  churn_totals<outgrow::round_robin>(1);
  churn_totals<outgrow::power_of_two_choices>(2);
  churn_totals<outgrow::least_connections>(3);
  churn_totals<outgrow::key_hash>(4);
}

TEST_CASE("membership changes during concurrent picks are safe", "[load_balancer]") {
  membership_stress<outgrow::round_robin>();
  membership_stress<outgrow::power_of_two_choices>();
  membership_stress<outgrow::weighted_round_robin>();
  membership_stress<outgrow::key_hash>();
  membership_stress<outgrow::least_response_time>();
}
