// outgrow/admission/adaptive_throttle.hpp — client-side adaptive throttling (Google SRE).
//
// What: the client half of load shedding from the Google SRE book ("Handling Overload"):
// each client keeps, over a trailing window, the number of `requests` it attempted and
// the number of `accepts` the backend answered without rejecting for overload, and
// rejects a new request locally — without sending it — with probability
//
//   max(0, (requests − K · accepts) / (requests + 1))
//
// While the backend accepts everything, requests ≈ accepts and nothing is throttled.
// When it starts rejecting, the client sends about K times what the backend accepts, so
// the backend spends almost nothing on requests it would reject anyway. K = 2 by default
// (the book's value); a lower K throttles earlier and harder.
//
// Criticality: requests carry a class; lower classes use a lower K and so are shed
// first (the book's CRITICAL_PLUS, CRITICAL, SHEDDABLE_PLUS, SHEDDABLE).
//
// When: a client (or a proxy) in front of a backend that signals overload (HTTP 429/503,
// gRPC RESOURCE_EXHAUSTED, a full bulkhead). It complements the server's own shedding.
//
//   outgrow::adaptive_throttle throttle({.k = 2.0});
//   if (!throttle.try_send()) return fail_fast();      // rejected locally
//   auto reply = backend.call(req);
//   if (!reply.overloaded()) throttle.record_accept();  // counted as accepted
//
// Counting: try_send() counts a request whether or not it sends it (as the book does:
// requests are what the application asked for); record_accept() counts an accept. The
// window is `window` long, kept in `buckets` slices that expire whole (a sliding window
// with bucket granularity).
//
// Thread-safety: every member may be called concurrently (a mutex guards the buckets;
// the decision draws from a per-instance generator). Complexity: O(1) per call, O(buckets)
// after a whole bucket of idleness.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <vector>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>

namespace outgrow {

/// Request classes, most important first (the SRE book's names).
enum class criticality : std::uint8_t {
  critical_plus,
  critical,
  sheddable_plus,
  sheddable
};

[[nodiscard]] constexpr std::string_view to_string(criticality c) noexcept {
  switch (c) {
    case criticality::critical_plus:
      return "critical_plus";
    case criticality::critical:
      return "critical";
    case criticality::sheddable_plus:
      return "sheddable_plus";
    case criticality::sheddable:
      return "sheddable";
  }
  return "unknown";
}

struct adaptive_throttle_config {
  /// K for `criticality::critical`: the client sends at most about K × accepts. 2 (SRE
  /// book). [1, 100]
  double k = 2.0;
  /// K of each class relative to `k`, in enum order (critical_plus, critical,
  /// sheddable_plus, sheddable): each in [1/k, 100/k] so every class's K is in [1, 100],
  /// non-increasing (a less critical class is never shed later).
  std::array<double, 4> k_scale{1.5, 1.0, 0.75, 0.5};
  /// Trailing window of counts: 2 min (the book's). [1 s, 1 h]
  std::chrono::nanoseconds window = std::chrono::minutes{2};
  /// Slices of the window. [1, 3600]
  std::size_t buckets = 120;
  /// Seed of the rejection draws (see core/seed.hpp).
  std::optional<std::uint64_t> seed{};
};

struct adaptive_throttle_metrics {
  static constexpr std::string_view metrics_name = "adaptive_throttle_metrics";
  std::uint64_t requests = 0;   ///< in the window (sent or not)
  std::uint64_t accepts = 0;    ///< in the window
  std::uint64_t throttled = 0;  ///< rejected locally, since construction
  std::uint64_t sent = 0;       ///< allowed through, since construction

  template <class F>
  void for_each_metric(F&& f) const {
    f("requests", requests);
    f("accepts", accepts);
    f("throttled", throttled);
    f("sent", sent);
  }
};

template <clock_source Clock = coarse_steady_clock>
class basic_adaptive_throttle {
 public:
  using clock_type = Clock;

  /// Throws: config_error if a field is out of range.
  explicit basic_adaptive_throttle(adaptive_throttle_config config = {}, Clock clock = {})
      : config_(validated(config)),
        clock_(std::move(clock)),
        slice_(config_.window / static_cast<std::int64_t>(config_.buckets)),
        buckets_(config_.buckets),
        rng_(resolve_seed(config_.seed)) {}

