// Per-thread stripes of load_balancer (issue 20): each picking thread writes only its
// own counters and cursor; in-flight counts, totals and endpoint lifetimes must stay
// exact when leases are picked on one thread and ended on another, and the load-aware
// policies must see the leases every thread holds.
#include <outgrow/routing/load_balancer.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

namespace {

template <class Policy>
using lb = outgrow::load_balancer<std::string, Policy, outgrow::manual_clock>;

/// Runs f on a new thread and waits for it.
template <class F>
void on_other_thread(F&& f) {
  std::thread t(std::forward<F>(f));
  t.join();
}

}  // namespace

TEST_CASE("in-flight counts sum the leases of every thread", "[load_balancer][stripes]") {
  lb<outgrow::round_robin> b({"a", "b", "c"});
  constexpr int threads = 4, per_thread = 30;  // more threads than stripes on 2 cores
  using lease = lb<outgrow::round_robin>::lease;
  std::vector<std::vector<lease>> held(threads);
  std::vector<std::thread> pickers;
  for (int t = 0; t < threads; ++t) {
    pickers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i)
        held[static_cast<std::size_t>(t)].push_back(b.pick());
    });
  }
  for (auto& t : pickers) t.join();
  std::map<std::string, std::uint64_t> want;
  for (const auto& v : held)
    for (const auto& l : v) ++want[*l];
  std::uint64_t sum = 0;
  for (const auto& [e, n] : want) {
    CHECK(b.in_flight(e) == n);
    sum += n;
  }
  CHECK(sum == threads * per_thread);
  auto m = b.metrics();
  CHECK(m.picks == threads * per_thread);
  CHECK(m.in_flight == threads * per_thread);
  // Threads go round on their stripes' cursors (shared when threads outnumber stripes,
  // then racing picks may draw the same slot): every endpoint gets a fair part.
  CHECK(want.size() == 3);
  for (const auto& [e, n] : want) CHECK(n >= threads * per_thread / 6);
  // End them on this thread (not the ones that picked): counts stay exact.
  for (auto& v : held) {
    for (std::size_t i = 0; i < v.size(); ++i) i % 2 == 0 ? v[i].success() : v[i].failure();
  }
  m = b.metrics();
  CHECK(m.in_flight == 0);
  CHECK(m.successes == threads * per_thread / 2);
  CHECK(m.failures == threads * per_thread / 2);
  for (const auto& e : b.endpoints()) CHECK(e.in_flight == 0);
}

TEST_CASE("the first picking thread gets the exact single-threaded sequence",
          "[load_balancer][stripes]") {
  lb<outgrow::round_robin> rr({"a", "b", "c"});
  lb<outgrow::weighted_round_robin> wrr({{"a", 5.0}, {"b", 1.0}, {"c", 1.0}});
  std::string rr_seq, wrr_seq;
  on_other_thread([&] {
    for (int i = 0; i < 6; ++i) rr_seq += *rr.pick();
    for (int i = 0; i < 7; ++i) wrr_seq += *wrr.pick();
  });
  CHECK(rr_seq == "abcabc");
  CHECK(wrr_seq == "aabacaa");  // nginx's sequence for {5, 1, 1}
  // A second thread, while the first still holds its stripe, walks the same cycle from
  // its own place: every endpoint in turn.
  std::atomic<bool> first_done{false}, second_done{false};
  std::string first, second;
  std::thread holder([&] {
    first += *rr.pick();
    first_done = true;
    while (!second_done) std::this_thread::yield();
  });
  while (!first_done) std::this_thread::yield();
  on_other_thread([&] {
    for (int i = 0; i < 6; ++i) second += *rr.pick();
  });
  second_done = true;
  holder.join();
  REQUIRE(second.size() == 6);
  for (std::size_t i = 0; i < 6; ++i) {
    INFO(second);
    CHECK(second[i] == "abc"[(static_cast<std::size_t>(second[0] - 'a') + i) % 3]);
  }
}

TEST_CASE("a seed gives the same picks on any single thread", "[load_balancer][stripes]") {
  const auto run = [] {
    lb<outgrow::power_of_two_choices> b({"a", "b", "c", "d", "e"}, {.seed = 17});
    std::string seq;
    on_other_thread([&] {
      for (int i = 0; i < 64; ++i) {
        auto l = b.pick();
        seq += *l;
        if (i % 3 == 0) l.success();
        l.abandon();  // no-op after success
      }
    });
    return seq;
  };
  const std::string first = run();
  CHECK(first == run());
  std::string here;
  lb<outgrow::power_of_two_choices> b({"a", "b", "c", "d", "e"}, {.seed = 17});
  for (int i = 0; i < 64; ++i) {
    auto l = b.pick();
    here += *l;
    if (i % 3 == 0) l.success();
    l.abandon();
  }
  CHECK(here == first);
}

