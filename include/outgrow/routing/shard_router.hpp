// outgrow/routing/shard_router.hpp — route keys to shards, plan resharding, spot hot
// shards.
//
// The textbook's sharding strategies behind one router, interchangeable as a template
// parameter, with the operations a sharded data layer needs:
//
//   | strategy                  | key → shard                                          |
//   |---------------------------|------------------------------------------------------|
//   | hash_mod                  | hash(key) % N (or key % N for integers: the textbook)|
//   | range_shards<Bound>       | sorted split points; a key equal to a split point    |
//   |                           | belongs to the range above it ([lower, upper))       |
//   | directory_shards<Key>     | explicit key → shard table, with a default shard     |
//   | geo_shards<Inner>         | region → shard group, then Inner within the group    |
//   | entity_shards             | entity type → database (vertical partitioning)       |
//   | consistent_shards<P>      | any placement policy over shard ids (ring, jump, ...)|
//   | redis_cluster_slots       | CRC16 mod 16384 with {hash tags}, as Redis Cluster   |
//
// clang-format off
//   outgrow::shard_router<std::uint64_t, outgrow::hash_mod<>> users(
//       outgrow::hash_mod<>(4));
//   outgrow::shard_id s = users.route(user_id);                  // any thread
//   auto batches = users.group_by_shard(ids);                     // one batch per shard
//   auto total = users.scatter_gather(ids, count_orders, sum, pool.get_executor());
//   outgrow::reshard_plan plan = users.plan(outgrow::hash_mod<>(5));  // dry run
//   fmt::print("{}\n", plan);              // moved_fraction=0.8: the textbook's pain
//   users.apply(outgrow::hash_mod<>(5));   // then switch
//   fmt::print("{}\n", users.load_report());                     // hot shards
//   for (auto& k : users.hot_keys(10)) fmt::print("{} {}\n", k.key, k.count);
// clang-format on
//
// Resharding plans: `plan(next)` compares the live strategy with `next` without
// changing anything and lists what moves from which shard to which — residue classes
// (hash_mod), slot ranges (redis_cluster_slots), hash arcs (consistent), key ranges
// (range_shards), directory entries, regions or entity types — with the fraction of
// keys that moves. For hash-based strategies the fraction is exact for uniformly hashed
// keys; for the others it is measured on the sample keys you pass (`plan(next, keys)`).
//
// Strategy concept (`shard_strategy<S, Key>`), smallest conforming type:
//   struct everything_on_zero {
//     outgrow::shard_id route(const auto&) const noexcept { return 0; }
//     std::size_t shard_count() const noexcept { return 1; }
//   };
// A strategy may add `reshard_plan diff(const S& next) const` for analytic plans.
//
// Thread-safety: route/group_by_shard/scatter_gather/plan/load_report/hot_keys from any
// thread; apply() publishes a new strategy (routing never locks, see core/snapshot.hpp)
// and starts fresh load counters for the new topology. Strategies themselves are
// immutable values.
// Complexity: route = the strategy's lookup + one relaxed counter increment (+ the
// hot-key tracker's O(log k) when enabled); group_by_shard O(keys); plan depends on the
// strategy (hash_mod O(lcm(N, M)), consistent O(samples), range O(splits)).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/snapshot.hpp>
#include <outgrow/routing/detail/radix_index.hpp>
#include <outgrow/routing/detail/shard_plan.hpp>
#include <outgrow/routing/detail/shard_scatter.hpp>
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/hot_keys.hpp>
#include <outgrow/routing/placement.hpp>
#include <outgrow/routing/redis_cluster_slots.hpp>

