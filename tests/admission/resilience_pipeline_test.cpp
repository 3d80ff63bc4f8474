// resilience_pipeline: rate limit -> bulkhead -> adaptive limit -> retry -> breaker ->
// fallback composed into one call; typed refusals, outcomes reported to each primitive,
// retries only of failures, a user stage, and no allocation on the success path. A
// deadline that travels with the call (call_context): the call reads it, every stage
// respects it, timeout_stage narrows it, late calls are timed_out; order rules; bad
// timeouts.
#include <outgrow/admission/bulkhead.hpp>
#include <outgrow/admission/concurrency_limiter.hpp>
#include <outgrow/admission/rate_limiter.hpp>
#include <outgrow/admission/resilience_pipeline.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>
#include <outgrow/resilience/retry.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "catch.hpp"
#include "counting_new.hpp"

using namespace std::chrono_literals;
using outgrow::manual_clock;
using ctx_t = outgrow::call_context<manual_clock>;
using outgrow::pipeline_rejection;

namespace {

struct world {
  manual_clock clock;
  outgrow::rate_limiter<manual_clock> limiter{{.permits_per_second = 100, .burst = 3},
                                              clock};
  outgrow::basic_bulkhead<manual_clock> bulkhead{{.max_concurrent_calls = 2}, clock};
  outgrow::concurrency_limiter<outgrow::aimd_limit, manual_clock> adaptive{
      outgrow::aimd_limit({.initial_limit = 4, .min_limit = 1, .max_limit = 10}), clock};
  outgrow::retry_budget<manual_clock> budget{{}, clock};
  outgrow::retry<outgrow::constant_backoff, manual_clock> retry{
      {.max_attempts = 3, .seed = 1}, outgrow::constant_backoff{10ms}, budget};
  outgrow::circuit_breaker<outgrow::consecutive_failures, manual_clock> breaker{
      {.failure_threshold = 5}, clock};
};

// The smallest conforming user stage: counts calls passing through.
struct counting_stage {
  int* calls;
  template <class Next>
  auto run(Next&& next) {
    ++*calls;
    return next();
  }
};

// A stage that takes 200 ms after the call has returned.
struct slow_stage {
  manual_clock clock;
  template <class Next>
  auto run(Next&& next) {
    auto r = next();
    clock.advance(200ms);
    return r;
  }
};

// A context-aware user stage: records the time left and gives what follows half of it.
struct budget_stage {
  std::chrono::nanoseconds* seen;
  template <class Ctx, class Next>
  auto run(const Ctx& ctx, Next&& next) {
    *seen = ctx.remaining();
    return next(ctx.narrowed(ctx.remaining() / 2));
  }
};

// A stage that takes `spends` of the call's time before passing it on.
struct spending_stage {
  manual_clock* clock;
  std::chrono::nanoseconds spends;
  template <class Ctx, class Next>
  auto run(const Ctx& ctx, Next&& next) {
    clock->advance(spends);
    return next(ctx);
  }
};

}  // namespace

TEST_CASE("pipeline success path runs every stage and reports success", "[pipeline]") {
  world w;
  int seen = 0;
  outgrow::resilience_pipeline p{outgrow::rate_limit_stage{w.limiter},
                                 outgrow::bulkhead_stage{w.bulkhead},
                                 outgrow::concurrency_limit_stage{w.adaptive},
                                 counting_stage{&seen},
                                 outgrow::retry_stage{w.retry},
                                 outgrow::breaker_stage{w.breaker}};
  const auto r = p.execute([] { return std::string("ok"); });
  REQUIRE(r);
  CHECK(*r.value == "ok");
  CHECK(r.rejected_by == pipeline_rejection::none);
  CHECK(r.attempts == 1);
  CHECK(seen == 1);
  CHECK(w.limiter.metrics().admitted == 1);
  CHECK(w.bulkhead.metrics().admitted == 1);
  CHECK(w.bulkhead.metrics().active == 0);  // released after the call
  CHECK(w.adaptive.metrics().succeeded == 1);
  CHECK(w.breaker.metrics().successes == 1);
}

