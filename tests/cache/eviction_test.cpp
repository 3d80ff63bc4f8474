#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/eviction.hpp>
#include <outgrow/core/error.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cache_traces.hpp"
#include "catch.hpp"

namespace {

// The smallest conforming policy, exactly as documented in eviction.hpp.
struct fifo {
  struct hook {
    hook* newer = nullptr;
    hook* older = nullptr;
  };
  hook* newest = nullptr;
  hook* oldest = nullptr;
  explicit fifo(std::size_t /*capacity*/) {}
  void on_insert(hook& h, std::uint64_t, std::size_t) noexcept {
    h.newer = nullptr;
    h.older = newest;
    (newest ? newest->newer : oldest) = &h;
    newest = &h;
  }
  void on_access(hook&, std::uint64_t) noexcept {}
  void on_update(hook&, std::uint64_t, std::size_t) noexcept {}
  void on_erase(hook& h) noexcept {
    (h.newer ? h.newer->older : newest) = h.older;
    (h.older ? h.older->newer : oldest) = h.newer;
  }
  hook* evict() noexcept {
    hook* v = oldest;
    on_erase(*v);
    return v;
  }
  void clear() noexcept { newest = oldest = nullptr; }
};
static_assert(outgrow::eviction_policy<fifo>);
static_assert(!outgrow::reserving_eviction_policy<fifo>);

static_assert(outgrow::eviction_policy<outgrow::lru>);
static_assert(outgrow::eviction_policy<outgrow::sieve>);
static_assert(outgrow::eviction_policy<outgrow::s3_fifo>);
static_assert(outgrow::eviction_policy<outgrow::w_tiny_lfu>);
static_assert(outgrow::reserving_eviction_policy<outgrow::s3_fifo>);
static_assert(outgrow::reserving_eviction_policy<outgrow::w_tiny_lfu>);

struct not_a_policy {
  struct hook {};
  explicit not_a_policy(std::size_t) {}
  void on_insert(hook&, std::uint64_t, std::size_t) {}
  // no on_access, on_update, on_erase, evict, clear
};
static_assert(!outgrow::eviction_policy<not_a_policy>);

/// Distinct, well-spread hashes for standalone policy tests.
std::uint64_t h(std::uint64_t i) {
  return outgrow::hash_mix(i, 0);
}

}  // namespace

TEST_CASE("the documented smallest policy works inside a cache", "[eviction][fifo]") {
  outgrow::cache<int, int, fifo> c({.capacity = 3});
  c.put(1, 10);
  c.put(2, 20);
  c.put(3, 30);
  CHECK(c.get(1) == 10);  // FIFO ignores the hit
  c.put(4, 40);
  CHECK_FALSE(c.contains(1));
  CHECK(c.contains(2));
  CHECK(c.contains(4));
  CHECK(c.erase(3));
  c.put(5, 50);
  c.put(6, 60);
  CHECK_FALSE(c.contains(2));
  CHECK(c.size() == 3);
  CHECK(c.metrics().evictions == 2);
}

TEST_CASE("intrusive list keeps order through push remove and move", "[eviction][detail]") {
  struct item : outgrow::detail::list_hook {
    int id = 0;
  };
  std::array<item, 4> items;
  for (int i = 0; i < 4; ++i) items[static_cast<std::size_t>(i)].id = i;
  outgrow::detail::intrusive_list<item> list;
  CHECK(list.empty());
  CHECK(list.pop_back() == nullptr);
  for (auto& it : items) list.push_front(it);  // front: 3 2 1 0 :back
  CHECK(list.size() == 4);
  CHECK(list.front()->id == 3);
  CHECK(list.back()->id == 0);
  list.move_to_front(items[0]);  // 0 3 2 1
  CHECK(list.front()->id == 0);
  CHECK(list.back()->id == 1);
  list.remove(items[2]);  // 0 3 1
  CHECK(decltype(list)::older(items[3])->id == 1);
  CHECK(decltype(list)::newer(items[3])->id == 0);
  list.push_back(items[2]);  // 0 3 1 2
  CHECK(list.back()->id == 2);
  CHECK(list.pop_back()->id == 2);
  CHECK(list.pop_back()->id == 1);
  CHECK(list.pop_back()->id == 3);
  CHECK(list.pop_back()->id == 0);
  CHECK(list.empty());
  CHECK(list.size() == 0);
}

