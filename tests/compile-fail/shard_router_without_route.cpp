// A shard_router strategy must satisfy shard_strategy: route(key) and shard_count().
// expect: shard_strategy
#include <outgrow/routing/shard_router.hpp>

#include <cstdint>

struct no_shard_count {
  outgrow::shard_id route(std::uint64_t) const { return 0; }
};

int main() {
  outgrow::shard_router<std::uint64_t, no_shard_count> router(no_shard_count{});
  return static_cast<int>(router.route(1));
}
