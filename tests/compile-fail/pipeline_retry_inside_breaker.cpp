// A retry inside (after) a breaker would hide an open breaker from the retry and retry
// every attempt's refusal: resilience_pipeline rejects that order at compile time.
// expect: put retry_stage before
#include <outgrow/admission/resilience_pipeline.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>
#include <outgrow/resilience/retry.hpp>

int main() {
  outgrow::circuit_breaker<> breaker;
  outgrow::retry<> retry;
  outgrow::resilience_pipeline pipeline{outgrow::breaker_stage{breaker},
                                        outgrow::retry_stage{retry}};
  return pipeline.execute([] { return 1; }).value.value_or(0);
}
