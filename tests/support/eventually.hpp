// tests/support/eventually.hpp — waits (real time) for a condition that other threads
// make true, for tests of real threads (worker pools, hand-offs), never to make time pass.
#pragma once

#include <chrono>
#include <thread>

namespace outgrow_test {

/// Polls `pred` (yielding) until it holds; false after a generous limit (sanitizer builds
/// on a loaded machine), so that a bug fails the test instead of hanging it.
template <class Pred>
bool eventually(Pred pred,
                std::chrono::steady_clock::duration limit = std::chrono::seconds(120)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace outgrow_test
