#include <outgrow/routing/redis_cluster_slots.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "catch.hpp"

using outgrow::config_error;
using outgrow::crc16_xmodem;
using outgrow::redis_cluster_hash_slot;
using outgrow::redis_cluster_slots;
using outgrow::slot_move;
using outgrow::slot_range;

namespace {

// Catches the config_error `f` throws and returns its message ("" if none).
template <class F>
std::string config_error_message(F&& f) {
  try {
    f();
  } catch (const config_error& e) {
    return e.what();
  }
  return {};
}

}  // namespace

// Redis's own values (the cluster specification's CRC16 check value and hash-tag
// examples, CLUSTER KEYSLOT answers): redis_cluster_slots_conformance_test.cpp.

TEST_CASE("keys sharing a hash tag share a slot", "[redis_cluster]") {
  CHECK(redis_cluster_hash_slot("user:{42}:cart") == redis_cluster_hash_slot("42"));
  CHECK(redis_cluster_hash_slot("user:{42}:orders") == redis_cluster_hash_slot("42"));
  // The tag is found in binary keys too: NUL bytes around it do not matter.
  CHECK(redis_cluster_hash_slot(std::string_view("\0{42}\0", 6)) ==
        redis_cluster_hash_slot("42"));
}

TEST_CASE("only the first brace pair with content is a hash tag", "[redis_cluster]") {
  const auto whole = [](std::string_view key) {
    return static_cast<std::uint16_t>(crc16_xmodem(key) & 16383U);
  };
  // The specification's own examples (foo{}{bar}, foo{{bar}}zap, foo{bar}{zap}) are in
  // redis_cluster_slots_conformance_test.cpp.
  // No '}' after the first '{' (a '}' before it does not count): whole key.
  CHECK(redis_cluster_hash_slot("foo{bar") == whole("foo{bar"));
  CHECK(redis_cluster_hash_slot("foo}bar{") == whole("foo}bar{"));
  CHECK(redis_cluster_hash_slot("}{") == whole("}{"));
  // A '{' inside the tag is part of it.
  CHECK(redis_cluster_hash_slot("a{b{c}d") == redis_cluster_hash_slot("b{c"));
  // The tag may be the whole key but the braces.
  CHECK(redis_cluster_hash_slot("{x}") == redis_cluster_hash_slot("x"));
}

TEST_CASE("slots stay in range for many keys", "[redis_cluster]") {
  std::vector<int> hits(outgrow::redis_cluster_slot_count, 0);
  for (int i = 0; i < 200'000; ++i) {
    const std::uint16_t slot = redis_cluster_hash_slot("key:" + std::to_string(i));
    if (slot >= outgrow::redis_cluster_slot_count) FAIL("slot " << slot << " out of range");
    ++hits[slot];
  }
  // 200,000 keys over 16384 slots: about 12.2 per slot; CRC16 reaches every slot.
  CHECK(std::count(hits.begin(), hits.end(), 0) == 0);
}

TEST_CASE("even split over 3 shards matches redis-cli cluster create",
          "[redis_cluster][golden]") {
  const redis_cluster_slots slots(3);
  CHECK(slots.shard_count() == 3);
  CHECK(slots.unassigned_slots() == 0);
  CHECK_NOTHROW(slots.validate_complete());
  // `redis-cli --cluster create` with three masters: 0-5460, 5461-10922, 10923-16383.
  const std::vector<slot_range> expected = {
      {0, 5460, 0}, {5461, 10922, 1}, {10923, 16383, 2}};
  CHECK(slots.ranges() == expected);
  CHECK(slots.slot_counts() == std::vector<std::uint32_t>{5461, 5462, 5461});
  CHECK(slots.route_slot(0) == 0);
  CHECK(slots.route_slot(5460) == 0);
  CHECK(slots.route_slot(5461) == 1);
  CHECK(slots.route_slot(10922) == 1);
  CHECK(slots.route_slot(10923) == 2);
  CHECK(slots.route_slot(16383) == 2);
  CHECK(slots.route("foo") == 2);             // slot 12182
  CHECK(slots.route("bar") == 0);             // slot 5061
  CHECK(slots.route("user:{42}:cart") == 1);  // slot 8000
  CHECK(slots.route("{user1000}.following") == slots.route("{user1000}.followers"));
}

TEST_CASE("even split follows redis-cli float rounding", "[redis_cluster][golden]") {
  // Output of `redis-cli --cluster create` (7.0.15) with 1, 2, 4, 5 and 78 masters. With
  // 78, redis-cli's float cursor gives master 67 the slots 14073-14283, where exact
  // rounding of 68 * 16384 / 78 - 1 = 14282.49 would end it at 14282.
  CHECK(redis_cluster_slots(1).ranges() == std::vector<slot_range>{{0, 16383, 0}});
  CHECK(redis_cluster_slots(2).ranges() ==
        std::vector<slot_range>{{0, 8191, 0}, {8192, 16383, 1}});
  CHECK(redis_cluster_slots(4).ranges() ==
        std::vector<slot_range>{
            {0, 4095, 0}, {4096, 8191, 1}, {8192, 12287, 2}, {12288, 16383, 3}});
  CHECK(redis_cluster_slots(5).ranges() == std::vector<slot_range>{{0, 3276, 0},
                                                                   {3277, 6553, 1},
                                                                   {6554, 9829, 2},
                                                                   {9830, 13106, 3},
                                                                   {13107, 16383, 4}});
  const std::vector<slot_range> r78 = redis_cluster_slots(78).ranges();
  REQUIRE(r78.size() == 78);
  CHECK(r78[0] == slot_range{0, 209, 0});
  CHECK(r78[67] == slot_range{14073, 14283, 67});
  CHECK(r78[68] == slot_range{14284, 14493, 68});
  CHECK(r78[77] == slot_range{16174, 16383, 77});
}

