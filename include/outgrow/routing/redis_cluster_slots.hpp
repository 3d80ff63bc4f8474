// outgrow/routing/redis_cluster_slots.hpp — Redis Cluster's key → hash slot → shard rule.
//
// Redis Cluster does not hash keys onto nodes directly: every key belongs to one of
// 16384 hash slots, slot = CRC16-XMODEM(key) mod 16384, and every slot is owned by one
// shard (a master and its replicas). When the key contains a "{hash tag}" — a '{'
// followed later by a '}' with at least one byte between the FIRST '{' and the next
// '}' — only the bytes between them are hashed, so "user:{42}:cart" and
// "user:{42}:orders" share a slot (and can be used together in MULTI or Lua).
// An empty tag ("foo{}{bar}") does not count: the whole key is hashed.
//
// Use this strategy when the shards ARE a Redis Cluster (a client that routes without
// asking the cluster, a proxy, a pre-sharded batch job) or when you want Redis
// Cluster's operational model for your own stores: fixed slots, explicit slot ranges
// per shard, resharding by moving slot ranges. `redis_cluster_hash_slot` agrees with
// the server's `CLUSTER KEYSLOT` byte for byte (tests/integration checks 10,000 keys
// against a real redis-server, including binary and UTF-8 keys).
//
//   std::uint16_t slot = outgrow::redis_cluster_hash_slot("user:{42}:cart");  // 8000
//
//   outgrow::redis_cluster_slots slots(3);        // 0-5460, 5461-10922, 10923-16383,
//                                                 // as `redis-cli --cluster create`
//   std::uint32_t shard = slots.route("user:{42}:cart");   // 1: same shard as "{42}"
//
//   // Mirror a live cluster (from CLUSTER SHARDS / CLUSTER SLOTS), then insist it is
//   // whole; a hole would answer CLUSTERDOWN in Redis:
//   outgrow::redis_cluster_slots live(
//       3, {{0, 5460, 0}, {5461, 10922, 1}, {10923, 16383, 2}});
//   live.validate_complete();                     // config_error on unassigned slots
//
//   auto plan = slots.slot_moves(outgrow::redis_cluster_slots(4));
//   // plan.moves: 4096-5460 0→1, 8192-10922 1→2, 12288-16383 2→3
//   // plan.moved_fraction == 0.5: an even re-split moves half the slots, where
//   // moving 1365-1366 slots from each old shard to the new one moves 0.25.
//
// The even split (`redis_cluster_slots(n)`) reproduces `redis-cli --cluster create`
// with n masters: contiguous ranges in shard order; shard i ends at
// lround(i·s + s − 1), s = 16384 / n, computed in single precision with a running
// float cursor exactly as redis-cli does; the last shard ends at 16383. The remainder
// is thus spread by rounding (3 shards: 5461, 5462, 5461 slots), not handed to the first
// shards; up to 1000 shards, sizes differ by at most one slot. Because redis-cli
// accumulates in float, its boundaries drift from exact rounding from n = 78 on (78
// masters: master 67 ends at 14283, exact rounding says 14282); we follow redis-cli,
// so this table equals a cluster created by redis-cli with the same masters in the same
// order (checked against redis-cli 7.0.15 for n = 3, 4, 5, 7, 78, 100). From n = 7542
// redis-cli's cursor can overrun slot 16383; there we also keep every shard at least
// one slot, so the result is always a partition (sizes then differ by up to 4).
//
// Thread-safety: a value type. Const member functions (route, route_slot, slot_moves,
// ...) may run concurrently; assign() needs exclusive access. To reshard under traffic,
// build the next table and publish it as an immutable snapshot.
// Complexity: route(key) is O(key length) (table-driven CRC16, one byte per step) plus
// one array load; construction, assign(), validate_complete(), ranges() and
// slot_moves() are O(16384) at most. The object holds a 32 KiB table
// (std::array<std::uint16_t, 16384>): keep it on the heap (a snapshot) rather than
// copying it around on hot paths.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>

