// examples/live_shop/payment.cpp — the live shop's payment provider: a tiny HTTP service
// that can be told to fail.
//
// What it shows: the flaky dependency the app (app.cpp) calls through
// outgrow::circuit_breaker, and the fulfilment worker (worker.cpp) calls again for the
// payments the app deferred. A charge is idempotent by order id, as real payment APIs
// are by idempotency key (Stripe's Idempotency-Key): charging an order twice charges it
// once, so the app and a worker (or two workers, after a crash) may both try.
//
// Endpoints:
//   POST /charge?order=ID           200 "charged" (first time) / "already charged";
//                                   while failing: 503 (mode error) or no answer until
//                                   the failure ends (mode hang: the caller's timeout)
//   POST /fail?for_ms=N[&mode=M]    fail every charge for the next N ms; M = error
//                                   (default) or hang
//   GET  /health                    200 "ok" (the process is up, even while failing)
//   GET  /charges                   the number of distinct orders charged
//   GET  /metrics                   Prometheus text (payment_charges, ...)
//
// Run:
//   live_shop_payment --port 8090
//   curl -X POST '127.0.0.1:8090/charge?order=7'
//   curl -X POST '127.0.0.1:8090/fail?for_ms=20000'
// Options: --port 0 picks a free port, written to --port-file FILE. Binds 127.0.0.1
// only. State is in memory (a real provider keeps its ledger durably): a restart forgets
// which orders were charged.
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/prometheus.hpp>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>

#include <fmt/format.h>

#include "http.hpp"

using namespace std::chrono_literals;
namespace http = live_shop::http;

namespace {

struct payment_metrics {
  static constexpr std::string_view metrics_name = "payment_metrics";
  std::uint64_t charges = 0;     ///< distinct orders charged
  std::uint64_t duplicates = 0;  ///< charges of an order already charged
  std::uint64_t refused = 0;     ///< charges answered 503 or left hanging (failing)
  std::uint64_t failing = 0;     ///< 1 while told to fail
  template <class F>
  void for_each_metric(F&& f) const {
    f("charges", charges);
    f("duplicates", duplicates);
    f("refused", refused);
    f("failing", failing);
  }
};

class ledger {
 public:
  enum class mode : std::uint8_t { error, hang };

  void fail_for(std::chrono::milliseconds d, mode m) {
    std::lock_guard lock(mutex_);
    fail_until_ = std::chrono::steady_clock::now() + d;
    mode_ = m;
  }
  /// While failing: how, and until when.
  [[nodiscard]] bool failing(mode& m, std::chrono::steady_clock::time_point& until) {
    std::lock_guard lock(mutex_);
    m = mode_;
    until = fail_until_;
    return std::chrono::steady_clock::now() < fail_until_;
  }
  /// True the first time `order` is charged.
  bool charge(std::uint64_t order) {
    std::lock_guard lock(mutex_);
    return charged_.insert(order).second;
  }
  [[nodiscard]] std::size_t charged() {
    std::lock_guard lock(mutex_);
    return charged_.size();
  }

 private:
  std::mutex mutex_;
  std::chrono::steady_clock::time_point fail_until_{};
  mode mode_ = mode::error;
  std::unordered_set<std::uint64_t> charged_;
};

std::uint64_t number(std::string_view s) {
  std::uint64_t n = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  return ec == std::errc{} && p == s.data() + s.size() ? n : 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const live_shop::command_line cli("live_shop_payment", "[--port N] [--port-file FILE]");
  unsigned short port = 0;
  std::string port_file;
  cli.parse(argc, argv, [&](std::string_view name, const std::string& value) {
    if (name == "--port") {
      port = static_cast<unsigned short>(cli.number(name, value, 0, 65535));
    } else if (name == "--port-file") {
      port_file = value;
    } else {
      return false;
    }
    return true;
  });
  std::signal(SIGPIPE, SIG_IGN);

  ledger book;
  outgrow::counter duplicates;
  outgrow::counter refused;

  const auto handle = [&](const live_shop::request& req) -> live_shop::response {
    const std::string_view target = live_shop::target_of(req);
    const bool post = req.method() == http::verb::post;
    if (post && target.starts_with("/charge?")) {
      const std::uint64_t order = number(live_shop::query_param(target, "order"));
      if (order == 0) return live_shop::reply(req, http::status::bad_request, "order?\n");
      ledger::mode m{};
      std::chrono::steady_clock::time_point until{};
      if (book.failing(m, until)) {
        refused.add();
        if (m == ledger::mode::hang) std::this_thread::sleep_until(until);
        return live_shop::reply(req, http::status::service_unavailable, "failing\n");
      }
      if (book.charge(order)) return live_shop::reply(req, http::status::ok, "charged\n");
      duplicates.add();
      return live_shop::reply(req, http::status::ok, "already charged\n");
    }
    if (post && target.starts_with("/fail?")) {
      const auto ms =
          std::chrono::milliseconds(number(live_shop::query_param(target, "for_ms")));
      const bool hang = live_shop::query_param(target, "mode") == "hang";
      book.fail_for(ms, hang ? ledger::mode::hang : ledger::mode::error);
      return live_shop::reply(req, http::status::ok,
                              fmt::format("failing for {} ms\n", ms.count()));
    }
    if (target == "/health") return live_shop::reply(req, http::status::ok, "ok\n");
    if (target == "/charges") {
      return live_shop::reply(req, http::status::ok, fmt::format("{}\n", book.charged()));
    }
    if (target == "/metrics") {
      ledger::mode m{};
      std::chrono::steady_clock::time_point until{};
      const bool failing = book.failing(m, until);
      outgrow::prometheus_writer w;
      w.add("payment", payment_metrics{.charges = book.charged(),
                                       .duplicates = duplicates.load(),
                                       .refused = refused.load(),
                                       .failing = failing ? 1U : 0U});
      return live_shop::reply(req, http::status::ok, w.str(),
                              outgrow::prometheus_content_type);
    }
    return live_shop::reply(req, http::status::not_found, "not found\n");
  };

  live_shop::listener server(port);
  live_shop::write_port_file(port_file, server.port());
  fmt::print("live_shop_payment listening on 127.0.0.1:{}\n", server.port());
  std::fflush(stdout);
  server.serve(handle);
} catch (const std::exception& e) {
  fmt::print(stderr, "live_shop_payment: {}\n", e.what());
  return 1;
}
