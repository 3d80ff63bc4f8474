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
//   outgrow::shard_router<std::uint64_t, outgrow::hash_mod<>>
//   users(outgrow::hash_mod<>(4)); outgrow::shard_id s = users.route(user_id); // any
//   thread auto batches = users.group_by_shard(ids);                      // one batch per
//   shard auto total = users.scatter_gather(ids, count_orders, sum, pool.get_executor());
//   outgrow::reshard_plan plan = users.plan(outgrow::hash_mod<>(5));  // dry run
//   fmt::print("{}\n", plan);              // moved_fraction=0.8: the textbook's pain
//   users.apply(outgrow::hash_mod<>(5));   // then switch
//   fmt::print("{}\n", users.load_report());                       // hot shards
//   for (auto& k : users.hot_keys(10)) fmt::print("{} {}\n", k.key, k.count);
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
#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <latch>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/post.hpp>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/snapshot.hpp>
#include <outgrow/detail/radix_index.hpp>
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

namespace detail {
inline shard_id checked_shard_count(std::string_view primitive, std::uint64_t n) {
  require_in_range(primitive, "shards", n, std::uint64_t{1}, std::uint64_t{1'000'000});
  return static_cast<shard_id>(n);
}

/// Rethrows a config_error from a primitive built internally under the name of the
/// one the user configured: "hash_ring: vnodes ... must be ..." becomes
/// "consistent_shards: hash_ring: vnodes ... must be ...", with primitive() the outer
/// one and field() "hash_ring: vnodes ...".
[[noreturn]] inline void rethrow_as(std::string_view outer, const config_error& e) {
  const std::string inner_field = fmt::format("{}: {}", e.primitive(), e.field());
  const std::string_view what = e.what();
  const std::string prefix = fmt::format("{} must be ", inner_field);
  std::string_view rest = what;
  if (rest.substr(0, prefix.size()) == prefix) rest.remove_prefix(prefix.size());
  const std::size_t got = rest.rfind(", got ");
  if (got == std::string_view::npos) throw config_error(outer, inner_field, rest, "?");
  throw config_error(outer, inner_field, rest.substr(0, got), rest.substr(got + 6));
}

/// Merges per-(from, to) shares into shard_moves.
class move_accumulator {
 public:
  void add(shard_id from, shard_id to, double share, std::string_view what_if_new) {
    if (from == to) return;
    auto [it, inserted] = index_.try_emplace({from, to}, moves_.size());
    if (inserted) {
      moves_.push_back({std::string(what_if_new), from, to, 0.0});
    }
    moves_[it->second].fraction += share;
  }
  std::vector<shard_move> take() { return std::move(moves_); }

