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
//   outgrow::redis_stream_queue_config cfg{.host = "10.0.0.5", .stream = "{shop}:orders",
//                                          .max_attempts = 5, .visibility_timeout = 60s};
//   outgrow::redis_stream_queue<order> q(cfg);                 // producer + admin
//   if (!q.enqueue(o, o.id)) log("Redis unavailable");         // XADD; key = o.id
//   using ctx = outgrow::redis_job_context;
//   outgrow::redis_stream_worker<order> w(cfg, [&](order& o, ctx& c) {
//     charge(o);                                              // at least once
//     c.commit({"HINCRBY", "{shop}:charged", o.id, "1"});     // exactly once per key
//   });
//   std::jthread t([&](std::stop_token st) { w.run(st); });   // XREADGROUP loop
//   fmt::print("{}\n", *q.metrics());                          // backlog, pending, ...
//   q.dead_letters().replay_all();                             // after fixing the cause
//
// Keys (one Redis Cluster slot if `stream` has a {hash tag}): the stream, its consumer
// group `group`, the dead-letter stream <stream>:dead, <stream>:failures (a hash: the
// last error of entries waiting for a retry), <stream>:stats (a hash of totals) and
// <stream>:done:<key> (completed idempotency keys, each with idempotency_ttl).
// Collisions are impossible by construction: the constructors refuse (config_error naming
// field "stream" and the value) a stream name that ends in ":dead", ":failures", ":stats"
// or ":done" or contains ":done:" — with those refused, no queue's stream or derived key
// can equal another queue's (so a queue "x:dead" can never consume x's dead letters).
// Keys that something else created under these names with another type (a string at
// <stream>:failures) are detected by the scripts, which check the type of every key they
// write before changing anything (see Delivery); keep commit() keys outside <stream>:*.
//
// Delivery (at least once). enqueue() is XADD (with MAXLEN ~ max_length if set); a result
// of ok means Redis acknowledged it — with AOF and appendfsync always, it survives a Redis
// crash. A worker reads new entries with XREADGROUP (COUNT batch, BLOCK block_timeout),
// so each sits in the group's pending-entries list (PEL) with a delivery count until
// acknowledged. Every claim_interval (and at once again while XAUTOCLAIM reports more)
// the worker also XAUTOCLAIMs entries idle longer than visibility_timeout (their worker
// died or hung; a handler that runs longer calls ctx.extend() as a heartbeat) — that
// delivery count is the attempt number. Success: a Lua script XACKs and XDELs the entry
// (the stream holds only jobs not yet finished). A retryable failure before max_attempts
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
// error having changed nothing (stats().server_errors; the entry stays pending and is
// delivered again after visibility_timeout, so fixing the key lets it finish).
//
// Untrusted fields. Anything read back from Redis may have been written by another client
// or an operator: entries are decoded strictly (detail/stream_fields.hpp — exact field
// names, each once; numbers plain decimal, 64-bit, overflow-checked with from_chars;
// times within system_clock's range). A main-stream entry with no job field, two, an
// unknown field or a repeated key is malformed: it is dead-lettered at once without running
// (error_type "outgrow::malformed_entry"; counted in stats().malformed and
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
// stats().effect_errors and does not stop the acknowledgement. Keys they touch must be in
// the stream's slot on a Redis Cluster. A dead-lettered job marks nothing; a job whose
// key completed meanwhile (another copy) is acknowledged as a duplicate instead of
// dead-lettered, and replaying a dead letter whose key completed drops it as a duplicate.
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
// Codec: the redis_codec policy of redis_tier.hpp (redis_default_codec by default:
// std::string as bytes, numbers as text, other trivially copyable types as bytes).
//
// Defaults: max_attempts 3 (work_queue's, the textbook's); visibility_timeout 30 s and
// the 10,000-entry DLQ (MAXLEN ~, so approximately) — SQS's default visibility timeout
// and Sidekiq's dead set; retry_delay 1 s; block 500 ms; batch 16; claim every 1 s;
// idempotency keys kept 24 h; connect 200 ms / command 1 s (longer than redis_tier's: a
// queue waits for its broker, a cache does not); reconnect backoff 10 ms .. 1 s.
// MAXLEN trimming of the main stream is off: trimming drops unfinished jobs (pending ones
// are counted in stats().trimmed when XAUTOCLAIM meets them; never-delivered ones vanish)
// — set max_length only to bound a runaway producer.
//
// Differences from work_queue: retries wait a fixed retry_delay (a pending entry's idle
// time is the only timer Redis keeps), not a backoff policy; dead-letter IDs are stream
// IDs (strings) and replay always targets the main stream; times come from Redis. The
// Clock policy only paces reconnect attempts and claim_interval (manual_clock in tests).
//
// Thread-safety: redis_stream_queue and its dead_letters(): every member from any thread
// (one connection each, behind a mutex). redis_stream_worker: poll()/run() on one thread
// at a time; request_stop(), stop_requested() and stats() from any thread. Scale out with
// more workers (threads or processes), each with its own object.
// Complexity: enqueue one round trip; a worker one XREADGROUP per batch, one pipelined
// EXISTS round trip per batch with keys, one EVAL per job; metrics one pipelined round
// trip. Commands allocate their argument arrays and replies (network-bound paths).
#pragma once

#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/stats.hpp>
#include <outgrow/queue/dead_letter_queue.hpp>
#include <outgrow/queue/work_queue.hpp>
#include <outgrow/redis/detail/stream_fields.hpp>
#include <outgrow/redis/redis_tier.hpp>

namespace outgrow {

/// What enqueue() does when Redis cannot be reached.
enum class redis_unavailable_policy : std::uint8_t {
  fail = 0,   ///< return enqueue_status::unavailable at once
  block = 1,  ///< retry (reconnecting with backoff) until enqueue_deadline
};

struct redis_stream_queue_config {
  std::string host = "127.0.0.1";
  int port = 6379;  ///< [1, 65535]
  std::string password{};
  int database = 0;  ///< [0, 1e6]
  /// The stream's key; the other keys derive from it (see the header comment). Must not
  /// end in ":dead", ":failures", ":stats" or ":done", nor contain ":done:".
  std::string stream = "outgrow:jobs";
  /// The consumer group all workers share.
  std::string group = "outgrow:workers";
  /// This worker's consumer name; empty = "<hostname>:<pid>:<random>".
  std::string consumer{};
  /// Deliveries before the dead-letter stream, the first included: 3. [1, 1000]
  std::uint32_t max_attempts = 3;
  /// A pending entry idle this long is claimed by another worker: 30 s (SQS). [1ms, 12h]
  std::chrono::nanoseconds visibility_timeout = std::chrono::seconds{30};
  /// Wait before a failed job may be delivered again: 1 s. [0, visibility_timeout]
  std::chrono::nanoseconds retry_delay = std::chrono::seconds{1};
  /// XREADGROUP BLOCK: 500 ms. Bounds how late request_stop() is seen. [1ms, 1h]
  std::chrono::nanoseconds block_timeout = std::chrono::milliseconds{500};
  /// How often a worker XAUTOCLAIMs idle entries: 1 s. [1ms, 1h]
  std::chrono::nanoseconds claim_interval = std::chrono::seconds{1};
  /// Entries per XREADGROUP / XAUTOCLAIM: 16. [1, 10000]
  std::size_t batch = 16;
  /// MAXLEN ~ of the stream; nullopt (default) = never trim (see the header comment).
  std::optional<std::size_t> max_length{};
  /// MAXLEN ~ of the dead-letter stream: 10,000 (Sidekiq's dead set). [1, 2^32]
  std::size_t dead_letter_max_length = 10'000;
  /// How long a completed idempotency key is remembered: 24 h. [1ms, 365 d]
  std::chrono::nanoseconds idempotency_ttl = std::chrono::hours{24};
  /// enqueue() when Redis is unreachable: fail at once (default) or block.
  redis_unavailable_policy on_unavailable = redis_unavailable_policy::fail;
  /// How long a blocking enqueue() keeps trying: 5 s. [0, 1h]
  std::chrono::nanoseconds enqueue_deadline = std::chrono::seconds{5};
  /// Bound of one connect: 200 ms. (0, 1h]
  std::chrono::nanoseconds connect_timeout = std::chrono::milliseconds{200};
  /// Bound of each socket read / write (plus block_timeout for XREADGROUP): 1 s. (0, 1h]
  std::chrono::nanoseconds command_timeout = std::chrono::seconds{1};
  /// Delay between connect attempts while Redis is unreachable.
  full_jitter_backoff reconnect_backoff{std::chrono::milliseconds{10},
                                        std::chrono::seconds{1}};
  /// Seed of the backoff's jitter.
  std::uint64_t seed = 0x5713'EA11'5EEDULL;
};

/// Thrown by administrative calls (dead-letter inspection, replay, purge) when Redis
/// cannot be reached or answers with an error.
class redis_stream_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class enqueue_status : std::uint8_t {
  ok = 0,            ///< Redis acknowledged the XADD
  unavailable = 1,   ///< no connection (fail policy), or a transport error
  timed_out = 2,     ///< block policy: still unavailable at enqueue_deadline
  encode_error = 3,  ///< the codec threw
  server_error = 4,  ///< Redis answered with an error (OOM, WRONGTYPE, ...)
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
  }
  return "unknown";
}

