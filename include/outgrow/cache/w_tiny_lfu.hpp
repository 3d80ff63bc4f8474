// outgrow/cache/w_tiny_lfu.hpp — the W-TinyLFU eviction policy (Caffeine's).
//
// What: `w_tiny_lfu` and `w_tiny_lfu_config`: an LRU admission window, an SLRU main
// space, a count-min sketch of access frequencies and TinyLFU admission, with the
// window's size chosen by miniature simulations. The policy protocol, the comparison
// with lru / sieve / s3_fifo, measured hit ratios and costs are in eviction.hpp (which
// includes this header); the class comment below lists the measured departures from
// Caffeine.
// When: frequency-skewed traffic where a scan or one-hit wonders must not flush the
// hot set; the best default for a large in-process cache.
//
//   outgrow::cache<std::string, std::string, outgrow::w_tiny_lfu> c(
//       {.capacity = 100'000}, {.adaptive_window = false, .window_percent = 1});
//
// Thread-safety: like every policy, used under its cache's synchronisation.
// Complexity: O(1) amortized per access, insert and eviction (window resizing moves at
// most 1,000 entries per call).
#pragma once

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <outgrow/cache/detail/frequency_sketch.hpp>
#include <outgrow/cache/detail/intrusive_list.hpp>
#include <outgrow/core/error.hpp>

namespace outgrow {

// ---------------------------------------------------------------------------------
// w_tiny_lfu
// ---------------------------------------------------------------------------------

class w_tiny_lfu;
namespace detail {
class window_tuner;
}  // namespace detail

/// Configuration of w_tiny_lfu. Defaults: Caffeine's.
struct w_tiny_lfu_config {
  /// Adapt the window's share to the workload (miniature simulations, see w_tiny_lfu;
  /// Caffeine adapts it too, by hill climbing). false: the window keeps
  /// `window_percent`.
  bool adaptive_window = true;
  /// The window's initial share of the capacity, in percent; in [1, 99]. 1: Caffeine.
  /// (The miniature simulations of the adaptive window use 1, 10, 25, 50, 75, 100.)
  std::size_t window_percent = 1;
};

/// W-TinyLFU as in Caffeine (see the header comment). Segments, by weight:
///   window     = window_percent of the capacity (at least 1)   LRU, every new entry
///   protected  = 80 % of the main space initially              SLRU, hit twice
///   probation  = the rest of the main space                    SLRU, new in main
/// New entries enter the window. When the window is over its share, its LRU entry
/// (the candidate) moves to probation if the cache still has room; when the cache is
/// over capacity, the candidate is admitted only if the sketch says it is used more
/// often than the main victim (probation's LRU entry, or protected's if probation is
/// empty) — then the main victim is evicted, else the candidate is. To resist
/// hash-flooding attacks, as Caffeine does, a candidate with frequency > 5 that does
/// not win is still admitted with probability 1/128 (deterministic seeded generator).
/// A hit in probation promotes to protected; protected's overflow is demoted to
/// probation's front.
///
/// Adaptive window (on by default). A 1 % window is right for frequency-biased traffic
/// and wrong for recency-biased traffic (database and web traces, where what was used a
/// moment ago is used again soon): there a large LRU window wins. Caffeine moves the
/// window by hill climbing on the hit ratio; we implemented that (step 6.25 % of the
/// capacity, decay 0.98, restart at a 5-point change, sample 10 x capacity) and
/// measured it: on the stack-model and shifting traces it stayed 2-13 points below LRU,
/// because one noisy hit-ratio sample per step moves too slowly and too blindly. Here
/// the window is chosen by miniature simulation instead (Waldspurger et al., "Cache
/// Modeling and Optimization using Miniature Simulations", USENIX ATC 2017): six small
/// copies of this policy with windows of 1, 10, 25, 50, 75 and 100 % (main: 1 entry)
/// replay the requests of 1 in capacity/128 keys (hash-sampled, 128-255 entries each);
/// every 2 x that many sampled requests the window of the copy with the most hits
/// (exponentially weighted, half-life one period) becomes the target when it beats the
/// current choice by more than 2 %. Resizing moves entries between window and main
/// (main's LRU entries into the window when it grows; the window's LRU entries to
/// probation when it shrinks), at most 1,000 per call, so a hit or insert stays O(1)
/// amortized. A request is a hit (on_access/on_update) or an inserted miss (on_insert),
/// as Caffeine counts them. Applies to caches of 256 entries or more whose entries all
/// weigh 1 (capacity in entries): with a weigher, or a smaller capacity, the window
/// keeps `window_percent`.
///
/// Measured departures from Caffeine (each measured; tests/cache/hit_ratio_test.cpp):
///   - Conservative ("minimal increment") counting, as in the TinyLFU paper, and 2
///     sketch words (32 counters) per entry of capacity instead of 1: fewer
///     over-estimated tail keys.
///   - Halving after 20 x capacity counted occurrences instead of 10 x: a longer
///     memory sharpens the estimates of tail keys on Zipf.
///   - Re-references while an entry is in the window are not counted in the sketch: a
///     burst of accesses in quick succession counts as one occurrence, like LRU-K's
///     "correlated reference period" (O'Neil et al., SIGMOD 1993). Many keys of the
///     CloudPhysics trace are read twice in a row and never again; counted twice they
///     look as popular as truly reused keys and win admission (counting them, with the
///     adaptive window: CloudPhysics 1 / 5 / 10 % 16.8 / 18.2 / 20.5 instead of 16.3 /
///     19.4 / 28.3).
///   - The window size is chosen by miniature simulations, not by hill climbing (above).
class w_tiny_lfu {
 public:
  static constexpr std::string_view name = "w_tiny_lfu";
  using config_type = w_tiny_lfu_config;
  /// Caffeine's order: the new entry enters the window first, then the admission
  /// filter compares the window's victim (possibly the new entry) with main's victim.
  static constexpr bool insert_before_evict = true;
  static constexpr std::size_t protected_percent = 80;
  static constexpr std::size_t sketch_words_per_entry = 2;
  static constexpr std::size_t sketch_sample_factor = 20;
  /// Entries moved between window and main per call while the window is resized.
  static constexpr std::size_t climb_transfer_limit = 1000;
  static constexpr unsigned hash_flooding_threshold = 5;

