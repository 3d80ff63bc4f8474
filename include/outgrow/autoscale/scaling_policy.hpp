// outgrow/autoscale/scaling_policy.hpp — how many replicas a service needs, by policy.
//
// The policies an `outgrow::autoscaler` (autoscale/autoscaler.hpp) consults on every
// evaluation. Each reads the metric samples the autoscaler holds and answers with a
// `recommendation`: a replica count and the reason (metric, rule, which limit held it
// back), "no opinion", or "missing data".
//
//   target_tracking — the Kubernetes HPA algorithm (replica_calculator.go, horizontal.go):
//     desired = ceil(current × value / target) per metric, the largest wins; tolerance
//     0.1; scale-up stabilization 0 s and scale-down 300 s; rate limits per period
//     (+100 % or +4 replicas per 15 s, whichever is more; −100 % per 15 s). Each metric
//     has a kind (metric_target_type) that says which HPA rules apply to replicas that
//     are not ready or sent no sample: `utilization` (CPU, the default) leaves not-ready
//     replicas out and counts them as 0 % on a scale-up; `per_pod` (custom per-replica
//     metrics) counts every replica that reported, starting ones included, as the HPA
//     does for every metric but CPU; `total` and `value` (external / object metrics)
//     ignore readiness. See metric_target_type.
//   step_scaling — ordered rules "metric op threshold for duration → ±n" with per-
//     direction cooldowns. Default: the textbook's "CPU > 70 % for 5 min → +2;
//     CPU < 30 % for 10 min → −1", cooldowns 300 s up / 600 s down.
//   backlog_scaling — desired = ceil(backlog / target_per_replica); KEDA's activation
//     rules: with the autoscaler's min_replicas at 0 it wakes from zero when the backlog
//     passes the activation threshold and scales to zero after `cooldown` without
//     activity (at once if it never saw any); with a minimum of 1 or more the
//     activation threshold is ignored and it only scales proportionally (KEDA's
//     activationThreshold / cooldownPeriod / initialCooldownPeriod / minReplicaCount).
//   predictive_scaling — learns a recurring load shape (daily by default, 5-minute
//     buckets) and provisions for the forecast `startup_time + margin` ahead; falls
//     back to reactive target tracking while the forecast error is large.
//
// Samples enter through metric_series::push() (autoscaler::observe() uses it). A NaN,
// an infinite or a negative value, a `reporting` below -1 or a sample older than the
// newest one is turned away there: push() returns false, the series counts it
// (rejected(), last_error() says why) and stays as it was. No policy ever sees such a
// sample, so a metric whose samples were all rejected has no fresh sample: its policy
// reports missing data (the autoscaler holds), it never proposes 0 replicas.
//
//   outgrow::autoscaler<> scaler({.min_replicas = 2, .max_replicas = 50});
//   scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 70.0}}}));
//   scaler.add_policy(outgrow::step_scaling());  // the textbook's rules
//   scaler.add_policy(outgrow::backlog_scaling({.metric = "queue",
//                                               .target_per_replica = 20}));
//
// Huge inputs: every proposal is a replica count in [0, 1e9] (a metric of 1e300 over a
// target of 1e-300 proposes 1e9; values and targets near DBL_MAX never overflow into
// NaN or 0), step adjustments saturate the same way whatever the current count (a
// count already above 1e9 is never raised), and the autoscaler then applies its
// max_replicas (at most 1e6). No signed overflow, no out-of-range conversion.
//
// Your own policy: any movable type with `recommendation recommend(const
// scaling_context&)` satisfies `scaling_policy`. The smallest one:
//
//   struct always_three {
//     outgrow::recommendation recommend(const outgrow::scaling_context&) {
//       return outgrow::recommendation::propose(3, "always three");
//     }
//   };
//
// Optional members the autoscaler uses when present: `std::string_view name() const`
// (shown in decisions) and `std::chrono::nanoseconds history_needed() const` (how much
// replica history the policy reads; checked against autoscaler_config::history).
//
// Thread-safety: a policy is used by one autoscaler, under that autoscaler's lock.
// Complexity: recommend() is O(metrics + samples since the last call + stabilization
// window entries); predictive_scaling also O(buckets in its look-ahead). No allocation
// in steady state (histories live in ring buffers that only grow to their peak size).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <outgrow/core/error.hpp>

namespace outgrow {

/// Time as every autoscale type sees it (the time_point of both provided clocks).
using scaling_time_point = std::chrono::steady_clock::time_point;

namespace detail {

/// A string of at most N bytes stored inline (no allocation); longer text is cut.
template <std::size_t N>
class inline_text {
 public:
  constexpr inline_text() noexcept = default;
  inline_text(std::string_view s) noexcept { assign(s); }    // NOLINT: implicit on purpose
  inline_text(const char* s) noexcept { assign(s); }         // NOLINT
  inline_text(const std::string& s) noexcept { assign(s); }  // NOLINT

  void assign(std::string_view s) noexcept {
    size_ = std::min(s.size(), N);
    if (size_ != 0) std::memcpy(data_, s.data(), size_);
  }
  /// Formats into the buffer (cut at N bytes); allocation-free.
  template <class... Args>
  void format(fmt::format_string<Args...> f, Args&&... args) {
    const auto r = fmt::format_to_n(data_, N, f, std::forward<Args>(args)...);
    size_ = std::min<std::size_t>(r.size, N);
  }
  [[nodiscard]] std::string_view view() const noexcept { return {data_, size_}; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  friend bool operator==(const inline_text& a, std::string_view b) noexcept {
    return a.view() == b;
  }

 private:
  char data_[N]{};
  std::size_t size_ = 0;
};

/// A FIFO ring buffer that grows (doubling) when full and never shrinks, so pushing
/// and popping allocate nothing once it reached its peak size.
template <class T>
class growing_ring {
 public:
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// i = 0 is the oldest element.
  [[nodiscard]] const T& operator[](std::size_t i) const noexcept {
    return buf_[(head_ + i) & (buf_.size() - 1)];
  }
  [[nodiscard]] T& operator[](std::size_t i) noexcept {
    return buf_[(head_ + i) & (buf_.size() - 1)];
  }
  [[nodiscard]] const T& front() const noexcept { return (*this)[0]; }
  [[nodiscard]] const T& back() const noexcept { return (*this)[size_ - 1]; }
  void push_back(const T& v) {
    if (size_ == buf_.size()) grow();
    buf_[(head_ + size_) & (buf_.size() - 1)] = v;
    ++size_;
  }
  void pop_front() noexcept {
    head_ = (head_ + 1) & (buf_.size() - 1);
    --size_;
  }
  void clear() noexcept { head_ = size_ = 0; }

