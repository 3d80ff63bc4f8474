// outgrow/redis/redis_stream_queue.hpp — the work queue on Redis Streams: producers and
// workers in many processes on many hosts, crash-safe, with a dead-letter stream.
//
// When one process's work_queue (queue/work_queue.hpp) is outgrown, the queue moves into
// a broker. redis_stream_queue<Job> (producer side, metrics, dead letters) and
// redis_stream_worker<Job> (consumer side) keep work_queue's semantics — handlers
// returning void / bool / job_result, max_attempts, a dead-letter queue with the last
// error, attempts and times, inspect / replay / purge, idempotency keys — over one Redis
// stream and a consumer group, via hiredis:
//
//   outgrow::redis_stream_queue_config cfg{
//       .connection = {.host = "10.0.0.5"},        // command_timeout: the queue's 1 s
//       .stream = "{shop}:orders", .max_attempts = 5, .visibility_timeout = 60s};
//   outgrow::redis_stream_queue<order> q(cfg);                 // producer + admin
//   if (!q.enqueue(o, o.id)) log("Redis unavailable");         // XADD; key = o.id
//   auto all = q.enqueue_many(std::span<const order>(batch));  // one round trip
//   using ctx = outgrow::redis_job_context;
//   outgrow::redis_stream_worker<order> w(cfg, [&](order& o, ctx& c) {
//     charge(o);                                              // at least once
//     c.commit({"HINCRBY", "{shop}:charged", o.id, "1"});     // exactly once per key
//   });
//   std::jthread t([&](std::stop_token st) { w.run(st); });   // XREADGROUP loop
//   fmt::print("{}\n", *q.metrics());                          // backlog, pending, ...
//   q.dead_letters().replay_all();                             // after fixing the cause
//
// Keys (one Redis Cluster slot: `stream` has a {hash tag} there): the stream, its
// consumer group `group`, the dead-letter stream <stream>:dead, <stream>:failures (a
// hash: the last error of entries waiting for a retry), <stream>:stats (a hash of
// totals) and <stream>:done:<key> (completed idempotency keys, each with idempotency_ttl).
// Collisions are impossible by construction: the constructors refuse (config_error naming
// field "stream" and the value) a stream name that ends in ":dead", ":failures", ":stats"
// or ":done" or contains ":done:" — with those refused, no queue's stream or derived key
// can equal another queue's (so a queue "x:dead" can never consume x's dead letters).
// Keys that something else created under these names with another type (a string at
// <stream>:failures) are detected by the scripts, which check the type of every key they
// write before changing anything (see Delivery); keep commit() keys outside <stream>:*.
//
// Redis Cluster (connection.cluster): every script touches several of these keys, so
// they must share a slot — the constructors refuse (config_error naming "stream", the
// value and the rule) a stream without a hash tag ("{orders}", "shop:{orders}"; a '{'
// then a '}' with at least one byte between): the tag, not the whole name, is hashed,
// so every derived key lands in the stream's slot and no command can fail CROSSSLOT.
// Each object's connection goes to the master of that slot (read with CLUSTER SLOTS
// from the seed nodes) and follows MOVED (reconnects there), ASK (ASKING on the named
// node, scripts sent as EVAL with their source) and TRYAGAIN / CLUSTERDOWN (10 ms x
// attempt), at most connection.cluster.max_redirects times per command: resharding the
// queue's slot is invisible to producers (a script whose keys are split mid-migration
// gets TRYAGAIN until the slot has moved; past the bound it counts as a server error and
// the entry is delivered again). A queue lives on one master; spread a queue over
// several with redis/redis_partitioned_queue.hpp. A master's death: as Durability below.
//
// Delivery (at least once). enqueue() is XADD (with MAXLEN ~ max_length if set); a result
// of ok means Redis acknowledged it — with AOF and appendfsync always, it survives a Redis
// crash. A worker reads new entries with XREADGROUP (COUNT batch, BLOCK block_timeout),
// so each sits in the group's pending-entries list (PEL) with a delivery count until
// acknowledged. Every claim_interval (and at once again while XAUTOCLAIM reports more)
// the worker also XAUTOCLAIMs entries idle longer than visibility_timeout (their worker
// died or hung; a handler that runs longer calls ctx.extend() as a heartbeat) — that
// delivery count is the attempt number. Success: a Lua script XACKs and XDELs the entry
// (the stream holds only jobs not yet finished); the completion scripts of one batch are
// sent together, pipelined, when the batch's handlers have run (earlier before a job
// with the key of a job waiting to complete, and before a stop) — so a job finished
// early in a batch stays pending until the batch ends: keep batch x handler time well
// under visibility_timeout. A retryable failure before max_attempts
// keeps the entry pending and makes it claimable after retry_delay (XCLAIM ... IDLE, which
// does not count a delivery) and records the error. After the max_attempts-th delivery
// fails — or when an entry is claimed for a (max_attempts+1)-th delivery, because a worker
// died holding it (SQS's maxReceiveCount; RabbitMQ's delivery-limit) — one Lua script XADDs
// it to the dead-letter stream with its error, attempts and first / last failure times,
// then XACKs and XDELs it: it is never both acknowledged and lost. Scripts act only on
// entries still pending (a "stale" worker whose job was taken over changes nothing: the
// XACK is the guard). Redis does not roll back a script that fails part-way, so every
// script first checks the type of each key it writes and its arguments, and does what can
// still fail before its first XACK / XDEL; a refused script returns an OUTGROW_WRONGTYPE
// error having changed nothing (the worker's metrics().server_errors; the entry stays
// pending and is delivered again after visibility_timeout, so fixing the key lets it
// finish).
//
// Untrusted fields. Anything read back from Redis may have been written by another client
// or an operator: entries are decoded strictly (detail/stream_fields.hpp — exact field
// names, each once; numbers plain decimal, 64-bit, overflow-checked with from_chars;
// times within system_clock's range). A main-stream entry with no job field, two, an
// unknown field or a repeated key is malformed: it is dead-lettered at once without running
// (error_type "outgrow::malformed_entry"; counted in the worker's and the queue's
// metrics().malformed), keeping its job field only when there was exactly one. A dead
// letter whose fields do not decode comes back from inspection with field_error set and
// is counted in dead_letters().metrics().decode_errors; it and a dead letter without a job
// field are not replayable (replay leaves them: result.left) — never an empty job. Delivery
// counts are 64-bit: a count of 2^32 is past max_attempts, not 0.
//
// Guarantees (each shown by tests/integration/redis_stream_queue_test.cpp):
//   - enqueue() ok: the job is in the stream (across a Redis crash only with AOF and
//     appendfsync always). Not ok with maybe_enqueued: unknown — retry with the same key.
//   - At least once: every enqueued job is eventually completed (XACK + XDEL),
//     dead-lettered (with its payload; the DLQ keeps about dead_letter_max_length newest)
//     or — only with max_length set — trimmed; until then it stays in the stream. Never
//     acknowledged and lost, also when a script is refused.
//   - Bounded redelivery: a job held by a crashed or hung worker is delivered again once
//     idle for visibility_timeout (ctx.extend() restarts it), then claimed within
//     claim_interval + block_timeout by a polling worker; a failed job after retry_delay.
//     A handler runs at most max_attempts times per stream entry (a later delivery
//     dead-letters it unrun), as long as Redis keeps its data; a replay is a new entry.
//   - Exactly once: the Redis effects passed to ctx.commit() of a job with an idempotency
//     key, within idempotency_ttl; without a key, at most once per stream entry. Effects
//     outside Redis: at least once. A dead letter is replayed at least once (XADD, then
//     XDEL), a duplicate-key one dropped; malformed entries never run or replay.
//   - request_stop() is seen within block_timeout plus the handler in progress.
//
// Idempotency, precisely. A job may be delivered more than once (worker crash, a handler
// slower than visibility_timeout, a producer retrying an ambiguous XADD); the handler
// runs again then. Give a job a key (enqueue(job, key)) and:
//   - before running a handler the worker skips (acknowledges as a duplicate) a job
//     whose key is in the completed set (<stream>:done:<key>);
//   - the Redis commands a handler passes to ctx.commit(...) run inside the completion
//     script, only if that script's SET <done key> NX PX idempotency_ttl succeeds and
//     the entry was still pending: effects kept in Redis happen exactly once per key
//     (within idempotency_ttl), whatever the redeliveries. Without a key they happen at
//     most once per stream entry (XACK's result guards them).
//   - effects outside Redis (an HTTP call in the handler) happen at least once: make
//     them idempotent with the same key (ctx.idempotency_key()) on the other side.
// commit() commands run with redis.pcall: one that fails (WRONGTYPE) is counted in
// the worker's metrics().effect_errors and does not stop the acknowledgement. Keys they
// touch must be in the stream's slot on a Redis Cluster. A dead-lettered job marks nothing;
// a job whose key completed meanwhile (another copy) is acknowledged as a duplicate instead
// of dead-lettered, and replaying a dead letter whose key completed drops it as a
// duplicate.
//
// Durability. Redis replicates asynchronously: a master acknowledges an XADD before any
// replica has it, so a master that dies (a crash, a kill, a failover by Sentinel or the
// Cluster) loses the writes of its last moments — acknowledged enqueues included. With
// min_replicas = n > 0, enqueue() sends WAIT n replica_timeout after its XADD(s) (same
// round trip) and reports ok only if n replicas acknowledged; otherwise not_durable (the
// master has the job — id set — but it is not known to be safe; maybe_enqueued: retry
// with the same key). WAIT does not make Redis strongly consistent (a replica that got
// the write may still not be the one promoted, and it is in memory only unless AOF), but
// with n = 1 and one replica per master a single master failure loses none (shown by
// tests/integration/redis_cluster_test.cpp). A master left without replicas
// after a failover makes durable enqueues not_durable until a replica is back. Worker
// writes need no WAIT: a lost completion reverts the entry to pending (it runs again: at
// least once), a lost dead-lettering or replay reverts as a whole (the scripts' effects
// replicate atomically).
//
// Redis unavailable: producers get enqueue_status::unavailable at once (on_unavailable =
// fail, the default) or retry until enqueue_deadline (block), reconnecting with
// reconnect_backoff; after a transport error the XADD may or may not have happened
// (result.maybe_enqueued — retrying with the same key is safe). Workers back off and
// reconnect in run(); entries they held stay pending and are claimed again after
// visibility_timeout. Nothing acknowledged is lost; nothing is acknowledged twice.
//
// Graceful stop: request_stop() (any thread) — run() finishes the handler in progress,
// then releases the entries it read but did not start (XCLAIM IDLE visibility_timeout
// RETRYCOUNT n-1: claimable at once by others, the attempt not charged) and returns. A
// blocked XREADGROUP returns within block_timeout.
//
// Metrics (queue.metrics(), fmt-printable; nullopt when Redis is unreachable): length
// (XLEN), backlog (entries never delivered: the group's lag, else length - pending),
// pending, consumers, oldest_age (the oldest unfinished job, from its stream ID),
// oldest_pending_age, dead_letters (XLEN of the DLQ) and totals completed / duplicates /
// dead_lettered / replayed / purged / malformed. Ages use Redis's TIME, so hosts' clocks
// do not matter; dead-letter times are Redis's TIME too (system_clock time points).
//
// Codec: the redis_codec policy of redis/codec.hpp (redis_default_codec by default:
// std::string as bytes, numbers as text, other trivially copyable types as bytes).
//
// Defaults: max_attempts 3 (work_queue's, the textbook's); visibility_timeout 30 s and
// the 10,000-entry DLQ (MAXLEN ~, so approximately) — SQS's default visibility timeout
// and Sidekiq's dead set; retry_delay 1 s; block 500 ms; batch 16; claim every 1 s;
// idempotency keys kept 24 h; connection (redis/connection.hpp): connect 200 ms /
// command 1 s (longer than redis_tier's: a queue waits for its broker, a cache does not),
// reconnect backoff 10 ms .. 1 s with a random jitter seed per object (set
// connection.seed for a reproducible one).
// MAXLEN trimming of the main stream is off: trimming drops unfinished jobs (pending ones
// are counted in the worker's metrics().trimmed when XAUTOCLAIM meets them; never-delivered
// ones vanish) — set max_length only to bound a runaway producer.
//
// Differences from work_queue: retries wait a fixed retry_delay (a pending entry's idle
// time is the only timer Redis keeps), not a backoff policy; dead-letter IDs are stream
// IDs (strings) and replay always targets the main stream; times come from Redis. The
// Clock policy only paces reconnect attempts and claim_interval (manual_clock in tests).
//
// Headers: this one (documentation, enqueue results, queue metrics, the producer) includes
// redis_stream_queue_config.hpp (the config), redis_dead_letters.hpp (dead letters) and
// redis_stream_worker.hpp (worker, job context); the engine is in redis/detail/stream_*
// (Lua scripts, keys, the connection, field decoding).
//
// Thread-safety: redis_stream_queue and its dead_letters(): every member from any thread
// (one connection each, behind a mutex). redis_stream_worker: poll()/run() on one thread
// at a time; request_stop(), stop_requested() and metrics() from any thread. Scale out with
// more workers (threads or processes), each with its own object.
// Complexity: enqueue one round trip; enqueue_many one round trip per batch (pipelined
// XADDs; with min_replicas, one WAIT at its end); a worker one XREADGROUP per batch, one
// pipelined EXISTS round trip per batch with keys, one pipelined round trip of completion
// scripts per batch (retries and dead letters: one EVAL each); metrics one pipelined
// round trip. Commands allocate their argument arrays and replies (network-bound paths);
// a pipeline is formatted by outgrow (no allocation per argument) and written each 2 KiB,
// so Redis runs its first commands while the rest are formatted.
// Measured cost (benchmarks/redis_bench.cpp, loopback, README "Redis", Release, quiet
// machine, 2026-12-03, a loopback round trip ~120 us): enqueue 0.93x a bare LPUSH;
// enqueue_many 0.91x / 0.90x the same batch of 16 / 128 pipelined LPUSHes (0.75x-0.96x /
// 0.62x-0.93x over nine runs; raw pipelined XADD is 0.74x-0.78x LPUSH at 128, and
// enqueue_many 1.15x raw XADD); enqueue + consume + acknowledge 0.54x a LPUSH / RPOP
// list queue one job at a time, 0.94x in batches of 128.
#pragma once