namespace outgrow {

using shard_id = std::uint32_t;

// ---- resharding plans ------------------------------------------------------------

/// One unit of the key space that changes shard: what it is, from, to, and its share of
/// keys (NaN where the strategy cannot know it without sample keys).
struct shard_move {
  std::string what{};
  shard_id from = 0;
  shard_id to = 0;
  double fraction = std::numeric_limits<double>::quiet_NaN();
};

/// A dry-run resharding plan: see shard_router::plan.
struct reshard_plan {
  std::size_t shards_before = 0;
  std::size_t shards_after = 0;
  std::vector<shard_move> moves{};
  /// Fraction of keys that change shard (NaN if unknown: no analytic figure and no
  /// sample keys given).
  double moved_fraction = std::numeric_limits<double>::quiet_NaN();
  /// True when moved_fraction is exact for uniformly hashed keys; false when measured
  /// on `sample_size` sample keys.
  bool exact = false;
  std::size_t sample_size = 0;
};

// ---- the strategy concept ----------------------------------------------------------

template <class S, class Key>
concept shard_strategy = std::copy_constructible<S> && requires(const S& s, const Key& k) {
  { s.route(k) } -> std::convertible_to<shard_id>;
  { s.shard_count() } -> std::convertible_to<std::size_t>;
};

// ---- hash_mod ---------------------------------------------------------------------

struct hash_mod_config {
  std::uint32_t shards = 1;
  /// false: integer keys route by key % shards, exactly the textbook's `user_id % N`
  /// (sequential ids spread perfectly, but any pattern in ids shows in the shards).
  /// true: hash first (strings always are).
  bool hash_keys = true;
};

/// key % N sharding. Moving from N to M shards moves about 1 - gcd-ish share of keys:
/// 4 → 5 moves 80 %, the number that makes the textbook say resharding is painful.
template <class Hasher = xxh3_hasher>
class hash_mod {
 public:
  /// Throws: config_error if shards is not in [1, 1000000].
  explicit hash_mod(std::uint32_t shards, Hasher hasher = {})
      : hash_mod(hash_mod_config{.shards = shards}, std::move(hasher)) {}
  /// Throws: config_error if config.shards is not in [1, 1000000].
  explicit hash_mod(hash_mod_config config, Hasher hasher = {})
      : config_(config), hasher_(std::move(hasher)) {
    detail::checked_shard_count("hash_mod", config.shards);
  }

  template <class Key>
  requires key_hasher<Hasher, Key>
  [[nodiscard]] shard_id route(const Key& key) const noexcept {
    if constexpr (std::is_integral_v<Key>) {
      if (!config_.hash_keys) {
        return static_cast<shard_id>(static_cast<std::uint64_t>(key) % config_.shards);
      }
    }
    return route_hash(static_cast<std::uint64_t>(hasher_(key)));
  }
  [[nodiscard]] shard_id route_hash(std::uint64_t h) const noexcept {
    return static_cast<shard_id>(h % config_.shards);
  }
  [[nodiscard]] std::size_t shard_count() const noexcept { return config_.shards; }
  [[nodiscard]] const hash_mod_config& config() const noexcept { return config_; }

  /// Exact plan: a key's shard depends only on hash % lcm(N, M); every residue class
  /// is counted once (for lcm up to 2^24; beyond that, 1M uniformly spread samples).
  [[nodiscard]] reshard_plan diff(const hash_mod& next) const {
    reshard_plan plan{.shards_before = config_.shards, .shards_after = next.config_.shards};
    detail::hash_mod_moves(plan, config_.shards, next.config_.shards);
    return plan;
  }

