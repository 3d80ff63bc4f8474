#include <outgrow/cache/single_flight.hpp>

#include <atomic>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

using outgrow::single_flight;

namespace {
// Spins (yielding) until `done()`; the tests use it only to wait for other threads to
// reach a known point, never to let time pass.
template <class F>
void wait_until(F done) {
  while (!done()) std::this_thread::yield();
}
}  // namespace

TEST_CASE("64 threads missing the same key share exactly one load", "[single_flight]") {
  single_flight<std::string, int> flights;
  std::atomic<int> loads{0};
  constexpr std::size_t threads = 64;
  std::vector<int> results(threads, 0);
  std::vector<std::thread> pool;
  for (std::size_t i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      results[i] = flights.run("user:42", [&] {
        loads.fetch_add(1);
        // Hold the call open until every thread has joined it: then "one load" is
        // a fact about sharing, not about timing.
        wait_until([&] { return flights.waiting("user:42") == threads; });
        return 42;
      });
    });
  }
  for (auto& t : pool) t.join();
  CHECK(loads.load() == 1);
  for (int r : results) CHECK(r == 42);
  const auto s = flights.metrics();
  CHECK(s.calls == threads);
  CHECK(s.executions == 1);
  CHECK(s.shared == threads - 1);
  CHECK(s.failures == 0);
  CHECK(flights.in_flight() == 0);
  CHECK(flights.waiting("user:42") == 0);
}

TEST_CASE("a failure reaches every waiter and is not cached", "[single_flight]") {
  single_flight<int, std::string> flights;
  std::atomic<int> calls{0};
  constexpr std::size_t threads = 16;
  std::atomic<std::size_t> failures{0};
  std::vector<std::string> messages(threads);
  std::vector<std::thread> pool;
  for (std::size_t i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      try {
        (void)flights.run(7, [&]() -> std::string {
          calls.fetch_add(1);
          wait_until([&] { return flights.waiting(7) == threads; });
          throw std::runtime_error("db down");
        });
      } catch (const std::runtime_error& e) {
        messages[i] = e.what();
        failures.fetch_add(1);
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(calls.load() == 1);
  CHECK(failures.load() == threads);
  for (const auto& m : messages) CHECK(m == "db down");
  CHECK(flights.metrics().failures == 1);

  // Nothing was cached: the next call runs again, and may succeed.
  CHECK(flights.run(7, [&] {
    calls.fetch_add(1);
    return std::string("back");
  }) == "back");
  CHECK(calls.load() == 2);
}

TEST_CASE("sequential calls each run the function", "[single_flight]") {
  single_flight<int, int> flights;
  int runs = 0;
  for (int i = 0; i < 5; ++i) CHECK(flights.run(1, [&] { return ++runs; }) == i + 1);
  CHECK(flights.metrics().executions == 5);
  CHECK(flights.metrics().shared == 0);
}

TEST_CASE("different keys do not share a call", "[single_flight]") {
  single_flight<int, int> flights;
  auto a = flights.join(1);
  auto b = flights.join(2);
  auto a2 = flights.join(1);
  CHECK(a.leader());
  CHECK(b.leader());
  CHECK_FALSE(a2.leader());
  CHECK(flights.in_flight() == 2);
  CHECK(flights.waiting(1) == 2);
  a.complete(10);
  b.complete(20);
  CHECK(a.get() == 10);
  CHECK(a2.get() == 10);
  CHECK(b.get() == 20);
  CHECK(flights.in_flight() == 0);
}

TEST_CASE("tickets complete once and only by the leader", "[single_flight]") {
  single_flight<int, int> flights;
  auto leader = flights.join(1);
  auto follower = flights.join(1);
  CHECK_THROWS_AS(follower.complete(1), std::logic_error);
  leader.complete(5);
  CHECK_THROWS_AS(leader.complete(6), std::logic_error);
  CHECK(follower.get() == 5);
}

TEST_CASE("an abandoned leader fails its followers instead of stranding them",
          "[single_flight]") {
  single_flight<int, int> flights;
  std::optional<single_flight<int, int>::ticket> follower;
  {
    auto leader = flights.join(3);
    follower.emplace(flights.join(3));
    CHECK(leader.leader());
  }  // leader destroyed without a result
  CHECK_THROWS_AS(follower->get(), outgrow::single_flight_abandoned);
  CHECK(flights.in_flight() == 0);
  CHECK(flights.metrics().failures == 1);
  // The key is free again.
  CHECK(flights.run(3, [] { return 9; }) == 9);
}

TEST_CASE("a caller arriving after the call finished starts a new one", "[single_flight]") {
  single_flight<int, int> flights;
  auto first = flights.join(4);
  first.complete(1);
  auto second = flights.join(4);
  CHECK(second.leader());
  second.complete(2);
  CHECK(first.get() == 1);
  CHECK(second.get() == 2);
}

TEST_CASE("single_flight stats print with fmt", "[single_flight]") {
  single_flight<int, int> flights;
  (void)flights.run(1, [] { return 1; });
  CHECK(fmt::format("{}", flights.metrics()) ==
        "single_flight_metrics{calls=1, executions=1, shared=0, failures=0}");
}
