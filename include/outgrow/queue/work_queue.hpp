// outgrow/queue/work_queue.hpp — a bounded job queue with a resizable worker pool,
// per-job retries with backoff, a dead-letter queue, and graceful shutdown.
//
// The textbook's message-queue pattern in-process: producers submit jobs, workers run a
// handler on them asynchronously, a full queue pushes back on producers, a job that
// fails is retried with backoff and, after `max_attempts` attempts (3, the textbook's),
// lands in a dead_letter_queue (queue/dead_letter_queue.hpp) from which it can be
// inspected and replayed. Nothing accepted is lost: every accepted job ends succeeded,
// dead-lettered, or handed back by stop(). set_workers(n) is the actuator an autoscaler
// drives; metrics() has what it scales on (backlog per worker, oldest age, latency).
//
//   // The handler: a throw (or returning false) is a failed attempt.
//   outgrow::work_queue<order> q({.capacity = 10'000, .workers = 4},
//                                [&](order& o) { payments.charge(o); });
//   if (!q.submit(std::move(o))) shed(o);             // full: blocks ≤ block_timeout, then
//                                                     // timed_out (o is left untouched)
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
// Workers 0: a config_error,
// unless `scale_from_zero` is set; then 0 means "accept and queue (up to capacity), run
// nothing" until set_workers(n > 0) — the queue-backlog autoscaler's scale-from-zero
// (KEDA's minReplicaCount 0).
//
// Overflow (queue full) — submit(): `block` (default) waits up to block_timeout (1 s)
// for room, then returns timed_out; `reject` returns rejected_full at once; `caller_runs`
// runs the job's first attempt on the calling thread (ran_in_caller), which slows the
// producer to the workers' pace (java.util.concurrent's CallerRunsPolicy). try_submit()
// never blocks nor runs the job. A job not accepted is left in the caller's variable.
// Results are values, not exceptions.
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
// accepted = succeeded + dead_lettered + handed back once the still-running handlers
// have returned (metrics().in_flight == 0). The queue must outlive them: the destructor
// calls stop(now), discarding what it hands back (call stop() yourself to keep it), and
// then WAITS, without a deadline, for every handler still running — a stuck handler
// blocks the destructor (it would otherwise return into freed memory). Do not call
// stop() or the destructor from a handler.
//
// Metrics (metrics(), fmt-printable): depth, waiting_retry, in_flight, counts (accepted,
// processed = attempts, succeeded, failed = failed attempts, retried, dead_lettered,
// rejected, duplicates, ran_in_caller, handed_back), the oldest queued job's age
// (approximate, like SQS's ApproximateAgeOfOldestMessage: from the last job a worker took
// and the time the queue was last seen empty; retry-waiting jobs not included),
// processing latency p50/p90/p99/max (log-bucketed histograms, one per worker: at most
// 12.5 % above the true value; recording never allocates), backlog per worker and per-
// worker processed count and jobs/s. Counters are relaxed atomics: each exact, not one
// atomic cut while jobs are moving.
//
// Thread-safety: every member function from any thread, except that stop() and the
// destructor must not run on a worker (inside a handler).
// Complexity: submit/worker hand-off O(1) lock-free on the bounded_queue (a Vyukov
// ring); no allocation per job in steady state except for idempotency keys (a set node)
// and failures (error strings, a DLQ node). Retries O(log r) under a mutex. metrics()
// O(max_workers × 344 buckets).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <unordered_set>
#include <utility>
#include <vector>

#if __has_include(<cxxabi.h>)
#include <cxxabi.h>
#define OUTGROW_HAS_CXXABI 1
#else
#define OUTGROW_HAS_CXXABI 0
#endif

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/deadline.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/stats.hpp>
#include <outgrow/queue/bounded_queue.hpp>
#include <outgrow/queue/dead_letter_queue.hpp>

namespace outgrow {

// ---------------------------------------------------------------------------------
// detail: latency histogram, demangling, striped intake gate
// ---------------------------------------------------------------------------------
namespace detail {

/// A log-bucketed histogram of nanosecond values with a fixed array of atomic counters:
/// values below 16 exactly, above that 8 buckets per power of two (each at most 12.5 %
/// wide), up to 2^45 ns (about 9.8 h; larger values count in the last bucket). record()
/// is one relaxed fetch_add (plus a compare-exchange when a new maximum is seen), never
/// allocates, and may run concurrently with readers. 344 buckets, 2.8 KB.
class log_histogram {
 public:
  static constexpr unsigned sub_bucket_bits = 3;
  static constexpr std::uint64_t sub_buckets = std::uint64_t{1} << sub_bucket_bits;
  static constexpr std::uint64_t linear_limit = 2 * sub_buckets;  // exact below 16
  static constexpr unsigned max_exponent = 44;
  static constexpr std::size_t bucket_count = static_cast<std::size_t>(
      linear_limit + (max_exponent - sub_bucket_bits) * sub_buckets);

  void record(std::uint64_t value) noexcept {
    buckets_[bucket_of(value)].fetch_add(1, std::memory_order_relaxed);
    std::uint64_t seen = max_.load(std::memory_order_relaxed);
    while (value > seen &&
           !max_.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
    }
  }

  [[nodiscard]] static constexpr std::size_t bucket_of(std::uint64_t value) noexcept {
    if (value < linear_limit) return static_cast<std::size_t>(value);
    const auto exponent = static_cast<unsigned>(std::bit_width(value) - 1);  // >= 4
    if (exponent > max_exponent) return bucket_count - 1;
    const std::uint64_t sub = (value >> (exponent - sub_bucket_bits)) & (sub_buckets - 1);
    return static_cast<std::size_t>(linear_limit +
                                    (exponent - sub_bucket_bits - 1) * sub_buckets + sub);
  }
  /// Smallest value counted in bucket `index`.
  [[nodiscard]] static constexpr std::uint64_t lowest_of(std::size_t index) noexcept {
    if (index < linear_limit) return index;
    const std::uint64_t group = (index - linear_limit) / sub_buckets;
    const std::uint64_t sub = (index - linear_limit) % sub_buckets;
    const auto exponent = static_cast<unsigned>(group + sub_bucket_bits + 1);
    return (sub_buckets + sub) << (exponent - sub_bucket_bits);
  }
  /// Largest value counted in bucket `index` (the last bucket: unbounded).
  [[nodiscard]] static constexpr std::uint64_t highest_of(std::size_t index) noexcept {
    if (index + 1 >= bucket_count) return std::numeric_limits<std::uint64_t>::max();
    return lowest_of(index + 1) - 1;
  }

  /// Plain counts, summed over any number of histograms; percentiles come from here.
  struct counts {
    std::array<std::uint64_t, bucket_count> buckets{};
    std::uint64_t total = 0;
    std::uint64_t max = 0;

