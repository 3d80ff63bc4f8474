// outgrow/routing/read_write_splitter.hpp — writes to the primary, reads to replicas,
// without serving a session data older than its own writes.
//
// What: the data-access half of primary/replica replication, as MariaDB MaxScale's
// readwritesplit, ProxySQL, pgpool-II, Rails' database selector and GitLab's load
// balancer do it. Writes, `read_for_update` and everything inside a transaction go to
// the primary; reads go to a replica chosen by a load_balancer policy (any
// balancing_policy, a user's included; default least_connections = MaxScale's
// least_current_operations), skipping replicas whose
// replication lag exceeds the limit, and — per the session's consistency mode — only
// replicas that have applied the session's last write.
//
//   outgrow::read_write_splitter<std::string> db(
//       "pg-primary", {{"pg-r1"}, {"pg-r2", 2.0}},
//       {.default_consistency = outgrow::consistency::read_your_writes,
//        .max_replication_lag = 5s});
//   outgrow::session_token session;               // keep it with the user's session
//   if (auto w = db.write(session)) {               // the primary, or an error result
//     auto lsn = exec(*w, "UPDATE ...");            // the commit's position (LSN/GTID)
//     w.success(lsn);                               // the session now requires lsn
//   }
//   auto r = db.read(session);                      // a replica that applied lsn, or
//   exec(*r, "SELECT ...");  r.success();          // the primary (reason says why)
//   db.report_applied("pg-r1", 1234);               // or start_polling(executor, fn)
//
// Consistency modes (per splitter, or per call with route_options::mode):
//   eventual          any fresh replica (stale_risk_reads counts reads that went to a
//                     replica behind the session's last write)
//   read_your_writes  a replica whose applied position >= the session's last write
//                     position, else the primary (GitLab; MaxScale causal_reads local).
//                     If a write's position was not recorded (success() without one),
//                     the session reads from the primary for time_window after it.
//   time_window       the primary for time_window (2 s, Rails) after the session's last
//                     write, replicas otherwise
//   strong            always the primary
// `primary_accepts_reads` (MaxScale master_accept_reads, default false) adds the primary
// to the read pool with `primary_read_weight`. When no replica is usable (all lagging,
// ejected or drained), `no_usable_replica` decides: use the primary (default) or return
// an error result. A session that is only ahead of the replicas always falls back to the
// primary.
//
// Replication state: each replica reports an applied position (a monotonic integer: LSN,
// GTID sequence) and/or a time lag — pushed with report_applied()/report_lag(), or
// polled by a user function on a Boost.Asio timer (start_polling, poll_interval 1 s).
// The primary's position comes from report_primary_position(), from write results
// (success(position)) and from polling the primary. A replica is excluded when its lag
// exceeds max_replication_lag (time; 0 = off, as MaxScale and ProxySQL) or
// max_replication_lag_positions (primary position − applied; 0 = off, as pgpool's
// delay_threshold and GitLab's max_replication_difference), per replica overridable
// (ProxySQL's per-server max_replication_lag), and readmitted only once back under
// lag_readmit_fraction (80 %) of the limit: hysteresis, so a replica hovering around
// the limit does not flap. Lag is evaluated when reports arrive. Unknown lag counts as
// fresh; an unknown position as 0.
//
// Failure: the primary is never replaced by a replica silently. When it is down
// (mark_primary_down(), or primary_failure_threshold failed primary statements in a
// row) writes and primary-only reads return an error result (route_error::
// primary_unavailable) naming the reason; an optional promotion callback
// (on_primary_failure) may name a new primary (e.g. the most caught-up replica), which
// then takes over. Replica failures (result.failure()) feed the replica balancer's
// passive health (5 consecutive failures eject, as ProxySQL's shun_on_failures 5).
//
// Every result says why it went where it went (route_reason); metrics() counts routed
// reads and writes, fallbacks to the primary by reason, errors and lag exclusions, and
// endpoints() lists each endpoint's reads, position, lag and status.
//
// Multi-primary helpers live in hybrid_logical_clock.hpp (included): HLC timestamps and
// conflict resolution by last-writer-wins or a user merge hook.
//
// Thread-safety: every member function from any thread. Routing a read is lock-free
// (the balancer's snapshot pick plus atomic loads); topology changes and lag
// evaluation take a mutex. A session_token is a plain value: one request at a time per
// token, or merge() tokens of parallel requests. Results must not outlive the splitter.
// Complexity: route O(1) plus the policy's pick (O(N) for least_connections); a
// read_your_writes read whose first choice is behind scans the replicas once (O(N)).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/any_io_executor.hpp>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/detail/periodic_task.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/snapshot.hpp>
#include <outgrow/routing/detail/splitter_engine.hpp>
#include <outgrow/routing/detail/splitter_result.hpp>
#include <outgrow/routing/hybrid_logical_clock.hpp>
#include <outgrow/routing/load_balancer.hpp>

