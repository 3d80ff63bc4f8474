// outgrow/queue/detail/work_queue_engine.hpp — work_queue's machinery: intake, worker
// threads and executor lanes, the retry heap, idempotency keys, queue-delay shedding,
// shutdown.
//
// work_queue (queue/work_queue.hpp) is a thin, documented facade over
// detail::work_queue_engine, so that the public header reads as documentation and this
// file holds the concurrency: the Vyukov-ring hand-off (workers take batches with one
// CAS into their slot, from which stop() and retirement can take them back; idle pool
// workers spin one at a time, then park, woken one at a time with a token only when
// needed — the batch and the parking are in queue/detail/work_queue_handoff.hpp, the
// policy in "waking workers" here), the striped intake gate that
// stop() waits on, the per-worker slots (state machine stopped -> running -> retiring),
// lanes posted to an Asio executor, the due-time heap of retries, the CoDel decision on
// each job taken from the queue (detail::queue_delay_shedder, under one mutex, only when
// configured), and the waits of stop() and the destructor. The design and the
// guarantees are described in queue/work_queue.hpp; the comments here say how the code
// keeps them.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
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
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/deadline.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/log_histogram.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/queue/bounded_queue.hpp>
#include <outgrow/queue/dead_letter_queue.hpp>
#include <outgrow/queue/detail/queue_delay_shedder.hpp>
#include <outgrow/queue/detail/work_queue_handoff.hpp>
#include <outgrow/queue/work_queue_types.hpp>

namespace outgrow::detail {

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

/// Submissions begun, finished and refused, per stripe of producer threads, so
/// producers do not all write one cache line. Two atomic adds per submission (begun,
/// finished), a third only when the job is refused: a submission counts as accepted
/// from the moment it begins (before its job can be pushed and completed) until it is
/// refused. All three only grow, so reading the one that trails first gives a count
/// that was true at some moment (never below it).
struct alignas(64) submit_stripe {
  std::atomic<std::uint64_t> entered{0};
  std::atomic<std::uint64_t> left{0};
  std::atomic<std::uint64_t> refused{0};

  /// Submissions in progress: 0 means none was at the moment `left` was read.
  [[nodiscard]] std::int64_t in_progress() const noexcept {
    const std::uint64_t l = left.load(std::memory_order_seq_cst);
    return static_cast<std::int64_t>(entered.load(std::memory_order_seq_cst) - l);
  }
  /// Submissions accepted or still deciding (at least those accepted when called).
  [[nodiscard]] std::uint64_t accepted() const noexcept {
    const std::uint64_t r = refused.load(std::memory_order_acquire);
    return entered.load(std::memory_order_acquire) - r;
  }
};

/// The whole of work_queue<Job, Clock, Backoff>: its public members are the ones
/// work_queue forwards to (documented there), the rest is the machinery.
template <class Job, clock_source Clock, backoff_policy Backoff>
class work_queue_engine {
 public:
  using time_point = typename Clock::time_point;
  using dead_letter_queue_type = dead_letter_queue<Job, Clock>;

  work_queue_engine(work_queue_config config, std::function<job_result(Job&)> handler,
                    Clock clock, Backoff backoff)
      : config_(validated(std::move(config))),
        clock_(std::move(clock)),
        backoff_(std::move(backoff)),
        handler_(std::move(handler)),
        queue_({.capacity = config_.capacity}),
        dlq_(config_.dead_letter, clock_),
        rng_(resolve_seed(config_.seed)),
        slots_(std::make_unique<std::atomic<worker_slot*>[]>(config_.max_workers)),
        caller_slot_(config_.max_workers, true),
        executor_(config_.executor) {
    if (config_.queue_delay_shedding) {
      shedder_.emplace(config_.queue_delay_shedding->target,
                       config_.queue_delay_shedding->interval);
    }
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

  work_queue_engine(const work_queue_engine&) = delete;
  work_queue_engine& operator=(const work_queue_engine&) = delete;

  ~work_queue_engine() {
    (void)stop(std::chrono::steady_clock::now());
    finish_workers();
    release_slots();
  }

  // ---- intake -------------------------------------------------------------------
  /// Submits `job` (moved from either way); a refused job comes back in the result.
  job_submit_result<Job> submit(Job& job, std::optional<std::string> key, bool blocking) {
    job_submit_result<Job> out;
    static_cast<submit_result&>(out) =
        submit_impl(job, std::move(key), blocking ? intake::normal : intake::non_blocking);
    if (!out) out.rejected.emplace(std::move(job));
    return out;
  }

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
      (void)s->state.compare_exchange_strong(running, slot_retiring,
                                             std::memory_order_acq_rel);
    }
    // Under the parking mutex, so that a worker checking its state before parking cannot
    // miss this: an idle retiring worker wakes at once.
    parking_.notify_all_after([] {});
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