 private:
  void grow() {
    std::vector<T> next(std::max<std::size_t>(16, buf_.size() * 2));
    for (std::size_t i = 0; i < size_; ++i) next[i] = (*this)[i];
    buf_.swap(next);
    head_ = 0;
  }
  std::vector<T> buf_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

/// The largest replica count a policy proposes: 1e9. Deliberate difference: the HPA
/// caps at MaxInt32 instead; both are far above any max_replicas (the autoscaler's is
/// at most 1e6), and 1e9 leaves room to add to it in an int.
inline constexpr int max_replica_count = 1'000'000'000;

/// ceil(x) as a replica count, clamped to [0, max_replica_count] (NaN counts as 0).
[[nodiscard]] inline int ceil_replicas(double x) noexcept {
  if (!(x > 0.0)) return 0;
  if (x >= max_replica_count) return max_replica_count;
  return static_cast<int>(std::ceil(x));
}

/// current + delta without overflow, for any int current and delta: in [0,
/// max(current, max_replica_count)] — a scale-up never proposes fewer than `current`
/// and never more than the cap (unless current is already above it), a scale-down
/// never goes below 0.
[[nodiscard]] inline int add_replicas(int current, std::int64_t delta) noexcept {
  const std::int64_t hi = std::max<std::int64_t>(current, max_replica_count);
  // |delta| beyond hi + 1 lands on a bound either way; clamped first, the sum fits.
  const std::int64_t sum =
      static_cast<std::int64_t>(current) + std::clamp<std::int64_t>(delta, -hi - 1, hi + 1);
  return static_cast<int>(std::clamp<std::int64_t>(sum, 0, hi));
}

inline void validate_duration(std::string_view primitive, std::string_view field,
                              std::chrono::nanoseconds d, std::chrono::nanoseconds lo,
                              std::chrono::nanoseconds hi) {
  require_in_range(primitive, field, d, lo, hi);
}

}  // namespace detail

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

/// A replica-count policy the autoscaler can consult (see the header comment).
template <class P>
concept scaling_policy = std::move_constructible<P> &&
    requires(P& p, const scaling_context& ctx) {
  { p.recommend(ctx) } -> std::same_as<recommendation>;
};

// ---------------------------------------------------------------------------------
// HPA behavior: stabilization windows and rate limits
// ---------------------------------------------------------------------------------

enum class rate_limit_type : std::uint8_t {
  pods,     ///< at most `value` replicas per period
  percent,  ///< at most `value` % of the replicas at the start of the period
};

/// "At most `value` replicas (or %) per `period`" — an HPA scaling policy.
struct rate_limit {
  rate_limit_type type = rate_limit_type::percent;
  int value = 100;
  std::chrono::nanoseconds period = std::chrono::seconds{15};
};

/// How several rate limits combine (HPA selectPolicy).
enum class select_policy : std::uint8_t {
  max,       ///< the limit allowing the largest change (HPA default)
  min,       ///< the limit allowing the smallest change
  disabled,  ///< no scaling in this direction at all
};

/// One direction of HPA `behavior`.
struct scaling_rules {
  /// Recommendations within this window are considered: the lowest for scale-up, the
  /// highest for scale-down. [0, 1 h] (HPA's range).
  std::chrono::nanoseconds stabilization_window{0};
  select_policy select = select_policy::max;
  /// Empty = no rate limit. Periods in (0, 30 min] (HPA's range), values >= 1 (percent:
  /// at most 1000000). With select = disabled they are never read: empty or the
  /// direction's default only (config_error otherwise).
  std::vector<rate_limit> policies{};
};

/// HPA `behavior`, with its defaults: scale up at once by max(+100 %, +4) per 15 s;
/// scale down after a 300 s stabilization window by up to 100 % per 15 s.
struct scaling_behavior {
  scaling_rules scale_up{
      .stabilization_window = std::chrono::seconds{0},
      .select = select_policy::max,
      .policies = {{rate_limit_type::percent, 100, std::chrono::seconds{15}},
                   {rate_limit_type::pods, 4, std::chrono::seconds{15}}}};
  scaling_rules scale_down{
      .stabilization_window = std::chrono::seconds{300},
      .select = select_policy::max,
      .policies = {{rate_limit_type::percent, 100, std::chrono::seconds{15}}}};
};

namespace detail {

inline bool same_policies(const std::vector<rate_limit>& a,
                          const std::vector<rate_limit>& b) noexcept {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const rate_limit& x, const rate_limit& y) {
                      return x.type == y.type && x.value == y.value && x.period == y.period;
                    });
}

/// `defaults`: the direction's default rules (scaling_behavior{}.scale_up / scale_down).
inline void validate_rules(std::string_view primitive, std::string_view prefix,
                           const scaling_rules& r, const scaling_rules& defaults) {
  using namespace std::chrono;
  validate_duration(primitive, fmt::format("{}.stabilization_window", prefix),
                    r.stabilization_window, nanoseconds{0}, hours{1});
  // select = disabled never reads the rate limits: only their default (or none).
  require(r.select != select_policy::disabled || r.policies.empty() ||
              same_policies(r.policies, defaults.policies),
          primitive, fmt::format("{}.policies", prefix),
          "empty or the default while select is disabled (never read)",
          fmt::format("{} rate limits", r.policies.size()));
  for (const rate_limit& p : r.policies) {
    require_at_least(primitive, fmt::format("{}.policies.value", prefix), p.value, 1);
    if (p.type == rate_limit_type::percent) {
      require_in_range(primitive, fmt::format("{}.policies.value (percent)", prefix),
                       p.value, 1, 1'000'000);
    }
    validate_duration(primitive, fmt::format("{}.policies.period", prefix), p.period,
                      nanoseconds{1}, minutes{30});
  }
}

inline std::chrono::nanoseconds longest_period(const scaling_behavior& b) {
  std::chrono::nanoseconds longest{0};
  for (const rate_limit& p : b.scale_up.policies) longest = std::max(longest, p.period);
  for (const rate_limit& p : b.scale_down.policies) longest = std::max(longest, p.period);
  return longest;
}

/// The HPA normalization after the metric proposal: stabilization over recent raw
/// recommendations, then the rate limits of the direction taken.
class hpa_behavior {
 public:
  explicit hpa_behavior(scaling_behavior b) : behavior_(std::move(b)) {}

  struct outcome {
    int replicas;
    scale_limit limited_by;
  };