  /// Counts a request of class `c` and decides whether to send it: false = reject it
  /// locally (the backend would most likely reject it too).
  [[nodiscard]] bool try_send(criticality c = criticality::critical) {
    std::lock_guard lock(mutex_);
    advance();
    const double p = probability_locked(c);
    buckets_[head_].requests += 1;
    ++requests_;
    if (p > 0.0 && std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p) {
      ++throttled_;
      return false;
    }
    ++sent_;
    return true;
  }

  /// Counts one request the backend accepted (answered, not rejected for overload).
  void record_accept() {
    std::lock_guard lock(mutex_);
    advance();
    buckets_[head_].accepts += 1;
    ++accepts_;
  }

  /// The probability try_send(c) rejects now.
  [[nodiscard]] double reject_probability(criticality c = criticality::critical) const {
    std::lock_guard lock(mutex_);
    advance();
    return probability_locked(c);
  }

  [[nodiscard]] adaptive_throttle_metrics metrics() const {
    std::lock_guard lock(mutex_);
    advance();
    return {
        .requests = requests_, .accepts = accepts_, .throttled = throttled_, .sent = sent_};
  }

  [[nodiscard]] const adaptive_throttle_config& config() const noexcept { return config_; }

  /// Throws: config_error naming the first bad field.
  static void validate(const adaptive_throttle_config& c) {
    constexpr std::string_view who = "adaptive_throttle";
    require(c.k >= 1.0 && c.k <= 100.0, who, "k", "in [1, 100]", c.k);
    constexpr std::string_view names[] = {
        "k_scale[0] (critical_plus)", "k_scale[1] (critical)",
        "k_scale[2] (sheddable_plus)", "k_scale[3] (sheddable)"};
    for (std::size_t i = 0; i < c.k_scale.size(); ++i) {
      const double k = c.k * c.k_scale[i];
      require(k >= 1.0 && k <= 100.0, who, names[i], "such that k x k_scale is in [1, 100]",
              c.k_scale[i]);
      if (i > 0) {
        require(c.k_scale[i] <= c.k_scale[i - 1], who, names[i],
                "at most the scale of the class before it (non-increasing)", c.k_scale[i]);
      }
    }
    require_in_range(who, "window", c.window,
                     std::chrono::nanoseconds{std::chrono::seconds{1}},
                     std::chrono::nanoseconds{std::chrono::hours{1}});
    require_in_range(who, "buckets", c.buckets, std::size_t{1}, std::size_t{3600});
  }

 private:
  struct bucket {
    std::uint64_t requests = 0;
    std::uint64_t accepts = 0;
  };

  static adaptive_throttle_config validated(const adaptive_throttle_config& c) {
    validate(c);
    return c;
  }

  double probability_locked(criticality c) const noexcept {
    const double k = config_.k * config_.k_scale[static_cast<std::size_t>(c)];
    const double requests = static_cast<double>(requests_);
    const double p = (requests - k * static_cast<double>(accepts_)) / (requests + 1.0);
    return p > 0.0 ? p : 0.0;
  }

  // Expires the buckets that fell out of the window; head_ covers "now".
  // Mutable state below: reading the window (const members) also expires old buckets.
  void advance() const {
    const auto now = clock_.now();
    if (!started_) {
      started_ = true;
      head_start_ = now;
      return;
    }
    if (now - head_start_ < slice_) return;  // not head_start_ + slice_: may overflow
    const auto elapsed = (now - head_start_) / slice_;  // whole slices passed
    const std::size_t steps = elapsed >= static_cast<decltype(elapsed)>(buckets_.size())
                                  ? buckets_.size()
                                  : static_cast<std::size_t>(elapsed);
    for (std::size_t i = 0; i < steps; ++i) {
      head_ = (head_ + 1) % buckets_.size();
      requests_ -= buckets_[head_].requests;
      accepts_ -= buckets_[head_].accepts;
      buckets_[head_] = {};
    }
    head_start_ += slice_ * elapsed;
  }

  const adaptive_throttle_config config_;
  Clock clock_;
  const std::chrono::nanoseconds slice_;
  mutable std::mutex mutex_;
  mutable std::vector<bucket> buckets_;
  mutable std::size_t head_ = 0;
  mutable typename Clock::time_point head_start_{};
  mutable bool started_ = false;
  mutable std::uint64_t requests_ = 0;
  mutable std::uint64_t accepts_ = 0;
  std::uint64_t throttled_ = 0;
  std::uint64_t sent_ = 0;
  std::mt19937_64 rng_;
};

/// The adaptive throttle on the coarse steady clock.
using adaptive_throttle = basic_adaptive_throttle<>;

}  // namespace outgrow
