// outgrow/core/prometheus.hpp — any metrics snapshot as Prometheus text (format 0.0.4).
//
// What: one writer of the Prometheus text exposition format, version 0.0.4 (what a
// `/metrics` endpoint serves), over outgrow's metrics snapshots: every primitive's
// metrics() returns a struct whose for_each_metric(f) calls f(name, value)
// (core/metrics.hpp), so one generic writer exports all of them, and any struct of
// your own written the same way.
//
// When: a service built on outgrow primitives that Prometheus (or anything that reads
// its format: VictoriaMetrics, the OpenTelemetry collector, Grafana Agent) scrapes.
//
//   outgrow::prometheus_writer w;
//   w.add("shop_l1", cache.metrics(), {{"instance", "a"}});
//   for (const auto& e : lb.endpoints()) {
//     w.add("shop_upstream", e, {{"endpoint", e.endpoint}});
//   }
//   w.add_value("shop_up", 1, outgrow::prometheus_type::gauge, {}, "1 while serving");
//   reply(200, w.str(), outgrow::prometheus_content_type);
//   // # HELP shop_l1_hits cache_metrics hits
//   // # TYPE shop_l1_hits counter
//   // shop_l1_hits{instance="a"} 99
//
// The rules (each one tested in tests/core/prometheus_test.cpp):
//  - Names: a sample's name is `<prefix>_<field>` (`<field>` for an empty prefix);
//    characters outside [a-zA-Z0-9_:] become '_' and a leading digit gets a '_' in
//    front, so every name matches [a-zA-Z_:][a-zA-Z0-9_:]*. Label names likewise
//    match [a-zA-Z_][a-zA-Z0-9_]* (':' is not allowed in label names). Counters keep
//    the field's name: no `_total` is appended (0.0.4 does not require it; OpenMetrics
//    does).
//  - Counter or gauge: an unsigned integer field is a counter unless its name is in
//    prometheus_default_gauges (levels such as in_flight, size, pending, routable) or
//    in config.gauges; every other field (signed, floating point, bool, duration,
//    string) is a gauge unless its name is in config.counters (or in
//    prometheus_default_counters: total_load_time). config.counters wins over both
//    gauge lists.
//  - Values: integers exactly; bool as 0 / 1; doubles in the shortest form that reads
//    back to the same double, NaN as `NaN`, infinities as `+Inf` / `-Inf`; a
//    std::chrono duration in seconds, with `_seconds` appended to its name.
//  - A string field (or any {fmt}-printable non-number) is exported info-style: a
//    gauge of value 1 with the string as a label named after the field
//    (`shop_upstream_status{endpoint="a",status="ejected"} 1`); when the caller's labels
//    already hold a label of that name, it is not added twice. A nested snapshot is
//    exported with `<prefix>_<field>` as its prefix. Other values (vectors of snapshots,
//    enums without a formatter) are skipped.
//  - Label values escape backslash, double quote and newline (\\ \" \n); HELP text
//    escapes backslash and newline. The default HELP is "<metrics_name> <field>";
//    set_help() replaces it.
//  - Families: every sample of one name is written together under one HELP and one TYPE
//    line, in the order the names were first added, whatever order add() calls came in.
//    A family keeps the type it was first added with; a sample added again with the same
//    label set replaces the earlier value (so a series never appears twice).
//
// Trade-offs: the writer builds strings (a scrape every few seconds, not a hot path);
// it does not write histograms or summaries (no outgrow snapshot holds buckets: export
// p50/p99 fields as gauges) nor timestamps (Prometheus stamps the scrape).
//
// Thread-safety: one writer per thread (build one per scrape); the snapshots it reads
// are plain values. Complexity: add() is O(fields × samples of the family) (a repeated
// label set is looked for linearly), str() O(output size).
// Measured cost: not yet measured.
#pragma once

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ranges>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

/// The Content-Type of a 0.0.4 text exposition.
inline constexpr std::string_view prometheus_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

enum class prometheus_type : std::uint8_t { counter, gauge };

[[nodiscard]] constexpr std::string_view to_string(prometheus_type t) noexcept {
  return t == prometheus_type::counter ? "counter" : "gauge";
}

/// Unsigned integer fields of outgrow's snapshots that are levels, not event counts.
inline constexpr std::string_view prometheus_default_gauges[] = {
    "active",
    "applied_position",
    "available",
    "backlog",
    "busy",
    "capacity",
    "consumers",
    "current",
    "depth",
    "desired",
    "draining",
    "ejected",
    "endpoints",
    "excluded",
    "in_flight",
    "keys",
    "length",
    "limit",
    "lingering",
    "open_connections",
    "peak_replicas",
    "pending",
    "permits",
    "primary_position",
    "queue_depth",
    "repair_pending",
    "replicas_excluded_for_lag",
    "routable",
    "shards",
    "size",
    "subscribers",
    "unhealthy",
    "waiting",
    "waiting_retry",
    "workers",
    "hot_shards",
    "lag"};