 private:
  hash_mod_config config_;
  Hasher hasher_;
};

// ---- range_shards ---------------------------------------------------------------------

/// Range sharding over sorted split points s_0 < s_1 < ... < s_{k-1}: range 0 is
/// (-inf, s_0), range i is [s_{i-1}, s_i), range k is [s_{k-1}, +inf). A key equal to a
/// split point belongs to the range above it (split points are inclusive lower
/// bounds, as in Bigtable/HBase/CockroachDB range starts). Each range maps to a shard
/// (`owners`, k + 1 entries; by default range i → shard i).
///
/// Lookup: for integer bounds with std::less, a radix index over the split points
/// (detail/radix_index.hpp) finds the candidate split points in O(1) expected — about
/// one for evenly cut ranges; split points crowded in one corner of the key space get
/// a further index level per dense bucket — then scans them
/// (benchmarks/routing_bench.cpp has the ratio to std::map::upper_bound); other bounds
/// use a branch-free binary search.
template <class Bound, class Compare = std::less<>>
class range_shards {
 public:
  /// Range i goes to shard i.
  /// Throws: config_error as the constructor below.
  explicit range_shards(std::vector<Bound> split_points, Compare compare = {})
      : range_shards(split_points, identity_owners(split_points.size()),
                     std::move(compare)) {}

  /// Throws: config_error if owners.size() != split_points.size() + 1, a split point
  /// is NaN, split points are not strictly increasing, or the largest owner is
  /// 1000000 or more.
  range_shards(std::vector<Bound> split_points, std::vector<shard_id> owners,
               Compare compare = {})
      : splits_(std::move(split_points)),
        owners_(std::move(owners)),
        compare_(std::move(compare)) {
    require(owners_.size() == splits_.size() + 1, "range_shards", "owners.size()",
            fmt::format("split_points.size() + 1 = {}", splits_.size() + 1),
            owners_.size());
    if constexpr (std::is_floating_point_v<Bound>) {
      // NaN compares false with everything: every key would land in one range.
      for (std::size_t i = 0; i < splits_.size(); ++i) {
        require(!std::isnan(splits_[i]), "range_shards", "split_points",
                "numbers (NaN orders nothing)", fmt::format("entry {} is NaN", i));
      }
    }
    for (std::size_t i = 1; i < splits_.size(); ++i) {
      require(compare_(splits_[i - 1], splits_[i]), "range_shards", "split_points",
              "strictly increasing (sorted, no duplicate or overlapping ranges)",
              fmt::format("entry {} not above entry {}", i, i - 1));
    }
    shard_id max_owner = 0;
    for (shard_id o : owners_) max_owner = std::max(max_owner, o);
    shard_count_ =
        detail::checked_shard_count("range_shards", std::uint64_t{max_owner} + 1);
    if constexpr (radix_search) {
      keys_.reserve(splits_.size());
      for (const Bound& b : splits_) keys_.push_back(detail::radix_key(b));
      index_.build(keys_);
    }
  }

  /// The range index of `key`: the number of split points <= key.
  template <class K>
  [[nodiscard]] std::size_t range_of(const K& key) const noexcept {
    return detail::split_upper_bound(splits_, compare_, key);
  }

  template <class K>
  [[nodiscard]] shard_id route(const K& key) const noexcept {
    if constexpr (radix_search && std::is_integral_v<K> &&
                  std::is_signed_v<K> == std::is_signed_v<Bound>) {
      return owners_[index_.upper_bound(keys_, detail::radix_key(key))];
    } else {
      return owners_[range_of(key)];
    }
  }
  [[nodiscard]] std::size_t shard_count() const noexcept { return shard_count_; }
  [[nodiscard]] const std::vector<Bound>& split_points() const noexcept { return splits_; }
  [[nodiscard]] const std::vector<shard_id>& owners() const noexcept { return owners_; }

  /// The key ranges that change shard (fractions need sample keys: NaN here).
  [[nodiscard]] reshard_plan diff(const range_shards& next) const {
    reshard_plan plan{.shards_before = shard_count_, .shards_after = next.shard_count_};
    detail::range_moves(plan, splits_, owners_, next.splits_, next.owners_, compare_);
    return plan;
  }

 private:
  static std::vector<shard_id> identity_owners(std::size_t splits) {
    std::vector<shard_id> owners(splits + 1);
    std::iota(owners.begin(), owners.end(), shard_id{0});
    return owners;
  }

