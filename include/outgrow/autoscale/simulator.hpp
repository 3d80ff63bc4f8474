// outgrow/autoscale/simulator.hpp — which scaling policy serves a traffic shape best.
//
// A deterministic discrete-time model of a service (1-second steps): requests arrive
// at the rate a load trace gives; each ready replica serves `capacity_per_replica`
// requests/s; what is not served waits in a queue; a new replica serves only after
// `startup`. Latency = service_time / (1 − ρ) (ρ = demand / ready capacity, capped at
// 0.99) + the time to drain the queue; a second violates the SLO when that exceeds
// `slo_latency` (or there is demand and no ready replica). Every `evaluation_period`
// an `autoscaler<manual_clock>` with your policies gets the period's metrics and
// ticks; its decisions add (starting) or remove (starting first) replicas.
//
//   auto trace = outgrow::load_trace::black_friday(1000.0);  // ±5 % noise, random seed
//   outgrow::simulator sim(trace, {.capacity_per_replica = 100, .startup = 60s});
//   outgrow::autoscaler_config limits{.min_replicas = 2, .max_replicas = 200};
//   std::vector<outgrow::simulation_result> runs;
//   runs.push_back(sim.run("hpa", limits, outgrow::target_tracking(
//       {.metrics = {{"rps_per_replica", 70.0}}})));
//   runs.push_back(sim.run("step", limits, outgrow::step_scaling()));
//   fmt::print("{}", outgrow::comparison_table(runs));
//   fmt::print("{}\n", outgrow::sparkline(runs[0].replica_series(), 60));
//   outgrow::write_svg_file("replicas.svg", runs);
//
// Metrics fed each evaluation (names in outgrow::sim_metric), averaged over the period:
//   cpu              % of ready capacity used (0–100; saturates when overloaded)
//   rps              arrivals per second, total
//   rps_per_replica  arrivals per second per ready replica (demand, not capped)
//   backlog          requests queued or in service (Little's law: served × service_time)
//   latency_ms       mean modeled latency
// Per-replica metrics are not sent while no replica is ready (as a real scrape). cpu and
// rps_per_replica are averages over the ready replicas only (starting ones get no
// traffic): track them as metric_target_type::utilization, the default, which leaves
// not-ready replicas out and counts them as 0 on a scale-up.
//
// Report per run (simulation_report): SLO-violation seconds, replica-seconds (cost:
// starting replicas are paid for too), reversals (a change in the opposite direction
// of the previous change; flapping), time to absorb each spike (from the trace's spike
// mark until within SLO with ready capacity >= demand for `settle`; the longest),
// peak replicas. Seconds before `warmup` are simulated but not counted.
// Outputs: comparison_table(), write_csv(), write_report_csv(), write_svg() /
// write_svg_file(), sparkline() (Unicode blocks ▁▂▃▄▅▆▇█).
//
// Traces (autoscale/load_trace.hpp): steady, diurnal, spike, black_friday, sawtooth,
// recurring_spike and from_csv; noise is seeded (trace_noise::seed: set for the same
// trace on every run).
//
// Thread-safety: a simulator is immutable after construction; run() may be called
// from several threads at once (each run has its own autoscaler and clock).
// Complexity: run() O(trace seconds + evaluations × policy cost); the timeline keeps
// one point per `record_every`.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/autoscale/detail/trace_input.hpp>
#include <outgrow/autoscale/load_trace.hpp>
#include <outgrow/autoscale/scaling_policy.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

/// Names of the metrics the simulator feeds to the autoscaler.
namespace sim_metric {
inline constexpr std::string_view cpu = "cpu";
inline constexpr std::string_view rps = "rps";
inline constexpr std::string_view rps_per_replica = "rps_per_replica";
inline constexpr std::string_view backlog = "backlog";
inline constexpr std::string_view latency_ms = "latency_ms";
}  // namespace sim_metric

