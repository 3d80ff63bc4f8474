// outgrow/autoscale/scaling_context.hpp — what a scaling policy reads and answers.
//
// The vocabulary shared by the autoscaler (autoscale/autoscaler.hpp) and every policy
// (autoscale/scaling_policy.hpp): the metric samples the autoscaler holds
// (metric_sample in a metric_series per metric), the replica count over time
// (replica_history), the scaling_context a policy gets on each evaluation, and the
// recommendation it returns — a replica count with its reason (metric, rule, which
// scale_limit held it back), "no opinion", or "missing data". Include it to write your
// own policy without pulling in the provided ones.
//
//   outgrow::recommendation recommend(const outgrow::scaling_context& ctx) {
//     const outgrow::metric_sample* s = ctx.fresh("queue");
//     if (s == nullptr) return outgrow::recommendation::missing("queue", "no sample");
//     return outgrow::recommendation::propose(static_cast<int>(s->value / 10) + 1,
//                                             "10 jobs per replica", "queue");
//   }
//
// Samples enter through metric_series::push() (autoscaler::observe() uses it). A NaN,
// an infinite or a negative value, a `reporting` below -1 or a sample older than the
// newest one is turned away there: push() returns false, the series counts it
// (rejected(), last_error() says why) and stays as it was. No policy ever sees such a
// sample, so a metric whose samples were all rejected has no fresh sample: its policy
// reports missing data (the autoscaler holds), it never proposes 0 replicas.
//
// Trade-offs: text in a recommendation is stored inline and cut at its size (32 bytes
// for the metric, 120 for the reason) so an evaluation allocates nothing; series and
// histories are ring buffers that grow to their peak size and never shrink.
//
// Thread-safety: none of its own — the autoscaler holds these under its lock and hands
// a policy a context valid for one recommend() call.
// Complexity: metric_series::push() amortized O(1); scaling_context::series() /
// fresh() O(metrics) by name; replica_history::at() O(changes kept).
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

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <outgrow/autoscale/detail/growing_ring.hpp>
#include <outgrow/autoscale/detail/inline_text.hpp>

namespace outgrow {

/// Time as every autoscale type sees it (the time_point of both provided clocks).
using scaling_time_point = std::chrono::steady_clock::time_point;

// ---------------------------------------------------------------------------------
// Metric samples and the context policies read
// ---------------------------------------------------------------------------------

/// One observation of a metric.
struct metric_sample {
  scaling_time_point at{};
  /// Finite and >= 0 (metric_series::push() turns anything else away).
  double value = 0.0;
  /// For per-replica averages: how many replicas the average covers; -1 = all of them.
  /// Which replicas count depends on the metric's kind: the ready ones for
  /// metric_target_type::utilization, ready or starting for per_pod (see there).
  /// Fewer = the rest sent no sample (the HPA's "missing metrics" pods). >= -1
  int reporting = -1;
};

/// Why metric_series::push() turned a sample away.
enum class sample_error : std::uint8_t {
  none = 0,
  not_finite,     ///< NaN or infinite value
  negative,       ///< value below 0 (rates, counts, levels and shares are never negative)
  bad_reporting,  ///< reporting below -1
  out_of_order,   ///< taken before the newest sample kept
};

[[nodiscard]] constexpr std::string_view to_string(sample_error e) noexcept {
  switch (e) {
    case sample_error::none:
      return "none";
    case sample_error::not_finite:
      return "not_finite";
    case sample_error::negative:
      return "negative";
    case sample_error::bad_reporting:
      return "bad_reporting";
    case sample_error::out_of_order:
      return "out_of_order";
  }
  return "unknown";
}

/// The recent samples of one named metric, oldest first. The only way samples reach a
/// policy: push() validates every one (see the header comment).
class metric_series {
 public:
  explicit metric_series(std::string name) : name_(std::move(name)) {}

  /// What is wrong with a sample's value or reporting count (its time is not checked).
  [[nodiscard]] static sample_error check(const metric_sample& s) noexcept {
    if (!std::isfinite(s.value)) return sample_error::not_finite;
    if (s.value < 0.0) return sample_error::negative;
    if (s.reporting < -1) return sample_error::bad_reporting;
    return sample_error::none;
  }

