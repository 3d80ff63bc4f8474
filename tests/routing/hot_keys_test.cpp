#include <outgrow/routing/hot_keys.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

#include "counting_new.hpp"

using outgrow::hot_key;
using outgrow::hot_key_tracker;
using outgrow::shard_load_counters;
using outgrow::shard_load_report;

static_assert(outgrow::metrics_snapshot<shard_load_report>);

namespace {

/// Zipf(s) over ranks 0..n-1 (rank 0 the most frequent), sampled by inverting the CDF
/// with the top 53 bits of mt19937_64: the same sequence on every platform (unlike
/// the std distributions, whose algorithms are implementation-defined).
class zipf_ranks {
 public:
  zipf_ranks(std::size_t n, double s) : cdf_(n) {
    double sum = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      sum += s == 1.0 ? 1.0 / static_cast<double>(i + 1)
                      : std::pow(static_cast<double>(i + 1), -s);
      cdf_[i] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }

  std::size_t operator()(std::mt19937_64& rng) const {
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    const auto it = std::upper_bound(cdf_.begin(), cdf_.end(), u);
    return std::min(static_cast<std::size_t>(it - cdf_.begin()), cdf_.size() - 1);
  }

 private:
  std::vector<double> cdf_;
};

/// Key indices ordered by true count, descending (ties by index).
std::vector<std::uint64_t> by_true_count(const std::vector<std::uint64_t>& truth) {
  std::vector<std::uint64_t> order(truth.size());
  std::iota(order.begin(), order.end(), std::uint64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint64_t a, std::uint64_t b) { return truth[a] > truth[b]; });
  return order;
}

/// Checks the Space-Saving bounds of every reported key against the true counts,
/// that no key is reported twice, and that every key above total/k is reported.
void check_space_saving_bounds(const std::vector<hot_key<std::uint64_t>>& reported,
                               const std::vector<std::uint64_t>& truth, std::uint64_t total,
                               std::size_t capacity) {
  std::set<std::uint64_t> seen;
  std::size_t out_of_bounds = 0;
  for (const auto& hk : reported) {
    CHECK(seen.insert(hk.key).second);
    const std::uint64_t t = truth[hk.key];
    if (!(hk.min_count() <= t && t <= hk.count && hk.error * capacity <= total)) {
      ++out_of_bounds;
    }
  }
  CHECK(out_of_bounds == 0);
  std::size_t missing = 0;
  for (std::uint64_t key = 0; key < truth.size(); ++key) {
    if (truth[key] * capacity > total && seen.count(key) == 0) ++missing;
  }
  CHECK(missing == 0);
  CHECK(std::is_sorted(reported.begin(), reported.end(),
                       [](const auto& a, const auto& b) { return a.count > b.count; }));
}

}  // namespace

TEST_CASE("hot_key_tracker counts exactly while the distinct keys fit", "[hot_keys]") {
  hot_key_tracker<std::string> tracker({.capacity = 8});
  for (int i = 0; i < 5; ++i) tracker.record("user:1");
  tracker.record("user:2", 7);
  tracker.record("user:3");
  tracker.record("user:3");
  tracker.record("user:4", 0);  // a no-op
  CHECK(tracker.total() == 14);
  const auto top = tracker.top(10);
  REQUIRE(top.size() == 3);
  CHECK(top[0] == hot_key<std::string>{"user:2", 7, 0});
  CHECK(top[1] == hot_key<std::string>{"user:1", 5, 0});
  CHECK(top[2] == hot_key<std::string>{"user:3", 2, 0});
  CHECK(tracker.top(1) == std::vector<hot_key<std::string>>{{"user:2", 7, 0}});
  CHECK(tracker.top(0).empty());
  CHECK(tracker.capacity() == 8);
  CHECK(tracker.config().stripes == 4);
}

TEST_CASE("a new key takes over the smallest counter and inherits it as error",
          "[hot_keys]") {
  hot_key_tracker<std::string> tracker({.capacity = 2, .stripes = 1});
  tracker.record("a", 3);
  tracker.record("b");
  tracker.record("c");  // replaces b (count 1): count 2, of which 1 may be b's
  CHECK(tracker.top(5) == std::vector<hot_key<std::string>>{{"a", 3, 0}, {"c", 2, 1}});
  CHECK(tracker.top(5)[1].min_count() == 1);
  tracker.record("b", 4);  // replaces c (count 2)
  CHECK(tracker.top(5) == std::vector<hot_key<std::string>>{{"b", 6, 2}, {"a", 3, 0}});
  CHECK(tracker.total() == 9);
}

