// examples/live_shop/orders.hpp — "my orders" over a PostgreSQL primary and streaming
// replicas, routed by outgrow::read_write_splitter with read-your-writes by WAL position.
//
// What it shows: the real version of the splitter's lag model. A write (placing an
// order) goes to the primary; after its COMMIT the app reads pg_current_wal_lsn() there
// and records it as the write's position (result.success(lsn)); the position travels
// with the user (a cookie: the app keeps no state). A read of the user's orders carries
// that position in its session_token; the splitter sends it to a replica whose applied
// position — pg_last_wal_replay_lsn(), the WAL the replica has replayed — is at least
// that LSN, else to the primary (route_reason::session_ahead). A replica that replayed
// past the commit record shows the order, so "my orders" is never stale.
//
//   live_shop::orders_service orders({.primary = {"127.0.0.1", 5432},
//                                     .replicas = {{"127.0.0.1", 5433}}});
//   outgrow::session_token session = live_shop::orders_service::session_from(lsn_cookie);
//   auto placed = orders.place(session, "alice", "book");   // {id, lsn}
//   auto mine = orders.list(session, "alice");             // {orders, served_by, reason}
//
// Replica positions reach the splitter two ways: a poll (start_polling on an Asio timer,
// every poll_interval: the primary's pg_current_wal_lsn(), each replica's replay LSN
// and replay lag), and on demand: a read whose session is ahead of every position the
// splitter knows asks the replicas once for their replay LSN (report_applied) before
// it is routed, so a replica that caught up a millisecond after the write serves the
// read (GitLab's load balancer checks hosts the same way). Known positions only ever lag
// the truth (replay positions grow), so routing on them is never stale. The price: a
// read whose session is ahead costs one more round trip per replica (a busy service
// would coalesce these checks, or cache "replica r has replayed x" for a few ms).
//
// Why the LSN is read after COMMIT, in its own statement: inside the transaction,
// pg_current_wal_lsn() is before the commit record; a replica that replayed up to it
// would not show the order yet. (Several statements in one PQexec call also run as one
// transaction.) With synchronous_commit on (the default) the WAL is written past the
// commit record when COMMIT returns, so the LSN read afterwards covers it; a server run
// with synchronous_commit off needs pg_current_wal_insert_lsn() instead.
//
// The HTTP side (handle_orders) takes the user from the app's session (session_store),
// never from the request, and calls the app's after_commit hook (payment, fulfilment
// job) once the order is committed. The fulfilment columns (paid, fulfilled_at) are
// written by the workers (worker.cpp).
//
// Connections: libpq connections are not thread-safe; each endpoint has a small pool
// (pg_pool) that the HTTP threads borrow from. Thread-safety: every member from any
// thread. Needs libpq (libpq-dev); the app builds without this file when it is absent.
#pragma once

#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <outgrow/core/metrics.hpp>
#include <outgrow/routing/read_write_splitter.hpp>

#include "http.hpp"  // live_shop::address

namespace live_shop {

/// A libpq error (connection or statement).
struct pg_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// "16/B374D848" (an LSN as PostgreSQL prints it) → 0x16B374D848; nullopt otherwise.
inline std::optional<std::uint64_t> parse_lsn(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size()) {
    return std::nullopt;
  }
  const auto hex = [](std::string_view s) -> std::optional<std::uint64_t> {
    if (s.size() > 8) return std::nullopt;
    std::uint64_t v = 0;
    for (const char c : s) {
      int d = 0;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else {
        return std::nullopt;
      }
      v = v * 16 + static_cast<std::uint64_t>(d);
    }
    return v;
  };
  const auto hi = hex(text.substr(0, slash));
  const auto lo = hex(text.substr(slash + 1));
  if (!hi || !lo) return std::nullopt;
  return (*hi << 32) | *lo;
}

