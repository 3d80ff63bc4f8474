// outgrow/routing/detail/placement_maglev.hpp — Maglev's lookup-table builder.
//
// The engine behind maglev_placement (routing/maglev.hpp): each node's permutation of
// the prime-sized table from two hashes of its name, the weighted turn order, and the
// table fill. Rebuilt from scratch on every membership change (placement_base.hpp
// commits the new table only after the build succeeded).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <queue>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow {

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
/// a seed (seed 0 = the unseeded hash), else hash_mix(Hasher(node), seed). `seed` is a
/// hash parameter that selects one of the two independent hashes Maglev needs per node
/// (0: offset, 1: skip), fixed so that every process builds the same table; it is not
/// a random-number seed (nothing here is random) and is not configurable.
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

/// maglev_placement's engine (see placement_base.hpp): the lookup table, rebuilt from
/// scratch on every membership change.
template <class Node, class Hasher, class Config>
struct maglev_engine {
  using members = node_set<Node, Hasher>;
  static constexpr std::string_view primitive = "maglev";

  std::vector<std::uint32_t> table;  // M indices into members.nodes(); empty if none

  static Config validated(Config config) {
    const std::size_t m = config.table_size;
    if (m < maglev_min_table_size || m > maglev_max_table_size || !maglev_is_prime(m))
        [[unlikely]] {
      throw config_error(
          primitive, "table_size",
          fmt::format("a prime in [{}, {}]", maglev_min_table_size, maglev_max_table_size),
          fmt::format("{}", m));
    }
    return config;
  }

  void rebuild(const Config& config, const members& next) {
    if (next.size() > config.table_size) [[unlikely]] {
      throw config_error(primitive, "number of nodes",
                         fmt::format("at most table_size ({})", config.table_size),
                         fmt::format("{}", next.size()));
    }
    table = build_maglev_table(next.nodes(), next.hasher(), config.table_size);
  }

  [[nodiscard]] const Node* lookup_hash(const members& m,
                                        std::uint64_t key_hash) const noexcept {
    if (table.empty()) return nullptr;
    const std::uint32_t i = table[static_cast<std::size_t>(key_hash % table.size())];
    return &m.nodes()[i].node;
  }
};

}  // namespace detail
}  // namespace outgrow
