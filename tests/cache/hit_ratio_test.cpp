// Hit ratios of the eviction policies on deterministic traces (tests/support/
// cache_traces.hpp) and on the real CloudPhysics trace, against LRU and the static
// top-k oracle. The "default policy" test prints the README table.
//
// Workloads (keys are uint64, every entry costs 1):
//   Zipf a, 1 %    Zipf(a) over 100,000 keys, capacity 1,000, the first 1,000,000 requests
//   Zipf a, 10 %   the same trace, capacity 10,000, 2,000,000 requests (a larger cache
//                  takes longer to warm up: every policy is measured from cold, while
//                  the oracle holds its keys from the first request)
//   loop           0, 1, ..., 2,499 repeated (250,000 requests), capacity 1,000
//   recency-biased (1,000,000 requests each; what was used lately predicts the next
//   requests better than long-run counts, as on database and web traces):
//     shift        a 5,000-key Zipf 0.8 working set, half of it replaced every 50,000
//                  requests; capacity 1,000 and 4,000
//     shift 2      20,000 keys, Zipf 0.6, 30 % replaced every 100,000; 2,000 / 10,000
//     stack        the LRU stack model: 30 % new keys, reuse depth log-uniform up to
//                  20,000; capacity 1,000 / 5,000
//     stack 2      10 % new keys, depth up to 100,000; capacity 2,000 / 20,000
//     phased       six phases of 200,000: Zipf 0.9 (frequency) and the stack model
//                  (recency) alternating; capacity 1,000 / 5,000
//   CloudPhysics   a real block-I/O trace (113,872 requests, 48,974 objects; publicly
//                  available as libCacheSim's data/cloudPhysicsIO.txt), read from
//                  $OUTGROW_TRACE_DIR or ../shared/traces next to the repository;
//                  capacity 1 / 5 / 10 % of the objects (489 / 2,448 / 4,897). Without
//                  the file its tests are reported as skipped by CTest.
// Results are memoized per process, so running the binary once computes each figure
// once.
#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/eviction.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
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

