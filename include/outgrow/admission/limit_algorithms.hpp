// outgrow/admission/limit_algorithms.hpp — how an adaptive concurrency limit moves:
// AIMD, Vegas and Gradient2 as Netflix's concurrency-limits defines them, and its
// windowed wrapper.
//
// A limit algorithm sees one sample per finished call — when it started, how long it
// took (rtt), how many calls were in flight when it was admitted (itself included), and
// whether it was dropped (timed out, rejected downstream) — and answers the current
// limit. concurrency_limiter (concurrency_limiter.hpp) admits calls while fewer than
// `limit()` are in flight and feeds it the samples. Every update rule, default and
// rounding below is Netflix's (concurrency-limits, AIMDLimit / VegasLimit /
// Gradient2Limit / WindowedLimit), checked by tests/admission/limit_conformance_test.cpp
// against the cases of Netflix's own tests.
//
//   aimd_limit       +1 when a call succeeds with at least half the limit in flight;
//                    × backoff_ratio (0.9) on a drop or an rtt over `timeout`. Needs
//                    drops to find the limit; simple and predictable.
//   vegas_limit      TCP Vegas: estimates the queue as limit × (1 − rtt_noload / rtt)
//                    and grows while it is small, shrinks when it is large; re-probes the
//                    no-load rtt now and then. Reacts to latency before errors appear.
//   gradient2_limit  limit × clamp(tolerance × long_rtt / rtt, 0.5, 1) + queue_size,
//                    smoothed: follows the ratio of a long-term average rtt to the
//                    current one. Netflix's recommended algorithm for servers.
//   windowed_limit<L> feeds L one aggregated sample per window (average rtt, max in
//                    flight, any drop) instead of every call: for high call rates.
//
// Smallest conforming user algorithm (the `limit_algorithm` concept):
//
//   struct fixed_limit {
//     int limit() const noexcept { return 10; }
//     void on_sample(std::chrono::nanoseconds start, std::chrono::nanoseconds rtt,
//                    int in_flight, bool dropped) {}
//   };
//
// Deliberate differences from Netflix: an initial limit outside [min, max] is a
// config_error (Netflix logs a warning and clamps at the first sample); Vegas's probe
// jitter comes from a seeded generator (`seed`, core/seed.hpp) so tests can replay it.
//
// Thread-safety: an algorithm is not thread-safe; concurrency_limiter calls on_sample
// under its mutex. Complexity: O(1) per sample.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <outgrow/core/error.hpp>
#include <outgrow/core/seed.hpp>

namespace outgrow {

/// What concurrency_limiter needs from a limit algorithm (see the header comment).
template <class L>
concept limit_algorithm =
    requires(L& l, const L& cl, std::chrono::nanoseconds d, int n, bool dropped) {
      { cl.limit() } -> std::convertible_to<int>;
      l.on_sample(d, d, n, dropped);
    };

namespace detail {
/// Netflix's Log10RootIntFunction: max(1, (int)log10(n)) (1 for n <= 9, 2 up to 999, ...).
[[nodiscard]] inline int log10_root(int n) noexcept {
  if (n < 10) return 1;
  return std::max(1, static_cast<int>(std::log10(static_cast<double>(n))));
}

inline void require_limits(std::string_view who, int initial, int min, int max) {
  require_in_range(who, "min_limit", min, 1, 1'000'000);
  require(max >= min, who, "max_limit", "at least min_limit", max);
  require_in_range(who, "max_limit", max, min, 1'000'000);
  require_in_range(who, "initial_limit", initial, min, max);
}
}  // namespace detail

// ---- AIMD ---------------------------------------------------------------------------

struct aimd_limit_config {
  int initial_limit = 20;      ///< [min_limit, max_limit]
  int min_limit = 20;          ///< [1, 1e6]
  int max_limit = 200;         ///< [min_limit, 1e6]
  double backoff_ratio = 0.9;  ///< on a drop; [0.5, 1)
  /// A call slower than this counts as a drop: 5 s. (0, 1 h]
  std::chrono::nanoseconds timeout = std::chrono::seconds{5};
};

class aimd_limit {
 public:
  using config_type = aimd_limit_config;

  /// Throws: config_error naming the first bad field.
  explicit aimd_limit(aimd_limit_config config = {}) : config_(validated(config)) {
    limit_ = config_.initial_limit;
  }

  [[nodiscard]] int limit() const noexcept { return limit_; }