  /// `raw` = the metrics' proposal; returns the count after stabilization and rate
  /// limits (not yet clamped to min/max replicas) and records `raw`.
  outcome apply(const scaling_context& ctx, int raw) {
    if (!initialized_) {
      // As the HPA does on first sight: the current count counts as a recent
      // recommendation, so nothing scales down within the first window.
      history_.push_back({ctx.now, ctx.current});
      initialized_ = true;
    }
    const auto up_cut = ctx.now - behavior_.scale_up.stabilization_window;
    const auto down_cut = ctx.now - behavior_.scale_down.stabilization_window;
    const auto keep_cut = ctx.now - std::max(behavior_.scale_up.stabilization_window,
                                             behavior_.scale_down.stabilization_window);
    while (!history_.empty() && history_.front().at <= keep_cut) history_.pop_front();

    int up_rec = raw;
    int down_rec = raw;
    for (std::size_t i = 0; i < history_.size(); ++i) {
      const entry& e = history_[i];
      if (e.at > up_cut) up_rec = std::min(up_rec, e.replicas);
      if (e.at > down_cut) down_rec = std::max(down_rec, e.replicas);
    }
    history_.push_back({ctx.now, raw});

    int stabilized = ctx.current;
    if (stabilized < up_rec) stabilized = up_rec;
    if (stabilized > down_rec) stabilized = down_rec;
    scale_limit limit = stabilized != raw ? scale_limit::stabilization : scale_limit::none;

    int result = stabilized;
    if (stabilized > ctx.current) {
      const int up_limit = std::max(scale_up_limit(ctx), ctx.current);
      if (result > up_limit) {
        result = up_limit;
        limit = scale_limit::scale_up_rate;
      }
    } else if (stabilized < ctx.current) {
      const int down_limit = std::min(scale_down_limit(ctx), ctx.current);
      if (result < down_limit) {
        result = down_limit;
        limit = scale_limit::scale_down_rate;
      }
    }
    return {result, limit};
  }

  [[nodiscard]] const scaling_behavior& behavior() const noexcept { return behavior_; }

 private:
  struct entry {
    scaling_time_point at{};
    int replicas = 0;
  };

  int scale_up_limit(const scaling_context& ctx) const {
    const scaling_rules& r = behavior_.scale_up;
    if (r.select == select_policy::disabled) return ctx.current;
    if (r.policies.empty()) return std::numeric_limits<int>::max();
    const bool pick_max = r.select == select_policy::max;
    int best = pick_max ? std::numeric_limits<int>::min() : std::numeric_limits<int>::max();
    for (const rate_limit& p : r.policies) {
      // Replicas at the start of the period: net changes since then undone.
      const int start = ctx.replicas_at(ctx.now - p.period);
      const double allowed =
          p.type == rate_limit_type::pods
              ? static_cast<double>(start) + p.value
              : std::ceil(static_cast<double>(start) * (1.0 + p.value / 100.0));
      const int proposed = static_cast<int>(std::min(allowed, 1e9));
      best = pick_max ? std::max(best, proposed) : std::min(best, proposed);
    }
    return best;
  }

  int scale_down_limit(const scaling_context& ctx) const {
    const scaling_rules& r = behavior_.scale_down;
    if (r.select == select_policy::disabled) return ctx.current;
    if (r.policies.empty()) return std::numeric_limits<int>::min();
    const bool pick_max_change = r.select == select_policy::max;
    int best =
        pick_max_change ? std::numeric_limits<int>::max() : std::numeric_limits<int>::min();
    for (const rate_limit& p : r.policies) {
      const int start = ctx.replicas_at(ctx.now - p.period);
      const double allowed =
          p.type == rate_limit_type::pods
              ? static_cast<double>(start) - p.value
              : std::trunc(static_cast<double>(start) * (1.0 - p.value / 100.0));
      const int proposed = static_cast<int>(std::max(allowed, -1e9));
      best = pick_max_change ? std::min(best, proposed) : std::max(best, proposed);
    }
    return best;
  }

