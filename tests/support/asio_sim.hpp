// tests/support/asio_sim.hpp — a discrete-event world for Asio code on a manual clock.
//
// `outgrow_test::sim::world` keeps timed events in order; run() alternates between
// running the io_context's ready handlers and firing the next event (moving the manual
// clock to its time), so asynchronous code with timers runs deterministically and
// instantly. `sim::timer` conforms to outgrow::retry_timer and waits on that time line.
//
//   outgrow_test::sim::world w;
//   outgrow_test::sim::current = &w;
//   w.at(w.clock.now() + 5ms, [] { ... });     // an event
//   w.run();                                   // until nothing is left
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <queue>
#include <tuple>
#include <vector>

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <outgrow/core/clock.hpp>

namespace outgrow_test::sim {

struct event {
  outgrow::manual_clock::time_point due;
  std::uint64_t seq;
  std::function<void()> fire;
};
struct later {
  bool operator()(const event& a, const event& b) const {
    return std::tie(a.due, a.seq) > std::tie(b.due, b.seq);
  }
};

/// Events run in time order; handlers are posted to the io_context and run there.
struct world {
  outgrow::manual_clock clock;
  boost::asio::io_context io;
  std::priority_queue<event, std::vector<event>, later> events;
  std::uint64_t seq = 0;
  bool abort_waits = false;

  void at(outgrow::manual_clock::time_point due, std::function<void()> fire) {
    events.push(event{due, seq++, std::move(fire)});
  }
  void run() {
    for (;;) {
      io.restart();
      io.poll();
      if (events.empty()) break;
      event e = events.top();
      events.pop();
      if (e.due > clock.now()) clock.set(e.due);
      e.fire();
    }
  }
};
inline world* current = nullptr;

/// Conforms to outgrow::retry_timer: waits on the simulated time line of sim::current.
class timer {
 public:
  using duration = std::chrono::nanoseconds;
  explicit timer(const boost::asio::io_context::executor_type& executor)
      : executor_(executor) {}
  void expires_after(duration d) { due_ = current->clock.now() + d; }
  template <class Handler>
  void async_wait(Handler handler) {
    const bool abort = current->abort_waits;
    current->at(due_, [executor = executor_, handler, abort]() mutable {
      boost::asio::post(executor, [handler, abort]() mutable {
        handler(abort ? boost::system::error_code(boost::asio::error::operation_aborted)
                      : boost::system::error_code());
      });
    });
  }

 private:
  boost::asio::io_context::executor_type executor_;
  outgrow::manual_clock::time_point due_{};
};

}  // namespace outgrow_test::sim
