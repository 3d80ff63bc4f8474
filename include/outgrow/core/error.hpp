// outgrow/core/error.hpp — the error every primitive throws for bad configuration.
//
// Constructors validate their `..._config` and throw `outgrow::config_error` (an
// `std::invalid_argument`) whose message names the primitive, the field, the allowed
// range and the value given. Never a silent clamp. Hot paths never throw: they return
// bool / std::optional / small result types instead.
//
//   struct breaker_config { int failure_threshold = 5; };
//   void validate(const breaker_config& c) {
//     outgrow::require_in_range("circuit_breaker", "failure_threshold",
//                               c.failure_threshold, 1, 1'000'000);
//   }
//   // throws: "circuit_breaker: failure_threshold must be in [1, 1000000], got 0"
//
//   outgrow::require(ring_has(node), "hash_ring", "remove(node)",
//                    "a node in the ring", node_name);
//   // throws: "hash_ring: remove(node) must be a node in the ring, got db-7"
//
// Thread-safety: free functions, no shared state.
// Complexity: formatting the message happens only on the throwing path.
#pragma once

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace outgrow {

/// Invalid configuration or arguments. The message has the form
/// "<primitive>: <field> must be <requirement>, got <value>".
class config_error : public std::invalid_argument {
 public:
  config_error(std::string_view primitive, std::string_view field,
               std::string_view requirement, std::string_view got)
      : std::invalid_argument(
            fmt::format("{}: {} must be {}, got {}", primitive, field, requirement, got)),
        primitive_(primitive),
        field_(field) {}

  /// The primitive that rejected its configuration, e.g. "circuit_breaker".
  [[nodiscard]] const std::string& primitive() const noexcept { return primitive_; }
  /// The offending field or argument, e.g. "failure_threshold".
  [[nodiscard]] const std::string& field() const noexcept { return field_; }

 private:
  std::string primitive_;
  std::string field_;
};

namespace detail {
template <class T>
struct is_duration : std::false_type {};
template <class Rep, class Period>
struct is_duration<std::chrono::duration<Rep, Period>> : std::true_type {};

/// A duration in the largest unit that shows it exactly, with ASCII unit names:
/// 30s, 10min, 1500ms, 250us, 7ns.
template <class Rep, class Period>
std::string describe_duration(std::chrono::duration<Rep, Period> d) {
  using namespace std::chrono;
  // Only durations that fit in nanoseconds take the exact path (seconds::max() would
  // overflow the conversion); the others print in their own unit.
  if constexpr (std::is_integral_v<Rep>) {
    const long double as_ns = duration<long double, std::nano>(d).count();
    if (as_ns < 9.2e18L && as_ns > -9.2e18L && duration_cast<nanoseconds>(d) == d) {
      const auto ns = duration_cast<nanoseconds>(d).count();
      struct unit {
        std::int64_t ns;
        const char* name;
      };
      constexpr unit units[] = {
          {3'600'000'000'000, "h"}, {60'000'000'000, "min"}, {1'000'000'000, "s"},
          {1'000'000, "ms"},        {1'000, "us"},           {1, "ns"}};
      for (const unit& u : units) {
        if (ns % u.ns == 0 && (ns != 0 || u.ns == 1'000'000'000)) {
          return fmt::format("{}{}", ns / u.ns, u.name);
        }
      }
    }
  }
  return fmt::format("{}", d);
}

template <class T>
std::string describe_value(const T& value) {
  if constexpr (is_duration<T>::value) {
    return describe_duration(value);
  } else if constexpr (std::is_same_v<T, bool>) {
    return value ? "true" : "false";
  } else if constexpr (fmt::is_formattable<T>::value) {
    return fmt::format("{}", value);
  } else {
    return "<unprintable value>";
  }
}
}  // namespace detail

/// Throws config_error unless `condition` holds. `requirement` completes
/// "<field> must be ...", e.g. "a node in the ring" or "sorted ascending".
template <class T>
void require(bool condition, std::string_view primitive, std::string_view field,
             std::string_view requirement, const T& value) {
  if (!condition) [[unlikely]] {
    throw config_error(primitive, field, requirement, detail::describe_value(value));
  }
}

/// Throws config_error unless lo <= value <= hi (closed range). Works for any ordered,
/// {fmt}-printable type: integers, floating point, std::chrono durations.
template <class T, class Lo, class Hi>
void require_in_range(std::string_view primitive, std::string_view field, const T& value,
                      const Lo& lo, const Hi& hi) {
  if (!(lo <= value && value <= hi)) [[unlikely]] {
    throw config_error(
        primitive, field,
        fmt::format("in [{}, {}]", detail::describe_value(lo), detail::describe_value(hi)),
        detail::describe_value(value));
  }
}

/// Throws config_error unless value >= lo (an open-ended range, printed as [lo, inf)).
template <class T, class Lo>
void require_at_least(std::string_view primitive, std::string_view field, const T& value,
                      const Lo& lo) {
  if (!(lo <= value)) [[unlikely]] {
    throw config_error(primitive, field,
                       fmt::format("in [{}, inf)", detail::describe_value(lo)),
                       detail::describe_value(value));
  }
}

}  // namespace outgrow
