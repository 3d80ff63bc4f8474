// outgrow/routing/maglev.hpp — Maglev consistent hashing: an O(1) lookup table.
//
// What: Google's Maglev hashing (Eisenbud et al., NSDI 2016). Each node derives a
// permutation of the M table slots from two hashes of its name (offset, skip); nodes
// take turns claiming their next free preferred slot until the prime-sized table is
// full. A lookup is one table read: table[key_hash % M]. Weighted like Envoy's
// weighted Maglev: a node of weight w takes turns w/w_max as often as the heaviest
// node (its k-th turn comes at virtual time k/w), so it owns ~w/sum(w) of the slots.
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

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <queue>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow {

/// Maglev configuration.
struct maglev_config {
  /// Lookup table entries M; must be a prime in [101, 5000011]. 65537 is Envoy's
  /// default (and 5000011 its maximum). Keep M >= 100 × nodes for ~1 % balance.
  std::size_t table_size = 65537;
};

namespace detail {

inline constexpr std::size_t maglev_min_table_size = 101;
inline constexpr std::size_t maglev_max_table_size = 5'000'011;

/// Trial division; fine for the table sizes Maglev accepts (sqrt(5000011) < 2237).
[[nodiscard]] constexpr bool maglev_is_prime(std::size_t n) noexcept {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (std::size_t d = 3; d <= n / d; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

/// The seed-th independent hash of a node: Hasher(node, seed) when the hasher takes
/// a seed (seed 0 = the unseeded hash), else hash_mix(Hasher(node), seed).
template <class Hasher, class Node>
[[nodiscard]] std::uint64_t maglev_node_hash(const Hasher& hasher, const Node& node,
                                             std::uint64_t seed) {
  if constexpr (seeded_key_hasher<Hasher, Node>) {
    return static_cast<std::uint64_t>(hasher(node, seed));
  } else {
    const auto h = static_cast<std::uint64_t>(hasher(node));
    return seed == 0 ? h : hash_mix(h, seed);
  }
}

/// Builds the Maglev lookup table (node indices) for `nodes` over `m` slots
/// (m prime, nodes.size() <= m). Empty `nodes` give an empty table.
///
/// Node i's permutation is offset_i, offset_i + skip_i, ... (mod m), with
/// offset_i = H(node, 0) mod m and skip_i = H(node, 1) mod (m - 1) + 1 (as Envoy).
/// Nodes take turns in order of virtual time k / w_i (k = turns already taken),
/// ties broken by (offset hash, skip hash, index): equal weights give the paper's
/// round robin; weight w gets turns in proportion to w.
template <class Node, class Hasher>
[[nodiscard]] std::vector<std::uint32_t> build_maglev_table(
    const std::vector<weighted_node<Node>>& nodes, const Hasher& hasher, std::size_t m) {
  std::vector<std::uint32_t> table;
  if (nodes.empty()) return table;

  struct entry {
    std::uint64_t offset_hash;
    std::uint64_t skip_hash;
    std::uint32_t index;
    std::uint64_t next;  // the next slot of this node's permutation to try
    std::uint64_t skip;
    double weight;
    std::uint64_t turns = 0;
  };
  const auto m64 = static_cast<std::uint64_t>(m);
  std::vector<entry> entries;
  entries.reserve(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const std::uint64_t h0 = maglev_node_hash(hasher, nodes[i].node, 0);
    const std::uint64_t h1 = maglev_node_hash(hasher, nodes[i].node, 1);
    entries.push_back({h0, h1, static_cast<std::uint32_t>(i), h0 % m64, h1 % (m64 - 1) + 1,
                       nodes[i].weight});
  }
  // Turn order among simultaneous turns: by node hashes, so the table does not
  // depend on the order nodes were added in.
  std::sort(entries.begin(), entries.end(), [](const entry& a, const entry& b) {
    if (a.offset_hash != b.offset_hash) return a.offset_hash < b.offset_hash;
    if (a.skip_hash != b.skip_hash) return a.skip_hash < b.skip_hash;
    return a.index < b.index;
  });

  // Min-heap of (virtual time of the entry's next turn, position in `entries`).
  using turn = std::pair<double, std::size_t>;
  std::priority_queue<turn, std::vector<turn>, std::greater<>> queue;
  {
    std::vector<turn> initial;
    initial.reserve(entries.size());
    for (std::size_t e = 0; e < entries.size(); ++e) initial.emplace_back(0.0, e);
    queue = std::priority_queue<turn, std::vector<turn>, std::greater<>>(
        std::greater<>{}, std::move(initial));
  }

  constexpr std::uint32_t empty_slot = std::numeric_limits<std::uint32_t>::max();
  table.assign(m, empty_slot);
  for (std::size_t filled = 0; filled < m; ++filled) {
    const std::size_t e = queue.top().second;
    queue.pop();
    entry& x = entries[e];
    // Walk the permutation to the first free slot (skip is coprime with prime m,
    // so the walk visits every slot and always finds one while filled < m).
    while (table[x.next] != empty_slot) {
      x.next += x.skip;
      if (x.next >= m64) x.next -= m64;
    }
    table[x.next] = x.index;
    x.next += x.skip;
    if (x.next >= m64) x.next -= m64;
    ++x.turns;
    queue.emplace(static_cast<double>(x.turns) / x.weight, e);
  }
  return table;
}

}  // namespace detail

/// Maglev lookup-table placement (see the header comment).
template <class Node, class Hasher = xxh3_hasher>
class maglev_placement {
 public:
  using node_type = Node;
  using hasher_type = Hasher;
  using config_type = maglev_config;

  explicit maglev_placement(maglev_config config = {}, Hasher hasher = {})
      : config_(validated(config)), set_(primitive, std::move(hasher)) {}

  /// Any range of Node or of weighted_node<Node> (std::vector, std::span, ...);
  /// templates constrained by node_range / weighted_node_range, as the common shape
  /// says, so a braced list never reaches them (see the initializer_list overloads).
  template <class R>
  requires node_range<R, Node> || weighted_node_range<R, Node>
  explicit maglev_placement(const R& nodes, maglev_config config = {}, Hasher hasher = {})
      : maglev_placement(config, std::move(hasher)) {
    assign(to_weighted_nodes<Node>(nodes));
  }

  /// Braced lists of nodes: P({"a", "b"}). A template (not initializer_list<Node>) so
  /// that a weighted list {{"a", 1}, {"b", 2}} can never be read as two std::string
  /// (const char*, count) constructions; it goes to the weighted overload below.
  template <class T>
  requires std::convertible_to<const T&, Node>
  explicit maglev_placement(std::initializer_list<T> nodes, maglev_config config = {},
                            Hasher hasher = {})
      : maglev_placement(config, std::move(hasher)) {
    assign(nodes);
  }

  /// Weighted braced lists: P({{"a", 1.0}, {"b", 2.0}}).
  explicit maglev_placement(std::initializer_list<weighted_node<Node>> nodes,
                            maglev_config config = {}, Hasher hasher = {})
      : maglev_placement(config, std::move(hasher)) {
    assign(std::vector<weighted_node<Node>>(nodes));
  }

  /// Adds `node` with `weight` in (0, 1e6] and rebuilds the table. All-or-nothing.
  void add(const Node& node, double weight = 1.0) {
    auto next = set_;
    next.add(node, weight);
    commit(std::move(next));
  }

  /// Removes any `node` and rebuilds the table. All-or-nothing.
  void remove(const Node& node) {
    auto next = set_;
    next.remove(node);
    commit(std::move(next));
  }

  /// Changes a node's weight and rebuilds the table. All-or-nothing.
  void set_weight(const Node& node, double weight) {
    auto next = set_;
    next.set_weight(node, weight);
    commit(std::move(next));
  }

  /// Replaces the membership with any node_range (weight 1 each) or
  /// weighted_node_range. All-or-nothing.
  template <class R>
  requires node_range<R, Node> || weighted_node_range<R, Node>
  void assign(const R& nodes) { assign(to_weighted_nodes<Node>(nodes)); }

  /// Replaces the membership with `nodes`. All-or-nothing.
  void assign(std::vector<weighted_node<Node>> nodes) {
    auto next = set_;
    next.assign(std::move(nodes));
    commit(std::move(next));
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
    if (table_.empty()) return nullptr;
    const std::uint32_t i = table_[static_cast<std::size_t>(key_hash % table_.size())];
    return &set_.nodes()[i].node;
  }

  [[nodiscard]] bool contains(const Node& node) const { return set_.contains(node); }
  [[nodiscard]] std::size_t size() const noexcept { return set_.size(); }
  [[nodiscard]] bool empty() const noexcept { return set_.size() == 0; }
  [[nodiscard]] const std::vector<weighted_node<Node>>& nodes() const noexcept {
    return set_.nodes();
  }
  /// The lookup table: M indices into nodes() (empty when there are no nodes).
  [[nodiscard]] const std::vector<std::uint32_t>& table() const noexcept { return table_; }
  [[nodiscard]] const maglev_config& config() const noexcept { return config_; }
  [[nodiscard]] const Hasher& hasher() const noexcept { return set_.hasher(); }

  static constexpr std::string_view primitive = "maglev";

 private:
  static maglev_config validated(maglev_config config) {
    const std::size_t m = config.table_size;
    if (m < detail::maglev_min_table_size || m > detail::maglev_max_table_size ||
        !detail::maglev_is_prime(m)) [[unlikely]] {
      throw config_error(primitive, "table_size",
                         fmt::format("a prime in [{}, {}]", detail::maglev_min_table_size,
                                     detail::maglev_max_table_size),
                         fmt::format("{}", m));
    }
    return config;
  }

  void commit(detail::node_set<Node, Hasher> next) {
    if (next.size() > config_.table_size) [[unlikely]] {
      throw config_error(primitive, "number of nodes",
                         fmt::format("at most table_size ({})", config_.table_size),
                         fmt::format("{}", next.size()));
    }
    auto table =
        detail::build_maglev_table(next.nodes(), next.hasher(), config_.table_size);
    set_ = std::move(next);
    table_ = std::move(table);
  }

  maglev_config config_;
  detail::node_set<Node, Hasher> set_;
  std::vector<std::uint32_t> table_;
};

static_assert(placement<maglev_placement<std::uint64_t>>);

}  // namespace outgrow
