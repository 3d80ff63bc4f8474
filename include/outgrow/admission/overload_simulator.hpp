// outgrow/admission/overload_simulator.hpp — what admission control does to an overloaded
// service, simulated deterministically.
//
// What: a discrete-event model of one service — `workers` parallel slots, an unbounded
// first-come-first-served queue in front of them, log-normal service times — offered
// Poisson traffic at a multiple of its capacity (workers / mean service time). Clients
// give up after `client_timeout`, but the server still works every request it accepted
// (it cannot know): that is how an unprotected service collapses — the queue grows, every
// answer comes too late, and goodput (answers within the timeout) falls towards zero
// while the server stays 100 % busy. A gate in front decides what enters; the report
// gives goodput, latency percentiles of the answered requests, and what was rejected.
//
//   outgrow::manual_clock clock;
//   outgrow::overload_simulator sim({.workers = 8, .mean_service = 10ms}, clock);
//   outgrow::concurrency_limiter<outgrow::gradient2_limit, outgrow::manual_clock> limiter(
//       outgrow::gradient2_limit({.initial_limit = 8, .min_limit = 1}), clock);
//   outgrow::limiter_gate gate(limiter);
//   outgrow::overload_report r = sim.run(gate, 2.0);   // offered = 2 x capacity
//   fmt::print("{}\n", r);
//
// Gates (the `overload_gate` concept: admit(id) -> bool, finish(id, answered_in_time)):
// `open_gate` (no admission control), `bulkhead_gate` (a fixed cap on requests inside
// the service), `limiter_gate` (a concurrency_limiter, adaptive), `throttle_gate` (the
// SRE client-side throttle in front of another gate). A user gate is any type with
// those two members.
//
// Determinism: arrivals and service times come from a generator seeded by `seed`; time
// is a manual_clock the gates share, so a run is a pure function of its inputs.
//
// Thread-safety: none (a simulation runs on one thread). Complexity: O(requests ×
// log(events in flight)).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <queue>
#include <random>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <outgrow/admission/adaptive_throttle.hpp>
#include <outgrow/admission/bulkhead.hpp>
#include <outgrow/admission/concurrency_limiter.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow {

/// Decides which requests enter the simulated service (see the header comment).
template <class G>
concept overload_gate = requires(G& g, std::uint64_t id, bool ok) {
  { g.admit(id) } -> std::convertible_to<bool>;
  g.finish(id, ok);
};

struct overload_simulator_config {
  /// Parallel slots of the service. [1, 10000]
  int workers = 8;
  /// Mean service time of one request: 10 ms. [1 us, 1 min]
  std::chrono::nanoseconds mean_service = std::chrono::milliseconds{10};
  /// Spread of the log-normal service time (sigma of the underlying normal). [0, 3]
  double service_sigma = 0.5;
  /// Clients give up after this: answers later than it are not goodput. 1 s. [1 ms, 1 h]
  std::chrono::nanoseconds client_timeout = std::chrono::seconds{1};
  /// Simulated time per run (the first 10 % is warm-up, not reported): 30 s. [1 s, 1 d]
  std::chrono::nanoseconds duration = std::chrono::seconds{30};
  /// Seed of arrivals and service times (a fixed default: runs are reproducible).
  std::uint64_t seed = 1;
};

struct overload_report {
  static constexpr std::string_view metrics_name = "overload_report";
  double load = 0;                  ///< offered load / capacity
  double offered_rps = 0;           ///< requests per second the clients asked for
  double goodput_rps = 0;           ///< answered within the client timeout, per second
  double goodput_share = 0;         ///< goodput_rps / capacity
  double rejected_share = 0;        ///< of offered requests, turned away by the gate
  double late_share = 0;            ///< of offered requests, answered after the timeout
  std::chrono::nanoseconds p50{0};  ///< latency of answered requests (in time or late)
  std::chrono::nanoseconds p99{0};

  template <class F>
  void for_each_metric(F&& f) const {
    f("load", load);
    f("offered_rps", offered_rps);
    f("goodput_rps", goodput_rps);
    f("goodput_share", goodput_share);
    f("rejected_share", rejected_share);
    f("late_share", late_share);
    f("p50", p50);
    f("p99", p99);
  }
};