TEST_CASE("lru evicts the least recently used entry", "[eviction][lru]") {
  outgrow::lru p(3);
  std::array<outgrow::lru::hook, 4> e;
  for (std::size_t i = 0; i < 3; ++i) p.on_insert(e[i], h(i), 1);
  CHECK(p.peek_victim() == &e[0]);
  p.on_access(e[0], h(0));  // order (old -> new): 1 2 0
  CHECK(p.evict() == &e[1]);
  p.on_insert(e[3], h(3), 1);  // 2 0 3
  p.on_update(e[2], h(2), 1);  // 0 3 2
  p.on_erase(e[0]);            // 3 2
  CHECK(p.evict() == &e[3]);
  CHECK(p.evict() == &e[2]);
  CHECK(p.size() == 0);
  CHECK(p.evict() == nullptr);
}

TEST_CASE("sieve hand skips visited entries and clears their bits", "[eviction][sieve]") {
  outgrow::sieve p(4);
  std::array<outgrow::sieve::hook, 6> e;  // a=0 b=1 c=2 d=3 e=4 f=5
  for (std::size_t i = 0; i < 4; ++i) p.on_insert(e[i], h(i), 1);
  CHECK(p.hand() == nullptr);
  p.on_access(e[0], h(0));
  p.on_access(e[1], h(1));
  // The hand starts at the oldest (a): a and b are visited (cleared, skipped), c goes.
  CHECK(p.evict() == &e[2]);
  CHECK_FALSE(e[0].visited);
  CHECK_FALSE(e[1].visited);
  CHECK(p.hand() == &e[3]);  // the hand stays where it stopped: at d, newer than c
  p.on_insert(e[4], h(4), 1);
  CHECK(p.evict() == &e[3]);  // d was not visited
  CHECK(p.hand() == &e[4]);
  p.on_access(e[4], h(4));
  // From e (visited: cleared) the hand wraps to the oldest, a, not visited any more.
  CHECK(p.evict() == &e[0]);
  CHECK_FALSE(e[4].visited);
  CHECK(p.hand() == &e[1]);
  // Erasing the entry under the hand moves the hand to the next newer entry.
  p.on_insert(e[5], h(5), 1);  // queue (old -> new): b e f
  p.on_erase(e[1]);
  CHECK(p.hand() == &e[4]);
  CHECK(p.size() == 2);
  CHECK(p.evict() == &e[4]);
  CHECK(p.evict() == &e[5]);
  CHECK(p.evict() == nullptr);
}

TEST_CASE("sieve keeps hit entries in place on a hit", "[eviction][sieve]") {
  // Hits only set a bit; a one-hit-wonder stream passes the hot entries by.
  outgrow::cache<int, int, outgrow::sieve> c({.capacity = 10});
  for (int k = 0; k < 5; ++k) c.put(k, k);
  for (int round = 0; round < 20; ++round) {
    for (int k = 0; k < 5; ++k) REQUIRE(c.get(k) == k);
    for (int k = 0; k < 7; ++k) c.put(1000 + round * 10 + k, 0);  // scanned once
  }
  for (int k = 0; k < 5; ++k) CHECK(c.contains(k));
}

TEST_CASE("s3_fifo sends unused entries from the small queue to the ghost queue",
          "[eviction][s3_fifo]") {
  outgrow::s3_fifo p(10);  // small queue: 1
  p.reserve(16);
  CHECK(p.small_target() == 1);
  std::array<outgrow::s3_fifo::hook, 4> e;
  p.on_insert(e[0], h(0), 1);
  p.on_insert(e[1], h(1), 1);
  CHECK(p.small_weight() == 2);
  CHECK(p.main_weight() == 0);
  // Small is over its share and nobody was hit: the oldest leaves, into the ghost.
  CHECK(p.evict() == &e[0]);
  CHECK(p.in_ghost(h(0)));
  CHECK_FALSE(p.in_ghost(h(1)));
  // Requested again soon: the ghost hit admits it straight into main.
  p.on_insert(e[0], h(0), 1);
  CHECK(e[0].in_main);
  CHECK(p.main_weight() == 1);
  CHECK_FALSE(p.in_ghost(h(0)));  // a ghost is used once
}

