// outgrow/autoscale/autoscaler.hpp — decide how many replicas a service should run.
//
// The controller a service or an operator embeds: feed it timestamped metric samples
// (CPU utilization, requests/s per replica, queue backlog, latency) and the replica
// counts; `evaluate()` asks every policy (autoscale/scaling_policy.hpp) and returns a
// decision with its reason — which policy, metric and rule decided, which limit held
// it back. Several policies → the largest count; then min/max replicas. A policy
// lacking fresh data never lets the service scale down (held, reason reported); a
// scale-up proposed by the others still goes ahead, as the Kubernetes HPA does.
//
//   outgrow::autoscaler<> scaler({.min_replicas = 2, .max_replicas = 40});
//   scaler.add_policy(outgrow::target_tracking({.metrics = {{"cpu", 70.0}}}));
//   scaler.add_policy(outgrow::backlog_scaling({.metric = "jobs",
//                                               .target_per_replica = 20}));
//   scaler.on_scale([&](const outgrow::scaling_decision& d) {
//     pool.set_workers(d.desired);
//   });
//   scaler.start(io.get_executor(), 15s);  // or call scaler.tick() yourself
//   // from the service, whenever a metric is scraped:
//   scaler.observe("cpu", 83.5);
//   scaler.set_replicas(pool.workers(), pool.starting());
//   fmt::print("{}\n", scaler.last_decision());   // scaling_decision{current=4, ...}
//
// evaluate() only decides; tick() decides and, when the count changes, calls the
// on_scale actuator (outside the lock) and records the new count (replicas added by a
// scale-up count as not ready until the next set_replicas()). An actuator returning
// false (or throwing) leaves the count unchanged. Rate limits and cooldowns read the
// replica history this object records: every change seen via set_replicas() or made
// by tick(), kept for `history` (the first set_replicas() before any tick is the
// baseline, not a scale event). Unlike the HPA, which counts only its own scale
// events, changes made by others (an operator, a second controller) count too.
//
// Kubernetes conformance (tests/autoscale/*_conformance_test.cpp port the HPA's
// replica_calculator_test.go / horizontal_test.go cases and KEDA's documented rules):
// a count below min_replicas or above max_replicas is brought into range at once, a
// missing metric never lets the count fall, an actuator failure leaves it unchanged,
// as the HPA controller does. Deliberate difference: a count of 0 with min_replicas > 0
// is raised to min_replicas, where the HPA reads a target scaled to 0 as "autoscaling
// disabled" and leaves it at 0 — here pausing is explicit (don't tick, or stop()).
//
// Periodic driver: start(executor, period) ticks on a steady_timer on the executor
// you pass (an io_context's or a thread_pool's); no thread of its own. stop() (also
// run by the destructor) cancels it and waits for a running tick; the executor's
// execution context must outlive the autoscaler. The actuator may call stop().
//
// Defaults: min 1 / max 10 replicas, a sample older than 60 s is missing (four HPA
// sync periods of 15 s), history 1 h (covers HPA rate-limit periods up to 30 min).
//
// Thread-safety: every member function may be called from any thread; one internal
// mutex serializes them (observe() from request threads is fine: O(1) under it).
// Clock: any clock_source whose time_point is std::chrono::steady_clock's
// (steady_clock_source, coarse_steady_clock, manual_clock).
// Complexity: observe() O(metrics) name lookup + amortized O(1) append (no allocation
// after the first sample of a metric and once the ring reached its peak); evaluate()
// O(policies × their cost) — see scaling_policy.hpp.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>

#include <outgrow/autoscale/scaling_policy.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

struct autoscaler_config {
  /// Never fewer replicas: 1 (0 allows scale to zero with backlog_scaling). [0, max]
  int min_replicas = 1;
  /// Never more replicas: 10. [1, 1000000]
  int max_replicas = 10;
  /// A metric whose newest sample is older than this is missing: 60 s. (0, 24 h]
  std::chrono::nanoseconds stale_after = std::chrono::seconds{60};
  /// How long samples and replica changes are kept: 1 h. [stale_after, 31 days],
  /// and at least every policy's history_needed().
  std::chrono::nanoseconds history = std::chrono::hours{1};
};

enum class scale_direction : std::uint8_t { none, up, down };

[[nodiscard]] constexpr std::string_view to_string(scale_direction d) noexcept {
  switch (d) {
    case scale_direction::none:
      return "none";
    case scale_direction::up:
      return "up";
    case scale_direction::down:
      return "down";
  }
  return "unknown";
}

