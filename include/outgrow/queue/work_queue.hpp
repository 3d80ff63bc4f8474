// outgrow/queue/work_queue.hpp — a bounded job queue with a resizable worker pool,
// per-job retries with backoff, a dead-letter queue, and graceful shutdown.
//
// The textbook's message-queue pattern in-process: producers submit jobs, workers run a
// handler on them asynchronously, a full queue pushes back on producers, a job that
// fails is retried with backoff and, after `max_attempts` attempts (3, the textbook's),
// lands in a dead_letter_queue (queue/dead_letter_queue.hpp) from which it can be
// inspected and replayed. Nothing accepted is lost: every accepted job ends succeeded,
// dead-lettered, shed (queue-delay shedding, into the same DLQ), or handed back by
// stop(). set_workers(n) is the actuator an autoscaler drives; metrics() has what it
// scales on (backlog per worker, oldest age, latency).
//
//   // The handler: a throw (or returning false) is a failed attempt.
//   outgrow::work_queue<order> q({.capacity = 10'000, .workers = 4},
//                                [&](order& o) { payments.charge(o); });
//   if (auto r = q.submit(std::move(o)); !r)           // full: blocks ≤ block_timeout,
//     shed(std::move(*r.rejected));                   // then timed_out: o comes back
//   q.submit(std::move(o2), "order-42");              // idempotency key: runs at most once
//   q.set_workers(8);                                 // grow or shrink, live
//   fmt::print("{}\n", q.metrics());                  // depth, latency p99, per worker...
//   q.dead_letters().replay_all(q);                   // after fixing the cause
//   auto left = q.stop(2s);                           // drain ≤ 2 s, get the rest back;
//                                                     // left.still_running: stuck handlers
//
// Handler: any callable taking `Job&` and returning void (success unless it throws),
// bool (false = failure) or job_result (success / failure(message, type) /
// permanent_failure(message, type), the last going to the DLQ without further retries).
// A thrown exception is a failure; its what() and demangled type name are kept. The
// handler is stored type-erased (std::function) rather than as a template parameter: a
// `work_queue<order>` can then be named as a member, passed to an autoscaler or replayed
// into without spelling a lambda type, and the cost — one indirect call per attempt — is
// small beside the cross-thread hand-off and the job itself (BM_work_queue_noop_jobs in
// benchmarks/queue_bench.cpp measures the whole path with a no-op handler). The
// handler is called concurrently from several workers: it must be thread-safe.
//
// Workers: by default `workers` threads owned by the queue (started by the constructor
// because the config asks for them). With `.executor = pool.get_executor()` (any Boost.
// Asio executor, e.g. a boost::asio::thread_pool's) the queue starts no thread: a
// "worker" is then a lane — a chain of handlers posted to the executor, each running up
// to 64 jobs before re-posting itself — and `workers` caps how many lanes (so how many
// handlers) run at once. The executor must keep running until stop() returns.
// set_workers(n) takes effect at once for growth; a shrinking worker finishes the job it
// is running, then leaves — no job is lost or run twice. Pool threads: set_workers
// returns once each retiring thread has left or is running its last job (an idle one
// is woken at once), so no job submitted afterwards runs on it. Lanes above the target
// leave before their next job (one already between that check and taking a job still
// runs it; set_workers does not wait for lanes, as it may itself run on the executor).
// Hand-off: a worker takes its share of the queue at a time — queued / awake workers
// (lanes: / workers), at most 16 jobs, in one claim on the ring — when handlers are short (a sampled real handler
// time under 4 us; otherwise one job at a time, as a batch would only make jobs wait
// behind a long one), and one at a time while retries wait. A job held in a batch
// counts as queued (depth), is handed back by stop() (in FIFO order, also from a worker
// stuck in a handler) and, when its worker retires, goes back to the others ahead of
// the queue.
// An idle worker spins briefly (one at a time) then parks. With short handlers, a
// worker stays awake only while there is work for it: submit() wakes a parked one only
// when none is spinning (or woken and not yet back at the queue) and the awake workers
// do not keep up — none awake, long handlers, or more than 32 jobs (two batches)
// queued — and a worker that finds no more than that queued while another worker is
// awake leaves it to that one and parks, instead of taking jobs (and the producers'
// core) a few at a time. So adding workers costs nothing while one keeps up, and they
// join in as soon as the backlog grows. The price: with short handlers, up to 32 jobs
// queued while every awake worker is busy wait for one of them — or, if that handler
// is a rare long one, up to 5 ms for a parked worker's next look (which then takes a
// batch). Counters are per worker (one writer each), summed by metrics(): no write to a
// shared cache line per job; intake is two atomic adds on the producer's stripe (a
// third when a job is refused).
// Workers 0: a config_error,
// unless `scale_from_zero` is set; then 0 means "accept and queue (up to capacity), run
// nothing" until set_workers(n > 0) — the queue-backlog autoscaler's scale-from-zero
// (KEDA's minReplicaCount 0).
//
// Overflow (queue full) — submit(): `block` (default) waits up to block_timeout (1 s)
// for room (asleep, woken once half the capacity is free — bounded_queue — or
// at its next look within 1 ms), then returns timed_out; `reject` returns rejected_full at once; `caller_runs`
// runs the job's first attempt on the calling thread (ran_in_caller), which slows the
// producer to the workers' pace (java.util.concurrent's CallerRunsPolicy). try_submit()
// never blocks nor runs the job. submit() takes the job either way (pass it with
// std::move); a job not accepted comes back in the result (job_submit_result: the
// status, and `rejected`, the job). Results are values, not exceptions.
//
// Retries: a failed attempt n < max_attempts is retried after backoff.delay(n) (any
// core/backoff.hpp policy; full jitter 100 ms..10 s by default) measured on the queue's
// Clock; the due time saturates at the Clock's maximum (core/deadline.hpp), so a huge
// backoff (nanoseconds::max()) means the retry waits, never that it is due at once.
// Waiting jobs sit in a due-time heap that workers check before the queue, so a
// delay never blocks a worker thread; when `retry_capacity` jobs are waiting, workers
// stop taking new jobs (backpressure reaches producers through the full queue) — memory
// stays bounded. An idle worker looks at the heap at least every 5 ms, so with
// manual_clock a test advances time and the due retries run within 5 ms of real time.
//
// Queue-delay shedding (off by default): with `.queue_delay_shedding =
// outgrow::queue_delay_shedding_config{.target = 10ms, .interval = 100ms}` (the
// defaults), workers apply CoDel (Nichols & Jacobson, RFC 8289) to each job they take
// from the queue, when they start it (a job's wait in a batch is part of its sojourn,
// and the jobs behind it include the rest of the batch): a job that waited at least
// `target`, taken when the queue's delay
// has stayed above target for at least `interval`, is shed — not run late. It goes to
// the dead-letter queue (attempts 0, error_type queue_delay_shed_error_type, a message
// with its wait; its idempotency key freed) where it can be inspected or replayed, and
// is counted in metrics().shed (size the DLQ for it: its overflow goes to its hook,
// counted). The next sheds follow CoDel's control law, one every interval/sqrt(count)
// (sooner the longer the delay stays high), until a job's wait is below target again
// (metrics().shedding: in that state now); a cycle starting within 16 intervals of the
// last resumes its drop rate. As CoDel never drops its last packet, a job with at most
// one job queued behind it is never shed. Only jobs taken from the queue are judged
// (replays included): not retries (their wait is a backoff), not caller-runs attempts,
// not what stop() hands back. The defaults are CoDel's interval and the top of its
// target range (work_queue_types.hpp says why); set target above a job's normal wait.
// CoDel ramps up gently (it was built for senders that slow down on a drop): against
// producers that keep submitting regardless, a backlog still builds before the shed
// rate catches up (examples/queue_shedding.cpp shows a 2x spike). Time is the queue's
// Clock. Cost when on: one mutex (shared by the workers) and one clock read per job
// taken; off, one branch.
//
// Idempotency keys: submit(job, key) refuses (duplicate) a job whose key is pending —
// queued, running or waiting for a retry — or has succeeded, so a job that succeeded is
// never run again. Succeeded keys are remembered in a bounded set: the last
// `remembered_keys` (100,000) successes, oldest forgotten first; size it to cover your
// redelivery window (as SQS FIFO's 5-minute deduplication window). A dead-lettered or
// handed-back job frees its key (the work was not done).
//
// Shutdown: stop(deadline) refuses new jobs, lets the workers drain the queue and the due
// retries until the deadline (steady_clock: it is a real wait of the calling thread),
// then returns — at the deadline (plus at most 100 ms for handlers finishing just then),
// even if a handler is stuck — every job that did not
// complete (queued ones and those waiting for a retry) with their attempts and keys, so
// the caller can persist them, and `still_running`: handlers still running then. A
// running handler cannot be interrupted or killed, so its job cannot be handed back:
// its worker thread (or executor lane) is left to finish it, after which the job ends
// succeeded or dead-lettered (a failure after stop() goes to the dead-letter queue with
// its error: no retry can run any more) and the worker leaves. So, exactly:
// accepted = succeeded + dead_lettered + shed + handed back once the still-running
// handlers have returned (metrics().in_flight == 0). The queue must outlive them: the
// destructor calls stop(now), discarding what it hands back (call stop() yourself to
// keep it), and then WAITS, without a deadline, for every handler still running — a
// stuck handler blocks the destructor (it would otherwise return into freed memory).
// Do not call stop() or the destructor from a handler.
//
// Types: job_result, work_queue_config, job_submit_result, stop_result and
// work_queue_metrics are in queue/work_queue_types.hpp (included); the engine — worker
// loop, lanes, retry heap, shutdown — is detail::work_queue_engine
// (queue/detail/work_queue_engine.hpp); CoDel's state machine is
// detail::queue_delay_shedder (queue/detail/queue_delay_shedder.hpp); the per-worker
// latency histogram is core/log_histogram.hpp.
//
// Metrics (metrics(), fmt-printable): depth, waiting_retry, in_flight, counts (accepted,
// processed = attempts, succeeded, failed = failed attempts, retried, dead_lettered,
// shed, rejected, duplicates, ran_in_caller, handed_back), shedding (in CoDel's
// dropping state), the oldest queued job's age (approximate, like SQS's
// ApproximateAgeOfOldestMessage: from the last job a worker started and the first job
// submitted after a worker going idle saw the queue empty; retry-waiting jobs not
// included),
// processing latency p50/p90/p99/max (log-bucketed histograms, one per worker: at most
// 12.5 % above the true value; recording never allocates), backlog per worker and per-
// worker processed count and jobs/s. Counters are relaxed atomics, one set per worker
// (a plain store by its one writer; the caller-runs set is shared): each exact, not one
// atomic cut while jobs are moving.
//
// Thread-safety: every member function from any thread, except that stop() and the
// destructor must not run on a worker (inside a handler).
// Complexity: submit/worker hand-off O(1) lock-free on the bounded_queue (a Vyukov
// ring; a batch is one CAS); a wake-up (mutex + condition variable) only when a parked
// worker is needed; no allocation per job in steady state except for idempotency keys
// (a set node) and failures and sheds (error strings, a DLQ node); a retiring worker's
// batch goes to a deque. Retries O(log r) under a mutex; a shedding decision O(1) under
// one. depth() O(workers); metrics() O(max_workers × 344 buckets).
// Measured cost (benchmarks/queue_bench.cpp: one producer submitting continuously,
// throttled by the block policy, capacity 1024; Release, 2 cores, machine idle before
// and after the run but shared — noisy, means of 3 repetitions of 0.5 s, one run of one
// binary, 2026-12-03 08:22 UTC; to be re-measured by the lead): no-op handler
// (BM_work_queue_noop_jobs) 6.05M / 5.74M / 6.11M jobs/s with 1 / 2 / 4 workers (2/1 =
// 0.95; the one producer is the bottleneck, so extra workers stay parked), against
// 13.3M / 3.84M / 2.59M for the bare hand-off (BM_work_queue_baseline: bounded_queue +
// std::threads, same harness): about 165 ns per job end to end against 75 ns — two
// clock reads per attempt for the latency histogram, one per submit, the intake gate
// and the per-worker counters. 1 us handler (BM_work_queue_1us_jobs) 772k / 1.28M /
// 1.21M jobs/s (2/1 = 1.66) against 633k / 1.27M / 765k bare. Shedding: not yet
// measured.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/log_histogram.hpp>
#include <outgrow/queue/bounded_queue.hpp>
#include <outgrow/queue/dead_letter_queue.hpp>
#include <outgrow/queue/detail/work_queue_engine.hpp>
#include <outgrow/queue/work_queue_types.hpp>

