// One slow replica in ten ruins p99: hedged requests bring it back, for a bounded price.
//
// Ten replicas serve a read; nine answer in about 10 ms (log-normal, sigma 0.3), one is
// stuck behind a long GC and answers in 1 s. A client sends request i to replica i % 10,
// so one request in ten waits for the slow one: the median is fine, p99 is 1 s. Four
// clients handle the same 5,000 requests, one after another, on simulated time (a
// manual_clock and an io_context driven by a small event queue: deterministic, instant):
//   1. plain: waits for its one replica;
//   2. plain behind a 250 ms timeout: a resilience_pipeline with a timeout_stage; the
//      call reads the deadline from its call_context and stops waiting at it, so p99 is
//      the timeout — and one request in ten fails (timed_out);
//   3. hedged after 30 ms: outgrow::async_hedged sends a second attempt to the next
//      replica when the first has not answered within 30 ms; the first answer wins and
//      the other attempt is cancelled. Hedges are budgeted: 15 % of requests, plus 1/s
//      so that the first requests, before the budget has filled, may hedge too;
//   4. hedged after the observed p95 of answers (delay_quantile), budget 25 % + 1/s.
// Hedging lives inside the call, which drives its io_context until the first answer:
// a synchronous pipeline cannot hedge by itself (resilience_pipeline.hpp says why).
// Run: scripts/dev example hedging.
#include <outgrow/admission/call_context.hpp>
#include <outgrow/admission/hedging.hpp>
#include <outgrow/admission/resilience_pipeline.hpp>
#include <outgrow/core/clock.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <stdexcept>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

using namespace std::chrono_literals;
using outgrow::manual_clock;
using context = outgrow::call_context<manual_clock>;

namespace {

// ---- a simulated network: timed events on a manual clock, handlers on an io_context ----

struct network {
  struct event {
    manual_clock::time_point due;
    std::uint64_t order;
    std::function<void()> fire;
    bool operator>(const event& other) const {
      return due != other.due ? due > other.due : order > other.order;
    }
  };

  manual_clock clock;
  boost::asio::io_context io;
  std::priority_queue<event, std::vector<event>, std::greater<>> events;
  std::uint64_t next_order = 0;

  void at(manual_clock::time_point due, std::function<void()> fire) {
    events.push({due, next_order++, std::move(fire)});
  }
  void run_ready() {
    io.restart();
    io.poll();
  }
  // Moves the clock to the next event due by `until` and fires it; false if there is none.
  bool fire_next(manual_clock::time_point until) {
    if (events.empty() || events.top().due > until) return false;
    event e = events.top();
    events.pop();
    if (e.due > clock.now()) clock.set(e.due);
    e.fire();
    return true;
  }
};
network* net = nullptr;  // the one simulated network (set in main)

// What async_hedged waits on for the hedge delay: a timer on the simulated time line
// (it conforms to outgrow::retry_timer, as boost::asio::steady_timer does).
class network_timer {
 public:
  using duration = std::chrono::nanoseconds;
  explicit network_timer(const boost::asio::io_context::executor_type& executor)
      : executor_(executor) {}
  void expires_after(duration d) { due_ = net->clock.now() + d; }
  template <class Handler>
  void async_wait(Handler handler) {
    net->at(due_, [executor = executor_, handler]() mutable {
      boost::asio::post(executor, [handler]() mutable { handler({}); });
    });
  }

 private:
  boost::asio::io_context::executor_type executor_;
  manual_clock::time_point due_{};
};

// ---- the replicas ---------------------------------------------------------------------

struct replicas {
  std::mt19937_64 rng{7};
  std::lognormal_distribution<double> fast{std::log(0.010) - 0.045, 0.3};
  std::uint64_t sent = 0;  // attempts: the load on the replicas

  // Sends a read to replica r; done(r) when it answers, unless cancelled first.
  void send(int r, outgrow::hedge_cancellation& cancel, std::function<void(int)> done) {
    ++sent;
    const auto latency =
        r == 0 ? std::chrono::nanoseconds(1s)
               : std::chrono::nanoseconds(static_cast<std::int64_t>(fast(rng) * 1e9));
    auto cancelled = std::make_shared<bool>(false);
    cancel.on_cancel([cancelled] { *cancelled = true; });  // another attempt won
    net->at(net->clock.now() + latency, [cancelled, done = std::move(done), r] {
      if (!*cancelled) done(r);
    });
  }
};

// ---- the client: one read, hedged or not, under a call_context ----------------------

struct client {
  replicas& servers;
  outgrow::hedging_policy<manual_clock>* hedging;  // nullptr: no hedging