/// The outcome of one evaluation.
struct scaling_decision {
  scaling_time_point at{};
  int current = 0;    ///< replicas before (ready + starting)
  int not_ready = 0;  ///< of those, still starting
  int proposed = 0;   ///< the largest policy proposal (current when held or none)
  int desired = 0;    ///< after min/max: what to run
  scale_limit limited_by = scale_limit::none;  ///< what held the count back
  bool missing_data = false;                   ///< some policy lacked fresh samples
  detail::inline_text<24> policy;              ///< the deciding policy
  detail::inline_text<32> metric;              ///< the deciding metric
  detail::inline_text<120> reason;             ///< the rule and its numbers
  double value = std::numeric_limits<double>::quiet_NaN();
  double target = std::numeric_limits<double>::quiet_NaN();

  [[nodiscard]] bool changes() const noexcept { return desired != current; }
  [[nodiscard]] scale_direction direction() const noexcept {
    return desired > current   ? scale_direction::up
           : desired < current ? scale_direction::down
                               : scale_direction::none;
  }
};

/// Counters and the latest state, as a metrics snapshot.
struct autoscaler_metrics {
  static constexpr std::string_view metrics_name = "autoscaler_metrics";
  std::uint64_t evaluations = 0;
  std::uint64_t scale_ups = 0;      ///< evaluations that decided to scale up
  std::uint64_t scale_downs = 0;    ///< evaluations that decided to scale down
  std::uint64_t missing_holds = 0;  ///< evaluations held for missing data
  std::uint64_t samples = 0;
  std::uint64_t rejected_samples = 0;  ///< not finite, negative or out of order
  std::uint64_t actuation_failures = 0;
  int current = 0;
  int not_ready = 0;
  int desired = 0;  ///< of the last evaluation

  template <class F>
  void for_each_metric(F&& f) const {
    f("evaluations", evaluations);
    f("scale_ups", scale_ups);
    f("scale_downs", scale_downs);
    f("missing_holds", missing_holds);
    f("samples", samples);
    f("rejected_samples", rejected_samples);
    f("actuation_failures", actuation_failures);
    f("current", current);
    f("not_ready", not_ready);
    f("desired", desired);
  }
};

namespace detail {

struct policy_slot_base {
  virtual ~policy_slot_base() = default;
  virtual recommendation recommend(const scaling_context& ctx) = 0;
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
  [[nodiscard]] virtual void* get(const std::type_info& type) noexcept = 0;
};

template <class P>
struct policy_slot final : policy_slot_base {
  P policy;
  explicit policy_slot(P p) : policy(std::move(p)) {}
  recommendation recommend(const scaling_context& ctx) override {
    return policy.recommend(ctx);
  }
  [[nodiscard]] std::string_view name() const noexcept override {
    if constexpr (requires(const P& p) {
                    { p.name() } -> std::convertible_to<std::string_view>;
                  }) {
      return std::string_view(policy.name());
    } else {
      return "custom";
    }
  }
  [[nodiscard]] void* get(const std::type_info& type) noexcept override {
    return type == typeid(P) ? &policy : nullptr;
  }
};

}  // namespace detail

template <clock_source Clock = steady_clock_source>
requires std::same_as<typename Clock::time_point, scaling_time_point>
class autoscaler {
 public:
  /// Throws: config_error if max_replicas is outside [1, 1000000], min_replicas outside
  /// [0, max_replicas], stale_after outside (0, 24 h] or history outside [stale_after,
  /// 31 days].
  explicit autoscaler(autoscaler_config config = {}, Clock clock = {})
      : config_(validated(config)),
        clock_(std::move(clock)),
        replicas_(config_.min_replicas),
        current_(config_.min_replicas) {}

  autoscaler(const autoscaler&) = delete;
  autoscaler& operator=(const autoscaler&) = delete;
  ~autoscaler() { stop(); }

  /// Adds a policy (consulted in the order added).
  /// Throws: config_error if the policy's history_needed() exceeds config().history.
  template <scaling_policy P>
  autoscaler& add_policy(P policy) {
    if constexpr (requires(const P& p) {
                    { p.history_needed() } -> std::convertible_to<std::chrono::nanoseconds>;
                  }) {
      const std::chrono::nanoseconds needed = policy.history_needed();
      require(config_.history >= needed, "autoscaler", "history",
              fmt::format(">= the policy's longest rate-limit period ({})",
                          detail::describe_duration(needed)),
              config_.history);
    }
    auto slot = std::make_unique<detail::policy_slot<P>>(std::move(policy));
    std::lock_guard lock(mutex_);
    policies_.push_back(std::move(slot));
    return *this;
  }