struct simulation_config {
  /// Requests/s one ready replica serves at 100 % utilization. (0, 1e12]
  double capacity_per_replica = 100.0;
  /// Time from a scale-up until the new replica serves: 60 s. [0, 1 h]
  std::chrono::seconds startup{60};
  /// How often the autoscaler ticks: 15 s, the HPA sync period. [1 s, 1 h]
  std::chrono::seconds evaluation_period{15};
  /// Service time of one request at no load. (0, 1 min]
  std::chrono::milliseconds service_time{20};
  /// Latency above this violates the SLO. (service_time, 1 h]
  std::chrono::milliseconds slo_latency{500};
  /// Replicas at t = 0 (all ready); 0 = enough for the first second at 70 %, within
  /// the run's min/max replicas. An explicit count must lie within them (run() throws
  /// config_error otherwise). [0, 1000000]
  int initial_replicas = 0;
  /// Seconds before this are simulated but not counted in the report. [0, length)
  std::chrono::seconds warmup{0};
  /// A spike counts as absorbed once within SLO with enough ready capacity this long.
  /// [1 s, 24 h]; only the default when the trace has no spike mark at or after
  /// warmup (it is never read then).
  std::chrono::seconds settle{60};
  /// Timeline resolution; 0 = one point per evaluation period. [0, trace length]
  std::chrono::seconds record_every{0};
};

/// One recorded instant of a run.
struct simulation_point {
  std::chrono::seconds t{0};
  double load = 0.0;  ///< arrivals/s in that second
  int replicas = 0;   ///< provisioned (ready + starting)
  int ready = 0;
  int desired = 0;  ///< the latest decision
  double latency_ms = 0.0;
  double backlog = 0.0;  ///< queued requests
  bool slo_violated = false;
};

/// The summary of one run (a metrics snapshot: fmt-printable).
struct simulation_report {
  static constexpr std::string_view metrics_name = "simulation_report";
  std::string policy;
  double hours = 0.0;  ///< counted (after warmup)
  double slo_violation_seconds = 0.0;
  double replica_seconds = 0.0;
  std::uint64_t reversals = 0;
  /// Longest time from a spike mark to absorbed; -1 s when the trace has no spike.
  std::chrono::seconds time_to_absorb{-1};
  bool absorbed_all = true;  ///< false when a spike was still not absorbed at the end
  int peak_replicas = 0;
  std::uint64_t evaluations = 0;
  std::uint64_t scale_ups = 0;
  std::uint64_t scale_downs = 0;

  [[nodiscard]] double reversals_per_hour() const noexcept {
    return hours > 0.0 ? static_cast<double>(reversals) / hours : 0.0;
  }
  [[nodiscard]] double replica_hours() const noexcept { return replica_seconds / 3600.0; }

  template <class F>
  void for_each_metric(F&& f) const {
    f("policy", policy);
    f("slo_violation_seconds", slo_violation_seconds);
    f("replica_hours", replica_hours());
    f("reversals", reversals);
    f("time_to_absorb", time_to_absorb);
    f("peak_replicas", peak_replicas);
    f("scale_ups", scale_ups);
    f("scale_downs", scale_downs);
  }
};

struct simulation_result {
  simulation_report report;
  std::vector<simulation_point> timeline;
  double capacity_per_replica = 0.0;

  /// Provisioned replicas at each recorded point (for sparkline()).
  [[nodiscard]] std::vector<double> replica_series() const {
    std::vector<double> v;
    v.reserve(timeline.size());
    for (const simulation_point& p : timeline) v.push_back(p.replicas);
    return v;
  }
  /// Replicas the load needs at 100 % utilization at each recorded point.
  [[nodiscard]] std::vector<double> demand_series() const {
    std::vector<double> v;
    v.reserve(timeline.size());
    for (const simulation_point& p : timeline) v.push_back(p.load / capacity_per_replica);
    return v;
  }
};

class simulator {
 public:
  /// Throws: config_error if a simulation_config field is outside its range (warmup and
  /// record_every against the trace's length), or settle differs from its default while
  /// the trace has no spike mark at or after warmup.
  explicit simulator(load_trace trace, simulation_config config = {})
      : trace_(std::move(trace)), config_(validated(config, trace_)) {}

