// outgrow/core/detail/periodic_task.hpp — run a function every interval on an Asio timer.
//
// The scheduling engine behind load_balancer::start_health_checks and
// read_write_splitter::start_polling: a steady_timer on the user's executor re-armed
// after each run, a failing task that does not stop the schedule, and a stop() that
// waits for a run in progress. Shared state lives behind a shared_ptr so a completion
// handler that fires after stop() (or destruction) finds it stopped and does nothing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

namespace outgrow::detail {

/// Runs `task` every `interval` on a steady_timer bound to the user's executor until
/// stop(). stop() waits for a running task and must not be called from inside it. The
/// executor's execution context must outlive the periodic_task or its stop().
class periodic_task {
 public:
  periodic_task(boost::asio::any_io_executor executor, std::chrono::nanoseconds interval,
                std::function<void()> task)
      : shared_(std::make_shared<state>(std::move(executor), interval, std::move(task))) {
    std::lock_guard lock(shared_->mutex);
    arm(shared_);
  }
  periodic_task(const periodic_task&) = delete;
  periodic_task& operator=(const periodic_task&) = delete;
  ~periodic_task() { stop(); }

  void stop() {
    std::unique_lock lock(shared_->mutex);
    shared_->stopped = true;
    if (shared_->timer) shared_->timer->cancel();
    shared_->idle.wait(lock, [&] { return !shared_->running; });
    shared_->timer.reset();
  }

 private:
  struct state {
    state(boost::asio::any_io_executor executor, std::chrono::nanoseconds every,
          std::function<void()> fn)
        : timer(std::in_place, std::move(executor)), interval(every), task(std::move(fn)) {}
    std::mutex mutex;
    std::condition_variable idle;
    std::optional<boost::asio::steady_timer> timer;
    std::chrono::nanoseconds interval;
    std::function<void()> task;
    bool stopped = false;
    bool running = false;
  };

  /// Arms the timer; state::mutex held.
  static void arm(const std::shared_ptr<state>& s) {
    s->timer->expires_after(s->interval);
    s->timer->async_wait(
        [weak = std::weak_ptr<state>(s)](const boost::system::error_code& ec) {
          if (ec) return;
          const std::shared_ptr<state> self = weak.lock();
          if (!self) return;
          {
            std::lock_guard lock(self->mutex);
            if (self->stopped) return;
            self->running = true;
          }
          try {
            self->task();
          } catch (...) {
            // A failing task must not stop the schedule.
          }
          std::lock_guard lock(self->mutex);
          self->running = false;
          self->idle.notify_all();
          if (!self->stopped) arm(self);
        });
  }

  std::shared_ptr<state> shared_;
};

}  // namespace outgrow::detail