  // Reads from replica `first` (and, hedged, the next ones); returns which replica
  // answered. Drives the network until the first answer or the context's deadline.
  // Throws: std::runtime_error if nothing answered before the deadline.
  int read(int first, const context& ctx) {
    struct pending {
      std::optional<int> answer;
      outgrow::hedge_cancellation solo;  // the unhedged attempt's
    };
    auto call = std::make_shared<pending>();
    auto attempt = [this, first](std::size_t n, outgrow::hedge_cancellation& cancel,
                                 std::function<void(int)> done) {
      servers.send((first + static_cast<int>(n)) % 10, cancel, std::move(done));
    };
    if (hedging != nullptr) {
      outgrow::async_hedged<int, network_timer>(net->io.get_executor(), *hedging, attempt,
                                                [call](int r) { call->answer = r; });
    } else {
      attempt(0, call->solo, [call](int r) { call->answer = r; });
    }
    for (;;) {
      net->run_ready();
      if (call->answer) return *call->answer;
      if (!net->fire_next(ctx.deadline())) break;
    }
    // Nothing more happens before the deadline: stop waiting, drop the attempt.
    call->solo.cancel();
    if (net->clock.now() < ctx.deadline()) net->clock.set(ctx.deadline());
    throw std::runtime_error("no answer before the deadline");
  }
};

struct outcome {
  std::vector<std::chrono::nanoseconds> latency;
  std::uint64_t timed_out = 0;
  double attempts_per_request = 0;
};

std::chrono::nanoseconds quantile(std::vector<std::chrono::nanoseconds> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

constexpr int requests = 5000;

// Sends the requests one after another: through a pipeline with a 250 ms timeout_stage,
// or (timeout false) straight to the client, without a deadline.
outcome run(bool timeout, std::optional<outgrow::hedging_config> hedging) {
  network world;
  net = &world;
  replicas servers;
  std::optional<outgrow::hedging_policy<manual_clock>> policy;
  if (hedging) policy.emplace(*hedging, world.clock);
  client c{servers, policy ? &*policy : nullptr};
  outgrow::resilience_pipeline pipeline{outgrow::timeout_stage{250ms, world.clock}};
  outcome out;
  for (int i = 0; i < requests; ++i) {
    const auto start = world.clock.now();
    if (!timeout) {
      (void)c.read(i % 10, context(world.clock));  // no deadline: always answers
    } else {
      const auto r = pipeline.execute(
          context(world.clock), [&](const context& ctx) { return c.read(i % 10, ctx); });
      if (r.rejected_by == outgrow::pipeline_rejection::timed_out) ++out.timed_out;
    }
    out.latency.push_back(world.clock.now() - start);
  }
  out.attempts_per_request = static_cast<double>(servers.sent) / requests;
  net = nullptr;
  return out;
}

void print(std::string_view name, const outcome& o) {
  using ms = std::chrono::duration<double, std::milli>;
  fmt::print("{:<34} {:>7.1f} {:>8.1f} {:>8.1f} {:>9.3f} {:>10}\n", name,
             ms(quantile(o.latency, 0.50)).count(), ms(quantile(o.latency, 0.99)).count(),
             ms(*std::max_element(o.latency.begin(), o.latency.end())).count(),
             o.attempts_per_request, o.timed_out);
}

}  // namespace

int main() {
  fmt::print("{} requests, replica 0 of 10 answers in 1 s, the others in ~10 ms\n\n",
             requests);
  fmt::print("{:<34} {:>7} {:>8} {:>8} {:>9} {:>10}\n", "client", "p50 ms", "p99 ms",
             "max ms", "attempts", "timed out");

  const outcome plain = run(false, std::nullopt);
  print("plain", plain);
  const outcome plain_timeout = run(true, std::nullopt);
  print("plain, 250 ms timeout", plain_timeout);
  const outcome hedged_fixed =
      run(true, outgrow::hedging_config{
                    .delay = 30ms, .budget_percent = 15, .budget_min_per_second = 1});
  print("hedged after 30 ms, budget 15 %", hedged_fixed);
  const outcome hedged_p95 = run(true, outgrow::hedging_config{.delay = 30ms,
                                                               .delay_quantile = 0.95,
                                                               .quantile_window = 200,
                                                               .budget_percent = 25,
                                                               .budget_min_per_second = 1});
  print("hedged after observed p95, 25 %", hedged_p95);

  fmt::print(
      "\nattempts = attempts per request (1.000 = no extra load). The timeout alone cuts "
      "p99\nto 250 ms by failing one request in ten; hedging answers them all, with p99 "
      "near the\nfast replicas', for {:.1f} % (fixed delay) or {:.1f} % (p95) more load.\n",
      (hedged_fixed.attempts_per_request - 1) * 100,
      (hedged_p95.attempts_per_request - 1) * 100);

  // The example doubles as a smoke test: fail loudly if the story stops being true.
  const bool ok = quantile(plain.latency, 0.99) >= 1s && plain_timeout.timed_out > 0 &&
                  hedged_fixed.timed_out == 0 && hedged_p95.timed_out == 0 &&
                  quantile(hedged_fixed.latency, 0.99) < 60ms &&
                  hedged_fixed.attempts_per_request <= 1.15 &&
                  hedged_p95.attempts_per_request <= 1.25;
  return ok ? 0 : 1;
}