  [[nodiscard]] const load_trace& trace() const noexcept { return trace_; }
  [[nodiscard]] const simulation_config& config() const noexcept { return config_; }

  /// Runs the trace under an autoscaler with `limits` and these policies.
  /// Throws: config_error if `limits` is invalid, a policy needs more history than
  /// limits.history keeps, or an explicit initial_replicas lies outside the limits.
  template <scaling_policy... Policies>
  [[nodiscard]] simulation_result run(std::string_view name, autoscaler_config limits,
                                      Policies... policies) const {
    return run_with(name, limits, [&](autoscaler<manual_clock>& scaler) {
      (scaler.add_policy(std::move(policies)), ...);
    });
  }

  /// As run(), with `setup(autoscaler<manual_clock>&)` adding the policies (and, e.g.,
  /// feeding predictive_scaling::learn()). The simulator installs its own on_scale
  /// actuator after setup.
  /// Throws: as run(), and whatever `setup` throws.
  template <class Setup>
  requires std::invocable<Setup&, autoscaler<manual_clock>&>
  [[nodiscard]] simulation_result run_with(std::string_view name, autoscaler_config limits,
                                           Setup&& setup) const {
    using std::chrono::seconds;
    manual_clock clock;
    autoscaler<manual_clock> scaler(limits, clock);
    setup(scaler);

    const double cap_per = config_.capacity_per_replica;
    const double service_s = std::chrono::duration<double>(config_.service_time).count();
    const double slo_s = std::chrono::duration<double>(config_.slo_latency).count();
    const std::int64_t eval = config_.evaluation_period.count();
    const std::int64_t record =
        config_.record_every.count() > 0 ? config_.record_every.count() : eval;
    const std::int64_t startup = config_.startup.count();
    const std::int64_t warmup = config_.warmup.count();
    const std::int64_t settle = config_.settle.count();
    const std::int64_t n = trace_.length().count();

    int initial = config_.initial_replicas;
    if (initial == 0) {
      initial = std::max(1, detail::ceil_replicas(trace_.rate(0) / (0.7 * cap_per)));
      initial = std::clamp(initial, limits.min_replicas, limits.max_replicas);
    } else {
      // An explicit count is used as given, never clamped: outside the limits it is an
      // error (the autoscaler validated the limits themselves above).
      require_in_range("simulator", "initial_replicas", initial, limits.min_replicas,
                       limits.max_replicas);
    }

    int ready = initial;
    std::vector<std::int64_t> starting;  // ready-at seconds, ascending
    std::size_t starting_head = 0;
    int last_direction = 0;
    double backlog = 0.0;
    int desired = initial;

    simulation_result result;
    result.capacity_per_replica = cap_per;
    result.report.policy = std::string(name);
    result.timeline.reserve(static_cast<std::size_t>(n / record + 1));

    auto provisioned = [&] {
      return ready + static_cast<int>(starting.size() - starting_head);
    };
    std::int64_t now_s = 0;
    scaler.on_scale([&](const scaling_decision& d) {
      const int have = provisioned();
      if (d.desired > have) {
        for (int i = have; i < d.desired; ++i) starting.push_back(now_s + startup);
      } else {
        int remove = have - d.desired;
        while (remove > 0 && starting.size() > starting_head) {
          starting.pop_back();
          --remove;
        }
        ready -= remove;
      }
      const int direction = d.desired > have ? 1 : -1;
      if (last_direction != 0 && direction != last_direction && now_s >= warmup) {
        ++result.report.reversals;
      }
      last_direction = direction;
      if (now_s >= warmup) {
        if (direction > 0)
          ++result.report.scale_ups;
        else
          ++result.report.scale_downs;
      }
    });
    scaler.set_replicas(initial, 0);

    struct spike_state {
      std::int64_t mark;
      std::int64_t ok_since = -1;
      std::int64_t absorbed_after = -1;
    };
    std::vector<spike_state> spikes;
    for (seconds m : trace_.spikes()) {
      if (m.count() >= warmup && m.count() < n) spikes.push_back({m.count()});
    }

    double win_arrivals = 0.0;
    double win_served = 0.0;
    double win_capacity = 0.0;
    double win_latency = 0.0;
    std::int64_t win_seconds = 0;

    for (std::int64_t s = 0; s < n; ++s) {
      while (starting_head < starting.size() && starting[starting_head] <= s) {
        ++starting_head;
        ++ready;
      }
      if (starting_head == starting.size()) {
        starting.clear();
        starting_head = 0;
      }
      const double arrivals = trace_.rate(s);
      const double capacity = ready * cap_per;
      const double work = backlog + arrivals;
      const double served = std::min(work, capacity);
      backlog = work - served;
      if (backlog < 1e-9) backlog = 0.0;
      double latency = 0.0;
      bool violated = false;
      if (ready == 0) {
        violated = arrivals > 0.0 || backlog > 0.0;
        latency = violated ? 3600.0 : service_s;
      } else {
        const double rho = std::min(arrivals / capacity, 0.99);
        latency = service_s / (1.0 - rho) + backlog / capacity;
        violated = latency > slo_s;
      }
      win_arrivals += arrivals;
      win_served += served;
      win_capacity += capacity;
      win_latency += std::min(latency, 3600.0);
      ++win_seconds;

      const int prov = provisioned();
      if (s >= warmup) {
        if (violated) result.report.slo_violation_seconds += 1.0;
        result.report.replica_seconds += prov;
        result.report.peak_replicas = std::max(result.report.peak_replicas, prov);
      }
      const bool enough = !violated && capacity >= arrivals;
      for (spike_state& sp : spikes) {
        if (sp.absorbed_after >= 0 || s < sp.mark) continue;
        if (!enough) {
          sp.ok_since = -1;
          continue;
        }
        if (sp.ok_since < 0) sp.ok_since = s;
        if (s + 1 - sp.ok_since >= settle) sp.absorbed_after = sp.ok_since - sp.mark;
      }
      if (s % record == 0) {
        result.timeline.push_back({seconds{s}, arrivals, prov, ready, desired,
                                   latency * 1000.0, backlog, violated});
      }

      // End of second s: the autoscaler evaluates at s + 1 when a period is over.
      if ((s + 1) % eval == 0) {
        now_s = s + 1;
        clock.set(scaling_time_point{seconds{now_s}});
        const auto at = clock.now();
        const auto w = static_cast<double>(win_seconds);
        const double rps = win_arrivals / w;
        scaler.observe(sim_metric::rps, rps, at);
        if (ready > 0) {
          scaler.observe(sim_metric::rps_per_replica, rps / ready, at);
          if (win_capacity > 0.0) {
            scaler.observe(sim_metric::cpu, 100.0 * win_served / win_capacity, at);
          }
          scaler.observe(sim_metric::latency_ms, 1000.0 * win_latency / w, at);
        }
        scaler.observe(sim_metric::backlog, backlog + (win_served / w) * service_s, at);
        scaler.set_replicas(provisioned(), provisioned() - ready);
        const scaling_decision d = scaler.tick(at);
        desired = d.desired;
        if (now_s > warmup) ++result.report.evaluations;
        win_arrivals = win_served = win_capacity = win_latency = 0.0;
        win_seconds = 0;
      }
    }

    result.report.hours =
        static_cast<double>(std::max<std::int64_t>(0, n - warmup)) / 3600.0;
    for (const spike_state& sp : spikes) {
      std::int64_t took = sp.absorbed_after;
      if (took < 0) {
        result.report.absorbed_all = false;
        took = n - sp.mark;
      }
      result.report.time_to_absorb = std::max(result.report.time_to_absorb, seconds{took});
    }
    return result;
  }

