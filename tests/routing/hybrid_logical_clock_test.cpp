// Multi-primary conflict resolution: hybrid logical clock, last-writer-wins and a user
// merge hook (include/outgrow/routing/hybrid_logical_clock.hpp).
#include <outgrow/routing/hybrid_logical_clock.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::manual_clock;

// ---- multi-primary conflict resolution -----------------------------------------------

TEST_CASE("hybrid logical clock is monotonic and respects causality under skew",
          "[hybrid_logical_clock]") {
  manual_clock a_time(manual_clock::time_point{100s});
  manual_clock b_time(manual_clock::time_point{90s});  // b's clock is 10 s behind
  outgrow::hybrid_logical_clock<manual_clock> a(1, {}, a_time);
  outgrow::hybrid_logical_clock<manual_clock> b(2, {}, b_time);
  const auto t1 = a.now();
  const auto t2 = a.now();  // same physical time: logical counter
  CHECK(t2 > t1);
  CHECK(t2.logical == t1.logical + 1);
  // b receives a's write, then writes: its stamp is after a's despite its slow clock.
  b.update(t2);
  const auto t3 = b.now();
  CHECK(t3 > t2);
  CHECK(t3.wall_ns == t2.wall_ns);
  // Physical time catches up: the logical part resets.
  a_time.advance(1s);
  const auto t4 = a.now();
  CHECK(t4.logical == 0);
  CHECK(t4 > t3);
  // try_update refuses a timestamp far ahead of local physical time (max_offset 500 ms).
  const outgrow::hybrid_timestamp future{.wall_ns = std::chrono::nanoseconds(200s).count(),
                                         .node = 3};
  CHECK_FALSE(b.try_update(future));
  CHECK(b.last() == t3);
  CHECK_THROWS_AS(
      outgrow::hybrid_logical_clock<manual_clock>(1, {.max_offset = 0s}, a_time),
      outgrow::config_error);
}

TEST_CASE("last writer wins converges on concurrent updates in any order",
          "[hybrid_logical_clock]") {
  manual_clock time_a(manual_clock::time_point{1000s});
  manual_clock time_b(manual_clock::time_point{1000s});
  outgrow::hybrid_logical_clock<manual_clock> a(1, {}, time_a);
  outgrow::hybrid_logical_clock<manual_clock> b(2, {}, time_b);
  using v = outgrow::versioned<std::string>;
  // Same key written on both primaries at the same physical time: node id decides.
  const v on_a{"blue", a.now()};
  const v on_b{"green", b.now()};
  const outgrow::last_writer_wins lww;
  const v at_a = outgrow::resolve(on_a, on_b, lww);  // a receives b's write
  const v at_b = outgrow::resolve(on_b, on_a, lww);  // b receives a's write
  CHECK(at_a == at_b);
  CHECK(at_a.value == "green");
  // A later write wins on both, wherever it arrives first.
  time_a.advance(5ms);
  const v later{"red", a.now()};
  CHECK(outgrow::resolve(at_a, later, lww).value == "red");
  CHECK(outgrow::resolve(later, at_b, lww).value == "red");

  // Random concurrent histories: replicas applying the same updates in different
  // orders end equal.
  std::mt19937_64 rng(77);
  for (int round = 0; round < 100; ++round) {
    std::vector<v> updates;
    for (int i = 0; i < 6; ++i) {
      auto& clock = i % 2 == 0 ? a : b;
      (i % 2 == 0 ? time_a : time_b).advance(std::chrono::microseconds(rng() % 50));
      updates.push_back({fmt::format("w{}", i), clock.now()});
    }
    v x = updates[0], y = updates[5];
    for (const auto& u : updates) x = outgrow::resolve(x, u, lww);
    std::shuffle(updates.begin(), updates.end(), rng);
    for (const auto& u : updates) y = outgrow::resolve(y, u, lww);
    CHECK(x == y);
  }
}