TEST_CASE("space saving reports every heavy key of a Zipf stream within its error",
          "[hot_keys]") {
  // Zipf(1.0) over 100k keys, 1M events, k = 256: every key above 1M/256 = 3906 events
  // (the top 20 here) must be reported, every count within [true, true + error].
  constexpr std::size_t keys = 100'000;
  constexpr std::size_t events = 1'000'000;
  constexpr std::size_t capacity = 256;
  const zipf_ranks zipf(keys, 1.0);
  std::mt19937_64 rng(20240531);
  hot_key_tracker<std::uint64_t> tracker({.capacity = capacity});
  std::vector<std::uint64_t> truth(keys, 0);
  for (std::size_t i = 0; i < events; ++i) {
    const std::uint64_t key = zipf(rng);
    ++truth[key];
    tracker.record(key);
  }
  CHECK(tracker.total() == events);

  const auto reported = tracker.top(capacity);
  REQUIRE(reported.size() == capacity);  // one thread: one stripe of k counters
  check_space_saving_bounds(reported, truth, events, capacity);

  // The head of the distribution comes out exact and in order. Measured with this
  // seed: the reported top 27 equal the true top 27 in order; the top 10 have error 0.
  const auto order = by_true_count(truth);
  for (std::size_t i = 0; i < 20; ++i) {
    INFO("rank " << i);
    CHECK(truth[order[i]] * capacity > events);  // all 20 are guaranteed keys
    CHECK(reported[i].key == order[i]);
  }
  for (std::size_t i = 0; i < 10; ++i) {
    CHECK(truth[order[i]] > truth[order[i + 1]]);  // a strict order to compare against
    CHECK(reported[i].count == truth[order[i]]);
    CHECK(reported[i].error == 0);
  }
  std::uint64_t max_error = 0;
  for (const auto& hk : reported) max_error = std::max(max_error, hk.error);
  INFO("max error " << max_error);
  CHECK(max_error <= events / capacity);  // measured: 2959
}

TEST_CASE("weighted records keep the space saving bounds", "[hot_keys]") {
  constexpr std::size_t keys = 10'000;
  constexpr std::size_t capacity = 64;
  const zipf_ranks zipf(keys, 1.2);
  std::mt19937_64 rng(7);
  hot_key_tracker<std::uint64_t> tracker({.capacity = capacity});
  std::vector<std::uint64_t> truth(keys, 0);
  std::uint64_t total = 0;
  for (int i = 0; i < 100'000; ++i) {
    const std::uint64_t key = zipf(rng);
    const std::uint64_t weight = 1 + rng() % 16;  // e.g. bytes or cost units
    truth[key] += weight;
    total += weight;
    tracker.record(key, weight);
  }
  CHECK(tracker.total() == total);
  check_space_saving_bounds(tracker.top(capacity), truth, total, capacity);
}

namespace {
/// Four threads one after another, each recording 250k Zipf(1.0) events into its own
/// stripe; thread t's ranks are shifted by t * shift (0: identically distributed).
std::vector<std::uint64_t> record_striped(hot_key_tracker<std::uint64_t>& tracker,
                                          std::uint64_t shift) {
  constexpr std::size_t keys = 100'000;
  const zipf_ranks zipf(keys, 1.0);
  std::vector<std::uint64_t> truth(keys, 0);
  for (std::uint64_t t = 0; t < 4; ++t) {
    std::thread([&, t] {
      std::mt19937_64 rng(1000 + t);
      for (int i = 0; i < 250'000; ++i) {
        const std::uint64_t key = (zipf(rng) + shift * t) % keys;
        ++truth[key];
        tracker.record(key);
      }
    }).join();
  }
  return truth;
}
}  // namespace

