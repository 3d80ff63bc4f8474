// outgrow/cache/detail/background.hpp — tiered_cache's background scheduling.
//
// background_scheduler runs the cache's background work (write-behind flushes and
// retries, refresh-ahead reloads) on the executor given to start(): one-off posts, a
// coalesced "flush now" post, and one steady_timer armed for the buffer's next
// deadline. Every handler enters a shared background_control first, so stop() can
// refuse new handlers and wait for the running ones (handlers queued after the cache
// is gone only touch the control block they share). It also owns the helper thread
// that shutdown(deadline) drains on, so that the drain can outlive the deadline.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <outgrow/core/error.hpp>

namespace outgrow::detail {

/// Shared with background handlers: lets shutdown() stop them and wait for running ones.
struct background_control {
  std::mutex mutex;
  std::condition_variable idle;
  bool stopped = false;
  std::size_t running = 0;

  bool enter() {
    std::lock_guard lock(mutex);
    if (stopped) return false;
    ++running;
    return true;
  }
  void leave() {
    std::lock_guard lock(mutex);
    if (--running == 0) idle.notify_all();
  }
  void stop_and_wait() {
    std::unique_lock lock(mutex);
    stopped = true;
    idle.wait(lock, [&] { return running == 0; });
  }
  /// As stop_and_wait, giving up at `deadline`; true if none is running.
  bool stop_and_wait_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex);
    stopped = true;
    return idle.wait_until(lock, deadline, [&] { return running == 0; });
  }
};

inline std::uint64_t next_cache_id() noexcept {
  static std::atomic<std::uint64_t> ids{0};
  return ids.fetch_add(1, std::memory_order_relaxed) + 1;
}

/// Background work of one cache on one executor. Not movable (handlers hold `this`).
template <class Clock>
class background_scheduler {
 public:
  using time_point = typename Clock::time_point;

  /// `clock` must outlive the scheduler.
  explicit background_scheduler(const Clock& clock) : clock_(clock) {}
  background_scheduler(const background_scheduler&) = delete;
  background_scheduler& operator=(const background_scheduler&) = delete;
  ~background_scheduler() { join_helper(); }

  /// Runs background work on `executor` from now on; `with_timer` for deadline wake-ups.
  /// Throws: config_error if called a second time.
  void start(boost::asio::any_io_executor executor, bool with_timer) {
    require(!executor_.has_value(), "tiered_cache", "start(executor)", "called once",
            "a second call");
    executor_.emplace(std::move(executor));
    if (with_timer) timer_.emplace(*executor_);
  }

  [[nodiscard]] bool started() const noexcept { return executor_.has_value(); }
  [[nodiscard]] bool timer_armed() const noexcept {
    return timer_armed_.load(std::memory_order_acquire);
  }

  /// Runs f() on the executor, unless stopped by then. Only after start().
  template <class F>
  void post(F f) {
    boost::asio::post(*executor_, [ctl = control_, f = std::move(f)]() mutable {
      if (!ctl->enter()) return;
      f();
      ctl->leave();
    });
  }

  /// As post(f), but at most one such post is queued at a time. Only after start().
  template <class F>
  void post_once(F f) {
    if (posted_.exchange(true, std::memory_order_acq_rel)) return;
    boost::asio::post(*executor_, [this, ctl = control_, f = std::move(f)]() mutable {
      if (!ctl->enter()) return;
      posted_.store(false, std::memory_order_release);
      f();
      ctl->leave();
    });
  }

  /// Arms the timer to run f() at `next` (at once if due), unless there is no
  /// deadline, no timer, `closed` is set, or the timer is already armed as early.
  template <class F>
  void arm(std::optional<time_point> next, const std::atomic<bool>& closed, F f) noexcept {
    try {
      std::lock_guard lock(timer_mutex_);
      if (!next || !timer_ || closed.load(std::memory_order_acquire)) {
        timer_armed_.store(false, std::memory_order_release);
        return;
      }
      if (timer_armed_.load(std::memory_order_acquire) && armed_for_ <= *next) return;
      const auto wait = std::max(
          std::chrono::duration_cast<std::chrono::nanoseconds>(*next - clock_.now()),
          std::chrono::nanoseconds::zero());
      timer_->expires_after(wait);
      armed_for_ = *next;
      timer_armed_.store(true, std::memory_order_release);
      timer_->async_wait([this, ctl = control_, f](const boost::system::error_code& ec) {
        if (ec == boost::asio::error::operation_aborted) return;
        if (!ctl->enter()) return;
        {
          std::lock_guard timer_lock(timer_mutex_);
          timer_armed_.store(false, std::memory_order_release);
        }
        f();
        ctl->leave();
      });
    } catch (...) {  // allocation failure arming the timer: poll()/flush() still work
    }
  }

  /// Refuses new handlers, waits for the running ones and cancels the timer.
  void stop() {
    control_->stop_and_wait();
    cancel_timer();
  }

  /// As stop(), waiting for running handlers only until `deadline`; true if none runs.
  bool stop_until(std::chrono::steady_clock::time_point deadline) {
    const bool idle = control_->stop_and_wait_until(deadline);
    cancel_timer();
    return idle;
  }

  /// Waits for running handlers (after a stop_until that gave up) and the helper thread.
  void wait_idle() {
    control_->stop_and_wait();
    join_helper();
  }

  /// Runs f() on a helper thread and waits for it until `deadline`; true if it
  /// finished. If not, the thread keeps running and wait_idle() (or the destructor)
  /// joins it. f must not throw.
  template <class F>
  bool run_until(F f, std::chrono::steady_clock::time_point deadline) {
    struct state {
      std::mutex mutex;
      std::condition_variable cv;
      bool done = false;
    };
    auto s = std::make_shared<state>();
    helper_ = std::thread([s, f = std::move(f)]() mutable {
      f();
      std::lock_guard lock(s->mutex);
      s->done = true;
      s->cv.notify_all();
    });
    bool finished = false;
    {
      std::unique_lock lock(s->mutex);
      finished = s->cv.wait_until(lock, deadline, [&] { return s->done; });
    }
    if (finished) helper_.join();
    return finished;
  }

 private:
  void cancel_timer() {
    // Destroying the timer cancels its wait; the queued handler only touches control_.
    std::lock_guard lock(timer_mutex_);
    timer_.reset();
    timer_armed_.store(false, std::memory_order_release);
  }

  void join_helper() {
    if (helper_.joinable()) helper_.join();
  }

  const Clock& clock_;
  std::optional<boost::asio::any_io_executor> executor_;
  std::shared_ptr<background_control> control_ = std::make_shared<background_control>();
  std::mutex timer_mutex_;
  std::optional<boost::asio::steady_timer> timer_;
  time_point armed_for_{};
  std::atomic<bool> timer_armed_{false};
  std::atomic<bool> posted_{false};
  std::thread helper_;
};

}  // namespace outgrow::detail
