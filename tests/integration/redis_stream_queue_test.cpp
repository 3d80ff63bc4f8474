// Integration tests of outgrow::redis_stream_queue / redis_stream_worker against a real
// redis-server (tests/support/redis_server.hpp), plus the multi-process test of issue 11:
// 3 worker processes and 2 producer processes (fork()ed from the test), 20,000 jobs, 5 %
// transient failures, 0.5 % poison jobs, one worker SIGKILLed mid-run and replaced, and
// redis-server itself killed and restarted from its AOF (appendfsync always) while the
// producers are enqueueing.
//
// Time: single-process tests never wait for time to pass — visibility timeouts are
// crossed by setting an entry's idle time with XCLAIM ... IDLE (what Redis would see after
// the wait), and claim intervals by a manual_clock. The multi-process test waits for its
// processes (polling Redis for progress, bounded by deadlines) and uses a 1 s visibility
// timeout for the killed worker's jobs; it asserts outcomes, never durations. Under ASan or
// TSan (or with OUTGROW_RSQ_JOBS=n in the environment) it uses fewer jobs: 4,000.
#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/redis/redis_stream_queue.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"
#include "redis_server.hpp"

using namespace std::chrono_literals;

namespace {

using outgrow::job_result;
using outgrow::redis_job_context;
using str_queue = outgrow::redis_stream_queue<std::string>;
using str_worker = outgrow::redis_stream_worker<std::string, outgrow::redis_default_codec,
                                                outgrow::manual_clock>;

outgrow::redis_stream_queue_config base_config(const outgrow_test::redis_server& s) {
  return {.connection = {.host = s.host(),
                         .port = s.port(),
                         .command_timeout = 1s,
                         .reconnect_backoff = outgrow::full_jitter_backoff(1ms, 2ms),
                         .seed = 0x5713'EA11'5EEDULL},
          .stream = "t:jobs",
          .group = "g",
          .consumer = "w1",
          .max_attempts = 3,
          .visibility_timeout = 30s,
          .retry_delay = 0ms,  // a failed entry is claimable at once
          .block_timeout = 1ms,
          .claim_interval = 1s,
          .batch = 16};
}

/// Polls (advancing the worker's manual clock past claim_interval each time, so every
/// poll also claims) until `done()` or `rounds` polls.
template <class Worker, class Done>
void pump(Worker& w, outgrow::manual_clock& clock, Done done, int rounds = 200) {
  for (int i = 0; i < rounds && !done(); ++i) {
    clock.advance(2s);
    (void)w.poll();
  }
}

std::int64_t to_int(const redisReply& r) {
  if (r.type == REDIS_REPLY_INTEGER) return static_cast<std::int64_t>(r.integer);
  if (r.type == REDIS_REPLY_STRING) return std::stoll(std::string(r.str, r.len));
  return -1;
}

}  // namespace

TEST_CASE("redis_stream_queue rejects invalid configuration") {
  using outgrow::config_error;
  using cfg = outgrow::redis_stream_queue_config;
  const auto make = [](cfg c) { outgrow::redis_stream_queue<std::string> q(std::move(c)); };
  const auto check = [&](cfg c, const char* field) {
    try {
      make(std::move(c));
      FAIL("no config_error for " << field);
    } catch (const config_error& e) {
      CHECK(std::string(e.what()).find(field) != std::string::npos);
      CHECK(std::string(e.what()).find("redis_stream_queue") != std::string::npos);
    }
  };
  check({.connection = {.port = 0}}, "connection.port");
  check({.connection = {.host = ""}}, "connection.host");
  check({.connection = {.database = -1}}, "connection.database");
  check({.connection = {.connect_timeout = 0s}}, "connection.connect_timeout");
  check({.stream = ""}, "stream");
  check({.group = ""}, "group");
  check({.max_attempts = 0}, "max_attempts");
  check({.max_attempts = 1001}, "max_attempts");
  check({.visibility_timeout = 0s}, "visibility_timeout");
  check({.visibility_timeout = 1s, .retry_delay = 2s}, "retry_delay");
  check({.block_timeout = 0ms}, "block_timeout");
  check({.claim_interval = 0ms}, "claim_interval");
  check({.batch = 0}, "batch");
  check({.max_length = 0}, "max_length");
  check({.dead_letter_max_length = 0}, "dead_letter_max_length");
  check({.idempotency_ttl = 0s}, "idempotency_ttl");
  check({.enqueue_deadline = -1s}, "enqueue_deadline");
  check({.connection = {.command_timeout = 0s}}, "connection.command_timeout");
  CHECK_THROWS_AS((str_worker({.max_attempts = 0}, [](std::string&) {})), config_error);
  CHECK_NOTHROW(make({}));  // constructing never needs Redis
}

TEST_CASE("redis_stream_queue_config keeps the queue's connection defaults") {
  const outgrow::redis_stream_queue_config c{};
  CHECK(c.connection.host == "127.0.0.1");
  CHECK(c.connection.port == 6379);
  CHECK(c.connection.connect_timeout == 200ms);
  CHECK(!c.connection.seed);  // random jitter per object unless set
  // An unset command_timeout is the queue's own 1 s, not redis_tier's 100 ms, also when
  // the user writes a connection of their own.
  CHECK(outgrow::detail::rsq_validated(c).connection.command_timeout == 1s);
  const outgrow::redis_stream_queue_config mine{.connection = {.host = "localhost"}};
  CHECK(outgrow::detail::rsq_validated(mine).connection.command_timeout == 1s);
  CHECK(outgrow::detail::command_timeout(outgrow::redis_connection_config{}) == 100ms);
}

TEST_CASE("redis_stream_queue delivers every job once and acknowledges it") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  str_queue q(config);
  std::map<std::string, int> runs;
  str_worker w(
      config, [&](std::string& job) { ++runs[job]; }, {}, clock);
  for (int i = 0; i < 50; ++i) {
    auto r = q.enqueue(fmt::format("job-{}", i));
    REQUIRE(r.ok());
    REQUIRE(!r.id.empty());
  }
  auto before = q.metrics();
  REQUIRE(before);
  CHECK(before->length == 50);
  CHECK(before->backlog == 50);
  CHECK(before->pending == 0);
  pump(w, clock, [&] { return runs.size() == 50; });
  REQUIRE(runs.size() == 50);
  for (const auto& [job, n] : runs) CHECK(n == 1);
  auto after = q.metrics();
  REQUIRE(after);
  CHECK(after->length == 0);  // acknowledged entries are deleted
  CHECK(after->pending == 0);
  CHECK(after->backlog == 0);
  CHECK(after->completed == 50);
  CHECK(w.metrics().succeeded == 50);
  CHECK(w.metrics().delivered == 50);
}

