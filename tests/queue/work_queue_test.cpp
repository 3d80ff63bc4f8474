#include <outgrow/queue/work_queue.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/thread_pool.hpp>

#include "catch.hpp"
#include "eventually.hpp"
#include "gate.hpp"

using namespace std::chrono_literals;
using outgrow::constant_backoff;
using outgrow::job_result;
using outgrow::manual_clock;
using outgrow::overflow_policy;
using outgrow::submit_status;
using outgrow::work_queue;
using outgrow_test::eventually;

namespace {

struct job {
  std::uint32_t id = 0;
};

/// Retry at once: the tests control time through manual_clock, never by sleeping.
const constant_backoff no_delay{std::chrono::nanoseconds{0}};

template <class Q = work_queue<job, manual_clock, constant_backoff>, class H>
std::unique_ptr<Q> make_queue(outgrow::work_queue_config config, H handler,
                              manual_clock clock = {}) {
  return std::make_unique<Q>(std::move(config), std::move(handler), clock, no_delay);
}

/// Counts per job id, written by handlers on any thread.
struct tally {
  explicit tally(std::size_t n)
      : size(n),
        attempts(std::make_unique<std::atomic<std::uint32_t>[]>(n)),
        successes(std::make_unique<std::atomic<std::uint32_t>[]>(n)) {}
  std::size_t size;
  std::unique_ptr<std::atomic<std::uint32_t>[]> attempts;
  std::unique_ptr<std::atomic<std::uint32_t>[]> successes;
};

/// A backoff policy: retry 1 at once, later retries after an hour (never, in a test
/// whose manual clock does not move).
struct first_retry_only {
  std::chrono::nanoseconds delay(std::uint32_t n, std::chrono::nanoseconds,
                                 std::mt19937_64&) const {
    return n == 1 ? std::chrono::nanoseconds{0} : std::chrono::nanoseconds{1h};
  }
};
static_assert(outgrow::backoff_policy<first_retry_only>);

}  // namespace

// ---------------------------------------------------------------------------------
// the histogram
// ---------------------------------------------------------------------------------

TEST_CASE("log_histogram buckets are at most 12.5 percent wide and contiguous",
          "[work_queue][histogram]") {
  using h = outgrow::log_histogram;
  CHECK(h::bucket_count == 344);
  std::size_t previous = 0;
  std::mt19937_64 rng(7);
  for (std::uint64_t v = 0; v < 100'000; ++v) {
    const std::size_t b = h::bucket_of(v);
    REQUIRE(b >= previous);      // monotonic
    REQUIRE(b <= previous + 1);  // contiguous
    previous = b;
    REQUIRE(h::lowest_of(b) <= v);
    REQUIRE(v <= h::highest_of(b));
  }
  for (int i = 0; i < 100'000; ++i) {
    const std::uint64_t v = rng() >> (rng() % 64);
    const std::size_t b = h::bucket_of(v);
    REQUIRE(h::lowest_of(b) <= v);
    REQUIRE(v <= h::highest_of(b));
    if (b + 1 < h::bucket_count) {
      const std::uint64_t width = h::highest_of(b) - h::lowest_of(b) + 1;
      REQUIRE(width <= std::max<std::uint64_t>(1, h::lowest_of(b) / 8));
    }
  }
  CHECK(h::bucket_of(~std::uint64_t{0}) == h::bucket_count - 1);
}