  [[nodiscard]] std::string_view name() const noexcept { return name_; }
  [[nodiscard]] std::size_t size() const noexcept { return samples_.size(); }
  /// Samples push() turned away, and why the last one was.
  [[nodiscard]] std::uint64_t rejected() const noexcept { return rejected_; }
  [[nodiscard]] sample_error last_error() const noexcept { return last_error_; }
  /// The newest sample, or nullptr when none is kept.
  [[nodiscard]] const metric_sample* latest() const noexcept {
    return samples_.empty() ? nullptr : &samples_.back();
  }
  /// Calls f(sample) for every kept sample taken strictly after `after`, oldest first.
  template <class F>
  void for_each_after(scaling_time_point after, F&& f) const {
    std::size_t i = samples_.size();
    while (i > 0 && samples_[i - 1].at > after) --i;
    for (; i < samples_.size(); ++i) f(samples_[i]);
  }

  /// Appends a sample. False when it is rejected — not finite, negative, reporting
  /// below -1 (check()), or older than the newest sample kept: the series is unchanged,
  /// rejected() counts it and last_error() says why. Never throws for a bad sample.
  bool push(const metric_sample& s) {
    sample_error e = check(s);
    if (e == sample_error::none && !samples_.empty() && s.at < samples_.back().at) {
      e = sample_error::out_of_order;
    }
    if (e != sample_error::none) {
      ++rejected_;
      last_error_ = e;
      return false;
    }
    samples_.push_back(s);
    return true;
  }
  /// Drops samples taken before `cutoff`, always keeping the newest one.
  void prune(scaling_time_point cutoff) noexcept {
    while (samples_.size() > 1 && samples_.front().at < cutoff) samples_.pop_front();
  }

 private:
  std::string name_;
  detail::growing_ring<metric_sample> samples_;
  std::uint64_t rejected_ = 0;
  sample_error last_error_ = sample_error::none;
};

/// The replica count over time: every change, with the time it was made.
class replica_history {
 public:
  explicit replica_history(int initial = 0) : base_(initial), current_(initial) {}

  [[nodiscard]] int current() const noexcept { return current_; }
  /// Starts over from `replicas` with no recorded changes (a baseline, not a scale).
  void reset(int replicas) noexcept {
    base_ = current_ = replicas;
    changes_.clear();
  }
  /// Records that the replica count became `replicas` at `at` (no-op if unchanged).
  void record(scaling_time_point at, int replicas) {
    if (replicas == current_) return;
    if (replicas > current_)
      last_up_ = at;
    else
      last_down_ = at;
    changes_.push_back({at, replicas});
    current_ = replicas;
  }
  /// The count in force at time t (after every change made at or before t).
  [[nodiscard]] int at(scaling_time_point t) const noexcept {
    for (std::size_t i = changes_.size(); i > 0; --i) {
      if (changes_[i - 1].at <= t) return changes_[i - 1].replicas;
    }
    return base_;
  }
  [[nodiscard]] std::optional<scaling_time_point> last_scale_up() const noexcept {
    return last_up_;
  }
  [[nodiscard]] std::optional<scaling_time_point> last_scale_down() const noexcept {
    return last_down_;
  }
  /// Forgets changes made before `cutoff` (their effect stays in the base count).
  void prune(scaling_time_point cutoff) noexcept {
    while (!changes_.empty() && changes_.front().at < cutoff) {
      base_ = changes_.front().replicas;
      changes_.pop_front();
    }
  }

 private:
  struct change {
    scaling_time_point at{};
    int replicas = 0;
  };
  int base_;
  int current_;
  detail::growing_ring<change> changes_;
  std::optional<scaling_time_point> last_up_;
  std::optional<scaling_time_point> last_down_;
};

/// What a policy sees when asked for a recommendation.
struct scaling_context {
  scaling_time_point now{};
  int current = 0;    ///< replicas provisioned (ready + starting)
  int not_ready = 0;  ///< of those, still starting
  int min_replicas = 0;
  int max_replicas = 0;
  /// A sample older than this counts as missing.
  std::chrono::nanoseconds stale_after{std::chrono::seconds{60}};
  const std::vector<metric_series>* metrics = nullptr;
  const replica_history* replicas = nullptr;

