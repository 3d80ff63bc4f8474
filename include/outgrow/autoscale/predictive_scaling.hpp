// outgrow/autoscale/predictive_scaling.hpp — provision ahead of a load shape that recurs.
//
// Learns a recurring load shape (daily by default, 5-minute buckets) from the samples
// it sees — and from learn() for older history — and provisions for the forecast
// `startup_time + margin` ahead, so replicas are ready when the load arrives; an
// unforecast surge is still met reactively (the HPA's total-metric rule), and while
// the forecast error is large it falls back to reactive target tracking alone. Use it
// when the load repeats (a daily peak, a 14:00 rush) and replicas start slowly.
//
//   outgrow::predictive_scaling p({.metric = "rps", .target_per_replica = 70.0});
//   for (const auto& [at, rps] : yesterday) p.learn(at, rps);  // optional warm start
//   scaler.add_policy(std::move(p));
//
// Trade-offs: needs one period of history (min_history) before it forecasts; a shape
// that shifts from cycle to cycle raises the forecast error and turns it reactive.
// Memory: one bucket (16 bytes) per `bucket` of the period — 288 for a day of 5-minute
// buckets, at most 1e6.
//
// Thread-safety: used by one autoscaler, under that autoscaler's lock (call learn()
// before add_policy(), or through autoscaler::find_policy() while no evaluation runs).
// Complexity: learn() O(1); recommend() O(samples since the last call + buckets in the
// look-ahead + stabilization window entries); no allocation in steady state.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/autoscale/detail/hpa_behavior.hpp>
#include <outgrow/autoscale/detail/policy_base.hpp>
#include <outgrow/autoscale/detail/replica_calculator.hpp>
#include <outgrow/autoscale/scaling_behavior.hpp>
#include <outgrow/autoscale/scaling_context.hpp>
#include <outgrow/core/error.hpp>

namespace outgrow {

struct predictive_scaling_config {
  /// A total load metric for the service (e.g. requests/s).
  std::string metric = "rps";
  /// Load one replica should carry (the reactive target too). > 0
  double target_per_replica = 1.0;
  /// The recurring cycle: daily. [bucket, 366 days]
  std::chrono::nanoseconds period = std::chrono::hours{24};
  /// Resolution of the learned shape: 5 min. (0, period]; period / bucket <= 1e6
  std::chrono::nanoseconds bucket = std::chrono::minutes{5};
  /// Replica start-up time: the policy provisions for the forecast this far ahead,
  /// plus `margin` for the evaluation period and rate limits. [0, period]
  std::chrono::nanoseconds startup_time = std::chrono::seconds{60};
  std::chrono::nanoseconds margin = std::chrono::seconds{60};
  /// History needed before forecasts are used: one period (AWS wants 24 h too).
  std::chrono::nanoseconds min_history = std::chrono::hours{24};
  /// Weight of the newest cycle in a bucket's forecast (EWMA across cycles). (0, 1]
  double learning_rate = 0.5;
  /// Forecast error (EWMA of |observed − forecast| / max of both, per sample) above
  /// which the policy falls back to reactive scaling. (0, 1]
  double max_error = 0.3;
  /// Weight of each sample in the error average. (0, 1]
  double error_smoothing = 0.2;
  /// Reactive part: HPA tolerance and behavior, as target_tracking.
  double tolerance = 0.1;
  scaling_behavior behavior{};
};

/// Predictive scaling: a per-bucket forecast of `metric` over a recurring period,
/// learned from the samples it sees (and from learn() for older history). While the
/// forecast is trusted (min_history seen, error <= max_error) the proposal is
/// max(reactive, ceil(max forecast over [now, now + startup_time + margin] /
/// target_per_replica)) — replicas are started before the load arrives, and an
/// unforecast surge is still met reactively. Otherwise: reactive only (the reason
/// says "reactive"). Both go through the HPA stabilization and rate limits. Buckets
/// are aligned to the clock's epoch (time_since_epoch modulo period).
class predictive_scaling : public detail::behavior_policy<predictive_scaling_config> {
 public:
  /// Throws: config_error if metric is empty, target_per_replica is not finite and > 0,
  /// a duration is outside its range (see predictive_scaling_config), period / bucket
  /// exceeds 1e6, a rate is outside (0, 1], tolerance is outside [0, 10] or the
  /// behavior is out of range.
  explicit predictive_scaling(predictive_scaling_config config = {})
      : behavior_policy(validated(std::move(config))),
        buckets_(static_cast<std::size_t>(config_.period / config_.bucket)) {}