  static constexpr bool radix_search = std::is_integral_v<Bound> &&
                                       !std::is_same_v<Bound, bool> &&
                                       std::is_same_v<Compare, std::less<>>;

  std::vector<Bound> splits_;
  std::vector<shard_id> owners_;
  [[no_unique_address]] Compare compare_;
  shard_id shard_count_ = 1;
  std::vector<std::uint64_t> keys_;  // radix_key of each split point (integer bounds)
  detail::radix_index index_;
};

// ---- directory_shards -----------------------------------------------------------------

/// An explicit key → shard table (a lookup service / directory), with a default shard
/// for keys not in it. Use it for tenants pinned to dedicated shards, or in front of
/// another strategy during a migration.
template <class Key, class Hash = std::hash<Key>>
class directory_shards {
 public:
  /// Throws: config_error if shards is not in [1, 1000000] or default_shard or an
  /// entry's shard is not in [0, shards).
  directory_shards(std::uint32_t shards, shard_id default_shard,
                   std::vector<std::pair<Key, shard_id>> entries = {})
      : shard_count_(detail::checked_shard_count("directory_shards", shards)),
        default_shard_(default_shard) {
    require_in_range("directory_shards", "default_shard", default_shard, 0U, shards - 1U);
    for (auto& [key, shard] : entries) assign(std::move(key), shard);
  }

  /// Pins `key` to `shard` (replacing an earlier entry).
  /// Throws: config_error if shard is not in [0, shard_count()).
  directory_shards& assign(Key key, shard_id shard) {
    require_in_range("directory_shards", "shard", shard, 0U, shard_count_ - 1);
    table_.insert_or_assign(std::move(key), shard);
    return *this;
  }
  directory_shards& erase(const Key& key) {
    table_.erase(key);
    return *this;
  }

  [[nodiscard]] shard_id route(const Key& key) const {
    const auto it = table_.find(key);
    return it == table_.end() ? default_shard_ : it->second;
  }
  [[nodiscard]] std::size_t shard_count() const noexcept { return shard_count_; }
  [[nodiscard]] std::size_t size() const noexcept { return table_.size(); }
  [[nodiscard]] shard_id default_shard() const noexcept { return default_shard_; }

  /// The entries (and the default) that change shard.
  [[nodiscard]] reshard_plan diff(const directory_shards& next) const {
    reshard_plan plan{.shards_before = shard_count_, .shards_after = next.shard_count_};
    detail::directory_moves(plan, table_, default_shard_, next, next.table_,
                            next.default_shard_);
    return plan;
  }

 private:
  shard_id shard_count_;
  shard_id default_shard_;
  std::unordered_map<Key, shard_id, Hash> table_;
};

// ---- geo_shards and entity_shards -------------------------------------------------------

/// A key with a region (geo sharding) or an entity type (vertical partitioning).
template <class Id = std::string_view>
struct regional_key {
  std::string_view region;
  Id id;
};
template <class Id = std::string_view>
struct entity_key {
  std::string_view entity;
  Id id;
};

/// Geo sharding: each region owns a group of consecutive shards; inside a group, an
/// Inner strategy (hash_mod, consistent_shards, ...) spreads the region's keys. Keys of
/// an unknown region go to the default region's group (the first group unless set).
template <class Inner>
class geo_shards {
 public:
  struct group {
    std::string region;
    Inner inner;  ///< routes within the group; its shard_count() is the group's size
  };

  /// Throws: config_error if groups is empty, a region repeats, the groups hold more
  /// than 1000000 shards in all, or default_region (when set) is not a group's region.
  explicit geo_shards(std::vector<group> groups, std::string default_region = {})
      : groups_(std::move(groups)) {
    require(!groups_.empty(), "geo_shards", "groups", "non-empty", 0);
    shard_id first = 0;
    for (std::size_t i = 0; i < groups_.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        require(groups_[j].region != groups_[i].region, "geo_shards", "region",
                "unique across groups", groups_[i].region);
      }
      first_.push_back(first);
      first += static_cast<shard_id>(groups_[i].inner.shard_count());
    }
    shard_count_ = detail::checked_shard_count("geo_shards", first);
    if (!default_region.empty()) {
      default_group_ = group_index(default_region);
      require(default_group_ != npos, "geo_shards", "default_region",
              "one of the groups' regions", default_region);
    }
  }

