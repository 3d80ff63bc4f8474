// outgrow/autoscale/load_trace.hpp — requests per second over time, for the simulator.
//
// The traffic a simulation replays (autoscale/simulator.hpp): one rate per second of a
// simulated period, with spike marks (the instants time-to-absorb is measured from).
// Factories for the usual shapes — steady (+ correlated noise), diurnal, spike (5×),
// black_friday (10× ramp), sawtooth, recurring_spike (daily) — and from_csv
// ("seconds,rate" lines) for a recorded trace. Use it to compare scaling policies on
// the shape your service sees before you deploy one.
//
//   auto bf = outgrow::load_trace::black_friday(1000.0, 10.0, 30min, 30min, 90min, 4h,
//                                               {.relative = 0.05, .seed = 1});
//   std::ifstream in("yesterday.csv");
//   auto recorded = outgrow::load_trace::from_csv(in, "yesterday");
//
// Noise is a seeded AR(1) process (hash-based normal draws): trace_noise::seed set →
// the same trace on every run and platform; empty (the default) → a random seed per
// trace (outgrow::resolve_seed, core/seed.hpp). Limits: a trace has at most 31 days of
// 1-second points (load_trace::max_length; nothing is allocated before that is
// checked), factory and CSV rates are finite and in [0, 1e12] requests/s, factors in
// [0, 1e6], spike marks inside the trace; a NaN, negative or out-of-range argument, a
// malformed CSV line (reported by line number) or an unused noise field is a
// config_error naming load_trace — never a silent clamp.
//
// Trade-offs: 1-second resolution (8 bytes per second: a day is 691 KB) keeps the
// simulation exact for evaluation periods of seconds; sub-second bursts are averaged.
//
// Thread-safety: a load_trace is immutable after construction; share it freely.
// Complexity: factories and from_csv O(length); rate() O(1).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <istream>
#include <numbers>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/autoscale/detail/trace_input.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/seed.hpp>

namespace outgrow {

/// Multiplicative noise on a trace: rate × max(0, 1 + relative × x), x an AR(1)
/// process with unit variance and time constant `correlation`. With relative = 0 (no
/// noise) correlation and seed are never read and must keep their defaults.
struct trace_noise {
  double relative = 0.0;                 ///< [0, 1]
  std::chrono::seconds correlation{30};  ///< [1 s, 1 day]
  /// Empty: a random seed per trace (resolve_seed). Set: the same noise on every run.
  std::optional<std::uint64_t> seed{};
};

/// Requests per second for each second of a simulated period, with spike marks.
///
/// Limits (every factory throws config_error naming load_trace, the field or CSV line,
/// the allowed range and the value): at most `max_length` = 31 days of 1-second points
/// (2,678,400 points, 21 MB; nothing is allocated before the length is checked); rates
/// given to a factory or read from CSV finite and in [0, max_rate = 1e12] requests/s;
/// factors in [0, max_factor = 1e6]; durations and periods in their documented ranges
/// (all at most max_length); spike marks inside the trace.
class load_trace {
 public:
  /// The longest trace: 31 days of 1-second points.
  static constexpr std::chrono::seconds max_length{std::chrono::hours{24 * 31}};
  /// The largest rate a factory or from_csv accepts, requests/s.
  static constexpr double max_rate = 1e12;
  /// The largest spike / Black Friday factor.
  static constexpr double max_factor = 1e6;

  /// Any finite rates >= 0, one per second (at most max_length of them); spike marks
  /// in [0, length).
  /// Throws: config_error if rates is empty or longer than max_length, a rate is
  /// negative or not finite, or a spike mark lies outside the trace.
  load_trace(std::string name, std::vector<double> rates,
             std::vector<std::chrono::seconds> spikes = {})
      : name_(std::move(name)), rates_(std::move(rates)), spikes_(std::move(spikes)) {
    require(!rates_.empty(), "load_trace", "rates", "non-empty", "an empty list");
    require(rates_.size() <= static_cast<std::size_t>(max_length.count()), "load_trace",
            "rates", "at most 2678400 points (31 days of seconds)", rates_.size());
    for (std::size_t i = 0; i < rates_.size(); ++i) {
      require(std::isfinite(rates_[i]) && rates_[i] >= 0.0, "load_trace",
              fmt::format("rates[{}]", i), ">= 0 and finite", rates_[i]);
    }
    for (std::chrono::seconds m : spikes_) {
      require(m.count() >= 0 && m < length(), "load_trace", "spikes",
              fmt::format("in [0s, {}) (inside the trace)",
                          detail::describe_duration(length())),
              detail::describe_any_duration(m));
    }
    std::sort(spikes_.begin(), spikes_.end());
  }

