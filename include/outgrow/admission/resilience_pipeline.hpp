// outgrow/admission/resilience_pipeline.hpp — strategies composed in a declared order into
// one typed call, with a deadline that travels through them.
//
// What: Polly v8's resilience pipeline, checked at compile time. Each stage wraps the
// stages after it; a call runs through them from the outside in, and each may refuse it
// with a typed reason instead of running the rest:
//
//   outgrow::resilience_pipeline pipeline{
//       outgrow::fallback_stage{[](const auto&) { return reply::cached(); }},
//       outgrow::rate_limit_stage{limiter},          // too fast   -> rate_limited
//       outgrow::bulkhead_stage{bulkhead},           // too many   -> bulkhead_full
//       outgrow::concurrency_limit_stage{adaptive},  // over limit -> concurrency_limited
//       outgrow::timeout_stage{500ms},               // whole call -> timed_out
//       outgrow::retry_stage{retry},                 // re-runs what follows on failure
//       outgrow::breaker_stage{breaker}};            // open       -> circuit_open
//   outgrow::pipeline_result<reply> r = pipeline.execute([&] { return backend.get(); });
//   if (r) use(*r.value);
//   else if (r.rejected_by == outgrow::pipeline_rejection::rate_limited)
//     wait(r.retry_after);
//
// When: a call to a dependency needs more than one resilience strategy and you want
// their order stated once, refusals typed, and no allocation or exception on success.
//
// Trade-offs: the order is fixed at compile time (each pipeline is its own type; no
// stages added at run time); stages are synchronous (no hedging stage, see below); a
// deadline is cooperative (see "Deadlines").
//
// Stages hold references to primitives you own (their metrics stay where they are), so
// one limiter or breaker may serve several pipelines. The call's exception is caught
// once, at the centre, and travels outwards as `pipeline_rejection::failed` with its
// exception_ptr: stages see outcomes, not exceptions (the success path throws nothing).
// Outcomes reported on the way out: the breaker records success / failure (a refusal by
// a stage inside it is ignored), the concurrency limiter success / dropped, the retry
// retries only `failed` calls whose exception its retry_config::retry_on accepts (by
// default all but circuit_open_error; the others end the call at once, counted as
// not_retryable) and per-attempt timeouts (never a limit or an open breaker —
// waiting and asking again would burn its budget for a refusal known in advance). A
// call that ran and came back after its deadline is a failure to the breaker and a drop
// to the concurrency limiter.
//
// Deadlines: `execute(ctx, f)` runs the call under a call_context (call_context.hpp):
//
//   auto ctx = outgrow::call_context<>::with_timeout(200ms);
//   auto r = pipeline.execute(ctx, [&](const auto& ctx) {
//     return backend.get(key, ctx.remaining());    // f may read the time left
//   });
//
// f takes the context (the innermost, narrowest one) if it can, or nothing. Every stage
// respects the deadline: the pipeline does not start f once it has passed; retry_stage
// does not start an attempt after it; bulkhead_stage{b, true} waits for a permit at most
// until it; timeout_stage{d} narrows it to d from when the call reaches it, for what is
// inside. A call that returns after its deadline comes back as `timed_out` (its value
// dropped, a late exception kept in error). This is cooperative, as Polly's timeout is
// for work that cannot be cancelled: a synchronous call cannot be preempted, so f runs
// to its end unless it reads the context and stops early. The retry does not wait a
// backoff that would end after the deadline (retry::try_run_until): the call ends
// there as timed_out, with the last attempt's exception. execute(f)
// calls f() with no deadline: stages see an unbounded_context, whose checks fold away
// at compile time, until a timeout_stage sets one.
//
// Order: any order compiles, except ones the library knows are wrong (a static_assert
// says which): a retry_stage must be outside (before) a breaker_stage (see
// resilience/retry.hpp "With circuit_breaker"), and a fallback_stage outside every
// retry_stage, breaker_stage and concurrency_limit_stage (inside them it would turn
// failures into values that count as successes). A fallback_stage is usually outermost.
// Where the timeout goes decides what it bounds: outside a retry_stage, the whole call
// with its retries; inside, each attempt (a timed-out attempt is then retried while the
// retry's own deadline allows).
//
// Hedging is not a stage. Hedging means starting a second attempt while the first is
// still running; in a synchronous pipeline the first attempt occupies the calling
// thread, so the second would have to run elsewhere, and the loser would still be
// running — with f, the context and the inner stages' permits borrowed from a call that
// has already returned — after the winner's result was handed back. (Waiting for the
// loser instead would give back all the latency hedging won.) Hedge inside f instead:
// f starts hedged attempts with async_hedged (hedging.hpp) on an io_context it drives
// until the first answer, cancels the losers through their hedge_cancellation, and can
// stop at ctx.remaining(); examples/hedging.cpp shows it behind a timeout_stage.
//
// A stage is any type with `template <class Next> auto run(Next&& next)` returning what
// next() returns (a pipeline_result<T>), or, to read or narrow the deadline,
// `template <class Ctx, class Next> auto run(const Ctx& ctx, Next&& next)`, calling
// next() or next(narrower_ctx). The smallest conforming stage passes through:
//
//   struct pass_through { template <class Next> auto run(Next&& next) { return next(); } };
//
// Cost: the stages are inlined into one function; the success path allocates nothing.
// Rate limit + bulkhead + retry + breaker around a 1.9 ns call: 48.0 ns CPU (46.1 ns
// over the call), 0 allocations (benchmarks/admission_bench.cpp, BM_pipeline_success
// beside BM_raw_call, Release, 2026-12-02, quiet machine, median of 3). A call with a
// deadline adds a clock read before and after f and one per timeout_stage: not yet
// measured.
//
// Thread-safety: a pipeline is as thread-safe as its stages' primitives (all of
// outgrow's are); execute() may run concurrently. Complexity: O(stages) per call, plus
// one clock read before and after f when the call has a deadline.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include <outgrow/admission/call_context.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/deadline.hpp>
#include <outgrow/core/error.hpp>