  [[nodiscard]] std::string_view name() const noexcept { return "predictive_scaling"; }

  /// Feeds one historical (or live) sample into the model. Samples must come in time
  /// order; older ones are ignored, and so are NaN, infinite and negative values (as
  /// metric_series::push() turns them away). Any finite value up to DBL_MAX is learned
  /// without overflow: forecasts stay finite.
  void learn(scaling_time_point at, double value) {
    if (!std::isfinite(value) || value < 0.0 || (seen_any_ && at < last_learned_)) return;
    if (!seen_any_) {
      first_ = at;
      seen_any_ = true;
    }
    last_learned_ = at;
    const std::int64_t slot = slot_of(at);
    if (slot != open_slot_) {
      close_open_slot();
      open_slot_ = slot;
    }
    bucket& b = buckets_[bucket_index(slot)];
    if (b.learned) {
      const double f = b.forecast;
      const double denom = std::max({std::abs(value), std::abs(f), 1e-9});
      const double err = std::abs(value - f) / denom;
      error_ = errors_seen_ == 0 ? err : error_ + config_.error_smoothing * (err - error_);
      ++errors_seen_;
    }
    open_sum_ += value;
    ++open_count_;
    // Running mean, used only if the sum overflowed (values near DBL_MAX).
    open_mean_ += (value - open_mean_) / static_cast<double>(open_count_);
  }

  /// The learned load for time t, if its bucket was seen in an earlier cycle.
  [[nodiscard]] std::optional<double> forecast(scaling_time_point t) const {
    const bucket& b = buckets_[bucket_index(slot_of(t))];
    if (!b.learned) return std::nullopt;
    return b.forecast;
  }
  /// The forecast error average (0 until a forecast could be checked).
  [[nodiscard]] double forecast_error() const noexcept { return error_; }
  /// True when forecasts are used (enough history and a small error).
  [[nodiscard]] bool trusted(scaling_time_point now) const noexcept {
    return seen_any_ && now - first_ >= config_.min_history && error_ <= config_.max_error;
  }

  recommendation recommend(const scaling_context& ctx) {
    if (const metric_series* series = ctx.series(config_.metric)) {
      series->for_each_after(last_learned_or_min(),
                             [&](const metric_sample& s) { learn(s.at, s.value); });
    }
    const metric_sample* s = ctx.fresh(config_.metric);
    if (s == nullptr) return detail::no_fresh_sample(config_.metric);
    // Reactive: HPA AverageValue over the total.
    const detail::hpa_proposal proportional = detail::hpa_total(
        s->value, config_.target_per_replica, ctx.current, config_.tolerance);
    const int reactive = proportional.replicas;
    const bool within = proportional.within_tolerance;
    int raw = reactive;
    std::optional<double> ahead;
    const bool use_forecast = trusted(ctx.now);
    if (use_forecast) {
      ahead = peak_forecast(ctx.now, ctx.now + config_.startup_time + config_.margin);
      if (ahead)
        raw = std::max(raw, detail::ceil_replicas(*ahead / config_.target_per_replica));
    }
    const auto out = behavior_.apply(ctx, raw);
    recommendation r;
    r.kind = recommendation_kind::replicas;
    r.replicas = out.replicas;
    r.metric = config_.metric;
    r.value = s->value;
    r.target = config_.target_per_replica;
    r.limited_by = out.limited_by == scale_limit::none && within && raw == reactive
                       ? scale_limit::tolerance
                       : out.limited_by;
    if (use_forecast && ahead) {
      r.reason.format("forecast {:.4g} {} ahead (error {:.2f}) -> {}; reactive {}", *ahead,
                      config_.metric, error_, raw, reactive);
    } else if (!seen_any_ || ctx.now - first_ < config_.min_history) {
      r.reason.format(
          "reactive {:.4g} -> {} (learning: {} of history)", s->value, reactive,
          detail::describe_duration(
              std::chrono::duration_cast<std::chrono::seconds>(ctx.now - first_)));
    } else {
      r.reason.format("reactive {:.4g} -> {} (forecast error {:.2f} > {:.2f})", s->value,
                      reactive, error_, config_.max_error);
    }
    return r;
  }

