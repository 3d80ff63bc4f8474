// tests/support/gate.hpp — a gate that handler or store calls wait at until the test
// opens it (real threads, real waits; for tests of what stays stuck at a deadline).
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace outgrow_test {

struct gate {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> waiting{0};  ///< calls that reached wait()
  void wait() {
    waiting.fetch_add(1);
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return open; });
  }
  void release() {
    {
      std::lock_guard lock(m);
      open = true;
    }
    cv.notify_all();
  }
};

}  // namespace outgrow_test