    void add(const log_histogram& h) noexcept {
      for (std::size_t i = 0; i < bucket_count; ++i) {
        const std::uint64_t n = h.buckets_[i].load(std::memory_order_relaxed);
        buckets[i] += n;
        total += n;
      }
      max = std::max(max, h.max_.load(std::memory_order_relaxed));
    }
    /// The smallest bucket bound at or above the q-quantile (q in [0, 1]), capped at the
    /// largest value seen: never below the true quantile, at most 12.5 % above it.
    [[nodiscard]] std::uint64_t percentile(double q) const noexcept {
      if (total == 0) return 0;
      const double wanted = std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(total));
      const std::uint64_t rank =
          std::max<std::uint64_t>(1, static_cast<std::uint64_t>(wanted));
      std::uint64_t seen = 0;
      for (std::size_t i = 0; i < bucket_count; ++i) {
        seen += buckets[i];
        if (seen >= rank) return std::min(highest_of(i), max);
      }
      return max;
    }
  };

 private:
  std::array<std::atomic<std::uint64_t>, bucket_count> buckets_{};
  std::atomic<std::uint64_t> max_{0};
};

/// The readable name of a type from typeid: "std::runtime_error", not "St13runtime_error".
inline std::string demangled_name(const std::type_info& type) {
#if OUTGROW_HAS_CXXABI
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  if (status == 0 && name) return std::string(name.get());
#endif
  return std::string(type.name());
}

/// A per-thread index, handed out round-robin the first time a thread asks.
inline std::size_t thread_stripe() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

/// Submissions in progress and accepted, per stripe of producer threads, so producers
/// do not all write one cache line.
struct alignas(64) submit_stripe {
  std::atomic<std::int64_t> in_progress{0};
  std::atomic<std::uint64_t> accepted{0};
};

}  // namespace detail

// ---------------------------------------------------------------------------------
// results, configuration, metrics
// ---------------------------------------------------------------------------------

/// What a handler reports about one attempt.
class job_result {
 public:
  /// Success (a default-constructed job_result is one too).
  job_result() noexcept = default;
  [[nodiscard]] static job_result success() noexcept { return job_result(); }
  /// A failure that is retried (until max_attempts).
  [[nodiscard]] static job_result failure(std::string message,
                                          std::string type = "outgrow::job_failure") {
    return job_result(outcome::failure, std::move(message), std::move(type));
  }
  /// A failure no retry can fix (invalid input): straight to the dead-letter queue.
  [[nodiscard]] static job_result permanent_failure(
      std::string message, std::string type = "outgrow::permanent_failure") {
    return job_result(outcome::permanent, std::move(message), std::move(type));
  }

  [[nodiscard]] bool ok() const noexcept { return outcome_ == outcome::success; }
  [[nodiscard]] bool retryable() const noexcept { return outcome_ == outcome::failure; }
  explicit operator bool() const noexcept { return ok(); }
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  [[nodiscard]] const std::string& error_type() const noexcept { return type_; }

 private:
  enum class outcome : std::uint8_t { success, failure, permanent };
  job_result(outcome o, std::string message, std::string type)
      : outcome_(o), error_(std::move(message)), type_(std::move(type)) {}

  outcome outcome_ = outcome::success;
  std::string error_;
  std::string type_;
};

/// A work_queue handler: callable with `Job&`, returning void, bool or job_result.
/// The smallest one: `[](order&) {}`.
template <class H, class Job>
concept job_handler = std::invocable<H&, Job&> &&
    (std::is_void_v<std::invoke_result_t<H&, Job&>> ||
     std::same_as<std::remove_cvref_t<std::invoke_result_t<H&, Job&>>, bool> ||
     std::same_as<std::remove_cvref_t<std::invoke_result_t<H&, Job&>>, job_result>);

/// What submit() does when the queue is full.
enum class overflow_policy : std::uint8_t {
  block = 0,        ///< wait up to block_timeout for room, then timed_out
  reject = 1,       ///< rejected_full at once
  caller_runs = 2,  ///< run the first attempt on the calling thread
};

[[nodiscard]] constexpr std::string_view to_string(overflow_policy p) noexcept {
  switch (p) {
    case overflow_policy::block:
      return "block";
    case overflow_policy::reject:
      return "reject";
    case overflow_policy::caller_runs:
      return "caller_runs";
  }
  return "unknown";
}

enum class submit_status : std::uint8_t {
  accepted = 0,       ///< queued
  ran_in_caller = 1,  ///< caller_runs: the first attempt ran on the calling thread
  rejected_full = 2,  ///< full (reject policy, or try_submit)
  timed_out = 3,      ///< full for block_timeout (block policy)
  stopped = 4,        ///< stop() was called
  duplicate = 5,      ///< its idempotency key is pending or has succeeded
};

[[nodiscard]] constexpr std::string_view to_string(submit_status s) noexcept {
  switch (s) {
    case submit_status::accepted:
      return "accepted";
    case submit_status::ran_in_caller:
      return "ran_in_caller";
    case submit_status::rejected_full:
      return "rejected_full";
    case submit_status::timed_out:
      return "timed_out";
    case submit_status::stopped:
      return "stopped";
    case submit_status::duplicate:
      return "duplicate";
  }
  return "unknown";
}

/// The result of a submission; true when the queue took the job.
struct submit_result {
  submit_status status = submit_status::accepted;
  [[nodiscard]] bool accepted() const noexcept {
    return status == submit_status::accepted || status == submit_status::ran_in_caller;
  }
  explicit operator bool() const noexcept { return accepted(); }
  friend bool operator==(const submit_result&, const submit_result&) = default;
};

struct work_queue_config {
  /// Jobs the queue holds: 1024. [2, 2^30] (bounded_queue's range)
  std::size_t capacity = 1024;
  /// Workers at start: 4, a small pool for an autoscaler to resize. [1, max_workers],
  /// or [0, max_workers] with scale_from_zero.
  std::size_t workers = 4;
  /// Largest pool set_workers() accepts: 64. [1, 1024]
  std::size_t max_workers = 64;
  /// Allow 0 workers (at start and in set_workers): jobs are accepted and wait in the
  /// queue until workers > 0. Off by default: 0 workers is usually a mistake.
  bool scale_from_zero = false;
  /// Attempts per job before the DLQ, the first included: 3 (the textbook's). [1, 1000]
  /// (SQS maxReceiveCount's range)
  std::uint32_t max_attempts = 3;
  /// What submit() does when the queue is full: block (with block_timeout). Any value
  /// other than the three enumerators (cast from an integer) is a config_error.
  overflow_policy overflow = overflow_policy::block;
  /// How long submit() waits for room under overflow_policy::block: 1 s. [0s, 24h]
  std::chrono::nanoseconds block_timeout = std::chrono::seconds{1};
  /// Jobs that may wait for a retry before workers stop taking new jobs: 1024.
  /// [1, 2^30]
  std::size_t retry_capacity = 1024;
  /// Succeeded idempotency keys remembered: 100,000. [1, 2^30]
  std::size_t remembered_keys = 100'000;
  /// The dead-letter queue (10,000 entries, oldest dropped to its hook, by default).
  /// Validated by work_queue: errors name "work_queue" and "dead_letter.<field>".
  dead_letter_queue_config dead_letter{};
  /// Run handlers on this executor (e.g. a boost::asio::thread_pool's) instead of the
  /// queue's own threads.
  std::optional<boost::asio::any_io_executor> executor{};
  /// Seed of the backoff jitter's RNG (std::mt19937_64); empty = std::random_device.
  std::optional<std::uint64_t> seed{};
};