/// Non-integer fields of outgrow's snapshots that only grow (durations summed).
inline constexpr std::string_view prometheus_default_counters[] = {"total_load_time"};

struct prometheus_writer_config {
  /// More field names (as the snapshot spells them, without the prefix) to export as
  /// gauges.
  std::vector<std::string> gauges{};
  /// Field names to export as counters whatever their value type (wins over gauges).
  std::vector<std::string> counters{};
};

/// A label set: {{"instance", "a"}, {"zone", "eu"}}, written in this order.
using prometheus_labels = std::vector<std::pair<std::string, std::string>>;

/// Builds one text exposition from any number of snapshots (see the header comment).
class prometheus_writer {
 public:
  explicit prometheus_writer(prometheus_writer_config config = {})
      : config_(std::move(config)) {}

  /// Adds every field of `snapshot` as `<prefix>_<field>{labels}`.
  template <metrics_snapshot S>
  void add(std::string_view prefix, const S& snapshot,
           const prometheus_labels& labels = {}) {
    visitor v{this, prefix.empty() ? std::string() : sanitize_name(prefix),
              detail::snapshot_name<S>(), &labels};
    snapshot.for_each_metric(v);
  }

  /// Adds one sample of a number of your own (a process counter, an "up" gauge).
  void add_value(std::string_view name, double value, prometheus_type type,
                 const prometheus_labels& labels = {}, std::string_view help = {}) {
    const std::string n = sanitize_name(name);
    family& f = family_of(n, type, help.empty() ? std::string_view(n) : help);
    set_sample(f, label_text(labels, {}, {}), format_value(value));
  }

  /// Replaces the HELP text of a family, added before or after this call.
  void set_help(std::string_view name, std::string_view help) {
    help_[sanitize_name(name)] = std::string(help);
  }

