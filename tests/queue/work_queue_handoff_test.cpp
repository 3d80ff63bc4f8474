// work_queue's hand-off policy (issue 20): with short handlers a parked worker is woken
// only for a backlog the awake ones do not keep up with (more than two batches), a
// producer blocked on a full queue is woken once half of it is free, and intake
// counts a submission as accepted until it is refused. These tests pin what that must
// not cost: jobs queued behind a stuck worker still run on the other one (small
// backlogs at a parked worker's next look, large ones at once), a blocked submit gets
// room freed by a single job, and metrics().accepted / wait_until_idle stay exact
// across every kind of refusal.
#include <outgrow/queue/work_queue.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "eventually.hpp"
#include "gate.hpp"
#include "work_queue_fixture.hpp"

using namespace std::chrono_literals;
using outgrow::overflow_policy;
using outgrow::submit_status;
using outgrow_test::eventually;
using outgrow_test::gate;

namespace {

using job = outgrow_test::id_job;
using queue_type = outgrow_test::id_job_queue;
constexpr auto make = outgrow_test::make_id_job_queue;

/// Submits `n` jobs behind a worker stuck in job 0's handler (2 workers, short
/// handlers) and checks that all of them run while it stays stuck.
void backlog_runs_beside_a_stuck_worker(std::uint32_t n) {
  gate g;
  std::atomic<std::uint32_t> ran{0};
  auto q = make({.capacity = 256, .workers = 2}, [&](job& j) {
    if (j.id == 0) g.wait();
    ran.fetch_add(1);
  });
  // Warm-up: enough short jobs for the sampled handler time to count as short.
  for (std::uint32_t i = 0; i < 200; ++i) REQUIRE(q->submit(job{1000 + i}));
  REQUIRE(q->wait_until_idle(120s));
  REQUIRE(q->submit(job{0}));
  REQUIRE(eventually([&] { return g.waiting.load() == 1; }));
  for (std::uint32_t i = 1; i <= n; ++i) REQUIRE(q->submit(job{i}));
  CHECK(eventually([&] { return ran.load() == 200 + n; }));
  CHECK(q->metrics().in_flight == 1);  // job 0, still stuck
  g.release();
  REQUIRE(q->wait_until_idle(120s));
  CHECK(ran.load() == 201 + n);
  CHECK(q->metrics().succeeded == 201 + n);
}

}  // namespace

TEST_CASE("a backlog behind a stuck worker runs on the other worker",
          "[work_queue][handoff]") {
  // Above the wake threshold (32 queued): the parked worker is woken for it.
  backlog_runs_beside_a_stuck_worker(100);
  // At or below it: no wake from submit, the parked worker finds the jobs at its next
  // look (within 5 ms).
  backlog_runs_beside_a_stuck_worker(5);
  backlog_runs_beside_a_stuck_worker(32);
}

TEST_CASE("a submit blocked on a full queue gets room freed by a single job",
          "[work_queue][handoff]") {
  // A fresh queue counts handlers as long: the worker takes one job at a time, so
  // exactly one slot frees while its handler is stuck (fewer than the half of the
  // capacity that wakes a blocked producer at once: it sees the room at its next look).
  constexpr std::uint32_t capacity = 64;
  gate g;
  std::atomic<std::uint32_t> ran{0};
  auto q = make({.capacity = capacity,
                 .workers = 0,
                 .scale_from_zero = true,
                 .overflow = overflow_policy::block,
                 .block_timeout = 1h},
                [&](job& j) {
                  if (j.id == 0) g.wait();
                  ran.fetch_add(1);
                });
  for (std::uint32_t i = 0; i < capacity; ++i) REQUIRE(q->submit(job{i}));
  std::atomic<bool> returned{false};
  submit_status blocked = submit_status::rejected_full;
  std::thread producer([&] {
    blocked = q->submit(job{capacity}).status;
    returned.store(true);
  });
  q->set_workers(1);  // takes job 0 (one slot free) and sticks in its handler
  REQUIRE(eventually([&] { return g.waiting.load() == 1; }));
  CHECK(eventually([&] { return returned.load(); }));
  producer.join();
  CHECK(blocked == submit_status::accepted);
  CHECK(ran.load() == 0);
  CHECK(q->depth() == capacity);  // 63 left + the one that got in
  g.release();
  REQUIRE(q->wait_until_idle(120s));
  CHECK(ran.load() == capacity + 1);
}

TEST_CASE("accepted counts exactly the accepted jobs across every kind of refusal",
          "[work_queue][handoff][metrics]") {
  std::atomic<std::uint32_t> ran{0};
  auto q = make({.capacity = 4,
                 .workers = 0,
                 .scale_from_zero = true,
                 .overflow = overflow_policy::reject},
                [&](job&) { ran.fetch_add(1); });
  CHECK(q->submit(job{1}, std::string("k")).status == submit_status::accepted);
  CHECK(q->submit(job{2}, std::string("k")).status == submit_status::duplicate);
  CHECK(q->submit(job{3}).status == submit_status::accepted);
  CHECK(q->submit(job{4}).status == submit_status::accepted);
  CHECK(q->submit(job{5}).status == submit_status::accepted);
  CHECK(q->submit(job{6}).status == submit_status::rejected_full);
  CHECK(q->try_submit(job{7}).status == submit_status::rejected_full);
  auto m = q->metrics();
  CHECK(m.accepted == 4);
  CHECK(m.duplicates == 1);
  CHECK(m.rejected == 2);
  CHECK_FALSE(q->wait_until_idle(0s));  // 4 queued, no worker
  q->set_workers(1);
  REQUIRE(q->wait_until_idle(120s));
  CHECK(ran.load() == 4);
  CHECK(q->submit(job{8}, std::string("k")).status == submit_status::duplicate);
  const auto left = q->stop(std::chrono::steady_clock::now() + 1s);
  CHECK(left.empty());
  CHECK(q->submit(job{9}).status == submit_status::stopped);
  m = q->metrics();
  CHECK(m.accepted == 4);
  CHECK(m.succeeded == 4);
  CHECK(m.duplicates == 2);
  CHECK(m.rejected == 3);
  CHECK(q->wait_until_idle(0s));  // refusals leave nothing pending
}