namespace outgrow {

enum class statement : std::uint8_t { read, write, read_for_update };
enum class consistency : std::uint8_t { eventual, read_your_writes, time_window, strong };
enum class no_replica_policy : std::uint8_t { use_primary, fail };
enum class route_target : std::uint8_t { none, primary, replica };
enum class route_error : std::uint8_t { none, primary_unavailable, no_usable_replica };

/// Why a statement went where it went.
enum class route_reason : std::uint8_t {
  replica = 0,          ///< read balanced onto a replica
  primary_in_pool,      ///< read balanced onto the primary (primary_accepts_reads)
  write,                ///< writes go to the primary
  read_for_update,      ///< locking reads go to the primary
  in_transaction,       ///< everything in a transaction goes to the primary
  strong,               ///< consistency::strong
  recent_write,         ///< within time_window of the session's last write
  session_ahead,        ///< read_your_writes: no replica has applied the session's write
  no_usable_replica,    ///< every replica lagging, ejected or drained
  primary_unavailable,  ///< the primary is down: error
};
inline constexpr std::size_t route_reason_count = 10;

[[nodiscard]] constexpr std::string_view to_string(route_reason r) noexcept {
  constexpr std::array<std::string_view, route_reason_count> names = {
      "replica",
      "primary_in_pool",
      "write",
      "read_for_update",
      "in_transaction",
      "strong",
      "recent_write",
      "session_ahead",
      "no_usable_replica",
      "primary_unavailable"};
  const auto i = static_cast<std::size_t>(r);
  return i < names.size() ? names[i] : "unknown";
}
[[nodiscard]] constexpr std::string_view to_string(consistency c) noexcept {
  switch (c) {
    case consistency::eventual:
      return "eventual";
    case consistency::read_your_writes:
      return "read_your_writes";
    case consistency::time_window:
      return "time_window";
    case consistency::strong:
      return "strong";
  }
  return "unknown";
}

/// What a session remembers about its own writes; copy it into the caller's session
/// (HTTP session, request context). The position is portable between processes; the
/// time is on the splitter's Clock (meaningful within one process).
struct session_token {
  static constexpr std::int64_t never = std::numeric_limits<std::int64_t>::min();
  std::uint64_t last_write_position = 0;  ///< 0 = no write position known
  std::int64_t last_write_ns = never;     ///< Clock time of the last write routed
  bool position_pending = false;          ///< last write's position not recorded yet