  template <class Id>
  [[nodiscard]] shard_id route(const regional_key<Id>& key) const {
    std::size_t g = group_index(key.region);
    if (g == npos) g = default_group_;
    return first_[g] + static_cast<shard_id>(groups_[g].inner.route(key.id));
  }
  [[nodiscard]] std::size_t shard_count() const noexcept { return shard_count_; }
  /// Shards [first, first + size) of `region`'s group; nullopt for an unknown region.
  [[nodiscard]] std::optional<std::pair<shard_id, shard_id>> shards_of(
      std::string_view region) const {
    const std::size_t g = group_index(region);
    if (g == npos) return std::nullopt;
    return std::pair{first_[g],
                     first_[g] + static_cast<shard_id>(groups_[g].inner.shard_count())};
  }

  /// Regions whose group moves or resizes (fractions need sample keys).
  [[nodiscard]] reshard_plan diff(const geo_shards& next) const {
    reshard_plan plan{.shards_before = shard_count_, .shards_after = next.shard_count_};
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const auto after = next.shards_of(groups_[g].region);
      const auto before = shards_of(groups_[g].region);
      if (after != before) {
        plan.moves.push_back(
            {fmt::format("region {}: shards [{}, {}) -> {}", groups_[g].region,
                         before->first, before->second,
                         after ? fmt::format("[{}, {})", after->first, after->second)
                               : std::string("the default group")),
             before->first, after ? after->first : next.first_[next.default_group_]});
      }
    }
    return plan;
  }

 private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::size_t group_index(std::string_view region) const noexcept {
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      if (groups_[g].region == region) return g;
    }
    return npos;
  }

  std::vector<group> groups_;
  std::vector<shard_id> first_;
  std::size_t default_group_ = 0;
  shard_id shard_count_ = 0;
};

/// Vertical partitioning: each entity type (users, orders, products, ...) lives in its
/// own database. Unknown entity types go to `default_shard`.
class entity_shards {
 public:
  /// Throws: config_error if shards is not in [1, 1000000], default_shard or a
  /// placement's shard is not in [0, shards), or an entity is listed twice.
  entity_shards(std::uint32_t shards,
                std::vector<std::pair<std::string, shard_id>> placement,
                shard_id default_shard = 0)
      : shard_count_(detail::checked_shard_count("entity_shards", shards)),
        default_shard_(default_shard) {
    require_in_range("entity_shards", "default_shard", default_shard, 0U, shards - 1U);
    for (auto& [entity, shard] : placement) {
      require_in_range("entity_shards", "shard", shard, 0U, shards - 1U);
      for (const auto& [e, s] : entities_) {
        require(e != entity, "entity_shards", "entity", "listed once", entity);
      }
      entities_.emplace_back(std::move(entity), shard);
    }
  }

  template <class Id>
  [[nodiscard]] shard_id route(const entity_key<Id>& key) const noexcept {
    return route_entity(key.entity);
  }
  [[nodiscard]] shard_id route_entity(std::string_view entity) const noexcept {
    for (const auto& [e, s] : entities_) {
      if (e == entity) return s;
    }
    return default_shard_;
  }
  [[nodiscard]] std::size_t shard_count() const noexcept { return shard_count_; }

  [[nodiscard]] reshard_plan diff(const entity_shards& next) const {
    reshard_plan plan{.shards_before = shard_count_, .shards_after = next.shard_count_};
    detail::entity_moves(plan, entities_, default_shard_, next, next.entities_);
    return plan;
  }