TEST_CASE(
    "log_histogram percentiles never undershoot and overshoot by at most 12.5 percent",
    "[work_queue][histogram]") {
  auto hist = std::make_unique<outgrow::log_histogram>();
  for (std::uint64_t v = 1; v <= 10'000; ++v) hist->record(v * 1000);  // 1 us .. 10 ms
  auto counts = std::make_unique<outgrow::log_histogram::counts>();
  counts->add(*hist);
  CHECK(counts->total == 10'000);
  CHECK(counts->max == 10'000'000);
  for (const double q : {0.5, 0.9, 0.99, 0.999}) {
    const auto truth = static_cast<double>(q * 10'000 * 1000);
    const auto got = static_cast<double>(counts->percentile(q));
    CHECK(got >= truth);
    CHECK(got <= truth * 1.125);
  }
  CHECK(counts->percentile(1.0) == 10'000'000);
  outgrow::log_histogram::counts empty;
  CHECK(empty.percentile(0.5) == 0);
}

// ---------------------------------------------------------------------------------
// basics and configuration
// ---------------------------------------------------------------------------------

TEST_CASE("work_queue runs every submitted job exactly once", "[work_queue]") {
  tally t(1000);
  // More jobs than room: submit blocks for room, as long as the workers need on a
  // loaded machine (block_timeout is not what this tests).
  auto q = make_queue({.capacity = 64, .workers = 3, .block_timeout = 1h}, [&](job& j) {
    t.attempts[j.id].fetch_add(1);
    t.successes[j.id].fetch_add(1);
  });
  for (std::uint32_t i = 0; i < 1000; ++i) REQUIRE(q->submit(job{i}));
  REQUIRE(q->wait_until_idle(120s));
  for (std::uint32_t i = 0; i < 1000; ++i) REQUIRE(t.successes[i].load() == 1);
  const auto m = q->metrics();
  CHECK(m.accepted == 1000);
  CHECK(m.processed == 1000);
  CHECK(m.succeeded == 1000);
  CHECK(m.failed == 0);
  CHECK(m.depth == 0);
  CHECK(m.workers == 3);
  CHECK(q->stop(0s).empty());
}

TEST_CASE("work_queue rejects bad configuration with config_error", "[work_queue]") {
  auto handler = [](job&) {};
  using Q = work_queue<job>;
  CHECK_THROWS_WITH(Q({.capacity = 0}, handler),
                    "work_queue: capacity must be in [2, 1073741824], got 0");
  CHECK_THROWS_WITH(Q({.max_attempts = 0}, handler),
                    "work_queue: max_attempts must be in [1, 1000], got 0");
  CHECK_THROWS_WITH(Q({.workers = 0}, handler),
                    "work_queue: workers must be in [1, 64], got 0");
  CHECK_THROWS_WITH(Q({.workers = 9, .max_workers = 8}, handler),
                    "work_queue: workers must be in [1, 8], got 9");
  CHECK_THROWS_WITH(Q({.block_timeout = -1ms}, handler),
                    "work_queue: block_timeout must be in [0s, 24h], got -1ms");
  CHECK_THROWS_AS(Q({.retry_capacity = 0}, handler), outgrow::config_error);
  CHECK_THROWS_AS(Q({.remembered_keys = 0}, handler), outgrow::config_error);
  CHECK_THROWS_AS(Q({.max_workers = 0}, handler), outgrow::config_error);
  // The nested dead-letter queue's errors name the primitive the user configured.
  CHECK_THROWS_WITH(Q({.dead_letter = {.capacity = 0}}, handler),
                    "work_queue: dead_letter.capacity must be in [1, 4294967296], got 0");
  CHECK_THROWS_WITH(
      Q({.dead_letter = {.overflow = static_cast<outgrow::dead_letter_overflow>(7)}},
        handler),
      "work_queue: dead_letter.overflow must be one of drop_oldest, reject_newest, got 7");
  try {
    Q bad({.dead_letter = {.capacity = 0}}, handler);
    FAIL("no config_error");
  } catch (const outgrow::config_error& e) {
    CHECK(e.primitive() == "work_queue");
    CHECK(e.field() == "dead_letter.capacity");
  }
  // Out-of-range enum values are refused, not treated as some policy.
  CHECK_THROWS_WITH(
      Q({.overflow = static_cast<overflow_policy>(7)}, handler),
      "work_queue: overflow must be one of block, reject, caller_runs, got 7");
  CHECK_THROWS_AS(Q({.overflow = static_cast<overflow_policy>(3)}, handler),
                  outgrow::config_error);
  CHECK(outgrow::to_string(static_cast<overflow_policy>(7)) == "unknown");

  Q ok({.workers = 1, .max_workers = 4}, handler);
  CHECK_THROWS_WITH(ok.set_workers(0), "work_queue: workers must be in [1, 4], got 0");
  CHECK_THROWS_WITH(ok.set_workers(5), "work_queue: workers must be in [1, 4], got 5");
  CHECK(ok.workers() == 1);
}

TEST_CASE("with scale_from_zero workers 0 queues jobs until workers arrive",
          "[work_queue]") {
  std::atomic<int> ran{0};
  auto q = make_queue({.capacity = 8, .workers = 0, .scale_from_zero = true},
                      [&](job&) { ran.fetch_add(1); });
  CHECK(q->workers() == 0);
  for (std::uint32_t i = 0; i < 5; ++i)
    REQUIRE(q->submit(job{i}).status == submit_status::accepted);
  CHECK(q->depth() == 5);
  CHECK(ran.load() == 0);
  CHECK_FALSE(q->wait_until_idle(0s));
  q->set_workers(2);
  REQUIRE(q->wait_until_idle(120s));
  CHECK(ran.load() == 5);
  q->set_workers(0);  // park again
  REQUIRE(q->submit(job{9}));
  CHECK(q->depth() == 1);
  const auto left = q->stop(0s);
  REQUIRE(left.size() == 1);  // nobody to drain it
  CHECK(left[0].job.id == 9);
  CHECK(left[0].attempts == 0);
}

// ---------------------------------------------------------------------------------
// failures, retries, dead letters
// ---------------------------------------------------------------------------------

TEST_CASE("a failing job is retried max_attempts times then dead-lettered with its error",
          "[work_queue]") {
  manual_clock clock;
  clock.advance(1h);
  tally t(4);
  auto q = make_queue(
      {.workers = 1},
      [&](job& j) -> job_result {
        t.attempts[j.id].fetch_add(1);
        switch (j.id) {
          case 0:
            throw std::runtime_error("database is down");
          case 1:
            return job_result::failure("remote said 503", "http_error");
          case 2:
            return job_result::permanent_failure("negative quantity", "validation_error");
          default:
            return job_result::success();
        }
      },
      clock);
  for (std::uint32_t i = 0; i < 4; ++i) REQUIRE(q->submit(job{i}));
  REQUIRE(q->wait_until_idle(120s));
  CHECK(t.attempts[0].load() == 3);
  CHECK(t.attempts[1].load() == 3);
  CHECK(t.attempts[2].load() == 1);  // permanent: no retry
  CHECK(t.attempts[3].load() == 1);

  auto dead = q->dead_letters().snapshot();
  REQUIRE(dead.size() == 3);
  std::sort(dead.begin(), dead.end(), [](auto& a, auto& b) { return a.job.id < b.job.id; });
  CHECK(dead[0].job.id == 0);
  CHECK(dead[0].error == "database is down");
  CHECK(dead[0].error_type == "std::runtime_error");
  CHECK(dead[0].attempts == 3);
  CHECK(dead[0].first_failure == clock.now());
  CHECK(dead[0].last_failure == clock.now());
  CHECK(dead[1].error == "remote said 503");
  CHECK(dead[1].error_type == "http_error");
  CHECK(dead[1].attempts == 3);
  CHECK(dead[2].error == "negative quantity");
  CHECK(dead[2].error_type == "validation_error");
  CHECK(dead[2].attempts == 1);

  const auto m = q->metrics();
  CHECK(m.processed == 8);
  CHECK(m.succeeded == 1);
  CHECK(m.failed == 7);
  CHECK(m.retried == 4);
  CHECK(m.dead_lettered == 3);
  CHECK(m.failed == m.retried + m.dead_lettered);
  CHECK(m.processed == m.succeeded + m.failed);
}

TEST_CASE("a handler returning false or throwing a non-exception counts as a failure",
          "[work_queue]") {
  auto q = make_queue({.workers = 1, .max_attempts = 1}, [](job& j) -> bool {
    if (j.id == 1) throw 42;  // NOLINT: deliberately not a std::exception
    return j.id != 0;
  });
  REQUIRE(q->submit(job{0}));
  REQUIRE(q->submit(job{1}));
  REQUIRE(q->submit(job{2}));
  REQUIRE(q->wait_until_idle(120s));
  auto dead = q->dead_letters().snapshot();
  REQUIRE(dead.size() == 2);
  std::sort(dead.begin(), dead.end(), [](auto& a, auto& b) { return a.job.id < b.job.id; });
  CHECK(dead[0].error == "handler returned false");
  CHECK(dead[0].error_type == "outgrow::job_failure");
  CHECK(dead[1].error == "unknown exception");
  CHECK(dead[1].error_type == "unknown");
  CHECK(q->metrics().succeeded == 1);
}

TEST_CASE("retries wait for their backoff on the queue clock without blocking a worker",
          "[work_queue]") {
  manual_clock clock;
  tally t(3);
  work_queue<job, manual_clock, constant_backoff> q(
      {.workers = 1},
      [&](job& j) -> job_result {
        const auto n = t.attempts[j.id].fetch_add(1) + 1;
        if (j.id == 0 && n == 1) return job_result::failure("first try fails");
        t.successes[j.id].fetch_add(1);
        return job_result::success();
      },
      clock, constant_backoff{10s});
  REQUIRE(q.submit(job{0}));
  REQUIRE(eventually([&] { return q.metrics().waiting_retry == 1; }));
  // The only worker is free while job 0 waits: job 1 runs now.
  REQUIRE(q.submit(job{1}));
  REQUIRE(eventually([&] { return t.successes[1].load() == 1; }));
  CHECK(t.attempts[0].load() == 1);
  CHECK(q.metrics().waiting_retry == 1);
  CHECK_FALSE(q.wait_until_idle(0s));
  clock.advance(9s);
  REQUIRE(q.submit(job{2}));
  REQUIRE(eventually([&] { return t.successes[2].load() == 1; }));
  CHECK(t.attempts[0].load() == 1);  // 9 s < 10 s backoff: still waiting
  clock.advance(1s);
  REQUIRE(q.wait_until_idle(120s));
  CHECK(t.attempts[0].load() == 2);
  CHECK(t.successes[0].load() == 1);
  CHECK(q.metrics().retried == 1);
}

// ---------------------------------------------------------------------------------
// the fault-injection run
// ---------------------------------------------------------------------------------

namespace {

enum class fate : std::uint8_t { ok, fails_once, fails_twice, always_fails };

struct fault_plan {
  std::vector<fate> fates;
  std::size_t permanent = 0;
  std::size_t transient = 0;
};

fault_plan make_plan(std::uint32_t jobs, std::uint64_t seed) {
  fault_plan plan;
  plan.fates.resize(jobs, fate::ok);
  std::mt19937_64 rng(seed);
  for (auto& f : plan.fates) {
    const std::uint64_t r = rng() % 1000;
    if (r < 10) {
      f = fate::always_fails;  // 1 %
      ++plan.permanent;
    } else if (r < 110) {
      f = (rng() & 1U) != 0 ? fate::fails_once : fate::fails_twice;  // 10 %
      ++plan.transient;
    }
  }
  return plan;
}

std::uint32_t expected_attempts(fate f) {
  switch (f) {
    case fate::ok:
      return 1;
    case fate::fails_once:
      return 2;
    case fate::fails_twice:
    case fate::always_fails:
      return 3;
  }
  return 0;
}

/// 4 producers, workers resized at random in [1, 8] by producer 0 every 500 jobs,
/// failures as planned; then the checks of the issue, then a replay with the fault
/// fixed.
void fault_injection_run(std::uint32_t jobs, bool on_executor) {
  constexpr std::uint64_t seed = 20'240'607;
  const fault_plan plan = make_plan(jobs, seed);
  REQUIRE(plan.permanent > 0);
  REQUIRE(plan.transient > 0);
  tally t(jobs);
  std::atomic<bool> fixed{false};
  auto handler = [&](job& j) -> job_result {
    const std::uint32_t n = t.attempts[j.id].fetch_add(1) + 1;
    const fate f = plan.fates[j.id];
    const bool fail = (f == fate::always_fails && !fixed.load()) ||
                      (f == fate::fails_once && n <= 1) ||
                      (f == fate::fails_twice && n <= 2);
    if (fail) {
      if (j.id % 2 == 0) throw std::runtime_error(fmt::format("job {} failed", j.id));
      return job_result::failure("transient", "injected");
    }
    t.successes[j.id].fetch_add(1);
    return job_result::success();
  };
  std::optional<boost::asio::thread_pool> pool;
  outgrow::work_queue_config config{.capacity = 1024,
                                    .workers = 4,
                                    .max_workers = 8,
                                    .max_attempts = 3,
                                    .overflow = overflow_policy::block,
                                    .block_timeout = 1h,
                                    .dead_letter = {.capacity = jobs}};
  if (on_executor) {
    pool.emplace(8);
    config.executor = pool->get_executor();
  }
  auto q = make_queue(config, handler);

  constexpr int producers = 4;
  std::vector<std::uint64_t> refused(producers, 0);
  std::vector<std::size_t> resizes(producers, 0);
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      std::mt19937_64 rng(seed + static_cast<std::uint64_t>(p));
      std::uint64_t sent = 0;
      for (auto id = static_cast<std::uint32_t>(p); id < jobs; id += producers) {
        if (!q->submit(job{id})) ++refused[static_cast<std::size_t>(p)];
        if (p == 0 && ++sent % 500 == 0) {
          q->set_workers(1 + rng() % 8);
          ++resizes[0];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(q->wait_until_idle(600s));
  CHECK(resizes[0] >= 10);
  for (const auto r : refused) REQUIRE(r == 0);

  // Each job succeeded exactly once, or sits in the DLQ after exactly max_attempts.
  std::size_t wrong_attempts = 0;
  std::size_t wrong_successes = 0;
  std::uint64_t total_attempts = 0;
  for (std::uint32_t id = 0; id < jobs; ++id) {
    const fate f = plan.fates[id];
    total_attempts += t.attempts[id].load();
    if (t.attempts[id].load() != expected_attempts(f)) ++wrong_attempts;
    if (t.successes[id].load() != (f == fate::always_fails ? 0U : 1U)) ++wrong_successes;
  }
  CHECK(wrong_attempts == 0);
  CHECK(wrong_successes == 0);
  std::vector<std::uint8_t> in_dlq(jobs, 0);
  std::size_t bad_entries = 0;
  q->dead_letters().for_each([&](const auto& e) {
    if (e.attempts != 3 || plan.fates[e.job.id] != fate::always_fails ||
        in_dlq[e.job.id]++) {
      ++bad_entries;
    }
  });
  CHECK(bad_entries == 0);
  CHECK(q->dead_letters().size() == plan.permanent);
  const auto m = q->metrics();
  CHECK(m.accepted == jobs);
  CHECK(m.succeeded == jobs - plan.permanent);
  CHECK(m.dead_lettered == plan.permanent);
  CHECK(m.processed == total_attempts);
  CHECK(m.failed == m.retried + m.dead_lettered);
  CHECK(m.depth == 0);
  CHECK(m.waiting_retry == 0);

  // Fix the fault, replay the DLQ: every job now succeeded exactly once.
  fixed.store(true);
  const auto replay = q->dead_letters().replay_all(*q);
  CHECK(replay.replayed == plan.permanent);
  CHECK(replay.left == 0);
  REQUIRE(q->wait_until_idle(600s));
  CHECK(q->dead_letters().empty());
  std::size_t not_once = 0;
  for (std::uint32_t id = 0; id < jobs; ++id) {
    if (t.successes[id].load() != 1) ++not_once;
    if (plan.fates[id] == fate::always_fails && t.attempts[id].load() != 4) ++not_once;
  }
  CHECK(not_once == 0);
  CHECK(q->metrics().succeeded == jobs);
  CHECK(q->stop(0s).empty());
}

}  // namespace

TEST_CASE("fault injection: 100k jobs 4 producers random resizing none lost or duplicated",
          "[work_queue][fault_injection]") {
  fault_injection_run(100'000, false);
}

TEST_CASE("fault injection on an asio executor with random resizing",
          "[work_queue][fault_injection]") {
  fault_injection_run(20'000, true);
}

// ---------------------------------------------------------------------------------
// shutdown
// ---------------------------------------------------------------------------------

TEST_CASE("stop mid-run: accepted equals succeeded plus dead-lettered plus handed back",
          "[work_queue][shutdown]") {
  constexpr std::uint32_t per_producer = 50'000;
  constexpr int producers = 4;
  constexpr std::uint32_t jobs = per_producer * producers;
  tally t(jobs);
  // id % 10 == 0: always fails (retry 1 at once, retry 2 after an hour that never
  // comes: waiting at stop); id % 10 == 1: permanent failure (DLQ); the rest succeed.
  work_queue<job, manual_clock, first_retry_only> q(
      {.capacity = 256,
       .workers = 2,
       .max_attempts = 3,
       .overflow = overflow_policy::reject},
      [&](job& j) -> job_result {
        t.attempts[j.id].fetch_add(1);
        if (j.id % 10 == 0) return job_result::failure("flaky");
        if (j.id % 10 == 1) return job_result::permanent_failure("poison");
        t.successes[j.id].fetch_add(1);
        return job_result::success();
      });
  std::vector<std::vector<std::uint32_t>> accepted(producers);
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (std::uint32_t i = 0; i < per_producer; ++i) {
        const std::uint32_t id = static_cast<std::uint32_t>(p) * per_producer + i;
        auto r = q.submit(job{id});
        while (r.status == submit_status::rejected_full) {  // retry the same job
          std::this_thread::yield();
          r = q.submit(job{id});
        }
        if (r) accepted[static_cast<std::size_t>(p)].push_back(id);
        if (r.status == submit_status::stopped) break;
      }
    });
  }
  REQUIRE(eventually([&] { return q.metrics().processed >= 3000; }));
  const auto handed_back = q.stop(std::chrono::steady_clock::now());
  for (auto& th : threads) th.join();
  CHECK(q.stopped());
  // Handlers running when stop() returned (if any) finish on their own.
  REQUIRE(eventually([&] { return q.metrics().in_flight == 0; }));

  std::vector<std::uint8_t> where(jobs, 0);  // bit 1 accepted, 2 succeeded, 4 DLQ, 8 back
  std::size_t n_accepted = 0;
  for (const auto& ids : accepted) {
    for (const auto id : ids) {
      where[id] |= 1;
      ++n_accepted;
    }
  }
  std::size_t n_succeeded = 0;
  for (std::uint32_t id = 0; id < jobs; ++id) {
    if (t.successes[id].load() == 1) {
      where[id] |= 2;
      ++n_succeeded;
    }
  }
  q.dead_letters().for_each([&](const auto& e) { where[e.job.id] |= 4; });
  std::size_t waiting_for_retry = 0;
  for (const auto& u : handed_back) {
    where[u.job.id] |= 8;
    if (u.attempts == 2) ++waiting_for_retry;
  }
  const std::size_t n_dead = q.dead_letters().size();
  CHECK(n_accepted == n_succeeded + n_dead + handed_back.size());
  std::size_t misplaced = 0;
  for (std::uint32_t id = 0; id < jobs; ++id) {
    const std::uint8_t w = where[id];
    if (w == 0) continue;                         // never accepted
    if (w != 3 && w != 5 && w != 9) ++misplaced;  // accepted and in exactly one place
  }
  CHECK(misplaced == 0);
  CHECK(waiting_for_retry > 0);  // retry-waiting jobs are handed back too
  const auto m = q.metrics();
  CHECK(m.accepted == n_accepted);
  CHECK(m.accepted == m.succeeded + m.dead_lettered + m.handed_back);
  CHECK(m.handed_back == handed_back.size());
  CHECK(m.waiting_retry == 0);
  CHECK(q.stop(0s).empty());  // a second stop hands back nothing
  CHECK(q.submit(job{0}).status == submit_status::stopped);
}

using outgrow_test::gate;

TEST_CASE("stop returns at its deadline while a handler is stuck and reports it",
          "[work_queue][shutdown]") {
  gate g;
  std::atomic<int> ran{0};
  auto q = make_queue({.capacity = 16, .workers = 1, .max_attempts = 3},
                      [&](job& j) -> job_result {
                        if (j.id == 0) {
                          g.wait();
                          return job_result::failure("failed after stop");
                        }
                        ran.fetch_add(1);
                        return job_result::success();
                      });
  for (std::uint32_t i = 0; i < 10; ++i) REQUIRE(q->submit(job{i}));
  REQUIRE(eventually([&] { return g.waiting.load() == 1; }));
  const auto start = std::chrono::steady_clock::now();
  const auto back = q->stop(start + 100ms);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(took >= 100ms);
  CHECK(took < 900ms);  // the deadline plus a little, not "when the handler returns"
  CHECK(back.still_running == 1);
  REQUIRE(back.size() == 9);  // jobs 1..9, in FIFO order, never started
  for (std::size_t i = 0; i < back.size(); ++i) {
    CHECK(back[i].attempts == 0);
    CHECK(back[i].job.id == i + 1);
  }
  CHECK(q->stopped());
  CHECK(q->submit(job{99}).status == submit_status::stopped);
  CHECK(q->metrics().in_flight == 1);

  g.release();  // the stuck handler returns a retryable failure: no retry after stop
  REQUIRE(eventually([&] { return q->metrics().in_flight == 0; }));
  CHECK(ran.load() == 0);
  REQUIRE(q->dead_letters().size() == 1);
  q->dead_letters().for_each([](const auto& e) {
    CHECK(e.job.id == 0);
    CHECK(e.attempts == 1);
    CHECK(e.error == "failed after stop");
  });
  const auto m = q->metrics();
  CHECK(m.accepted == m.succeeded + m.dead_lettered + m.handed_back);
  CHECK(m.retried == 0);
}

TEST_CASE("the destructor waits for a handler that stop left running",
          "[work_queue][shutdown]") {
  gate g;
  std::atomic<bool> finished{false};
  auto q = make_queue({.capacity = 4, .workers = 2}, [&](job&) {
    g.wait();
    finished.store(true);
  });
  REQUIRE(q->submit(job{0}));
  REQUIRE(eventually([&] { return g.waiting.load() == 1; }));
  const auto back = q->stop(std::chrono::steady_clock::now());
  CHECK(back.empty());
  CHECK(back.still_running == 1);
  std::thread releaser([&] {
    std::this_thread::sleep_for(50ms);
    g.release();
  });
  q.reset();  // blocks until the handler has returned; no use of freed memory
  CHECK(finished.load());
  releaser.join();
}

TEST_CASE("stop on an executor returns at its deadline while a lane is stuck",
          "[work_queue][shutdown][executor]") {
  boost::asio::thread_pool pool(2);
  gate g;
  std::atomic<int> ran{0};
  {
    auto q = make_queue({.capacity = 16, .workers = 1, .executor = pool.get_executor()},
                        [&](job& j) {
                          if (j.id == 0) g.wait();
                          ran.fetch_add(1);
                        });
    for (std::uint32_t i = 0; i < 5; ++i) REQUIRE(q->submit(job{i}));
    REQUIRE(eventually([&] { return g.waiting.load() == 1; }));
    const auto start = std::chrono::steady_clock::now();
    const auto back = q->stop(start + 50ms);
    CHECK(std::chrono::steady_clock::now() - start < 900ms);
    CHECK(back.still_running == 1);
    CHECK(back.size() == 4);
    g.release();
    REQUIRE(eventually([&] { return q->metrics().in_flight == 0; }));
    CHECK(ran.load() == 1);
    CHECK(q->metrics().succeeded == 1);
  }
  pool.join();
}

TEST_CASE("stop reports a caller-runs submitter stuck in its handler",
          "[work_queue][shutdown]") {
  gate g;
  auto q =
      make_queue({.capacity = 2, .workers = 1, .overflow = overflow_policy::caller_runs},
                 [&](job&) { g.wait(); });
  REQUIRE(q->submit(job{0}));  // the worker takes it and waits
  REQUIRE(eventually([&] { return g.waiting.load() == 1; }));
  REQUIRE(q->submit(job{1}));
  REQUIRE(q->submit(job{2}));  // queue full now (capacity 2)
  submit_status status = submit_status::accepted;
  std::thread caller([&] { status = q->submit(job{3}).status; });  // runs it: waits
  REQUIRE(eventually([&] { return g.waiting.load() == 2; }));
  const auto back = q->stop(std::chrono::steady_clock::now() + 20ms);
  CHECK(back.still_running == 2);
  CHECK(back.size() == 2);
  g.release();
  caller.join();
  CHECK(status == submit_status::ran_in_caller);
  REQUIRE(eventually([&] { return q->metrics().in_flight == 0; }));
  const auto m = q->metrics();
  CHECK(m.succeeded == 2);
  CHECK(m.accepted == m.succeeded + m.dead_lettered + m.handed_back);
}

TEST_CASE("stop drains the queue when the deadline allows", "[work_queue][shutdown]") {
  std::atomic<int> ran{0};
  auto q = make_queue({.capacity = 2048, .workers = 2}, [&](job&) { ran.fetch_add(1); });
  for (std::uint32_t i = 0; i < 2000; ++i) REQUIRE(q->submit(job{i}));
  CHECK(q->stop(120s).empty());
  CHECK(ran.load() == 2000);
}

// ---------------------------------------------------------------------------------
// resizing
// ---------------------------------------------------------------------------------

namespace {
void resize_stress(bool on_executor) {
  constexpr std::uint32_t jobs = 40'000;
  tally t(jobs);
  std::optional<boost::asio::thread_pool> pool;
  outgrow::work_queue_config config{.capacity = 128,
                                    .workers = 2,
                                    .max_workers = 8,
                                    .scale_from_zero = true,
                                    .block_timeout = 1h};
  if (on_executor) {
    pool.emplace(4);
    config.executor = pool->get_executor();
  }
  auto q = make_queue(config, [&](job& j) { t.successes[j.id].fetch_add(1); });
  std::atomic<bool> producing{true};
  std::thread resizer([&] {
    std::mt19937_64 rng(99);
    for (int i = 0; producing.load(); ++i) {
      // Mostly 1..8, sometimes 0 (scale to zero) while producers keep submitting.
      q->set_workers(i % 7 == 6 ? 0 : 1 + rng() % 8);
      for (int k = 0; k < 50; ++k) std::this_thread::yield();
    }
    q->set_workers(3);
  });
  std::vector<std::thread> producers;
  for (std::uint32_t p = 0; p < 4; ++p) {
    producers.emplace_back([&, p] {
      for (std::uint32_t id = p; id < jobs; id += 4) {
        while (!q->submit(job{id})) {
        }
      }
    });
  }
  for (auto& th : producers) th.join();
  producing.store(false);
  resizer.join();
  REQUIRE(q->wait_until_idle(600s));
  std::size_t not_once = 0;
  for (std::uint32_t id = 0; id < jobs; ++id) {
    if (t.successes[id].load() != 1) ++not_once;
  }
  CHECK(not_once == 0);
  CHECK(q->metrics().succeeded == jobs);
  CHECK(q->stop(0s).empty());
}
}  // namespace

TEST_CASE("resizing the pool under concurrent submission loses and duplicates nothing",
          "[work_queue][stress]") {
  resize_stress(false);
}

TEST_CASE(
    "resizing executor lanes under concurrent submission loses and duplicates nothing",
    "[work_queue][stress]") {
  resize_stress(true);
}

TEST_CASE("set_workers shrinks and grows the set of running workers", "[work_queue]") {
  auto q = make_queue({.workers = 6, .max_workers = 8}, [](job&) {});
  CHECK(q->metrics().per_worker.size() == 6);
  q->set_workers(2);
  CHECK(q->workers() == 2);
  REQUIRE(eventually([&] { return q->metrics().per_worker.size() == 2; }));
  q->set_workers(8);
  CHECK(q->metrics().per_worker.size() == 8);
  for (std::uint32_t i = 0; i < 100; ++i) REQUIRE(q->submit(job{i}));
  REQUIRE(q->wait_until_idle(120s));
  std::uint64_t sum = 0;
  for (const auto& w : q->metrics().per_worker) sum += w.processed;
  CHECK(sum == 100);
}

// ---------------------------------------------------------------------------------
// overflow policies
// ---------------------------------------------------------------------------------

TEST_CASE("overflow reject returns rejected_full and hands the job back",
          "[work_queue][overflow]") {
  work_queue<std::unique_ptr<int>> q({.capacity = 2,
                                      .workers = 0,
                                      .scale_from_zero = true,
                                      .overflow = overflow_policy::reject},
                                     [](std::unique_ptr<int>&) {});
  CHECK(q.submit(std::make_unique<int>(1)).status == submit_status::accepted);
  CHECK(q.submit(std::make_unique<int>(2)).status == submit_status::accepted);
  auto third = std::make_unique<int>(3);
  const auto r = q.submit(std::move(third));
  CHECK(r.status == submit_status::rejected_full);
  CHECK_FALSE(r);
  REQUIRE(r.rejected.has_value());  // handed back in the result when refused
  REQUIRE(*r.rejected != nullptr);
  CHECK(**r.rejected == 3);
  CHECK(q.metrics().rejected == 1);
  CHECK(q.metrics().accepted == 2);
}

TEST_CASE("a refused job comes back in the submit result whatever the reason",
          "[work_queue][overflow]") {
  using move_only = std::unique_ptr<int>;
  std::vector<int> shed;
  auto q = std::make_unique<work_queue<move_only>>(
      outgrow::work_queue_config{.capacity = 2,
                                 .workers = 0,
                                 .scale_from_zero = true,
                                 .overflow = overflow_policy::reject},
      [](move_only&) {});
  auto submit = [&](move_only o, std::optional<std::string> key) {
    auto r = key ? q->submit(std::move(o), *key) : q->submit(std::move(o));
    if (!r) {
      REQUIRE(r.rejected.has_value());
      shed.push_back(**r.rejected);
    } else {
      CHECK_FALSE(r.rejected.has_value());  // taken: nothing to hand back
    }
    return r.status;
  };
  CHECK(submit(std::make_unique<int>(1), "k") == submit_status::accepted);
  CHECK(submit(std::make_unique<int>(2), "k") == submit_status::duplicate);
  CHECK(submit(std::make_unique<int>(3), std::nullopt) == submit_status::accepted);
  CHECK(submit(std::make_unique<int>(4), std::nullopt) == submit_status::rejected_full);
  auto t = q->try_submit(std::make_unique<int>(5));
  CHECK(t.status == submit_status::rejected_full);
  REQUIRE(t.rejected.has_value());
  CHECK(**t.rejected == 5);
  // The status alone still converts: submit_result keeps only the status.
  const outgrow::submit_result status_only = q->try_submit(std::make_unique<int>(6));
  CHECK(status_only.status == submit_status::rejected_full);
  CHECK(q->stop(0s).size() == 2);
  CHECK(submit(std::make_unique<int>(7), std::nullopt) == submit_status::stopped);
  CHECK(shed == std::vector<int>{2, 4, 7});
}

TEST_CASE("overflow block times out and then succeeds once workers make room",
          "[work_queue][overflow]") {
  {
    auto q = make_queue(
        {.capacity = 2, .workers = 0, .scale_from_zero = true, .block_timeout = 1ms},
        [](job&) {});
    REQUIRE(q->submit(job{1}));
    REQUIRE(q->submit(job{2}));
    job third{3};
    const auto timed_out = q->submit(std::move(third));
    CHECK(timed_out.status == submit_status::timed_out);
    REQUIRE(timed_out.rejected.has_value());
    CHECK(timed_out.rejected->id == 3);
    CHECK(q->try_submit(job{4}).status == submit_status::rejected_full);
  }
  {
    std::atomic<int> ran{0};
    auto q = make_queue(
        {.capacity = 2, .workers = 0, .scale_from_zero = true, .block_timeout = 1h},
        [&](job&) { ran.fetch_add(1); });
    REQUIRE(q->submit(job{1}));
    REQUIRE(q->submit(job{2}));
    outgrow::submit_result blocked;
    std::thread producer([&] { blocked = q->submit(job{3}); });
    q->set_workers(1);  // drains: the blocked producer gets in
    producer.join();
    CHECK(blocked.status == submit_status::accepted);
    REQUIRE(q->wait_until_idle(120s));
    CHECK(ran.load() == 3);
  }
}

TEST_CASE("overflow caller_runs runs the job on the calling thread",
          "[work_queue][overflow]") {
  std::atomic<bool> on_caller{false};
  const auto caller = std::this_thread::get_id();
  auto q = make_queue({.capacity = 2,
                       .workers = 0,
                       .scale_from_zero = true,
                       .overflow = overflow_policy::caller_runs},
                      [&](job& j) {
                        if (j.id == 3 && std::this_thread::get_id() == caller) {
                          on_caller.store(true);
                        }
                      });
  REQUIRE(q->submit(job{1}));
  REQUIRE(q->submit(job{2}));
  const auto r = q->submit(job{3});
  CHECK(r.status == submit_status::ran_in_caller);
  CHECK(r);
  CHECK(on_caller.load());
  CHECK(q->try_submit(job{4}).status ==
        submit_status::rejected_full);  // try_ never runs it
  const auto m = q->metrics();
  CHECK(m.ran_in_caller == 1);
  CHECK(m.succeeded == 1);
  CHECK(m.accepted == 3);
  CHECK(m.depth == 2);
}

// ---------------------------------------------------------------------------------
// idempotency keys
// ---------------------------------------------------------------------------------

TEST_CASE("a job whose idempotency key succeeded is never run again",
          "[work_queue][idempotency]") {
  std::atomic<int> ran{0};
  auto q = make_queue({.capacity = 8, .workers = 0, .scale_from_zero = true},
                      [&](job&) { ran.fetch_add(1); });
  CHECK(q->submit(job{1}, "order-1").status == submit_status::accepted);
  CHECK(q->submit(job{1}, "order-1").status == submit_status::duplicate);  // pending
  CHECK(q->submit(job{2}, "order-2").status == submit_status::accepted);
  q->set_workers(1);
  REQUIRE(q->wait_until_idle(120s));
  CHECK(ran.load() == 2);
  CHECK(q->submit(job{1}, "order-1").status == submit_status::duplicate);  // succeeded
  CHECK(q->try_submit(job{1}, "order-1").status == submit_status::duplicate);
  CHECK(q->submit(job{1}).status == submit_status::accepted);  // no key: runs
  REQUIRE(q->wait_until_idle(120s));
  CHECK(ran.load() == 3);
  CHECK(q->metrics().duplicates == 3);
}

TEST_CASE("remembered idempotency keys are bounded oldest first",
          "[work_queue][idempotency]") {
  std::atomic<int> ran{0};
  auto q =
      make_queue({.workers = 1, .remembered_keys = 2}, [&](job&) { ran.fetch_add(1); });
  for (const char* key : {"a", "b", "c"}) {
    REQUIRE(q->submit(job{0}, key));
    REQUIRE(q->wait_until_idle(120s));
  }
  CHECK(q->submit(job{0}, "c").status == submit_status::duplicate);
  CHECK(q->submit(job{0}, "b").status == submit_status::duplicate);
  CHECK(q->submit(job{0}, "a").status == submit_status::accepted);  // forgotten
  REQUIRE(q->wait_until_idle(120s));
  CHECK(ran.load() == 4);
}

TEST_CASE("a dead-lettered key can run again and a replay skips keys done meanwhile",
          "[work_queue][idempotency]") {
  std::atomic<bool> broken{true};
  std::atomic<int> ran{0};
  auto q = make_queue({.workers = 1, .max_attempts = 2}, [&](job& j) -> job_result {
    ran.fetch_add(1);
    if (broken.load() && j.id < 10) return job_result::failure("broken");
    return job_result::success();
  });
  REQUIRE(q->submit(job{1}, "k1"));
  REQUIRE(q->submit(job{2}, "k2"));
  REQUIRE(q->wait_until_idle(120s));
  CHECK(q->dead_letters().size() == 2);
  // k1's work is done by a new job; k2 is replayed.
  REQUIRE(q->submit(job{11}, "k1").status == submit_status::accepted);
  REQUIRE(q->wait_until_idle(120s));
  broken.store(false);
  const int before = ran.load();
  const auto r = q->dead_letters().replay_all(*q);
  CHECK(r.replayed == 1);
  CHECK(r.duplicates == 1);
  REQUIRE(q->wait_until_idle(120s));
  CHECK(ran.load() == before + 1);
  CHECK(q->dead_letters().empty());
}

// ---------------------------------------------------------------------------------
// DLQ integration
// ---------------------------------------------------------------------------------

TEST_CASE("replayed jobs start again at attempt one", "[work_queue][dead_letter]") {
  tally t(1);
  std::atomic<bool> fixed{false};
  auto q = make_queue({.workers = 1, .max_attempts = 3}, [&](job& j) -> job_result {
    t.attempts[j.id].fetch_add(1);
    if (!fixed.load() || t.attempts[j.id].load() < 5) return job_result::failure("nope");
    return job_result::success();
  });
  REQUIRE(q->submit(job{0}));
  REQUIRE(q->wait_until_idle(120s));
  CHECK(t.attempts[0].load() == 3);
  fixed.store(true);
  REQUIRE(q->dead_letters().replay_all(*q).replayed == 1);
  REQUIRE(q->wait_until_idle(120s));
  // Attempts 4 and 5 (1 and 2 of the replay): with attempts not reset, 4 would have been
  // the last and the job would be dead again.
  CHECK(t.attempts[0].load() == 5);
  CHECK(q->dead_letters().empty());
  CHECK(q->metrics().succeeded == 1);
}

TEST_CASE("a full dead-letter queue hands work_queue failures to its overflow hook",
          "[work_queue][dead_letter]") {
  auto q =
      make_queue({.workers = 1, .max_attempts = 1, .dead_letter = {.capacity = 2}},
                 [](job&) -> job_result { return job_result::permanent_failure("bad"); });
  std::mutex m;
  std::vector<std::uint32_t> spilled;
  q->dead_letters().on_overflow([&](auto&& e) {
    std::lock_guard lock(m);
    spilled.push_back(e.job.id);
  });
  for (std::uint32_t i = 0; i < 5; ++i) {
    REQUIRE(q->submit(job{i}));
    REQUIRE(q->wait_until_idle(120s));  // one at a time: a deterministic order
  }
  CHECK(q->dead_letters().size() == 2);
  std::lock_guard lock(m);
  CHECK(spilled == std::vector<std::uint32_t>{0, 1, 2});
  CHECK(q->metrics().dead_lettered == 5);
}

// ---------------------------------------------------------------------------------
// executor mode
// ---------------------------------------------------------------------------------

TEST_CASE("handlers run on a user-supplied asio executor within the worker cap",
          "[work_queue][executor]") {
  boost::asio::thread_pool pool(4);
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
  std::atomic<int> off_pool{0};
  std::atomic<int> ran{0};
  // 300 jobs into 64 places behind a lane of slow handlers: on a loaded machine the
  // default block_timeout (1 s) can run out (seen with six tests at once on 2 cores).
  auto q = make_queue(
      {.capacity = 64, .workers = 1, .block_timeout = 1h, .executor = pool.get_executor()},
      [&](job&) {
        if (!pool.get_executor().running_in_this_thread()) off_pool.fetch_add(1);
        const int now = running.fetch_add(1) + 1;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        for (int i = 0; i < 200; ++i) std::this_thread::yield();
        running.fetch_sub(1);
        ran.fetch_add(1);
      });
  for (std::uint32_t i = 0; i < 300; ++i) REQUIRE(q->submit(job{i}));
  REQUIRE(q->wait_until_idle(120s));
  CHECK(ran.load() == 300);
  CHECK(off_pool.load() == 0);
  CHECK(peak.load() == 1);  // one lane: one handler at a time
  q->set_workers(3);
  for (std::uint32_t i = 0; i < 300; ++i) REQUIRE(q->submit(job{i}));
  REQUIRE(q->wait_until_idle(120s));
  CHECK(ran.load() == 600);
  CHECK(peak.load() <= 3);
  CHECK(off_pool.load() == 0);
  CHECK(q->stop(0s).empty());
  pool.join();
}

TEST_CASE("executor lanes pick up delayed retries when the clock reaches them",
          "[work_queue][executor]") {
  boost::asio::thread_pool pool(2);
  manual_clock clock;
  tally t(1);
  work_queue<job, manual_clock, constant_backoff> q(
      {.workers = 2, .executor = pool.get_executor()},
      [&](job& j) -> job_result {
        if (t.attempts[j.id].fetch_add(1) == 0) return job_result::failure("later");
        return job_result::success();
      },
      clock, constant_backoff{1min});
  REQUIRE(q.submit(job{0}));
  REQUIRE(eventually([&] { return q.metrics().waiting_retry == 1; }));
  CHECK_FALSE(q.wait_until_idle(0s));
  clock.advance(1min);
  REQUIRE(q.wait_until_idle(120s));
  CHECK(t.attempts[0].load() == 2);
  CHECK(q.stop(0s).empty());
  pool.join();
}

// ---------------------------------------------------------------------------------
// metrics
// ---------------------------------------------------------------------------------

TEST_CASE("metrics report latency percentiles from the queue clock",
          "[work_queue][metrics]") {
  manual_clock clock;
  // One worker, and each job moves the shared clock by its own duration: the measured
  // processing times are exactly 1..100 ms.
  auto q = make_queue(
      {.capacity = 128, .workers = 0, .scale_from_zero = true},
      [clock](job& j) mutable { clock.advance(std::chrono::milliseconds{j.id}); }, clock);
  for (std::uint32_t ms = 1; ms <= 100; ++ms) REQUIRE(q->submit(job{ms}));
  q->set_workers(1);
  REQUIRE(q->wait_until_idle(120s));
  const auto m = q->metrics();
  CHECK(m.processed == 100);
  CHECK(m.latency_p50 >= 50ms);
  CHECK(m.latency_p50 <= 50ms * 1.125);
  CHECK(m.latency_p90 >= 90ms);
  CHECK(m.latency_p90 <= 90ms * 1.125);
  CHECK(m.latency_p99 >= 99ms);
  CHECK(m.latency_p99 <= 100ms);  // capped at the maximum seen
  CHECK(m.latency_max == 100ms);
  REQUIRE(m.per_worker.size() == 1);
  CHECK(m.per_worker[0].processed == 100);
  // 100 jobs over the 5.05 s of clock time they took.
  CHECK(m.per_worker[0].jobs_per_second == Approx(100.0 / 5.05).epsilon(0.001));
}

TEST_CASE("metrics report depth backlog per worker and the oldest queued age",
          "[work_queue][metrics]") {
  manual_clock clock;
  std::atomic<bool> release{false};
  auto q = make_queue(
      {.capacity = 16, .workers = 0, .scale_from_zero = true},
      [&](job& j) {
        if (j.id == 0) {
          while (!release.load()) std::this_thread::yield();
        }
      },
      clock);
  clock.advance(1h);
  CHECK(q->metrics().oldest_age == 0ns);
  REQUIRE(q->submit(job{1}));
  clock.advance(5s);
  REQUIRE(q->submit(job{2}));
  clock.advance(2s);
  auto m = q->metrics();
  CHECK(m.depth == 2);
  CHECK(m.workers == 0);
  CHECK(m.oldest_age == 7s);
  CHECK(m.backlog_per_worker == 2.0);  // no workers: the whole backlog

  q->set_workers(1);
  REQUIRE(q->wait_until_idle(120s));
  CHECK(q->metrics().oldest_age == 0ns);

  // A busy worker: the job it took tells the age of the ones behind it.
  REQUIRE(q->submit(job{0}));
  REQUIRE(eventually([&] { return q->metrics().in_flight == 1; }));
  clock.advance(1s);
  for (std::uint32_t i = 3; i < 7; ++i) REQUIRE(q->submit(job{i}));
  clock.advance(3s);
  m = q->metrics();
  CHECK(m.depth == 4);
  CHECK(m.in_flight == 1);
  CHECK(m.oldest_age >= 3s);
  CHECK(m.oldest_age <= 4s);
  CHECK(m.backlog_per_worker == 4.0);  // 4 queued / 1 worker
  release.store(true);
  REQUIRE(q->wait_until_idle(120s));
}

TEST_CASE("metrics print with fmt", "[work_queue][metrics]") {
  auto q = make_queue({.workers = 2}, [](job&) {});
  REQUIRE(q->submit(job{1}));
  REQUIRE(q->wait_until_idle(120s));
  const std::string text = fmt::format("{}", q->metrics());
  CHECK(text.find("work_queue_metrics{depth=0, capacity=1024") == 0);
  CHECK(text.find("succeeded=1") != std::string::npos);
  CHECK(text.find("per_worker=[worker{index=0") != std::string::npos);
  CHECK(fmt::format("{}", outgrow::to_string(submit_status::timed_out)) == "timed_out");
}

// ---------------------------------------------------------------------------------
// huge durations saturate instead of overflowing
// ---------------------------------------------------------------------------------

TEST_CASE("a retry backoff of nanoseconds max waits instead of running at once",
          "[work_queue][overflow]") {
  manual_clock clock;
  std::atomic<int> attempts{0};
  work_queue<job, manual_clock, constant_backoff> q(
      {.workers = 1, .max_attempts = 2},
      [&](job&) -> job_result {
        attempts.fetch_add(1);
        return job_result::failure("always");
      },
      clock, constant_backoff{std::chrono::nanoseconds::max()});
  REQUIRE(q.submit(job{0}));
  REQUIRE(eventually([&] { return q.metrics().waiting_retry == 1; }));
  clock.advance(24h * 365 * 100);  // a century: still not due
  CHECK_FALSE(q.wait_until_idle(20ms));
  CHECK(attempts.load() == 1);
  CHECK(q.metrics().waiting_retry == 1);
  CHECK(q.metrics().dead_lettered == 0);
  CHECK(q.dead_letters().size() == 0);
  const auto back = q.stop(std::chrono::steady_clock::now());
  REQUIRE(back.size() == 1);
  CHECK(back[0].attempts == 1);
}

TEST_CASE("an exponential backoff capped at nanoseconds max waits too",
          "[work_queue][overflow]") {
  manual_clock clock;
  std::atomic<int> attempts{0};
  work_queue<job, manual_clock, outgrow::exponential_backoff> q(
      {.workers = 1, .max_attempts = 3},
      [&](job&) -> job_result {
        attempts.fetch_add(1);
        return job_result::failure("always");
      },
      clock,
      outgrow::exponential_backoff{std::chrono::nanoseconds::max(),
                                   std::chrono::nanoseconds::max()});
  REQUIRE(q.submit(job{0}));
  REQUIRE(eventually([&] { return q.metrics().waiting_retry == 1; }));
  clock.advance(1h);
  CHECK_FALSE(q.wait_until_idle(20ms));
  CHECK(attempts.load() == 1);
  CHECK(q.metrics().dead_lettered == 0);
  // At the far end of time every retry is due: the job runs out its attempts.
  clock.advance(std::chrono::hours::max());
  REQUIRE(q.wait_until_idle(120s));
  CHECK(attempts.load() == 3);
  CHECK(q.metrics().dead_lettered == 1);
}

TEST_CASE("huge block_timeout grace and wait durations do not overflow",
          "[work_queue][overflow]") {
  auto q = make_queue(
      {.capacity = 2, .workers = 1, .block_timeout = std::chrono::hours{24}}, [](job&) {});
  REQUIRE(q->submit(job{1}));
  CHECK(q->wait_until_idle(std::chrono::nanoseconds::max()));
  CHECK(q->wait_until_idle(std::chrono::hours::max()));
  CHECK(q->stop(std::chrono::hours::max()).empty());

  outgrow::bounded_queue<int> b({.capacity = 2});
  REQUIRE(b.push(1, std::chrono::hours::max()));
  REQUIRE(b.push(2, std::chrono::nanoseconds::max()));
  CHECK(b.pop(std::chrono::hours::max()) == 1);
  CHECK(b.pop(std::chrono::nanoseconds::max()) == 2);
  b.close();
  CHECK_FALSE(b.pop(std::chrono::hours::max()).has_value());  // closed: returns at once
}