#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/redis/codec.hpp>
#include <outgrow/redis/detail/stream_link.hpp>
#include <outgrow/redis/redis_dead_letters.hpp>
#include <outgrow/redis/redis_stream_queue_config.hpp>
#include <outgrow/redis/redis_stream_worker.hpp>

namespace outgrow {

enum class enqueue_status : std::uint8_t {
  ok = 0,            ///< Redis acknowledged the XADD
  unavailable = 1,   ///< no connection (fail policy), or a transport error
  timed_out = 2,     ///< block policy: still unavailable at enqueue_deadline
  encode_error = 3,  ///< the codec threw
  server_error = 4,  ///< Redis answered with an error (OOM, WRONGTYPE, ...)
  /// min_replicas > 0: the master took the job (id set) but fewer replicas than asked
  /// acknowledged it within replica_timeout — a failover now could lose it; it may still
  /// be there (maybe_enqueued): retry with the same key is safe.
  not_durable = 5,
};

[[nodiscard]] constexpr std::string_view to_string(enqueue_status s) noexcept {
  switch (s) {
    case enqueue_status::ok:
      return "ok";
    case enqueue_status::unavailable:
      return "unavailable";
    case enqueue_status::timed_out:
      return "timed_out";
    case enqueue_status::encode_error:
      return "encode_error";
    case enqueue_status::server_error:
      return "server_error";
    case enqueue_status::not_durable:
      return "not_durable";
  }
  return "unknown";
}

/// What enqueue() did; true when Redis acknowledged the job.
struct enqueue_result {
  enqueue_status status = enqueue_status::ok;
  /// The stream entry ID ("1700000000000-0") when ok (and when not_durable).
  std::string id{};
  /// Not ok, but an XADD was sent and its reply lost: the job may be in the stream.
  bool maybe_enqueued = false;
  /// The server's error reply or the transport error, when not ok.
  std::string error{};
  [[nodiscard]] bool ok() const noexcept { return status == enqueue_status::ok; }
  explicit operator bool() const noexcept { return ok(); }
};

struct redis_stream_queue_metrics {
  static constexpr std::string_view metrics_name = "redis_stream_queue_metrics";
  std::size_t length = 0;     ///< XLEN: jobs not yet finished (never delivered + pending)
  std::size_t backlog = 0;    ///< never delivered (consumer-group lag)
  std::size_t pending = 0;    ///< delivered, not yet acknowledged (the PEL)
  std::size_t consumers = 0;  ///< consumers the group has seen
  std::chrono::nanoseconds oldest_age{0};          ///< oldest unfinished job, since XADD
  std::chrono::nanoseconds oldest_pending_age{0};  ///< oldest pending job, since XADD
  std::size_t dead_letters = 0;                    ///< XLEN of the dead-letter stream
  // Totals since the queue was created, kept in <stream>:stats by every worker and admin:
  std::uint64_t completed = 0;      ///< jobs acknowledged as done
  std::uint64_t duplicates = 0;     ///< deliveries whose idempotency key had completed
  std::uint64_t dead_lettered = 0;  ///< jobs moved to the dead-letter stream
  std::uint64_t replayed = 0;       ///< dead letters sent back to the stream
  std::uint64_t purged = 0;         ///< dead letters deleted
  /// Stream entries whose fields were malformed (no or two job fields, unknown fields, a
  /// bad delivery count): dead-lettered without running, as "outgrow::malformed_entry".
  std::uint64_t malformed = 0;