  /// A session known only by its last write's position, e.g. carried in a cookie to
  /// another process (whose Clock means nothing here): read_your_writes holds it.
  [[nodiscard]] static session_token from_position(std::uint64_t position) noexcept {
    session_token t;
    t.last_write_position = position;
    return t;
  }
  [[nodiscard]] bool has_written() const noexcept {
    return last_write_ns != never || last_write_position != 0;
  }
  /// Combines the tokens of two requests of one session (the stricter of both).
  void merge(const session_token& o) noexcept {
    last_write_position = std::max(last_write_position, o.last_write_position);
    if (o.last_write_ns > last_write_ns) {
      last_write_ns = o.last_write_ns;
      position_pending = o.position_pending;
    }
  }
  friend bool operator==(const session_token&, const session_token&) = default;
};

/// A replica: its connection (or address), weight and optional own lag limits.
template <class Conn>
struct replica_spec {
  Conn connection;
  double weight = 1.0;
  /// Overrides config.max_replication_lag for this replica (ProxySQL per-server).
  std::optional<std::chrono::nanoseconds> max_replication_lag{};
  /// Overrides config.max_replication_lag_positions for this replica.
  std::optional<std::uint64_t> max_replication_lag_positions{};
};

/// What a replication poll returns for one endpoint (either part may be unknown).
struct replication_report {
  std::optional<std::uint64_t> applied_position{};
  std::optional<std::chrono::nanoseconds> lag{};
};

struct route_options {
  /// Statement inside an open transaction: goes to the primary (transaction_persistent).
  bool in_transaction = false;
  /// Overrides the splitter's default_consistency for this call.
  std::optional<consistency> mode{};
};

struct read_write_splitter_config {
  /// Mode for calls without route_options::mode: read_your_writes (GitLab's behaviour).
  consistency default_consistency = consistency::read_your_writes;
  /// time_window mode (and RYW writes without a position): 2 s, Rails' delay. [0, 1 h]
  std::chrono::nanoseconds time_window = std::chrono::seconds{2};
  /// Time lag that excludes a replica; 0 = off (MaxScale, ProxySQL). [0, 24 h]
  std::chrono::nanoseconds max_replication_lag{0};
  /// Position lag (primary − applied) that excludes a replica; 0 = off (pgpool
  /// delay_threshold, GitLab max_replication_difference).
  std::uint64_t max_replication_lag_positions = 0;
  /// Excluded replicas return when lag <= this × limit (hysteresis): 0.8. [0, 1]
  double lag_readmit_fraction = 0.8;
  /// Balance reads onto the primary too: false, MaxScale master_accept_reads.
  bool primary_accepts_reads = false;
  /// The primary's weight in the read pool when it accepts reads. (0, 1e6]; must stay 1
  /// when primary_accepts_reads is false (never read then).
  double primary_read_weight = 1.0;
  /// No usable replica: read from the primary (default) or return an error.
  no_replica_policy no_usable_replica = no_replica_policy::use_primary;
  /// Failed primary statements in a row that mark the primary down; 0 = only
  /// mark_primary_down() (the default: the caller's failover tooling decides).
  std::uint32_t primary_failure_threshold = 0;
  /// Between replication polls (start_polling): 1 s (MaxScale's monitor interval is
  /// 2 s, ProxySQL's lag monitor 10 s; read-your-writes likes fresh positions). (0, 1 h]
  std::chrono::nanoseconds poll_interval = std::chrono::seconds{1};
  /// The replica balancer's health settings (passive ejection after 5 failures, ...),
  /// checked by load_balancer::validate for the splitter's Policy (a field the policy
  /// never reads must keep its default: no seed under least_connections) and reported
  /// as "read_write_splitter: replicas.<field> ...". The other fields here are all
  /// read: time_window by per-call modes, the lag fields by per-replica overrides.
  load_balancer_config replicas{};
};

/// Counters of a splitter. reads_to_replicas and primary_in_pool come from the
/// balancer's per-endpoint picks; the rest are counted per decision.
struct read_write_splitter_metrics {
  static constexpr std::string_view metrics_name = "read_write_splitter_metrics";
  std::uint64_t reads_to_replicas = 0;
  std::uint64_t reads_to_primary = 0;  ///< all reads the primary served
  std::uint64_t writes = 0;
  std::uint64_t primary_in_pool = 0;  ///< reads balanced onto the primary
  std::uint64_t read_for_update = 0;
  std::uint64_t in_transaction = 0;
  std::uint64_t strong = 0;  ///< fallbacks to the primary by reason:
  std::uint64_t recent_write = 0;
  std::uint64_t session_ahead = 0;
  std::uint64_t no_usable_replica = 0;
  std::uint64_t errors_primary_unavailable = 0;
  std::uint64_t errors_no_usable_replica = 0;
  std::uint64_t stale_risk_reads = 0;  ///< eventual reads on a replica behind the session
  std::uint64_t lag_exclusions = 0;    ///< times a replica was excluded for lag
  std::uint64_t lag_readmissions = 0;
  std::size_t replicas_excluded_for_lag = 0;  ///< now
  std::uint64_t primary_failures = 0;         ///< times the primary was marked down
  std::uint64_t promotions = 0;
  std::uint64_t primary_position = 0;
  bool primary_available = true;

