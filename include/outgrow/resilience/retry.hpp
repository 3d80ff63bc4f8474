// outgrow/resilience/retry.hpp — try a failing call again, without making an outage worse.
//
// `retry` re-runs a call that failed with a transient error, waiting a backoff delay
// (core/backoff.hpp; full jitter by default) between attempts, up to `max_attempts`
// attempts in total. A `retry_budget` shared by every caller of a dependency caps
// retries at a fraction of recent requests, so that when the dependency is down the
// clients do not multiply its load by max_attempts (a "retry storm").
//
//   outgrow::retry_budget<> budget;                              // 20 % + 10/s, 10 s
//   outgrow::retry<> retry({.max_attempts = 4,
//                           .retry_on = outgrow::retry_on<std::system_error>()},
//                          outgrow::full_jitter_backoff{100ms, 5s}, budget);
//   std::string body = retry.run([&] { return http.get(url); });  // throws the last error
//   auto r = retry.try_run([&] { return http.get(url); });        // never throws f's error
//   if (!r.ok()) log("gave up after {} attempts: {}", r.attempts, r.stop);
//   retry.run([&] { return http.get(url); },                       // retry on a result
//             [](const response& x) { return x.status == 503; });
//   retry.async_run(io.get_executor(), [&] { return http.get(url); },
//                   [](outgrow::retry_result<response> r) { ... });  // Asio timers
//
// What is retried: exceptions accepted by `retry_config::retry_on` — by default every
// exception except `outgrow::circuit_open_error`; `retry_on<E...>()` retries only those
// types, `retry_on_error_code(pred)` a std::system_error (or boost::system::system_error)
// whose code matches. Results: run(f, pred) retries while pred(result) is true; a
// function returning std::error_code / boost::system::error_code is retried while the
// code is set (or while retry_on_error_code(pred) says so, passed as pred; a set code it
// declines ends the call as not_retryable). When the attempts run out, run() rethrows
// the last exception, or returns the last (failing) result.
//
// With circuit_breaker — retry outside, breaker inside:
//   retry.run([&] { return breaker.call([&] { return payment.charge(order); }); });
// Every attempt asks the breaker; once it opens, the attempt fails fast with
// circuit_open_error, which retry does not retry: waiting a backoff delay and asking an
// open breaker again would only burn the shared budget (and the caller's time) for a
// rejection known in advance. The breaker, not the retry, decides when to probe again.
// (The other nesting — a breaker around the whole retry — would count one failure per
// exhausted retry sequence and hide the dependency's real failure rate.)
//
// The retry budget (resilience/retry_budget.hpp, included; retry_budget_config) follows
// Finagle's RetryBudget: each call deposits `ratio` of a token (0.2 by default, Finagle's
// and Envoy's 20 %), each retry withdraws one whole token, deposits and withdrawals expire
// after `window` (10 s), and a reserve of `min_retries_per_second` × window tokens (10/s,
// Finagle's floor) lets low-traffic clients retry at all. At any moment, the retries
// counted in the window (kept in 10 buckets, so the last 9-10 s) are at most ratio × the
// requests counted in it + the reserve; over a long outage that comes to about ratio ×
// requests + min_retries_per_second × its duration. (tests/resilience/retry_test.cpp: 1,000
// callers into a dead dependency, 4 attempts allowed: 1.21 × the requests reach it,
// not 4 ×.) A retry the budget refuses ends the call (retry_stop::budget_exhausted).
//
// Defaults: max_attempts 3 (AWS SDKs' standard retry mode: three attempts); backoff
// full_jitter_backoff{100 ms, 10 s} (AWS's recommended jitter; base and cap are
// outgrow's choice, see core/backoff.hpp); the budget as above; the RNG seeded from
// std::random_device — a fixed default seed would make a fleet of processes that failed
// together retry in lockstep; set `seed` for reproducible delays.
//
// Clock: coarse_steady_clock by default (CLOCK_MONOTONIC_COARSE on Linux, about 5 ns a
// read, 1-4 ms resolution: plenty for the budget's 1 s buckets and for max_elapsed, and
// the budget reads it on every call); manual_clock for simulations and tests.
//
// Sleeping: run() waits through a Sleeper policy: std::this_thread::sleep_for by
// default, or — when the Clock can be advanced, as manual_clock — by advancing the
// clock, so a simulation or test never sleeps. async_run() never blocks its executor: it
// waits on a Timer (boost::asio::steady_timer by default; any type constructible from
// the executor with expires_after(d) and async_wait(handler) works, e.g. a simulated
// timer in tests — see `retry_timer`). Keep Clock and Timer on one time line.
//
// Thread-safety: run/try_run/async_run may be called concurrently from any threads on
// one instance; the backoff RNG is shared behind a mutex taken only to draw a delay;
// the Sleeper must then be thread-safe too (the provided ones are). retry_budget: every
// member from any thread; lock-free except one short mutex per bucket boundary
// (window / 10). Metrics are relaxed counters (each exact, not one atomic cut).
// Complexity: a call that succeeds first time costs two relaxed atomic adds (plus the
// budget's clock read and two atomic adds when a budget is set); no allocation on the
// synchronous path. async_run allocates one operation (holding f, the completion and
// the timer) per call. A failed attempt rethrows the exception once or twice to
// classify it (microseconds). The retry object (and its budget) must outlive every call
// and pending async operation.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/core/sleeper.hpp>
#include <outgrow/resilience/errors.hpp>
#include <outgrow/resilience/retry_budget.hpp>