TEST_CASE("pipeline refusals are typed and stop the call", "[pipeline]") {
  world w;
  outgrow::resilience_pipeline p{outgrow::rate_limit_stage{w.limiter},
                                 outgrow::breaker_stage{w.breaker}};
  int calls = 0;
  auto call = [&] { return ++calls; };
  for (int i = 0; i < 3; ++i) CHECK(p.execute(call));
  const auto limited = p.execute(call);
  CHECK_FALSE(limited);
  CHECK(limited.rejected_by == pipeline_rejection::rate_limited);
  CHECK(limited.retry_after == 10ms);
  CHECK(limited.attempts == 0);
  CHECK(calls == 3);

  w.breaker.force_open();
  w.clock.advance(1s);
  const auto open = p.execute(call);
  CHECK(open.rejected_by == pipeline_rejection::circuit_open);
  CHECK(calls == 3);
  CHECK(to_string(open.rejected_by) == "circuit_open");

  outgrow::basic_bulkhead<manual_clock> one({.max_concurrent_calls = 1}, w.clock);
  outgrow::resilience_pipeline inner{outgrow::bulkhead_stage{one}};
  auto held = one.try_acquire();
  CHECK(inner.execute(call).rejected_by == pipeline_rejection::bulkhead_full);
}

TEST_CASE("pipeline retries failures only and the breaker sees every attempt",
          "[pipeline]") {
  world w;
  outgrow::resilience_pipeline p{outgrow::concurrency_limit_stage{w.adaptive},
                                 outgrow::retry_stage{w.retry},
                                 outgrow::breaker_stage{w.breaker}};
  int calls = 0;
  const auto r = p.execute([&]() -> int {
    ++calls;
    if (calls < 3) throw std::runtime_error("flaky");
    return 7;
  });
  REQUIRE(r);
  CHECK(*r.value == 7);
  CHECK(r.attempts == 3);
  CHECK(w.breaker.metrics().failures == 2);
  CHECK(w.breaker.metrics().successes == 1);
  CHECK(w.adaptive.metrics().succeeded == 1);

  const auto failed = p.execute([]() -> int { throw std::runtime_error("down"); });
  CHECK_FALSE(failed);
  CHECK(failed.rejected_by == pipeline_rejection::failed);
  CHECK(failed.attempts == 3);
  REQUIRE(failed.error);
  CHECK_THROWS_WITH(std::rethrow_exception(failed.error), "down");
  CHECK(w.adaptive.metrics().dropped == 1);

  // An open breaker is not retried: one refusal, no backoff waited.
  w.breaker.force_open();
  const auto before = w.clock.now();
  const auto open = p.execute([] { return 1; });
  CHECK(open.rejected_by == pipeline_rejection::circuit_open);
  CHECK(w.clock.now() == before);
}

TEST_CASE("pipeline fallback turns a refusal into a value and keeps the reason",
          "[pipeline]") {
  world w;
  w.breaker.force_open();
  outgrow::resilience_pipeline p{
      outgrow::fallback_stage{[](const outgrow::pipeline_result<std::string>& r) {
        return std::string("cached because ") + std::string(to_string(r.rejected_by));
      }},
      outgrow::breaker_stage{w.breaker}};
  const auto r = p.execute([] { return std::string("live"); });
  REQUIRE(r);
  CHECK(*r.value == "cached because circuit_open");
  CHECK(r.rejected_by == pipeline_rejection::circuit_open);
}

TEST_CASE("pipeline success path allocates nothing", "[pipeline]") {
  world w;
  outgrow::resilience_pipeline p{
      outgrow::rate_limit_stage{w.limiter}, outgrow::bulkhead_stage{w.bulkhead},
      outgrow::retry_stage{w.retry}, outgrow::breaker_stage{w.breaker}};
  (void)p.execute([] { return 1; });  // warm up
  w.clock.advance(1s);
  const std::size_t before = outgrow_test::allocations();
  const auto r = p.execute([] { return 2; });
  const std::size_t after = outgrow_test::allocations();
  CHECK(r);
  CHECK(after - before == 0);
}

// ---- deadlines --------------------------------------------------------------------------