  template <class F>
  void for_each_metric(F&& f) const {
    f("reads_to_replicas", reads_to_replicas);
    f("reads_to_primary", reads_to_primary);
    f("writes", writes);
    f("primary_in_pool", primary_in_pool);
    f("read_for_update", read_for_update);
    f("in_transaction", in_transaction);
    f("strong", strong);
    f("recent_write", recent_write);
    f("session_ahead", session_ahead);
    f("no_usable_replica", no_usable_replica);
    f("errors_primary_unavailable", errors_primary_unavailable);
    f("errors_no_usable_replica", errors_no_usable_replica);
    f("stale_risk_reads", stale_risk_reads);
    f("lag_exclusions", lag_exclusions);
    f("lag_readmissions", lag_readmissions);
    f("replicas_excluded_for_lag", replicas_excluded_for_lag);
    f("primary_failures", primary_failures);
    f("promotions", promotions);
    f("primary_position", primary_position);
    f("primary_available", primary_available);
  }
};

/// One endpoint of a splitter, as endpoints() reports it.
template <class Conn>
struct splitter_endpoint_metrics {
  static constexpr std::string_view metrics_name = "splitter_endpoint";
  Conn connection;
  bool primary = false;
  endpoint_status status = endpoint_status::available;  ///< in the read pool
  bool excluded_for_lag = false;
  std::uint64_t applied_position = 0;  ///< the primary: its position
  std::chrono::nanoseconds lag{-1};    ///< -1 = unknown
  std::uint64_t reads = 0;             ///< balanced reads (and primary fallbacks)
  std::uint64_t writes = 0;
  std::uint64_t failures = 0;

  template <class F>
  void for_each_metric(F&& f) const {
    if constexpr (fmt::is_formattable<Conn>::value) f("connection", connection);
    f("role", primary ? "primary" : "replica");
    f("status", to_string(status));
    f("excluded_for_lag", excluded_for_lag);
    f("applied_position", applied_position);
    f("lag", lag);
    f("reads", reads);
    f("writes", writes);
    f("failures", failures);
  }
};

/// What a promotion callback sees when the primary fails.
template <class Conn>
struct primary_failure {
  Conn failed_primary;
  std::vector<splitter_endpoint_metrics<Conn>> replicas;  ///< positions, lag, health
};

template <class Conn, balancing_policy Policy = least_connections,
          clock_source Clock = steady_clock_source>
requires std::copyable<Conn> && std::equality_comparable<Conn>
class read_write_splitter {
  static constexpr std::string_view primitive = "read_write_splitter";
  static constexpr std::uint64_t all_applied = std::numeric_limits<std::uint64_t>::max();

  using node = detail::splitter_node<Conn>;
  using handle = detail::splitter_handle<Conn>;
  using pool_type = load_balancer<handle, Policy, Clock>;
  using pool_lease = typename pool_type::lease;

  struct primary_ref {
    std::shared_ptr<node> n;
  };
  using counters = detail::splitter_counters<route_reason_count>;
  // What route_result (detail::splitter_route_result) reads of this splitter.
  friend class detail::splitter_route_result<read_write_splitter>;
  using node_type = node;
  using pool_lease_type = pool_lease;
  using target_type = route_target;
  using reason_type = route_reason;
  using error_type = route_error;
  using session_type = session_token;

 public:
  using connection_type = Conn;
  using clock_type = Clock;

  /// Where one statement goes (detail/splitter_result.hpp). Converts to false on an
  /// error (error() says which); connection() / operator* / operator-> give the chosen
  /// connection, target() and reason() say where and why. Record the outcome with
  /// success() or failure() (which feeds the endpoint's health); a write's
  /// success(position) stores its commit position in the session, success() without
  /// one makes a read_your_writes session read from the primary for time_window.
  /// Dropping it without an outcome (or abandon()) is an abandoned request. Move-only;
  /// must not outlive the splitter or the session_token passed to route().
  using route_result = detail::splitter_route_result<read_write_splitter>;

  /// `primary` must be set; replicas may be empty (every read then falls back per
  /// no_usable_replica).
  /// Throws: config_error if `primary` is std::nullopt, for a duplicate connection, a
  /// weight outside (0, 1e6] or a bad config field (replicas.<field> for the pool's).
  read_write_splitter(std::optional<Conn> primary, std::vector<replica_spec<Conn>> replicas,
                      read_write_splitter_config config = {}, Clock clock = {})
      : config_(validated(config)),
        clock_(clock),
        primary_(make_primary(primary)),
        pool_(std::vector<weighted_node<handle>>{{handle{primary_.load()->n},
                                                  config.primary_read_weight}},
              config.replicas, clock) {
    std::lock_guard lock(mutex_);
    primary_node_ = primary_.load()->n;
    primary_node_->weight = config_.primary_read_weight;
    if (!config_.primary_accepts_reads) pool_.set_excluded(handle{primary_node_}, true);
    for (auto& r : replicas) add_replica_locked(std::move(r));
  }

