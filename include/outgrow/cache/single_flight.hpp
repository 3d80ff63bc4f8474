// outgrow/cache/single_flight.hpp — concurrent callers for one key share one call.
//
// When a popular key is missing from a cache, every request that misses it would ask
// the database at once (a "cache stampede" / "thundering herd"). single_flight makes
// the first caller for a key the leader, who runs the call; callers arriving while it
// runs wait and receive the leader's result — or its exception. Nothing is cached:
// once the call has finished, the next caller for that key starts a new one. (Go's
// golang.org/x/sync/singleflight; Caffeine's "a miss computes once per key".)
//
//   outgrow::single_flight<std::string, user> flights;
//   // any number of threads at once:
//   user u = flights.run("user:42", [&] { return db.load_user(42); });
//   // db.load_user ran once for all callers waiting together; if it threw, every one
//   // of them got the same exception.
//
// Lower level, for batching (tiered_cache::get_all loads every key it leads in one
// call to the store):
//
//   auto t = flights.join(key);
//   if (t.leader()) {
//     try { t.complete(load(key)); } catch (...) { t.fail(std::current_exception()); }
//   }
//   value v = t.get();                  // leader and followers alike; rethrows failures
//
// A leader ticket destroyed without complete()/fail() fails its followers with
// outgrow::single_flight_abandoned, so a leader that unwinds never strands waiters.
// Calling run() for key K from inside the call for K deadlocks (it waits for itself).
//
// Thread-safety: every member may be called from any thread. The function passed to
// run() runs on the leader's thread without any lock held.
// Complexity: join/run O(1) expected (one hash-map operation under a mutex); followers
// block on a shared future. Memory: one small record per key with a call in flight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include <outgrow/core/metrics.hpp>

namespace outgrow {

/// Thrown to followers whose leader's ticket was destroyed without a result.
class single_flight_abandoned : public std::runtime_error {
 public:
  single_flight_abandoned()
      : std::runtime_error("single_flight: the leading call ended without a result") {}
};

/// Counters of a single_flight.
struct single_flight_metrics {
  static constexpr std::string_view metrics_name = "single_flight_metrics";
  std::uint64_t calls = 0;       ///< join()/run() calls
  std::uint64_t executions = 0;  ///< calls that led (ran the function)
  std::uint64_t shared = 0;      ///< calls that waited for another caller's result
  std::uint64_t failures = 0;    ///< executions that ended with an exception

  template <class F>
  void for_each_metric(F&& f) const {
    f("calls", calls);
    f("executions", executions);
    f("shared", shared);
    f("failures", failures);
  }
};

template <class Key, class Value, class Hash = std::hash<Key>,
          class KeyEqual = std::equal_to<Key>>
class single_flight {
  static_assert(std::is_copy_constructible_v<Value>,
                "single_flight: every waiter receives a copy of the result, so Value "
                "must be copy constructible");

  struct call {
    std::promise<Value> promise;
    std::shared_future<Value> result = promise.get_future().share();
    std::size_t callers = 1;  // guarded by single_flight::mutex_
  };

 public:
  using key_type = Key;
  using value_type = Value;

  single_flight() = default;
  single_flight(const single_flight&) = delete;
  single_flight& operator=(const single_flight&) = delete;

  /// A caller's place in one call: the leader completes it, everybody get()s it.
  class ticket {
   public:
    ticket(ticket&& o) noexcept
        : owner_(std::exchange(o.owner_, nullptr)),
          key_(std::move(o.key_)),
          call_(std::move(o.call_)),
          leader_(o.leader_),
          done_(o.done_) {}
    ticket& operator=(ticket&&) = delete;
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket() {
      if (owner_ != nullptr && leader_ && !done_) {
        finish([&] {
          call_->promise.set_exception(std::make_exception_ptr(single_flight_abandoned{}));
        });
        owner_->failures_.add();
      }
    }

    /// True for the caller that must run the call and complete() or fail() it.
    [[nodiscard]] bool leader() const noexcept { return leader_; }

    /// Leader only: publishes the result to every waiter. The key is released first,
    /// so a caller arriving afterwards starts a new call.
    /// Throws: std::logic_error if not the leader or already completed/failed.
    void complete(Value value) {
      finish([&] { call_->promise.set_value(std::move(value)); });
    }
    /// Leader only: publishes the failure to every waiter.
    /// Throws: std::logic_error if not the leader or already completed/failed.
    void fail(std::exception_ptr error) {
      finish([&] { call_->promise.set_exception(std::move(error)); });
      owner_->failures_.add();
    }

    /// Waits for the result (a copy).
    /// Throws: the call's exception if it failed; single_flight_abandoned if the leader's
    /// ticket was destroyed without a result.
    [[nodiscard]] Value get() const { return call_->result.get(); }

   private:
    friend class single_flight;
    ticket(single_flight* owner, Key key, std::shared_ptr<call> c, bool leader)
        : owner_(owner), key_(std::move(key)), call_(std::move(c)), leader_(leader) {}

    template <class Publish>
    void finish(Publish&& publish) {
      if (!leader_ || done_) {
        throw std::logic_error("single_flight: only the leader completes a call, once");
      }
      done_ = true;
      owner_->release(key_, call_.get(), publish);
    }

    single_flight* owner_;
    Key key_;
    std::shared_ptr<call> call_;
    bool leader_ = false;
    bool done_ = false;
  };

  /// Joins the call in flight for `key`, or starts one (the returned ticket leads).
  [[nodiscard]] ticket join(const Key& key) {
    std::lock_guard lock(mutex_);
    calls_.add();
    auto [it, inserted] = flights_.try_emplace(key);
    if (inserted) {
      it->second = std::make_shared<call>();
      executions_.add();
      return ticket(this, key, it->second, true);
    }
    ++it->second->callers;
    shared_.add();
    return ticket(this, key, it->second, false);
  }

  /// Runs `fn()` once for all concurrent callers with this key and returns its result
  /// (each caller gets a copy).
  /// Throws: fn's exception, to every caller, if it throws.
  template <class F>
  requires std::is_invocable_r_v<Value, F&>
  Value run(const Key& key, F&& fn) {
    ticket t = join(key);
    if (t.leader()) {
      try {
        t.complete(std::invoke(fn));
      } catch (...) {
        t.fail(std::current_exception());
      }
    }
    return t.get();
  }

  /// Keys with a call in flight now.
  [[nodiscard]] std::size_t in_flight() const {
    std::lock_guard lock(mutex_);
    return flights_.size();
  }

  /// Callers (leader included) sharing the call in flight for `key`; 0 if none.
  [[nodiscard]] std::size_t waiting(const Key& key) const {
    std::lock_guard lock(mutex_);
    auto it = flights_.find(key);
    return it == flights_.end() ? 0 : it->second->callers;
  }

  [[nodiscard]] single_flight_metrics metrics() const noexcept {
    return {.calls = calls_.load(),
            .executions = executions_.load(),
            .shared = shared_.load(),
            .failures = failures_.load()};
  }

 private:
  template <class Publish>
  void release(const Key& key, const call* c, Publish& publish) {
    {
      std::lock_guard lock(mutex_);
      auto it = flights_.find(key);
      if (it != flights_.end() && it->second.get() == c) flights_.erase(it);
    }
    publish();  // outside the lock: waking waiters never contends with join()
  }

  mutable std::mutex mutex_;
  std::unordered_map<Key, std::shared_ptr<call>, Hash, KeyEqual> flights_;
  counter calls_;
  counter executions_;
  counter shared_;
  counter failures_;
};

}  // namespace outgrow