 private:
  std::map<std::pair<shard_id, shard_id>, std::size_t> index_;
  std::vector<shard_move> moves_;
};
}  // namespace detail

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
  explicit hash_mod(std::uint32_t shards, Hasher hasher = {})
      : hash_mod(hash_mod_config{.shards = shards}, std::move(hasher)) {}
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
    const std::uint64_t n = config_.shards, m = next.config_.shards;
    const std::uint64_t lcm = std::lcm(n, m);
    reshard_plan plan{.shards_before = n, .shards_after = m};
    detail::move_accumulator acc;
    const bool exact = lcm <= (std::uint64_t{1} << 24);
    const std::uint64_t units = exact ? lcm : 1'000'000;
    std::uint64_t moved = 0;
    for (std::uint64_t r = 0; r < units; ++r) {
      const std::uint64_t h = exact ? r : sample_hash(r);
      const auto from = static_cast<shard_id>(h % n), to = static_cast<shard_id>(h % m);
      if (from != to) {
        ++moved;
        acc.add(from, to, 1.0 / static_cast<double>(units),
                fmt::format("keys with hash % {} == {} (mod {})", n, from, m));
      }
    }
    plan.moves = acc.take();
    for (auto& mv : plan.moves) {
      mv.what = fmt::format("hash % {} == {} and hash % {} == {}", n, mv.from, m, mv.to);
    }
    plan.moved_fraction = static_cast<double>(moved) / static_cast<double>(units);
    plan.exact = exact;
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
/// one for evenly cut ranges — then scans them (benchmarks/routing_bench.cpp has the
/// ratio to std::map::upper_bound); other bounds use a branch-free binary search.
template <class Bound, class Compare = std::less<>>
class range_shards {
 public:
  explicit range_shards(std::vector<Bound> split_points, Compare compare = {})
      : range_shards(split_points, identity_owners(split_points.size()),
                     std::move(compare)) {}

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
      for (const Bound& b : splits_) keys_.push_back(radix_key(b));
      index_.build(keys_);
    }
  }

  /// The range index of `key`: the number of split points <= key.
  template <class K>
  [[nodiscard]] std::size_t range_of(const K& key) const noexcept {
    const Bound* base = splits_.data();
    std::size_t n = splits_.size();
    if (n == 0) return 0;
    // Branch-free upper_bound: after the loop, base points at the last split <= key,
    // or at the first split if none is.
    while (n > 1) {
      const std::size_t half = n / 2;
      base = compare_(key, base[half]) ? base : base + half;
      n -= half;
    }
    return static_cast<std::size_t>(base - splits_.data()) + (compare_(key, *base) ? 0 : 1);
  }

  template <class K>
  [[nodiscard]] shard_id route(const K& key) const noexcept {
    if constexpr (radix_search && std::is_integral_v<K> &&
                  std::is_signed_v<K> == std::is_signed_v<Bound>) {
      return owners_[index_.upper_bound(keys_, radix_key(key))];
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
    // Walk the union of split points; between consecutive points both owners are fixed.
    std::vector<const Bound*> points;
    points.reserve(splits_.size() + next.splits_.size());
    std::size_t i = 0, j = 0;
    while (i < splits_.size() || j < next.splits_.size()) {
      if (j == next.splits_.size() ||
          (i < splits_.size() && compare_(splits_[i], next.splits_[j]))) {
        points.push_back(&splits_[i++]);
      } else if (i == splits_.size() || compare_(next.splits_[j], splits_[i])) {
        points.push_back(&next.splits_[j++]);
      } else {
        points.push_back(&splits_[i++]);
        ++j;
      }
    }
    auto bound_text = [](const Bound* b, bool lower) -> std::string {
      if (b == nullptr) return lower ? "-inf" : "+inf";
      if constexpr (fmt::is_formattable<Bound>::value) {
        return fmt::format("{}", *b);
      } else {
        return "<bound>";
      }
    };
    struct span_move {
      const Bound* lower;  // nullptr = -inf
      const Bound* upper;  // nullptr = +inf
      shard_id from, to;
    };
    std::vector<span_move> spans;
    const Bound* lower = nullptr;
    std::size_t ra = 0, rb = 0;  // the current range index in each table
    auto equal = [&](const Bound& a, const Bound& b) {
      return !compare_(a, b) && !compare_(b, a);
    };
    for (std::size_t p = 0; p <= points.size(); ++p) {
      const Bound* upper = p < points.size() ? points[p] : nullptr;
      const shard_id from = owners_[ra], to = next.owners_[rb];
      if (from != to) {
        if (!spans.empty() && spans.back().upper == lower && spans.back().from == from &&
            spans.back().to == to) {
          spans.back().upper = upper;  // adjacent: extend
        } else {
          spans.push_back({lower, upper, from, to});
        }
      }
      if (upper == nullptr) break;
      if (ra < splits_.size() && equal(*upper, splits_[ra])) ++ra;
      if (rb < next.splits_.size() && equal(*upper, next.splits_[rb])) ++rb;
      lower = upper;
    }
    for (const auto& sm : spans) {
      plan.moves.push_back({fmt::format("keys in [{}, {})", bound_text(sm.lower, true),
                                        bound_text(sm.upper, false)),
                            sm.from, sm.to});
    }
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

  /// Order-preserving map of an integer onto uint64 (signed: flip the sign bit).
  template <class I>
  static std::uint64_t radix_key(I v) noexcept {
    if constexpr (std::is_signed_v<I>) {
      return static_cast<std::uint64_t>(static_cast<std::int64_t>(v)) ^
             (std::uint64_t{1} << 63);
    } else {
      return static_cast<std::uint64_t>(v);
    }
  }

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
  directory_shards(std::uint32_t shards, shard_id default_shard,
                   std::vector<std::pair<Key, shard_id>> entries = {})
      : shard_count_(detail::checked_shard_count("directory_shards", shards)),
        default_shard_(default_shard) {
    require_in_range("directory_shards", "default_shard", default_shard, 0U, shards - 1U);
    for (auto& [key, shard] : entries) assign(std::move(key), shard);
  }

  /// Pins `key` to `shard` (replacing an earlier entry).
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
    auto label = [](const Key& k) -> std::string {
      if constexpr (fmt::is_formattable<Key>::value) {
        return fmt::format("key {}", k);
      } else {
        return "a directory entry";
      }
    };
    for (const auto& [key, shard] : table_) {
      const shard_id to = next.route(key);
      if (to != shard) plan.moves.push_back({label(key), shard, to});
    }
    for (const auto& [key, shard] : next.table_) {
      if (!table_.contains(key) && shard != default_shard_) {
        plan.moves.push_back({label(key), default_shard_, shard});
      }
    }
    if (default_shard_ != next.default_shard_) {
      plan.moves.push_back(
          {"every key not in the directory", default_shard_, next.default_shard_});
    }
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
    for (const auto& [e, s] : entities_) {
      const shard_id to = next.route_entity(e);
      if (to != s) plan.moves.push_back({fmt::format("entity {}", e), s, to});
    }
    for (const auto& [e, s] : next.entities_) {
      const bool known = std::any_of(entities_.begin(), entities_.end(),
                                     [&](const auto& p) { return p.first == e; });
      if (!known && s != default_shard_) {
        plan.moves.push_back({fmt::format("entity {}", e), default_shard_, s});
      }
    }
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
  /// A placement that cannot hold N shards (e.g. a hash_ring over its 8M-point cap)
  /// throws config_error naming consistent_shards: "consistent_shards: hash_ring: ...".
  explicit consistent_shards(std::uint32_t shards)
      : consistent_shards(make(detail::checked_shard_count("consistent_shards", shards))) {}

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
    detail::move_accumulator acc;
    if constexpr (requires { P::arc_moves(placement_, next.placement_); }) {
      for (const auto& m : P::arc_moves(placement_, next.placement_)) {
        acc.add(m.from, m.to, m.fraction, "hash ring arcs");
      }
      plan.exact = true;
    } else {
      constexpr std::size_t samples = 1'000'000;
      for (std::size_t i = 0; i < samples; ++i) {
        const std::uint64_t h = sample_hash(i);
        acc.add(route_hash(h), next.route_hash(h), 1.0 / samples, "hash ranges");
      }
      plan.exact = false;
      plan.sample_size = samples;
    }
    plan.moves = acc.take();
    double moved = 0.0;
    for (const auto& m : plan.moves) moved += m.fraction;
    plan.moved_fraction = moved;
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

namespace detail {
template <class Key, bool Trackable = key_hasher<xxh3_hasher, Key>&& std::copyable<Key>&&
                         std::equality_comparable<Key>>
struct hot_keys_of {
  using type = std::nullptr_t;
};
template <class Key>
struct hot_keys_of<Key, true> {
  using type = std::unique_ptr<hot_key_tracker<Key>>;
};
}  // namespace detail

template <class Key, shard_strategy<Key> Strategy>
class shard_router {
 public:
  using key_type = Key;
  using strategy_type = Strategy;

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
  requires std::convertible_to < std::ranges::range_reference_t<R>,
  const Key& >
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
  template <std::ranges::input_range Keys, class Fn, class Merge, class Executor>
  auto scatter_gather(const Keys& keys, Fn&& fn, Merge&& merge,
                      const Executor& executor) const {
    using part = std::invoke_result_t<Fn&, shard_id, std::span<const Key>>;
    auto batches = group_by_shard(keys);
    std::vector<std::optional<part>> parts(batches.size());
    std::vector<std::exception_ptr> errors(batches.size());
    std::latch done(static_cast<std::ptrdiff_t>(batches.size()));
    for (std::size_t i = 0; i < batches.size(); ++i) {
      boost::asio::post(executor, [&, i] {
        try {
          parts[i].emplace(fn(batches[i].shard, std::span<const Key>(batches[i].keys)));
        } catch (...) {
          errors[i] = std::current_exception();
        }
        done.count_down();
      });
    }
    done.wait();
    return finish(std::move(parts), errors, std::forward<Merge>(merge));
  }

  /// Sequential scatter_gather in the calling thread.
  template <std::ranges::input_range Keys, class Fn, class Merge>
  auto scatter_gather(const Keys& keys, Fn&& fn, Merge&& merge) const {
    using part = std::invoke_result_t<Fn&, shard_id, std::span<const Key>>;
    auto batches = group_by_shard(keys);
    std::vector<std::optional<part>> parts(batches.size());
    std::vector<std::exception_ptr> errors(batches.size());
    for (std::size_t i = 0; i < batches.size(); ++i) {
      parts[i].emplace(fn(batches[i].shard, std::span<const Key>(batches[i].keys)));
    }
    return finish(std::move(parts), errors, std::forward<Merge>(merge));
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
      detail::move_accumulator acc;
      std::size_t n = 0, moved = 0;
      for (const Key& k : sample) {
        const auto from = static_cast<shard_id>(st->strategy.route(k));
        const auto to = static_cast<shard_id>(next.route(k));
        ++n;
        if (from != to) {
          ++moved;
          acc.add(from, to, 1.0, "sample keys");
        }
      }
      auto measured = acc.take();
      for (auto& m : measured) m.fraction /= static_cast<double>(n);
      if (p.moves.empty()) {
        p.moves = std::move(measured);
      } else {
        // Fill the analytic moves' fractions from the measured (from, to) shares,
        // split evenly between moves of one pair.
        for (const auto& m : measured) {
          std::size_t same = 0;
          for (const auto& a : p.moves) same += (a.from == m.from && a.to == m.to) ? 1 : 0;
          for (auto& a : p.moves) {
            if (a.from == m.from && a.to == m.to) {
              a.fraction = m.fraction / static_cast<double>(same);
            }
          }
        }
        for (auto& a : p.moves) {
          if (std::isnan(a.fraction)) a.fraction = 0.0;
        }
      }
      p.moved_fraction = static_cast<double>(moved) / static_cast<double>(n);
      p.sample_size = n;
    }
    return p;
  }

  /// Switches to `next` (routing never blocks) and returns the load report of the
  /// topology it replaces; load counters start at zero for the new one.
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

  template <class Part, class Merge>
  static auto finish(std::vector<std::optional<Part>> parts,
                     const std::vector<std::exception_ptr>& errors, Merge&& merge) {
    for (const auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
    std::vector<Part> out;
    out.reserve(parts.size());
    for (auto& p : parts) out.push_back(std::move(*p));
    return std::forward<Merge>(merge)(std::move(out));
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
    auto out = fmt::format_to(ctx.out(), "reshard plan {} -> {} shards: ", p.shards_before,
                              p.shards_after);
    if (std::isnan(p.moved_fraction)) {
      out = fmt::format_to(out, "moved fraction unknown (pass sample keys)");
    } else {
      out = fmt::format_to(
          out, "{:.1f}% of keys move ({})", 100.0 * p.moved_fraction,
          p.exact ? "exact" : fmt::format("measured on {} keys", p.sample_size));
    }
    for (const auto& m : p.moves) {
      out = fmt::format_to(out, "\n  {} -> {}: ", m.from, m.to);
      out = std::isnan(m.fraction) ? fmt::format_to(out, "   ?   ")
                                   : fmt::format_to(out, "{:5.2f}%", 100.0 * m.fraction);
      out = fmt::format_to(out, "  {}", m.what);
    }
    return out;
  }
};