  enum class segment : std::uint8_t { window, probation, protected_ };

  struct hook : detail::list_hook {
    std::uint64_t hash = 0;
    std::size_t weight = 0;
    segment where = segment::window;
  };

  explicit w_tiny_lfu(std::size_t capacity) : w_tiny_lfu(capacity, w_tiny_lfu_config{}) {}
  /// Throws: config_error if a w_tiny_lfu_config field is out of its range.
  w_tiny_lfu(std::size_t capacity, const w_tiny_lfu_config& config)
      : config_(validated(config)),
        capacity_(capacity),
        window_max_(std::max<std::size_t>(
            capacity - detail::percent_of(capacity, 100 - config_.window_percent), 1)),
        protected_max_(detail::percent_of(capacity - std::min(window_max_, capacity),
                                          protected_percent)),
        tuner_(make_tuner(config_, capacity)) {}

  w_tiny_lfu(w_tiny_lfu&&) noexcept;
  w_tiny_lfu& operator=(w_tiny_lfu&&) noexcept;
  ~w_tiny_lfu();

  /// Sizes the frequency sketch for `entries` keys (the cache calls it as it fills;
  /// growing the sketch forgets the counts, as in Caffeine).
  void reserve(std::size_t entries) {
    sketch_.ensure_capacity(entries, sketch_words_per_entry, sketch_sample_factor);
  }

  void on_insert(hook& h, std::uint64_t hash, std::size_t weight) noexcept {
    sketch_.increment(hash);
    h.hash = hash;
    h.weight = weight;
    h.where = segment::window;
    window_.push_front(h);
    window_weight_ += weight;
    total_weight_ += weight;
    // While the cache has room the window's overflow moves to the main space freely.
    while (window_weight_ > window_max_ && total_weight_ <= capacity_) {
      hook* candidate = window_.back();
      move(*candidate, segment::probation);
    }
    observe(hash, weight);
  }

  void on_access(hook& h, std::uint64_t hash) noexcept {
    if (h.where != segment::window) sketch_.increment(hash);
    touch(h);
    observe(hash, h.weight);
  }

  void on_update(hook& h, std::uint64_t hash, std::size_t weight) noexcept {
    segment_weight(h.where) += weight;
    segment_weight(h.where) -= h.weight;
    total_weight_ += weight;
    total_weight_ -= h.weight;
    h.weight = weight;
    on_access(h, hash);
  }

  void on_erase(hook& h) noexcept { unlink(h); }

