// outgrow/routing/hash_ring.hpp — consistent hashing with virtual nodes.
//
// Every node owns `vnodes × weight` points on a 64-bit ring; a key belongs to the first
// point at or after its hash (clockwise). Adding or removing one of N nodes moves only
// about 1/N of the keys — the textbook's answer to "resharding with key % N moves
// almost everything". Use it for cache clusters, sharded stores and sticky routing.
//
//   outgrow::hash_ring<std::string> ring({.vnodes = 160});     // 160 points per weight 1
//   ring.add("cache-a");
//   ring.add("cache-b", 2.0);                                   // twice the share
//   std::optional<std::string> owner = ring.lookup("user:42");  // any thread, no lock
//   auto replicas = ring.preference_list("user:42", 2);         // 2 distinct nodes
//   // consistent hashing with bounded loads: skip nodes at ceil(c * mean) or above
//   auto node = ring.lookup_bounded("user:42", 1.25, [&](const std::string& n) {
//     return in_flight[n]; }, total_in_flight);
//
// Two types: `ring_placement<Node, Hasher>` is the value (satisfies outgrow::placement;
// const lookups return const Node*), `hash_ring<Node, Hasher>` publishes ring snapshots
// so lookups run from many threads while nodes are added and removed.
//
// Placement is stable: point i of node n is hash_mix(Hasher(n), i) and a key's point is
// Hasher(key); points that collide are ordered by node hash, so the owner of a key
// depends only on the set of (node, weight) pairs — not on insertion order, platform or
// release (golden vectors in tests/routing/hash_ring_test.cpp).
//
// Defaults: 160 points per unit of weight (nginx `hash … consistent`, ketama); Envoy's
// ring_hash caps a ring at 8M entries, and so do we (config_error beyond that).
// Trade-off: lookup O(1) on average (a bucket index over the sorted points replaces the
// binary search); balance ±~1/sqrt(vnodes) per node (peak-to-mean ~1.1 at 160 points),
// use lookup_bounded for a hard cap; ~1/N keys move on membership change; weights and
// arbitrary removal supported. Memory: 12 bytes per point plus a 4-byte bucket index.
//
// Thread-safety: ring_placement — const members concurrently, mutation exclusive;
// hash_ring — everything from any thread (see concurrent_placement.hpp).
// Complexity: lookup O(1) avg; preference_list O(points walked); lookup_bounded
// O(points walked); add/remove/set_weight O(P log P) rebuild, P = total points.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/routing/concurrent_placement.hpp>
#include <outgrow/routing/detail/placement_base.hpp>
#include <outgrow/routing/detail/placement_ring.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow {

struct hash_ring_config {
  /// Points per unit of weight: 160, as nginx and ketama. Valid: [1, 100000].
  std::uint32_t vnodes = 160;
};

/// One arc of the ring whose owner changes between two rings (see movement()).
template <class Node>
struct ring_arc_move {
  Node from;
  Node to;
  double fraction;  ///< share of the hash space that moves from `from` to `to`
};

