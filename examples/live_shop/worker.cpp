// examples/live_shop/worker.cpp — a fulfilment worker of the live shop.
//
// What it shows: the slow work of an order taken off the request path, on
// outgrow::redis_stream_worker. The app (app.cpp) commits an order in PostgreSQL, charges
// it through a circuit breaker and enqueues a fulfilment job (fulfilment.hpp; idempotency
// key = the order id). A worker:
//   1. charges the order if the app could not (payment deferred while the breaker was
//      open or the call failed) — the payment service is idempotent by order id;
//   2. marks it fulfilled on the PostgreSQL primary (paid = true, fulfilled_at = now(),
//      set once: a redelivered job changes nothing);
//   3. completes the job; its completion counts the order in Redis exactly once
//      (ctx.commit: HINCRBY live_shop:{fulfilment}:stats fulfilled 1).
// A failed step fails the attempt: it is retried after --retry-ms, up to --max-attempts
// deliveries, then moved to the dead-letter stream (live_shop:{fulfilment}:dead) with
// its error — to be replayed once the cause is fixed (dead_letters().replay_all()).
// A worker killed (SIGKILL) mid-job loses nothing: its pending entries are claimed by
// another worker once idle for --visibility-ms.
//
// Run (the app's Redis and PostgreSQL primary; the payment service):
//   live_shop_worker --id w1 --redis 127.0.0.1:6379 --pg-primary 127.0.0.1:5432
//       --payment 127.0.0.1:8090     (one command line)
// Options: --visibility-ms N (10000), --retry-ms N (1000), --max-attempts N (5),
// --payment-timeout-ms N (300), --ready-file FILE (written once consuming). SIGTERM
// stops it after the job in progress (the entries it read but did not start are
// released to the other workers at once).
#include <outgrow/redis/redis_stream_queue.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "fulfilment.hpp"
#include "http.hpp"
#include "orders.hpp"

using namespace std::chrono_literals;

namespace {

struct options {
  std::string id = "worker";
  live_shop::address redis{"127.0.0.1", 6379};
  live_shop::address pg_primary{"127.0.0.1", 5432};
  std::optional<live_shop::address> payment;
  std::chrono::milliseconds visibility{10'000};
  std::chrono::milliseconds retry{1'000};
  std::uint32_t max_attempts = 5;
  std::chrono::milliseconds payment_timeout{300};
  std::string ready_file;
};

options parse(int argc, char** argv) {
  const live_shop::command_line cli(
      "live_shop_worker",
      "--pg-primary HOST:PORT [--id NAME] [--redis HOST:PORT] [--payment HOST:PORT] "
      "[--visibility-ms N] [--retry-ms N] [--max-attempts N] [--payment-timeout-ms N] "
      "[--ready-file FILE]");
  options o;
  bool have_pg = false;
  cli.parse(argc, argv, [&](std::string_view name, const std::string& value) {
    if (name == "--id") {
      o.id = value;
    } else if (name == "--redis") {
      o.redis = cli.where(name, value);
    } else if (name == "--pg-primary") {
      o.pg_primary = cli.where(name, value);
      have_pg = true;
    } else if (name == "--payment") {
      o.payment = cli.where(name, value);
    } else if (name == "--visibility-ms") {
      o.visibility = cli.millis(name, value, 1);
    } else if (name == "--retry-ms") {
      o.retry = cli.millis(name, value);
    } else if (name == "--max-attempts") {
      o.max_attempts = static_cast<std::uint32_t>(cli.number(name, value, 1, 1000));
    } else if (name == "--payment-timeout-ms") {
      o.payment_timeout = cli.millis(name, value, 1);
    } else if (name == "--ready-file") {
      o.ready_file = value;
    } else {
      return false;
    }
    return true;
  });
  if (!have_pg) cli.fail("give --pg-primary");
  if (o.retry > o.visibility) cli.fail("--retry-ms must not exceed --visibility-ms");
  return o;
}

std::atomic<outgrow::redis_stream_worker<std::string>*> running{nullptr};

extern "C" void on_sigterm(int) {
  if (auto* w = running.load()) w->request_stop();  // async-signal-safe (an atomic store)
}

}  // namespace

int main(int argc, char** argv) try {
  const options opt = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);

  live_shop::pg_pool primary(
      fmt::format("host={} port={} user=postgres dbname=postgres connect_timeout=5 "
                  "options='-c statement_timeout=5000'",
                  opt.pg_primary.host, opt.pg_primary.port));
  live_shop::ensure_orders_schema(primary);  // the apps may not have started yet
  std::optional<live_shop::payment_client> pay;
  if (opt.payment) pay.emplace(*opt.payment, opt.payment_timeout);

  const std::string stats_key = fmt::format("{}:stats", live_shop::fulfilment_stream);
  const auto handle = [&](std::string& payload,
                          outgrow::redis_job_context& ctx) -> outgrow::job_result {
    const auto job = live_shop::fulfilment_job::decode(payload);
    if (!job) return outgrow::job_result::permanent_failure("malformed fulfilment job");
    if (!job->paid && pay && !pay->charge(job->order_id)) {
      return outgrow::job_result::failure(
          fmt::format("payment unavailable (attempt {})", ctx.attempt()), "payment");
    }
    try {
      const std::string id = std::to_string(job->order_id);
      const live_shop::pg_result r = primary.exec(
          "UPDATE orders SET paid = true, fulfilled_at = COALESCE(fulfilled_at, now()) "
          "WHERE id = $1",
          {id});
      if (std::string_view(PQcmdTuples(r.get())) != "1") {
        return outgrow::job_result::permanent_failure("no such order " + id);
      }
    } catch (const live_shop::pg_error& e) {
      return outgrow::job_result::failure(e.what(), "postgres");
    }
    ctx.commit({"HINCRBY", stats_key, "fulfilled", "1"});
    return outgrow::job_result::success();
  };

  outgrow::redis_stream_worker<std::string> worker(
      outgrow::redis_stream_queue_config{
          .connection = {.host = opt.redis.host, .port = opt.redis.port},
          .stream = std::string(live_shop::fulfilment_stream),
          .group = std::string(live_shop::fulfilment_group),
          .consumer = opt.id,
          .max_attempts = opt.max_attempts,
          .visibility_timeout = opt.visibility,
          .retry_delay = opt.retry,
          .block_timeout = 200ms,
          .claim_interval = std::min<std::chrono::nanoseconds>(500ms, opt.visibility),
          .batch = 8},
      handle);
  running.store(&worker);
  std::signal(SIGTERM, on_sigterm);
  std::signal(SIGINT, on_sigterm);
  // The first poll creates the consumer group if needed; then the worker is ready.
  (void)worker.poll();
  if (!opt.ready_file.empty()) {
    const std::string tmp = opt.ready_file + ".tmp";
    std::ofstream(tmp) << "ready\n";
    std::rename(tmp.c_str(), opt.ready_file.c_str());
  }
  fmt::print("live_shop_worker {} consuming {} (redis {}, postgres {})\n", opt.id,
             live_shop::fulfilment_stream, opt.redis.str(), opt.pg_primary.str());
  std::fflush(stdout);
  worker.run();
  running.store(nullptr);
  fmt::print("live_shop_worker {} stopped: {}\n", opt.id, worker.metrics());
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "live_shop_worker: {}\n", e.what());
  return 1;
}
