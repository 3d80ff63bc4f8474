// A timeout_stage on the steady clock inside a call whose deadline is on a manual_clock:
// both time_points are std::chrono::steady_clock's, but they are two time lines, and
// taking the earlier of two deadlines from them means nothing. Rejected at compile time.
// expect: must be one clock
#include <outgrow/admission/call_context.hpp>
#include <outgrow/admission/resilience_pipeline.hpp>
#include <outgrow/core/clock.hpp>

#include <chrono>

int main() {
  outgrow::manual_clock clock;
  outgrow::resilience_pipeline pipeline{
      outgrow::timeout_stage{std::chrono::milliseconds(100)}};  // steady_clock_source
  const auto ctx = outgrow::call_context<outgrow::manual_clock>::with_timeout(
      std::chrono::seconds(1), clock);
  return pipeline.execute(ctx, [] { return 1; }).value.value_or(0);
}
