// outgrow/admission/keyed_rate_limiter.hpp — one rate limit per key (user, tenant, API
// key, client address) in bounded memory.
//
// What: the rate_limiter's GCRA applied per key: each key gets its own bucket of `burst`
// permits refilled at `permits_per_second`. The state per key is one 64-bit theoretical
// arrival time, kept in `stripes` single-threaded caches (cache/cache.hpp, LRU) behind a
// mutex each, so memory stays bounded by `max_keys` however many keys arrive.
//
// Idle keys cost nothing: an entry is stored with a TTL equal to the time until its
// bucket is full again, and is dropped then — a key that comes back later starts with a
// full bucket, exactly what it would have had. Only when more than `max_keys` keys are
// active within one refill time does LRU eviction forget a partly used bucket (that key
// may then get up to one extra burst); size max_keys to the keys you expect per refill
// time (burst / permits_per_second).
//
// When: per-user or per-tenant quotas, abuse protection per client address, fairness
// between API keys sharing one service.
//
//   outgrow::keyed_rate_limiter<std::string> per_user(
//       {.permits_per_second = 5, .burst = 10, .max_keys = 100'000});
//   if (auto d = per_user.try_acquire(user_id); !d) reply_429(d.retry_after);
//
// Trade-offs: a mutex per decision (on one of `stripes` stripes, chosen by the key's
// hash): about as cheap as a map lookup when uncontended; use rate_limiter for one
// global limit (lock-free). Limits are per process; see the Redis limiter for a fleet.
//
// Thread-safety: every member may be called concurrently. Complexity: O(1) expected per
// decision; memory O(max_keys).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <outgrow/admission/detail/gcra.hpp>
#include <outgrow/admission/rate_limiter.hpp>
#include <outgrow/cache/cache.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

struct keyed_rate_limiter_config {
  /// Average permits per second, per key. (0, 1e9], finite.
  double permits_per_second = 100.0;
  /// Permits a key may take at once after a quiet period. [1, 1e9]; burst /
  /// permits_per_second at most 365 days.
  std::uint64_t burst = 1;
  /// Keys tracked at once (beyond: the least recently used is forgotten). [stripes, 1e9]
  std::size_t max_keys = 100'000;
  /// Independent locks (and caches): 16. [1, 4096]
  std::size_t stripes = 16;
};

struct keyed_rate_limiter_metrics {
  static constexpr std::string_view metrics_name = "keyed_rate_limiter_metrics";
  std::uint64_t admitted = 0;
  std::uint64_t rejected = 0;
  std::uint64_t keys = 0;     ///< keys held now (a full bucket may count until touched)
  std::uint64_t evicted = 0;  ///< partly used buckets forgotten for lack of room

  template <class F>
  void for_each_metric(F&& f) const {
    f("admitted", admitted);
    f("rejected", rejected);
    f("keys", keys);
    f("evicted", evicted);
  }
};

template <class Key, clock_source Clock = coarse_steady_clock, class Hash = std::hash<Key>>
class keyed_rate_limiter {
 public:
  using key_type = Key;
  using clock_type = Clock;

  /// Throws: config_error if a field is out of range.
  explicit keyed_rate_limiter(keyed_rate_limiter_config config = {}, Clock clock = {},
                              Hash hash = {})
      : config_(validated(config)),
        clock_(clock),
        hash_(hash),
        origin_(clock_.now()),
        interval_(detail::gcra::interval_ticks(config_.permits_per_second)),
        capacity_(static_cast<std::int64_t>(config_.burst) * interval_) {
    const std::size_t per_stripe =
        (config_.max_keys + config_.stripes - 1) / config_.stripes;
    stripes_.reserve(config_.stripes);
    for (std::size_t i = 0; i < config_.stripes; ++i) {
      stripes_.push_back(std::make_unique<stripe>(per_stripe, clock, hash));
    }
  }

  /// Takes n permits from `key`'s bucket if available now.
  /// Throws: std::invalid_argument if n > burst (it could never be admitted).
  rate_limit_result try_acquire(const Key& key, std::uint64_t n = 1) {
    if (n > config_.burst) [[unlikely]] {
      throw std::invalid_argument(
          fmt::format("keyed_rate_limiter: a request for {} permits can never be admitted "
                      "(burst is {})",
                      n, config_.burst));
    }
    const auto now_point = clock_.now();
    const std::int64_t now = detail::gcra::since(origin_, now_point);
    const std::int64_t cost = static_cast<std::int64_t>(n) * interval_;
    // Mixed first: std::hash of a pointer or an integer id is often the identity, whose
    // low bits (aligned pointers) would put every key in one stripe.
    stripe& s = *stripes_[hash_to_range(hash_mix(static_cast<std::uint64_t>(hash_(key)), 0),
                                        stripes_.size())];
    std::lock_guard lock(s.mutex);
    const std::int64_t tat = s.tats.get(key).value_or(0);
    const detail::gcra::decision d = detail::gcra::decide(tat, now, cost, capacity_, 0);
    if (!d.admitted) {
      ++s.rejected;
      return {.admitted = false, .retry_after = detail::gcra::from_ticks(d.wait)};
    }
    ++s.admitted;
    // Kept until the bucket is full again (then a missing entry means the same thing).
    s.tats.put(key, d.next,
               std::max<std::chrono::nanoseconds>(detail::gcra::from_ticks(d.next - now),
                                                  std::chrono::nanoseconds{1}));
    return {.admitted = true, .retry_after = std::chrono::nanoseconds::zero()};
  }

  [[nodiscard]] keyed_rate_limiter_metrics metrics() const {
    keyed_rate_limiter_metrics m;
    for (const auto& s : stripes_) {
      std::lock_guard lock(s->mutex);
      m.admitted += s->admitted;
      m.rejected += s->rejected;
      const auto c = s->tats.metrics();
      m.keys += s->tats.size();
      m.evicted += c.evictions;
    }
    return m;
  }

  [[nodiscard]] const keyed_rate_limiter_config& config() const noexcept { return config_; }

  /// Throws: config_error naming the first bad field.
  static void validate(const keyed_rate_limiter_config& c) {
    constexpr std::string_view who = "keyed_rate_limiter";
    detail::gcra::validate_rate(who, c.permits_per_second, c.burst);
    require_in_range(who, "stripes", c.stripes, std::size_t{1}, std::size_t{4096});
    require_in_range(who, "max_keys", c.max_keys, c.stripes, std::size_t{1'000'000'000});
  }

 private:
  using tat_cache = cache<Key, std::int64_t, lru, unit_weigher, Clock, Hash>;
  struct stripe {
    stripe(std::size_t capacity, const Clock& clock, const Hash& hash)
        : tats({.capacity = capacity}, clock, unit_weigher{}, hash) {}
    mutable std::mutex mutex;
    mutable tat_cache tats;
    std::uint64_t admitted = 0;
    std::uint64_t rejected = 0;
  };

  static keyed_rate_limiter_config validated(const keyed_rate_limiter_config& c) {
    validate(c);
    return c;
  }

  const keyed_rate_limiter_config config_;
  Clock clock_;
  Hash hash_;
  const typename Clock::time_point origin_;
  const std::int64_t interval_;
  const std::int64_t capacity_;
  std::vector<std::unique_ptr<stripe>> stripes_;
};

}  // namespace outgrow