/// A job stop() hands back: it did not complete.
template <class Job>
struct unfinished_job {
  Job job;
  /// Attempts it already had (0 = never ran; > 0 = it was waiting for a retry).
  std::uint32_t attempts = 0;
  std::optional<std::string> idempotency_key{};
};

/// What stop() returns: the jobs that did not complete (it is that vector, so
/// `q.stop(2s).size()` and `for (auto& u : q.stop(2s))` work), plus how many handlers
/// were still running when it returned — stuck past the deadline. Those jobs cannot be
/// handed back (their handler owns them); each still ends succeeded or dead-lettered
/// (a failure after stop() is not retried), visible in metrics() and dead_letters().
template <class Job>
struct stop_result : std::vector<unfinished_job<Job>> {
  /// Handlers (workers and caller-runs submitters) running when stop() returned.
  std::size_t still_running = 0;
};

/// One worker's share (since it last started).
struct worker_metrics {
  static constexpr std::string_view metrics_name = "worker";
  std::size_t index = 0;
  std::uint64_t processed = 0;   ///< attempts run since the worker (re)started
  double jobs_per_second = 0.0;  ///< processed / time since (re)start, by the Clock
  bool busy = false;             ///< running a job right now

  template <class F>
  void for_each_metric(F&& f) const {
    f("index", index);
    f("processed", processed);
    f("jobs_per_second", jobs_per_second);
    f("busy", busy);
  }
};

struct work_queue_metrics {
  static constexpr std::string_view metrics_name = "work_queue_metrics";
  std::size_t depth = 0;  ///< jobs in the queue
  std::size_t capacity = 0;
  std::size_t waiting_retry = 0;  ///< jobs waiting for a retry's backoff to end
  std::size_t in_flight = 0;      ///< attempts running now (workers and callers)
  std::size_t workers = 0;        ///< the target set by config / set_workers
  std::uint64_t accepted = 0;     ///< jobs taken (incl. ran_in_caller and replays)
  std::uint64_t processed = 0;    ///< attempts run = succeeded + failed
  std::uint64_t succeeded = 0;    ///< jobs that succeeded
  std::uint64_t failed = 0;       ///< failed attempts = retried + dead_lettered
  std::uint64_t retried = 0;      ///< retries scheduled
  std::uint64_t dead_lettered = 0;
  std::uint64_t rejected = 0;    ///< submissions refused: full, timed out, stopped
  std::uint64_t duplicates = 0;  ///< submissions refused for their idempotency key
  std::uint64_t ran_in_caller = 0;
  std::uint64_t handed_back = 0;           ///< jobs returned by stop()
  std::chrono::nanoseconds oldest_age{0};  ///< approximate; 0 when the queue is empty
  std::chrono::nanoseconds latency_p50{0};
  std::chrono::nanoseconds latency_p90{0};
  std::chrono::nanoseconds latency_p99{0};
  std::chrono::nanoseconds latency_max{0};
  /// (depth + waiting_retry) / workers; with 0 workers, the whole backlog.
  double backlog_per_worker = 0.0;
  std::vector<worker_metrics> per_worker{};

  [[nodiscard]] std::size_t backlog() const noexcept { return depth + waiting_retry; }

  template <class F>
  void for_each_metric(F&& f) const {
    f("depth", depth);
    f("capacity", capacity);
    f("waiting_retry", waiting_retry);
    f("in_flight", in_flight);
    f("workers", workers);
    f("accepted", accepted);
    f("processed", processed);
    f("succeeded", succeeded);
    f("failed", failed);
    f("retried", retried);
    f("dead_lettered", dead_lettered);
    f("rejected", rejected);
    f("duplicates", duplicates);
    f("ran_in_caller", ran_in_caller);
    f("handed_back", handed_back);
    f("oldest_age", oldest_age);
    f("latency_p50", latency_p50);
    f("latency_p90", latency_p90);
    f("latency_p99", latency_p99);
    f("latency_max", latency_max);
    f("backlog_per_worker", backlog_per_worker);
    f("per_worker", per_worker);
  }
};

// ---------------------------------------------------------------------------------
// work_queue
// ---------------------------------------------------------------------------------

template <class Job, clock_source Clock = steady_clock_source,
          backoff_policy Backoff = full_jitter_backoff>
requires std::is_nothrow_move_constructible_v<Job> && std::is_move_assignable_v<Job>
class work_queue {
 public:
  using job_type = Job;
  using clock_type = Clock;
  using time_point = typename Clock::time_point;
  using dead_letter_queue_type = dead_letter_queue<Job, Clock>;

  /// Validates `config` (config_error on a bad field) and starts config.workers
  /// workers (threads, or lanes on config.executor).
  template <job_handler<Job> Handler>
  work_queue(work_queue_config config, Handler handler, Clock clock = {},
             Backoff backoff = {})
      : config_(validated(std::move(config))),
        clock_(std::move(clock)),
        backoff_(std::move(backoff)),
        handler_(wrap(std::move(handler))),
        queue_({.capacity = config_.capacity}),
        dlq_(config_.dead_letter, clock_),
        rng_(config_.seed ? *config_.seed : random_seed()),
        slots_(std::make_unique<std::atomic<worker_slot*>[]>(config_.max_workers)),
        caller_slot_(config_.max_workers),
        executor_(config_.executor) {
    retry_heap_.reserve(config_.retry_capacity + config_.max_workers);
    try {
      set_workers(config_.workers);
    } catch (...) {
      (void)stop(std::chrono::steady_clock::now());
      finish_workers();
      release_slots();
      throw;
    }
  }

  work_queue(const work_queue&) = delete;
  work_queue& operator=(const work_queue&) = delete;

  /// stop(now), then waits without a deadline for handlers still running (also those a
  /// stop() left running): a stuck handler blocks the destructor. Jobs not run are
  /// discarded (call stop() first to keep them).
  ~work_queue() {
    (void)stop(std::chrono::steady_clock::now());
    finish_workers();
    release_slots();
  }

  // ---- intake -------------------------------------------------------------------
  /// Submits `job` under the overflow policy. When not accepted, `job` is untouched.
  [[nodiscard]] submit_result submit(Job&& job) {
    return submit_impl(job, std::nullopt, intake::normal);
  }
  /// As submit(job), refusing (duplicate) a job whose key is pending or succeeded.
  [[nodiscard]] submit_result submit(Job&& job, std::string idempotency_key) {
    return submit_impl(job, std::move(idempotency_key), intake::normal);
  }
  /// Never blocks and never runs the job: rejected_full when the queue is full.
  [[nodiscard]] submit_result try_submit(Job&& job) {
    return submit_impl(job, std::nullopt, intake::non_blocking);
  }
  [[nodiscard]] submit_result try_submit(Job&& job, std::string idempotency_key) {
    return submit_impl(job, std::move(idempotency_key), intake::non_blocking);
  }

  /// replay_target for dead_letter_queue::replay*: submits with attempts reset, under
  /// the overflow policy. duplicate = a job with the same key is pending or succeeded.
  [[nodiscard]] replay_outcome accept_replay(Job& job,
                                             const std::optional<std::string>& key) {
    switch (submit_impl(job, key, intake::normal).status) {
      case submit_status::accepted:
      case submit_status::ran_in_caller:
        return replay_outcome::accepted;
      case submit_status::duplicate:
        return replay_outcome::duplicate;
      default:
        return replay_outcome::rejected;
    }
  }