/// What enqueue() did; true when Redis acknowledged the job.
struct enqueue_result {
  enqueue_status status = enqueue_status::ok;
  /// The stream entry ID ("1700000000000-0") when ok.
  std::string id{};
  /// Not ok, but an XADD was sent and its reply lost: the job may be in the stream.
  bool maybe_enqueued = false;
  /// The server's error reply or the transport error, when not ok.
  std::string error{};
  [[nodiscard]] bool ok() const noexcept { return status == enqueue_status::ok; }
  explicit operator bool() const noexcept { return ok(); }
};

/// A dead job in the dead-letter stream.
template <class Job>
struct redis_dead_letter_entry {
  /// The entry's ID in the dead-letter stream (increasing in arrival order).
  std::string id{};
  /// The decoded job; nullopt when the codec rejects `payload`.
  std::optional<Job> job{};
  /// The job's encoded bytes, as enqueued (replay sends these back).
  std::string payload{};
  std::string error{};
  std::string error_type{};
  /// Deliveries the job got (max_attempts unless it failed permanently; more when
  /// workers died holding it or an operator raised its delivery count).
  std::uint64_t attempts = 0;
  /// Redis's TIME at the first and last failure.
  std::chrono::system_clock::time_point first_failure{};
  std::chrono::system_clock::time_point last_failure{};
  std::optional<std::string> idempotency_key{};
  /// Its ID in the main stream when it died.
  std::string source_id{};
  /// Why the entry's stored fields could not be decoded ("" when they were): the other
  /// members are then empty, and the entry can be inspected and purged, not replayed.
  std::string field_error{};
  /// False when replay() refuses the entry: field_error is set, or its source entry had
  /// no usable job field (error_type "outgrow::malformed_entry", payload "").
  bool replayable = true;
};

struct redis_dead_letter_metrics {
  static constexpr std::string_view metrics_name = "redis_dead_letter_metrics";
  std::size_t size = 0;                    ///< entries in the dead-letter stream now
  std::uint64_t added = 0;                 ///< jobs ever dead-lettered
  std::uint64_t replayed = 0;              ///< entries replayed to the main stream
  std::uint64_t duplicates = 0;            ///< entries a replay found completed (dropped)
  std::uint64_t purged = 0;                ///< entries purged
  std::chrono::nanoseconds oldest_age{0};  ///< since the oldest entry arrived (Redis TIME)
  /// Malformed dead-letter entries (field_error) this object read; each read counts.
  std::uint64_t decode_errors = 0;

  template <class F>
  void for_each_metric(F&& f) const {
    f("size", size);
    f("added", added);
    f("replayed", replayed);
    f("duplicates", duplicates);
    f("purged", purged);
    f("oldest_age", oldest_age);
    f("decode_errors", decode_errors);
  }
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
  std::uint64_t completed = 0;                     ///< totals from <stream>:stats
  std::uint64_t duplicates = 0;
  std::uint64_t dead_lettered = 0;
  std::uint64_t replayed = 0;
  std::uint64_t purged = 0;
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

/// One worker's counters (this process, since construction).
struct redis_stream_worker_stats {
  static constexpr std::string_view metrics_name = "redis_stream_worker_stats";
  std::uint64_t delivered = 0;      ///< entries read with XREADGROUP
  std::uint64_t claimed = 0;        ///< entries taken over with XAUTOCLAIM
  std::uint64_t succeeded = 0;      ///< completions this worker committed
  std::uint64_t failed = 0;         ///< failed attempts (retried or dead-lettered)
  std::uint64_t retried = 0;        ///< failures left pending for another delivery
  std::uint64_t dead_lettered = 0;  ///< jobs this worker moved to the dead-letter stream
  std::uint64_t duplicates = 0;     ///< jobs skipped: their key had completed
  std::uint64_t stale = 0;          ///< results dropped: the entry was no longer ours
  std::uint64_t released = 0;       ///< entries handed back on stop
  std::uint64_t decode_errors = 0;  ///< payloads the codec rejected (dead-lettered)
  std::uint64_t malformed = 0;      ///< entries with malformed fields (dead-lettered)
  std::uint64_t effect_errors = 0;  ///< commit() commands Redis refused
  std::uint64_t trimmed = 0;        ///< pending entries MAXLEN deleted before completion
  std::uint64_t transport_errors = 0;
  std::uint64_t server_errors = 0;
  std::uint64_t connects = 0;
  std::uint64_t connect_failures = 0;

  template <class F>
  void for_each_metric(F&& f) const {
    f("delivered", delivered);
    f("claimed", claimed);
    f("succeeded", succeeded);
    f("failed", failed);
    f("retried", retried);
    f("dead_lettered", dead_lettered);
    f("duplicates", duplicates);
    f("stale", stale);
    f("released", released);
    f("decode_errors", decode_errors);
    f("malformed", malformed);
    f("effect_errors", effect_errors);
    f("trimmed", trimmed);
    f("transport_errors", transport_errors);
    f("server_errors", server_errors);
    f("connects", connects);
    f("connect_failures", connect_failures);
  }
};

// ---- detail: keys, scripts, the connection ------------------------------------------

namespace detail {

inline std::string rsq_ms(std::chrono::nanoseconds d) {
  return std::to_string(
      std::max<std::int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(d).count()));
}

/// Milliseconds of a stream ID ("1700000000000-3" -> 1700000000000); 0 if malformed.
inline std::int64_t rsq_id_ms(std::string_view id) noexcept {
  std::int64_t v = 0;
  const auto r = std::from_chars(id.data(), id.data() + id.size(), v);
  return r.ec == std::errc{} ? v : 0;
}

inline std::int64_t rsq_int(const redisReply* r) noexcept {
  if (r == nullptr) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return static_cast<std::int64_t>(r->integer);
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
    return rsq_parse_i64(std::string_view(r->str, r->len)).value_or(0);
  }
  return 0;
}

inline std::string_view rsq_str(const redisReply* r) noexcept {
  if (r == nullptr || r->str == nullptr) return {};
  return {r->str, r->len};
}

inline std::string rsq_default_consumer() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  std::random_device rd;
  return fmt::format("{}:{}:{:08x}", host, ::getpid(), rd());
}

enum class rsq_script : std::uint8_t { complete, fail, dead_letter, claim, replay, extend };
inline constexpr std::size_t rsq_script_count = 6;

// Every script starts with rsq_lua_prelude and first checks the type of each key it
// writes (a key of another type — left by an operator or another program — makes it
// return an OUTGROW_WRONGTYPE error having changed nothing: the entry stays pending and
// is delivered again) and validates its arguments. It then does every write that could
// still fail before its first irreversible step (XACK / XDEL of a job or a dead letter),
// because Redis does not roll back a script that fails part-way: a job is never
// acknowledged and lost. Counters in <stream>:stats come last, with redis.pcall (a
// non-integer field there cannot undo a completion).
inline constexpr std::string_view rsq_lua_prelude = R"lua(
local function need(k, want)
  local t = redis.call('TYPE', k)['ok']
  if t ~= 'none' and t ~= want then
    return redis.error_reply('OUTGROW_WRONGTYPE ' .. k .. ' holds a ' .. t ..
      ', expected a ' .. want .. ' (nothing changed; the entry stays pending)')
  end
  return nil
end
local function count(stats, field)
  redis.pcall('HINCRBY', stats, field, 1)
end
)lua";

// complete: KEYS stream failures stats [done]; ARGV group id ttl_ms {n arg...}*
// -> {0 stale | 1 completed | 2 duplicate, failed effects}
inline constexpr std::string_view rsq_complete_lua = R"lua(
local bad = need(KEYS[1], 'stream') or need(KEYS[2], 'hash') or need(KEYS[3], 'hash') or
            (KEYS[4] and need(KEYS[4], 'string'))
if bad then return bad end
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  if not n or n < 1 or n > 7000 or i + n > #ARGV then
    return redis.error_reply('OUTGROW_BADARGS a commit() command has ' .. tostring(ARGV[i]) ..
      ' arguments (1 .. 7000 allowed; nothing changed)')
  end
  i = i + n + 1
