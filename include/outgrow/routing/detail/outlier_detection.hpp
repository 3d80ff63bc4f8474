// outgrow/routing/detail/outlier_detection.hpp — a load-balancer endpoint's health
// arithmetic: passive ejection (Envoy's outlier detection), active-check thresholds
// (HAProxy's rise/fall), slow start's stepped ramp, and the latency EWMA.
//
// The rules are documented in load_balancer.hpp ("Health"); the balancer owns the
// locking, the counters and republishing, and calls these on an endpoint's state
// (balancer_endpoint_core) with its configuration. The writer-side fields are read and
// written under the balancer's mutex; the latency EWMA is updated by leases, lock-free.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include <outgrow/routing/detail/balancer_endpoint.hpp>
#include <outgrow/routing/detail/wrr_smooth.hpp>

namespace outgrow::detail {

/// How many endpoints of `members` may be ejected at once: max_ejection_fraction of
/// them (Envoy's 100·(ejected + 1)/N <= max_ejection_percent), but always at least one.
template <class Config>
[[nodiscard]] std::size_t lb_ejections_allowed(const Config& c,
                                               std::size_t members) noexcept {
  return std::max<std::size_t>(
      1, static_cast<std::size_t>(
             std::floor(c.max_ejection_fraction * static_cast<double>(members) + 1e-9)));
}

/// Ejects `s` at `now` for base_ejection_time × its multiplier, capped at
/// max_ejection_time. The multiplier first decays by one per base_ejection_time spent
/// in service, then grows as Envoy's ejectTimeBackoff: while multiplier × base <
/// cap + base, so it stops one step past the cap (11 with the defaults). Writer lock
/// held; the caller has checked the run of failures and max_ejection_fraction.
template <class Config>
void lb_eject(balancer_endpoint_core& s, const Config& c, std::int64_t now) noexcept {
  const std::int64_t base = c.base_ejection_time.count();
  const auto served = static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, now - s.in_service_since_ns) / base);
  s.ejection_multiplier = served >= s.ejection_multiplier
                              ? 0U
                              : s.ejection_multiplier - static_cast<std::uint32_t>(served);
  const std::int64_t cap = c.max_ejection_time.count();  // >= base: validated
  if (static_cast<double>(s.ejection_multiplier) * static_cast<double>(base) <
      static_cast<double>(cap) + static_cast<double>(base)) {
    ++s.ejection_multiplier;
  }
  const double length =
      std::min(static_cast<double>(base) * s.ejection_multiplier, static_cast<double>(cap));
  s.ejected = true;
  s.ejected_until_ns = now + static_cast<std::int64_t>(length);
  s.consecutive_failures.store(0, std::memory_order_relaxed);
  ++s.ejections_total;
}

/// An endpoint returns to service at `now` (its ejection ended or it passed its active
/// checks): the run of failures restarts and slow start ramps it up again.
inline void lb_back_in_service(balancer_endpoint_core& s, std::int64_t now) noexcept {
  s.in_service_since_ns = now;
  s.ramp_start_ns = now;
  s.consecutive_failures.store(0, std::memory_order_relaxed);
}

/// What one active-check result did to an endpoint.
struct lb_check_result {
  bool changed = false;   // its routing state changed: republish
  bool returned = false;  // it is back in service (count a return)
};

/// Applies one active-check result: unhealthy_threshold failures in a row take the
/// endpoint out, healthy_threshold passes bring it back (HAProxy fall / rise).
template <class Config>
lb_check_result lb_apply_check(balancer_endpoint_core& s, bool healthy, const Config& c,
                               std::int64_t now) noexcept {
  if (healthy) {
    s.checks_failed = 0;
    if (s.healthy) return {};
    if (++s.checks_passed < c.healthy_threshold) return {};
    s.healthy = true;
    s.checks_passed = 0;
    if (s.ejected) return {true, false};
    lb_back_in_service(s, now);
    return {true, true};
  }
  s.checks_passed = 0;
  if (!s.healthy) return {};
  if (++s.checks_failed < c.unhealthy_threshold) return {};
  s.healthy = false;
  s.checks_failed = 0;
  return {true, false};
}

/// Slow start at one moment: the weight share, when the next step is due, and the
/// share exactly (step / steps; num 0: none).
struct lb_ramp {
  static constexpr std::int64_t never = std::numeric_limits<std::int64_t>::max();
  double factor = 1.0;
  std::int64_t due = never;
  wrr_rational exact{1, 1};
};

/// Slow-start share of `s` at `now`: from slow_start_min_weight to 1 over
/// slow_start_window in slow_start_steps steps.
template <class Config>
[[nodiscard]] lb_ramp lb_slow_start(const balancer_endpoint_core& s, const Config& c,
                                    std::int64_t now) {
  const std::int64_t window = c.slow_start_window.count();
  if (window == 0 || s.ramp_start_ns == std::numeric_limits<std::int64_t>::min() ||
      now - s.ramp_start_ns >= window) {
    return {};
  }
  const double steps = c.slow_start_steps;
  const double elapsed = static_cast<double>(now - s.ramp_start_ns);
  const double step = std::floor(elapsed * steps / static_cast<double>(window));
  const double factor = std::max(c.slow_start_min_weight, step / steps);
  const auto next =
      s.ramp_start_ns + static_cast<std::int64_t>(
                            std::ceil((step + 1.0) * static_cast<double>(window) / steps));
  const wrr_rational exact =
      step / steps >= c.slow_start_min_weight
          ? wrr_rational{static_cast<std::uint64_t>(step), c.slow_start_steps}
          : wrr_exact(c.slow_start_min_weight).value_or(wrr_rational{0, 1});
  return {factor, std::max(next, now + 1), exact};
}

/// Folds one latency sample into the endpoint's EWMA. Relaxed read-modify-write without
/// a lock: concurrent samples may overwrite each other (the average stays an average of
/// recent samples).
inline void lb_record_latency(balancer_endpoint_core& s, std::int64_t latency_ns,
                              double ewma_weight) noexcept {
  const std::int64_t old = s.ewma_ns.load(std::memory_order_relaxed);
  const double next = old == 0 ? static_cast<double>(latency_ns)
                               : static_cast<double>(old) +
                                     ewma_weight * static_cast<double>(latency_ns - old);
  s.ewma_ns.store(std::max<std::int64_t>(1, static_cast<std::int64_t>(next)),
                  std::memory_order_relaxed);
}

}  // namespace outgrow::detail
