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

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
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

/// Jump consistent hash over the nodes in membership order (see the header comment).
template <class Node, class Hasher = xxh3_hasher>
class jump_placement {
 public:
  using node_type = Node;
  using hasher_type = Hasher;
  using config_type = jump_config;

  explicit jump_placement(jump_config config = {}, Hasher hasher = {})
      : config_(config), set_(primitive, std::move(hasher)) {}

  /// Any range of Node or of weighted_node<Node> (std::vector, std::span, ...);
  /// templates constrained by node_range / weighted_node_range, as the common shape
  /// says, so a braced list never reaches them (see the initializer_list overloads).
  template <class R>
  requires node_range<R, Node> || weighted_node_range<R, Node>
  explicit jump_placement(const R& nodes, jump_config config = {}, Hasher hasher = {})
      : jump_placement(config, std::move(hasher)) {
    assign(to_weighted_nodes<Node>(nodes));
  }

  /// Braced lists of nodes: P({"a", "b"}). A template (not initializer_list<Node>) so
  /// that a weighted list {{"a", 1}, {"b", 2}} can never be read as two std::string
  /// (const char*, count) constructions; it goes to the weighted overload below.
  template <class T>
  requires std::convertible_to<const T&, Node>
  explicit jump_placement(std::initializer_list<T> nodes, jump_config config = {},
                          Hasher hasher = {})
      : jump_placement(config, std::move(hasher)) {
    assign(nodes);
  }

  /// Weighted braced lists: P({{"a", 1.0}, {"b", 2.0}}).
  explicit jump_placement(std::initializer_list<weighted_node<Node>> nodes,
                          jump_config config = {}, Hasher hasher = {})
      : jump_placement(config, std::move(hasher)) {
    assign(std::vector<weighted_node<Node>>(nodes));
  }

  /// Appends `node` as bucket size(). `weight` must be 1 (jump hash has no weights).
  void add(const Node& node, double weight = 1.0) {
    check_weight(weight);
    require(set_.size() < max_nodes, primitive, "size()", "below 2147483647 to add a node",
            set_.size());
    set_.add(node, weight);
  }

  /// Removes `node`. Removing the last node is optimal (only its keys move); removing
  /// any other node moves the last node into its bucket (its keys move too).
  void remove(const Node& node) {
    auto& nodes = set_.mutable_nodes();
    const std::size_t i = set_.find(node);
    if (i != npos && i + 1 != nodes.size()) {
      using std::swap;
      swap(nodes[i], nodes.back());
    }
    set_.remove(node);  // now the last one; config_error if unknown
  }

  /// Validates `node` and `weight`; only weight 1 is accepted.
  void set_weight(const Node& node, double weight) {
    check_weight(weight);
    set_.set_weight(node, weight);
  }

  /// Replaces the membership with any node_range (weight 1 each) or
  /// weighted_node_range. All-or-nothing.
  template <class R>
  requires node_range<R, Node> || weighted_node_range<R, Node>
  void assign(const R& nodes) { assign(to_weighted_nodes<Node>(nodes)); }

  /// Replaces the membership; every weight must be 1. All-or-nothing on error.
  void assign(std::vector<weighted_node<Node>> nodes) {
    require(nodes.size() <= max_nodes, primitive, "assign(nodes).size()",
            "at most 2147483647", nodes.size());
    for (const auto& wn : nodes) check_weight(wn.weight);
    set_.assign(std::move(nodes));
  }

  /// assign({"a", "b"}): weight 1 each.
  template <class T>
  requires std::convertible_to<const T&, Node>
  void assign(std::initializer_list<T> nodes) { assign(to_weighted_nodes<Node>(nodes)); }

  /// assign({{"a", 1.0}, {"b", 2.0}}).
  void assign(std::initializer_list<weighted_node<Node>> nodes) {
    assign(std::vector<weighted_node<Node>>(nodes));
  }

  /// The node owning `key`, or nullptr when there are no nodes.
  template <class Key>
  requires key_hasher<Hasher, Key>
  [[nodiscard]] const Node* lookup(const Key& key) const
      noexcept(noexcept(std::declval<const Hasher&>()(key))) {
    return lookup_hash(static_cast<std::uint64_t>(set_.hasher()(key)));
  }

  /// The node owning a key whose Hasher value is `key_hash`; nullptr when empty.
  [[nodiscard]] const Node* lookup_hash(std::uint64_t key_hash) const noexcept {
    const auto& nodes = set_.nodes();
    if (nodes.empty()) return nullptr;
    const std::int32_t b = jump_hash(key_hash, static_cast<std::int32_t>(nodes.size()));
    return &nodes[static_cast<std::size_t>(b)].node;
  }

  [[nodiscard]] bool contains(const Node& node) const { return set_.contains(node); }
  [[nodiscard]] std::size_t size() const noexcept { return set_.size(); }
  [[nodiscard]] bool empty() const noexcept { return set_.size() == 0; }
  /// Members in bucket order (all weights are 1).
  [[nodiscard]] const std::vector<weighted_node<Node>>& nodes() const noexcept {
    return set_.nodes();
  }
  [[nodiscard]] const jump_config& config() const noexcept { return config_; }
  [[nodiscard]] const Hasher& hasher() const noexcept { return set_.hasher(); }

  static constexpr std::string_view primitive = "jump_hash";

 private:
  static constexpr std::size_t npos = detail::node_set<Node, Hasher>::npos;
  static constexpr std::size_t max_nodes = 2147483647;  // buckets are int32

  void check_weight(double weight) const {
    set_.check_weight(weight);  // (0, 1e6], the message every policy uses
    require(weight == 1.0, primitive, "weight", "1 (jump hash has no weights)", weight);
  }

  jump_config config_;
  detail::node_set<Node, Hasher> set_;
};

static_assert(placement<jump_placement<std::uint64_t>>);

}  // namespace outgrow