TEST_CASE(
    "redis_stream_queue retries a failing job then dead-letters it after max_attempts") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  str_queue q(config);
  std::vector<std::uint32_t> attempts_seen;
  int ok_runs = 0;
  str_worker w(
      config,
      [&](std::string& job, redis_job_context& ctx) {
        if (job == "poison") {
          attempts_seen.push_back(ctx.attempt());
          throw std::runtime_error("boom");
        }
        ++ok_runs;
      },
      {}, clock);
  REQUIRE(q.enqueue("poison", "key-p"));
  REQUIRE(q.enqueue("fine"));
  pump(w, clock, [&] { return q.dead_letters().size() == 1; });
  CHECK(attempts_seen == std::vector<std::uint32_t>{1, 2, 3});
  CHECK(ok_runs == 1);
  auto dead = q.dead_letters().snapshot();
  REQUIRE(dead.size() == 1);
  const auto& e = dead.front();
  REQUIRE(e.job);
  CHECK(*e.job == "poison");
  CHECK(e.payload == "poison");
  CHECK(e.error == "boom");
  CHECK(e.error_type == "std::runtime_error");
  CHECK(e.attempts == 3);
  CHECK(e.first_failure <= e.last_failure);
  CHECK(e.first_failure.time_since_epoch() > 0s);
  CHECK(e.idempotency_key == std::optional<std::string>("key-p"));
  CHECK(!e.source_id.empty());
  const auto s = w.metrics();
  CHECK(s.failed == 3);
  CHECK(s.retried == 2);
  CHECK(s.dead_lettered == 1);
  auto m = q.metrics();
  REQUIRE(m);
  CHECK(m->length == 0);
  CHECK(m->pending == 0);
  CHECK(m->dead_letters == 1);
  CHECK(m->dead_lettered == 1);
  // The failure record of the retried entry was cleaned up with it.
  CHECK(server.command("HLEN %s", "t:jobs:failures")->integer == 0);
}

TEST_CASE("redis_stream_queue recovers when redis loses its scripts and the group") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  str_queue q(config);
  std::vector<std::string> runs;
  str_worker w(
      config, [&](std::string& job) { runs.push_back(job); }, {}, clock);
  REQUIRE(q.enqueue("one"));
  pump(w, clock, [&] { return runs.size() == 1; });
  REQUIRE(runs.size() == 1);
  // An operator flushes everything while the connections stay open.
  REQUIRE(server.command("FLUSHALL")->type == REDIS_REPLY_STATUS);
  REQUIRE(server.command("SCRIPT FLUSH")->type == REDIS_REPLY_STATUS);
  REQUIRE(q.enqueue("two"));  // XADD recreates the stream (without the group)
  pump(w, clock, [&] { return runs.size() == 2; });  // NOGROUP -> group, NOSCRIPT -> load
  CHECK(runs == std::vector<std::string>{"one", "two"});
  auto m = q.metrics();
  REQUIRE(m);
  CHECK(m->length == 0);
  CHECK(m->completed == 1);  // the totals were flushed too
}

TEST_CASE("redis_stream_queue sends permanent failures to the dead letters at once") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  str_queue q(config);
  int runs = 0;
  str_worker w(
      config,
      [&](std::string&) {
        ++runs;
        return job_result::permanent_failure("bad input", "test::invalid");
      },
      {}, clock);
  REQUIRE(q.enqueue("x"));
  pump(w, clock, [&] { return q.dead_letters().size() == 1; });
  CHECK(runs == 1);
  auto e = q.dead_letters().snapshot().at(0);
  CHECK(e.attempts == 1);
  CHECK(e.error == "bad input");
  CHECK(e.error_type == "test::invalid");
  CHECK(!e.idempotency_key);
}

TEST_CASE("redis_stream_queue dead letters can be inspected replayed and purged") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  config.max_attempts = 1;
  str_queue q(config);
  bool healthy = false;
  std::vector<std::string> done;
  str_worker w(
      config,
      [&](std::string& job, redis_job_context& ctx) {
        if (!healthy) return false;
        done.push_back(job);
        ctx.commit({"HINCRBY", "t:count", job, "1"});
        return true;
      },
      {}, clock);
  for (const char* j : {"a", "b", "c", "d"}) REQUIRE(q.enqueue(j, std::string("k-") + j));
  auto& dlq = q.dead_letters();
  pump(w, clock, [&] { return dlq.size() == 4; });
  REQUIRE(dlq.size() == 4);
  CHECK(w.metrics().failed == 4);
  CHECK(w.metrics().retried == 0);

  auto only_b = dlq.filter([](const auto& e) { return e.job == std::string("b"); });
  REQUIRE(only_b.size() == 1);
  REQUIRE(dlq.find(only_b[0].id));
  CHECK(!dlq.find("1-1"));

  healthy = true;
  auto r = dlq.replay(only_b[0].id);
  CHECK(r.replayed == 1);
  CHECK(dlq.size() == 3);
  pump(w, clock, [&] { return done.size() == 1; });
  CHECK(done == std::vector<std::string>{"b"});

  // "c" completes through another path (its key is marked done): replaying it is a
  // duplicate and drops the entry without running it.
  REQUIRE(server.command("SET %s 1", "t:jobs:done:k-c")->type == REDIS_REPLY_STATUS);
  auto c = dlq.filter([](const auto& e) { return e.job == std::string("c"); });
  REQUIRE(c.size() == 1);
  r = dlq.replay(c[0].id);
  CHECK(r.duplicates == 1);
  CHECK(r.replayed == 0);

  auto a = dlq.filter([](const auto& e) { return e.job == std::string("a"); });
  REQUIRE(a.size() == 1);
  CHECK(dlq.purge(a[0].id));
  CHECK(!dlq.purge(a[0].id));
  CHECK(dlq.size() == 1);
  CHECK(dlq.purge_all() == 1);
  CHECK(dlq.empty());
  const auto dm = dlq.metrics();
  CHECK(dm.added == 4);
  CHECK(dm.replayed == 1);
  CHECK(dm.duplicates == 1);
  CHECK(dm.purged == 2);
  CHECK(dm.size == 0);
  CHECK(to_int(*server.command("HGET %s %s", "t:count", "b")) == 1);
}