/// The consistent-hash ring as a value (satisfies outgrow::placement).
/// Members: the common shape of routing/placement.hpp, from detail::placement_base
/// (constructors, add, remove, set_weight, assign, lookup, lookup_hash, contains, size,
/// empty, nodes, config, hasher; each documents its "Throws:"), plus
/// preference_list(key, n) / preference_list_hash(h, n): up to n distinct nodes in
/// ring order starting at the key's owner (replica placement: the owner first, then
/// the next distinct nodes clockwise), and the members below.
/// Throws (constructors): config_error if config.vnodes is not in [1, 100000].
/// Throws (constructors with nodes, add, set_weight, assign): config_error if the ring
/// would have more than max_points points.
template <class Node, class Hasher = xxh3_hasher>
requires key_hasher<Hasher, Node> && std::equality_comparable<Node> && std::copyable<Node>
class ring_placement
    : public detail::placement_base<Node, Hasher, hash_ring_config, detail::ring_engine> {
  using base = detail::placement_base<Node, Hasher, hash_ring_config, detail::ring_engine>;
  using engine_type = detail::ring_engine<Node, Hasher, hash_ring_config>;

 public:
  static constexpr std::size_t max_points = detail::ring_max_points;  // Envoy's maximum

  using base::base;

  /// Number of points on the ring (vnodes × weight per node, at least 1 each).
  [[nodiscard]] std::size_t point_count() const noexcept { return ring().hashes.size(); }

  // ---- lookups ---------------------------------------------------------------------
  /// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018): walks
  /// clockwise from the key's point and returns the first node whose current load is
  /// below its capacity ceil(c × (total_load + 1) × weight / total_weight), i.e. a node
  /// that stays within c × mean after taking this request. `load_of(node)` returns the
  /// node's current load; `total_load` is the sum over all nodes. Returns nullptr only
  /// when the ring is empty.
  /// Throws: config_error if c < 1 or c is not finite.
  template <class LoadFn>
  requires std::invocable<LoadFn&, const Node&>
  [[nodiscard]] const Node* lookup_bounded_hash(std::uint64_t key_hash, double c,
                                                LoadFn&& load_of,
                                                std::uint64_t total_load) const {
    require(c >= 1.0 && std::isfinite(c), base::primitive, "c (load factor)", "in [1, inf)",
            c);
    if (ring().hashes.empty()) return nullptr;
    const double per_weight = c * static_cast<double>(total_load + 1) / ring().total_weight;
    const std::size_t start = ring().first_point_at_or_after(key_hash);
    for (std::size_t step = 0; step < ring().hashes.size(); ++step) {
      const auto& wn = this->nodes()[ring().owners[(start + step) % ring().hashes.size()]];
      const double capacity = std::ceil(per_weight * wn.weight);
      if (static_cast<double>(load_of(wn.node)) + 1.0 <= capacity) return &wn.node;
    }
    // Unreachable for consistent loads (capacities sum to >= total_load + 1); with
    // loads that do not add up to total_load, fall back to the plain owner.
    return this->lookup_hash(key_hash);
  }

  /// lookup_bounded_hash for `key` hashed with the ring's Hasher.
  /// Throws: config_error if c < 1 or c is not finite.
  template <class Key, class LoadFn>
  requires key_hasher<Hasher, Key> && std::invocable<LoadFn&, const Node&>
  [[nodiscard]] const Node* lookup_bounded(const Key& key, double c, LoadFn&& load_of,
                                           std::uint64_t total_load) const {
    return lookup_bounded_hash(static_cast<std::uint64_t>(this->hasher()(key)), c,
                               std::forward<LoadFn>(load_of), total_load);
  }

  // ---- movement --------------------------------------------------------------------
  /// The exact arcs of the hash space whose owner differs between two rings, merged by
  /// (from, to), with the share of the hash space each covers. Keys hashed uniformly
  /// move in these proportions. Empty rings own nothing (moves to/from them are not
  /// listed; use moved_fraction for those).
  [[nodiscard]] static std::vector<ring_arc_move<Node>> arc_moves(
      const ring_placement& before, const ring_placement& after) {
    std::vector<ring_arc_move<Node>> moves;
    if (before.ring().hashes.empty() || after.ring().hashes.empty()) return moves;
    auto record = [&](const Node& from, const Node& to, double share) {
      if (from == to || share <= 0.0) return;
      for (auto& m : moves) {
        if (m.from == from && m.to == to) {
          m.fraction += share;
          return;
        }
      }
      moves.push_back({from, to, share});
    };
    // Walk the union of both rings' points; between consecutive boundaries both owners
    // are constant: the next point at or after the boundary in each ring.
    std::size_t i = 0, j = 0;
    const auto& ha = before.ring().hashes;
    const auto& hb = after.ring().hashes;
    std::uint64_t prev = 0;
    bool have_prev = false;
    std::uint64_t first_boundary = 0;
    while (i < ha.size() || j < hb.size()) {
      const std::uint64_t boundary =
          (j >= hb.size() || (i < ha.size() && ha[i] <= hb[j])) ? ha[i] : hb[j];
      const std::size_t ia = i < ha.size() ? i : 0;
      const std::size_t jb = j < hb.size() ? j : 0;
      if (have_prev) {
        const double share = static_cast<double>(boundary - prev) * 0x1.0p-64;
        record(before.node_at(ia), after.node_at(jb), share);
      } else {
        first_boundary = boundary;
        have_prev = true;
      }
      prev = boundary;
      while (i < ha.size() && ha[i] == boundary) ++i;
      while (j < hb.size() && hb[j] == boundary) ++j;
    }
    // The wrapping arc (last boundary, first boundary] belongs to each ring's first point.
    const std::uint64_t wrap = first_boundary - prev;  // mod 2^64
    const double wrap_share = wrap == 0 ? (first_boundary == prev ? 1.0 : 0.0)
                                        : static_cast<double>(wrap) * 0x1.0p-64;
    record(before.node_at(0), after.node_at(0), wrap_share);
    return moves;
  }

  /// Exact fraction of the hash space that changes owner between two rings.
  [[nodiscard]] static double movement(const ring_placement& before,
                                       const ring_placement& after) {
    if (before.ring().hashes.empty() || after.ring().hashes.empty()) {
      return before.ring().hashes.empty() == after.ring().hashes.empty() ? 0.0 : 1.0;
    }
    double moved = 0.0;
    for (const auto& m : arc_moves(before, after)) moved += m.fraction;
    return moved;
  }

 private:
  [[nodiscard]] const engine_type& ring() const noexcept { return this->engine(); }
  [[nodiscard]] const Node& node_at(std::size_t point) const {
    return ring().node_at(this->members(), point);
  }
};