  scaling_behavior behavior_;
  growing_ring<entry> history_;
  bool initialized_ = false;
};

}  // namespace detail

// ---------------------------------------------------------------------------------
// target_tracking — the Kubernetes HPA algorithm
// ---------------------------------------------------------------------------------

/// How a metric's samples relate to the replica count: the Kubernetes metric source and
/// target type it stands for, and with it which of the HPA's rules for replicas that are
/// not ready or sent no sample apply (replica_calculator.go; "ratio" = value / target).
enum class metric_target_type : std::uint8_t {
  /// HPA Resource metric on CPU, Utilization target (GetResourceReplicas). The sample is
  /// the average utilization — in % of a replica's request or capacity — over the ready
  /// replicas that reported; `reporting` counts ready replicas (-1 = all of them; more is
  /// cut to the ready count). Not-ready replicas are left out (the HPA ignores a starting
  /// pod's CPU) and, on a scale-up, count as 0 %. Ready replicas without a sample count
  /// as 0 % on a scale-up and as 100 % (the target when that is above 100) on a
  /// scale-down. desired = ceil(adjusted ratio × replicas counted). The default.
  utilization,
  /// HPA Pods metric, AverageValue target (GetMetricReplicas — custom per-replica
  /// metrics such as requests/s per replica). The sample is the average over every
  /// replica that reported, starting ones included: the HPA applies the not-ready rule
  /// to CPU only, so a starting replica's sample counts at its value. `reporting` counts
  /// replicas, ready or not (-1 = all `current` of them: pass the count whenever some
  /// have not reported, e.g. right after a scale-up, or they are counted at the
  /// average). Replicas that did not report are taken to be the starting ones first;
  /// those count as 0 on a scale-up and are left out on a scale-down (the HPA's Pending
  /// pods), the rest (ready, "missing") count as 0 on a scale-up and at the target on
  /// a scale-down. (The HPA treats memory Resource metrics the same way, except that
  /// missing replicas count at 100 % there.)
  per_pod,
  /// HPA External or Object metric, AverageValue target
  /// (GetExternalPerPodMetricReplicas / GetObjectPerPodMetricReplicas): the sample is a
  /// total for the service (queue length, requests/s). Hold while value / (target ×
  /// current) is within tolerance, else ceil(value / target); readiness plays no part.
  total,
  /// HPA External or Object metric, Value target (GetExternalMetricReplicas /
  /// GetObjectMetricReplicas): one service-wide value that falls as replicas are added
  /// (a latency percentile). Hold while the ratio is within tolerance, else
  /// ceil(ratio × ready replicas); from zero replicas ceil(ratio), without tolerance.
  /// Deliberate difference: with replicas but none of them ready the HPA proposes
  /// ceil(ratio × 0) = 0 (then raised to minReplicas); this metric counts as unusable
  /// instead (missing data: no scale-down on it), since a value that no ready replica
  /// produced says nothing about how many replicas it takes.
  value,
};

struct metric_target {
  std::string metric;
  double target = 0.0;  ///< > 0: average per replica (utilization, per_pod, total) or value
  metric_target_type type = metric_target_type::utilization;
};

struct target_tracking_config {
  /// The metrics to track; the largest proposal wins. Default: CPU utilization at 70 %
  /// (the textbook's scale-up threshold as a target).
  std::vector<metric_target> metrics = {{"cpu", 70.0, metric_target_type::utilization}};
  /// No scaling while |ratio − 1| <= tolerance: 0.1 as the HPA. [0, 10]
  double tolerance = 0.1;
  /// Stabilization windows and rate limits: the HPA defaults.
  scaling_behavior behavior{};
};

namespace detail {

/// value / (target × current) — the ratio of a total to what `current` replicas should
/// carry — also when target × current overflows (a target near DBL_MAX).
[[nodiscard]] inline double total_ratio(double value, double target, int current) noexcept {
  const double capacity = target * current;
  return std::isfinite(capacity) ? value / capacity : value / target / current;
}

struct hpa_proposal {
  int replicas = 0;
  bool within_tolerance = false;  ///< held: the (adjusted) ratio is within tolerance
  double ratio = 0.0;             ///< the usage ratio that decided (after adjustments)
  bool reversed = false;  ///< held: counting not-ready/missing replicas flips direction
};

/// The replicas of an average metric as the HPA's replica calculator groups them.
struct hpa_groups {
  int reporting = 0;      ///< replicas the sample averages over (> 0)
  int missing = 0;        ///< no sample: 0 on a scale-up, `fallback` on a scale-down
  int unready = 0;        ///< left out; 0 on a scale-up
  double fallback = 0.0;  ///< a missing replica's value on a scale-down
};

/// The HPA's replica calculation for an average over replicas (GetResourceReplicas and
/// calcPlainMetricReplicas): without unready or missing replicas, ceil(ratio ×
/// reporting) unless within tolerance; otherwise the ratio is recomputed with missing
/// replicas at 0 (scale-up) or `fallback` (scale-down) and, on a scale-up, unready ones
/// at 0 — and the count held if that lands within tolerance or reverses the direction.
inline hpa_proposal hpa_average(double value, double target, const hpa_groups& g,
                                int current, double tolerance) {
  const auto within = [tolerance](double r) { return std::abs(1.0 - r) <= tolerance; };
  const double ratio = value / target;
  const bool scale_up_with_unready = g.unready > 0 && ratio > 1.0;
  if (!scale_up_with_unready && g.missing == 0) {
    if (within(ratio)) return {current, true, ratio};
    return {ceil_replicas(ratio * g.reporting), false, ratio};
  }
  double sum = value * g.reporting;
  int count = g.reporting;
  if (ratio < 1.0) {
    sum += g.fallback * g.missing;  // missing replicas at the fallback on a scale-down
    count += g.missing;
  } else if (ratio > 1.0) {
    count += g.missing;  // ... and at 0 on a scale-up
  }
  if (scale_up_with_unready) count += g.unready;  // unready replicas at 0 on a scale-up
  double new_ratio = sum / (target * count);
  if (!std::isfinite(sum) || !std::isfinite(target * count)) {
    // Values or targets near DBL_MAX: the same ratio without an infinite intermediate
    // (inf / inf would be NaN and propose 0 replicas).
    const double missing_share = ratio < 1.0 ? g.fallback / target * g.missing : 0.0;
    new_ratio = (ratio * g.reporting + missing_share) / count;
  }
  if (within(new_ratio)) return {current, true, new_ratio};
  if ((ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0)) {
    return {current, false, new_ratio, true};
  }
  const int proposed = ceil_replicas(new_ratio * count);
  if ((new_ratio < 1.0 && proposed > current) || (new_ratio > 1.0 && proposed < current)) {
    return {current, false, new_ratio, true};
  }
  return {proposed, false, new_ratio};
}

}  // namespace detail

/// The Kubernetes HPA algorithm over one or more metrics. Per metric, by its kind
/// (metric_target_type): utilization and per_pod through the replica calculator's
/// average rules (not-ready and missing replicas as described there; the adjusted ratio
/// within tolerance or reversing the direction → hold), total and value as the HPA's
/// external / object metrics. The largest proposal wins. A metric that cannot propose —
/// no fresh sample, or no replica its sample covers — is unusable: if the others
/// propose a scale-down (or all are unusable) → missing_data (hold); a scale-up still
/// goes ahead (horizontal.go computeReplicasForMetrics). Then the HPA behavior:
/// stabilization (scale-up: lowest recommendation in its window; scale-down: highest
/// in its window; the current count counts as a recommendation on first sight) and rate
/// limits per period, counted from the replicas at the start of the period
/// (normalizeDesiredReplicasWithBehaviors); min/max replicas are the autoscaler's.
/// Deliberate differences: the replica-count history includes changes made by others
/// (autoscaler.hpp); samples are averages, so the HPA's per-pod requests (a
/// request-weighted CPU average) and its integer truncation of utilization are not
/// modelled.
class target_tracking {
 public:
  explicit target_tracking(target_tracking_config config = {})
      : config_(validated(std::move(config))), behavior_(config_.behavior) {}

  [[nodiscard]] std::string_view name() const noexcept { return "target_tracking"; }
  [[nodiscard]] const target_tracking_config& config() const noexcept { return config_; }
  [[nodiscard]] std::chrono::nanoseconds history_needed() const {
    return detail::longest_period(config_.behavior);
  }

