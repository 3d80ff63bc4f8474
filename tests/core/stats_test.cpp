#include <outgrow/core/metrics.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

using namespace std::chrono_literals;

namespace {
struct lookup_stats {
  static constexpr std::string_view metrics_name = "lookup_stats";
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::chrono::milliseconds load_time{0};
  [[nodiscard]] double hit_rate() const { return outgrow::ratio(hits, hits + misses); }
  template <class F>
  void for_each_metric(F&& f) const {
    f("hits", hits);
    f("misses", misses);
    f("hit_rate", hit_rate());
    f("load_time", load_time);
  }
};

struct unnamed_stats {
  int depth = 3;
  template <class F>
  void for_each_metric(F&& f) const {
    f("depth", depth);
  }
};

struct not_a_snapshot {
  int depth = 3;
};
}  // namespace

static_assert(outgrow::metrics_snapshot<lookup_stats>);
static_assert(!outgrow::metrics_snapshot<not_a_snapshot>);

TEST_CASE("snapshots print through fmt as name and fields", "[stats]") {
  const lookup_stats s{.hits = 990, .misses = 10, .load_time = 12ms};
  CHECK(fmt::format("{}", s) ==
        "lookup_stats{hits=990, misses=10, hit_rate=0.99, load_time=12ms}");
  CHECK(fmt::format("{}", unnamed_stats{}) == "{depth=3}");
  CHECK(fmt::format("{}", lookup_stats{}) ==
        "lookup_stats{hits=0, misses=0, hit_rate=0, load_time=0ms}");
}

TEST_CASE("ratio is 0 for an empty denominator", "[stats]") {
  CHECK(outgrow::ratio(0, 0) == 0.0);
  CHECK(outgrow::ratio(1, 4) == 0.25);
  static_assert(outgrow::ratio(3, 4) == 0.75);
}

TEST_CASE("counter counts exactly across threads", "[stats][stress]") {
  outgrow::counter c;
  constexpr int threads = 4;
  constexpr int adds = 50'000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&c] {
      for (int i = 0; i < adds; ++i) c.add();
    });
  }
  for (auto& t : pool) t.join();
  CHECK(c.load() == std::uint64_t{threads} * adds);
  c.add(5);
  CHECK(c.load() == std::uint64_t{threads} * adds + 5);
  c.reset();
  CHECK(c.load() == 0);
}
