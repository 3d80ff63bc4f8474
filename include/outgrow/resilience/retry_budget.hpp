// outgrow/resilience/retry_budget.hpp — cap retries at a fraction of recent requests.
//
// A retry_budget is shared by every caller of one dependency (and by any number of
// `retry` instances, resilience/retry.hpp): when the dependency is down, the clients'
// retries stay a fraction of their requests instead of multiplying the load by
// max_attempts (a "retry storm").
//
//   outgrow::retry_budget<> budget;                      // 20 % + 10/s over 10 s
//   outgrow::retry<> retry({}, outgrow::full_jitter_backoff{}, budget);
//   // or by hand:
//   budget.record_request();
//   if (failed && budget.try_acquire_retry()) { /* retry */ }
//
// It follows Finagle's RetryBudget: each call deposits `ratio` of a token (0.2 by
// default, Finagle's and Envoy's 20 %), each retry withdraws one whole token, deposits
// and withdrawals expire after `window` (10 s), and a reserve of
// `min_retries_per_second` × window tokens (10/s, Finagle's floor) lets low-traffic
// clients retry at all. At any moment, the retries counted in the window (kept in 10
// buckets, so the last 9-10 s) are at most ratio × the requests counted in it + the
// reserve; over a long outage that comes to about ratio × requests +
// min_retries_per_second × its duration (tests/resilience/retry_test.cpp: 1,000 callers
// into a dead dependency, 4 attempts allowed: 1.21 × the requests reach it, not 4 ×).
//
// Trade-offs: buckets make expiry approximate (a token expires between 9 and 10 s
// after it was counted) in exchange for lock-free counting; Envoy's alternative caps
// concurrent retries instead of their rate.
//
// Thread-safety: every member from any thread; lock-free except one short mutex per
// bucket boundary (window / 10). Complexity: O(1) per call (a clock read and two atomic
// adds); metrics() O(10).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <utility>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

struct retry_budget_config {
  /// Retries allowed per request, over the window: 0.2 (Finagle's and Envoy's 20 %).
  /// [0, 1000] (the range Finagle-style budgets such as tower's accept; 2 = two
  /// retries per request).
  double ratio = 0.2;
  /// Retries allowed per second whatever the traffic: 10 (Finagle's minRetriesPerSec).
  /// [0, 1000000]
  double min_retries_per_second = 10.0;
  /// How long deposits and withdrawals count: 10 s (Finagle's ttl). [1s, 60s] (Finagle's
  /// ttl range).
  std::chrono::seconds window = std::chrono::seconds{10};
};

struct retry_budget_metrics {
  static constexpr std::string_view metrics_name = "retry_budget_metrics";
  std::uint64_t requests = 0;          ///< record_request() calls
  std::uint64_t retries_allowed = 0;   ///< try_acquire_retry() == true
  std::uint64_t retries_rejected = 0;  ///< try_acquire_retry() == false
  double available = 0.0;              ///< retries the budget would allow right now

  template <class F>
  void for_each_metric(F&& f) const {
    f("requests", requests);
    f("retries_allowed", retries_allowed);
    f("retries_rejected", retries_rejected);
    f("available", available);
  }
};

/// Caps retries at ratio × recent requests + a floor per second, shared by any number
/// of callers (and retry instances). See the header comment.
template <clock_source Clock = coarse_steady_clock>
class retry_budget {
 public:
  using clock_type = Clock;
  /// The window is kept in this many buckets; a deposit or withdrawal expires between
  /// window - window/buckets and window after it was made.
  static constexpr std::int64_t buckets = 10;

  /// Throws: config_error if ratio is not in [0, 1000], min_retries_per_second not in
  /// [0, 1000000] or window not in [1s, 60s].
  explicit retry_budget(retry_budget_config config = {}, Clock clock = {})
      : config_(validated(config)),
        clock_(std::move(clock)),
        bucket_width_(std::chrono::duration_cast<std::chrono::nanoseconds>(config_.window) /
                      buckets),
        deposit_(static_cast<std::int64_t>(std::llround(config_.ratio * scale))),
        reserve_(static_cast<std::int64_t>(
            std::llround(config_.min_retries_per_second *
                         static_cast<double>(config_.window.count()) * scale))) {
    epoch_.store(epoch_of(clock_.now()), std::memory_order_relaxed);
    balance_.store(reserve_, std::memory_order_relaxed);
  }
  retry_budget(const retry_budget&) = delete;
  retry_budget& operator=(const retry_budget&) = delete;

