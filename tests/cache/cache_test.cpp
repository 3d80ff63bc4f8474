#include <outgrow/cache/cache.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::cache;
using outgrow::manual_clock;

// ---- allocation counting (this test binary only) ---------------------------------
// Replacing the global operator new/delete is allowed (one per program). Sanitizers
// provide their own (and mix them with ours), so counting is off in those builds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define OUTGROW_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define OUTGROW_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef OUTGROW_COUNT_ALLOCATIONS
#define OUTGROW_COUNT_ALLOCATIONS 1
#endif

namespace {
std::atomic<std::size_t> g_allocations{0};
}  // namespace

#if OUTGROW_COUNT_ALLOCATIONS
// GCC's -Wmismatched-new-delete flags free() in a replaced operator delete once
// inlined (a false positive: this operator new uses malloc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // OUTGROW_COUNT_ALLOCATIONS

namespace {

template <class Policy>
using int_cache = cache<int, int, Policy, outgrow::unit_weigher, manual_clock>;

struct string_bytes {
  std::size_t operator()(const std::string& k, const std::string& v) const noexcept {
    return k.size() + v.size();
  }
};

template <class Policy = outgrow::w_tiny_lfu>
using blob_cache = cache<std::string, std::string, Policy, string_bytes, manual_clock>;

std::string config_message(const outgrow::cache_config& config) {
  try {
    cache<int, int> c(config);
  } catch (const outgrow::config_error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

static_assert(outgrow::cache_tier<cache<int, int>>);
static_assert(outgrow::cache_tier_with_entries<cache<int, int>>);
static_assert(outgrow::cache_tier<cache<std::string, std::string, outgrow::lru>>);
static_assert(outgrow::cache_tier_with_entries<blob_cache<outgrow::s3_fifo>>);
static_assert(outgrow::cache_tier<int_cache<outgrow::sieve>>);
static_assert(std::is_same_v<cache<int, int>::policy_type, outgrow::w_tiny_lfu>);
static_assert(
    std::is_same_v<decltype(std::declval<int_cache<outgrow::lru>&>().get_entry(1)),
                   std::optional<outgrow::cache_entry<int, manual_clock::time_point>>>);
static_assert(!std::is_copy_constructible_v<cache<int, int>>);
static_assert(std::is_nothrow_move_constructible_v<cache<int, int>>);

// ---- every policy through the same tests ------------------------------------------

TEMPLATE_TEST_CASE("every policy gets puts erases and clears", "[cache][policies]",
                   outgrow::lru, outgrow::sieve, outgrow::s3_fifo, outgrow::w_tiny_lfu) {
  manual_clock clock;
  int_cache<TestType> c({.capacity = 4}, clock);
  CHECK(c.empty());
  CHECK_FALSE(c.get(1).has_value());
  CHECK(c.put(1, 10));
  CHECK(c.put(2, 20));
  CHECK(c.get(1) == 10);
  CHECK(c.get(2) == 20);
  CHECK(c.size() == 2);
  CHECK(c.put(1, 11));  // replace: no new entry
  CHECK(c.get(1) == 11);
  CHECK(c.size() == 2);
  CHECK(c.erase(1));
  CHECK_FALSE(c.erase(1));
  CHECK_FALSE(c.get(1).has_value());
  CHECK(c.size() == 1);
  const auto s = c.metrics();
  CHECK(s.hits == 3);
  CHECK(s.misses == 2);
  CHECK(s.puts == 3);
  CHECK(s.evictions == 0);
  CHECK(s.expirations == 0);
  CHECK(s.rejected_puts == 0);
  CHECK(s.hit_rate() == Approx(0.6));
  c.clear();
  CHECK(c.empty());
  CHECK(c.weight() == 0);
  CHECK_FALSE(c.get(2).has_value());
  CHECK(c.put(3, 30));  // usable after clear
  CHECK(c.get(3) == 30);
  CHECK(c.metrics().hits == 4);  // clear keeps the counters
}

TEMPLATE_TEST_CASE("every policy stays within capacity and never serves stale values",
                   "[cache][policies]", outgrow::lru, outgrow::sieve, outgrow::s3_fifo,
                   outgrow::w_tiny_lfu) {
  manual_clock clock;
  int_cache<TestType> c({.capacity = 50}, clock);
  std::map<int, int> latest;  // the last value put for each key
  std::mt19937_64 rng(7);
  std::size_t puts = 0;
  for (int i = 0; i < 20'000; ++i) {
    const int key = static_cast<int>(rng() % 200);
    const auto op = rng() % 10;
    if (op < 6) {
      if (auto v = c.get(key)) {
        REQUIRE(latest.count(key) == 1);
        REQUIRE(*v == latest[key]);
      }
    } else if (op < 9) {
      REQUIRE(c.put(key, i));
      latest[key] = i;
      ++puts;
    } else {
      c.erase(key);
    }
    REQUIRE(c.size() <= 50);
    REQUIRE(c.weight() == c.size());
    REQUIRE(c.policy().size() == c.size());
  }
  CHECK(c.size() == 50);
  CHECK(c.metrics().puts == puts);
  CHECK(c.metrics().evictions > 0);
  std::size_t live = 0;
  for (const auto& [key, value] : latest) {
    if (auto v = c.peek(key)) {
      CHECK(*v == value);
      ++live;
    }
  }
  CHECK(live == c.size());
}

TEMPLATE_TEST_CASE("every policy bounds the total cost with a weigher",
                   "[cache][policies][weigher]", outgrow::lru, outgrow::sieve,
                   outgrow::s3_fifo, outgrow::w_tiny_lfu) {
  manual_clock clock;
  blob_cache<TestType> c({.capacity = 1000}, clock);
  std::mt19937_64 rng(11);
  for (int i = 0; i < 5'000; ++i) {
    const std::string key = fmt::format("k{}", rng() % 300);
    const std::string value(static_cast<std::size_t>(rng() % 120), 'v');
    REQUIRE(c.put(key, value));
    REQUIRE(c.weight() <= 1000);
    (void)c.get(fmt::format("k{}", rng() % 300));
  }
  CHECK(c.weight() > 500);
  CHECK(c.metrics().evictions > 0);
  CHECK(c.metrics().rejected_puts == 0);
}

TEMPLATE_TEST_CASE("every policy expires entries with the manual clock",
                   "[cache][policies][ttl]", outgrow::lru, outgrow::sieve, outgrow::s3_fifo,
                   outgrow::w_tiny_lfu) {
  manual_clock clock;
  int_cache<TestType> c({.capacity = 10, .default_ttl = 10s}, clock);
  c.put(1, 1);
  clock.advance(9s);
  CHECK(c.get(1) == 1);
  clock.advance(1s);  // written at 0 with TTL 10 s: expired at 10 s exactly
  CHECK_FALSE(c.get(1).has_value());
  CHECK(c.metrics().expirations == 1);
  CHECK(c.metrics().misses == 1);
  CHECK(c.size() == 0);
  CHECK(c.policy().size() == 0);
}

// ---- TTL ----------------------------------------------------------------------------

TEST_CASE("entries without a TTL never expire", "[cache][ttl]") {
  manual_clock clock;
  int_cache<outgrow::lru> c({.capacity = 10}, clock);
  c.put(1, 1);
  clock.advance(std::chrono::hours(24 * 365 * 100));
  CHECK(c.get(1) == 1);
  const auto e = c.get_entry(1);
  REQUIRE(e.has_value());
  CHECK(e->expires == manual_clock::time_point::max());
  CHECK(e->written == manual_clock::time_point{});
}

TEST_CASE("a per-entry TTL overrides the default TTL", "[cache][ttl]") {
  manual_clock clock;
  int_cache<outgrow::lru> c({.capacity = 10, .default_ttl = 1min}, clock);
  c.put(1, 1);        // 60 s
  c.put(2, 2, 5s);    // 5 s
  c.put(3, 3, 2min);  // 120 s
  clock.advance(5s);
  CHECK_FALSE(c.contains(2));
  CHECK(c.contains(1));
  clock.advance(55s);
  CHECK_FALSE(c.contains(1));
  CHECK(c.contains(3));
  clock.advance(1min);
  CHECK_FALSE(c.contains(3));
}

TEST_CASE("get_entry reports the write time and the expiry", "[cache][ttl]") {
  manual_clock clock;
  int_cache<outgrow::lru> c({.capacity = 10}, clock);
  clock.advance(3s);
  c.put(7, 70, 30s);
  clock.advance(2s);
  auto e = c.get_entry(7);
  REQUIRE(e.has_value());
  CHECK(e->value == 70);
  CHECK(e->written.time_since_epoch() == 3s);
  CHECK(e->expires.time_since_epoch() == 33s);
  CHECK(c.metrics().hits == 1);
  // Re-putting refreshes both; a put without TTL (no default) removes the expiry.
  c.put(7, 71, 10s);
  e = c.get_entry(7);
  CHECK(e->written.time_since_epoch() == 5s);
  CHECK(e->expires.time_since_epoch() == 15s);
  c.put(7, 72);
  e = c.get_entry(7);
  CHECK(e->expires == manual_clock::time_point::max());
  clock.advance(1h);
  CHECK(c.get(7) == 72);
  CHECK_FALSE(c.get_entry(8).has_value());
  CHECK(c.metrics().misses == 1);
}

TEST_CASE("a huge TTL saturates to never expiring", "[cache][ttl]") {
  manual_clock clock(manual_clock::time_point{1h});
  int_cache<outgrow::lru> c({.capacity = 10}, clock);
  c.put(1, 1, std::chrono::nanoseconds::max());
  CHECK(c.get_entry(1)->expires == manual_clock::time_point::max());
  c.put(2, 2, std::chrono::nanoseconds::max() - 2h);
  CHECK(c.get_entry(2)->expires < manual_clock::time_point::max());
}

TEST_CASE("expired entries are removed lazily on read", "[cache][ttl]") {
  manual_clock clock;
  int_cache<outgrow::lru> c({.capacity = 10, .cleanup_per_op = 0}, clock);
  c.put(1, 1, 1s);
  c.put(2, 2, 1s);
  clock.advance(1s);
  // No amortized cleanup configured: expired entries stay until touched.
  CHECK(c.size() == 2);
  CHECK_FALSE(c.contains(1));  // contains and peek see through, remove nothing
  CHECK_FALSE(c.peek(1).has_value());
  CHECK(c.size() == 2);
  CHECK(c.metrics().expirations == 0);
  CHECK_FALSE(c.get(1).has_value());  // get removes it
  CHECK(c.size() == 1);
  CHECK(c.metrics().expirations == 1);
  CHECK(c.metrics().misses == 1);
  CHECK_FALSE(c.erase(2));  // an expired entry is not "erased", but is removed
  CHECK(c.size() == 0);
  CHECK(c.metrics().expirations == 2);
}

TEST_CASE("amortized cleanup removes a bounded number of expired entries per operation",
          "[cache][ttl]") {
  manual_clock clock;
  int_cache<outgrow::lru> c({.capacity = 100, .cleanup_per_op = 2}, clock);
  for (int k = 0; k < 10; ++k) c.put(k, k, 1s);
  c.put(100, 100);  // no TTL
  clock.advance(1s);
  CHECK(c.size() == 11);
  CHECK_FALSE(c.get(55).has_value());  // an unrelated miss: removes 2 expired entries
  CHECK(c.size() == 9);
  c.put(56, 56);  // removes 2 more
  CHECK(c.size() == 8);
  c.erase(57);  // 2 more
  CHECK(c.size() == 6);
  CHECK(c.metrics().expirations == 6);
  CHECK(c.cleanup() == 4);  // the rest at once
  CHECK(c.size() == 2);
  CHECK(c.metrics().expirations == 10);
  CHECK(c.cleanup() == 0);
  CHECK(c.get(100) == 100);
  CHECK(c.get(56) == 56);
}

TEST_CASE("expired entries make room before live entries are evicted", "[cache][ttl]") {
  manual_clock clock;
  int_cache<outgrow::lru> c({.capacity = 3, .cleanup_per_op = 0}, clock);
  c.put(1, 1, 1s);
  c.put(2, 2);
  c.put(3, 3);
  (void)c.get(1);  // 1 is the most recently used, but it will be expired
  clock.advance(2s);
  c.put(4, 4);
  CHECK(c.contains(2));
  CHECK(c.contains(3));
  CHECK(c.contains(4));
  CHECK(c.metrics().evictions == 0);
  CHECK(c.metrics().expirations == 1);
}

TEST_CASE("ttl jitter shortens TTLs deterministically within the configured fraction",
          "[cache][ttl]") {
  manual_clock clock;
  using jitter_cache = int_cache<outgrow::lru>;
  jitter_cache a({.capacity = 1000, .ttl_jitter = 0.2, .jitter_seed = 1}, clock);
  jitter_cache b({.capacity = 1000, .ttl_jitter = 0.2, .jitter_seed = 1}, clock);
  jitter_cache other({.capacity = 1000, .ttl_jitter = 0.2, .jitter_seed = 2}, clock);
  auto earliest = manual_clock::time_point::max();
  auto latest = manual_clock::time_point::min();
  bool differs = false;
  for (int k = 0; k < 1000; ++k) {
    a.put(k, k, 100s);
    b.put(k, k, 100s);
    other.put(k, k, 100s);
    const auto e = a.get_entry(k)->expires;
    CHECK(e == b.get_entry(k)->expires);  // same seed, same TTLs
    differs = differs || e != other.get_entry(k)->expires;
    earliest = std::min(earliest, e);
    latest = std::max(latest, e);
  }
  CHECK(differs);
  CHECK(earliest.time_since_epoch() > 80s);  // never shorter than (1 - 0.2) x TTL
  CHECK(latest.time_since_epoch() <= 100s);  // never longer than the TTL
  CHECK(earliest.time_since_epoch() < 82s);  // and spread over the whole range
  CHECK(latest.time_since_epoch() > 98s);
  // Jitter also applies to the default TTL.
  jitter_cache d({.capacity = 10,
                  .default_ttl = 10s,
                  .ttl_jitter = 0.5,
                  .jitter_seed = 0x0c0ffee5eed5ULL},
                 clock);
  d.put(1, 1);
  CHECK(d.get_entry(1)->expires.time_since_epoch() > 5s);
  CHECK(d.get_entry(1)->expires.time_since_epoch() <= 10s);
}

// ---- weigher ------------------------------------------------------------------------

TEST_CASE("a weigher bounds the total cost and rejects oversized entries",
          "[cache][weigher]") {
  manual_clock clock;
  blob_cache<outgrow::lru> c({.capacity = 100}, clock);
  CHECK(c.put("a", std::string(39, 'x')));  // cost 40
  CHECK(c.put("b", std::string(39, 'y')));  // 80
  CHECK(c.weight() == 80);
  CHECK(c.put("c", std::string(39, 'z')));  // 120 > 100: evicts "a" (LRU)
  CHECK(c.weight() == 80);
  CHECK_FALSE(c.contains("a"));
  CHECK(c.metrics().evictions == 1);
  // Heavier than the whole capacity: not stored, and the old value of the key goes.
  CHECK_FALSE(c.put("b", std::string(100, 'w')));
  CHECK_FALSE(c.contains("b"));
  CHECK(c.weight() == 40);
  CHECK(c.metrics().rejected_puts == 1);
  CHECK(c.metrics().puts == 3);
  // Exactly the capacity fits (evicting everything else).
  CHECK(c.put("d", std::string(99, 'd')));
  CHECK(c.weight() == 100);
  CHECK(c.size() == 1);
  // Updates change the cost.
  CHECK(c.put("d", std::string(9, 'd')));
  CHECK(c.weight() == 10);
}

TEST_CASE("a zero cost counts as one", "[cache][weigher]") {
  auto free_of_charge = [](const int&, const int&) { return std::size_t{0}; };
  cache<int, int, outgrow::lru, decltype(free_of_charge)> c(
      {.capacity = 3}, outgrow::steady_clock_source{}, free_of_charge);
  for (int k = 0; k < 10; ++k) c.put(k, k);
  CHECK(c.size() == 3);
  CHECK(c.weight() == 3);
}

// ---- the rest of the surface ----------------------------------------------------------

TEST_CASE("peek and contains change neither statistics nor eviction order",
          "[cache][lru]") {
  manual_clock clock;
  int_cache<outgrow::lru> c({.capacity = 2}, clock);
  c.put(1, 1);
  c.put(2, 2);
  CHECK(c.peek(1) == 1);  // does not make 1 recently used
  CHECK(c.contains(1));
  CHECK_FALSE(c.peek(3).has_value());
  CHECK_FALSE(c.contains(3));
  CHECK(c.metrics() == outgrow::cache_metrics{.puts = 2});
  c.put(3, 3);
  CHECK_FALSE(c.contains(1));  // 1 was still the least recently used
  CHECK(c.contains(2));
}

TEST_CASE("get refreshes recency for lru", "[cache][lru]") {
  manual_clock clock;
  int_cache<outgrow::lru> c({.capacity = 2}, clock);
  c.put(1, 1);
  c.put(2, 2);
  (void)c.get(1);
  c.put(3, 3);
  CHECK(c.contains(1));
  CHECK_FALSE(c.contains(2));
}

TEST_CASE("erase_if removes matching entries and reaps expired ones", "[cache]") {
  manual_clock clock;
  int_cache<outgrow::w_tiny_lfu> c({.capacity = 100, .cleanup_per_op = 0}, clock);
  for (int k = 0; k < 20; ++k) c.put(k, k * 10);
  c.put(100, 1, 1s);
  clock.advance(1s);
  const std::size_t removed =
      c.erase_if([](const int& k, const int&) { return k % 2 == 0; });
  CHECK(removed == 10);
  CHECK(c.size() == 10);
  CHECK(c.metrics().expirations == 1);
  CHECK(c.metrics().evictions == 0);
  for (int k = 0; k < 20; ++k) CHECK(c.contains(k) == (k % 2 == 1));
  CHECK(c.policy().size() == 10);
}

TEST_CASE("string keys and values", "[cache]") {
  cache<std::string, std::string> c({.capacity = 1000, .default_ttl = 1h});
  for (int i = 0; i < 5000; ++i) {
    c.put(fmt::format("user:{}", i), fmt::format("a long value that needs the heap {}", i));
  }
  CHECK(c.size() == 1000);
  CHECK(c.metrics().evictions == 4000);
  int found = 0;
  for (int i = 0; i < 5000; ++i) {
    if (auto v = c.get(fmt::format("user:{}", i))) {
      CHECK(*v == fmt::format("a long value that needs the heap {}", i));
      ++found;
    }
  }
  CHECK(found == 1000);
}

TEST_CASE("moving a cache moves its entries and leaves an empty usable cache", "[cache]") {
  manual_clock clock;
  int_cache<outgrow::s3_fifo> a({.capacity = 10}, clock);
  for (int k = 0; k < 5; ++k) a.put(k, k, 1h);
  int_cache<outgrow::s3_fifo> b(std::move(a));
  CHECK(b.size() == 5);
  CHECK(b.get(3) == 3);
  CHECK(a.size() == 0);  // NOLINT(bugprone-use-after-move): documented state
  CHECK_FALSE(a.get(3).has_value());
  for (int k = 0; k < 30; ++k) a.put(k, k);
  CHECK(a.size() == 10);
  int_cache<outgrow::s3_fifo> c({.capacity = 3}, clock);
  c.put(99, 99);
  c = std::move(b);
  CHECK(c.size() == 5);
  CHECK(c.capacity() == 10);
  CHECK_FALSE(c.contains(99));
  clock.advance(1h);
  CHECK(c.cleanup() == 5);
  b.put(1, 1);  // NOLINT(bugprone-use-after-move)
  CHECK(b.get(1) == 1);
}

TEST_CASE("stats print with fmt", "[cache]") {
  cache<int, int> c({.capacity = 10});
  c.put(1, 1);
  (void)c.get(1);
  (void)c.get(2);
  CHECK(fmt::format("{}", c.metrics()) ==
        "cache_metrics{hits=1, misses=1, hit_rate=0.5, load_successes=0, load_failures=0, "
        "total_load_time=0ns, puts=1, evictions=0, expirations=0, rejected_puts=0}");
}

TEST_CASE("a full cache allocates one node per new key and nothing on hits",
          "[cache][allocation]") {
  if (!OUTGROW_COUNT_ALLOCATIONS) {
    WARN("allocation counting is off in sanitizer builds");
    SUCCEED("skipped");
    return;
  }
  manual_clock clock;
  cache<std::uint64_t, std::uint64_t, outgrow::w_tiny_lfu, outgrow::unit_weigher,
        manual_clock>
      c({.capacity = 1000, .default_ttl = 1h}, clock);
  for (std::uint64_t k = 0; k < 5000; ++k) c.put(k, k);  // full, tables grown
  std::vector<std::uint64_t> resident;
  for (std::uint64_t k = 0; k < 5000; ++k) {
    if (c.contains(k)) resident.push_back(k);
  }
  std::size_t hits = 0;
  const std::size_t before_hits = g_allocations.load();
  for (const auto k : resident) hits += c.get(k).has_value() ? 1U : 0U;
  for (const auto k : resident) c.put(k, k + 1);  // updates
  const std::size_t after_hits = g_allocations.load();
  for (std::uint64_t k = 10'000; k < 11'000; ++k) c.put(k, k);  // new keys, evicting
  const std::size_t after_inserts = g_allocations.load();
  for (std::uint64_t k = 10'000; k < 11'000; ++k) c.erase(k);  // erases
  (void)c.cleanup();
  const std::size_t after_erases = g_allocations.load();
  CHECK(resident.size() == 1000);
  CHECK(hits == 1000);
  CHECK(after_hits - before_hits == 0);
  CHECK(after_inserts - after_hits == 1000);
  CHECK(after_erases - after_inserts == 0);
}

// ---- configuration errors ---------------------------------------------------------------

TEST_CASE("invalid configurations are rejected with exact messages", "[cache][config]") {
  CHECK(config_message({.capacity = 0}) ==
        "cache: capacity must be in [1, 9223372036854775807], got 0");
  CHECK(config_message({.capacity = std::size_t{1} << 63}) ==
        "cache: capacity must be in [1, 9223372036854775807], got 9223372036854775808");
  CHECK(config_message({.capacity = 10, .default_ttl = 0s}) ==
        "cache: default_ttl must be > 0 (or std::nullopt: no expiry), got 0s");
  CHECK(config_message({.capacity = 10, .default_ttl = -5ms}) ==
        "cache: default_ttl must be > 0 (or std::nullopt: no expiry), got -5ms");
  CHECK(config_message({.capacity = 10, .ttl_jitter = 0.6}) ==
        "cache: ttl_jitter must be in [0, 0.5], got 0.6");
  CHECK(config_message({.capacity = 10, .ttl_jitter = -0.1}) ==
        "cache: ttl_jitter must be in [0, 0.5], got -0.1");
  CHECK(config_message({.capacity = 10, .ttl_jitter = std::nan("")}) ==
        "cache: ttl_jitter must be in [0, 0.5], got nan");
  CHECK(config_message({.capacity = 10, .cleanup_per_op = 1025}) ==
        "cache: cleanup_per_op must be in [0, 1024], got 1025");
  CHECK(config_message({.capacity = 1, .default_ttl = 1ns, .ttl_jitter = 0.5}) ==
        "no error");
}

TEST_CASE("a non-positive per-entry TTL is a config_error and changes nothing",
          "[cache][config][ttl]") {
  cache<int, int> c({.capacity = 10});
  c.put(1, 1);
  try {
    c.put(1, 2, 0s);
    FAIL("expected config_error");
  } catch (const outgrow::config_error& e) {
    CHECK(std::string(e.what()) == "cache: ttl must be > 0 (put(key, value, ttl)), got 0s");
    CHECK(e.primitive() == "cache");
    CHECK(e.field() == "ttl");
  }
  CHECK_THROWS_AS(c.put(2, 2, -1s), outgrow::config_error);
  CHECK(c.get(1) == 1);
  CHECK_FALSE(c.contains(2));
  CHECK(c.metrics().puts == 1);
}
