// examples/live_shop/front.cpp — the live shop's HTTP front: a reverse proxy on outgrow.
//
// What it shows: the load balancer of the textbook's horizontal-scaling set-up as a real
// process. Every request goes to one of the app instances (app.cpp), chosen by
// outgrow::load_balancer with power_of_two_choices (Envoy's "least request"):
//  - active health checks: GET /health on every instance each --health-interval-ms
//    (2 failures take it out, 2 passes bring it back);
//  - passive ejection: every proxied request reports its outcome on the lease (a
//    transport error, timeout or 5xx is a failure; 3 in a row eject the instance);
//  - slow start: an instance added at run time (or back from ejection) ramps its
//    weight up over --slow-start-ms;
//  - retries: a GET or HEAD that fails is sent again to an instance not yet tried (at
//    most 3 attempts), under an outgrow::retry_budget (20 % of requests + 10/s), so a
//    dead instance does not turn into a retry storm; other methods are never retried;
//  - membership at run time, from a control client (the scaler, or curl):
//      POST /admin/upstreams?add=127.0.0.1:8084     in rotation at once (slow start)
//      POST /admin/upstreams?drain=127.0.0.1:8081   no new requests; answers once its
//                                                   in-flight requests ended, then
//                                                   removes it: the caller may stop it
//      GET  /admin/upstreams                        members and their status
//    It may start with no --upstream at all (the scaler, scaler.cpp, adds the instances
//    it starts): until one is added, every proxied request gets 503 "no upstream".
//  - GET /metrics: Prometheus text from the balancer's, the retry budget's and the
//    front's own metrics snapshots (outgrow::prometheus_writer); GET /health: "ok".
//
// Run (after starting a few app instances):
//   live_shop_front --port 8080 --upstream 127.0.0.1:8081 --upstream 127.0.0.1:8082
//   (or `live_shop_front --port 8080` and let live_shop_scaler add the instances)
//   curl 127.0.0.1:8080/whoami          # repeat: different instance ids
//   curl 127.0.0.1:8080/metrics
// Options: --port 0 picks a free port, written to --port-file FILE; --timeout-ms N
// (1000) bounds each upstream step; --health-interval-ms N (1000); --slow-start-ms N
// (5000; 0 = off). It binds 127.0.0.1 only.
//
// Threads: one per client connection (http.hpp), each with its own keep-alive
// connections to the upstreams; one io_context thread runs the health checks. The
// balancer and the retry budget are shared by all of them (both thread-safe).
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/prometheus.hpp>
#include <outgrow/resilience/retry_budget.hpp>
#include <outgrow/routing/load_balancer.hpp>

#include <boost/asio/executor_work_guard.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "http.hpp"

using namespace std::chrono_literals;
namespace http = live_shop::http;

