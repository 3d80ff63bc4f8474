// outgrow/routing/rendezvous.hpp — rendezvous (highest random weight) hashing.
//
// What: weighted rendezvous / HRW hashing (Thaler & Ravishankar 1996; weighted form
// score = -weight / ln(u), Schindelhauer & Schomaker). Every node scores every key
// with u = hash_to_unit_open(hash_mix(key_hash, node_hash)) in (0, 1), where
// node_hash = Hasher(node) is computed once per membership change; the node with
// the highest score owns the key. `preference_list` returns the top-n nodes: the
// natural replica set (the 2nd choice is exactly where keys go if the 1st leaves).
//
// When: caches and stores where every needlessly moved key costs a miss or a copy:
// it moves the optimal 1/N on any add or remove, supports weights and replica
// lists, and needs no tuning. Lookup is O(N), so it suits up to a few hundred
// nodes; beyond that prefer maglev_placement (O(1)) or the ring.
//
//   outgrow::rendezvous_placement<std::string> p({"cache-a", "cache-b", "cache-c"});
//   const std::string* owner = p.lookup("user:42");   // nullptr only when empty
//   p.add("cache-d", 2.0);                  // takes ~2/5 of keys, from everyone
//   p.remove("cache-b");                    // only cache-b's keys move
//   std::vector<std::string> replicas = p.preference_list("user:42", 2);
//   // replicas[0] == *p.lookup("user:42"); replicas[1] is the next in line
//
// Trade-offs:
//   - lookup: O(N) — one hash_mix per node, plus a std::log per node when weights
//     differ (equal weights compare the hashes directly: same result, no log):
//     ~0.25 µs at N = 100 equal weights, ~1 µs weighted (-O2); never allocates or
//     throws. preference_list allocates its result, O(N log n).
//   - balance: near perfect (independent per key); peak-to-mean ~1.03 at N = 100
//     on 1M keys; weights are honoured exactly in expectation (share = w / sum(w)).
//   - keys moved: optimal — adding a node moves only the keys it now wins (~w/sum(w));
//     removing any node moves only its own keys; set_weight moves only keys between
//     that node and the others.
//   - weights: yes, (0, 1e6]; any node can be removed; placement does not depend on
//     membership order (exact score ties, probability ~2^-52, go to the lower index).
//   - stability: with equal weights the result is a pure integer function of the
//     hashes (identical everywhere); weighted scores go through std::log, so a
//     platform whose libm rounds log differently could disagree on keys whose two
//     best scores are within an ulp (practically never, but not bit-guaranteed).
//
// Thread-safety: const member functions (lookup, preference_list, ...) may run
// concurrently; add/remove/set_weight/assign need exclusive access (or
// concurrent_placement).
// Complexity: lookup O(N); preference_list O(N log n); add/remove/set_weight O(N);
// memory O(N).
#pragma once

#include <cstdint>

#include <outgrow/core/hash.hpp>
#include <outgrow/routing/detail/placement_base.hpp>
#include <outgrow/routing/detail/placement_rendezvous.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow {

/// rendezvous_placement has nothing to configure; the struct keeps the common shape
/// `P(config = {}, Hasher = {})` of every placement policy.
struct rendezvous_config {};

/// Weighted rendezvous (HRW) placement (see the header comment).
/// Members: the common shape of routing/placement.hpp, from detail::placement_base
/// (constructors, add, remove, set_weight, assign, lookup, lookup_hash, contains, size,
/// empty, nodes, config, hasher; each documents its "Throws:"), plus
/// preference_list(key, n) / preference_list_hash(h, n): the min(n, size()) distinct
/// nodes with the highest scores for the key, best first (element 0 is lookup(key));
/// use the first n as replicas.
template <class Node, class Hasher = xxh3_hasher>
class rendezvous_placement : public detail::placement_base<Node, Hasher, rendezvous_config,
                                                           detail::rendezvous_engine> {
 public:
  using detail::placement_base<Node, Hasher, rendezvous_config,
                               detail::rendezvous_engine>::placement_base;
};

static_assert(placement<rendezvous_placement<std::uint64_t>>);

}  // namespace outgrow