namespace outgrow {

template <class Job, clock_source Clock = steady_clock_source,
          backoff_policy Backoff = full_jitter_backoff>
requires std::is_nothrow_move_constructible_v<Job> && std::is_move_assignable_v<Job>
class work_queue {
  using engine_type = detail::work_queue_engine<Job, Clock, Backoff>;

 public:
  using job_type = Job;
  using clock_type = Clock;
  using time_point = typename Clock::time_point;
  using dead_letter_queue_type = dead_letter_queue<Job, Clock>;
  using submit_result_type = job_submit_result<Job>;

  /// Validates `config` and starts config.workers workers (threads, or lanes on
  /// config.executor).
  /// Throws: config_error if a config field is out of range (the message names the
  /// field, "dead_letter.<field>" / "queue_delay_shedding.<field>" for the nested
  /// ones, its value and the range);
  /// std::system_error if a worker thread cannot be started.
  template <job_handler<Job> Handler>
  work_queue(work_queue_config config, Handler handler, Clock clock = {},
             Backoff backoff = {})
      : engine_(std::move(config), engine_type::wrap(std::move(handler)), std::move(clock),
                std::move(backoff)) {}

  work_queue(const work_queue&) = delete;
  work_queue& operator=(const work_queue&) = delete;

  /// stop(now), then waits without a deadline for handlers still running (also those a
  /// stop() left running): a stuck handler blocks the destructor. Jobs not run are
  /// discarded (call stop() first to keep them).
  ~work_queue() = default;