  void on_sample(std::chrono::nanoseconds /*start*/, std::chrono::nanoseconds rtt,
                 int in_flight, bool dropped) noexcept {
    int c = limit_;
    if (dropped || rtt > config_.timeout) {
      c = static_cast<int>(c * config_.backoff_ratio);
    } else if (in_flight * 2 >= c) {
      c = c + 1;
    }
    limit_ = std::min(config_.max_limit, std::max(config_.min_limit, c));
  }

  static void validate(const aimd_limit_config& c) {
    constexpr std::string_view who = "aimd_limit";
    detail::require_limits(who, c.initial_limit, c.min_limit, c.max_limit);
    require(c.backoff_ratio >= 0.5 && c.backoff_ratio < 1.0, who, "backoff_ratio",
            "in [0.5, 1)", c.backoff_ratio);
    require_in_range(who, "timeout", c.timeout, std::chrono::nanoseconds{1},
                     std::chrono::nanoseconds{std::chrono::hours{1}});
  }

 private:
  static aimd_limit_config validated(const aimd_limit_config& c) {
    validate(c);
    return c;
  }
  aimd_limit_config config_;
  int limit_ = 0;
};

// ---- Vegas --------------------------------------------------------------------------

struct vegas_limit_config {
  int initial_limit = 20;  ///< [1, max_limit]
  int max_limit = 1000;    ///< Netflix's maxConcurrency. [1, 1e6] (the floor is 1)
  double smoothing = 1.0;  ///< weight of the new limit; (0, 1]
  /// Queue sizes (in calls) that steer the limit, as functions of the current limit;
  /// empty = Netflix's defaults: alpha 3·log10(limit), beta 6·log10(limit),
  /// threshold log10(limit) (each log10 at least 1).
  std::function<int(int)> alpha{};
  std::function<int(int)> beta{};
  std::function<int(int)> threshold{};
  /// Steps up / down; empty = limit ± log10(limit).
  std::function<double(double)> increase{};
  std::function<double(double)> decrease{};
  /// The no-load rtt is re-measured about every probe_multiplier × limit samples
  /// (× a jitter in [0.5, 1)). 30. [1, 1e6]
  int probe_multiplier = 30;
  /// Seed of the probe jitter (core/seed.hpp).
  std::optional<std::uint64_t> seed{};
};

class vegas_limit {
 public:
  using config_type = vegas_limit_config;

  /// Throws: config_error naming the first bad field.
  explicit vegas_limit(vegas_limit_config config = {})
      : config_(validated(std::move(config))),
        estimated_(config_.initial_limit),
        rng_(resolve_seed(config_.seed)),
        jitter_(draw_jitter()) {}

  [[nodiscard]] int limit() const noexcept { return static_cast<int>(estimated_); }

  /// Throws: std::invalid_argument if rtt <= 0 (as Netflix).
  void on_sample(std::chrono::nanoseconds /*start*/, std::chrono::nanoseconds rtt,
                 int in_flight, bool dropped) {
    if (rtt <= std::chrono::nanoseconds::zero()) {
      throw std::invalid_argument("vegas_limit: rtt must be > 0");
    }
    ++probe_count_;
    if (jitter_ * config_.probe_multiplier * estimated_ <=
        static_cast<double>(probe_count_)) {
      jitter_ = draw_jitter();
      probe_count_ = 0;
      rtt_noload_ = rtt.count();
      return;
    }
    if (rtt_noload_ == 0 || rtt.count() < rtt_noload_) {
      rtt_noload_ = rtt.count();
      return;
    }
    const double est = estimated_;
    const int queue = static_cast<int>(std::ceil(
        est * (1.0 - static_cast<double>(rtt_noload_) / static_cast<double>(rtt.count()))));
    double next = 0.0;
    if (dropped) {
      next = step_down(est);
    } else if (in_flight * 2 < est) {
      return;  // application-limited: no evidence either way
    } else {
      const int li = static_cast<int>(est);
      const int alpha = config_.alpha ? config_.alpha(li) : 3 * detail::log10_root(li);
      const int beta = config_.beta ? config_.beta(li) : 6 * detail::log10_root(li);
      const int threshold =
          config_.threshold ? config_.threshold(li) : detail::log10_root(li);
      if (queue <= threshold) {
        next = est + beta;
      } else if (queue < alpha) {
        next = config_.increase ? config_.increase(est) : est + detail::log10_root(li);
      } else if (queue > beta) {
        next = step_down(est);
      } else {
        return;
      }
    }
    next = std::max(1.0, std::min(static_cast<double>(config_.max_limit), next));
    estimated_ = (1.0 - config_.smoothing) * est + config_.smoothing * next;
  }