TEST_CASE("redis_stream_queue commits effects once per idempotency key") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  str_queue q(config);
  int runs = 0;
  str_worker w(
      config,
      [&](std::string& job, redis_job_context& ctx) {
        ++runs;
        ctx.commit({"HINCRBY", "t:effects", job, "1"});
      },
      {}, clock);
  // The same work enqueued three times (a producer retrying): one effect.
  for (int i = 0; i < 3; ++i) REQUIRE(q.enqueue("pay-42", "order-42"));
  REQUIRE(q.enqueue("pay-43", "order-43"));
  pump(w, clock, [&] { return w.metrics().succeeded + w.metrics().duplicates == 4; });
  CHECK(to_int(*server.command("HGET %s %s", "t:effects", "pay-42")) == 1);
  CHECK(to_int(*server.command("HGET %s %s", "t:effects", "pay-43")) == 1);
  CHECK(runs == 2);  // the pre-check skipped the duplicates without running them
  CHECK(w.metrics().duplicates == 2);
  CHECK(server.command("PTTL %s", "t:jobs:done:order-42")->integer > 0);
  auto m = q.metrics();
  REQUIRE(m);
  CHECK(m->completed == 2);
  CHECK(m->duplicates == 2);
}

TEST_CASE(
    "redis_stream_queue claims entries of a dead consumer after the visibility timeout") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  str_queue q(config);
  std::vector<std::uint32_t> attempts;
  str_worker w(
      config,
      [&](std::string&, redis_job_context& ctx) { attempts.push_back(ctx.attempt()); }, {},
      clock);
  auto id = q.enqueue("orphan");
  REQUIRE(id);
  // A consumer reads it and dies.
  auto read = server.command("XREADGROUP GROUP g ghost COUNT 1 STREAMS t:jobs >");
  REQUIRE(read->type == REDIS_REPLY_ARRAY);
  pump(
      w, clock, [] { return false; }, 3);
  CHECK(attempts.empty());  // idle < visibility timeout: not ours to take
  // Redis now sees it idle for longer than the visibility timeout.
  REQUIRE(server.command("XCLAIM t:jobs g ghost 0 %s IDLE 31000 JUSTID", id.id.c_str())
              ->elements == 1);
  pump(w, clock, [&] { return !attempts.empty(); });
  CHECK(attempts == std::vector<std::uint32_t>{2});
  CHECK(w.metrics().claimed == 1);
  auto m = q.metrics();
  REQUIRE(m);
  CHECK(m->pending == 0);
  CHECK(m->length == 0);
}

TEST_CASE("redis_stream_queue drops the result of a worker whose job was taken over") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock_a;
  outgrow::manual_clock clock_b;
  auto config_a = base_config(server);
  auto config_b = config_a;
  config_b.consumer = "w2";
  str_queue q(config_a);
  str_worker b(
      config_b,
      [&](std::string& job, redis_job_context& ctx) {
        ctx.commit({"HINCRBY", "t:effects", job, "1"});
      },
      {}, clock_b);
  str_worker* b_ptr = &b;
  int a_runs = 0;
  bool extended_before = false;
  bool extended_after = true;
  str_worker a(
      config_a,
      [&](std::string& job, redis_job_context& ctx) {
        ++a_runs;
        // A is "slow": its entry looks idle past the visibility timeout, and B takes it
        // over and completes it while A is still in the handler.
        const std::string id(ctx.id());
        extended_before = ctx.extend();  // a heartbeat: still ours
        (void)server.command("XCLAIM t:jobs g w1 0 %s IDLE 31000 JUSTID", id.c_str());
        clock_b.advance(2s);
        (void)b_ptr->poll();
        extended_after = ctx.extend();  // B has it now: no heartbeat steals it back
        ctx.commit({"HINCRBY", "t:effects", job, "1"});
      },
      {}, clock_a);
  REQUIRE(q.enqueue("job"));
  clock_a.advance(2s);
  (void)a.poll();
  CHECK(a_runs == 1);
  CHECK(extended_before);
  CHECK(!extended_after);
  CHECK(b.metrics().succeeded == 1);
  CHECK(a.metrics().stale == 1);
  CHECK(a.metrics().succeeded == 0);
  CHECK(to_int(*server.command("HGET %s %s", "t:effects", "job")) == 1);
}

TEST_CASE("redis_stream_queue stop releases entries the worker did not start") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  config.batch = 4;
  str_queue q(config);
  str_worker* self = nullptr;
  int runs = 0;
  str_worker w(
      config,
      [&](std::string&) {
        ++runs;
        self->request_stop();
      },
      {}, clock);
  self = &w;
  for (int i = 0; i < 4; ++i) REQUIRE(q.enqueue(std::to_string(i)));
  clock.advance(2s);
  const auto r = w.poll();
  CHECK(r.status == outgrow::poll_status::stopped);
  CHECK(r.processed == 1);
  CHECK(runs == 1);
  CHECK(w.metrics().released == 3);
  CHECK(w.poll().status == outgrow::poll_status::stopped);
  // Another worker takes the released entries at once, as first attempts.
  auto config2 = config;
  config2.consumer = "w2";
  std::vector<std::uint32_t> attempts;
  str_worker w2(
      config2,
      [&](std::string&, redis_job_context& ctx) { attempts.push_back(ctx.attempt()); }, {},
      clock);
  pump(w2, clock, [&] { return attempts.size() == 3; });
  CHECK(attempts == std::vector<std::uint32_t>{1, 1, 1});
  CHECK(w2.metrics().claimed == 3);
}

TEST_CASE("redis_stream_queue reports backlog pending and ages") {
  outgrow_test::redis_server server;
  auto config = base_config(server);
  str_queue q(config);
  for (int i = 0; i < 5; ++i) REQUIRE(q.enqueue(std::to_string(i)));
  REQUIRE(server.command("XREADGROUP GROUP g ghost COUNT 2 STREAMS t:jobs >")->type ==
          REDIS_REPLY_ARRAY);
  auto m = q.metrics();
  REQUIRE(m);
  CHECK(m->length == 5);
  CHECK(m->pending == 2);
  CHECK(m->backlog == 3);
  CHECK(m->consumers == 1);
  CHECK(m->oldest_age >= m->oldest_pending_age);
  CHECK(m->dead_letters == 0);
  CHECK(fmt::format("{}", *m).find("redis_stream_queue_metrics{length=5") == 0);
}