  // ---- intake -------------------------------------------------------------------
  /// Submits `job` under the overflow policy. The job is moved from either way; when
  /// the queue does not take it, it comes back in the result's `rejected`.
  [[nodiscard]] job_submit_result<Job> submit(Job&& job) {
    return engine_.submit(job, std::nullopt, true);
  }
  /// As submit(job), refusing (duplicate) a job whose key is pending or succeeded.
  [[nodiscard]] job_submit_result<Job> submit(Job&& job, std::string idempotency_key) {
    return engine_.submit(job, std::move(idempotency_key), true);
  }
  /// Never blocks and never runs the job: rejected_full when the queue is full.
  [[nodiscard]] job_submit_result<Job> try_submit(Job&& job) {
    return engine_.submit(job, std::nullopt, false);
  }
  [[nodiscard]] job_submit_result<Job> try_submit(Job&& job, std::string idempotency_key) {
    return engine_.submit(job, std::move(idempotency_key), false);
  }

  /// replay_target for dead_letter_queue::replay*: submits with attempts reset, under
  /// the overflow policy; `job` is left untouched unless accepted. duplicate = a job
  /// with the same key is pending or succeeded.
  [[nodiscard]] replay_outcome accept_replay(Job& job,
                                             const std::optional<std::string>& key) {
    return engine_.accept_replay(job, key);
  }

