// outgrow/cache/detail/negative_cache.hpp — remembers "not found" for a while.
//
// tiered_cache's negative cache: a bounded map key -> expiry of the keys the store
// reported missing, so repeated reads of a missing key do not reach the store until
// negative_ttl passes. Off (every call a no-op) when the TTL is empty. When full, a
// put first drops expired entries and then, if still full, is not cached: the bound
// is never exceeded and no live entry is evicted for a new one.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

#include <outgrow/cache/detail/locked_key_map.hpp>
#include <outgrow/core/deadline.hpp>

namespace outgrow::detail {

/// Thread-safe (one mutex). `clock` must outlive it.
template <class Key, class Clock, class Hasher>
class negative_cache {
 public:
  using time_point = typename Clock::time_point;

  negative_cache(const Clock& clock, std::optional<std::chrono::nanoseconds> ttl,
                 std::size_t capacity)
      : clock_(clock), ttl_(ttl), capacity_(capacity) {}

  /// True while `key` has an unexpired "not found" entry (an expired one is dropped).
  bool hit(const Key& key) {
    if (!ttl_) return false;
    return entries_.with([&](auto& entries) {
      auto it = entries.find(key);
      if (it == entries.end()) return false;
      if (it->second <= clock_.now()) {
        entries.erase(it);
        return false;
      }
      return true;
    });
  }

  /// Records "not found" for `key` until now + ttl (if there is room).
  void put(const Key& key) {
    if (!ttl_) return;
    const time_point now = clock_.now();
    entries_.with([&](auto& entries) {
      if (entries.size() >= capacity_ && !entries.contains(key)) {
        std::erase_if(entries, [&](const auto& kv) { return kv.second <= now; });
        if (entries.size() >= capacity_) return;
      }
      entries.insert_or_assign(key, saturating_add(now, *ttl_));
    });
  }

  void erase(const Key& key) {
    if (ttl_) entries_.erase(key);
  }

  void clear() { entries_.clear(); }

 private:
  const Clock& clock_;
  const std::optional<std::chrono::nanoseconds> ttl_;
  const std::size_t capacity_;
  locked_key_map<Key, time_point, Hasher> entries_;
};

}  // namespace outgrow::detail
