// sharding: route users to shards, then plan growing from 4 to 5 shards with
// hash % N versus consistent hashing — the textbook's "resharding is painful", in
// numbers — and look at the load report a router keeps.
//
// Run: build the `sharding` target (scripts/dev test builds every example) and run it.
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/shard_router.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

int main() {
  using outgrow::shard_id;
  using mod_router = outgrow::shard_router<std::string, outgrow::hash_mod<>>;
  using ring_shards = outgrow::consistent_shards<outgrow::ring_placement<shard_id>>;
  using ring_router = outgrow::shard_router<std::string, ring_shards>;

  std::vector<std::string> users;
  for (int i = 0; i < 100'000; ++i) users.push_back(fmt::format("user:{}", i));

  // 1. Route users to 4 shards both ways (with hot-key tracking on the first).
  mod_router by_mod(outgrow::hash_mod<>(4), {.hot_key_capacity = 128});
  ring_router by_ring(ring_shards(4));
  for (const auto& u : users) {
    (void)by_mod.route(u);
    (void)by_ring.route(u);
  }
  for (int i = 0; i < 20'000; ++i) (void)by_mod.route("user:celebrity");  // a hot key

  fmt::print("1. {} users on 4 shards\n", users.size());
  fmt::print("   hash % N   : {}\n", by_mod.load_report());
  fmt::print("   consistent : {}\n", by_ring.load_report());
  for (const auto& hk : by_mod.hot_keys(3)) {
    // Space-Saving bounds: the true count is in [count - error, count].
    fmt::print("   hot key {:<16} {}..{} requests\n", hk.key, hk.count - hk.error,
               hk.count);
  }

  // 2. The dry-run plans for 4 -> 5 shards, side by side.
  const auto mod_plan = by_mod.plan(outgrow::hash_mod<>(5));
  const auto ring_plan = by_ring.plan(ring_shards(5));
  fmt::print("\n2. Growing from 4 to 5 shards (dry run, nothing moved yet)\n");
  fmt::print("   {:<12} {:>12} {:>10}\n", "strategy", "keys moved", "moves");
  fmt::print("   {:<12} {:>11.1f}% {:>10}\n", "hash % N", 100.0 * mod_plan.moved_fraction,
             mod_plan.moves.size());
  fmt::print("   {:<12} {:>11.1f}% {:>10}\n", "consistent",
             100.0 * ring_plan.moved_fraction, ring_plan.moves.size());
  fmt::print("\n   {}\n\n   {}\n", mod_plan, ring_plan);

  // 3. Check the plans against the users we actually have, then apply one.
  std::size_t mod_moved = 0, ring_moved = 0;
  const outgrow::hash_mod<> five(5);
  const ring_shards ring_five(5);
  const auto mod_now = by_mod.strategy();  // pinned strategies: no load counted
  const auto ring_now = by_ring.strategy();
  for (const auto& u : users) {
    if (mod_now->route(u) != five.route(u)) ++mod_moved;
    if (ring_now->route(u) != ring_five.route(u)) ++ring_moved;
  }
  fmt::print("\n3. Measured on the {} users: hash % N moves {}, consistent moves {}\n",
             users.size(), mod_moved, ring_moved);
  const auto before = by_ring.apply(ring_five);
  fmt::print("   applied consistent 4 -> 5; the old topology served {} requests\n",
             before.total());
  return 0;
}