 private:
  static simulation_config validated(const simulation_config& c, const load_trace& trace) {
    using namespace std::chrono;
    constexpr std::string_view me = "simulator";
    require(c.capacity_per_replica > 0.0 && c.capacity_per_replica <= load_trace::max_rate,
            me, "capacity_per_replica", "in (0, 1000000000000] requests/s",
            c.capacity_per_replica);
    detail::require_duration_in(me, "startup", c.startup, seconds{0}, hours{1});
    detail::require_duration_in(me, "evaluation_period", c.evaluation_period, seconds{1},
                                hours{1});
    detail::require_duration_in(me, "service_time", c.service_time, milliseconds{1},
                                minutes{1});
    require(c.slo_latency > c.service_time && c.slo_latency <= hours{1}, me, "slo_latency",
            fmt::format("in (service_time = {}, 1h]",
                        detail::describe_duration(c.service_time)),
            detail::describe_any_duration(c.slo_latency));
    require_in_range(me, "initial_replicas", c.initial_replicas, 0, 1'000'000);
    // Seconds at or after the trace's end are never simulated: a warmup that long
    // would leave nothing to count, a record_every that long nothing to record.
    require(c.warmup.count() >= 0 && c.warmup < trace.length(), me, "warmup",
            fmt::format("in [0s, the trace's length = {})",
                        detail::describe_duration(trace.length())),
            detail::describe_any_duration(c.warmup));
    detail::require_duration_in(me, "settle", c.settle, seconds{1}, hours{24});
    // settle only measures spikes counted in the report (marks at or after warmup).
    const bool measures_spikes =
        std::any_of(trace.spikes().begin(), trace.spikes().end(),
                    [&](seconds mark) { return mark >= c.warmup; });
    require(measures_spikes || c.settle == simulation_config{}.settle, me, "settle",
            "the default 60s when the trace has no spike mark at or after warmup (never "
            "read)",
            detail::describe_any_duration(c.settle));
    detail::require_duration_in(me, "record_every", c.record_every, seconds{0},
                                trace.length());
    return c;
  }

