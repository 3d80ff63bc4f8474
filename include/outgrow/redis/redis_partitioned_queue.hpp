// outgrow/redis/redis_partitioned_queue.hpp — one queue spread over N Redis streams
// (several Cluster masters), per-key order kept by a consistent-hash ring.
//
// What: redis_partitioned_queue<Job> is N redis_stream_queue partitions named
// "<base>{<tag0>}", "<base>{<tag1>}", ... (base = config.queue.stream). A producer picks
// the partition of a job by its partition key on outgrow's consistent-hash ring
// (routing/hash_ring.hpp, the partition streams as nodes), so all jobs of one key go to
// one stream in enqueue order. redis_partitioned_worker<Job> consumes every partition,
// polling them round-robin. Each partition is a full redis_stream_queue (retries, dead
// letters per partition, idempotency keys, metrics; see redis_stream_queue.hpp).
//
// When: one stream's master is the bottleneck (a stream lives in one slot, so on one
// Cluster master): partitions put the queue on several masters. Keep one stream when one
// master is enough — partitions cost a poll each and split the dead letters.
//
//   outgrow::redis_partitioned_queue_config cfg{
//       .queue = {.connection = {.cluster = {.nodes = {{"10.0.0.7", 7000}}}},
//                 .stream = "shop:orders"},
//       .partitions = 6};
//   outgrow::redis_partitioned_queue<order> q(cfg);
//   q.enqueue(o, o.customer_id);            // same customer: same partition, in order
//   outgrow::redis_partitioned_worker<order> w(cfg, [](order& o) { ship(o); });
//   std::jthread t([&](std::stop_token st) { w.run(st); });
//
// Tags (how partitions land on different masters): the tag of partition i of N is
// "p<i>" when its hash slot lies in the i-th N-th of the 16384 slots, else the first
// "p<i>.<j>" (j = 1, 2, ...) whose slot does. The names depend only on base, i and N
// (every process computes the same ones, whatever the slot map), and the partitions'
// slots are spread evenly over the slot space — so on a cluster whose masters own equal
// contiguous ranges (redis-cli --cluster create, or after rebalance) with N a multiple of
// the masters, each master gets N / masters partitions. A reshard may later move slots
// (stream(i) names partition i; CLUSTER KEYSLOT and CLUSTER SLOTS show where it is now).
//
// Order: per partition key, jobs are enqueued into one stream in order (enqueue_many
// keeps the batch's order). They are processed in that order when one worker at a time
// consumes a partition (one redis_partitioned_worker, or several each given its own
// `only` partitions); several workers in one partition's group run its jobs concurrently
// (and a retry runs after later jobs), as with any consumer group.
//
// Trade-offs: changing `partitions` moves ~1/N of the keys to other streams (the ring);
// jobs already queued stay where they are, so per-key order can break across the change —
// drain first. A worker's round over N partitions blocks at most block_timeout in total
// (each XREADGROUP waits block_timeout / N).
//
// Thread-safety: redis_partitioned_queue — every member from any thread (each partition
// is a thread-safe redis_stream_queue). redis_partitioned_worker — poll()/run() on one
// thread, request_stop() and metrics() from any.
// Complexity: partition_of is one xxh3 hash and a ring lookup (O(1) on average);
// enqueue_many one pipelined round trip per partition touched; a worker round one
// XREADGROUP per partition. Measured cost: not yet measured (each partition costs what a
// redis_stream_queue does; see README "Redis").
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/redis/detail/cluster.hpp>
#include <outgrow/redis/redis_stream_queue.hpp>
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/redis_cluster_slots.hpp>

