// outgrow/resilience/detail/circuit_breaker_state.hpp — the circuit breaker's lock-free
// pieces: the packed state word and striped counters.
//
// circuit_breaker keeps its state and the open-until time in one atomic word (3 bits of
// state, 61 bits of nanoseconds), so the closed path is one acquire load; its totals are
// counters striped over cache lines so that threads recording outcomes do not share a
// written line.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>

#include <outgrow/resilience/circuit_breaker_config.hpp>

namespace outgrow {

namespace detail {

/// A counter spread over cache-line-padded stripes so that threads bumping it do not
/// share a written cache line; load() sums the stripes (exact).
class striped_counter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    stripes_[stripe_index()].value.fetch_add(n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t load() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& s : stripes_) sum += s.value.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  static constexpr std::size_t stripes = 8;
  struct alignas(64) stripe {
    std::atomic<std::uint64_t> value{0};
  };
  static std::size_t stripe_index() noexcept {
    static std::atomic<std::size_t> next{0};
    thread_local const std::size_t mine =
        next.fetch_add(1, std::memory_order_relaxed) % stripes;
    return mine;
  }
  std::array<stripe, stripes> stripes_{};
};

/// state (3 bits) | open-until time in ns since the clock's epoch (61 bits).
constexpr std::uint64_t pack_state(breaker_state s, std::int64_t open_until_ns) noexcept {
  return (static_cast<std::uint64_t>(std::max<std::int64_t>(open_until_ns, 0)) << 3) |
         static_cast<std::uint64_t>(s);
}
constexpr breaker_state state_of(std::uint64_t word) noexcept {
  return static_cast<breaker_state>(word & 7U);
}
constexpr std::int64_t open_until_of(std::uint64_t word) noexcept {
  return static_cast<std::int64_t>(word >> 3);
}

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
}  // namespace detail

}  // namespace outgrow
