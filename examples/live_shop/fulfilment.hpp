// examples/live_shop/fulfilment.hpp — what the app and the workers of the live shop
// share about an order after its commit: the payment call and the fulfilment job.
//
// The app (app.cpp) charges an order through outgrow::circuit_breaker, then hands a
// fulfilment job to outgrow::redis_stream_queue (idempotency key: the order id); a
// worker (worker.cpp) charges it if the app could not (payment deferred), then marks
// the order fulfilled in PostgreSQL.
//
//   live_shop::payment_client pay({"127.0.0.1", 8090}, 300ms);
//   bool ok = pay.charge(42);                       // POST /charge?order=42 → 200
//   std::string job = live_shop::fulfilment_job{42, ok}.encode();   // "42 1"
//   auto back = live_shop::fulfilment_job::decode(job);             // nullopt if bad
//
// Thread-safety: payment_client is one connection (one per thread); the rest are values.
#pragma once

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "http.hpp"

namespace live_shop {

/// The stream of fulfilment jobs (its {hash tag} keeps every derived key in one slot,
/// should Redis become a cluster) and the workers' consumer group.
inline constexpr std::string_view fulfilment_stream = "live_shop:{fulfilment}";
inline constexpr std::string_view fulfilment_group = "fulfilment";

/// One order to fulfil; `paid` = the app's charge succeeded (else the worker charges).
struct fulfilment_job {
  std::int64_t order_id = 0;
  bool paid = false;

  [[nodiscard]] std::string encode() const {
    return fmt::format("{} {}", order_id, paid ? 1 : 0);
  }
  /// "42 1" → {42, true}; nullopt for anything else (a malformed job: dead-lettered).
  static std::optional<fulfilment_job> decode(std::string_view text) {
    fulfilment_job j;
    const char* end = text.data() + text.size();
    const auto [p, ec] = std::from_chars(text.data(), end, j.order_id);
    if (ec != std::errc{} || j.order_id <= 0 || end - p != 2 || p[0] != ' ' ||
        (p[1] != '0' && p[1] != '1')) {
      return std::nullopt;
    }
    j.paid = p[1] == '1';
    return j;
  }
};

/// A keep-alive connection to the payment service; every step bounded by `timeout`.
class payment_client {
 public:
  payment_client(address where, std::chrono::milliseconds timeout)
      : conn_(std::move(where), timeout) {}

  /// POST /charge?order=ID: true on 200 ("charged" or "already charged" — the
  /// service is idempotent by order id); false on any other status, a transport error
  /// or the timeout.
  bool charge(std::int64_t order_id) {
    const std::string target = fmt::format("/charge?order={}", order_id);
    request req{http::verb::post, to_beast(target), 11};
    req.keep_alive(true);
    req.prepare_payload();
    response res;
    bool reused = false;
    if (const beast::error_code ec = conn_.exchange(req, res, reused)) {
      if (!reused || ec == beast::error::timeout) return false;
      // A kept-alive connection the service closed while idle: once more, fresh.
      request again{http::verb::post, to_beast(target), 11};
      again.keep_alive(true);
      again.prepare_payload();
      if (conn_.exchange(again, res, reused)) return false;
    }
    return res.result() == http::status::ok;
  }

 private:
  client_connection conn_;
};

}  // namespace live_shop
