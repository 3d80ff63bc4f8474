// Integration test of the whole live shop (examples/live_shop/): a real PostgreSQL primary
// and streaming replica (live_shop::postgres_cluster), a redis-server, the `payment`
// service, two `app` instances behind the `front` proxy and two fulfilment `worker`s, all
// on 127.0.0.1, every process stopped by pid at the end and on failure (destructors;
// the children also die with this process: PR_SET_PDEATHSIG).
//
// Shoppers log in (session_store in Redis), place orders (PostgreSQL primary; payment
// through the app's circuit breaker; a fulfilment job on redis_stream_queue), read their
// orders back (read_write_splitter, read-your-writes by LSN) and ask who they are, all
// through the front. During the run the payment service fails for a while (answering
// 503, then hanging), one app instance and one worker are SIGKILLed.
//
// Must hold (all counted): GET requests (idempotent: the front retries them) error 0;
// users stay logged in (401s 0, one login per shopper); stale "my orders" reads 0; every
// order a client got a 201 for is fulfilled in PostgreSQL or in the dead-letter stream;
// after the dead letters are replayed (payment healthy again) every one is fulfilled;
// the worker killed mid-run lost no job; /metrics scraped from the front. POSTs are not
// retried by the front (not idempotent): the ones that hit the killed instance fail,
// and are counted and printed, not asserted.
//
// Real time, bounded: about 13 s on a busy 2-core machine (9 s of load; start-up waits of
// at most 20 s, the settling waits at most 10 s each).
// Skipped (OUTGROW-SKIPPED) when a live shop binary, libpq or the PostgreSQL binaries are
// missing, or when running as root without a `postgres` user.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
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

#include <outgrow/redis/redis_stream_queue.hpp>

#include "../../examples/live_shop/fulfilment.hpp"
#endif

using namespace std::chrono_literals;
namespace fs = std::filesystem;

#ifdef OUTGROW_LIVE_SHOP_WITH_PG
namespace {

/// A shop process with a name for messages (see child_process.hpp).
class shop_process : public outgrow_test::child_process {
 public:
  shop_process(std::string name, std::vector<std::string> args, const fs::path& log)
      : child_process(std::move(args), log), name_(std::move(name)) {}
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  std::string name_;
};

/// One user's browser: a keep-alive connection to the front and its cookies.
struct browser {
  live_shop::client_connection conn;
  std::string user;
  std::string session;  // "shop_session=<id>"
  std::string lsn;      // "shop_lsn=<n>"

  std::optional<live_shop::response> send(live_shop::http::verb verb,
                                          const std::string& target) {
    live_shop::request req{verb, live_shop::to_beast(target), 11};
    req.keep_alive(true);
    std::string cookies = session;
    if (!lsn.empty()) cookies += (cookies.empty() ? "" : "; ") + lsn;
    if (!cookies.empty()) req.set(live_shop::http::field::cookie, cookies);
    if (verb == live_shop::http::verb::post) req.prepare_payload();
    live_shop::response res;
    bool reused = false;
    if (conn.exchange(req, res, reused)) return std::nullopt;
    return res;
  }
  static std::string cookie_of(const live_shop::response& res) {
    const std::string set(live_shop::to_std(res[live_shop::http::field::set_cookie]));
    return set.substr(0, set.find(';'));
  }
};

/// The value of the sample `name` (with its label set, e.g. `{instance="a"}`) in a
/// Prometheus text, or -1.
double shop_sample(const std::string& text, const std::string& name_and_labels) {
  const std::string key = "\n" + name_and_labels + " ";
  const auto at = ("\n" + text).find(key);
  return at == std::string::npos ? -1.0
                                 : std::strtod(text.c_str() + at - 1 + key.size(), nullptr);
}

}  // namespace
#endif