  static void validate(const vegas_limit_config& c) {
    constexpr std::string_view who = "vegas_limit";
    require_in_range(who, "max_limit", c.max_limit, 1, 1'000'000);
    require_in_range(who, "initial_limit", c.initial_limit, 1, c.max_limit);
    require(c.smoothing > 0.0 && c.smoothing <= 1.0, who, "smoothing", "in (0, 1]",
            c.smoothing);
    require_in_range(who, "probe_multiplier", c.probe_multiplier, 1, 1'000'000);
  }

 private:
  static vegas_limit_config validated(vegas_limit_config c) {
    validate(c);
    return c;
  }
  double step_down(double est) const {
    return config_.decrease ? config_.decrease(est)
                            : est - detail::log10_root(static_cast<int>(est));
  }
  double draw_jitter() { return std::uniform_real_distribution<double>(0.5, 1.0)(rng_); }

  vegas_limit_config config_;
  double estimated_;
  std::int64_t rtt_noload_ = 0;
  std::int64_t probe_count_ = 0;
  std::mt19937_64 rng_;
  double jitter_;
};

// ---- Gradient2 ----------------------------------------------------------------------

struct gradient2_limit_config {
  int initial_limit = 20;  ///< [min_limit, max_limit]
  int min_limit = 20;      ///< [1, 1e6]
  int max_limit = 200;     ///< Netflix's maxConcurrency. [min_limit, 1e6]
  double smoothing = 0.2;  ///< (0, 1]
  /// Calls allowed to queue: added to limit × gradient each sample. 4. [0, 1e6]
  int queue_size = 4;
  /// Samples in the long-term rtt average (an EWMA after 10 warm-up samples). 600.
  /// [10, 1e7]
  int long_window = 600;
  /// How much slower than the long-term average a call may be before the limit falls.
  /// 1.5. [1, 100]
  double rtt_tolerance = 1.5;
};

class gradient2_limit {
 public:
  using config_type = gradient2_limit_config;

  /// Throws: config_error naming the first bad field.
  explicit gradient2_limit(gradient2_limit_config config = {})
      : config_(validated(config)), estimated_(config_.initial_limit) {}

  [[nodiscard]] int limit() const noexcept { return static_cast<int>(estimated_); }

  /// `dropped` is not used (as Netflix's Gradient2).
  void on_sample(std::chrono::nanoseconds /*start*/, std::chrono::nanoseconds rtt,
                 int in_flight, bool /*dropped*/) noexcept {
    const double queue = config_.queue_size;
    const double short_rtt = static_cast<double>(rtt.count());
    const double long_rtt = add_long(short_rtt);
    if (long_rtt / short_rtt > 2.0) long_value_ *= 0.95;  // later samples only
    if (in_flight < estimated_ / 2.0) return;             // application-limited
    const double gradient =
        std::max(0.5, std::min(1.0, config_.rtt_tolerance * long_rtt / short_rtt));
    double next = estimated_ * gradient + queue;
    next = estimated_ * (1.0 - config_.smoothing) + next * config_.smoothing;
    next = std::max(static_cast<double>(config_.min_limit),
                    std::min(static_cast<double>(config_.max_limit), next));
    estimated_ = next;
  }

  static void validate(const gradient2_limit_config& c) {
    constexpr std::string_view who = "gradient2_limit";
    detail::require_limits(who, c.initial_limit, c.min_limit, c.max_limit);
    require(c.smoothing > 0.0 && c.smoothing <= 1.0, who, "smoothing", "in (0, 1]",
            c.smoothing);
    require_in_range(who, "queue_size", c.queue_size, 0, 1'000'000);
    require_in_range(who, "long_window", c.long_window, 10, 10'000'000);
    require(c.rtt_tolerance >= 1.0 && c.rtt_tolerance <= 100.0, who, "rtt_tolerance",
            "in [1, 100]", c.rtt_tolerance);
  }

 private:
  static constexpr int warmup = 10;

  static gradient2_limit_config validated(const gradient2_limit_config& c) {
    validate(c);
    return c;
  }

  // Netflix's ExpAvgMeasurement(long_window, 10): the mean of the first 10 samples, then
  // an EWMA with factor 2 / (window + 1).
  double add_long(double x) noexcept {
    if (long_count_ < warmup) {
      ++long_count_;
      long_sum_ += x;
      long_value_ = long_sum_ / long_count_;
    } else {
      const double f = 2.0 / (config_.long_window + 1);
      long_value_ = long_value_ * (1.0 - f) + x * f;
    }
    return long_value_;
  }

