// Queue-delay shedding (CoDel, RFC 8289) in work_queue: the state machine
// (detail::queue_delay_shedder) on exact times, then the queue driven on a manual_clock
// by one worker whose handler moves the clock (each job "takes" its service time), so
// every dequeue happens at a known time — no sleeps. Last, a concurrent stress for TSan.
#include <outgrow/queue/detail/queue_delay_shedder.hpp>
#include <outgrow/queue/work_queue.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/thread_pool.hpp>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::constant_backoff;
using outgrow::manual_clock;
using outgrow::queue_delay_shed_error_type;
using outgrow::queue_delay_shedding_config;
using outgrow::work_queue;
using time_point = manual_clock::time_point;

namespace {

using shedder = outgrow::detail::queue_delay_shedder<time_point>;

constexpr time_point at(std::chrono::nanoseconds t) {
  return time_point{t};
}

/// interval / sqrt(count), as RFC 8289's control law (truncated to nanoseconds).
std::chrono::nanoseconds spacing(std::chrono::nanoseconds interval, std::uint64_t count) {
  return std::chrono::nanoseconds{static_cast<std::int64_t>(
      static_cast<double>(interval.count()) / std::sqrt(static_cast<double>(count)))};
}

struct job {
  std::uint32_t id = 0;
  time_point submitted{};
};

using queue_type = work_queue<job, manual_clock, constant_backoff>;

/// One worker, started by run() once the test has queued its jobs; each job moves the
/// shared clock by `service` and is recorded with the time it started and its wait.
struct single_worker_sim {
  struct ran_job {
    std::uint32_t id;
    time_point started;
    std::chrono::nanoseconds waited;
  };

  manual_clock clock;
  std::chrono::nanoseconds service;
  std::mutex m;
  std::vector<ran_job> ran;
  std::uint32_t next_id = 0;         // the worker's only (closed loop)
  std::uint32_t resubmit_up_to = 0;  // closed loop: each job run submits one more
  std::atomic<bool> submit_failed{false};
  std::unique_ptr<queue_type> q;