TEST_CASE("call_context reads the time left on its clock", "[pipeline][deadline]") {
  manual_clock clock;
  const ctx_t none(clock);
  CHECK_FALSE(none.has_deadline());
  CHECK_FALSE(none.expired());
  CHECK(none.remaining() == std::chrono::nanoseconds::max());

  const auto ctx = ctx_t::with_timeout(200ms, clock);
  CHECK(ctx.has_deadline());
  CHECK(ctx.deadline() == clock.now() + 200ms);
  CHECK(ctx.remaining() == 200ms);
  clock.advance(150ms);
  CHECK(ctx.remaining() == 50ms);
  CHECK(ctx.narrowed(10ms).remaining() == 10ms);  // narrower: taken
  CHECK(ctx.narrowed(1h).remaining() == 50ms);    // wider: the outer deadline stays
  CHECK(none.narrowed(10ms).remaining() == 10ms);
  clock.advance(50ms);
  CHECK(ctx.expired());  // now == deadline: expired
  CHECK(ctx.remaining() == 0ns);

  // A huge timeout saturates ("never"); a spent one is already expired.
  CHECK(ctx_t::with_timeout(std::chrono::nanoseconds::max(), clock).deadline() ==
        manual_clock::time_point::max());
  CHECK(ctx_t::with_timeout(-5ms, clock).expired());
}

TEST_CASE("pipeline hands the innermost context to the call", "[pipeline][deadline]") {
  world w;
  outgrow::resilience_pipeline p{outgrow::bulkhead_stage{w.bulkhead},
                                 outgrow::retry_stage{w.retry},
                                 outgrow::breaker_stage{w.breaker}};
  const auto ctx = ctx_t::with_timeout(200ms, w.clock);
  const auto r = p.execute(ctx, [](const ctx_t& c) { return c.remaining(); });
  REQUIRE(r);
  CHECK(*r.value == 200ms);
  // A call that ignores the context still runs under it.
  const auto plain = p.execute(ctx, [] { return 5; });
  REQUIRE(plain);
  CHECK(*plain.value == 5);

  // timeout_stage narrows what is inside it, never widens it.
  outgrow::resilience_pipeline narrowing{outgrow::timeout_stage{50ms, w.clock}};
  CHECK(*narrowing.execute(ctx, [](const auto& c) { return c.remaining(); }).value == 50ms);
  const auto tight = ctx_t::with_timeout(20ms, w.clock);
  CHECK(*narrowing.execute(tight, [](const auto& c) { return c.remaining(); }).value ==
        20ms);
}

TEST_CASE("pipeline does not start a call whose deadline has passed",
          "[pipeline][deadline]") {
  world w;
  outgrow::resilience_pipeline p{outgrow::concurrency_limit_stage{w.adaptive},
                                 outgrow::breaker_stage{w.breaker}};
  int calls = 0;
  const auto spent = ctx_t::with_timeout(0ms, w.clock);
  const auto r = p.execute(spent, [&] { return ++calls; });
  CHECK_FALSE(r);
  CHECK(r.rejected_by == pipeline_rejection::timed_out);
  CHECK(to_string(r.rejected_by) == "timed_out");
  CHECK(r.attempts == 0);
  CHECK(calls == 0);
  // Not the dependency's fault: neither a failure nor a drop.
  CHECK(w.breaker.metrics().failures == 0);
  CHECK(w.adaptive.metrics().dropped == 0);
}

TEST_CASE("pipeline reports a call that returns after its deadline as timed_out",
          "[pipeline][deadline]") {
  world w;
  outgrow::resilience_pipeline p{outgrow::concurrency_limit_stage{w.adaptive},
                                 outgrow::breaker_stage{w.breaker}};
  const auto ctx = ctx_t::with_timeout(100ms, w.clock);
  const auto late = p.execute(ctx, [&] {
    w.clock.advance(150ms);  // a synchronous call cannot be preempted: it runs late
    return 1;
  });
  CHECK_FALSE(late);
  CHECK(late.rejected_by == pipeline_rejection::timed_out);
  CHECK(late.attempts == 1);
  CHECK_FALSE(late.error);
  CHECK(w.breaker.metrics().failures == 1);  // a slow call is a failure
  CHECK(w.adaptive.metrics().dropped == 1);  // and a drop

  // A late exception is kept.
  const auto ctx2 = ctx_t::with_timeout(100ms, w.clock);
  const auto late_error = p.execute(ctx2, [&]() -> int {
    w.clock.advance(101ms);
    throw std::runtime_error("late and wrong");
  });
  CHECK(late_error.rejected_by == pipeline_rejection::timed_out);
  REQUIRE(late_error.error);
  CHECK_THROWS_WITH(std::rethrow_exception(late_error.error), "late and wrong");

  // A call that reads the context can stop in time and say so itself.
  const auto ctx3 = ctx_t::with_timeout(100ms, w.clock);
  const auto early = p.execute(ctx3, [&](const ctx_t& c) {
    w.clock.advance(c.remaining() / 2);
    return c.remaining();
  });
  REQUIRE(early);
  CHECK(*early.value == 50ms);
}