  recommendation recommend(const scaling_context& ctx) {
    int best = -1;
    const metric_target* best_metric = nullptr;
    detail::hpa_proposal best_proposal{};
    double best_value = 0.0;
    int invalid = 0;
    const metric_target* first_invalid = nullptr;
    bool first_invalid_sampled = false;
    for (const metric_target& m : config_.metrics) {
      const metric_sample* s = ctx.fresh(m.metric);
      std::optional<detail::hpa_proposal> p;
      if (s != nullptr) p = propose(ctx, m, *s);
      if (!p) {
        if (invalid++ == 0) {
          first_invalid = &m;
          first_invalid_sampled = s != nullptr;
        }
        continue;
      }
      if (p->replicas > best) {
        best = p->replicas;
        best_metric = &m;
        best_proposal = *p;
        best_value = s->value;
      }
    }
    const auto n = static_cast<int>(config_.metrics.size());
    if (invalid == n || (invalid > 0 && best < ctx.current)) {
      recommendation r = recommendation::missing(first_invalid->metric, {});
      if (first_invalid_sampled) {
        r.reason.format("{} sample covers no replica ({} of {} metrics unusable): hold",
                        first_invalid->metric, invalid, n);
      } else {
        r.reason.format("no fresh {} sample ({} of {} metrics missing): hold",
                        first_invalid->metric, invalid, n);
      }
      return r;
    }
    const auto out = behavior_.apply(ctx, best);
    recommendation r;
    r.kind = recommendation_kind::replicas;
    r.replicas = out.replicas;
    r.metric = best_metric->metric;
    r.value = best_value;
    r.target = best_metric->target;
    r.missing_data = invalid > 0;
    r.limited_by = out.limited_by == scale_limit::none && best_proposal.within_tolerance
                       ? scale_limit::tolerance
                       : out.limited_by;
    if (best_proposal.reversed) {
      r.reason.format(
          "{} {:.4g}/{:.4g}: ratio {:.3f} with not-ready/missing replicas "
          "reverses direction: hold",
          best_metric->metric, best_value, best_metric->target, best_proposal.ratio);
    } else if (best_proposal.within_tolerance) {
      r.reason.format("{} {:.4g}/{:.4g}: ratio {:.3f} within tolerance {:.2f}",
                      best_metric->metric, best_value, best_metric->target,
                      best_proposal.ratio, config_.tolerance);
    } else {
      r.reason.format("{} {:.4g}/{:.4g}: ratio {:.3f} -> {} replicas", best_metric->metric,
                      best_value, best_metric->target, best_proposal.ratio, best);
    }
    return r;
  }

 private:
  static target_tracking_config validated(target_tracking_config c) {
    constexpr std::string_view me = "target_tracking";
    require(!c.metrics.empty(), me, "metrics", "non-empty", "an empty list");
    for (const metric_target& m : c.metrics) {
      require(!m.metric.empty(), me, "metrics.metric", "a non-empty name", "\"\"");
      require(std::isfinite(m.target) && m.target > 0.0, me, "metrics.target",
              "> 0 and finite", m.target);
    }
    require_in_range(me, "tolerance", c.tolerance, 0.0, 10.0);
    detail::validate_rules(me, "behavior.scale_up", c.behavior.scale_up,
                           scaling_behavior{}.scale_up);
    detail::validate_rules(me, "behavior.scale_down", c.behavior.scale_down,
                           scaling_behavior{}.scale_down);
    return c;
  }

  /// The metric's proposal; nullopt when its sample covers no replica it can count.
  std::optional<detail::hpa_proposal> propose(const scaling_context& ctx,
                                              const metric_target& m,
                                              const metric_sample& s) const {
    const int current = std::max(ctx.current, 0);
    const int ready = ctx.ready();
    const int not_ready = current - ready;
    const double tolerance = config_.tolerance;
    switch (m.type) {
      case metric_target_type::utilization: {
        const int reporting = s.reporting < 0 ? ready : std::min(s.reporting, ready);
        if (reporting <= 0) return std::nullopt;
        return detail::hpa_average(
            s.value, m.target,
            {reporting, ready - reporting, not_ready, std::max(100.0, m.target)}, current,
            tolerance);
      }
      case metric_target_type::per_pod: {
        const int reporting = s.reporting < 0 ? current : std::min(s.reporting, current);
        if (reporting <= 0) return std::nullopt;
        const int silent = current - reporting;
        const int unready = std::min(not_ready, silent);  // starting ones first
        return detail::hpa_average(s.value, m.target,
                                   {reporting, silent - unready, unready, m.target},
                                   current, tolerance);
      }
      case metric_target_type::total: {
        if (current == 0) {
          return detail::hpa_proposal{detail::ceil_replicas(s.value / m.target), false,
                                      0.0};
        }
        const double ratio = detail::total_ratio(s.value, m.target, current);
        if (std::abs(1.0 - ratio) <= tolerance) {
          return detail::hpa_proposal{current, true, ratio};
        }
        return detail::hpa_proposal{detail::ceil_replicas(s.value / m.target), false,
                                    ratio};
      }
      case metric_target_type::value: {
        const double ratio = s.value / m.target;
        if (current == 0)
          return detail::hpa_proposal{detail::ceil_replicas(ratio), false, ratio};
        if (ready <= 0) return std::nullopt;  // see metric_target_type::value
        if (std::abs(1.0 - ratio) <= tolerance) {
          return detail::hpa_proposal{current, true, ratio};
        }
        return detail::hpa_proposal{detail::ceil_replicas(ratio * ready), false, ratio};
      }
    }
    return std::nullopt;
  }