TEST_CASE("merged stripes keep the space saving bounds", "[hot_keys]") {
  // Threads that see the same traffic mix (the usual case behind a router): every
  // heavy key sits in every stripe with a small error, and the merge is exact at the
  // head. Measured: the reported top 16 equal the true top 16 in order.
  constexpr std::size_t capacity = 128;
  hot_key_tracker<std::uint64_t> tracker({.capacity = capacity, .stripes = 4});
  const auto truth = record_striped(tracker, 0);
  CHECK(tracker.total() == 1'000'000);
  const auto reported = tracker.top(4 * capacity);
  check_space_saving_bounds(reported, truth, 1'000'000, capacity);
  const auto order = by_true_count(truth);
  for (std::size_t i = 0; i < 10; ++i) CHECK(reported[i].key == order[i]);
}

TEST_CASE("merged stripes keep the bounds when threads see different heavy keys",
          "[hot_keys]") {
  // Adversarial for merging: thread t's hottest key is 5t, so most heavy keys are
  // missing from some stripe and inherit that stripe's smallest count as error. The
  // bounds still hold; the order of keys whose counts differ by less than their
  // errors does not (measured: keys 5 and 15 swap places, max error 6407 <= 7812).
  constexpr std::size_t capacity = 128;
  hot_key_tracker<std::uint64_t> tracker({.capacity = capacity, .stripes = 4});
  const auto truth = record_striped(tracker, 5);
  CHECK(tracker.total() == 1'000'000);
  const auto reported = tracker.top(4 * capacity);
  CHECK(reported.size() > capacity);  // the stripes monitor different keys
  check_space_saving_bounds(reported, truth, 1'000'000, capacity);
}

TEST_CASE("decay scales counts and keeps them over-estimates", "[hot_keys]") {
  hot_key_tracker<std::string> tracker({.capacity = 2, .stripes = 1});
  tracker.record("a", 100);
  tracker.record("b", 10);
  tracker.record("c", 1);  // replaces b: count 11, error 10, true 1
  tracker.decay(0.5);
  // a: 50 exactly. c: count ceil(5.5) = 6, lower bound floor(0.5) = 0, so error 6.
  CHECK(tracker.top(2) == std::vector<hot_key<std::string>>{{"a", 50, 0}, {"c", 6, 6}});
  CHECK(tracker.total() == 56);
  tracker.decay(1.0);  // no change
  CHECK(tracker.top(2) == std::vector<hot_key<std::string>>{{"a", 50, 0}, {"c", 6, 6}});
  CHECK(tracker.total() == 56);
  // The heap stays valid: c overtakes a after decay.
  tracker.record("c", 45);
  CHECK(tracker.top(1) == std::vector<hot_key<std::string>>{{"c", 51, 6}});
  // Counts round up and never vanish; lower bounds reach 0.
  for (int i = 0; i < 20; ++i) tracker.decay(0.5);
  const auto faded = tracker.top(2);
  REQUIRE(faded.size() == 2);
  const std::set<std::string> faded_keys{faded[0].key, faded[1].key};
  CHECK(faded_keys == std::set<std::string>{"a", "c"});
  for (const auto& hk : faded) {
    CHECK(hk.count == 1);
    CHECK(hk.error == 1);
  }
  CHECK(tracker.total() == 1);
}

TEST_CASE("decay lets recent heavy keys overtake old ones", "[hot_keys]") {
  hot_key_tracker<std::string> tracker({.capacity = 16});
  std::mt19937_64 rng(42);
  const auto noise = [&] { tracker.record(fmt::format("noise:{}", rng() % 100)); };
  for (int i = 0; i < 1000; ++i) {
    tracker.record("old-hot");
    noise();
  }
  for (int minute = 0; minute < 3; ++minute) {
    tracker.decay(0.5);  // old-hot: 1000 -> 125
    for (int i = 0; i < 100; ++i) {
      tracker.record("new-hot");
      noise();
    }
  }
  // new-hot: 100 * (1/4 + 1/2 + 1) = 175 > old-hot's 125 (true decayed counts).
  const auto top = tracker.top(2);
  REQUIRE(top.size() == 2);
  CHECK(top[0].key == "new-hot");
  CHECK(top[1].key == "old-hot");
  CHECK(top[1].min_count() <= 125);
  CHECK(top[1].count >= 125);
}