  [[nodiscard]] std::string_view name() const noexcept { return name_; }
  [[nodiscard]] std::chrono::seconds length() const noexcept {
    return std::chrono::seconds{static_cast<std::int64_t>(rates_.size())};
  }
  /// The rate during second s (the last rate after the end).
  [[nodiscard]] double rate(std::int64_t s) const noexcept {
    if (s < 0) return rates_.front();
    const auto i = static_cast<std::size_t>(s);
    return i < rates_.size() ? rates_[i] : rates_.back();
  }
  [[nodiscard]] const std::vector<double>& rates() const noexcept { return rates_; }
  /// The instants the trace reaches a spike's peak (for time-to-absorb).
  [[nodiscard]] const std::vector<std::chrono::seconds>& spikes() const noexcept {
    return spikes_;
  }
  [[nodiscard]] double peak() const noexcept {
    return *std::max_element(rates_.begin(), rates_.end());
  }

  /// A flat rate with noise (default ±10 %, 10 s correlation). length in [1 s, 31 days].
  /// Throws: config_error if an argument is outside its range (see the class comment)
  /// or a noise field is out of range or set while noise.relative is 0.
  static load_trace steady(double rate, std::chrono::seconds length = std::chrono::hours{2},
                           trace_noise noise = {.relative = 0.1,
                                                .correlation = std::chrono::seconds{10}}) {
    check_rate("rate", rate);
    return shaped("steady", length, noise, {}, [=](std::int64_t) { return rate; });
  }

  /// low at t = 0, high half a period later (cosine), repeating. period in [1 s, 31 days].
  /// Throws: config_error if an argument is outside its range (see the class comment)
  /// or a noise field is out of range or set while noise.relative is 0.
  static load_trace diurnal(double low, double high,
                            std::chrono::seconds length = std::chrono::hours{24},
                            std::chrono::seconds period = std::chrono::hours{24},
                            trace_noise noise = {.relative = 0.05,
                                                 .correlation = std::chrono::seconds{60}}) {
    check_rate("low", low);
    check_rate("high", high);
    check_duration("period", period, std::chrono::seconds{1});
    const auto p = static_cast<double>(period.count());
    return shaped("diurnal", length, noise, {}, [=](std::int64_t s) {
      const double phase = 2.0 * std::numbers::pi * static_cast<double>(s) / p;
      return low + (high - low) * (1.0 - std::cos(phase)) / 2.0;
    });
  }

  /// base, then a sudden factor × base at `at` for `hold`, then base again. at in
  /// [0, length) (the spike mark), hold in [1 s, 31 days].
  /// Throws: config_error if an argument is outside its range (see the class comment)
  /// or a noise field is out of range or set while noise.relative is 0.
  static load_trace spike(double base, double factor = 5.0,
                          std::chrono::seconds at = std::chrono::minutes{30},
                          std::chrono::seconds hold = std::chrono::minutes{20},
                          std::chrono::seconds length = std::chrono::hours{1},
                          trace_noise noise = {.relative = 0.05,
                                               .correlation = std::chrono::seconds{30}}) {
    check_spike(base, factor, length);
    check_mark("at", at, length, "in [0s, length = {})");
    check_duration("hold", hold, std::chrono::seconds{1});
    const std::int64_t from = at.count();
    const std::int64_t to = (at + hold).count();
    return shaped("spike", length, noise, {at}, [=](std::int64_t s) {
      return s >= from && s < to ? base * factor : base;
    });
  }

  /// Black Friday: base for `lead_in`, a linear ramp to factor × base over `ramp`,
  /// `hold` at the peak, a ramp back down over `ramp`, base until the end. The spike
  /// mark is the end of the up-ramp: lead_in + ramp < length. lead_in and hold in
  /// [0, 31 days], ramp in [1 s, 31 days].
  /// Throws: config_error if an argument is outside its range (see the class comment)
  /// or a noise field is out of range or set while noise.relative is 0.
  static load_trace black_friday(double base, double factor = 10.0,
                                 std::chrono::seconds lead_in = std::chrono::minutes{30},
                                 std::chrono::seconds ramp = std::chrono::minutes{30},
                                 std::chrono::seconds hold = std::chrono::minutes{90},
                                 std::chrono::seconds length = std::chrono::hours{4},
                                 trace_noise noise = {
                                     .relative = 0.05,
                                     .correlation = std::chrono::seconds{30}}) {
    check_spike(base, factor, length);
    check_duration("lead_in", lead_in, std::chrono::seconds{0});
    check_duration("ramp", ramp, std::chrono::seconds{1});
    check_duration("hold", hold, std::chrono::seconds{0});
    check_mark("lead_in + ramp", lead_in + ramp, length, "< length = {}");
    const auto l = lead_in.count();
    const auto r = ramp.count();
    const auto h = hold.count();
    return shaped("black_friday", length, noise, {lead_in + ramp}, [=](std::int64_t s) {
      const double peak = base * factor;
      if (s < l) return base;
      if (s < l + r)
        return base + (peak - base) * static_cast<double>(s - l) / static_cast<double>(r);
      if (s < l + r + h) return peak;
      if (s < l + 2 * r + h) {
        return peak -
               (peak - base) * static_cast<double>(s - l - r - h) / static_cast<double>(r);
      }
      return base;
    });
  }