  target_tracking_config config_;
  detail::hpa_behavior behavior_;
};

// ---------------------------------------------------------------------------------
// step_scaling — "metric op threshold for duration → ±n", with cooldowns
// ---------------------------------------------------------------------------------

enum class comparison : std::uint8_t { greater, greater_equal, less, less_equal };

[[nodiscard]] constexpr std::string_view to_string(comparison c) noexcept {
  switch (c) {
    case comparison::greater:
      return ">";
    case comparison::greater_equal:
      return ">=";
    case comparison::less:
      return "<";
    case comparison::less_equal:
      return "<=";
  }
  return "?";
}

/// How a step rule's `adjustment` applies to the current count. The result saturates:
/// it never goes below 0 nor above max(current, 1e9) replicas (then the autoscaler's
/// min/max apply), whatever the current count — no overflow.
enum class adjustment_type : std::uint8_t {
  change_in_capacity,  ///< current + adjustment; non-zero, in [-1e9, 1e9]
  /// current + adjustment % of current, truncated, at least 1 either way; non-zero, in
  /// [-100, 10000] (−100 % = to zero, +10000 % = ×101)
  percent_change,
  exact_capacity,  ///< adjustment itself; in [0, 1e6]
};

/// "metric op threshold for for_at_least → adjustment".
struct step_rule {
  std::string metric;
  comparison op = comparison::greater;
  double threshold = 0.0;
  std::chrono::nanoseconds for_at_least{0};  ///< [0, 7 days]
  int adjustment = 0;                        ///< range by `type` (see adjustment_type)
  adjustment_type type = adjustment_type::change_in_capacity;
};

struct step_scaling_config {
  /// Checked in order; the first rule that holds decides. Default: the textbook's
  /// "CPU > 70 % for 5 min → +2; CPU < 30 % for 10 min → −1".
  std::vector<step_rule> rules = {
      {"cpu", comparison::greater, 70.0, std::chrono::minutes{5}, +2,
       adjustment_type::change_in_capacity},
      {"cpu", comparison::less, 30.0, std::chrono::minutes{10}, -1,
       adjustment_type::change_in_capacity}};
  /// No scale-up within this time of the last scale-up: 300 s (the textbook's).
  /// [0, 24 h]; only the default when no rule scales up (it is never read then).
  std::chrono::nanoseconds scale_up_cooldown = std::chrono::seconds{300};
  /// No scale-down within this time of the last scaling in either direction: 600 s
  /// (the textbook's; scale up fast, down slowly). [0, 24 h]; only the default when no
  /// rule scales down (an exact_capacity rule may go either way).
  std::chrono::nanoseconds scale_down_cooldown = std::chrono::seconds{600};
};

/// Step (alarm) scaling. A rule holds when every sample of its metric for at least
/// `for_at_least` satisfied the comparison: the run starts at the first satisfying
/// sample, a failing sample or a gap longer than the autoscaler's stale_after between
/// samples restarts it, and the newest sample must be fresh. The first holding rule
/// decides (put bigger steps first); while its direction cools down it holds the
/// current count (limited_by = cooldown). A rule keeps holding after it fired (an
/// alarm stays in alarm), so it fires again once the cooldown is over. No rule
/// holding → no opinion; a rule metric without fresh samples → missing data.
class step_scaling {
 public:
  explicit step_scaling(step_scaling_config config = {})
      : config_(validated(std::move(config))), runs_(config_.rules.size()) {
    for (const step_rule& r : config_.rules) {
      labels_.emplace_back(fmt::format(
          "{} {} {:.4g} for {} -> {}{}{}", r.metric, to_string(r.op), r.threshold,
          detail::describe_duration(r.for_at_least), adjustment_prefix(r), r.adjustment,
          r.type == adjustment_type::percent_change ? "%" : ""));
    }
  }

  [[nodiscard]] std::string_view name() const noexcept { return "step_scaling"; }
  [[nodiscard]] const step_scaling_config& config() const noexcept { return config_; }
  /// The rule as text, e.g. "cpu > 70 for 5min -> +2".
  [[nodiscard]] std::string_view rule_text(std::size_t i) const { return labels_.at(i); }

  recommendation recommend(const scaling_context& ctx) {
    const step_rule* missing_rule = nullptr;
    for (std::size_t i = 0; i < config_.rules.size(); ++i) {
      const step_rule& rule = config_.rules[i];
      run& state = runs_[i];
      if (const metric_series* s = ctx.series(rule.metric)) {
        s->for_each_after(state.last_seen, [&](const metric_sample& sample) {
          if (holds(rule, sample.value)) {
            if (!state.active || sample.at - state.last_seen > ctx.stale_after) {
              state.since = sample.at;
            }
            state.active = true;
          } else {
            state.active = false;
          }
          state.last_seen = sample.at;
        });
      }
      if (ctx.fresh(rule.metric) == nullptr) {
        if (missing_rule == nullptr) missing_rule = &rule;
        continue;
      }
      if (!state.active || ctx.now - state.since < rule.for_at_least) continue;
      return fire(ctx, i);
    }
    if (missing_rule != nullptr) {
      recommendation r = recommendation::missing(missing_rule->metric, {});
      r.reason.format("no fresh {} sample: hold", missing_rule->metric);
      return r;
    }
    return recommendation::none("no rule holds");
  }

 private:
  struct run {
    bool active = false;
    scaling_time_point since{};
    scaling_time_point last_seen{scaling_time_point::min()};
  };

  static std::string_view adjustment_prefix(const step_rule& r) {
    return r.type != adjustment_type::exact_capacity && r.adjustment >= 0 ? "+" : "";
  }

  static bool holds(const step_rule& r, double v) noexcept {
    switch (r.op) {
      case comparison::greater:
        return v > r.threshold;
      case comparison::greater_equal:
        return v >= r.threshold;
      case comparison::less:
        return v < r.threshold;
      case comparison::less_equal:
        return v <= r.threshold;
    }
    return false;
  }

  /// The rule's count from `current`, saturating (detail::add_replicas): in [0,
  /// max(current, 1e9)], no overflow whatever the current count.
  static int apply(const step_rule& r, int current) noexcept {
    switch (r.type) {
      case adjustment_type::change_in_capacity:
        return detail::add_replicas(current, r.adjustment);
      case adjustment_type::percent_change: {
        // |delta| <= 2^31 × 100 (adjustment validated), clamped to ±2^32 before the
        // conversion anyway, so the conversion is always in range.
        const double delta = static_cast<double>(current) * (r.adjustment / 100.0);
        auto step = static_cast<std::int64_t>(
            std::clamp(std::trunc(delta), -4294967296.0, 4294967296.0));
        if (step == 0) step = r.adjustment > 0 ? 1 : -1;
        return detail::add_replicas(current, step);
      }
      case adjustment_type::exact_capacity:
        return r.adjustment;
    }
    return current;
  }

  recommendation fire(const scaling_context& ctx, std::size_t i) const {
    const step_rule& rule = config_.rules[i];
    const metric_sample* s = ctx.fresh(rule.metric);
    recommendation r;
    r.kind = recommendation_kind::replicas;
    r.metric = rule.metric;
    r.value = s->value;
    r.target = rule.threshold;
    const int target = apply(rule, ctx.current);
    std::optional<scaling_time_point> until;
    if (target > ctx.current) {
      if (auto up = ctx.last_scale_up(); up && ctx.now - *up < config_.scale_up_cooldown) {
        until = *up + config_.scale_up_cooldown;
      }
    } else if (target < ctx.current) {
      std::optional<scaling_time_point> last = ctx.last_scale_up();
      if (auto down = ctx.last_scale_down(); down && (!last || *down > *last)) last = down;
      if (last && ctx.now - *last < config_.scale_down_cooldown) {
        until = *last + config_.scale_down_cooldown;
      }
    }
    if (until) {
      r.replicas = ctx.current;
      r.limited_by = scale_limit::cooldown;
      r.reason.format("{} ({}={:.4g}): cooling down for {}s more", labels_[i], rule.metric,
                      s->value,
                      std::chrono::ceil<std::chrono::seconds>(*until - ctx.now).count());
    } else {
      r.replicas = target;
      r.reason.format("{} ({}={:.4g})", labels_[i], rule.metric, s->value);
    }
    return r;
  }

