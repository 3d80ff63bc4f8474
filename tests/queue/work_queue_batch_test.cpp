// work_queue's batched hand-off (issue 20): with short handlers a worker takes up to 16
// jobs from the queue at once and holds them until it runs them. These tests pin what
// batches must not change — a held job counts as queued (depth), is handed back by
// stop() (also from a worker stuck in a handler: in FIFO order, never run), is given
// back to the other workers when its worker retires, and every accepted job ends once
// — and stress the hand-off (many submitters, pool threads or executor lanes, resizing,
// stop() under load) for TSan.
#include <outgrow/queue/work_queue.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include <boost/asio/thread_pool.hpp>

#include "catch.hpp"
#include "eventually.hpp"
#include "gate.hpp"
#include "work_queue_fixture.hpp"

using namespace std::chrono_literals;
using outgrow::overflow_policy;
using outgrow_test::eventually;
using outgrow_test::gate;

namespace {

using job = outgrow_test::id_job;
using queue_type = outgrow_test::id_job_queue;
constexpr auto make = outgrow_test::make_id_job_queue;

/// Ids in the order handlers ran them (any thread).
struct run_log {
  std::mutex m;
  std::vector<std::uint32_t> ids;
  void add(std::uint32_t id) {
    std::lock_guard lock(m);
    ids.push_back(id);
  }
  std::vector<std::uint32_t> get() {
    std::lock_guard lock(m);
    return ids;
  }
};

/// One worker whose handler is short (so the queue batches) except for job 0, which
/// waits at the gate. Warmed up with short jobs, then scaled to zero so that the test
/// queues `n` jobs (0 first) before the worker takes them: it takes job 0 and a batch
/// behind it, and sticks on job 0.
struct stuck_batch {
  gate g;
  run_log log;
  std::unique_ptr<queue_type> q;

  explicit stuck_batch(std::uint32_t n) {
    q = make({.capacity = 64,
              .workers = 1,
              .max_workers = 2,
              .scale_from_zero = true,
              .block_timeout = 1h},
             [this](job& j) {
               if (j.id == 0) g.wait();
               log.add(j.id);
             });
    // Warm-up: enough short jobs for the worker's sampled handler time to count as
    // short (one sample every 16 jobs).
    for (std::uint32_t i = 0; i < 200; ++i) REQUIRE(q->submit(job{1000 + i}));
    REQUIRE(q->wait_until_idle(120s));
    q->set_workers(0);
    for (std::uint32_t i = 0; i < n; ++i) REQUIRE(q->submit(job{i}));
    CHECK(q->depth() == n);
    q->set_workers(1);
    REQUIRE(eventually([&] { return g.waiting.load() == 1; }));
  }
  std::vector<std::uint32_t> ran_after_warmup() {
    std::vector<std::uint32_t> out;
    for (const std::uint32_t id : log.get()) {
      if (id < 1000) out.push_back(id);
    }
    return out;
  }
};

}  // namespace

TEST_CASE("jobs held in a batch count in depth and are handed back by stop in order",
          "[work_queue][batch]") {
  constexpr std::uint32_t n = 40;
  stuck_batch b(n);
  // Job 0 runs; the other 39 are queued, in the worker's batch or in the queue.
  const auto m = b.q->metrics();
  CHECK(m.depth == n - 1);
  CHECK(m.in_flight == 1);
  const auto back = b.q->stop(std::chrono::steady_clock::now() + 50ms);
  CHECK(back.still_running == 1);
  REQUIRE(back.size() == n - 1);
  for (std::size_t i = 0; i < back.size(); ++i) {
    CHECK(back[i].job.id == i + 1);  // FIFO: the batch first, then the queue
    CHECK(back[i].attempts == 0);
  }
  b.g.release();
  REQUIRE(eventually([&] { return b.q->metrics().in_flight == 0; }));
  CHECK(b.ran_after_warmup() == std::vector<std::uint32_t>{0});  // none ran twice
  const auto after = b.q->metrics();
  CHECK(after.accepted == after.succeeded + after.handed_back);
  CHECK(after.depth == 0);
}

TEST_CASE("a retiring worker gives its batch back and the jobs run once in order",
          "[work_queue][batch]") {
  constexpr std::uint32_t n = 40;
  stuck_batch b(n);
  b.q->set_workers(0);  // returns at once: the worker is in its (last) job
  b.g.release();
  // It leaves after job 0; what it held stays queued, with no worker.
  REQUIRE(eventually([&] { return b.q->metrics().in_flight == 0; }));
  REQUIRE(eventually([&] { return b.q->metrics().per_worker.empty(); }));
  CHECK(b.q->depth() == n - 1);
  CHECK(b.ran_after_warmup() == std::vector<std::uint32_t>{0});
  b.q->set_workers(2);
  REQUIRE(b.q->wait_until_idle(120s));
  auto ran = b.ran_after_warmup();
  REQUIRE(ran.size() == n);
  std::sort(ran.begin(), ran.end());
  for (std::uint32_t i = 0; i < n; ++i) CHECK(ran[i] == i);
  CHECK(b.q->stop(0s).empty());
}

