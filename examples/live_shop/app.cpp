// examples/live_shop/app.cpp — one stateless app instance of the live shop.
//
// What it shows: an HTTP service that keeps no state of its own, so any number of copies
// can run behind the front (front.cpp), and any of them can die:
//  - product pages come through outgrow::tiered_cache — L1 in this process
//    (outgrow::cache), L2 shared by every instance in Redis (outgrow::redis_tier), the
//    "database" behind them. A product one instance loaded is an L2 hit for all the
//    others. The catalogue database is a deterministic function with a small delay.
//  - sessions live in Redis (outgrow::session_store, with its optional L1 kept coherent
//    by Redis's client tracking): POST /login sets a shop_session cookie that every
//    instance accepts, so an instance killed logs nobody out.
//  - "my orders" live in PostgreSQL (a primary and streaming replicas), routed by
//    outgrow::read_write_splitter with read-your-writes by WAL position (orders.hpp):
//    POST /orders writes on the primary and returns the commit's LSN in a cookie
//    (shop_lsn: a position, not a secret, so it stays a cookie of its own rather than
//    session data — a session write per order would cost a Redis round trip and a
//    version conflict between a user's parallel tabs), GET /orders reads on a replica
//    that has replayed it, else on the primary.
//  - after an order's COMMIT, its payment goes to the `payment` service (payment.cpp)
//    through outgrow::bulkhead (at most --payment-concurrency calls at once per
//    instance: a hanging provider ties up that many threads, not all of them) and
//    outgrow::circuit_breaker with a timeout; a failed or refused call (bulkhead full,
//    breaker open) defers the payment — the order is still accepted (see the comment at
//    the breaker for why) — and a fulfilment job goes to outgrow::redis_stream_queue
//    (fulfilment.hpp; idempotency key = the order id) for the workers (worker.cpp).
//
// Endpoints: GET /health (200 "ok"), GET /whoami (the instance id), GET /product/<id>
// (200 with the product, 404 for an unknown id), POST /login?user=U (200 + Set-Cookie:
// shop_session), GET /me and POST /logout (the session's user; 401 without a session,
// 503 when Redis cannot say), GET /metrics (Prometheus text, built by
// outgrow::prometheus_writer from the caches', sessions', splitter's and breaker's
// metrics snapshots); with --pg-primary, logged in: POST /orders?item=I (201
// {"id":..,"lsn":..,"payment":"charged"|"deferred","fulfilment":"queued"|"not queued"})
// and GET /orders (orders.hpp).
//
// Run (redis-server on 6379 first):
//   live_shop_app --id app-1 --port 8081 --redis 127.0.0.1:6379
//   curl 127.0.0.1:8081/product/42; curl 127.0.0.1:8081/metrics
//   live_shop_postgres --address-file pg.txt &     # a primary + replica (postgres.cpp)
//   live_shop_payment --port 8090 &
//   live_shop_app --id app-1 --port 8081 --pg-primary <primary> --pg-replica <replica>
//       --payment 127.0.0.1:8090                   (one command line)
//   curl -i -X POST '127.0.0.1:8081/login?user=alice'           # Set-Cookie: shop_session
//   curl -i -b shop_session=<id> -X POST '127.0.0.1:8081/orders?item=book'  # shop_lsn
//   curl -b 'shop_session=<id>; shop_lsn=<lsn>' 127.0.0.1:8081/orders
// Options: --port 0 picks a free port, written to --port-file FILE; --db-delay-ms N
// (default 2) is the database's latency. --pg-primary HOST:PORT and --pg-replica
// HOST:PORT (repeatable) enable the orders (user postgres, database postgres, as
// live_shop::postgres_cluster creates them); --pg-poll-ms N (default 100) is the
// replication poll. --payment HOST:PORT charges orders (without it every payment is
// deferred to the workers); --payment-timeout-ms N (300) bounds each call;
// --breaker-open-ms N (2000) is how long the breaker stays open; --payment-concurrency N
// (8) caps the calls in flight (the bulkhead). Built without libpq
// (no OUTGROW_LIVE_SHOP_WITH_PG), --pg-primary is refused. It binds 127.0.0.1 only;
// SIGTERM or SIGKILL stops it (it holds nothing that needs flushing: PostgreSQL has
// every order and Redis its job once the POST answered 201).
#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/tiered_cache.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/prometheus.hpp>
#include <outgrow/redis/redis_tier.hpp>
#include <outgrow/redis/session_store.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "http.hpp"
#ifdef OUTGROW_LIVE_SHOP_WITH_PG
#include <memory>