  template <class F>
  void for_each_metric(F&& f) const {
    f("length", length);
    f("backlog", backlog);
    f("pending", pending);
    f("consumers", consumers);
    f("oldest_age", oldest_age);
    f("oldest_pending_age", oldest_pending_age);
    f("dead_letters", dead_letters);
    f("completed", completed);
    f("duplicates", duplicates);
    f("dead_lettered", dead_lettered);
    f("replayed", replayed);
    f("purged", purged);
    f("malformed", malformed);
  }
};

/// Producer and administration side of a queue on a Redis stream (see the header
/// comment). Thread-safe.
template <class Job, class Codec = redis_default_codec,
          clock_source Clock = steady_clock_source>
requires redis_codec<Codec, Job>
class redis_stream_queue {
 public:
  using job_type = Job;
  using dead_letter_type = redis_dead_letters<Job, Codec, Clock>;

  /// The producer and admin side of the queue `config` names. Never connects here.
  /// Throws: config_error if a config field is out of range (see
  /// redis_stream_queue_config).
  explicit redis_stream_queue(redis_stream_queue_config config, Codec codec = {},
                              Clock clock = {})
      : config_(detail::rsq_validated(std::move(config))),
        codec_(codec),
        wait_{std::to_string(config_.min_replicas),
              detail::rsq_ms(config_.replica_timeout)},
        link_(config_.connection, detail::rsq_keys(config_.stream, config_.group), clock),
        dead_(config_, std::move(codec), clock) {}

