// outgrow/redis/detail/repair_set.hpp — the keys a Redis cache must delete once Redis is
// reachable again.
//
// A put or erase that may not have reached Redis leaves Redis possibly holding an older
// value. redis_tier remembers such keys here (as Redis keys), up to a bound; beyond it,
// or when a clear failed, it remembers "clear the whole namespace" instead. The next
// healthy connection takes the set (take), deletes the keys, and gives back what it
// could not delete (give_back). A lock-free flag lets the request path skip all this
// when nothing is pending. Thread-safe; repairs die with the process.
#pragma once

#include <atomic>
#include <cstddef>
#include <iterator>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace outgrow::detail {

class redis_repair_set {
 public:
  /// What a repair must do: delete `keys`, or clear the namespace when `clear_all`.
  struct work {
    std::vector<std::string> keys;
    bool clear_all = false;
  };

  /// Remembers at most `max_keys` keys (0 = remember nothing).
  explicit redis_repair_set(std::size_t max_keys) noexcept : max_keys_(max_keys) {}

  /// Remembers `key`; beyond max_keys, remembers "clear the namespace" instead.
  /// Throws: std::bad_alloc if memory runs out (the caller falls back on TTLs).
  void remember(std::string key) {
    if (max_keys_ == 0) return;
    std::lock_guard lock(mutex_);
    if (clear_) return;
    if (keys_.size() >= max_keys_ && !keys_.contains(key)) {
      clear_ = true;
      keys_.clear();
    } else {
      keys_.insert(std::move(key));
    }
    flag_.store(true, std::memory_order_release);
  }

  /// Remembers "clear the namespace" (covers every key).
  void remember_clear() noexcept {
    if (max_keys_ == 0) return;
    std::lock_guard lock(mutex_);
    clear_ = true;
    keys_.clear();
    flag_.store(true, std::memory_order_release);
  }

  /// True when something may be pending (cheap: one atomic load).
  [[nodiscard]] bool flagged() const noexcept {
    return flag_.load(std::memory_order_acquire);
  }

  /// Takes everything pending (empty work when nothing is). When the keys cannot be
  /// copied out (allocation failure), takes nothing: the next repair retries.
  [[nodiscard]] work take() noexcept {
    work w;
    std::lock_guard lock(mutex_);
    if (!flag_.load(std::memory_order_relaxed)) return w;
    try {
      w.keys.assign(std::make_move_iterator(keys_.begin()),
                    std::make_move_iterator(keys_.end()));
    } catch (...) {
      return {};
    }
    keys_.clear();
    w.clear_all = std::exchange(clear_, false);
    flag_.store(false, std::memory_order_release);
    return w;
  }

  /// Gives back what a failed repair did not do.
  void give_back(work w) noexcept {
    std::lock_guard lock(mutex_);
    if (w.clear_all) {
      clear_ = true;
      keys_.clear();
    } else if (!clear_) {
      try {
        for (auto& k : w.keys) keys_.insert(std::move(k));
      } catch (...) {
        clear_ = true;
        keys_.clear();
      }
    }
    flag_.store(true, std::memory_order_release);
  }

  /// Keys pending now.
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(mutex_);
    return keys_.size();
  }

 private:
  const std::size_t max_keys_;
  mutable std::mutex mutex_;
  std::unordered_set<std::string> keys_;
  bool clear_ = false;
  std::atomic<bool> flag_{false};
};

}  // namespace outgrow::detail