namespace outgrow {

// ---------------------------------------------------------------------------------
// what to retry
// ---------------------------------------------------------------------------------

namespace detail {

inline bool is_circuit_open(const std::exception_ptr& e) noexcept {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const circuit_open_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

template <class First, class... Rest>
bool exception_is(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const First&) {
    return true;
  } catch (...) {
  }
  if constexpr (sizeof...(Rest) > 0) {
    return exception_is<Rest...>(e);
  } else {
    return false;
  }
}

/// retry_config::retry_on when left empty: everything but a circuit breaker's rejection.
inline bool retry_by_default(const std::exception_ptr& e) noexcept {
  return e && !is_circuit_open(e);
}

template <class R>
inline constexpr bool is_error_code_v =
    std::is_same_v<R, std::error_code> || std::is_same_v<R, boost::system::error_code>;

/// run(f) without a result predicate: a returned error code that is set is a failure;
/// any other result is a success.
struct default_result_predicate {
  template <class R>
  bool operator()(const R& result) const noexcept {
    if constexpr (is_error_code_v<R>) {
      return static_cast<bool>(result);
    } else {
      return false;
    }
  }
};

}  // namespace detail

/// Retries exceptions of the listed types (and types derived from them) — never
/// circuit_open_error, even when a listed base class (std::runtime_error,
/// std::exception) would match it.
template <class... E>
struct retry_on_exceptions {
  bool operator()(const std::exception_ptr& e) const {
    if (!e || detail::is_circuit_open(e)) return false;
    return detail::exception_is<E...>(e);
  }
};

/// `.retry_on = outgrow::retry_on<std::system_error, my_timeout>()`
template <class... E>
[[nodiscard]] retry_on_exceptions<E...> retry_on() {
  static_assert(sizeof...(E) > 0, "retry_on<E...>() needs at least one exception type");
  return {};
}

/// Retries by error code: a thrown std::system_error or boost::system::system_error
/// whose code satisfies pred (use as retry_config::retry_on), and a returned
/// std::error_code or boost::system::error_code that does (use as run's result
/// predicate). Boost codes are passed to pred as std::error_code.
template <class Pred>
class retry_on_error_code_t {
 public:
  explicit retry_on_error_code_t(Pred pred) : pred_(std::move(pred)) {}

