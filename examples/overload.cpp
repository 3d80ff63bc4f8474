// An overloaded service kept at full goodput by the adaptive concurrency limiter.
//
// A service with 8 workers and 10 ms mean service time (capacity 800 requests/s) is
// offered 0.5x to 5x its capacity in a deterministic simulation
// (outgrow/admission/overload_simulator.hpp). Without admission control its queue grows
// until every answer comes after the clients' 1 s timeout: goodput falls to zero while
// the server is 100 % busy. A concurrency_limiter (Vegas over 100 ms windows, Netflix's
// algorithm) learns the concurrency the service sustains from measured latency and
// rejects the excess at once. Beside it: a fixed bulkhead (16 in the service), and the SRE
// client-side throttle in front of that bulkhead.
//
//   overload [--svg PATH]     # writes the goodput / p99 chart (default: temp dir)
#include <outgrow/admission/overload_simulator.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

using namespace std::chrono_literals;
using clock_type = outgrow::manual_clock;

namespace {

struct point {
  double load;
  outgrow::overload_report none, bulkhead, limiter, throttle;
};

point run(double load) {
  point p{load, {}, {}, {}, {}};
  const outgrow::overload_simulator_config config{};  // 8 workers, 10 ms, timeout 1 s
  {
    clock_type clock;
    outgrow::overload_simulator sim(config, clock);
    outgrow::open_gate gate;
    p.none = sim.run(gate, load);
  }
  {
    clock_type clock;
    outgrow::overload_simulator sim(config, clock);
    outgrow::basic_bulkhead<clock_type> bulkhead({.max_concurrent_calls = 16}, clock);
    outgrow::bulkhead_gate gate(bulkhead);
    p.bulkhead = sim.run(gate, load);
  }
  {
    clock_type clock;
    outgrow::overload_simulator sim(config, clock);
    using limit = outgrow::windowed_limit<outgrow::vegas_limit>;
    outgrow::concurrency_limiter<limit, clock_type> limiter(
        limit(outgrow::vegas_limit({.initial_limit = 8, .seed = 1}),
              {.min_window = 100ms, .max_window = 100ms}),
        clock);
    outgrow::limiter_gate gate(limiter);
    p.limiter = sim.run(gate, load);
  }
  {
    clock_type clock;
    outgrow::overload_simulator sim(config, clock);
    outgrow::basic_adaptive_throttle<clock_type> throttle({.seed = 1}, clock);
    outgrow::basic_bulkhead<clock_type> bulkhead({.max_concurrent_calls = 16}, clock);
    outgrow::bulkhead_gate server(bulkhead);
    outgrow::throttle_gate gate(throttle, server);
    p.throttle = sim.run(gate, load);
  }
  return p;
}

double ms(std::chrono::nanoseconds d) {
  return static_cast<double>(d.count()) / 1e6;
}

// Two panels: goodput share of capacity, and p99 latency (log scale), against load.
std::string chart(const std::vector<point>& points) {
  const double w = 360, h = 220, left = 60, top = 40, gap = 110;
  std::string svg = fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' "
      "font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' "
      "fill='white'/>\n",
      left + 2 * w + gap + 20, top + h + 100);
  struct series {
    const char* name;
    const char* color;
    const char* dash;  // the three protected lines nearly coincide: dashes tell them apart
    outgrow::overload_report point::*field;
  };
  const series all[] = {{"no admission control", "#d62728", "none", &point::none},
                        {"bulkhead (16)", "#7f7f7f", "8 4", &point::bulkhead},
                        {"adaptive limiter (Vegas)", "#1f77b4", "none", &point::limiter},
                        {"SRE throttle + bulkhead", "#2ca02c", "2 3", &point::throttle}};
  const double max_load = points.back().load;
  auto x_of = [&](double panel, double load) { return panel + load / max_load * w; };
  for (int panel = 0; panel < 2; ++panel) {
    const double x0 = left + panel * (w + gap);
    svg +=
        fmt::format("<text x='{}' y='{}' font-size='14'>{}</text>\n", x0, top - 15,
                    panel == 0 ? "goodput (share of capacity)" : "p99 latency (log scale)");
    svg += fmt::format(
        "<line x1='{0}' y1='{1}' x2='{0}' y2='{2}' stroke='black'/><line x1='{0}' y1='{2}' "
        "x2='{3}' y2='{2}' stroke='black'/>\n",
        x0, top, top + h, x0 + w);
    for (double load = 1; load <= max_load; load += 1) {
      svg += fmt::format("<text x='{}' y='{}' text-anchor='middle'>{}x</text>\n",
                         x_of(x0, load), top + h + 16, load);
    }
    svg += fmt::format(
        "<text x='{}' y='{}' text-anchor='middle'>offered load / capacity</text>\n",
        x0 + w / 2, top + h + 34);
    auto y_of = [&](const outgrow::overload_report& r) {
      if (panel == 0) return top + h - std::min(r.goodput_share, 1.1) / 1.1 * h;
      const double lo = std::log10(10.0), hi = std::log10(200'000.0);  // 10 ms .. 200 s
      const double v = std::log10(std::max(ms(r.p99), 10.0));
      return top + h - (v - lo) / (hi - lo) * h;
    };
    if (panel == 0) {
      for (const double v : {0.0, 0.5, 1.0}) {
        svg += fmt::format("<text x='{}' y='{}' text-anchor='end'>{:.1f}</text>\n", x0 - 6,
                           top + h - v / 1.1 * h + 4, v);
      }
    } else {
      for (const auto& [v, label] :
           {std::pair{10.0, "10 ms"}, std::pair{100.0, "100 ms"}, std::pair{1000.0, "1 s"},
            std::pair{10'000.0, "10 s"}, std::pair{100'000.0, "100 s"}}) {
        const double y =
            top + h - (std::log10(v) - 1.0) / (std::log10(200'000.0) - 1.0) * h;
        svg += fmt::format("<text x='{}' y='{}' text-anchor='end'>{}</text>\n", x0 - 6,
                           y + 4, label);
      }
    }
    for (const series& s : all) {
      std::string pts;
      for (const point& p : points) {
        pts += fmt::format("{:.1f},{:.1f} ", x_of(x0, p.load), y_of(p.*s.field));
      }
      svg += fmt::format(
          "<polyline fill='none' stroke='{}' stroke-width='2' stroke-dasharray='{}' "
          "points='{}'/>\n",
          s.color, s.dash, pts);
    }
  }
  double lx = left;
  for (const series& s : all) {
    svg += fmt::format(
        "<line x1='{0}' y1='{1}' x2='{2}' y2='{1}' stroke='{3}' stroke-width='3' "
        "stroke-dasharray='{7}'/><text x='{4}' y='{5}'>{6}</text>\n",
        lx, top + h + 62, lx + 20, s.color, lx + 26, top + h + 66, s.name, s.dash);
    lx += 26 + 8.0 * static_cast<double>(std::string(s.name).size()) + 24;
  }
  return svg + "</svg>\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string svg_path =
      (std::filesystem::temp_directory_path() / "outgrow_overload.svg").string();
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--svg" && i + 1 < argc) svg_path = argv[++i];
  }
  std::vector<point> points;
  for (const double load : {0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0}) points.push_back(run(load));

  fmt::print(
      "service: 8 workers, 10 ms mean service (log-normal), capacity 800 req/s, "
      "client timeout 1 s\n\n");
  fmt::print("{:>5} | {:>20} | {:>20} | {:>20} | {:>20}\n", "load", "none", "bulkhead (16)",
             "adaptive limiter", "SRE throttle+bulkhead");
  fmt::print("{:>5} | {:>20} | {:>20} | {:>20} | {:>20}\n", "", "goodput   p99",
             "goodput   p99", "goodput   p99", "goodput   p99");
  for (const point& p : points) {
    auto cell = [](const outgrow::overload_report& r) {
      return fmt::format("{:5.0f}% {:9.1f} ms", 100 * r.goodput_share, ms(r.p99));
    };
    fmt::print("{:>4.1f}x | {:>20} | {:>20} | {:>20} | {:>20}\n", p.load, cell(p.none),
               cell(p.bulkhead), cell(p.limiter), cell(p.throttle));
  }
  std::ofstream(svg_path) << chart(points);
  fmt::print("\nchart: {}\n", svg_path);
  return 0;
}