  static step_scaling_config validated(step_scaling_config c) {
    constexpr std::string_view me = "step_scaling";
    constexpr int max_change = detail::max_replica_count;
    constexpr int max_percent = 10'000;
    require(!c.rules.empty(), me, "rules", "non-empty", "an empty list");
    for (const step_rule& r : c.rules) {
      require(!r.metric.empty(), me, "rules.metric", "a non-empty name", "\"\"");
      require(std::isfinite(r.threshold), me, "rules.threshold", "finite", r.threshold);
      detail::validate_duration(me, "rules.for_at_least", r.for_at_least,
                                std::chrono::nanoseconds{0}, std::chrono::hours{24 * 7});
      switch (r.type) {
        case adjustment_type::exact_capacity:
          require_in_range(me, "rules.adjustment (exact)", r.adjustment, 0, 1'000'000);
          break;
        case adjustment_type::change_in_capacity:
          require(r.adjustment != 0 && r.adjustment >= -max_change &&
                      r.adjustment <= max_change,
                  me, "rules.adjustment",
                  "non-zero and in [-1000000000, 1000000000] (replicas)", r.adjustment);
          break;
        case adjustment_type::percent_change:
          require(r.adjustment != 0 && r.adjustment >= -100 && r.adjustment <= max_percent,
                  me, "rules.adjustment (percent)", "non-zero and in [-100, 10000]",
                  r.adjustment);
          break;
      }
    }
    detail::validate_duration(me, "scale_up_cooldown", c.scale_up_cooldown,
                              std::chrono::nanoseconds{0}, std::chrono::hours{24});
    detail::validate_duration(me, "scale_down_cooldown", c.scale_down_cooldown,
                              std::chrono::nanoseconds{0}, std::chrono::hours{24});
    // A cooldown no rule can trigger is never read: only its default.
    const auto can = [&](int sign) {
      return std::any_of(c.rules.begin(), c.rules.end(), [sign](const step_rule& r) {
        return r.type == adjustment_type::exact_capacity || r.adjustment * sign > 0;
      });
    };
    const step_scaling_config defaults;
    require(can(+1) || c.scale_up_cooldown == defaults.scale_up_cooldown, me,
            "scale_up_cooldown", "the default 300s when no rule scales up (never read)",
            c.scale_up_cooldown);
    require(can(-1) || c.scale_down_cooldown == defaults.scale_down_cooldown, me,
            "scale_down_cooldown", "the default 600s when no rule scales down (never read)",
            c.scale_down_cooldown);
    return c;
  }

  step_scaling_config config_;
  std::vector<run> runs_;
  std::vector<std::string> labels_;
};

// ---------------------------------------------------------------------------------
// backlog_scaling — queue backlog per replica, scale to zero (KEDA)
// ---------------------------------------------------------------------------------

struct backlog_scaling_config {
  /// A total for the service: messages waiting, jobs in flight.
  std::string metric = "backlog";
  /// Backlog one replica should carry: 5, as KEDA's aws-sqs-queue scaler. > 0
  double target_per_replica = 5.0;
  /// Active while backlog > this (strictly): 0 as KEDA's activationThreshold default.
  /// Only consulted while the autoscaler's min_replicas is 0 — with a minimum of 1 or
  /// more KEDA ignores activation and so does this policy. >= 0
  double activation_threshold = 0.0;
  /// Inactive this long after the last activity → scale to zero: 300 s as KEDA's
  /// cooldownPeriod. Like KEDA's it only runs from a seen activity: a service never
  /// seen active is scaled to zero at once (after initial_cooldown). [0, 24 h]
  std::chrono::nanoseconds cooldown = std::chrono::seconds{300};
  /// While never active: no scale to zero within this time of the policy's first
  /// evaluation — 0 s as KEDA's initialCooldownPeriod (counted from the ScaledObject's
  /// creation; like KEDA's scale executor, only until the first activity). Set it to
  /// `cooldown` to treat a fresh start as activity. [0, 24 h]
  std::chrono::nanoseconds initial_cooldown{0};
  /// As target_tracking (KEDA hands the non-zero range to the HPA).
  double tolerance = 0.1;
  scaling_behavior behavior{};
};

/// KEDA-style backlog scaling (KEDA docs: "Activating and Scaling thresholds",
/// ScaledObject cooldownPeriod / initialCooldownPeriod / minReplicaCount). Proportional
/// part, the HPA's External AverageValue: desired = ceil(backlog / target_per_replica),
/// at least 1, held while backlog / (target × current) is within tolerance, then the
/// HPA stabilization and rate limits. Activation (only with the autoscaler's
/// min_replicas = 0, as KEDA scales to zero only when minReplicaCount is 0 and ignores
/// the activation value otherwise): active while backlog > activation_threshold;
/// inactive at zero → stays at zero (limited_by = activation); inactive for `cooldown`
/// since the last activity (never active: `initial_cooldown` since the first
/// evaluation) → 0, bypassing the HPA behavior as KEDA's own scale-to-zero does;
/// inactive otherwise → the proportional count (KEDA's HPA keeps at least 1). The
/// activation decision wins over the proportional one: below the threshold it scales
/// to zero even if the backlog would ask for more. Deliberate differences: waking from
/// zero goes straight to the proportional count (through the scale-up rate limit, so
/// at most +4 from zero by default), where KEDA activates to 1 and leaves the rest to
/// the HPA's next sync; KEDA's idleReplicaCount and fallback are not supported.
class backlog_scaling {
 public:
  explicit backlog_scaling(backlog_scaling_config config = {})
      : config_(validated(std::move(config))), behavior_(config_.behavior) {}

  [[nodiscard]] std::string_view name() const noexcept { return "backlog"; }
  [[nodiscard]] const backlog_scaling_config& config() const noexcept { return config_; }
  [[nodiscard]] std::chrono::nanoseconds history_needed() const {
    return detail::longest_period(config_.behavior);
  }