TEST_CASE("redis_stream_queue dead-letters a payload the codec cannot decode") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  outgrow::redis_stream_queue<int> q(config);
  int runs = 0;
  outgrow::redis_stream_worker<int, outgrow::redis_default_codec, outgrow::manual_clock> w(
      config, [&](int&) { ++runs; }, {}, clock);
  REQUIRE(q.enqueue(7));
  REQUIRE(server.command("XADD t:jobs * j %s", "not-a-number")->type == REDIS_REPLY_STRING);
  pump(w, clock, [&] { return q.dead_letters().size() == 1; });
  CHECK(runs == 1);
  auto e = q.dead_letters().snapshot().at(0);
  CHECK(!e.job);
  CHECK(e.payload == "not-a-number");
  CHECK(e.error_type == "outgrow::decode_error");
  CHECK(w.metrics().decode_errors == 1);
}

TEST_CASE("redis_stream_queue fails fast or blocks while redis is down and recovers") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  outgrow::manual_clock producer_clock;  // paces fail_fast's reconnect attempts
  auto config = base_config(server);
  outgrow::redis_stream_queue<std::string, outgrow::redis_default_codec,
                              outgrow::manual_clock>
      fail_fast(config, {}, producer_clock);
  auto blocking_config = config;
  blocking_config.on_unavailable = outgrow::redis_unavailable_policy::block;
  blocking_config.enqueue_deadline = 300ms;  // real time: a blocked producer waits
  str_queue blocking(blocking_config);
  int runs = 0;
  str_worker w(
      config, [&](std::string&) { ++runs; }, {}, clock);
  REQUIRE(fail_fast.enqueue("before"));
  REQUIRE(blocking.enqueue("before"));
  pump(w, clock, [&] { return runs == 2; });
  REQUIRE(runs == 2);

  server.kill();
  auto r = fail_fast.enqueue("during");
  CHECK(r.status == outgrow::enqueue_status::unavailable);
  CHECK(r.maybe_enqueued);  // the XADD was sent; its reply never came
  CHECK(!r.error.empty());
  r = blocking.enqueue("during");
  CHECK(r.status == outgrow::enqueue_status::timed_out);
  CHECK(!fail_fast.metrics());  // a failed connect: the gate now waits for the backoff
  r = fail_fast.enqueue("during");
  CHECK(r.status == outgrow::enqueue_status::unavailable);
  CHECK(!r.maybe_enqueued);  // nothing was sent
  CHECK_THROWS_AS(fail_fast.dead_letters().size(), outgrow::redis_stream_error);
  clock.advance(2s);
  CHECK(w.poll().status == outgrow::poll_status::unavailable);

  server.restart();               // no persistence: an empty data set, the group is gone
  r = blocking.enqueue("after");  // retries until the reconnect gate lets it through
  CHECK(r.ok());
  CHECK(!fail_fast.enqueue("after").ok());  // still backing off (its clock stood still)
  producer_clock.advance(1s);
  CHECK(fail_fast.enqueue("after").ok());
  pump(
      w, clock, [&] { return runs == 4; }, 2000);
  CHECK(runs == 4);
  CHECK(w.metrics().connects >= 2);
}

TEST_CASE("redis_stream_queue keeps acknowledged enqueues across a redis crash with AOF") {
  outgrow_test::redis_server server(
      {.extra_args = {"--appendonly", "yes", "--appendfsync", "always"}});
  outgrow::manual_clock clock;
  auto config = base_config(server);
  str_queue q(config);
  std::set<std::string> acked;
  for (int i = 0; i < 300; ++i) {
    if (q.enqueue(std::to_string(i))) acked.insert(std::to_string(i));
  }
  REQUIRE(acked.size() == 300);
  server.kill();  // SIGKILL: no shutdown save
  server.restart();
  CHECK(server.command("XLEN t:jobs")->integer == 300);
  std::set<std::string> seen;
  str_worker w(
      config, [&](std::string& j) { seen.insert(j); }, {}, clock);
  pump(
      w, clock, [&] { return seen.size() == 300; }, 2000);
  CHECK(seen == acked);
}

TEST_CASE("redis_stream_queue threads share a producer and stop their workers") {
  outgrow_test::redis_server server;
  auto config = base_config(server);
  config.block_timeout = 20ms;
  outgrow::redis_stream_queue<int> q(config);  // one producer object, several threads
  using worker_t = outgrow::redis_stream_worker<int>;
  std::vector<std::unique_ptr<worker_t>> workers;
  for (int i = 0; i < 2; ++i) {
    auto c = config;
    c.consumer = fmt::format("thread-{}", i);
    workers.push_back(std::make_unique<worker_t>(c, [](int& job, redis_job_context& ctx) {
      ctx.commit({"HINCRBY", "t:threads", std::to_string(job), "1"});
    }));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  constexpr int per_producer = 250;
  std::atomic<int> rejected{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i) {
        const int job = p * per_producer + i;
        if (!q.enqueue(job, std::to_string(job))) rejected.fetch_add(1);
      }
    });
  }
  for (auto& t : producers) t.join();
  const bool drained = [&] {
    for (int i = 0; i < 5000; ++i) {  // waits for the worker threads (bounded)
      auto m = q.metrics();
      if (m && m->completed == 2 * per_producer) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }();
  std::uint64_t seen_by_stats = 0;
  for (auto& w : workers) seen_by_stats += w->metrics().succeeded;  // read while running
  for (auto& w : workers) w->request_stop();
  for (auto& t : threads) t.join();
  CHECK(rejected.load() == 0);
  CHECK(drained);
  CHECK(server.command("HLEN t:threads")->integer == 2 * per_producer);
  std::uint64_t succeeded = 0;
  for (auto& w : workers) succeeded += w->metrics().succeeded;
  CHECK(succeeded == 2 * per_producer);
  CHECK(seen_by_stats <= succeeded);
}

// ---- the multi-process test -------------------------------------------------------

