// outgrow/routing/maglev.hpp — Maglev consistent hashing: an O(1) lookup table.
//
// What: Google's Maglev hashing (Eisenbud et al., NSDI 2016). Each node derives a
// permutation of the M table slots from two hashes of its name (offset, skip); nodes
// take turns claiming their next free preferred slot until the prime-sized table is
// full. A lookup is one table read: table[key_hash % M]. Weighted like Envoy's
// weighted Maglev: a node of weight w takes turns w/w_max as often as the heaviest
// node (its k-th turn comes at virtual time k/w), so it owns ~w/sum(w) of the slots.
// The two node hashes use the Hasher's seeds 0 and 1 (or hash_mix with 1): fixed hash
// parameters, not random-number seeds, so every process builds the same table; there
// is no `seed` to configure.
//
// When: load balancers and routers that need the fastest lookup and near-perfect
// balance, with weights and arbitrary membership changes, and can accept that a
// change moves somewhat more keys than the optimum (Maglev trades a little
// disruption for balance and speed; use rendezvous_placement when every moved key
// hurts, e.g. caches).
//
//   outgrow::maglev_placement<std::string> p({"lb-0", "lb-1", "lb-2"});
//   const std::string* owner = p.lookup("user:42");   // nullptr only when empty
//   p.add("lb-3", 2.0);                                 // twice the share of lb-0
//   p.remove("lb-1");                                   // any node; table rebuilt
//   outgrow::maglev_placement<std::string> small({.table_size = 4099});
//   outgrow::maglev_placement<int> bad({.table_size = 65536});   // throws config_error:
//   // "maglev: table_size must be a prime in [101, 5000011], got 65536"
//
// Trade-offs:
//   - lookup: O(1), one modulo and one 4-byte table read; never allocates or throws.
//   - balance: near perfect; with equal weights every node owns floor or ceil of M/N
//     slots (weighted: within a slot or so of M·w/sum(w)), so the table itself is off
//     by at most ~N/M (keep M >= 100·N; the default 65537, Envoy's default, suits up
//     to ~650 nodes). Peak-to-mean 1.027 at N = 100 on 1M keys (sampling noise).
//   - keys moved on a membership change: more than the optimal 1/N because the
//     remaining nodes' turns shift. Measured with M = 65537 (maglev_test.cpp):
//     N = 10: 1.02-1.03x the optimum; N = 100: 1.56-1.59x, i.e. ~0.6 % of the keys
//     of nodes that did not change also move (between surviving nodes).
//   - weights: yes, any positive weight in (0, 1e6]; any node can be removed.
//   - the table depends on the set of (node, weight) only, not on insertion order
//     (nodes take turns in the order of their hashes).
//   - memory: 4 bytes × M (256 KiB for the default table) plus the node list.
//
// Thread-safety: const member functions (lookup, nodes, ...) may run concurrently;
// add/remove/set_weight/assign need exclusive access (or concurrent_placement).
// Complexity: lookup O(1) (~5 ns); every membership change rebuilds the table in
// O(M log M + N log N) expected time: ~4 ms for M = 65537 (N = 100, -O2), ~2.5 s for
// the maximum M = 5000011 — batch changes with assign(); memory O(M + N).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <outgrow/core/hash.hpp>
#include <outgrow/routing/detail/placement_base.hpp>
#include <outgrow/routing/detail/placement_maglev.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow {

/// Maglev configuration.
struct maglev_config {
  /// Lookup table entries M; must be a prime in [101, 5000011]. 65537 is Envoy's
  /// default (and 5000011 its maximum). Keep M >= 100 × nodes for ~1 % balance.
  std::size_t table_size = 65537;
};

/// Maglev lookup-table placement (see the header comment).
/// Members: the common shape of routing/placement.hpp, from detail::placement_base
/// (constructors, add, remove, set_weight, assign, lookup, lookup_hash, contains, size,
/// empty, nodes, config, hasher; each documents its "Throws:"), plus table().
/// Throws (constructors): config_error if config.table_size is not a prime in
/// [101, 5000011].
/// Throws (constructors with nodes, add, assign): config_error if there would be more
/// nodes than table_size.
template <class Node, class Hasher = xxh3_hasher>
class maglev_placement
    : public detail::placement_base<Node, Hasher, maglev_config, detail::maglev_engine> {
 public:
  /// The lookup table: M indices into nodes() (empty when there are no nodes).
  [[nodiscard]] const std::vector<std::uint32_t>& table() const noexcept {
    return this->engine().table;
  }

  using detail::placement_base<Node, Hasher, maglev_config,
                               detail::maglev_engine>::placement_base;
};

static_assert(placement<maglev_placement<std::uint64_t>>);

}  // namespace outgrow