  /// current − not_ready, never below 0 (inconsistent counts are clamped).
  [[nodiscard]] int ready() const noexcept {
    return std::max(0, current - std::clamp(not_ready, 0, std::max(current, 0)));
  }
  [[nodiscard]] const metric_series* series(std::string_view name) const noexcept {
    if (metrics == nullptr) return nullptr;
    for (const metric_series& s : *metrics) {
      if (s.name() == name) return &s;
    }
    return nullptr;
  }
  /// The newest sample of `name` if it is fresh (taken within stale_after of now).
  [[nodiscard]] const metric_sample* fresh(std::string_view name) const noexcept {
    const metric_series* s = series(name);
    if (s == nullptr) return nullptr;
    const metric_sample* last = s->latest();
    if (last == nullptr || now - last->at > stale_after) return nullptr;
    return last;
  }
  /// The replica count in force at time t (now: `current`).
  [[nodiscard]] int replicas_at(scaling_time_point t) const noexcept {
    return replicas == nullptr || t >= now ? current : replicas->at(t);
  }
  [[nodiscard]] std::optional<scaling_time_point> last_scale_up() const noexcept {
    return replicas == nullptr ? std::nullopt : replicas->last_scale_up();
  }
  [[nodiscard]] std::optional<scaling_time_point> last_scale_down() const noexcept {
    return replicas == nullptr ? std::nullopt : replicas->last_scale_down();
  }
};

/// What held a replica count back from what the metrics alone asked for.
enum class scale_limit : std::uint8_t {
  none = 0,
  tolerance,        ///< the metric/target ratio was within the tolerance band
  stabilization,    ///< a stabilization window kept a recent higher/lower count
  scale_up_rate,    ///< a scale-up rate limit (per period)
  scale_down_rate,  ///< a scale-down rate limit (per period)
  cooldown,         ///< a step-scaling cooldown
  activation,       ///< backlog below the activation threshold (stays at zero)
  min_replicas,
  max_replicas,
  missing_metrics,  ///< held: a metric had no fresh sample (never scale down blind)
};

[[nodiscard]] constexpr std::string_view to_string(scale_limit l) noexcept {
  switch (l) {
    case scale_limit::none:
      return "none";
    case scale_limit::tolerance:
      return "tolerance";
    case scale_limit::stabilization:
      return "stabilization";
    case scale_limit::scale_up_rate:
      return "scale_up_rate";
    case scale_limit::scale_down_rate:
      return "scale_down_rate";
    case scale_limit::cooldown:
      return "cooldown";
    case scale_limit::activation:
      return "activation";
    case scale_limit::min_replicas:
      return "min_replicas";
    case scale_limit::max_replicas:
      return "max_replicas";
    case scale_limit::missing_metrics:
      return "missing_metrics";
  }
  return "unknown";
}

enum class recommendation_kind : std::uint8_t {
  replicas,      ///< a replica count (which may equal the current one: "hold")
  no_opinion,    ///< nothing triggered; left out of the max over policies
  missing_data,  ///< could not decide: the autoscaler never scales down on this
};

/// A policy's answer. Text fields are stored inline (cut at their size).
struct recommendation {
  recommendation_kind kind = recommendation_kind::no_opinion;
  int replicas = 0;
  scale_limit limited_by = scale_limit::none;
  detail::inline_text<32> metric;                            ///< the metric that decided
  detail::inline_text<120> reason;                           ///< the rule and the numbers
  double value = std::numeric_limits<double>::quiet_NaN();   ///< metric value used
  double target = std::numeric_limits<double>::quiet_NaN();  ///< its target/threshold
  /// Some input had no fresh sample (always true for missing_data; a replicas
  /// proposal may still go ahead when it is a scale-up).
  bool missing_data = false;

  [[nodiscard]] static recommendation propose(int replicas, std::string_view reason,
                                              std::string_view metric = {}) {
    recommendation r;
    r.kind = recommendation_kind::replicas;
    r.replicas = replicas;
    r.reason = reason;
    r.metric = metric;
    return r;
  }
  [[nodiscard]] static recommendation none(std::string_view reason) {
    recommendation r;
    r.reason = reason;
    return r;
  }
  [[nodiscard]] static recommendation missing(std::string_view metric,
                                              std::string_view reason) {
    recommendation r;
    r.kind = recommendation_kind::missing_data;
    r.missing_data = true;
    r.metric = metric;
    r.reason = reason;
    r.limited_by = scale_limit::missing_metrics;
    return r;
  }
};

}  // namespace outgrow

template <>
struct fmt::formatter<outgrow::scale_limit> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(outgrow::scale_limit l, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(outgrow::to_string(l), ctx);
  }
};

template <>
struct fmt::formatter<outgrow::metric_sample> {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    return ctx.begin();
  }
  template <class FormatContext>
  auto format(const outgrow::metric_sample& s, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    const auto at =
        std::chrono::duration_cast<std::chrono::milliseconds>(s.at.time_since_epoch());
    if (s.reporting >= 0) {
      return fmt::format_to(ctx.out(), "metric_sample{{at={}, value={:.4g}, reporting={}}}",
                            at, s.value, s.reporting);
    }
    return fmt::format_to(ctx.out(), "metric_sample{{at={}, value={:.4g}}}", at, s.value);
  }
};