/// Marks the running test as skipped: CTest's SKIP_REGULAR_EXPRESSION (tests/
/// CMakeLists.txt) matches this line, so a missing input is never reported as passed.
void skip(const std::string& why) {
  fmt::print("OUTGROW-SKIPPED: {}\n", why);
  std::fflush(stdout);
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

std::vector<workload> recency_workloads() {
  static const trace shift = outgrow_test::shifting_trace({});
  static const trace shift2 = outgrow_test::shifting_trace({.working_set = 20'000,
                                                            .alpha = 0.6,
                                                            .shift_every = 100'000,
                                                            .shift_fraction = 0.3,
                                                            .seed = 3});
  static const trace stack = outgrow_test::stack_trace({});
  static const trace stack2 =
      outgrow_test::stack_trace({.p_new = 0.1, .max_depth = 100'000, .seed = 5});
  static const trace phased = outgrow_test::phased_trace(6, 200'000, 0.9, 9);
  return {{"shift 1k", 1'000, &shift},    {"shift 4k", 4'000, &shift},
          {"shift 2 2k", 2'000, &shift2}, {"shift 2 10k", 10'000, &shift2},
          {"stack 1k", 1'000, &stack},    {"stack 5k", 5'000, &stack},
          {"stack 2 2k", 2'000, &stack2}, {"stack 2 20k", 20'000, &stack2},
          {"phased 1k", 1'000, &phased},  {"phased 5k", 5'000, &phased}};
}

std::vector<workload> all_workloads() {
  std::vector<workload> out = {zipf_workload(0.8, false),
                               zipf_workload(0.8, true),
                               zipf_workload(1.0, false),
                               zipf_workload(1.0, true),
                               {"loop", loop_capacity, &loop()}};
  for (auto& w : recency_workloads()) out.push_back(std::move(w));
  for (auto& w : cloudphysics_workloads()) out.push_back(std::move(w));
  return out;
}

/// W-TinyLFU with the adaptive window off (Caffeine's initial 1 %), for the table.
struct fixed_window_w_tiny_lfu : outgrow::w_tiny_lfu {
  explicit fixed_window_w_tiny_lfu(std::size_t capacity)
      : outgrow::w_tiny_lfu(capacity, {.adaptive_window = false}) {}
};

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

// Reference figures of the trace (reference implementations, not published numbers):
// LRU 16.2 / 17.5 / 19.5, SIEVE 17.1 / 18.3 / 20.9, S3-FIFO (move to main at 2 hits)
// 17.0 / 19.7 / 24.7 at 1 / 5 / 10 %.
TEST_CASE("the CloudPhysics reference figures are reproduced",
          "[hit_ratio][cloudphysics]") {
  const auto workloads = cloudphysics_workloads();
  if (workloads.empty()) {
    skip("CloudPhysics trace not found at " + outgrow_test::cloudphysics_trace_path() +
         " (set OUTGROW_TRACE_DIR)");
    return;
  }
  const double lru_reference[] = {16.2, 17.5, 19.5};
  const double sieve_reference[] = {17.1, 18.3, 20.9};
  const double s3_fifo_reference[] = {17.0, 19.7, 24.7};
  for (std::size_t i = 0; i < workloads.size(); ++i) {
    INFO(workloads[i].name);
    CHECK(points(hit_ratio<outgrow::lru>(workloads[i])) ==
          Approx(lru_reference[i]).margin(0.05));
    CHECK(points(hit_ratio<outgrow::sieve>(workloads[i])) ==
          Approx(sieve_reference[i]).margin(0.05));
    // Ours: 17.0 / 19.7 / 24.3. The ghost queue is a bounded hash table (the paper's
    // suggestion) that may forget a key slightly early; at 10 % that costs 0.4.
    CHECK(points(hit_ratio<outgrow::s3_fifo>(workloads[i])) ==
          Approx(s3_fifo_reference[i]).margin(0.5));
  }
}

namespace {

/// SIEVE as the paper's pseudo-code states it, with standard containers: a FIFO list
/// (newest at the front), a visited bit per object, a hand that moves from the tail
/// toward the head; evict before inserting.
std::size_t reference_sieve_hits(std::size_t capacity, const trace& t) {
  struct object {
    std::uint64_t key;
    bool visited;
  };
  std::list<object> queue;  // front = newest
  std::unordered_map<std::uint64_t, std::list<object>::iterator> index;
  auto hand = queue.end();  // end() = start at the tail
  std::size_t hits = 0;
  for (const std::uint64_t key : t) {
    if (auto it = index.find(key); it != index.end()) {
      it->second->visited = true;
      ++hits;
      continue;
    }
    if (queue.size() == capacity) {
      auto p = hand == queue.end() ? std::prev(queue.end()) : hand;
      while (p->visited) {
        p->visited = false;
        p = p == queue.begin() ? std::prev(queue.end()) : std::prev(p);
      }
      hand = p == queue.begin() ? queue.end() : std::prev(p);
      index.erase(p->key);
      queue.erase(p);
    }
    queue.push_front({key, false});
    index[key] = queue.begin();
  }
  return hits;
}

}  // namespace

TEST_CASE("single-threaded SIEVE gives exactly the hits of a plain reference SIEVE",
          "[hit_ratio][sieve]") {
  auto workloads = all_workloads();
  for (const auto& w : workloads) {
    outgrow_test::simulation_cache<outgrow::sieve> c({.capacity = w.capacity});
    outgrow_test::simulate(c, *w.requests);
    INFO(w.name);
    CHECK(c.metrics().hits == reference_sieve_hits(w.capacity, *w.requests));
  }
  // Tiny caches, where inserting before evicting would hurt most.
  const trace small =
      outgrow_test::zipf_trace({.keys = 50, .alpha = 0.7, .requests = 20'000});
  for (const std::size_t capacity :
       {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}}) {
    outgrow_test::simulation_cache<outgrow::sieve> c({.capacity = capacity});
    outgrow_test::simulate(c, small);
    INFO("capacity " << capacity);
    CHECK(c.metrics().hits == reference_sieve_hits(capacity, small));
  }
}

// The most expensive figures (every policy on every workload) are computed once, for
// the table and every check, so CTest (one process per test case) does not run them
// twice.
TEST_CASE("the default policy is never the one to regret and the table prints",
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
  row("w_tiny_lfu, fixed 1 % window",
      [](const workload& w) { return hit_ratio<fixed_window_w_tiny_lfu>(w); });
  row("**w_tiny_lfu** (default)",
      [](const workload& w) { return hit_ratio<outgrow::w_tiny_lfu>(w); });
  row("static top-k oracle", [](const workload& w) { return oracle(w); });
  fmt::print("\n");
  if (!cloudphysics()) {
    WARN("CloudPhysics trace not found at " << outgrow_test::cloudphysics_trace_path()
                                            << ": its columns are missing");
  }

  // On every workload: at least LRU's hit ratio (less a 0.5-point allowance for the
  // time the adaptive window needs to move away from 1 %, which LRU does not pay: on
  // the stack-model traces, where LRU is the natural policy, the default is 0.0-0.3
  // below it), and within 2 points of the best of LRU, SIEVE and S3-FIFO.
  for (const auto& w : workloads) {
    const double got = points(hit_ratio<outgrow::w_tiny_lfu>(w));
    const double lru = points(hit_ratio<outgrow::lru>(w));
    const double best = std::max({lru, points(hit_ratio<outgrow::sieve>(w)),
                                  points(hit_ratio<outgrow::s3_fifo>(w))});
    INFO(w.name << ": w_tiny_lfu " << got << " %, lru " << lru << " %, best of lru/sieve/"
                << "s3_fifo " << best << " %");
    CHECK(got >= lru - 0.5);
    CHECK(got >= best - 2.0);
  }

  // W-TinyLFU within 3 points of the static top-k oracle on Zipf 0.8 and 1.0 at 1 %
  // and 10 %, and above 30 % on the loop (the oracle and Belady hold 40 %).
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
  CHECK(hit_ratio<outgrow::w_tiny_lfu>({"loop", loop_capacity, &loop()}) > 0.30);
}
