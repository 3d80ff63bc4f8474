// A fallback inside a breaker turns failures into values the breaker counts as
// successes: resilience_pipeline rejects that order at compile time.
// expect: put fallback_stage before
#include <outgrow/admission/resilience_pipeline.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>

int main() {
  outgrow::circuit_breaker<> breaker;
  outgrow::resilience_pipeline pipeline{
      outgrow::breaker_stage{breaker},
      outgrow::fallback_stage{[](const outgrow::pipeline_result<int>&) { return 0; }}};
  return pipeline.execute([] { return 1; }).value.value_or(0);
}