  hook* evict() noexcept {
    if (window_weight_ > window_max_ && !window_.empty()) {
      hook* candidate = window_.back();
      hook* victim = main_victim();
      unlink(*candidate);
      if (victim == nullptr || !admit(candidate->hash, victim->hash)) return candidate;
      candidate->where = segment::probation;
      probation_.push_front(*candidate);
      probation_weight_ += candidate->weight;
      total_weight_ += candidate->weight;
      unlink(*victim);
      return victim;
    }
    hook* victim = main_victim();
    if (victim == nullptr) victim = window_.back();
    if (victim != nullptr) unlink(*victim);
    return victim;
  }

  void clear() noexcept {
    window_.clear();
    probation_.clear();
    protected_.clear();
    window_weight_ = probation_weight_ = protected_weight_ = total_weight_ = 0;
    sketch_.clear();
  }

  [[nodiscard]] std::size_t size() const noexcept {
    return window_.size() + probation_.size() + protected_.size();
  }
  [[nodiscard]] const w_tiny_lfu_config& config() const noexcept { return config_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  /// The window's current share (moves with the climber when adaptive_window).
  [[nodiscard]] std::size_t window_max() const noexcept { return window_max_; }
  [[nodiscard]] std::size_t protected_max() const noexcept { return protected_max_; }
  [[nodiscard]] std::size_t window_weight() const noexcept { return window_weight_; }
  [[nodiscard]] std::size_t probation_weight() const noexcept { return probation_weight_; }
  [[nodiscard]] std::size_t protected_weight() const noexcept { return protected_weight_; }
  /// Which segment an entry is in.
  [[nodiscard]] static segment segment_of(const hook& h) noexcept { return h.where; }
  /// The sketch's frequency estimate for a key hash, in [0, 15].
  [[nodiscard]] unsigned frequency(std::uint64_t hash) const noexcept {
    return sketch_.frequency(hash);
  }
  [[nodiscard]] const detail::frequency_sketch& sketch() const noexcept { return sketch_; }

 private:
  using list = detail::intrusive_list<hook>;

  static std::unique_ptr<detail::window_tuner> make_tuner(const w_tiny_lfu_config& c,
                                                          std::size_t capacity);

  static w_tiny_lfu_config validated(const w_tiny_lfu_config& c) {
    require_in_range("w_tiny_lfu", "window_percent", c.window_percent, std::size_t{1},
                     std::size_t{99});
    return c;
  }

  // A segment's weight and list (protected_ for any other value).
  std::size_t& segment_weight(segment s) noexcept {
    return s == segment::window      ? window_weight_
           : s == segment::probation ? probation_weight_
                                     : protected_weight_;
  }
  list& segment_list(segment s) noexcept {
    return s == segment::window      ? window_
           : s == segment::probation ? probation_
                                     : protected_;
  }

  void unlink(hook& h) noexcept {
    segment_list(h.where).remove(h);
    segment_weight(h.where) -= h.weight;
    total_weight_ -= h.weight;
  }

  /// Moves a tracked entry to the front (MRU end) of another segment.
  void move(hook& h, segment to) noexcept {
    segment_list(h.where).remove(h);
    segment_weight(h.where) -= h.weight;
    h.where = to;
    segment_list(to).push_front(h);
    segment_weight(to) += h.weight;
  }

  void touch(hook& h) noexcept {
    switch (h.where) {
      case segment::window:
        window_.move_to_front(h);
        return;
      case segment::protected_:
        protected_.move_to_front(h);
        break;
      case segment::probation:
        move(h, segment::protected_);
        break;
    }
    demote_from_protected();
  }

  /// Protected's overflow goes back to probation.
  void demote_from_protected() noexcept {
    while (protected_weight_ > protected_max_ && !protected_.empty()) {
      move(*protected_.back(), segment::probation);
    }
  }

  [[nodiscard]] hook* main_victim() const noexcept {
    if (!probation_.empty()) return probation_.back();
    return protected_.back();
  }

  bool admit(std::uint64_t candidate, std::uint64_t victim) noexcept {
    const unsigned victim_freq = sketch_.frequency(victim);
    const unsigned candidate_freq = sketch_.frequency(candidate);
    if (candidate_freq > victim_freq) return true;
    if (candidate_freq <= hash_flooding_threshold) return false;
    return (rng_() & 127U) == 0;
  }

  // ---- adaptive window ----

  /// Feeds the tuner one request (a hit or an inserted miss) and moves entries toward
  /// the window size it chose.
  void observe(std::uint64_t hash, std::size_t weight) noexcept;

  /// Grows the window by up to adjustment_ (leaving main at least 1) and moves main's
  /// LRU entries (probation's, then protected's) into the window's MRU end, at most
  /// climb_transfer_limit per call (the rest in later calls).
  void grow_window() noexcept {
    const std::size_t room = capacity_ > window_max_ + 1 ? capacity_ - window_max_ - 1 : 0;
    std::size_t quota = std::min(static_cast<std::size_t>(adjustment_), room);
    if (quota == 0) {
      adjustment_ = 0;
      return;
    }
    resize_window(window_max_ + quota);
    for (std::size_t i = 0; i < climb_transfer_limit; ++i) {
      hook* candidate = probation_.back();
      if (candidate == nullptr || quota < candidate->weight) candidate = protected_.back();
      if (candidate == nullptr || quota < candidate->weight) break;
      quota -= candidate->weight;
      move(*candidate, segment::window);
    }
    // What did not move yet stays owed to the window: it is applied in the next calls.
    resize_window(window_max_ - quota);
    adjustment_ =
        (probation_.empty() && protected_.empty()) ? 0 : static_cast<std::int64_t>(quota);
  }

  /// Shrinks the window by up to -adjustment_ (keeping at least 1) and moves the
  /// window's LRU entries to probation.
  void shrink_window() noexcept {
    std::size_t quota = std::min(static_cast<std::size_t>(-adjustment_),
                                 window_max_ > 1 ? window_max_ - 1 : 0);
    if (quota == 0) {
      adjustment_ = 0;
      return;
    }
    resize_window(window_max_ - quota);
    for (std::size_t i = 0; i < climb_transfer_limit; ++i) {
      hook* candidate = window_.back();
      if (candidate == nullptr || quota < candidate->weight) break;
      quota -= candidate->weight;
      move(*candidate, segment::probation);
    }
    resize_window(window_max_ + quota);
    adjustment_ = window_.empty() ? 0 : -static_cast<std::int64_t>(quota);
  }

  /// Sets the window's share; protected keeps 80 % of what main has left.
  void resize_window(std::size_t window) noexcept {
    window_max_ = window;
    protected_max_ =
        detail::percent_of(capacity_ - std::min(window_max_, capacity_), protected_percent);
    demote_from_protected();
  }

  w_tiny_lfu_config config_;
  std::size_t capacity_;
  std::size_t window_max_;
  std::size_t protected_max_;
  list window_;
  list probation_;
  list protected_;
  std::size_t window_weight_ = 0;
  std::size_t probation_weight_ = 0;
  std::size_t protected_weight_ = 0;
  std::size_t total_weight_ = 0;
  std::int64_t adjustment_ = 0;
  std::unique_ptr<detail::window_tuner> tuner_;
  detail::frequency_sketch sketch_;
  detail::splitmix64 rng_{0x5eed5eed5eed5eedULL};
};

}  // namespace outgrow

#include <outgrow/cache/detail/window_tuner.hpp>

namespace outgrow {

inline w_tiny_lfu::w_tiny_lfu(w_tiny_lfu&&) noexcept = default;
inline w_tiny_lfu& w_tiny_lfu::operator=(w_tiny_lfu&&) noexcept = default;
inline w_tiny_lfu::~w_tiny_lfu() = default;

inline std::unique_ptr<detail::window_tuner> w_tiny_lfu::make_tuner(
    const w_tiny_lfu_config& c, std::size_t capacity) {
  if (!c.adaptive_window || capacity < detail::window_tuner::min_capacity) return nullptr;
  return std::make_unique<detail::window_tuner>(capacity, c.window_percent);
}

inline void w_tiny_lfu::observe(std::uint64_t hash, std::size_t weight) noexcept {
  if (tuner_ == nullptr) return;
  if (weight != 1) {  // capacity is not an entry count: keep the window (documented)
    tuner_.reset();
    return;
  }
  if (const auto target = tuner_->record(hash)) {
    adjustment_ =
        static_cast<std::int64_t>(*target) - static_cast<std::int64_t>(window_max_);
  }
  if (adjustment_ > 0) {
    grow_window();
  } else if (adjustment_ < 0) {
    shrink_window();
  }
}

}  // namespace outgrow