namespace outgrow {

/// Number of hash slots in a Redis Cluster (fixed by the protocol).
inline constexpr std::uint16_t redis_cluster_slot_count = 16384;

namespace detail {

/// CRC16-XMODEM lookup table: polynomial 0x1021, MSB first.
constexpr std::array<std::uint16_t, 256> make_crc16_xmodem_table() noexcept {
  std::array<std::uint16_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t crc = i << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000U) != 0 ? (crc << 1) ^ 0x1021U : crc << 1;
    }
    table[i] = static_cast<std::uint16_t>(crc & 0xffffU);
  }
  return table;
}

inline constexpr std::array<std::uint16_t, 256> crc16_xmodem_table =
    make_crc16_xmodem_table();

/// Table entry of a slot that no shard owns.
inline constexpr std::uint16_t redis_slot_unassigned = 0xffff;

inline constexpr std::uint32_t redis_slot_mask = redis_cluster_slot_count - 1U;

}  // namespace detail

/// CRC16-XMODEM (CRC-16/XMODEM: poly 0x1021, init 0, no reflection, no final xor), the
/// checksum Redis Cluster hashes keys with. crc16_xmodem("123456789") == 0x31C3.
[[nodiscard]] constexpr std::uint16_t crc16_xmodem(std::string_view bytes) noexcept {
  std::uint32_t crc = 0;
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    crc = ((crc << 8) ^ detail::crc16_xmodem_table[((crc >> 8) ^ byte) & 0xffU]) & 0xffffU;
  }
  return static_cast<std::uint16_t>(crc);
}

/// The Redis Cluster hash slot of `key` (0..16383), identical to `CLUSTER KEYSLOT key`:
/// if the key has a '{' and, after the FIRST '{', a '}' with at least one byte in
/// between, only those bytes are hashed; otherwise (no '{', no '}' after it, or "{}")
/// the whole key is. Keys are byte strings: embedded NULs and non-ASCII bytes count.
[[nodiscard]] constexpr std::uint16_t redis_cluster_hash_slot(
    std::string_view key) noexcept {
  const std::size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const std::size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return static_cast<std::uint16_t>(crc16_xmodem(key) & detail::redis_slot_mask);
}

/// A contiguous run of slots owned by one shard, as CLUSTER SLOTS / CLUSTER SHARDS
/// report them (both ends inclusive).
struct slot_range {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  std::uint32_t shard = 0;

  [[nodiscard]] constexpr std::uint32_t size() const noexcept {
    return static_cast<std::uint32_t>(last) - first + 1U;
  }
  friend bool operator==(const slot_range&, const slot_range&) = default;
};

/// A contiguous run of slots that changes owner between two tables (both ends
/// inclusive). `from` / `to` are redis_cluster_slots::no_shard for unassigned slots.
struct slot_move {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  std::uint32_t from = 0;
  std::uint32_t to = 0;

  [[nodiscard]] constexpr std::uint32_t size() const noexcept {
    return static_cast<std::uint32_t>(last) - first + 1U;
  }
  friend bool operator==(const slot_move&, const slot_move&) = default;
};

/// What resharding from one table to another moves (see redis_cluster_slots::slot_moves).
struct slot_move_plan {
  std::vector<slot_move> moves;   ///< ascending by slot; adjacent runs differ in (from, to)
  std::uint32_t moved_slots = 0;  ///< slots whose owner changes
  /// moved_slots / 16384: the fraction of keys that move when keys spread evenly over
  /// slots (a skewed key space, e.g. one huge hash tag, moves more or less).
  double moved_fraction = 0.0;
};

/// Slot → shard table of a Redis Cluster (see the header comment).
class redis_cluster_slots {
 public:
  /// Returned by route()/route_slot() for a slot no shard owns (or an invalid slot).
  /// Never returned once validate_complete() passes, nor by the even-split constructor.
  static constexpr std::uint32_t no_shard = 0xffff'ffffU;
  /// Most shards a table can have: one slot each.
  static constexpr std::uint32_t max_shards = redis_cluster_slot_count;