  redis_stream_queue(const redis_stream_queue&) = delete;
  redis_stream_queue& operator=(const redis_stream_queue&) = delete;

  /// XADD the job (with its idempotency key, if any). Never throws (allocation aside).
  enqueue_result enqueue(const Job& job,
                         std::optional<std::string_view> key = std::nullopt) {
    std::string payload;
    try {
      codec_.encode(job, payload);
    } catch (...) {
      return {enqueue_status::encode_error, {}, false, "the codec threw"};
    }
    return enqueue_encoded(payload, key);
  }

  /// XADD bytes already encoded with the codec.
  enqueue_result enqueue_encoded(std::string_view payload,
                                 std::optional<std::string_view> key = std::nullopt) {
    std::vector<enqueue_result> r =
        send_encoded(std::span(&payload, 1), std::span(&key, 1));
    return std::move(r.front());
  }

  /// Enqueues a batch: the XADDs (and, with min_replicas, one WAIT) pipelined in one
  /// round trip; one result per job, in order. Jobs of the batch keep their order in the
  /// stream (one connection, one pipeline). Never throws (allocation aside).
  std::vector<enqueue_result> enqueue_many(std::span<const Job> jobs) {
    return enqueue_many(jobs, [](const Job&) { return std::optional<std::string_view>(); });
  }

