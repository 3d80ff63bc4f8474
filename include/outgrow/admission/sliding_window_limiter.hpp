// outgrow/admission/sliding_window_limiter.hpp — "at most N per window", sliding.
//
// What: the sliding-window counter (as Cloudflare and many API gateways count quotas):
// time is cut into fixed windows; a request at `elapsed` into the current window sees
//
//   estimate = previous_count × (window − elapsed) / window + current_count
//
// and is admitted iff estimate + n ≤ limit. The previous window's requests are assumed
// spread evenly, so the estimate slides smoothly instead of resetting at each boundary
// (a fixed window admits 2 × limit around a boundary; this admits at most about
// limit in any window-long span, exactly when arrivals are even).
//
// When: a quota stated as "N requests per minute" that clients expect to see counted
// that way (a partner API's published limit, per-user plans). For a rate with a burst
// allowance use rate_limiter (GCRA), which is exact and lock-free.
//
//   outgrow::sliding_window_limiter quota(
//       {.limit = 600, .window = std::chrono::minutes{1}});
//   if (auto d = quota.try_acquire(); !d) reply_429(d.retry_after);
//
// Trade-offs: an estimate, not a log of timestamps (O(1) memory instead of O(limit));
// a mutex per decision (a few tens of ns uncontended) — the GCRA limiter is the fast
// one. retry_after assumes nobody else is admitted meanwhile.
//
// Thread-safety: every member may be called concurrently. Complexity: O(1).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include <outgrow/admission/rate_limiter.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

struct sliding_window_limiter_config {
  /// Requests admitted per window. [1, 1e12]
  std::uint64_t limit = 100;
  /// The window. [1 ms, 24 h]
  std::chrono::nanoseconds window = std::chrono::seconds{1};
};

struct sliding_window_limiter_metrics {
  static constexpr std::string_view metrics_name = "sliding_window_limiter_metrics";
  std::uint64_t admitted = 0;  ///< calls admitted
  std::uint64_t rejected = 0;  ///< calls rejected
  std::uint64_t permits = 0;   ///< permits handed out

  template <class F>
  void for_each_metric(F&& f) const {
    f("admitted", admitted);
    f("rejected", rejected);
    f("permits", permits);
  }
};

template <clock_source Clock = coarse_steady_clock>
class basic_sliding_window_limiter {
 public:
  using clock_type = Clock;

  /// Throws: config_error if a field is out of range.
  explicit basic_sliding_window_limiter(sliding_window_limiter_config config = {},
                                        Clock clock = {})
      : config_(validated(config)), clock_(std::move(clock)), start_(clock_.now()) {}

  /// Takes n permits if the sliding estimate allows them now. n = 0 is always admitted.
  /// Throws: std::invalid_argument if n > limit (it could never be admitted).
  rate_limit_result try_acquire(std::uint64_t n = 1) {
    if (n > config_.limit) [[unlikely]] {
      throw std::invalid_argument(fmt::format(
          "sliding_window_limiter: a request for {} permits can never be admitted (limit "
          "is {})",
          n, config_.limit));
    }
    std::lock_guard lock(mutex_);
    const std::int64_t window = config_.window.count();
    const std::int64_t elapsed = roll();
    const double limit = static_cast<double>(config_.limit);
    const double want = static_cast<double>(n);
    const double prev = static_cast<double>(previous_);
    const double cur = static_cast<double>(current_);
    const double estimate =
        prev * static_cast<double>(window - elapsed) / static_cast<double>(window) + cur;
    if (estimate + want <= limit) {
      current_ += n;
      admitted_ += 1;
      permits_ += n;
      return {.admitted = true, .retry_after = std::chrono::nanoseconds::zero()};
    }
    rejected_ += 1;
    double wait = 0.0;  // in ns
    if (cur + want <= limit) {
      // Within this window, once the previous window's share has decayed enough.
      const double e = static_cast<double>(window) * (1.0 - (limit - want - cur) / prev);
      wait = e - static_cast<double>(elapsed);
    } else {
      // After this window ends, once this window's share (then "previous") decays.
      const double e2 = static_cast<double>(window) * (1.0 - (limit - want) / cur);
      wait = static_cast<double>(window - elapsed) + std::max(e2, 0.0);
    }
    return {.admitted = false,
            .retry_after = std::chrono::nanoseconds{
                static_cast<std::int64_t>(std::ceil(std::max(wait, 1.0)))}};
  }

  [[nodiscard]] sliding_window_limiter_metrics metrics() const {
    std::lock_guard lock(mutex_);
    return {.admitted = admitted_, .rejected = rejected_, .permits = permits_};
  }

  [[nodiscard]] const sliding_window_limiter_config& config() const noexcept {
    return config_;
  }

  /// Throws: config_error naming the first bad field.
  static void validate(const sliding_window_limiter_config& c) {
    constexpr std::string_view who = "sliding_window_limiter";
    require_in_range(who, "limit", c.limit, std::uint64_t{1},
                     std::uint64_t{1'000'000'000'000});
    require_in_range(who, "window", c.window,
                     std::chrono::nanoseconds{std::chrono::milliseconds{1}},
                     std::chrono::nanoseconds{std::chrono::hours{24}});
  }

 private:
  static sliding_window_limiter_config validated(const sliding_window_limiter_config& c) {
    validate(c);
    return c;
  }

  // Moves to the window holding "now"; returns the time elapsed into it (ns).
  std::int64_t roll() {
    const auto now = clock_.now();
    const std::int64_t since =
        now <= start_
            ? 0
            : std::chrono::duration_cast<std::chrono::nanoseconds>(now - start_).count();
    const std::int64_t window = config_.window.count();
    const std::int64_t index = since / window;
    if (index != index_) {
      previous_ = index == index_ + 1 ? current_ : 0;
      current_ = 0;
      index_ = index;
    }
    return since - index * window;
  }

  const sliding_window_limiter_config config_;
  Clock clock_;
  const typename Clock::time_point start_;
  mutable std::mutex mutex_;
  std::int64_t index_ = 0;
  std::uint64_t previous_ = 0;
  std::uint64_t current_ = 0;
  std::uint64_t admitted_ = 0;
  std::uint64_t rejected_ = 0;
  std::uint64_t permits_ = 0;
};

/// The sliding-window limiter on the coarse steady clock.
using sliding_window_limiter = basic_sliding_window_limiter<>;

}  // namespace outgrow
