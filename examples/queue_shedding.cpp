// queue_shedding: a work_queue that sheds jobs that waited too long (CoDel, RFC 8289)
// instead of running them late.
//
// One worker, 2 ms per job: capacity 500 jobs/s. Jobs arrive at 400/s (0.8x), with a
// spike at 1,000/s (2x) from t = 1 s to t = 2 s. Without shedding the spike leaves a
// backlog of ~500 jobs that the 20 % spare capacity takes 5 s to drain: until t = 7 s
// jobs wait up to a second. With queue-delay shedding (the defaults: target 10 ms,
// interval 100 ms) the worker sheds late jobs into the dead-letter queue — where they
// can be looked at or replayed — at a rate that grows the longer the delay stays above
// target (CoDel's interval/sqrt(count) spacing), and the wait is back to nothing by
// t = 4.5 s. CoDel ramps up gently (it is built for senders that slow down when they
// lose a packet): against jobs that keep coming regardless, the backlog still peaks.
//
// Deterministic: a manual_clock moved by the handler (each job takes 2 ms of it) and an
// io_context run on this thread as the queue's executor, so the whole simulation is
// one thread. Jobs arriving while one runs are handed in when it ends (2 ms steps).
#include <outgrow/queue/work_queue.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

using namespace std::chrono_literals;
using clock_type = outgrow::manual_clock;
using time_point = clock_type::time_point;

namespace {

constexpr auto service = 2ms;
constexpr auto run_for = 7s;
constexpr auto window = 500ms;
constexpr std::size_t windows = run_for / window;

struct job {
  time_point arrived{};
};

/// Arrival times: 400/s, 1,000/s between 1 s and 2 s.
std::vector<time_point> arrivals() {
  std::vector<time_point> out;
  for (auto t = std::chrono::nanoseconds{0}; t < run_for;) {
    out.push_back(time_point{t});
    t += (t >= 1s && t < 2s) ? 1ms : 2500us;
  }
  return out;
}

struct window_stats {
  std::size_t arrived = 0;
  std::size_t ran = 0;
  std::size_t shed = 0;
  std::chrono::nanoseconds worst_wait{0};  // of the jobs that ran
};

struct result {
  std::array<window_stats, windows> per_window{};
  outgrow::work_queue_metrics metrics;
};

std::size_t window_of(time_point t) {
  return std::min<std::size_t>(static_cast<std::size_t>(t.time_since_epoch() / window),
                               windows - 1);
}

result simulate(std::optional<outgrow::queue_delay_shedding_config> shedding) {
  const std::vector<time_point> due = arrivals();
  boost::asio::io_context io;
  clock_type clock;
  result out;
  std::size_t next = 0;  // the next arrival not yet submitted
  outgrow::work_queue<job, clock_type> queue(
      {.capacity = 4096,
       .workers = 1,
       .dead_letter = {.capacity = 4096},
       .executor = io.get_executor(),
       .queue_delay_shedding = shedding},
      [&](job& j) {
        window_stats& w = out.per_window[window_of(clock.now())];
        ++w.ran;
        w.worst_wait = std::max(w.worst_wait, clock.now() - j.arrived);
        clock.advance(service);
        // Hand in what arrived while this job ran.
        for (; next < due.size() && due[next] <= clock.now(); ++next) {
          (void)queue.submit(job{due[next]});
        }
      },
      clock);
  while (next < due.size()) {
    if (clock.now() < due[next]) clock.set(due[next]);  // idle until the next arrival
    for (; next < due.size() && due[next] <= clock.now(); ++next) {
      (void)queue.submit(job{due[next]});
    }
    io.run();  // the worker runs until the queue is empty
    io.restart();
  }
  for (time_point t : due) ++out.per_window[window_of(t)].arrived;
  queue.dead_letters().for_each(
      [&](const auto& e) { ++out.per_window[window_of(e.last_failure)].shed; });
  out.metrics = queue.metrics();
  return out;
}

}  // namespace

int main() {
  const result plain = simulate(std::nullopt);
  const result codel = simulate(outgrow::queue_delay_shedding_config{});
  fmt::print(
      "one worker, 2 ms per job (500 jobs/s); 400 jobs/s, 1,000/s from 1 s to 2 s\n");
  fmt::print("{:>10} {:>8} | {:>14} | {:>21}\n", "", "", "no shedding",
             "CoDel 10 ms / 100 ms");
  fmt::print("{:>10} {:>8} | {:>5} {:>8} | {:>5} {:>5} {:>9}\n", "window", "arrived", "ran",
             "worst", "ran", "shed", "worst");
  for (std::size_t i = 0; i < windows; ++i) {
    const window_stats& p = plain.per_window[i];
    const window_stats& c = codel.per_window[i];
    fmt::print("{:>4}-{:<5} {:>8} | {:>5} {:>6}ms | {:>5} {:>5} {:>7}ms\n",
               fmt::format("{:.1f}", static_cast<double>(i) * 0.5),
               fmt::format("{:.1f}s", static_cast<double>(i + 1) * 0.5), p.arrived, p.ran,
               p.worst_wait / 1ms, c.ran, c.shed, c.worst_wait / 1ms);
  }
  fmt::print("\nno shedding: ran {} of {}, shed {}\n", plain.metrics.succeeded,
             plain.metrics.accepted, plain.metrics.shed);
  fmt::print("CoDel:       ran {} of {}, shed {} (in the dead-letter queue, replayable)\n",
             codel.metrics.succeeded, codel.metrics.accepted, codel.metrics.shed);
  return 0;
}