/// 0x16B374D848 → "16/B374D848".
inline std::string format_lsn(std::uint64_t lsn) {
  return fmt::format("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF'FFFFU);
}

/// An owned query result.
struct pg_result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using pg_result = std::unique_ptr<PGresult, pg_result_deleter>;

/// A blocking pool of libpq connections to one server (connections made on demand,
/// at most `max_idle` kept). Thread-safe.
class pg_pool {
  struct conn_deleter {
    void operator()(PGconn* c) const noexcept { PQfinish(c); }
  };
  using conn_ptr = std::unique_ptr<PGconn, conn_deleter>;

 public:
  pg_pool(std::string conninfo, std::size_t max_idle = 16)
      : conninfo_(std::move(conninfo)), max_idle_(max_idle) {}

  /// Runs one statement with text parameters on a pooled connection. Returns the
  /// result of a successful command (tuples or not). Throws: pg_error (the connection
  /// is dropped when it broke).
  pg_result exec(const std::string& sql, const std::vector<std::string>& params = {}) {
    conn_ptr c = acquire();
    std::vector<const char*> values;
    for (const std::string& p : params) values.push_back(p.c_str());
    pg_result r(PQexecParams(c.get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0));
    const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      std::string why = PQerrorMessage(c.get());
      release(std::move(c));  // dropped if the connection is bad
      while (!why.empty() && why.back() == '\n') why.pop_back();
      throw pg_error(fmt::format("{}: {}", sql.substr(0, 40), why));
    }
    release(std::move(c));
    return r;
  }

  /// Runs several ';'-separated statements in one implicit transaction (no parameters).
  /// Throws: pg_error.
  void exec_script(const std::string& sql) {
    conn_ptr c = acquire();
    pg_result r(PQexec(c.get(), sql.c_str()));
    const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      std::string why = PQerrorMessage(c.get());
      release(std::move(c));
      while (!why.empty() && why.back() == '\n') why.pop_back();
      throw pg_error(fmt::format("{}: {}", sql.substr(0, 40), why));
    }
    release(std::move(c));
  }

 private:
  conn_ptr acquire() {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        conn_ptr c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    conn_ptr c(PQconnectdb(conninfo_.c_str()));
    if (!c || PQstatus(c.get()) != CONNECTION_OK) {
      std::string why = c ? PQerrorMessage(c.get()) : "out of memory";
      while (!why.empty() && why.back() == '\n') why.pop_back();
      throw pg_error(fmt::format("connect {}: {}", conninfo_, why));
    }
    return c;
  }
  void release(conn_ptr c) {
    if (PQstatus(c.get()) != CONNECTION_OK ||
        PQtransactionStatus(c.get()) != PQTRANS_IDLE) {
      return;  // broken, or left inside a transaction: close it
    }
    std::lock_guard lock(mutex_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(c));
  }

  std::string conninfo_;
  std::size_t max_idle_;
  std::mutex mutex_;
  std::vector<conn_ptr> idle_;
};

/// Creates the orders table (and its fulfilment columns) on the primary if needed.
/// Throws: pg_error.
inline void ensure_orders_schema(pg_pool& primary) {
  // Several app instances may start at once: CREATE TABLE IF NOT EXISTS is not safe
  // against itself; a transaction-scoped advisory lock serializes it (the statements
  // of one PQexec call run as one transaction).
  primary.exec_script(
      "SELECT pg_advisory_xact_lock(21); "
      "CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, "
      "user_name text NOT NULL, item text NOT NULL, "
      "created_at timestamptz NOT NULL DEFAULT now()); "
      "CREATE INDEX IF NOT EXISTS orders_user ON orders (user_name, id); "
      // Fulfilment (worker.cpp): paid once the payment service charged it,
      // fulfilled_at once a worker shipped it.
      "ALTER TABLE orders ADD COLUMN IF NOT EXISTS paid boolean NOT NULL "
      "DEFAULT false; "
      "ALTER TABLE orders ADD COLUMN IF NOT EXISTS fulfilled_at timestamptz");
}

struct orders_config {
  address primary;
  std::vector<address> replicas{};
  std::string user = "postgres";
  std::string dbname = "postgres";
  /// Between replication polls of every server. (0, 1 h]
  std::chrono::milliseconds poll_interval{100};
  /// Ask the replicas for their replay position when a read's session is ahead of what
  /// the splitter knows (see the header comment). Off: only the poll updates them.
  bool refresh_on_demand = true;
};