namespace outgrow {

struct redis_partitioned_queue_config {
  /// The config every partition is built from; queue.stream is the base name (no '{' or
  /// '}': the partition's tag is appended), queue.consumer the workers' name prefix.
  redis_stream_queue_config queue{};
  /// Number of partitions: 4. [1, 1024]
  std::size_t partitions = 4;
  /// Partitions this worker consumes (indexes); empty = all. Producers ignore it.
  std::vector<std::size_t> only{};
};

namespace detail {

/// The hash tag of partition i of n (see the header comment: "p<i>", or "p<i>.<j>"
/// whose slot lies in the i-th n-th of the slot space).
inline std::string rpq_tag(std::size_t i, std::size_t n) {
  const std::size_t lo = i * redis_cluster_slot_count / n;
  const std::size_t hi = (i + 1) * redis_cluster_slot_count / n;  // exclusive
  std::string tag = "p" + std::to_string(i);
  for (std::size_t j = 1; j < 1'000'000; ++j) {
    const std::size_t slot = redis_cluster_hash_slot(tag);
    if (slot >= lo && slot < hi) return tag;
    tag = "p" + std::to_string(i) + "." + std::to_string(j);
  }
  return "p" + std::to_string(i);  // unreachable in practice (each try hits 1/n)
}

/// `c` checked (config_error naming "partitions", "only" or "queue.stream").
inline redis_partitioned_queue_config rpq_validated(redis_partitioned_queue_config c) {
  constexpr std::string_view who = "redis_partitioned_queue";
  require_in_range(who, "partitions", c.partitions, std::size_t{1}, std::size_t{1024});
  require(c.queue.stream.find_first_of("{}") == std::string::npos, who, "queue.stream",
          "a base name without '{' or '}' (each partition appends its {hash tag})",
          c.queue.stream);
  for (const std::size_t p : c.only) {
    require_in_range(who, "only[]", p, std::size_t{0}, c.partitions - 1);
    require(std::count(c.only.begin(), c.only.end(), p) == 1, who, "only[]",
            "each partition at most once", p);
  }
  return c;
}

/// The stream names of the partitions of `c`, in partition order.
inline std::vector<std::string> rpq_streams(const redis_partitioned_queue_config& c) {
  std::vector<std::string> out;
  out.reserve(c.partitions);
  for (std::size_t i = 0; i < c.partitions; ++i) {
    out.push_back(c.queue.stream + "{" + rpq_tag(i, c.partitions) + "}");
  }
  return out;
}

/// The config of partition `i`.
inline redis_stream_queue_config rpq_partition_config(
    const redis_partitioned_queue_config& c, const std::string& stream, std::size_t i) {
  redis_stream_queue_config q = c.queue;
  q.stream = stream;
  if (!q.consumer.empty()) q.consumer += ":p" + std::to_string(i);
  return q;
}

}  // namespace detail

/// Producer side of a partitioned queue (see the header comment). Thread-safe.
template <class Job, class Codec = redis_default_codec,
          clock_source Clock = steady_clock_source>
requires redis_codec<Codec, Job>
class redis_partitioned_queue {
 public:
  using queue_type = redis_stream_queue<Job, Codec, Clock>;

  /// The partitions `config` names. Never connects here.
  /// Throws: config_error if a field is out of range (partitions, only, queue.*).
  explicit redis_partitioned_queue(redis_partitioned_queue_config config, Codec codec = {},
                                   Clock clock = {})
      : config_(detail::rpq_validated(std::move(config))),
        codec_(codec),
        streams_(detail::rpq_streams(config_)),
        ring_(streams_) {
    for (std::size_t i = 0; i < streams_.size(); ++i) {
      index_.emplace(streams_[i], i);
      partitions_.push_back(std::make_unique<queue_type>(
          detail::rpq_partition_config(config_, streams_[i], i), codec, clock));
    }
  }

  /// The partition of a partition key: its owner on the consistent-hash ring.
  [[nodiscard]] std::size_t partition_of(std::string_view key) const {
    return index_.at(*ring_.lookup(key));
  }

  /// enqueue() on the key's partition (see redis_stream_queue::enqueue).
  enqueue_result enqueue(const Job& job, std::string_view partition_key,
                         std::optional<std::string_view> idempotency_key = std::nullopt) {
    return partitions_[partition_of(partition_key)]->enqueue(job, idempotency_key);
  }

  /// Enqueues a batch: jobs grouped by partition (partition_key_of(job) -> something
  /// convertible to std::string_view), one pipelined round trip per partition touched;
  /// one result per job, in order.
  template <class PartitionKeyOf>
  requires std::invocable<PartitionKeyOf&, const Job&>
  std::vector<enqueue_result> enqueue_many(std::span<const Job> jobs,
                                           PartitionKeyOf partition_key_of) {
    std::vector<std::vector<std::size_t>> by_partition(partitions_.size());
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      by_partition[partition_of(std::string_view(partition_key_of(jobs[i])))].push_back(i);
    }
    std::vector<enqueue_result> out(jobs.size());
    std::vector<std::string> payloads(jobs.size());
    std::vector<std::string_view> p;
    std::vector<std::size_t> sent;
    for (std::size_t part = 0; part < by_partition.size(); ++part) {
      p.clear();
      sent.clear();
      for (const std::size_t i : by_partition[part]) {
        try {
          codec_.encode(jobs[i], payloads[i]);
          p.emplace_back(payloads[i]);
          sent.push_back(i);
        } catch (...) {
          out[i] = {enqueue_status::encode_error, {}, false, "the codec threw"};
        }
      }
      if (sent.empty()) continue;
      const std::vector<std::optional<std::string_view>> keys(sent.size());
      std::vector<enqueue_result> r = partitions_[part]->enqueue_many_encoded(p, keys);
      for (std::size_t j = 0; j < r.size(); ++j) out[sent[j]] = std::move(r[j]);
    }
    return out;
  }