  /// enqueue_many() with an idempotency key per job: key_of(job) returns something
  /// convertible to std::optional<std::string> (nullopt = no key).
  template <class KeyOf>
  requires std::invocable<KeyOf&, const Job&>
  std::vector<enqueue_result> enqueue_many(std::span<const Job> jobs, KeyOf key_of) {
    std::vector<std::string> payloads(jobs.size());
    std::vector<std::optional<std::string>> keys(jobs.size());
    std::vector<std::size_t> sent;  // indexes of the jobs that encoded
    sent.reserve(jobs.size());
    std::vector<enqueue_result> out(jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      try {
        codec_.encode(jobs[i], payloads[i]);
        keys[i] = std::optional<std::string>(key_of(jobs[i]));
        sent.push_back(i);
      } catch (...) {
        out[i] = {enqueue_status::encode_error, {}, false, "the codec threw"};
      }
    }
    std::vector<std::string_view> p;
    std::vector<std::optional<std::string_view>> k;
    p.reserve(sent.size());
    k.reserve(sent.size());
    for (const std::size_t i : sent) {
      p.emplace_back(payloads[i]);
      k.emplace_back(keys[i]);
    }
    std::vector<enqueue_result> r = send_encoded(p, k);
    for (std::size_t j = 0; j < sent.size(); ++j) out[sent[j]] = std::move(r[j]);
    return out;
  }