  read_write_splitter(const read_write_splitter&) = delete;
  read_write_splitter& operator=(const read_write_splitter&) = delete;
  ~read_write_splitter() { stop_polling(); }

  // ---- routing ---------------------------------------------------------------------

  /// Routes one statement of `session`. Never throws; errors are results.
  [[nodiscard]] route_result route(statement kind, session_token& session,
                                   route_options options = {}) noexcept {
    if (kind == statement::write) return to_primary(route_reason::write, session, true);
    if (kind == statement::read_for_update) {
      return to_primary(route_reason::read_for_update, session, false);
    }
    if (options.in_transaction) {
      return to_primary(route_reason::in_transaction, session, false);
    }
    const consistency mode = options.mode.value_or(config_.default_consistency);
    if (mode == consistency::strong)
      return to_primary(route_reason::strong, session, false);
    std::uint64_t needed = 0;
    if (session.has_written() && mode != consistency::eventual) {
      const bool windowed = mode == consistency::time_window || session.position_pending;
      if (windowed && session.last_write_ns != session_token::never &&
          now_ns() - session.last_write_ns < config_.time_window.count()) {
        return to_primary(route_reason::recent_write, session, false);
      }
      if (mode == consistency::read_your_writes) needed = session.last_write_position;
    }
    pool_lease lease =
        needed == 0 ? pool_.pick() : pool_.pick_if([needed](const handle& h) noexcept {
          return h.p->applied.load(std::memory_order_acquire) >= needed;
        });
    if (lease) {
      if (mode == consistency::eventual && session.last_write_position != 0 &&
          lease->p->applied.load(std::memory_order_acquire) < session.last_write_position) {
        counters_.stale_risk_reads.add();
      }
      return route_result(this, std::move(lease));
    }
    if (needed != 0 && pool_.routable() > 0) {
      return to_primary(route_reason::session_ahead, session, false);
    }
    if (config_.no_usable_replica == no_replica_policy::fail) {
      counters_.errors_no_replica.add();
      route_result r;
      r.reason_ = route_reason::no_usable_replica;
      r.error_ = route_error::no_usable_replica;
      return r;
    }
    return to_primary(route_reason::no_usable_replica, session, false);
  }

  [[nodiscard]] route_result read(session_token& session,
                                  route_options options = {}) noexcept {
    return route(statement::read, session, options);
  }
  [[nodiscard]] route_result write(session_token& session,
                                   route_options options = {}) noexcept {
    return route(statement::write, session, options);
  }

  // ---- replication state -----------------------------------------------------------

  /// A replica's applied position (the primary's own connection: its position).
  /// Ignored for unknown connections.
  void report_applied(const Conn& connection, std::uint64_t position) {
    std::lock_guard lock(mutex_);
    if (connection == primary_node_->conn) {
      note_primary_position(position);
      for (const auto& r : replicas_) evaluate_lag_locked(*r);
      return;
    }
    if (node* r = find_replica_locked(connection)) {
      r->applied.store(position, std::memory_order_release);
      evaluate_lag_locked(*r);
    }
  }

  /// A replica's replication lag in time (e.g. seconds_behind_master, replay lag).
  void report_lag(const Conn& connection, std::chrono::nanoseconds lag) {
    std::lock_guard lock(mutex_);
    if (node* r = find_replica_locked(connection)) {
      r->lag_ns.store(lag.count(), std::memory_order_relaxed);
      evaluate_lag_locked(*r);
    }
  }

  /// The primary's current position (positions only move forward).
  void report_primary_position(std::uint64_t position) {
    std::lock_guard lock(mutex_);
    note_primary_position(position);
    for (const auto& r : replicas_) evaluate_lag_locked(*r);
  }

  /// Polls every endpoint once: poll(connection) -> replication_report (an exception
  /// or empty parts leave the old values). The primary's applied_position is taken as
  /// the primary position.
  template <class Poll>
  requires std::invocable<Poll&, const Conn&>
  void poll_replication(Poll&& poll) {
    std::vector<std::shared_ptr<node>> targets;
    {
      std::lock_guard lock(mutex_);
      targets.push_back(primary_node_);
      targets.insert(targets.end(), replicas_.begin(), replicas_.end());
    }
    std::vector<std::optional<replication_report>> reports(targets.size());
    for (std::size_t i = 0; i < targets.size(); ++i) {
      try {
        reports[i] = std::invoke(poll, std::as_const(targets[i]->conn));
      } catch (...) {
        reports[i].reset();
      }
    }
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < targets.size(); ++i) {
      if (!reports[i]) continue;
      node& n = *targets[i];
      if (n.is_primary) {
        if (reports[i]->applied_position)
          note_primary_position(*reports[i]->applied_position);
        continue;
      }
      detail::splitter_apply_report(n, *reports[i]);
    }
    for (const auto& r : replicas_) evaluate_lag_locked(*r);
  }