TEST_CASE("s3_fifo promotes entries hit in the small queue to main",
          "[eviction][s3_fifo]") {
  // The paper's description: one hit while in small is enough.
  outgrow::s3_fifo p(10, {.move_to_main_threshold = 1});
  p.reserve(16);
  std::array<outgrow::s3_fifo::hook, 3> e;
  p.on_insert(e[0], h(0), 1);
  p.on_insert(e[1], h(1), 1);
  p.on_access(e[0], h(0));
  // e0 was hit: it moves to main (its counter reset) and e1 is evicted instead.
  CHECK(p.evict() == &e[1]);
  CHECK(e[0].in_main);
  CHECK(e[0].freq == 0);
  CHECK(p.in_ghost(h(1)));
}

TEST_CASE("s3_fifo moves to main at 2 hits by default as libCacheSim does",
          "[eviction][s3_fifo]") {
  outgrow::s3_fifo p(10);
  CHECK(p.config().move_to_main_threshold == 2);
  p.reserve(16);
  std::array<outgrow::s3_fifo::hook, 3> e;
  p.on_insert(e[0], h(0), 1);
  p.on_insert(e[1], h(1), 1);
  p.on_insert(e[2], h(2), 1);
  p.on_access(e[0], h(0));  // one hit: not enough
  p.on_access(e[1], h(1));
  p.on_access(e[1], h(1));  // two hits: moves to main
  CHECK(p.evict() == &e[0]);
  CHECK_FALSE(e[0].in_main);
  CHECK(p.in_ghost(h(0)));
  CHECK(p.evict() == &e[2]);  // e1 went to main on the way
  CHECK(e[1].in_main);
}

TEST_CASE("s3_fifo and w_tiny_lfu reject configurations out of range",
          "[eviction][config]") {
  CHECK_THROWS_AS(outgrow::s3_fifo(10, {.move_to_main_threshold = 0}),
                  outgrow::config_error);
  CHECK_THROWS_AS(outgrow::s3_fifo(10, {.move_to_main_threshold = 4}),
                  outgrow::config_error);
  CHECK_THROWS_AS(outgrow::s3_fifo(10, {.small_percent = 0}), outgrow::config_error);
  CHECK_THROWS_AS(outgrow::s3_fifo(10, {.small_percent = 51}), outgrow::config_error);
  CHECK_THROWS_AS(outgrow::s3_fifo(10, {.ghost_percent = 201}), outgrow::config_error);
  CHECK_THROWS_AS(outgrow::w_tiny_lfu(10, {.window_percent = 0}), outgrow::config_error);
  CHECK_THROWS_AS(outgrow::w_tiny_lfu(10, {.window_percent = 100}), outgrow::config_error);
  try {
    outgrow::s3_fifo(10, {.move_to_main_threshold = 9});
    FAIL("no config_error");
  } catch (const outgrow::config_error& e) {
    const std::string what = e.what();
    CHECK(what.find("s3_fifo") != std::string::npos);
    CHECK(what.find("move_to_main_threshold") != std::string::npos);
    CHECK(what.find('9') != std::string::npos);
  }
  // Through the cache: the policy's configuration is its second argument.
  outgrow::cache<int, int, outgrow::s3_fifo> c({.capacity = 100},
                                               {.move_to_main_threshold = 1});
  CHECK(c.policy().config().move_to_main_threshold == 1);
  CHECK_THROWS_AS((outgrow::cache<int, int, outgrow::s3_fifo>({.capacity = 100},
                                                              {.small_percent = 60})),
                  outgrow::config_error);
}