TEST_CASE("least connections and p2c see leases held by other threads",
          "[load_balancer][stripes]") {
  lb<outgrow::power_of_two_choices> p2c({"a", "b"}, {.seed = 3});
  lb<outgrow::least_connections> lc({"a", "b", "c"});
  using p2c_lease = lb<outgrow::power_of_two_choices>::lease;
  using lc_lease = lb<outgrow::least_connections>::lease;
  std::vector<p2c_lease> busy;
  std::vector<lc_lease> lc_busy;
  on_other_thread([&] {
    for (int i = 0; i < 5; ++i)
      busy.push_back(p2c.pick_if([](const std::string& e) { return e == "a"; }));
    for (int i = 0; i < 3; ++i)
      lc_busy.push_back(lc.pick_if([](const std::string& e) { return e != "c"; }));
  });
  CHECK(p2c.in_flight("a") == 5);
  for (int i = 0; i < 50; ++i) CHECK(*p2c.pick() == "b");  // released at once
  for (int i = 0; i < 10; ++i) CHECK(*lc.pick() == "c");
  busy.clear();  // abandoned, on this thread
  CHECK(p2c.in_flight("a") == 0);
  CHECK(p2c.metrics().abandoned == 55);  // the 50 dropped at once, and these 5
}

TEST_CASE("a removed endpoint lives until its last lease ends on any thread",
          "[load_balancer][stripes]") {
  lb<outgrow::round_robin> b({"a", "b"});
  using lease = lb<outgrow::round_robin>::lease;
  std::vector<lease> held;
  on_other_thread([&] {
    for (int i = 0; i < 4; ++i)
      held.push_back(b.pick_if([](const std::string& e) { return e == "a"; }));
  });
  held.push_back(b.pick_if([](const std::string& e) { return e == "a"; }));
  b.remove("a");
  auto r = b.removed_endpoints();
  CHECK(r.picks == 5);
  CHECK(r.in_flight == 5);
  CHECK(r.lingering == 1);
  on_other_thread([&] {
    held[0].failure();
    held[4].success();
  });
  held[1].abandon();
  r = b.removed_endpoints();
  CHECK(r.in_flight == 2);
  CHECK(r.lingering == 1);
  CHECK(*held[2] == "a");  // still valid
  on_other_thread([&] { held[2].success(); });
  held[3].success();
  // This thread's snapshot cache still lists "a" until its next pick moves it on.
  CHECK(b.removed_endpoints().lingering == 1);
  CHECK(*b.pick() == "b");
  r = b.removed_endpoints();
  CHECK(r.lingering == 0);  // the last reference folded it into the totals
  CHECK(r.picks == 5);
  CHECK(r.successes == 3);
  CHECK(r.failures == 1);
  CHECK(r.abandoned == 1);
  CHECK(r.in_flight == 0);
}

TEST_CASE("totals stay exact when leases end on other threads under churn",
          "[load_balancer][stripes][stress]") {
  lb<outgrow::power_of_two_choices> b({"s0", "s1"}, {.seed = 5});
  using lease = lb<outgrow::power_of_two_choices>::lease;
  std::mutex mutex;
  std::deque<lease> handoff;
  std::atomic<bool> churned{false};
  std::atomic<std::uint64_t> picked{0}, successes{0}, failures{0}, abandoned{0};
  constexpr int producers = 2, consumers = 2, picks_each = 3000;
  std::vector<std::thread> threads;
  for (int t = 0; t < producers; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < picks_each || !churned.load(); ++i) {
        auto l = b.pick();
        if (!l) continue;
        picked.fetch_add(1);
        std::lock_guard lock(mutex);
        handoff.push_back(std::move(l));
      }
    });
  }
  std::atomic<int> producers_done{0};
  for (int t = 0; t < consumers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (;;) {
        std::optional<lease> l;
        {
          std::lock_guard lock(mutex);
          if (!handoff.empty()) {
            l.emplace(std::move(handoff.front()));
            handoff.pop_front();
          }
        }
        if (!l) {
          if (producers_done.load() == producers) return;
          std::this_thread::yield();
          continue;
        }
        switch (rng() % 3) {
          case 0:
            l->failure();
            failures.fetch_add(1);
            break;
          case 1:
            l->abandon();
            abandoned.fetch_add(1);
            break;
          default:
            l->success();
            successes.fetch_add(1);
            break;
        }
      }
    });
  }
  for (int round = 0; round < 200; ++round) {
    const std::string e = fmt::format("d{}", round % 4);
    b.add(e);
    if (round % 5 == 0) {
      b.remove("s1");
      b.add("s1");
    }
    b.remove(e);
  }
  churned = true;
  for (int t = 0; t < producers; ++t) threads[static_cast<std::size_t>(t)].join();
  producers_done = producers;
  for (int t = producers; t < producers + consumers; ++t)
    threads[static_cast<std::size_t>(t)].join();
  REQUIRE(handoff.empty());
  const auto m = b.metrics();
  CHECK(m.picks == picked.load());
  CHECK(m.successes == successes.load());
  CHECK(m.failures == failures.load());
  CHECK(m.abandoned == abandoned.load());
  CHECK(m.in_flight == 0);
  const auto r = b.removed_endpoints();
  CHECK(r.in_flight == 0);
  CHECK(r.lingering == 0);
}