  [[nodiscard]] std::size_t workers() const noexcept {
    return target_.load(std::memory_order_acquire);
  }

  // ---- shutdown -----------------------------------------------------------------
  stop_result<Job> stop(std::chrono::steady_clock::time_point deadline) {
    std::lock_guard lock(control_mutex_);
    if (stopping_.load(std::memory_order_acquire)) return {};
    stopping_.store(true, std::memory_order_seq_cst);
    queue_.close();
    if (target_.load(std::memory_order_acquire) > 0) {
      wait_for([this] { return idle_now(); }, deadline);
    }
    parking_.notify_all_after([this] { halt_.store(true, std::memory_order_seq_cst); });
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
    // Queued jobs, oldest first: those retiring workers gave back, those taken in a batch
    // but not started (a worker stuck in a handler keeps none), then the queue.
    {
      std::lock_guard spill_lock(spill_mutex_);
      for (envelope& env : spill_) out.push_back(unfinished(env));
      spill_.clear();
      spilled_.store(0, std::memory_order_release);
    }
    for (std::size_t i = 0; i < config_.max_workers; ++i) {
      worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s == nullptr) break;
      s->batch.steal([&](envelope& env) { out.push_back(unfinished(env)); });
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
  template <class Rep, class Period>
  stop_result<Job> stop(std::chrono::duration<Rep, Period> grace) {
    return stop(saturating_add(std::chrono::steady_clock::now(), grace));
  }

  [[nodiscard]] bool stopping() const noexcept {
    return stopping_.load(std::memory_order_acquire);
  }
  [[nodiscard]] bool stopped() const noexcept {
    return stopped_.load(std::memory_order_acquire);
  }

  template <class Rep, class Period>
  bool wait_until_idle(std::chrono::duration<Rep, Period> timeout) {
    return wait_for([this] { return idle_now(); },
                    saturating_add(std::chrono::steady_clock::now(), timeout));
  }

  // ---- observe ------------------------------------------------------------------
  [[nodiscard]] dead_letter_queue_type& dead_letters() noexcept { return dlq_; }
  [[nodiscard]] const dead_letter_queue_type& dead_letters() const noexcept { return dlq_; }
  [[nodiscard]] const work_queue_config& config() const noexcept { return config_; }
  /// Jobs queued: in the queue, taken in a worker's batch but not started, or given
  /// back by a retiring worker.
  [[nodiscard]] std::size_t depth() const noexcept {
    std::size_t n = queue_.size() + spilled_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < config_.max_workers; ++i) {
      const worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s == nullptr) break;
      n += s->batch.held();
    }
    return n;
  }

