// outgrow/core/metrics.hpp — conventions for metrics snapshots, and their {fmt} support.
//
// Every primitive reports its counters as a plain snapshot struct returned by value from
// one getter, `.metrics()`, readable at any time without stopping traffic. Live counters
// inside a primitive are `outgrow::counter` (relaxed atomics); a snapshot copies them out.
//
// Naming: the snapshot of primitive `X` is `X_metrics` (`circuit_breaker_metrics`,
// `load_balancer_metrics`, `work_queue_metrics`); a part of a primitive reports
// `<part>_metrics` (`endpoint_metrics`, `worker_metrics`). Public names are spelled out —
// no `lb_`/`hlc_` abbreviations; only `detail::` names abbreviate.
//
// A snapshot lists its fields once, in `for_each_metric`, and gets printing for free:
//
//   struct lookup_metrics {
//     static constexpr std::string_view metrics_name = "lookup_metrics";  // optional
//     std::uint64_t hits = 0, misses = 0;
//     double hit_rate() const { return outgrow::ratio(hits, hits + misses); }
//     template <class F> void for_each_metric(F&& f) const {
//       f("hits", hits); f("misses", misses); f("hit_rate", hit_rate());
//     }
//   };
//   fmt::print("{}\n", lookup_metrics{.hits = 99, .misses = 1});
//   // lookup_metrics{hits=99, misses=1, hit_rate=0.99}
//
// Floating-point fields print with 4 significant digits (whole numbers from 1000 up);
// durations with their unit.
//
// Thread-safety: `counter` may be bumped and read from any thread (relaxed ordering:
// each counter is exact, but two counters read one after the other are not a single
// atomic cut; snapshots document where that matters).
// Complexity: counter add/load are single relaxed atomic operations.
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace outgrow {

/// A monotonically increasing event count, bumped from any thread.
class counter {
 public:
  counter() noexcept = default;
  counter(const counter&) = delete;
  counter& operator=(const counter&) = delete;

  void add(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t load() const noexcept {
    return value_.load(std::memory_order_relaxed);
  }
  void reset() noexcept { value_.store(0, std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

/// num / den, or 0 when den is 0 (a hit rate with no requests is 0, not NaN).
[[nodiscard]] constexpr double ratio(std::uint64_t num, std::uint64_t den) noexcept {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

namespace detail {
/// Accepts any (name, value) pair; used only to check the metrics_snapshot concept.
struct metric_probe {
  template <class V>
  void operator()(std::string_view, const V&) const noexcept {}
};
}  // namespace detail

/// A plain struct that lists its metrics as (name, value) pairs.
template <class S>
concept metrics_snapshot =
    std::copyable<S> && requires(const S& s) { s.for_each_metric(detail::metric_probe{}); };

namespace detail {
template <class S>
constexpr std::string_view snapshot_name() {
  if constexpr (requires { S::metrics_name; }) {
    return S::metrics_name;
  } else {
    return {};
  }
}

template <class OutputIt>
struct metric_printer {
  OutputIt* out;
  bool first = true;
  template <class V>
  void operator()(std::string_view name, const V& value) {
    if (!first) *out = fmt::format_to(*out, ", ");
    *out = fmt::format_to(*out, "{}=", name);
    first = false;
    if constexpr (std::is_floating_point_v<V>) {
      // 4 significant digits, but never exponent notation for counts-like values.
      if (value >= 1000.0 || value <= -1000.0) {
        *out = fmt::format_to(*out, "{:.0f}", value);
      } else {
        *out = fmt::format_to(*out, "{:.4g}", value);
      }
    } else {
      *out = fmt::format_to(*out, "{}", value);
    }
  }
};
}  // namespace detail

}  // namespace outgrow

/// Prints any metrics_snapshot as `name{field=value, ...}`.
template <outgrow::metrics_snapshot S>
struct fmt::formatter<S, char> {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it != '}') {
      throw fmt::format_error("outgrow metrics snapshots take no format spec");
    }
    return it;
  }

  template <class FormatContext>
  auto format(const S& snapshot, FormatContext& ctx) const -> decltype(ctx.out()) {
    auto out = ctx.out();
    out = fmt::format_to(out, "{}{{", outgrow::detail::snapshot_name<S>());
    outgrow::detail::metric_printer<decltype(out)> printer{&out};
    snapshot.for_each_metric(printer);
    return fmt::format_to(out, "}}");
  }
};
