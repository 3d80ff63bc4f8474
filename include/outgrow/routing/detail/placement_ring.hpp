// outgrow/routing/detail/placement_ring.hpp — the consistent-hash ring's points.
//
// The engine behind ring_placement (routing/hash_ring.hpp): `vnodes × weight` points
// per node at hash_mix(Hasher(node), i), sorted (ties by node hash, so the ring
// depends only on the set of (node, weight)), each point's owner, and a radix index
// for O(1) expected "first point at or after h". Rebuilt from scratch on every
// membership change (placement_base.hpp commits it only after the build succeeded).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/routing/detail/radix_index.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow::detail {

/// Envoy's ring_hash caps a ring at 8M entries, and so do we.
inline constexpr std::size_t ring_max_points = std::size_t{8} << 20;

template <class Node, class Hasher, class Config>
struct ring_engine {
  using members = node_set<Node, Hasher>;
  static constexpr std::string_view primitive = "hash_ring";

  std::vector<std::uint64_t> hashes;  // sorted point hashes
  std::vector<std::uint32_t> owners;  // owners[i] = node index of point i
  radix_index index;                  // O(1) expected lower_bound over hashes
  double total_weight = 0.0;

  static Config validated(Config c) {
    require_in_range(primitive, "vnodes", c.vnodes, 1U, 100'000U);
    return c;
  }

  [[nodiscard]] std::size_t first_point_at_or_after(std::uint64_t h) const noexcept {
    const std::size_t i = index.lower_bound(hashes, h);
    return i == hashes.size() ? 0 : i;
  }

  [[nodiscard]] const Node& node_at(const members& m, std::size_t point) const {
    return m.nodes()[owners[point]].node;
  }

  /// Owner of a pre-hashed key: the first point at or after `key_hash`, wrapping.
  [[nodiscard]] const Node* lookup_hash(const members& m,
                                        std::uint64_t key_hash) const noexcept {
    if (hashes.empty()) return nullptr;
    return &m.nodes()[owners[first_point_at_or_after(key_hash)]].node;
  }

  /// Up to `n` distinct nodes in ring order starting at the key's owner.
  [[nodiscard]] std::vector<Node> preference_list_hash(const members& m,
                                                       std::uint64_t key_hash,
                                                       std::size_t n) const {
    std::vector<Node> out;
    const std::size_t want = std::min(n, m.size());
    if (want == 0) return out;
    out.reserve(want);
    std::vector<bool> taken(m.size(), false);
    const std::size_t start = first_point_at_or_after(key_hash);
    for (std::size_t step = 0; step < hashes.size() && out.size() < want; ++step) {
      const std::uint32_t owner = owners[(start + step) % hashes.size()];
      if (!taken[owner]) {
        taken[owner] = true;
        out.push_back(m.nodes()[owner].node);
      }
    }
    return out;
  }

  void rebuild(const Config& config, const members& next) {
    struct point {
      std::uint64_t hash;
      std::uint64_t node_hash;
      std::uint32_t owner;
    };
    std::vector<point> points;
    std::size_t total = 0;
    std::vector<std::uint32_t> counts;
    counts.reserve(next.size());
    double weight_sum = 0.0;
    for (const auto& wn : next.nodes()) {
      const double want = std::round(static_cast<double>(config.vnodes) * wn.weight);
      const auto n = static_cast<std::uint32_t>(std::max(1.0, std::min(want, 1e9)));
      counts.push_back(n);
      total += n;
      weight_sum += wn.weight;
    }
    require(total <= ring_max_points, primitive, "vnodes x total weight",
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

    std::vector<std::uint64_t> next_hashes(points.size());
    std::vector<std::uint32_t> next_owners(points.size());
    for (std::size_t k = 0; k < points.size(); ++k) {
      next_hashes[k] = points[k].hash;
      next_owners[k] = points[k].owner;
    }
    radix_index next_index;
    next_index.build(next_hashes);

    // Commit (nothing above modified *this).
    hashes = std::move(next_hashes);
    owners = std::move(next_owners);
    index = std::move(next_index);
    total_weight = weight_sum;
  }
};

}  // namespace outgrow::detail
