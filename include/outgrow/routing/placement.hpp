// outgrow/routing/placement.hpp — the placement concept: which node owns a key.
//
// Four policies implement it, each in its own header with its trade-offs:
//
// clang-format off
//   | policy               | header         | lookup     | balance      | moved on change | weights | remove any node |
//   |----------------------|----------------|------------|--------------|-----------------|---------|-----------------|
//   | ring_placement       | hash_ring.hpp  | O(1) avg*  | ~1/sqrt(v)   | ~1/N (optimal)  | yes     | yes             |
//   | jump_placement       | jump_hash.hpp  | O(ln N)    | near perfect | 1/N (optimal)   | no      | last only**     |
//   | maglev_placement     | maglev.hpp     | O(1)       | near perfect | > 1/N           | yes     | yes             |
//   | rendezvous_placement | rendezvous.hpp | O(N)       | near perfect | 1/N (optimal)   | yes     | yes             |
// clang-format on
//   * ring lookups use a bucket index over the sorted points instead of a binary search.
//   ** removing another node moves the last node into its bucket (more keys move).
//
// A placement policy is a value type: lookups are const and safe from many threads as
// long as nobody mutates that object. To change membership while other threads look
// up, wrap it in `concurrent_placement<P>` (routing/concurrent_placement.hpp), which
// publishes immutable snapshots; `hash_ring<Node>` is that wrapper around the ring.
//
//   outgrow::jump_placement<std::string> p({"db-0", "db-1", "db-2"});
//   const std::string* owner = p.lookup("user:42");      // nullptr only when empty
//   p.add("db-3");                                        // ~1/4 of keys move to db-3
//   double moved = outgrow::moved_fraction(before, p);    // measured on 1M hashes
//
// Smallest conforming policy:
//
//   struct one_node {
//     using node_type = int;
//     int n = 0;
//     const int* lookup_hash(std::uint64_t) const noexcept { return &n; }
//     std::size_t size() const noexcept { return 1; }
//   };
//
// Common shape of the four policies (Node: copyable, equality-comparable, hashable by
// Hasher; Hasher: outgrow::key_hasher, default xxh3_hasher):
//   P(config = {}, Hasher = {});  P({node, node, ...}, config = {}, Hasher = {});
//   P(range of Node, config = {}, Hasher = {});
//   P(range of weighted_node<Node>, config = {}, Hasher = {});
//   (the range constructors are templates constrained by node_range /
//   weighted_node_range, so `P({.vnodes = 40})` is never ambiguous with a node list);
//   add(node, weight = 1.0), remove(node), set_weight(node, w), assign(nodes)
//     -> config_error on duplicate node, unknown node, weight <= 0 (or != 1 where the
//        policy has no weights);
//   lookup(key) / lookup_hash(h) -> const Node* (nullptr when there are no nodes);
//   size(), empty(), nodes() -> const std::vector<weighted_node<Node>>&, contains(node).
// The four policies implement this shape once, in routing/detail/placement_base.hpp
// (each adds an engine: the structures its lookups read); a policy of your own needs
// only the concept above.
//
// Thread-safety: const member functions may run concurrently; mutation needs exclusive
// access (or concurrent_placement).
// Complexity: see the table; moved_fraction/peak_to_mean are O(samples × lookup).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ranges>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>