 private:
  shard_id shard_count_;
  shard_id default_shard_;
  std::vector<std::pair<std::string, shard_id>> entities_;
};

// ---- consistent_shards
// -------------------------------------------------------------------

/// Consistent sharding over any placement policy whose nodes are shard ids
/// (ring_placement<shard_id>, jump_placement<shard_id>, maglev_placement<shard_id>,
/// rendezvous_placement<shard_id>). Shards are numbered 0..N-1.
template <placement P>
requires std::same_as<typename P::node_type, shard_id>
class consistent_shards {
 public:
  /// N shards 0..N-1 with weight 1, placed by a default-configured P.
  /// Throws: config_error if shards is not in [1, 1000000], or if P cannot hold N
  /// shards (e.g. a hash_ring over its 8M-point cap), naming consistent_shards:
  /// "consistent_shards: hash_ring: ...".
  explicit consistent_shards(std::uint32_t shards)
      : consistent_shards(make(detail::checked_shard_count("consistent_shards", shards))) {}

  /// Shards are placement_policy's nodes; shard_count() is the largest id + 1.
  /// Throws: config_error if placement_policy has no nodes or its largest id is
  /// 1000000 or more.
  explicit consistent_shards(P placement_policy) : placement_(std::move(placement_policy)) {
    require(placement_.size() > 0, "consistent_shards", "nodes", "at least one shard", 0);
    shard_id max_node = 0;
    for (const auto& wn : placement_.nodes()) max_node = std::max(max_node, wn.node);
    // Shard ids are 0..shard_count()-1: the largest node id bounds the count (checked:
    // an id of UINT32_MAX would wrap it to 0).
    shard_count_ =
        detail::checked_shard_count("consistent_shards", std::uint64_t{max_node} + 1);
  }

  template <class Key>
  [[nodiscard]] shard_id route(const Key& key) const noexcept {
    return *placement_.lookup(key);  // never null: at least one shard
  }
  [[nodiscard]] shard_id route_hash(std::uint64_t h) const noexcept {
    return *placement_.lookup_hash(h);
  }
  [[nodiscard]] std::size_t shard_count() const noexcept { return shard_count_; }
  [[nodiscard]] const P& placement_policy() const noexcept { return placement_; }

  /// Exact hash arcs for rings; 1M uniformly spread samples for other policies.
  [[nodiscard]] reshard_plan diff(const consistent_shards& next) const {
    reshard_plan plan{.shards_before = shard_count_, .shards_after = next.shard_count_};
    detail::placement_moves(plan, placement_, next.placement_);
    return plan;
  }

 private:
  static P make(std::uint32_t shards) {
    std::vector<shard_id> ids(shards);
    std::iota(ids.begin(), ids.end(), shard_id{0});
    try {
      return P(ids);
    } catch (const config_error& e) {  // name the primitive the user configured
      detail::rethrow_as("consistent_shards", e);
    }
  }
  P placement_;
  shard_id shard_count_ = 0;
};

/// Analytic plan for Redis Cluster slot tables: the slot ranges that change owner.
[[nodiscard]] inline reshard_plan diff(const redis_cluster_slots& before,
                                       const redis_cluster_slots& after) {
  reshard_plan plan{.shards_before = before.shard_count(),
                    .shards_after = after.shard_count()};
  const slot_move_plan slots = before.slot_moves(after);
  for (const slot_move& m : slots.moves) {
    plan.moves.push_back({fmt::format("slots {}-{}", m.first, m.last), m.from, m.to,
                          static_cast<double>(m.size()) / redis_cluster_slot_count});
  }
  plan.moved_fraction = slots.moved_fraction;
  plan.exact = true;
  return plan;
}

// ---- the router
// ----------------------------------------------------------------------------

