// outgrow/admission/hedging.hpp — hedged requests: a second attempt when the first is slow.
//
// What: "The Tail at Scale" (Dean & Barroso) and Polly's hedging strategy. A call starts
// one attempt; if no result has arrived after a delay, it starts another (to another
// replica, chosen by the attempt's code), up to `max_hedged_attempts` extra ones. The
// first result wins, the other attempts are cancelled (each attempt gets a
// hedge_cancellation to watch: Boost 1.74's Asio has no per-operation cancellation slots).
// One slow replica in ten then costs a call the hedge delay plus a fast replica's latency,
// not the slow replica's latency.
//
// The delay: fixed (`delay`, Polly's default 2 s), or — with `delay_quantile`, e.g.
// 0.95 — the observed latency quantile of winning attempts, recomputed every
// `quantile_window` calls (Dean & Barroso hedge after the 95th percentile). A budget caps
// the extra load: hedges are budgeted exactly as retries are, by a retry_budget
// (resilience/retry_budget.hpp: Finagle's budget over a 10 s window) with ratio
// `budget_percent` / 100 and `budget_min_per_second` always allowed, so rare calls can
// hedge.
//
//   outgrow::hedging_policy policy({.max_hedged_attempts = 1, .delay_quantile = 0.95,
//                                   .budget_percent = 10});
//   outgrow::async_hedged<reply>(strand, policy,
//       [&](std::size_t attempt, outgrow::hedge_cancellation& cancel, auto done) {
//         auto& r = replicas[(first + attempt) % n];
//         cancel.on_cancel([&r] { r.cancel(); });     // another attempt won
//         r.async_get(key, std::move(done));
//       },
//       [](reply r) { respond(r); });
//
// Trade-offs: hedging spends extra load to cut the tail; use it for idempotent reads
// only. "First result wins" includes a fast error (wrap the attempt to turn errors into
// a retry if that is wrong for you). Attempts should honour their hedge_cancellation, or
// the losers run to completion (their results are discarded).
//
// With a resilience_pipeline: hedging is not one of its stages (a synchronous call
// cannot start a second attempt while the first holds the thread; see
// resilience_pipeline.hpp). Hedge inside the pipeline's call instead: it starts
// async_hedged on an io_context it drives until the first answer or its call_context's
// deadline — examples/hedging.cpp, behind a timeout_stage.
//
// Threading: async_hedged's state is touched from the executor it is given (post every
// completion through it): use a strand or a single-threaded io_context. The policy may
// be shared by any number of calls on any threads.
// Complexity: O(attempts) per call; the quantile recomputation O(344) every
// quantile_window calls.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/log_histogram.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/resilience/retry.hpp>
#include <outgrow/resilience/retry_budget.hpp>

namespace outgrow {

struct hedging_config {
  /// Extra attempts after the first: 1 (Polly). [1, 10]
  std::size_t max_hedged_attempts = 1;
  /// Wait before each hedge while no quantile is known (or always, without
  /// delay_quantile): 2 s (Polly). [0, 1 h]
  std::chrono::nanoseconds delay = std::chrono::seconds{2};
  /// Hedge after this quantile of the winning attempts' latency instead; empty = the
  /// fixed delay. (0, 1)
  std::optional<double> delay_quantile{};
  /// Calls per quantile window: the quantile is recomputed from the last full window.
  /// 1000. [10, 1e7]
  std::size_t quantile_window = 1000;
  /// Hedged attempts allowed, as a percentage of calls: 10. [0, 100]
  double budget_percent = 10.0;
  /// Hedges always allowed per second, whatever the call count: 10. [0, 1e6]
  double budget_min_per_second = 10.0;
};

struct hedging_metrics {
  static constexpr std::string_view metrics_name = "hedging_metrics";
  std::uint64_t calls = 0;
  std::uint64_t hedges = 0;       ///< extra attempts started
  std::uint64_t over_budget = 0;  ///< hedges not sent: budget spent
  std::uint64_t hedge_wins = 0;   ///< calls won by a hedged attempt
  std::chrono::nanoseconds current_delay{0};

