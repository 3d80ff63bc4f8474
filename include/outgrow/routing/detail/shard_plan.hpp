// outgrow/routing/detail/shard_plan.hpp — how shard_router's strategies compute plans.
//
// The engine behind routing/shard_router.hpp's resharding plans and strategies: the
// shard-count check and error renaming every strategy shares, the (from, to) move
// accumulator, each strategy's diff (hash_mod's exact residue classes, range_shards'
// split-point walk, directory and entity tables, consistent_shards' arcs or samples),
// the sample-key measurement of shard_router::plan, the plan's text form, and
// range_shards' search helpers. Everything is a template over the plan type
// (reshard_plan), so this header needs none of the public types.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow::detail {

/// `n` as a shard count. Throws: config_error (naming `primitive`) unless n is in
/// [1, 1000000].
inline std::uint32_t checked_shard_count(std::string_view primitive, std::uint64_t n) {
  require_in_range(primitive, "shards", n, std::uint64_t{1}, std::uint64_t{1'000'000});
  return static_cast<std::uint32_t>(n);
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

/// The move type of a plan (reshard_plan::moves' elements: what, from, to, fraction).
template <class Plan>
using plan_move_t = typename decltype(std::declval<Plan&>().moves)::value_type;

/// Merges per-(from, to) shares into moves (first-seen order).
template <class Move>
class move_accumulator {
 public:
  void add(std::uint32_t from, std::uint32_t to, double share,
           std::string_view what_if_new) {
    if (from == to) return;
    auto [it, inserted] = index_.try_emplace({from, to}, moves_.size());
    if (inserted) {
      moves_.push_back({std::string(what_if_new), from, to, 0.0});
    }
    moves_[it->second].fraction += share;
  }
  std::vector<Move> take() { return std::move(moves_); }

 private:
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::size_t> index_;
  std::vector<Move> moves_;
};

/// hash_mod's plan from n to m shards: a key's shard depends only on hash % lcm(n, m);
/// every residue class is counted once (for lcm up to 2^24; beyond that, 1M uniformly
/// spread samples).
template <class Plan>
void hash_mod_moves(Plan& plan, std::uint64_t n, std::uint64_t m) {
  const std::uint64_t lcm = std::lcm(n, m);
  move_accumulator<plan_move_t<Plan>> acc;
  const bool exact = lcm <= (std::uint64_t{1} << 24);
  const std::uint64_t units = exact ? lcm : 1'000'000;
  std::uint64_t moved = 0;
  for (std::uint64_t r = 0; r < units; ++r) {
    const std::uint64_t h = exact ? r : sample_hash(r);
    const auto from = static_cast<std::uint32_t>(h % n),
               to = static_cast<std::uint32_t>(h % m);
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
}

/// range_shards' plan: walks the union of both tables' split points (between two
/// consecutive points both owners are fixed) and lists the key ranges that change
/// shard, adjacent ones merged; fractions stay NaN (they need sample keys).
template <class Plan, class Bound, class Compare>
void range_moves(Plan& plan, const std::vector<Bound>& splits,
                 const std::vector<std::uint32_t>& owners,
                 const std::vector<Bound>& next_splits,
                 const std::vector<std::uint32_t>& next_owners, const Compare& compare) {
  std::vector<const Bound*> points;
  points.reserve(splits.size() + next_splits.size());
  std::size_t i = 0, j = 0;
  while (i < splits.size() || j < next_splits.size()) {
    if (j == next_splits.size() ||
        (i < splits.size() && compare(splits[i], next_splits[j]))) {
      points.push_back(&splits[i++]);
    } else if (i == splits.size() || compare(next_splits[j], splits[i])) {
      points.push_back(&next_splits[j++]);
    } else {
      points.push_back(&splits[i++]);
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
    std::uint32_t from, to;
  };
  std::vector<span_move> spans;
  const Bound* lower = nullptr;
  std::size_t ra = 0, rb = 0;  // the current range index in each table
  auto equal = [&](const Bound& a, const Bound& b) {
    return !compare(a, b) && !compare(b, a);
  };
  for (std::size_t p = 0; p <= points.size(); ++p) {
    const Bound* upper = p < points.size() ? points[p] : nullptr;
    const std::uint32_t from = owners[ra], to = next_owners[rb];
    if (from != to) {
      if (!spans.empty() && spans.back().upper == lower && spans.back().from == from &&
          spans.back().to == to) {
        spans.back().upper = upper;  // adjacent: extend
      } else {
        spans.push_back({lower, upper, from, to});
      }
    }
    if (upper == nullptr) break;
    if (ra < splits.size() && equal(*upper, splits[ra])) ++ra;
    if (rb < next_splits.size() && equal(*upper, next_splits[rb])) ++rb;
    lower = upper;
  }
  for (const auto& sm : spans) {
    plan.moves.push_back({fmt::format("keys in [{}, {})", bound_text(sm.lower, true),
                                      bound_text(sm.upper, false)),
                          sm.from, sm.to});
  }
}

/// shard_router::plan's measurement on sample keys, for a plan that is not exact:
/// routes every sample key with `before` and `after`, sets moved_fraction and
/// sample_size, and either lists the measured (from, to) moves (when the plan has
/// none) or fills the analytic moves' fractions from them, split evenly between moves
/// of one pair. `sample` must not be empty.
template <class Key, class Plan, class Sample, class Before, class After>
void measure_plan_on_sample(Plan& p, const Sample& sample, const Before& before,
                            const After& after) {
  move_accumulator<plan_move_t<Plan>> acc;
  std::size_t n = 0, moved = 0;
  for (const Key& k : sample) {
    const auto from = static_cast<std::uint32_t>(before.route(k));
    const auto to = static_cast<std::uint32_t>(after.route(k));
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

/// directory_shards' plan: entries whose shard changes, entries added off the default
/// shard, and the default itself.
template <class Plan, class Table, class Next>
void directory_moves(Plan& plan, const Table& table, std::uint32_t default_shard,
                     const Next& next, const Table& next_table,
                     std::uint32_t next_default_shard) {
  using key_type = typename Table::key_type;
  auto label = [](const key_type& k) -> std::string {
    if constexpr (fmt::is_formattable<key_type>::value) {
      return fmt::format("key {}", k);
    } else {
      return "a directory entry";
    }
  };
  for (const auto& [key, shard] : table) {
    const std::uint32_t to = next.route(key);
    if (to != shard) plan.moves.push_back({label(key), shard, to});
  }
  for (const auto& [key, shard] : next_table) {
    if (!table.contains(key) && shard != default_shard) {
      plan.moves.push_back({label(key), default_shard, shard});
    }
  }
  if (default_shard != next_default_shard) {
    plan.moves.push_back(
        {"every key not in the directory", default_shard, next_default_shard});
  }
}

/// entity_shards' plan: entity types whose database changes, and new ones off the
/// default shard.
template <class Plan, class Entities, class Next>
void entity_moves(Plan& plan, const Entities& entities, std::uint32_t default_shard,
                  const Next& next, const Entities& next_entities) {
  for (const auto& [e, s] : entities) {
    const std::uint32_t to = next.route_entity(e);
    if (to != s) plan.moves.push_back({fmt::format("entity {}", e), s, to});
  }
  for (const auto& entry : next_entities) {  // not a structured binding: a lambda
    const auto& e = entry.first;             // captures it only from clang 16 on
    const std::uint32_t s = entry.second;
    const bool known = std::any_of(entities.begin(), entities.end(),
                                   [&](const auto& p) { return p.first == e; });
    if (!known && s != default_shard) {
      plan.moves.push_back({fmt::format("entity {}", e), default_shard, s});
    }
  }
}

/// consistent_shards' plan: the exact hash arcs for policies with arc_moves (rings),
/// else 1M uniformly spread sample hashes.
template <class Plan, class P>
void placement_moves(Plan& plan, const P& before, const P& after) {
  move_accumulator<plan_move_t<Plan>> acc;
  if constexpr (requires { P::arc_moves(before, after); }) {
    for (const auto& m : P::arc_moves(before, after)) {
      acc.add(m.from, m.to, m.fraction, "hash ring arcs");
    }
    plan.exact = true;
  } else {
    constexpr std::size_t samples = 1'000'000;
    for (std::size_t i = 0; i < samples; ++i) {
      const std::uint64_t h = sample_hash(i);
      acc.add(*before.lookup_hash(h), *after.lookup_hash(h), 1.0 / samples, "hash ranges");
    }
    plan.exact = false;
    plan.sample_size = samples;
  }
  plan.moves = acc.take();
  double moved = 0.0;
  for (const auto& m : plan.moves) moved += m.fraction;
  plan.moved_fraction = moved;
}

/// fmt::formatter<reshard_plan>'s output: a header line (shards, moved fraction and
/// how it was found), then one line per move.
template <class Out, class Plan>
Out format_plan(Out out, const Plan& p) {
  out = fmt::format_to(out, "reshard plan {} -> {} shards: ", p.shards_before,
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

/// The number of entries of the sorted `splits` that are <= key (ordered by
/// `compare`): a branch-free upper_bound.
template <class Bound, class Compare, class K>
[[nodiscard]] std::size_t split_upper_bound(const std::vector<Bound>& splits,
                                            const Compare& compare, const K& key) noexcept {
  const Bound* base = splits.data();
  std::size_t n = splits.size();
  if (n == 0) return 0;
  // After the loop, base points at the last split <= key, or at the first split if
  // none is.
  while (n > 1) {
    const std::size_t half = n / 2;
    base = compare(key, base[half]) ? base : base + half;
    n -= half;
  }
  return static_cast<std::size_t>(base - splits.data()) + (compare(key, *base) ? 0 : 1);
}

/// Order-preserving map of an integer onto uint64 (signed: flip the sign bit), for
/// radix_index searches over integer split points.
template <class I>
[[nodiscard]] constexpr std::uint64_t radix_key(I v) noexcept {
  if constexpr (std::is_signed_v<I>) {
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(v)) ^
           (std::uint64_t{1} << 63);
  } else {
    return static_cast<std::uint64_t>(v);
  }
}

}  // namespace outgrow::detail