  /// Rises linearly from low to high over each period, then drops back at once.
  /// period in [1 s, 31 days].
  /// Throws: config_error if an argument is outside its range (see the class comment)
  /// or a noise field is out of range or set while noise.relative is 0.
  static load_trace sawtooth(double low, double high,
                             std::chrono::seconds period = std::chrono::minutes{20},
                             std::chrono::seconds length = std::chrono::hours{2},
                             trace_noise noise = {}) {
    check_rate("low", low);
    check_rate("high", high);
    check_duration("period", period, std::chrono::seconds{1});
    const auto p = period.count();
    return shaped("sawtooth", length, noise, {}, [=](std::int64_t s) {
      return low + (high - low) * static_cast<double>(s % p) / static_cast<double>(p);
    });
  }

  /// base with a factor × base spike every `period` at `offset` for `width`, for
  /// `cycles` periods (e.g. a daily 14:00 rush). period in [1 s, 31 days], offset in
  /// [0, period), width in [1 s, period], cycles in [1, 1000], period × cycles (the
  /// length) at most 31 days.
  /// Throws: config_error if an argument is outside its range (see the class comment)
  /// or a noise field is out of range or set while noise.relative is 0.
  static load_trace recurring_spike(
      double base, double factor = 5.0,
      std::chrono::seconds period = std::chrono::hours{24},
      std::chrono::seconds offset = std::chrono::hours{14},
      std::chrono::seconds width = std::chrono::minutes{30}, int cycles = 3,
      trace_noise noise = {.relative = 0.05, .correlation = std::chrono::seconds{30}}) {
    check_rate("base", base);
    check_factor(factor);
    check_duration("period", period, std::chrono::seconds{1});
    require_in_range("load_trace", "cycles", cycles, 1, 1000);
    require(period * cycles <= max_length, "load_trace", "period * cycles",
            "at most 744h (31 days: the trace's length)", period * cycles);
    require(offset.count() >= 0 && offset < period, "load_trace", "offset",
            fmt::format("in [0s, period = {})", detail::describe_duration(period)),
            detail::describe_any_duration(offset));
    detail::require_duration_in("load_trace", "width", width, std::chrono::seconds{1},
                                period);
    std::vector<std::chrono::seconds> marks;
    for (int c = 0; c < cycles; ++c) marks.push_back(period * c + offset);
    const auto p = period.count();
    const auto o = offset.count();
    const auto w = width.count();
    return shaped("recurring_spike", period * cycles, noise, std::move(marks),
                  [=](std::int64_t s) {
                    const auto in = s % p;
                    return in >= o && in < o + w ? base * factor : base;
                  });
  }

  /// Lines "seconds,rate" — two numbers (std::from_chars; blanks around them are
  /// fine), seconds in [0, 31 days) (fractions are floored) and non-decreasing, rate in
  /// [0, 1e12]; the rate holds until the next line's second. Line 1 is skipped as a
  /// header when its first field is not a number; empty lines and '#' comments are
  /// skipped.
  /// Throws: config_error naming the line number on anything else — a wrong number of
  /// columns, a non-number, trailing garbage, NaN/inf, a value out of range — or if no
  /// line holds data.
  static load_trace from_csv(std::istream& in, std::string name = "csv") {
    constexpr double last_second = static_cast<double>(max_length.count() - 1);
    std::vector<std::pair<std::int64_t, double>> points;
    std::string line;
    std::size_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      const std::string_view text = detail::trim_blanks(
          std::string_view(line).substr(0, line.size() - (line.ends_with('\r') ? 1 : 0)));
      if (text.empty() || text[0] == '#') continue;
      const std::size_t comma = text.find(',');
      const std::optional<double> first = detail::parse_number(text.substr(0, comma));
      if (line_no == 1 && !first) continue;  // a header
      std::optional<double> second;
      if (comma != std::string_view::npos &&
          text.find(',', comma + 1) == std::string_view::npos) {
        second = detail::parse_number(text.substr(comma + 1));
      }
      require(first.has_value() && second.has_value(), "load_trace",
              fmt::format("csv line {}", line_no), "two numbers \"seconds,rate\"",
              detail::quote_line(text));
      const double sec = *first;
      const double rate = *second;
      require_in_range("load_trace", fmt::format("csv line {} seconds", line_no), sec, 0.0,
                       last_second);
      const auto s = static_cast<std::int64_t>(std::floor(sec));
      require(
          points.empty() || s >= points.back().first, "load_trace",
          fmt::format("csv line {} seconds", line_no),
          fmt::format("non-decreasing (>= {})", points.empty() ? 0 : points.back().first),
          sec);
      require_in_range("load_trace", fmt::format("csv line {} rate", line_no), rate, 0.0,
                       max_rate);
      points.emplace_back(s, rate);
    }
    require(!points.empty(), "load_trace", "csv", "at least one \"seconds,rate\" line",
            "no data");
    const std::int64_t end = points.back().first + 1;  // <= max_length: checked above
    std::vector<double> rates(static_cast<std::size_t>(end), points.front().second);
    for (std::size_t i = 0; i < points.size(); ++i) {
      const std::int64_t to = i + 1 < points.size() ? points[i + 1].first : end;
      for (std::int64_t s = points[i].first; s < to; ++s) {
        rates[static_cast<std::size_t>(s)] = points[i].second;
      }
    }
    return load_trace(std::move(name), std::move(rates));
  }