TEST_CASE("clear forgets every key and the total", "[hot_keys]") {
  hot_key_tracker<std::uint64_t> tracker({.capacity = 4, .stripes = 1});
  for (std::uint64_t k = 0; k < 10; ++k) tracker.record(k, k + 1);
  tracker.clear();
  CHECK(tracker.total() == 0);
  CHECK(tracker.top(10).empty());
  tracker.record(3);
  CHECK(tracker.top(10) == std::vector<hot_key<std::uint64_t>>{{3, 1, 0}});
}

TEST_CASE("record does not allocate in steady state", "[hot_keys]") {
  // Short strings fit the small-string buffer; integer keys never allocate. The
  // constructor reserves everything; record(), decay() and clear() do not allocate
  // afterwards (top() does: it returns a vector).
  std::vector<std::string> names;
  for (int i = 0; i < 1000; ++i) names.push_back(fmt::format("user:{}", i));
  hot_key_tracker<std::string> strings({.capacity = 64});
  hot_key_tracker<std::uint64_t> integers({.capacity = 64});
  const zipf_ranks zipf(names.size(), 1.0);
  std::mt19937_64 rng(3);
  const std::size_t probe = outgrow_test::allocations();
  names.reserve(2 * names.size());
  REQUIRE(outgrow_test::allocations() > probe);  // the counting operator new is in use
  const std::size_t before = outgrow_test::allocations();
  for (int i = 0; i < 100'000; ++i) {
    const std::size_t rank = zipf(rng);
    strings.record(names[rank]);
    integers.record(rank, 2);
  }
  strings.decay(0.5);
  integers.clear();
  integers.record(1);
  CHECK(outgrow_test::allocations() == before);
  CHECK(strings.total() == 50'000);
}

TEST_CASE("a weak user hasher still finds every key", "[hot_keys]") {
  // Identity-like hashes with zero low bits: the index spreads them (Fibonacci hashing).
  struct shifted_identity {
    std::uint64_t operator()(std::uint64_t k) const noexcept { return k << 32; }
  };
  hot_key_tracker<std::uint64_t, shifted_identity> tracker(
      {.capacity = 1024, .stripes = 1});
  for (std::uint64_t round = 1; round <= 3; ++round) {
    for (std::uint64_t k = 0; k < 1000; ++k) tracker.record(k * 4096, k + 1);
  }
  const auto top = tracker.top(1000);
  REQUIRE(top.size() == 1000);
  for (std::size_t i = 0; i < top.size(); ++i) {
    const std::uint64_t k = 999 - i;
    CHECK(top[i] == hot_key<std::uint64_t>{k * 4096, 3 * (k + 1), 0});
  }
}

TEST_CASE("hot_key_tracker records from many threads and finds the heavy hitter",
          "[hot_keys][stress]") {
  // 4 writers: "hot" 1 in 8 events, "shared:<0..255>" 3 in 8 (every thread records
  // them), "t<id>:<0..4095>" 4 in 8 (disjoint per thread); a reader calls top() and
  // total() meanwhile. Run under TSan by CI.
  constexpr std::size_t writers = 4;
  constexpr std::size_t events = 100'000;
  constexpr std::size_t capacity = 128;
  hot_key_tracker<std::string> tracker({.capacity = capacity});
  const std::string hot = "hot";
  std::vector<std::string> shared;
  for (int i = 0; i < 256; ++i) shared.push_back(fmt::format("shared:{}", i));
  std::vector<std::vector<std::string>> own(writers);
  for (std::size_t t = 0; t < writers; ++t) {
    for (int i = 0; i < 4096; ++i) own[t].push_back(fmt::format("t{}:{}", t, i));
  }

  std::array<std::uint64_t, writers> hot_true{};  // each written by its own thread
  std::atomic<std::size_t> finished{0};
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < writers; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937_64 rng(77 + t);
      for (std::size_t i = 0; i < events; ++i) {
        const std::uint64_t r = rng() % 8;
        if (r == 0) {
          tracker.record(hot);
          ++hot_true[t];
        } else if (r < 4) {
          tracker.record(shared[rng() % shared.size()]);
        } else {
          tracker.record(own[t][rng() % own[t].size()]);
        }
      }
      finished.fetch_add(1, std::memory_order_release);
    });
  }
  // Catch2 assertions are not thread-safe: the reader only counts what it saw.
  std::size_t reads = 0, total_went_down = 0, bad_entries = 0;
  std::thread reader([&] {
    std::uint64_t last_total = 0;
    while (finished.load(std::memory_order_acquire) < writers) {
      const std::uint64_t total = tracker.total();
      if (total < last_total) ++total_went_down;
      last_total = total;
      for (const auto& hk : tracker.top(3)) {
        if (hk.error > hk.count || hk.count == 0) ++bad_entries;
      }
      ++reads;
    }
  });
  for (auto& th : pool) th.join();
  reader.join();

  const std::uint64_t total = writers * events;
  const std::uint64_t hot_count =
      std::accumulate(hot_true.begin(), hot_true.end(), std::uint64_t{0});
  CHECK(tracker.total() == total);
  CHECK(total_went_down == 0);
  CHECK(bad_entries == 0);
  INFO("reader snapshots: " << reads);
  const auto all = tracker.top(std::numeric_limits<std::size_t>::max());
  std::set<std::string> distinct;
  for (const auto& hk : all) distinct.insert(hk.key);
  CHECK(distinct.size() == all.size());
  REQUIRE(!all.empty());
  CHECK(all[0].key == hot);
  CHECK(all[0].min_count() <= hot_count);
  CHECK(hot_count <= all[0].count);
  CHECK(all[0].error * capacity <= total);
}

