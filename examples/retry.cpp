// retry: a flaky inventory service called with retries (full jitter backoff), then the
// same service in a total outage — where a retry budget shared by all callers keeps
// the retries from multiplying the load on a dependency that is already down.
//
// Simulated time (manual_clock), so the example runs instantly and prints the same
// every time. The requests come from many concurrent callers: the shared clock marks
// their arrivals, and each caller's backoff wait is its own (the sleeper below adds the
// waits up instead of sleeping). In a real service, `outgrow::retry<>` sleeps for real
// and `async_run` waits on an Asio timer.
#include <outgrow/resilience/retry.hpp>

#include <chrono>
#include <cstdint>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

using namespace std::chrono_literals;

namespace {

struct inventory_service {
  std::mt19937_64 rng{2024};
  double failure_rate = 0.3;
  bool down = false;
  std::uint64_t calls = 0;

  int stock(int item) {
    ++calls;
    if (down || static_cast<double>(rng() >> 11) * 0x1.0p-53 < failure_rate) {
      throw std::runtime_error("inventory: 503 service unavailable");
    }
    return item % 17;
  }
};

/// A retry Sleeper that sums the waits instead of sleeping (see the comment above).
struct concurrent_caller_sleeper {
  std::chrono::nanoseconds* waited;
  void sleep(outgrow::manual_clock& /*clock*/, std::chrono::nanoseconds d) const {
    *waited += d;
  }
};

template <class Retry>
std::uint64_t serve(Retry& retry, inventory_service& service, outgrow::manual_clock& clock,
                    int requests) {
  std::uint64_t answered = 0;
  for (int i = 0; i < requests; ++i) {
    clock.advance(1ms);  // 1000 requests per second
    if (retry.try_run([&] { return service.stock(i); }).ok()) ++answered;
  }
  return answered;
}

}  // namespace

int main() {
  outgrow::manual_clock clock;
  inventory_service service;
  std::chrono::nanoseconds waited{0};
  const concurrent_caller_sleeper sleeper{&waited};
  using retry_type = outgrow::retry<outgrow::full_jitter_backoff, outgrow::manual_clock,
                                    concurrent_caller_sleeper>;

  // 1. A flaky dependency: 30 % of calls fail. Up to 3 attempts, full jitter from 50 ms.
  fmt::print("1) flaky service (30 % of calls fail), 1000 requests\n");
  retry_type no_retry({.max_attempts = 1, .seed = 1}, {50ms, 2s}, clock, sleeper);
  const auto bare = serve(no_retry, service, clock, 1000);
  retry_type retry({.max_attempts = 3, .seed = 1}, {50ms, 2s}, clock, sleeper);
  const auto with_retry = serve(retry, service, clock, 1000);
  fmt::print("   without retry: {:5.1f} % answered\n", static_cast<double>(bare) / 10.0);
  fmt::print("   with retry:    {:5.1f} % answered, {:.0f} ms waited per retry\n",
             static_cast<double>(with_retry) / 10.0,
             std::chrono::duration<double, std::milli>(waited).count() /
                 static_cast<double>(retry.metrics().retries));
  fmt::print("   {}\n", retry.metrics());

  // 2. A total outage: 10,000 requests over 10 s. Without a budget every request makes
  //    3 attempts; with a shared budget (20 % of requests + 10/s) retries stay bounded.
  fmt::print("2) total outage, 10000 requests over 10 s\n");
  service.down = true;
  retry_type unbudgeted({.max_attempts = 3, .seed = 2}, {50ms, 2s}, clock, sleeper);
  service.calls = 0;
  serve(unbudgeted, service, clock, 10'000);
  fmt::print("   no budget:     {} calls to the dead service ({:.2f} x the requests)\n",
             service.calls, static_cast<double>(service.calls) / 10000.0);

  outgrow::retry_budget<outgrow::manual_clock> budget({}, clock);  // shared by all callers
  retry_type budgeted({.max_attempts = 3, .seed = 2}, {50ms, 2s}, budget, sleeper);
  service.calls = 0;
  serve(budgeted, service, clock, 10'000);
  fmt::print("   shared budget: {} calls to the dead service ({:.2f} x the requests)\n",
             service.calls, static_cast<double>(service.calls) / 10000.0);
  fmt::print("   {}\n   {}\n", budgeted.metrics(), budget.metrics());
  // The budget held: well under 1.3 x the requests reached the dead service.
  return service.calls < 13'000 ? 0 : 1;
}
