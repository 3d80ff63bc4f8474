// outgrow/routing/jump_hash.hpp — jump consistent hash: buckets 0..N-1, no state.
//
// What: Lamping & Veach's jump consistent hash (2014) maps a 64-bit key hash onto a
// bucket in [0, N) with no table at all, and moves the optimal ~1/N of keys when the
// last bucket is added or removed. `jump_placement` maps bucket i to the i-th node in
// membership order (nodes()). `outgrow::jump_hash(h, n)` is the published algorithm
// itself, bit for bit (same outputs as the paper's C++ and ClickHouse's
// jumpConsistentHash).
//
// When: numbered shards that grow and shrink at the end (shard-0 .. shard-N-1, storage
// partitions, Kafka-like partition counts) and you want zero memory and perfect
// balance. Not for nodes that fail at random or for weighted capacity: use
// rendezvous_placement or maglev_placement for those.
//
//   outgrow::jump_placement<std::string> p({"shard-0", "shard-1", "shard-2"});
//   const std::string* owner = p.lookup("user:42");   // nullptr only when empty
//   p.add("shard-3");                                   // ~1/4 of keys move to shard-3
//   p.remove("shard-3");                                // the same keys move back
//   p.remove("shard-0");     // shard-2 takes bucket 0: 1/2 of keys move (see below)
//   std::int32_t b = outgrow::jump_hash(0xDEAD10CCULL, 666);          // == 361
//
// Trade-offs:
//   - lookup: O(ln N) iterations of a multiply and a floating-point division, no
//     memory access besides the final node (~25 ns at N = 10, ~40 ns at N = 100 on
//     a pre-hashed key, -O2); never allocates, never throws.
//   - balance: near perfect (each bucket gets 1/N of the hash space; the spread is
//     the sampling noise only). Peak-to-mean 1.02-1.03 at N = 100 on 1M keys.
//   - keys moved: adding a node at the end moves 1/(N+1) of keys, all to the new
//     node; removing the LAST node moves its 1/N back: both optimal. Removing any
//     other node cannot be expressed as "one bucket fewer", so the last node is moved
//     into the removed node's slot: the removed node's keys and the last node's keys
//     mostly move (1/N + (N-2)/(N(N-1)), ~2/N instead of 1/N, and nodes() is
//     reordered). Remove from the end when you can; otherwise prefer
//     rendezvous_placement.
//   - weights: none. add/set_weight/assign with a weight other than 1 throw
//     config_error (give a big node several entries instead: "db-0a", "db-0b").
//   - placement depends on membership ORDER (bucket i = nodes()[i]): two processes
//     must add nodes in the same order to agree.
//
// Thread-safety: const member functions (lookup, nodes, ...) may run concurrently;
// add/remove/set_weight/assign need exclusive access (or concurrent_placement).
// Complexity: lookup O(ln N); add O(N) (duplicate check); remove O(N); memory O(N).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/routing/detail/placement_base.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow {

/// Lamping & Veach's jump consistent hash: the bucket in [0, buckets) that owns
/// `key_hash`. Returns -1 when buckets <= 0. A key's bucket for N + 1 buckets is
/// either its bucket for N or N itself (monotonicity). Stable: the published
/// algorithm (64-bit LCG, IEEE double arithmetic), identical on every platform.
[[nodiscard]] constexpr std::int32_t jump_hash(std::uint64_t key_hash,
                                               std::int32_t buckets) noexcept {
  if (buckets <= 0) return -1;
  std::int64_t b = -1;
  std::int64_t j = 0;
  while (j < buckets) {
    b = j;
    key_hash = key_hash * 2862933555777941757ULL + 1;
    j = static_cast<std::int64_t>(static_cast<double>(b + 1) *
                                  (static_cast<double>(std::int64_t{1} << 31) /
                                   static_cast<double>((key_hash >> 33) + 1)));
  }
  return static_cast<std::int32_t>(b);
}

/// jump_placement has nothing to configure; the struct keeps the common shape
/// `P(config = {}, Hasher = {})` of every placement policy.
struct jump_config {};

namespace detail {

/// jump_placement's engine (see detail/placement_base.hpp): no structures besides the
/// member list; bucket i is nodes()[i], and every change edits the list in place.
template <class Node, class Hasher, class Config>
struct jump_engine {
  using members = node_set<Node, Hasher>;
  static constexpr std::string_view primitive = "jump_hash";
  static constexpr std::size_t max_nodes = 2147483647;  // buckets are int32

  static void check_weight(const members& m, double weight) {
    m.check_weight(weight);  // (0, 1e6], the message every policy uses
    require(weight == 1.0, primitive, "weight", "1 (jump hash has no weights)", weight);
  }

  void add(const Config&, members& m, const Node& node, double weight) {
    check_weight(m, weight);
    require(m.size() < max_nodes, primitive, "size()", "below 2147483647 to add a node",
            m.size());
    m.add(node, weight);
  }

  // Removing the last node is optimal (only its keys move); removing any other node
  // moves the last node into its bucket (its keys move too).
  void remove(const Config&, members& m, const Node& node) {
    auto& nodes = m.mutable_nodes();
    const std::size_t i = m.find(node);
    if (i != members::npos && i + 1 != nodes.size()) {
      using std::swap;
      swap(nodes[i], nodes.back());
    }
    m.remove(node);  // now the last one; config_error if unknown
  }

  void set_weight(const Config&, members& m, const Node& node, double weight) {
    check_weight(m, weight);
    m.set_weight(node, weight);
  }

  void assign(const Config&, members& m, std::vector<weighted_node<Node>> nodes) {
    require(nodes.size() <= max_nodes, primitive, "assign(nodes).size()",
            "at most 2147483647", nodes.size());
    for (const auto& wn : nodes) check_weight(m, wn.weight);
    m.assign(std::move(nodes));
  }

  [[nodiscard]] const Node* lookup_hash(const members& m,
                                        std::uint64_t key_hash) const noexcept {
    const auto& nodes = m.nodes();
    if (nodes.empty()) return nullptr;
    const std::int32_t b = jump_hash(key_hash, static_cast<std::int32_t>(nodes.size()));
    return &nodes[static_cast<std::size_t>(b)].node;
  }
};

}  // namespace detail

/// Jump consistent hash over the nodes in membership order (see the header comment).
/// Members: the common shape of routing/placement.hpp, from detail::placement_base
/// (constructors, add, remove, set_weight, assign, lookup, lookup_hash, contains, size,
/// empty, nodes, config, hasher; each documents its "Throws:"). nodes() is the
/// bucket order; removing a node other than the last moves the last node into its
/// bucket.
/// Throws (constructors with nodes, add, set_weight, assign): config_error if a weight
/// is not 1.
template <class Node, class Hasher = xxh3_hasher>
class jump_placement
    : public detail::placement_base<Node, Hasher, jump_config, detail::jump_engine> {
 public:
  using detail::placement_base<Node, Hasher, jump_config,
                               detail::jump_engine>::placement_base;
};

static_assert(placement<jump_placement<std::uint64_t>>);

}  // namespace outgrow
