// resilience_pipeline: rate limit -> bulkhead -> adaptive limit -> retry -> breaker ->
// fallback composed into one call; typed refusals, outcomes reported to each primitive,
// retries only of failures, a user stage, and no allocation on the success path.
#include <outgrow/admission/bulkhead.hpp>
#include <outgrow/admission/concurrency_limiter.hpp>
#include <outgrow/admission/rate_limiter.hpp>
#include <outgrow/admission/resilience_pipeline.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>
#include <outgrow/resilience/retry.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

#include "catch.hpp"
#include "counting_new.hpp"

using namespace std::chrono_literals;
using outgrow::manual_clock;
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
