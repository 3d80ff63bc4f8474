// outgrow/cache/backing_store.hpp — the source of truth behind a tiered_cache.
//
// What: the `backing_store` concept (load / store / erase one key) and its two optional
// batch capabilities, `backing_store_with_load_batch` (used by tiered_cache::get_all)
// and `backing_store_with_store_batch` (used by write-behind flushes).
// When: you put a database, a service or a file behind a tiered_cache: write a struct
// with the three members below; the cache calls nothing else.
//
//   struct users_db {
//     using key_type = std::string;
//     using mapped_type = user;
//     std::optional<user> load(const std::string& id);  // nullopt = not found
//     void store(const std::string& id, const user& u);  // throws on failure
//     void erase(const std::string& id);                  // throws on failure
//   };
//   static_assert(outgrow::backing_store<users_db>);
//
// Trade-offs: the concept asks for the smallest interface (no TTLs, no metrics: the
// cache keeps those); batches are optional because many stores have no batch call.
// Thread-safety: the cache calls the store from every thread that reads or writes and
// from its executor: a store must be thread-safe.
// Complexity / measured cost: none of its own (a concept); each call costs what the
// store costs.
#pragma once

#include <concepts>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace outgrow {

/// The source of truth behind the tiers. Smallest conforming store:
///
///   struct kv_store {
///     using key_type = int;
///     using mapped_type = std::string;
///     std::optional<std::string> load(const int& k);        // nullopt = not found
///     void store(const int& k, const std::string& v);        // throws on failure
///     void erase(const int& k);                              // throws on failure
///   };
///
/// Optional: `std::vector<std::optional<mapped_type>> load_batch(std::span<const
/// key_type>)` (one result per key, in order) and `void store_batch(std::span<const
/// std::pair<key_type, mapped_type>>)` (all or nothing; throws on failure). A store may
/// declare `using hasher = ...;` for the cache's internal key maps (default std::hash).
template <class S>
concept backing_store =
    requires(S& s, const typename S::key_type& k, const typename S::mapped_type& v) {
      typename S::key_type;
      typename S::mapped_type;
      { s.load(k) } -> std::same_as<std::optional<typename S::mapped_type>>;
      s.store(k, v);
      s.erase(k);
    };

template <class S>
concept backing_store_with_load_batch =
    backing_store<S> && requires(S& s, std::span<const typename S::key_type> keys) {
      {
        s.load_batch(keys)
      } -> std::same_as<std::vector<std::optional<typename S::mapped_type>>>;
    };

template <class S>
concept backing_store_with_store_batch =
    backing_store<S> &&
    requires(
        S& s,
        std::span<const std::pair<typename S::key_type, typename S::mapped_type>> items) {
      s.store_batch(items);
    };

}  // namespace outgrow
