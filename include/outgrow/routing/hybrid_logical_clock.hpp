// outgrow/routing/hybrid_logical_clock.hpp — order writes across primaries; resolve
// conflicting concurrent writes to the same key.
//
// What: a hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014; used by
// CockroachDB and YugabyteDB) gives every write a timestamp (wall time, logical counter,
// node id) that stays close to physical time, never goes backwards, and respects
// causality: a write made after seeing another one gets a larger timestamp, even when
// the writer's physical clock is behind. When two primaries (multi-primary / multi-
// master replication) accept writes to the same key concurrently, a conflict resolution
// policy decides what both keep: last_writer_wins (the larger timestamp wins; node id
// breaks ties, so every replica picks the same winner in any arrival order) or a user
// merge hook (merge_with: merge(older, newer) for values that combine, e.g. set union,
// counters, shopping carts).
//
//   outgrow::hybrid_logical_clock<> clock(/*node_id=*/1);     // system_clock time
//   outgrow::versioned<std::string> mine{"blue", clock.now()};     // a local write
//   // a write replicated from the other primary arrives:
//   clock.update(theirs.stamp);                                     // causality
//   auto kept = outgrow::resolve(mine, theirs, outgrow::last_writer_wins{});
//   auto cart = outgrow::resolve(a, b, outgrow::merge_with{[](const cart& older,
//       const cart& newer) { return union_of(older, newer); }});
//
// When: multi-primary setups that must converge without coordination. Both policies
// are deterministic functions of the two versions, so replicas that exchange updates
// in different orders end with the same value (for merge_with: if merge is
// deterministic). Defaults: max_offset 500 ms (CockroachDB's default maximum clock
// offset) — try_update() refuses remote timestamps further ahead than that.
//
// Policy concept `conflict_resolver<R, V>`; the smallest conforming type:
//   struct keep_local {
//     template <class V>
//     outgrow::versioned<V> operator()(const outgrow::versioned<V>& l,
//                                      const outgrow::versioned<V>&) const {
//       return l;
//     }
//   };
//
// Thread-safety: hybrid_logical_clock is safe from any thread (a mutex around two
// integers); resolvers are stateless (merge_with calls the user's function).
// Complexity: O(1) per timestamp; resolve = one comparison (+ the merge).
#pragma once

#include <algorithm>
#include <chrono>
#include <compare>
#include <concepts>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>

namespace outgrow {

/// An HLC timestamp: ordered by (wall_ns, logical, node).
struct hybrid_timestamp {
  std::int64_t wall_ns = 0;   ///< physical part: nanoseconds since the Clock's epoch
  std::uint32_t logical = 0;  ///< orders events within one wall_ns
  std::uint32_t node = 0;     ///< the writer's node id (tie-breaker)
  friend constexpr auto operator<=>(const hybrid_timestamp&,
                                    const hybrid_timestamp&) = default;
};

/// Wall-clock time source (std::chrono::system_clock): HLCs of different machines must
/// share an epoch, which steady clocks do not.
struct system_clock_source {
  using duration = std::chrono::system_clock::duration;
  using time_point = std::chrono::system_clock::time_point;
  [[nodiscard]] time_point now() const noexcept { return std::chrono::system_clock::now(); }
};
static_assert(clock_source<system_clock_source>);

struct hybrid_logical_clock_config {
  /// Largest accepted lead of a remote timestamp over local physical time in
  /// try_update(): 500 ms, CockroachDB's default max offset. (0, 1 h]
  std::chrono::nanoseconds max_offset = std::chrono::milliseconds{500};
};

template <clock_source Clock = system_clock_source>
class hybrid_logical_clock {
 public:
  /// Throws: config_error if config.max_offset is not in (0s, 1h].
  explicit hybrid_logical_clock(std::uint32_t node_id,
                                hybrid_logical_clock_config config = {}, Clock clock = {})
      : node_(node_id), config_(validated(config)), clock_(std::move(clock)) {}

  /// A timestamp for a local event or a message being sent: larger than every
  /// timestamp this clock returned or saw before.
  /// Throws: std::overflow_error if the clock already stands at the largest
  /// representable timestamp (wall_ns = INT64_MAX with an exhausted counter).
  [[nodiscard]] hybrid_timestamp now() {
    const std::int64_t pt = physical();
    std::lock_guard lock(mutex_);
    if (pt > wall_) {
      wall_ = pt;
      logical_ = 0;
    } else {
      advance(wall_, std::uint64_t{logical_} + 1);
    }
    return {wall_, logical_, node_};
  }

  /// Merges a received timestamp (a replicated write) into this clock and returns the
  /// receive event's timestamp, which is larger than both `remote` and everything
  /// before it here. Never goes backwards: when the logical counter would pass
  /// UINT32_MAX, the wall component advances by 1 ns and the counter restarts at 0 (the
  /// HLC paper bounds the counter; a 1 ns step keeps the clock within max_offset of
  /// physical time in any realistic use). Prefer try_update() for timestamps from the
  /// network.
  /// Throws: std::overflow_error if no larger timestamp exists (wall_ns = INT64_MAX and
  /// the counter exhausted).
  hybrid_timestamp update(const hybrid_timestamp& remote) {
    const std::int64_t pt = physical();
    std::lock_guard lock(mutex_);
    return update_locked(remote, pt);
  }