struct shard_router_config {
  /// Count requests per shard (one relaxed atomic increment per route). Default on.
  bool count_shard_load = true;
  /// Track the heaviest keys in this many counters (Space-Saving; 0 = off, the
  /// default, since it takes a striped mutex per route). Needs a Key that
  /// xxh3_hasher can hash (strings, integers).
  std::size_t hot_key_capacity = 0;
};

/// One shard's keys, from group_by_shard.
template <class Key>
struct shard_batch {
  shard_id shard;
  std::vector<Key> keys;
};

template <class Key, shard_strategy<Key> Strategy>
class shard_router {
 public:
  using key_type = Key;
  using strategy_type = Strategy;

  /// Throws: config_error if config.hot_key_capacity is not in [0, 1000000] (or is not
  /// 0 for a Key xxh3_hasher cannot hash), or strategy.shard_count() is above 1000000.
  explicit shard_router(Strategy strategy, shard_router_config config = {})
      : config_(config), current_(make_state(std::move(strategy))) {
    // Checked here, not by the hot_key_tracker built below, so that the error names
    // shard_router and the field the user set.
    require_in_range("shard_router", "hot_key_capacity", config_.hot_key_capacity,
                     std::size_t{0}, std::size_t{1'000'000});
    if (config_.hot_key_capacity > 0) {
      if constexpr (tracks_hot_keys) {
        hot_keys_ = std::make_unique<hot_key_tracker<Key>>(
            hot_key_config{.capacity = config_.hot_key_capacity});
      } else {
        require(false, "shard_router", "hot_key_capacity",
                "0 for keys xxh3_hasher cannot hash", config_.hot_key_capacity);
      }
    }
  }

  /// The shard that owns `key`. Never throws, never locks.
  [[nodiscard]] shard_id route(const Key& key) const {
    const state& st = current_.local();
    const shard_id shard = static_cast<shard_id>(st.strategy.route(key));
    if (config_.count_shard_load) st.load->record(shard);
    if constexpr (tracks_hot_keys) {
      if (hot_keys_) hot_keys_->record(key);
    }
    return shard;
  }

  /// The keys grouped by shard (ascending shard id; shards with no key are omitted),
  /// all routed against one snapshot of the strategy. Does not count load.
  template <std::ranges::input_range R>
  requires std::convertible_to<std::ranges::range_reference_t<R>, const Key&>
  [[nodiscard]] std::vector<shard_batch<Key>> group_by_shard(const R& keys) const {
    const auto st = current_.load();
    std::vector<std::vector<Key>> per_shard(st->strategy.shard_count());
    for (const Key& k : keys) {
      const auto s = static_cast<std::size_t>(st->strategy.route(k));
      if (s >= per_shard.size()) per_shard.resize(s + 1);
      per_shard[s].push_back(k);
    }
    std::vector<shard_batch<Key>> out;
    for (std::size_t s = 0; s < per_shard.size(); ++s) {
      if (!per_shard[s].empty())
        out.push_back({static_cast<shard_id>(s), std::move(per_shard[s])});
    }
    return out;
  }

  /// Cross-shard query: runs `fn(shard, std::span<const Key> keys)` once per shard that
  /// owns any of `keys`, in parallel on `executor` (e.g. a boost::asio::thread_pool's
  /// executor), waits for all, then returns `merge(std::vector<R>)` with the parts in
  /// ascending shard order. If any fn throws, the first exception (in shard order) is
  /// rethrown after every task finished. Do not pass an executor whose only thread is
  /// the caller's (the wait would deadlock); use the overload without one instead.
  /// Throws: the first exception (in shard order) that fn threw, or what merge throws.
  template <std::ranges::input_range Keys, class Fn, class Merge, class Executor>
  auto scatter_gather(const Keys& keys, Fn&& fn, Merge&& merge,
                      const Executor& executor) const {
    return detail::scatter_gather_on<Key>(group_by_shard(keys), fn,
                                          std::forward<Merge>(merge), executor);
  }

