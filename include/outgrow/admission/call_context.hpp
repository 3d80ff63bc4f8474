// outgrow/admission/call_context.hpp — a deadline that travels with a call.
//
// What: gRPC's deadline propagation and Polly's ResilienceContext, reduced to what a
// synchronous call needs: one absolute deadline on a Clock's time line, handed from
// the caller through every resilience_pipeline stage to the call itself. Each stage
// reads the time left instead of keeping a timeout of its own, so a retry does not
// start an attempt the caller has stopped waiting for, a bulkhead does not queue past
// it, and a timeout_stage can only narrow it, never extend it.
//
// When: a request arrives with a budget ("answer within 200 ms"); everything done for
// it — waits for permits, attempts, backoff, the downstream call — must fit in that
// budget. Pass the context down; a downstream client reads remaining() to set its own
// socket or RPC timeout.
//
//   auto ctx = outgrow::call_context<>::with_timeout(200ms);     // now + 200 ms
//   auto r = pipeline.execute(ctx, [&](const auto& ctx) {
//     return client.get(key, ctx.remaining());  // the call sees the time left
//   });
//   if (r.rejected_by == outgrow::pipeline_rejection::timed_out) reply_504();
//
// Trade-offs: a deadline is cooperative. A synchronous call cannot be preempted: code
// that ignores the context runs to its end, and the pipeline can only report it late
// (pipeline_rejection::timed_out) and not start anything more for it. "No deadline" is
// time_point::max() (has_deadline() false), and costs no clock read.
//
// Time: from the Clock policy (steady_clock_source by default, manual_clock in tests);
// deadlines are computed with saturating_add (core/deadline.hpp), so a huge timeout
// means "never" instead of overflowing. A timeout of zero or less gives a context that
// has already expired (a caller whose budget is spent), not an error.
//
// Thread-safety: a context is a value (the deadline and a copy of the clock); const
// members may be called from any thread. Complexity: O(1); remaining() and expired()
// read the clock once when there is a deadline, not at all otherwise.
// Measured cost: not yet measured.
#pragma once

#include <algorithm>
#include <chrono>
#include <utility>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/deadline.hpp>

namespace outgrow {

/// One call's deadline on Clock's time line (see the header comment).
template <clock_source Clock = steady_clock_source>
class call_context {
 public:
  using clock_type = Clock;
  using time_point = typename Clock::time_point;

  /// No deadline.
  explicit call_context(Clock clock = {}) : clock_(std::move(clock)) {}
  /// Expires at `deadline` (time_point::max() = never).
  call_context(Clock clock, time_point deadline)
      : clock_(std::move(clock)), deadline_(deadline) {}

  /// Expires `timeout` from now (saturating; <= 0: already expired).
  [[nodiscard]] static call_context with_timeout(std::chrono::nanoseconds timeout,
                                                 Clock clock = {}) {
    const time_point deadline = saturating_add(clock.now(), timeout);
    return call_context(std::move(clock), deadline);
  }

  /// This context with its deadline narrowed to at most `timeout` from now (a narrower
  /// deadline already set is kept).
  [[nodiscard]] call_context narrowed(std::chrono::nanoseconds timeout) const {
    return call_context(clock_, std::min(deadline_, saturating_add(clock_.now(), timeout)));
  }

  [[nodiscard]] time_point deadline() const noexcept { return deadline_; }
  [[nodiscard]] bool has_deadline() const noexcept {
    return deadline_ != time_point::max();
  }
  [[nodiscard]] time_point now() const noexcept { return clock_.now(); }

  /// True once now() >= deadline(); false without reading the clock when there is none.
  [[nodiscard]] bool expired() const noexcept {
    return has_deadline() && clock_.now() >= deadline_;
  }

  /// Time left: 0 once expired, nanoseconds::max() without a deadline.
  [[nodiscard]] std::chrono::nanoseconds remaining() const noexcept {
    if (!has_deadline()) return std::chrono::nanoseconds::max();
    const time_point now = clock_.now();
    if (now >= deadline_) return std::chrono::nanoseconds::zero();
    return std::chrono::duration_cast<std::chrono::nanoseconds>(deadline_ - now);
  }

  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  Clock clock_;
  time_point deadline_ = time_point::max();
};

/// The context of a call without a deadline (what resilience_pipeline::execute(f)
/// passes its stages): the same members as call_context<>, constant, so every deadline
/// check folds away at compile time.
struct unbounded_context {
  using clock_type = steady_clock_source;
  using time_point = steady_clock_source::time_point;

  [[nodiscard]] static constexpr time_point deadline() noexcept {
    return time_point::max();
  }
  [[nodiscard]] static constexpr bool has_deadline() noexcept { return false; }
  [[nodiscard]] static constexpr bool expired() noexcept { return false; }
  [[nodiscard]] static constexpr std::chrono::nanoseconds remaining() noexcept {
    return std::chrono::nanoseconds::max();
  }
  [[nodiscard]] static time_point now() noexcept { return steady_clock_source{}.now(); }
  /// A context expiring `timeout` from now on the steady clock.
  [[nodiscard]] static call_context<> narrowed(std::chrono::nanoseconds timeout) {
    return call_context<>::with_timeout(timeout);
  }
  [[nodiscard]] static steady_clock_source clock() noexcept { return {}; }
};

}  // namespace outgrow
