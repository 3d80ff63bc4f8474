// outgrow/cache/tier.hpp — what every cache tier offers, and the stats it reports.
//
// A tier is one level of a cache hierarchy: an in-process cache (outgrow::cache,
// outgrow::concurrent_cache), a shared one (redis_tier), or anything else that can
// get, put with a TTL, erase and clear. tiered_cache chains tiers L1 → L2 → … → a
// backing store; any type satisfying `cache_tier` drops in.
//
// Smallest conforming tier:
//
//   struct one_slot {
//     using key_type = int;
//     using mapped_type = std::string;
//     std::optional<std::pair<int, std::string>> slot;
//     outgrow::cache_metrics counters;
//     std::optional<std::string> get(const int& k) {
//       if (slot && slot->first == k) return slot->second;
//       return std::nullopt;
//     }
//     bool put(const int& k, std::string v) { slot.emplace(k, std::move(v)); return true; }
//     bool put(const int& k, std::string v, std::chrono::nanoseconds) { return put(k, v); }
//     bool erase(const int& k) {
//       return slot && slot->first == k ? (slot.reset(), true) : false;
//     }
//     void clear() { slot.reset(); }
//     std::size_t size() const { return slot ? 1 : 0; }
//     outgrow::cache_metrics metrics() const { return counters; }
//   };
//
// Semantics every tier follows:
//   - get(k): the value if present and not expired (expired entries count as misses
//     and as expirations); counts a hit or a miss.
//   - put(k, v) uses the tier's default TTL (none unless configured); put(k, v, ttl)
//     sets a per-entry TTL. A TTL <= 0 is a programming error: config_error. put
//     returns false when the tier could not store the value (a remote tier that is
//     down, an entry heavier than the whole capacity) — a cache may always drop data.
//   - erase(k) returns whether an entry was removed; clear() removes everything.
//   - metrics() is a snapshot (see cache_metrics), readable at any time.
// Traits (tier_traits, read by tiered_cache): `static constexpr bool thread_safe` and
// `static constexpr bool shared`, both false when absent.
// Optional capability, detected with `cache_tier_with_entries`:
//   - get_entry(k) -> std::optional<cache_entry<V, time_point>>: the value with its
//     write time and expiry, used for TTL-preserving promotion and refresh-ahead.
//
// Thread-safety: per tier (outgrow::cache is single-threaded; concurrent_cache and
// redis_tier are safe from any thread). cache_metrics is a plain value.
// Complexity: per tier.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include <outgrow/core/metrics.hpp>

namespace outgrow {

/// Counters of one tier (or of a whole tiered_cache), like Caffeine's CacheStats.
struct cache_metrics {
  static constexpr std::string_view metrics_name = "cache_metrics";
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t load_successes = 0;  ///< loads from the next tier or the store
  std::uint64_t load_failures = 0;
  std::chrono::nanoseconds total_load_time{0};
  std::uint64_t puts = 0;
  std::uint64_t evictions = 0;      ///< removed to make room
  std::uint64_t expirations = 0;    ///< removed because their TTL passed
  std::uint64_t rejected_puts = 0;  ///< puts the tier could not store

  [[nodiscard]] std::uint64_t requests() const noexcept { return hits + misses; }
  [[nodiscard]] double hit_rate() const noexcept { return ratio(hits, requests()); }
  [[nodiscard]] double miss_rate() const noexcept { return ratio(misses, requests()); }
  [[nodiscard]] std::chrono::nanoseconds average_load_time() const noexcept {
    const auto loads = load_successes + load_failures;
    return loads == 0 ? std::chrono::nanoseconds{0}
                      : total_load_time / static_cast<std::int64_t>(loads);
  }

  template <class F>
  void for_each_metric(F&& f) const {
    f("hits", hits);
    f("misses", misses);
    f("hit_rate", hit_rate());
    f("load_successes", load_successes);
    f("load_failures", load_failures);
    f("total_load_time", total_load_time);
    f("puts", puts);
    f("evictions", evictions);
    f("expirations", expirations);
    f("rejected_puts", rejected_puts);
  }

  cache_metrics& operator+=(const cache_metrics& o) noexcept {
    hits += o.hits;
    misses += o.misses;
    load_successes += o.load_successes;
    load_failures += o.load_failures;
    total_load_time += o.total_load_time;
    puts += o.puts;
    evictions += o.evictions;
    expirations += o.expirations;
    rejected_puts += o.rejected_puts;
    return *this;
  }
  friend bool operator==(const cache_metrics&, const cache_metrics&) = default;
};

/// A value with its write time and expiry (time_point::max() = never expires).
template <class V, class TimePoint = std::chrono::steady_clock::time_point>
struct cache_entry {
  V value;
  TimePoint written{};
  TimePoint expires = TimePoint::max();
};

/// The tier concept (see the header comment).
template <class T>
concept cache_tier = requires(T& t, const T& ct, const typename T::key_type& k,
                              typename T::mapped_type v, std::chrono::nanoseconds ttl) {
  typename T::key_type;
  typename T::mapped_type;
  { t.get(k) } -> std::same_as<std::optional<typename T::mapped_type>>;
  { t.put(k, v) } -> std::same_as<bool>;
  { t.put(k, v, ttl) } -> std::same_as<bool>;
  { t.erase(k) } -> std::same_as<bool>;
  t.clear();
  { ct.size() } -> std::convertible_to<std::size_t>;
  { ct.metrics() } -> std::convertible_to<cache_metrics>;
};

/// A tier that also reports each entry's write time and expiry.
template <class T>
concept cache_tier_with_entries =
    cache_tier<T> && requires(T& t, const typename T::key_type& k) {
      { t.get_entry(k) };
      requires std::same_as<std::remove_cvref_t<decltype(t.get_entry(k)->value)>,
                            typename T::mapped_type>;
    };

/// What tiered_cache needs to know about a tier beyond the concept; reads
/// `T::thread_safe` and `T::shared` when present (both default to false).
/// thread_safe: the tier may be called from any thread (else tiered_cache calls it under
/// a per-tier mutex). shared: the tier is shared between cache instances (Redis), so
/// invalidation-bus messages do not clear it by default. Specialise for a tier you
/// cannot change.
template <class T>
struct tier_traits {
  static constexpr bool thread_safe = [] {
    if constexpr (requires { T::thread_safe; }) {
      return static_cast<bool>(T::thread_safe);
    } else {
      return false;
    }
  }();
  static constexpr bool shared = [] {
    if constexpr (requires { T::shared; }) {
      return static_cast<bool>(T::shared);
    } else {
      return false;
    }
  }();
};

}  // namespace outgrow
