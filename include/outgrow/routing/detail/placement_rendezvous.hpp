// outgrow/routing/detail/placement_rendezvous.hpp — rendezvous (HRW) scoring and state.
//
// The engine behind rendezvous_placement (routing/rendezvous.hpp): the per-node
// (hash, weight) entries a lookup scans, the integer draw used when all weights are
// equal, the weighted score -w / ln(u) otherwise, and the top-n ranking of
// preference_list. Edited in place on each membership change (node hashes are
// computed once per node).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/core/hash.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow::detail {

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

/// rendezvous_placement's engine (see placement_base.hpp): one (node hash, weight)
/// entry per member, parallel to members.nodes(), edited in place on each change.
template <class Node, class Hasher, class Config>
struct rendezvous_engine {
  using members = node_set<Node, Hasher>;
  static constexpr std::string_view primitive = "rendezvous";

  std::vector<rendezvous_entry> entries;  // parallel to members.nodes()
  bool uniform = true;                    // all weights equal

  // Only keys the new node wins move to it.
  void add(const Config&, members& m, const Node& node, double weight) {
    const std::uint64_t h = node_hash(m, node);
    entries.reserve(entries.size() + 1);  // so the push_back below cannot throw
    m.add(node, weight);
    entries.push_back({h, weight});
    update_uniform();
  }

  // Only the removed node's keys move (each to its next preference).
  void remove(const Config&, members& m, const Node& node) {
    const std::size_t i = m.find(node);
    m.remove(node);  // config_error if unknown, before anything changes
    entries.erase(entries.begin() + static_cast<std::ptrdiff_t>(i));
    update_uniform();
  }

  // Keys move only between that node and the others.
  void set_weight(const Config&, members& m, const Node& node, double weight) {
    m.set_weight(node, weight);
    entries[m.find(node)].weight = weight;
    update_uniform();
  }

  void assign(const Config&, members& m, std::vector<weighted_node<Node>> nodes) {
    std::vector<rendezvous_entry> next;
    next.reserve(nodes.size());
    for (const auto& wn : nodes) next.push_back({node_hash(m, wn.node), wn.weight});
    m.assign(std::move(nodes));  // validates; throws before anything changes
    entries = std::move(next);
    update_uniform();
  }

  [[nodiscard]] const Node* lookup_hash(const members& m,
                                        std::uint64_t key_hash) const noexcept {
    const std::size_t n = entries.size();
    if (n == 0) return nullptr;
    std::size_t best = 0;
    if (uniform) {
      // Equal weights: the score is increasing in u, so compare the draws themselves.
      std::uint64_t best_draw = rendezvous_draw_bits(key_hash, entries[0].node_hash);
      for (std::size_t i = 1; i < n; ++i) {
        const std::uint64_t d = rendezvous_draw_bits(key_hash, entries[i].node_hash);
        if (d > best_draw) {
          best_draw = d;
          best = i;
        }
      }
    } else {
      double best_score = rendezvous_score(key_hash, entries[0]);
      for (std::size_t i = 1; i < n; ++i) {
        const double s = rendezvous_score(key_hash, entries[i]);
        if (s > best_score) {
          best_score = s;
          best = i;
        }
      }
    }
    return &m.nodes()[best].node;
  }

  [[nodiscard]] std::vector<Node> preference_list_hash(const members& m,
                                                       std::uint64_t key_hash,
                                                       std::size_t n) const {
    n = std::min(n, entries.size());
    std::vector<std::pair<double, std::size_t>> ranked;  // (score, index)
    ranked.reserve(entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) {
      // The 52-bit draw converts to double exactly, so both branches order exactly
      // as lookup_hash does.
      const double s =
          uniform
              ? static_cast<double>(rendezvous_draw_bits(key_hash, entries[i].node_hash))
              : rendezvous_score(key_hash, entries[i]);
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
      out.push_back(m.nodes()[it->second].node);
    return out;
  }

 private:
  static std::uint64_t node_hash(const members& m, const Node& node) {
    return static_cast<std::uint64_t>(m.hasher()(node));
  }

  void update_uniform() noexcept {
    uniform = std::all_of(entries.begin(), entries.end(), [&](const auto& e) {
      return e.weight == entries.front().weight;
    });
  }
};

}  // namespace outgrow::detail