TEST_CASE("timeout_stage bounds a call made without a context", "[pipeline][deadline]") {
  world w;
  outgrow::resilience_pipeline p{outgrow::timeout_stage{100ms, w.clock},
                                 outgrow::breaker_stage{w.breaker}};
  const auto fast = p.execute([&] {
    w.clock.advance(99ms);
    return 1;
  });
  CHECK(fast);
  const auto slow = p.execute([&] {
    w.clock.advance(100ms);
    return 1;
  });
  CHECK(slow.rejected_by == pipeline_rejection::timed_out);
  CHECK(slow.attempts == 1);
  CHECK(w.breaker.metrics().failures == 1);

  // Late in a stage between the timeout and the call: still timed_out.
  outgrow::resilience_pipeline q{outgrow::timeout_stage{100ms, w.clock},
                                 slow_stage{w.clock}};
  CHECK(q.execute([] { return 1; }).rejected_by == pipeline_rejection::timed_out);
}

TEST_CASE("retry_stage does not start an attempt after the deadline",
          "[pipeline][deadline]") {
  world w;
  outgrow::retry<outgrow::constant_backoff, manual_clock> patient{
      {.max_attempts = 10, .seed = 1}, outgrow::constant_backoff{10ms}, w.clock};
  outgrow::resilience_pipeline p{outgrow::retry_stage{patient},
                                 outgrow::breaker_stage{w.breaker}};
  int calls = 0;
  const auto start = w.clock.now();
  const auto ctx = ctx_t::with_timeout(25ms, w.clock);
  const auto r = p.execute(ctx, [&]() -> int {
    ++calls;
    w.clock.advance(1ms);
    throw std::runtime_error("down");
  });
  // Attempts at 0, 11 and 22 ms; the next would start at 33 ms, past the 25 ms deadline,
  // so the retry does not wait for it.
  CHECK(calls == 3);
  CHECK(r.attempts == 3);
  CHECK(r.rejected_by == pipeline_rejection::timed_out);
  REQUIRE(r.error);  // the last attempt's failure travels with the timeout
  CHECK_THROWS_WITH(std::rethrow_exception(r.error), "down");
  CHECK(w.breaker.metrics().failures == 3);  // the breaker was not asked a 4th time
  CHECK(w.clock.now() - start == 23ms);      // no backoff waited past the deadline
  CHECK(patient.metrics().attempts == 3);    // no 4th attempt
  CHECK(patient.metrics().gave_up == 1);

  // Without a deadline the same retry goes on...
  calls = 0;
  const auto all = p.execute([&]() -> int {
    ++calls;
    throw std::runtime_error("down");
  });
  // ... until the breaker opens: 5 consecutive failures, 3 of them from above.
  CHECK(all.rejected_by == pipeline_rejection::circuit_open);
  CHECK(calls == 2);
}

TEST_CASE("retry_stage makes no attempt when an outer stage spent the deadline",
          "[pipeline][deadline]") {
  world w;
  outgrow::retry<outgrow::constant_backoff, manual_clock> patient{
      {.max_attempts = 10, .seed = 1}, outgrow::constant_backoff{10ms}, w.clock};
  outgrow::resilience_pipeline p{spending_stage{&w.clock, 30ms},
                                 outgrow::retry_stage{patient},
                                 outgrow::breaker_stage{w.breaker}};
  int calls = 0;
  const auto r = p.execute(ctx_t::with_timeout(25ms, w.clock), [&] { return ++calls; });
  CHECK(r.rejected_by == pipeline_rejection::timed_out);
  CHECK(r.attempts == 0);
  CHECK(calls == 0);
  const auto m = patient.metrics();
  CHECK(m.attempts == 0);  // not a call to the retry at all: no attempt, no give-up
  CHECK(m.gave_up == 0);
  CHECK(w.breaker.metrics().failures == 0);
}