  template <class F>
  void for_each_metric(F&& f) const {
    f("calls", calls);
    f("hedges", hedges);
    f("over_budget", over_budget);
    f("hedge_wins", hedge_wins);
    f("current_delay", current_delay);
  }
};

/// One attempt's cancellation: on_cancel(f) registers what to do when another attempt
/// has won (f runs once, on the call's executor; at once if already cancelled).
class hedge_cancellation {
 public:
  void on_cancel(std::function<void()> f) {
    if (cancelled_) {
      f();
      return;
    }
    handler_ = std::move(f);
  }
  [[nodiscard]] bool cancelled() const noexcept { return cancelled_; }

  /// Used by async_hedged.
  void cancel() {
    if (cancelled_) return;
    cancelled_ = true;
    if (handler_) std::exchange(handler_, nullptr)();
  }

 private:
  bool cancelled_ = false;
  std::function<void()> handler_;
};

/// When to hedge and whether the budget allows it; shared by calls on any threads.
template <clock_source Clock = steady_clock_source>
class hedging_policy {
 public:
  /// Throws: config_error naming the first bad field.
  explicit hedging_policy(hedging_config config = {}, Clock clock = {})
      : config_(validated(config)),
        clock_(std::move(clock)),
        budget_({.ratio = config_.budget_percent / 100.0,
                 .min_retries_per_second = config_.budget_min_per_second},
                clock_),
        delay_(config_.delay) {}

  /// Counts a call (deposits budget_percent / 100 of a hedge in the budget).
  void record_call() noexcept { budget_.record_request(); }

  /// Takes one hedge from the budget; false (counted) when it is spent.
  bool try_spend_hedge() noexcept { return budget_.try_acquire_retry(); }

  /// The latency of a call's winning attempt (from that attempt's start).
  void record_win(std::chrono::nanoseconds latency, bool by_hedge) {
    if (by_hedge) hedge_wins_.add();
    if (!config_.delay_quantile) return;
    const auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(latency.count(), 0));
    std::lock_guard lock(mutex_);
    window_->buckets[log_histogram::bucket_of(v)] += 1;
    window_->total += 1;
    window_->max = std::max(window_->max, v);
    if (window_->total >= config_.quantile_window) {
      delay_.store(std::chrono::nanoseconds(static_cast<std::int64_t>(
                       window_->percentile(*config_.delay_quantile))),
                   std::memory_order_relaxed);
      *window_ = {};
    }
  }

  /// The wait before the next hedge.
  [[nodiscard]] std::chrono::nanoseconds delay() const noexcept {
    return delay_.load(std::memory_order_relaxed);
  }

  [[nodiscard]] const hedging_config& config() const noexcept { return config_; }
  [[nodiscard]] Clock& clock() noexcept { return clock_; }

  [[nodiscard]] hedging_metrics metrics() const {
    const retry_budget_metrics b = budget_.metrics();
    return {.calls = b.requests,
            .hedges = b.retries_allowed,
            .over_budget = b.retries_rejected,
            .hedge_wins = hedge_wins_.load(),
            .current_delay = delay()};
  }

  static void validate(const hedging_config& c) {
    constexpr std::string_view who = "hedging";
    using std::chrono::nanoseconds;
    require_in_range(who, "max_hedged_attempts", c.max_hedged_attempts, std::size_t{1},
                     std::size_t{10});
    require_in_range(who, "delay", c.delay, nanoseconds{0},
                     nanoseconds{std::chrono::hours{1}});
    if (c.delay_quantile) {
      require(*c.delay_quantile > 0.0 && *c.delay_quantile < 1.0, who, "delay_quantile",
              "in (0, 1)", *c.delay_quantile);
    }
    require_in_range(who, "quantile_window", c.quantile_window, std::size_t{10},
                     std::size_t{10'000'000});
    require(c.budget_percent >= 0.0 && c.budget_percent <= 100.0, who, "budget_percent",
            "in [0, 100]", c.budget_percent);
    require(c.budget_min_per_second >= 0.0 && c.budget_min_per_second <= 1e6, who,
            "budget_min_per_second", "in [0, 1e6]", c.budget_min_per_second);
  }

