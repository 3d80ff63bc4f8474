// outgrow/autoscale/detail/policy_base.hpp — what the provided scaling policies share.
//
// target_tracking, backlog_scaling and predictive_scaling each hold a validated config
// and the HPA behavior (detail/hpa_behavior.hpp) built from it, and answer config()
// and history_needed() the same way: behavior_policy holds that once. no_fresh_sample()
// is the one "missing data" answer every provided policy gives for a stale metric.
#pragma once

#include <chrono>
#include <string_view>
#include <utility>

#include <outgrow/autoscale/detail/hpa_behavior.hpp>
#include <outgrow/autoscale/scaling_context.hpp>

namespace outgrow::detail {

/// Base of a policy whose Config has a `scaling_behavior behavior` member.
template <class Config>
class behavior_policy {
 public:
  [[nodiscard]] const Config& config() const noexcept { return config_; }
  /// The longest rate-limit period of the behavior: the replica history it reads
  /// (checked against autoscaler_config::history by autoscaler::add_policy()).
  [[nodiscard]] std::chrono::nanoseconds history_needed() const {
    return longest_period(config_.behavior);
  }

 protected:
  /// `config` is validated by the derived class before it gets here.
  explicit behavior_policy(Config config)
      : config_(std::move(config)), behavior_(config_.behavior) {}

  Config config_;
  hpa_behavior behavior_;
};

/// "no fresh <metric> sample: hold" as missing data for `metric`.
[[nodiscard]] inline recommendation no_fresh_sample(std::string_view metric) {
  recommendation r = recommendation::missing(metric, {});
  r.reason.format("no fresh {} sample: hold", metric);
  return r;
}

}  // namespace outgrow::detail