TEST_CASE("w_tiny_lfu moves its window toward recency when recency pays",
          "[eviction][w_tiny_lfu]") {
  // The LRU stack model: recently used keys come back, counts predict little. The
  // tuner's miniature simulations find a large window better and the cache follows.
  const auto t = outgrow_test::stack_trace({.requests = 200'000});
  outgrow::cache<std::uint64_t, int> adaptive({.capacity = 2'000});
  outgrow::cache<std::uint64_t, int> fixed({.capacity = 2'000}, {.adaptive_window = false});
  const double a = outgrow_test::simulate(adaptive, t);
  const double f = outgrow_test::simulate(fixed, t);
  CHECK(fixed.policy().window_max() == 20);
  CHECK(adaptive.policy().window_max() >= 1'000);
  CHECK(a > f + 0.10);
  // On Zipf (frequency only) it keeps a small window.
  const auto z =
      outgrow_test::zipf_trace({.keys = 100'000, .alpha = 0.9, .requests = 300'000});
  outgrow::cache<std::uint64_t, int> zipf_cache({.capacity = 2'000});
  outgrow_test::simulate(zipf_cache, z);
  CHECK(zipf_cache.policy().window_max() <= 500);
  // Entries keep adding up across the moves.
  const auto& p = adaptive.policy();
  CHECK(p.window_weight() + p.probation_weight() + p.protected_weight() == adaptive.size());
  CHECK(p.protected_weight() <= p.protected_max());
}

TEST_CASE("s3_fifo main queue reinserts entries while their counter lasts",
          "[eviction][s3_fifo]") {
  outgrow::s3_fifo p(10);
  p.reserve(16);
  std::array<outgrow::s3_fifo::hook, 3> e;
  std::array<outgrow::s3_fifo::hook, 3> filler;
  // Put three entries into main through the ghost queue: main is then (old -> new)
  // e0 e1 e2.
  for (std::size_t i = 0; i < 3; ++i) {
    p.on_insert(e[i], h(i), 1);
    p.on_insert(filler[i], h(50 + i), 1);  // small is over its share of 1
    REQUIRE(p.evict() == &e[i]);           // e[i] was not hit: to the ghost queue
    p.on_insert(e[i], h(i), 1);            // back soon: straight into main
    REQUIRE(e[i].in_main);
    p.on_erase(filler[i]);
  }
  for (int k = 0; k < 5; ++k) p.on_access(e[0], h(0));  // saturates at 3
  CHECK(e[0].freq == outgrow::s3_fifo::max_freq);
  p.on_access(e[1], h(1));
  // Oldest first: e0 has 3 (reinserted, 2), e1 has 1 (reinserted, 0), e2 has 0: evicted.
  CHECK(p.evict() == &e[2]);
  CHECK(e[0].freq == 2);
  CHECK(e[1].freq == 0);
  CHECK(p.evict() == &e[1]);
  CHECK(p.evict() == &e[0]);
  CHECK(p.size() == 0);
}

TEST_CASE("ghost queue remembers only the most recent insertions", "[eviction][detail]") {
  outgrow::detail::ghost_queue g;
  g.reserve(64);
  g.set_capacity(5);
  for (std::uint64_t i = 0; i < 10; ++i) g.insert(h(i));
  for (std::uint64_t i = 0; i < 5; ++i) CHECK_FALSE(g.contains(h(i)));
  for (std::uint64_t i = 5; i < 10; ++i) CHECK(g.contains(h(i)));
  CHECK(g.take(h(7)));
  CHECK_FALSE(g.contains(h(7)));
  CHECK_FALSE(g.take(h(7)));
  g.reserve(1024);  // growing keeps the live ghosts
  CHECK(g.contains(h(9)));
  CHECK_FALSE(g.contains(h(4)));
  g.clear();
  CHECK_FALSE(g.contains(h(9)));
}

TEST_CASE("frequency sketch counts saturates at 15 and halves with age",
          "[eviction][w_tiny_lfu][sketch]") {
  outgrow::detail::frequency_sketch s;
  CHECK(s.frequency(h(1)) == 0);
  s.increment(h(1));  // not initialized: ignored
  CHECK_FALSE(s.initialized());
  s.ensure_capacity(64, 1, 10);
  CHECK(s.initialized());
  CHECK(s.sample_size() == 640);
  for (int i = 0; i < 7; ++i) s.increment(h(1));
  CHECK(s.frequency(h(1)) == 7);
  for (int i = 0; i < 20; ++i) s.increment(h(1));
  CHECK(s.frequency(h(1)) == 15);  // 4-bit counters saturate
  CHECK(s.additions() == 15);      // a saturated key is not counted further
  s.increment(h(2));
  CHECK(s.frequency(h(2)) == 1);
  s.reset();
  CHECK(s.frequency(h(1)) == 7);
  CHECK(s.frequency(h(2)) == 0);
  CHECK(s.additions() == 8);
  // Aging happens by itself after sample_size counted occurrences.
  outgrow::detail::frequency_sketch aging;
  aging.ensure_capacity(16, 1, 10);  // sample 160
  for (int i = 0; i < 12; ++i) aging.increment(h(7));
  CHECK(aging.frequency(h(7)) == 12);
  // Other keys until the halving (additions drop from 159 to 80).
  bool halved = false;
  for (std::uint64_t other = 1000; other < 2000 && !halved; ++other) {
    const std::size_t before = aging.additions();
    aging.increment(h(other));
    halved = aging.additions() < before;
  }
  REQUIRE(halved);
  CHECK(aging.additions() == 80);
  CHECK(aging.frequency(h(7)) == 6);
}

TEST_CASE("frequency sketch rarely over-estimates unseen keys", "[eviction][sketch]") {
  outgrow::detail::frequency_sketch s;
  s.ensure_capacity(1000, 2, 20);
  for (std::uint64_t i = 0; i < 1000; ++i) {
    for (int n = 0; n < 3; ++n) s.increment(h(i));
  }
  std::size_t wrong = 0;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    REQUIRE(s.frequency(h(i)) >= 3);  // never under-estimates before aging
    wrong += s.frequency(h(100'000 + i)) != 0 ? 1U : 0U;
  }
  CHECK(wrong < 20);  // conservative update + 2 words per entry: < 2 % collisions
}

TEST_CASE("w_tiny_lfu segments follow the configured shares", "[eviction][w_tiny_lfu]") {
  const outgrow::w_tiny_lfu p(1000);
  CHECK(p.window_max() == 10);
  CHECK(p.protected_max() == 792);  // 80 % of the 990 main entries
  const outgrow::w_tiny_lfu tiny(1);
  CHECK(tiny.window_max() == 1);
  CHECK(tiny.protected_max() == 0);
  const outgrow::w_tiny_lfu huge(outgrow::cache<int, int>::max_capacity);
  CHECK(huge.window_max() > 0);
  CHECK(huge.window_max() < huge.capacity() / 50);
}

TEST_CASE("w_tiny_lfu admits a candidate only if it is more frequent than the victim",
          "[eviction][w_tiny_lfu]") {
  using segment = outgrow::w_tiny_lfu::segment;
  outgrow::w_tiny_lfu p(100);  // window 1, main 99
  p.reserve(128);
  std::vector<outgrow::w_tiny_lfu::hook> e(110);
  // Fill the cache: entries pass through the window into probation while there is room.
  for (std::size_t i = 0; i < 100; ++i) p.on_insert(e[i], h(i), 1);
  CHECK(p.size() == 100);
  CHECK(p.window_weight() == 1);
  CHECK(p.probation_weight() == 99);
  CHECK(outgrow::w_tiny_lfu::segment_of(e[0]) == segment::probation);
  // A hit in probation promotes to protected.
  p.on_access(e[0], h(0));
  CHECK(outgrow::w_tiny_lfu::segment_of(e[0]) == segment::protected_);
  CHECK(p.protected_weight() == 1);
  // Make the probation victim (e[1], the oldest) popular.
  for (int n = 0; n < 4; ++n) p.on_access(e[1], h(1));  // e1 -> protected
  // New key 100, seen once: when the cache is over capacity, the window's candidate
  // (e[99]) competes with probation's LRU entry (e[2], seen once): a tie rejects it.
  p.on_insert(e[100], h(100), 1);
  CHECK(p.evict() == &e[99]);
  CHECK(p.size() == 100);
  // A candidate seen more often than the victim is admitted; the victim goes.
  p.on_erase(e[100]);  // window empty, 99 entries
  for (int n = 0; n < 3; ++n) {
    p.on_insert(e[101], h(101), 1);  // counts one occurrence each time
    p.on_erase(e[101]);
  }
  p.on_insert(e[101], h(101), 1);
  CHECK(p.frequency(h(101)) == 4);
  p.on_insert(e[102], h(102), 1);  // window: 102 101; over capacity
  CHECK(p.evict() == &e[2]);       // candidate e[101] (4) beats e[2] (1)
  CHECK(outgrow::w_tiny_lfu::segment_of(e[101]) == segment::probation);
  CHECK(p.size() == 100);
  CHECK(p.window_weight() + p.probation_weight() + p.protected_weight() == 100);
}

TEST_CASE("w_tiny_lfu counts a burst of hits in the window once",
          "[eviction][w_tiny_lfu]") {
  outgrow::w_tiny_lfu p(100);  // window 1
  p.reserve(128);
  std::vector<outgrow::w_tiny_lfu::hook> e(3);
  p.on_insert(e[0], h(0), 1);
  for (int n = 0; n < 5; ++n) p.on_access(e[0], h(0));  // a burst while in the window
  CHECK(p.frequency(h(0)) == 1);
  p.on_insert(e[1], h(1), 1);  // e[0] moves on to probation (the cache has room)
  CHECK(outgrow::w_tiny_lfu::segment_of(e[0]) == outgrow::w_tiny_lfu::segment::probation);
  p.on_access(e[0], h(0));  // a reuse after the window: counted
  CHECK(p.frequency(h(0)) == 2);
}

TEST_CASE("w_tiny_lfu demotes protected overflow to probation", "[eviction][w_tiny_lfu]") {
  using segment = outgrow::w_tiny_lfu::segment;
  outgrow::w_tiny_lfu p(10);  // window 1, main 9, protected 7
  p.reserve(16);
  CHECK(p.protected_max() == 7);
  std::vector<outgrow::w_tiny_lfu::hook> e(10);
  for (std::size_t i = 0; i < 10; ++i) p.on_insert(e[i], h(i), 1);
  for (std::size_t i = 0; i < 8; ++i) p.on_access(e[i], h(i));  // 8 promotions
  CHECK(p.protected_weight() == 7);
  CHECK(outgrow::w_tiny_lfu::segment_of(e[0]) == segment::probation);  // demoted, LRU
  CHECK(outgrow::w_tiny_lfu::segment_of(e[7]) == segment::protected_);
  // Weights follow updates.
  p.on_update(e[7], h(7), 3);
  CHECK(p.protected_weight() <= 7);
  CHECK(p.window_weight() + p.probation_weight() + p.protected_weight() == 12);
}

TEST_CASE("w_tiny_lfu keeps a hot set through a one-time scan that flushes lru",
          "[eviction][w_tiny_lfu][lru]") {
  outgrow::cache<int, int, outgrow::w_tiny_lfu> modern({.capacity = 100});
  outgrow::cache<int, int, outgrow::lru> classic({.capacity = 100});
  for (int round = 0; round < 10; ++round) {
    for (int k = 0; k < 50; ++k) {
      if (!modern.get(k)) modern.put(k, k);
      if (!classic.get(k)) classic.put(k, k);
    }
  }
  for (int k = 1000; k < 11'000; ++k) {  // a scan of 10,000 keys, each seen once
    if (!modern.get(k)) modern.put(k, k);
    if (!classic.get(k)) classic.put(k, k);
  }
  int modern_kept = 0;
  int classic_kept = 0;
  for (int k = 0; k < 50; ++k) {
    modern_kept += modern.contains(k) ? 1 : 0;
    classic_kept += classic.contains(k) ? 1 : 0;
  }
  CHECK(modern_kept >= 45);
  CHECK(classic_kept == 0);
}

TEST_CASE("w_tiny_lfu admits a weighted candidate that does not fit the window",
          "[eviction][w_tiny_lfu]") {
  // An entry heavier than the window passes through it like any other.
  auto weigh = [](const int&, const std::string& v) { return v.size(); };
  outgrow::cache<int, std::string, outgrow::w_tiny_lfu, decltype(weigh)> c(
      {.capacity = 100}, outgrow::steady_clock_source{}, weigh);
  CHECK(c.put(1, std::string(50, 'x')));
  CHECK(c.put(2, std::string(40, 'y')));
  CHECK(c.weight() == 90);
  CHECK(c.put(3, std::string(30, 'z')));  // over capacity: something is evicted
  CHECK(c.weight() <= 100);
  CHECK(c.policy().window_weight() + c.policy().probation_weight() +
            c.policy().protected_weight() ==
        c.weight());
}
