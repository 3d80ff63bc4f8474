#include <outgrow/core/snapshot.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "catch.hpp"

namespace {
struct table {
  std::uint64_t generation;
  std::vector<std::uint64_t> cells;  // every cell == generation: a torn read shows
};
std::shared_ptr<const table> make_table(std::uint64_t g) {
  return std::make_shared<const table>(table{g, std::vector<std::uint64_t>(64, g)});
}
}  // namespace

TEST_CASE("published snapshots are seen after publish", "[snapshot]") {
  outgrow::published<table> current(make_table(1));
  CHECK(current.local().generation == 1);
  CHECK(current.version() == 0);
  auto pinned = current.load();
  current.publish(make_table(2));
  CHECK(current.version() == 1);
  CHECK(current.local().generation == 2);
  CHECK(current.load()->generation == 2);
  CHECK(pinned->generation == 1);  // a pinned snapshot outlives the publish
}

TEST_CASE("two published objects of one type do not share cache slots wrongly",
          "[snapshot]") {
  outgrow::published<table> a(make_table(10));
  outgrow::published<table> b(make_table(20));
  for (int i = 0; i < 3; ++i) {
    CHECK(a.local().generation == 10);
    CHECK(b.local().generation == 20);
  }
  b.publish(make_table(21));
  CHECK(a.local().generation == 10);
  CHECK(b.local().generation == 21);
}

TEST_CASE("readers never see a torn or stale-after-version snapshot",
          "[snapshot][stress]") {
  outgrow::published<table> current(make_table(0));
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0};
  std::atomic<int> went_back{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      std::uint64_t last = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const table& snap = current.local();
        for (auto c : snap.cells) {
          if (c != snap.generation) torn.fetch_add(1);
        }
        if (snap.generation < last) went_back.fetch_add(1);
        last = snap.generation;
      }
    });
  }
  for (std::uint64_t g = 1; g <= 2000; ++g) current.publish(make_table(g));
  stop = true;
  for (auto& r : readers) r.join();
  CHECK(torn.load() == 0);
  CHECK(went_back.load() == 0);
  CHECK(current.local().generation == 2000);
}

TEST_CASE("a null snapshot is rejected instead of dereferenced later", "[snapshot]") {
  CHECK_THROWS_WITH(outgrow::published<int>(nullptr),
                    "published: snapshot must not be null, got nullptr");
  outgrow::published<int> p(std::make_shared<const int>(7));
  CHECK_THROWS_AS(p.publish(nullptr), std::invalid_argument);
  CHECK(p.local() == 7);  // the current snapshot stays
  CHECK(p.version() == 0);
}