  /// enqueue_many() of payloads already encoded with the codec and their idempotency
  /// keys (keys.size() == payloads.size()).
  /// Throws: std::invalid_argument if the sizes differ.
  std::vector<enqueue_result> enqueue_many_encoded(
      std::span<const std::string_view> payloads,
      std::span<const std::optional<std::string_view>> keys) {
    if (keys.size() != payloads.size()) {
      throw std::invalid_argument(
          "redis_stream_queue::enqueue_many_encoded: keys.size() != payloads.size()");
    }
    return send_encoded(payloads, keys);
  }

  /// Queue metrics from Redis; nullopt when Redis cannot be reached.
  [[nodiscard]] std::optional<redis_stream_queue_metrics> metrics() {
    std::lock_guard lock(mutex_);
    const auto& k = link_.keys();
    const std::string_view a0[] = {"XLEN", k.stream};
    const std::string_view a1[] = {"XINFO", "GROUPS", k.stream};
    const std::string_view a2[] = {"XPENDING", k.stream, k.group};
    const std::string_view a3[] = {"XLEN", k.dead};
    const std::string_view a4[] = {"TIME"};
    const std::string_view a5[] = {"XRANGE", k.stream, "-", "+", "COUNT", "1"};
    const std::string_view a6[] = {"HMGET",      k.stats,         "completed",
                                   "duplicates", "dead_lettered", "replayed"};
    const std::string_view a7[] = {"HMGET", k.stats, "purged", "malformed"};
    const detail::rsq_argv cmds[] = {a0, a1, a2, a3, a4, a5, a6, a7};
    std::vector<detail::redis_reply_ptr> replies;
    if (!link_.exchange(cmds, replies)) return std::nullopt;
    using detail::rsq_int;
    using detail::rsq_str;
    redis_stream_queue_metrics m;
    m.length = static_cast<std::size_t>(rsq_int(replies[0].get()));
    std::optional<std::int64_t> lag;
    if (replies[1]->type == REDIS_REPLY_ARRAY) {
      for (std::size_t g = 0; g < replies[1]->elements; ++g) {
        const redisReply* info = replies[1]->element[g];
        if (info->type != REDIS_REPLY_ARRAY) continue;
        if (rsq_str(detail::rsq_field(info, "name")) != k.group) continue;
        m.consumers =
            static_cast<std::size_t>(rsq_int(detail::rsq_field(info, "consumers")));
        const redisReply* l = detail::rsq_field(info, "lag");
        if (l != nullptr && l->type == REDIS_REPLY_INTEGER) lag = l->integer;
      }
    }
    const std::int64_t now_ms = detail::rsq_time_ms(replies[4].get());
    const redisReply* p = replies[2].get();
    if (p->type == REDIS_REPLY_ARRAY && p->elements >= 2) {
      m.pending = static_cast<std::size_t>(rsq_int(p->element[0]));
      m.oldest_pending_age =
          detail::rsq_age(now_ms, detail::rsq_id_ms(rsq_str(p->element[1])));
    }
    m.backlog = lag ? static_cast<std::size_t>(std::max<std::int64_t>(0, *lag))
                    : (m.length > m.pending ? m.length - m.pending : 0);
    m.dead_letters = static_cast<std::size_t>(rsq_int(replies[3].get()));
    m.oldest_age = detail::rsq_age(now_ms, detail::rsq_first_id_ms(replies[5].get()));
    detail::rsq_read_counts(replies[6].get(),
                            {&m.completed, &m.duplicates, &m.dead_lettered, &m.replayed});
    detail::rsq_read_counts(replies[7].get(), {&m.purged, &m.malformed});
    return m;
  }