namespace {

using mp_queue = outgrow::redis_stream_queue<std::int64_t>;
using mp_worker = outgrow::redis_stream_worker<std::int64_t>;

constexpr std::uint32_t mp_max_attempts = 4;
constexpr const char* mp_completions = "mp:completions";

std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
bool is_poison(std::int64_t id) {
  return mix(static_cast<std::uint64_t>(id)) % 200 == 0;
}
bool is_transient(std::int64_t id) {
  return mix(static_cast<std::uint64_t>(id)) % 20 == 1;
}

int mp_job_count() {
  if (const char* env = std::getenv("OUTGROW_RSQ_JOBS")) return std::atoi(env);
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  return 4'000;
#else
  return 20'000;
#endif
}

outgrow::redis_stream_queue_config mp_config(int port, std::string consumer) {
  return {.connection = {.port = port,
                         .connect_timeout = 200ms,
                         .command_timeout = 2s,
                         .reconnect_backoff = outgrow::full_jitter_backoff(5ms, 100ms),
                         .seed = 0x5713'EA11'5EEDULL},
          .stream = "mp:jobs",
          .group = "mp:workers",
          .consumer = std::move(consumer),
          .max_attempts = mp_max_attempts,
          .visibility_timeout = 1s,
          .retry_delay = 20ms,
          .block_timeout = 50ms,
          .claim_interval = 50ms,
          .batch = 8,
          .on_unavailable = outgrow::redis_unavailable_policy::block,
          .enqueue_deadline = 30s};
}

std::atomic<mp_worker*> g_worker{nullptr};

extern "C" void mp_on_sigterm(int) {
  if (mp_worker* w = g_worker.load()) w->request_stop();
}

[[noreturn]] void worker_process(int port, int index) {
  mp_worker w(mp_config(port, fmt::format("worker-{}", index)),
              [](std::int64_t& id, redis_job_context& ctx) {
                if (is_poison(id)) return job_result::failure("poison job", "test::poison");
                if (is_transient(id) && ctx.attempt() == 1) {
                  throw std::runtime_error("transient failure");
                }
                const std::string key = std::to_string(id);
                ctx.commit({"HINCRBY", mp_completions, key, "1"});
                return job_result::success();
              });
  g_worker.store(&w);
  struct sigaction sa {};
  sa.sa_handler = mp_on_sigterm;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  w.run();
  const auto s = w.metrics();
  std::fprintf(stderr, "worker-%d: %s\n", index, fmt::format("{}", s).c_str());
  std::_Exit(0);
}

/// Waits until the test sets mp:resume (Redis may be down meanwhile).
void wait_for_resume(int port) {
  for (;;) {
    outgrow_test::redis_context c(redisConnectWithTimeout(
        "127.0.0.1", port, outgrow_test::detail::to_timeval(200ms)));
    if (c && c->err == 0) {
      outgrow_test::redis_reply r(
          static_cast<redisReply*>(redisCommand(c.get(), "EXISTS mp:resume")));
      if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1) return;
    }
    std::this_thread::sleep_for(2ms);
  }
}

/// Enqueues [first, last); before `pause_at` it waits for the test's go-ahead, so it is
/// still enqueueing when the test crashes redis-server.
[[noreturn]] void producer_process(int port, std::int64_t first, std::int64_t last,
                                   std::int64_t pause_at) {
  mp_queue q(mp_config(port, "producer"));
  for (std::int64_t id = first; id < last; ++id) {
    if (id == pause_at) wait_for_resume(port);
    const std::string key = std::to_string(id);
    if (!q.enqueue(id, key)) {
      std::fprintf(stderr, "producer: enqueue %lld failed\n", static_cast<long long>(id));
      std::_Exit(2);
    }
  }
  std::_Exit(0);
}

template <class F>
pid_t spawn(F body) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) std::_Exit(3);
    try {
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child failed: %s\n", e.what());
    }
    std::_Exit(4);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// Polls cond() (waiting for other processes) until it holds or `limit` passes.
template <class Cond>
bool wait_for(Cond cond, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

std::int64_t info_field(outgrow_test::redis_server& s, const char* field) {
  try {
    auto r = s.command("XINFO STREAM mp:jobs");
    if (r->type != REDIS_REPLY_ARRAY) return 0;
    for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
      if (outgrow_test::reply_text(*r->element[i]) == field)
        return to_int(*r->element[i + 1]);
    }
  } catch (const std::exception&) {
  }
  return 0;
}

}  // namespace

