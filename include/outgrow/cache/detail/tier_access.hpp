// outgrow/cache/detail/tier_access.hpp — how tiered_cache reaches its tiers.
//
// guarded_tier wraps a tier reference and calls it under a mutex unless tier_traits
// says the tier is thread-safe; lookup() returns a tier_hit with the entry's write
// time and expiry when the tier reports them (cache_tier_with_entries), which
// promotion and refresh-ahead need. Also: the store's hasher for the cache's key maps
// and the erase_if capability check.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include <outgrow/cache/tier.hpp>

namespace outgrow::detail {

template <class Store, class = void>
struct store_hasher {
  using type = std::hash<typename Store::key_type>;
};
template <class Store>
struct store_hasher<Store, std::void_t<typename Store::hasher>> {
  using type = typename Store::hasher;
};

template <class Key, class Value>
struct key_value_predicate {
  bool operator()(const Key&, const Value&) const { return false; }
};

template <class T>
concept tier_with_erase_if =
    requires(T& t, key_value_predicate<typename T::key_type, typename T::mapped_type> p) {
      { t.erase_if(p) } -> std::convertible_to<std::size_t>;
    };

/// A found entry: its value, the tier it came from, and its times when known.
template <class Value, class TimePoint>
struct tier_hit {
  Value value;
  std::size_t tier = 0;
  bool timed = false;
  TimePoint written{};
  TimePoint expires = TimePoint::max();
};

/// A tier reference, called under a mutex unless tier_traits says it is thread-safe.
template <class T, class TimePoint>
class guarded_tier {
 public:
  explicit guarded_tier(T& t) : tier_(t) {}
  guarded_tier(const guarded_tier&) = delete;
  guarded_tier& operator=(const guarded_tier&) = delete;

  template <class F>
  decltype(auto) with(F&& f) const {
    if constexpr (tier_traits<T>::thread_safe) {
      return f(tier_);
    } else {
      std::lock_guard lock(mutex_);
      return f(tier_);
    }
  }

  std::optional<tier_hit<typename T::mapped_type, TimePoint>> lookup(
      const typename T::key_type& key) const {
    using hit = tier_hit<typename T::mapped_type, TimePoint>;
    if constexpr (cache_tier_with_entries<T>) {
      using entry_times = decltype(tier_.get_entry(key)->expires);
      if constexpr (std::is_convertible_v<entry_times, TimePoint>) {
        auto e = with([&](T& t) { return t.get_entry(key); });
        if (!e) return std::nullopt;
        return hit{std::move(e->value), 0, true, TimePoint(e->written),
                   TimePoint(e->expires)};
      }
    }
    auto v = with([&](T& t) { return t.get(key); });
    if (!v) return std::nullopt;
    return hit{std::move(*v), 0, false, TimePoint{}, TimePoint::max()};
  }

  void put(const typename T::key_type& key, const typename T::mapped_type& value,
           std::optional<std::chrono::nanoseconds> ttl) const {
    with([&](T& t) { return ttl ? t.put(key, value, *ttl) : t.put(key, value); });
  }
  void erase(const typename T::key_type& key) const {
    with([&](T& t) { return t.erase(key); });
  }
  void clear() const {
    with([&](T& t) { t.clear(); });
  }
  cache_metrics metrics() const {
    return with(
        [&](T& t) { return static_cast<cache_metrics>(std::as_const(t).metrics()); });
  }
  T& get() const noexcept { return tier_; }

 private:
  T& tier_;
  mutable std::mutex mutex_;
};

}  // namespace outgrow::detail
