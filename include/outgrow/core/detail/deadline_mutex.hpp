// outgrow/core/detail/deadline_mutex.hpp — a mutex whose lock can give up at a deadline.
//
// std::timed_mutex semantics (lock, try_lock, try_lock_until) built on std::mutex +
// std::condition_variable. Why not std::timed_mutex: libstdc++'s try_lock_until uses
// pthread_mutex_clocklock, which GCC 12's ThreadSanitizer does not intercept, so every
// unlock was reported as the unlock of an unlocked mutex (and a TSan run of the
// redis_cache example hung). Used by redis_invalidation_bus for its publisher connection:
// each publisher waits for it only until its own deadline.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace outgrow::detail {

/// A mutex whose lock waits until a deadline: std::timed_mutex semantics built on
/// std::mutex + std::condition_variable. (libstdc++'s timed_mutex::try_lock_until uses
/// pthread_mutex_clocklock, which ThreadSanitizer in GCC 12 does not intercept: it then
/// reports every unlock as an unlock of an unlocked mutex.)
class deadline_mutex {
 public:
  void lock() {
    std::unique_lock l(m_);
    cv_.wait(l, [&] { return !held_; });
    held_ = true;
  }
  bool try_lock() {
    std::lock_guard l(m_);
    if (held_) return false;
    held_ = true;
    return true;
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    std::unique_lock l(m_);
    if (!cv_.wait_until(l, deadline, [&] { return !held_; })) return false;
    held_ = true;
    return true;
  }
  void unlock() {
    {
      std::lock_guard l(m_);
      held_ = false;
    }
    cv_.notify_one();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool held_ = false;
};

}  // namespace outgrow::detail
