// outgrow/cache/detail/refresh_ahead.hpp — refresh-ahead bookkeeping and XFetch draws.
//
// refresh_tracker remembers, per key, the reload in flight (a token, so that only the
// newest reload's result is cached) and, after a failed reload, the time before which
// no new reload starts (the old value is served meanwhile). xfetch_sampler draws the
// uniform u of the XFetch rule from a seeded stream shared by all threads.
// refresh_point_passed is refresh-ahead's "is this entry due" test. All used by
// tiered_cache; the policy itself (refresh_ahead_config) is public in write_policy.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>

#include <outgrow/cache/detail/locked_key_map.hpp>
#include <outgrow/cache/xfetch.hpp>
#include <outgrow/core/deadline.hpp>
#include <outgrow/core/seed.hpp>

namespace outgrow::detail {

/// The n-th draw of a seeded random stream (splitmix64 of seed + n * golden ratio):
/// thread-safe through an atomic counter, reproducible for a fixed seed.
constexpr std::uint64_t seeded_draw(std::uint64_t seed, std::uint64_t n) noexcept {
  std::uint64_t x = seed + n * 0x9E3779B97F4A7C15ULL + 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/// XFetch decisions from one seeded stream (empty seed = random per instance).
class xfetch_sampler {
 public:
  explicit xfetch_sampler(std::optional<std::uint64_t> seed) : seed_(resolve_seed(seed)) {}

  /// Whether to reload an entry expiring at `expiry` now (see xfetch_should_recompute).
  template <class TimePoint>
  bool early(TimePoint now, TimePoint expiry, std::chrono::nanoseconds delta,
             double beta) noexcept {
    const std::uint64_t draw =
        seeded_draw(seed_, draws_.fetch_add(1, std::memory_order_relaxed));
    const double u = static_cast<double>((draw >> 11) + 1) * 0x1.0p-53;  // (0, 1]
    return xfetch_should_recompute(now, expiry, delta, beta, u);
  }

 private:
  const std::uint64_t seed_;
  std::atomic<std::uint64_t> draws_{0};
};

/// Refresh-ahead's due test: the entry (full lifetime `full`, expiring at `expires`)
/// has lived at least refresh_fraction of `full` at `now` (rounded to ns, so 0.8 of
/// 10 s is exactly 8 s).
template <class TimePoint>
bool refresh_point_passed(std::chrono::nanoseconds full, TimePoint expires, TimePoint now,
                          double refresh_fraction) noexcept {
  if (full <= std::chrono::nanoseconds::zero()) return false;
  const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(expires - now);
  const auto due_after =
      std::chrono::nanoseconds{static_cast<std::chrono::nanoseconds::rep>(
          std::llround(refresh_fraction * static_cast<double>(full.count())))};
  return full - left >= due_after;
}

/// Per-key refresh state: the reload in flight and the retry delay after a failure.
/// Thread-safe (one mutex).
template <class Key, class TimePoint, class Hasher>
class refresh_tracker {
 public:
  /// Starts a reload of `key` unless one is in flight or a failed one's retry delay
  /// has not passed; returns the new reload's token.
  std::optional<std::uint64_t> begin(const Key& key, TimePoint now) {
    return keys_.with([&](auto& keys) -> std::optional<std::uint64_t> {
      auto [it, inserted] = keys.try_emplace(key);
      if (!inserted && (it->second.token != 0 || now < it->second.retry_at)) {
        return std::nullopt;
      }
      it->second.token = ++tokens_;
      return it->second.token;
    });
  }

  /// The reload `token` of `key` failed at `now`: keep serving the old value and start
  /// no new reload of it before now + retry_after.
  void failed(const Key& key, std::uint64_t token, TimePoint now,
              std::chrono::nanoseconds retry_after) {
    keys_.with([&](auto& keys) {
      if (auto it = keys.find(key); it != keys.end() && it->second.token == token) {
        it->second.token = 0;
        it->second.retry_at = saturating_add(now, retry_after);
      }
      if (keys.size() > 1024) {  // forget failures of keys nobody reads any more
        std::erase_if(keys, [&](const auto& kv) {
          return kv.second.token == 0 && kv.second.retry_at <= now;
        });
      }
    });
  }

  /// A load result for `key` is about to be cached; `current` says whether the key was
  /// not written since the load started. A refresh (`token` set) is current only if it
  /// is still the key's newest reload. A refresh's own result, or a fresh current load,
  /// ends the key's refresh state. Returns whether the result may be cached.
  bool settle(const Key& key, std::optional<std::uint64_t> token, bool current) {
    return keys_.with([&](auto& keys) {
      auto it = keys.find(key);
      const bool mine = token && it != keys.end() && it->second.token == *token;
      const bool cacheable = token ? current && mine : current;
      if (it != keys.end() && (mine || (!token && current))) keys.erase(it);
      return cacheable;
    });
  }

  /// The key changed: a pending refresh is superseded, a retry delay forgotten.
  void forget(const Key& key) { keys_.erase(key); }

  void clear() { keys_.clear(); }

 private:
  struct state {
    std::uint64_t token = 0;  // of the reload in flight; 0 = none (it failed)
    TimePoint retry_at{};     // after a failure: no new reload before this
  };
  locked_key_map<Key, state, Hasher> keys_;
  std::uint64_t tokens_ = 0;  // guarded by keys_' lock
};

}  // namespace outgrow::detail
