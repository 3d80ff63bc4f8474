// Hit ratios of the eviction policies on deterministic traces (tests/support/
// cache_traces.hpp) and on the real CloudPhysics trace, against LRU and the static
// top-k oracle. The last test prints the README table.
//
// Workloads (keys are uint64, every entry costs 1):
//   Zipf a, 1 %    Zipf(a) over 100,000 keys, capacity 1,000, the first 1,000,000 requests
//   Zipf a, 10 %   the same trace, capacity 10,000, 2,000,000 requests (a larger cache
//                  takes longer to warm up: every policy is measured from cold, while
//                  the oracle holds its keys from the first request)
//   loop           0, 1, ..., 2,499 repeated (250,000 requests), capacity 1,000
//   CloudPhysics   ../shared/traces/cloudphysics_io.txt (113,872 requests, 48,974
//                  objects), capacity 1 / 5 / 10 % of the objects (489 / 2,448 / 4,897)
// Results are memoized per process, so running the binary once computes each figure
// once.
#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/eviction.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cache_traces.hpp"
#include "catch.hpp"

namespace {

using outgrow_test::trace;

constexpr std::size_t zipf_keys = 100'000;
constexpr std::size_t small_requests = 1'000'000;
constexpr std::size_t large_requests = 2'000'000;
constexpr std::size_t loop_keys = 2'500;
constexpr std::size_t loop_capacity = 1'000;
constexpr std::size_t loop_requests = 250'000;

struct workload {
  std::string name;
  std::size_t capacity;
  const trace* requests;
};

const trace& zipf(double alpha, std::size_t requests) {
  static std::map<std::pair<double, std::size_t>, trace> traces;
  auto it = traces.find({alpha, requests});
  if (it == traces.end()) {
    // One trace per alpha; the 1 % workload uses its first small_requests.
    trace full = outgrow_test::zipf_trace(
        {.keys = zipf_keys, .alpha = alpha, .requests = large_requests, .seed = 42});
    full.resize(requests);
    it = traces.emplace(std::pair{alpha, requests}, std::move(full)).first;
  }
  return it->second;
}

const trace& loop() {
  static const trace t = outgrow_test::loop_trace(loop_keys, loop_requests);
  return t;
}

const std::optional<trace>& cloudphysics() {
  static const std::optional<trace> t =
      outgrow_test::load_trace(outgrow_test::cloudphysics_trace_path());
  return t;
}

workload zipf_workload(double alpha, bool large) {
  return {fmt::format("Zipf {:.1f}, {} %", alpha, large ? 10 : 1),
          large ? zipf_keys / 10 : zipf_keys / 100,
          &zipf(alpha, large ? large_requests : small_requests)};
}

std::vector<workload> cloudphysics_workloads() {
  std::vector<workload> out;
  if (!cloudphysics()) return out;
  const std::size_t objects = outgrow_test::distinct_keys(*cloudphysics());
  for (const std::size_t percent : {std::size_t{1}, std::size_t{5}, std::size_t{10}}) {
    out.push_back({fmt::format("CloudPhysics {} %", percent), objects * percent / 100,
                   &*cloudphysics()});
  }
  return out;
}

std::vector<workload> all_workloads() {
  std::vector<workload> out = {zipf_workload(0.8, false),
                               zipf_workload(0.8, true),
                               zipf_workload(1.0, false),
                               zipf_workload(1.0, true),
                               {"loop", loop_capacity, &loop()}};
  for (auto& w : cloudphysics_workloads()) out.push_back(std::move(w));
  return out;
}

template <class Policy>
double hit_ratio(const workload& w) {
  static std::map<std::string, double> memo;
  auto it = memo.find(w.name);
  if (it == memo.end()) {
    it =
        memo.emplace(w.name, outgrow_test::simulate<Policy>(w.capacity, *w.requests)).first;
  }
  return it->second;
}

double oracle(const workload& w) {
  static std::map<std::string, double> memo;
  auto it = memo.find(w.name);
  if (it == memo.end()) {
    it = memo.emplace(w.name, outgrow_test::top_k_oracle(*w.requests, w.capacity)).first;
  }
  return it->second;
}

double points(double ratio) {
  return 100.0 * ratio;
}

}  // namespace