namespace outgrow {

/// Why a pipeline did not return a value.
enum class pipeline_rejection : std::uint8_t {
  none,                 ///< it did: the value is set
  rate_limited,         ///< a rate_limit_stage refused (see retry_after)
  bulkhead_full,        ///< a bulkhead_stage had no permit (in time)
  concurrency_limited,  ///< a concurrency_limit_stage was at its limit
  circuit_open,         ///< a breaker_stage's breaker refused
  failed,               ///< the call threw (see error), after any retries
  timed_out,            ///< the deadline passed: the call came back late, or was not
                        ///< started (again) because it had passed (attempts tells which)
};

[[nodiscard]] constexpr std::string_view to_string(pipeline_rejection r) noexcept {
  switch (r) {
    case pipeline_rejection::none:
      return "none";
    case pipeline_rejection::rate_limited:
      return "rate_limited";
    case pipeline_rejection::bulkhead_full:
      return "bulkhead_full";
    case pipeline_rejection::concurrency_limited:
      return "concurrency_limited";
    case pipeline_rejection::circuit_open:
      return "circuit_open";
    case pipeline_rejection::failed:
      return "failed";
    case pipeline_rejection::timed_out:
      return "timed_out";
  }
  return "unknown";
}

/// A pipeline call's outcome: a value, or why not.
template <class T>
struct pipeline_result {
  std::optional<T> value{};
  pipeline_rejection rejected_by = pipeline_rejection::none;
  /// rate_limited: when the same call would be admitted.
  std::chrono::nanoseconds retry_after{0};
  /// failed: the call's last exception (timed_out: the last one, if any attempt threw).
  std::exception_ptr error{};
  /// Attempts the call made (0 when refused before it ran).
  std::uint32_t attempts = 0;

  explicit operator bool() const noexcept { return value.has_value(); }