  /// from_csv() over the file at `path`, named after it.
  /// Throws: config_error if the file cannot be opened, or as from_csv().
  static load_trace from_csv_file(const std::string& path) {
    std::ifstream in(path);
    require(static_cast<bool>(in), "load_trace", "csv path", "a readable file", path);
    return from_csv(in, path);
  }

 private:
  static void check_rate(std::string_view field, double rate) {
    require_in_range("load_trace", field, rate, 0.0, max_rate);
  }
  static void check_factor(double factor) {
    require_in_range("load_trace", "factor", factor, 0.0, max_factor);
  }
  static void check_length(std::chrono::seconds length) {
    detail::require_duration_in("load_trace", "length", length, std::chrono::seconds{1},
                                max_length);
  }
  static void check_duration(std::string_view field, std::chrono::seconds d,
                             std::chrono::seconds lo) {
    detail::require_duration_in("load_trace", field, d, lo, max_length);
  }
  /// A spike's base rate, factor and trace length.
  static void check_spike(double base, double factor, std::chrono::seconds length) {
    check_rate("base", base);
    check_factor(factor);
    check_length(length);
  }
  /// The spike mark `field` lies in the trace, [0, length); `range` says so in the
  /// message, with {} for the length.
  static void check_mark(std::string_view field, std::chrono::seconds mark,
                         std::chrono::seconds length,
                         fmt::format_string<std::string> range) {
    if (mark.count() >= 0 && mark < length) return;
    throw config_error("load_trace", field,
                       fmt::format("{} (the spike mark lies in the trace)",
                                   fmt::format(range, detail::describe_duration(length))),
                       detail::describe_any_duration(mark));
  }

  template <class Shape>
  static load_trace shaped(std::string name, std::chrono::seconds length, trace_noise noise,
                           std::vector<std::chrono::seconds> spikes, Shape shape) {
    check_length(length);
    require_in_range("load_trace", "noise.relative", noise.relative, 0.0, 1.0);
    detail::require_duration_in("load_trace", "noise.correlation", noise.correlation,
                                std::chrono::seconds{1}, std::chrono::hours{24});
    if (noise.relative == 0.0) {
      // No noise: correlation and seed are never read (see trace_noise).
      require(noise.correlation == trace_noise{}.correlation, "load_trace",
              "noise.correlation", "the default 30s while noise.relative is 0 (unused)",
              noise.correlation);
      require(!noise.seed.has_value(), "load_trace", "noise.seed",
              "unset (std::nullopt) while noise.relative is 0 (unused)",
              noise.seed.value_or(0));
    }
    const auto n = static_cast<std::size_t>(length.count());
    std::vector<double> rates(n);
    const double phi = std::exp(-1.0 / static_cast<double>(noise.correlation.count()));
    const double innovation = std::sqrt(1.0 - phi * phi);
    const std::uint64_t seed = noise.relative > 0.0 ? resolve_seed(noise.seed) : 0;
    double x = noise.relative > 0.0 ? normal(seed, 0) : 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const auto s = static_cast<std::int64_t>(i);
      double r = shape(s);
      if (noise.relative > 0.0) {
        if (i > 0) x = phi * x + innovation * normal(seed, i);
        r *= std::max(0.0, 1.0 + noise.relative * x);
      }
      rates[i] = std::max(0.0, r);
    }
    return load_trace(std::move(name), std::move(rates), std::move(spikes));
  }

  /// The i-th standard normal draw of a seeded stream (Box-Muller over hash_mix).
  static double normal(std::uint64_t seed, std::uint64_t i) noexcept {
    const double u1 = hash_to_unit_open(hash_mix(seed, 2 * i));
    const double u2 = hash_to_unit_open(hash_mix(seed, 2 * i + 1));
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

  std::string name_;
  std::vector<double> rates_;
  std::vector<std::chrono::seconds> spikes_;
};

}  // namespace outgrow