TEST_CASE("a user merge hook combines concurrent updates", "[hybrid_logical_clock]") {
  manual_clock time(manual_clock::time_point{50s});
  outgrow::hybrid_logical_clock<manual_clock> a(1, {}, time);
  outgrow::hybrid_logical_clock<manual_clock> b(2, {}, time);
  using cart = std::set<std::string>;
  using v = outgrow::versioned<cart>;
  const outgrow::merge_with merge{[](const cart& older, const cart& newer) {
    cart out = older;
    out.insert(newer.begin(), newer.end());
    return out;
  }};
  // Two primaries add different items to the same cart concurrently.
  const v base{{"book"}, a.now()};
  const v on_a{{"book", "pen"}, a.now()};
  const v on_b{{"book", "mug"}, b.now()};
  const v merged_at_a = outgrow::resolve(on_a, on_b, merge);
  const v merged_at_b = outgrow::resolve(on_b, on_a, merge);
  CHECK(merged_at_a == merged_at_b);
  CHECK(merged_at_a.value == cart{"book", "pen", "mug"});
  CHECK(merged_at_a.stamp == std::max(on_a.stamp, on_b.stamp));
  // Re-delivery of an update already merged changes nothing (same stamp).
  CHECK(outgrow::resolve(merged_at_a, merged_at_b, merge) == merged_at_a);
  // Last-writer-wins on the same history would have lost an item.
  const v lww = outgrow::resolve(on_a, on_b, outgrow::last_writer_wins{});
  CHECK(lww.value.size() == 2);
  (void)base;
}

// ---- hostile remote timestamps (untrusted data from the network) ------------------------

TEST_CASE("a remote counter at UINT32_MAX never makes the clock go backwards",
          "[hybrid_logical_clock][hostile]") {
  manual_clock t(manual_clock::time_point{100s});
  outgrow::hybrid_logical_clock<manual_clock> c(1, {}, t);
  const std::int64_t now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(100s + 1ms).count();
  const outgrow::hybrid_timestamp remote{now_ns, UINT32_MAX, 2};
  const outgrow::hybrid_timestamp got = c.update(remote);
  CHECK(got > remote);  // the counter carries into the wall component
  CHECK(got.wall_ns == now_ns + 1);
  CHECK(got.logical == 0);
  const auto again = c.try_update(remote);
  REQUIRE(again);
  CHECK(*again > got);
  CHECK(c.now() > *again);
}

TEST_CASE("a local counter exhausted by many events in one tick carries over",
          "[hybrid_logical_clock][hostile]") {
  manual_clock t(manual_clock::time_point{5s});
  outgrow::hybrid_logical_clock<manual_clock> c(1, {}, t);
  const std::int64_t wall = std::chrono::nanoseconds{5s}.count();
  const auto a = c.update({wall, UINT32_MAX - 1, 2});  // counter reaches UINT32_MAX
  const auto b = c.now();                              // carries
  CHECK(a.logical == UINT32_MAX);
  CHECK(b > a);
  CHECK(b.wall_ns == wall + 1);
}

TEST_CASE("extreme remote wall times neither overflow nor move the clock",
          "[hybrid_logical_clock][hostile]") {
  manual_clock t(manual_clock::time_point{100s});
  outgrow::hybrid_logical_clock<manual_clock> c(1, {}, t);
  const auto before = c.now();
  // INT64_MIN: far behind; accepted, the clock keeps its own time.
  const auto low = c.try_update({INT64_MIN, UINT32_MAX, 2});
  REQUIRE(low);
  CHECK(*low > before);
  CHECK(low->wall_ns == before.wall_ns);
  // INT64_MAX: far ahead of max_offset; refused, nothing changes.
  CHECK_FALSE(c.try_update({INT64_MAX, 0, 2}));
  CHECK(c.last().wall_ns == before.wall_ns);
  // update() has no offset check; at the very end of the timestamp space it refuses
  // with an exception instead of wrapping.
  CHECK(c.update({INT64_MAX, 7, 2}).wall_ns == INT64_MAX);
  CHECK_THROWS_AS(c.update({INT64_MAX, UINT32_MAX, 2}), std::overflow_error);
  CHECK(c.last().wall_ns == INT64_MAX);
}
