// Redis queue benchmarks: outgrow::redis_stream_queue / redis_stream_worker (Redis Streams,
// consumer group, acknowledgement by a Lua script) beside the naive list-based queue
// (LPUSH + RPOP with raw hiredis: no acknowledgement, a job popped by a worker that then
// dies is lost).
//
// The binary starts its own redis-server (tests/support/redis_server.hpp: a free loopback
// port, no persistence) once for the whole run. Jobs are 64-byte std::string payloads
// (redis_default_codec: the bytes as they are). Everything is one client thread talking
// to one local server, so the figures are round-trip bound: all cases UseRealTime(), and
// items_per_second counts jobs per second of wall time.
//
// enqueue() is one XADD round trip per job, enqueue_many() one pipelined round trip per
// batch; each is measured beside the list doing the same:
//   - BM_redis_stream_enqueue: one enqueue() (XADD) per job.
//   - BM_redis_lpush:          one LPUSH per job (its baseline).
//   - BM_stream_enqueue_batch/<n>: enqueue_many() of n jobs: n XADDs pipelined in one
//     round trip, one enqueue_result per job (ID parsed into a std::string).
//   - BM_lpush_pipelined_batch/<n>: n LPUSHes pipelined with raw hiredis
//     (redisAppendCommandArgv x n, then n redisGetReply): its baseline.
//   - BM_xadd_pipelined_batch/<n>: the same with `XADD key * j <job>`, what
//     enqueue_many sends: how much of the gap to LPUSH is Redis's own XADD.
// Batching on the consuming side is the same for both:
//   - BM_redis_stream_roundtrip/<n>: enqueue n jobs, then worker.poll() until all n are
//     completed. The worker's batch is n, so it reads them with one XREADGROUP COUNT n
//     and acknowledges each with one EVALSHA of the completion script (XACK + XDEL +
//     stats: one round trip per job). Default claim_interval (1 s): about once a second a
//     poll also runs the XAUTOCLAIM script (finds nothing). No idempotency keys.
//     n = 1 is the per-job round trip (XADD, XREADGROUP, EVALSHA).
//   - BM_redis_lpush_rpop/<n>: LPUSH n jobs (one round trip each), then RPOP key n
//     (Redis >= 6.2) until all n are popped, each copied into a std::string as the
//     worker's codec does: one round trip per batch, none per job.
// Each benchmark uses its own keys, deleted before and after it runs; the roundtrip cases
// check that every job enqueued was handled exactly once.
#include <outgrow/redis/redis_stream_queue.hpp>

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;

constexpr std::size_t kPayloadBytes = 64;

std::string payload() {
  return std::string(kPayloadBytes, 'j');
}

struct server_slot {
  std::unique_ptr<outgrow_test::redis_server> server;
  std::string error;
};

/// The one redis-server of this run, started on first use (null when it could not start).
outgrow_test::redis_server* server(std::string& error) {
  static server_slot slot = [] {
    server_slot s;
    try {
      s.server = std::make_unique<outgrow_test::redis_server>();
    } catch (const std::exception& e) {
      s.error = e.what();
    }
    return s;
  }();
  error = slot.error;
  return slot.server.get();
}

/// Deletes `stream` and the keys a redis_stream_queue derives from it.
bool delete_keys(outgrow_test::redis_server& s, const std::string& stream) {
  const std::string dead = stream + ":dead";
  const std::string failures = stream + ":failures";
  const std::string stats = stream + ":stats";
  try {
    auto r = s.command("DEL %s %s %s %s", stream.c_str(), dead.c_str(), failures.c_str(),
                       stats.c_str());
    return r->type == REDIS_REPLY_INTEGER;
  } catch (const std::exception&) {
    return false;
  }
}

outgrow::redis_stream_queue_config stream_config(const outgrow_test::redis_server& s,
                                                 std::string stream, std::size_t batch) {
  return {.connection = {.host = s.host(), .port = s.port(), .command_timeout = 1s},
          .stream = std::move(stream),
          .group = "bench",
          .consumer = "w1",
          .block_timeout = 100ms,  // only waited for if a job went missing
          .batch = batch};
}

/// Sets up the server and a clean `stream`; null (after SkipWithError) on failure.
outgrow_test::redis_server* prepare(benchmark::State& state, const std::string& stream) {
  std::string error;
  outgrow_test::redis_server* s = server(error);
  if (s == nullptr) {
    state.SkipWithError(fmt::format("redis-server did not start: {}", error).c_str());
    return nullptr;
  }
  if (!delete_keys(*s, stream)) {
    state.SkipWithError("DEL of the benchmark keys failed");
    return nullptr;
  }
  return s;
}

// ---- enqueue only ------------------------------------------------------------------

