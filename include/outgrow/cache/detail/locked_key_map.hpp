// outgrow/cache/detail/locked_key_map.hpp — per-key bookkeeping under one mutex.
//
// An unordered_map guarded by its own mutex, for the small per-key side tables of
// tiered_cache (the negative cache, refresh-ahead's reloads in flight): with() runs a
// function on the map under the lock; erase() and clear() are the common cases.
#pragma once

#include <mutex>
#include <unordered_map>

namespace outgrow::detail {

template <class Key, class T, class Hasher>
class locked_key_map {
 public:
  using map_type = std::unordered_map<Key, T, Hasher>;

  /// f(map) under the lock; returns what f returns.
  template <class F>
  decltype(auto) with(F&& f) {
    std::lock_guard lock(mutex_);
    return f(map_);
  }
  void erase(const Key& key) {
    with([&](map_type& m) { m.erase(key); });
  }
  void clear() {
    with([](map_type& m) { m.clear(); });
  }

 private:
  std::mutex mutex_;
  map_type map_;
};

}  // namespace outgrow::detail