end
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {0, 0} end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if KEYS[4] and not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[3]) then
  count(KEYS[3], 'duplicates')
  return {2, 0}
end
local failed = 0
i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local cmd = {}
  for j = 1, n do cmd[j] = ARGV[i + j] end
  local r = redis.pcall(unpack(cmd))
  if type(r) == 'table' and r.err then failed = failed + 1 end
  i = i + n + 1
end
count(KEYS[3], 'completed')
return {1, failed}
)lua";

// fail: KEYS stream failures; ARGV group consumer id idle_ms type message -> 1 | 0 stale
inline constexpr std::string_view rsq_fail_lua = R"lua(
local bad = need(KEYS[1], 'stream') or need(KEYS[2], 'hash')
if bad then return bad end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local first = now
local old = redis.call('HGET', KEYS[2], ARGV[3])
if old then first = string.match(old, '^(%d+)') or now end
redis.call('HSET', KEYS[2], ARGV[3], first .. '\n' .. now .. '\n' .. ARGV[5] .. '\n' .. ARGV[6])
return 1
)lua";

// dead_letter: KEYS stream dlq failures stats [done]; ARGV group consumer id attempts
// type message payload has_key key dlq_maxlen has_payload
// -> dlq id | '' (completed) | false (stale). The XADD to the dead-letter stream comes
// before the XACK: at worst (a failure between them) a job is dead-lettered twice.
inline constexpr std::string_view rsq_dead_letter_lua = R"lua(
local bad = need(KEYS[1], 'stream') or need(KEYS[2], 'stream') or need(KEYS[3], 'hash') or
            need(KEYS[4], 'hash') or (KEYS[5] and need(KEYS[5], 'string'))
if bad then return bad end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return false end
local old = redis.call('HGET', KEYS[3], ARGV[3])
local id = ''
if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 1 then
  count(KEYS[4], 'duplicates')