  [[nodiscard]] static pipeline_result refused(pipeline_rejection why,
                                               std::chrono::nanoseconds after = {}) {
    pipeline_result r;
    r.rejected_by = why;
    r.retry_after = after;
    return r;
  }
};

// ---- stages ---------------------------------------------------------------------------

namespace detail {
/// True when a stage on Clock may compare its time with Ctx's deadline: the context has
/// no deadline, or reads the same kind of clock (two clock types with one time_point
/// type, as steady_clock_source and manual_clock, are two time lines).
template <class Ctx, class Clock>
inline constexpr bool same_time_line_v = std::is_same_v<Ctx, unbounded_context> ||
                                         std::is_same_v<typename Ctx::clock_type, Clock>;

/// A value -> ok(); the call failed or ran past its deadline -> failed(); refused
/// further in (or not started: past the deadline) -> ignored().
template <class Result, class Ok, class Failed, class Ignored>
void report_outcome(const Result& r, Ok ok, Failed failed, Ignored ignored) {
  if (r.value) {
    ok();
  } else if (r.rejected_by == pipeline_rejection::failed ||
             (r.rejected_by == pipeline_rejection::timed_out && r.attempts > 0)) {
    failed();
  } else {
    ignored();
  }
}
}  // namespace detail

/// Refuses calls the rate limiter does not admit now (rate_limiter,
/// sliding_window_limiter: anything whose try_acquire() returns a rate_limit_result).
template <class Limiter>
struct rate_limit_stage {
  Limiter& limiter;
  template <class Next>
  auto run(Next&& next) {
    using result = std::invoke_result_t<Next&>;
    const auto d = limiter.try_acquire();
    if (!d) return result::refused(pipeline_rejection::rate_limited, d.retry_after);
    return next();
  }
};
// The stages are aggregates; their deduction guides spell out what C++20 aggregate
// deduction gives, for compilers without it (clang before 17).
template <class Limiter>
rate_limit_stage(Limiter&) -> rate_limit_stage<Limiter>;

/// Holds a bulkhead permit around the rest of the call. wait_for_permit: when none is
/// free, wait in the bulkhead's line (bulkhead_config::max_waiting) until the call's
/// deadline — with no deadline, until a permit frees — instead of refusing at once.
template <class Bulkhead>
struct bulkhead_stage {
  Bulkhead& bulkhead;
  bool wait_for_permit = false;
  template <class Ctx, class Next>
  auto run(const Ctx& ctx, Next&& next) {
    if constexpr (requires { typename Bulkhead::clock_type; }) {
      static_assert(detail::same_time_line_v<Ctx, typename Bulkhead::clock_type>,
                    "bulkhead_stage: the bulkhead and the call_context must use one clock");
    }
    using result = std::invoke_result_t<Next&>;
    auto permit =
        wait_for_permit ? bulkhead.acquire(ctx.deadline()) : bulkhead.try_acquire();
    if (!permit) return result::refused(pipeline_rejection::bulkhead_full);
    return next();
  }
};
template <class Bulkhead>
bulkhead_stage(Bulkhead&) -> bulkhead_stage<Bulkhead>;
template <class Bulkhead>
bulkhead_stage(Bulkhead&, bool) -> bulkhead_stage<Bulkhead>;

/// Holds a concurrency_limiter permit; reports success, dropped (the call failed or
/// came back late) or ignore (refused further in).
template <class Limiter>
struct concurrency_limit_stage {
  Limiter& limiter;
  template <class Next>
  auto run(Next&& next) {
    using result = std::invoke_result_t<Next&>;
    auto permit = limiter.try_acquire();
    if (!permit) return result::refused(pipeline_rejection::concurrency_limited);
    result r = next();
    detail::report_outcome(
        r, [&] { permit->success(); }, [&] { permit->dropped(); },
        [&] { permit->ignore(); });
    return r;
  }
};
template <class Limiter>
concurrency_limit_stage(Limiter&) -> concurrency_limit_stage<Limiter>;

/// Asks a circuit_breaker; records success, failure (also a late call), or ignore
/// (refused further in).
template <class Breaker>
struct breaker_stage {
  Breaker& breaker;
  template <class Next>
  auto run(Next&& next) {
    using result = std::invoke_result_t<Next&>;
    auto permit = breaker.try_acquire();
    if (!permit) return result::refused(pipeline_rejection::circuit_open);
    result r = next();
    detail::report_outcome(
        r, [&] { permit.success(); }, [&] { permit.failure(); }, [&] { permit.ignore(); });
    return r;
  }
};
template <class Breaker>
breaker_stage(Breaker&) -> breaker_stage<Breaker>;

/// Re-runs the stages after it while the call fails (pipeline_rejection::failed) or an
/// attempt timed out inside it, as the retry (its attempts, backoff, budget and
/// Sleeper) allows — and never starts an attempt after the call's deadline, nor waits a
/// backoff that would end after it: the call then ends as timed_out, with the last
/// attempt's exception in error.
namespace detail {
/// `left` from now on the retry's own clock, saturating.
template <class Retry>
auto retry_deadline(const Retry& retry, std::chrono::nanoseconds left) {
  return saturating_add(retry.clock().now(), left);
}
}  // namespace detail

template <class Retry>
struct retry_stage {
  Retry& retry;
  template <class Ctx, class Next>
  auto run(const Ctx& ctx, Next&& next) {
    using result = std::invoke_result_t<Next&>;
    // Past the deadline already: not a call to the retry (no attempt, no budget).
    if (ctx.expired()) return result::refused(pipeline_rejection::timed_out);
    std::uint32_t attempts = 0;
    std::exception_ptr last_error;
    auto once = [&] {
      if (ctx.expired()) return result::refused(pipeline_rejection::timed_out);
      result r = next();
      attempts += r.attempts;
      if (r.error) last_error = r.error;
      // A failure goes back to the retry as the exception it was: its retry_on decides
      // whether to retry it, and a failure it does not retry counts as not_retryable.
      if (r.rejected_by == pipeline_rejection::failed && r.error) {
        std::rethrow_exception(r.error);
      }
      return r;
    };
    auto retry_if = [&](const result& r) {
      return r.rejected_by == pipeline_rejection::failed ||  // failed without an exception
             (r.rejected_by == pipeline_rejection::timed_out && r.attempts > 0 &&
              !ctx.expired());
    };
    // With a deadline, the retry does not wait a backoff that would end after it.
    auto outcome = ctx.has_deadline()
                       ? retry.try_run_until(once, retry_if,
                                             detail::retry_deadline(retry, ctx.remaining()))
                       : retry.try_run(once, retry_if);
    result r = outcome.value ? std::move(*outcome.value) : result{};
    if (!outcome.value && outcome.error) {  // the last attempt failed (see once)
      r.rejected_by = pipeline_rejection::failed;
      r.error = outcome.error;
    }
    using stop = decltype(outcome.stop);  // retry_stop (resilience/retry.hpp)
    if (outcome.stop == stop::call_deadline) {
      r.value.reset();
      r.rejected_by = pipeline_rejection::timed_out;
    }
    r.attempts = attempts;
    if (r.rejected_by == pipeline_rejection::timed_out && !r.error) r.error = last_error;
    return r;
  }
};
template <class Retry>
retry_stage(Retry&) -> retry_stage<Retry>;

/// Narrows the call's deadline to `timeout` from when the call reaches this stage, for
/// the stages after it and f; a call that comes back after it is `timed_out`.
/// Cooperative: nothing is preempted (see "Deadlines" in the header comment).
template <clock_source Clock = steady_clock_source>
class timeout_stage {
 public:
  /// Throws: config_error if timeout is not > 0.
  explicit timeout_stage(std::chrono::nanoseconds timeout, Clock clock = {})
      : timeout_(validated(timeout)), clock_(std::move(clock)) {}