  [[nodiscard]] work_queue_metrics metrics() const {
    work_queue_metrics m;
    m.depth = depth();
    m.capacity = config_.capacity;
    m.waiting_retry = retry_waiting_.load(std::memory_order_acquire);
    m.workers = target_.load(std::memory_order_acquire);
    const time_point now = clock_.now();
    const std::int64_t now_ns = ns_since_epoch(now);
    auto latency = std::make_unique<log_histogram::counts>();
    std::int64_t newest_taken = std::numeric_limits<std::int64_t>::min();
    auto add_slot = [&](const worker_slot& s) {
      m.processed += s.processed.load(std::memory_order_relaxed);
      m.succeeded += s.succeeded.load(std::memory_order_relaxed);
      m.failed += s.failed.load(std::memory_order_relaxed);
      m.retried += s.retried.load(std::memory_order_relaxed);
      m.dead_lettered += s.dead_lettered.load(std::memory_order_relaxed);
      m.shed += s.shed.load(std::memory_order_relaxed);
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
    for (const submit_stripe& stripe : stripes_) {
      m.accepted += stripe.accepted();
    }
    m.shedding = shedding_.load(std::memory_order_relaxed);
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

  /// The handler, type-erased: void -> success, bool false -> failure, job_result as is.
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

  /// Jobs a worker takes from the queue at once, at most (see batch_share()).
  static constexpr std::size_t batch_max = 16;

  struct alignas(64) worker_slot {
    explicit worker_slot(std::size_t i, bool is_shared = false)
        : index(i), shared(is_shared) {}
    const std::size_t index;
    /// The caller-runs slot, written by any submitting thread: its counters need atomic
    /// read-modify-writes. A worker's slot has one writer at a time (its thread, or the
    /// lane step holding it), so its counters are a plain load and store: no locked
    /// instruction, and no cache line shared with another writer, per job.
    const bool shared;
    std::atomic<std::uint8_t> state{slot_stopped};
    std::atomic<std::uint32_t> busy{0};
    std::atomic<std::uint64_t> processed{0};
    std::atomic<std::uint64_t> succeeded{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> retried{0};
    std::atomic<std::uint64_t> dead_lettered{0};
    std::atomic<std::uint64_t> shed{0};
    std::atomic<std::uint64_t> processed_at_start{0};
    std::atomic<std::int64_t> started_at{0};
    std::atomic<std::int64_t> last_taken{std::numeric_limits<std::int64_t>::min()};
    log_histogram latency;
    std::thread thread;                              // pool mode; control_mutex_
    std::mutex mutex;                                // pool mode: state changes
    std::optional<boost::asio::steady_timer> timer;  // executor mode; its lane only
    // The batch: jobs taken from the queue, not started (queue/detail/
    // work_queue_handoff.hpp); its owner takes them, stop() and retirement steal them.
    worker_batch<envelope, batch_max> batch;
    // The owner's sample of real handler time (every 16th job): short_jobs_.
    std::uint32_t samples = 0;
    std::int64_t service_ns = 0;
    // Pool thread: it waited out a whole idle_poll parked (no wake): its next look
    // takes a batch even if the other awake workers could (see run_one).
    bool eager = false;
  };

  static constexpr std::chrono::milliseconds idle_poll{5};
  /// How long stop() waits past its deadline for workers not in a handler to leave.
  static constexpr std::chrono::milliseconds quit_grace{50};
  static constexpr std::size_t lane_batch = 64;
  /// Handlers shorter than this (an average of sampled real times) count as short: a
  /// busy worker is back at the queue before a parked one could wake up, so submit()
  /// does not wake one for a single queued job (short_jobs_).
  static constexpr std::int64_t short_job_ns = 4'000;
  /// How many times an idle worker (one at a time: the spinner) looks at the queue
  /// before it parks; with a pause between looks, roughly 10-30 us.
  static constexpr int spin_rounds = 512;
  static constexpr std::size_t stripe_count = 16;
  /// With short handlers, a parked worker is woken only when more jobs than this are
  /// queued (two full batches) while a worker is awake: below it, the awake worker keeps
  /// up, and waking another (a futex wake, a context switch, a core taken from the
  /// producer) would cost more than it saves.
  static constexpr std::size_t wake_backlog = 2 * batch_max;

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
    validate_dead_letter_config(c.dead_letter, name, "dead_letter.");
    if (c.queue_delay_shedding) {
      const queue_delay_shedding_config& q = *c.queue_delay_shedding;
      require_in_range(name, "queue_delay_shedding.interval", q.interval,
                       std::chrono::nanoseconds{1},
                       std::chrono::nanoseconds{std::chrono::hours{24}});
      require_in_range(name, "queue_delay_shedding.target", q.target,
                       std::chrono::nanoseconds{1}, q.interval);
    }
    return c;
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
    submit_stripe& stripe = stripes_[thread_stripe() % stripe_count];
    // Counted accepted from here (before the push, so that a worker can never complete
    // a job not yet counted: idle_now() relies on it) until refused.
    stripe.entered.fetch_add(1, std::memory_order_seq_cst);
    struct leave_gate {
      submit_stripe& s;
      ~leave_gate() { s.left.fetch_add(1, std::memory_order_release); }
    } gate{stripe};
    if (stopping_.load(std::memory_order_seq_cst)) {
      stripe.refused.fetch_add(1, std::memory_order_release);
      rejected_.add();
      return {submit_status::stopped};
    }
    if (key && !reserve_key(*key)) {
      stripe.refused.fetch_add(1, std::memory_order_release);
      duplicates_.add();
      return {submit_status::duplicate};
    }
    const time_point now = clock_.now();
    envelope env{
        std::move(job), std::move(key), now, time_point{}, std::chrono::nanoseconds{0}, 0};
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
      wake_for_submit();
      kick();
      return {submit_status::accepted};
    }
    stripe.refused.fetch_add(1, std::memory_order_release);
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
      return job_result::failure(e.what(), demangled_name(typeid(e)));
    } catch (...) {
      return job_result::failure("unknown exception", "unknown");
    }
  }