/// The service's own counters (the splitter has its metrics() too).
struct orders_metrics {
  static constexpr std::string_view metrics_name = "orders_metrics";
  std::uint64_t placed = 0;
  std::uint64_t reads_replica = 0;
  std::uint64_t reads_primary = 0;
  std::uint64_t refreshes = 0;  ///< on-demand replica position checks
  std::uint64_t errors = 0;
  template <class F>
  void for_each_metric(F&& f) const {
    f("placed", placed);
    f("reads_replica", reads_replica);
    f("reads_primary", reads_primary);
    f("refreshes", refreshes);
    f("errors", errors);
  }
};

class orders_service {
 public:
  using splitter_type = outgrow::read_write_splitter<std::string>;

  struct placed_order {
    std::int64_t id = 0;
    std::uint64_t lsn = 0;
  };
  struct order {
    std::int64_t id = 0;
    std::string item;
  };
  struct order_list {
    std::vector<order> orders;
    outgrow::route_target served_by = outgrow::route_target::none;
    outgrow::route_reason reason = outgrow::route_reason::replica;
    std::string endpoint;
  };

  /// Connects to the primary and creates the orders table if needed.
  /// Throws: pg_error when the primary cannot be reached.
  explicit orders_service(orders_config config)
      : config_(std::move(config)),
        splitter_(config_.primary.str(), replica_specs(config_),
                  {.default_consistency = outgrow::consistency::read_your_writes,
                   .poll_interval = config_.poll_interval}) {
    pools_.emplace(config_.primary.str(),
                   std::make_unique<pg_pool>(conninfo(config_.primary)));
    for (const address& r : config_.replicas) {
      pools_.emplace(r.str(), std::make_unique<pg_pool>(conninfo(r)));
    }
    ensure_orders_schema(pool(config_.primary.str()));
    poll_once();
    splitter_.start_polling(io_.get_executor(),
                            [this](const std::string& endpoint) { return poll(endpoint); });
    guard_.emplace(io_.get_executor());
    poller_thread_ = std::thread([this] { io_.run(); });  // last: nothing throws after it
  }

  orders_service(const orders_service&) = delete;
  orders_service& operator=(const orders_service&) = delete;
  ~orders_service() {
    splitter_.stop_polling();
    guard_.reset();
    io_.stop();
    if (poller_thread_.joinable()) poller_thread_.join();
  }

  /// The session of a request that carries `lsn` (its user's last write position; 0 =
  /// none): a session_token known by its position alone, which read_your_writes honours
  /// in any process.
  [[nodiscard]] static outgrow::session_token session_from(std::uint64_t lsn) noexcept {
    return outgrow::session_token::from_position(lsn);
  }

  /// Inserts an order on the primary; `session` then requires its LSN.
  /// Throws: pg_error (also when the primary is unavailable).
  placed_order place(outgrow::session_token& session, const std::string& user,
                     const std::string& item) {
    auto w = splitter_.write(session);
    if (!w) {
      errors_.add();
      throw pg_error(fmt::format("no primary: {}", w.reason()));
    }
    try {
      pg_pool& p = pool(*w);
      const pg_result ins =
          p.exec("INSERT INTO orders (user_name, item) VALUES ($1, $2) RETURNING id",
                 {user, item});
      placed_order out;
      out.id = std::strtoll(PQgetvalue(ins.get(), 0, 0), nullptr, 10);
      // After the COMMIT (autocommit above), in its own statement: see the header.
      const pg_result lsn = p.exec("SELECT pg_current_wal_lsn()::text");
      out.lsn = parse_lsn(PQgetvalue(lsn.get(), 0, 0)).value_or(0);
      w.success(out.lsn);
      placed_.add();
      return out;
    } catch (...) {
      w.failure();
      errors_.add();
      throw;
    }
  }

