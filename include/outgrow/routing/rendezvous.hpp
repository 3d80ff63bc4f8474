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

#include <algorithm>
#include <cmath>
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

/// rendezvous_placement has nothing to configure; the struct keeps the common shape
/// `P(config = {}, Hasher = {})` of every placement policy.
struct rendezvous_config {};

namespace detail {

/// Per-node data read by every lookup, packed for a linear scan.
struct rendezvous_entry {
  std::uint64_t node_hash;
  double weight;
};

/// The (key, node) draw u in (0, 1), as its top 52 bits (exactly representable).
[[nodiscard]] constexpr std::uint64_t rendezvous_draw_bits(
    std::uint64_t key_hash, std::uint64_t node_hash) noexcept {
  return hash_mix(key_hash, node_hash) >> 12;
}

/// Weighted HRW score -weight / ln(u); larger wins. Finite and > 0 since u is in (0, 1).
[[nodiscard]] inline double rendezvous_score(std::uint64_t key_hash,
                                             const rendezvous_entry& e) noexcept {
  return -e.weight / std::log(hash_to_unit_open(hash_mix(key_hash, e.node_hash)));
}

}  // namespace detail

/// Weighted rendezvous (HRW) placement (see the header comment).
template <class Node, class Hasher = xxh3_hasher>
class rendezvous_placement {
 public:
  using node_type = Node;
  using hasher_type = Hasher;
  using config_type = rendezvous_config;

  explicit rendezvous_placement(rendezvous_config config = {}, Hasher hasher = {})
      : config_(config), set_(primitive, std::move(hasher)) {}

  /// Any range of Node or of weighted_node<Node> (std::vector, std::span, ...);
  /// templates constrained by node_range / weighted_node_range, as the common shape
  /// says, so a braced list never reaches them (see the initializer_list overloads).
  template <class R>
  requires node_range<R, Node> || weighted_node_range<R, Node>
  explicit rendezvous_placement(const R& nodes, rendezvous_config config = {},
                                Hasher hasher = {})
      : rendezvous_placement(config, std::move(hasher)) {
    assign(to_weighted_nodes<Node>(nodes));
  }

  /// Braced lists of nodes: P({"a", "b"}). A template (not initializer_list<Node>) so
  /// that a weighted list {{"a", 1}, {"b", 2}} can never be read as two std::string
  /// (const char*, count) constructions; it goes to the weighted overload below.
  template <class T>
  requires std::convertible_to<const T&, Node>
  explicit rendezvous_placement(std::initializer_list<T> nodes,
                                rendezvous_config config = {}, Hasher hasher = {})
      : rendezvous_placement(config, std::move(hasher)) {
    assign(nodes);
  }

  /// Weighted braced lists: P({{"a", 1.0}, {"b", 2.0}}).
  explicit rendezvous_placement(std::initializer_list<weighted_node<Node>> nodes,
                                rendezvous_config config = {}, Hasher hasher = {})
      : rendezvous_placement(config, std::move(hasher)) {
    assign(std::vector<weighted_node<Node>>(nodes));
  }

  /// Adds `node` with `weight` in (0, 1e6]. Only keys the new node wins move to it.
  void add(const Node& node, double weight = 1.0) {
    const std::uint64_t h = node_hash(node);
    entries_.reserve(entries_.size() + 1);  // so the push_back below cannot throw
    set_.add(node, weight);
    entries_.push_back({h, weight});
    update_uniform();
  }

  /// Removes any `node`; only its keys move (each to its next preference).
  void remove(const Node& node) {
    const std::size_t i = set_.find(node);
    set_.remove(node);  // config_error if unknown, before anything changes
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
    update_uniform();
  }

  /// Changes a node's weight; keys move only between that node and the others.
  void set_weight(const Node& node, double weight) {
    set_.set_weight(node, weight);
    entries_[set_.find(node)].weight = weight;
    update_uniform();
  }

  /// Replaces the membership with any node_range (weight 1 each) or
  /// weighted_node_range. All-or-nothing.
  template <class R>
  requires node_range<R, Node> || weighted_node_range<R, Node>
  void assign(const R& nodes) { assign(to_weighted_nodes<Node>(nodes)); }