  /// The first added policy of type P (nullptr if none), e.g. to call
  /// predictive_scaling::learn(). Use it while no evaluation runs concurrently.
  template <class P>
  [[nodiscard]] P* find_policy() noexcept {
    std::lock_guard lock(mutex_);
    for (auto& p : policies_) {
      if (void* found = p->get(typeid(P))) return static_cast<P*>(found);
    }
    return nullptr;
  }

  [[nodiscard]] std::size_t policy_count() const {
    std::lock_guard lock(mutex_);
    return policies_.size();
  }

  /// Records a sample taken now. False when rejected (counted in rejected_samples,
  /// never seen by a policy): NaN, infinite or negative, or older than the newest
  /// sample of that metric — see metric_series::push().
  bool observe(std::string_view metric, double value) {
    return observe(metric, value, clock_.now());
  }
  /// Records a sample taken at `at`. For per-replica averages, `reporting` = how many
  /// replicas the average covers (-1 = all of them; which ones count depends on the
  /// metric's kind, see metric_target_type); below -1 is rejected.
  bool observe(std::string_view metric, double value, scaling_time_point at,
               int reporting = -1) {
    const metric_sample sample{at, value, reporting};
    std::lock_guard lock(mutex_);
    if (metric_series::check(sample) != sample_error::none) {
      ++stats_.rejected_samples;  // before a series is made for a bad first sample
      return false;
    }
    metric_series* s = find_series(metric);
    if (s == nullptr) s = &metrics_.emplace_back(std::string(metric));
    if (!s->push(sample)) {
      ++stats_.rejected_samples;
      return false;
    }
    ++stats_.samples;
    return true;
  }

  /// Tells the autoscaler the replica count (ready + starting) and how many of them
  /// are still starting.
  /// Throws: config_error if current < 0 or not_ready is outside [0, current].
  void set_replicas(int current, int not_ready = 0) {
    require_at_least("autoscaler", "set_replicas(current)", current, 0);
    require_in_range("autoscaler", "set_replicas(not_ready)", not_ready, 0, current);
    std::lock_guard lock(mutex_);
    if (!baseline_set_) {
      replicas_.reset(current);  // the first count is a baseline, not a scale event
      baseline_set_ = true;
    } else {
      replicas_.record(clock_.now(), current);
    }
    current_ = current;
    not_ready_ = not_ready;
  }

  /// Sets the actuator tick() calls when the count changes: a callable taking the
  /// decision and returning bool (applied?) or void (always applied).
  template <class F>
  requires std::invocable<F&, const scaling_decision&>
  void on_scale(F actuator) {
    std::shared_ptr<const actuator_fn> next;
    if constexpr (std::same_as<std::invoke_result_t<F&, const scaling_decision&>, bool>) {
      next = std::make_shared<const actuator_fn>(std::move(actuator));
    } else {
      next = std::make_shared<const actuator_fn>(
          [f = std::move(actuator)](const scaling_decision& d) mutable {
            f(d);
            return true;
          });
    }
    std::lock_guard lock(mutex_);
    actuator_ = std::move(next);
  }

  /// Decides, without acting, at clock.now().
  scaling_decision evaluate() { return evaluate(clock_.now()); }
  /// Decides, without acting, at `now`.
  scaling_decision evaluate(scaling_time_point now) {
    std::lock_guard lock(mutex_);
    return evaluate_locked(now);
  }

  /// Decides and acts (see the header comment), at clock.now().
  /// Throws: whatever the on_scale actuator throws (counted in actuation_failures; the
  /// replica count is left unchanged).
  scaling_decision tick() { return tick(clock_.now()); }
  /// As tick(), at `now`.
  /// Throws: whatever the on_scale actuator throws, as tick().
  scaling_decision tick(scaling_time_point now) {
    std::shared_ptr<const actuator_fn> actuator;
    scaling_decision d;
    {
      std::lock_guard lock(mutex_);
      d = evaluate_locked(now);
      if (!d.changes()) return d;
      actuator = actuator_;
    }
    bool applied = true;
    if (actuator) {
      try {
        applied = (*actuator)(d);
      } catch (...) {
        std::lock_guard lock(mutex_);
        ++stats_.actuation_failures;
        throw;
      }
    }
    std::lock_guard lock(mutex_);
    baseline_set_ = true;
    if (!applied) {
      ++stats_.actuation_failures;
      return d;
    }
    replicas_.record(now, d.desired);
    if (d.desired > current_) {
      not_ready_ += d.desired - current_;
    } else {
      not_ready_ = std::min(not_ready_, d.desired);
    }
    current_ = d.desired;
    return d;
  }