#include <outgrow/admission/bulkhead.hpp>
#include <outgrow/redis/redis_stream_queue.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>

#include "fulfilment.hpp"
#include "orders.hpp"
#endif

using namespace std::chrono_literals;

namespace {

// The backing store: a catalogue of products 1..100000 computed from the id, with a
// database-like delay. Thread-safe (it has no state but counters).
struct product_db {
  using key_type = std::string;
  using mapped_type = std::string;

  std::optional<std::string> load(const std::string& id) {
    loads.add();
    std::this_thread::sleep_for(delay);
    std::uint32_t n = 0;
    for (const char c : id) {
      if (c < '0' || c > '9' || n > 100'000) return std::nullopt;
      n = n * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (n < 1 || n > 100'000) return std::nullopt;
    return fmt::format(R"({{"id":{},"name":"product {}","price_cents":{}}})", n, n,
                       100 + (n * 7919U) % 9900U);
  }
  // The catalogue is read-only in this slice: writes are counted and ignored.
  void store(const std::string&, const std::string&) { writes.add(); }
  void erase(const std::string&) { writes.add(); }

  std::chrono::milliseconds delay{2};
  outgrow::counter loads;
  outgrow::counter writes;
};

// The app's own counters, exported like any primitive's (a metrics snapshot).
struct app_metrics {
  static constexpr std::string_view metrics_name = "app_metrics";
  std::uint64_t requests = 0;
  std::uint64_t not_found = 0;
  std::uint64_t db_loads = 0;
  std::uint64_t logins = 0;
  std::uint64_t no_session = 0;            ///< 401: no, unknown or expired session
  std::uint64_t sessions_unavailable = 0;  ///< 503: Redis could not say
  std::uint64_t payments_charged = 0;      ///< charged by this instance at order time
  std::uint64_t payments_deferred = 0;     ///< left to the worker (breaker open / failed)
  std::uint64_t jobs_enqueued = 0;
  std::uint64_t enqueue_failures = 0;
  template <class F>
  void for_each_metric(F&& f) const {
    f("requests", requests);
    f("not_found", not_found);
    f("db_loads", db_loads);
    f("logins", logins);
    f("no_session", no_session);
    f("sessions_unavailable", sessions_unavailable);
    f("payments_charged", payments_charged);
    f("payments_deferred", payments_deferred);
    f("jobs_enqueued", jobs_enqueued);
    f("enqueue_failures", enqueue_failures);
  }
};

struct options {
  std::string id = "app";
  unsigned short port = 0;
  std::string port_file;
  live_shop::address redis{"127.0.0.1", 6379};
  std::chrono::milliseconds db_delay{2};
  std::optional<live_shop::address> pg_primary;
  std::vector<live_shop::address> pg_replicas;
  std::chrono::milliseconds pg_poll{100};
  std::optional<live_shop::address> payment;
  std::chrono::milliseconds payment_timeout{300};
  std::chrono::milliseconds breaker_open{2000};
  std::size_t payment_concurrency = 8;
};

options parse(int argc, char** argv) {
  const live_shop::command_line cli(
      "live_shop_app",
      "--id NAME [--port N] [--port-file FILE] [--redis HOST:PORT] [--db-delay-ms N] "
      "[--pg-primary HOST:PORT [--pg-replica HOST:PORT]... [--pg-poll-ms N] "
      "[--payment HOST:PORT [--payment-timeout-ms N] [--breaker-open-ms N] "
      "[--payment-concurrency N]]]");
  options o;
  cli.parse(argc, argv, [&](std::string_view name, const std::string& value) {
    if (name == "--id") {
      o.id = value;
    } else if (name == "--port") {
      o.port = static_cast<unsigned short>(cli.number(name, value, 0, 65535));
    } else if (name == "--port-file") {
      o.port_file = value;
    } else if (name == "--redis") {
      o.redis = cli.where(name, value);
    } else if (name == "--db-delay-ms") {
      o.db_delay = cli.millis(name, value);
    } else if (name == "--pg-primary") {
      o.pg_primary = cli.where(name, value);
    } else if (name == "--pg-replica") {
      o.pg_replicas.push_back(cli.where(name, value));
    } else if (name == "--pg-poll-ms") {
      o.pg_poll = cli.millis(name, value, 1);
    } else if (name == "--payment") {
      o.payment = cli.where(name, value);
    } else if (name == "--payment-timeout-ms") {
      o.payment_timeout = cli.millis(name, value, 1);
    } else if (name == "--breaker-open-ms") {
      o.breaker_open = cli.millis(name, value, 1);
    } else if (name == "--payment-concurrency") {
      o.payment_concurrency = static_cast<std::size_t>(cli.number(name, value, 1, 1024));
    } else {
      return false;
    }
    return true;
  });
#ifndef OUTGROW_LIVE_SHOP_WITH_PG
  if (o.pg_primary) cli.fail("--pg-primary: built without libpq (no orders)");
#endif
  if (!o.pg_primary && !o.pg_replicas.empty()) cli.fail("--pg-replica needs --pg-primary");
  if (!o.pg_primary && o.payment) cli.fail("--payment needs --pg-primary (orders)");
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  const options opt = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanished is an error code, not a signal
  namespace http = live_shop::http;

  product_db db;
  db.delay = opt.db_delay;
  using l1_type = outgrow::cache<std::string, std::string>;
  using l2_type = outgrow::redis_tier<std::string, std::string>;
  l1_type l1({.capacity = 10'000, .default_ttl = 30s});
  l2_type l2({.connection = {.host = opt.redis.host, .port = opt.redis.port},
              .key_prefix = "live_shop:product:",
              .default_ttl = 5min});
  outgrow::tiered_cache<outgrow::tiers<l1_type, l2_type>, product_db> products(
      db, std::tie(l1, l2), {.negative_ttl = 10s});

  // Sessions live in Redis, so any instance serves any logged-in user and an instance
  // that dies logs nobody out. The L1 keeps the sessions this instance read (Redis's
  // client tracking drops an entry the moment any instance changes the session).
  outgrow::session_store<std::string> sessions(
      {.connection = {.host = opt.redis.host, .port = opt.redis.port},
       .key_prefix = "live_shop:session:",
       .max_sessions_per_user = 20,
       .l1_capacity = 10'000});
  outgrow::counter logins;
  outgrow::counter no_session;
  outgrow::counter sessions_unavailable;
  // The logged-in user of a request (shop_session cookie), or the response to send.
  const auto user_of = [&](const live_shop::request& req,
                           std::string& user) -> std::optional<live_shop::response> {
    const std::string_view cookie = live_shop::cookie_value(
        live_shop::to_std(req[http::field::cookie]), live_shop::session_cookie);
    const auto s = sessions.get(outgrow::session_id(cookie));
    if (s) {
      user = s->user;
      return std::nullopt;
    }
    if (s.status == outgrow::session_status::unavailable) {
      sessions_unavailable.add();
      return live_shop::reply(req, http::status::service_unavailable,
                              "sessions unavailable\n");
    }
    no_session.add();
    return live_shop::reply(req, http::status::unauthorized, "log in first\n");
  };

#ifdef OUTGROW_LIVE_SHOP_WITH_PG
  std::unique_ptr<live_shop::orders_service> orders;
  if (opt.pg_primary) {
    orders = std::make_unique<live_shop::orders_service>(
        live_shop::orders_config{.primary = *opt.pg_primary,
                                 .replicas = opt.pg_replicas,
                                 .poll_interval = opt.pg_poll});
  }
  // Payments go through a circuit breaker: 5 failures in a row (an error or the
  // timeout) open it for --breaker-open-ms, then one probe decides. While it is open
  // the order is still ACCEPTED and its payment deferred to the fulfilment worker,
  // which charges it before shipping (retrying, then dead-lettering). Why not 503 +
  // Retry-After: the order is already committed and the customer's intent is known; a
  // shop loses the sale when checkout fails, while a deferred charge costs only a
  // possible later decline (handled by e-mail, as shops that authorize at shipping time
  // do). The charge is idempotent by order id, so the app's and a worker's attempts
  // never charge twice.
  // Outside the breaker, a bulkhead: at most --payment-concurrency calls in flight, no
  // waiting line (a caller that finds it full defers the payment at once). A provider
  // that hangs then holds that many of this instance's threads for the timeout, not all
  // of them, until the breaker opens.
  outgrow::bulkhead payment_bulkhead(
      {.max_concurrent_calls = opt.payment_concurrency, .max_waiting = 0});
  outgrow::circuit_breaker<> payment_breaker(
      {.failure_threshold = 5, .open_for = opt.breaker_open});
  outgrow::counter payments_charged;
  outgrow::counter payments_deferred;
  // Fulfilment jobs: one per committed order, idempotency key = the order id (a
  // producer retry or a redelivery is completed once). Enqueued after the COMMIT; an
  // instance killed between the two leaves an order without a job — the client got no
  // 201 then; a shop that must not lose those uses a transactional outbox (the job row
  // written in the order's transaction, relayed to the stream).
  std::unique_ptr<outgrow::redis_stream_queue<std::string>> fulfilment;
  if (orders) {
    fulfilment = std::make_unique<outgrow::redis_stream_queue<std::string>>(
        outgrow::redis_stream_queue_config{
            .connection = {.host = opt.redis.host, .port = opt.redis.port},
            .stream = std::string(live_shop::fulfilment_stream),
            .group = std::string(live_shop::fulfilment_group)});
  }
  outgrow::counter jobs_enqueued;
  outgrow::counter enqueue_failures;
  const auto after_commit = [&](std::int64_t order_id) -> std::string {
    bool paid = false;
    if (opt.payment) {
      const auto slot = payment_bulkhead.try_acquire();
      if (slot) {
        if (auto permit = payment_breaker.try_acquire()) {
          thread_local std::optional<live_shop::payment_client> pay;
          if (!pay) pay.emplace(*opt.payment, opt.payment_timeout);
          paid = pay->charge(order_id);
          if (paid) {
            permit.success();
          } else {
            permit.failure();
          }
        }
      }
    }
    (paid ? payments_charged : payments_deferred).add();
    const auto queued = fulfilment->enqueue(
        live_shop::fulfilment_job{order_id, paid}.encode(), std::to_string(order_id));
    (queued ? jobs_enqueued : enqueue_failures).add();
    return fmt::format(R"("payment":"{}","fulfilment":"{}")", paid ? "charged" : "deferred",
                       queued ? "queued" : "not queued");
  };
#endif

  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> not_found{0};

  const auto handle = [&](const live_shop::request& req) -> live_shop::response {
    requests.fetch_add(1, std::memory_order_relaxed);
    const std::string_view target = live_shop::target_of(req);
    const bool post = req.method() == http::verb::post;
    if (post && target.starts_with("/login?")) {
      // A real shop checks a password here; the demo trusts the name.
      const std::string user(live_shop::query_param(target, "user"));
      if (user.empty() || user.size() > 64) {
        return live_shop::reply(req, http::status::bad_request, "bad user\n");
      }
      const auto made = sessions.create(user, "v1");
      if (!made) {
        return live_shop::reply(req, http::status::service_unavailable,
                                fmt::format("sessions {}\n", made.status));
      }
      logins.add();
      live_shop::response res = live_shop::reply(req, http::status::ok, user + "\n");
      res.set(http::field::set_cookie,
              fmt::format("{}={}; Path=/; HttpOnly; SameSite=Lax",
                          live_shop::session_cookie, made->reveal()));
      return res;
    }
    if (target == "/me" || (post && target == "/logout")) {
      std::string user;
      if (auto refused = user_of(req, user)) return std::move(*refused);
      if (post) {
        (void)sessions.destroy(outgrow::session_id(live_shop::cookie_value(
            live_shop::to_std(req[http::field::cookie]), live_shop::session_cookie)));
      }
      return live_shop::reply(req, http::status::ok, user + "\n");
    }
#ifdef OUTGROW_LIVE_SHOP_WITH_PG
    if (orders && (target == "/orders" || target.starts_with("/orders?"))) {
      std::string user;
      if (auto refused = user_of(req, user)) return std::move(*refused);
      return live_shop::handle_orders(*orders, req, user, after_commit);
    }
#endif
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      return live_shop::reply(req, http::status::method_not_allowed, "GET only\n");
    }
    if (target == "/health") return live_shop::reply(req, http::status::ok, "ok\n");
    if (target == "/whoami") return live_shop::reply(req, http::status::ok, opt.id + "\n");
    if (target.starts_with("/product/")) {
      const std::string id(target.substr(9));
      if (auto product = products.get(id)) {
        return live_shop::reply(req, http::status::ok, *product + "\n", "application/json");
      }
      not_found.fetch_add(1, std::memory_order_relaxed);
      return live_shop::reply(req, http::status::not_found, "no such product\n");
    }
    if (target == "/metrics") {
      outgrow::prometheus_writer w;
      const outgrow::prometheus_labels instance{{"instance", opt.id}};
      app_metrics m{.requests = requests.load(),
                    .not_found = not_found.load(),
                    .db_loads = db.loads.load(),
                    .logins = logins.load(),
                    .no_session = no_session.load(),
                    .sessions_unavailable = sessions_unavailable.load()};
#ifdef OUTGROW_LIVE_SHOP_WITH_PG
      m.payments_charged = payments_charged.load();
      m.payments_deferred = payments_deferred.load();
      m.jobs_enqueued = jobs_enqueued.load();
      m.enqueue_failures = enqueue_failures.load();
#endif
      w.add("app", m, instance);
      w.add("app_sessions", sessions.metrics(), instance);
      w.add("app_products", products.metrics(), instance);
      w.add("app_l1", products.tier_metrics<0>(), instance);
      w.add("app_l2_redis", l2.metrics(), instance);
#ifdef OUTGROW_LIVE_SHOP_WITH_PG
      if (orders) {
        w.add("app_orders", orders->metrics(), instance);
        w.add("app_orders_splitter", orders->splitter().metrics(), instance);
        w.add("app_payment_breaker", payment_breaker.metrics(), instance);
        w.add("app_payment_bulkhead", payment_bulkhead.metrics(), instance);
        for (const auto& e : orders->splitter().endpoints()) {
          w.add("app_orders_endpoint", e,
                {{"instance", opt.id}, {"connection", e.connection}});
        }
      }
#endif
      return live_shop::reply(req, http::status::ok, w.str(),
                              outgrow::prometheus_content_type);
    }
    return live_shop::reply(req, http::status::not_found, "not found\n");
  };

  live_shop::listener server(opt.port);
  live_shop::write_port_file(opt.port_file, server.port());
  fmt::print("live_shop_app {} listening on 127.0.0.1:{} (redis {}{})\n", opt.id,
             server.port(), opt.redis.str(),
             opt.pg_primary ? fmt::format(", postgres primary {} + {} replicas",
                                          opt.pg_primary->str(), opt.pg_replicas.size())
                            : std::string());
  std::fflush(stdout);
  server.serve(handle);
} catch (const std::exception& e) {  // a port in use, a bad configuration
  fmt::print(stderr, "live_shop_app: {}\n", e.what());
  return 1;
}
