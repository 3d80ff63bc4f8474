#include <outgrow/queue/dead_letter_queue.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::dead_letter_overflow;
using outgrow::dead_letter_queue;
using outgrow::manual_clock;
using outgrow::replay_outcome;

namespace {

struct order {
  int id = 0;
  std::string sku;
};

using dlq_type = dead_letter_queue<order, manual_clock>;
using entry = dlq_type::entry;

entry make_entry(int id, std::string error = "boom",
                 std::string type = "std::runtime_error",
                 std::optional<std::string> key = std::nullopt) {
  entry e{.id = 999,  // ignored: the DLQ assigns ids
          .job = order{id, fmt::format("sku-{}", id)},
          .error = std::move(error),
          .error_type = std::move(type),
          .attempts = 3,
          .first_failure = manual_clock::time_point{} + std::chrono::seconds{id},
          .last_failure = manual_clock::time_point{} + std::chrono::seconds{id + 10},
          .idempotency_key = std::move(key)};
  return e;
}

/// A replay target that accepts `accept_up_to` jobs, reports keys in `done_keys` as
/// duplicates, and rejects the rest.
struct recording_target {
  std::vector<int> received;
  std::vector<std::string> done_keys;
  std::size_t accept_up_to = 1'000'000;

  replay_outcome accept_replay(order& job, const std::optional<std::string>& key) {
    if (key && std::find(done_keys.begin(), done_keys.end(), *key) != done_keys.end()) {
      return replay_outcome::duplicate;
    }
    if (received.size() >= accept_up_to) return replay_outcome::rejected;
    received.push_back(job.id);
    job.sku = "moved-from";
    return replay_outcome::accepted;
  }
};
static_assert(outgrow::replay_target<recording_target, order>);

std::vector<std::uint64_t> ids_of(const dlq_type& dlq) {
  std::vector<std::uint64_t> ids;
  dlq.for_each([&](const entry& e) { ids.push_back(e.id); });
  return ids;
}

}  // namespace