  template <class Ctx, class Next>
  auto run(const Ctx& outer, Next&& next) {
    static_assert(
        std::is_same_v<typename Ctx::time_point, typename Clock::time_point>,
        "timeout_stage: its Clock and the call_context's must share a time_point");
    static_assert(detail::same_time_line_v<Ctx, Clock>,
                  "timeout_stage: its Clock and the call_context's must be one clock");
    const call_context<Clock> inner(
        clock_, std::min(outer.deadline(), saturating_add(clock_.now(), timeout_)));
    auto r = next(inner);
    if (r.value && inner.expired()) {  // late, in a stage between here and f
      r.value.reset();
      r.rejected_by = pipeline_rejection::timed_out;
    }
    return r;
  }

  [[nodiscard]] std::chrono::nanoseconds timeout() const noexcept { return timeout_; }

 private:
  static std::chrono::nanoseconds validated(std::chrono::nanoseconds timeout) {
    require(timeout > std::chrono::nanoseconds::zero(), "timeout_stage", "timeout", "> 0s",
            timeout);
    return timeout;
  }
  std::chrono::nanoseconds timeout_;
  Clock clock_;
};

/// Replaces a refusal or failure with fallback(result): the pipeline then returns a
/// value (rejected_by stays set, so callers can still see why).
template <class Fallback>
struct fallback_stage {
  Fallback fallback;
  template <class Next>
  auto run(Next&& next) {
    auto r = next();
    if (!r.value) r.value.emplace(std::invoke(fallback, std::as_const(r)));
    return r;
  }
};
template <class F>
fallback_stage(F) -> fallback_stage<F>;

// ---- the pipeline ---------------------------------------------------------------------

namespace detail {
template <class S, template <class...> class Of>
struct is_stage_of : std::false_type {};
template <template <class...> class Of, class... A>
struct is_stage_of<Of<A...>, Of> : std::true_type {};

/// The first order rule `Stages` (outermost first) break.
enum class pipeline_order : std::uint8_t {
  ok,
  retry_inside_breaker,
  fallback_inside_outcome_stage,
};

template <class... Stages>
constexpr pipeline_order check_pipeline_order() {
  bool seen_breaker = false;
  bool seen_outcome_stage = false;  // retry, breaker, concurrency limit
  pipeline_order result = pipeline_order::ok;
  auto visit = [&](bool retry, bool breaker, bool limiter, bool fallback) {
    if (result != pipeline_order::ok) return;
    if (retry && seen_breaker) result = pipeline_order::retry_inside_breaker;
    if (fallback && seen_outcome_stage)
      result = pipeline_order::fallback_inside_outcome_stage;
    seen_breaker = seen_breaker || breaker;
    seen_outcome_stage = seen_outcome_stage || retry || breaker || limiter;
  };
  (visit(is_stage_of<Stages, retry_stage>::value, is_stage_of<Stages, breaker_stage>::value,
         is_stage_of<Stages, concurrency_limit_stage>::value,
         is_stage_of<Stages, fallback_stage>::value),
   ...);
  return result;
}

/// A stage that reads the deadline: has run(ctx, next).
template <class S, class Ctx, class Next>
concept context_stage = requires(S& s, const Ctx& ctx, Next& next) { s.run(ctx, next); };

/// What f returns: f(ctx) if f takes the context, else f().
template <class F, class Ctx>
struct call_result : std::invoke_result<F&> {};
template <class F, class Ctx>
requires std::is_invocable_v<F&, const Ctx&>
struct call_result<F, Ctx> : std::invoke_result<F&, const Ctx&> {};

/// execute(f): f() whatever context it is given.
template <class F>
struct without_context {
  F& f;
  template <class Ctx>
  decltype(auto) operator()(const Ctx& /*ctx*/) {
    return f();
  }
};
}  // namespace detail

template <class... Stages>
class resilience_pipeline {
  static constexpr detail::pipeline_order order = detail::check_pipeline_order<Stages...>();
  static_assert(
      order != detail::pipeline_order::retry_inside_breaker,
      "resilience_pipeline: put retry_stage before (outside) breaker_stage: every "
      "attempt must ask the breaker, and an open breaker must end the retries");
  static_assert(order != detail::pipeline_order::fallback_inside_outcome_stage,
                "resilience_pipeline: put fallback_stage before (outside) retry_stage, "
                "breaker_stage and concurrency_limit_stage: inside them its values would "
                "count as successes and hide the failures they must see");