  /// The user's orders, newest first, from a replica that has applied the session's
  /// last write, else from the primary. Throws: pg_error.
  order_list list(outgrow::session_token& session, const std::string& user) {
    if (config_.refresh_on_demand && session.last_write_position != 0 &&
        known_replica_position() < session.last_write_position) {
      refresh_replicas();
    }
    for (int attempt = 0;; ++attempt) {
      // A replica that fails is retried once on the primary (strong).
      auto r = attempt == 0
                   ? splitter_.read(session)
                   : splitter_.read(session, {.mode = outgrow::consistency::strong});
      if (!r) {
        errors_.add();
        throw pg_error(fmt::format("no server for the read: {}", r.reason()));
      }
      order_list out;
      out.served_by = r.target();
      out.reason = r.reason();
      out.endpoint = *r;
      try {
        const pg_result res = pool(*r).exec(
            "SELECT id, item FROM orders WHERE user_name = $1 ORDER BY id DESC LIMIT 100",
            {user});
        for (int i = 0; i < PQntuples(res.get()); ++i) {
          out.orders.push_back({std::strtoll(PQgetvalue(res.get(), i, 0), nullptr, 10),
                                PQgetvalue(res.get(), i, 1)});
        }
        r.success();
      } catch (const pg_error&) {
        r.failure();
        if (out.served_by == outgrow::route_target::replica && attempt == 0) continue;
        errors_.add();
        throw;
      }
      (out.served_by == outgrow::route_target::replica ? reads_replica_ : reads_primary_)
          .add();
      return out;
    }
  }

  [[nodiscard]] orders_metrics metrics() const {
    return {.placed = placed_.load(),
            .reads_replica = reads_replica_.load(),
            .reads_primary = reads_primary_.load(),
            .refreshes = refreshes_.load(),
            .errors = errors_.load()};
  }
  [[nodiscard]] const splitter_type& splitter() const noexcept { return splitter_; }

 private:
  static std::vector<outgrow::replica_spec<std::string>> replica_specs(
      const orders_config& c) {
    std::vector<outgrow::replica_spec<std::string>> out;
    for (const address& r : c.replicas) out.push_back({.connection = r.str()});
    return out;
  }

  [[nodiscard]] std::string conninfo(const address& a) const {
    return fmt::format(
        "host={} port={} user={} dbname={} connect_timeout=5 "
        "options='-c statement_timeout=5000'",
        a.host, a.port, config_.user, config_.dbname);
  }

  pg_pool& pool(const std::string& endpoint) {
    const auto it = pools_.find(endpoint);
    if (it == pools_.end()) throw pg_error("unknown endpoint " + endpoint);
    return *it->second;  // the map is never changed after construction
  }

  /// One endpoint's replication state: the primary's current LSN, a replica's replay
  /// LSN and replay lag (0 when it has replayed all it received).
  outgrow::replication_report poll(const std::string& endpoint) {
    outgrow::replication_report report;
    if (endpoint == config_.primary.str()) {
      const pg_result r = pool(endpoint).exec("SELECT pg_current_wal_lsn()::text");
      report.applied_position = parse_lsn(PQgetvalue(r.get(), 0, 0));
      return report;
    }
    const pg_result r = pool(endpoint).exec(
        "SELECT pg_last_wal_replay_lsn()::text, "
        "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
        "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) "
        "END");
    if (!PQgetisnull(r.get(), 0, 0)) {
      report.applied_position = parse_lsn(PQgetvalue(r.get(), 0, 0));
    }
    report.lag = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(std::strtod(PQgetvalue(r.get(), 0, 1), nullptr)));
    return report;
  }

  void poll_once() {
    splitter_.poll_replication([this](const std::string& e) { return poll(e); });
  }

  [[nodiscard]] std::uint64_t known_replica_position() const {
    return splitter_.max_applied_position();
  }

  void refresh_replicas() {
    refreshes_.add();
    for (const address& a : config_.replicas) {
      try {
        const pg_result r = pool(a.str()).exec("SELECT pg_last_wal_replay_lsn()::text");
        if (PQgetisnull(r.get(), 0, 0)) continue;
        if (const auto lsn = parse_lsn(PQgetvalue(r.get(), 0, 0))) {
          splitter_.report_applied(a.str(), *lsn);
        }
      } catch (const pg_error&) {
        // An unreachable replica keeps its old position; the poll reports it again.
      }
    }
  }

  orders_config config_;
  splitter_type splitter_;
  std::map<std::string, std::unique_ptr<pg_pool>> pools_;
  outgrow::counter placed_;
  outgrow::counter reads_replica_;
  outgrow::counter reads_primary_;
  outgrow::counter refreshes_;
  outgrow::counter errors_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      guard_;
  std::thread poller_thread_;
};

