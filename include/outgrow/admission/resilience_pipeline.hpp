// outgrow/admission/resilience_pipeline.hpp — strategies composed in a declared order into
// one typed call.
//
// What: Polly v8's resilience pipeline, checked at compile time. Each stage wraps the
// stages after it; a call runs through them from the outside in, and each may refuse it
// with a typed reason instead of running the rest:
//
//   outgrow::resilience_pipeline pipeline{
//       outgrow::rate_limit_stage{limiter},        // too fast     -> rate_limited +
//       retry_after outgrow::bulkhead_stage{bulkhead},         // too many     ->
//       bulkhead_full outgrow::concurrency_limit_stage{adaptive},// over limit   ->
//       concurrency_limited outgrow::retry_stage{retry},               // re-runs what
//       follows on failure outgrow::breaker_stage{breaker},           // open         ->
//       circuit_open outgrow::fallback_stage{[](const auto&) { return reply::cached(); }}};
//   outgrow::pipeline_result<reply> r = pipeline.execute([&] { return backend.get(); });
//   if (r) use(*r.value);
//   else if (r.rejected_by == outgrow::pipeline_rejection::rate_limited)
//   wait(r.retry_after);
//
// Stages hold references to primitives you own (their metrics stay where they are), so
// one limiter or breaker may serve several pipelines. The call's exception is caught
// once, at the centre, and travels outwards as `pipeline_rejection::failed` with its
// exception_ptr: stages see outcomes, not exceptions (the success path throws nothing).
// Outcomes reported on the way out: the breaker records success / failure (a refusal by
// a stage inside it is ignored), the concurrency limiter success / dropped, the retry
// retries only `failed` (never a limit or an open breaker — waiting and asking again
// would burn its budget for a refusal known in advance).
//
// Order: any order compiles, except one the library knows is wrong: a retry_stage must
// be outside (before) a breaker_stage (a static_assert says so; see resilience/retry.hpp
// "With circuit_breaker"). A fallback_stage is usually outermost or right after the
// limits.
//
// A stage is any type with `template <class Next> auto run(Next&& next)` returning what
// next() returns (a pipeline_result<T>); the smallest conforming stage passes through:
//
//   struct pass_through { template <class Next> auto run(Next&& next) { return next(); } };
//
// Cost: the stages are inlined into one function; the success path allocates nothing.
// Rate limit + bulkhead + retry + breaker around a 1.9 ns call: 45.3 ns, 0 allocations
// (benchmarks/admission_bench.cpp, BM_pipeline_success beside BM_raw_call, Release,
// 2026-12-02).
//
// Thread-safety: a pipeline is as thread-safe as its stages' primitives (all of
// outgrow's are); execute() may run concurrently. Complexity: O(stages) per call.
#pragma once

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

namespace outgrow {

/// Why a pipeline did not return a value.
enum class pipeline_rejection : std::uint8_t {
  none,                 ///< it did: the value is set
  rate_limited,         ///< a rate_limit_stage refused (see retry_after)
  bulkhead_full,        ///< a bulkhead_stage had no permit
  concurrency_limited,  ///< a concurrency_limit_stage was at its limit
  circuit_open,         ///< a breaker_stage's breaker refused
  failed,               ///< the call threw (see error), after any retries
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
  /// failed: the call's last exception.
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
/// A value -> ok(); the call failed -> failed(); refused further in -> ignored().
template <class Result, class Ok, class Failed, class Ignored>
void report_outcome(const Result& r, Ok ok, Failed failed, Ignored ignored) {
  if (r.value) {
    ok();
  } else if (r.rejected_by == pipeline_rejection::failed) {
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

/// Holds a bulkhead permit around the rest of the call.
template <class Bulkhead>
struct bulkhead_stage {
  Bulkhead& bulkhead;
  template <class Next>
  auto run(Next&& next) {
    using result = std::invoke_result_t<Next&>;
    auto permit = bulkhead.try_acquire();
    if (!permit) return result::refused(pipeline_rejection::bulkhead_full);
    return next();
  }
};

/// Holds a concurrency_limiter permit; reports success, dropped (the call failed) or
/// ignore (refused further in).
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

/// Asks a circuit_breaker; records success, failure, or ignore (refused further in).
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

/// Re-runs the stages after it while the call fails (pipeline_rejection::failed), as
/// the retry (its attempts, backoff, budget and Sleeper) allows.
template <class Retry>
struct retry_stage {
  Retry& retry;
  template <class Next>
  auto run(Next&& next) {
    using result = std::invoke_result_t<Next&>;
    std::uint32_t attempts = 0;
    auto once = [&] {
      result r = next();
      attempts += r.attempts;
      return r;
    };
    auto outcome = retry.try_run(
        once, [](const result& r) { return r.rejected_by == pipeline_rejection::failed; });
    result r = outcome.value ? std::move(*outcome.value) : result{};
    r.attempts = attempts;
    return r;
  }
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
template <class S>
struct is_retry_stage : std::false_type {};
template <class R>
struct is_retry_stage<retry_stage<R>> : std::true_type {};
template <class S>
struct is_breaker_stage : std::false_type {};
template <class B>
struct is_breaker_stage<breaker_stage<B>> : std::true_type {};

template <class... Stages>
constexpr bool retry_inside_breaker() {
  bool seen_breaker = false;
  bool bad = false;
  ((seen_breaker = seen_breaker || is_breaker_stage<Stages>::value,
    bad = bad || (seen_breaker && is_retry_stage<Stages>::value)),
   ...);
  return bad;
}
}  // namespace detail

template <class... Stages>
class resilience_pipeline {
  static_assert(
      !detail::retry_inside_breaker<Stages...>(),
      "resilience_pipeline: put retry_stage before (outside) breaker_stage: every "
      "attempt must ask the breaker, and an open breaker must end the retries");

 public:
  explicit resilience_pipeline(Stages... stages) : stages_(std::move(stages)...) {}

  /// Runs f() through every stage. f may return a value or throw; the pipeline never
  /// throws what f throws (it comes back as failed + error).
  template <class F>
  auto execute(F&& f) -> pipeline_result<std::invoke_result_t<F&>> {
    return at<0>(f);
  }

  [[nodiscard]] std::tuple<Stages...>& stages() noexcept { return stages_; }

 private:
  template <std::size_t I, class F>
  auto at(F& f) -> pipeline_result<std::invoke_result_t<F&>> {
    using result = pipeline_result<std::invoke_result_t<F&>>;
    if constexpr (I == sizeof...(Stages)) {
      result r;
      r.attempts = 1;
      try {
        r.value.emplace(f());
      } catch (...) {
        r.rejected_by = pipeline_rejection::failed;
        r.error = std::current_exception();
      }
      return r;
    } else {
      return std::get<I>(stages_).run([this, &f] { return at<I + 1>(f); });
    }
  }

  std::tuple<Stages...> stages_;
};

}  // namespace outgrow
