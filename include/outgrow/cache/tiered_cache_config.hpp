// outgrow/cache/tiered_cache_config.hpp — tiered_cache's settings and counters.
//
// What: `tiered_cache_config` (default TTL, negative caching, XFetch, bus reach, the
// write-behind dead-letter hook) and `tiered_cache_metrics` (cache_metrics plus what
// only the whole cache sees: negative and buffer hits, promotions, shared loads,
// refreshes, the write-behind buffer's counters).
// When: you name these types without the cache itself (a config factory, a metrics
// exporter); tiered_cache.hpp includes this header.
//
//   outgrow::tiered_cache_config<std::string, user> c{.default_ttl = 5min,
//                                                     .negative_ttl = 30s};
//
// Trade-offs: every field has a working default (each tier's TTL, negative caching and
// XFetch off), so `{}` is a valid config; the constructor of tiered_cache validates.
// Thread-safety: plain values. Complexity / measured cost: none (data only).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include <outgrow/cache/tier.hpp>
#include <outgrow/cache/write_policy.hpp>

namespace outgrow {

/// tiered_cache settings. Defaults: each tier's own TTL, no negative caching, no XFetch.
template <class Key, class Value, class TimePoint = std::chrono::steady_clock::time_point>
struct tiered_cache_config {
  /// TTL of entries the cache writes into its tiers (loads, puts, promotions are capped
  /// by it); nullopt = each tier's default TTL. Must be > 0.
  std::optional<std::chrono::nanoseconds> default_ttl{};
  /// Cache "not found" results this long; nullopt = off. Must be > 0.
  std::optional<std::chrono::nanoseconds> negative_ttl{};
  /// At most this many negative entries (further ones are not cached). >= 1.
  std::size_t negative_capacity = 10'000;
  /// XFetch β: 0 = off; 1 is the paper's recommendation, > 1 reloads earlier. [0, 100].
  double xfetch_beta = 0.0;
  /// XFetch δ (time to recompute); nullopt = the measured average load time. > 0.
  std::optional<std::chrono::nanoseconds> xfetch_delta{};
  /// Seed of XFetch's random draws: empty = random per instance, set = reproducible
  /// decisions (see core/seed.hpp).
  std::optional<std::uint64_t> xfetch_seed{};
  /// Tiers a bus message (or gap) from another instance clears: the top n; nullopt =
  /// every tier whose tier_traits::shared is false. [1, number of tiers].
  std::optional<std::size_t> bus_invalidates_tiers{};
  /// write_behind: receives writes the store kept rejecting (empty = keep them for
  /// take_dead_letters()).
  dead_letter_hook<Key, Value, TimePoint> dead_letter{};
};

/// Overall counters of a tiered_cache (cache_metrics, plus what only the whole cache
/// sees). Per-tier counters: tier_metrics<I>().
struct tiered_cache_metrics : cache_metrics {
  static constexpr std::string_view metrics_name = "tiered_cache_metrics";
  std::uint64_t negative_hits = 0;        ///< answered "not found" from the negative cache
  std::uint64_t buffer_hits = 0;          ///< answered from the write-behind buffer
  std::uint64_t promotions = 0;           ///< lower-tier hits copied upward
  std::uint64_t shared_loads = 0;         ///< misses that waited for another's load
  std::uint64_t loads_not_cached = 0;     ///< loads raced by a write: returned, not cached
  std::uint64_t early_recomputes = 0;     ///< XFetch decided to reload before expiry
  std::uint64_t refreshes = 0;            ///< refresh-ahead reloads started
  std::uint64_t refresh_failures = 0;     ///< of which failed (old value kept)
  std::uint64_t refreshes_discarded = 0;  ///< results dropped: key written or expired since
  write_behind_metrics write_behind{};

  template <class F>
  void for_each_metric(F&& f) const {
    cache_metrics::for_each_metric(f);
    f("negative_hits", negative_hits);
    f("buffer_hits", buffer_hits);
    f("promotions", promotions);
    f("shared_loads", shared_loads);
    f("loads_not_cached", loads_not_cached);
    f("early_recomputes", early_recomputes);
    f("refreshes", refreshes);
    f("refresh_failures", refresh_failures);
    f("refreshes_discarded", refreshes_discarded);
    f("write_behind", write_behind);
  }
};

}  // namespace outgrow