TEST_CASE("one worker runs a batched queue in FIFO order", "[work_queue][batch]") {
  run_log log;
  auto q = make({.capacity = 1024, .workers = 1}, [&](job& j) { log.add(j.id); });
  constexpr std::uint32_t n = 5000;
  for (std::uint32_t i = 0; i < n; ++i) REQUIRE(q->submit(job{i}));
  REQUIRE(q->wait_until_idle(120s));
  const auto ids = log.get();
  REQUIRE(ids.size() == n);
  std::size_t out_of_order = 0;
  for (std::uint32_t i = 0; i < n; ++i) out_of_order += ids[i] != i ? 1U : 0U;
  CHECK(out_of_order == 0);
}

namespace {

/// Submitters race set_workers() and then stop() with a short deadline while still
/// submitting: every accepted job ran exactly once or was handed back exactly once;
/// no refused job ran.
void batch_stress(bool on_executor, std::uint64_t seed) {
  constexpr std::uint32_t producers = 4;
  constexpr std::uint32_t per_producer = 20'000;
  constexpr std::uint32_t jobs = producers * per_producer;
  auto runs = std::make_unique<std::atomic<std::uint32_t>[]>(jobs);
  std::vector<std::uint8_t> accepted(jobs, 0);  // written by each id's producer only
  std::optional<boost::asio::thread_pool> pool;
  outgrow::work_queue_config config{.capacity = 256,
                                    .workers = 4,
                                    .max_workers = 8,
                                    .scale_from_zero = true,
                                    .overflow = overflow_policy::block,
                                    .block_timeout = 5ms};
  if (on_executor) {
    pool.emplace(4);
    config.executor = pool->get_executor();
  }
  auto q =
      make(config, [&](job& j) { runs[j.id].fetch_add(1, std::memory_order_relaxed); });

  std::atomic<bool> resizing{true};
  std::thread resizer([&] {
    std::mt19937_64 rng(seed);
    for (int i = 0; resizing.load(); ++i) {
      q->set_workers(i % 9 == 8 ? 0 : 1 + rng() % 8);
      for (int k = 0; k < 20; ++k) std::this_thread::yield();
    }
  });
  std::atomic<std::uint32_t> submitted{0};
  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (std::uint32_t id = p; id < jobs; id += producers) {
        if (q->submit(job{id})) accepted[id] = 1;
        submitted.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  // Stop under load: about half the jobs submitted, producers still going.
  REQUIRE(eventually([&] { return submitted.load() >= jobs / 2; }));
  resizing.store(false);
  resizer.join();
  q->set_workers(4);
  auto back = q->stop(std::chrono::steady_clock::now() + 20ms);
  for (auto& t : threads) t.join();
  REQUIRE(eventually([&] { return q->metrics().in_flight == 0; }));

  std::vector<std::uint8_t> handed(jobs, 0);
  std::size_t handed_twice = 0;
  for (const auto& u : back) {
    if (handed[u.job.id]++ != 0) ++handed_twice;
  }
  std::size_t lost = 0;
  std::size_t ran_twice = 0;
  std::size_t ran_and_handed = 0;
  std::size_t refused_but_ran = 0;
  std::uint64_t accepted_count = 0;
  for (std::uint32_t id = 0; id < jobs; ++id) {
    const std::uint32_t r = runs[id].load();
    accepted_count += accepted[id];
    if (r > 1) ++ran_twice;
    if (r == 1 && handed[id] != 0) ++ran_and_handed;
    if (accepted[id] != 0 && r == 0 && handed[id] == 0) ++lost;
    if (accepted[id] == 0 && (r != 0 || handed[id] != 0)) ++refused_but_ran;
  }
  CHECK(handed_twice == 0);
  CHECK(lost == 0);
  CHECK(ran_twice == 0);
  CHECK(ran_and_handed == 0);
  CHECK(refused_but_ran == 0);
  const auto m = q->metrics();
  CHECK(m.accepted == accepted_count);
  CHECK(m.accepted == m.succeeded + m.handed_back);
  CHECK(m.handed_back == back.size());
  CHECK(m.depth == 0);
  q.reset();
  if (pool) pool->join();
}

}  // namespace

TEST_CASE("batched hand-off stress with pool threads: none lost or run twice",
          "[work_queue][batch][stress]") {
  for (std::uint64_t seed = 1; seed <= 3; ++seed) batch_stress(false, seed);
}

TEST_CASE("batched hand-off stress with executor lanes: none lost or run twice",
          "[work_queue][batch][stress]") {
  for (std::uint64_t seed = 1; seed <= 3; ++seed) batch_stress(true, seed);
}