TEST_CASE("shard_load_counters report counts peak and hot shards", "[hot_keys][shards]") {
  shard_load_counters shards(4);
  CHECK(shards.size() == 4);
  for (int i = 0; i < 10; ++i) shards.record(0);
  shards.record(1, 20);
  shards.record(2, 60);
  shards.record(3, 10);
  const shard_load_report r = shards.report();
  CHECK(r.counts == std::vector<std::uint64_t>{10, 20, 60, 10});
  CHECK(r.shards() == 4);
  CHECK(r.total() == 100);
  CHECK(r.mean() == 25.0);
  CHECK(r.peak_shard() == 2);
  CHECK(r.peak() == 60);
  CHECK(r.peak_to_mean() == 2.4);
  CHECK(r.hot_shards() == std::vector<std::size_t>{2});        // > 37.5
  CHECK(r.hot_shards(0.5) == std::vector<std::size_t>{1, 2});  // > 12.5
  CHECK(r.hot_shards(3.0).empty());                            // > 75
  CHECK(r.out_of_range == 0);
  CHECK(fmt::format("{}", r) ==
        "shard_load_report{shards=4, total=100, mean=25, peak_shard=2, peak=60, "
        "peak_to_mean=2.4, hot_shards=[2], out_of_range=0}");
  CHECK_THROWS_AS(r.hot_shards(-1.0), outgrow::config_error);
  CHECK_THROWS_WITH(r.hot_shards(-1.0),
                    "shard_load_report: hot_shards(threshold) must be in [0, inf), got -1");
}

TEST_CASE("shard_load_counters count out of range shards instead of throwing",
          "[hot_keys][shards]") {
  shard_load_counters shards(3);
  static_assert(noexcept(shards.record(0)));
  CHECK_NOTHROW(shards.record(3));
  CHECK_NOTHROW(shards.record(std::numeric_limits<std::size_t>::max(), 4));
  shards.record(1, 2);
  CHECK(shards.out_of_range() == 5);
  const auto r = shards.report();
  CHECK(r.out_of_range == 5);
  CHECK(r.total() == 2);  // out-of-range events are not in the total
  CHECK(fmt::format("{}", r) ==
        "shard_load_report{shards=3, total=2, mean=0.6667, peak_shard=1, peak=2, "
        "peak_to_mean=3, hot_shards=[1], out_of_range=5}");
}