  /// The dead-letter stream (inspect / replay / purge).
  [[nodiscard]] dead_letter_type& dead_letters() noexcept { return dead_; }
  [[nodiscard]] const redis_stream_queue_config& config() const noexcept { return config_; }

 private:
  /// Sends the XADDs of `payloads` (with `keys`), retrying the unavailable ones until
  /// enqueue_deadline under the block policy.
  std::vector<enqueue_result> send_encoded(
      std::span<const std::string_view> payloads,
      std::span<const std::optional<std::string_view>> keys) {
    const auto deadline = std::chrono::steady_clock::now() + config_.enqueue_deadline;
    std::vector<enqueue_result> out(payloads.size());
    std::vector<std::size_t> todo(payloads.size());
    for (std::size_t i = 0; i < todo.size(); ++i) todo[i] = i;
    std::vector<bool> maybe(payloads.size(), false);
    for (;;) {
      try_enqueue_once(payloads, keys, todo, out);
      std::vector<std::size_t> again;
      for (const std::size_t i : todo) {
        maybe[i] = maybe[i] || out[i].maybe_enqueued;
        out[i].maybe_enqueued = maybe[i] && !out[i].ok();
        if (out[i].status == enqueue_status::unavailable) again.push_back(i);
      }
      if (again.empty() || config_.on_unavailable == redis_unavailable_policy::fail) {
        return out;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) {
        for (const std::size_t i : again) out[i].status = enqueue_status::timed_out;
        return out;
      }
      // Wait for the reconnect gate (real time: a producer blocking on its broker).
      std::chrono::nanoseconds wait = std::chrono::milliseconds{1};
      {
        std::lock_guard lock(mutex_);
        const auto next = link_.next_attempt();
        const auto clock_now = link_.clock().now();
        if (next > clock_now) {
          wait = std::max(
              wait, std::chrono::duration_cast<std::chrono::nanoseconds>(next - clock_now));
        }
      }
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(wait, deadline - now));
      todo = std::move(again);
    }
  }