else
  local t = redis.call('TIME')
  local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
  local first = now
  if old then first = string.match(old, '^(%d+)') or now end
  local cmd = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[10], '*'}
  if ARGV[11] == '1' then cmd[#cmd + 1] = 'j'; cmd[#cmd + 1] = ARGV[7] end
  local rest = {'src', ARGV[3], 'n', ARGV[4], 'et', ARGV[5], 'e', ARGV[6], 'ff', first,
                'lf', now}
  for _, v in ipairs(rest) do cmd[#cmd + 1] = v end
  if ARGV[8] == '1' then cmd[#cmd + 1] = 'k'; cmd[#cmd + 1] = ARGV[9] end
  id = redis.call(unpack(cmd))
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
if id ~= '' then
  count(KEYS[4], 'dead_lettered')
  if ARGV[5] == 'outgrow::malformed_entry' then count(KEYS[4], 'malformed') end
end
return id
)lua";

// claim: KEYS stream; ARGV group consumer min_idle_ms start count
// -> {next, {{id, fields|nil, deliveries}...}, {deleted ids}}
inline constexpr std::string_view rsq_claim_lua = R"lua(
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for i, e in ipairs(r[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
  local n = 0
  if #p > 0 then n = p[1][4] end
  out[i] = {e[1], e[2], n}
end
return {r[1], out, r[3] or {}}
)lua";

// replay: KEYS dlq stream stats [done]; ARGV dlq_id maxlen('' = none)
// -> {1, new id} | {2} duplicate | {0} gone | {3} no single job field (left in place).
// The XADD to the main stream comes before the XDEL of the dead letter.
inline constexpr std::string_view rsq_replay_lua = R"lua(
local bad = need(KEYS[1], 'stream') or need(KEYS[2], 'stream') or need(KEYS[3], 'hash') or
            (KEYS[4] and need(KEYS[4], 'string'))
if bad then return bad end
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return {0} end
local f = e[1][2]
local job, key, jobs = nil, nil, 0
for i = 1, #f - 1, 2 do
  if f[i] == 'j' then job = f[i + 1]; jobs = jobs + 1 elseif f[i] == 'k' then key = f[i + 1] end
end
if jobs ~= 1 then return {3} end
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[1])
  count(KEYS[3], 'replay_duplicates')
  return {2}
end
local cmd = {'XADD', KEYS[2]}
if ARGV[2] ~= '' then cmd[3] = 'MAXLEN'; cmd[4] = '~'; cmd[5] = ARGV[2] end
cmd[#cmd + 1] = '*'; cmd[#cmd + 1] = 'j'; cmd[#cmd + 1] = job
if key then cmd[#cmd + 1] = 'k'; cmd[#cmd + 1] = key end
local id = redis.call(unpack(cmd))
redis.call('XDEL', KEYS[1], ARGV[1])
count(KEYS[3], 'replayed')
return {1, id}
)lua";

// extend: KEYS stream; ARGV group consumer id -> 1 | 0 (no longer ours)
inline constexpr std::string_view rsq_extend_lua = R"lua(
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', 0, 'JUSTID')
return 1
)lua";

inline constexpr std::string_view rsq_scripts[rsq_script_count] = {
    rsq_complete_lua, rsq_fail_lua,   rsq_dead_letter_lua,
    rsq_claim_lua,    rsq_replay_lua, rsq_extend_lua};

/// The keys derived from the config.
struct rsq_keys {
  std::string stream, group, dead, failures, stats, done_prefix;
  explicit rsq_keys(const redis_stream_queue_config& c)
      : stream(c.stream),
        group(c.group),
        dead(c.stream + ":dead"),
        failures(c.stream + ":failures"),
        stats(c.stream + ":stats"),
        done_prefix(c.stream + ":done:") {}
};

/// True when `stream` could be, or could contain, a key that another queue derives from
/// its own stream: with these names refused, no two queues' keys can coincide.
inline bool rsq_reserved_name(std::string_view stream) noexcept {
  return stream.ends_with(":dead") || stream.ends_with(":failures") ||
         stream.ends_with(":stats") || stream.ends_with(":done") ||
         stream.find(":done:") != std::string_view::npos;
}

inline redis_stream_queue_config rsq_validated(redis_stream_queue_config c) {
  using namespace std::chrono_literals;
  using ns = std::chrono::nanoseconds;
  constexpr std::string_view who = "redis_stream_queue";
  validate_endpoint(
      who, {c.host, c.port, c.password, c.database, c.connect_timeout, c.command_timeout});
  require(!c.stream.empty(), who, "stream", "a key name", "\"\"");
  require(!rsq_reserved_name(c.stream), who, "stream",
          "a key name not ending in :dead, :failures, :stats or :done nor containing "
          ":done: (the suffixes of the keys a queue derives from its stream)",
          c.stream);
  require(!c.group.empty(), who, "group", "a group name", "\"\"");
  require_in_range(who, "max_attempts", c.max_attempts, std::uint32_t{1},
                   std::uint32_t{1000});
  require_in_range(who, "visibility_timeout", c.visibility_timeout, ns{1ms}, ns{12h});
  require_in_range(who, "retry_delay", c.retry_delay, ns{0}, c.visibility_timeout);
  require_in_range(who, "block_timeout", c.block_timeout, ns{1ms}, ns{1h});
  require_in_range(who, "claim_interval", c.claim_interval, ns{1ms}, ns{1h});
  require_in_range(who, "batch", c.batch, std::size_t{1}, std::size_t{10'000});
  if (c.max_length) {
    require_in_range(who, "max_length", *c.max_length, std::size_t{1},
                     std::size_t{1} << 40);
  }
  require_in_range(who, "dead_letter_max_length", c.dead_letter_max_length, std::size_t{1},
                   std::size_t{1} << 32);
  require_in_range(who, "idempotency_ttl", c.idempotency_ttl, ns{1ms}, ns{24h * 365});
  require_in_range(who, "enqueue_deadline", c.enqueue_deadline, ns{0}, ns{1h});
  if (c.consumer.empty()) c.consumer = rsq_default_consumer();
  return c;
}

/// One connection to Redis for a queue object: opened on demand (connect attempts spaced
/// by the reconnect gate), the consumer group created and the scripts loaded on each
/// connect, closed after any transport error. Not thread-safe (callers serialize).
template <class Clock>
class rsq_link {
 public:
  rsq_link(const redis_stream_queue_config& c, Clock clock)
      : endpoint_(redis_endpoint::of(c)),
        keys_(c),
        gate_(c.reconnect_backoff, c.seed, std::move(clock)) {}

  /// The open connection, connecting if the gate allows; null when unavailable now.
  redisContext* get() {
    if (ctx_) return ctx_.get();
    if (!gate_.try_enter()) return nullptr;
    std::string error;
    redis_context_ptr ctx;
    try {
      ctx = redis_open(endpoint_, error);
      if (ctx && !prepare(ctx.get(), error)) ctx.reset();
    } catch (...) {
      ctx.reset();
      error = "exception while connecting";
    }
    if (!ctx) {
      last_error_ = std::move(error);
      connect_failures.add();
      gate_.failed();
      return nullptr;
    }
    gate_.succeeded();
    connects.add();
    ctx_ = std::move(ctx);
    return ctx_.get();
  }

  /// Closes the connection after a transport error.
  void drop() {
    if (ctx_) {
      last_error_ = ctx_->errstr;
      transport_errors.add();
      ctx_.reset();
    }
  }

  /// One command; null after a transport error (the connection is then closed).
  redis_reply_ptr command(std::span<const std::string_view> args) {
    redisContext* c = get();
    if (c == nullptr) return nullptr;
    auto r = redis_argv(c, args);
    if (!r) drop();
    return r;
  }

  /// EVALSHA of a script (reloaded once on NOSCRIPT); null after a transport error.
  redis_reply_ptr eval(rsq_script s, std::span<const std::string_view> keys,
                       std::span<const std::string_view> args) {
    redisContext* c = get();
    if (c == nullptr) return nullptr;
    const auto index = static_cast<std::size_t>(s);
    std::vector<std::string_view> argv;
    argv.reserve(3 + keys.size() + args.size());
    const std::string nkeys = std::to_string(keys.size());
    argv.push_back("EVALSHA");
    argv.push_back(sha_[index]);
    argv.push_back(nkeys);
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = redis_argv(c, argv);
    if (r && r->type == REDIS_REPLY_ERROR && rsq_str(r.get()).starts_with("NOSCRIPT")) {
      std::string error;
      if (!load_scripts(c, error)) {
        drop();
        return nullptr;
      }
      argv[1] = sha_[index];
      r = redis_argv(c, argv);
    }
    if (!r) drop();
    return r;
  }

  /// (Re)creates the consumer group (after NOGROUP: Redis lost its data). False on a
  /// transport error.
  bool ensure_group() {
    redisContext* c = get();
    if (c == nullptr) return false;
    std::string error;
    if (!create_group(c, error)) {
      drop();
      return false;
    }
    return true;
  }

  /// Sets the socket timeout of the next reads (XREADGROUP BLOCK needs more).
  void set_timeout(std::chrono::nanoseconds d) {
    if (ctx_) (void)redisSetTimeout(ctx_.get(), redis_timeval(d));
  }
  [[nodiscard]] std::chrono::nanoseconds command_timeout() const noexcept {
    return endpoint_.command_timeout;
  }
  [[nodiscard]] bool connected() const noexcept { return static_cast<bool>(ctx_); }
  [[nodiscard]] typename Clock::time_point next_attempt() const {
    return gate_.next_attempt();
  }
  [[nodiscard]] const Clock& clock() const noexcept { return gate_.clock(); }
  [[nodiscard]] const std::string& last_error() const noexcept { return last_error_; }
  [[nodiscard]] const rsq_keys& keys() const noexcept { return keys_; }

  counter connects, connect_failures, transport_errors;

 private:
  bool create_group(redisContext* c, std::string& error) {
    const std::string_view args[] = {"XGROUP",    "CREATE", keys_.stream,
                                     keys_.group, "0",      "MKSTREAM"};
    auto r = redis_argv(c, args);
    if (!r) {
      error = c->errstr;
      return false;
    }
    if (r->type == REDIS_REPLY_ERROR && !rsq_str(r.get()).starts_with("BUSYGROUP")) {
      error = std::string(rsq_str(r.get()));
      return false;
    }
    return true;
  }

  bool load_scripts(redisContext* c, std::string& error) {
    for (std::size_t i = 0; i < rsq_script_count; ++i) {
      std::string source(rsq_lua_prelude);
      source += rsq_scripts[i];
      const std::string_view args[] = {"SCRIPT", "LOAD", source};
      auto r = redis_argv(c, args);
      if (!r || r->type != REDIS_REPLY_STRING) {
        error = r ? std::string(rsq_str(r.get())) : std::string(c->errstr);
        return false;
      }
      sha_[i].assign(r->str, r->len);
    }
    return true;
  }

  bool prepare(redisContext* c, std::string& error) {
    return create_group(c, error) && load_scripts(c, error);
  }

  const redis_endpoint endpoint_;
  const rsq_keys keys_;
  reconnect_gate<Clock> gate_;
  redis_context_ptr ctx_;
  std::string sha_[rsq_script_count];
  std::string last_error_;
};

/// Field `name` of a stream entry's flat field list, or nullptr.
inline const redisReply* rsq_field(const redisReply* fields,
                                   std::string_view name) noexcept {
  if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return nullptr;
  for (std::size_t i = 0; i + 1 < fields->elements; i += 2) {
    if (rsq_str(fields->element[i]) == name) return fields->element[i + 1];
  }
  return nullptr;
}

/// The flat field list of a stream entry as strings; false when `fields` is not an array
/// of strings (a nil entry: deleted).
inline bool rsq_field_list(const redisReply* fields, std::vector<std::string_view>& out) {
  out.clear();
  if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return false;
  out.reserve(fields->elements);
  for (std::size_t i = 0; i < fields->elements; ++i) {
    const redisReply* f = fields->element[i];
    if (f == nullptr || f->type != REDIS_REPLY_STRING) return false;
    out.push_back(rsq_str(f));
  }
  return true;
}

inline std::chrono::nanoseconds rsq_age(std::int64_t now_ms,
                                        std::int64_t then_ms) noexcept {
  if (then_ms <= 0 || now_ms <= then_ms) return std::chrono::nanoseconds{0};
  return std::chrono::milliseconds{now_ms - then_ms};
}

}  // namespace detail

// ---- dead letters ----------------------------------------------------------------------

/// The dead-letter stream of a redis_stream_queue: inspect, replay, purge — the interface
/// of dead_letter_queue (queue/dead_letter_queue.hpp) with string IDs; replay always
/// goes back to the main stream. Administrative: these calls throw redis_stream_error
/// when Redis is unreachable. Thread-safe (one connection behind a mutex).
template <class Job, class Codec = redis_default_codec,
          clock_source Clock = steady_clock_source>
requires redis_codec<Codec, Job>
class redis_dead_letters {
 public:
  using entry = redis_dead_letter_entry<Job>;

  explicit redis_dead_letters(redis_stream_queue_config config, Codec codec = {},
                              Clock clock = {})
      : config_(detail::rsq_validated(std::move(config))),
        codec_(std::move(codec)),
        link_(config_, std::move(clock)) {}

  [[nodiscard]] std::size_t size() {
    std::lock_guard lock(mutex_);
    const std::string_view args[] = {"XLEN", link_.keys().dead};
    return static_cast<std::size_t>(detail::rsq_int(checked(args).get()));
  }
  [[nodiscard]] bool empty() { return size() == 0; }

  /// Calls f(const entry&) for each entry, oldest first (read in pages of 100; the lock
  /// is not held while f runs, so f may call back in).
  template <class F>
  requires std::invocable<F&, const entry&>
  void for_each(F&& f) {
    std::string start = "-";
    for (;;) {
      std::vector<entry> page = read_page(start, 100);
      if (page.empty()) return;
      for (const entry& e : page) f(e);
      start = "(" + page.back().id;
    }
  }

  [[nodiscard]] std::vector<entry> snapshot() {
    return filter([](const entry&) { return true; });
  }

  template <class Pred>
  requires std::predicate<Pred&, const entry&>
  [[nodiscard]] std::vector<entry> filter(Pred&& pred) {
    std::vector<entry> out;
    for_each([&](const entry& e) {
      if (pred(e)) out.push_back(e);
    });
    return out;
  }

  [[nodiscard]] std::optional<entry> find(std::string_view id) {
    std::vector<entry> page = read_range(id, id, 1);
    if (page.empty()) return std::nullopt;
    return std::move(page.front());
  }

  /// Sends entry `id` back to the main stream (attempts start again at 1).
  replay_result replay(std::string_view id) {
    replay_result result;
    if (auto e = find(id)) replay_one(*e, result);
    return result;
  }

  /// Replays, oldest first, every entry for which pred(const entry&) is true.
  template <class Pred>
  requires std::predicate<Pred&, const entry&> replay_result replay_if(Pred&& pred) {
    replay_result result;
    for (const entry& e : filter(pred)) replay_one(e, result);
    return result;
  }

  replay_result replay_all() {
    return replay_if([](const entry&) { return true; });
  }

  /// Removes entry `id`; false if it is not there.
  bool purge(std::string_view id) {
    std::lock_guard lock(mutex_);
    const std::string_view args[] = {"XDEL", link_.keys().dead, id};
    const bool removed = detail::rsq_int(checked(args).get()) == 1;
    if (removed) {
      const std::string_view incr[] = {"HINCRBY", link_.keys().stats, "purged", "1"};
      (void)checked(incr);
    }
    return removed;
  }

  template <class Pred>
  requires std::predicate<Pred&, const entry&> std::size_t purge_if(Pred&& pred) {
    std::size_t n = 0;
    for (const entry& e : filter(pred))
      if (purge(e.id)) ++n;
    return n;
  }

  std::size_t purge_all() {
    return purge_if([](const entry&) { return true; });
  }

  [[nodiscard]] redis_dead_letter_metrics metrics() {
    std::lock_guard lock(mutex_);
    redis_dead_letter_metrics m;
    const auto& k = link_.keys();
    const std::string_view len[] = {"XLEN", k.dead};
    m.size = static_cast<std::size_t>(detail::rsq_int(checked(len).get()));
    const std::string_view stats[] = {
        "HMGET", k.stats, "dead_lettered", "replayed", "replay_duplicates", "purged"};
    auto s = checked(stats);
    if (s->type == REDIS_REPLY_ARRAY && s->elements == 4) {
      m.added = static_cast<std::uint64_t>(detail::rsq_int(s->element[0]));
      m.replayed = static_cast<std::uint64_t>(detail::rsq_int(s->element[1]));
      m.duplicates = static_cast<std::uint64_t>(detail::rsq_int(s->element[2]));
      m.purged = static_cast<std::uint64_t>(detail::rsq_int(s->element[3]));
    }
    const std::string_view first[] = {"XRANGE", k.dead, "-", "+", "COUNT", "1"};
    auto f = checked(first);
    const std::string_view time[] = {"TIME"};
    auto t = checked(time);
    if (f->type == REDIS_REPLY_ARRAY && f->elements > 0 && t->type == REDIS_REPLY_ARRAY &&
        t->elements == 2) {
      const std::int64_t now_ms =
          detail::rsq_int(t->element[0]) * 1000 + detail::rsq_int(t->element[1]) / 1000;
      m.oldest_age = detail::rsq_age(
          now_ms, detail::rsq_id_ms(detail::rsq_str(f->element[0]->element[0])));
    }
    m.decode_errors = decode_errors_.load(std::memory_order_relaxed);
    return m;
  }

 private:
  detail::redis_reply_ptr checked(std::span<const std::string_view> args) {
    auto r = link_.command(args);
    if (!r) {
      throw redis_stream_error(fmt::format("redis_stream_queue: {} on {}: {}", args[0],
                                           link_.keys().dead, link_.last_error()));
    }
    if (r->type == REDIS_REPLY_ERROR) {
      throw redis_stream_error(
          fmt::format("redis_stream_queue: {}: {}", args[0], detail::rsq_str(r.get())));
    }
    return r;
  }

  std::vector<entry> read_page(std::string_view start, std::size_t count) {
    return read_range(start, "+", count);
  }

  std::vector<entry> read_range(std::string_view start, std::string_view end,
                                std::size_t count) {
    std::lock_guard lock(mutex_);
    const std::string n = std::to_string(count);
    const std::string_view args[] = {"XRANGE", link_.keys().dead, start, end, "COUNT", n};
    auto r = checked(args);
    std::vector<entry> out;
    if (r->type != REDIS_REPLY_ARRAY) return out;
    for (std::size_t i = 0; i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
      out.push_back(parse(e));
    }
    return out;
  }

  entry parse(const redisReply* e) {
    entry out;
    out.id = std::string(detail::rsq_str(e->element[0]));
    std::vector<std::string_view> fields;
    detail::rsq_dead_fields d;
    const detail::rsq_decode_error error = detail::rsq_field_list(e->element[1], fields)
                                               ? detail::rsq_decode_dead_fields(fields, d)
                                               : detail::rsq_decode_error::missing_field;
    if (error != detail::rsq_decode_error::none) {
      decode_errors_.fetch_add(1, std::memory_order_relaxed);
      out.field_error = std::string(detail::to_string(error));
      out.replayable = false;
      return out;
    }
    out.replayable = d.payload.has_value();
    out.payload = std::move(d.payload).value_or(std::string());
    if (out.replayable) {
      // Through the tier's decode path: the codec's and the type's validation hooks
      // run too (redis_validate, Codec::validate), as for cached values.
      out.job = detail::redis_decode_value<Job>(codec_, out.payload,
                                                std::numeric_limits<std::size_t>::max());
    }
    out.error = std::move(d.error);
    out.error_type = std::move(d.error_type);
    out.attempts = d.attempts;
    out.first_failure = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::milliseconds(d.first_failure_ms)));
    out.last_failure = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::milliseconds(d.last_failure_ms)));
    out.idempotency_key = std::move(d.key);
    out.source_id = std::move(d.source_id);
    return out;
  }

  void replay_one(const entry& e, replay_result& result) {
    if (!e.replayable) {  // nothing to replay: it stays for inspection and purge
      result.left += 1;
      return;
    }
    std::lock_guard lock(mutex_);
    const auto& k = link_.keys();
    const std::string done =
        e.idempotency_key ? k.done_prefix + *e.idempotency_key : std::string();
    const std::string maxlen =
        config_.max_length ? std::to_string(*config_.max_length) : std::string();
    const std::string_view keys[] = {k.dead, k.stream, k.stats, done};
    const std::string_view args[] = {e.id, maxlen};
    auto r = link_.eval(detail::rsq_script::replay,
                        std::span(keys, e.idempotency_key ? 4 : 3), args);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
      result.left += 1;
      if (!r) {
        throw redis_stream_error(
            fmt::format("redis_stream_queue: replay: {}", link_.last_error()));
      }
      if (r->type == REDIS_REPLY_ERROR) {
        throw redis_stream_error(
            fmt::format("redis_stream_queue: replay: {}", detail::rsq_str(r.get())));
      }
      return;
    }
    const std::int64_t outcome = detail::rsq_int(r->element[0]);
    if (outcome == 1) ++result.replayed;
    if (outcome == 2) ++result.duplicates;
    if (outcome == 3) ++result.left;  // no single job field (checked again in Redis)
  }

  const redis_stream_queue_config config_;
  const Codec codec_;
  std::mutex mutex_;
  detail::rsq_link<Clock> link_;
  std::atomic<std::uint64_t> decode_errors_{0};
};