  // ---- workers ------------------------------------------------------------------
  /// Grows or shrinks the pool to `n` workers, live (see header). config_error unless n
  /// is in [1, max_workers] ([0, max_workers] with scale_from_zero). No effect after
  /// stop().
  void set_workers(std::size_t n) {
    require_in_range("work_queue", "workers", n, config_.scale_from_zero ? 0U : 1U,
                     config_.max_workers);
    std::lock_guard lock(control_mutex_);
    if (stopping_.load(std::memory_order_acquire)) return;
    const std::size_t before = target_.load(std::memory_order_relaxed);
    const time_point now = clock_.now();
    for (std::size_t i = 0; i < n; ++i) {
      worker_slot& s = ensure_slot(i);
      if (i >= before) {
        s.processed_at_start.store(s.processed.load(std::memory_order_relaxed),
                                   std::memory_order_relaxed);
        s.started_at.store(ns_since_epoch(now), std::memory_order_relaxed);
      }
    }
    target_.store(n, std::memory_order_seq_cst);
    if (executor_) {
      for (std::size_t i = before; i < n && has_work(); ++i) kick();
      return;
    }
    for (std::size_t i = 0; i < n; ++i) start_thread(*slots_[i].load());
    for (std::size_t i = n; i < config_.max_workers; ++i) {
      worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s == nullptr) break;
      std::lock_guard slot_lock(s->mutex);
      std::uint8_t running = slot_running;
      if (s->state.compare_exchange_strong(running, slot_retiring,
                                           std::memory_order_acq_rel)) {
        s->wake.request_stop();  // ends its wait for a job at once
      }
    }
    halt_cv_.notify_all();
    // Return only once every retiring worker has left or is running its last job: from
    // here on, none of them takes another one (scale to zero means zero).
    for (std::size_t i = n; i < config_.max_workers; ++i) {
      const worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s == nullptr) break;
      wait_for(
          [s] {
            return s->state.load(std::memory_order_acquire) != slot_retiring ||
                   s->busy.load(std::memory_order_acquire) != 0;
          },
          std::chrono::steady_clock::time_point::max());
    }
  }

  /// The current target (what set_workers / config asked for).
  [[nodiscard]] std::size_t workers() const noexcept {
    return target_.load(std::memory_order_acquire);
  }

  // ---- shutdown -----------------------------------------------------------------
  /// Stops intake, drains until `deadline`, and returns every job that did not complete
  /// (queued first, then retry-waiting by due time) with the number of handlers still
  /// running (see the header: it returns at the deadline even if a handler is stuck —
  /// at most 2 × quit_grace (100 ms) later). A second call returns nothing.
  stop_result<Job> stop(std::chrono::steady_clock::time_point deadline) {
    std::lock_guard lock(control_mutex_);
    if (stopping_.load(std::memory_order_acquire)) return {};
    stopping_.store(true, std::memory_order_seq_cst);
    queue_.close();
    if (target_.load(std::memory_order_acquire) > 0) {
      wait_for([this] { return idle_now(); }, deadline);
    }
    {
      std::lock_guard halt_lock(halt_mutex_);
      halt_.store(true, std::memory_order_seq_cst);
    }
    halt_cv_.notify_all();
    // Submitters that passed the intake check finish (blocked pushes fail on close();
    // a caller-runs attempt completes), then the workers leave: until the deadline, plus
    // quit_grace for handlers finishing just then. After that, wait (at most quit_grace
    // more) only until each one has left or is inside a handler: those take no further
    // job, so what is queued now can be handed back.
    const auto grace_end =
        saturating_add(std::max(deadline, std::chrono::steady_clock::now()), quit_grace);
    wait_for([this] { return no_submit_in_progress() && workers_left(false); }, grace_end);
    wait_for([this] { return callers_in_handlers() && workers_left(true); },
             saturating_add(std::chrono::steady_clock::now(), quit_grace));
    stop_result<Job> out;
    out.still_running = caller_slot_.busy.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < config_.max_workers; ++i) {
      worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s == nullptr) break;
      out.still_running += s->busy.load(std::memory_order_acquire);
      if (!executor_ && s->thread.joinable() &&
          s->state.load(std::memory_order_acquire) == slot_stopped) {
        s->thread.join();  // it has left (or is leaving): a short wait
      }
    }
    while (std::optional<envelope> env = queue_.try_pop()) out.push_back(unfinished(*env));
    {
      std::lock_guard retry_lock(retry_mutex_);
      retries_closed_ = true;  // a handler failing from now on dead-letters its job
      std::sort(retry_heap_.begin(), retry_heap_.end(),
                [](const delayed& a, const delayed& b) { return later(b, a); });
      for (delayed& d : retry_heap_) out.push_back(unfinished(d.env));
      retry_heap_.clear();
      retry_waiting_.store(0, std::memory_order_release);
    }
    for (const unfinished_job<Job>& u : out) {
      if (u.idempotency_key) release_key(*u.idempotency_key);
    }
    handed_back_.add(out.size());
    stopped_.store(true, std::memory_order_release);
    return out;
  }
  /// stop(now + grace) (saturating: a huge grace waits "forever").
  /// (Any duration type, so hours::max() is not converted to nanoseconds first.)
  template <class Rep, class Period>
  stop_result<Job> stop(std::chrono::duration<Rep, Period> grace) {
    return stop(saturating_add(std::chrono::steady_clock::now(), grace));
  }

  /// True once stop() has begun (intake closed).
  [[nodiscard]] bool stopping() const noexcept {
    return stopping_.load(std::memory_order_acquire);
  }
  /// True once stop() has returned.
  [[nodiscard]] bool stopped() const noexcept {
    return stopped_.load(std::memory_order_acquire);
  }

  /// Waits (real time) until no job is queued, running or waiting for a retry; false on
  /// timeout. With retries waiting on a manual_clock, advance the clock first.
  template <class Rep, class Period>
  bool wait_until_idle(std::chrono::duration<Rep, Period> timeout) {
    return wait_for([this] { return idle_now(); },
                    saturating_add(std::chrono::steady_clock::now(), timeout));
  }

  // ---- observe ------------------------------------------------------------------
  [[nodiscard]] dead_letter_queue_type& dead_letters() noexcept { return dlq_; }
  [[nodiscard]] const dead_letter_queue_type& dead_letters() const noexcept { return dlq_; }
  [[nodiscard]] const work_queue_config& config() const noexcept { return config_; }
  [[nodiscard]] std::size_t depth() const noexcept { return queue_.size(); }

  [[nodiscard]] work_queue_metrics metrics() const {
    work_queue_metrics m;
    m.depth = queue_.size();
    m.capacity = config_.capacity;
    m.waiting_retry = retry_waiting_.load(std::memory_order_acquire);
    m.workers = target_.load(std::memory_order_acquire);
    const time_point now = clock_.now();
    const std::int64_t now_ns = ns_since_epoch(now);
    auto latency = std::make_unique<detail::log_histogram::counts>();
    std::int64_t newest_taken = std::numeric_limits<std::int64_t>::min();
    auto add_slot = [&](const worker_slot& s) {
      m.processed += s.processed.load(std::memory_order_relaxed);
      m.succeeded += s.succeeded.load(std::memory_order_relaxed);
      m.failed += s.failed.load(std::memory_order_relaxed);
      m.retried += s.retried.load(std::memory_order_relaxed);
      m.dead_lettered += s.dead_lettered.load(std::memory_order_relaxed);
      m.in_flight += s.busy.load(std::memory_order_relaxed);
      newest_taken = std::max(newest_taken, s.last_taken.load(std::memory_order_relaxed));
      latency->add(s.latency);
    };
    add_slot(caller_slot_);
    for (std::size_t i = 0; i < config_.max_workers; ++i) {
      const worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s == nullptr) break;
      add_slot(*s);
      const bool active = executor_
                              ? i < m.workers
                              : s->state.load(std::memory_order_relaxed) != slot_stopped;
      if (!active) continue;
      worker_metrics w;
      w.index = i;
      w.processed = s->processed.load(std::memory_order_relaxed) -
                    s->processed_at_start.load(std::memory_order_relaxed);
      const auto up = std::chrono::duration<double>(
          std::chrono::nanoseconds{now_ns - s->started_at.load(std::memory_order_relaxed)});
      w.jobs_per_second =
          up.count() > 0 ? static_cast<double>(w.processed) / up.count() : 0.0;
      w.busy = s->busy.load(std::memory_order_relaxed) != 0;
      m.per_worker.push_back(w);
    }
    for (const detail::submit_stripe& stripe : stripes_) {
      m.accepted += stripe.accepted.load(std::memory_order_relaxed);
    }
    m.rejected = rejected_.load();
    m.duplicates = duplicates_.load();
    m.ran_in_caller = ran_in_caller_.load();
    m.handed_back = handed_back_.load();
    if (m.depth > 0) {
      const std::int64_t since =
          std::max(newest_taken, empty_mark_.load(std::memory_order_relaxed));
      if (since != std::numeric_limits<std::int64_t>::min() && since < now_ns) {
        m.oldest_age = std::chrono::nanoseconds{now_ns - since};
      }
    }
    m.latency_p50 = std::chrono::nanoseconds{to_signed(latency->percentile(0.50))};
    m.latency_p90 = std::chrono::nanoseconds{to_signed(latency->percentile(0.90))};
    m.latency_p99 = std::chrono::nanoseconds{to_signed(latency->percentile(0.99))};
    m.latency_max = std::chrono::nanoseconds{to_signed(latency->max)};
    m.backlog_per_worker = static_cast<double>(m.backlog()) /
                           static_cast<double>(std::max<std::size_t>(m.workers, 1));
    return m;
  }

 private:
  enum class intake : std::uint8_t { normal, non_blocking };

  struct envelope {
    Job job;
    std::optional<std::string> key;
    time_point enqueued_at{};
    time_point first_failure{};
    std::chrono::nanoseconds last_delay{0};
    std::uint32_t attempts = 0;
  };

  struct delayed {
    time_point due{};
    std::uint64_t seq = 0;
    envelope env;
  };
  /// Heap order: the earliest due time (then the earliest scheduled) on top.
  static bool later(const delayed& a, const delayed& b) noexcept {
    return a.due != b.due ? a.due > b.due : a.seq > b.seq;
  }

  // Pool threads: stopped (no thread, or one that has left) -> running -> retiring.
  // Executor lanes: stopped = idle, running = a step is posted or running.
  static constexpr std::uint8_t slot_stopped = 0;
  static constexpr std::uint8_t slot_running = 1;
  static constexpr std::uint8_t slot_retiring = 2;

  struct alignas(64) worker_slot {
    explicit worker_slot(std::size_t i) : index(i) {}
    const std::size_t index;
    std::atomic<std::uint8_t> state{slot_stopped};
    std::atomic<std::uint32_t> busy{0};
    std::atomic<std::uint64_t> processed{0};
    std::atomic<std::uint64_t> succeeded{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> retried{0};
    std::atomic<std::uint64_t> dead_lettered{0};
    std::atomic<std::uint64_t> processed_at_start{0};
    std::atomic<std::int64_t> started_at{0};
    std::atomic<std::int64_t> last_taken{std::numeric_limits<std::int64_t>::min()};
    detail::log_histogram latency;
    std::thread thread;                              // pool mode; control_mutex_
    std::mutex mutex;                                // pool mode: state changes + wake
    std::stop_source wake;                           // pool mode: retiring wakes the wait
    std::optional<boost::asio::steady_timer> timer;  // executor mode; its lane only
  };

  static constexpr std::chrono::milliseconds idle_poll{5};
  /// How long stop() waits past its deadline for workers not in a handler to leave.
  static constexpr std::chrono::milliseconds quit_grace{50};
  static constexpr std::size_t lane_batch = 64;
  static constexpr std::size_t stripe_count = 16;

  // ---- setup --------------------------------------------------------------------
  static work_queue_config validated(work_queue_config c) {
    constexpr std::string_view name = "work_queue";
    require_in_range(name, "capacity", c.capacity, std::size_t{2}, std::size_t{1} << 30);
    require_in_range(name, "max_workers", c.max_workers, std::size_t{1}, std::size_t{1024});
    require_in_range(name, "workers", c.workers, c.scale_from_zero ? 0U : 1U,
                     c.max_workers);
    require_in_range(name, "max_attempts", c.max_attempts, 1U, 1000U);
    require(to_string(c.overflow) != "unknown", name, "overflow",
            "one of block, reject, caller_runs", static_cast<int>(c.overflow));
    require_in_range(name, "block_timeout", c.block_timeout, std::chrono::nanoseconds{0},
                     std::chrono::nanoseconds{std::chrono::hours{24}});
    require_in_range(name, "retry_capacity", c.retry_capacity, std::size_t{1},
                     std::size_t{1} << 30);
    require_in_range(name, "remembered_keys", c.remembered_keys, std::size_t{1},
                     std::size_t{1} << 30);
    // The nested dead-letter queue: checked here so that an error names the primitive
    // the user configured (work_queue), not the one it builds.
    detail::validate_dead_letter_config(c.dead_letter, name, "dead_letter.");
    return c;
  }

  template <class H>
  static std::function<job_result(Job&)> wrap(H handler) {
    auto shared = std::make_shared<H>(std::move(handler));
    return [shared](Job& job) -> job_result {
      using R = std::invoke_result_t<H&, Job&>;
      if constexpr (std::is_void_v<R>) {
        std::invoke(*shared, job);
        return job_result::success();
      } else if constexpr (std::same_as<std::remove_cvref_t<R>, bool>) {
        if (std::invoke(*shared, job)) return job_result::success();
        return job_result::failure("handler returned false");
      } else {
        return job_result(std::invoke(*shared, job));
      }
    };
  }

  static std::uint64_t random_seed() {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32U) ^
           static_cast<std::uint64_t>(device());
  }

  /// Saturating (a Clock coarser than nanoseconds may hold times beyond int64 ns).
  static std::int64_t ns_since_epoch(time_point t) noexcept {
    using ns_point =
        std::chrono::time_point<std::chrono::steady_clock, std::chrono::nanoseconds>;
    return saturating_add(ns_point{}, t.time_since_epoch()).time_since_epoch().count();
  }
  static std::uint64_t to_unsigned_ns(typename Clock::duration d) noexcept {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return ns > 0 ? static_cast<std::uint64_t>(ns) : 0;
  }
  static std::int64_t to_signed(std::uint64_t v) noexcept {
    constexpr auto most =
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    return static_cast<std::int64_t>(std::min(v, most));
  }

  worker_slot& ensure_slot(std::size_t i) {
    worker_slot* s = slots_[i].load(std::memory_order_acquire);
    if (s == nullptr) {
      s = new worker_slot(i);
      slots_[i].store(s, std::memory_order_release);
    }
    return *s;
  }

  void release_slots() noexcept {
    for (std::size_t i = 0; i < config_.max_workers; ++i) {
      delete slots_[i].exchange(nullptr, std::memory_order_acq_rel);
    }
  }

  // ---- intake -------------------------------------------------------------------
  submit_result submit_impl(Job& job, std::optional<std::string> key, intake mode) {
    detail::submit_stripe& stripe = stripes_[detail::thread_stripe() % stripe_count];
    stripe.in_progress.fetch_add(1, std::memory_order_seq_cst);
    struct leave_gate {
      detail::submit_stripe& s;
      ~leave_gate() { s.in_progress.fetch_sub(1, std::memory_order_release); }
    } gate{stripe};
    if (stopping_.load(std::memory_order_seq_cst)) {
      rejected_.add();
      return {submit_status::stopped};
    }
    if (key && !reserve_key(*key)) {
      duplicates_.add();
      return {submit_status::duplicate};
    }
    const time_point now = clock_.now();
    envelope env{
        std::move(job), std::move(key), now, time_point{}, std::chrono::nanoseconds{0}, 0};
    // Counted before the push, so that a worker can never complete a job not yet
    // counted as accepted (idle_now() relies on it); undone below if refused.
    stripe.accepted.fetch_add(1, std::memory_order_relaxed);
    bool pushed = queue_.try_push(std::move(env));
    if (!pushed && mode == intake::normal) {
      switch (config_.overflow) {
        case overflow_policy::block:
          pushed = queue_.push(std::move(env), config_.block_timeout);
          break;
        case overflow_policy::caller_runs:
          if (!queue_.closed()) {
            ran_in_caller_.add();
            process(std::move(env), caller_slot_);
            return {submit_status::ran_in_caller};
          }
          break;
        case overflow_policy::reject:
          break;
      }
    }
    if (pushed) {
      // A worker saw the queue empty: this job may be the oldest one queued.
      if (queue_was_empty_.load(std::memory_order_relaxed) &&
          queue_was_empty_.exchange(false, std::memory_order_relaxed)) {
        raise(empty_mark_, ns_since_epoch(now));
      }
      kick();
      return {submit_status::accepted};
    }
    stripe.accepted.fetch_sub(1, std::memory_order_relaxed);
    job = std::move(env.job);
    if (env.key) release_key(*env.key);
    rejected_.add();
    if (queue_.closed()) return {submit_status::stopped};
    if (mode == intake::normal && config_.overflow == overflow_policy::block) {
      return {submit_status::timed_out};
    }
    return {submit_status::rejected_full};
  }

  static void raise(std::atomic<std::int64_t>& mark, std::int64_t value) noexcept {
    std::int64_t seen = mark.load(std::memory_order_relaxed);
    while (value > seen &&
           !mark.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
    }
  }

  // ---- idempotency keys ---------------------------------------------------------
  bool reserve_key(const std::string& key) {
    std::lock_guard lock(keys_mutex_);
    if (done_keys_.contains(key) || pending_keys_.contains(key)) return false;
    pending_keys_.insert(key);
    return true;
  }
  void release_key(const std::string& key) {
    std::lock_guard lock(keys_mutex_);
    pending_keys_.erase(key);
  }
  void key_succeeded(const std::string& key) {
    std::lock_guard lock(keys_mutex_);
    pending_keys_.erase(key);
    const auto [it, inserted] = done_keys_.insert(key);
    if (!inserted) return;
    done_order_.push_back(&*it);  // element pointers survive rehashing
    if (done_order_.size() > config_.remembered_keys) {
      const auto oldest = done_keys_.find(*done_order_.front());
      done_order_.pop_front();
      done_keys_.erase(oldest);
    }
  }

  // ---- running jobs -------------------------------------------------------------
  job_result invoke(Job& job) noexcept {
    try {
      return handler_(job);
    } catch (const std::exception& e) {
      return job_result::failure(e.what(), detail::demangled_name(typeid(e)));
    } catch (...) {
      return job_result::failure("unknown exception", "unknown");
    }
  }

  void process(envelope&& env, worker_slot& s) {
    s.busy.fetch_add(1, std::memory_order_relaxed);
    const time_point start = clock_.now();
    job_result result = invoke(env.job);
    const time_point end = clock_.now();
    s.latency.record(to_unsigned_ns(end - start));
    ++env.attempts;
    s.processed.fetch_add(1, std::memory_order_relaxed);
    if (result.ok()) {
      if (env.key) key_succeeded(*env.key);
      s.succeeded.fetch_add(1, std::memory_order_release);  // last: the job is done
    } else {
      s.failed.fetch_add(1, std::memory_order_relaxed);
      if (env.attempts == 1) env.first_failure = end;
      // Count the retry before it is scheduled: another worker may run it to success
      // at once, and a caller waiting for idle must then see the retry counted.
      const bool retry = result.retryable() && env.attempts < config_.max_attempts;
      if (retry) s.retried.fetch_add(1, std::memory_order_release);
      if (!retry || !schedule_retry(env, end)) {
        // Out of attempts, permanent, or stop() has taken the retries already.
        if (retry) s.retried.fetch_sub(1, std::memory_order_relaxed);
        dead_letter(std::move(env), std::move(result), end);
        s.dead_lettered.fetch_add(1, std::memory_order_release);  // after the DLQ has it
      }
    }
    s.busy.fetch_sub(1, std::memory_order_relaxed);
    if (idle_waiters_.load(std::memory_order_relaxed) != 0) idle_cv_.notify_all();
  }

  void dead_letter(envelope&& env, job_result&& result, time_point now) {
    // Free the key first: a replay of this entry must not find it still pending.
    if (env.key) release_key(*env.key);
    typename dead_letter_queue_type::entry e{
        .id = 0,
        .job = std::move(env.job),
        .error = result.error(),
        .error_type = result.error_type(),
        .attempts = env.attempts,
        .first_failure = env.first_failure,
        .last_failure = now,
        .idempotency_key = std::move(env.key),
    };
    (void)dlq_.add(std::move(e));
  }

  /// Moves `env` into the retry heap; false (env untouched) once stop() has drained it.
  bool schedule_retry(envelope& env, time_point now) {
    {
      std::lock_guard lock(retry_mutex_);
      if (retries_closed_) return false;
      const std::chrono::nanoseconds delay =
          backoff_.delay(env.attempts, env.last_delay, rng_);
      env.last_delay = delay;
      // Saturating: a huge backoff (nanoseconds::max()) means "not for a long time",
      // never a due time in the past.
      const time_point due = saturating_add(now, delay);
      retry_heap_.push_back(delayed{due, retry_seq_++, std::move(env)});
      std::push_heap(retry_heap_.begin(), retry_heap_.end(), later);
      next_due_.store(ns_since_epoch(retry_heap_.front().due), std::memory_order_release);
      retry_waiting_.fetch_add(1, std::memory_order_release);
    }
    kick();
    return true;
  }

  std::optional<envelope> take_due_retry() {
    if (retry_waiting_.load(std::memory_order_acquire) == 0) return std::nullopt;
    const time_point now = clock_.now();
    if (next_due_.load(std::memory_order_acquire) > ns_since_epoch(now))
      return std::nullopt;
    std::lock_guard lock(retry_mutex_);
    if (retry_heap_.empty() || retry_heap_.front().due > now) return std::nullopt;
    std::pop_heap(retry_heap_.begin(), retry_heap_.end(), later);
    std::optional<envelope> out(std::move(retry_heap_.back().env));
    retry_heap_.pop_back();
    next_due_.store(retry_heap_.empty() ? std::numeric_limits<std::int64_t>::max()
                                        : ns_since_epoch(retry_heap_.front().due),
                    std::memory_order_release);
    retry_waiting_.fetch_sub(1, std::memory_order_release);
    return out;
  }

  [[nodiscard]] bool retry_full() const noexcept {
    return retry_waiting_.load(std::memory_order_acquire) >= config_.retry_capacity;
  }

  [[nodiscard]] bool has_work() const noexcept {
    return !queue_.empty() || retry_waiting_.load(std::memory_order_acquire) != 0;
  }

  /// Runs one due retry or one queued job; false if there was none to take.
  bool run_one(worker_slot& s) {
    if (retry_waiting_.load(std::memory_order_acquire) != 0) {
      if (std::optional<envelope> env = take_due_retry()) {
        process(std::move(*env), s);
        return true;
      }
      if (retry_full()) return false;
    }
    if (std::optional<envelope> env = queue_.try_pop()) {
      took(s, *env);
      process(std::move(*env), s);
      return true;
    }
    queue_was_empty_.store(true, std::memory_order_relaxed);
    return false;
  }

  void took(worker_slot& s, const envelope& env) noexcept {
    s.last_taken.store(ns_since_epoch(env.enqueued_at), std::memory_order_relaxed);
    if (queue_.empty() && !queue_was_empty_.load(std::memory_order_relaxed)) {
      queue_was_empty_.store(true, std::memory_order_relaxed);
    }
  }

  /// How long an idle worker may wait before it must look at the retry heap again.
  [[nodiscard]] std::chrono::nanoseconds idle_wait_time() const noexcept {
    if (retry_waiting_.load(std::memory_order_acquire) == 0) return idle_poll;
    const std::int64_t due = next_due_.load(std::memory_order_acquire);
    const std::int64_t now = ns_since_epoch(clock_.now());
    if (due <= now) return std::chrono::nanoseconds{0};
    // due > now: the difference is positive; it overflows only if now < 0.
    if (now < 0 && due > std::numeric_limits<std::int64_t>::max() + now) return idle_poll;
    return std::min(std::chrono::nanoseconds{due - now},
                    std::chrono::nanoseconds{idle_poll});
  }

  // ---- pool threads -------------------------------------------------------------
  void start_thread(worker_slot& s) {
    {
      std::lock_guard slot_lock(s.mutex);
      std::uint8_t state = s.state.load(std::memory_order_acquire);
      if (state == slot_running) return;
      if (state == slot_retiring &&
          s.state.compare_exchange_strong(state, slot_running, std::memory_order_acq_rel)) {
        s.wake = std::stop_source();  // it had not left yet: it stays, with a fresh wake
        return;
      }
    }
    if (s.thread.joinable()) s.thread.join();  // it has left (state == stopped)
    {
      std::lock_guard slot_lock(s.mutex);
      s.wake = std::stop_source();
      s.state.store(slot_running, std::memory_order_release);
    }
    try {
      s.thread = std::thread([this, &s] { pool_worker(s); });
    } catch (...) {
      s.state.store(slot_stopped, std::memory_order_release);
      throw;
    }
  }

  void pool_worker(worker_slot& s) {
    for (;;) {
      if (halt_.load(std::memory_order_acquire)) break;
      std::uint8_t state = s.state.load(std::memory_order_acquire);
      if (state == slot_retiring) {
        if (s.state.compare_exchange_strong(state, slot_stopped,
                                            std::memory_order_acq_rel)) {
          if (idle_waiters_.load(std::memory_order_relaxed) != 0) idle_cv_.notify_all();
          return;
        }
        continue;  // set_workers kept it
      }
      if (run_one(s)) continue;
      idle_wait(s);
    }
    s.state.store(slot_stopped, std::memory_order_release);
  }

  void idle_wait(worker_slot& s) {
    const std::chrono::nanoseconds wait = idle_wait_time();
    if (!queue_.closed() && !retry_full()) {
      std::stop_token retired;
      {
        std::lock_guard slot_lock(s.mutex);
        if (s.state.load(std::memory_order_acquire) != slot_running) return;
        retired = s.wake.get_token();
      }
      if (std::optional<envelope> env = queue_.pop_until(
              saturating_add(std::chrono::steady_clock::now(), wait), std::move(retired))) {
        took(s, *env);
        process(std::move(*env), s);
      }
      return;
    }
    std::unique_lock lock(halt_mutex_);
    halt_cv_.wait_for(lock, wait, [&] {
      return halt_.load(std::memory_order_acquire) ||
             s.state.load(std::memory_order_acquire) != slot_running;
    });
  }

  // ---- executor lanes -----------------------------------------------------------
  bool try_acquire_lane(worker_slot& s) noexcept {
    std::uint8_t idle = slot_stopped;
    if (!s.state.compare_exchange_strong(idle, slot_running, std::memory_order_seq_cst)) {
      return false;
    }
    running_lanes_.fetch_add(1, std::memory_order_seq_cst);
    return true;
  }

  void release_lane(worker_slot& s) noexcept {
    s.state.store(slot_stopped, std::memory_order_seq_cst);
    running_lanes_.fetch_sub(1, std::memory_order_seq_cst);
  }

  /// Executor mode: starts a lane if fewer than the target run. Called after work
  /// arrives. The fences pair with those in lane_step: either the lane going idle sees
  /// the new work, or this sees the lane idle.
  void kick() {
    if (!executor_ || halt_.load(std::memory_order_acquire)) return;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const std::size_t target = target_.load(std::memory_order_seq_cst);
    if (running_lanes_.load(std::memory_order_seq_cst) >= target) return;
    for (std::size_t i = 0; i < target; ++i) {
      worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s != nullptr && try_acquire_lane(*s)) {
        post_step(*s);
        return;
      }
    }
  }

  void post_step(worker_slot& s) {
    steps_.fetch_add(1, std::memory_order_acq_rel);
    boost::asio::post(*executor_, [this, &s] { lane_step(s); });
  }

  void lane_step(worker_slot& s) {
    bool repost = true;
    for (std::size_t n = 0; n < lane_batch; ++n) {
      if (halt_.load(std::memory_order_acquire) ||
          s.index >= target_.load(std::memory_order_acquire)) {
        release_lane(s);
        if (has_work()) kick();  // a lane below the target may be idle
        repost = false;
        break;
      }
      if (run_one(s)) continue;
      if (retry_waiting_.load(std::memory_order_acquire) != 0) {
        // Nothing due yet: come back when the first retry is due (at most idle_poll).
        if (!s.timer) s.timer.emplace(*executor_);
        s.timer->expires_after(idle_wait_time());
        steps_.fetch_add(1, std::memory_order_acq_rel);
        s.timer->async_wait([this, &s](const boost::system::error_code&) { lane_step(s); });
        repost = false;
        break;
      }
      release_lane(s);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (!halt_.load(std::memory_order_seq_cst) &&
          s.index < target_.load(std::memory_order_seq_cst) && has_work() &&
          try_acquire_lane(s)) {
        continue;
      }
      repost = false;
      break;
    }
    if (repost) post_step(s);  // a full batch: let other work on the executor run
    if (idle_waiters_.load(std::memory_order_relaxed) != 0) idle_cv_.notify_all();
    steps_.fetch_sub(1, std::memory_order_acq_rel);  // last touch of *this
  }

  // ---- waiting ------------------------------------------------------------------
  /// Every accepted job has completed (succeeded or dead-lettered). Reads the completions
  /// first: both sums only grow, and a job is counted accepted before it can complete,
  /// so equal sums mean that at the moment the completions were read, nothing was
  /// queued, running or waiting for a retry.
  [[nodiscard]] bool idle_now() const noexcept {
    std::uint64_t done = 0;
    auto add = [&](const worker_slot& s) {
      done += s.succeeded.load(std::memory_order_acquire);
      done += s.dead_lettered.load(std::memory_order_acquire);
    };
    add(caller_slot_);
    for (std::size_t i = 0; i < config_.max_workers; ++i) {
      const worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s == nullptr) break;
      add(*s);
    }
    std::uint64_t accepted = 0;
    for (const detail::submit_stripe& stripe : stripes_) {
      accepted += stripe.accepted.load(std::memory_order_acquire);
    }
    return done >= accepted;
  }

  /// Every worker has left; with `or_busy`, or is running a handler (it takes no job
  /// after that, as halt_ is set).
  [[nodiscard]] bool workers_left(bool or_busy) const noexcept {
    if (executor_ && !or_busy) return steps_.load(std::memory_order_acquire) == 0;
    for (std::size_t i = 0; i < config_.max_workers; ++i) {
      const worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s == nullptr) break;
      if (s->state.load(std::memory_order_acquire) != slot_stopped &&
          (!or_busy || s->busy.load(std::memory_order_acquire) == 0)) {
        return false;
      }
    }
    return true;
  }

  /// Every submission still in progress is a caller-runs attempt in its handler.
  [[nodiscard]] bool callers_in_handlers() const noexcept {
    std::int64_t n = 0;
    for (const detail::submit_stripe& stripe : stripes_) {
      n += stripe.in_progress.load(std::memory_order_seq_cst);
    }
    return n <=
           static_cast<std::int64_t>(caller_slot_.busy.load(std::memory_order_acquire));
  }

  /// The destructor's last wait: submitters and workers have all left. No deadline.
  void finish_workers() {
    std::lock_guard lock(control_mutex_);
    constexpr auto forever = std::chrono::steady_clock::time_point::max();
    wait_for([this] { return no_submit_in_progress(); }, forever);
    if (executor_) {
      wait_for([this] { return steps_.load(std::memory_order_acquire) == 0; }, forever);
      return;
    }
    for (std::size_t i = 0; i < config_.max_workers; ++i) {
      worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s == nullptr) break;
      if (s->thread.joinable()) s->thread.join();
    }
  }

  [[nodiscard]] bool no_submit_in_progress() const noexcept {
    std::int64_t n = 0;
    for (const detail::submit_stripe& stripe : stripes_) {
      n += stripe.in_progress.load(std::memory_order_seq_cst);
    }
    return n == 0;
  }

  /// Waits until pred() or the deadline; woken by finished jobs, and looks again at
  /// least every millisecond (a notification racing with the wait can be missed).
  template <class Pred>
  bool wait_for(Pred pred, std::chrono::steady_clock::time_point deadline) {
    idle_waiters_.fetch_add(1, std::memory_order_relaxed);
    struct leave {
      std::atomic<std::uint32_t>& n;
      ~leave() { n.fetch_sub(1, std::memory_order_relaxed); }
    } on_exit{idle_waiters_};
    std::unique_lock lock(idle_mutex_);
    for (;;) {
      if (pred()) return true;
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      const auto until = deadline - now > std::chrono::milliseconds{1}
                             ? now + std::chrono::milliseconds{1}
                             : deadline;
      idle_cv_.wait_until(lock, until);
    }
  }

  static unfinished_job<Job> unfinished(envelope& env) {
    return unfinished_job<Job>{std::move(env.job), env.attempts, std::move(env.key)};
  }

  // ---- state ----------------------------------------------------------------------
  const work_queue_config config_;
  Clock clock_;
  Backoff backoff_;
  std::function<job_result(Job&)> handler_;
  bounded_queue<envelope> queue_;
  dead_letter_queue_type dlq_;

  // retries
  std::mutex retry_mutex_;
  std::vector<delayed> retry_heap_;
  std::uint64_t retry_seq_ = 0;
  std::mt19937_64 rng_;
  std::atomic<std::size_t> retry_waiting_{0};
  std::atomic<std::int64_t> next_due_{std::numeric_limits<std::int64_t>::max()};
  bool retries_closed_ = false;  // retry_mutex_; set when stop() takes the heap

  // idempotency keys
  std::mutex keys_mutex_;
  std::unordered_set<std::string> pending_keys_;
  std::unordered_set<std::string> done_keys_;
  std::deque<const std::string*> done_order_;

  // workers
  std::mutex control_mutex_;
  std::unique_ptr<std::atomic<worker_slot*>[]> slots_;
  worker_slot caller_slot_;
  std::optional<boost::asio::any_io_executor> executor_;
  std::atomic<std::size_t> target_{0};
  std::atomic<std::size_t> running_lanes_{0};
  std::atomic<std::size_t> steps_{0};

  // intake and shutdown
  std::array<detail::submit_stripe, stripe_count> stripes_{};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> halt_{false};
  std::atomic<bool> stopped_{false};
  std::mutex halt_mutex_;
  std::condition_variable halt_cv_;
  alignas(64) std::atomic<bool> queue_was_empty_{true};
  std::atomic<std::int64_t> empty_mark_{std::numeric_limits<std::int64_t>::min()};
  counter rejected_;
  counter duplicates_;
  counter ran_in_caller_;
  counter handed_back_;

  // waiting for idle
  std::mutex idle_mutex_;
  std::condition_variable idle_cv_;
  std::atomic<std::uint32_t> idle_waiters_{0};
};

}  // namespace outgrow