  /// Sequential scatter_gather in the calling thread.
  /// Throws: the first exception fn throws (later shards do not run), or what merge
  /// throws.
  template <std::ranges::input_range Keys, class Fn, class Merge>
  auto scatter_gather(const Keys& keys, Fn&& fn, Merge&& merge) const {
    return detail::scatter_gather_here<Key>(group_by_shard(keys), fn,
                                            std::forward<Merge>(merge));
  }

  /// Dry run: what moving to `next` would move, without changing the router. Uses the
  /// strategy's analytic diff where it has one; when `sample` keys are given, the
  /// moved fraction (and, for strategies with no analytic fraction, each move's
  /// fraction) is measured on them instead of left NaN.
  template <std::ranges::input_range R = std::span<const Key>>
  [[nodiscard]] reshard_plan plan(const Strategy& next, const R& sample = {}) const {
    const auto st = current_.load();
    reshard_plan p;
    if constexpr (requires { st->strategy.diff(next); }) {
      p = st->strategy.diff(next);
    } else if constexpr (requires { diff(st->strategy, next); }) {
      p = diff(st->strategy, next);
    } else {
      p.shards_before = st->strategy.shard_count();
      p.shards_after = next.shard_count();
    }
    if (!p.exact && std::ranges::begin(sample) != std::ranges::end(sample)) {
      detail::measure_plan_on_sample<Key>(p, sample, st->strategy, next);
    }
    return p;
  }

  /// Switches to `next` (routing never blocks) and returns the load report of the
  /// topology it replaces; load counters start at zero for the new one.
  /// Throws: config_error if next.shard_count() is above 1000000 (nothing changes).
  shard_load_report apply(Strategy next) {
    std::lock_guard lock(write_mutex_);
    auto old = current_.load();
    current_.publish(make_state(std::move(next)));
    return old->load->report();
  }

  /// Per-shard request counts since the last apply(), with peak and hot shards.
  [[nodiscard]] shard_load_report load_report() const {
    return current_.load()->load->report();
  }

  /// The heaviest keys routed so far (empty unless hot_key_capacity > 0).
  [[nodiscard]] auto hot_keys(std::size_t n) const {
    if constexpr (tracks_hot_keys) {
      return hot_keys_ ? hot_keys_->top(n) : std::vector<hot_key<Key>>{};
    } else {
      return std::vector<int>{};
    }
  }

  /// The live strategy (a pinned snapshot).
  [[nodiscard]] std::shared_ptr<const Strategy> strategy() const {
    auto st = current_.load();
    return std::shared_ptr<const Strategy>(st, &st->strategy);
  }
  [[nodiscard]] std::size_t shard_count() const {
    return current_.local().strategy.shard_count();
  }

 private:
  static constexpr bool tracks_hot_keys =
      !std::is_same_v<typename detail::hot_keys_of<Key>::type, std::nullptr_t>;

  struct state {
    Strategy strategy;
    std::unique_ptr<shard_load_counters> load;
  };
  static std::shared_ptr<const state> make_state(Strategy s) {
    const std::size_t n = std::max<std::size_t>(1, s.shard_count());
    // The load counters' own limit, checked here so that the error names shard_router.
    require_in_range("shard_router", "strategy.shard_count()", n, std::size_t{1},
                     std::size_t{1'000'000});
    return std::make_shared<const state>(
        state{std::move(s), std::make_unique<shard_load_counters>(n)});
  }

  shard_router_config config_;
  std::mutex write_mutex_;
  published<state> current_;
  typename detail::hot_keys_of<Key>::type hot_keys_{};
};

}  // namespace outgrow

/// Prints a plan as a small table: one line per move, then the moved fraction.
template <>
struct fmt::formatter<outgrow::reshard_plan> {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    return ctx.begin();
  }
  template <class FormatContext>
  auto format(const outgrow::reshard_plan& p, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    return outgrow::detail::format_plan(ctx.out(), p);
  }
};