  load_trace trace_;
  simulation_config config_;
};

// ---------------------------------------------------------------------------------
// Output: table, CSV, SVG, sparkline
// ---------------------------------------------------------------------------------

/// The reports side by side, one row per policy.
[[nodiscard]] inline std::string comparison_table(std::span<const simulation_result> runs) {
  std::size_t w = 6;
  for (const simulation_result& r : runs) w = std::max(w, r.report.policy.size());
  std::string out =
      fmt::format("{:<{}}  {:>12}  {:>12}  {:>9}  {:>10}  {:>5}\n", "policy", w,
                  "SLO-viol. s", "replica-h", "reversals", "absorb s", "peak");
  for (const simulation_result& r : runs) {
    const simulation_report& p = r.report;
    std::string absorb =
        p.time_to_absorb.count() < 0
            ? std::string("-")
            : fmt::format("{}{}", p.time_to_absorb.count(), p.absorbed_all ? "" : "+");
    out += fmt::format("{:<{}}  {:>12.0f}  {:>12.1f}  {:>9}  {:>10}  {:>5}\n", p.policy, w,
                       p.slo_violation_seconds, p.replica_hours(), p.reversals, absorb,
                       p.peak_replicas);
  }
  return out;
}

/// The timelines side by side: t_s, load_rps, needed_replicas, then per run
/// <policy>_replicas, <policy>_ready, <policy>_latency_ms (runs of one trace).
inline void write_csv(std::ostream& out, std::span<const simulation_result> runs) {
  if (runs.empty()) return;
  out << "t_s,load_rps,needed_replicas";
  std::size_t rows = runs[0].timeline.size();
  for (const simulation_result& r : runs) {
    out << fmt::format(",{0}_replicas,{0}_ready,{0}_latency_ms", r.report.policy);
    rows = std::min(rows, r.timeline.size());
  }
  out << '\n';
  for (std::size_t i = 0; i < rows; ++i) {
    const simulation_point& p0 = runs[0].timeline[i];
    out << fmt::format("{},{:.3f},{:.3f}", p0.t.count(), p0.load,
                       p0.load / runs[0].capacity_per_replica);
    for (const simulation_result& r : runs) {
      const simulation_point& p = r.timeline[i];
      out << fmt::format(",{},{},{:.1f}", p.replicas, p.ready, p.latency_ms);
    }
    out << '\n';
  }
}