void BM_redis_stream_enqueue(benchmark::State& state) {
  const std::string stream = "bench:stream:enqueue";
  outgrow_test::redis_server* s = prepare(state, stream);
  if (s == nullptr) return;
  {
    outgrow::redis_stream_queue<std::string> queue(stream_config(*s, stream, 16));
    const std::string job = payload();
    if (!queue.enqueue(job)) {  // connects, creates the group, loads the scripts
      state.SkipWithError("redis_stream_queue::enqueue failed");
      return;
    }
    for (auto _ : state) {
      outgrow::enqueue_result r = queue.enqueue(job);
      if (!r) {
        state.SkipWithError(fmt::format("enqueue failed: {}", r.error).c_str());
        break;
      }
      benchmark::DoNotOptimize(r);
    }
  }
  state.SetItemsProcessed(state.iterations());
  (void)delete_keys(*s, stream);
}

void BM_redis_lpush(benchmark::State& state) {
  const std::string key = "bench:list:enqueue";
  outgrow_test::redis_server* s = prepare(state, key);
  if (s == nullptr) return;
  {
    outgrow_test::redis_context c = s->connect();
    const std::string job = payload();
    const char* argv[] = {"LPUSH", key.data(), job.data()};
    const std::size_t lens[] = {5, key.size(), job.size()};
    for (auto _ : state) {
      outgrow_test::redis_reply r(
          static_cast<redisReply*>(redisCommandArgv(c.get(), 3, argv, lens)));
      if (!r || r->type != REDIS_REPLY_INTEGER) {
        state.SkipWithError("LPUSH failed");
        break;
      }
      benchmark::DoNotOptimize(r->integer);
    }
  }
  state.SetItemsProcessed(state.iterations());
  (void)delete_keys(*s, key);
}

// ---- batched enqueue ----------------------------------------------------------------