  /// The exposition: families in order of first appearance, each with its HELP and TYPE
  /// lines followed by its samples; ends with a newline (empty when nothing was added).
  [[nodiscard]] std::string str() const {
    std::string out;
    for (const family& f : families_) {
      const auto help = help_.find(f.name);
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name,
                         escape_help(help != help_.end() ? help->second : f.help), f.name,
                         to_string(f.type));
      for (const auto& [labels, value] : f.samples) {
        out += f.name;
        out += labels;
        out += ' ';
        out += value;
        out += '\n';
      }
    }
    return out;
  }

  /// Number of families (distinct sample names) added so far.
  [[nodiscard]] std::size_t families() const noexcept { return families_.size(); }

  void clear() noexcept {
    families_.clear();
    index_.clear();
    help_.clear();
  }

  // ---- the format rules, usable on their own -------------------------------------

  /// `name` with every character outside [a-zA-Z0-9_:] replaced by '_', and a '_'
  /// before a leading digit ("_" for an empty name).
  [[nodiscard]] static std::string sanitize_name(std::string_view name) {
    return sanitize(name, true);
  }
  /// As sanitize_name, but ':' is replaced too (label names exclude it).
  [[nodiscard]] static std::string sanitize_label_name(std::string_view name) {
    return sanitize(name, false);
  }
  /// Backslash, double quote and newline escaped as \\, \" and \n.
  [[nodiscard]] static std::string escape_label_value(std::string_view value) {
    return escape(value, true);
  }
  /// Backslash and newline escaped as \\ and \n (HELP text keeps its quotes).
  [[nodiscard]] static std::string escape_help(std::string_view text) {
    return escape(text, false);
  }
  /// NaN, +Inf, -Inf, or the shortest decimal that reads back to `v`.
  [[nodiscard]] static std::string format_value(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    return fmt::format("{}", v);
  }

 private:
  struct family {
    std::string name;
    prometheus_type type;
    std::string help;
    std::vector<std::pair<std::string, std::string>> samples;  // label text, value
  };

  struct visitor {
    prometheus_writer* w;
    std::string prefix;
    std::string_view snapshot;
    const prometheus_labels* labels;

    template <class V>
    void operator()(std::string_view field, const V& value) const {
      const std::string name = prefix.empty()
                                   ? sanitize_name(field)
                                   : sanitize_name(prefix + "_" + std::string(field));
      const std::string help =
          snapshot.empty() ? std::string(field) : fmt::format("{} {}", snapshot, field);
      if constexpr (std::is_same_v<V, bool>) {
        w->add_sample(name, help, w->type_of(field, false), value ? "1" : "0", *labels);
      } else if constexpr (std::is_integral_v<V>) {
        w->add_sample(name, help, w->type_of(field, std::is_unsigned_v<V>),
                      fmt::format("{}", value), *labels);
      } else if constexpr (std::is_floating_point_v<V>) {
        w->add_sample(name, help, w->type_of(field, false),
                      format_value(static_cast<double>(value)), *labels);
      } else if constexpr (detail::is_duration<V>::value) {
        const double seconds = std::chrono::duration<double>(value).count();
        w->add_sample(name + "_seconds", help + " (seconds)", w->type_of(field, false),
                      format_value(seconds), *labels);
      } else if constexpr (metrics_snapshot<V>) {
        value.for_each_metric(visitor{w, name, detail::snapshot_name<V>(), labels});
      } else if constexpr (std::is_convertible_v<const V&, std::string_view>) {
        w->add_info(name, help, field, std::string_view(value), *labels);
      } else if constexpr (std::ranges::range<V>) {
        // Skipped (vectors of snapshots, lists): also when <fmt/ranges.h> makes them
        // formattable, so the output does not depend on what else the caller includes.
      } else if constexpr (fmt::is_formattable<V>::value) {
        w->add_info(name, help, field, fmt::format("{}", value), *labels);
      }
    }
  };

  [[nodiscard]] prometheus_type type_of(std::string_view field,
                                        bool unsigned_integer) const {
    if (listed(config_.counters, field) || listed(prometheus_default_counters, field)) {
      return prometheus_type::counter;
    }
    if (!unsigned_integer || listed(config_.gauges, field) ||
        listed(prometheus_default_gauges, field)) {
      return prometheus_type::gauge;
    }
    return prometheus_type::counter;
  }

  template <class R>
  static bool listed(const R& names, std::string_view field) {
    for (const auto& n : names) {
      if (std::string_view(n) == field) return true;
    }
    return false;
  }

  void add_sample(const std::string& name, std::string_view help, prometheus_type type,
                  std::string value, const prometheus_labels& labels) {
    family& f = family_of(name, type, help);
    set_sample(f, label_text(labels, {}, {}), std::move(value));
  }

  void add_info(const std::string& name, std::string_view help, std::string_view field,
                std::string_view text, const prometheus_labels& labels) {
    family& f = family_of(name, prometheus_type::gauge, help);
    set_sample(f, label_text(labels, sanitize_label_name(field), text), "1");
  }

  family& family_of(const std::string& name, prometheus_type type, std::string_view help) {
    const auto [it, added] = index_.try_emplace(name, families_.size());
    if (added) {
      families_.push_back(family{name, type, std::string(help), {}});
    }
    return families_[it->second];
  }

  static void set_sample(family& f, std::string labels, std::string value) {
    for (auto& [l, v] : f.samples) {
      if (l == labels) {
        v = std::move(value);
        return;
      }
    }
    f.samples.emplace_back(std::move(labels), std::move(value));
  }

  /// `{a="x",b="y"}` (empty for no labels); `extra` is appended unless a label of that
  /// name is already there.
  static std::string label_text(const prometheus_labels& labels, std::string_view extra,
                                std::string_view extra_value) {
    std::string out;
    std::vector<std::string> names;
    const auto append = [&](std::string name, std::string_view value) {
      for (const std::string& n : names) {
        if (n == name) return;  // a series may hold each label name once
      }
      out += out.empty() ? "{" : ",";
      out += name;
      out += "=\"";
      out += escape_label_value(value);
      out += '"';
      names.push_back(std::move(name));
    };
    for (const auto& [name, value] : labels) append(sanitize_label_name(name), value);
    if (!extra.empty()) append(std::string(extra), extra_value);
    if (!out.empty()) out += '}';
    return out;
  }

  static std::string sanitize(std::string_view name, bool colon_allowed) {
    std::string out;
    out.reserve(name.size() + 1);
    if (name.empty() || (name.front() >= '0' && name.front() <= '9')) out += '_';
    for (const char c : name) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '_' || (colon_allowed && c == ':');
      out += ok ? c : '_';
    }
    return out;
  }

  static std::string escape(std::string_view text, bool quote) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
      if (c == '\\') {
        out += "\\\\";
      } else if (c == '\n') {
        out += "\\n";
      } else if (quote && c == '"') {
        out += "\\\"";
      } else {
        out += c;
      }
    }
    return out;
  }

  prometheus_writer_config config_;
  std::vector<family> families_;
  std::unordered_map<std::string, std::size_t> index_;
  std::unordered_map<std::string, std::string> help_;
};

}  // namespace outgrow