  /// Adds `delta` to one of s's counters: an atomic add on the shared caller slot, a
  /// plain load and store on a worker's (one writer).
  template <class T>
  static void bump(std::atomic<T>& c, const worker_slot& s,
                   std::memory_order order = std::memory_order_relaxed,
                   T delta = T{1}) noexcept {
    if (s.shared) {
      c.fetch_add(delta, order);
    } else {
      c.store(static_cast<T>(c.load(std::memory_order_relaxed) + delta),
              order == std::memory_order_relaxed ? order : std::memory_order_release);
    }
  }

  void process(envelope&& env, worker_slot& s) {
    bump(s.busy, s);
    // Every 16th job of a worker, its real duration feeds short_jobs_ (whatever the
    // Clock: a manual_clock does not move during a handler).
    const bool sample = !s.shared && (++s.samples & 15U) == 0;
    const auto real_start =
        sample ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    const time_point start = clock_.now();
    job_result result = invoke(env.job);
    const time_point end = clock_.now();
    if (sample) note_service(s, std::chrono::steady_clock::now() - real_start);
    s.latency.record(to_unsigned_ns(end - start));
    ++env.attempts;
    bump(s.processed, s);
    if (result.ok()) {
      if (env.key) key_succeeded(*env.key);
      bump(s.succeeded, s, std::memory_order_release);  // last: the job is done
    } else {
      bump(s.failed, s);
      if (env.attempts == 1) env.first_failure = end;
      // Count the retry before it is scheduled: another worker may run it to success
      // at once, and a caller waiting for idle must then see the retry counted.
      const bool retry = result.retryable() && env.attempts < config_.max_attempts;
      if (retry) bump(s.retried, s, std::memory_order_release);
      if (!retry || !schedule_retry(env, end)) {
        // Out of attempts, permanent, or stop() has taken the retries already.
        if (retry) bump(s.retried, s, std::memory_order_relaxed, ~std::uint64_t{0});
        dead_letter(std::move(env), std::move(result), end);
        bump(s.dead_lettered, s, std::memory_order_release);  // after the DLQ has it
      }
    }
    bump(s.busy, s, std::memory_order_relaxed, ~std::uint32_t{0});
    if (idle_waiters_.load(std::memory_order_relaxed) != 0) idle_cv_.notify_all();
  }

  /// A sampled real handler time: a moving average per worker, and short_jobs_ (written
  /// only when it changes).
  void note_service(worker_slot& s, std::chrono::steady_clock::duration d) noexcept {
    const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    s.service_ns += (ns - s.service_ns) / 4;
    const bool is_short = s.service_ns < short_job_ns;
    if (short_jobs_.load(std::memory_order_relaxed) != is_short) {
      short_jobs_.store(is_short, std::memory_order_relaxed);
    }
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
    return !queue_.empty() || spilled_.load(std::memory_order_acquire) != 0 ||
           retry_waiting_.load(std::memory_order_acquire) != 0;
  }

  /// Runs one due retry or one queued job (from s's batch, from what retiring workers
  /// gave back, or from the queue: a new batch); false if there was none to take.
  /// `may_defer` (pool threads): false also when the queue holds no more than the other
  /// awake workers keep up with (backlog_for_another), so that s goes idle and parks
  /// instead of taking their jobs — and their producers' core — a job at a time.
  bool run_one(worker_slot& s, bool may_defer = false) {
    if (retry_waiting_.load(std::memory_order_acquire) != 0) {
      if (std::optional<envelope> env = take_due_retry()) {
        process(std::move(*env), s);
        return true;
      }
      if (retry_full()) return false;  // s's batch waits too: retry_capacity holds
    }
    if (std::optional<envelope> env = s.batch.take()) {
      run_queued(std::move(*env), s);
      return true;
    }
    if (std::optional<envelope> env = take_spilled()) {
      run_queued(std::move(*env), s);
      return true;
    }
    if (may_defer && !backlog_for_another(others_awake())) return false;
    const std::size_t want = batch_share();
    std::optional<envelope> env =
        want > 1 && s.batch.refill(queue_, want) != 0 ? s.batch.take() : queue_.try_pop();
    if (!env) return false;
    wake_for_backlog();
    run_queued(std::move(*env), s);
    return true;
  }