TEST_CASE("even split is a partition into non-empty ranges for any shard count",
          "[redis_cluster]") {
  // Every n up to 128, then a stride through the rest (all 16384 take seconds in a
  // debug build), plus the edges: 1000 is Redis's recommended maximum, 7542 the first
  // n where redis-cli's cursor overruns, 13952 the n with the largest spread, 16384
  // one slot per shard.
  std::vector<std::uint32_t> counts;
  for (std::uint32_t n = 1; n <= 128; ++n) counts.push_back(n);
  for (std::uint32_t n = 129; n < 16384; n += 29) counts.push_back(n);
  for (const std::uint32_t n : {1000U, 7541U, 7542U, 13952U, 16383U, 16384U}) {
    counts.push_back(n);
  }
  for (const std::uint32_t n : counts) {
    const std::vector<slot_range> ranges = redis_cluster_slots(n).ranges();
    INFO("shards: " << n);
    REQUIRE(ranges.size() == n);
    REQUIRE(ranges.front().first == 0);
    REQUIRE(ranges.back().last == 16383);
    bool in_order = true;  // shard i owns the i-th range, ranges adjacent
    std::uint32_t smallest = 16384;
    std::uint32_t largest = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      in_order = in_order && ranges[i].shard == i &&
                 (i == 0 || ranges[i].first == ranges[i - 1].last + 1U);
      smallest = std::min(smallest, ranges[i].size());
      largest = std::max(largest, ranges[i].size());
    }
    REQUIRE(in_order);
    // Up to Redis's recommended 1000 masters, shard sizes differ by at most one slot
    // (by two up to 7541 shards, four beyond).
    if (n <= 1000) REQUIRE(largest - smallest <= 1);
    REQUIRE(largest - smallest <= 4);
  }
}

TEST_CASE("tables built from slot ranges route like Redis", "[redis_cluster]") {
  // A cluster whose slots were moved by hand: shard 1 owns two ranges.
  redis_cluster_slots slots(3, {{0, 999, 1}, {1000, 9999, 0}, {10000, 16383, 2}});
  CHECK(slots.route_slot(999) == 1);
  CHECK(slots.route_slot(1000) == 0);
  slots.assign(12182, 12182, 1);  // the slot of "foo"
  CHECK(slots.route("foo") == 1);
  CHECK(slots.route_slot(12181) == 2);
  CHECK(slots.route_slot(12183) == 2);
  CHECK(slots.slot_counts() == std::vector<std::uint32_t>{9000, 1001, 6383});
  // ranges() round-trips.
  const std::vector<slot_range> ranges = slots.ranges();
  CHECK(ranges.size() == 5);
  CHECK(redis_cluster_slots(3, ranges) == slots);
  // route_slot never throws: out-of-range slots have no shard.
  CHECK(slots.route_slot(16384) == redis_cluster_slots::no_shard);
}

TEST_CASE("unassigned slots route nowhere and fail validate_complete", "[redis_cluster]") {
  redis_cluster_slots slots(3, {{0, 5460, 0}, {10923, 16383, 2}});
  CHECK(slots.unassigned_slots() == 5462);
  CHECK(slots.route_slot(5461) == redis_cluster_slots::no_shard);
  CHECK(slots.route("user:{42}:cart") == redis_cluster_slots::no_shard);  // slot 8000
  CHECK(slots.route("foo") == 2);
  CHECK(slots.slot_counts() == std::vector<std::uint32_t>{5461, 0, 5461});
  CHECK(config_error_message([&] { slots.validate_complete(); }) ==
        "redis_cluster_slots: slots must be all assigned to a shard, got 5462 unassigned "
        "(first: 5461-10922)");

  slots.assign(5461, 10922, 1);
  CHECK(slots.unassigned_slots() == 0);
  CHECK_NOTHROW(slots.validate_complete());
  CHECK(slots == redis_cluster_slots(3));

  const redis_cluster_slots empty(2, {});
  CHECK(empty.unassigned_slots() == 16384);
  CHECK(empty.ranges().empty());
  CHECK(config_error_message([&] { empty.validate_complete(); }) ==
        "redis_cluster_slots: slots must be all assigned to a shard, got 16384 unassigned "
        "(first: 0-16383)");
}