  /// Runs poll_replication(poll) every config.poll_interval on a steady_timer of
  /// `executor` until stop_polling() (or destruction). The executor's context must
  /// outlive the splitter or stop_polling().
  template <class Poll>
  requires std::invocable<Poll&, const Conn&>
  void start_polling(boost::asio::any_io_executor executor, Poll poll) {
    stop_polling();
    std::lock_guard lock(poll_mutex_);
    poller_.emplace(std::move(executor), config_.poll_interval,
                    [this, poll = std::move(poll)]() mutable { poll_replication(poll); });
  }
  void stop_polling() {
    std::lock_guard lock(poll_mutex_);
    poller_.reset();
  }

  // ---- topology and failover ---------------------------------------------------------

  /// Throws: config_error for a duplicate connection, a weight outside (0, 1e6] or a
  /// max_replication_lag outside [0, 24h].
  void add_replica(replica_spec<Conn> spec) {
    std::lock_guard lock(mutex_);
    add_replica_locked(std::move(spec));
  }
  /// Throws: config_error if `connection` is not a replica.
  void remove_replica(const Conn& connection) {
    std::lock_guard lock(mutex_);
    remove_replica_locked(connection);
  }
  /// Replica health pushed by the caller's own checks (active health).
  void report_replica_health(const Conn& connection, bool healthy) {
    std::lock_guard lock(mutex_);
    if (node* r = find_replica_locked(connection)) {
      pool_.report_health(handle{shared_of(r)}, healthy);
    }
  }

  /// Called (outside the splitter's lock, on the thread that marked the primary down)
  /// with the failed primary and the replicas' state; a returned connection becomes
  /// the new primary (a replica is taken out of the read pool).
  void on_primary_failure(
      std::function<std::optional<Conn>(const primary_failure<Conn>&)> cb) {
    std::lock_guard lock(mutex_);
    promote_ = std::move(cb);
  }

  /// The primary is unreachable: writes and primary-only reads fail until
  /// mark_primary_up() or a new primary (promotion callback, set_primary()).
  void mark_primary_down() {
    std::function<std::optional<Conn>(const primary_failure<Conn>&)> cb;
    std::optional<primary_failure<Conn>> failure;
    {
      std::lock_guard lock(mutex_);
      if (!primary_up_.exchange(false, std::memory_order_acq_rel)) return;
      counters_.primary_failures.add();
      pool_.set_excluded(handle{primary_node_}, true);
      cb = promote_;
      if (cb) failure = primary_failure<Conn>{primary_node_->conn, replica_stats_locked()};
    }
    if (!cb) return;
    std::optional<Conn> next;
    try {
      next = cb(*failure);
    } catch (...) {
      next.reset();
    }
    if (next) set_primary(*next);
  }

  void mark_primary_up() {
    std::lock_guard lock(mutex_);
    primary_failure_run_.store(0, std::memory_order_relaxed);
    primary_up_.store(true, std::memory_order_release);
    if (config_.primary_accepts_reads) pool_.set_excluded(handle{primary_node_}, false);
  }

  /// Makes `connection` the primary (a replica is promoted: it leaves the read pool)
  /// and marks it up. Its position starts at the highest known.
  void set_primary(const Conn& connection) {
    std::lock_guard lock(mutex_);
    if (connection != primary_node_->conn) {
      std::uint64_t position = primary_position_.load(std::memory_order_acquire);
      if (node* r = find_replica_locked(connection)) {
        position = std::max(position, r->applied.load(std::memory_order_acquire));
        remove_replica_locked(connection);
      }
      retired_primary_picks_ += detail::splitter_pool_picks(pool_, primary_node_);
      pool_.remove(handle{primary_node_});
      auto n = std::make_shared<node>(connection, true);
      n->applied.store(all_applied, std::memory_order_relaxed);
      n->weight = config_.primary_read_weight;
      pool_.add(handle{n}, config_.primary_read_weight);
      primary_node_ = n;
      primary_.publish(std::make_shared<const primary_ref>(primary_ref{n}));
      note_primary_position(position);
      counters_.promotions.add();
    }
    primary_failure_run_.store(0, std::memory_order_relaxed);
    primary_up_.store(true, std::memory_order_release);
    pool_.set_excluded(handle{primary_node_}, !config_.primary_accepts_reads);
  }