  /// Ticks every `period` on a steady_timer on `executor` until stop() (a throwing
  /// actuator is counted and the driver keeps going).
  /// Throws: config_error if period <= 0 or the driver is already running.
  void start(boost::asio::any_io_executor executor,
             std::chrono::nanoseconds period = std::chrono::seconds{15}) {
    require(period > std::chrono::nanoseconds{0}, "autoscaler", "start(period)", "> 0",
            period);
    auto d = std::make_shared<driver>(std::move(executor), this, period);
    {
      std::lock_guard start_lock(driver_mutex_);
      require(driver_ == nullptr, "autoscaler", "start(executor)",
              "called while not running", "a second start()");
      driver_ = d;
    }
    // Not under driver_mutex_: a tick holds d->mutex and its actuator may call stop().
    std::lock_guard lock(d->mutex);
    if (d->owner != nullptr) arm(d);  // unless stop() came first
  }

  /// Stops the periodic driver (no-op if not running); waits for a running tick.
  void stop() {
    std::shared_ptr<driver> d;
    {
      std::lock_guard start_lock(driver_mutex_);
      d = std::move(driver_);
    }
    if (!d) return;
    std::lock_guard lock(d->mutex);
    d->owner = nullptr;
    d->timer.cancel();
  }

  [[nodiscard]] bool running() const {
    std::lock_guard start_lock(driver_mutex_);
    return driver_ != nullptr;
  }

  [[nodiscard]] autoscaler_metrics metrics() const {
    std::lock_guard lock(mutex_);
    autoscaler_metrics s = stats_;
    s.current = current_;
    s.not_ready = not_ready_;
    return s;
  }

  /// The latest decision of evaluate()/tick(), if any.
  [[nodiscard]] std::optional<scaling_decision> last_decision() const {
    std::lock_guard lock(mutex_);
    return last_;
  }

  [[nodiscard]] const autoscaler_config& config() const noexcept { return config_; }
  [[nodiscard]] Clock& clock() noexcept { return clock_; }

 private:
  // Called through a const shared_ptr so a tick copies no std::function; the callable
  // itself may be stateful (mutable lambda), hence the mutable wrapper type.
  using actuator_fn = std::function<bool(const scaling_decision&)>;

  struct driver {
    driver(boost::asio::any_io_executor ex, autoscaler* o, std::chrono::nanoseconds p)
        : owner(o), timer(std::move(ex)), period(p) {}
    std::recursive_mutex mutex;  // the actuator may call stop() from inside a tick
    autoscaler* owner;
    boost::asio::steady_timer timer;
    std::chrono::nanoseconds period;
  };

  /// Arms the next tick; called with d->mutex held.
  static void arm(const std::shared_ptr<driver>& d) {
    d->timer.expires_after(d->period);
    d->timer.async_wait([d](const boost::system::error_code& ec) {
      if (ec == boost::asio::error::operation_aborted) return;
      std::lock_guard lock(d->mutex);
      if (d->owner == nullptr) return;
      try {
        d->owner->tick();
      } catch (...) {
        // Counted in actuation_failures; the driver keeps going.
      }
      if (d->owner != nullptr) arm(d);
    });
  }

  static autoscaler_config validated(const autoscaler_config& c) {
    constexpr std::string_view me = "autoscaler";
    require_in_range(me, "max_replicas", c.max_replicas, 1, 1'000'000);
    require_in_range(me, "min_replicas", c.min_replicas, 0, c.max_replicas);
    require_in_range(me, "stale_after", c.stale_after, std::chrono::nanoseconds{1},
                     std::chrono::hours{24});
    require_in_range(me, "history", c.history, c.stale_after, std::chrono::hours{24 * 31});
    return c;
  }

  metric_series* find_series(std::string_view name) noexcept {
    for (metric_series& s : metrics_) {
      if (s.name() == name) return &s;
    }
    return nullptr;
  }

