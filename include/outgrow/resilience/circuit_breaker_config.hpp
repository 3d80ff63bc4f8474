// outgrow/resilience/circuit_breaker_config.hpp — circuit_breaker's value types: its
// states, configuration, transitions and metrics.
//
// Split from resilience/circuit_breaker.hpp (which includes this header and documents
// what every field does to the breaker) so that breaker windows
// (resilience/breaker_window.hpp) and code configuring or reporting on a breaker can
// name them without the breaker itself.
//
//   outgrow::circuit_breaker_config config{.failure_threshold = 5, .open_for = 30s};
//   fmt::print("{}\n", outgrow::breaker_state::half_open);      // "half_open"
//
// Thread-safety: plain values, one thread at a time per object. Complexity: O(1).
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <string_view>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <outgrow/core/metrics.hpp>

namespace outgrow {

enum class breaker_state : std::uint8_t {
  closed = 0,
  open = 1,
  half_open = 2,
  forced_open = 3,
  disabled = 4,
  metrics_only = 5,
};

[[nodiscard]] constexpr std::string_view to_string(breaker_state s) noexcept {
  switch (s) {
    case breaker_state::closed:
      return "closed";
    case breaker_state::open:
      return "open";
    case breaker_state::half_open:
      return "half_open";
    case breaker_state::forced_open:
      return "forced_open";
    case breaker_state::disabled:
      return "disabled";
    case breaker_state::metrics_only:
      return "metrics_only";
  }
  return "unknown";
}

/// Every field has a default; a field the chosen configuration never reads must keep
/// it (see the header comment), so a setting that would do nothing is an error.
struct circuit_breaker_config {
  // consecutive_failures only
  /// Failures in a row that open the breaker: 5 (the textbook's). [1, 1000000]
  std::uint32_t failure_threshold = 5;
  // count_window / time_window only
  /// Calls (count_window, [1, 100000]) or seconds (time_window, [1, 3600]) in the
  /// window: 100, Resilience4j's default for both (Hystrix's rolling window is 10 s).
  std::uint32_t window_size = 100;
  /// Calls needed in the window before a rate can trip. 0 (the default) = Resilience4j's
  /// default, 100 — capped at window_size for count_window, as Resilience4j caps it
  /// (a 10-call window can trip from its 10th call). Set explicitly: [1, window_size]
  /// for count_window — a larger minimum could never be reached, so it is rejected where
  /// Resilience4j would silently lower it — and [1, 1e9] for time_window.
  std::uint32_t minimum_calls = 0;
  /// Failure rate that trips, in percent: 50 as Resilience4j and Hystrix. (0, 100]
  double failure_rate_threshold = 50.0;
  /// Slow-call rate that trips, in percent: 100 as Resilience4j. (0, 100]; read only
  /// when slow_call_duration > 0.
  double slow_call_rate_threshold = 100.0;
  /// Calls lasting longer than this are slow (exactly this long is not, as in
  /// Resilience4j); 0 = slow-call tracking off (the default — Resilience4j's is 60 s —
  /// so that the default closed path reads no clock).
  std::chrono::nanoseconds slow_call_duration{0};
  // open and half-open, every window
  /// Time open before probing: 30 s (the textbook's; Resilience4j's is 60 s). (0, 24 h]
  std::chrono::nanoseconds open_for = std::chrono::seconds{30};
  /// open_for grows by this factor per consecutive re-open (1 = never grows). [1, 100]
  double open_for_multiplier = 1.0;
  /// Cap for the grown open_for. [open_for, 24 h]; read only when open_for_multiplier
  /// > 1.
  std::chrono::nanoseconds max_open_for = std::chrono::minutes{10};
  /// Probes admitted in half_open: 1 (the textbook's single probe; Resilience4j's
  /// default is 10). [1, 1000000]
  std::uint32_t half_open_calls = 1;
  /// Successful probes that close the breaker; 0 = all half_open_calls.
  /// [0, half_open_calls]
  std::uint32_t success_threshold = 0;
  /// Which exceptions thrown through call() are failures (the rest are ignored);
  /// empty = every exception. Called only on the exception path.
  std::function<bool(const std::exception_ptr&)> is_failure{};
};

/// One state change, as passed to listeners.
struct breaker_transition {
  breaker_state from;
  breaker_state to;
  /// When the transition was made (open → half_open: when a call, state() or metrics()
  /// first looked after open_for had passed).
  std::chrono::steady_clock::time_point at;
  /// For transitions to open: how long it stays open.
  std::chrono::nanoseconds open_for{0};
};

/// A metrics snapshot (counters are exact; the rates are over the current window).
struct circuit_breaker_metrics {
  static constexpr std::string_view metrics_name = "circuit_breaker_metrics";
  breaker_state state = breaker_state::closed;
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;
  std::uint64_t ignored = 0;   ///< ignore()d or abandoned permits
  std::uint64_t rejected = 0;  ///< calls not permitted
  std::uint64_t slow_calls = 0;
  std::uint64_t transitions = 0;
  std::uint64_t window_calls = 0;  ///< calls in the current window (rate windows)
  double failure_rate = 0.0;       ///< percent, over window_calls
  double slow_call_rate = 0.0;     ///< percent, over window_calls
  std::uint32_t consecutive_failures = 0;

  [[nodiscard]] std::uint64_t calls() const noexcept {
    return successes + failures + ignored + rejected;
  }
  template <class F>
  void for_each_metric(F&& f) const {
    f("state", to_string(state));
    f("calls", calls());
    f("successes", successes);
    f("failures", failures);
    f("ignored", ignored);
    f("rejected", rejected);
    f("slow_calls", slow_calls);
    f("transitions", transitions);
    f("failure_rate", failure_rate);
    f("slow_call_rate", slow_call_rate);
  }
};

}  // namespace outgrow

template <>
struct fmt::formatter<outgrow::breaker_state> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(outgrow::breaker_state s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(outgrow::to_string(s), ctx);
  }
};
