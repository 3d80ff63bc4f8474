// outgrow/routing/detail/splitter_engine.hpp — read_write_splitter's internals: the
// endpoint node, the read pool's handle, replication-lag hysteresis, the decision
// counters, and the configuration checks.
//
// read_write_splitter (routing/read_write_splitter.hpp) keeps its replicas' read pool in
// a load_balancer whose endpoints are handles (a shared node compared by identity), so
// the read path is the balancer's lock-free pick plus atomic loads on the node. Lag is
// evaluated when reports arrive (splitter_lag_verdict): a replica over its limit is
// excluded from the pool and readmitted only under lag_readmit_fraction of it, so one
// hovering around the limit does not flap. The public types (config, metrics, reasons)
// are template parameters here so this header does not depend on the public one.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/routing/detail/balancer_config.hpp>
#include <outgrow/routing/detail/balancer_endpoint.hpp>

namespace outgrow::detail {

/// One endpoint of a splitter: the primary or a replica, with its replication state.
template <class Conn>
struct splitter_node {
  splitter_node(Conn c, bool p) : conn(std::move(c)), is_primary(p) {}
  const Conn conn;
  const bool is_primary;
  std::atomic<std::uint64_t> applied{0};  // primary: all applied (max)
  std::atomic<std::int64_t> lag_ns{-1};   // -1 = unknown
  // Under the splitter's mutex.
  double weight = 1.0;
  std::optional<std::chrono::nanoseconds> max_lag{};
  std::optional<std::uint64_t> max_lag_positions{};
  bool lag_excluded = false;
};

/// The read pool's endpoint: a node, compared by identity.
template <class Conn>
struct splitter_handle {
  explicit splitter_handle(std::shared_ptr<splitter_node<Conn>> n)
      : p(std::move(n)), is_primary(p->is_primary) {}
  std::shared_ptr<splitter_node<Conn>> p;
  bool is_primary;  // a copy, so the read path does not touch the node
  friend bool operator==(const splitter_handle& a, const splitter_handle& b) noexcept {
    return a.p == b.p;
  }
};

enum class splitter_lag_change : std::uint8_t { none, exclude, readmit };

/// What a replica's lag report means with hysteresis: exclude when over its limit
/// (time or positions; 0 = off; unknown lag counts as fresh), readmit once back under
/// `readmit_fraction` of it. Splitter mutex held; the caller applies the change.
template <class Conn, class Config>
[[nodiscard]] splitter_lag_change splitter_lag_verdict(const splitter_node<Conn>& r,
                                                       const Config& c,
                                                       std::uint64_t primary) noexcept {
  const std::int64_t limit_ns = r.max_lag.value_or(c.max_replication_lag).count();
  const std::uint64_t limit_pos =
      r.max_lag_positions.value_or(c.max_replication_lag_positions);
  const std::int64_t lag_ns = r.lag_ns.load(std::memory_order_relaxed);
  const std::uint64_t applied = r.applied.load(std::memory_order_acquire);
  const std::uint64_t lag_pos = primary > applied ? primary - applied : 0;
  const bool time_known = limit_ns > 0 && lag_ns >= 0;
  const bool pos_known = limit_pos > 0 && primary > 0;
  const double keep = c.lag_readmit_fraction;
  if (!r.lag_excluded) {
    const bool over =
        (time_known && lag_ns > limit_ns) || (pos_known && lag_pos > limit_pos);
    return over ? splitter_lag_change::exclude : splitter_lag_change::none;
  }
  const bool back =
      (!time_known ||
       static_cast<double>(lag_ns) <= keep * static_cast<double>(limit_ns)) &&
      (!pos_known || static_cast<double>(lag_pos) <= keep * static_cast<double>(limit_pos));
  return back ? splitter_lag_change::readmit : splitter_lag_change::none;
}

/// The splitter's decision counters: one per route reason, plus errors and lag events.
template <std::size_t Reasons>
struct splitter_counters {
  std::array<counter, Reasons> by_reason{};
  counter errors_primary, errors_no_replica, stale_risk_reads;
  counter lag_exclusions, lag_readmissions, primary_failures, promotions;
  counter primary_statement_failures;

  template <class Reason>
  [[nodiscard]] std::uint64_t count(Reason r) const noexcept {
    return by_reason[static_cast<std::size_t>(r)].load();
  }

  /// Fills the decision counts of a read_write_splitter_metrics (Metrics); the pool's
  /// picks are added by the caller.
  template <class Reason, class Metrics>
  void fill(Metrics& m) const {
    m.writes = count(Reason::write);
    m.read_for_update = count(Reason::read_for_update);
    m.in_transaction = count(Reason::in_transaction);
    m.strong = count(Reason::strong);
    m.recent_write = count(Reason::recent_write);
    m.session_ahead = count(Reason::session_ahead);
    m.no_usable_replica = count(Reason::no_usable_replica);
    m.reads_to_primary = m.primary_in_pool + m.read_for_update + m.in_transaction +
                         m.strong + m.recent_write + m.session_ahead + m.no_usable_replica;
    m.errors_primary_unavailable = errors_primary.load();
    m.errors_no_usable_replica = errors_no_replica.load();
    m.stale_risk_reads = stale_risk_reads.load();
    m.lag_exclusions = lag_exclusions.load();
    m.lag_readmissions = lag_readmissions.load();
    m.primary_failures = primary_failures.load();
    m.promotions = promotions.load();
  }