// ---- the queue (producer side, metrics, dead letters) ----------------------------------

/// Producer and administration side of a queue on a Redis stream (see the header
/// comment). Thread-safe.
template <class Job, class Codec = redis_default_codec,
          clock_source Clock = steady_clock_source>
requires redis_codec<Codec, Job>
class redis_stream_queue {
 public:
  using job_type = Job;
  using dead_letter_type = redis_dead_letters<Job, Codec, Clock>;

  explicit redis_stream_queue(redis_stream_queue_config config, Codec codec = {},
                              Clock clock = {})
      : config_(detail::rsq_validated(std::move(config))),
        codec_(codec),
        link_(config_, clock),
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
    const auto deadline = std::chrono::steady_clock::now() + config_.enqueue_deadline;
    bool maybe = false;
    for (;;) {
      enqueue_result r = try_enqueue_once(payload, key);
      maybe = maybe || r.maybe_enqueued;
      r.maybe_enqueued = maybe && !r.ok();
      if (r.status != enqueue_status::unavailable ||
          config_.on_unavailable == redis_unavailable_policy::fail) {
        return r;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) {
        r.status = enqueue_status::timed_out;
        return r;
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
    }
  }

  /// Queue metrics from Redis; nullopt when Redis cannot be reached.
  [[nodiscard]] std::optional<redis_stream_queue_metrics> metrics() {
    std::lock_guard lock(mutex_);
    redisContext* c = link_.get();
    if (c == nullptr) return std::nullopt;
    const auto& k = link_.keys();
    const std::string_view cmds[][6] = {
        {"XLEN", k.stream},
        {"XINFO", "GROUPS", k.stream},
        {"XPENDING", k.stream, k.group},
        {"XLEN", k.dead},
        {"TIME"},
        {"XRANGE", k.stream, "-", "+", "COUNT", "1"},
        {"HMGET", k.stats, "completed", "duplicates", "dead_lettered", "replayed"},
        {"HMGET", k.stats, "purged", "malformed"},
    };
    const std::size_t counts[] = {2, 3, 3, 2, 1, 6, 6, 4};
    constexpr std::size_t n = std::size(counts);
    for (std::size_t i = 0; i < n; ++i) {
      const char* argv[6];
      std::size_t lens[6];
      for (std::size_t j = 0; j < counts[i]; ++j) {
        argv[j] = cmds[i][j].data();
        lens[j] = cmds[i][j].size();
      }
      if (redisAppendCommandArgv(c, static_cast<int>(counts[i]), argv, lens) != REDIS_OK) {
        link_.drop();
        return std::nullopt;
      }
    }
    detail::redis_reply_ptr replies[n];
    for (std::size_t i = 0; i < n; ++i) {
      void* raw = nullptr;
      if (redisGetReply(c, &raw) != REDIS_OK) {
        link_.drop();
        return std::nullopt;
      }
      replies[i].reset(static_cast<redisReply*>(raw));
    }
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
    std::int64_t now_ms = 0;
    if (replies[4]->type == REDIS_REPLY_ARRAY && replies[4]->elements == 2) {
      now_ms =
          rsq_int(replies[4]->element[0]) * 1000 + rsq_int(replies[4]->element[1]) / 1000;
    }
    const redisReply* p = replies[2].get();
    if (p->type == REDIS_REPLY_ARRAY && p->elements >= 2) {
      m.pending = static_cast<std::size_t>(rsq_int(p->element[0]));
      m.oldest_pending_age =
          detail::rsq_age(now_ms, detail::rsq_id_ms(rsq_str(p->element[1])));
    }
    m.backlog = lag ? static_cast<std::size_t>(std::max<std::int64_t>(0, *lag))
                    : (m.length > m.pending ? m.length - m.pending : 0);
    m.dead_letters = static_cast<std::size_t>(rsq_int(replies[3].get()));
    const redisReply* first = replies[5].get();
    if (first->type == REDIS_REPLY_ARRAY && first->elements > 0 &&
        first->element[0]->type == REDIS_REPLY_ARRAY && first->element[0]->elements > 0) {
      m.oldest_age = detail::rsq_age(
          now_ms, detail::rsq_id_ms(rsq_str(first->element[0]->element[0])));
    }
    const redisReply* s = replies[6].get();
    if (s->type == REDIS_REPLY_ARRAY && s->elements == 4) {
      m.completed = static_cast<std::uint64_t>(rsq_int(s->element[0]));
      m.duplicates = static_cast<std::uint64_t>(rsq_int(s->element[1]));
      m.dead_lettered = static_cast<std::uint64_t>(rsq_int(s->element[2]));
      m.replayed = static_cast<std::uint64_t>(rsq_int(s->element[3]));
    }
    const redisReply* s2 = replies[7].get();
    if (s2->type == REDIS_REPLY_ARRAY && s2->elements == 2) {
      m.purged = static_cast<std::uint64_t>(rsq_int(s2->element[0]));
      m.malformed = static_cast<std::uint64_t>(rsq_int(s2->element[1]));
    }
    return m;
  }