  /// update(), unless `remote` is more than max_offset ahead of local physical time
  /// (a misbehaving clock) or no larger timestamp exists: then nothing changes and the
  /// result is empty. Any remote value is accepted as input (untrusted data: a wall
  /// time of INT64_MIN or a counter of UINT32_MAX included); it never throws.
  [[nodiscard]] std::optional<hybrid_timestamp> try_update(const hybrid_timestamp& remote) {
    const std::int64_t pt = physical();
    // remote.wall_ns > pt keeps the subtraction in range (pt >= INT64_MIN + 1 there).
    if (remote.wall_ns > pt && remote.wall_ns - pt > config_.max_offset.count()) {
      return std::nullopt;
    }
    std::lock_guard lock(mutex_);
    const std::int64_t wall = wall_;
    const std::uint32_t logical = logical_;
    try {
      return update_locked(remote, pt);
    } catch (const std::overflow_error&) {
      wall_ = wall;
      logical_ = logical;
      return std::nullopt;
    }
  }

  /// The last timestamp issued (node id included), without advancing.
  [[nodiscard]] hybrid_timestamp last() const {
    std::lock_guard lock(mutex_);
    return {wall_, logical_, node_};
  }
  [[nodiscard]] std::uint32_t node() const noexcept { return node_; }

 private:
  static hybrid_logical_clock_config validated(hybrid_logical_clock_config c) {
    require(
        c.max_offset > std::chrono::nanoseconds{0} && c.max_offset <= std::chrono::hours{1},
        "hybrid_logical_clock", "max_offset", "in (0s, 1h]", c.max_offset);
    return c;
  }

  std::int64_t physical() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               clock_.now().time_since_epoch())
        .count();
  }

  hybrid_timestamp update_locked(const hybrid_timestamp& m, std::int64_t pt) {
    const std::int64_t before = wall_;
    const std::int64_t wall = std::max({before, m.wall_ns, pt});
    if (wall == before && wall == m.wall_ns) {
      advance(wall, std::uint64_t{std::max(logical_, m.logical)} + 1);
    } else if (wall == before) {
      advance(wall, std::uint64_t{logical_} + 1);
    } else if (wall == m.wall_ns) {
      advance(wall, std::uint64_t{m.logical} + 1);
    } else {
      wall_ = wall;
      logical_ = 0;
    }
    return {wall_, logical_, node_};
  }

  /// Sets (wall, logical), carrying a counter past UINT32_MAX into the wall component.
  void advance(std::int64_t wall, std::uint64_t logical) {
    if (logical <= std::numeric_limits<std::uint32_t>::max()) {
      wall_ = wall;
      logical_ = static_cast<std::uint32_t>(logical);
      return;
    }
    if (wall == std::numeric_limits<std::int64_t>::max()) {
      throw std::overflow_error("hybrid_logical_clock: no timestamp after " +
                                fmt::format("{}.{}", wall, logical - 1));
    }
    wall_ = wall + 1;
    logical_ = 0;
  }

  const std::uint32_t node_;
  hybrid_logical_clock_config config_;
  Clock clock_;
  mutable std::mutex mutex_;
  std::int64_t wall_ = 0;
  std::uint32_t logical_ = 0;
};

// ---- conflict resolution ----------------------------------------------------------------

/// A value with the HLC timestamp of the write that produced it.
template <class V>
struct versioned {
  V value;
  hybrid_timestamp stamp;
  friend bool operator==(const versioned&, const versioned&) = default;
};

/// Decides the value both primaries keep when `local` and `remote` conflict.
template <class R, class V>
concept conflict_resolver =
    requires(const R& r, const versioned<V>& local, const versioned<V>& remote) {
      { r(local, remote) } -> std::convertible_to<versioned<V>>;
    };

/// The write with the larger HLC timestamp wins (node id breaks exact ties).
struct last_writer_wins {
  template <class V>
  [[nodiscard]] versioned<V> operator()(const versioned<V>& local,
                                        const versioned<V>& remote) const {
    return remote.stamp > local.stamp ? remote : local;
  }
};

/// User merge hook: merge(older_value, newer_value) -> V, ordered by timestamp so the
/// result does not depend on which side is local. The merged value carries the newer
/// timestamp. Identical timestamps are the same write: kept as is.
template <class Merge>
struct merge_with {
  Merge merge;
  template <class V>
  requires std::invocable<const Merge&, const V&, const V&>
  [[nodiscard]] versioned<V> operator()(const versioned<V>& local,
                                        const versioned<V>& remote) const {
    if (local.stamp == remote.stamp) return local;
    const bool remote_newer = remote.stamp > local.stamp;
    const versioned<V>& older = remote_newer ? local : remote;
    const versioned<V>& newer = remote_newer ? remote : local;
    return {static_cast<V>(merge(older.value, newer.value)), newer.stamp};
  }
};
template <class Merge>
merge_with(Merge) -> merge_with<Merge>;

/// Applies a conflict resolution policy to two versions of one key.
template <class V, conflict_resolver<V> R>
[[nodiscard]] versioned<V> resolve(const versioned<V>& local, const versioned<V>& remote,
                                   const R& resolver) {
  return resolver(local, remote);
}

}  // namespace outgrow

template <>
struct fmt::formatter<outgrow::hybrid_timestamp> {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    return ctx.begin();
  }
  template <class FormatContext>
  auto format(const outgrow::hybrid_timestamp& t, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(), "{}.{}@{}", t.wall_ns, t.logical, t.node);
  }
};