  /// Reads the primary served outside the pool: every primary fallback reason.
  template <class Reason>
  [[nodiscard]] std::uint64_t primary_fallback_reads() const noexcept {
    std::uint64_t n = 0;
    for (const auto r :
         {Reason::read_for_update, Reason::in_transaction, Reason::strong,
          Reason::recent_write, Reason::session_ahead, Reason::no_usable_replica}) {
      n += count(r);
    }
    return n;
  }
};

/// Per replica, as splitter_endpoint_metrics (Item) report it, from the pool's
/// per-endpoint metrics. Splitter mutex held.
template <class Item, class Conn, class PoolEndpoints>
[[nodiscard]] std::vector<Item> splitter_replica_stats(
    const std::vector<std::shared_ptr<splitter_node<Conn>>>& replicas,
    const PoolEndpoints& pool) {
  std::vector<Item> out;
  for (const auto& r : replicas) {
    Item s{.connection = r->conn};
    s.excluded_for_lag = r->lag_excluded;
    s.applied_position = r->applied.load(std::memory_order_acquire);
    s.lag = std::chrono::nanoseconds{r->lag_ns.load(std::memory_order_relaxed)};
    for (const auto& e : pool) {
      if (e.endpoint.p == r) {
        s.status = e.status;
        s.reads = e.picks;
        s.failures = e.failures;
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

/// A replica's node from its replica_spec (Spec), after checking it.
/// Throws: config_error for a weight outside (0, 1e6], a `duplicate` connection or a
/// max_replication_lag outside [0, 24h].
template <class Conn, class Spec>
[[nodiscard]] std::shared_ptr<splitter_node<Conn>> splitter_make_replica(
    Spec spec, bool duplicate, std::string_view primitive) {
  require(spec.weight > 0.0 && spec.weight <= 1e6, primitive, "replica weight",
          "in (0, 1000000]", spec.weight);
  require(!duplicate, primitive, "replica connection",
          "distinct from the primary and the other replicas", lb_label(spec.connection));
  if (spec.max_replication_lag) {
    require_in_range(primitive, "replica max_replication_lag", *spec.max_replication_lag,
                     std::chrono::nanoseconds{0}, std::chrono::hours{24});
  }
  auto n = std::make_shared<splitter_node<Conn>>(std::move(spec.connection), false);
  n->weight = spec.weight;
  n->max_lag = spec.max_replication_lag;
  n->max_lag_positions = spec.max_replication_lag_positions;
  return n;
}

/// The first node of `nodes` matching `match`, or null.
template <class Conn, class Match>
[[nodiscard]] std::shared_ptr<splitter_node<Conn>> splitter_find(
    const std::vector<std::shared_ptr<splitter_node<Conn>>>& nodes, Match match) {
  for (const auto& n : nodes) {
    if (match(*n)) return n;
  }
  return nullptr;
}

/// A replica's polled replication_report (Report): the parts it knows replace the old.
template <class Conn, class Report>
void splitter_apply_report(splitter_node<Conn>& n, const Report& report) noexcept {
  if (report.applied_position) {
    n.applied.store(*report.applied_position, std::memory_order_release);
  }
  if (report.lag) n.lag_ns.store(report.lag->count(), std::memory_order_relaxed);
}

/// Balanced reads the read pool (a load_balancer of handles) made to node `n`.
template <class Pool, class Node>
[[nodiscard]] std::uint64_t splitter_pool_picks(const Pool& pool,
                                                const std::shared_ptr<Node>& n) {
  std::uint64_t picks = 0;
  for (const auto& e : pool.endpoints()) {
    if (e.endpoint.p == n) picks += e.picks;
  }
  return picks;
}

/// Throws config_error "read_write_splitter: <field> must be ..., got ..." unless `c`
/// is valid; the replica balancer's fields are checked for its Policy and reported as
/// "replicas.<field>".
template <class Policy, class Config>
void splitter_validate(const Config& c, std::string_view primitive) {
  using namespace std::chrono;
  require_in_range(primitive, "time_window", c.time_window, nanoseconds{0}, hours{1});
  require_in_range(primitive, "max_replication_lag", c.max_replication_lag, nanoseconds{0},
                   hours{24});
  require_in_range(primitive, "lag_readmit_fraction", c.lag_readmit_fraction, 0.0, 1.0);
  require(c.primary_read_weight > 0.0 && c.primary_read_weight <= 1e6, primitive,
          "primary_read_weight", "in (0, 1000000]", c.primary_read_weight);
  require_in_range(primitive, "primary_failure_threshold", c.primary_failure_threshold, 0U,
                   1'000'000U);
  require(c.poll_interval > nanoseconds{0} && c.poll_interval <= hours{1}, primitive,
          "poll_interval", "in (0s, 1h]", c.poll_interval);
  require(c.primary_accepts_reads || c.primary_read_weight == 1.0, primitive,
          "primary_read_weight",
          "1 (the default) when primary_accepts_reads = false: the primary never joins "
          "the read pool then",
          c.primary_read_weight);
  // The replica balancer's checks, before it is built, so that a bad field is reported
  // as this splitter's: "read_write_splitter: replicas.<field> must be ...".
  lb_validate<Policy>(c.replicas, primitive, "replicas.");
}

}  // namespace outgrow::detail