 private:
  struct bucket {
    double forecast = 0.0;
    bool learned = false;
  };

  scaling_time_point last_learned_or_min() const noexcept {
    return seen_any_ ? last_learned_ : scaling_time_point::min();
  }
  /// Absolute bucket number since the epoch (distinguishes cycles).
  std::int64_t slot_of(scaling_time_point t) const noexcept {
    const auto since = t.time_since_epoch();
    auto slot = since / config_.bucket;
    if (since.count() < 0 && since % config_.bucket != std::chrono::nanoseconds{0}) --slot;
    return static_cast<std::int64_t>(slot);
  }
  std::size_t bucket_index(std::int64_t slot) const noexcept {
    const auto n = static_cast<std::int64_t>(buckets_.size());
    return static_cast<std::size_t>(((slot % n) + n) % n);
  }
  void close_open_slot() {
    if (open_count_ == 0) return;
    bucket& b = buckets_[bucket_index(open_slot_)];
    const double mean = std::isfinite(open_sum_)
                            ? open_sum_ / static_cast<double>(open_count_)
                            : open_mean_;
    // Both in [0, DBL_MAX]: the blend is too, up to rounding — hence the min.
    b.forecast = b.learned
                     ? std::min(b.forecast + config_.learning_rate * (mean - b.forecast),
                                std::numeric_limits<double>::max())
                     : mean;
    b.learned = true;
    open_sum_ = 0.0;
    open_mean_ = 0.0;
    open_count_ = 0;
  }
  std::optional<double> peak_forecast(scaling_time_point from,
                                      scaling_time_point to) const {
    std::optional<double> peak;
    const std::int64_t first = slot_of(from);
    const std::int64_t last = slot_of(to);
    for (std::int64_t slot = first; slot <= last; ++slot) {
      const bucket& b = buckets_[bucket_index(slot)];
      // The open bucket of the current cycle is not learned yet for this cycle; its
      // forecast (from earlier cycles) still applies.
      if (b.learned) peak = peak ? std::max(*peak, b.forecast) : b.forecast;
    }
    return peak;
  }

  static predictive_scaling_config validated(predictive_scaling_config c) {
    using namespace std::chrono;
    constexpr std::string_view me = "predictive_scaling";
    require(!c.metric.empty(), me, "metric", "a non-empty name", "\"\"");
    require(std::isfinite(c.target_per_replica) && c.target_per_replica > 0.0, me,
            "target_per_replica", "> 0 and finite", c.target_per_replica);
    require_in_range(me, "bucket", c.bucket, nanoseconds{1}, hours{24 * 366});
    require_in_range(me, "period", c.period, c.bucket, hours{24 * 366});
    require(c.period / c.bucket <= 1'000'000, me, "period / bucket", "<= 1000000",
            c.period / c.bucket);
    require_in_range(me, "startup_time", c.startup_time, nanoseconds{0}, c.period);
    require_in_range(me, "margin", c.margin, nanoseconds{0}, c.period);
    require_in_range(me, "min_history", c.min_history, nanoseconds{0}, hours{24 * 366});
    require(c.learning_rate > 0.0 && c.learning_rate <= 1.0, me, "learning_rate",
            "in (0, 1]", c.learning_rate);
    require(c.max_error > 0.0 && c.max_error <= 1.0, me, "max_error", "in (0, 1]",
            c.max_error);
    require(c.error_smoothing > 0.0 && c.error_smoothing <= 1.0, me, "error_smoothing",
            "in (0, 1]", c.error_smoothing);
    detail::validate_reactive(me, c.tolerance, c.behavior);
    return c;
  }

  std::vector<bucket> buckets_;
  bool seen_any_ = false;
  scaling_time_point first_{};
  scaling_time_point last_learned_{};
  std::int64_t open_slot_ = std::numeric_limits<std::int64_t>::min();
  double open_sum_ = 0.0;
  double open_mean_ = 0.0;
  std::size_t open_count_ = 0;
  double error_ = 0.0;
  std::uint64_t errors_seen_ = 0;
};

}  // namespace outgrow