/// One line per run with the report's figures.
inline void write_report_csv(std::ostream& out, std::span<const simulation_result> runs) {
  out << "policy,slo_violation_seconds,replica_seconds,reversals,time_to_absorb_s,"
         "absorbed_all,peak_replicas,scale_ups,scale_downs\n";
  for (const simulation_result& r : runs) {
    const simulation_report& p = r.report;
    out << fmt::format("{},{:.0f},{:.0f},{},{},{},{},{},{}\n", p.policy,
                       p.slo_violation_seconds, p.replica_seconds, p.reversals,
                       p.time_to_absorb.count(), p.absorbed_all ? 1 : 0, p.peak_replicas,
                       p.scale_ups, p.scale_downs);
  }
}

namespace detail {
/// Text safe inside SVG/XML markup.
inline std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}
}  // namespace detail

struct svg_options {
  int width = 960;   ///< pixels, [220, 100000] (the plot area is width − 210; the image
                     ///< grows when a policy name needs a wider legend)
  int height = 360;  ///< pixels, [80, 100000] (the plot area is height − 70)
  std::string title = "replicas over time";
};

namespace detail {
inline void validate_svg_options(const svg_options& options) {
  require_in_range("write_svg", "svg_options.width", options.width, 220, 100'000);
  require_in_range("write_svg", "svg_options.height", options.height, 80, 100'000);
}
}  // namespace detail

/// An SVG line chart: replicas the load needs (grey area) and each run's provisioned
/// replicas (one colored line each), over time.
/// Throws: config_error (naming write_svg) if the width or height is outside
/// svg_options' ranges.
inline void write_svg(std::ostream& out, std::span<const simulation_result> runs,
                      const svg_options& options = {}) {
  constexpr std::string_view colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  detail::validate_svg_options(options);
  // The legend (right of the plot) is as wide as its longest name: about 7 px per
  // character at 12 px sans-serif, plus the colour key. The image grows to fit it; the
  // plot keeps its width.
  std::size_t longest = 6;  // "needed"
  for (const simulation_result& r : runs)
    longest = std::max(longest, r.report.policy.size());
  const double legend = 26.0 + 7.0 * static_cast<double>(longest) + 10.0;
  const double left = 50, right = 160, top = 30, bottom = 40;
  const double pw = options.width - left - right;  // >= 10: checked above
  const double image_width =
      std::max(static_cast<double>(options.width), left + pw + 10 + legend);
  const double ph = options.height - top - bottom;
  double t_max = 1.0;
  double y_max = 1.0;
  for (const simulation_result& r : runs) {
    for (const simulation_point& p : r.timeline) {
      t_max = std::max(t_max, static_cast<double>(p.t.count()));
      y_max = std::max(
          {y_max, static_cast<double>(p.replicas), p.load / r.capacity_per_replica});
    }
  }
  y_max *= 1.05;
  auto x_of = [&](std::chrono::seconds t) {
    return left + pw * static_cast<double>(t.count()) / t_max;
  };
  auto y_of = [&](double v) { return top + ph * (1.0 - v / y_max); };
  std::string svg;
  auto it = std::back_inserter(svg);
  fmt::format_to(it,
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
                 "font-family=\"sans-serif\" font-size=\"12\">\n"
                 "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
                 "<text x=\"{}\" y=\"18\" font-size=\"14\">{}</text>\n",
                 image_width, options.height, left, detail::xml_escape(options.title));
  // Axes and ticks.
  fmt::format_to(it,
                 "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n"
                 "<line x1=\"{0}\" y1=\"{2}\" x2=\"{3}\" y2=\"{2}\" stroke=\"black\"/>\n",
                 left, top, top + ph, left + pw);
  for (int i = 0; i <= 4; ++i) {
    const double v = y_max * i / 4.0;
    fmt::format_to(it, "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.0f}</text>\n",
                   left - 4, y_of(v) + 4, v);
    const double t = t_max * i / 4.0;
    fmt::format_to(it,
                   "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.1f} h</text>\n",
                   left + pw * i / 4.0, top + ph + 16, t / 3600.0);
  }
  if (!runs.empty()) {
    std::string area = fmt::format("{:.1f},{:.1f}", left, top + ph);
    for (const simulation_point& p : runs[0].timeline) {
      fmt::format_to(std::back_inserter(area), " {:.1f},{:.1f}", x_of(p.t),
                     y_of(p.load / runs[0].capacity_per_replica));
    }
    if (!runs[0].timeline.empty()) {
      fmt::format_to(std::back_inserter(area), " {:.1f},{:.1f}",
                     x_of(runs[0].timeline.back().t), top + ph);
    }
    fmt::format_to(it, "<polygon points=\"{}\" fill=\"#dddddd\"/>\n", area);
    fmt::format_to(it,
                   "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"#dddddd\"/>"
                   "<text x=\"{}\" y=\"{}\">needed</text>\n",
                   left + pw + 10, top, left + pw + 26, top + 10);
  }
  for (std::size_t k = 0; k < runs.size(); ++k) {
    const std::string_view color = colors[k % std::size(colors)];
    std::string line;
    for (const simulation_point& p : runs[k].timeline) {
      fmt::format_to(std::back_inserter(line), "{}{:.1f},{:.1f}", line.empty() ? "" : " ",
                     x_of(p.t), y_of(p.replicas));
    }
    fmt::format_to(
        it, "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>\n",
        line, color);
    const double ly = top + 20.0 * static_cast<double>(k + 1);
    fmt::format_to(it,
                   "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" "
                   "stroke-width=\"2\"/><text x=\"{4}\" y=\"{5}\">{6}</text>\n",
                   left + pw + 10, ly + 6, left + pw + 22, color, left + pw + 26, ly + 10,
                   detail::xml_escape(runs[k].report.policy));
  }
  svg += "</svg>\n";
  out << svg;
}

/// write_svg() into a file; false if it cannot be written.
/// Throws: config_error for bad options, as write_svg(), before the file is created.
inline bool write_svg_file(const std::string& path, std::span<const simulation_result> runs,
                           const svg_options& options = {}) {
  detail::validate_svg_options(options);  // before the file is created
  std::ofstream out(path);
  if (!out) return false;
  write_svg(out, runs, options);
  return static_cast<bool>(out);
}

/// A one-line chart of `values` in Unicode blocks (▁▂▃▄▅▆▇█), `width` characters:
/// each character shows the largest value of its slice, scaled from 0 to `scale_max`
/// (0 = the largest value; pass the same value to make several lines comparable).
[[nodiscard]] inline std::string sparkline(std::span<const double> values,
                                           std::size_t width = 60, double scale_max = 0.0) {
  static constexpr std::string_view blocks[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  std::string out;
  if (values.empty() || width == 0) return out;
  width = std::min(width, values.size());
  const double hi =
      scale_max > 0.0 ? scale_max : *std::max_element(values.begin(), values.end());
  for (std::size_t c = 0; c < width; ++c) {
    const std::size_t from = c * values.size() / width;
    const std::size_t to = std::max(from + 1, (c + 1) * values.size() / width);
    double v = values[from];
    for (std::size_t i = from; i < to; ++i) v = std::max(v, values[i]);
    std::size_t level = 0;
    if (hi > 0.0 && v > 0.0) {
      level = static_cast<std::size_t>(std::ceil(v / hi * 8.0)) - 1;
      level = std::min<std::size_t>(level, 7);
    }
    out += blocks[level];
  }
  return out;
}

}  // namespace outgrow