/// A consistent-hash ring that many threads can look up while membership changes.
template <class Node, class Hasher = xxh3_hasher>
class hash_ring : public concurrent_placement<ring_placement<Node, Hasher>> {
  using base = concurrent_placement<ring_placement<Node, Hasher>>;

 public:
  using placement_type = ring_placement<Node, Hasher>;

  // The constructors of ring_placement, wrapped.
  // Throws: config_error if config.vnodes is not in [1, 100000], a node repeats or a
  // weight is not in (0, 1e6].
  explicit hash_ring(hash_ring_config config = {}, Hasher hasher = {})
      : base(placement_type(config, std::move(hasher))) {}
  template <class T>
  requires std::convertible_to<const T&, Node>
  explicit hash_ring(std::initializer_list<T> nodes, hash_ring_config config = {},
                     Hasher hasher = {})
      : base(placement_type(nodes, config, std::move(hasher))) {}
  explicit hash_ring(std::initializer_list<weighted_node<Node>> nodes,
                     hash_ring_config config = {}, Hasher hasher = {})
      : base(placement_type(nodes, config, std::move(hasher))) {}
  template <class R>
  requires node_range<R, Node> || weighted_node_range<R, Node>
  explicit hash_ring(const R& nodes, hash_ring_config config = {}, Hasher hasher = {})
      : base(placement_type(nodes, config, std::move(hasher))) {}

  /// ring_placement::preference_list on the current snapshot.
  template <class Key>
  [[nodiscard]] std::vector<Node> preference_list(const Key& key, std::size_t n) const {
    return this->local().preference_list(key, n);
  }

  /// ring_placement::lookup_bounded on the current snapshot; nullopt when empty.
  /// Throws: config_error if c < 1 or c is not finite.
  template <class Key, class LoadFn>
  [[nodiscard]] std::optional<Node> lookup_bounded(const Key& key, double c,
                                                   LoadFn&& load_of,
                                                   std::uint64_t total_load) const {
    return base::copy_of(
        this->local().lookup_bounded(key, c, std::forward<LoadFn>(load_of), total_load));
  }

  /// Exact fraction of keys that change owner between two ring snapshots.
  [[nodiscard]] static double movement(const placement_type& before,
                                       const placement_type& after) {
    return placement_type::movement(before, after);
  }
};

}  // namespace outgrow
