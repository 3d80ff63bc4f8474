// outgrow/queue/work_queue_types.hpp — work_queue's value types: what a handler
// returns, the configuration, submit and stop results, metrics.
//
// Split from queue/work_queue.hpp (which includes this header and documents how they
// are used) so that code reporting on, configuring or handling jobs for a work_queue —
// and redis_stream_worker, which shares job_result and job_handler — can name them
// without the queue's engine.
//
//   outgrow::work_queue_config config{.capacity = 10'000, .workers = 4};
//   auto handler = [](order& o) -> outgrow::job_result {
//     if (!o.valid()) return outgrow::job_result::permanent_failure("invalid order");
//     return charge(o) ? outgrow::job_result::success()
//                      : outgrow::job_result::failure("payment declined");
//   };
//
// Thread-safety: plain values (job_result, configs, results, metrics): one thread at a
// time per object. Complexity: O(1) everything; job_result allocates only for its
// message.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/chrono.h>
#include <fmt/ranges.h>
#include <boost/asio/any_io_executor.hpp>

#include <outgrow/core/metrics.hpp>
#include <outgrow/queue/dead_letter_queue.hpp>

namespace outgrow {

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
concept job_handler =
    std::invocable<H&, Job&> &&
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

/// The status of a submission; true when the queue took the job.
struct submit_result {
  submit_status status = submit_status::accepted;
  [[nodiscard]] bool accepted() const noexcept {
    return status == submit_status::accepted || status == submit_status::ran_in_caller;
  }
  explicit operator bool() const noexcept { return accepted(); }
  friend bool operator==(const submit_result&, const submit_result&) = default;
};

/// What work_queue::submit() returns: the status (a submit_result: true when taken, and
/// why not — full, timed out, stopped, duplicate) and, when the queue did not take the
/// job, the job itself, handed back:
///
///   if (auto r = q.submit(std::move(o)); !r) shed(std::move(*r.rejected));
///
/// Converts to submit_result (`outgrow::submit_result s = q.submit(...)` keeps only
/// the status).
template <class Job>
struct job_submit_result : submit_result {
  /// The refused job (empty when the queue took it).
  std::optional<Job> rejected{};
};

/// CoDel-style queue-delay shedding for work_queue (RFC 8289, Nichols & Jacobson): a
/// job that waited longer than `target` in the queue, while the queue's delay has stayed
/// above `target` for at least `interval`, is shed — put in the dead-letter queue with
/// error_type queue_delay_shed_error_type — instead of run late (see work_queue.hpp).
///
/// Defaults: CoDel's are target 5 ms, interval 100 ms (RFC 8289 §4.3-4.4: interval
/// about a worst-case round trip, target 5-10 % of it). The interval is kept: it also
/// sets how fast shedding ramps up — the k-th shed comes about 2·interval·sqrt(k) after
/// the first, so after T seconds of shedding the rate is about T / (2·interval²) jobs/s
/// — and a longer one (say 1 s, a job producer's reaction time) would take minutes,
/// not seconds, to shed the excess of an overload (examples/queue_shedding.cpp: with
/// 100 ms, a 2x spike's backlog is gone 2.5 s after it ends). The target is the top of
/// the RFC's range, 10 ms: a job takes longer than a packet's transmission, so a
/// healthy job queue holds more delay than a link's. Set target above a job's usual
/// wait (with W workers, service time S and n jobs queued, about n·S/W).
struct queue_delay_shedding_config {
  /// Acceptable standing queue delay: 10 ms (10 % of interval, the top of CoDel's
  /// 5-10 %). [1ns, interval]
  std::chrono::nanoseconds target = std::chrono::milliseconds{10};
  /// How long the delay must stay above target before shedding starts, and the base
  /// of the shed spacing interval/sqrt(count): 100 ms (CoDel's). [1ns, 24h]
  std::chrono::nanoseconds interval = std::chrono::milliseconds{100};
};

/// The dead-letter entry error_type of a job shed for queue delay.
inline constexpr std::string_view queue_delay_shed_error_type = "outgrow::queue_delay_shed";

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
  /// Seed of the backoff jitter's RNG (std::mt19937_64): empty = random per instance,
  /// set = the same delays on every run (core/seed.hpp).
  std::optional<std::uint64_t> seed{};
  /// Queue-delay shedding (CoDel): off when empty (the default). On with defaults:
  /// `.queue_delay_shedding = outgrow::queue_delay_shedding_config{}`. Errors name
  /// "queue_delay_shedding.<field>".
  std::optional<queue_delay_shedding_config> queue_delay_shedding{};
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
  std::size_t waiting_retry = 0;    ///< jobs waiting for a retry's backoff to end
  std::size_t in_flight = 0;        ///< attempts running now (workers and callers)
  std::size_t workers = 0;          ///< the target set by config / set_workers
  std::uint64_t accepted = 0;       ///< jobs taken (incl. ran_in_caller and replays)
  std::uint64_t processed = 0;      ///< attempts run = succeeded + failed
  std::uint64_t succeeded = 0;      ///< jobs that succeeded
  std::uint64_t failed = 0;         ///< failed attempts = retried + dead_lettered
  std::uint64_t retried = 0;        ///< retries scheduled
  std::uint64_t dead_lettered = 0;  ///< jobs out of attempts (or permanent failures)
  std::uint64_t shed = 0;           ///< jobs shed for queue delay (also in the DLQ)
  bool shedding = false;            ///< in CoDel's dropping state now
  std::uint64_t rejected = 0;       ///< submissions refused: full, timed out, stopped
  std::uint64_t duplicates = 0;     ///< submissions refused for their idempotency key
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
    f("shed", shed);
    f("shedding", shedding);
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

}  // namespace outgrow