  [[nodiscard]] bool primary_available() const noexcept {
    return primary_up_.load(std::memory_order_acquire);
  }
  [[nodiscard]] Conn primary() const {
    std::lock_guard lock(mutex_);
    return primary_node_->conn;
  }
  [[nodiscard]] std::uint64_t primary_position() const noexcept {
    return primary_position_.load(std::memory_order_acquire);
  }

  // ---- observation --------------------------------------------------------------------

  [[nodiscard]] read_write_splitter_metrics metrics() const {
    std::lock_guard lock(mutex_);
    read_write_splitter_metrics m;
    for (const auto& e : pool_.endpoints()) {
      if (e.endpoint.p->is_primary) {
        m.primary_in_pool += e.picks;
      } else {
        m.reads_to_replicas += e.picks;
      }
    }
    m.primary_in_pool += retired_primary_picks_;
    m.reads_to_replicas += retired_replica_picks_;
    counters_.template fill<route_reason>(m);
    for (const auto& r : replicas_)
      m.replicas_excluded_for_lag += r->lag_excluded ? 1U : 0U;
    m.primary_position = primary_position_.load(std::memory_order_acquire);
    m.primary_available = primary_up_.load(std::memory_order_acquire);
    return m;
  }

  /// The primary first, then the replicas in insertion order.
  [[nodiscard]] std::vector<splitter_endpoint_metrics<Conn>> endpoints() const {
    std::lock_guard lock(mutex_);
    auto out = replica_stats_locked();
    splitter_endpoint_metrics<Conn> p{.connection = primary_node_->conn, .primary = true};
    p.applied_position = primary_position_.load(std::memory_order_acquire);
    p.lag = std::chrono::nanoseconds{0};
    p.writes = counters_.count(route_reason::write);
    p.failures = counters_.primary_statement_failures.load();
    p.reads = counters_.template primary_fallback_reads<route_reason>();
    for (const auto& e : pool_.endpoints()) {
      if (e.endpoint.p == primary_node_) {
        p.reads += e.picks;
        p.status = e.status;
      }
    }
    out.insert(out.begin(), std::move(p));
    return out;
  }

  /// The highest position any replica has applied (0 = none reported): a session whose
  /// last write is beyond it reads on the primary (session_ahead) until a report or
  /// poll_replication() moves it. Locks; O(replicas).
  [[nodiscard]] std::uint64_t max_applied_position() const {
    std::lock_guard lock(mutex_);
    std::uint64_t best = 0;
    for (const auto& r : replicas_)
      best = std::max(best, r->applied.load(std::memory_order_acquire));
    return best;
  }

  [[nodiscard]] const read_write_splitter_config& config() const noexcept {
    return config_;
  }
  /// The replica balancer's metrics (picks, ejections, panic, ...).
  [[nodiscard]] load_balancer_metrics replica_pool_metrics() const {
    return pool_.metrics();
  }

 private:
  static constexpr std::size_t index(route_reason r) noexcept {
    return static_cast<std::size_t>(r);
  }

  static read_write_splitter_config validated(read_write_splitter_config c) {
    detail::splitter_validate<Policy>(c, primitive);
    return c;
  }

  static std::shared_ptr<const primary_ref> make_primary(
      const std::optional<Conn>& primary) {
    require(primary.has_value(), primitive, "primary", "set (a splitter needs a primary)",
            "none");
    auto n = std::make_shared<node>(*primary, true);
    n->applied.store(all_applied, std::memory_order_relaxed);
    return std::make_shared<const primary_ref>(primary_ref{std::move(n)});
  }

