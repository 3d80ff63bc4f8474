// Protecting a partner API's rate limit: a client that paces itself never sees a 429.
//
// A partner allows 10 requests/s (a token bucket of 5 on its side) and answers 429 with
// a Retry-After when a client goes faster. Our service wants to send 1,000 requests as
// fast as allowed. Three clients, on simulated time (manual_clock, deterministic):
//   1. naive: sends as fast as it can and, on a 429, retries after a fixed 10 ms;
//   2. polite: on a 429 waits the partner's Retry-After before retrying;
//   3. paced: an outgrow::rate_limiter at 9.5/s in front (acquire() waits for a permit),
//      so requests arrive under the partner's limit and almost never need a retry.
// Every client delivers all 1,000 requests; they differ in how many 429s they cause and
// how long it takes.
#include <outgrow/admission/rate_limiter.hpp>
#include <outgrow/core/clock.hpp>

#include <chrono>
#include <cstdint>
#include <string_view>

#include <fmt/format.h>

using namespace std::chrono_literals;
using outgrow::manual_clock;

namespace {

// The partner: the same GCRA limiter, answering 429 + Retry-After instead of waiting.
struct partner_api {
  explicit partner_api(manual_clock clock)
      : limit({.permits_per_second = 10, .burst = 5}, clock) {}
  struct reply {
    int status;
    std::chrono::nanoseconds retry_after;
  };
  reply call() {
    const auto d = limit.try_acquire();
    if (!d) return {429, d.retry_after};
    return {200, {}};
  }
  outgrow::rate_limiter<manual_clock> limit;
};

struct run_result {
  int throttled = 0;  // 429s received
  std::chrono::nanoseconds took{};
};

template <class BeforeCall, class OnThrottled>
run_result run(manual_clock& clock, partner_api& api, BeforeCall before, OnThrottled wait) {
  run_result r;
  const auto start = clock.now();
  for (int i = 0; i < 1000; ++i) {
    before();
    for (;;) {
      const auto reply = api.call();
      clock.advance(1ms);  // the round trip
      if (reply.status == 200) break;
      ++r.throttled;
      wait(reply);
    }
  }
  r.took = clock.now() - start;
  return r;
}

void print(std::string_view name, const run_result& r) {
  fmt::print("{:<45} {:>6} 429s  {:>7.1f} s\n", name, r.throttled,
             std::chrono::duration<double>(r.took).count());
}

}  // namespace

int main() {
  fmt::print("1,000 requests to a partner allowing 10/s (burst 5):\n\n");
  {
    manual_clock clock;
    partner_api api(clock);
    print("naive: retry after 10 ms",
          run(
              clock, api, [] {}, [&](const partner_api::reply&) { clock.advance(10ms); }));
  }
  {
    manual_clock clock;
    partner_api api(clock);
    print("polite: retry after the partner's Retry-After",
          run(
              clock, api, [] {},
              [&](const partner_api::reply& reply) { clock.advance(reply.retry_after); }));
  }
  {
    manual_clock clock;
    partner_api api(clock);
    outgrow::rate_limiter<manual_clock> pace({.permits_per_second = 9.5, .burst = 1},
                                             clock);
    print("paced: rate_limiter at 9.5/s in front",
          run(
              clock, api,
              [&] {
                // Waits (here: moves the simulated clock) until a permit is free.
                (void)pace.acquire(1, manual_clock::time_point::max());
              },
              [&](const partner_api::reply& reply) { clock.advance(reply.retry_after); }));
  }
  fmt::print(
      "\nThe paced client finishes about as soon as the polite one and causes no\n"
      "429s: the partner's quota is spent on work, not on refusals.\n");
  return 0;
}