TEST_CASE("bad shard counts and slot ranges throw config_error", "[redis_cluster]") {
  CHECK(config_error_message([] { redis_cluster_slots s(0); }) ==
        "redis_cluster_slots: shards must be in [1, 16384], got 0");
  CHECK(config_error_message([] { redis_cluster_slots s(16385); }) ==
        "redis_cluster_slots: shards must be in [1, 16384], got 16385");
  CHECK(config_error_message([] { redis_cluster_slots s(0, {}); }) ==
        "redis_cluster_slots: shards must be in [1, 16384], got 0");

  redis_cluster_slots slots(3);
  CHECK(config_error_message([&] { slots.assign(16384, 16384, 0); }) ==
        "redis_cluster_slots: first_slot must be in [0, 16383], got 16384");
  CHECK(config_error_message([&] { slots.assign(0, 16384, 0); }) ==
        "redis_cluster_slots: last_slot must be in [0, 16383], got 16384");
  CHECK(config_error_message([&] { slots.assign(100, 99, 0); }) ==
        "redis_cluster_slots: last_slot must be >= first_slot (100), got 99");
  CHECK(config_error_message([&] { slots.assign(0, 10, 3); }) ==
        "redis_cluster_slots: shard must be in [0, 2], got 3");
  // Errors from the ranges constructor name the same fields.
  CHECK(config_error_message([] {
          redis_cluster_slots s(2, {{0, 100, 0}, {101, 200, 2}});
        }) == "redis_cluster_slots: shard must be in [0, 1], got 2");

  try {
    slots.assign(0, 10, 7);
    FAIL("assign should have thrown");
  } catch (const config_error& e) {
    CHECK(e.primitive() == "redis_cluster_slots");
    CHECK(e.field() == "shard");
  }
  // A rejected assign changes nothing.
  CHECK(slots == redis_cluster_slots(3));
}

TEST_CASE("slot_moves from 3 to 4 even shards moves half the slots", "[redis_cluster]") {
  const redis_cluster_slots three(3);  // 0-5460 | 5461-10922 | 10923-16383
  const redis_cluster_slots four(4);   // 0-4095 | 4096-8191 | 8192-12287 | 12288-16383
  const outgrow::slot_move_plan plan = three.slot_moves(four);
  // By hand: 4096-5460 leave shard 0 for 1 (1365 slots), 8192-10922 leave 1 for 2
  // (2731), 12288-16383 leave 2 for 3 (4096): 8192 of 16384 slots.
  const std::vector<slot_move> expected = {
      {4096, 5460, 0, 1}, {8192, 10922, 1, 2}, {12288, 16383, 2, 3}};
  CHECK(plan.moves == expected);
  CHECK(plan.moves[0].size() == 1365);
  CHECK(plan.moves[1].size() == 2731);
  CHECK(plan.moves[2].size() == 4096);
  CHECK(plan.moved_slots == 8192);
  CHECK(plan.moved_fraction == 0.5);

  // Back from 4 to 3 moves the same slots the other way.
  const outgrow::slot_move_plan back = four.slot_moves(three);
  CHECK(back.moved_slots == 8192);
  CHECK(back.moves == std::vector<slot_move>{
                          {4096, 5460, 1, 0}, {8192, 10922, 2, 1}, {12288, 16383, 3, 2}});

  // Nothing moves between equal tables.
  const outgrow::slot_move_plan none = three.slot_moves(redis_cluster_slots(3));
  CHECK(none.moves.empty());
  CHECK(none.moved_slots == 0);
  CHECK(none.moved_fraction == 0.0);
}

TEST_CASE("slot_moves of a minimal reshard to a fourth shard is one quarter",
          "[redis_cluster]") {
  // What `redis-cli --cluster rebalance` aims for: the new shard takes 4096 slots,
  // 1365 or 1366 from the end of each old shard, and nothing else moves.
  const redis_cluster_slots three(3);
  redis_cluster_slots four(4, three.ranges());
  four.assign(4096, 5460, 3).assign(9557, 10922, 3).assign(15019, 16383, 3);
  CHECK(four.slot_counts() == std::vector<std::uint32_t>{4096, 4096, 4096, 4096});
  const outgrow::slot_move_plan plan = three.slot_moves(four);
  CHECK(plan.moves == std::vector<slot_move>{
                          {4096, 5460, 0, 3}, {9557, 10922, 1, 3}, {15019, 16383, 2, 3}});
  CHECK(plan.moved_slots == 4096);
  CHECK(plan.moved_fraction == 0.25);
}

TEST_CASE("slot_moves reports slots gaining or losing an owner", "[redis_cluster]") {
  const redis_cluster_slots partial(2, {{0, 99, 0}, {200, 299, 1}});
  const redis_cluster_slots whole(2, {{0, 8191, 0}, {8192, 16383, 1}});
  const outgrow::slot_move_plan plan = partial.slot_moves(whole);
  constexpr std::uint32_t none = redis_cluster_slots::no_shard;
  CHECK(plan.moves == std::vector<slot_move>{{100, 199, none, 0},
                                             {200, 299, 1, 0},
                                             {300, 8191, none, 0},
                                             {8192, 16383, none, 1}});
  CHECK(plan.moved_slots == 16384 - 100);
  CHECK(plan.moved_fraction == Approx(16284.0 / 16384.0));
}
