// outgrow/cache/detail/ghost_queue.hpp — S3-FIFO's ghost queue: the hashes of recently
// evicted keys in bounded memory.
// Internal to outgrow's cache area: users never name it; its interface may change.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace outgrow::detail {

/// The ghost queue of S3-FIFO: remembers the hashes of the last `capacity()` keys
/// inserted, in bounded memory and without allocating after reserve(). As the S3-FIFO
/// paper suggests, it is a hash table of (hash, insertion number) slots: a hash is
/// still "in the queue" while fewer than capacity() insertions happened after it.
/// Lookups and inserts probe 8 slots of a table at most half full; when all 8 are live
/// the oldest is overwritten (the queue may then forget a key slightly early).
class ghost_queue {
 public:
  static constexpr std::size_t probes = 8;

  /// Sizes the table for `entries` ghosts (2 slots per ghost). Keeps live ghosts.
  void reserve(std::size_t entries) {
    const std::size_t wanted = std::bit_ceil(std::max<std::size_t>(2 * entries, 16));
    if (slots_.size() >= wanted) return;
    std::vector<slot> old = std::exchange(slots_, std::vector<slot>(wanted));
    mask_ = wanted - 1;
    // Re-insert the live ghosts oldest first, so their insertion numbers stay ordered.
    std::sort(old.begin(), old.end(),
              [](const slot& a, const slot& b) { return a.seq < b.seq; });
    for (const slot& s : old) {
      if (live(s)) place(s);
    }
  }

  /// The number of most recent insertions remembered.
  void set_capacity(std::size_t capacity) noexcept { capacity_ = capacity; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

  void insert(std::uint64_t hash) noexcept {
    if (slots_.empty() || capacity_ == 0) return;
    place(slot{hash, next_seq_++});
  }

  /// True if `hash` is in the queue; removes it.
  bool take(std::uint64_t hash) noexcept {
    if (slots_.empty()) return false;
    for (std::size_t i = 0; i < probes; ++i) {
      slot& s = slots_[(home(hash) + i) & mask_];
      if (s.hash == hash && live(s)) {
        s.seq = 0;
        return true;
      }
    }
    return false;
  }

  [[nodiscard]] bool contains(std::uint64_t hash) const noexcept {
    if (slots_.empty()) return false;
    for (std::size_t i = 0; i < probes; ++i) {
      const slot& s = slots_[(home(hash) + i) & mask_];
      if (s.hash == hash && live(s)) return true;
    }
    return false;
  }

  void clear() noexcept {
    std::fill(slots_.begin(), slots_.end(), slot{});
    next_seq_ = 1;
  }

 private:
  struct slot {
    std::uint64_t hash = 0;
    std::uint64_t seq = 0;  // 0 = empty
  };

  [[nodiscard]] bool live(const slot& s) const noexcept {
    return s.seq != 0 && next_seq_ - s.seq <= capacity_;
  }
  [[nodiscard]] std::size_t home(std::uint64_t hash) const noexcept {
    return static_cast<std::size_t>(hash >> 32U);
  }

  void place(const slot& fresh) noexcept {
    slot* target = nullptr;
    for (std::size_t i = 0; i < probes; ++i) {
      slot& s = slots_[(home(fresh.hash) + i) & mask_];
      if (s.hash == fresh.hash || !live(s)) {
        target = &s;
        break;
      }
      if (target == nullptr || s.seq < target->seq) target = &s;
    }
    *target = fresh;
  }

  std::vector<slot> slots_;
  std::size_t mask_ = 0;
  std::size_t capacity_ = 0;
  std::uint64_t next_seq_ = 1;
};

}  // namespace outgrow::detail