 private:
  static hedging_config validated(const hedging_config& c) {
    validate(c);
    return c;
  }
  const hedging_config config_;
  Clock clock_;
  mutable std::mutex mutex_;
  retry_budget<Clock> budget_;  // the extra attempts, as retries are budgeted
  counter hedge_wins_;
  // The current quantile window (2.8 KB, on the heap).
  std::unique_ptr<log_histogram::counts> window_ =
      std::make_unique<log_histogram::counts>();
  std::atomic<std::chrono::nanoseconds> delay_;
};

/// Runs `op(attempt, hedge_cancellation&, done)` with hedges as `policy` decides; the
/// first `done(result)` wins: `handler(result)` runs once (posted to `executor`), the
/// other attempts' hedge_cancellation are cancelled, and so is the pending hedge delay
/// when the Timer has cancel(), so nothing of the call outlives its answer but the
/// losing attempts themselves. Timer: boost::asio::steady_timer, or any `retry_timer` on
/// the policy's clock (tests use a simulated one).
template <class Result, class Timer = boost::asio::steady_timer, class Clock,
          class Executor, class Op, class Handler>
requires retry_timer<Timer, Executor>
void async_hedged(const Executor& executor, hedging_policy<Clock>& policy, Op op,
                  Handler handler) {
  struct state {
    state(const Executor& ex, hedging_policy<Clock>& p, Op o, Handler h)
        : executor(ex), policy(p), op(std::move(o)), handler(std::move(h)), timer(ex) {}
    Executor executor;
    hedging_policy<Clock>& policy;
    Op op;
    Handler handler;
    Timer timer;
    bool done = false;
    std::size_t launched = 0;
    std::array<hedge_cancellation, 11> cancels;
    std::array<typename Clock::time_point, 11> started{};
  };
  auto s = std::make_shared<state>(executor, policy, std::move(op), std::move(handler));
  policy.record_call();

  struct launcher {
    std::shared_ptr<state> s;
    void launch() const {
      const std::size_t attempt = s->launched++;
      s->started[attempt] = s->policy.clock().now();
      auto keep = s;
      s->op(attempt, s->cancels[attempt],
            std::function<void(Result)>([keep, attempt](Result r) mutable {
              boost::asio::post(keep->executor,
                                [keep, attempt, r = std::move(r)]() mutable {
                                  finish(keep, attempt, std::move(r));
                                });
            }));
    }
    static void finish(const std::shared_ptr<state>& s, std::size_t attempt, Result r) {
      if (s->done) return;
      s->done = true;
      s->policy.record_win(std::chrono::duration_cast<std::chrono::nanoseconds>(
                               s->policy.clock().now() - s->started[attempt]),
                           attempt > 0);
      for (std::size_t i = 0; i < s->launched; ++i) {
        if (i != attempt) s->cancels[i].cancel();
      }
      // No hedge is due any more: a pending delay would keep the call's state (and an
      // io_context's run()) alive until it expired.
      if constexpr (requires { s->timer.cancel(); }) s->timer.cancel();
      s->handler(std::move(r));
    }
    void arm() const {
      if (s->launched > s->policy.config().max_hedged_attempts) return;
      const auto d = s->policy.delay();
      if constexpr (detail::timer_takes_own_duration<Timer>) {
        s->timer.expires_after(std::chrono::duration_cast<typename Timer::duration>(d));
      } else {
        s->timer.expires_after(d);
      }
      auto keep = s;
      s->timer.async_wait([keep](const boost::system::error_code& ec) {
        if (ec || keep->done) return;
        if (!keep->policy.try_spend_hedge()) return;
        const launcher l{keep};
        l.launch();
        l.arm();
      });
    }
  };
  const launcher l{s};
  l.launch();
  l.arm();
}

}  // namespace outgrow