TEST_CASE("live shop: sessions payments fulfilment through crashes") {
#ifndef OUTGROW_LIVE_SHOP_WITH_PG
  fmt::print(
      "OUTGROW-SKIPPED: the live shop was built without libpq (install libpq-dev)\n");
  return;
#else
  const fs::path bin = outgrow_test::live_shop_bin_dir();
  for (const char* part :
       {"live_shop_app", "live_shop_front", "live_shop_payment", "live_shop_worker"}) {
    if (bin.empty() || !fs::exists(bin / part)) {
      fmt::print("OUTGROW-SKIPPED: {} not found in '{}' (set OUTGROW_LIVE_SHOP_BIN_DIR)\n",
                 part, bin.string());
      return;
    }
  }
  if (const std::string why = live_shop::postgres_cluster::unavailable(); !why.empty()) {
    fmt::print("OUTGROW-SKIPPED: {}\n", why);
    return;
  }

  const auto started = std::chrono::steady_clock::now();
  live_shop::postgres_cluster pg({.replicas = 1});
  outgrow_test::redis_server redis;
  const std::string redis_addr = fmt::format("127.0.0.1:{}", redis.port());
  outgrow_test::scratch_dir tmp;
  std::vector<std::unique_ptr<shop_process>> procs;  // stopped in reverse order
  bool passed = false;
  struct log_dump {  // the children's output, printed when the test fails
    const bool& passed;
    const std::vector<std::unique_ptr<shop_process>>& procs;
    const live_shop::postgres_cluster& pg;
    ~log_dump() {
      if (passed) return;
      for (const auto& p : procs) {
        std::fprintf(stderr, "--- %s ---\n%s\n", p->name().c_str(), p->log().c_str());
      }
      std::fprintf(stderr, "--- primary ---\n%s\n--- replica ---\n%s\n", pg.log(0).c_str(),
                   pg.log(1).c_str());
    }
  } dump{passed, procs, pg};
  const auto spawn = [&](const std::string& name, std::vector<std::string> args) {
    procs.push_back(
        std::make_unique<shop_process>(name, std::move(args), tmp.path / (name + ".log")));
    return procs.back().get();
  };
  const auto port_file = [&](const std::string& name) {
    return (tmp.path / (name + ".port")).string();
  };

  spawn("payment", {(bin / "live_shop_payment").string(), "--port", "0", "--port-file",
                    port_file("payment")});
  const live_shop::address payment_at{outgrow_test::wait_for_address(port_file("payment"))};
  std::vector<shop_process*> apps;
  std::vector<live_shop::address> app_at;
  for (int i = 1; i <= 2; ++i) {
    const std::string name = fmt::format("app-{}", i);
    apps.push_back(spawn(
        name, {(bin / "live_shop_app").string(), "--id", name, "--port", "0", "--port-file",
               port_file(name), "--redis", redis_addr, "--pg-primary", pg.primary().str(),
               "--pg-replica", pg.replicas().at(0).str(), "--payment", payment_at.str(),
               "--payment-timeout-ms", "300", "--breaker-open-ms", "500"}));
  }
  for (int i = 1; i <= 2; ++i) {
    app_at.push_back(outgrow_test::wait_for_address(port_file(fmt::format("app-{}", i))));
  }
  spawn("front", {(bin / "live_shop_front").string(), "--port", "0", "--port-file",
                  port_file("front"), "--health-interval-ms", "100", "--timeout-ms", "5000",
                  "--slow-start-ms", "0", "--upstream", app_at[0].str(), "--upstream",
                  app_at[1].str()});
  const live_shop::address front_at{"127.0.0.1",
                                    outgrow_test::wait_for_port_file(port_file("front"))};
  std::vector<shop_process*> workers;
  for (int i = 1; i <= 2; ++i) {
    const std::string name = fmt::format("worker-{}", i);
    const std::string ready = (tmp.path / (name + ".ready")).string();
    workers.push_back(
        spawn(name, {(bin / "live_shop_worker").string(), "--id", name, "--redis",
                     redis_addr, "--pg-primary", pg.primary().str(), "--payment",
                     payment_at.str(), "--visibility-ms", "2000", "--retry-ms", "300",
                     "--max-attempts", "3", "--ready-file", ready}));
    outgrow_test::wait_for_file(ready);
  }
  for (const live_shop::address& at : {app_at[0], app_at[1], front_at, payment_at}) {
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

  // ---- the load: shoppers log in once, then order / read / ask who they are ----------
  constexpr int shoppers = 6;
  constexpr auto run_for = 9s;
  std::atomic<bool> stop{false};
  std::atomic<int> logins{0}, login_errors{0};
  std::atomic<int> get_requests{0}, get_errors{0}, logged_out{0}, stale{0};
  std::atomic<int> posts{0}, post_errors{0}, charged{0}, deferred{0}, not_queued{0};
  std::mutex acknowledged_mutex;
  std::set<long> acknowledged;       // orders a client got a 201 for
  std::vector<std::string> samples;  // a few failures, for the report
  const auto note = [&](std::string what) {
    std::lock_guard lock(acknowledged_mutex);
    if (samples.size() < 10) samples.push_back(std::move(what));
  };
  std::vector<std::thread> threads;
  for (int s = 0; s < shoppers; ++s) {
    threads.emplace_back([&, s] {
      browser me{
          live_shop::client_connection(front_at, 5s), fmt::format("shopper-{}", s), {}, {}};
      while (me.session.empty() && !stop.load()) {
        const auto res = me.send(live_shop::http::verb::post, "/login?user=" + me.user);
        if (res && res->result_int() == 200) {
          me.session = browser::cookie_of(*res);
          logins.fetch_add(1);
        } else {
          login_errors.fetch_add(1);
        }
      }
      const auto get = [&](const std::string& target) -> std::optional<std::string> {
        get_requests.fetch_add(1);
        const auto res = me.send(live_shop::http::verb::get, target);
        if (res && res->result_int() == 401) {
          logged_out.fetch_add(1);
          return std::nullopt;
        }
        if (!res || res->result_int() != 200) {
          get_errors.fetch_add(1);
          note(fmt::format("GET {}: {}", target,
                           res ? std::to_string(res->result_int()) + " " + res->body()
                               : std::string("transport error")));
          return std::nullopt;
        }
        return res->body();
      };
      for (int i = 0; !stop.load(); ++i) {
        posts.fetch_add(1);
        const auto res =
            me.send(live_shop::http::verb::post, fmt::format("/orders?item=item-{}", i));
        long id = -1;
        if (res && res->result_int() == 201) {
          me.lsn = browser::cookie_of(*res);
          const std::string& body = res->body();  // {"id":N,"lsn":..,"payment":..}
          id = std::strtol(body.c_str() + body.find(':') + 1, nullptr, 10);
          if (body.find(R"("payment":"charged")") != std::string::npos)
            charged.fetch_add(1);
          if (body.find(R"("payment":"deferred")") != std::string::npos) {
            deferred.fetch_add(1);
          }
          if (body.find(R"("fulfilment":"queued")") == std::string::npos) {
            not_queued.fetch_add(1);
          }
          std::lock_guard lock(acknowledged_mutex);
          acknowledged.insert(id);
        } else if (res && res->result_int() == 401) {
          logged_out.fetch_add(1);
        } else {
          post_errors.fetch_add(1);
          note(fmt::format("POST /orders: {}",
                           res ? std::to_string(res->result_int()) + " " + res->body()
                               : std::string("transport error")));
        }
        if (id > 0) {
          if (const auto mine = get("/orders")) {
            if (mine->find(fmt::format(R"({{"id":{},)", id)) == std::string::npos) {
              stale.fetch_add(1);
            }
          }
        }
        if (const auto who = get("/me"); who && *who != me.user + "\n") {
          note("GET /me answered " + *who);
          logged_out.fetch_add(1);
        }
        (void)get(fmt::format("/product/{}", 1 + (s * 7919 + i) % 500));
      }
    });
  }

  // ---- the incidents: payment fails, an app instance and a worker crash ---------------
  const auto at = [&](std::chrono::milliseconds t) {
    std::this_thread::sleep_until(ready + t);
  };
  const auto payment_fails = [&](const std::string& how) {
    live_shop::client_connection c(payment_at, 5s);
    live_shop::request req{live_shop::http::verb::post, live_shop::to_beast("/fail?" + how),
                           11};
    req.prepare_payload();
    live_shop::response res;
    bool reused = false;
    REQUIRE_FALSE(c.exchange(req, res, reused));
    REQUIRE(res.result_int() == 200);
  };
  // 1.5 s .. 5.5 s: charges answered 503 (fast failures: the breaker opens; the
  // workers' 3 attempts, 0.3 .. 0.8 s apart, run out: dead letters); 6 s .. 7.5 s:
  // charges hang (the callers' timeouts).
  at(1500ms);
  payment_fails("for_ms=4000");
  at(3000ms);
  apps[0]->kill_now();  // app-1: its users keep their sessions (Redis), via app-2
  at(3500ms);
  workers[0]->kill_now();    // worker-1 holds entries waiting for a retry: reclaimed
  long held_by_killed = -1;  // its pending entries when it died (XPENDING)
  {
    const auto r =
        redis.command("XPENDING %s %s", std::string(live_shop::fulfilment_stream).c_str(),
                      std::string(live_shop::fulfilment_group).c_str());
    held_by_killed = 0;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[3]->type == REDIS_REPLY_ARRAY) {
      for (std::size_t i = 0; i < r->element[3]->elements; ++i) {
        const redisReply* c = r->element[3]->element[i];
        if (c->elements == 2 && outgrow_test::reply_text(*c->element[0]) == "worker-1") {
          held_by_killed = std::strtol(c->element[1]->str, nullptr, 10);
        }
      }
    }
  }
  at(6000ms);
  payment_fails("for_ms=1500&mode=hang");
  at(std::chrono::duration_cast<std::chrono::milliseconds>(run_for));
  stop.store(true);
  for (auto& t : threads) t.join();
  const auto load_done = std::chrono::steady_clock::now();

  // ---- the front's /metrics, scraped -------------------------------------------------
  std::string front_metrics;
  {
    live_shop::client_connection c(front_at, 5s);
    const auto m = c.get("/metrics");
    REQUIRE(m);
    REQUIRE(m->result_int() == 200);
    front_metrics = m->body();
  }
  CHECK(front_metrics.find("# TYPE front_requests counter") != std::string::npos);
  CHECK(shop_sample(front_metrics, "front_requests") > 0);
  CHECK(front_metrics.find("front_upstream_") != std::string::npos);
  // The surviving instance took over the killed one's shoppers.
  std::string app_metrics;
  {
    live_shop::client_connection c(app_at[1], 5s);
    const auto m = c.get("/metrics");
    REQUIRE(m);
    app_metrics = m->body();
  }
  const std::string app2 = R"({instance="app-2"})";

  // ---- every acknowledged order is fulfilled or dead-lettered -------------------------
  outgrow::redis_stream_queue<std::string> queue(outgrow::redis_stream_queue_config{
      .connection = {.host = "127.0.0.1", .port = redis.port()},
      .stream = std::string(live_shop::fulfilment_stream),
      .group = std::string(live_shop::fulfilment_group)});
  const auto dead_ids = [&] {
    std::set<long> out;
    queue.dead_letters().for_each([&](const auto& e) {
      if (const auto job = live_shop::fulfilment_job::decode(e.payload)) {
        out.insert(static_cast<long>(job->order_id));
      }
    });
    return out;
  };
  std::size_t unsettled = acknowledged.size();
  std::set<long> fulfilled;
  std::set<long> dead;
  {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      fulfilled = live_shop::fulfilled_orders(pg.primary());
      dead = dead_ids();
      unsettled = static_cast<std::size_t>(std::count_if(
          acknowledged.begin(), acknowledged.end(),
          [&](long id) { return !fulfilled.contains(id) && !dead.contains(id); }));
      if (unsettled == 0 || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(50ms);
    }
  }
  const std::size_t fulfilled_before_replay = fulfilled.size();
  const std::size_t dead_lettered = dead.size();
  const auto settled = std::chrono::steady_clock::now();
  // Payment is healthy again: the dead letters are replayed and fulfilled.
  const auto replayed = queue.dead_letters().replay_all();
  // A worker marks an order fulfilled before its batch's completions acknowledge the
  // jobs: wait for both (the stream empty: nothing pending, nothing new).
  std::size_t unfulfilled = acknowledged.size();
  std::optional<outgrow::redis_stream_queue_metrics> queue_metrics;
  {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      fulfilled = live_shop::fulfilled_orders(pg.primary());
      unfulfilled = static_cast<std::size_t>(
          std::count_if(acknowledged.begin(), acknowledged.end(),
                        [&](long id) { return !fulfilled.contains(id); }));
      queue_metrics = queue.metrics();
      const bool drained = queue_metrics && queue_metrics->length == 0;
      if ((unfulfilled == 0 && drained) || std::chrono::steady_clock::now() > deadline) {
        break;
      }
      std::this_thread::sleep_for(50ms);
    }
  }
  const auto replay_done = std::chrono::steady_clock::now();
  const long orders_in_db =
      outgrow_test::sql_number(pg.primary(), "SELECT count(*) FROM orders");
  const long unfulfilled_in_db = outgrow_test::sql_number(
      pg.primary(), "SELECT count(*) FROM orders WHERE fulfilled_at IS NULL");
  long charges = -1;
  {
    live_shop::client_connection c(payment_at, 5s);
    if (const auto r = c.get("/charges"))
      charges = std::strtol(r->body().c_str(), nullptr, 10);
  }
  REQUIRE(queue_metrics);

  for (const std::string& s : samples) UNSCOPED_INFO(s);
  CHECK(logins.load() == shoppers);  // one login each: nobody was logged out
  CHECK(logged_out.load() == 0);     // ... and no 401 nor a wrong user
  CHECK(get_errors.load() == 0);     // idempotent requests: retried by the front
  CHECK(get_requests.load() > 100);
  CHECK(stale.load() == 0);  // read-your-writes through the crash
  CHECK(acknowledged.size() > 50);
  CHECK(not_queued.load() == 0);
  CHECK(charged.load() > 0);   // paid at once while the payment was healthy
  CHECK(deferred.load() > 0);  // and deferred while it failed (breaker)
  CHECK(unsettled == 0);       // fulfilled or dead-lettered
  CHECK(dead_lettered > 0);    // jobs failed for good while payment failed
  CHECK(replayed.replayed == dead_lettered);
  CHECK(unfulfilled == 0);  // after the replay, every one fulfilled
  CHECK(charges >= static_cast<long>(acknowledged.size()));  // each charged (once)
  // Orders committed whose client got no 201 (the instance died before answering) may
  // lack a job: at most one per failed POST.
  CHECK(unfulfilled_in_db <= post_errors.load());
  CHECK(orders_in_db >= static_cast<long>(acknowledged.size()));
  CHECK(queue_metrics->length == 0);   // every job finished
  CHECK(queue_metrics->pending == 0);  // nothing held by the dead worker
  if (held_by_killed == 0) {
    WARN("worker-1 held no pending entry when killed: its crash tested nothing this run");
  }
  CHECK(queue_metrics->dead_letters == 0);  // all replayed
  CHECK(shop_sample(app_metrics, "app_no_session" + app2) == 0);
  CHECK(shop_sample(app_metrics, "app_sessions_hits" + app2) > 0);
  CHECK(shop_sample(app_metrics, "app_payment_breaker_rejected" + app2) > 0);
  CHECK(shop_sample(app_metrics, "app_payment_bulkhead_admitted" + app2) > 0);
  CHECK(workers[1]->running());
  CHECK(apps[1]->running());

  const auto ms = [](auto d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  };
  fmt::print(
      "live shop: {} shoppers, {} logins (login errors {}), {} GETs (errors {}), {} POST "
      "/orders ({} acknowledged, errors {}: the killed instance's, not retried), stale "
      "reads {}, logged out {}; payment charged at once {}, deferred {}; fulfilled {} + "
      "dead-lettered {} (then replayed {}, duplicates {}), unfulfilled after replay {}; "
      "jobs held by the killed worker {}, all reclaimed; "
      "orders in PostgreSQL {} (without fulfilment {}), distinct charges {}; front "
      "requests {}, retries {}; start-up {} ms, load {} ms, settle {} ms, replay {} ms\n",
      shoppers, logins.load(), login_errors.load(), get_requests.load(), get_errors.load(),
      posts.load(), acknowledged.size(), post_errors.load(), stale.load(),
      logged_out.load(), charged.load(), deferred.load(), fulfilled_before_replay,
      dead_lettered, replayed.replayed, replayed.duplicates, unfulfilled, held_by_killed,
      orders_in_db, unfulfilled_in_db, charges,
      shop_sample(front_metrics, "front_requests"),
      shop_sample(front_metrics, "front_retries"), ms(ready - started),
      ms(load_done - ready), ms(settled - load_done), ms(replay_done - settled));
  passed = logged_out.load() == 0 && get_errors.load() == 0 && stale.load() == 0 &&
           unsettled == 0 && unfulfilled == 0;
#endif
}
