// examples/live_shop/app.cpp — one stateless app instance of the live shop.
//
// What it shows: an HTTP service that keeps no state of its own, so any number of copies
// can run behind the front (front.cpp): product pages come through
// outgrow::tiered_cache — L1 in this process (outgrow::cache), L2 shared by every
// instance in Redis (outgrow::redis_tier), the "database" behind them. A product one
// instance loaded is an L2 hit for all the others. The catalogue database is, for now, a
// deterministic function with a small delay. "My orders" live in PostgreSQL (a primary
// and streaming replicas), routed by outgrow::read_write_splitter with read-your-writes
// by WAL position (orders.hpp): POST /orders writes on the primary and returns the
// commit's LSN in a cookie, GET /orders reads on a replica that has replayed it, else
// on the primary.
//
// Endpoints: GET /health (200 "ok"), GET /whoami (the instance id), GET /product/<id>
// (200 with the product, 404 for an unknown id), GET /metrics (Prometheus text, built
// by outgrow::prometheus_writer from the caches' and the splitter's metrics snapshots);
// with --pg-primary: POST /orders?user=U&item=I and GET /orders?user=U (orders.hpp).
//
// Run (redis-server on 6379 first):
//   live_shop_app --id app-1 --port 8081 --redis 127.0.0.1:6379
//   curl 127.0.0.1:8081/product/42; curl 127.0.0.1:8081/metrics
//   live_shop_postgres --address-file pg.txt &     # a primary + replica (postgres.cpp)
//   live_shop_app --id app-1 --port 8081 --pg-primary <primary> --pg-replica <replica>
//   curl -i -X POST '127.0.0.1:8081/orders?user=alice&item=book'  # Set-Cookie: shop_lsn
//   curl -b shop_lsn=<lsn> '127.0.0.1:8081/orders?user=alice'
// Options: --port 0 picks a free port, written to --port-file FILE; --db-delay-ms N
// (default 2) is the database's latency. --pg-primary HOST:PORT and --pg-replica
// HOST:PORT (repeatable) enable the orders (user postgres, database postgres, as
// live_shop::postgres_cluster creates them); --pg-poll-ms N (default 100) is the
// replication poll. Built without libpq (no OUTGROW_LIVE_SHOP_WITH_PG), --pg-primary is
// refused. It binds 127.0.0.1 only; SIGTERM or SIGKILL stops it (it holds nothing that
// needs flushing; PostgreSQL has every order once the POST answered).
#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/tiered_cache.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/prometheus.hpp>
#include <outgrow/redis/redis_tier.hpp>

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
  template <class F>
  void for_each_metric(F&& f) const {
    f("requests", requests);
    f("not_found", not_found);
    f("db_loads", db_loads);
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
};

options parse(int argc, char** argv) {
  const live_shop::command_line cli(
      "live_shop_app",
      "--id NAME [--port N] [--port-file FILE] [--redis HOST:PORT] [--db-delay-ms N] "
      "[--pg-primary HOST:PORT [--pg-replica HOST:PORT]... [--pg-poll-ms N]]");
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
    } else {
      return false;
    }
    return true;
  });
#ifndef OUTGROW_LIVE_SHOP_WITH_PG
  if (o.pg_primary) cli.fail("--pg-primary: built without libpq (no orders)");
#endif
  if (!o.pg_primary && !o.pg_replicas.empty()) cli.fail("--pg-replica needs --pg-primary");
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

#ifdef OUTGROW_LIVE_SHOP_WITH_PG
  std::unique_ptr<live_shop::orders_service> orders;
  if (opt.pg_primary) {
    orders = std::make_unique<live_shop::orders_service>(
        live_shop::orders_config{.primary = *opt.pg_primary,
                                 .replicas = opt.pg_replicas,
                                 .poll_interval = opt.pg_poll});
  }
#endif

  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> not_found{0};

  const auto handle = [&](const live_shop::request& req) -> live_shop::response {
    requests.fetch_add(1, std::memory_order_relaxed);
    const std::string_view target = live_shop::target_of(req);
#ifdef OUTGROW_LIVE_SHOP_WITH_PG
    if (orders && (target == "/orders" || target.starts_with("/orders?"))) {
      return live_shop::handle_orders(*orders, req);
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
      w.add("app",
            app_metrics{.requests = requests.load(),
                        .not_found = not_found.load(),
                        .db_loads = db.loads.load()},
            instance);
      w.add("app_products", products.metrics(), instance);
      w.add("app_l1", products.tier_metrics<0>(), instance);
      w.add("app_l2_redis", l2.metrics(), instance);
#ifdef OUTGROW_LIVE_SHOP_WITH_PG
      if (orders) {
        w.add("app_orders", orders->metrics(), instance);
        w.add("app_orders_splitter", orders->splitter().metrics(), instance);
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