  /// Splits the 16384 slots over `shards` shards in contiguous ranges, exactly as
  /// `redis-cli --cluster create` does with that many masters (see the header comment).
  /// Throws: config_error if shards is not in [1, 16384].
  explicit redis_cluster_slots(std::uint32_t shards) : shards_(checked_shards(shards)) {
    // redis-cli: float slots_per_node = 16384 / (float)n; float cursor = 0;
    //            last = lround(cursor + slots_per_node - 1); cursor += slots_per_node.
    const float per_shard =
        static_cast<float>(redis_cluster_slot_count) / static_cast<float>(shards);
    float cursor = 0.0f;
    std::uint32_t first = 0;
    for (std::uint32_t i = 0; i < shards; ++i) {
      long last = std::lround(cursor + per_shard - 1.0f);
      if (last > static_cast<long>(redis_cluster_slot_count) || i == shards - 1) {
        last = redis_cluster_slot_count - 1;
      }
      // Keep one slot for each shard still to come (redis-cli does not; it only
      // matters from n = 7542, where its cursor overruns).
      const long room = static_cast<long>(redis_cluster_slot_count) - 1 -
                        static_cast<long>(shards - 1 - i);
      if (last > room) last = room;
      if (last < static_cast<long>(first)) last = static_cast<long>(first);
      fill(first, static_cast<std::uint32_t>(last), i);
      first = static_cast<std::uint32_t>(last) + 1U;
      cursor += per_shard;
    }
  }

  /// A table with `shards` shards and the given ranges assigned in order (later ranges
  /// overwrite earlier ones). Slots no range covers stay unassigned: call
  /// validate_complete() to insist on a whole table.
  /// Throws: config_error if shards is not in [1, 16384], or as assign().
  redis_cluster_slots(std::uint32_t shards, std::span<const slot_range> ranges)
      : shards_(checked_shards(shards)) {
    for (const slot_range& r : ranges) assign(r.first, r.last, r.shard);
  }

  /// Throws: config_error as the span overload.
  redis_cluster_slots(std::uint32_t shards, std::initializer_list<slot_range> ranges)
      : redis_cluster_slots(shards,
                            std::span<const slot_range>(ranges.begin(), ranges.size())) {}

  /// Gives slots first_slot..last_slot (inclusive) to `shard`, like CLUSTER ADDSLOTSRANGE
  /// (or a finished CLUSTER SETSLOT … NODE migration).
  /// Throws: config_error if a slot is outside [0, 16383], last_slot < first_slot, or
  /// shard >= shard_count() (nothing changes).
  redis_cluster_slots& assign(std::uint32_t first_slot, std::uint32_t last_slot,
                              std::uint32_t shard) {
    constexpr std::uint32_t max_slot = redis_cluster_slot_count - 1U;
    require_in_range(primitive, "first_slot", first_slot, 0U, max_slot);
    require_in_range(primitive, "last_slot", last_slot, 0U, max_slot);
    require(first_slot <= last_slot, primitive, "last_slot",
            fmt::format(">= first_slot ({})", first_slot), last_slot);
    require_in_range(primitive, "shard", shard, 0U, shards_ - 1U);
    fill(first_slot, last_slot, shard);
    return *this;
  }

  /// Checks that the table is whole.
  /// Throws: config_error if any slot is unassigned; the message gives the number of
  /// unassigned slots and the first unassigned range.
  void validate_complete() const {
    if (assigned_ == redis_cluster_slot_count) return;
    std::uint32_t first = 0;
    while (table_[first] != detail::redis_slot_unassigned) ++first;
    std::uint32_t last = first;
    while (last + 1U < redis_cluster_slot_count &&
           table_[last + 1U] == detail::redis_slot_unassigned) {
      ++last;
    }
    throw config_error(primitive, "slots", "all assigned to a shard",
                       fmt::format("{} unassigned (first: {}-{})",
                                   redis_cluster_slot_count - assigned_, first, last));
  }

  /// The shard owning `key`'s hash slot; no_shard if that slot is unassigned.
  [[nodiscard]] std::uint32_t route(std::string_view key) const noexcept {
    return owner(table_[redis_cluster_hash_slot(key)]);
  }

  /// The shard owning `slot`; no_shard if the slot is unassigned or >= 16384.
  [[nodiscard]] std::uint32_t route_slot(std::uint32_t slot) const noexcept {
    return slot < redis_cluster_slot_count ? owner(table_[slot]) : no_shard;
  }

  /// Number of shards (shard indices are 0..shard_count()-1; a shard may own no slot).
  [[nodiscard]] std::uint32_t shard_count() const noexcept { return shards_; }