namespace {

// The front's own counters: live `outgrow::counter`s, copied into a snapshot for
// /metrics.
struct front_metrics {
  static constexpr std::string_view metrics_name = "front_metrics";
  std::uint64_t requests = 0;         ///< client requests proxied
  std::uint64_t attempts = 0;         ///< requests sent upstream (retries included)
  std::uint64_t upstream_errors = 0;  ///< attempts that failed (transport error or 5xx)
  std::uint64_t retries = 0;          ///< attempts after the first
  /// Requests answered with a failure: not idempotent, or no attempt, instance or
  /// retry token left (the upstream's 5xx is passed on, else a 502).
  std::uint64_t failed = 0;
  std::uint64_t bad_gateway = 0;  ///< 502 answers: every attempt failed
  std::uint64_t no_upstream = 0;  ///< 503 answers: nothing routable
  std::uint64_t membership_changes = 0;
  template <class F>
  void for_each_metric(F&& f) const {
    f("requests", requests);
    f("attempts", attempts);
    f("upstream_errors", upstream_errors);
    f("retries", retries);
    f("failed", failed);
    f("bad_gateway", bad_gateway);
    f("no_upstream", no_upstream);
    f("membership_changes", membership_changes);
  }
};

struct front_counters {
  outgrow::counter requests, attempts, upstream_errors, retries, failed, bad_gateway,
      no_upstream, membership_changes;
  [[nodiscard]] front_metrics snapshot() const {
    return {requests.load(),        attempts.load(),
            upstream_errors.load(), retries.load(),
            failed.load(),          bad_gateway.load(),
            no_upstream.load(),     membership_changes.load()};
  }
};

struct options {
  unsigned short port = 0;
  std::string port_file;
  std::vector<std::string> upstreams;
  std::chrono::milliseconds timeout{1000};
  std::chrono::milliseconds health_interval{1000};
  std::chrono::milliseconds slow_start{5000};
};

options parse(int argc, char** argv) {
  const live_shop::command_line cli(
      "live_shop_front",
      "[--upstream HOST:PORT]... [--port N] [--port-file FILE] [--timeout-ms N] "
      "[--health-interval-ms N] [--slow-start-ms N]");
  options o;
  cli.parse(argc, argv, [&](std::string_view name, const std::string& value) {
    if (name == "--port") {
      o.port = static_cast<unsigned short>(cli.number(name, value, 0, 65535));
    } else if (name == "--port-file") {
      o.port_file = value;
    } else if (name == "--upstream") {
      o.upstreams.push_back(cli.where(name, value).str());
    } else if (name == "--timeout-ms") {
      o.timeout = cli.millis(name, value, 1);
    } else if (name == "--health-interval-ms") {
      o.health_interval = cli.millis(name, value, 1);
    } else if (name == "--slow-start-ms") {
      o.slow_start = cli.millis(name, value);
    } else {
      return false;
    }
    return true;
  });
  return o;  // no --upstream: 503 until POST /admin/upstreams?add= brings one
}

using balancer = outgrow::load_balancer<std::string, outgrow::power_of_two_choices>;
constexpr int max_attempts = 3;  // the first try and two retries

// Keep-alive connections of the calling thread, one per upstream.
live_shop::client_connection& connection_to(const std::string& upstream,
                                            std::chrono::milliseconds timeout) {
  thread_local std::map<std::string, std::unique_ptr<live_shop::client_connection>> pool;
  auto& c = pool[upstream];
  if (!c) {
    c = std::make_unique<live_shop::client_connection>(*live_shop::address::parse(upstream),
                                                       timeout);
  }
  return *c;
}

// One attempt on `upstream`: the response, or nullopt on a transport error or timeout.
// An idempotent request that fails on a reused keep-alive connection is sent once more
// on a fresh one (the instance may have closed the idle connection); that is not a
// retry. Other requests are never sent twice: the first may have been processed.
std::optional<live_shop::response> forward(const std::string& upstream,
                                           const live_shop::request& client_req,
                                           bool idempotent,
                                           std::chrono::milliseconds timeout) {
  live_shop::client_connection& c = connection_to(upstream, timeout);
  for (int fresh = 0; fresh < (idempotent ? 2 : 1); ++fresh) {
    live_shop::request req = client_req;
    req.keep_alive(true);  // the front's upstream connections are always kept alive
    live_shop::response res;
    bool reused = false;
    if (!c.exchange(req, res, reused)) return res;
    if (!reused) break;
  }
  return std::nullopt;
}

class front {
 public:
  front(const options& opt, boost::asio::any_io_executor health_executor)
      : opt_(opt),
        lb_(opt.upstreams, {.consecutive_failures = 3,
                            .base_ejection_time = 10s,
                            .health_check_interval = opt.health_interval,
                            .healthy_threshold = 2,
                            .unhealthy_threshold = 2,
                            .slow_start_window = opt.slow_start,
                            .measure_latency = true}) {
    const auto timeout = std::min(opt.timeout, std::chrono::milliseconds(500));
    lb_.start_health_checks(std::move(health_executor), [timeout](const std::string& e) {
      // Its own connection per check: a check must not reuse a half-dead socket.
      live_shop::client_connection c(*live_shop::address::parse(e), timeout);
      const auto res = c.get("/health");
      return res && res->result() == http::status::ok;
    });
  }
  ~front() { lb_.stop_health_checks(); }

  live_shop::response handle(const live_shop::request& req) {
    const std::string_view target = live_shop::target_of(req);
    if (target == "/health") return live_shop::reply(req, http::status::ok, "ok\n");
    if (target == "/metrics") return metrics(req);
    if (target.starts_with("/admin/upstreams")) return admin(req);
    return proxy(req);
  }