TEST_CASE("a timeout inside retry bounds each attempt and outside it the whole call",
          "[pipeline][deadline]") {
  world w;
  outgrow::retry<outgrow::constant_backoff, manual_clock> retry{
      {.max_attempts = 5, .seed = 1}, outgrow::constant_backoff{10ms}, w.clock};

  // Per attempt: a late attempt is retried; the next one answers in time.
  outgrow::resilience_pipeline per_attempt{outgrow::retry_stage{retry},
                                           outgrow::timeout_stage{50ms, w.clock}};
  int calls = 0;
  const auto r = per_attempt.execute([&] {
    w.clock.advance(++calls == 1 ? 80ms : 10ms);
    return calls;
  });
  REQUIRE(r);
  CHECK(*r.value == 2);
  CHECK(r.attempts == 2);

  // Whole call: attempts that fail after 30 ms each; the second ends past 50 ms.
  outgrow::resilience_pipeline whole{outgrow::timeout_stage{50ms, w.clock},
                                     outgrow::retry_stage{retry}};
  calls = 0;
  const auto start = w.clock.now();
  const auto t = whole.execute([&]() -> int {
    ++calls;
    w.clock.advance(30ms);
    throw std::runtime_error("slow failure");
  });
  CHECK(t.rejected_by == pipeline_rejection::timed_out);
  CHECK(calls == 2);
  CHECK(t.attempts == 2);
  CHECK(w.clock.now() - start == 70ms);
  REQUIRE(t.error);
}

TEST_CASE("bulkhead_stage waits for a permit at most until the deadline",
          "[pipeline][deadline]") {
  manual_clock clock;
  outgrow::basic_bulkhead<manual_clock> one({.max_concurrent_calls = 1, .max_waiting = 1},
                                            clock);
  outgrow::resilience_pipeline never_waits{outgrow::bulkhead_stage{one}};
  outgrow::resilience_pipeline waits{outgrow::bulkhead_stage{one, true}};
  auto held = one.try_acquire();
  REQUIRE(held);

  CHECK(never_waits.execute(ctx_t::with_timeout(1h, clock), [] { return 1; }).rejected_by ==
        pipeline_rejection::bulkhead_full);
  CHECK(one.metrics().rejected == 1);

  // The deadline has come: the waiting stage gives up at once, counted as timed out.
  const auto spent = ctx_t::with_timeout(0ms, clock);
  CHECK(waits.execute(spent, [] { return 1; }).rejected_by ==
        pipeline_rejection::bulkhead_full);
  CHECK(one.metrics().timed_out == 1);

  // With time left it waits in the line until another thread releases the permit.
  std::atomic<bool> in_line{false};
  std::thread releaser([&] {
    while (one.metrics().waiting == 0) std::this_thread::yield();
    in_line = true;
    held.release();
  });
  const auto r = waits.execute(ctx_t::with_timeout(1h, clock), [] { return 7; });
  releaser.join();
  CHECK(in_line);
  REQUIRE(r);
  CHECK(*r.value == 7);
  CHECK(one.metrics().waited == 1);
  CHECK(one.metrics().active == 0);
}

TEST_CASE("a context-aware user stage can read and narrow the deadline",
          "[pipeline][deadline]") {
  manual_clock clock;
  std::chrono::nanoseconds seen{};
  outgrow::resilience_pipeline p{budget_stage{&seen}};
  const auto r = p.execute(ctx_t::with_timeout(80ms, clock),
                           [](const ctx_t& c) { return c.remaining(); });
  CHECK(seen == 80ms);
  REQUIRE(r);
  CHECK(*r.value == 40ms);

  // Without a context the stage sees no deadline (an unbounded_context).
  CHECK(p.execute([] { return 1; }));
  CHECK(seen == std::chrono::nanoseconds::max());
}

TEST_CASE("pipeline success path with a deadline allocates nothing",
          "[pipeline][deadline]") {
  world w;
  outgrow::resilience_pipeline p{
      outgrow::rate_limit_stage{w.limiter}, outgrow::bulkhead_stage{w.bulkhead},
      outgrow::timeout_stage{1s, w.clock}, outgrow::retry_stage{w.retry},
      outgrow::breaker_stage{w.breaker}};
  const auto ctx = ctx_t::with_timeout(5s, w.clock);
  (void)p.execute(ctx, [](const ctx_t& c) { return c.remaining(); });  // warm up
  w.clock.advance(1s);
  const std::size_t before = outgrow_test::allocations();
  const auto r = p.execute(ctx, [](const ctx_t& c) { return c.remaining(); });
  const std::size_t after = outgrow_test::allocations();
  REQUIRE(r);
  CHECK(*r.value == 1s);
  CHECK(after - before == 0);
}

