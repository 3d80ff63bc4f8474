// outgrow/cache/detail/frequency_sketch.hpp — the count-min sketch of 4-bit counters that
// W-TinyLFU uses as its frequency filter.
// Internal to outgrow's cache area: users never name it; its interface may change.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace outgrow::detail {

/// The frequency filter of TinyLFU: a count-min sketch of 4-bit counters, laid out as
/// in Caffeine's FrequencySketch (16 counters per 64-bit word; a key owns one counter
/// in each of 4 words chosen by 4 hash functions, at positions chosen by its low
/// bits). The estimate is the minimum of the 4 counters (saturating at 15).
/// Increments are conservative ("minimal increment", as in the TinyLFU paper): only
/// the counters equal to the current minimum grow, which keeps rare keys from being
/// over-estimated by collisions. After `sample_size` = sample_factor x max_entries
/// counted occurrences every counter is halved (the aging that lets the sketch forget
/// old popularity). Memory: words_per_entry x next_pow2(max_entries) words.
class frequency_sketch {
 public:
  static constexpr unsigned max_frequency = 15;

  /// Sizes the sketch for `max_entries` keys, `words_per_entry` words each (Caffeine:
  /// 1), halving after `sample_factor` x max_entries occurrences (Caffeine: 10).
  /// Growing discards the counts (as in Caffeine); shrinking is ignored.
  void ensure_capacity(std::size_t max_entries, std::size_t words_per_entry = 1,
                       std::size_t sample_factor = 10) {
    const std::size_t entries =
        std::clamp<std::size_t>(max_entries, 1, std::size_t{1} << 28);
    const std::size_t wanted =
        std::bit_ceil(entries * std::clamp<std::size_t>(words_per_entry, 1, 16));
    if (table_.size() >= wanted) return;
    table_.assign(wanted, 0);
    mask_ = wanted - 1;
    sample_size_ = std::clamp<std::size_t>(sample_factor, 1, 1000) * entries;
    additions_ = 0;
  }

  [[nodiscard]] bool initialized() const noexcept { return !table_.empty(); }
  [[nodiscard]] std::size_t sample_size() const noexcept { return sample_size_; }
  /// Occurrences counted since the last halving (halved with the counters).
  [[nodiscard]] std::size_t additions() const noexcept { return additions_; }

  /// The estimated number of recent occurrences of `hash`, in [0, 15].
  [[nodiscard]] unsigned frequency(std::uint64_t hash) const noexcept {
    if (table_.empty()) return 0;
    const unsigned start = static_cast<unsigned>(hash & 3U) << 2U;
    unsigned freq = max_frequency;
    for (unsigned i = 0; i < 4; ++i) {
      freq = std::min(freq, counter(index_of(hash, i), start + i));
    }
    return freq;
  }

  /// Counts one occurrence of `hash`; halves every counter after sample_size of them.
  void increment(std::uint64_t hash) noexcept {
    if (table_.empty()) return;
    const unsigned start = static_cast<unsigned>(hash & 3U) << 2U;
    std::size_t index[4];
    unsigned count[4];
    unsigned freq = max_frequency;
    for (unsigned i = 0; i < 4; ++i) {
      index[i] = index_of(hash, i);
      count[i] = counter(index[i], start + i);
      freq = std::min(freq, count[i]);
    }
    if (freq == max_frequency) return;
    for (unsigned i = 0; i < 4; ++i) {
      if (count[i] == freq) table_[index[i]] += std::uint64_t{1} << ((start + i) << 2U);
    }
    if (++additions_ >= sample_size_) reset();
  }

  /// Halves every counter (aging).
  void reset() noexcept {
    constexpr std::uint64_t reset_mask = 0x7777777777777777ULL;
    for (auto& word : table_) word = (word >> 1U) & reset_mask;
    additions_ /= 2;
  }

  void clear() noexcept {
    std::fill(table_.begin(), table_.end(), std::uint64_t{0});
    additions_ = 0;
  }

 private:
  [[nodiscard]] std::size_t index_of(std::uint64_t hash, unsigned i) const noexcept {
    static constexpr std::uint64_t seeds[4] = {0xc3a5c85c97cb3127ULL, 0xb492b66fbe98f273ULL,
                                               0x9ae16a3b2f90404fULL,
                                               0xcbf29ce484222325ULL};
    std::uint64_t h = (hash + seeds[i]) * seeds[i];
    h += h >> 32U;
    return static_cast<std::size_t>(h) & mask_;
  }

  [[nodiscard]] unsigned counter(std::size_t index, unsigned position) const noexcept {
    return static_cast<unsigned>((table_[index] >> (position << 2U)) & 0xfU);
  }

  std::vector<std::uint64_t> table_;
  std::size_t mask_ = 0;
  std::size_t sample_size_ = 0;
  std::size_t additions_ = 0;
};

}  // namespace outgrow::detail