 public:
  explicit resilience_pipeline(Stages... stages) : stages_(std::move(stages)...) {}

  /// Runs f() through every stage, with no deadline (timeout_stages may set one). f may
  /// return a value or throw; the pipeline never throws what f throws (it comes back as
  /// failed + error).
  template <class F>
  auto execute(F&& f) -> pipeline_result<std::invoke_result_t<F&>> {
    const unbounded_context unbounded;
    detail::without_context<std::remove_reference_t<F>> call{f};
    return at<0, std::invoke_result_t<F&>>(unbounded, call);
  }

  /// Runs f(ctx) — or f() — through every stage under ctx's deadline (see "Deadlines"
  /// in the header comment); f receives the innermost (narrowest) context.
  template <class Clock, class F>
  auto execute(const call_context<Clock>& ctx, F&& f)
      -> pipeline_result<typename detail::call_result<F, call_context<Clock>>::type> {
    return at<0, typename detail::call_result<F, call_context<Clock>>::type>(ctx, f);
  }

  [[nodiscard]] std::tuple<Stages...>& stages() noexcept { return stages_; }

 private:
  template <std::size_t I, class R, class Ctx, class F>
  pipeline_result<R> at(const Ctx& ctx, F& f) {
    if constexpr (I == sizeof...(Stages)) {
      return centre<R>(ctx, f);
    } else {
      auto next = [this, &ctx, &f](const auto&... inner) -> pipeline_result<R> {
        static_assert(sizeof...(inner) <= 1, "a stage calls next() or next(ctx)");
        if constexpr (sizeof...(inner) == 0) {
          return at<I + 1, R>(ctx, f);
        } else {
          return at<I + 1, R>(inner..., f);
        }
      };
      using stage = std::tuple_element_t<I, std::tuple<Stages...>>;
      if constexpr (detail::context_stage<stage, Ctx, decltype(next)>) {
        return std::get<I>(stages_).run(ctx, next);
      } else {
        return std::get<I>(stages_).run(next);
      }
    }
  }

  template <class R, class Ctx, class F>
  static pipeline_result<R> centre(const Ctx& ctx, F& f) {
    pipeline_result<R> r;
    if (ctx.expired()) {  // not started: nobody waits for it any more
      r.rejected_by = pipeline_rejection::timed_out;
      return r;
    }
    r.attempts = 1;
    try {
      if constexpr (std::is_invocable_v<F&, const Ctx&>) {
        r.value.emplace(std::invoke(f, ctx));
      } else {
        r.value.emplace(std::invoke(f));
      }
    } catch (...) {
      r.rejected_by = pipeline_rejection::failed;
      r.error = std::current_exception();
    }
    if (ctx.expired()) {  // came back late: the value is no longer wanted
      r.value.reset();
      r.rejected_by = pipeline_rejection::timed_out;
    }
    return r;
  }

  std::tuple<Stages...> stages_;
};

}  // namespace outgrow