  [[nodiscard]] std::int64_t now_ns() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               clock_.now().time_since_epoch())
        .count();
  }

  route_result to_primary(route_reason reason, session_token& session,
                          bool is_write) noexcept {
    route_result r;
    if (!primary_up_.load(std::memory_order_acquire)) {
      counters_.errors_primary.add();
      r.reason_ = route_reason::primary_unavailable;
      r.error_ = route_error::primary_unavailable;
      return r;
    }
    counters_.by_reason[index(reason)].add();
    r.owner_ = this;
    r.primary_ = primary_.local().n;
    r.target_ = route_target::primary;
    r.reason_ = reason;
    r.is_write_ = is_write;
    if (is_write) {
      session.last_write_ns = now_ns();
      session.position_pending = true;
      r.session_ = &session;
    }
    return r;
  }

  void primary_outcome(const node& n, bool ok) noexcept {
    if (ok) {
      if (primary_failure_run_.load(std::memory_order_relaxed) != 0) {
        primary_failure_run_.store(0, std::memory_order_relaxed);
      }
      return;
    }
    counters_.primary_statement_failures.add();
    if (config_.primary_failure_threshold == 0) return;
    const auto run = primary_failure_run_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (run >= config_.primary_failure_threshold) {
      try {
        std::unique_lock lock(mutex_);
        const bool current = primary_node_.get() == &n;
        lock.unlock();
        if (current) mark_primary_down();
      } catch (...) {
        // A throwing promotion path must not escape a result's destructor.
      }
    }
  }

  void note_primary_position(std::uint64_t position) noexcept {
    std::uint64_t cur = primary_position_.load(std::memory_order_relaxed);
    while (position > cur && !primary_position_.compare_exchange_weak(
                                 cur, position, std::memory_order_acq_rel)) {
    }
  }

  node* find_replica_locked(const Conn& connection) const {
    return detail::splitter_find(replicas_,
                                 [&](const node& r) { return r.conn == connection; })
        .get();
  }
  std::shared_ptr<node> shared_of(const node* n) const {
    return detail::splitter_find(replicas_, [&](const node& r) { return &r == n; });
  }

  void add_replica_locked(replica_spec<Conn> spec) {
    const bool duplicate = spec.connection == primary_node_->conn ||
                           find_replica_locked(spec.connection) != nullptr;
    auto n = detail::splitter_make_replica<Conn>(std::move(spec), duplicate, primitive);
    pool_.add(handle{n}, n->weight);
    replicas_.push_back(std::move(n));
  }

  void remove_replica_locked(const Conn& connection) {
    for (auto it = replicas_.begin(); it != replicas_.end(); ++it) {
      if ((*it)->conn == connection) {
        retired_replica_picks_ += detail::splitter_pool_picks(pool_, *it);
        pool_.remove(handle{*it});
        replicas_.erase(it);
        return;
      }
    }
    require(false, primitive, "remove_replica(connection)", "a replica",
            detail::lb_label(connection));
  }

  /// Applies max_replication_lag with hysteresis to one replica; mutex_ held.
  void evaluate_lag_locked(node& r) {
    const auto change = detail::splitter_lag_verdict(
        r, config_, primary_position_.load(std::memory_order_acquire));
    if (change == detail::splitter_lag_change::none) return;
    r.lag_excluded = change == detail::splitter_lag_change::exclude;
    (r.lag_excluded ? counters_.lag_exclusions : counters_.lag_readmissions).add();
    pool_.set_excluded(handle{shared_of(&r)}, r.lag_excluded);
  }

  std::vector<splitter_endpoint_metrics<Conn>> replica_stats_locked() const {
    return detail::splitter_replica_stats<splitter_endpoint_metrics<Conn>>(
        replicas_, pool_.endpoints());
  }

  read_write_splitter_config config_;
  Clock clock_;
  published<primary_ref> primary_;
  pool_type pool_;
  mutable std::mutex mutex_;  // topology, lag state, callbacks
  std::shared_ptr<node> primary_node_;
  std::vector<std::shared_ptr<node>> replicas_;
  std::function<std::optional<Conn>(const primary_failure<Conn>&)> promote_;
  std::uint64_t retired_replica_picks_ = 0;
  std::uint64_t retired_primary_picks_ = 0;
  std::atomic<bool> primary_up_{true};
  std::atomic<std::uint32_t> primary_failure_run_{0};
  alignas(64) std::atomic<std::uint64_t> primary_position_{0};
  counters counters_;
  std::mutex poll_mutex_;
  std::optional<detail::periodic_task> poller_;
};

}  // namespace outgrow

template <>
struct fmt::formatter<outgrow::route_reason> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(outgrow::route_reason r, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(outgrow::to_string(r), ctx);
  }
};
template <>
struct fmt::formatter<outgrow::consistency> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(outgrow::consistency c, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(outgrow::to_string(c), ctx);
  }
};
