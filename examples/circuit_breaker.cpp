// circuit_breaker: a payment provider that goes down for a while, called through a
// breaker. Prints the breaker's timeline (every transition with its time) and how many
// requests got a fallback answer instead of waiting on a dead dependency.
//
// Simulated time (manual_clock), so it runs instantly and prints the same every time.
#include <outgrow/resilience/circuit_breaker.hpp>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <fmt/chrono.h>
#include <fmt/format.h>

using namespace std::chrono_literals;

namespace {

// The dependency: healthy, then down from t=20s to t=95s, then healthy again.
struct payment_provider {
  const outgrow::manual_clock& clock;
  std::uint64_t calls = 0;
  std::string charge(int order) {
    ++calls;
    const auto t = clock.elapsed();
    if (t >= 20s && t < 95s) throw std::runtime_error("payment provider timed out");
    return fmt::format("charged order {}", order);
  }
};

std::string at(std::chrono::nanoseconds t) {
  return fmt::format("t={:>5.1f}s", std::chrono::duration<double>(t).count());
}

}  // namespace

int main() {
  outgrow::manual_clock clock;
  payment_provider provider{clock};
  outgrow::circuit_breaker<outgrow::consecutive_failures, outgrow::manual_clock> breaker(
      {.failure_threshold = 5, .open_for = 30s}, clock);

  fmt::print("Timeline (5 consecutive failures open the breaker for 30 s):\n");
  breaker.on_transition([](const outgrow::breaker_transition& t) {
    fmt::print("  {}  {} -> {}{}\n", at(t.at.time_since_epoch()), t.from, t.to,
               t.to == outgrow::breaker_state::open
                   ? fmt::format(" (for {:.0f}s)",
                                 std::chrono::duration<double>(t.open_for).count())
                   : std::string());
  });

  // 10 orders per second for two minutes.
  std::uint64_t charged = 0, deferred = 0, failed_fast = 0;
  for (int order = 0; order < 1200; ++order) {
    clock.advance(100ms);
    const std::string result = breaker.call([&] { return provider.charge(order); },
                                            [&](std::exception_ptr error) {
                                              // Rejected (error == nullptr) or failed:
                                              // defer the charge, answer now.
                                              (error ? deferred : failed_fast)++;
                                              return std::string("deferred");
                                            });
    if (result != "deferred") ++charged;
  }

  const auto m = breaker.metrics();
  fmt::print(
      "\n{} orders: {} charged, {} deferred after a failed call, {} deferred "
      "without calling the provider (breaker open)\n",
      m.calls(), charged, deferred, failed_fast);
  fmt::print("The provider saw {} calls during its 75 s outage window instead of 750.\n",
             provider.calls - charged);
  fmt::print("{}\n", m);
  return 0;
}
