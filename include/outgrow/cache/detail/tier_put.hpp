// outgrow/cache/detail/tier_put.hpp — the put() overloads cache and concurrent_cache share.
//
// Both in-process tiers offer put(key, value) with the config's default_ttl and
// put(key, value, ttl) with the same rule (a TTL must be > 0; "no TTL" is spelled
// std::nullopt) and the same config_error messages. tier_put provides the two
// overloads once (CRTP); the tier supplies store_entry(key, value, optional ttl),
// config().default_ttl and its name for messages (`primitive_name`).
#pragma once

#include <chrono>
#include <optional>
#include <string_view>
#include <utility>

#include <outgrow/core/error.hpp>

namespace outgrow::detail {

/// put(key, value, ttl)'s argument check; returns `ttl`.
/// Throws: config_error if ttl <= 0.
inline std::chrono::nanoseconds checked_put_ttl(std::string_view primitive,
                                                std::chrono::nanoseconds ttl) {
  require(ttl > std::chrono::nanoseconds::zero(), primitive, "ttl",
          "> 0 (put(key, value, ttl))", ttl);
  return ttl;
}

/// A config's default_ttl check (std::nullopt = no expiry).
/// Throws: config_error if default_ttl <= 0.
inline void require_default_ttl(std::string_view primitive,
                                std::optional<std::chrono::nanoseconds> default_ttl) {
  if (default_ttl) {
    require(*default_ttl > std::chrono::nanoseconds::zero(), primitive, "default_ttl",
            "> 0 (or std::nullopt: no expiry)", *default_ttl);
  }
}

/// put(key, value) and put(key, value, ttl) of a tier `Derived` (see the header).
template <class Derived, class Key, class Value>
class tier_put {
 public:
  /// Stores `value` under `key` with config().default_ttl (std::nullopt: no expiry).
  /// Returns whether it was stored (see the tier: cache rejects an entry heavier than
  /// its capacity, concurrent_cache always stores).
  bool put(const Key& key, Value value) {
    Derived& self = static_cast<Derived&>(*this);
    return self.store_entry(key, std::move(value), self.config().default_ttl);
  }

  /// As put(key, value), with a per-entry TTL.
  /// Throws: config_error if ttl <= 0 (the tier is unchanged).
  bool put(const Key& key, Value value, std::chrono::nanoseconds ttl) {
    Derived& self = static_cast<Derived&>(*this);
    return self.store_entry(key, std::move(value),
                            checked_put_ttl(Derived::primitive_name, ttl));
  }

 protected:
  tier_put() = default;
};

}  // namespace outgrow::detail
