// Integration test of the live shop's "my orders" (examples/live_shop/orders.hpp): a real
// PostgreSQL primary and streaming replica (live_shop::postgres_cluster, in a temporary
// directory, stopped by pid at the end and on failure), a redis-server, two
// `live_shop_app` instances with --pg-primary / --pg-replica and the `live_shop_front`
// proxy before them, all on 127.0.0.1. The shoppers talk to the front, so a write and
// the read after it usually land on different app instances: the write position travels
// in the cookie, not in an instance.
//
// Orders need a session (POST /login, the shop_session cookie: session_store in Redis).
// Must hold: 200 orders written and read back immediately (POST /orders, then GET
// /orders with the shop_lsn cookie the POST set) never miss the order just placed
// (stale reads 0, counted), and reads do reach the replica once it has replayed the
// write (replica reads > 0, counted from X-Served-By). With replay paused on the replica
// (pg_wal_replay_pause()), every read-your-writes read goes to the primary
// (session_ahead) and still sees its order; after pg_wal_replay_resume() reads return
// to the replica. Real time, bounded: a few seconds (waits of at most 20 s).
//
// Skipped (OUTGROW-SKIPPED) when the app binary, libpq or the PostgreSQL binaries are
// missing, or when running as root without a `postgres` user.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "../../examples/live_shop/http.hpp"
#include "../../examples/live_shop/postgres_process.hpp"
#include "catch.hpp"
#include "child_process.hpp"
#include "live_shop_support.hpp"
#include "redis_server.hpp"
#ifdef OUTGROW_LIVE_SHOP_WITH_PG
#include <libpq-fe.h>
#endif

using namespace std::chrono_literals;
namespace fs = std::filesystem;

#ifdef OUTGROW_LIVE_SHOP_WITH_PG
namespace {

using app_process = outgrow_test::child_process;
using outgrow_test::scratch_dir;
using outgrow_test::sql_number;
using outgrow_test::wait_for_port_file;

/// One user's browser: a keep-alive connection and the shop_lsn cookie.
struct shopper {
  live_shop::client_connection conn;
  std::string user;
  std::string cookie;   // "shop_lsn=<n>" once an order was placed
  std::string session;  // "shop_session=<id>" once logged in

  std::optional<live_shop::response> send(live_shop::http::verb verb,
                                          const std::string& target) {
    live_shop::request req{verb, live_shop::to_beast(target), 11};
    req.keep_alive(true);
    const std::string cookies = session.empty()  ? cookie
                                : cookie.empty() ? session
                                                 : session + "; " + cookie;
    if (!cookies.empty()) req.set(live_shop::http::field::cookie, cookies);
    live_shop::response res;
    bool reused = false;
    if (conn.exchange(req, res, reused)) return std::nullopt;
    return res;
  }

  /// POST /login (orders need a session); false on error. Keeps the session cookie.
  bool login() {
    const auto res = send(live_shop::http::verb::post, "/login?user=" + user);
    if (!res || res->result_int() != 200) return false;
    const std::string set(live_shop::to_std((*res)[live_shop::http::field::set_cookie]));
    session = set.substr(0, set.find(';'));
    return !session.empty();
  }

  /// POST an order; its id (-1 on error). Keeps the Set-Cookie.
  long place(int n) {
    const auto res = send(live_shop::http::verb::post,
                          fmt::format("/orders?user={}&item=item-{}", user, n));
    if (!res || res->result_int() != 201) return -1;
    const std::string set(live_shop::to_std((*res)[live_shop::http::field::set_cookie]));
    cookie = set.substr(0, set.find(';'));
    const std::string& body = res->body();  // {"id":N,"lsn":"..."}
    return std::strtol(body.c_str() + body.find(':') + 1, nullptr, 10);
  }

  struct read_result {
    bool ok = false;
    bool has_order = false;
    std::string served_by;
    std::string body;
  };
  /// GET my orders; whether order `id` is in the list and who served it.
  read_result read(long id) {
    read_result out;
    const auto res = send(live_shop::http::verb::get, "/orders?user=" + user);
    if (!res || res->result_int() != 200) return out;
    out.ok = true;
    out.body = res->body();
    out.served_by = std::string(live_shop::to_std((*res)["X-Served-By"]));
    out.has_order = out.body.find(fmt::format(R"({{"id":{},)", id)) != std::string::npos;
    return out;
  }
};

/// Runs one statement on `where` with a fresh libpq connection; false on any error.
bool run_sql(const live_shop::address& where, const char* sql) {
  PGconn* c = PQconnectdb(live_shop::postgres_cluster::conninfo(where).c_str());
  bool ok = PQstatus(c) == CONNECTION_OK;
  if (ok) {
    PGresult* r = PQexec(c, sql);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) UNSCOPED_INFO(sql << ": " << PQerrorMessage(c));
    PQclear(r);
  }
  PQfinish(c);
  return ok;
}

}  // namespace
#endif