  gradient2_limit_config config_;
  double estimated_;
  int long_count_ = 0;
  double long_sum_ = 0.0;
  double long_value_ = 0.0;
};

// ---- windowed -----------------------------------------------------------------------

struct windowed_limit_config {
  /// A window lasts 2 × its smallest rtt, within [min_window, max_window]: 1 s each.
  /// [100 ms, 1 h]
  std::chrono::nanoseconds min_window = std::chrono::seconds{1};
  std::chrono::nanoseconds max_window = std::chrono::seconds{1};
  /// Samples a window needs before it is passed on. 10. [10, 1e6]
  int window_size = 10;
  /// Faster calls are ignored (cache hits, immediate failures): 100 us.
  std::chrono::nanoseconds min_rtt_threshold = std::chrono::microseconds{100};
};

/// Feeds `Inner` one sample per window: the average rtt, the largest in-flight count and
/// whether any call was dropped (Netflix's WindowedLimit with its average window).
template <limit_algorithm Inner>
class windowed_limit {
 public:
  /// Throws: config_error naming the first bad field.
  explicit windowed_limit(Inner inner = {}, windowed_limit_config config = {})
      : inner_(std::move(inner)), config_(validated(config)) {}

  [[nodiscard]] int limit() const noexcept { return static_cast<int>(inner_.limit()); }
  [[nodiscard]] const Inner& inner() const noexcept { return inner_; }

  void on_sample(std::chrono::nanoseconds start, std::chrono::nanoseconds rtt,
                 int in_flight, bool dropped) {
    const std::chrono::nanoseconds end = start + rtt;
    if (rtt < config_.min_rtt_threshold) return;
    ++count_;
    sum_ += rtt.count();
    min_rtt_ = std::min(min_rtt_, rtt.count());
    max_in_flight_ = std::max(max_in_flight_, in_flight);
    any_drop_ = any_drop_ || dropped;
    if (end <= next_update_) return;
    const std::int64_t candidate = min_rtt_;
    const int count = count_;
    const std::int64_t tracked = count == 0 ? 0 : sum_ / count;
    const int most = max_in_flight_;
    const bool drop = any_drop_;
    count_ = 0;  // the window restarts even when it was not ready (as Netflix)
    sum_ = 0;
    min_rtt_ = std::numeric_limits<std::int64_t>::max();
    max_in_flight_ = 0;
    any_drop_ = false;
    const std::chrono::nanoseconds span =
        candidate == std::numeric_limits<std::int64_t>::max()
            ? config_.max_window
            : std::min(
                  std::max(std::chrono::nanoseconds{candidate} * 2, config_.min_window),
                  config_.max_window);
    next_update_ = end + span;
    if (candidate < std::numeric_limits<std::int64_t>::max() &&
        count >= config_.window_size) {
      inner_.on_sample(start, std::chrono::nanoseconds{tracked}, most, drop);
    }
  }

  static void validate(const windowed_limit_config& c) {
    constexpr std::string_view who = "windowed_limit";
    using std::chrono::nanoseconds;
    require_in_range(who, "min_window", c.min_window,
                     nanoseconds{std::chrono::milliseconds{100}},
                     nanoseconds{std::chrono::hours{1}});
    require_in_range(who, "max_window", c.max_window, c.min_window,
                     nanoseconds{std::chrono::hours{1}});
    require_in_range(who, "window_size", c.window_size, 10, 1'000'000);
    require_in_range(who, "min_rtt_threshold", c.min_rtt_threshold, nanoseconds{0},
                     nanoseconds{std::chrono::hours{1}});
  }

 private:
  static windowed_limit_config validated(const windowed_limit_config& c) {
    validate(c);
    return c;
  }

  Inner inner_;
  windowed_limit_config config_;
  std::chrono::nanoseconds next_update_{0};
  int count_ = 0;
  std::int64_t sum_ = 0;
  std::int64_t min_rtt_ = std::numeric_limits<std::int64_t>::max();
  int max_in_flight_ = 0;
  bool any_drop_ = false;
};

static_assert(limit_algorithm<aimd_limit>);
static_assert(limit_algorithm<vegas_limit>);
static_assert(limit_algorithm<gradient2_limit>);
static_assert(limit_algorithm<windowed_limit<gradient2_limit>>);

}  // namespace outgrow