namespace outgrow {

/// A node with its relative weight (capacity share). Weight must be > 0.
template <class Node>
struct weighted_node {
  Node node;
  double weight = 1.0;
  friend bool operator==(const weighted_node&, const weighted_node&) = default;
};

/// A range whose elements convert to Node (a node list with weight 1 each).
template <class R, class Node>
concept node_range =
    std::ranges::input_range<R> &&
    std::convertible_to<std::ranges::range_reference_t<R>, Node> &&
    !std::same_as<std::remove_cvref_t<std::ranges::range_value_t<R>>, weighted_node<Node>>;

/// A range of weighted_node<Node>.
template <class R, class Node>
concept weighted_node_range =
    std::ranges::input_range<R> &&
    std::same_as<std::remove_cvref_t<std::ranges::range_value_t<R>>, weighted_node<Node>>;

/// Copies a node_range or weighted_node_range into weighted nodes (weight 1 for plain
/// nodes); used by the policies' constructors.
template <class Node, class R>
requires node_range<R, Node> || weighted_node_range<R, Node>
[[nodiscard]] std::vector<weighted_node<Node>> to_weighted_nodes(const R& nodes) {
  std::vector<weighted_node<Node>> out;
  for (const auto& n : nodes) {
    if constexpr (weighted_node_range<R, Node>) {
      out.push_back(n);
    } else {
      out.push_back({Node(n), 1.0});
    }
  }
  return out;
}

/// Maps a 64-bit key hash to the node that owns it.
template <class P>
concept placement = requires(const P& p, std::uint64_t h) {
  typename P::node_type;
  { p.lookup_hash(h) } -> std::same_as<const typename P::node_type*>;
  { p.size() } -> std::convertible_to<std::size_t>;
};

/// The hash of the i-th probe used by the measuring helpers below: a fixed,
/// uniformly spread sequence, so measurements are deterministic.
[[nodiscard]] constexpr std::uint64_t sample_hash(std::uint64_t i) noexcept {
  return hash_mix(i, 0x6f7574677277ULL);  // "outgrw"
}

/// Fraction of `samples` uniformly spread key hashes whose owner differs between two
/// placements (1.0 when exactly one of them is empty and the other is not).
template <placement P, placement Q>
[[nodiscard]] double moved_fraction(const P& before, const Q& after,
                                    std::size_t samples = 1'000'000) {
  std::size_t moved = 0;
  for (std::size_t i = 0; i < samples; ++i) {
    const std::uint64_t h = sample_hash(i);
    const auto* a = before.lookup_hash(h);
    const auto* b = after.lookup_hash(h);
    if ((a == nullptr) != (b == nullptr) || (a != nullptr && !(*a == *b))) ++moved;
  }
  return samples == 0 ? 0.0 : static_cast<double>(moved) / static_cast<double>(samples);
}

/// Per-node share of `samples` uniformly spread key hashes, in nodes() order when the
/// policy has nodes(), else in first-seen order.
template <placement P>
[[nodiscard]] std::vector<std::pair<typename P::node_type, std::size_t>> key_counts(
    const P& p, std::size_t samples = 1'000'000) {
  using Node = typename P::node_type;
  std::vector<std::pair<Node, std::size_t>> counts;
  // Lookups return pointers into nodes(): index them by address (O(1) per sample),
  // falling back to comparing nodes for policies without nodes().
  std::unordered_map<const Node*, std::size_t> index_of;
  if constexpr (requires { p.nodes(); }) {
    for (const auto& wn : p.nodes()) {
      index_of.emplace(&wn.node, counts.size());
      counts.emplace_back(wn.node, 0);
    }
  }
  for (std::size_t i = 0; i < samples; ++i) {
    const Node* n = p.lookup_hash(sample_hash(i));
    if (n == nullptr) continue;
    if (const auto known = index_of.find(n); known != index_of.end()) {
      ++counts[known->second].second;
      continue;
    }
    auto it = std::find_if(counts.begin(), counts.end(),
                           [&](const auto& c) { return c.first == *n; });
    if (it == counts.end()) {
      index_of.emplace(n, counts.size());
      counts.emplace_back(*n, 1);
    } else {
      ++it->second;
    }
  }
  return counts;
}

/// Peak-to-mean load: the busiest node's key count over the mean count, over
/// `samples` uniformly spread key hashes (1.0 is perfect balance; unweighted).
template <placement P>
[[nodiscard]] double peak_to_mean(const P& p, std::size_t samples = 1'000'000) {
  const auto counts = key_counts(p, samples);
  if (counts.empty()) return 0.0;
  std::size_t peak = 0, total = 0;
  for (const auto& [node, c] : counts) {
    peak = std::max(peak, c);
    total += c;
  }
  const double mean = static_cast<double>(total) / static_cast<double>(counts.size());
  return mean == 0.0 ? 0.0 : static_cast<double>(peak) / mean;
}

namespace detail {

/// Shared membership bookkeeping for placement policies: validated add/remove/
/// set_weight over a vector<weighted_node<Node>> (membership changes are rare: finding
/// a node is a linear scan, so adding N nodes one by one is O(N^2) comparisons; assign()
/// of N nodes at once is O(N log N)).
/// `primitive` names the policy in config_error messages.
template <class Node, class Hasher>
class node_set {
 public:
  explicit node_set(std::string_view primitive, Hasher hasher = {})
      : primitive_(primitive), hasher_(std::move(hasher)) {}