/// The cookie that carries a user's last write position (decimal LSN).
inline constexpr std::string_view lsn_cookie = "shop_lsn";

/// What the app does once an order is committed (payment, the fulfilment job): called
/// with the order's id, it returns extra JSON members for the 201 body
/// (`"payment":"charged"`), or "" for none. It must not throw.
using after_commit_fn = std::function<std::string(std::int64_t order_id)>;

/// HTTP for "my orders" of `user` (the logged-in user: the app takes it from the session,
/// never from the request):
///   POST /orders?item=I  201 {"id":..,"lsn":"0/3000148",<after_commit>} + Set-Cookie:
///                        shop_lsn
///   GET  /orders         200 {"user":..,"served_by":"replica"|"primary",
///                        "reason":..,"orders":[{"id":..,"item":..},...]}
///                        (newest first) + X-Served-By; the shop_lsn cookie
///                        decides whether a replica may serve it
/// Items are 1-64 characters of [A-Za-z0-9_-]; 503 when PostgreSQL fails.
inline response handle_orders(orders_service& orders, const request& req,
                              const std::string& user,
                              const after_commit_fn& after_commit = {}) {
  const std::string_view target = target_of(req);
  const auto valid = [](std::string_view s) {
    return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-';
    });
  };
  if (!valid(user)) return reply(req, http::status::bad_request, "bad user\n");
  std::uint64_t lsn = 0;
  {
    const std::string_view v = cookie_value(to_std(req[http::field::cookie]), lsn_cookie);
    std::from_chars(v.data(), v.data() + v.size(), lsn);  // a bad value reads as 0
  }
  outgrow::session_token session = orders_service::session_from(lsn);
  try {
    if (req.method() == http::verb::post) {
      const std::string item(query_param(target, "item"));
      if (!valid(item))
        return reply(req, http::status::bad_request, "bad or missing item\n");
      const auto placed = orders.place(session, user, item);
      const std::string extra = after_commit ? after_commit(placed.id) : std::string();
      response res = reply(
          req, http::status::created,
          fmt::format(R"({{"id":{},"lsn":"{}"{}{}}})"
                      "\n",
                      placed.id, format_lsn(placed.lsn), extra.empty() ? "" : ",", extra),
          "application/json");
      res.set(http::field::set_cookie, fmt::format("{}={}; Path=/; HttpOnly", lsn_cookie,
                                                   session.last_write_position));
      return res;
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      return reply(req, http::status::method_not_allowed, "GET or POST\n");
    }
    const auto list = orders.list(session, user);
    const std::string_view where =
        list.served_by == outgrow::route_target::replica ? "replica" : "primary";
    std::string body = fmt::format(
        R"({{"user":"{}","served_by":"{}","reason":"{}","endpoint":"{}","orders":[)", user,
        where, list.reason, list.endpoint);
    for (std::size_t i = 0; i < list.orders.size(); ++i) {
      body += fmt::format(R"({}{{"id":{},"item":"{}"}})", i == 0 ? "" : ",",
                          list.orders[i].id, list.orders[i].item);
    }
    body += "]}\n";
    response res = reply(req, http::status::ok, std::move(body), "application/json");
    res.set("X-Served-By", to_beast(where));
    return res;
  } catch (const pg_error& e) {
    return reply(req, http::status::service_unavailable,
                 fmt::format("database unavailable: {}\n", e.what()));
  }
}

}  // namespace live_shop