  /// One pipelined attempt for the jobs `todo` indexes; results into out.
  void try_enqueue_once(std::span<const std::string_view> payloads,
                        std::span<const std::optional<std::string_view>> keys,
                        std::span<const std::size_t> todo,
                        std::vector<enqueue_result>& out) {
    std::lock_guard lock(mutex_);
    if (link_.get() == nullptr) {
      for (const std::size_t i : todo) {
        out[i] = {enqueue_status::unavailable, {}, false, link_.last_error()};
      }
      return;
    }
    const std::string maxlen =
        config_.max_length ? std::to_string(*config_.max_length) : std::string();
    std::vector<std::array<std::string_view, 10>> args(todo.size());
    std::vector<detail::rsq_argv> cmds;
    cmds.reserve(todo.size());
    for (std::size_t j = 0; j < todo.size(); ++j) {
      auto& a = args[j];
      std::size_t n = 0;
      a[n++] = "XADD";
      a[n++] = link_.keys().stream;
      if (config_.max_length) {
        a[n++] = "MAXLEN";
        a[n++] = "~";
        a[n++] = maxlen;
      }
      a[n++] = "*";
      a[n++] = "j";
      a[n++] = payloads[todo[j]];
      if (const auto& key = keys[todo[j]]) {
        a[n++] = "k";
        a[n++] = *key;
      }
      cmds.emplace_back(a.data(), n);
    }
    std::vector<detail::redis_reply_ptr> replies;
    std::vector<std::int64_t> acked;
    const bool durable = config_.min_replicas > 0;
    if (durable) link_.set_timeout(link_.command_timeout() + config_.replica_timeout);
    const bool ok = link_.exchange(cmds, replies, durable ? &wait_ : nullptr, &acked);
    if (durable) link_.set_timeout(link_.command_timeout());
    for (std::size_t j = 0; j < todo.size(); ++j) {
      enqueue_result& r = out[todo[j]];
      const redisReply* reply = replies[j].get();
      if (reply == nullptr) {
        r = {enqueue_status::unavailable, {}, !ok, link_.last_error()};
      } else if (reply->type != REDIS_REPLY_STRING) {
        r = {enqueue_status::server_error, {}, false, std::string(detail::rsq_str(reply))};
      } else if (durable && acked[j] < config_.min_replicas) {
        r = {enqueue_status::not_durable, std::string(detail::rsq_str(reply)), true,
             fmt::format("WAIT: {} of {} replicas acknowledged within replica_timeout",
                         std::max<std::int64_t>(acked[j], 0), config_.min_replicas)};
      } else {
        r = {enqueue_status::ok, std::string(detail::rsq_str(reply)), false, {}};
      }
    }
  }

  const redis_stream_queue_config config_;
  const Codec codec_;
  const detail::rsq_wait wait_;
  std::mutex mutex_;
  detail::rsq_link<Clock> link_;
  dead_letter_type dead_;
};

static_assert(metrics_snapshot<redis_stream_queue_metrics>);

}  // namespace outgrow
