// outgrow/autoscale/detail/trace_input.hpp — parsing and range checks for load traces.
//
// load_trace reads "seconds,rate" CSV lines from untrusted input and accepts durations
// up to seconds::max(): these helpers parse a number without locale or trailing
// garbage, quote a bad line for the error message, and check and print durations of
// any size (describe_duration converts to nanoseconds and would overflow there).
#pragma once

#include <charconv>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <outgrow/core/error.hpp>

namespace outgrow::detail {

/// `s` without leading and trailing spaces and tabs.
[[nodiscard]] inline std::string_view trim_blanks(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
/// The whole of `s` (blanks around it aside) as a number, or nullopt (std::from_chars:
/// no locale, no trailing garbage; "inf" and "nan" parse and are checked by the caller).
[[nodiscard]] inline std::optional<double> parse_number(std::string_view s) noexcept {
  s = trim_blanks(s);
  if (s.empty()) return std::nullopt;
  double v = 0.0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}
/// A duration for an error message, also one too large for describe_duration (which
/// converts to nanoseconds: seconds::max() would overflow there).
template <class Rep, class Period>
[[nodiscard]] std::string describe_any_duration(std::chrono::duration<Rep, Period> d) {
  constexpr std::chrono::hours century{24 * 365 * 100};
  if (d >= -century && d <= century) return describe_duration(d);
  return fmt::format("{}", d);
}
/// require_in_range for durations of any size (see describe_any_duration).
template <class D, class Lo, class Hi>
void require_duration_in(std::string_view primitive, std::string_view field, D d, Lo lo,
                         Hi hi) {
  if (!(lo <= d && d <= hi)) [[unlikely]] {
    throw config_error(
        primitive, field,
        fmt::format("in [{}, {}]", describe_any_duration(lo), describe_any_duration(hi)),
        describe_any_duration(d));
  }
}
/// A line of untrusted input for an error message: quoted, cut at 80 characters.
[[nodiscard]] inline std::string quote_line(std::string_view s) {
  return s.size() <= 80 ? fmt::format("\"{}\"", s)
                        : fmt::format("\"{}...\"", s.substr(0, 80));
}

}  // namespace outgrow::detail