TEST_CASE("pipeline order rules", "[pipeline]") {
  using outgrow::detail::check_pipeline_order;
  using order = outgrow::detail::pipeline_order;
  using retry_t = outgrow::retry_stage<outgrow::retry<>>;
  using breaker_t = outgrow::breaker_stage<outgrow::circuit_breaker<>>;
  using limiter_t = outgrow::concurrency_limit_stage<outgrow::concurrency_limiter<>>;
  using timeout_t = outgrow::timeout_stage<>;
  auto cached = [](const outgrow::pipeline_result<int>&) { return 0; };
  using fallback_t = outgrow::fallback_stage<decltype(cached)>;

  STATIC_REQUIRE(
      check_pipeline_order<fallback_t, limiter_t, timeout_t, retry_t, breaker_t>() ==
      order::ok);
  // A timeout goes anywhere: outside retry (whole call) or inside (each attempt).
  STATIC_REQUIRE(check_pipeline_order<retry_t, timeout_t, breaker_t>() == order::ok);
  STATIC_REQUIRE(check_pipeline_order<timeout_t, fallback_t>() == order::ok);
  STATIC_REQUIRE(check_pipeline_order<breaker_t, retry_t>() == order::retry_inside_breaker);
  STATIC_REQUIRE(check_pipeline_order<retry_t, fallback_t>() ==
                 order::fallback_inside_outcome_stage);
  STATIC_REQUIRE(check_pipeline_order<breaker_t, fallback_t>() ==
                 order::fallback_inside_outcome_stage);
  STATIC_REQUIRE(check_pipeline_order<limiter_t, timeout_t, fallback_t>() ==
                 order::fallback_inside_outcome_stage);
}

TEST_CASE("timeout_stage rejects a timeout that is not positive", "[pipeline]") {
  CHECK_THROWS_AS(outgrow::timeout_stage<>(0ms), outgrow::config_error);
  CHECK_THROWS_WITH(outgrow::timeout_stage<>(-1ms),
                    "timeout_stage: timeout must be > 0s, got -1ms");
  CHECK_THROWS_AS(outgrow::timeout_stage<manual_clock>(std::chrono::nanoseconds::min()),
                  outgrow::config_error);
  CHECK(outgrow::timeout_stage<>(1ns).timeout() == 1ns);
}

TEST_CASE("retry_stage retries only what the retry's retry_on accepts",
          "[pipeline][retry]") {
  manual_clock clock;
  outgrow::retry<outgrow::constant_backoff, manual_clock> retry{
      {.max_attempts = 3, .seed = 1, .retry_on = outgrow::retry_on<std::system_error>()},
      outgrow::constant_backoff{10ms},
      clock};
  outgrow::resilience_pipeline p{outgrow::retry_stage{retry}};

  // Not in retry_on: one attempt, the call fails with that exception, not_retryable.
  int calls = 0;
  const auto once = p.execute([&]() -> int {
    ++calls;
    throw std::invalid_argument("bad request");
  });
  CHECK(calls == 1);
  CHECK(once.attempts == 1);
  CHECK(once.rejected_by == pipeline_rejection::failed);
  REQUIRE(once.error);
  CHECK_THROWS_AS(std::rethrow_exception(once.error), std::invalid_argument);
  CHECK(retry.metrics().not_retryable == 1);
  CHECK(retry.metrics().successes == 0);

  // In retry_on: retried until the attempts run out, then the last exception.
  calls = 0;
  const auto all = p.execute([&]() -> int {
    ++calls;
    throw std::system_error(std::make_error_code(std::errc::connection_refused));
  });
  CHECK(calls == 3);
  CHECK(all.attempts == 3);
  CHECK(all.rejected_by == pipeline_rejection::failed);
  REQUIRE(all.error);
  CHECK_THROWS_AS(std::rethrow_exception(all.error), std::system_error);
  CHECK(retry.metrics().gave_up == 1);

  // A failure then a success: the value, two attempts.
  calls = 0;
  const auto second = p.execute([&]() -> int {
    if (++calls == 1) throw std::system_error(std::make_error_code(std::errc::timed_out));
    return 7;
  });
  REQUIRE(second);
  CHECK(*second.value == 7);
  CHECK(second.attempts == 2);
  CHECK(retry.metrics().successes == 1);
}