void BM_stream_enqueue_batch(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::string stream = "bench:stream:batch";
  outgrow_test::redis_server* s = prepare(state, stream);
  if (s == nullptr) return;
  {
    outgrow::redis_stream_queue<std::string> queue(stream_config(*s, stream, 16));
    const std::vector<std::string> jobs(n, payload());
    if (!queue.enqueue(jobs.front())) {  // connects, creates the group, loads the scripts
      state.SkipWithError("redis_stream_queue::enqueue failed");
      return;
    }
    for (auto _ : state) {
      std::vector<outgrow::enqueue_result> r =
          queue.enqueue_many(std::span<const std::string>(jobs));
      if (r.size() != n || !r.back()) {
        state.SkipWithError("enqueue_many failed");
        break;
      }
      benchmark::DoNotOptimize(r);
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
  (void)delete_keys(*s, stream);
}

/// n copies of one command (`name key job`, or `name key * j job` for XADD) pipelined
/// with raw hiredis: redisAppendCommandArgv n times, then n redisGetReply, each reply
/// checked to be of `reply_type`.
void raw_pipelined_batch(benchmark::State& state, const std::string& key, bool xadd) {
  const auto n = static_cast<std::size_t>(state.range(0));
  outgrow_test::redis_server* s = prepare(state, key);
  if (s == nullptr) return;
  {
    outgrow_test::redis_context c = s->connect();
    const std::string job = payload();
    const std::vector<std::string_view> args =
        xadd ? std::vector<std::string_view>{"XADD", key, "*", "j", job}
             : std::vector<std::string_view>{"LPUSH", key, job};
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const std::string_view a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    const int reply_type = xadd ? REDIS_REPLY_STRING : REDIS_REPLY_INTEGER;
    const int argc = static_cast<int>(argv.size());
    for (auto _ : state) {
      bool failed = false;
      for (std::size_t i = 0; i < n; ++i) {
        failed = failed || redisAppendCommandArgv(c.get(), argc, argv.data(),
                                                  lens.data()) != REDIS_OK;
      }
      for (std::size_t i = 0; i < n && !failed; ++i) {
        void* raw = nullptr;
        failed = redisGetReply(c.get(), &raw) != REDIS_OK;
        outgrow_test::redis_reply r(static_cast<redisReply*>(raw));
        failed = failed || !r || r->type != reply_type;
        if (!failed) benchmark::DoNotOptimize(r->len);
      }
      if (failed) {
        state.SkipWithError(xadd ? "pipelined XADD failed" : "pipelined LPUSH failed");
        break;
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
  (void)delete_keys(*s, key);
}

void BM_lpush_pipelined_batch(benchmark::State& state) {
  raw_pipelined_batch(state, "bench:list:batch", false);
}

void BM_xadd_pipelined_batch(benchmark::State& state) {
  raw_pipelined_batch(state, "bench:stream:raw", true);
}

// ---- enqueue + consume (+ acknowledge) -----------------------------------------------

void BM_redis_stream_roundtrip(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::string stream = "bench:stream:roundtrip";
  outgrow_test::redis_server* s = prepare(state, stream);
  if (s == nullptr) return;
  {
    const outgrow::redis_stream_queue_config config = stream_config(*s, stream, n);
    outgrow::redis_stream_queue<std::string> queue(config);
    std::uint64_t handled = 0;
    outgrow::redis_stream_worker<std::string> worker(
        config, [&handled](std::string& job) { handled += job.empty() ? 0U : 1U; });
    const std::string job = payload();

    // Warm-up outside the timing: both connections open, group and scripts ready.
    if (!queue.enqueue(job) || worker.poll().processed != 1) {
      state.SkipWithError("warm-up job did not go through");
      return;
    }
    std::uint64_t expected = 1;

    for (auto _ : state) {
      bool failed = false;
      for (std::size_t i = 0; i < n && !failed; ++i) failed = !queue.enqueue(job);
      std::size_t done = 0;
      int empty_polls = 0;
      while (!failed && done < n) {
        const outgrow::poll_result r = worker.poll();
        done += r.processed;
        if (r.status != outgrow::poll_status::ok) failed = true;
        if (r.processed == 0 && ++empty_polls > 20) failed = true;  // a job went missing
      }
      if (failed) {
        state.SkipWithError("enqueue or poll failed");
        break;
      }
      expected += n;
    }
    const outgrow::redis_stream_worker_metrics st = worker.metrics();
    if (!state.error_occurred() && (handled != expected || st.succeeded != expected)) {
      state.SkipWithError(fmt::format("handled {} / succeeded {} of {} jobs", handled,
                                      st.succeeded, expected)
                              .c_str());
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
  (void)delete_keys(*s, stream);
}

void BM_redis_lpush_rpop(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::string key = "bench:list:roundtrip";
  outgrow_test::redis_server* s = prepare(state, key);
  if (s == nullptr) return;
  {
    outgrow_test::redis_context producer = s->connect();
    outgrow_test::redis_context consumer = s->connect();
    const std::string job = payload();
    const char* push_argv[] = {"LPUSH", key.data(), job.data()};
    const std::size_t push_lens[] = {5, key.size(), job.size()};
    std::uint64_t handled = 0;
    std::uint64_t expected = 0;
    std::string received;

    for (auto _ : state) {
      bool failed = false;
      for (std::size_t i = 0; i < n && !failed; ++i) {
        outgrow_test::redis_reply r(static_cast<redisReply*>(
            redisCommandArgv(producer.get(), 3, push_argv, push_lens)));
        failed = !r || r->type != REDIS_REPLY_INTEGER;
      }
      std::size_t done = 0;
      int empty_pops = 0;
      while (!failed && done < n) {
        const std::string count = std::to_string(n - done);
        const char* pop_argv[] = {"RPOP", key.data(), count.data()};
        const std::size_t pop_lens[] = {4, key.size(), count.size()};
        outgrow_test::redis_reply r(static_cast<redisReply*>(
            redisCommandArgv(consumer.get(), 3, pop_argv, pop_lens)));
        if (!r || (r->type != REDIS_REPLY_ARRAY && r->type != REDIS_REPLY_NIL)) {
          failed = true;
          break;
        }
        if (r->type == REDIS_REPLY_NIL) {
          if (++empty_pops > 20) failed = true;  // a job went missing
          continue;
        }
        for (std::size_t i = 0; i < r->elements; ++i) {
          received.assign(outgrow_test::reply_text(*r->element[i]));  // the "decode"
          handled += received.empty() ? 0U : 1U;
        }
        done += r->elements;
      }
      if (failed) {
        state.SkipWithError("LPUSH or RPOP failed");
        break;
      }
      expected += n;
    }
    if (!state.error_occurred() && handled != expected) {
      state.SkipWithError(fmt::format("handled {} of {} jobs", handled, expected).c_str());
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
  (void)delete_keys(*s, key);
}

BENCHMARK(BM_redis_stream_enqueue)->UseRealTime();
BENCHMARK(BM_redis_lpush)->UseRealTime();
BENCHMARK(BM_stream_enqueue_batch)->Arg(16)->Arg(128)->UseRealTime();
BENCHMARK(BM_lpush_pipelined_batch)->Arg(16)->Arg(128)->UseRealTime();
BENCHMARK(BM_xadd_pipelined_batch)->Arg(16)->Arg(128)->UseRealTime();
BENCHMARK(BM_redis_stream_roundtrip)->Arg(1)->Arg(16)->Arg(128)->UseRealTime();
BENCHMARK(BM_redis_lpush_rpop)->Arg(1)->Arg(16)->Arg(128)->UseRealTime();

}  // namespace
