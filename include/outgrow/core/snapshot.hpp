// outgrow/core/snapshot.hpp — publish immutable snapshots; readers never lock.
//
// Read-mostly structures (rings, routers, balancer membership) keep their state in an
// immutable object. A writer builds a new one and publishes it; readers keep using
// whichever snapshot they hold, so a lookup never waits for a membership change.
//
//   outgrow::published<const table> current(std::make_shared<const table>(...));
//   // any thread, many times a second:
//   const table& t = current.local();          // one atomic load when unchanged
//   t.lookup(key);
//   // a writer, rarely:
//   current.publish(std::make_shared<const table>(rebuilt));
//
// How readers avoid locks: each thread keeps, per published object, the snapshot it last
// saw and the version it saw it at (a small direct-mapped thread-local cache). `local()`
// compares that version with one acquire load of the shared version number — no
// read-modify-write, no shared cache line written — and only after a publish does it
// take the slow path: copying the shared_ptr under a mutex held for a few
// nanoseconds. (std::atomic<std::shared_ptr> would be the same lock in libstdc++, and
// GCC 12's version is reported racy by ThreadSanitizer.) `load()` always takes the slow
// path and returns an owning pointer you can keep.
//
// Lifetime: the reference from local() stays valid until this thread's next call to
// local() on any published object (another object may evict the cache slot). Old
// snapshots are freed when the last thread holding one moves on, or at thread exit;
// the cache keeps at most 16 snapshots of each type T alive per thread.
//
// Thread-safety: publish(), load() and local() may be called from any thread;
// concurrent publish() calls are serialized by the caller (or last-writer-wins).
// Complexity: local() O(1), one acquire load when unchanged; publish() O(1).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace outgrow {

template <class T>
class published {
 public:
  using pointer = std::shared_ptr<const T>;

  /// Throws std::invalid_argument if `initial` is null (local() returns a reference).
  explicit published(pointer initial) : current_(checked(std::move(initial))) {}
  published(const published&) = delete;
  published& operator=(const published&) = delete;

  /// Replaces the snapshot. Readers see it on their next local()/load(). Throws
  /// std::invalid_argument if `next` is null (and keeps the current snapshot).
  void publish(pointer next) {
    next = checked(std::move(next));
    pointer retired;
    {
      std::lock_guard lock(mutex_);
      retired = std::exchange(current_, std::move(next));
      version_.fetch_add(1, std::memory_order_acq_rel);
    }
    // `retired` is released here, outside the lock.
  }

  /// An owning pointer to the current snapshot (slow path; keep it as long as needed).
  [[nodiscard]] pointer load() const {
    std::lock_guard lock(mutex_);
    return current_;
  }

  /// The current snapshot through this thread's cache (fast path, see header).
  [[nodiscard]] const T& local() const {
    const std::uint64_t version = version_.load(std::memory_order_acquire);
    cache_entry& e = cache()[id_ % cache_slots];
    if (e.id != id_ || e.version != version) {
      // Version first, pointer second: the pointer is at least as new as `version`.
      e.snapshot = load();
      e.id = id_;
      e.version = version;
    }
    return *e.snapshot;
  }

  /// Number of publishes so far.
  [[nodiscard]] std::uint64_t version() const noexcept {
    return version_.load(std::memory_order_acquire);
  }

 private:
  static constexpr std::size_t cache_slots = 16;

  static pointer checked(pointer p) {
    if (p == nullptr) {
      throw std::invalid_argument("published: snapshot must not be null, got nullptr");
    }
    return p;
  }
  struct cache_entry {
    std::uint64_t id = 0;  // 0 = empty; ids start at 1 and are never reused
    std::uint64_t version = 0;
    pointer snapshot;
  };
  static std::array<cache_entry, cache_slots>& cache() {
    thread_local std::array<cache_entry, cache_slots> entries;
    return entries;
  }
  static std::uint64_t next_id() noexcept {
    static std::atomic<std::uint64_t> ids{0};
    return ids.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  mutable std::mutex mutex_;  // guards current_ (slow path and writers only)
  pointer current_;
  std::atomic<std::uint64_t> version_{0};
  const std::uint64_t id_ = next_id();
};

}  // namespace outgrow