  /// The dead-letter stream (inspect / replay / purge).
  [[nodiscard]] dead_letter_type& dead_letters() noexcept { return dead_; }
  [[nodiscard]] const redis_stream_queue_config& config() const noexcept { return config_; }

 private:
  enqueue_result try_enqueue_once(std::string_view payload,
                                  std::optional<std::string_view> key) {
    std::lock_guard lock(mutex_);
    if (link_.get() == nullptr) {
      return {enqueue_status::unavailable, {}, false, link_.last_error()};
    }
    const std::string maxlen =
        config_.max_length ? std::to_string(*config_.max_length) : std::string();
    std::string_view args[10];
    std::size_t n = 0;
    args[n++] = "XADD";
    args[n++] = link_.keys().stream;
    if (config_.max_length) {
      args[n++] = "MAXLEN";
      args[n++] = "~";
      args[n++] = maxlen;
    }
    args[n++] = "*";
    args[n++] = "j";
    args[n++] = payload;
    if (key) {
      args[n++] = "k";
      args[n++] = *key;
    }
    auto r = link_.command(std::span(args, n));
    if (!r) return {enqueue_status::unavailable, {}, true, link_.last_error()};
    if (r->type != REDIS_REPLY_STRING) {
      return {
          enqueue_status::server_error, {}, false, std::string(detail::rsq_str(r.get()))};
    }
    return {enqueue_status::ok, std::string(detail::rsq_str(r.get())), false, {}};
  }

  const redis_stream_queue_config config_;
  const Codec codec_;
  std::mutex mutex_;
  detail::rsq_link<Clock> link_;
  dead_letter_type dead_;
};

// ---- the worker ------------------------------------------------------------------------

class redis_job_context;
namespace detail {
struct rsq_context_access;
}  // namespace detail

/// What a handler can see and do about the job it runs (see the header comment).
class redis_job_context {
 public:
  /// The entry's stream ID.
  [[nodiscard]] std::string_view id() const noexcept { return id_; }
  /// This delivery's number (1 = first): the attempt.
  [[nodiscard]] std::uint32_t attempt() const noexcept { return attempt_; }
  [[nodiscard]] const std::optional<std::string>& idempotency_key() const noexcept {
    return key_;
  }
  /// Adds a Redis command to run atomically with the job's acknowledgement, only if the
  /// job completes now for the first time (exactly once per idempotency key). A command
  /// of more than 7,000 arguments makes the completion fail (the job is retried).
  void commit(std::initializer_list<std::string_view> command) {
    commit(std::span<const std::string_view>(command.begin(), command.size()));
  }
  void commit(std::span<const std::string_view> command) {
    if (command.empty()) return;
    effects_.push_back(std::to_string(command.size()));
    for (const std::string_view a : command) effects_.emplace_back(a);
  }
  /// Restarts the visibility timeout of this job (a heartbeat for long handlers); false
  /// when Redis was unreachable or the job is no longer this worker's.
  bool extend() { return extend_ ? extend_() : false; }

 private:
  friend struct detail::rsq_context_access;

  void reset(std::string_view id, std::uint32_t attempt, std::optional<std::string> key) {
    id_.assign(id);
    attempt_ = attempt;
    key_ = std::move(key);
    effects_.clear();
  }

  std::string id_;
  std::uint32_t attempt_ = 0;
  std::optional<std::string> key_;
  std::vector<std::string> effects_;
  std::function<bool()> extend_;
};

namespace detail {
/// The worker's side of redis_job_context.
struct rsq_context_access {
  static void reset(redis_job_context& c, std::string_view id, std::uint32_t attempt,
                    std::optional<std::string> key) {
    c.reset(id, attempt, std::move(key));
  }
  static const std::vector<std::string>& effects(const redis_job_context& c) noexcept {
    return c.effects_;
  }
  static const std::string& id(const redis_job_context& c) noexcept { return c.id_; }
  static void set_extend(redis_job_context& c, std::function<bool()> f) {
    c.extend_ = std::move(f);
  }
};
}  // namespace detail

/// A worker handler: callable with (Job&) or (Job&, redis_job_context&), returning void
/// (success unless it throws), bool or job_result. Smallest: `[](order&) {}`.
template <class H, class Job>
concept redis_job_handler = job_handler<H, Job> ||
    (std::invocable<H&, Job&, redis_job_context&> &&
     (std::is_void_v<std::invoke_result_t<H&, Job&, redis_job_context&>> ||
      std::same_as<std::remove_cvref_t<std::invoke_result_t<H&, Job&, redis_job_context&>>,
                   bool> ||
      std::same_as<std::remove_cvref_t<std::invoke_result_t<H&, Job&, redis_job_context&>>,
                   job_result>));

/// What one poll() did.
enum class poll_status : std::uint8_t {
  ok = 0,           ///< read (and processed) zero or more entries
  unavailable = 1,  ///< Redis unreachable (entries held stay pending)
  stopped = 2,      ///< request_stop() was seen; unstarted entries were released
};

struct poll_result {
  poll_status status = poll_status::ok;
  std::size_t processed = 0;  ///< entries finished (completed, retried, dead-lettered)
};

/// Consumes a redis_stream_queue's stream in the consumer group (see the header
/// comment). poll()/run() on one thread; request_stop() and stats() from any.
template <class Job, class Codec = redis_default_codec,
          clock_source Clock = steady_clock_source>
requires redis_codec<Codec, Job>
class redis_stream_worker {
 public:
  using job_type = Job;

  template <redis_job_handler<Job> H>
  redis_stream_worker(redis_stream_queue_config config, H handler, Codec codec = {},
                      Clock clock = {})
      : config_(detail::rsq_validated(std::move(config))),
        codec_(std::move(codec)),
        link_(config_, std::move(clock)),
        handler_(wrap(std::move(handler))),
        visibility_ms_(detail::rsq_ms(config_.visibility_timeout)),
        retry_idle_ms_(detail::rsq_ms(config_.visibility_timeout - config_.retry_delay)),
        ttl_ms_(detail::rsq_ms(config_.idempotency_ttl)),
        dead_max_(std::to_string(config_.dead_letter_max_length)),
        batch_(std::to_string(config_.batch)),
        block_ms_(detail::rsq_ms(config_.block_timeout)) {
    detail::rsq_context_access::set_extend(context_, [this] { return extend_current(); });
  }

