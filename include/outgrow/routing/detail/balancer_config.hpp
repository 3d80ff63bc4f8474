// outgrow/routing/detail/balancer_config.hpp — the checks of load_balancer_config.
//
// load_balancer::validate (and read_write_splitter for its `replicas` field) call
// lb_validate: every field in its range, max_ejection_time >= base_ejection_time, and a
// field that this Policy or the rest of the configuration never reads left at its
// default (as Caffeine's builder does), so a mistake is a config_error, not a no-op.
// Which fields a policy reads comes from its declarations (detail::lb_policy_traits).
#pragma once

#include <chrono>
#include <string_view>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>
#include <outgrow/routing/detail/balancer_policies.hpp>

namespace outgrow::detail {

/// Throws config_error "<owner>: <prefix><field> must be ..., got ..." unless `c` is a
/// valid configuration for a balancer with `Policy`.
template <class Policy, class Config>
void lb_validate(const Config& c, std::string_view owner, std::string_view prefix) {
  using namespace std::chrono;
  using traits = lb_policy_traits<Policy>;
  const nanoseconds day = hours{24};
  const Config d{};
  const auto field = [&](std::string_view name) {
    return fmt::format("{}{}", prefix, name);
  };
  const auto describe = [](const auto& v) { return describe_value(v); };
  // A non-default value of a field that is never read is a mistake, not a no-op.
  const auto unread = [&](bool is_default, std::string_view name, const auto& value,
                          const auto& default_value, std::string_view why) {
    require(is_default, owner, field(name),
            fmt::format("{} (the default) {}", describe(default_value), why), value);
  };
  require_in_range(owner, field("consecutive_failures"), c.consecutive_failures, 0U,
                   1'000'000U);
  require(c.base_ejection_time > nanoseconds{0} && c.base_ejection_time <= day, owner,
          field("base_ejection_time"), "in (0s, 24h]", c.base_ejection_time);
  require(c.max_ejection_time > nanoseconds{0} && c.max_ejection_time <= day, owner,
          field("max_ejection_time"), "in (0s, 24h]", c.max_ejection_time);
  require(c.max_ejection_fraction > 0.0 && c.max_ejection_fraction <= 1.0, owner,
          field("max_ejection_fraction"),
          "in (0, 1] (one endpoint may always be ejected; consecutive_failures = 0 "
          "turns ejection off)",
          c.max_ejection_fraction);
  if (c.consecutive_failures == 0) {
    constexpr std::string_view off =
        "when consecutive_failures = 0: passive ejection is off and never reads it";
    unread(c.base_ejection_time == d.base_ejection_time, "base_ejection_time",
           c.base_ejection_time, d.base_ejection_time, off);
    unread(c.max_ejection_time == d.max_ejection_time, "max_ejection_time",
           c.max_ejection_time, d.max_ejection_time, off);
    unread(c.max_ejection_fraction == d.max_ejection_fraction, "max_ejection_fraction",
           c.max_ejection_fraction, d.max_ejection_fraction, off);
  }
  require(c.max_ejection_time >= c.base_ejection_time, owner, field("max_ejection_time"),
          fmt::format("in [{}, 24h] (not below base_ejection_time)",
                      describe(c.base_ejection_time)),
          c.max_ejection_time);
  require(c.health_check_interval > nanoseconds{0} && c.health_check_interval <= day, owner,
          field("health_check_interval"), "in (0s, 24h]", c.health_check_interval);
  require_in_range(owner, field("healthy_threshold"), c.healthy_threshold, 1U, 1000U);
  require_in_range(owner, field("unhealthy_threshold"), c.unhealthy_threshold, 1U, 1000U);
  require_in_range(owner, field("slow_start_window"), c.slow_start_window, nanoseconds{0},
                   day);
  require(c.slow_start_min_weight > 0.0 && c.slow_start_min_weight <= 1.0, owner,
          field("slow_start_min_weight"), "in (0, 1]", c.slow_start_min_weight);
  require_in_range(owner, field("slow_start_steps"), c.slow_start_steps, 1U, 1000U);
  if constexpr (!traits::ramps_weights) {
    unread(c.slow_start_window == d.slow_start_window, "slow_start_window",
           c.slow_start_window, d.slow_start_window,
           fmt::format("under {}: slow start ramps weights, which it {}", Policy::name,
                       traits::keyed ? "keeps as configured on the ring so keys do not move"
                                     : "does not use"));
  }
  if (c.slow_start_window == nanoseconds{0}) {
    constexpr std::string_view off =
        "when slow_start_window = 0s: slow start is off and never reads it";
    unread(c.slow_start_min_weight == d.slow_start_min_weight, "slow_start_min_weight",
           c.slow_start_min_weight, d.slow_start_min_weight, off);
    unread(c.slow_start_steps == d.slow_start_steps, "slow_start_steps", c.slow_start_steps,
           d.slow_start_steps, off);
  }
  require_in_range(owner, field("panic_threshold"), c.panic_threshold, 0.0, 1.0);
  require(c.ewma_weight > 0.0 && c.ewma_weight <= 1.0, owner, field("ewma_weight"),
          "in (0, 1]", c.ewma_weight);
  require(c.latency_stale_after > nanoseconds{0} && c.latency_stale_after <= day, owner,
          field("latency_stale_after"), "in (0s, 24h]", c.latency_stale_after);
  if constexpr (!traits::measures_latency) {
    unread(c.latency_stale_after == d.latency_stale_after, "latency_stale_after",
           c.latency_stale_after, d.latency_stale_after,
           fmt::format("under {}: only least_response_time reads it", Policy::name));
  }
  require_in_range(owner, field("ring_vnodes"), c.ring_vnodes, 1U, 100'000U);
  if constexpr (!traits::keyed) {
    unread(c.ring_vnodes == d.ring_vnodes, "ring_vnodes", c.ring_vnodes, d.ring_vnodes,
           fmt::format("under {}: only key_hash reads it", Policy::name));
  }
  if constexpr (!traits::draws_random) {
    unread(!c.seed.has_value(), "seed", c.seed.value_or(0), std::string_view{"unset"},
           fmt::format("under {}: the policy draws no random numbers", Policy::name));
  }
}

}  // namespace outgrow::detail
