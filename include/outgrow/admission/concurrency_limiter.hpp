// outgrow/admission/concurrency_limiter.hpp — a concurrency limit that adapts to latency.
//
// What: Netflix's concurrency-limits SimpleLimiter. A call takes a permit if fewer than
// `limit()` calls are in flight, and is rejected at once otherwise; when it ends, its
// permit reports the outcome, and the limit algorithm (AIMD, Vegas, Gradient2,
// limit_algorithms.hpp) moves the limit from the measured round-trip time. By Little's
// law, concurrency = throughput × latency: when latency rises because work is queueing,
// the limit falls and the excess is rejected fast, so the calls admitted still see the
// unloaded latency and goodput stays near capacity instead of collapsing.
//
// When: in front of anything whose capacity you do not know or that changes (a database,
// a downstream service, your own request handlers under overload). A bulkhead's fixed
// limit is the simpler choice when the capacity is known.
//
//   outgrow::concurrency_limiter<outgrow::gradient2_limit> limiter;
//   if (auto permit = limiter.try_acquire()) {
//     auto r = handle(request);
//     r.overloaded ? permit->dropped() : permit->success();   // feeds the rtt sample
//   } else {
//     reply_503();                                             // shed, fast
//   }
//
// Outcomes (as Netflix's listener): success() and dropped() send a sample (rtt = now −
// acquire time, in_flight = the count at acquire, itself included; dropped marks a
// timeout or downstream rejection); ignore() sends none (the call says nothing about
// capacity: a validation error, a cache hit). A permit destroyed without an outcome
// counts as ignore. Rejected calls send no sample.
//
// Trade-offs: the limit needs traffic to learn (it starts at initial_limit); samples are
// serialized through one mutex (try_acquire itself is a lock-free CAS), so at very high
// call rates wrap the algorithm in windowed_limit. The limit is per instance.
//
// Thread-safety: every member may be called concurrently; a permit may end on another
// thread. Complexity: try_acquire O(1), one CAS; an outcome O(1) under a mutex.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

#include <outgrow/admission/limit_algorithms.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

struct concurrency_limiter_metrics {
  static constexpr std::string_view metrics_name = "concurrency_limiter_metrics";
  std::uint64_t admitted = 0;
  std::uint64_t rejected = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t dropped = 0;
  std::uint64_t ignored = 0;
  int limit = 0;      ///< now
  int in_flight = 0;  ///< now

  template <class F>
  void for_each_metric(F&& f) const {
    f("admitted", admitted);
    f("rejected", rejected);
    f("succeeded", succeeded);
    f("dropped", dropped);
    f("ignored", ignored);
    f("limit", limit);
    f("in_flight", in_flight);
  }
};

template <limit_algorithm Limit = vegas_limit, clock_source Clock = steady_clock_source>
class concurrency_limiter {
 public:
  using limit_type = Limit;
  using clock_type = Clock;

  /// A call's permission to run: report success(), dropped() or ignore() once (later
  /// calls do nothing); destroyed without one = ignore(). Move-only.
  class permit {
   public:
    permit(permit&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)),
          start_(other.start_),
          in_flight_(other.in_flight_) {}
    permit& operator=(permit&& other) noexcept {
      if (this != &other) {
        ignore();
        owner_ = std::exchange(other.owner_, nullptr);
        start_ = other.start_;
        in_flight_ = other.in_flight_;
      }
      return *this;
    }
    ~permit() { ignore(); }

    void success() { finish(outcome::success); }
    void dropped() { finish(outcome::dropped); }
    void ignore() noexcept {
      if (owner_ != nullptr)
        std::exchange(owner_, nullptr)->release(start_, 0, outcome::ignored);
    }

   private:
    friend class concurrency_limiter;
    permit(concurrency_limiter* owner, typename Clock::time_point start, int in_flight)
        : owner_(owner), start_(start), in_flight_(in_flight) {}
    void finish(int kind) {
      if (owner_ != nullptr)
        std::exchange(owner_, nullptr)->release(start_, in_flight_, kind);
    }
    concurrency_limiter* owner_;
    typename Clock::time_point start_;
    int in_flight_;
  };

  explicit concurrency_limiter(Limit limit = Limit{}, Clock clock = {})
      : algorithm_(std::move(limit)),
        clock_(std::move(clock)),
        origin_(clock_.now()),
        limit_(admitted_limit()) {}

  concurrency_limiter(const concurrency_limiter&) = delete;
  concurrency_limiter& operator=(const concurrency_limiter&) = delete;

  /// A permit if fewer than limit() calls are in flight; nullopt (rejected) otherwise.
  [[nodiscard]] std::optional<permit> try_acquire() {
    int n = in_flight_.load(std::memory_order_relaxed);
    for (;;) {
      if (n >= limit_.load(std::memory_order_relaxed)) {
        rejected_.add();
        return std::nullopt;
      }
      if (in_flight_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel,
                                           std::memory_order_relaxed)) {
        admitted_.add();
        return permit(this, clock_.now(), n + 1);
      }
    }
  }

  [[nodiscard]] int limit() const noexcept {
    return limit_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] int in_flight() const noexcept {
    return in_flight_.load(std::memory_order_relaxed);
  }

  /// A copy of the algorithm's state (under the sample mutex).
  [[nodiscard]] Limit algorithm() const {
    std::lock_guard lock(mutex_);
    return algorithm_;
  }

  [[nodiscard]] concurrency_limiter_metrics metrics() const {
    return {.admitted = admitted_.load(),
            .rejected = rejected_.load(),
            .succeeded = succeeded_.load(),
            .dropped = dropped_.load(),
            .ignored = ignored_.load(),
            .limit = limit(),
            .in_flight = in_flight()};
  }

 private:
  enum outcome : int { success = 0, dropped = 1, ignored = 2 };

  void release(typename Clock::time_point start, int in_flight, int kind) noexcept {
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    if (kind == outcome::ignored) {
      ignored_.add();
      return;
    }
    (kind == outcome::dropped ? dropped_ : succeeded_).add();
    const auto now = clock_.now();
    const auto rtt = std::chrono::duration_cast<std::chrono::nanoseconds>(now - start);
    const auto since =
        std::chrono::duration_cast<std::chrono::nanoseconds>(start - origin_);
    std::lock_guard lock(mutex_);
    try {
      algorithm_.on_sample(since, rtt, in_flight, kind == outcome::dropped);
    } catch (...) {
      // A sample the algorithm refuses (vegas: rtt 0 on a coarse clock) changes nothing.
      return;
    }
    limit_.store(admitted_limit(), std::memory_order_relaxed);
  }

  // The algorithm's limit as the in-flight bound: never below 1 (a limit of 0 would
  // admit nothing again, so no sample could ever raise it).
  [[nodiscard]] int admitted_limit() const {
    return std::max(1, static_cast<int>(algorithm_.limit()));
  }

  mutable std::mutex mutex_;
  Limit algorithm_;
  Clock clock_;
  const typename Clock::time_point origin_;
  alignas(64) std::atomic<int> in_flight_{0};
  std::atomic<int> limit_;
  counter admitted_, rejected_, succeeded_, dropped_, ignored_;
};

}  // namespace outgrow