  /// Counts one request (a call, not an attempt): deposits `ratio` of a retry.
  void record_request() noexcept {
    const std::int64_t e = advance();
    slot(e).fetch_add(deposit_, std::memory_order_relaxed);
    balance_.fetch_add(deposit_, std::memory_order_acq_rel);
    requests_.add();
  }

  /// Withdraws one retry if the budget has one; false (and nothing withdrawn) if not.
  [[nodiscard]] bool try_acquire_retry() noexcept {
    const std::int64_t e = advance();
    std::int64_t b = balance_.load(std::memory_order_acquire);
    do {
      if (b < scale) {
        rejected_.add();
        return false;
      }
    } while (!balance_.compare_exchange_weak(b, b - scale, std::memory_order_acq_rel,
                                             std::memory_order_acquire));
    slot(e).fetch_sub(scale, std::memory_order_relaxed);
    allowed_.add();
    return true;
  }

  /// Retries the budget would allow right now (negative: owed, until withdrawals
  /// expire).
  [[nodiscard]] double available() const noexcept {
    advance();
    return static_cast<double>(balance_.load(std::memory_order_acquire)) /
           static_cast<double>(scale);
  }

  [[nodiscard]] retry_budget_metrics metrics() const noexcept {
    retry_budget_metrics m;
    m.requests = requests_.load();
    m.retries_allowed = allowed_.load();
    m.retries_rejected = rejected_.load();
    m.available = available();
    return m;
  }

  [[nodiscard]] const retry_budget_config& config() const noexcept { return config_; }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  /// Tokens are fixed point: one retry = `scale` units (ratio resolution 1e-6).
  static constexpr std::int64_t scale = 1'000'000;

  static retry_budget_config validated(const retry_budget_config& c) {
    constexpr std::string_view name = "retry_budget";
    require_in_range(name, "ratio", c.ratio, 0, 1000);
    require_in_range(name, "min_retries_per_second", c.min_retries_per_second, 0,
                     1'000'000);
    require_in_range(name, "window", c.window, std::chrono::seconds{1},
                     std::chrono::seconds{60});
    return c;
  }

  [[nodiscard]] std::int64_t epoch_of(typename Clock::time_point t) const noexcept {
    const auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    const auto w = bucket_width_.count();
    return ns >= 0 ? ns / w : -((-ns + w - 1) / w);
  }

  std::atomic<std::int64_t>& slot(std::int64_t epoch) const noexcept {
    return slots_[static_cast<std::size_t>(((epoch % buckets) + buckets) % buckets)];
  }

  /// Expires the buckets that fell out of the window; returns the current epoch.
  std::int64_t advance() const noexcept {
    const std::int64_t e = epoch_of(clock_.now());
    if (e <= epoch_.load(std::memory_order_acquire)) return e;
    std::lock_guard lock(rotation_);
    const std::int64_t current = epoch_.load(std::memory_order_acquire);
    if (e <= current) return e;
    const std::int64_t steps = std::min<std::int64_t>(e - current, buckets);
    for (std::int64_t i = 1; i <= steps; ++i) {
      const std::int64_t expired = slot(current + i).exchange(0, std::memory_order_acq_rel);
      balance_.fetch_sub(expired, std::memory_order_acq_rel);
    }
    epoch_.store(e, std::memory_order_release);
    return e;
  }

  retry_budget_config config_;
  Clock clock_;
  std::chrono::nanoseconds bucket_width_;
  std::int64_t deposit_;
  std::int64_t reserve_;
  // Invariant (at rest): balance_ = reserve_ + sum(slots_).
  alignas(64) mutable std::atomic<std::int64_t> balance_{0};
  alignas(64) mutable std::atomic<std::int64_t> epoch_{0};
  mutable std::atomic<std::int64_t> slots_[buckets] = {};
  mutable std::mutex rotation_;
  counter requests_;
  counter allowed_;
  counter rejected_;
};

}  // namespace outgrow
