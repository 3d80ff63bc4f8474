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

#include <algorithm>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/detail/radix_index.hpp>
#include <outgrow/routing/concurrent_placement.hpp>
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

template <class Node, class Hasher = xxh3_hasher>
requires key_hasher<Hasher, Node> && std::equality_comparable<Node> && std::copyable<Node>
class ring_placement {
 public:
  using node_type = Node;
  using hasher_type = Hasher;
  static constexpr std::size_t max_points = std::size_t{8} << 20;  // Envoy's maximum

  explicit ring_placement(hash_ring_config config = {}, Hasher hasher = {})
      : config_(validated(config)), members_("hash_ring", std::move(hasher)) {}

  /// Braced node lists: ring_placement<std::string>({"a", "b"}). A template so that a
  /// weighted list {{"a", 1}, {"b", 2}} is never read as std::string("a", 1).
  template <class T>
  requires std::convertible_to<const T&, Node>
  explicit ring_placement(std::initializer_list<T> nodes, hash_ring_config config = {},
                          Hasher hasher = {})
      : ring_placement(config, std::move(hasher)) {
    assign(to_weighted_nodes<Node>(nodes));
  }

  /// Weighted braced lists: ring_placement<std::string>({{"a", 1.0}, {"b", 2.0}}).
  explicit ring_placement(std::initializer_list<weighted_node<Node>> nodes,
                          hash_ring_config config = {}, Hasher hasher = {})
      : ring_placement(config, std::move(hasher)) {
    assign(std::vector<weighted_node<Node>>(nodes));
  }

  template <class R>
  requires node_range<R, Node> || weighted_node_range<R, Node>
  explicit ring_placement(const R& nodes, hash_ring_config config = {}, Hasher hasher = {})
      : ring_placement(config, std::move(hasher)) {
    assign(to_weighted_nodes<Node>(nodes));
  }

  // ---- membership ----------------------------------------------------------------
  void add(const Node& node, double weight = 1.0) {
    auto next = members_;
    next.add(node, weight);
    rebuild(std::move(next));
  }
  void remove(const Node& node) {
    auto next = members_;
    next.remove(node);
    rebuild(std::move(next));
  }
  void set_weight(const Node& node, double weight) {
    auto next = members_;
    next.set_weight(node, weight);
    rebuild(std::move(next));
  }
  void assign(std::vector<weighted_node<Node>> nodes) {
    auto next = members_;
    next.assign(std::move(nodes));
    rebuild(std::move(next));
  }

  [[nodiscard]] const std::vector<weighted_node<Node>>& nodes() const noexcept {
    return members_.nodes();
  }
  [[nodiscard]] std::size_t size() const noexcept { return members_.size(); }
  [[nodiscard]] bool empty() const noexcept { return members_.size() == 0; }
  [[nodiscard]] bool contains(const Node& node) const { return members_.contains(node); }
  [[nodiscard]] std::size_t point_count() const noexcept { return hashes_.size(); }
  [[nodiscard]] const hash_ring_config& config() const noexcept { return config_; }
  [[nodiscard]] const Hasher& hasher() const noexcept { return members_.hasher(); }

  // ---- lookups ---------------------------------------------------------------------
  /// Owner of `key`, or nullptr when the ring is empty.
  template <class Key>
  requires key_hasher<Hasher, Key>
  [[nodiscard]] const Node* lookup(const Key& key) const {
    return lookup_hash(static_cast<std::uint64_t>(members_.hasher()(key)));
  }

  /// Owner of a pre-hashed key: the first point at or after `key_hash`, wrapping.
  [[nodiscard]] const Node* lookup_hash(std::uint64_t key_hash) const noexcept {
    if (hashes_.empty()) return nullptr;
    return &members_.nodes()[owners_[first_point_at_or_after(key_hash)]].node;
  }

  /// Up to `n` distinct nodes in ring order starting at the key's owner (replica
  /// placement: the owner first, then the next distinct nodes clockwise).
  template <class Key>
  requires key_hasher<Hasher, Key>
  [[nodiscard]] std::vector<Node> preference_list(const Key& key, std::size_t n) const {
    return preference_list_hash(static_cast<std::uint64_t>(members_.hasher()(key)), n);
  }

  [[nodiscard]] std::vector<Node> preference_list_hash(std::uint64_t key_hash,
                                                       std::size_t n) const {
    std::vector<Node> out;
    const std::size_t want = std::min(n, size());
    if (want == 0) return out;
    out.reserve(want);
    std::vector<bool> taken(size(), false);
    const std::size_t start = first_point_at_or_after(key_hash);
    for (std::size_t step = 0; step < hashes_.size() && out.size() < want; ++step) {
      const std::uint32_t owner = owners_[(start + step) % hashes_.size()];
      if (!taken[owner]) {
        taken[owner] = true;
        out.push_back(members_.nodes()[owner].node);
      }
    }
    return out;
  }