// ---- gates ----------------------------------------------------------------------------

/// No admission control: everything enters.
struct open_gate {
  bool admit(std::uint64_t) noexcept { return true; }
  void finish(std::uint64_t, bool) noexcept {}
};

/// A bulkhead's fixed cap on requests inside the service (queued or running).
template <class Bulkhead>
class bulkhead_gate {
 public:
  explicit bulkhead_gate(Bulkhead& b) : bulkhead_(b) {}
  bool admit(std::uint64_t id) {
    auto p = bulkhead_.try_acquire();
    if (!p) return false;
    held_.emplace(id, std::move(p));
    return true;
  }
  void finish(std::uint64_t id, bool) { held_.erase(id); }

 private:
  Bulkhead& bulkhead_;
  std::unordered_map<std::uint64_t, typename Bulkhead::permit> held_;
};

/// A concurrency_limiter: its permits end with success() when answered in time,
/// dropped() when late.
template <class Limiter>
class limiter_gate {
 public:
  explicit limiter_gate(Limiter& l) : limiter_(l) {}
  bool admit(std::uint64_t id) {
    auto p = limiter_.try_acquire();
    if (!p) return false;
    held_.emplace(id, std::move(*p));
    return true;
  }
  void finish(std::uint64_t id, bool in_time) {
    auto it = held_.find(id);
    if (it == held_.end()) return;
    in_time ? it->second.success() : it->second.dropped();
    held_.erase(it);
  }

 private:
  Limiter& limiter_;
  std::unordered_map<std::uint64_t, typename Limiter::permit> held_;
};

/// The SRE client-side throttle in front of `Inner` (the server's own gate): requests
/// the throttle rejects never reach the server; answers in time count as accepts.
template <class Throttle, overload_gate Inner>
class throttle_gate {
 public:
  throttle_gate(Throttle& t, Inner& inner) : throttle_(t), inner_(inner) {}
  bool admit(std::uint64_t id) {
    if (!throttle_.try_send()) return false;
    ++sent_;
    return inner_.admit(id);
  }
  void finish(std::uint64_t id, bool in_time) {
    if (in_time) throttle_.record_accept();
    inner_.finish(id, in_time);
  }
  /// Requests the throttle let through to the server.
  [[nodiscard]] std::uint64_t sent() const noexcept { return sent_; }

 private:
  Throttle& throttle_;
  Inner& inner_;
  std::uint64_t sent_ = 0;
};

// ---- the simulator ----------------------------------------------------------------------

class overload_simulator {
 public:
  /// Throws: config_error naming the first bad field.
  overload_simulator(overload_simulator_config config, manual_clock clock)
      : config_(validated(config)), clock_(std::move(clock)) {}

  /// Requests per second the service completes at full utilization.
  [[nodiscard]] double capacity_rps() const noexcept {
    return config_.workers / std::chrono::duration<double>(config_.mean_service).count();
  }

