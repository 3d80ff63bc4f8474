// outgrow/cache/detail/window_tuner.hpp — how w_tiny_lfu chooses its window size:
// miniature simulations of the policy on a hash-sampled share of the keys (Waldspurger
// et al., "Cache Modeling and Optimization using Miniature Simulations", USENIX ATC
// 2017). Internal: included by cache/w_tiny_lfu.hpp after w_tiny_lfu is defined.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <vector>

// Needs outgrow::w_tiny_lfu complete: include <outgrow/cache/w_tiny_lfu.hpp>, never this.

namespace outgrow::detail {

/// A miniature W-TinyLFU with a fixed window over a key-sampled request stream (hashes
/// only): Waldspurger et al., "Cache Modeling and Optimization using Miniature
/// Simulations" (USENIX ATC 2017). Fixed memory: capacity + 1 nodes and an index of
/// twice that many slots, allocated once.
class mini_w_tiny_lfu {
 public:
  mini_w_tiny_lfu(std::size_t capacity, std::size_t window_percent)
      : capacity_(capacity),
        policy_(capacity, w_tiny_lfu_config{.adaptive_window = false,
                                            .window_percent =
                                                std::min<std::size_t>(window_percent, 99)}),
        nodes_(capacity + 1),
        slots_(std::bit_ceil(2 * (capacity + 1)), empty),
        mask_(slots_.size() - 1) {
    policy_.reserve(capacity);
    free_.reserve(nodes_.size());
    for (std::size_t i = nodes_.size(); i-- > 0;)
      free_.push_back(static_cast<std::uint32_t>(i));
  }

  /// One request for `hash`: true on a hit.
  bool access(std::uint64_t hash) noexcept {
    if (node* n = find(hash)) {
      policy_.on_access(*n, hash);
      return true;
    }
    const std::uint32_t i = free_.back();
    free_.pop_back();
    node& n = nodes_[i];
    n.key = hash;
    insert_index(hash, i);
    policy_.on_insert(n, hash, 1);
    if (++size_ > capacity_) {
      auto* victim = static_cast<node*>(policy_.evict());
      erase_index(victim->key);
      free_.push_back(static_cast<std::uint32_t>(victim - nodes_.data()));
      --size_;
    }
    return false;
  }

 private:
  struct node : w_tiny_lfu::hook {
    std::uint64_t key = 0;
  };
  static constexpr std::uint32_t empty = ~std::uint32_t{0};

  [[nodiscard]] std::size_t home(std::uint64_t hash) const noexcept {
    return static_cast<std::size_t>((hash * 0x9e3779b97f4a7c15ULL) >> 20U) & mask_;
  }
  node* find(std::uint64_t hash) noexcept {
    for (std::size_t i = home(hash);; i = (i + 1) & mask_) {
      if (slots_[i] == empty) return nullptr;
      if (nodes_[slots_[i]].key == hash) return &nodes_[slots_[i]];
    }
  }
  void insert_index(std::uint64_t hash, std::uint32_t index) noexcept {
    std::size_t i = home(hash);
    while (slots_[i] != empty) i = (i + 1) & mask_;
    slots_[i] = index;
  }
  /// Linear probing with backward-shift deletion (no tombstones).
  void erase_index(std::uint64_t hash) noexcept {
    std::size_t i = home(hash);
    while (nodes_[slots_[i]].key != hash) i = (i + 1) & mask_;
    for (std::size_t j = (i + 1) & mask_; slots_[j] != empty; j = (j + 1) & mask_) {
      const std::size_t h = home(nodes_[slots_[j]].key);
      // Move slot j back to i if its home is not cyclically within (i, j].
      if (((j - h) & mask_) >= ((j - i) & mask_)) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = empty;
  }

  std::size_t capacity_;
  std::size_t size_ = 0;
  w_tiny_lfu policy_;
  std::vector<node> nodes_;
  std::vector<std::uint32_t> slots_;
  std::size_t mask_;
  std::vector<std::uint32_t> free_;
};

/// Chooses w_tiny_lfu's window size: miniature simulations of the same cache with
/// windows of 1, 10, 25, 50, 75 and 99 % run on 1 in `sampling` keys (capacity /
/// sampling entries each); every `period` sampled requests the window of the
/// simulation with the most hits (exponentially weighted over periods, half-life one
/// period) becomes the target, when it beats the current choice by more than 2 %.
class window_tuner {
 public:
  static constexpr std::size_t candidates[] = {1, 10, 25, 50, 75, 100};
  /// Entries per miniature simulation: [min_entries, 2 x min_entries).
  static constexpr std::size_t min_entries = 128;
  /// Smallest capacity tuned (below it the window stays at its initial share).
  static constexpr std::size_t min_capacity = 2 * min_entries;

  explicit window_tuner(std::size_t capacity, std::size_t initial_percent)
      : sampling_shift_(static_cast<unsigned>(
            std::bit_width(std::bit_floor(capacity / min_entries)) - 1)),
        capacity_(capacity) {
    const std::size_t entries = capacity >> sampling_shift_;
    period_ = 2 * entries;
    minis_.reserve(std::size(candidates));
    for (const std::size_t percent : candidates) minis_.emplace_back(entries, percent);
    std::size_t best = 0;
    for (std::size_t i = 0; i < std::size(candidates); ++i) {
      if (candidates[i] <= initial_percent) best = i;
    }
    chosen_ = best;
  }

  /// Records one request; returns the new target window (in capacity units) when the
  /// choice changes.
  std::optional<std::size_t> record(std::uint64_t hash) noexcept {
    const std::uint64_t h = hash * 0xd6e8feb86659fd93ULL;
    if (sampling_shift_ != 0 && (h >> (64U - sampling_shift_)) != 0) return std::nullopt;
    for (std::size_t i = 0; i < minis_.size(); ++i) {
      if (minis_[i].access(hash)) ++hits_[i];
    }
    if (++requests_ < period_) return std::nullopt;
    requests_ = 0;
    std::size_t best = chosen_;
    for (std::size_t i = 0; i < minis_.size(); ++i) {
      score_[i] = score_[i] / 2 + static_cast<double>(hits_[i]);
      hits_[i] = 0;
      if (score_[i] > score_[best]) best = i;
    }
    if (best == chosen_ || score_[best] <= score_[chosen_] * 1.02) return std::nullopt;
    chosen_ = best;
    return std::max<std::size_t>(percent_of(capacity_, candidates[best]), 1);
  }

  [[nodiscard]] std::size_t chosen_percent() const noexcept { return candidates[chosen_]; }

 private:
  unsigned sampling_shift_;
  std::size_t capacity_;
  std::size_t period_ = 0;
  std::size_t requests_ = 0;
  std::size_t chosen_ = 0;
  std::vector<mini_w_tiny_lfu> minis_;
  std::size_t hits_[std::size(candidates)] = {};
  double score_[std::size(candidates)] = {};
};

}  // namespace outgrow::detail
