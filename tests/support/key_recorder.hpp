// tests/support/key_recorder.hpp — the keys an invalidation bus delivered, for tests
// that check a message got through (across a cluster, after a failover).
//
//   outgrow_test::key_recorder at_b;
//   auto sub = b.subscribe(at_b.handler());
//   a.publish("user:42", 1);
//   CHECK(at_b.wait_seen("user:42", 5s));   // polls a real condition with a bound
#pragma once

#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <outgrow/cache/invalidation.hpp>

namespace outgrow_test {

class key_recorder {
 public:
  /// A handler that records each delivered key (clears and gaps carry none).
  outgrow::invalidation_handler<std::string> handler() {
    return [this](const outgrow::invalidation_event<std::string>& e) {
      std::lock_guard lock(mutex_);
      if (e.key) keys_.insert(*e.key);
    };
  }

  [[nodiscard]] bool seen(const std::string& key) const {
    std::lock_guard lock(mutex_);
    return keys_.count(key) == 1;
  }

  /// Polls every 10 ms until `key` was delivered (true) or `timeout` passed (false).
  [[nodiscard]] bool wait_seen(const std::string& key, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!seen(key)) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    return true;
  }

 private:
  mutable std::mutex mutex_;
  std::set<std::string> keys_;
};

}  // namespace outgrow_test