  /// Replaces the membership with `nodes`. All-or-nothing.
  void assign(std::vector<weighted_node<Node>> nodes) {
    std::vector<detail::rendezvous_entry> entries;
    entries.reserve(nodes.size());
    for (const auto& wn : nodes) entries.push_back({node_hash(wn.node), wn.weight});
    set_.assign(std::move(nodes));  // validates; throws before anything changes
    entries_ = std::move(entries);
    update_uniform();
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
    const std::size_t n = entries_.size();
    if (n == 0) return nullptr;
    std::size_t best = 0;
    if (uniform_) {
      // Equal weights: the score is increasing in u, so compare the draws themselves.
      std::uint64_t best_draw =
          detail::rendezvous_draw_bits(key_hash, entries_[0].node_hash);
      for (std::size_t i = 1; i < n; ++i) {
        const std::uint64_t d =
            detail::rendezvous_draw_bits(key_hash, entries_[i].node_hash);
        if (d > best_draw) {
          best_draw = d;
          best = i;
        }
      }
    } else {
      double best_score = detail::rendezvous_score(key_hash, entries_[0]);
      for (std::size_t i = 1; i < n; ++i) {
        const double s = detail::rendezvous_score(key_hash, entries_[i]);
        if (s > best_score) {
          best_score = s;
          best = i;
        }
      }
    }
    return &set_.nodes()[best].node;
  }

  /// The min(n, size()) distinct nodes with the highest scores for `key`, best
  /// first; element 0 is lookup(key). Use the first n as replicas.
  template <class Key>
  requires key_hasher<Hasher, Key>
  [[nodiscard]] std::vector<Node> preference_list(const Key& key, std::size_t n) const {
    return preference_list_hash(static_cast<std::uint64_t>(set_.hasher()(key)), n);
  }

  /// preference_list for a key whose Hasher value is `key_hash`.
  [[nodiscard]] std::vector<Node> preference_list_hash(std::uint64_t key_hash,
                                                       std::size_t n) const {
    n = std::min(n, entries_.size());
    std::vector<std::pair<double, std::size_t>> ranked;  // (score, index)
    ranked.reserve(entries_.size());
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      // The 52-bit draw converts to double exactly, so both branches order exactly
      // as lookup_hash does.
      const double s = uniform_ ? static_cast<double>(detail::rendezvous_draw_bits(
                                      key_hash, entries_[i].node_hash))
                                : detail::rendezvous_score(key_hash, entries_[i]);
      ranked.emplace_back(s, i);
    }
    const auto middle = ranked.begin() + static_cast<std::ptrdiff_t>(n);
    std::partial_sort(ranked.begin(), middle, ranked.end(),
                      [](const auto& a, const auto& b) {
                        return a.first != b.first ? a.first > b.first : a.second < b.second;
                      });
    std::vector<Node> out;
    out.reserve(n);
    for (auto it = ranked.begin(); it != middle; ++it)
      out.push_back(set_.nodes()[it->second].node);
    return out;
  }

  [[nodiscard]] bool contains(const Node& node) const { return set_.contains(node); }
  [[nodiscard]] std::size_t size() const noexcept { return set_.size(); }
  [[nodiscard]] bool empty() const noexcept { return set_.size() == 0; }
  [[nodiscard]] const std::vector<weighted_node<Node>>& nodes() const noexcept {
    return set_.nodes();
  }
  [[nodiscard]] const rendezvous_config& config() const noexcept { return config_; }
  [[nodiscard]] const Hasher& hasher() const noexcept { return set_.hasher(); }

  static constexpr std::string_view primitive = "rendezvous";

 private:
  std::uint64_t node_hash(const Node& node) const {
    return static_cast<std::uint64_t>(set_.hasher()(node));
  }

  void update_uniform() noexcept {
    uniform_ = std::all_of(entries_.begin(), entries_.end(), [&](const auto& e) {
      return e.weight == entries_.front().weight;
    });
  }

  rendezvous_config config_;
  detail::node_set<Node, Hasher> set_;
  std::vector<detail::rendezvous_entry> entries_;  // parallel to set_.nodes()
  bool uniform_ = true;
};

static_assert(placement<rendezvous_placement<std::uint64_t>>);

}  // namespace outgrow