TEST_CASE("the Zipf generator is deterministic", "[hit_ratio][trace]") {
  // Golden values: the same sequence on every platform and standard library (raw
  // mt19937_64 output and our own inversion, no std distributions).
  const trace t =
      outgrow_test::zipf_trace({.keys = 100'000, .alpha = 0.8, .requests = 10, .seed = 42});
  const trace golden = {28299, 13608, 27803, 43, 63041, 15, 8607, 1444, 442, 1732};
  CHECK(t == golden);
  const trace again =
      outgrow_test::zipf_trace({.keys = 100'000, .alpha = 0.8, .requests = 10, .seed = 42});
  CHECK(t == again);
  // Key 0 is the most popular, and its share matches 1 / H(100000, 0.8) ~= 2.2 %.
  const trace many = outgrow_test::zipf_trace({.keys = 100'000, .alpha = 0.8});
  std::size_t zeros = 0;
  for (const auto k : many) zeros += k == 0 ? 1U : 0U;
  CHECK(static_cast<double>(zeros) / static_cast<double>(many.size()) ==
        Approx(0.0220).margin(0.0005));
}

TEST_CASE("the oracle counts requests to the most frequent keys", "[hit_ratio][trace]") {
  const trace t = {1, 1, 1, 2, 2, 3, 4, 4, 4, 4};
  CHECK(outgrow_test::top_k_oracle(t, 1) == Approx(0.4));
  CHECK(outgrow_test::top_k_oracle(t, 2) == Approx(0.7));
  CHECK(outgrow_test::top_k_oracle(t, 100) == Approx(1.0));
  CHECK(outgrow_test::top_k_oracle(outgrow_test::loop_trace(10, 100), 4) == Approx(0.4));
}

TEST_CASE("W-TinyLFU beats LRU by at least 5 points on Zipf 0.8 at 1 percent",
          "[hit_ratio]") {
  const workload w = zipf_workload(0.8, false);
  const double modern = hit_ratio<outgrow::w_tiny_lfu>(w);
  const double baseline = hit_ratio<outgrow::lru>(w);
  INFO("w_tiny_lfu " << points(modern) << " %, lru " << points(baseline) << " %");
  CHECK(points(modern) - points(baseline) >= 5.0);
}

TEST_CASE("W-TinyLFU keeps hitting on a looping scan that LRU misses entirely",
          "[hit_ratio]") {
  const workload w{"loop", loop_capacity, &loop()};
  CHECK(hit_ratio<outgrow::lru>(w) == 0.0);
  const double modern = hit_ratio<outgrow::w_tiny_lfu>(w);
  INFO("w_tiny_lfu " << points(modern) << " % (libCacheSim's W-TinyLFU: 39.3 %)");
  CHECK(modern > 0.30);  // the oracle (and Belady) hold 40 %
}

TEST_CASE("W-TinyLFU beats S3-FIFO's published figures on the CloudPhysics trace",
          "[hit_ratio][cloudphysics]") {
  const auto workloads = cloudphysics_workloads();
  if (workloads.empty()) {
    WARN("CloudPhysics trace not found at " << outgrow_test::cloudphysics_trace_path()
                                            << " (set OUTGROW_TRACE_DIR); skipped");
    SUCCEED("skipped: no trace");
    return;
  }
  // Our driver reproduces the trace's published LRU and SIEVE figures (README of the
  // traces), so the comparison below is like for like.
  const double lru_published[] = {16.2, 17.5, 19.5};
  const double sieve_published[] = {17.1, 18.3, 20.9};
  for (std::size_t i = 0; i < workloads.size(); ++i) {
    INFO(workloads[i].name);
    CHECK(points(hit_ratio<outgrow::lru>(workloads[i])) ==
          Approx(lru_published[i]).margin(0.05));
    CHECK(points(hit_ratio<outgrow::sieve>(workloads[i])) ==
          Approx(sieve_published[i]).margin(0.05));
  }
  const double at5 = hit_ratio<outgrow::w_tiny_lfu>(workloads[1]);
  const double at10 = hit_ratio<outgrow::w_tiny_lfu>(workloads[2]);
  INFO("w_tiny_lfu: 5 % -> " << points(at5) << " %, 10 % -> " << points(at10) << " %");
  CHECK(points(at5) > 20.5);
  CHECK(points(at10) > 25.3);
}

// The most expensive figures (every policy on 6M Zipf requests) are computed once, for
// both the table and the 3-point check, so CTest (one process per test case) does not
// run them twice.
TEST_CASE("W-TinyLFU is within 3 points of the oracle on Zipf and the table prints",
          "[hit_ratio][table]") {
  const auto workloads = all_workloads();
  std::string header = "| policy |";
  std::string rule = "|---|";
  for (const auto& w : workloads) {
    header += fmt::format(" {} |", w.name);
    rule += "---:|";
  }
  fmt::print(
      "\nHit ratios (%), Zipf over {} keys ({} requests at 1 %, {} at 10 %), loop "
      "over {} keys with capacity {}:\n\n{}\n{}\n",
      zipf_keys, small_requests, large_requests, loop_keys, loop_capacity, header, rule);
  const auto row = [&](std::string_view name, auto&& ratio) {
    std::string line = fmt::format("| {} |", name);
    for (const auto& w : workloads) {
      const double r = ratio(w);
      CHECK(r >= 0.0);
      CHECK(r <= 1.0);
      line += fmt::format(" {:.1f} |", points(r));
    }
    fmt::print("{}\n", line);
  };
  row("lru", [](const workload& w) { return hit_ratio<outgrow::lru>(w); });
  row("sieve", [](const workload& w) { return hit_ratio<outgrow::sieve>(w); });
  row("s3_fifo", [](const workload& w) { return hit_ratio<outgrow::s3_fifo>(w); });
  row("**w_tiny_lfu** (default)",
      [](const workload& w) { return hit_ratio<outgrow::w_tiny_lfu>(w); });
  row("static top-k oracle", [](const workload& w) { return oracle(w); });
  fmt::print("\n");
  if (!cloudphysics()) {
    WARN("CloudPhysics trace not found at " << outgrow_test::cloudphysics_trace_path()
                                            << ": its columns are missing");
  }

  // The figure: W-TinyLFU within 3 points of the static top-k oracle on Zipf
  // 0.8 and 1.0 at 1 % and 10 %.
  for (const double alpha : {0.8, 1.0}) {
    for (const bool large : {false, true}) {
      const workload w = zipf_workload(alpha, large);
      const double best = oracle(w);
      const double got = hit_ratio<outgrow::w_tiny_lfu>(w);
      INFO(w.name << ": oracle " << points(best) << " %, w_tiny_lfu " << points(got)
                  << " %");
      CHECK(points(best) - points(got) <= 3.0);
      CHECK(got <= best + 0.001);  // a sanity check of the driver
    }
  }
}
