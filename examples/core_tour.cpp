// core_tour: the building blocks every outgrow primitive stands on.
//
//   - a stable placement hash (XXH3-64): the same key lands on the same shard on
//     every machine and every release;
//   - why naive `hash % N` sharding hurts when N changes (the number printed here is
//     what the routing primitives improve on);
//   - a manual clock for deterministic simulations;
//   - configuration errors that say what is wrong;
//   - metrics snapshots that print themselves.
//
// Run: scripts/dev demo   (or build the `core_tour` target and run it)
#include <outgrow/outgrow.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

#include <fmt/format.h>

namespace {

struct placement_stats {
  static constexpr std::string_view metrics_name = "placement_stats";
  std::uint64_t keys = 0;
  std::uint64_t moved = 0;
  [[nodiscard]] double moved_fraction() const { return outgrow::ratio(moved, keys); }
  template <class F>
  void for_each_metric(F&& f) const {
    f("keys", keys);
    f("moved", moved);
    f("moved_fraction", moved_fraction());
  }
};

}  // namespace

int main() {
  using namespace std::chrono_literals;
  const outgrow::xxh3_hasher hash;

  fmt::print("outgrow {} — core tour\n\n", outgrow::version_string);

  // 1. Stable placement hash.
  fmt::print("1. Stable hash (XXH3-64), identical on every platform and release:\n");
  for (const char* key : {"user:42", "user:43", "order:2026-11-27:000001"}) {
    fmt::print("   {:<26} -> {:016x}  -> shard {} of 4\n", key, hash(key),
               outgrow::hash_to_range(hash(key), 4));
  }

  // 2. The textbook's resharding pain: hash % N from 4 to 5 shards.
  constexpr std::uint64_t users = 100'000;
  placement_stats mod_n{.keys = users};
  std::array<std::uint64_t, 5> per_shard{};
  for (std::uint64_t id = 0; id < users; ++id) {
    const std::uint64_t h = hash(id);
    const std::uint64_t before = h % 4;
    const std::uint64_t after = h % 5;
    ++per_shard[after];
    if (before != after) ++mod_n.moved;
  }
  fmt::print("\n2. Growing from 4 to 5 shards with hash % N, {} users:\n   {}\n", users,
             mod_n);
  fmt::print("   per shard after: {} {} {} {} {}\n", per_shard[0], per_shard[1],
             per_shard[2], per_shard[3], per_shard[4]);
  fmt::print("   the optimum is 1/5 = 20% moved; consistent placement gets close to it.\n");

  // 3. Deterministic time.
  outgrow::manual_clock clock;
  const outgrow::manual_clock seen_by_a_primitive = clock;
  clock.advance(30s);
  fmt::print(
      "\n3. manual_clock: advanced 30s through one copy, another copy sees {}\n",
      std::chrono::duration_cast<std::chrono::seconds>(seen_by_a_primitive.elapsed()));

  // 4. Configuration errors name the field, the allowed range and the value.
  try {
    outgrow::require_in_range("circuit_breaker", "failure_threshold", 0, 1, 1'000'000);
  } catch (const outgrow::config_error& e) {
    fmt::print("\n4. config_error: {}\n", e.what());
  }
  return 0;
}
