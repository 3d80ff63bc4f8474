// outgrow/queue/detail/queue_delay_shedder.hpp — CoDel's dequeue-side state machine
// (RFC 8289), one decision per dequeued job, for work_queue's queue-delay shedding.
//
// RFC 8289 §5 writes CoDel as a dequeue() that may drop several packets in a loop
// before it returns one. A work_queue worker takes one job at a time, so this is the
// same machine cut at each job: should_drop() is called for every job taken from the
// queue, in the order they are taken, and says whether to shed it. The state (and each
// transition) is the RFC's:
//
//   dodequeue:  sojourn < target, or at most one job left queued after this one
//               (the RFC's `bytes() <= MAXPACKET`, a job being the packet): not above,
//               first_above = none. Else the first job above sets first_above =
//               now + interval; once now >= first_above, the job is ok_to_drop.
//   dropping:   a job not ok_to_drop leaves the dropping state (it runs). An
//               ok_to_drop job is dropped when now >= drop_next (++count); the next
//               job that is still ok_to_drop first moves drop_next by
//               interval / sqrt(count) — the RFC's loop body, split at the job.
//   entering:   an ok_to_drop job outside the dropping state is dropped and the state
//               entered with count = 1, or count = count - lastcount when that is > 1
//               and the last drop was less than 16 intervals ago (the RFC's and
//               Linux's memory of the last cycle's drop rate); drop_next =
//               now + interval / sqrt(count); lastcount = count.
//
// An empty queue needs no call: the job that empties it has at most one job behind it,
// so it is "not above" and leaves the dropping state, as the RFC's empty dequeue does.
// Times saturate (core/deadline.hpp), so a manual_clock near time_point::max() works.
//
// Thread-safety: none; work_queue_engine calls it under a mutex. Complexity: O(1); one
// std::sqrt per drop.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include <outgrow/core/deadline.hpp>

namespace outgrow::detail {

template <class TimePoint>
class queue_delay_shedder {
 public:
  using time_point = TimePoint;

  queue_delay_shedder(std::chrono::nanoseconds target,
                      std::chrono::nanoseconds interval) noexcept
      : target_(target), interval_(interval) {}

  /// One job taken at `now`, queued since `enqueued_at`; `queued_after`: jobs still in
  /// the queue after it. True = shed it (do not run it).
  bool should_drop(time_point now, time_point enqueued_at,
                   std::size_t queued_after) noexcept {
    const bool ok = ok_to_drop(now, enqueued_at, queued_after);
    if (dropping_) {
      if (!ok) {
        dropping_ = false;  // sojourn below target: leave the dropping state
        reschedule_ = false;
        return false;
      }
      if (reschedule_) {  // the RFC's loop: the job after a drop, still above
        drop_next_ = control_law(drop_next_);
        reschedule_ = false;
      }
      if (now < drop_next_) return false;
      ++count_;
      reschedule_ = true;
      return true;
    }
    if (!ok) return false;
    dropping_ = true;
    const std::uint64_t delta = count_ - lastcount_;
    count_ = 1;
    if (delta > 1 && now < saturating_add(drop_next_, 16 * interval_)) count_ = delta;
    drop_next_ = control_law(now);
    lastcount_ = count_;
    return true;
  }

  [[nodiscard]] bool dropping() const noexcept { return dropping_; }
  /// Drops in (or counted into) the current dropping cycle.
  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  /// When the next drop is due (meaningful while dropping()).
  [[nodiscard]] time_point drop_next() const noexcept { return drop_next_; }

 private:
  bool ok_to_drop(time_point now, time_point enqueued_at,
                  std::size_t queued_after) noexcept {
    if (now < saturating_add(enqueued_at, target_) || queued_after <= 1) {
      above_ = false;  // went below: stay below for at least an interval
      return false;
    }
    if (!above_) {  // just went above: if still above at first_above_, ok to drop
      above_ = true;
      first_above_ = saturating_add(now, interval_);
      return false;
    }
    return now >= first_above_;
  }

  /// t + interval / sqrt(count).
  time_point control_law(time_point t) const noexcept {
    const double gap =
        static_cast<double>(interval_.count()) / std::sqrt(static_cast<double>(count_));
    return saturating_add(t, std::chrono::nanoseconds{static_cast<std::int64_t>(gap)});
  }

  std::chrono::nanoseconds target_;
  std::chrono::nanoseconds interval_;
  bool above_ = false;  // first_above_ is set (the RFC's first_above_time != 0)
  bool dropping_ = false;
  bool reschedule_ = false;  // a drop happened; the next job above moves drop_next_
  time_point first_above_{};
  time_point drop_next_{};
  std::uint64_t count_ = 0;
  std::uint64_t lastcount_ = 0;
};

}  // namespace outgrow::detail
