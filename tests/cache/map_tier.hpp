// A minimal std::unordered_map tier for the tiered_cache / write_policy tests:
// satisfies cache_tier_with_entries and offers erase_if, with TTLs read from a
// manual_clock, an optional capacity (evicting the oldest write) and a counter of
// every operation, so tests can check exactly what the tiered cache did to each tier.
// Single-threaded (no `thread_safe` flag): tiered_cache guards it with a mutex.
#pragma once

#include <outgrow/cache/tier.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <unordered_map>
#include <utility>

namespace test_support {

template <class K, class V>
class map_tier {
 public:
  using key_type = K;
  using mapped_type = V;
  using time_point = outgrow::manual_clock::time_point;
  using entry = outgrow::cache_entry<V, time_point>;

  struct options {
    std::size_t capacity = std::numeric_limits<std::size_t>::max();
    std::optional<std::chrono::nanoseconds> default_ttl{};
  };

  explicit map_tier(outgrow::manual_clock clock, options o = {})
      : clock_(std::move(clock)), options_(o) {}

  std::optional<V> get(const K& k) {
    auto e = get_entry(k);
    if (!e) return std::nullopt;
    return std::move(e->value);
  }

  std::optional<entry> get_entry(const K& k) {
    auto it = map_.find(k);
    if (it == map_.end()) {
      ++stats_.misses;
      return std::nullopt;
    }
    if (it->second.expires <= clock_.now()) {
      map_.erase(it);
      ++stats_.expirations;
      ++stats_.misses;
      return std::nullopt;
    }
    ++stats_.hits;
    return it->second;
  }

  bool put(const K& k, V v) {
    return insert(
        k, std::move(v),
        options_.default_ttl ? clock_.now() + *options_.default_ttl : time_point::max());
  }

  bool put(const K& k, V v, std::chrono::nanoseconds ttl) {
    outgrow::require(ttl > std::chrono::nanoseconds::zero(), "map_tier", "put(ttl)",
                     "in (0s, inf)", ttl);
    last_put_ttl = ttl;
    return insert(k, std::move(v), clock_.now() + ttl);
  }

  bool erase(const K& k) {
    ++erases;
    return map_.erase(k) > 0;
  }
  void clear() {
    ++clears;
    map_.clear();
  }
  [[nodiscard]] std::size_t size() const { return map_.size(); }
  [[nodiscard]] outgrow::cache_metrics metrics() const { return stats_; }

  template <class Pred>
  std::size_t erase_if(Pred pred) {
    std::size_t n = 0;
    for (auto it = map_.begin(); it != map_.end();) {
      if (pred(it->first, it->second.value)) {
        it = map_.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    return n;
  }

  // Test helpers: look without counting.
  [[nodiscard]] bool contains(const K& k) const {
    auto it = map_.find(k);
    return it != map_.end() && it->second.expires > clock_.now();
  }
  [[nodiscard]] std::optional<entry> peek(const K& k) const {
    auto it = map_.find(k);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }

  std::size_t erases = 0;
  std::size_t clears = 0;
  std::optional<std::chrono::nanoseconds> last_put_ttl;

 private:
  bool insert(const K& k, V v, time_point expires) {
    ++stats_.puts;
    if (map_.size() >= options_.capacity && !map_.contains(k)) {
      auto oldest = map_.begin();
      for (auto it = map_.begin(); it != map_.end(); ++it) {
        if (it->second.written < oldest->second.written) oldest = it;
      }
      map_.erase(oldest);
      ++stats_.evictions;
    }
    map_.insert_or_assign(k, entry{std::move(v), clock_.now(), expires});
    return true;
  }

  outgrow::manual_clock clock_;
  options options_;
  std::unordered_map<K, entry> map_;
  outgrow::cache_metrics stats_;
};

static_assert(outgrow::cache_tier_with_entries<map_tier<int, int>>);

}  // namespace test_support
