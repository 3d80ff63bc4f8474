// outgrow/routing/detail/radix_index.hpp — O(1) expected search in sorted 64-bit keys.
//
// Internal (used by ring_placement and range_shards). Splits the span of the keys into
// 2^b equal buckets by their top bits and remembers where each bucket starts in the
// sorted array, so lower_bound / upper_bound only search the few keys sharing the
// query's bucket instead of the whole array. For well spread keys (hashes, evenly cut
// ranges) that is about one key. A dense bucket (more than dense_limit keys, as when
// the keys crowd one corner of the key space: exponentially growing split points) gets
// an index of its own over its keys' span, recursively (at most max_depth levels and
// about 4 buckets per key in all), so clustered keys also take a few bucket steps
// instead of a binary search over most of the array; what is still dense after that
// falls back to a binary search inside the bucket, so the worst case is the plain
// binary search.
//
// Thread-safety: const after build(). Complexity: build O(n × levels + buckets); search
// O(1) expected for spread keys, O(levels) for clustered ones, O(log n) worst case.
// Memory: 4 bytes per bucket (about one bucket per key, at most 2^22 at the top level),
// plus 4 more per bucket once some bucket has a level of its own.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace outgrow::detail {

class radix_index {
 public:
  /// Indexes `sorted` (ascending). The array must stay alive and unchanged while the
  /// index is used; it is passed again to each search.
  void build(std::span<const std::uint64_t> sorted) {
    const std::size_t n = sorted.size();
    start_.clear();
    child_.clear();
    nodes_.clear();
    if (n == 0) {
      base_ = 0;
      shift_ = 0;
      last_bucket_ = 0;
      start_.assign(2, 0);
      nodes_.push_back({});
      return;
    }
    budget_ = 4 * n + 64;
    add_node(sorted, 0, n, 0);
    if (!child_.empty()) child_.resize(start_.size(), 0);
    base_ = nodes_[0].base;
    shift_ = nodes_[0].shift;
    last_bucket_ = nodes_[0].buckets - 1;
  }

  /// Index of the first key >= x (n if none).
  [[nodiscard]] std::size_t lower_bound(std::span<const std::uint64_t> sorted,
                                        std::uint64_t x) const noexcept {
    if (sorted.empty() || x <= base_) return 0;
    auto [i, end] = bucket_of(x);
    if (end - i > linear_limit) {
      return branchless_partition(sorted, i, end, [x](std::uint64_t k) { return k < x; });
    }
    while (i < end && sorted[i] < x) ++i;
    return i;
  }

  /// Index of the first key > x (n if none).
  [[nodiscard]] std::size_t upper_bound(std::span<const std::uint64_t> sorted,
                                        std::uint64_t x) const noexcept {
    if (sorted.empty() || x < base_) return 0;
    auto [i, end] = bucket_of(x);
    if (end - i > linear_limit) {
      return branchless_partition(sorted, i, end, [x](std::uint64_t k) { return k <= x; });
    }
    while (i < end && sorted[i] <= x) ++i;
    return i;
  }

  /// Buckets over all levels.
  [[nodiscard]] std::size_t bucket_count() const noexcept {
    return start_.size() - nodes_.size();
  }
  /// Levels below the top one that index dense buckets.
  [[nodiscard]] std::size_t dense_nodes() const noexcept {
    return nodes_.empty() ? 0 : nodes_.size() - 1;
  }

 private:
  static constexpr std::size_t linear_limit = 8;
  /// A bucket with more keys (and more than one distinct key) gets its own index.
  static constexpr std::size_t dense_limit = 16;
  static constexpr unsigned max_depth = 8;

  /// One level: the buckets of keys [first key, ...] split by their top bits.
  struct node {
    std::uint64_t base = 0;   // smallest key of the level
    unsigned shift = 0;       // bucket = (x - base) >> shift
    std::uint32_t first = 0;  // its buckets' starts: start_[first .. first + buckets]
    std::uint32_t buckets = 1;
  };