TEST_CASE("live pg: my orders read your writes through the splitter") {
#ifndef OUTGROW_LIVE_SHOP_WITH_PG
  fmt::print(
      "OUTGROW-SKIPPED: the live shop was built without libpq (install libpq-dev)\n");
  return;
#else
  const fs::path app_bin = outgrow_test::live_shop_bin_dir() / "live_shop_app";
  const fs::path front_bin = outgrow_test::live_shop_bin_dir() / "live_shop_front";
  if (outgrow_test::live_shop_bin_dir().empty() || !fs::exists(app_bin) ||
      !fs::exists(front_bin)) {
    fmt::print(
        "OUTGROW-SKIPPED: live_shop_app / live_shop_front not found in '{}' (set "
        "OUTGROW_LIVE_SHOP_BIN_DIR)\n",
        outgrow_test::live_shop_bin_dir().string());
    return;
  }
  if (const std::string why = live_shop::postgres_cluster::unavailable(); !why.empty()) {
    fmt::print("OUTGROW-SKIPPED: {}\n", why);
    return;
  }

  const auto started = std::chrono::steady_clock::now();
  live_shop::postgres_cluster pg({.replicas = 1});
  const live_shop::address replica = pg.replicas().at(0);
  outgrow_test::redis_server redis;
  scratch_dir tmp;
  std::vector<std::unique_ptr<app_process>> apps;
  std::vector<live_shop::address> app_at;
  for (int i = 1; i <= 2; ++i) {
    apps.push_back(std::make_unique<app_process>(
        std::vector<std::string>{
            app_bin.string(), "--id", fmt::format("app-pg-{}", i), "--port", "0",
            "--port-file", (tmp.path / fmt::format("app-{}.port", i)).string(), "--redis",
            fmt::format("127.0.0.1:{}", redis.port()), "--pg-primary", pg.primary().str(),
            "--pg-replica", replica.str()},
        tmp.path / fmt::format("app-{}.log", i)));
  }
  for (int i = 1; i <= 2; ++i) {
    app_at.push_back(
        {"127.0.0.1", wait_for_port_file(tmp.path / fmt::format("app-{}.port", i))});
  }
  app_process front(
      {front_bin.string(), "--port", "0", "--port-file", (tmp.path / "front.port").string(),
       "--health-interval-ms", "200", "--timeout-ms", "5000", "--slow-start-ms", "0",
       "--upstream", app_at[0].str(), "--upstream", app_at[1].str()},
      tmp.path / "front.log");
  const live_shop::address front_at{"127.0.0.1",
                                    wait_for_port_file(tmp.path / "front.port")};
  bool passed = false;
  struct log_dump {  // the children's output, printed when the test fails
    const bool& passed;
    const std::vector<std::unique_ptr<app_process>>& apps;
    const app_process& front;
    const live_shop::postgres_cluster& pg;
    ~log_dump() {
      if (passed) return;
      for (const auto& a : apps)
        std::fprintf(stderr, "--- app ---\n%s\n", a->log().c_str());
      std::fprintf(stderr, "--- front ---\n%s\n--- primary ---\n%s\n--- replica ---\n%s\n",
                   front.log().c_str(), pg.log(0).c_str(), pg.log(1).c_str());
    }
  } dump{passed, apps, front, pg};
  for (const live_shop::address& at : {app_at[0], app_at[1], front_at}) {
    live_shop::client_connection probe(at, 5s);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!probe.get("/health") && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    const auto health = probe.get("/health");
    REQUIRE(health);
    REQUIRE(health->result_int() == 200);
  }
  const auto ready = std::chrono::steady_clock::now();

  // ---- 200 orders from 4 shoppers, each read back at once -----------------------------
  constexpr int shoppers = 4;
  constexpr int per_shopper = 50;
  std::atomic<int> errors{0};
  std::atomic<int> stale{0};
  std::atomic<int> from_replica{0};
  std::atomic<int> from_primary{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < shoppers; ++s) {
    threads.emplace_back([&, s] {
      shopper me{
          live_shop::client_connection(front_at, 5s), fmt::format("shopper-{}", s), {}, {}};
      if (!me.login()) errors.fetch_add(1);
      for (int i = 0; i < per_shopper; ++i) {
        const long id = me.place(i);
        if (id <= 0) {
          errors.fetch_add(1);
          continue;
        }
        const auto r = me.read(id);
        if (!r.ok) {
          errors.fetch_add(1);
        } else {
          if (!r.has_order) stale.fetch_add(1);
          (r.served_by == "replica" ? from_replica : from_primary).fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(errors.load() == 0);
  CHECK(stale.load() == 0);
  CHECK(from_replica.load() > 0);
  CHECK(from_replica.load() + from_primary.load() == shoppers * per_shopper);

  // ---- a session with no write reads from the replica; one far ahead from the primary -
  {
    shopper fresh{live_shop::client_connection(front_at, 5s), "shopper-0", {}, {}};
    REQUIRE(fresh.login());
    const auto r = fresh.read(0);
    REQUIRE(r.ok);
    CHECK(r.served_by == "replica");
    CHECK(r.body.find(R"("reason":"replica")") != std::string::npos);
    fresh.cookie = "shop_lsn=4611686018427387904";  // 2^62: no server is there yet
    const auto ahead = fresh.read(0);
    REQUIRE(ahead.ok);
    CHECK(ahead.served_by == "primary");
    CHECK(ahead.body.find(R"("reason":"session_ahead")") != std::string::npos);
  }

  // ---- replay paused on the replica: reads of fresh writes go to the primary ----------
  REQUIRE(run_sql(replica, "SELECT pg_wal_replay_pause()"));
  int paused_stale = 0;
  int paused_from_replica = 0;
  {
    shopper me{live_shop::client_connection(front_at, 5s), "paused", {}, {}};
    REQUIRE(me.login());
    for (int i = 0; i < 20; ++i) {
      const long id = me.place(i);
      REQUIRE(id > 0);
      const auto r = me.read(id);
      REQUIRE(r.ok);
      paused_stale += r.has_order ? 0 : 1;
      paused_from_replica += r.served_by == "replica" ? 1 : 0;
      CHECK(r.body.find(R"("reason":"session_ahead")") != std::string::npos);
    }
  }
  CHECK(paused_stale == 0);
  CHECK(paused_from_replica == 0);
  // The fallback was needed: the paused replica really has none of these orders.
  CHECK(sql_number(replica, "SELECT count(*) FROM orders WHERE user_name = 'paused'") == 0);
  CHECK(sql_number(pg.primary(),
                   "SELECT count(*) FROM orders WHERE user_name = 'paused'") == 20);
  REQUIRE(run_sql(replica, "SELECT pg_wal_replay_resume()"));
  bool back_on_replica = false;
  {
    shopper me{live_shop::client_connection(front_at, 5s), "resumed", {}, {}};
    REQUIRE(me.login());
    const long id = me.place(0);
    REQUIRE(id > 0);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!back_on_replica && std::chrono::steady_clock::now() < deadline) {
      const auto r = me.read(id);
      REQUIRE(r.ok);
      CHECK(r.has_order);
      back_on_replica = r.served_by == "replica";
      if (!back_on_replica) std::this_thread::sleep_for(5ms);  // waits for the replica
    }
  }
  CHECK(back_on_replica);

  // ---- both instances took part; their counters agree --------------------------------
  {
    double placed = 0;
    double replica_reads = 0;
    for (std::size_t i = 0; i < app_at.size(); ++i) {
      live_shop::client_connection c(app_at[i], 5s);
      const auto m = c.get("/metrics");
      REQUIRE(m);
      const std::string& text = m->body();
      INFO(text);
      const std::string id = fmt::format("app-pg-{}", i + 1);
      const auto value = [&](const std::string& name) {
        const std::string key = fmt::format("{}{{instance=\"{}\"}} ", name, id);
        const auto at = text.find(key);
        return at == std::string::npos
                   ? -1.0
                   : std::strtod(text.c_str() + at + key.size(), nullptr);
      };
      CHECK(text.find("# TYPE app_orders_splitter_session_ahead counter") !=
            std::string::npos);
      CHECK(value("app_orders_errors") == 0);
      CHECK(value("app_orders_placed") > 0);  // the front spread the writes
      CHECK(value("app_orders_reads_replica") ==
            value("app_orders_splitter_reads_to_replicas"));
      placed += value("app_orders_placed");
      replica_reads += value("app_orders_reads_replica");
    }
    CHECK(placed == shoppers * per_shopper + 20 + 1);
    CHECK(replica_reads >= from_replica.load());
  }

  const auto done = std::chrono::steady_clock::now();
  fmt::print(
      "live pg: {} orders written and read back at once by {} shoppers: stale {}, replica "
      "reads {}, primary reads {}, errors {}; replay paused: 20 reads, stale {}, on the "
      "replica {}; start-up {} ms, run {} ms\n",
      shoppers * per_shopper, shoppers, stale.load(), from_replica.load(),
      from_primary.load(), errors.load(), paused_stale, paused_from_replica,
      std::chrono::duration_cast<std::chrono::milliseconds>(ready - started).count(),
      std::chrono::duration_cast<std::chrono::milliseconds>(done - ready).count());
  passed = errors.load() == 0 && stale.load() == 0 && from_replica.load() > 0 &&
           paused_stale == 0 && back_on_replica;
#endif
}