TEST_CASE("dead_letter_queue keeps each entry with its error and times in arrival order",
          "[dead_letter_queue]") {
  dlq_type dlq;
  CHECK(dlq.empty());
  CHECK(dlq.capacity() == 10'000);  // Sidekiq's dead set
  const auto a = dlq.add(make_entry(1, "card declined", "payment_error", "order-1"));
  const auto b = dlq.add(make_entry(2));
  const auto c = dlq.add(make_entry(3));
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  REQUIRE(c.has_value());
  CHECK(*a < *b);
  CHECK(*b < *c);
  CHECK(dlq.size() == 3);
  CHECK(ids_of(dlq) == std::vector<std::uint64_t>{*a, *b, *c});

  const auto first = dlq.find(*a);
  REQUIRE(first.has_value());
  CHECK(first->id == *a);
  CHECK(first->job.id == 1);
  CHECK(first->job.sku == "sku-1");
  CHECK(first->error == "card declined");
  CHECK(first->error_type == "payment_error");
  CHECK(first->attempts == 3);
  CHECK(first->first_failure == manual_clock::time_point{} + 1s);
  CHECK(first->last_failure == manual_clock::time_point{} + 11s);
  CHECK(first->idempotency_key == std::optional<std::string>("order-1"));
  CHECK_FALSE(dlq.find(12345).has_value());

  const auto all = dlq.snapshot();
  REQUIRE(all.size() == 3);
  CHECK(all[2].job.id == 3);
  CHECK(dlq.size() == 3);  // a snapshot copies
}

TEST_CASE("dead_letter_queue filters and purges by id predicate and all",
          "[dead_letter_queue]") {
  dlq_type dlq;
  for (int i = 1; i <= 6; ++i) {
    (void)dlq.add(make_entry(i, "e", i % 2 == 0 ? "timeout" : "validation"));
  }
  const auto timeouts =
      dlq.filter([](const entry& e) { return e.error_type == "timeout"; });
  REQUIRE(timeouts.size() == 3);
  CHECK(timeouts[0].job.id == 2);
  CHECK(timeouts[2].job.id == 6);

  const std::uint64_t first_id = ids_of(dlq).front();
  CHECK(dlq.purge(first_id));
  CHECK_FALSE(dlq.purge(first_id));  // already gone
  CHECK(dlq.size() == 5);
  CHECK(dlq.purge_if([](const entry& e) { return e.error_type == "timeout"; }) == 3);
  CHECK(dlq.size() == 2);
  CHECK(dlq.purge_all() == 2);
  CHECK(dlq.empty());
  CHECK(dlq.metrics().purged == 6);
}

TEST_CASE("dead_letter_queue replays one entry by id into a target",
          "[dead_letter_queue]") {
  dlq_type dlq;
  (void)dlq.add(make_entry(1));
  const auto second = dlq.add(make_entry(2));
  recording_target target;
  const auto r = dlq.replay(*second, target);
  CHECK(r.replayed == 1);
  CHECK(r.left == 0);
  CHECK(target.received == std::vector<int>{2});
  CHECK(dlq.size() == 1);
  CHECK_FALSE(dlq.find(*second).has_value());
  const auto missing = dlq.replay(*second, target);  // no longer there
  CHECK(missing.replayed == 0);
  CHECK(target.received.size() == 1);
}

TEST_CASE("dead_letter_queue replays by predicate and all oldest first",
          "[dead_letter_queue]") {
  dlq_type dlq;
  for (int i = 1; i <= 5; ++i) (void)dlq.add(make_entry(i));
  recording_target target;
  const auto odd = dlq.replay_if([](const entry& e) { return e.job.id % 2 == 1; }, target);
  CHECK(odd.replayed == 3);
  CHECK(target.received == std::vector<int>{1, 3, 5});
  CHECK(dlq.size() == 2);
  const auto rest = dlq.replay_all(target);
  CHECK(rest.replayed == 2);
  CHECK(target.received == std::vector<int>{1, 3, 5, 2, 4});
  CHECK(dlq.empty());
  CHECK(dlq.metrics().replayed == 5);
}

TEST_CASE("a refused replay stops and leaves the entries unchanged under their ids",
          "[dead_letter_queue]") {
  dlq_type dlq;
  for (int i = 1; i <= 5; ++i) (void)dlq.add(make_entry(i));
  const auto ids_before = ids_of(dlq);
  recording_target target;
  target.accept_up_to = 2;
  const auto r = dlq.replay_all(target);
  CHECK(r.replayed == 2);
  CHECK(r.left == 3);
  CHECK(target.received == std::vector<int>{1, 2});
  const auto ids_after = ids_of(dlq);
  CHECK(ids_after == std::vector<std::uint64_t>(ids_before.begin() + 2, ids_before.end()));
  const auto third = dlq.find(ids_before[2]);
  REQUIRE(third.has_value());
  CHECK(third->job.sku == "sku-3");  // the rejected job was not moved from
  CHECK(third->attempts == 3);
}

TEST_CASE("a replay drops entries whose idempotency key the target already completed",
          "[dead_letter_queue]") {
  dlq_type dlq;
  (void)dlq.add(make_entry(1, "e", "t", "order-1"));
  (void)dlq.add(make_entry(2, "e", "t", "order-2"));
  recording_target target;
  target.done_keys = {"order-1"};
  const auto r = dlq.replay_all(target);
  CHECK(r.replayed == 1);
  CHECK(r.duplicates == 1);
  CHECK(target.received == std::vector<int>{2});
  CHECK(dlq.empty());
  CHECK(dlq.metrics().duplicates == 1);
}

TEST_CASE("a full dead_letter_queue hands the oldest entry to the overflow hook",
          "[dead_letter_queue]") {
  dlq_type dlq({.capacity = 2});
  std::vector<entry> overflowed;
  dlq.on_overflow([&](entry&& e) { overflowed.push_back(std::move(e)); });
  const auto first = dlq.add(make_entry(1, "first error"));
  (void)dlq.add(make_entry(2));
  const auto third = dlq.add(make_entry(3));
  CHECK(third.has_value());
  CHECK(dlq.size() == 2);
  REQUIRE(overflowed.size() == 1);
  CHECK(overflowed[0].id == *first);
  CHECK(overflowed[0].job.id == 1);
  CHECK(overflowed[0].error == "first error");
  CHECK_FALSE(dlq.find(*first).has_value());
  CHECK(dlq.metrics().overflowed == 1);
}

TEST_CASE("reject_newest hands the new entry to the overflow hook", "[dead_letter_queue]") {
  dlq_type dlq({.capacity = 2, .overflow = dead_letter_overflow::reject_newest});
  std::vector<int> overflowed;
  dlq.on_overflow([&](entry&& e) { overflowed.push_back(e.job.id); });
  (void)dlq.add(make_entry(1));
  (void)dlq.add(make_entry(2));
  CHECK_FALSE(dlq.add(make_entry(3)).has_value());
  CHECK(overflowed == std::vector<int>{3});
  const auto kept = dlq.snapshot();
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].job.id == 1);
  CHECK(kept[1].job.id == 2);
}

TEST_CASE("overflow without a hook and with a throwing hook is counted",
          "[dead_letter_queue]") {
  dlq_type dlq({.capacity = 1});
  (void)dlq.add(make_entry(1));
  (void)dlq.add(make_entry(2));  // no hook: discarded but counted
  CHECK(dlq.metrics().overflowed == 1);
  CHECK(dlq.metrics().hook_failures == 0);
  dlq.on_overflow([](entry&&) { throw std::runtime_error("disk full"); });
  CHECK_NOTHROW(dlq.add(make_entry(3)));
  const auto m = dlq.metrics();
  CHECK(m.overflowed == 2);
  CHECK(m.hook_failures == 1);
  CHECK(m.added == 3);
  CHECK(m.size == 1);
}