 private:
  live_shop::response proxy(const live_shop::request& req) {
    counters_.requests.add();
    budget_.record_request();
    const bool idempotent =
        req.method() == http::verb::get || req.method() == http::verb::head;
    std::vector<std::string> tried;
    std::optional<live_shop::response> last;
    for (int attempt = 0; attempt < max_attempts; ++attempt) {
      auto lease = tried.empty() ? lb_.pick() : lb_.pick_if([&tried](const std::string& e) {
        return std::find(tried.begin(), tried.end(), e) == tried.end();
      });
      if (!lease && tried.empty()) {
        counters_.no_upstream.add();
        return live_shop::reply(
            req, http::status::service_unavailable,
            lb_.size() == 0 ? "no upstream\n" : "no upstream available\n");
      }
      if (attempt > 0) {  // a retry: another instance, and a token from the budget
        if (!lease || !budget_.try_acquire_retry()) {
          lease.abandon();  // counted neither as success nor failure
          break;
        }
        counters_.retries.add();
      }
      counters_.attempts.add();
      const std::string upstream = *lease;  // the lease's endpoint is gone once it ends
      auto res = forward(upstream, req, idempotent, opt_.timeout);
      if (res && res->result_int() < 500) {
        lease.success();
        res->keep_alive(req.keep_alive());
        return std::move(*res);
      }
      lease.failure();
      counters_.upstream_errors.add();
      tried.push_back(upstream);
      if (res) last = std::move(res);
      if (!idempotent) break;  // a POST may have taken effect: never sent twice
    }
    counters_.failed.add();  // the last attempt failed and is the answer
    if (last) {
      last->keep_alive(req.keep_alive());
      return *last;
    }
    counters_.bad_gateway.add();
    return live_shop::reply(req, http::status::bad_gateway, "upstream failed\n");
  }

  live_shop::response admin(const live_shop::request& req) {
    const std::string_view target = live_shop::target_of(req);
    if (req.method() == http::verb::get) {
      std::string body;
      for (const auto& e : lb_.endpoints()) {
        body += fmt::format("{} {} in_flight={} weight={:.2f}\n", e.endpoint, e.status,
                            e.in_flight, e.effective_weight);
      }
      return live_shop::reply(req, http::status::ok, body);
    }
    if (req.method() != http::verb::post) {
      return live_shop::reply(req, http::status::method_not_allowed, "GET or POST\n");
    }
    const std::string add(live_shop::query_param(target, "add"));
    const std::string drain(live_shop::query_param(target, "drain"));
    const std::string& who = add.empty() ? drain : add;
    if (add.empty() == drain.empty() || !live_shop::address::parse(who)) {
      return live_shop::reply(req, http::status::bad_request,
                              "POST /admin/upstreams?add=HOST:PORT or ?drain=HOST:PORT\n");
    }
    try {
      counters_.membership_changes.add();
      if (!add.empty()) {
        lb_.add(add);  // slow start ramps it in
        return live_shop::reply(req, http::status::ok, "added " + add + "\n");
      }
      lb_.drain(drain);  // no new leases; in-flight ones finish
      const auto give_up = std::chrono::steady_clock::now() + 30s;
      while (lb_.in_flight(drain) > 0 && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(5ms);  // a control request may block: fine here
      }
      const auto left = lb_.in_flight(drain);
      lb_.remove(drain);
      return live_shop::reply(req, http::status::ok,
                              fmt::format("drained {} ({} in flight left)\n", drain, left));
    } catch (const outgrow::config_error& e) {  // not a member, already a member
      return live_shop::reply(req, http::status::conflict, std::string(e.what()) + "\n");
    }
  }

  live_shop::response metrics(const live_shop::request& req) {
    outgrow::prometheus_writer w;
    w.add("front", counters_.snapshot());
    w.add("front_lb", lb_.metrics());
    w.add("front_retry_budget", budget_.metrics());
    for (const auto& e : lb_.endpoints())
      w.add("front_upstream", e, {{"endpoint", e.endpoint}});
    return live_shop::reply(req, http::status::ok, w.str(),
                            outgrow::prometheus_content_type);
  }

  const options& opt_;
  balancer lb_;
  outgrow::retry_budget<> budget_;
  front_counters counters_;
};

}  // namespace

int main(int argc, char** argv) try {
  const options opt = parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanished is an error code, not a signal

  live_shop::listener server(opt.port);
  // The health checks' executor: one thread running its own io_context (stopped and
  // joined on the way out; the process normally ends by SIGTERM or SIGKILL).
  struct health_runner {
    boost::asio::io_context io;
    std::thread thread{[this] {
      auto work = boost::asio::make_work_guard(io);
      io.run();
    }};
    ~health_runner() {
      io.stop();
      thread.join();
    }
  } health;
  front f(opt, health.io.get_executor());
  live_shop::write_port_file(opt.port_file, server.port());
  fmt::print("live_shop_front listening on 127.0.0.1:{}, upstreams: {}\n", server.port(),
             opt.upstreams.empty() ? std::string("none yet (POST /admin/upstreams?add=)")
                                   : fmt::format("{}", fmt::join(opt.upstreams, " ")));
  std::fflush(stdout);
  server.serve([&f](const live_shop::request& req) { return f.handle(req); });
} catch (const std::exception& e) {  // a port in use, a bad configuration
  fmt::print(stderr, "live_shop_front: {}\n", e.what());
  return 1;
}