  redis_stream_worker(const redis_stream_worker&) = delete;
  redis_stream_worker& operator=(const redis_stream_worker&) = delete;

  /// One round: claims idle entries (every claim_interval) or reads new ones (blocking up
  /// to block_timeout), and processes them.
  poll_result poll() {
    poll_result result;
    if (stop_requested()) {
      result.status = poll_status::stopped;
      return result;
    }
    if (link_.get() == nullptr) {
      result.status = poll_status::unavailable;
      return result;
    }
    std::vector<message> batch;
    const auto now = link_.clock().now();
    bool ok = true;
    if (!claimed_once_ || now >= next_claim_) {
      claimed_once_ = true;
      next_claim_ = now + std::chrono::duration_cast<typename Clock::duration>(
                              config_.claim_interval);
      ok = claim(batch);
    }
    if (ok && batch.empty()) ok = read_new(batch);
    if (!ok) {
      result.status = poll_status::unavailable;
      return result;
    }
    result.processed = process(batch);
    if (!link_.connected()) result.status = poll_status::unavailable;
    if (stop_requested()) result.status = poll_status::stopped;
    return result;
  }

  /// Polls until request_stop() (or `token`); waits with the reconnect backoff while
  /// Redis is unreachable (real time, at most block_timeout per wait).
  void run(std::stop_token token = {}) {
    std::stop_callback on_stop(token, [this] { request_stop(); });
    while (!stop_requested()) {
      if (poll().status == poll_status::unavailable && !stop_requested()) {
        std::chrono::nanoseconds wait = std::chrono::milliseconds{1};
        const auto next = link_.next_attempt();
        const auto now = link_.clock().now();
        if (next > now) {
          wait = std::max(wait,
                          std::chrono::duration_cast<std::chrono::nanoseconds>(next - now));
        }
        std::this_thread::sleep_for(std::min(wait, config_.block_timeout));
      }
    }
  }

  /// Asks run() / poll() to stop after the job in progress. Async-signal-safe.
  void request_stop() noexcept { stop_.store(true, std::memory_order_relaxed); }
  [[nodiscard]] bool stop_requested() const noexcept {
    return stop_.load(std::memory_order_relaxed);
  }

  [[nodiscard]] redis_stream_worker_stats stats() const noexcept {
    redis_stream_worker_stats s;
    s.delivered = delivered_.load();
    s.claimed = claimed_.load();
    s.succeeded = succeeded_.load();
    s.failed = failed_.load();
    s.retried = retried_.load();
    s.dead_lettered = dead_lettered_.load();
    s.duplicates = duplicates_.load();
    s.stale = stale_.load();
    s.released = released_.load();
    s.decode_errors = decode_errors_.load();
    s.malformed = malformed_.load();
    s.effect_errors = effect_errors_.load();
    s.trimmed = trimmed_.load();
    s.transport_errors = link_.transport_errors.load();
    s.server_errors = server_errors_.load();
    s.connects = link_.connects.load();
    s.connect_failures = link_.connect_failures.load();
    return s;
  }

  [[nodiscard]] const std::string& consumer() const noexcept { return config_.consumer; }
  [[nodiscard]] const redis_stream_queue_config& config() const noexcept { return config_; }

 private:
  using handler_fn = std::function<job_result(Job&, redis_job_context&)>;

  struct message {
    std::string id;
    bool has_payload = false;  // false only for a malformed entry without a single `j`
    std::string payload;
    std::optional<std::string> key;
    std::uint64_t deliveries = 1;
    std::string malformed;  // why its fields could not be decoded; "" when they could
    bool done = false;      // its key is in the completed set (pre-check)
  };

  template <class H>
  static handler_fn wrap(H handler) {
    auto shared = std::make_shared<H>(std::move(handler));
    return [shared](Job& job, redis_job_context& ctx) -> job_result {
      auto call = [&]() -> decltype(auto) {
        if constexpr (std::invocable<H&, Job&, redis_job_context&>) {
          return std::invoke(*shared, job, ctx);
        } else {
          (void)ctx;
          return std::invoke(*shared, job);
        }
      };
      using R = decltype(call());
      if constexpr (std::is_void_v<R>) {
        call();
        return job_result::success();
      } else if constexpr (std::same_as<std::remove_cvref_t<R>, bool>) {
        if (call()) return job_result::success();
        return job_result::failure("handler returned false");
      } else {
        return job_result(call());
      }
    };
  }

  /// Decodes an entry (untrusted: any client can XADD to the stream) and its delivery
  /// count (nullopt: Redis reported none usable). Malformed entries get `malformed` set.
  static void parse_entry(const redisReply* e, std::optional<std::uint64_t> deliveries,
                          message& m) {
    m.id = std::string(detail::rsq_str(e->element[0]));
    m.deliveries = deliveries ? std::max<std::uint64_t>(1, *deliveries) : 1;
    std::vector<std::string_view> fields;
    detail::rsq_job_fields decoded;
    std::optional<std::string> salvaged;
    const detail::rsq_decode_error error =
        detail::rsq_field_list(e->element[1], fields)
            ? detail::rsq_decode_job_fields(fields, decoded, &salvaged)
            : detail::rsq_decode_error::missing_field;
    if (error == detail::rsq_decode_error::none) {
      m.has_payload = true;
      m.payload = std::move(decoded.payload);
      m.key = std::move(decoded.key);
    } else {
      m.malformed = fmt::format("malformed stream entry: {}", detail::to_string(error));
      m.has_payload = salvaged.has_value();
      m.payload = std::move(salvaged).value_or(std::string());
    }
    if (!deliveries && m.malformed.empty()) {
      m.malformed = "malformed stream entry: no valid delivery count";
    }
  }

