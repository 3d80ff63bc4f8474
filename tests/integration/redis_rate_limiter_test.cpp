// Integration tests of outgrow::redis_rate_limiter against a real redis-server (started on
// a free loopback port without persistence by tests/support/redis_server.hpp).
//
// These run on real time, bounded: a limit shared by 4 processes x 2 threads for 10 s
// (the must-show) and Redis killed for 2 s in the middle of a run. Decisions are
// compared with the local rate_limiter on a manual_clock at 1 permit/s, where the few
// milliseconds the calls take cannot change a decision.
#include <outgrow/admission/rate_limiter.hpp>
#include <outgrow/admission/redis_rate_limiter.hpp>
#include <outgrow/core/clock.hpp>

#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"
#include "redis_server.hpp"

using namespace std::chrono_literals;

namespace {

using outgrow::failure_mode;
using limiter = outgrow::redis_rate_limiter<>;

outgrow::redis_rate_limiter_config config_for(
    const outgrow_test::redis_server& server, std::string prefix,
    failure_mode mode = failure_mode::fail_closed) {
  // Generous timeouts (sanitizer builds are slow); a short reconnect backoff so a
  // restarted server is found quickly.
  return {.connection = {.host = server.host(),
                         .port = server.port(),
                         .connect_timeout = 2s,
                         .command_timeout = 2s,
                         .reconnect_backoff = {5ms, 100ms},
                         .seed = 0x5EED'0019ULL},
          .permits_per_second = 1.0,
          .burst = 5,
          .key_prefix = std::move(prefix),
          .failure_mode = mode};
}

long long pttl(outgrow_test::redis_server& server, const std::string& key) {
  return server.command("PTTL %b", key.data(), key.size())->integer;
}

std::string raw_get(outgrow_test::redis_server& server, const std::string& key) {
  auto r = server.command("GET %b", key.data(), key.size());
  return std::string(outgrow_test::reply_text(*r));
}

/// Decisions the failure mode made, and every decision.
std::uint64_t by_fallback(const outgrow::redis_rate_limiter_metrics& m) {
  return m.fallback_admitted + m.fallback_rejected;
}
std::uint64_t decisions(const outgrow::redis_rate_limiter_metrics& m) {
  return m.admitted + m.rejected;
}

}  // namespace

TEST_CASE("redis_rate_limiter decides as the local limiter", "[integration][admission]") {
  outgrow_test::redis_server server;
  limiter redis(config_for(server, "same:"));
  outgrow::manual_clock clock;
  outgrow::rate_limiter<outgrow::manual_clock> local(
      {.permits_per_second = 1.0, .burst = 5}, clock);
  const auto start = std::chrono::steady_clock::now();
  // At 1 permit/s, the < 1 s these calls take refills less than one permit: every
  // decision is the local limiter's, and retry_after is its, less the time elapsed.
  const std::uint64_t requests[] = {1, 2, 1, 2, 1, 3, 1, 5, 0};
  std::uint64_t admitted = 0;
  for (const std::uint64_t n : requests) {
    const outgrow::rate_limit_result r = redis.try_acquire("seq", n);
    const outgrow::rate_limit_result l = local.try_acquire(n);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    INFO("n = " << n);
    CHECK(r.admitted == l.admitted);
    CHECK(r.retry_after <= l.retry_after);
    CHECK(r.retry_after >= l.retry_after - elapsed - 1ms);
    if (!l.admitted) CHECK(r.retry_after > 0ns);
    if (r.admitted) admitted += n;
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE(elapsed < 1s);
  CHECK(admitted == 5);  // the burst (1 + 2 + 1 + 1), then refused
  const outgrow::redis_rate_limiter_metrics m = redis.metrics();
  CHECK(m.admitted == 5);  // four requests, and n = 0
  CHECK(m.rejected == 4);
  CHECK(m.redis_errors == 0);
  CHECK(by_fallback(m) == 0);

  // The bucket: "<tat_us> <remainder>", expiring when full again (5 permits at 1/s).
  const std::string key = redis.redis_key("seq");
  CHECK(key == "{same:seq}");
  CHECK(std::regex_match(raw_get(server, key), std::regex("[0-9]+ [0-9]+")));
  const long long ttl = pttl(server, key);
  const auto since_start = std::chrono::ceil<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  CHECK(ttl <= 5000);
  CHECK(ttl >= 5000 - since_start.count() - 2);

  // A rejected request changes nothing: the bucket refills on time.
  const outgrow::rate_limit_result r = redis.try_acquire("seq", 1);
  REQUIRE_FALSE(r.admitted);
  CHECK(r.retry_after <= 1s);
  CHECK(r.retry_after > 1s - (std::chrono::steady_clock::now() - start) - 1ms);
}

TEST_CASE("redis_rate_limiter keys are independent and instances share a bucket",
          "[integration][admission]") {
  outgrow_test::redis_server server;
  limiter a(config_for(server, "share:"));
  limiter b(config_for(server, "share:"));
  limiter other(config_for(server, "other:"));
  CHECK(a.redis_key() == "{share:}");
  CHECK(a.redis_key("k1") == "{share:k1}");
  // ':' and '%' in a key are escaped: "share:" + "x:y" is not "share:x:" + "y".
  CHECK(a.redis_key("user:42%") == "{share:user%3A42%25}");
  limiter longer(config_for(server, "share:x:"));
  CHECK(longer.try_acquire("y", 5).admitted);
  CHECK(a.try_acquire("x:y", 5).admitted);
  CHECK(a.try_acquire("k1", 5).admitted);
  CHECK_FALSE(b.try_acquire("k1").admitted);  // the same bucket, from another instance
  for (int i = 0; i < 5; ++i) CHECK(b.try_acquire("k2").admitted);
  CHECK_FALSE(b.try_acquire("k2").admitted);
  CHECK(a.try_acquire(5).admitted);  // the limiter's own bucket is a key of its own
  CHECK_FALSE(b.try_acquire().admitted);
  CHECK(other.try_acquire("k1", 5).admitted);  // another prefix, another bucket
  CHECK(a.metrics().redis_errors + b.metrics().redis_errors == 0);
  CHECK(server.command("EXISTS {share:k1} {share:k2} {share:} {other:k1}")->integer == 4);
}

TEST_CASE("redis_rate_limiter n = 0 needs no round trip and n > burst throws",
          "[integration][admission]") {
  outgrow_test::redis_server server;
  limiter l(config_for(server, "n:"));
  CHECK(l.try_acquire("k", 0).admitted);
  CHECK(l.metrics().connects == 0);
  CHECK_THROWS_AS(l.try_acquire("k", 6), std::invalid_argument);
  CHECK_THROWS_AS(l.try_acquire(6), std::invalid_argument);
  CHECK(l.try_acquire("k", 5).admitted);
  const outgrow::redis_rate_limiter_metrics m = l.metrics();
  CHECK(m.admitted == 2);
  CHECK(m.rejected == 0);
  CHECK(m.connects == 1);
}

TEST_CASE("redis_rate_limiter rejects each bad config field", "[integration][admission]") {
  const outgrow::redis_rate_limiter_config good{.failure_mode = failure_mode::fail_open};
  CHECK_NOTHROW(limiter(good));
  using mutation = std::function<void(outgrow::redis_rate_limiter_config&)>;
  const std::vector<std::pair<std::string, mutation>> cases = {
      {"connection.host", [](auto& c) { c.connection.host = ""; }},
      {"connection.port", [](auto& c) { c.connection.port = 0; }},
      {"connection.port", [](auto& c) { c.connection.port = 65536; }},
      {"connection.database", [](auto& c) { c.connection.database = -1; }},
      {"connection.connect_timeout", [](auto& c) { c.connection.connect_timeout = 0s; }},
      {"connection.command_timeout", [](auto& c) { c.connection.command_timeout = -1ms; }},
      {"permits_per_second", [](auto& c) { c.permits_per_second = 0.0; }},
      {"permits_per_second", [](auto& c) { c.permits_per_second = -5.0; }},
      {"permits_per_second",
       [](auto& c) { c.permits_per_second = std::numeric_limits<double>::quiet_NaN(); }},
      {"permits_per_second",
       [](auto& c) { c.permits_per_second = std::numeric_limits<double>::infinity(); }},
      {"permits_per_second", [](auto& c) { c.permits_per_second = 2e9; }},
      {"burst", [](auto& c) { c.burst = 0; }},
      {"burst", [](auto& c) { c.burst = 2'000'000'000; }},
      {"burst",
       [](auto& c) {
         c.permits_per_second = 0.001;  // 1e6 permits take 31 years to refill
         c.burst = 1'000'000;
       }},
      {"key_prefix", [](auto& c) { c.key_prefix = ""; }},
      {"key_prefix", [](auto& c) { c.key_prefix = "no-colon"; }},
      {"key_prefix",
       [](auto& c) {
         c.key_prefix.assign(1024, 'p');  // (not string + string: GCC 12's -O1
         c.key_prefix.push_back(':');     // -Warray-bounds false positive under TSan)
       }},
      {"failure_mode", [](auto& c) { c.failure_mode = static_cast<failure_mode>(7); }},
      // The fallback's fields are checked in every mode, also when it is not used.
      {"fallback_permits_per_second", [](auto& c) { c.fallback_permits_per_second = 0.0; }},
      {"fallback_permits_per_second",
       [](auto& c) {
         c.fallback_permits_per_second = std::numeric_limits<double>::quiet_NaN();
       }},
      {"fallback_permits_per_second",
       [](auto& c) { c.fallback_permits_per_second = 1e10; }},
      {"fallback_burst", [](auto& c) { c.fallback_burst = 0; }},
      {"fallback_burst", [](auto& c) { c.fallback_burst = 1'000'000'001; }},
      {"fallback_burst",
       [](auto& c) {
         c.fallback_permits_per_second = 0.001;
         c.fallback_burst = 1'000'000;
       }},
      {"fallback_max_keys", [](auto& c) { c.fallback_max_keys = 0; }},
      {"pool_size", [](auto& c) { c.pool_size = 0; }},
      {"pool_size", [](auto& c) { c.pool_size = 1025; }},
      {"pool_timeout", [](auto& c) { c.pool_timeout = -1ns; }},
      {"pool_timeout", [](auto& c) { c.pool_timeout = 2h; }},
  };
  for (const auto& [field, mutate] : cases) {
    for (const failure_mode mode : {failure_mode::fail_open, failure_mode::fail_closed,
                                    failure_mode::local_fallback}) {
      outgrow::redis_rate_limiter_config c = good;
      c.failure_mode = mode;
      mutate(c);
      INFO(field << " in mode " << static_cast<int>(mode));
      try {
        limiter l(c);
        FAIL("no config_error");
      } catch (const outgrow::config_error& e) {
        CHECK(e.primitive() == "redis_rate_limiter");
        CHECK(e.field() == field);
        CHECK(std::string_view(e.what()).starts_with("redis_rate_limiter: " + field));
      }
    }
  }
}

TEST_CASE(
    "redis_rate_limiter script SHA1 is the one Redis computes and NOSCRIPT reloads it",
    "[integration][admission]") {
  outgrow_test::redis_server server;
  namespace rg = outgrow::detail::redis_gcra;
  {
    auto r = server.command("SCRIPT LOAD %b", rg::script.data(), rg::script.size());
    REQUIRE(r->type == REDIS_REPLY_STRING);
    CHECK(outgrow_test::reply_text(*r) == rg::script_sha1);
    server.command("SCRIPT FLUSH");
  }
  limiter l(config_for(server, "sha:"));
  CHECK(l.try_acquire("k").admitted);  // NOSCRIPT: EVAL, which caches it
  CHECK(l.metrics().script_loads == 1);
  CHECK(l.try_acquire("k").admitted);  // EVALSHA
  CHECK(l.metrics().script_loads == 1);
  server.command("SCRIPT FLUSH");
  CHECK(l.try_acquire("k").admitted);
  CHECK(l.metrics().script_loads == 2);
  const outgrow::redis_rate_limiter_metrics m = l.metrics();
  CHECK(m.admitted == 3);
  CHECK(m.redis_errors == 0);
}

TEST_CASE("redis_rate_limiter treats a foreign or corrupt key as a Redis error",
          "[integration][admission]") {
  outgrow_test::redis_server server;
  for (const failure_mode mode :
       {failure_mode::fail_open, failure_mode::fail_closed, failure_mode::local_fallback}) {
    INFO("mode " << static_cast<int>(mode));
    server.command("FLUSHALL");
    outgrow::redis_rate_limiter_config c = config_for(server, "bad:", mode);
    c.fallback_permits_per_second = 0.5;
    c.fallback_burst = 1;
    limiter l(c);
    // A key of another type, as an operator's redis-cli LPUSH would leave it, and
    // strings that are not a bucket.
    const std::string list_key = l.redis_key("list");
    server.command("LPUSH %b x", list_key.data(), list_key.size());
    const std::string values[] = {"garbage",
                                  "1 2 3",
                                  "12 8000",
                                  "-5 0",
                                  "99999999999999999999 0",
                                  "",
                                  "7",
                                  std::string(100'000, '9') + " 1"};
    std::vector<std::string> keys = {"list"};
    for (std::size_t i = 0; i < std::size(values); ++i) {
      keys.push_back(fmt::format("corrupt{}", i));
      const std::string k = l.redis_key(keys.back());
      server.command("SET %b %b", k.data(), k.size(), values[i].data(), values[i].size());
    }
    std::uint64_t expected_admitted = 0;
    for (const std::string& key : keys) {
      INFO("key " << key);
      const outgrow::rate_limit_result r = l.try_acquire(key);
      switch (mode) {
        case failure_mode::fail_open:
          CHECK(r.admitted);
          CHECK(r.retry_after == 0ns);
          break;
        case failure_mode::fail_closed:
          CHECK_FALSE(r.admitted);
          CHECK(r.retry_after == 1s);  // n permits at the shared limit
          break;
        case failure_mode::local_fallback:
          CHECK(r.admitted);  // each key has its own fallback bucket
          CHECK_FALSE(l.try_acquire(key).admitted);
          break;
      }
      expected_admitted += r.admitted ? 1 : 0;
    }
    outgrow::redis_rate_limiter_metrics m = l.metrics();
    const std::uint64_t failed =
        mode == failure_mode::local_fallback ? 2 * keys.size() : keys.size();
    CHECK(m.redis_errors == failed);
    CHECK(m.server_errors == failed);
    CHECK(m.malformed_replies == 0);
    CHECK(by_fallback(m) == failed);
    CHECK(m.fallback_admitted == expected_admitted);
    CHECK(m.transport_errors == 0);
    // The key is left as it was (it is not the limiter's to delete), and the
    // connection keeps serving other keys.
    CHECK(server.command("TYPE %b", list_key.data(), list_key.size())->str ==
          std::string("list"));
    CHECK(l.try_acquire("fine").admitted);
    m = l.metrics();
    CHECK(m.redis_errors == failed);
    CHECK(m.connects == 1);
  }
}

TEST_CASE("redis_rate_limiter never reads a malformed reply as a decision",
          "[integration][admission]") {
  namespace rg = outgrow::detail::redis_gcra;
  struct fake {
    std::array<redisReply, 3> items{};
    std::array<redisReply*, 3> pointers{};
    redisReply array{};
    fake(long long a, long long b, long long c) {
      const long long v[] = {a, b, c};
      for (std::size_t i = 0; i < 3; ++i) {
        items[i].type = REDIS_REPLY_INTEGER;
        items[i].integer = v[i];
        pointers[i] = &items[i];
      }
      array.type = REDIS_REPLY_ARRAY;
      array.elements = 3;
      array.element = pointers.data();
    }
  };
  const auto parse = [](long long a, long long b, long long c) {
    fake f(a, b, c);
    return rg::parse(&f.array);
  };
  REQUIRE(parse(1, 0, 0));
  CHECK(parse(1, 0, 0)->admitted);
  REQUIRE(parse(0, 2, 7999));
  CHECK_FALSE(parse(0, 2, 7999)->admitted);
  CHECK(parse(0, 2, 7999)->wait == 2 * 8000 + 7999);
  CHECK_FALSE(parse(1, 1, 0));  // admitted with a wait
  CHECK_FALSE(parse(2, 0, 0));
  CHECK_FALSE(parse(-1, 5, 0));
  CHECK_FALSE(parse(0, 0, 0));  // rejected without a wait
  CHECK_FALSE(parse(0, -1, 5));
  CHECK_FALSE(parse(0, 1, -1));
  CHECK_FALSE(parse(0, 1, 8000));
  CHECK_FALSE(parse(0, std::numeric_limits<long long>::max(), 0));
  CHECK_FALSE(rg::parse(nullptr));
  {
    fake f(1, 0, 0);
    f.items[1].type = REDIS_REPLY_STRING;
    CHECK_FALSE(rg::parse(&f.array));
    f.items[1].type = REDIS_REPLY_INTEGER;
    f.array.elements = 2;
    CHECK_FALSE(rg::parse(&f.array));
    f.array.elements = 3;
    f.pointers[2] = nullptr;
    CHECK_FALSE(rg::parse(&f.array));
    f.pointers[2] = &f.items[2];
    f.array.element = nullptr;
    CHECK_FALSE(rg::parse(&f.array));
    f.array.element = f.pointers.data();
    f.array.type = REDIS_REPLY_STRING;
    CHECK_FALSE(rg::parse(&f.array));
    f.array.type = REDIS_REPLY_ARRAY;
    CHECK(rg::parse(&f.array));
  }

  // End to end: a real server whose EVALSHA is MGET answers an array of seven nils.
  outgrow_test::redis_server server(
      {.extra_args = {"--rename-command", "EVALSHA", "", "--rename-command", "MGET",
                      "EVALSHA"}});
  limiter l(config_for(server, "odd:", failure_mode::fail_closed));
  const outgrow::rate_limit_result r = l.try_acquire("k");
  CHECK_FALSE(r.admitted);
  const outgrow::redis_rate_limiter_metrics m = l.metrics();
  CHECK(m.malformed_replies == 1);
  CHECK(m.server_errors == 0);
  CHECK(m.redis_errors == 1);
  CHECK(m.fallback_rejected == 1);
}

namespace {

struct child_report {
  std::uint64_t attempts = 0;
  std::uint64_t admitted = 0;
  std::uint64_t redis_errors = 0;
  std::uint64_t longest_gap_us = 0;  ///< longest time without a decision in this child
  std::uint64_t ok = 0;              ///< 1 when the child ran to the end
};

/// Kills (by pid) and reaps every child still registered, also when a check fails.
struct children {
  std::vector<pid_t> pids;
  ~children() {
    for (const pid_t pid : pids) {
      if (pid <= 0) continue;
      ::kill(pid, SIGKILL);
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
};

/// In a forked child (no thread yet): `threads` threads attempt one permit every
/// `pace` from `start` to `end`, then the counts go to `fd`.
[[noreturn]] void run_child(const outgrow::redis_rate_limiter_config& config, int threads,
                            std::chrono::steady_clock::time_point start,
                            std::chrono::steady_clock::time_point end,
                            std::chrono::microseconds pace, int fd) noexcept {
  child_report report;
  try {
    limiter l(config);
    std::atomic<std::uint64_t> attempts{0};
    std::atomic<std::uint64_t> admitted{0};
    std::atomic<std::int64_t> last_decision{start.time_since_epoch().count()};
    std::atomic<std::int64_t> longest_gap{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&] {
        (void)l.try_acquire("warm-up");  // opens this thread's pooled connection
        std::this_thread::sleep_until(start);
        auto next = start;
        while (std::chrono::steady_clock::now() < end) {
          attempts.fetch_add(1, std::memory_order_relaxed);
          if (l.try_acquire()) admitted.fetch_add(1, std::memory_order_relaxed);
          const auto now = std::chrono::steady_clock::now();
          const std::int64_t gap = now.time_since_epoch().count() -
                                   last_decision.exchange(now.time_since_epoch().count());
          std::int64_t longest = longest_gap.load();
          while (gap > longest && !longest_gap.compare_exchange_weak(longest, gap)) {
          }
          next = std::max(next + pace, now);
          std::this_thread::sleep_until(next);
        }
      });
    }
    for (auto& w : workers) w.join();
    report = {.attempts = attempts.load(),
              .admitted = admitted.load(),
              .redis_errors = l.metrics().redis_errors,
              .longest_gap_us = static_cast<std::uint64_t>(
                  std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::duration{longest_gap.load()})
                      .count()),
              .ok = 1};
  } catch (...) {
    report.ok = 0;
  }
  (void)!::write(fd, &report, sizeof report);
  ::_exit(0);
}

}  // namespace

TEST_CASE("redis_rate_limiter 4 processes x 2 threads share 1000 per second",
          "[integration][admission]") {
  constexpr int processes = 4;
  constexpr int threads = 2;
  constexpr double rate = 1000.0;
  // A bucket of 0.25 s: a fleet-wide stall of the busy test machine shorter than that
  // (the clients or redis-server not scheduled) loses no permits; the longest gap is
  // printed.
  constexpr std::uint64_t burst = 250;
  constexpr auto window = 10s;
  outgrow_test::redis_server server;
  outgrow::redis_rate_limiter_config c = config_for(server, "fleet:");
  c.permits_per_second = rate;
  c.burst = burst;
  c.pool_size = threads;

  // Every child runs the same window of steady_clock (CLOCK_MONOTONIC: one time line
  // for every process on the machine); forks and connects happen before it starts.
  const auto start = std::chrono::steady_clock::now() + 1500ms;
  const auto end = start + window;
  children kids;
  std::vector<int> reads;
  for (int p = 0; p < processes; ++p) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::close(fds[0]);
      run_child(c, threads, start, end, 500us, fds[1]);
    }
    ::close(fds[1]);
    kids.pids.push_back(pid);
    reads.push_back(fds[0]);
  }
  child_report total;
  std::uint64_t finished = 0;
  for (std::size_t i = 0; i < reads.size(); ++i) {
    pollfd pfd{.fd = reads[i], .events = POLLIN, .revents = 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end + 20s - std::chrono::steady_clock::now());
    child_report r;
    if (::poll(&pfd, 1, static_cast<int>(std::max<long long>(left.count(), 0))) == 1 &&
        ::read(reads[i], &r, sizeof r) == static_cast<ssize_t>(sizeof r)) {
      total.attempts += r.attempts;
      total.admitted += r.admitted;
      total.redis_errors += r.redis_errors;
      total.longest_gap_us = std::max(total.longest_gap_us, r.longest_gap_us);
      finished += r.ok;
    }
    ::close(reads[i]);
  }
  const double expected =
      rate * std::chrono::duration<double>(window).count() + static_cast<double>(burst);
  const double off = (static_cast<double>(total.admitted) - expected) / expected * 100.0;
  fmt::print(
      "redis_rate_limiter: {} processes x {} threads, {} attempts in {} s, admitted {} "
      "(expected {:.0f} = {:.0f}/s x {} s + burst {}: {:+.2f} %); longest time without a "
      "decision in one process: {:.1f} ms\n",
      processes, threads, total.attempts, window.count(), total.admitted, expected, rate,
      window.count(), burst, off, static_cast<double>(total.longest_gap_us) / 1000.0);
  CHECK(finished == processes);
  CHECK(total.redis_errors == 0);
  CHECK(total.attempts > 3 * total.admitted);  // every thread asked for well over its share
  CHECK(std::abs(off) <= 1.0);
}

TEST_CASE("redis_rate_limiter killed Redis: each failure mode decides and is counted",
          "[integration][admission]") {
  outgrow_test::redis_server server;
  const failure_mode modes[] = {failure_mode::fail_open, failure_mode::fail_closed,
                                failure_mode::local_fallback};
  std::vector<std::unique_ptr<limiter>> limiters;
  for (const failure_mode mode : modes) {
    outgrow::redis_rate_limiter_config c =
        config_for(server, fmt::format("mode{}:", static_cast<int>(mode)), mode);
    c.permits_per_second = 100.0;
    c.burst = 10;
    c.fallback_permits_per_second = 50.0;
    c.fallback_burst = 5;
    limiters.push_back(std::make_unique<limiter>(c));
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 2; ++t) {
    workers.emplace_back([&] {
      while (!stop.load()) {
        for (auto& l : limiters) (void)l->try_acquire();
        std::this_thread::sleep_for(1ms);
      }
    });
  }
  struct stop_workers {
    std::atomic<bool>& stop;
    std::vector<std::thread>& workers;
    ~stop_workers() {
      stop = true;
      for (auto& w : workers) w.join();
    }
  } joiner{stop, workers};
  using snapshot = std::array<outgrow::redis_rate_limiter_metrics, 3>;
  const auto take = [&] {
    snapshot s;
    for (std::size_t i = 0; i < 3; ++i) s[i] = limiters[i]->metrics();
    return s;
  };
  const auto redis_decided = [](const outgrow::redis_rate_limiter_metrics& m) {
    return decisions(m) - by_fallback(m);
  };

  std::this_thread::sleep_for(1s);  // healthy
  const snapshot healthy = take();
  server.kill();
  const auto killed_at = std::chrono::steady_clock::now();
  const snapshot down = take();
  std::this_thread::sleep_for(2s);
  const snapshot before_restart = take();
  const auto outage =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  server.restart();
  const snapshot restarted = take();
  // Back to Redis once every limiter's reconnect backoff lets it try (100 ms at most).
  const auto give_up = std::chrono::steady_clock::now() + 5s;
  snapshot back = take();
  for (;;) {
    bool all = true;
    for (std::size_t i = 0; i < 3; ++i) {
      all = all && redis_decided(back[i]) > redis_decided(restarted[i]);
    }
    if (all || std::chrono::steady_clock::now() > give_up) break;
    std::this_thread::sleep_for(10ms);
    back = take();
  }
  std::this_thread::sleep_for(500ms);
  const snapshot after = take();

  for (std::size_t i = 0; i < 3; ++i) {
    INFO("mode " << static_cast<int>(modes[i]) << ", outage " << outage << " s");
    CHECK(healthy[i].redis_errors == 0);
    CHECK(healthy[i].admitted <= 10 + 100 * 2);  // Redis's limit (burst + 1 s, loosely)
    // During the outage: (almost) every decision the failure mode's — at most one per
    // thread was answered by Redis before it died — and each counted as a Redis error.
    const auto d = [&](auto field) { return field(before_restart[i]) - field(down[i]); };
    const std::uint64_t total = d([](auto& m) { return decisions(m); });
    const std::uint64_t fallback = d([](auto& m) { return by_fallback(m); });
    const std::uint64_t admitted = d([](auto& m) { return m.admitted; });
    const std::uint64_t fallback_admitted = d([](auto& m) { return m.fallback_admitted; });
    CHECK(total > 200);
    CHECK(fallback + 2 >= total);
    const std::uint64_t errors = d([](auto& m) { return m.redis_errors; });
    CHECK(errors + 2 >= fallback);  // (the two counters are read one after the other)
    CHECK(fallback + 2 >= errors);
    CHECK(d([](auto& m) { return m.short_circuited; }) > 0);  // the backoff skipped I/O
    switch (modes[i]) {
      case failure_mode::fail_open:
        CHECK(fallback_admitted == fallback);
        CHECK(admitted + 2 >= total);
        break;
      case failure_mode::fail_closed:
        CHECK(fallback_admitted == 0);
        CHECK(admitted <= 2);
        break;
      case failure_mode::local_fallback: {
        const double expected = 5.0 + 50.0 * outage;  // a full fallback bucket, then 50/s
        INFO("fallback admitted " << fallback_admitted << ", expected " << expected);
        CHECK(std::abs(static_cast<double>(fallback_admitted) - expected) <=
              0.1 * expected + 2.0);
        CHECK(fallback_admitted < fallback);
        break;
      }
    }
    // After the restart: Redis decides again, at its limit (an empty Redis: a full
    // bucket of 10, then 100/s), and nothing is a failure any more — but for the first
    // use of a pooled connection that sat idle through the outage (its socket is dead):
    // at most pool_size (4) of them.
    CHECK(redis_decided(back[i]) > redis_decided(restarted[i]));
    CHECK(by_fallback(after[i]) - by_fallback(back[i]) <= 4);
    CHECK(after[i].redis_errors - back[i].redis_errors <= 4);
    CHECK(after[i].transport_errors - back[i].transport_errors <= 4);
    CHECK(after[i].admitted - back[i].admitted <= 10 + 100 * 1);
    CHECK(after[i].admitted > back[i].admitted);
    CHECK(after[i].connects >= 2);
  }
}
