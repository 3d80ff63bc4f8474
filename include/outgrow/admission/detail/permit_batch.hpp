// outgrow/admission/detail/permit_batch.hpp — per-thread batches of permits taken from a
// shared limiter, so most decisions touch no shared memory and read no clock.
//
// rate_limiter with thread_batch > 1 takes up to that many permits from its shared GCRA
// state at once and spends them from a small thread-local table. The table is
// direct-mapped on the limiter's id (ids come from a process-wide counter and are never
// reused, so a destroyed limiter's slot can never be mistaken for a live one's); when two
// limiters used by one thread map to the same slot, the newer takes it over and the
// older's unspent permits are dropped (they were taken from its bucket: the cost is a few
// permits not admitted, never one too many).
#pragma once

#include <atomic>
#include <cstdint>

namespace outgrow::detail {

struct permit_batch_slot {
  std::uint64_t owner = 0;  ///< id of the limiter whose permits these are (0 = none)
  std::uint64_t left = 0;   ///< permits still to spend
};

/// A fresh limiter id, never 0 and never reused within the process.
[[nodiscard]] inline std::uint64_t new_permit_batch_owner() noexcept {
  static std::atomic<std::uint64_t> last{0};
  return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

/// This thread's slot for limiter `owner` (which may currently hold another's permits).
[[nodiscard]] inline permit_batch_slot& permit_batch_slot_for(
    std::uint64_t owner) noexcept {
  constexpr unsigned slot_bits = 4;  // 16 slots: 256 bytes per thread
  thread_local permit_batch_slot slots[1u << slot_bits];
  return slots[(owner * 0x9E3779B97F4A7C15ull) >> (64 - slot_bits)];
}

}  // namespace outgrow::detail