TEST_CASE(
    "redis_stream_queue multi-process run survives a killed worker and a redis restart") {
  outgrow_test::redis_server server(
      {.extra_args = {"--appendonly", "yes", "--appendfsync", "always"}});
  const int port = server.port();
  const int jobs = mp_job_count();
  REQUIRE(jobs >= 100);
  {  // the group exists before anyone reads (producers and workers also create it)
    auto r = server.command("XGROUP CREATE mp:jobs mp:workers 0 MKSTREAM");
    REQUIRE(r->type == REDIS_REPLY_STATUS);
  }
  std::vector<pid_t> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(spawn([&] { worker_process(port, i); }));
  std::vector<pid_t> producers;
  const int half = jobs / 2;
  producers.push_back(spawn([&] { producer_process(port, 0, half, half * 3 / 4); }));
  producers.push_back(
      spawn([&] { producer_process(port, half, jobs, half + (jobs - half) * 3 / 4); }));

  const auto completed = [&]() -> std::int64_t {
    try {
      return server.command("HLEN %s", mp_completions)->integer;
    } catch (const std::exception&) {
      return 0;
    }
  };
  // Kill redis-server (SIGKILL) while the producers are enqueueing, restart it from its
  // AOF.
  const bool producing =
      wait_for([&] { return info_field(server, "entries-added") >= jobs / 4; }, 60s);
  CHECK(producing);
  const std::int64_t added_before = info_field(server, "entries-added");
  server.kill();
  server.restart();
  CHECK(info_field(server, "entries-added") >= added_before);  // nothing acknowledged lost

  // SIGKILL one worker mid-run (the producers are paused at 3/4: there is work); start a
  // new one; let the producers finish.
  CHECK(wait_for([&] { return completed() >= jobs / 8; }, 60s));
  ::kill(workers[0], SIGKILL);
  CHECK(wait_exit(workers[0]) == 128 + SIGKILL);
  const std::int64_t orphaned = [&]() -> std::int64_t {
    auto r = server.command("XPENDING mp:jobs mp:workers - + 1000 worker-0");
    return r->type == REDIS_REPLY_ARRAY ? static_cast<std::int64_t>(r->elements) : -1;
  }();
  workers[0] = spawn([&] { worker_process(port, 3); });
  REQUIRE(server.command("SET mp:resume 1")->type == REDIS_REPLY_STATUS);

  for (const pid_t p : producers) CHECK(wait_exit(p) == 0);  // every enqueue acknowledged

  // Everything settles: nothing left in the stream or pending.
  const auto settled = [&] {
    try {
      auto len = server.command("XLEN mp:jobs");
      auto pending = server.command("XPENDING mp:jobs mp:workers");
      return len->integer == 0 && pending->type == REDIS_REPLY_ARRAY &&
             pending->element[0]->integer == 0;
    } catch (const std::exception&) {
      return false;
    }
  };
  CHECK(wait_for(settled, 120s));
  for (const pid_t p : workers) ::kill(p, SIGTERM);  // graceful stop
  for (const pid_t p : workers) CHECK(wait_exit(p) == 0);

  // Every job either completed exactly once (by key) or is dead-lettered after exactly
  // max_attempts deliveries; none lost.
  std::map<std::int64_t, std::int64_t> completions;
  {
    auto all = server.command("HGETALL %s", mp_completions);
    REQUIRE(all->type == REDIS_REPLY_ARRAY);
    for (std::size_t i = 0; i + 1 < all->elements; i += 2) {
      completions[std::stoll(std::string(outgrow_test::reply_text(*all->element[i])))] =
          to_int(*all->element[i + 1]);
    }
  }
  mp_queue admin(mp_config(port, "admin"));
  std::map<std::int64_t, int> dead;
  std::size_t bad_attempts = 0;
  std::size_t dead_entries = 0;
  admin.dead_letters().for_each([&](const auto& e) {
    ++dead_entries;
    if (e.job) ++dead[*e.job];
    if (e.attempts != mp_max_attempts) ++bad_attempts;
  });
  std::size_t lost = 0, twice = 0, wrong_place = 0, poison = 0;
  for (std::int64_t id = 0; id < jobs; ++id) {
    const auto c = completions.find(id);
    const bool in_dlq = dead.contains(id);
    if (is_poison(id)) {
      ++poison;
      if (!in_dlq) ++lost;
      if (c != completions.end()) ++wrong_place;
    } else {
      if (c == completions.end()) {
        if (!in_dlq)
          ++lost;
        else
          ++wrong_place;  // a healthy job dead-lettered: more losses than allowed
      } else if (c->second != 1) {
        ++twice;
      }
    }
  }
  const auto m = admin.metrics();
  REQUIRE(m);
  INFO(fmt::format("{}", *m));
  INFO("dead-letter entries " << dead_entries << " distinct " << dead.size()
                              << "; entries held by the killed worker " << orphaned);
  std::fprintf(
      stderr,
      "multi-process: %d jobs, %zu poison, %zu completed, %zu dead-letter entries, "
      "%lld entries held by the killed worker\n",
      jobs, poison, completions.size(), dead_entries, static_cast<long long>(orphaned));
  CHECK(poison > 0);
  CHECK(lost == 0);
  CHECK(twice == 0);
  CHECK(wrong_place == 0);
  CHECK(bad_attempts == 0);
  CHECK(completions.size() + dead.size() == static_cast<std::size_t>(jobs));
  CHECK(m->length == 0);
  CHECK(m->pending == 0);
  // A duplicate entry (a producer retried an XADD whose reply the crash lost) of a poison
  // job is dead-lettered too; every other duplicate completes as a duplicate.
  CHECK(dead_entries >= dead.size());
}

// ---- reliability hardening: wrong-type keys, reserved names, untrusted fields ----------

namespace {

std::int64_t pending_count(outgrow_test::redis_server& server) {
  auto p = server.command("XPENDING t:jobs g");
  return p->type == REDIS_REPLY_ARRAY && p->elements >= 1 ? to_int(*p->element[0]) : -1;
}

/// Makes entry `id` look idle past the visibility timeout (what Redis sees after it).
void expire_visibility(outgrow_test::redis_server& server, const std::string& id) {
  REQUIRE(
      server.command("XCLAIM t:jobs g w1 0 %s IDLE 31000 JUSTID", id.c_str())->elements ==
      1);
}

}  // namespace

TEST_CASE("redis_stream_queue never loses a completing job to a wrong-type key") {
  // Each key the completion script writes, holding a value of the wrong type.
  struct bad_key {
    const char* key;
    const char* set;  // hiredis format creating it
  };
  const bad_key cases[] = {{"t:jobs:failures", "SET t:jobs:failures oops"},
                           {"t:jobs:stats", "SET t:jobs:stats oops"},
                           {"t:jobs:done:k1", "RPUSH t:jobs:done:k1 oops"}};
  for (const bad_key& bad : cases) {
    INFO(bad.key);
    outgrow_test::redis_server server;
    outgrow::manual_clock clock;
    auto config = base_config(server);
    str_queue q(config);
    int runs = 0;
    str_worker w(
        config,
        [&](std::string& job, redis_job_context& ctx) {
          ++runs;
          ctx.commit({"HINCRBY", "t:effects", job, "1"});
        },
        {}, clock);
    auto id = q.enqueue("pay", "k1");
    REQUIRE(id);
    REQUIRE(server.command(bad.set)->type != REDIS_REPLY_ERROR);
    pump(
        w, clock, [] { return false; }, 3);
    // The completion was refused before anything irreversible: still pending, no effect,
    // no done key, no dead letter; the refusal is counted.
    CHECK(w.metrics().succeeded == 0);
    CHECK(w.metrics().server_errors >= 1);
    CHECK(pending_count(server) == 1);
    CHECK(server.command("XLEN t:jobs")->integer == 1);
    CHECK(server.command("HGET t:effects pay")->type == REDIS_REPLY_NIL);
    if (std::string(bad.key) != "t:jobs:done:k1") {
      CHECK(server.command("EXISTS t:jobs:done:k1")->integer == 0);
    }
    CHECK(server.command("XLEN t:jobs:dead")->integer == 0);
    // An operator fixes the key; the entry comes back after the visibility timeout.
    REQUIRE(server.command("DEL %s", bad.key)->integer == 1);
    expire_visibility(server, id.id);
    pump(w, clock, [&] { return w.metrics().succeeded == 1; });
    CHECK(w.metrics().succeeded == 1);
    // At least once: the handler runs again (a done key of the wrong type counts as
    // "completed" for the pre-check, so that job had not run before).
    CHECK(runs >= (std::string(bad.key) == "t:jobs:done:k1" ? 1 : 2));
    CHECK(to_int(*server.command("HGET t:effects pay")) == 1);  // exactly once
    CHECK(server.command("EXISTS t:jobs:done:k1")->integer == 1);
    CHECK(server.command("XLEN t:jobs")->integer == 0);
    CHECK(pending_count(server) == 0);
  }
}