TEST_CASE("an idle or reset report has no peak and no hot shard", "[hot_keys][shards]") {
  shard_load_counters shards(3);
  CHECK(fmt::format("{}", shards.report()) ==
        "shard_load_report{shards=3, total=0, mean=0, peak_shard=0, peak=0, "
        "peak_to_mean=0, hot_shards=[], out_of_range=0}");
  shards.record(1, 9);
  shards.record(7);
  shards.reset();
  CHECK(shards.report().counts == std::vector<std::uint64_t>{0, 0, 0});
  CHECK(shards.out_of_range() == 0);
  // Ties: the lowest index is the peak; perfect balance has no hot shard.
  for (std::size_t s = 0; s < 3; ++s) shards.record(s, 5);
  CHECK(shards.report().peak_shard() == 0);
  CHECK(shards.report().peak_to_mean() == 1.0);
  CHECK(shards.report().hot_shards(1.0).empty());
  CHECK(shard_load_report{}.peak_to_mean() == 0.0);
  CHECK(shard_load_report{}.hot_shards().empty());
}

TEST_CASE("shard_load_counters resize to a new topology and reset", "[hot_keys][shards]") {
  shard_load_counters shards(2);
  shards.record(0, 3);
  shards.record(5);
  shards.resize(4);
  CHECK(shards.size() == 4);
  CHECK(shards.report().counts == std::vector<std::uint64_t>{0, 0, 0, 0});
  CHECK(shards.out_of_range() == 0);
  shards.record(3, 2);
  CHECK(shards.report().counts == std::vector<std::uint64_t>{0, 0, 0, 2});
  // A rejected resize changes nothing.
  CHECK_THROWS_WITH(shards.resize(0),
                    "shard_load_counters: shards must be in [1, 1000000], got 0");
  CHECK(shards.size() == 4);
  CHECK(shards.report().counts == std::vector<std::uint64_t>{0, 0, 0, 2});
}

TEST_CASE("shard_load_counters count exactly across threads",
          "[hot_keys][shards][stress]") {
  constexpr std::size_t threads = 4;
  constexpr std::size_t adds = 50'000;
  shard_load_counters shards(8);
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&shards, t] {
      for (std::size_t i = 0; i < adds; ++i) shards.record((i + t) % 9);  // 9: out of range
    });
  }
  for (auto& th : pool) th.join();
  const auto r = shards.report();
  CHECK(r.total() + r.out_of_range == threads * adds);
  std::uint64_t expected_out = 0;
  for (std::size_t t = 0; t < threads; ++t) {
    for (std::size_t i = 0; i < adds; ++i) {
      if ((i + t) % 9 == 8) ++expected_out;
    }
  }
  CHECK(r.out_of_range == expected_out);
}

TEST_CASE("bad configuration throws config_error naming field range and value",
          "[hot_keys][config]") {
  using tracker = hot_key_tracker<std::string>;
  CHECK_THROWS_AS(tracker({.capacity = 0}), outgrow::config_error);
  CHECK_THROWS_WITH(tracker({.capacity = 0}),
                    "hot_key_tracker: capacity must be in [1, 1000000], got 0");
  CHECK_THROWS_WITH(tracker({.capacity = 1'000'001}),
                    "hot_key_tracker: capacity must be in [1, 1000000], got 1000001");
  CHECK_THROWS_WITH(tracker({.stripes = 0}),
                    "hot_key_tracker: stripes must be in [1, 64], got 0");
  CHECK_THROWS_WITH(tracker({.stripes = 65}),
                    "hot_key_tracker: stripes must be in [1, 64], got 65");
  CHECK_NOTHROW(tracker({.capacity = 1, .stripes = 1}));

  tracker t({.capacity = 4});
  CHECK_THROWS_AS(t.decay(0.0), outgrow::config_error);
  CHECK_THROWS_WITH(t.decay(0.0),
                    "hot_key_tracker: decay(factor) must be in (0, 1], got 0");
  CHECK_THROWS_WITH(t.decay(1.5),
                    "hot_key_tracker: decay(factor) must be in (0, 1], got 1.5");
  CHECK_THROWS_AS(t.decay(std::nan("")), outgrow::config_error);

  CHECK_THROWS_AS(shard_load_counters(0), outgrow::config_error);
  CHECK_THROWS_WITH(shard_load_counters(0),
                    "shard_load_counters: shards must be in [1, 1000000], got 0");
  CHECK_THROWS_WITH(shard_load_counters(1'000'001),
                    "shard_load_counters: shards must be in [1, 1000000], got 1000001");
}