  /// Number of slots no shard owns (0 for a whole table).
  [[nodiscard]] std::uint32_t unassigned_slots() const noexcept {
    return redis_cluster_slot_count - assigned_;
  }

  /// Slots owned by each shard, indexed by shard.
  [[nodiscard]] std::vector<std::uint32_t> slot_counts() const {
    std::vector<std::uint32_t> counts(shards_, 0);
    for (const std::uint16_t s : table_) {
      if (s != detail::redis_slot_unassigned) ++counts[s];
    }
    return counts;
  }

  /// The assigned slots as maximal contiguous ranges, ascending (the shape of
  /// CLUSTER SLOTS). Feeding them back into the constructor rebuilds this table.
  [[nodiscard]] std::vector<slot_range> ranges() const {
    std::vector<slot_range> out;
    for (std::uint32_t slot = 0; slot < redis_cluster_slot_count; ++slot) {
      const std::uint16_t s = table_[slot];
      if (s == detail::redis_slot_unassigned) continue;
      if (!out.empty() && out.back().shard == s && out.back().last + 1U == slot) {
        out.back().last = static_cast<std::uint16_t>(slot);
      } else {
        out.push_back(
            {static_cast<std::uint16_t>(slot), static_cast<std::uint16_t>(slot), s});
      }
    }
    return out;
  }

  /// The slot ranges whose owner differs in `next` (a dry-run resharding plan: one
  /// CLUSTER SETSLOT … MIGRATING/IMPORTING batch per entry), with the number and
  /// fraction of slots that move. Slots gaining or losing an owner count as moved, with
  /// no_shard on the unassigned side. Shard indices are compared as numbers: renumbering
  /// shards counts as moving their slots.
  [[nodiscard]] slot_move_plan slot_moves(const redis_cluster_slots& next) const {
    slot_move_plan plan;
    for (std::uint32_t slot = 0; slot < redis_cluster_slot_count; ++slot) {
      const std::uint32_t from = owner(table_[slot]);
      const std::uint32_t to = owner(next.table_[slot]);
      if (from == to) continue;
      ++plan.moved_slots;
      if (!plan.moves.empty()) {
        slot_move& prev = plan.moves.back();
        if (prev.from == from && prev.to == to && prev.last + 1U == slot) {
          prev.last = static_cast<std::uint16_t>(slot);
          continue;
        }
      }
      plan.moves.push_back(
          {static_cast<std::uint16_t>(slot), static_cast<std::uint16_t>(slot), from, to});
    }
    plan.moved_fraction = static_cast<double>(plan.moved_slots) /
                          static_cast<double>(redis_cluster_slot_count);
    return plan;
  }

  /// The raw slot → shard table; unassigned slots hold 0xffff.
  [[nodiscard]] const std::array<std::uint16_t, redis_cluster_slot_count>& table()
      const noexcept {
    return table_;
  }

  friend bool operator==(const redis_cluster_slots&, const redis_cluster_slots&) = default;

 private:
  static constexpr std::string_view primitive = "redis_cluster_slots";

  static std::uint32_t checked_shards(std::uint32_t shards) {
    require_in_range(primitive, "shards", shards, 1U, max_shards);
    return shards;
  }

  static constexpr std::uint32_t owner(std::uint16_t entry) noexcept {
    return entry == detail::redis_slot_unassigned ? no_shard : entry;
  }

  // Preconditions (checked by callers): first <= last < 16384, shard < shards_.
  void fill(std::uint32_t first, std::uint32_t last, std::uint32_t shard) noexcept {
    const auto entry = static_cast<std::uint16_t>(shard);
    for (std::uint32_t slot = first; slot <= last; ++slot) {
      if (table_[slot] == detail::redis_slot_unassigned) ++assigned_;
      table_[slot] = entry;
    }
  }

  std::uint32_t shards_;
  std::uint32_t assigned_ = 0;
  std::array<std::uint16_t, redis_cluster_slot_count> table_ = make_unassigned_table();

  static constexpr std::array<std::uint16_t, redis_cluster_slot_count>
  make_unassigned_table() noexcept {
    std::array<std::uint16_t, redis_cluster_slot_count> t{};
    t.fill(detail::redis_slot_unassigned);
    return t;
  }
};

}  // namespace outgrow