TEST_CASE("redis_stream_queue never loses a dead-lettering job to a wrong-type key") {
  struct bad_key {
    const char* key;
    const char* set;
  };
  const bad_key cases[] = {{"t:jobs:dead", "SET t:jobs:dead oops"},
                           {"t:jobs:failures", "SET t:jobs:failures oops"},
                           {"t:jobs:stats", "HSET t:jobs:stats:x a b"},  // right type
                           {"t:jobs:stats", "SADD t:jobs:stats oops"},
                           {"t:jobs:done:k1", "HSET t:jobs:done:k1 a b"}};
  for (const bad_key& bad : cases) {
    INFO(bad.set);
    outgrow_test::redis_server server;
    outgrow::manual_clock clock;
    auto config = base_config(server);
    config.max_attempts = 1;
    str_queue q(config);
    int runs = 0;
    str_worker w(
        config,
        [&](std::string&) -> bool {
          ++runs;
          throw std::runtime_error("boom");
        },
        {}, clock);
    auto id = q.enqueue("poison", "k1");
    REQUIRE(id);
    REQUIRE(server.command(bad.set)->type != REDIS_REPLY_ERROR);
    const bool harmless = std::string(bad.set).starts_with("HSET t:jobs:stats:x");
    // A done key of any type makes the pre-check skip the handler.
    const int expected_runs = std::string(bad.key) == "t:jobs:done:k1" ? 0 : 1;
    pump(
        w, clock, [] { return false; }, 3);
    CHECK(runs == expected_runs);
    if (harmless) {
      CHECK(w.metrics().dead_lettered == 1);
      continue;
    }
    CHECK(w.metrics().dead_lettered == 0);
    CHECK(w.metrics().server_errors >= 1);
    CHECK(pending_count(server) == 1);
    CHECK(server.command("XLEN t:jobs")->integer == 1);
    REQUIRE(server.command("DEL %s", bad.key)->integer == 1);
    CHECK(q.dead_letters().empty());
    expire_visibility(server, id.id);
    pump(w, clock, [&] { return q.dead_letters().size() == 1; });
    REQUIRE(q.dead_letters().size() == 1);
    CHECK(runs == expected_runs);  // the delivery limit dead-letters it without a run
    const auto e = q.dead_letters().snapshot().at(0);
    CHECK(e.payload == "poison");
    CHECK(e.replayable);
    CHECK(e.idempotency_key == std::optional<std::string>("k1"));
    CHECK(server.command("XLEN t:jobs")->integer == 0);
    CHECK(pending_count(server) == 0);
  }
}

TEST_CASE("redis_stream_queue replay never loses a dead letter to a wrong-type key") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  config.max_attempts = 1;
  str_queue q(config);
  str_worker w(
      config, [&](std::string&) { return false; }, {}, clock);
  REQUIRE(q.enqueue("x"));
  pump(w, clock, [&] { return q.dead_letters().size() == 1; });
  REQUIRE(q.dead_letters().size() == 1);
  REQUIRE(server.command("DEL t:jobs:stats")->integer == 1);
  REQUIRE(server.command("SET t:jobs:stats oops")->type == REDIS_REPLY_STATUS);
  CHECK_THROWS_AS(q.dead_letters().replay_all(), outgrow::redis_stream_error);
  CHECK(q.dead_letters().size() == 1);  // still there
  CHECK(server.command("XLEN t:jobs")->integer == 0);
  REQUIRE(server.command("DEL t:jobs:stats")->integer == 1);
  CHECK(q.dead_letters().replay_all().replayed == 1);
  CHECK(q.dead_letters().empty());
  CHECK(server.command("XLEN t:jobs")->integer == 1);
}

TEST_CASE("redis_stream_queue refuses stream names that collide with derived keys") {
  using outgrow::config_error;
  for (const char* name : {"x:dead", "x:failures", "x:stats", "x:done", "x:done:k",
                           "{shop}:orders:dead", "a:done:b:c"}) {
    INFO(name);
    try {
      str_queue q({.stream = name});
      FAIL("accepted");
    } catch (const config_error& e) {
      const std::string what = e.what();
      CHECK(e.field() == "stream");
      CHECK(what.find("redis_stream_queue: stream must be") == 0);
      CHECK(what.find(":dead, :failures, :stats or :done") != std::string::npos);
      CHECK(what.find(std::string("got ") + name) != std::string::npos);
    }
    CHECK_THROWS_AS((str_worker({.stream = name}, [](std::string&) {})), config_error);
  }
  for (const char* name : {"x", "x:deadline", "x:dead:letters", "x:donee", "{shop}:orders",
                           "x:stats2", "done:x", "x:done-list"}) {
    INFO(name);
    CHECK_NOTHROW(str_queue({.stream = name}));
  }
}

TEST_CASE("redis_stream_queue dead-letters a job claimed with a delivery count past 2^32") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  str_queue q(config);
  int runs = 0;
  str_worker w(
      config,
      [&](std::string&) -> bool {
        ++runs;
        throw std::runtime_error("poison");
      },
      {}, clock);
  auto id = q.enqueue("poison");
  REQUIRE(id);
  clock.advance(2s);
  (void)w.poll();  // delivery 1 fails: pending, claimable again
  REQUIRE(runs == 1);
  REQUIRE(w.metrics().retried == 1);
  // An operator (or a bug elsewhere) sets a delivery count that does not fit 32 bits.
  REQUIRE(server
              .command("XCLAIM t:jobs g w1 0 %s IDLE 31000 RETRYCOUNT 4294967296 JUSTID",
                       id.id.c_str())
              ->elements == 1);
  pump(w, clock, [&] { return q.dead_letters().size() == 1; });
  CHECK(runs == 1);  // never ran again
  const auto e = q.dead_letters().snapshot().at(0);
  CHECK(e.error_type == "outgrow::delivery_limit");
  CHECK(e.attempts == 4294967296ULL);  // the XAUTOCLAIM delivery is not an attempt
  CHECK(e.field_error.empty());
  CHECK(e.replayable);
}