  // ---- workers ------------------------------------------------------------------
  /// Grows or shrinks the pool to `n` workers, live (see the header comment). No
  /// effect after stop().
  /// Throws: config_error if n is not in [1, max_workers] ([0, max_workers] with
  /// scale_from_zero); std::system_error if a worker thread cannot be started.
  void set_workers(std::size_t n) { engine_.set_workers(n); }

  /// The current target (what set_workers / config asked for).
  [[nodiscard]] std::size_t workers() const noexcept { return engine_.workers(); }

  // ---- shutdown -----------------------------------------------------------------
  /// Stops intake, drains until `deadline`, and returns every job that did not complete
  /// (queued first, then retry-waiting by due time) with the number of handlers still
  /// running (see the header: it returns at the deadline even if a handler is stuck —
  /// at most 100 ms later). A second call returns nothing.
  stop_result<Job> stop(std::chrono::steady_clock::time_point deadline) {
    return engine_.stop(deadline);
  }
  /// stop(now + grace) (saturating: a huge grace waits "forever").
  /// (Any duration type, so hours::max() is not converted to nanoseconds first.)
  template <class Rep, class Period>
  stop_result<Job> stop(std::chrono::duration<Rep, Period> grace) {
    return engine_.stop(grace);
  }

  /// True once stop() has begun (intake closed).
  [[nodiscard]] bool stopping() const noexcept { return engine_.stopping(); }
  /// True once stop() has returned.
  [[nodiscard]] bool stopped() const noexcept { return engine_.stopped(); }

  /// Waits (real time) until no job is queued, running or waiting for a retry; false on
  /// timeout. With retries waiting on a manual_clock, advance the clock first.
  template <class Rep, class Period>
  bool wait_until_idle(std::chrono::duration<Rep, Period> timeout) {
    return engine_.wait_until_idle(timeout);
  }

  // ---- observe ------------------------------------------------------------------
  [[nodiscard]] dead_letter_queue_type& dead_letters() noexcept {
    return engine_.dead_letters();
  }
  [[nodiscard]] const dead_letter_queue_type& dead_letters() const noexcept {
    return engine_.dead_letters();
  }
  [[nodiscard]] const work_queue_config& config() const noexcept {
    return engine_.config();
  }
  [[nodiscard]] std::size_t depth() const noexcept { return engine_.depth(); }
  /// A snapshot (see the header comment: each counter exact, not one atomic cut).
  [[nodiscard]] work_queue_metrics metrics() const { return engine_.metrics(); }

 private:
  engine_type engine_;
};

}  // namespace outgrow