  /// Indexes sorted[lo, hi) (hi - lo >= 1) as node nodes_.size(); returns its id.
  std::uint32_t add_node(std::span<const std::uint64_t> sorted, std::size_t lo,
                         std::size_t hi, unsigned depth) {
    const std::size_t n = hi - lo;
    node nd;
    nd.base = sorted[lo];
    const std::uint64_t span = sorted[hi - 1] - nd.base;
    // About one bucket per key (at most 2^22), and few enough that (span >> shift)
    // fits the bucket count.
    const unsigned bits = std::min(
        22U, static_cast<unsigned>(std::bit_width(std::max<std::size_t>(n, 2) - 1)));
    const unsigned span_bits = static_cast<unsigned>(std::bit_width(span));
    nd.shift = span_bits > bits ? span_bits - bits : 0;
    const std::size_t buckets = static_cast<std::size_t>(span >> nd.shift) + 1;
    nd.buckets = static_cast<std::uint32_t>(buckets);
    nd.first = static_cast<std::uint32_t>(start_.size());
    start_.resize(start_.size() + buckets + 1);
    std::size_t i = lo;
    for (std::size_t b = 0; b < buckets; ++b) {
      while (i < hi && ((sorted[i] - nd.base) >> nd.shift) < b) ++i;
      start_[nd.first + b] = static_cast<std::uint32_t>(i);
    }
    start_[nd.first + buckets] = static_cast<std::uint32_t>(hi);
    const auto id = static_cast<std::uint32_t>(nodes_.size());
    nodes_.push_back(nd);
    budget_ = budget_ > buckets ? budget_ - buckets : 0;
    if (depth + 1 >= max_depth) return id;
    for (std::size_t b = 0; b < buckets; ++b) {
      const std::size_t from = start_[nd.first + b], to = start_[nd.first + b + 1];
      if (to - from <= dense_limit || sorted[from] == sorted[to - 1]) continue;
      if (budget_ < to - from) break;
      const std::uint32_t c = add_node(sorted, from, to, depth + 1);
      child_.resize(start_.size(), 0);  // only once some bucket is dense
      child_[nd.first + b] = c;
    }
    return id;
  }

  /// First index in [first, last) where `before(key)` turns false (keys are
  /// partitioned by it); a binary search whose only branch is the loop (cmov).
  template <class Pred>
  static std::size_t branchless_partition(std::span<const std::uint64_t> sorted,
                                          std::size_t first, std::size_t last,
                                          Pred before) noexcept {
    const std::uint64_t* base = sorted.data() + first;
    std::size_t n = last - first;
    while (n > 1) {
      const std::size_t half = n / 2;
      base = before(base[half]) ? base + half : base;
      n -= half;
    }
    return static_cast<std::size_t>(base - sorted.data()) + (before(*base) ? 1 : 0);
  }

  struct range {
    std::size_t first, last;
  };
  /// The keys that may be the answer for x (x >= the smallest key): its bucket's, or a
  /// dense bucket's sub-bucket's; empty at the bucket's start when x is below every key
  /// of a dense bucket.
  range bucket_of(std::uint64_t x) const noexcept {
    const std::size_t b =
        std::min(static_cast<std::size_t>((x - base_) >> shift_), last_bucket_);
    const std::size_t first = start_[b], last = start_[b + 1];
    if (last - first <= dense_limit || child_.empty()) [[likely]]
      return {first, last};
    return dense_bucket_of(x, b);
  }
  /// bucket_of's levels below a dense top-level bucket b.
  range dense_bucket_of(std::uint64_t x, std::size_t b) const noexcept {
    for (;;) {
      const std::size_t first = start_[b], last = start_[b + 1];
      if (last - first <= dense_limit) return {first, last};
      const std::uint32_t c = child_[b];
      if (c == 0) return {first, last};
      const node* nd = &nodes_[c];
      if (x < nd->base) return {first, first};
      b = nd->first + std::min(static_cast<std::size_t>((x - nd->base) >> nd->shift),
                               static_cast<std::size_t>(nd->buckets) - 1);
    }
  }

  std::vector<std::uint32_t> start_;  // every level's bucket starts (absolute indices)
  std::vector<std::uint32_t> child_;  // parallel to start_: a dense bucket's level or 0
  std::vector<node> nodes_;           // nodes_[0]: the top level (first = 0)
  std::uint64_t base_ = 0;            // nodes_[0]'s, kept here for the first step
  unsigned shift_ = 0;
  std::size_t last_bucket_ = 0;
  std::size_t budget_ = 0;  // buckets left for dense levels while building
};

}  // namespace outgrow::detail