  [[nodiscard]] std::size_t partitions() const noexcept { return partitions_.size(); }
  /// Partition i's queue (metrics, dead letters). Throws: std::out_of_range.
  [[nodiscard]] queue_type& partition(std::size_t i) { return *partitions_.at(i); }
  /// Partition i's stream name. Throws: std::out_of_range.
  [[nodiscard]] const std::string& stream(std::size_t i) const { return streams_.at(i); }
  [[nodiscard]] const redis_partitioned_queue_config& config() const noexcept {
    return config_;
  }

 private:
  const redis_partitioned_queue_config config_;
  const Codec codec_;
  const std::vector<std::string> streams_;
  const ring_placement<std::string> ring_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<std::unique_ptr<queue_type>> partitions_;
};

/// Consumer side: one redis_stream_worker per partition (all, or config.only), polled
/// round-robin. poll()/run() on one thread; request_stop() and metrics() from any.
template <class Job, class Codec = redis_default_codec,
          clock_source Clock = steady_clock_source>
requires redis_codec<Codec, Job>
class redis_partitioned_worker {
 public:
  using worker_type = redis_stream_worker<Job, Codec, Clock>;

  /// Workers for the partitions `config` names, sharing `handler` (one object, not a
  /// copy per partition). Each XREADGROUP blocks block_timeout / partitions (at least
  /// 1 ms). Never connects here.
  /// Throws: config_error if a field is out of range.
  template <redis_job_handler<Job> H>
  redis_partitioned_worker(redis_partitioned_queue_config config, H handler,
                           Codec codec = {}, Clock clock = {})
      : config_(detail::rpq_validated(std::move(config))) {
    const std::vector<std::string> streams = detail::rpq_streams(config_);
    std::vector<std::size_t> mine = config_.only;
    if (mine.empty()) {
      for (std::size_t i = 0; i < streams.size(); ++i) mine.push_back(i);
    }
    auto shared = std::make_shared<H>(std::move(handler));
    auto forward = [shared](Job& job, redis_job_context& ctx) -> decltype(auto) {
      if constexpr (std::invocable<H&, Job&, redis_job_context&>) {
        return std::invoke(*shared, job, ctx);
      } else {
        (void)ctx;
        return std::invoke(*shared, job);
      }
    };
    for (const std::size_t i : mine) {
      redis_stream_queue_config q = detail::rpq_partition_config(config_, streams[i], i);
      q.block_timeout = std::max<std::chrono::nanoseconds>(
          std::chrono::milliseconds{1},
          q.block_timeout / static_cast<std::int64_t>(streams.size()));
      workers_.push_back(
          std::make_unique<worker_type>(std::move(q), forward, codec, clock));
    }
  }

  /// One round: poll() on each partition's worker once. unavailable when every
  /// partition was; stopped once request_stop() was seen.
  poll_result poll() {
    poll_result total;
    std::size_t unavailable = 0;
    for (std::size_t n = 0; n < workers_.size(); ++n) {
      worker_type& w = *workers_[next_];
      next_ = (next_ + 1) % workers_.size();
      const poll_result r = w.poll();
      total.processed += r.processed;
      if (r.status == poll_status::stopped) {
        total.status = poll_status::stopped;
        return total;
      }
      if (r.status == poll_status::unavailable) ++unavailable;
    }
    if (unavailable == workers_.size()) total.status = poll_status::unavailable;
    return total;
  }

  /// Polls until request_stop() (or `token`); while every partition is unreachable it
  /// waits (real time) up to block_timeout between rounds.
  void run(std::stop_token token = {}) {
    std::stop_callback on_stop(token, [this] { request_stop(); });
    while (!stop_requested()) {
      if (poll().status == poll_status::unavailable && !stop_requested()) {
        std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(
            config_.queue.block_timeout, std::chrono::milliseconds{50}));
      }
    }
  }

  /// Asks run() / poll() to stop after the job in progress. Async-signal-safe.
  void request_stop() noexcept {
    stop_.store(true, std::memory_order_relaxed);
    for (auto& w : workers_) w->request_stop();
  }
  [[nodiscard]] bool stop_requested() const noexcept {
    return stop_.load(std::memory_order_relaxed);
  }

  /// The workers' counters summed.
  [[nodiscard]] redis_stream_worker_metrics metrics() const noexcept {
    redis_stream_worker_metrics sum;
    for (const auto& w : workers_) sum += w->metrics();
    return sum;
  }
  /// The worker of the k-th consumed partition. Throws: std::out_of_range.
  [[nodiscard]] worker_type& worker(std::size_t k) { return *workers_.at(k); }
  [[nodiscard]] std::size_t workers() const noexcept { return workers_.size(); }

 private:
  const redis_partitioned_queue_config config_;
  std::vector<std::unique_ptr<worker_type>> workers_;
  std::size_t next_ = 0;
  std::atomic<bool> stop_{false};
};

}  // namespace outgrow