  bool operator()(const std::exception_ptr& e) const {
    if (!e) return false;
    try {
      std::rethrow_exception(e);
    } catch (const std::system_error& error) {
      return static_cast<bool>(std::invoke(pred_, error.code()));
    } catch (const boost::system::system_error& error) {
      return static_cast<bool>(std::invoke(pred_, std::error_code(error.code())));
    } catch (...) {
      return false;
    }
  }
  bool operator()(const std::error_code& code) const {
    return code && static_cast<bool>(std::invoke(pred_, code));
  }
  bool operator()(const boost::system::error_code& code) const {
    return code && static_cast<bool>(std::invoke(pred_, std::error_code(code)));
  }

 private:
  Pred pred_;
};

/// `.retry_on = outgrow::retry_on_error_code([](std::error_code ec) {
///     return ec == std::errc::timed_out || ec == std::errc::connection_refused; })`
template <class Pred>
requires std::predicate<const Pred&, const std::error_code&>
[[nodiscard]] retry_on_error_code_t<std::decay_t<Pred>> retry_on_error_code(Pred&& pred) {
  return retry_on_error_code_t<std::decay_t<Pred>>(std::forward<Pred>(pred));
}

// ---------------------------------------------------------------------------------
// configuration, results, metrics
// ---------------------------------------------------------------------------------

struct retry_config {
  /// Attempts in total, the first included: 3 (AWS SDKs' standard retry mode).
  /// [1, 1000]
  std::uint32_t max_attempts = 3;
  /// Give up instead of starting a retry later than this after the call began
  /// (0 = no limit). Read from the retry's Clock. [0s, 24h]
  std::chrono::nanoseconds max_elapsed{0};
  /// Seed of the instance's backoff RNG (std::mt19937_64): empty = random per instance
  /// (core/seed.hpp), set = reproducible delays.
  std::optional<std::uint64_t> seed{};
  /// Which exceptions to retry; empty = every exception but circuit_open_error.
  /// See retry_on<E...>() and retry_on_error_code(pred).
  std::function<bool(const std::exception_ptr&)> retry_on{};
};

/// Why a call ended.
enum class retry_stop : std::uint8_t {
  success = 0,             ///< an attempt returned a result that was accepted
  not_retryable = 1,       ///< the error or result is not one to retry (circuit open...)
  attempts_exhausted = 2,  ///< max_attempts attempts failed
  deadline_exceeded = 3,   ///< the next retry would have started after max_elapsed
  budget_exhausted = 4,    ///< the retry budget refused the next retry
  aborted = 5,             ///< async_run only: the wait was cancelled (timer error)
  call_deadline = 6,       ///< try_run_until: the next retry would end after its deadline
};

[[nodiscard]] constexpr std::string_view to_string(retry_stop s) noexcept {
  switch (s) {
    case retry_stop::success:
      return "success";
    case retry_stop::not_retryable:
      return "not_retryable";
    case retry_stop::attempts_exhausted:
      return "attempts_exhausted";
    case retry_stop::deadline_exceeded:
      return "deadline_exceeded";
    case retry_stop::budget_exhausted:
      return "budget_exhausted";
    case retry_stop::aborted:
      return "aborted";
    case retry_stop::call_deadline:
      return "call_deadline";
  }
  return "unknown";
}

namespace detail {
struct retry_outcome {
  /// The last attempt's exception (null when it returned).
  std::exception_ptr error{};
  /// Attempts made (1 = no retry).
  std::uint32_t attempts = 0;
  retry_stop stop = retry_stop::success;
  /// Sum of the backoff delays waited between attempts.
  std::chrono::nanoseconds waited{0};

  [[nodiscard]] bool ok() const noexcept { return stop == retry_stop::success; }
};
}  // namespace detail

/// What try_run() returns and async_run() completes with.
template <class R>
struct retry_result : detail::retry_outcome {
  /// The last attempt's result: the success, or the last failing result when a result
  /// predicate kept rejecting it. Empty when the last attempt threw.
  std::optional<R> value{};