  recommendation recommend(const scaling_context& ctx) {
    const metric_sample* s = ctx.fresh(config_.metric);
    if (s == nullptr) {
      recommendation r = recommendation::missing(config_.metric, {});
      r.reason.format("no fresh {} sample: hold", config_.metric);
      return r;
    }
    if (!first_seen_) first_seen_ = ctx.now;
    const bool above = s->value > config_.activation_threshold;
    if (above) last_active_ = ctx.now;

    recommendation r;
    r.kind = recommendation_kind::replicas;
    r.metric = config_.metric;
    r.value = s->value;
    r.target = config_.target_per_replica;
    // KEDA: activation (and scaling to zero) only with a minimum of 0 replicas.
    if (ctx.min_replicas <= 0 && !above) {
      if (ctx.current <= 0) {
        r.replicas = 0;
        r.limited_by = scale_limit::activation;
        r.reason.format("{} {:.4g} <= activation {:.4g}: stay at zero", config_.metric,
                        s->value, config_.activation_threshold);
        return r;
      }
      // KEDA's scale executor: cooldown from the last activity; never active → the
      // initial cooldown from the first evaluation (its ScaledObject's creation).
      const bool idle_long_enough =
          last_active_ ? ctx.now - *last_active_ >= config_.cooldown
                       : ctx.now - *first_seen_ >= config_.initial_cooldown;
      if (idle_long_enough) {
        r.replicas = 0;
        if (last_active_) {
          r.reason.format("{} {:.4g} <= activation {:.4g} for {}: scale to zero",
                          config_.metric, s->value, config_.activation_threshold,
                          detail::describe_duration(config_.cooldown));
        } else {
          r.reason.format("{} {:.4g} <= activation {:.4g}, never active: scale to zero",
                          config_.metric, s->value, config_.activation_threshold);
        }
        return r;
      }
    }
    int raw = detail::ceil_replicas(s->value / config_.target_per_replica);
    bool within = false;
    if (ctx.current > 0) {
      const double ratio =
          detail::total_ratio(s->value, config_.target_per_replica, ctx.current);
      within = std::abs(1.0 - ratio) <= config_.tolerance;
      if (within) raw = ctx.current;
    }
    raw = std::max(raw, 1);
    auto out = behavior_.apply(ctx, raw);
    if (ctx.current == 0) out.replicas = std::max(out.replicas, 1);  // activation 0 → 1
    r.replicas = out.replicas;
    r.limited_by = out.limited_by == scale_limit::none && within ? scale_limit::tolerance
                                                                 : out.limited_by;
    r.reason.format("{} {:.4g} / {:.4g} per replica -> {}", config_.metric, s->value,
                    config_.target_per_replica, raw);
    return r;
  }

 private:
  static backlog_scaling_config validated(backlog_scaling_config c) {
    constexpr std::string_view me = "backlog_scaling";
    require(!c.metric.empty(), me, "metric", "a non-empty name", "\"\"");
    require(std::isfinite(c.target_per_replica) && c.target_per_replica > 0.0, me,
            "target_per_replica", "> 0 and finite", c.target_per_replica);
    require(std::isfinite(c.activation_threshold) && c.activation_threshold >= 0.0, me,
            "activation_threshold", ">= 0 and finite", c.activation_threshold);
    detail::validate_duration(me, "cooldown", c.cooldown, std::chrono::nanoseconds{0},
                              std::chrono::hours{24});
    detail::validate_duration(me, "initial_cooldown", c.initial_cooldown,
                              std::chrono::nanoseconds{0}, std::chrono::hours{24});
    require_in_range(me, "tolerance", c.tolerance, 0.0, 10.0);
    detail::validate_rules(me, "behavior.scale_up", c.behavior.scale_up,
                           scaling_behavior{}.scale_up);
    detail::validate_rules(me, "behavior.scale_down", c.behavior.scale_down,
                           scaling_behavior{}.scale_down);
    return c;
  }

  backlog_scaling_config config_;
  detail::hpa_behavior behavior_;
  std::optional<scaling_time_point> first_seen_;
  std::optional<scaling_time_point> last_active_;
};

// ---------------------------------------------------------------------------------
// predictive_scaling — learn a recurring shape, provision ahead of it
// ---------------------------------------------------------------------------------

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
class predictive_scaling {
 public:
  explicit predictive_scaling(predictive_scaling_config config = {})
      : config_(validated(std::move(config))),
        behavior_(config_.behavior),
        buckets_(static_cast<std::size_t>(config_.period / config_.bucket)) {}

  [[nodiscard]] std::string_view name() const noexcept { return "predictive"; }
  [[nodiscard]] const predictive_scaling_config& config() const noexcept { return config_; }
  [[nodiscard]] std::chrono::nanoseconds history_needed() const {
    return detail::longest_period(config_.behavior);
  }

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
    if (s == nullptr) {
      recommendation r = recommendation::missing(config_.metric, {});
      r.reason.format("no fresh {} sample: hold", config_.metric);
      return r;
    }
    // Reactive: HPA AverageValue over the total.
    int reactive = detail::ceil_replicas(s->value / config_.target_per_replica);
    bool within = false;
    if (ctx.current > 0) {
      const double ratio =
          detail::total_ratio(s->value, config_.target_per_replica, ctx.current);
      within = std::abs(1.0 - ratio) <= config_.tolerance;
      if (within) reactive = ctx.current;
    }
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
    detail::validate_duration(me, "bucket", c.bucket, nanoseconds{1}, hours{24 * 366});
    detail::validate_duration(me, "period", c.period, c.bucket, hours{24 * 366});
    require(c.period / c.bucket <= 1'000'000, me, "period / bucket", "<= 1000000",
            c.period / c.bucket);
    detail::validate_duration(me, "startup_time", c.startup_time, nanoseconds{0}, c.period);
    detail::validate_duration(me, "margin", c.margin, nanoseconds{0}, c.period);
    detail::validate_duration(me, "min_history", c.min_history, nanoseconds{0},
                              hours{24 * 366});
    require(c.learning_rate > 0.0 && c.learning_rate <= 1.0, me, "learning_rate",
            "in (0, 1]", c.learning_rate);
    require(c.max_error > 0.0 && c.max_error <= 1.0, me, "max_error", "in (0, 1]",
            c.max_error);
    require(c.error_smoothing > 0.0 && c.error_smoothing <= 1.0, me, "error_smoothing",
            "in (0, 1]", c.error_smoothing);
    require_in_range(me, "tolerance", c.tolerance, 0.0, 10.0);
    detail::validate_rules(me, "behavior.scale_up", c.behavior.scale_up,
                           scaling_behavior{}.scale_up);
    detail::validate_rules(me, "behavior.scale_down", c.behavior.scale_down,
                           scaling_behavior{}.scale_down);
    return c;
  }

  predictive_scaling_config config_;
  detail::hpa_behavior behavior_;
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

static_assert(scaling_policy<target_tracking>);
static_assert(scaling_policy<step_scaling>);
static_assert(scaling_policy<backlog_scaling>);
static_assert(scaling_policy<predictive_scaling>);

}  // namespace outgrow

template <std::size_t N>
struct fmt::formatter<outgrow::detail::inline_text<N>> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const outgrow::detail::inline_text<N>& t, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(t.view(), ctx);
  }
};

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