  /// Runs `config.duration` of traffic at `load` × capacity through `gate`; the clock
  /// moves forward by the duration (plus the time to drain what was admitted).
  /// Throws: std::invalid_argument if load is not in (0, 100].
  template <overload_gate Gate>
  overload_report run(Gate& gate, double load) {
    if (!(load > 0.0 && load <= 100.0)) {
      throw std::invalid_argument("overload_simulator: load must be in (0, 100]");
    }
    std::mt19937_64 rng(config_.seed);
    const double rate = load * capacity_rps();
    std::exponential_distribution<double> gap(rate);
    const double mean_s = std::chrono::duration<double>(config_.mean_service).count();
    const double sigma = config_.service_sigma;
    std::lognormal_distribution<double> service(std::log(mean_s) - sigma * sigma / 2,
                                                sigma);

    const auto start = clock_.now();
    const auto end = start + config_.duration;
    const auto warm = start + config_.duration / 10;
    std::priority_queue<event, std::vector<event>, later> events;
    std::deque<request> queue;
    int busy = 0;
    std::uint64_t next_id = 0;
    std::uint64_t offered = 0, rejected = 0, good = 0, late = 0;
    std::vector<std::int64_t> latencies;

    auto seconds = [](double s) {
      return std::chrono::nanoseconds(static_cast<std::int64_t>(s * 1e9));
    };
    auto start_service = [&](const request& r) {
      ++busy;
      events.push({clock_.now() + seconds(service(rng)), kind::done, r});
    };
    events.push({start + seconds(gap(rng)), kind::arrival, {}});
    while (!events.empty()) {
      const event e = events.top();
      events.pop();
      if (e.at > clock_.now()) clock_.set(e.at);
      if (e.what == kind::arrival) {
        if (e.at >= end) continue;  // stop offering; drain what is inside
        events.push({e.at + seconds(gap(rng)), kind::arrival, {}});
        const bool counted = e.at >= warm;
        offered += counted ? 1 : 0;
        const request r{next_id++, e.at, counted};
        if (!gate.admit(r.id)) {
          rejected += counted ? 1 : 0;
          continue;
        }
        if (busy < config_.workers) {
          start_service(r);
        } else {
          queue.push_back(r);
        }
      } else {
        --busy;
        const auto latency = clock_.now() - e.req.arrived;
        const bool in_time = latency <= config_.client_timeout;
        gate.finish(e.req.id, in_time);
        if (e.req.counted) {
          (in_time ? good : late) += 1;
          latencies.push_back(
              std::chrono::duration_cast<std::chrono::nanoseconds>(latency).count());
        }
        if (!queue.empty()) {
          const request next = queue.front();
          queue.pop_front();
          start_service(next);
        }
      }
    }
    const double measured_s =
        std::chrono::duration<double>(config_.duration - config_.duration / 10).count();
    overload_report rep;
    rep.load = load;
    rep.offered_rps = static_cast<double>(offered) / measured_s;
    rep.goodput_rps = static_cast<double>(good) / measured_s;
    rep.goodput_share = rep.goodput_rps / capacity_rps();
    rep.rejected_share =
        offered == 0 ? 0.0 : static_cast<double>(rejected) / static_cast<double>(offered);
    rep.late_share =
        offered == 0 ? 0.0 : static_cast<double>(late) / static_cast<double>(offered);
    rep.p50 = std::chrono::nanoseconds(percentile(latencies, 0.50));
    rep.p99 = std::chrono::nanoseconds(percentile(latencies, 0.99));
    return rep;
  }

  [[nodiscard]] const overload_simulator_config& config() const noexcept { return config_; }

  static void validate(const overload_simulator_config& c) {
    constexpr std::string_view who = "overload_simulator";
    using std::chrono::nanoseconds;
    require_in_range(who, "workers", c.workers, 1, 10'000);
    require_in_range(who, "mean_service", c.mean_service,
                     nanoseconds{std::chrono::microseconds{1}},
                     nanoseconds{std::chrono::minutes{1}});
    require(c.service_sigma >= 0.0 && c.service_sigma <= 3.0, who, "service_sigma",
            "in [0, 3]", c.service_sigma);
    require_in_range(who, "client_timeout", c.client_timeout,
                     nanoseconds{std::chrono::milliseconds{1}},
                     nanoseconds{std::chrono::hours{1}});
    require_in_range(who, "duration", c.duration, nanoseconds{std::chrono::seconds{1}},
                     nanoseconds{std::chrono::hours{24}});
  }

 private:
  enum class kind : std::uint8_t { arrival, done };
  struct request {
    std::uint64_t id = 0;
    manual_clock::time_point arrived{};
    bool counted = false;
  };
  struct event {
    manual_clock::time_point at;
    kind what;
    request req;
  };
  struct later {
    bool operator()(const event& a, const event& b) const noexcept {
      if (a.at != b.at) return a.at > b.at;
      return a.what < b.what;  // completions before arrivals at the same instant
    }
  };

  static overload_simulator_config validated(const overload_simulator_config& c) {
    validate(c);
    return c;
  }

  static std::int64_t percentile(std::vector<std::int64_t>& v, double q) {
    if (v.empty()) return 0;
    const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
  }

  overload_simulator_config config_;
  manual_clock clock_;
};

}  // namespace outgrow