  /// The value (also a failing one, as run() returns it), or rethrows the error.
  /// Throws: the last attempt's exception, if it threw.
  R get() && {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct retry_result<void> : detail::retry_outcome {
  void get() && {
    if (error) std::rethrow_exception(error);
  }
};

/// A retry's counters. At rest, attempts = calls + retries and
/// calls = successes + failures, failures = not_retryable + gave_up + budget_exhausted.
struct retry_metrics {
  static constexpr std::string_view metrics_name = "retry_metrics";
  std::uint64_t calls = 0;
  std::uint64_t attempts = 0;
  std::uint64_t retries = 0;
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;
  std::uint64_t not_retryable = 0;     ///< ended on an error/result not to retry
  std::uint64_t gave_up = 0;           ///< attempts or max_elapsed exhausted, or aborted
  std::uint64_t budget_exhausted = 0;  ///< the budget refused a retry

  /// Attempts per call: the load the retries put on the dependency (1 = none).
  [[nodiscard]] double amplification() const noexcept { return ratio(attempts, calls); }

  template <class F>
  void for_each_metric(F&& f) const {
    f("calls", calls);
    f("attempts", attempts);
    f("retries", retries);
    f("successes", successes);
    f("failures", failures);
    f("not_retryable", not_retryable);
    f("gave_up", gave_up);
    f("budget_exhausted", budget_exhausted);
    f("amplification", amplification());
  }
};

// ---------------------------------------------------------------------------------
// sleeping and timers
// ---------------------------------------------------------------------------------

/// How run() waits: `s.sleep(clock, d)`, with the retry's clock (core/sleeper.hpp:
/// thread_sleeper, clock_advancing_sleeper, default_sleeper<Clock>).
template <class S, class Clock>
concept retry_sleeper = sleeper<S, Clock>;

namespace detail {
struct timer_wait_probe {
  void operator()(const boost::system::error_code&) const {}
};
template <class T>
concept waitable_timer =
    requires(T& t, timer_wait_probe handler) { t.async_wait(handler); };
template <class T>
concept timer_takes_own_duration =
    requires(T& t) { t.expires_after(typename T::duration{}); };
template <class T>
concept timer_takes_nanoseconds =
    requires(T& t, std::chrono::nanoseconds d) { t.expires_after(d); };
}  // namespace detail

/// What async_run waits on: constructible from the executor, `expires_after(d)` (d in
/// the timer's own duration type, or nanoseconds) and `async_wait(handler)` calling
/// handler(boost::system::error_code) once the time has come (an error = cancelled).
/// boost::asio::steady_timer (the default) and any basic_waitable_timer conform.
template <class T, class Executor>
concept retry_timer =
    std::constructible_from<T, const Executor&> && detail::waitable_timer<T> &&
    (detail::timer_takes_own_duration<T> || detail::timer_takes_nanoseconds<T>);

// ---------------------------------------------------------------------------------
// retry
// ---------------------------------------------------------------------------------

/// A function retry can call: f() with no arguments, returning a value or void.
template <class F>
concept retry_callable = std::invocable<F&>;

/// A result predicate for F: pred(const R&) converts to bool; true = retry this result.
template <class P, class F>
concept retry_result_predicate =
    retry_callable<F> && requires(P& pred, const std::invoke_result_t<F&>& result) {
      static_cast<bool>(std::invoke(pred, result));
    };

/// An async_run completion for F: called once with a retry_result<R> rvalue.
template <class C, class F>
concept retry_completion =
    retry_callable<F> && requires(C& completion, retry_result<std::invoke_result_t<F&>> r) {
      std::invoke(completion, std::move(r));
    };

template <backoff_policy Backoff = full_jitter_backoff,
          clock_source Clock = coarse_steady_clock,
          retry_sleeper<Clock> Sleeper = default_sleeper<Clock>>
class retry {
  template <class F>
  using result_of = std::invoke_result_t<F&>;

 public:
  using backoff_type = Backoff;
  using clock_type = Clock;
  using budget_type = retry_budget<Clock>;

  /// Without a budget.
  /// Throws: config_error if max_attempts is not in [1, 1000] or max_elapsed not in
  /// [0s, 24h].
  explicit retry(retry_config config = {}, Backoff backoff = {}, Clock clock = {},
                 Sleeper sleeper = {})
      : config_(validated(std::move(config))),
        backoff_(std::move(backoff)),
        clock_(std::move(clock)),
        sleeper_(std::move(sleeper)),
        rng_(resolve_seed(config_.seed)) {}

  /// With a shared budget (which must outlive this retry); the retry reads the
  /// budget's clock.
  retry(retry_config config, Backoff backoff, budget_type& budget, Sleeper sleeper = {})
      : retry(std::move(config), std::move(backoff), budget.clock(), std::move(sleeper)) {
    budget_ = &budget;
  }

  retry(const retry&) = delete;
  retry& operator=(const retry&) = delete;

  /// Calls f() until it succeeds or the retry gives up; returns its result, or
  /// rethrows the last exception, or returns the last failing result (a set error
  /// code).
  /// Throws: the last attempt's exception when the retry gives up on one (also one not
  /// to retry, e.g. circuit_open_error).
  template <retry_callable F>
  result_of<F> run(F&& f) {
    return try_run(f).get();
  }

  /// As run(f), retrying while `retry_if(result)` is true; when the attempts run out,
  /// returns the last (failing) result.
  /// Throws: as run(f).
  template <retry_callable F, retry_result_predicate<F> P>
  result_of<F> run(F&& f, P&& retry_if) {
    return try_run(f, retry_if).get();
  }

  /// As run(f), but reports instead of throwing f's exceptions: the result (or last
  /// error), attempts made and why the call ended.
  template <retry_callable F>
  retry_result<result_of<F>> try_run(F&& f) {
    detail::default_result_predicate pred;
    return execute(f, pred);
  }

  template <retry_callable F, retry_result_predicate<F> P>
  retry_result<result_of<F>> try_run(F&& f, P&& retry_if) {
    return execute(f, retry_if);
  }

  /// As try_run(f, retry_if), within a per-call deadline on this retry's clock: a retry
  /// whose backoff would end after `deadline` is not waited for — the call ends with
  /// retry_stop::call_deadline (as max_elapsed does for the configured budget). The
  /// first attempt always runs; the caller checks the deadline before calling.
  template <retry_callable F, retry_result_predicate<F> P>
  retry_result<result_of<F>> try_run_until(F&& f, P&& retry_if,
                                           typename Clock::time_point deadline) {
    return execute(f, retry_if, deadline);
  }

  /// Runs f() on `executor`, waiting between attempts on a Timer (never blocking the
  /// executor), then calls completion(retry_result<R>) on the executor. Returns at once;
  /// f never runs inside async_run itself.
  template <class Timer = boost::asio::steady_timer, class Executor, retry_callable F,
            retry_completion<F> Completion>
  void async_run(const Executor& executor, F f, Completion completion) {
    start_async<Timer>(executor, std::move(f), detail::default_result_predicate{},
                       std::move(completion));
  }

  /// As above, retrying while retry_if(result) is true.
  template <class Timer = boost::asio::steady_timer, class Executor, retry_callable F,
            retry_result_predicate<F> P, retry_completion<F> Completion>
  void async_run(const Executor& executor, F f, P retry_if, Completion completion) {
    start_async<Timer>(executor, std::move(f), std::move(retry_if), std::move(completion));
  }

  [[nodiscard]] retry_metrics metrics() const noexcept {
    retry_metrics m;
    m.calls = calls_.load();
    m.attempts = attempts_.load();
    m.retries = retries_.load();
    m.successes = successes_.load();
    m.failures = failures_.load();
    m.not_retryable = not_retryable_.load();
    m.gave_up = gave_up_.load();
    m.budget_exhausted = budget_exhausted_.load();
    return m;
  }

  [[nodiscard]] const retry_config& config() const noexcept { return config_; }
  [[nodiscard]] const Backoff& backoff() const noexcept { return backoff_; }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }
  /// The shared budget, or nullptr.
  [[nodiscard]] budget_type* budget() const noexcept { return budget_; }

 private:
  using time_point = typename Clock::time_point;

  template <class R>
  struct call_state {
    retry_result<R> out{};
    std::chrono::nanoseconds previous{0};
    time_point start{};
    std::optional<time_point> deadline{};  ///< try_run_until's
  };

  template <class Timer, class Executor, class F, class P, class Completion>
  class async_operation : public std::enable_shared_from_this<
                              async_operation<Timer, Executor, F, P, Completion>> {
   public:
    async_operation(retry& owner, const Executor& executor, F f, P pred,
                    Completion completion)
        : owner_(owner),
          executor_(executor),
          f_(std::move(f)),
          pred_(std::move(pred)),
          completion_(std::move(completion)),
          timer_(executor),
          state_(owner.template begin<result_of<F>>()) {}

    void start() {
      boost::asio::post(executor_, [self = this->shared_from_this()] { self->step(); });
    }

   private:
    void step() {
      if (const auto delay = owner_.attempt_once(f_, pred_, state_)) {
        if constexpr (detail::timer_takes_own_duration<Timer>) {
          timer_.expires_after(std::chrono::ceil<typename Timer::duration>(*delay));
        } else {
          timer_.expires_after(*delay);
        }
        timer_.async_wait(
            [self = this->shared_from_this()](const boost::system::error_code& error) {
              if (error) {
                self->owner_.finish(self->state_.out, retry_stop::aborted);
                self->complete();
              } else {
                self->step();
              }
            });
      } else {
        complete();
      }
    }

    void complete() { std::invoke(completion_, std::move(state_.out)); }

    retry& owner_;
    Executor executor_;
    F f_;
    P pred_;
    Completion completion_;
    Timer timer_;
    call_state<result_of<F>> state_;
  };

  static retry_config validated(retry_config c) {
    constexpr std::string_view name = "retry";
    require_in_range(name, "max_attempts", c.max_attempts, 1U, 1000U);
    require_in_range(name, "max_elapsed", c.max_elapsed, std::chrono::nanoseconds{0},
                     std::chrono::nanoseconds{std::chrono::hours{24}});
    return c;
  }

  template <class Timer, class Executor, class F, class P, class Completion>
  void start_async(const Executor& executor, F f, P pred, Completion completion) {
    static_assert(retry_timer<Timer, Executor>,
                  "retry::async_run: Timer must be constructible from the executor and "
                  "have expires_after(d) and async_wait(handler) (see retry_timer)");
    static_assert(!std::is_reference_v<result_of<F>>,
                  "retry: f must return by value (or void)");
    auto op = std::make_shared<async_operation<Timer, Executor, F, P, Completion>>(
        *this, executor, std::move(f), std::move(pred), std::move(completion));
    op->start();
  }

  template <class F, class P>
  retry_result<result_of<F>> execute(F& f, P& pred,
                                     std::optional<time_point> deadline = std::nullopt) {
    static_assert(!std::is_reference_v<result_of<F>>,
                  "retry: f must return by value (or void)");
    auto state = begin<result_of<F>>();
    state.deadline = deadline;
    while (const auto delay = attempt_once(f, pred, state)) {
      sleeper_.sleep(clock_, *delay);
    }
    return std::move(state.out);
  }

  template <class R>
  call_state<R> begin() {
    calls_.add();
    if (budget_ != nullptr) budget_->record_request();
    call_state<R> state;
    if (config_.max_elapsed.count() > 0) state.start = clock_.now();
    return state;
  }

  /// Makes the next attempt. Returns the delay to wait before the one after it, or
  /// nullopt when the call is over (state.out.stop says why; counters updated).
  template <class F, class P, class R>
  std::optional<std::chrono::nanoseconds> attempt_once(F& f, P& pred,
                                                       call_state<R>& state) {
    retry_result<R>& out = state.out;
    const std::uint32_t n = ++out.attempts;
    attempts_.add();
    if (n > 1) retries_.add();
    out.error = nullptr;
    if constexpr (std::is_void_v<R>) {
      try {
        std::invoke(f);
        return finish(out, retry_stop::success);
      } catch (...) {
        out.error = std::current_exception();
      }
    } else {
      out.value.reset();
      try {
        out.value.emplace(std::invoke(f));
      } catch (...) {
        out.error = std::current_exception();
      }
      if (!out.error && !static_cast<bool>(std::invoke(pred, std::as_const(*out.value)))) {
        if constexpr (detail::is_error_code_v<R>) {
          // A set error code that is not worth retrying is still a failure.
          if (*out.value) return finish(out, retry_stop::not_retryable);
        }
        return finish(out, retry_stop::success);
      }
    }
    if (out.error && !retryable(out.error)) return finish(out, retry_stop::not_retryable);

    // A failure worth retrying: may we?
    if (n >= config_.max_attempts) return finish(out, retry_stop::attempts_exhausted);
    const std::chrono::nanoseconds delay = next_delay(n, state.previous);
    if (config_.max_elapsed.count() > 0 &&
        (clock_.now() - state.start) + delay > config_.max_elapsed) {
      return finish(out, retry_stop::deadline_exceeded);
    }
    if (state.deadline) {
      const time_point now = clock_.now();  // deadline > now: the difference fits
      if (*state.deadline <= now || delay > *state.deadline - now) {
        return finish(out, retry_stop::call_deadline);
      }
    }
    if (budget_ != nullptr && !budget_->try_acquire_retry()) {
      return finish(out, retry_stop::budget_exhausted);
    }
    state.previous = delay;
    out.waited += delay;
    return delay;
  }

  template <class R>
  std::nullopt_t finish(retry_result<R>& out, retry_stop stop) noexcept {
    out.stop = stop;
    switch (stop) {
      case retry_stop::success:
        successes_.add();
        break;
      case retry_stop::not_retryable:
        failures_.add();
        not_retryable_.add();
        break;
      case retry_stop::budget_exhausted:
        failures_.add();
        budget_exhausted_.add();
        break;
      case retry_stop::attempts_exhausted:
      case retry_stop::deadline_exceeded:
      case retry_stop::call_deadline:
      case retry_stop::aborted:
        failures_.add();
        gave_up_.add();
        break;
    }
    return std::nullopt;
  }

  bool retryable(const std::exception_ptr& error) const {
    return config_.retry_on ? config_.retry_on(error) : detail::retry_by_default(error);
  }

  std::chrono::nanoseconds next_delay(std::uint32_t n, std::chrono::nanoseconds previous) {
    std::lock_guard lock(rng_mutex_);
    return backoff_.delay(n, previous, rng_);
  }

  retry_config config_;
  Backoff backoff_;
  Clock clock_;
  Sleeper sleeper_;
  budget_type* budget_ = nullptr;
  std::mutex rng_mutex_;
  std::mt19937_64 rng_;
  counter calls_;
  counter attempts_;
  counter retries_;
  counter successes_;
  counter failures_;
  counter not_retryable_;
  counter gave_up_;
  counter budget_exhausted_;
};

}  // namespace outgrow

template <>
struct fmt::formatter<outgrow::retry_stop> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(outgrow::retry_stop s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(outgrow::to_string(s), ctx);
  }
};