  // ---- batches --------------------------------------------------------------------
  /// How many jobs a worker takes from the queue at once: its share of what is queued
  /// (queued / workers, rounded up) and at most batch_max, so that a batch never holds
  /// jobs another idle worker could run; 1 when handlers are not short (a batch saves
  /// a hand-off, worth it only beside a short job, and behind a long one its jobs would
  /// wait and the queue's room free in bursts) and while retries wait (retry_capacity
  /// then bounds them as without batches). Workers = those awake (not parked: a parked
  /// one is woken only for a backlog above wake_backlog). With one, batch_max without
  /// reading the queue's size (try_pop_batch takes what is there).
  [[nodiscard]] std::size_t batch_share() const noexcept {
    if (!short_jobs_.load(std::memory_order_relaxed) ||
        retry_waiting_.load(std::memory_order_relaxed) != 0) {
      return 1;
    }
    const std::size_t workers =
        executor_ ? std::max<std::size_t>(target_.load(std::memory_order_relaxed), 1)
                  : others_awake() + 1;
    if (workers == 1) return batch_max;
    return std::clamp<std::size_t>((queue_.size() + workers - 1) / workers, 1, batch_max);
  }

  /// A leaving worker (retired pool thread, lane above the target) gives its batch
  /// back: the others take it before the queue. Rare; allocates.
  void spill_held(worker_slot& s) {
    if (s.batch.held() == 0) return;
    {
      std::lock_guard lock(spill_mutex_);
      s.batch.steal([&](envelope& env) {
        spill_.push_back(std::move(env));
        spilled_.fetch_add(1, std::memory_order_release);
      });
    }
    // A parked pool worker takes them now (lanes: the caller kicks).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (parking_.parked() != 0 && parking_.spinning() == 0) parking_.wake_one();
  }

  std::optional<envelope> take_spilled() {
    if (spilled_.load(std::memory_order_acquire) == 0) return std::nullopt;
    std::lock_guard lock(spill_mutex_);
    if (spill_.empty()) return std::nullopt;
    std::optional<envelope> out(std::move(spill_.front()));
    spill_.pop_front();
    spilled_.fetch_sub(1, std::memory_order_release);
    return out;
  }

  /// A job taken from the queue (not a retry): shed for queue delay, or run. Judged
  /// when it starts, so that its sojourn includes its wait in a batch.
  void run_queued(envelope&& env, worker_slot& s) {
    took(s, env);
    if (shedder_ && shed_for_delay(env, s)) return;
    process(std::move(env), s);
  }

  // ---- waking workers (pool threads) ---------------------------------------------
  // The mechanism (spin one at a time, park, wake with a token, the fences that pair)
  // is detail::worker_parking (queue/detail/work_queue_handoff.hpp); the policy is
  // here, one test for both sides (backlog_for_another): is there work for one more
  // worker than those awake? Any job if none is awake or handlers are long; with short
  // handlers, more than wake_backlog queued. submit() wakes a parked worker on it (when
  // none is spinning or woken and not yet back); a worker that takes a batch and leaves
  // such a backlog wakes the next; a worker looking for work (run_one with may_defer,
  // the spinner, a parking worker after announcing itself) takes it only if it passes
  // for it, else goes idle and parks. A parked worker still looks every idle_poll, and
  // that look takes a batch whatever the test says (s.eager): an awake worker stuck in
  // a long handler delays the jobs it was counted on for at most that long.