TEST_CASE("redis_stream_queue dead-letters malformed stream entries without running them") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  str_queue q(config);
  std::vector<std::string> runs;
  str_worker w(
      config, [&](std::string& job) { runs.push_back(job); }, {}, clock);
  REQUIRE(server.command("XADD t:jobs * k 1")->type == REDIS_REPLY_STRING);      // no job
  REQUIRE(server.command("XADD t:jobs * j a j b")->type == REDIS_REPLY_STRING);  // two
  REQUIRE(server.command("XADD t:jobs * j kept zz 1")->type == REDIS_REPLY_STRING);
  REQUIRE(server.command("XADD t:jobs * j a k 1 k 2")->type == REDIS_REPLY_STRING);
  auto& dlq = q.dead_letters();
  pump(w, clock, [&] { return dlq.size() == 4; });
  REQUIRE(dlq.size() == 4);
  CHECK(runs.empty());
  CHECK(w.metrics().malformed == 4);
  CHECK(w.metrics().dead_lettered == 4);
  auto m = q.metrics();
  REQUIRE(m);
  CHECK(m->malformed == 4);
  CHECK(m->length == 0);
  const auto all = dlq.snapshot();
  REQUIRE(all.size() == 4);
  for (const auto& e : all) {
    CHECK(e.error_type == "outgrow::malformed_entry");
    CHECK(e.field_error.empty());  // the dead letter itself is well-formed
  }
  CHECK(!all[0].replayable);  // no job field
  CHECK(all[0].payload.empty());
  CHECK(all[0].error.find("missing field") != std::string::npos);
  CHECK(!all[1].replayable);  // two job fields: which one is the job?
  CHECK(all[1].error.find("duplicate field") != std::string::npos);
  CHECK(all[2].replayable);  // one job field and an unknown one: the job is kept
  CHECK(all[2].payload == "kept");
  CHECK(all[2].error.find("unknown field") != std::string::npos);
  CHECK(all[3].replayable);
  CHECK(!all[3].idempotency_key);  // an ambiguous key is not trusted
  // Unreplayable entries stay for inspection; replaying them enqueues nothing.
  auto r = dlq.replay(all[0].id);
  CHECK(r.left == 1);
  CHECK(r.replayed == 0);
  r = dlq.replay_all();
  CHECK(r.replayed == 2);
  CHECK(r.left == 2);
  pump(w, clock, [&] { return runs.size() == 2; });
  CHECK(runs == std::vector<std::string>{"kept", "a"});
  CHECK(dlq.size() == 2);
  CHECK(dlq.purge_all() == 2);
}

TEST_CASE("redis_stream_queue reads untrusted dead-letter fields without overflow") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  str_queue q(config);
  int runs = 0;
  str_worker w(
      config, [&](std::string&) { ++runs; }, {}, clock);
  auto& dlq = q.dead_letters();
  const char* ok = "XADD t:jobs:dead * j a src 1-1 n 4294967296 et t e m ff 5 lf 9";
  const char* huge_ff =
      "XADD t:jobs:dead * j a src 1-1 n 1 et t e m ff 9223372036854775807 lf 9";
  const char* huge_lf =
      "XADD t:jobs:dead * j a src 1-1 n 1 et t e m ff 1 lf 99999999999999999999999999";
  const char* huge_n =
      "XADD t:jobs:dead * j a src 1-1 n 18446744073709551616 et t e m ff 1 lf 2";
  const char* negative = "XADD t:jobs:dead * j a src 1-1 n -1 et t e m ff 1 lf 2";
  const char* no_job = "XADD t:jobs:dead * src 1-1 n 1 et t e m ff 1 lf 2";
  const char* missing = "XADD t:jobs:dead * j a n 1";
  for (const char* cmd : {ok, huge_ff, huge_lf, huge_n, negative, no_job, missing}) {
    REQUIRE(server.command(cmd)->type == REDIS_REPLY_STRING);
  }
  const auto all = dlq.snapshot();
  REQUIRE(all.size() == 7);
  CHECK(all[0].field_error.empty());
  CHECK(all[0].attempts == 4294967296ULL);
  CHECK(all[0].first_failure.time_since_epoch() == 5ms);
  CHECK(all[0].last_failure.time_since_epoch() == 9ms);
  for (std::size_t i = 1; i <= 4; ++i) {
    INFO(i);
    CHECK(all[i].field_error == "bad number");
    CHECK(!all[i].replayable);
    CHECK(!all[i].job);
  }
  CHECK(all[5].field_error.empty());
  CHECK(!all[5].replayable);  // no job field: never replayed as an empty job
  CHECK(all[6].field_error == "missing field");
  CHECK(dlq.metrics().decode_errors == 5);
  const auto r = dlq.replay_all();
  CHECK(r.replayed == 1);
  CHECK(r.left == 6);
  pump(w, clock, [&] { return runs == 1; });
  CHECK(runs == 1);  // only the well-formed one ran
  CHECK(server.command("XLEN t:jobs")->integer == 0);
  CHECK(dlq.size() == 6);
  CHECK(dlq.purge_all() == 6);
}

namespace sq_validation {
struct ticket {
  std::int32_t id;
  std::int32_t seats;
};
// The validation hook redis_tier calls after decoding (ADL); the queue calls it too.
bool redis_validate(const ticket& t) {
  return t.id > 0 && t.seats >= 1 && t.seats <= 10;
}
}  // namespace sq_validation

TEST_CASE("redis_stream_queue runs a job only when its type's validation hook accepts it") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto config = base_config(server);
  using sq_validation::ticket;
  outgrow::redis_stream_queue<ticket> q(config);
  std::vector<std::int32_t> ran;
  outgrow::redis_stream_worker<ticket, outgrow::redis_default_codec, outgrow::manual_clock>
      w(
          config, [&](ticket& t) { ran.push_back(t.id); }, {}, clock);
  REQUIRE(q.enqueue(ticket{1, 2}));
  REQUIRE(q.enqueue(ticket{2, 99}));  // decodes, but the hook rejects 99 seats
  REQUIRE(q.enqueue(ticket{3, 4}));
  pump(w, clock, [&] { return ran.size() == 2 && q.dead_letters().size() == 1; });
  CHECK(ran == std::vector<std::int32_t>{1, 3});
  CHECK(w.metrics().decode_errors == 1);
  const auto dead = q.dead_letters().snapshot();
  REQUIRE(dead.size() == 1);
  CHECK(!dead[0].job);  // inspection applies the same hook
  CHECK(dead[0].error_type == "outgrow::decode_error");
}