  bool claim(std::vector<message>& batch) {
    const auto& k = link_.keys();
    const std::string_view keys[] = {k.stream};
    const std::string_view args[] = {k.group, config_.consumer, visibility_ms_, cursor_,
                                     batch_};
    auto r = link_.eval(detail::rsq_script::claim, keys, args);
    if (!r) return false;
    if (r->type == REDIS_REPLY_ERROR) return server_error(r.get());
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return true;
    cursor_.assign(detail::rsq_str(r->element[0]));
    if (cursor_.empty()) cursor_ = "0-0";
    if (cursor_ != "0-0") next_claim_ = link_.clock().now();  // more to claim: go on
    const redisReply* entries = r->element[1];
    if (entries->type != REDIS_REPLY_ARRAY) return true;
    for (std::size_t i = 0; i < entries->elements; ++i) {
      const redisReply* e = entries->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 3) continue;
      message m;
      const redisReply* n = e->element[2];
      parse_entry(e,
                  n->type == REDIS_REPLY_INTEGER ? detail::rsq_delivery_count(n->integer)
                                                 : std::nullopt,
                  m);
      batch.push_back(std::move(m));
    }
    claimed_.fetch_add(batch.size(), std::memory_order_relaxed);
    if (r->element[2]->type == REDIS_REPLY_ARRAY) {
      trimmed_.fetch_add(r->element[2]->elements, std::memory_order_relaxed);
    }
    return true;
  }

  bool read_new(std::vector<message>& batch) {
    const auto& k = link_.keys();
    const std::string_view args[] = {"XREADGROUP", "GROUP",  k.group, config_.consumer,
                                     "COUNT",      batch_,   "BLOCK", block_ms_,
                                     "STREAMS",    k.stream, ">"};
    link_.set_timeout(config_.block_timeout + link_.command_timeout());
    auto r = link_.command(args);
    link_.set_timeout(link_.command_timeout());
    if (!r) return false;
    if (r->type == REDIS_REPLY_ERROR) {
      if (detail::rsq_str(r.get()).starts_with("NOGROUP")) return link_.ensure_group();
      return server_error(r.get());
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) return true;  // timed out
    const redisReply* stream = r->element[0];
    if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2) return true;
    const redisReply* entries = stream->element[1];
    for (std::size_t i = 0; i < entries->elements; ++i) {
      const redisReply* e = entries->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
      message m;
      parse_entry(e, std::uint64_t{1}, m);
      batch.push_back(std::move(m));
    }
    delivered_.fetch_add(batch.size(), std::memory_order_relaxed);
    return true;
  }

  /// Marks the messages whose idempotency key already completed (one pipelined round
  /// trip). False on a transport error.
  bool precheck(std::vector<message>& batch) {
    redisContext* c = link_.get();
    if (c == nullptr) return false;
    std::size_t sent = 0;
    std::string done;
    for (const message& m : batch) {
      if (!m.key) continue;
      done = link_.keys().done_prefix + *m.key;
      const char* argv[] = {"EXISTS", done.data()};
      const std::size_t lens[] = {6, done.size()};
      if (redisAppendCommandArgv(c, 2, argv, lens) != REDIS_OK) {
        link_.drop();
        return false;
      }
      ++sent;
    }
    for (message& m : batch) {
      if (!m.key) continue;
      void* raw = nullptr;
      if (redisGetReply(c, &raw) != REDIS_OK) {
        link_.drop();
        return false;
      }
      detail::redis_reply_ptr r(static_cast<redisReply*>(raw));
      m.done = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
      --sent;
    }
    return sent == 0;
  }

  std::size_t process(std::vector<message>& batch) {
    if (batch.empty()) return 0;
    if (!precheck(batch)) return 0;
    std::size_t processed = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (stop_requested()) {
        release(std::span(batch).subspan(i));
        break;
      }
      if (!link_.connected()) break;  // the rest stays pending: claimed after the timeout
      if (process_one(batch[i])) ++processed;
      if (batch[i].key && completed_now_) {  // a key twice in one batch: run it once
        for (std::size_t j = i + 1; j < batch.size(); ++j) {
          if (batch[j].key == batch[i].key) batch[j].done = true;
        }
      }
    }
    return processed;
  }

  /// True when the entry was finished (acknowledged, retried or dead-lettered).
  bool process_one(message& m) {
    completed_now_ = false;
    if (!m.malformed.empty()) {  // never run: there is no job to trust
      malformed_.fetch_add(1, std::memory_order_relaxed);
      return dead_letter(m, m.deliveries, m.malformed, "outgrow::malformed_entry");
    }
    if (m.deliveries > config_.max_attempts) {
      return dead_letter(m, m.deliveries - 1,
                         fmt::format("delivered {} times without completing (a worker "
                                     "died or exceeded the visibility timeout)",
                                     m.deliveries - 1),
                         "outgrow::delivery_limit");
    }
    // From here on deliveries <= max_attempts <= 1000: it fits the context's attempt.
    const auto attempt = static_cast<std::uint32_t>(m.deliveries);
    if (m.done) {
      detail::rsq_context_access::reset(context_, m.id, attempt, m.key);
      return complete(m);  // the script sees the key and counts a duplicate
    }
    std::optional<Job> job;
    if (m.has_payload) {
      // Decoded and validated as redis_tier does (validation hooks included).
      job = detail::redis_decode_value<Job>(codec_, m.payload,
                                            std::numeric_limits<std::size_t>::max());
    }
    if (!job) {
      decode_errors_.fetch_add(1, std::memory_order_relaxed);
      return dead_letter(m, m.deliveries, "the codec could not decode the payload",
                         "outgrow::decode_error");
    }
    detail::rsq_context_access::reset(context_, m.id, attempt, m.key);
    job_result result;
    try {
      result = handler_(*job, context_);
    } catch (const std::exception& e) {
      result = job_result::failure(e.what(), detail::demangled_name(typeid(e)));
    } catch (...) {
      result = job_result::failure("unknown exception", "unknown");
    }
    if (result.ok()) return complete(m);
    failed_.fetch_add(1, std::memory_order_relaxed);
    if (result.retryable() && m.deliveries < config_.max_attempts) return retry(m, result);
    return dead_letter(m, m.deliveries, result.error(), result.error_type());
  }

  bool complete(const message& m) {
    completed_now_ = false;
    const auto& k = link_.keys();
    const std::string done = m.key ? k.done_prefix + *m.key : std::string();
    const std::string_view keys[] = {k.stream, k.failures, k.stats, done};
    std::vector<std::string_view> args = {k.group, m.id, ttl_ms_};
    const auto& effects = detail::rsq_context_access::effects(context_);
    args.insert(args.end(), effects.begin(), effects.end());
    auto r = link_.eval(detail::rsq_script::complete, std::span(keys, m.key ? 4 : 3), args);
    if (!r) return false;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return server_error(r.get());
    switch (detail::rsq_int(r->element[0])) {
      case 1:
        completed_now_ = true;
        succeeded_.fetch_add(1, std::memory_order_relaxed);
        effect_errors_.fetch_add(static_cast<std::uint64_t>(detail::rsq_int(r->element[1])),
                                 std::memory_order_relaxed);
        break;
      case 2:
        duplicates_.fetch_add(1, std::memory_order_relaxed);
        break;
      default:
        stale_.fetch_add(1, std::memory_order_relaxed);
        break;
    }
    return true;
  }

  bool retry(const message& m, const job_result& result) {
    const auto& k = link_.keys();
    const std::string_view keys[] = {k.stream, k.failures};
    const std::string_view args[] = {k.group,        config_.consumer,    m.id,
                                     retry_idle_ms_, result.error_type(), result.error()};
    auto r = link_.eval(detail::rsq_script::fail, keys, args);
    if (!r) return false;
    if (r->type != REDIS_REPLY_INTEGER) return server_error(r.get());
    if (r->integer == 1) {
      retried_.fetch_add(1, std::memory_order_relaxed);
    } else {
      stale_.fetch_add(1, std::memory_order_relaxed);
    }
    return true;
  }

  bool dead_letter(const message& m, std::uint64_t attempts, std::string_view error,
                   std::string_view type) {
    const auto& k = link_.keys();
    const std::string done = m.key ? k.done_prefix + *m.key : std::string();
    const std::string n = std::to_string(attempts);
    const std::string_view keys[] = {k.stream, k.dead, k.failures, k.stats, done};
    const std::string_view args[] = {k.group,
                                     config_.consumer,
                                     m.id,
                                     n,
                                     type,
                                     error,
                                     m.payload,
                                     m.key ? "1" : "0",
                                     m.key ? std::string_view(*m.key) : std::string_view(),
                                     dead_max_,
                                     m.has_payload ? "1" : "0"};
    auto r =
        link_.eval(detail::rsq_script::dead_letter, std::span(keys, m.key ? 5 : 4), args);
    if (!r) return false;
    if (r->type == REDIS_REPLY_NIL) {
      stale_.fetch_add(1, std::memory_order_relaxed);
    } else if (r->type == REDIS_REPLY_STRING && r->len == 0) {
      duplicates_.fetch_add(1, std::memory_order_relaxed);
    } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
      dead_lettered_.fetch_add(1, std::memory_order_relaxed);
    } else {
      return server_error(r.get());
    }
    return true;
  }

  /// Hands unstarted entries back: claimable at once, the delivery not counted.
  void release(std::span<const message> rest) {
    const auto& k = link_.keys();
    for (const message& m : rest) {
      const std::string count = std::to_string(m.deliveries > 0 ? m.deliveries - 1 : 0);
      const std::string_view args[] = {"XCLAIM",     k.stream, k.group, config_.consumer,
                                       "0",          m.id,     "IDLE",  visibility_ms_,
                                       "RETRYCOUNT", count,    "JUSTID"};
      auto r = link_.command(args);
      if (!r) return;  // Redis gone: the entries come back after the visibility timeout
      if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        released_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }

  bool extend_current() {
    const auto& k = link_.keys();
    const std::string_view keys[] = {k.stream};
    const std::string_view args[] = {k.group, config_.consumer,
                                     detail::rsq_context_access::id(context_)};
    auto r = link_.eval(detail::rsq_script::extend, keys, args);
    return r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
  }

  bool server_error(const redisReply* r) {
    (void)r;
    server_errors_.fetch_add(1, std::memory_order_relaxed);
    return true;  // the connection is fine; the entry stays pending
  }

  const redis_stream_queue_config config_;
  const Codec codec_;
  detail::rsq_link<Clock> link_;
  handler_fn handler_;
  const std::string visibility_ms_, retry_idle_ms_, ttl_ms_, dead_max_, batch_, block_ms_;
  redis_job_context context_;
  std::string cursor_ = "0-0";
  bool claimed_once_ = false;
  bool completed_now_ = false;  // the last process_one() committed a completion
  typename Clock::time_point next_claim_{};
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> delivered_{0}, claimed_{0}, succeeded_{0}, failed_{0},
      retried_{0}, dead_lettered_{0}, duplicates_{0}, stale_{0}, released_{0},
      decode_errors_{0}, malformed_{0}, effect_errors_{0}, trimmed_{0}, server_errors_{0};
};

static_assert(metrics_snapshot<redis_stream_queue_metrics>);
static_assert(metrics_snapshot<redis_stream_worker_stats>);
static_assert(metrics_snapshot<redis_dead_letter_metrics>);

}  // namespace outgrow