  void add(const Node& node, double weight) {
    check_weight(weight);
    require(!contains(node), primitive_, "add(node)", "a node not already present",
            node_label(node));
    nodes_.push_back({node, weight});
  }

  void remove(const Node& node) {
    nodes_.erase(nodes_.begin() +
                 static_cast<std::ptrdiff_t>(index_or_throw(node, "remove(node)")));
  }

  void set_weight(const Node& node, double weight) {
    check_weight(weight);
    nodes_[index_or_throw(node, "set_weight(node)")].weight = weight;
  }

  /// Replaces every node at once. Checks as add() one by one would, and reports the same
  /// first error, but in O(N log N): duplicates are found by sorting on the node hash.
  void assign(std::vector<weighted_node<Node>> nodes) {
    std::size_t bad_weight = npos;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (!(nodes[i].weight > 0.0 && nodes[i].weight <= 1e6)) {
        bad_weight = i;
        break;
      }
    }
    const std::size_t duplicate = first_duplicate(nodes);
    const std::size_t fail = std::min(bad_weight, duplicate);
    if (fail != npos) {
      if (fail == bad_weight) check_weight(nodes[fail].weight);  // throws
      require(false, primitive_, "add(node)", "a node not already present",
              node_label(nodes[fail].node));
    }
    nodes_ = std::move(nodes);
  }

  [[nodiscard]] bool contains(const Node& node) const { return find(node) != npos; }
  [[nodiscard]] std::size_t find(const Node& node) const {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i].node == node) return i;
    }
    return npos;
  }
  [[nodiscard]] const std::vector<weighted_node<Node>>& nodes() const noexcept {
    return nodes_;
  }
  [[nodiscard]] std::vector<weighted_node<Node>>& mutable_nodes() noexcept {
    return nodes_;
  }
  [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }
  [[nodiscard]] const Hasher& hasher() const noexcept { return hasher_; }
  [[nodiscard]] std::string_view primitive() const noexcept { return primitive_; }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  void check_weight(double weight) const {
    require(weight > 0.0 && weight <= 1e6, primitive_, "weight", "in (0, 1000000]", weight);
  }

 private:
  std::size_t index_or_throw(const Node& node, std::string_view what) const {
    const std::size_t i = find(node);
    require(i != npos, primitive_, what, "a node in the placement", node_label(node));
    return i;
  }
  // The smallest index i whose node equals an earlier one (where add() would fail).
  std::size_t first_duplicate(const std::vector<weighted_node<Node>>& nodes) const {
    std::size_t first = npos;
    if (nodes.size() <= 32) {
      for (std::size_t i = 1; i < nodes.size() && first == npos; ++i) {
        for (std::size_t j = 0; j < i; ++j) {
          if (nodes[j].node == nodes[i].node) {
            first = i;
            break;
          }
        }
      }
      return first;
    }
    std::vector<std::pair<std::uint64_t, std::size_t>> order;
    order.reserve(nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      order.emplace_back(static_cast<std::uint64_t>(hasher_(nodes[i].node)), i);
    }
    std::sort(order.begin(), order.end());
    for (std::size_t a = 0; a < order.size();) {
      std::size_t b = a + 1;
      while (b < order.size() && order[b].first == order[a].first) ++b;
      for (std::size_t x = a; x < b; ++x) {  // a run of equal hashes (almost always 1)
        for (std::size_t y = a; y < x; ++y) {
          if (nodes[order[y].second].node == nodes[order[x].second].node) {
            first = std::min(first, std::max(order[x].second, order[y].second));
          }
        }
      }
      a = b;
    }
    return first;
  }

  static std::string node_label(const Node& node) {
    if constexpr (fmt::is_formattable<Node>::value) {
      return fmt::format("{}", node);
    } else {
      return "<node>";
    }
  }

  std::string_view primitive_;
  Hasher hasher_;
  std::vector<weighted_node<Node>> nodes_;
};

}  // namespace detail
}  // namespace outgrow