TEST_CASE("dead_letter_queue rejects a zero capacity", "[dead_letter_queue]") {
  CHECK_THROWS_AS(dlq_type({.capacity = 0}), outgrow::config_error);
  CHECK_THROWS_WITH(dlq_type({.capacity = 0}),
                    "dead_letter_queue: capacity must be in [1, 4294967296], got 0");
}

TEST_CASE("dead_letter_queue rejects an out-of-range overflow value",
          "[dead_letter_queue]") {
  CHECK_THROWS_WITH(
      dlq_type({.overflow = static_cast<outgrow::dead_letter_overflow>(7)}),
      "dead_letter_queue: overflow must be one of drop_oldest, reject_newest, got 7");
  CHECK_THROWS_AS(dlq_type({.overflow = static_cast<outgrow::dead_letter_overflow>(2)}),
                  outgrow::config_error);
  CHECK(outgrow::to_string(static_cast<outgrow::dead_letter_overflow>(7)) == "unknown");
  CHECK_NOTHROW(dlq_type({.overflow = outgrow::dead_letter_overflow::reject_newest}));
}

TEST_CASE("dead_letter_queue metrics report size and the oldest entry age",
          "[dead_letter_queue]") {
  manual_clock clock;
  dlq_type dlq({.capacity = 10}, clock);
  CHECK(dlq.metrics().oldest_age == 0ns);
  clock.advance(100s);
  entry e = make_entry(1);
  e.last_failure = clock.now();
  (void)dlq.add(std::move(e));
  clock.advance(30s);
  const auto m = dlq.metrics();
  CHECK(m.size == 1);
  CHECK(m.capacity == 10);
  CHECK(m.oldest_age == 30s);
  const std::string text = fmt::format("{}", m);
  CHECK(text.find("dead_letter_queue_metrics{size=1") == 0);
  CHECK(text.find("oldest_age=30000000000ns") != std::string::npos);
}

TEST_CASE("dead_letter_queue holds move-only jobs", "[dead_letter_queue]") {
  dead_letter_queue<std::unique_ptr<int>> dlq;
  (void)dlq.add({.job = std::make_unique<int>(7), .error = "e", .attempts = 1});
  int seen = 0;
  dlq.for_each([&](const auto& e) { seen = *e.job; });
  CHECK(seen == 7);
  struct target {
    std::unique_ptr<int> got;
    replay_outcome accept_replay(std::unique_ptr<int>& job,
                                 const std::optional<std::string>&) {
      got = std::move(job);
      return replay_outcome::accepted;
    }
  } t;
  CHECK(dlq.replay_all(t).replayed == 1);
  REQUIRE(t.got != nullptr);
  CHECK(*t.got == 7);
}

TEST_CASE("dead_letter_queue stays consistent under concurrent add replay and purge",
          "[dead_letter_queue]") {
  dead_letter_queue<int> dlq({.capacity = 64});
  std::atomic<std::uint64_t> overflowed{0};
  dlq.on_overflow([&](auto&&) { overflowed.fetch_add(1); });
  struct counting_target {
    std::uint64_t n = 0;
    replay_outcome accept_replay(int&, const std::optional<std::string>&) {
      ++n;
      return replay_outcome::accepted;
    }
  };
  constexpr int adders = 3;
  constexpr int per_adder = 3000;
  std::atomic<bool> adding{true};
  std::vector<std::thread> threads;
  for (int a = 0; a < adders; ++a) {
    threads.emplace_back([&, a] {
      for (int i = 0; i < per_adder; ++i) (void)dlq.add({.job = a * per_adder + i});
    });
  }
  counting_target replayer;
  std::uint64_t purged = 0;
  std::thread other([&] {
    while (adding.load()) {
      (void)dlq.replay_if([](const auto& e) { return e.job % 3 == 0; }, replayer);
      purged += dlq.purge_if([](const auto& e) { return e.job % 3 == 1; });
      (void)dlq.snapshot();
    }
  });
  for (auto& t : threads) t.join();
  adding.store(false);
  other.join();
  const auto m = dlq.metrics();
  // Every entry added is accounted for exactly once.
  CHECK(m.added == adders * per_adder);
  CHECK(replayer.n == m.replayed);
  CHECK(purged == m.purged);
  CHECK(overflowed.load() == m.overflowed);
  CHECK(m.size + m.replayed + m.purged + m.overflowed == m.added);
  CHECK(m.size <= 64);
}
