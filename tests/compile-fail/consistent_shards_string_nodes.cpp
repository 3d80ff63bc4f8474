// consistent_shards needs a placement whose nodes are shard ids, not names.
// expect: same_as
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/shard_router.hpp>

#include <string>

int main() {
  outgrow::consistent_shards<outgrow::ring_placement<std::string>> shards(4);
  return static_cast<int>(shards.shard_count());
}