  /// Pool workers awake (the target less those parked), a worker that asks included
  /// unless it has announced itself parked.
  [[nodiscard]] std::size_t awake_workers() const noexcept {
    const std::size_t parked = parking_.parked();
    const std::size_t target = target_.load(std::memory_order_relaxed);
    return target > parked ? target - parked : 0;
  }
  /// Awake workers other than the (awake) caller.
  [[nodiscard]] std::size_t others_awake() const noexcept {
    const std::size_t awake = awake_workers();
    return awake == 0 ? 0 : awake - 1;
  }

  /// Whether what is queued calls for one more worker than the `others` awake: with
  /// short handlers and another worker awake, more than wake_backlog jobs (below that
  /// the awake ones keep up); otherwise any job. The same test decides whether submit()
  /// wakes a parked worker and whether a worker goes (or stays) idle.
  [[nodiscard]] bool backlog_for_another(std::size_t others) const noexcept {
    const std::size_t queued = queue_.size();
    if (others == 0 || !short_jobs_.load(std::memory_order_relaxed)) return queued > 0;
    return queued > wake_backlog;
  }

  /// After a push: wake a parked worker if needed.
  void wake_for_submit() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (parking_.parked() == 0 || parking_.spinning() != 0) return;
    // With an awake worker that keeps up, it is back before a parked one could wake.
    if (backlog_for_another(awake_workers())) parking_.wake_one();
  }

  /// After taking a job: if more are queued than the awake workers keep up with, a
  /// parked worker helps.
  void wake_for_backlog() {
    if (parking_.parked() == 0) return;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (parking_.spinning() != 0) return;
    if (backlog_for_another(awake_workers())) parking_.wake_one();
  }

  /// The spinner's look for work: true when some is there for it (backlog_for_another).
  bool spin_for_work(const worker_slot& s) noexcept {
    return worker_parking::spin(
        spin_rounds,
        [&] {
          return spilled_.load(std::memory_order_relaxed) != 0 ||
                 backlog_for_another(others_awake());
        },
        [&] {
          return halt_.load(std::memory_order_relaxed) ||
                 s.state.load(std::memory_order_relaxed) != slot_running;
        });
  }

  /// Parks s until woken with a token (true: s now holds a spinning unit), its state
  /// changes, halt, or `wait`. `spinning`: s holds a unit, given up here.
  bool park(worker_slot& s, std::chrono::nanoseconds wait, bool spinning) {
    return parking_.park(
        wait, spinning,
        [&] {
          // Not has_work(): waiting retries are covered by `wait` (until the first is due).
          // The test submit() makes before waking a parked worker: either this sees the
          // job, or submit() sees s parked (the fences in worker_parking::park and
          // wake_for_submit).
          if (spilled_.load(std::memory_order_acquire) != 0 ||
              backlog_for_another(awake_workers())) {
            return false;
          }
          if (queue_.empty() && !queue_was_empty_.load(std::memory_order_relaxed)) {
            queue_was_empty_.store(true, std::memory_order_relaxed);
          }
          return true;
        },
        [&] {
          return !halt_.load(std::memory_order_acquire) &&
                 s.state.load(std::memory_order_acquire) == slot_running;
        });
  }

  /// Asks CoDel about `env` (under shed_mutex_, with the time read there so decisions
  /// see time in order); a shed job goes to the DLQ as a failure that never ran.
  bool shed_for_delay(envelope& env, worker_slot& s) {
    time_point now{};
    // Jobs behind it: the queue, s's batch, and what retiring workers gave back.
    const std::size_t behind =
        queue_.size() + s.batch.held() + spilled_.load(std::memory_order_acquire);
    {
      std::lock_guard lock(shed_mutex_);
      now = clock_.now();
      const bool drop = shedder_->should_drop(now, env.enqueued_at, behind);
      shedding_.store(shedder_->dropping(), std::memory_order_relaxed);
      if (!drop) return false;
    }
    const queue_delay_shedding_config& c = *config_.queue_delay_shedding;
    using ms = std::chrono::duration<double, std::milli>;
    job_result why = job_result::permanent_failure(
        fmt::format("shed: waited {} in the queue; queue delay above target {} for at "
                    "least interval {}",
                    ms(now - env.enqueued_at), ms(c.target), ms(c.interval)),
        std::string(queue_delay_shed_error_type));
    env.first_failure = now;
    dead_letter(std::move(env), std::move(why), now);
    bump(s.shed, s, std::memory_order_release);  // after the DLQ has it
    if (idle_waiters_.load(std::memory_order_relaxed) != 0) idle_cv_.notify_all();
    return true;
  }

  /// s starts `env` (taken from the queue): the age of the oldest queued job is then
  /// at most its own. (The queue is marked as seen empty by a worker going idle, not
  /// here: no shared write per job.)
  static void took(worker_slot& s, const envelope& env) noexcept {
    s.last_taken.store(ns_since_epoch(env.enqueued_at), std::memory_order_relaxed);
  }

  void mark_seen_empty() noexcept {
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
        return;  // it had not left yet: it stays
      }
    }
    if (s.thread.joinable()) s.thread.join();  // it has left (state == stopped)
    {
      std::lock_guard slot_lock(s.mutex);
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
        spill_held(s);  // its batch is for the workers that stay
        if (s.state.compare_exchange_strong(state, slot_stopped,
                                            std::memory_order_acq_rel)) {
          if (idle_waiters_.load(std::memory_order_relaxed) != 0) idle_cv_.notify_all();
          return;
        }
        continue;  // set_workers kept it
      }
      if (run_one(s, !std::exchange(s.eager, false))) continue;
      s.eager = idle_wait(s);
    }
    s.state.store(slot_stopped, std::memory_order_release);
  }

  /// Nothing to run (for s): spin (if no other worker does), then park until woken,
  /// retired, halted or the next retry may be due. True when it waited without being
  /// woken: its next look then takes a batch whoever else is awake (a worker awake but
  /// stuck in a long handler leaves its share to it: at most one idle_poll late).
  bool idle_wait(worker_slot& s) {
    const std::chrono::nanoseconds wait = idle_wait_time();
    if (!queue_.closed() && !retry_full()) {
      // A worker that leaves queued jobs to the others awake parks at once: spinning is
      // for the one that waits for the next job.
      bool spinning = queue_.empty() && parking_.try_spin();
      for (;;) {
        if (spinning && spin_for_work(s)) {
          parking_.end_spin();
          return false;
        }
        if (!park(s, spinning ? idle_wait_time() : wait, spinning)) return true;
        spinning = true;  // woken with a token: look for the job that came
      }
    }
    mark_seen_empty();
    parking_.wait(wait, [&] {
      return halt_.load(std::memory_order_acquire) ||
             s.state.load(std::memory_order_acquire) != slot_running;
    });
    return true;
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
        spill_held(s);  // its batch is for the lanes that stay (or stop())
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
      mark_seen_empty();
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
  /// Every accepted job has completed (succeeded, dead-lettered or shed). Reads the
  /// completions first: both sums only grow, and a job is counted accepted before it
  /// can complete, so equal sums mean that at the moment the completions were read,
  /// nothing was queued, running or waiting for a retry.
  [[nodiscard]] bool idle_now() const noexcept {
    std::uint64_t done = 0;
    auto add = [&](const worker_slot& s) {
      done += s.succeeded.load(std::memory_order_acquire);
      done += s.dead_lettered.load(std::memory_order_acquire);
      done += s.shed.load(std::memory_order_acquire);
    };
    add(caller_slot_);
    for (std::size_t i = 0; i < config_.max_workers; ++i) {
      const worker_slot* s = slots_[i].load(std::memory_order_acquire);
      if (s == nullptr) break;
      add(*s);
    }
    std::uint64_t accepted = 0;
    for (const submit_stripe& stripe : stripes_) accepted += stripe.accepted();
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
    for (const submit_stripe& stripe : stripes_) n += stripe.in_progress();
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
    for (const submit_stripe& stripe : stripes_) n += stripe.in_progress();
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

  // queue-delay shedding (empty when off)
  std::mutex shed_mutex_;
  std::optional<queue_delay_shedder<time_point>> shedder_;  // shed_mutex_
  std::atomic<bool> shedding_{false};

  // batches given back by retiring workers (taken before the queue)
  std::mutex spill_mutex_;
  std::deque<envelope> spill_;
  std::atomic<std::size_t> spilled_{0};

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
  std::array<submit_stripe, stripe_count> stripes_{};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> halt_{false};
  std::atomic<bool> stopped_{false};
  worker_parking parking_;  // idle pool workers; its mutex also orders halt_ changes
  std::atomic<bool> short_jobs_{false};  // sampled handler time < short_job_ns
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

}  // namespace outgrow::detail
