// outgrow/routing/detail/radix_index.hpp — O(1) expected search in sorted 64-bit keys.
//
// Internal (used by ring_placement and range_shards). Splits the span of the keys into
// 2^b equal buckets by their top bits and remembers where each bucket starts in the
// sorted array, so lower_bound / upper_bound only search the few keys sharing the
// query's bucket instead of the whole array. For well spread keys (hashes, evenly cut
// ranges) that is about one key; skewed buckets fall back to a binary search inside
// the bucket, so the worst case is the plain binary search.
//
// Thread-safety: const after build(). Complexity: build O(n + buckets); search O(1)
// expected for spread keys, O(log n) worst case. Memory: 4 bytes per bucket (about one
// bucket per key, at most 2^22 buckets).
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
    base_ = n == 0 ? 0 : sorted.front();
    const std::uint64_t span = n == 0 ? 0 : sorted.back() - base_;
    // About one bucket per key (at most 2^22), and few enough that (span >> shift)
    // fits the bucket count.
    const unsigned bits = std::min(
        22U, static_cast<unsigned>(std::bit_width(std::max<std::size_t>(n, 2) - 1)));
    const unsigned span_bits = static_cast<unsigned>(std::bit_width(span));
    shift_ = span_bits > bits ? span_bits - bits : 0;
    const std::size_t buckets = static_cast<std::size_t>(span >> shift_) + 1;
    start_.assign(buckets + 1, 0);
    std::size_t i = 0;
    for (std::size_t b = 0; b < buckets; ++b) {
      while (i < n && ((sorted[i] - base_) >> shift_) < b) ++i;
      start_[b] = static_cast<std::uint32_t>(i);
    }
    start_[buckets] = static_cast<std::uint32_t>(n);
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

  [[nodiscard]] std::size_t bucket_count() const noexcept {
    return start_.empty() ? 0 : start_.size() - 1;
  }

 private:
  static constexpr std::size_t linear_limit = 8;

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
  range bucket_of(std::uint64_t x) const noexcept {
    const std::size_t buckets = start_.size() - 1;
    const std::size_t b =
        std::min(static_cast<std::size_t>((x - base_) >> shift_), buckets - 1);
    return {start_[b], start_[b + 1]};
  }

  std::vector<std::uint32_t> start_;
  std::uint64_t base_ = 0;
  unsigned shift_ = 0;
};

}  // namespace outgrow::detail