  scaling_decision evaluate_locked(scaling_time_point now) {
    const scaling_time_point cutoff = now - config_.history;
    for (metric_series& s : metrics_) s.prune(cutoff);
    replicas_.prune(cutoff);

    scaling_context ctx;
    ctx.now = now;
    ctx.current = current_;
    ctx.not_ready = not_ready_;
    ctx.min_replicas = config_.min_replicas;
    ctx.max_replicas = config_.max_replicas;
    ctx.stale_after = config_.stale_after;
    ctx.metrics = &metrics_;
    ctx.replicas = &replicas_;

    recommendation best;
    std::string_view best_policy;
    bool have_best = false;
    recommendation missing;
    std::string_view missing_policy;
    bool any_missing = false;
    for (auto& p : policies_) {
      recommendation r = p->recommend(ctx);
      if (r.kind == recommendation_kind::replicas) {
        if (!have_best || r.replicas > best.replicas) {
          best = r;
          best_policy = p->name();
          have_best = true;
        }
      } else if (r.kind == recommendation_kind::missing_data && !any_missing) {
        missing = r;
        missing_policy = p->name();
        any_missing = true;
      }
    }

    scaling_decision d;
    d.at = now;
    d.current = current_;
    d.not_ready = not_ready_;
    d.missing_data = any_missing;
    if (any_missing && (!have_best || best.replicas < current_)) {
      d.proposed = current_;
      d.limited_by = scale_limit::missing_metrics;
      d.policy = missing_policy;
      d.metric = missing.metric;
      d.reason = missing.reason.view();
      ++stats_.missing_holds;
    } else if (have_best) {
      d.proposed = best.replicas;
      d.limited_by = best.limited_by;
      d.policy = best_policy;
      d.metric = best.metric;
      d.reason = best.reason.view();
      d.value = best.value;
      d.target = best.target;
      d.missing_data = any_missing || best.missing_data;
    } else {
      d.proposed = current_;
      d.reason = policies_.empty() ? "no policies" : "no policy proposed a change";
    }
    d.desired = d.proposed;
    if (d.desired > config_.max_replicas) {
      d.desired = config_.max_replicas;
      d.limited_by = scale_limit::max_replicas;
    } else if (d.desired < config_.min_replicas) {
      d.desired = config_.min_replicas;
      d.limited_by = scale_limit::min_replicas;
    }
    ++stats_.evaluations;
    if (d.desired > d.current) ++stats_.scale_ups;
    if (d.desired < d.current) ++stats_.scale_downs;
    stats_.desired = d.desired;
    last_ = d;
    return d;
  }

  autoscaler_config config_;
  Clock clock_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<detail::policy_slot_base>> policies_;
  std::vector<metric_series> metrics_;
  replica_history replicas_;
  int current_;
  int not_ready_ = 0;
  bool baseline_set_ = false;
  std::shared_ptr<const actuator_fn> actuator_;
  autoscaler_metrics stats_;
  std::optional<scaling_decision> last_;
  mutable std::mutex driver_mutex_;
  std::shared_ptr<driver> driver_;
};

}  // namespace outgrow

template <>
struct fmt::formatter<outgrow::scale_direction> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(outgrow::scale_direction d, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(outgrow::to_string(d), ctx);
  }
};

/// scaling_decision{current=4, desired=8, up, by target_tracking/cpu: "cpu 150/70:
/// ratio 2.143 -> 9 replicas", limited_by=scale_up_rate}
template <>
struct fmt::formatter<outgrow::scaling_decision> {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    return ctx.begin();
  }
  template <class FormatContext>
  auto format(const outgrow::scaling_decision& d, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    auto out = fmt::format_to(ctx.out(), "scaling_decision{{current={}, desired={}, {}",
                              d.current, d.desired, outgrow::to_string(d.direction()));
    if (d.not_ready > 0) out = fmt::format_to(out, ", not_ready={}", d.not_ready);
    if (!d.policy.empty()) {
      out = fmt::format_to(out, ", by {}", d.policy.view());
      if (!d.metric.empty()) out = fmt::format_to(out, "/{}", d.metric.view());
    }
    out = fmt::format_to(out, ": \"{}\"", d.reason.view());
    if (d.limited_by != outgrow::scale_limit::none) {
      out = fmt::format_to(out, ", limited_by={}", outgrow::to_string(d.limited_by));
    }
    return fmt::format_to(out, "}}");
  }
};

template <>
struct fmt::formatter<std::optional<outgrow::scaling_decision>>
    : fmt::formatter<outgrow::scaling_decision> {
  template <class FormatContext>
  auto format(const std::optional<outgrow::scaling_decision>& d, FormatContext& ctx) const
      -> decltype(ctx.out()) {
    if (!d) return fmt::format_to(ctx.out(), "scaling_decision{{none}}");
    return fmt::formatter<outgrow::scaling_decision>::format(*d, ctx);
  }
};
