// outgrow/redis/detail/reconnect_gate.hpp — spaces connect attempts to a server that is
// down.
//
// After a failed connect the next attempt waits for a full-jitter backoff, and only one
// caller at a time probes; while healthy anyone may connect. Every Redis part's
// connections go through one (per pool, per subscriber): without it a fleet of clients
// would hammer a restarting Redis with connects in lock-step.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <utility>

#include <outgrow/core/backoff.hpp>

namespace outgrow::detail {

/// Spaces connect attempts while a server is unreachable: after a failed attempt the
/// next one waits for the backoff, and only one caller probes at a time. While healthy
/// (no failure since the last success) anyone may connect. `seed` seeds the jitter (pass
/// resolve_seed(config.seed): random per instance unless the user set one).
template <class Clock>
class reconnect_gate {
 public:
  using time_point = typename Clock::time_point;
  reconnect_gate(full_jitter_backoff backoff, std::uint64_t seed, Clock clock)
      : backoff_(backoff), rng_(seed), clock_(std::move(clock)) {}

  /// True when the caller may attempt a connect now (and must report the outcome).
  bool try_enter() {
    std::lock_guard lock(mutex_);
    if (failures_ == 0) return true;
    if (probing_ || clock_.now() < next_) return false;
    probing_ = true;
    return true;
  }
  void succeeded() {
    std::lock_guard lock(mutex_);
    failures_ = 0;
    previous_ = {};
    probing_ = false;
  }
  void failed() {
    std::lock_guard lock(mutex_);
    ++failures_;
    previous_ = backoff_.delay(std::min<std::uint32_t>(failures_, 64), previous_, rng_);
    next_ = clock_.now() + previous_;
    probing_ = false;
  }
  /// When the next attempt may happen (time_point{} when healthy).
  time_point next_attempt() const {
    std::lock_guard lock(mutex_);
    return failures_ == 0 ? time_point{} : next_;
  }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  mutable std::mutex mutex_;
  full_jitter_backoff backoff_;
  std::mt19937_64 rng_;
  Clock clock_;
  std::uint32_t failures_ = 0;
  std::chrono::nanoseconds previous_{};
  time_point next_{};
  bool probing_ = false;
};

}  // namespace outgrow::detail
