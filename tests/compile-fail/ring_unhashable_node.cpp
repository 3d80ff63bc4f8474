// Ring nodes must be hashable by the ring's Hasher policy (xxh3_hasher: strings,
// integers, enums), so that placement is stable.
// expect: key_hasher
#include <outgrow/routing/hash_ring.hpp>

struct endpoint {
  int port;
  friend bool operator==(const endpoint&, const endpoint&) = default;
};

int main() {
  outgrow::ring_placement<endpoint> ring;
  return static_cast<int>(ring.size());
}
