// outgrow/queue/detail/work_queue_handoff.hpp — the two pieces of work_queue's hand-off
// from the queue to its workers: a worker's batch (detail::worker_batch) and where idle
// pool workers spin and park (detail::worker_parking).
//
// worker_batch<T, N>: the jobs one worker took from the queue in one claim on the ring
// (bounded_queue::try_pop_batch) and has not started. Its owner takes them one by one
// with a fetch_add on `next_` (no lock); stop() (also for a worker stuck in a handler)
// and a retiring worker take the rest with steal(), which moves `next_` past any batch
// under the batch's mutex: the owner's fetch_add and the thief's exchange split the
// batch, so each job goes one way only. A refill happens only once the batch is empty,
// by its owner, under the mutex.
//
// worker_parking: idle pool workers spin for work one at a time (the spinner: a unit of
// `spinning_`), then park on a condition variable (`sleepers_`). A waker hands a token
// and counts the woken worker as spinning, so that one wake is in flight at a time and
// wakers do not wake a second worker while the first has not yet looked for work. The
// seq_cst fences pair: a parking worker announces itself (sleepers_) and then looks for
// work; a waker publishes work, fences, and then looks at sleepers_: either the parking
// worker sees the work, or the waker sees it parked. WHEN to wake (the policy: how much
// backlog justifies a wake) is the engine's (work_queue_engine::wake_for_submit and
// wake_for_backlog). The mutex is also the engine's halt mutex: notify_all_after() runs
// a change (halt, retirement) under it so that a worker checking before parking cannot
// miss it.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace outgrow::detail {

/// Up to N jobs taken from the queue by one worker, not started (see the file comment).
template <class T, std::size_t N>
class worker_batch {
 public:
  /// Jobs held, not started (exact for the owner, an estimate for others).
  [[nodiscard]] std::size_t held() const noexcept {
    const std::uint32_t end = end_.load(std::memory_order_acquire);
    const std::uint32_t next = next_.load(std::memory_order_acquire);
    return next < end ? end - next : 0;
  }

  /// The next job (the owner only).
  std::optional<T> take() noexcept {
    const std::uint32_t end = end_.load(std::memory_order_relaxed);
    if (next_.load(std::memory_order_relaxed) >= end) return std::nullopt;
    const std::uint32_t i = next_.fetch_add(1, std::memory_order_acq_rel);
    if (i >= end) return std::nullopt;  // steal() took the rest meanwhile
    std::optional<T> out(std::move(*items_[i]));
    items_[i].reset();
    return out;
  }

  /// Fills the (empty) batch with up to `want` (<= N) jobs from `queue`, oldest first,
  /// in one claim (the owner only); returns how many.
  template <class Queue>
  std::size_t refill(Queue& queue, std::size_t want) noexcept {
    std::lock_guard lock(mutex_);
    std::uint32_t n = 0;
    queue.try_pop_batch(std::min(want, N),
                        [&](T&& item) noexcept { items_[n++].emplace(std::move(item)); });
    end_.store(n, std::memory_order_relaxed);
    next_.store(0, std::memory_order_release);
    return n;
  }

  /// Takes every job not started, oldest first, into sink(T&) (any thread).
  template <class Sink>
  void steal(Sink&& sink) {
    std::lock_guard lock(mutex_);
    const std::uint32_t end = end_.load(std::memory_order_relaxed);
    const std::uint32_t from = next_.exchange(stolen_mark, std::memory_order_acq_rel);
    for (std::uint32_t i = from; i < end; ++i) {
      sink(*items_[i]);
      items_[i].reset();
    }
  }

 private:
  /// next_ after steal(): past any batch, so the owner finds it empty.
  static constexpr std::uint32_t stolen_mark = std::uint32_t{1} << 30;
  static_assert(N < stolen_mark);

  std::mutex mutex_;
  std::atomic<std::uint32_t> next_{0};
  std::atomic<std::uint32_t> end_{0};
  std::array<std::optional<T>, N> items_{};
};

/// Where idle pool workers spin and park, and how they are woken (see the file comment).
class worker_parking {
 public:
  /// Workers parking or parked.
  [[nodiscard]] std::uint32_t parked() const noexcept {
    return sleepers_.load(std::memory_order_relaxed);
  }
  /// Workers spinning for work, or woken and not yet back at the queue.
  [[nodiscard]] std::uint32_t spinning() const noexcept {
    return spinning_.load(std::memory_order_relaxed);
  }

  /// Becomes the spinner if nobody spins; true then (the caller holds a unit, which
  /// end_spin() or park(..., true) gives back).
  bool try_spin() noexcept {
    std::uint32_t none = 0;
    return spinning_.compare_exchange_strong(none, 1, std::memory_order_seq_cst);
  }
  void end_spin() noexcept { spinning_.fetch_sub(1, std::memory_order_seq_cst); }

  /// Spins up to `rounds` looks (a pause between looks, a yield every 64) until found()
  /// (true) or give_up() (false).
  template <class Found, class GiveUp>
  static bool spin(int rounds, Found&& found, GiveUp&& give_up) noexcept {
    for (int i = 0; i < rounds; ++i) {
      if (found()) return true;
      if (give_up()) return false;
      cpu_relax();
      if ((i & 63) == 63) std::this_thread::yield();
    }
    return false;
  }

  /// Wakes one parked worker with a token, counted as spinning from now on.
  void wake_one() {
    spinning_.fetch_add(1, std::memory_order_seq_cst);  // the woken one spins first
    {
      std::lock_guard lock(mutex_);
      ++tokens_;
    }
    cv_.notify_one();
  }

  /// Parks until woken with a token (true: the caller now holds a spinning unit),
  /// !may_run(), or `wait`. `spinning`: the caller holds a unit, given up here.
  /// no_work() runs after the announcement, under the mutex: the worker sleeps only if
  /// it is true (the look that pairs with a waker's fence).
  template <class NoWork, class MayRun>
  bool park(std::chrono::nanoseconds wait, bool spinning, NoWork&& no_work,
            MayRun&& may_run) {
    std::unique_lock lock(mutex_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    if (spinning) spinning_.fetch_sub(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (no_work()) {
      cv_.wait_for(lock, wait, [&] { return tokens_ > 0 || !may_run(); });
    }
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    if (tokens_ == 0 || !may_run()) return false;
    --tokens_;
    return true;
  }

  /// Waits (no token taken) until done() or `wait`.
  template <class Done>
  void wait(std::chrono::nanoseconds wait, Done&& done) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, wait, done);
  }

  /// Runs change() under the mutex, then wakes every parked worker.
  template <class Change>
  void notify_all_after(Change&& change) {
    {
      std::lock_guard lock(mutex_);
      change();
    }
    cv_.notify_all();
  }

  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::size_t tokens_ = 0;  // mutex_: wakes not yet taken by a parked worker
  alignas(64) std::atomic<std::uint32_t> sleepers_{0};
  std::atomic<std::uint32_t> spinning_{0};
};

}  // namespace outgrow::detail