  /// Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018): walks
  /// clockwise from the key's point and returns the first node whose current load is
  /// below its capacity ceil(c × (total_load + 1) × weight / total_weight), i.e. a node
  /// that stays within c × mean after taking this request. `load_of(node)` returns the
  /// node's current load; `total_load` is the sum over all nodes. Returns nullptr only
  /// when the ring is empty. Throws config_error if c < 1 or c is not finite.
  template <class LoadFn>
  requires std::invocable<LoadFn&, const Node&>
  [[nodiscard]] const Node* lookup_bounded_hash(std::uint64_t key_hash, double c,
                                                LoadFn&& load_of,
                                                std::uint64_t total_load) const {
    require(c >= 1.0 && std::isfinite(c), "hash_ring", "c (load factor)", "in [1, inf)", c);
    if (hashes_.empty()) return nullptr;
    const double per_weight = c * static_cast<double>(total_load + 1) / total_weight_;
    const std::size_t start = first_point_at_or_after(key_hash);
    for (std::size_t step = 0; step < hashes_.size(); ++step) {
      const auto& wn = members_.nodes()[owners_[(start + step) % hashes_.size()]];
      const double capacity = std::ceil(per_weight * wn.weight);
      if (static_cast<double>(load_of(wn.node)) + 1.0 <= capacity) return &wn.node;
    }
    // Unreachable for consistent loads (capacities sum to >= total_load + 1); with
    // loads that do not add up to total_load, fall back to the plain owner.
    return lookup_hash(key_hash);
  }

  template <class Key, class LoadFn>
  requires key_hasher<Hasher, Key> && std::invocable<LoadFn&, const Node&>
  [[nodiscard]] const Node* lookup_bounded(const Key& key, double c, LoadFn&& load_of,
                                           std::uint64_t total_load) const {
    return lookup_bounded_hash(static_cast<std::uint64_t>(members_.hasher()(key)), c,
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
    if (before.hashes_.empty() || after.hashes_.empty()) return moves;
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
    const auto& ha = before.hashes_;
    const auto& hb = after.hashes_;
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
    if (before.hashes_.empty() || after.hashes_.empty()) {
      return before.hashes_.empty() == after.hashes_.empty() ? 0.0 : 1.0;
    }
    double moved = 0.0;
    for (const auto& m : arc_moves(before, after)) moved += m.fraction;
    return moved;
  }

 private:
  static hash_ring_config validated(hash_ring_config c) {
    require_in_range("hash_ring", "vnodes", c.vnodes, 1U, 100'000U);
    return c;
  }

  const Node& node_at(std::size_t point) const {
    return members_.nodes()[owners_[point]].node;
  }

  std::size_t first_point_at_or_after(std::uint64_t h) const noexcept {
    const std::size_t i = index_.lower_bound(hashes_, h);
    return i == hashes_.size() ? 0 : i;
  }

  void rebuild(detail::node_set<Node, Hasher> next) {
    struct point {
      std::uint64_t hash;
      std::uint64_t node_hash;
      std::uint32_t owner;
    };
    std::vector<point> points;
    std::size_t total = 0;
    std::vector<std::uint32_t> counts;
    counts.reserve(next.size());
    double total_weight = 0.0;
    for (const auto& wn : next.nodes()) {
      const double want = std::round(static_cast<double>(config_.vnodes) * wn.weight);
      const auto n = static_cast<std::uint32_t>(std::max(1.0, std::min(want, 1e9)));
      counts.push_back(n);
      total += n;
      total_weight += wn.weight;
    }
    require(total <= max_points, "hash_ring", "vnodes x total weight",
            "at most 8388608 points", total);
    points.reserve(total);
    for (std::uint32_t idx = 0; idx < next.size(); ++idx) {
      const auto node_hash =
          static_cast<std::uint64_t>(next.hasher()(next.nodes()[idx].node));
      for (std::uint32_t v = 0; v < counts[idx]; ++v) {
        points.push_back({hash_mix(node_hash, v), node_hash, idx});
      }
    }
    std::sort(points.begin(), points.end(), [](const point& a, const point& b) {
      return a.hash != b.hash ? a.hash < b.hash : a.node_hash < b.node_hash;
    });

    std::vector<std::uint64_t> hashes(points.size());
    std::vector<std::uint32_t> owners(points.size());
    for (std::size_t k = 0; k < points.size(); ++k) {
      hashes[k] = points[k].hash;
      owners[k] = points[k].owner;
    }
    detail::radix_index index;
    index.build(hashes);

    // Commit (nothing above modified *this).
    members_ = std::move(next);
    hashes_ = std::move(hashes);
    owners_ = std::move(owners);
    index_ = std::move(index);
    total_weight_ = total_weight;
  }

  hash_ring_config config_;
  detail::node_set<Node, Hasher> members_;
  std::vector<std::uint64_t> hashes_;  // sorted point hashes
  std::vector<std::uint32_t> owners_;  // owners_[i] = node index of point i
  detail::radix_index index_;          // O(1) expected lower_bound over hashes_
  double total_weight_ = 0.0;
};

/// A consistent-hash ring that many threads can look up while membership changes.
template <class Node, class Hasher = xxh3_hasher>
class hash_ring : public concurrent_placement<ring_placement<Node, Hasher>> {
  using base = concurrent_placement<ring_placement<Node, Hasher>>;

 public:
  using placement_type = ring_placement<Node, Hasher>;

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

  template <class Key>
  [[nodiscard]] std::vector<Node> preference_list(const Key& key, std::size_t n) const {
    return this->local().preference_list(key, n);
  }

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