  single_worker_sim(queue_delay_shedding_config shedding, std::chrono::nanoseconds svc,
                    std::size_t capacity = 4096)
      : service(svc) {
    q = std::make_unique<queue_type>(
        outgrow::work_queue_config{.capacity = capacity,
                                   .workers = 0,
                                   .scale_from_zero = true,
                                   .dead_letter = {.capacity = 100'000},
                                   .queue_delay_shedding = shedding},
        [this](job& j) {
          const time_point now = clock.now();
          {
            std::lock_guard lock(m);
            ran.push_back({j.id, now, now - j.submitted});
          }
          clock.advance(service);
          if (next_id < resubmit_up_to) {
            const std::uint32_t id = next_id++;
            // Checked by run(): Catch2 assertions only on the test's thread.
            if (!q->try_submit(job{id, clock.now()})) submit_failed = true;
          }
        },
        clock, constant_backoff{0ns});
  }

  void submit(std::uint32_t n) {
    for (std::uint32_t i = 0; i < n; ++i) REQUIRE(q->submit(job{next_id++, clock.now()}));
  }

  /// Starts the worker and waits (real time) until every job ran or was shed.
  void run() {
    q->set_workers(1);
    REQUIRE(q->wait_until_idle(120s));
    CHECK_FALSE(submit_failed.load());
  }

  struct shed_job {
    std::uint32_t id;
    time_point at;
  };
  std::vector<shed_job> shed() const {
    std::vector<shed_job> out;
    q->dead_letters().for_each([&](const auto& e) {
      CHECK(e.error_type == queue_delay_shed_error_type);
      CHECK(e.attempts == 0);
      out.push_back({e.job.id, e.last_failure});
    });
    return out;
  }

  std::vector<ran_job> ran_jobs() {
    std::lock_guard lock(m);
    return ran;
  }
};

}  // namespace

// ---------------------------------------------------------------------------------
// the state machine (RFC 8289 section 5) on exact times
// ---------------------------------------------------------------------------------

TEST_CASE("codel does not drop while the sojourn time stays below target",
          "[work_queue][shedding][codel]") {
  shedder c(5ms, 100ms);
  // A deep queue for a long time, every job having waited 4.999 ms: never above.
  for (int i = 0; i < 10'000; ++i) {
    const time_point now = at(1ms * i + 10ms);
    CHECK_FALSE(c.should_drop(now, now - 4999us, 1000));
  }
  CHECK_FALSE(c.dropping());
  CHECK(c.count() == 0);
}

TEST_CASE("codel does not drop above target for less than an interval",
          "[work_queue][shedding][codel]") {
  shedder c(5ms, 100ms);
  // Above target from t = 1 s (first_above = 1.1 s) until just before 1.1 s.
  for (auto t = 1000ms; t < 1100ms; t += 1ms) {
    CHECK_FALSE(c.should_drop(at(t), at(t - 50ms), 100));
  }
  CHECK_FALSE(c.should_drop(at(1100ms - 1ns), at(0ns), 100));
  // One job below target resets first_above: another full interval is needed.
  CHECK_FALSE(c.should_drop(at(1100ms), at(1100ms - 4ms), 100));
  for (auto t = 1101ms; t < 1201ms; t += 1ms) {
    CHECK_FALSE(c.should_drop(at(t), at(t - 50ms), 100));
  }
  CHECK(c.should_drop(at(1201ms), at(1150ms), 100));  // 100 ms above since 1.101 s
  CHECK(c.dropping());
}

TEST_CASE("codel starts dropping exactly one interval after going above target",
          "[work_queue][shedding][codel]") {
  shedder c(5ms, 100ms);
  CHECK_FALSE(c.should_drop(at(1s), at(1s - 5ms), 10));  // sojourn == target: above
  CHECK_FALSE(c.should_drop(at(1s + 100ms - 1ns), at(0ns), 10));
  CHECK(c.should_drop(at(1s + 100ms), at(0ns), 10));
  CHECK(c.dropping());
  CHECK(c.count() == 1);
  CHECK(c.drop_next() == at(1s + 200ms));  // now + interval / sqrt(1)
}

TEST_CASE("codel never drops a job with at most one job queued behind it",
          "[work_queue][shedding][codel]") {
  shedder c(5ms, 100ms);
  for (auto t = 0ms; t < 1s; t += 1ms) {
    CHECK_FALSE(c.should_drop(at(t + 1s), at(0ns),
                              static_cast<std::size_t>(t.count() % 2)));  // 0 or 1 left
  }
  CHECK_FALSE(c.dropping());
  // In the dropping state, the job that (almost) empties the queue leaves it.
  CHECK_FALSE(c.should_drop(at(3s), at(0ns), 2));
  CHECK(c.should_drop(at(3s + 100ms), at(0ns), 2));
  CHECK(c.dropping());
  CHECK_FALSE(c.should_drop(at(4s), at(0ns), 1));
  CHECK_FALSE(c.dropping());
}

TEST_CASE("codel drop spacing follows interval over sqrt of the count",
          "[work_queue][shedding][codel]") {
  constexpr auto interval = 100ms;
  shedder c(5ms, interval);
  std::vector<time_point> drops;
  // A job taken every microsecond, each having waited 1 s, for 3 s.
  for (std::chrono::nanoseconds t = 1s; t < 4s; t += 1us) {
    if (c.should_drop(at(t), at(t - 1s), 1000)) drops.push_back(at(t));
  }
  REQUIRE(drops.size() > 100);
  CHECK(drops.front() == at(1s + interval));  // first above at 1 s, plus one interval
  for (std::size_t k = 1; k < drops.size(); ++k) {
    // After the k-th drop (count = k) the next is due interval/sqrt(k) after the k-th
    // was due; jobs come every microsecond, so it happens within 1 us of that (the
    // error does not build up: the schedule runs on due times, not on drop times).
    const auto gap = drops[k] - drops[k - 1];
    INFO("drop " << k + 1 << " gap " << gap.count() << " ns");
    CHECK(gap >= spacing(interval, k) - 1us);
    CHECK(gap <= spacing(interval, k) + 1us);
  }
  CHECK(c.count() == drops.size());
}

TEST_CASE("codel leaves the dropping state when the sojourn falls below target",
          "[work_queue][shedding][codel]") {
  constexpr auto interval = 100ms;
  shedder c(5ms, interval);
  std::chrono::nanoseconds t = 1s;
  std::uint64_t drops = 0;
  for (; drops < 10; t += 1ms) {
    if (c.should_drop(at(t), at(t - 1s), 1000)) ++drops;
  }
  REQUIRE(c.dropping());
  REQUIRE(c.count() == 10);
  CHECK_FALSE(c.should_drop(at(t), at(t - 1ms), 1000));  // below target: leave
  CHECK_FALSE(c.dropping());
  t += 1ms;
  for (int i = 0; i < 50; ++i, t += 1ms) {
    CHECK_FALSE(c.should_drop(at(t), at(t - 1ms), 1000));
  }

  SECTION("soon above again: an interval first, then the last cycle's rate") {
    const auto above = t;
    for (; t < above + interval; t += 1ms) {
      CHECK_FALSE(c.should_drop(at(t), at(t - 1s), 1000));
    }
    CHECK(c.should_drop(at(t), at(t - 1s), 1000));
    // Back within 16 intervals of the last schedule: count = count - lastcount = 9.
    CHECK(c.count() == 9);
    CHECK(c.drop_next() == at(t) + spacing(interval, 9));
  }
  SECTION("above again after 16 intervals: count starts at 1") {
    t += 16 * interval;
    const auto above = t;
    CHECK_FALSE(c.should_drop(at(t), at(t - 1s), 1000));
    t = above + interval;
    CHECK(c.should_drop(at(t), at(t - 1s), 1000));
    CHECK(c.count() == 1);
    CHECK(c.drop_next() == at(t + interval));
  }
}

TEST_CASE("codel saturates near the end of the clock", "[work_queue][shedding][codel]") {
  shedder c(5ms, 24h);
  const time_point end = time_point::max();
  CHECK_FALSE(c.should_drop(end - 1s, time_point{}, 10));  // first_above saturates
  CHECK_FALSE(c.should_drop(end - 1ns, time_point{}, 10));
  CHECK(c.should_drop(end, time_point{}, 10));  // now == first_above == max
  CHECK(c.drop_next() == end);
}

// ---------------------------------------------------------------------------------
// work_queue on a manual clock
// ---------------------------------------------------------------------------------

TEST_CASE("a work_queue without shedding runs every job however late",
          "[work_queue][shedding]") {
  single_worker_sim sim(queue_delay_shedding_config{}, 1ms);
  sim.q.reset();  // the same simulation, shedding off:
  sim.q = std::make_unique<queue_type>(
      outgrow::work_queue_config{.capacity = 4096, .workers = 0, .scale_from_zero = true},
      [&sim](job& j) {
        std::lock_guard lock(sim.m);
        sim.ran.push_back({j.id, sim.clock.now(), sim.clock.now() - j.submitted});
        sim.clock.advance(sim.service);
      },
      sim.clock, constant_backoff{0ns});
  CHECK_FALSE(sim.q->config().queue_delay_shedding.has_value());
  sim.submit(3000);
  sim.run();
  CHECK(sim.ran_jobs().size() == 3000);
  CHECK(sim.ran_jobs().back().waited == 2999ms);
  const auto m = sim.q->metrics();
  CHECK(m.shed == 0);
  CHECK_FALSE(m.shedding);
  CHECK(sim.q->dead_letters().size() == 0);
}

TEST_CASE("a standing queue below target is never shed", "[work_queue][shedding]") {
  // A closed loop: 4 jobs queued, each job run (1 ms) submits the next, so the queue
  // stands at 3-4 jobs for 2 s and every job waits 3 ms: below the 5 ms target.
  single_worker_sim sim({.target = 5ms, .interval = 20ms}, 1ms);
  sim.submit(4);
  sim.resubmit_up_to = 2000;
  sim.run();
  const auto ran = sim.ran_jobs();
  REQUIRE(ran.size() == 2000);
  CHECK(std::all_of(ran.begin() + 4, ran.end(),
                    [](const auto& r) { return r.waited == 3ms; }));
  CHECK(sim.q->metrics().shed == 0);
  CHECK(sim.shed().empty());
}

TEST_CASE("a burst above target for less than an interval is not shed",
          "[work_queue][shedding]") {
  // 100 jobs at once, 1 ms each: the delay is above 5 ms from the 6th job (t = 5 ms)
  // to the last (t = 99 ms) — 94 ms, under the 100 ms interval.
  single_worker_sim sim({.target = 5ms, .interval = 100ms}, 1ms);
  sim.submit(100);
  sim.run();
  CHECK(sim.ran_jobs().size() == 100);
  CHECK(sim.ran_jobs().back().waited == 99ms);
  CHECK(sim.q->metrics().shed == 0);
}

TEST_CASE("a queue above target for an interval sheds at interval over sqrt count",
          "[work_queue][shedding]") {
  constexpr auto interval = 100ms;
  single_worker_sim sim({.target = 5ms, .interval = interval}, 1ms);
  sim.submit(3000);
  sim.run();
  const auto ran = sim.ran_jobs();
  const auto shed = sim.shed();
  const auto m = sim.q->metrics();
  // Every job ran or was shed, never both.
  CHECK(ran.size() + shed.size() == 3000);
  std::set<std::uint32_t> ids;
  for (const auto& r : ran) ids.insert(r.id);
  for (const auto& s : shed) ids.insert(s.id);
  CHECK(ids.size() == 3000);
  CHECK(m.shed == shed.size());
  CHECK(m.succeeded == ran.size());
  CHECK(m.accepted == m.succeeded + m.shed);
  CHECK(m.dead_lettered == 0);  // shed jobs are counted apart from failed-out ones
  CHECK(sim.q->dead_letters().size() == shed.size());
  // Above target from the 6th job (t = 5 ms): the first shed is at 105 ms, the job
  // taken then (the 106th). Sheds take no time, so the next job is taken at once.
  REQUIRE(shed.size() > 10);
  CHECK(shed.front().at == at(105ms));
  CHECK(shed.front().id == 105);
  // Then after the k-th shed the next is due interval/sqrt(k) after the k-th was due;
  // jobs are taken each millisecond, so each gap is that within 1 ms.
  for (std::size_t k = 1; k < shed.size(); ++k) {
    const auto gap = shed[k].at - shed[k - 1].at;
    INFO("shed " << k + 1 << " gap " << gap.count() << " ns");
    CHECK(gap >= spacing(interval, k) - 1ms);
    CHECK(gap <= spacing(interval, k) + 1ms);
  }
  // No job ran after waiting more than the whole run would have taken without sheds.
  CHECK(ran.back().waited < 2999ms);
  CHECK(sim.clock.now() == at(1ms * ran.size()));
  // The job that emptied the queue ended the dropping state.
  CHECK_FALSE(m.shedding);
}

TEST_CASE("a standing queue above target is shed down to the target then left alone",
          "[work_queue][shedding]") {
  // A closed loop with 12 jobs queued: each waits ~11 ms, above the 5 ms target. CoDel
  // sheds (each shed shortens the loop by one job) until jobs wait under the target
  // again, leaves the dropping state, and sheds nothing more.
  single_worker_sim sim({.target = 5ms, .interval = 20ms}, 1ms);
  sim.submit(12);
  sim.resubmit_up_to = 3000;
  sim.run();
  const auto ran = sim.ran_jobs();
  const auto shed = sim.shed();
  CHECK(ran.size() + shed.size() == 3000);
  // From 12 queued down to a loop whose jobs wait less than 5 ms: 12 - 5 = 7 sheds.
  CHECK(shed.size() == 7);
  CHECK(sim.q->metrics().shed == 7);
  REQUIRE_FALSE(shed.empty());
  // After the last shed, every job waited less than the target (the loop drains at the
  // end, each job waiting less than the one before it).
  std::size_t after = 0;
  for (const auto& r : ran) {
    if (r.started <= shed.back().at) continue;
    ++after;
    CHECK(r.waited < 5ms);
  }
  CHECK(after > 2000);
  CHECK_FALSE(sim.q->metrics().shedding);
}

TEST_CASE("shed jobs go to the dead-letter queue with their key freed",
          "[work_queue][shedding]") {
  manual_clock clock;
  std::atomic<int> runs{0};
  queue_type q(
      {.capacity = 64,
       .workers = 0,
       .scale_from_zero = true,
       .queue_delay_shedding =
           queue_delay_shedding_config{.target = 5ms, .interval = 10ms}},
      [&](job&) {
        runs.fetch_add(1);
        clock.advance(20ms);
      },
      clock, constant_backoff{0ns});
  // Five jobs at t = 0: job 0 taken at 0 (not above), job 1 at 20 ms (above:
  // first_above = 30 ms), job 2 at 40 ms: shed. Job 3, taken at once, has one job
  // behind it: not above, which ends the dropping state; job 4 is the last.
  for (std::uint32_t i = 0; i < 5; ++i) {
    REQUIRE(q.submit(job{i, clock.now()}, fmt::format("key-{}", i)));
  }
  q.set_workers(1);
  REQUIRE(q.wait_until_idle(120s));
  CHECK(runs.load() == 4);
  const auto m = q.metrics();
  CHECK(m.shed == 1);
  CHECK(m.succeeded == 4);
  CHECK(m.processed == 4);  // a shed job is not an attempt
  CHECK(m.failed == 0);
  CHECK(m.accepted == 5);
  CHECK(fmt::format("{}", m).find("shed=1, shedding=false") != std::string::npos);
  const auto entries = q.dead_letters().snapshot();
  REQUIRE(entries.size() == 1);
  const auto& e = entries.front();
  CHECK(e.job.id == 2);
  CHECK(e.error_type == "outgrow::queue_delay_shed");
  CHECK(e.error.find("shed: waited 40ms in the queue") == 0);
  CHECK(e.error.find("target 5ms") != std::string::npos);
  CHECK(e.error.find("interval 10ms") != std::string::npos);
  CHECK(e.attempts == 0);
  CHECK(e.first_failure == at(40ms));
  CHECK(e.last_failure == at(40ms));
  REQUIRE(e.idempotency_key.has_value());
  CHECK(*e.idempotency_key == "key-2");
  // The work was not done: its key is free for a new submission.
  CHECK(q.submit(job{9, clock.now()}, "key-2"));
  REQUIRE(q.wait_until_idle(120s));
  // key-2 has succeeded since: the entry leaves the DLQ as a duplicate, not run again.
  const auto replay = q.dead_letters().replay_all(q);
  CHECK(replay.replayed == 0);
  CHECK(replay.duplicates == 1);
  CHECK(q.dead_letters().size() == 0);
  CHECK(runs.load() == 5);
}

TEST_CASE("a replayed shed job runs", "[work_queue][shedding]") {
  single_worker_sim sim({.target = 5ms, .interval = 100ms}, 1ms);
  sim.submit(300);
  sim.run();
  const std::size_t shed = sim.shed().size();
  REQUIRE(shed > 0);
  const auto r = sim.q->dead_letters().replay_all(*sim.q);
  CHECK(r.replayed == shed);
  REQUIRE(sim.q->wait_until_idle(120s));
  // Replayed while the worker runs: each ran or was shed again (how many depends on
  // how fast the replay goes), never lost: one more outcome per replayed job.
  const auto m = sim.q->metrics();
  CHECK(m.succeeded + m.shed == 300 + shed);
  CHECK(sim.q->dead_letters().size() == m.shed - shed);
}

TEST_CASE("bad queue delay shedding config is a config_error", "[work_queue][shedding]") {
  auto make = [](queue_delay_shedding_config c) {
    return std::make_unique<queue_type>(
        outgrow::work_queue_config{.workers = 1, .queue_delay_shedding = c}, [](job&) {},
        manual_clock{}, constant_backoff{0ns});
  };
  auto fails_with = [&](queue_delay_shedding_config c, const std::string& field,
                        const std::string& value) {
    try {
      (void)make(c);
      FAIL("no config_error for " << field << " = " << value);
    } catch (const outgrow::config_error& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK(what.find("work_queue") == 0);
      CHECK(what.find("queue_delay_shedding." + field) != std::string::npos);
      CHECK(what.find(value) != std::string::npos);
      CHECK(what.find("in [") != std::string::npos);
    }
  };
  fails_with({.target = 0ns}, "target", "must be in [1ns, 100ms], got 0s");
  fails_with({.target = -5ms}, "target", "got -5ms");
  fails_with({.target = 2s, .interval = 1s}, "target", "got 2s");  // > interval
  fails_with({.target = 20ms, .interval = 10ms}, "target", "in [1ns, 10ms], got 20ms");
  fails_with({.interval = 0ns}, "interval", "must be in [1ns, 24h], got 0s");
  fails_with({.interval = -1s}, "interval", "got -1s");
  fails_with({.target = 1ms, .interval = 25h}, "interval", "got 25h");
  fails_with({.target = std::chrono::nanoseconds::min(), .interval = 1s}, "target",
             "got -");
  // The edges are fine, and so are the defaults.
  CHECK_NOTHROW(make({.target = 1ns, .interval = 1ns}));
  CHECK_NOTHROW(make({.target = 24h, .interval = 24h}));
  CHECK_NOTHROW(make({}));
  CHECK(queue_delay_shedding_config{}.target == 10ms);
  CHECK(queue_delay_shedding_config{}.interval == 100ms);
}

// ---------------------------------------------------------------------------------
// concurrency (run under TSan)
// ---------------------------------------------------------------------------------

namespace {

/// Submitters and workers at once, shedding on: every accepted job ran exactly once or
/// was shed exactly once, and the counters say so exactly.
/// `executor`: run the workers as lanes on it instead of pool threads.
void stress(std::optional<boost::asio::any_io_executor> executor) {
  constexpr std::uint32_t submitters = 3;
  constexpr std::uint32_t per_submitter = 2000;
  constexpr std::uint32_t total = submitters * per_submitter;
  manual_clock clock;
  auto runs = std::make_unique<std::atomic<std::uint32_t>[]>(total);
  auto q = std::make_unique<queue_type>(
      outgrow::work_queue_config{
          .capacity = 8192,
          .workers = 0,
          .scale_from_zero = true,
          .dead_letter = {.capacity = 100'000},
          .executor = std::move(executor),
          .queue_delay_shedding =
              queue_delay_shedding_config{.target = 5ms, .interval = 20ms}},
      [&](job& j) {
        runs[j.id].fetch_add(1, std::memory_order_relaxed);
        clock.advance(1ms);  // each job takes 1 ms of the shared clock
      },
      clock, constant_backoff{0ns});
  std::atomic<std::uint32_t> first_half_done{0};
  std::atomic<std::uint64_t> refused{0};
  std::vector<std::thread> threads;
  for (std::uint32_t t = 0; t < submitters; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint32_t i = 0; i < per_submitter; ++i) {
        if (i == per_submitter / 2) first_half_done.fetch_add(1);
        const std::uint32_t id = t * per_submitter + i;
        if (!q->submit(job{id, clock.now()})) refused.fetch_add(1);
      }
    });
  }
  // Half of each submitter's jobs queued with no worker, then 2 s pass: they are far
  // above target, and the first ~20 ms of work (20 jobs) makes it standing for an
  // interval — so shedding certainly starts while the submitters are still going.
  while (first_half_done.load() < submitters) std::this_thread::yield();
  clock.advance(2s);
  q->set_workers(2);
  for (auto& th : threads) th.join();
  REQUIRE(q->wait_until_idle(120s));
  const auto m = q->metrics();
  CHECK(refused.load() == 0);
  CHECK(m.accepted == total);
  CHECK(m.shed > 0);
  CHECK(m.succeeded > 0);
  CHECK(m.succeeded + m.shed == total);
  CHECK(m.processed == m.succeeded);
  std::vector<std::uint32_t> shed_ids;
  q->dead_letters().for_each([&](const auto& e) {
    CHECK(e.error_type == queue_delay_shed_error_type);
    shed_ids.push_back(e.job.id);
  });
  CHECK(shed_ids.size() == m.shed);
  std::vector<std::uint32_t> outcome(total, 0);
  for (std::uint32_t id : shed_ids) ++outcome[id];
  std::uint32_t ran = 0;
  for (std::uint32_t id = 0; id < total; ++id) {
    const std::uint32_t r = runs[id].load();
    ran += r;
    outcome[id] += r;
  }
  CHECK(ran == m.succeeded);
  CHECK(
      std::all_of(outcome.begin(), outcome.end(), [](std::uint32_t n) { return n == 1; }));
}

}  // namespace

TEST_CASE("shedding stress with pool threads: every job ran or was shed exactly once",
          "[work_queue][shedding][stress]") {
  stress(std::nullopt);
}

TEST_CASE("shedding stress with executor lanes: every job ran or was shed exactly once",
          "[work_queue][shedding][stress]") {
  boost::asio::thread_pool pool(2);
  stress(pool.get_executor());
  pool.join();
}
