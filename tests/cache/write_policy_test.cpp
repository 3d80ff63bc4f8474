#include <outgrow/cache/tiered_cache.hpp>
#include <outgrow/cache/write_policy.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "catch.hpp"
#include "gate.hpp"
#include "map_tier.hpp"

using namespace std::chrono_literals;
using outgrow::manual_clock;
using test_support::map_tier;

namespace {

using str_tier = map_tier<std::string, std::string>;

/// A string store that records every call in order and can fail on demand.
struct kv_store {
  using key_type = std::string;
  using mapped_type = std::string;

  std::mutex mutex;
  std::unordered_map<std::string, std::string> data;
  std::vector<std::string> log;  // "store k=v", "erase k", "batch n"
  std::atomic<int> loads{0};
  std::atomic<bool> failing{false};
  int fail_next = 0;  // fail this many more store/erase calls (guarded by mutex)
  std::function<void()> on_store;
  std::function<void(const std::string&)> on_load;

  std::optional<std::string> load(const std::string& k) {
    loads.fetch_add(1);
    if (on_load) on_load(k);
    if (failing) throw std::runtime_error("store down");
    std::lock_guard lock(mutex);
    auto it = data.find(k);
    return it == data.end() ? std::nullopt : std::optional(it->second);
  }
  void store(const std::string& k, const std::string& v) {
    if (on_store) on_store();
    std::lock_guard lock(mutex);
    check_failure();
    log.push_back(fmt::format("store {}={}", k, v));
    data[k] = v;
  }
  void erase(const std::string& k) {
    std::lock_guard lock(mutex);
    check_failure();
    log.push_back(fmt::format("erase {}", k));
    data.erase(k);
  }
  void seed(const std::string& k, const std::string& v) {
    std::lock_guard lock(mutex);
    data[k] = v;
  }
  std::optional<std::string> at(const std::string& k) {
    std::lock_guard lock(mutex);
    auto it = data.find(k);
    return it == data.end() ? std::nullopt : std::optional(it->second);
  }

 private:
  void check_failure() {
    if (failing || fail_next > 0) {
      if (fail_next > 0) --fail_next;
      throw std::runtime_error("store down");
    }
  }
};

/// kv_store with an all-or-nothing store_batch.
struct kv_batch_store : kv_store {
  void store_batch(std::span<const std::pair<std::string, std::string>> items) {
    std::lock_guard lock(mutex);
    if (failing) throw std::runtime_error("store down");
    log.push_back(fmt::format("batch {}", items.size()));
    for (const auto& [k, v] : items) data[k] = v;
  }
};

/// An int -> sequence-number store failing a fraction of calls at random (fixed seed),
/// checking that every key's values arrive in increasing order.
template <bool Batch>
struct flaky_store {
  using key_type = int;
  using mapped_type = std::uint64_t;

  flaky_store(double failure_rate, std::uint64_t seed) : rng(seed), fail(failure_rate) {}

  std::optional<std::uint64_t> load(const int& k) {
    std::lock_guard lock(mutex);
    auto it = data.find(k);
    return it == data.end() ? std::nullopt : std::optional(it->second);
  }
  void store(const int& k, const std::uint64_t& v) {
    std::lock_guard lock(mutex);
    maybe_fail();
    apply(k, v);
  }
  void store_batch(std::span<const std::pair<int, std::uint64_t>> items)
  requires Batch
  {
    std::lock_guard lock(mutex);
    ++batch_calls;
    maybe_fail();
    for (const auto& [k, v] : items) apply(k, v);
  }
  void erase(const int& k) {
    std::lock_guard lock(mutex);
    maybe_fail();
    data.erase(k);
  }

  std::mutex mutex;
  std::mt19937_64 rng;
  std::bernoulli_distribution fail;
  std::unordered_map<int, std::uint64_t> data;
  std::uint64_t calls = 0;
  std::uint64_t failures = 0;
  std::uint64_t batch_calls = 0;
  std::uint64_t order_violations = 0;

 private:
  void maybe_fail() {
    ++calls;
    if (fail(rng)) {
      ++failures;
      throw std::runtime_error("store down");
    }
  }
  void apply(int k, std::uint64_t v) {
    auto it = data.find(k);
    if (it != data.end() && v <= it->second) ++order_violations;
    data[k] = v;
  }
};

using int_tier = map_tier<int, std::uint64_t>;

template <class Policy, class Store = kv_store>
using cache_of =
    outgrow::tiered_cache<outgrow::tiers<str_tier, str_tier>, Store, Policy, manual_clock>;

template <class F>
void wait_until(F done) {
  while (!done()) std::this_thread::yield();
}

std::string what(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
}

}  // namespace

static_assert(outgrow::backing_store_with_store_batch<flaky_store<true>>);
static_assert(!outgrow::backing_store_with_store_batch<flaky_store<false>>);

// ---- write_through, read_through ---------------------------------------------------

TEST_CASE("write_through stores first then fills the tiers", "[write_through]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_through> cache(db, std::tie(l1, l2), {.default_ttl = 1min}, {},
                                         clock);
  bool tiers_empty_at_store = false;
  db.on_store = [&] { tiers_empty_at_store = !l1.contains("k") && !l2.contains("k"); };
  CHECK(cache.put("k", "v1"));
  CHECK(tiers_empty_at_store);
  CHECK(db.at("k") == "v1");
  CHECK(l1.peek("k")->value == "v1");
  CHECK(l2.peek("k")->value == "v1");
  CHECK(cache.get("k") == "v1");
  CHECK(db.loads.load() == 0);
  CHECK(cache.erase("k"));
  CHECK(db.at("k") == std::nullopt);
  CHECK_FALSE(l1.contains("k"));
  CHECK(cache.metrics().puts == 1);
}

TEST_CASE("a write_through store failure throws and leaves the cache unchanged",
          "[write_through]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_through> cache(db, std::tie(l1, l2), {}, {}, clock);
  CHECK(cache.put("k", "v1"));
  db.failing = true;
  CHECK_THROWS_WITH(cache.put("k", "v2"), "store down");
  CHECK(l1.peek("k")->value == "v1");
  CHECK(l2.peek("k")->value == "v1");
  CHECK_THROWS_WITH(cache.erase("k"), "store down");
  CHECK(l1.contains("k"));
  db.failing = false;
  CHECK(cache.get("k") == "v1");
  CHECK(db.at("k") == "v1");
  CHECK(cache.metrics().puts == 1);
}

TEST_CASE("read_through loads misses and writes around the cache", "[read_through]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  db.seed("k", "v1");
  cache_of<outgrow::read_through> cache(db, std::tie(l1, l2), {}, {}, clock);
  CHECK(cache.get("k") == "v1");
  CHECK(cache.put("k", "v2"));  // store, then drop from the tiers
  CHECK(db.at("k") == "v2");
  CHECK_FALSE(l1.contains("k"));
  CHECK_FALSE(l2.contains("k"));
  CHECK(cache.get("k") == "v2");
  CHECK(db.loads.load() == 2);
  db.failing = true;
  CHECK_THROWS_WITH(cache.put("k", "v3"), "store down");
  CHECK(l1.peek("k")->value == "v2");  // unchanged
}

// ---- write_behind ------------------------------------------------------------------

TEST_CASE("write_behind acknowledges after the tier write and flushes by age",
          "[write_behind]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_behind> cache(db, std::tie(l1, l2), {}, outgrow::write_behind{},
                                        clock);
  CHECK(cache.put("a", "1"));
  CHECK(l1.peek("a")->value == "1");
  CHECK(db.at("a") == std::nullopt);  // not yet
  CHECK(cache.get("a") == "1");
  // Read-your-writes even when the tiers lose the entry: the buffer answers.
  l1.erase("a");
  l2.erase("a");
  CHECK(cache.get("a") == "1");
  CHECK(db.loads.load() == 0);
  CHECK(cache.metrics().buffer_hits == 1);

  clock.advance(999ms);
  CHECK(cache.poll() == 0);
  CHECK(cache.metrics().write_behind.queue_depth == 1);
  clock.advance(1ms);  // the oldest write is max_delay (1 s) old
  CHECK(cache.poll() == 1);
  CHECK(db.at("a") == "1");
  const auto s = cache.metrics().write_behind;
  CHECK(s.acknowledged == 1);
  CHECK(s.flushed == 1);
  CHECK(s.batches == 1);
  CHECK(s.queue_depth == 0);
}

TEST_CASE("a load never overwrites a write still in the write_behind buffer",
          "[write_behind][consistency]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  db.seed("k", "old");
  // XFetch with a huge delta: every hit with a TTL reloads from the store, which
  // still has "old" because the write below is only buffered.
  cache_of<outgrow::write_behind> cache(db, std::tie(l1, l2),
                                        {.default_ttl = 1min,
                                         .xfetch_beta = 100.0,
                                         .xfetch_delta = 1h,
                                         .xfetch_seed = 0x5EED'0F'CAC4E},
                                        {}, clock);
  CHECK(cache.put("k", "new"));
  CHECK(cache.get("k") == "new");
  CHECK(db.loads.load() == 1);          // it did reload...
  CHECK(l1.peek("k")->value == "new");  // ...and kept the buffered value
  CHECK(cache.metrics().early_recomputes == 1);
  // A write landing while a load is in flight wins too.
  db.seed("j", "old");
  bool once = false;
  db.on_load = [&](const std::string& key) {
    if (key == "j" && !once) {
      once = true;
      CHECK(cache.put("j", "new"));
    }
  };
  CHECK(cache.get("j") == "new");
  CHECK(l1.peek("j")->value == "new");
  cache.flush();
  CHECK(db.at("j") == "new");
}

TEST_CASE("write_behind flushes full batches with store_batch", "[write_behind]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_batch_store db;
  cache_of<outgrow::write_behind, kv_batch_store> cache(
      db, std::tie(l1, l2), {}, outgrow::write_behind({.max_batch = 3, .max_buffered = 10}),
      clock);
  for (int i = 0; i < 7; ++i) CHECK(cache.put(fmt::format("k{}", i), "v"));
  CHECK(cache.poll() == 6);  // two full batches; one write waits for age
  CHECK(db.log == std::vector<std::string>{"batch 3", "batch 3"});
  clock.advance(1s);
  CHECK(cache.poll() == 1);
  CHECK(db.log.back() == "batch 1");
  CHECK(cache.metrics().write_behind.batches == 3);
}

TEST_CASE("write_behind coalesces repeated writes to one key", "[write_behind]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_behind> cache(db, std::tie(l1, l2), {}, {}, clock);
  CHECK(cache.put("k", "1"));
  CHECK(cache.put("other", "x"));
  CHECK(cache.put("k", "2"));
  CHECK(cache.put("k", "3"));
  CHECK(cache.put("gone", "x"));
  CHECK(cache.erase("gone"));  // an erase coalesces like a put
  cache.flush();
  // One write per key, in the order each key was first written.
  CHECK(db.log == std::vector<std::string>{"store k=3", "store other=x", "erase gone"});
  const auto s = cache.metrics().write_behind;
  CHECK(s.acknowledged == 6);
  CHECK(s.coalesced == 3);
  CHECK(s.flushed == 3);
  CHECK(cache.get("gone") == std::nullopt);
}

TEST_CASE("write_behind never lets a newer write pass an older one in flight",
          "[write_behind][order]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_behind> cache(
      db, std::tie(l1, l2), {},
      outgrow::write_behind({.retry_base = 10s, .retry_cap = 10s}), clock);
  db.fail_next = 1;
  CHECK(cache.put("a", "1"));
  clock.advance(1s);
  CHECK(cache.poll() == 0);  // failed: a=1 waits 10 s for its retry
  CHECK(cache.put("a", "2"));
  CHECK(cache.get("a") == "2");
  clock.advance(1s);  // a=2 is now due by age, but a=1 is still in flight
  CHECK(cache.poll() == 0);
  auto s = cache.metrics().write_behind;
  CHECK(s.queue_depth == 2);
  CHECK(s.in_flight == 1);
  CHECK(s.coalesced == 0);  // an in-flight write is never replaced
  clock.advance(10s);
  CHECK(cache.poll() == 2);  // the retry first, then the newer write
  CHECK(db.log == std::vector<std::string>{"store a=1", "store a=2"});
  s = cache.metrics().write_behind;
  CHECK(s.retries == 1);
  CHECK(s.failed_attempts == 1);
}

TEST_CASE("write_behind retries with backoff then dead-letters with the error",
          "[write_behind][dead_letter]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  std::vector<cache_of<outgrow::write_behind>::dead_letter> letters;
  cache_of<outgrow::write_behind> cache(
      db, std::tie(l1, l2), {.dead_letter = [&](auto batch) { letters.push_back(batch); }},
      outgrow::write_behind({.max_retries = 2, .retry_base = 100ms, .retry_cap = 150ms}),
      clock);
  db.failing = true;
  CHECK(cache.put("a", "1"));
  CHECK(cache.put("b", "2"));
  clock.advance(1s);
  (void)cache.poll();  // attempt 1
  CHECK(cache.metrics().write_behind.failed_attempts == 1);
  clock.advance(99ms);
  (void)cache.poll();
  CHECK(cache.metrics().write_behind.failed_attempts == 1);  // backoff 100 ms not over
  clock.advance(1ms);
  (void)cache.poll();  // attempt 2
  CHECK(cache.metrics().write_behind.failed_attempts == 2);
  clock.advance(149ms);
  (void)cache.poll();
  CHECK(cache.metrics().write_behind.failed_attempts == 2);  // 200 ms capped at 150 ms
  CHECK(letters.empty());
  clock.advance(1ms);
  (void)cache.poll();  // attempt 3 = 1 + max_retries: dead letter
  REQUIRE(letters.size() == 1);
  CHECK(letters[0].attempts == 3);
  CHECK(what(letters[0].error) == "store down");
  REQUIRE(letters[0].writes.size() == 2);
  CHECK(letters[0].writes[0].key == "a");
  CHECK(letters[0].writes[0].value == "1");
  CHECK(letters[0].writes[1].key == "b");
  CHECK(letters[0].writes[0].acknowledged == manual_clock::time_point{});
  const auto s = cache.metrics().write_behind;
  CHECK(s.dead_lettered == 2);
  CHECK(s.dead_letter_batches == 1);
  CHECK(s.retries == 2);
  CHECK(s.queue_depth == 0);
  CHECK(outgrow::write_behind::backoff({}, 1) == 100ms);
  CHECK(outgrow::write_behind::backoff({}, 3) == 400ms);
  CHECK(outgrow::write_behind::backoff({}, 40) == 10s);
}

namespace {
template <bool Batch>
void write_behind_fault_test() {
  manual_clock clock;
  int_tier l1(clock);
  flaky_store<Batch> db(0.2, 20240601);
  using cache_t = outgrow::tiered_cache<outgrow::tiers<int_tier>, flaky_store<Batch>,
                                        outgrow::write_behind, manual_clock>;
  std::vector<typename cache_t::dead_letter> letters;
  // 20 % of calls fail: a batch is dead-lettered only after 1 + max_retries failures in
  // a row; 10 retries make that 0.2^11 = 2e-8 per batch, so every write must land.
  cache_t cache(db, std::tie(l1), {.dead_letter = [&](auto b) { letters.push_back(b); }},
                outgrow::write_behind({.max_batch = 100,
                                       .max_delay = 1s,
                                       .max_retries = 10,
                                       .retry_base = 100ms,
                                       .retry_cap = 2s}),
                clock);
  constexpr int writes = 100'000;
  constexpr int keys = 1'000;
  std::mt19937_64 rng(7);
  std::vector<std::uint64_t> last(keys, 0);  // last acknowledged value per key
  for (int i = 0; i < writes; ++i) {
    const int key = static_cast<int>(rng() % keys);
    const std::uint64_t value = last[static_cast<std::size_t>(key)] + 1;
    REQUIRE(cache.put(key, value));
    last[static_cast<std::size_t>(key)] = value;
    if (i % 50 == 49) {
      clock.advance(100ms);
      (void)cache.poll();
    }
    if (i % 10'000 == 9'999) {
      // Nothing is ever unaccounted for.
      const auto s = cache.metrics().write_behind;
      REQUIRE(s.acknowledged == s.flushed + s.coalesced + s.dead_lettered + s.queue_depth);
    }
  }
  cache.shutdown();
  const auto s = cache.metrics().write_behind;
  fmt::print("write-behind fault test ({}): {}\n  store calls {}, failed {}\n",
             Batch ? "store_batch" : "store", s, db.calls, db.failures);
  CHECK(letters.empty());
  CHECK(db.order_violations == 0);
  std::size_t wrong = 0;
  for (int k = 0; k < keys; ++k) {
    const auto expected = last[static_cast<std::size_t>(k)];
    if (expected == 0) continue;
    if (db.data[k] != expected) ++wrong;
  }
  CHECK(wrong == 0);
  CHECK(s.acknowledged == static_cast<std::uint64_t>(writes));
  CHECK(s.coalesced > 0);
  CHECK(s.flushed + s.coalesced + s.dead_lettered == s.acknowledged);
  CHECK(s.dead_lettered == 0);
  CHECK(s.queue_depth == 0);
  CHECK(s.failed_attempts > 0);
  CHECK(s.retries > 0);
  CHECK(db.failures > 0);
  CHECK(static_cast<double>(db.failures) / static_cast<double>(db.calls) ==
        Approx(0.2).margin(0.03));
  if constexpr (Batch) CHECK(db.batch_calls > 0);
}
}  // namespace

TEST_CASE("write_behind fault test 100k writes over 1k keys with 20 percent store failures",
          "[write_behind][fault]") {
  SECTION("store_batch") {
    write_behind_fault_test<true>();
  }
  SECTION("one store call per write") {
    write_behind_fault_test<false>();
  }
}

TEST_CASE("write_behind fault test with producer threads and a flushing thread pool",
          "[write_behind][fault][threads]") {
  outgrow::manual_clock tier_clock;  // no TTLs: the tier never reads it
  int_tier l1(tier_clock);
  flaky_store<true> db(0.2, 99);
  boost::asio::thread_pool pool(2);
  using cache_t =
      outgrow::tiered_cache<outgrow::tiers<int_tier>, flaky_store<true>,
                            outgrow::write_behind, outgrow::steady_clock_source>;
  std::atomic<std::size_t> dead{0};
  cache_t cache(db, std::tie(l1), {.dead_letter = [&](auto b) { dead += b.writes.size(); }},
                outgrow::write_behind({.max_batch = 64,
                                       .max_delay = 1ms,
                                       .max_buffered = 512,
                                       .max_retries = 20,
                                       .retry_base = 100us,
                                       .retry_cap = 1ms}));
  cache.start(pool.get_executor());
  constexpr int producers = 4;
  constexpr int per_producer = 25'000;
  constexpr int keys = 1'000;
  // Each producer owns the keys congruent to its index, so "the last acknowledged
  // value" of a key is well defined.
  std::vector<std::vector<std::uint64_t>> last(producers,
                                               std::vector<std::uint64_t>(keys, 0));
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(p) + 1);
      auto& mine = last[static_cast<std::size_t>(p)];
      for (int i = 0; i < per_producer; ++i) {
        const int key = static_cast<int>(rng() % (keys / producers)) * producers + p;
        const std::uint64_t value = mine[static_cast<std::size_t>(key)] + 1;
        if (cache.put(key, value)) mine[static_cast<std::size_t>(key)] = value;
      }
    });
  }
  for (auto& t : threads) t.join();
  cache.shutdown();
  pool.join();
  const auto s = cache.metrics().write_behind;
  fmt::print("threaded write-behind fault test: {}\n", s);
  CHECK(dead.load() == 0);
  CHECK(db.order_violations == 0);
  std::size_t wrong = 0;
  for (int p = 0; p < producers; ++p) {
    for (int k = 0; k < keys; ++k) {
      const auto expected = last[static_cast<std::size_t>(p)][static_cast<std::size_t>(k)];
      if (expected != 0 && db.data[k] != expected) ++wrong;
    }
  }
  CHECK(wrong == 0);
  CHECK(s.acknowledged + s.rejected ==
        static_cast<std::uint64_t>(producers * per_producer));
  CHECK(s.rejected == 0);  // block, never reject, with a running flusher
  CHECK(s.flushed + s.coalesced + s.dead_lettered == s.acknowledged);
  CHECK(s.queue_depth == 0);
}

TEST_CASE("a store that fails permanently sends every unflushed write to the dead letters",
          "[write_behind][dead_letter]") {
  manual_clock clock;
  int_tier l1(clock);
  flaky_store<true> db(1.0, 1);  // every call fails
  using cache_t = outgrow::tiered_cache<outgrow::tiers<int_tier>, flaky_store<true>,
                                        outgrow::write_behind, manual_clock>;
  std::vector<cache_t::dead_letter> letters;
  cache_t cache(db, std::tie(l1), {.dead_letter = [&](auto b) { letters.push_back(b); }},
                outgrow::write_behind({.max_batch = 50, .max_retries = 2}), clock);
  constexpr int keys = 100;
  std::vector<std::uint64_t> last(keys, 0);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 5'000; ++i) {
    const auto key = static_cast<int>(rng() % keys);
    const std::uint64_t value = ++last[static_cast<std::size_t>(key)];
    REQUIRE(cache.put(key, value));
    if (i % 50 == 49) {
      clock.advance(250ms);
      (void)cache.poll();
    }
  }
  const std::size_t before_shutdown = letters.size();
  cache.shutdown();
  CHECK(before_shutdown > 0);               // retries ran out during the run...
  CHECK(letters.size() > before_shutdown);  // ...and the drain dead-lettered the rest
  const auto s = cache.metrics().write_behind;
  std::size_t lettered = 0;
  std::map<int, std::vector<std::uint64_t>> per_key;
  for (const auto& b : letters) {
    CHECK(b.attempts == 3);
    CHECK(what(b.error) == "store down");
    for (const auto& w : b.writes) {
      ++lettered;
      REQUIRE(w.value.has_value());
      per_key[w.key].push_back(*w.value);
    }
  }
  CHECK(s.flushed == 0);
  CHECK(lettered == s.dead_lettered);
  CHECK(s.acknowledged == s.coalesced + s.dead_lettered);  // none vanished
  CHECK(s.queue_depth == 0);
  for (int k = 0; k < keys; ++k) {
    if (last[static_cast<std::size_t>(k)] == 0) continue;
    const auto& got = per_key[k];
    REQUIRE_FALSE(got.empty());
    CHECK(got.back() == last[static_cast<std::size_t>(k)]);  // the latest write is there
    CHECK(std::is_sorted(got.begin(), got.end()));           // in order
  }
}

TEST_CASE("without a hook dead letters are kept for take_dead_letters",
          "[write_behind][dead_letter]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  db.failing = true;
  cache_of<outgrow::write_behind> cache(db, std::tie(l1, l2), {},
                                        outgrow::write_behind({.max_retries = 0}), clock);
  CHECK(cache.put("a", "1"));
  CHECK(cache.erase("b"));
  cache.flush();
  auto kept = cache.take_dead_letters();
  REQUIRE(kept.size() == 1);
  REQUIRE(kept[0].writes.size() == 2);
  CHECK(kept[0].writes[1].key == "b");
  CHECK(kept[0].writes[1].value == std::nullopt);  // an erase
  CHECK(cache.take_dead_letters().empty());

  // A hook that throws does not lose the batch either.
  str_tier m1(clock);
  str_tier m2(clock);
  cache_of<outgrow::write_behind> throwing(
      db, std::tie(m1, m2),
      {.dead_letter = [](auto) { throw std::runtime_error("dlq full"); }},
      outgrow::write_behind({.max_retries = 0}), clock);
  CHECK(throwing.put("c", "3"));
  throwing.flush();
  auto again = throwing.take_dead_letters();
  REQUIRE(again.size() == 1);
  CHECK(what(again[0].error) == "dlq full");
}

TEST_CASE("a full write_behind buffer rejects when configured to",
          "[write_behind][bounded]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_behind> cache(
      db, std::tie(l1, l2), {},
      outgrow::write_behind({.max_batch = 2,
                             .max_buffered = 2,
                             .overflow = outgrow::write_behind_overflow::reject}),
      clock);
  CHECK(cache.put("a", "1"));
  CHECK(cache.put("b", "1"));
  CHECK_FALSE(cache.put("c", "1"));  // full
  CHECK_FALSE(l1.contains("c"));     // a rejected write changes nothing
  CHECK(cache.put("a", "2"));        // coalescing needs no room
  const auto s = cache.metrics();
  CHECK(s.write_behind.rejected == 1);
  CHECK(s.rejected_puts == 1);
  CHECK(s.write_behind.acknowledged == 3);
  cache.flush();
  CHECK(cache.put("c", "1"));
}

TEST_CASE("a full write_behind buffer blocks the writer until a flush makes room",
          "[write_behind][bounded]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_behind> cache(
      db, std::tie(l1, l2), {}, outgrow::write_behind({.max_batch = 2, .max_buffered = 2}),
      clock);
  CHECK(cache.put("a", "1"));
  CHECK(cache.put("b", "1"));
  std::atomic<bool> done{false};
  bool accepted = false;
  std::thread writer([&] {
    accepted = cache.put("c", "1");
    done = true;
  });
  wait_until([&] { return cache.metrics().write_behind.blocked == 1; });
  CHECK_FALSE(done.load());
  cache.flush();  // makes room
  writer.join();
  CHECK(accepted);
  CHECK(l1.contains("c"));
  cache.shutdown();
  CHECK(db.at("c") == "1");

  // With nobody flushing, block_timeout turns the wait into a rejection.
  str_tier m1(clock);
  str_tier m2(clock);
  cache_of<outgrow::write_behind> stuck(
      db, std::tie(m1, m2), {},
      outgrow::write_behind({.max_batch = 1, .max_buffered = 1, .block_timeout = 1ms}),
      clock);
  CHECK(stuck.put("x", "1"));
  CHECK_FALSE(stuck.put("y", "1"));
  CHECK(stuck.metrics().write_behind.rejected == 1);
}

TEST_CASE("flush shutdown and the destructor drain every acknowledged write",
          "[write_behind][drain]") {
  manual_clock clock;
  kv_store db;
  {
    str_tier l1(clock);
    str_tier l2(clock);
    cache_of<outgrow::write_behind> cache(db, std::tie(l1, l2), {}, {}, clock);
    CHECK(cache.put("a", "1"));
    cache.flush();
    CHECK(db.at("a") == "1");
    CHECK(cache.put("b", "2"));
    cache.shutdown();
    CHECK(db.at("b") == "2");
    CHECK_FALSE(cache.put("c", "3"));  // closed
    CHECK_FALSE(cache.erase("a"));
    CHECK(cache.get("a") == "1");  // reads still work
    cache.shutdown();              // idempotent
    str_tier m1(clock);
    str_tier m2(clock);
    cache_of<outgrow::write_behind> forgetful(db, std::tie(m1, m2), {}, {}, clock);
    CHECK(forgetful.put("d", "4"));
    // no flush, no shutdown: the destructor drains
  }
  CHECK(db.at("d") == "4");
  CHECK(db.at("c") == std::nullopt);
}

TEST_CASE("start posts full batches to the executor", "[write_behind][executor]") {
  manual_clock clock;
  boost::asio::io_context io;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  // max_delay 1 h: the age timer (real time under start()) never fires in this test.
  cache_of<outgrow::write_behind> cache(
      db, std::tie(l1, l2), {},
      outgrow::write_behind({.max_batch = 3, .max_delay = 1h, .max_buffered = 10}), clock);
  cache.start(io.get_executor());
  CHECK(cache.put("a", "1"));
  CHECK(cache.put("b", "1"));
  CHECK(io.poll() == 0);  // not full, not old (the timer waits)
  CHECK(cache.put("c", "1"));
  CHECK(io.poll() >= 1);  // the posted flush ran here, on the executor
  CHECK(db.log.size() == 3);
  cache.shutdown();
}

TEST_CASE("start arms a timer that flushes by age", "[write_behind][executor]") {
  outgrow::manual_clock tier_clock;
  boost::asio::io_context io;
  str_tier l1(tier_clock);
  str_tier l2(tier_clock);
  kv_store db;
  outgrow::tiered_cache<outgrow::tiers<str_tier, str_tier>, kv_store, outgrow::write_behind>
      cache(db, std::tie(l1, l2), {}, outgrow::write_behind({.max_delay = 1ms}));
  cache.start(io.get_executor());
  CHECK(cache.put("a", "1"));
  // Runs handlers until the timer's flush has stored the write (1 ms later).
  while (!db.at("a")) {
    REQUIRE(io.run_one_for(std::chrono::seconds(10)) == 1);
  }
  CHECK(cache.metrics().write_behind.flushed == 1);
  cache.shutdown();
}

// ---- refresh_ahead -----------------------------------------------------------------

namespace {
struct refresh_fixture {
  manual_clock clock;
  boost::asio::io_context io;
  str_tier l1{clock};
  str_tier l2{clock};
  kv_store db;
  cache_of<outgrow::refresh_ahead> cache{db,
                                         std::tie(l1, l2),
                                         {.default_ttl = 10s},
                                         outgrow::refresh_ahead({.refresh_fraction = 0.8}),
                                         clock};
  refresh_fixture() {
    db.seed("k", "v1");
    cache.start(io.get_executor());
  }
  // Runs the reloads posted so far on this thread (an io_context that ran out of work
  // stops, hence restart()).
  std::size_t run_posted() {
    io.restart();
    return io.poll();
  }
};
}  // namespace

TEST_CASE("refresh_ahead serves the current value and reloads exactly once",
          "[refresh_ahead]") {
  refresh_fixture f;
  CHECK(f.cache.get("k") == "v1");  // loaded at t = 0, expires at 10 s
  f.clock.advance(7999ms);
  CHECK(f.cache.get("k") == "v1");
  CHECK(f.cache.metrics().refreshes == 0);  // before 80 % of the TTL
  f.clock.advance(1ms);                     // t = 8 s
  f.db.seed("k", "v2");
  for (int i = 0; i < 100; ++i) CHECK(f.cache.get("k") == "v1");
  CHECK(f.cache.metrics().refreshes == 1);  // one reload for 100 reads
  CHECK(f.db.loads.load() == 1);            // posted, not run yet
  CHECK(f.run_posted() == 1);               // the one reload
  CHECK(f.db.loads.load() == 2);
  CHECK(f.cache.get("k") == "v2");
  CHECK(f.l1.peek("k")->expires == manual_clock::time_point{18s});  // a fresh TTL
  const auto s = f.cache.metrics();
  CHECK(s.refreshes == 1);
  CHECK(s.refresh_failures == 0);
  CHECK(s.refreshes_discarded == 0);
  CHECK(s.load_successes == 2);
  CHECK(s.misses == 1);
  CHECK(s.hits == 102);
}

TEST_CASE("a failed reload keeps the old value until hard expiry", "[refresh_ahead]") {
  refresh_fixture f;
  CHECK(f.cache.get("k") == "v1");
  f.clock.advance(8s);
  f.db.failing = true;
  CHECK(f.cache.get("k") == "v1");
  CHECK(f.run_posted() == 1);  // the reload fails
  CHECK(f.cache.metrics().refresh_failures == 1);
  CHECK(f.cache.metrics().load_failures == 1);
  CHECK(f.l1.contains("k"));  // not evicted by the failure
  for (int i = 0; i < 10; ++i) CHECK(f.cache.get("k") == "v1");
  CHECK(f.cache.metrics().refreshes == 1);  // no retry before retry_after (1 s)
  CHECK(f.run_posted() == 0);
  f.clock.advance(1s);
  CHECK(f.cache.get("k") == "v1");  // still served, and one new reload is tried
  CHECK(f.cache.metrics().refreshes == 2);
  CHECK(f.run_posted() == 1);
  CHECK(f.cache.metrics().refresh_failures == 2);
  f.clock.advance(1s);                                // t = 10 s: hard expiry
  CHECK_THROWS_WITH(f.cache.get("k"), "store down");  // never the expired v1
  f.db.failing = false;
  f.db.seed("k", "v2");
  CHECK(f.cache.get("k") == "v2");
}

TEST_CASE("hard expiry is enforced while a reload hangs", "[refresh_ahead]") {
  SECTION("the reload never gets to run") {
    refresh_fixture f;
    CHECK(f.cache.get("k") == "v1");
    f.clock.advance(8s);
    CHECK(f.cache.get("k") == "v1");  // reload posted; the test never runs it (yet)
    f.db.seed("k", "v2");
    f.clock.advance(2s);              // t = 10 s
    CHECK(f.cache.get("k") == "v2");  // hard expiry: a synchronous load, not v1
    CHECK(f.cache.metrics().refreshes == 1);
    f.db.seed("k", "v3");
    CHECK(f.run_posted() == 1);  // the late reload's result is discarded
    CHECK(f.cache.metrics().refreshes_discarded == 1);
    CHECK(f.l1.peek("k")->value == "v2");
    CHECK(f.l1.peek("k")->expires == manual_clock::time_point{20s});
  }
  SECTION("the reload is stuck inside the store on another thread") {
    refresh_fixture f;
    CHECK(f.cache.get("k") == "v1");
    std::promise<void> entered;
    std::promise<void> release;
    std::atomic<bool> hang_next{false};
    f.db.on_load = [&](const std::string&) {
      if (hang_next.exchange(false)) {
        entered.set_value();
        release.get_future().wait();
      }
    };
    f.clock.advance(8s);
    hang_next = true;
    CHECK(f.cache.get("k") == "v1");
    std::thread runner([&] { f.io.run(); });
    entered.get_future().wait();  // the reload is now blocked in store.load
    f.db.seed("k", "v2");
    f.clock.advance(2s);
    CHECK(f.cache.get("k") == "v2");  // not blocked by, and not served from, the reload
    release.set_value();
    runner.join();
    CHECK(f.cache.metrics().refreshes_discarded == 1);
    CHECK(f.cache.get("k") == "v2");
  }
}

TEST_CASE("a reload for a key written meanwhile is discarded", "[refresh_ahead]") {
  refresh_fixture f;
  CHECK(f.cache.get("k") == "v1");
  f.clock.advance(8s);
  CHECK(f.cache.get("k") == "v1");  // reload posted
  CHECK(f.cache.put("k", "mine"));  // write_through
  f.db.seed("k", "stale-by-now");
  CHECK(f.run_posted() == 1);
  CHECK(f.cache.get("k") == "mine");
  CHECK(f.cache.metrics().refreshes_discarded == 1);
}

TEST_CASE("without an executor the reader that crosses the refresh point reloads inline",
          "[refresh_ahead]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  db.seed("k", "v1");
  cache_of<outgrow::refresh_ahead> cache(db, std::tie(l1, l2), {.default_ttl = 10s}, {},
                                         clock);
  CHECK(cache.get("k") == "v1");
  clock.advance(8s);
  db.seed("k", "v2");
  CHECK(cache.get("k") == "v1");  // the value it found; the reload ran inline
  CHECK(db.loads.load() == 2);
  CHECK(cache.get("k") == "v2");
  CHECK(cache.metrics().refreshes == 1);
}

// ---- configuration -----------------------------------------------------------------

TEST_CASE("write policies reject bad configuration with exact messages", "[config]") {
  using outgrow::write_behind;
  auto wb = [](outgrow::write_behind_config c) { return write_behind(c); };
  CHECK_THROWS_AS(wb({.max_batch = 0}), outgrow::config_error);
  CHECK_THROWS_WITH(wb({.max_batch = 0}),
                    "write_behind: max_batch must be in [1, inf), got 0");
  CHECK_THROWS_WITH(wb({.max_delay = 0s}),
                    "write_behind: max_delay must be in (0s, inf), got 0s");
  CHECK_THROWS_WITH(wb({.max_delay = -5ms}),
                    "write_behind: max_delay must be in (0s, inf), got -5ms");
  CHECK_THROWS_WITH(wb({.max_batch = 100, .max_buffered = 50}),
                    "write_behind: max_buffered must be in [100, inf), got 50");
  CHECK_THROWS_WITH(wb({.block_timeout = 0s}),
                    "write_behind: block_timeout must be in (0s, inf), got 0s");
  CHECK_THROWS_WITH(wb({.max_retries = 1001}),
                    "write_behind: max_retries must be in [0, 1000], got 1001");
  CHECK_THROWS_WITH(wb({.retry_base = 0s}),
                    "write_behind: retry_base must be in (0s, inf), got 0s");
  CHECK_THROWS_WITH(wb({.retry_base = 100ms, .retry_cap = 50ms}),
                    "write_behind: retry_cap must be in [100ms, inf), got 50ms");
  CHECK_THROWS_WITH(wb({.overflow = static_cast<outgrow::write_behind_overflow>(7)}),
                    "write_behind: overflow must be block or reject, got 7");
  CHECK_NOTHROW(wb({}));

  auto ra = [](double f) { return outgrow::refresh_ahead({.refresh_fraction = f}); };
  CHECK_THROWS_AS(ra(0.0), outgrow::config_error);
  CHECK_THROWS_WITH(ra(0.0), "refresh_ahead: refresh_fraction must be in (0, 1), got 0");
  CHECK_THROWS_WITH(ra(1.0), "refresh_ahead: refresh_fraction must be in (0, 1), got 1");
  CHECK_THROWS_WITH(ra(1.5), "refresh_ahead: refresh_fraction must be in (0, 1), got 1.5");
  CHECK_THROWS_WITH(ra(-0.2),
                    "refresh_ahead: refresh_fraction must be in (0, 1), got -0.2");
  CHECK_THROWS_WITH(ra(std::numeric_limits<double>::quiet_NaN()),
                    "refresh_ahead: refresh_fraction must be in (0, 1), got nan");
  CHECK_NOTHROW(ra(0.5));
  CHECK_THROWS_WITH(outgrow::refresh_ahead({.retry_after = -1ms}),
                    "refresh_ahead: retry_after must be in [0s, inf), got -1ms");

  // TTL <= 0 is rejected by the cache, whatever the policy.
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  CHECK_THROWS_WITH((cache_of<outgrow::refresh_ahead>(db, std::tie(l1, l2),
                                                      {.default_ttl = 0s}, {}, clock)),
                    "tiered_cache: default_ttl must be in (0s, inf), got 0s");
  CHECK_THROWS_WITH((cache_of<outgrow::write_behind>(db, std::tie(l1, l2),
                                                     {.default_ttl = -1min}, {}, clock)),
                    "tiered_cache: default_ttl must be in (0s, inf), got -1min");
  // A policy whose config was changed after construction is validated again.
  outgrow::write_behind bad;
  bad.config.max_batch = 0;
  CHECK_THROWS_WITH((cache_of<outgrow::write_behind>(db, std::tie(l1, l2), {}, bad, clock)),
                    "write_behind: max_batch must be in [1, inf), got 0");
}

// ---- huge durations saturate instead of overflowing ----------------------------------

TEST_CASE("write_behind with max_delay nanoseconds max does not flush by age at once",
          "[write_behind][overflow]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_behind> cache(
      db, std::tie(l1, l2), {},
      outgrow::write_behind({.max_delay = std::chrono::nanoseconds::max()}), clock);
  clock.advance(1s);  // a write acknowledged after time zero: since + max_delay overflows
  CHECK(cache.put("a", "1"));
  CHECK(cache.poll() == 0);
  clock.advance(24h * 365 * 100);
  CHECK(cache.poll() == 0);  // a century is not "max_delay old"
  CHECK(db.at("a") == std::nullopt);
  CHECK(cache.metrics().write_behind.queue_depth == 1);
  cache.flush();  // an explicit flush still writes it
  CHECK(db.at("a") == "1");
}

TEST_CASE("write_behind with retry_cap nanoseconds max waits for its retry",
          "[write_behind][overflow]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_behind> cache(
      db, std::tie(l1, l2), {},
      outgrow::write_behind({.max_batch = 1,
                             .retry_base = std::chrono::nanoseconds::max(),
                             .retry_cap = std::chrono::nanoseconds::max()}),
      clock);
  clock.advance(1s);
  db.fail_next = 1;
  CHECK(cache.put("a", "1"));
  CHECK(cache.poll() == 0);  // the first attempt fails
  const auto s = cache.metrics().write_behind;
  CHECK(s.failed_attempts == 1);
  clock.advance(24h * 365 * 100);
  CHECK(cache.poll() == 0);  // the retry is not due: no retry at once, no dead letter
  CHECK(cache.metrics().write_behind.retries == 0);
  CHECK(cache.metrics().write_behind.dead_lettered == 0);
  CHECK(db.at("a") == std::nullopt);
}

TEST_CASE("write_behind with a huge block_timeout blocks instead of overflowing",
          "[write_behind][overflow]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_behind> cache(
      db, std::tie(l1, l2), {},
      outgrow::write_behind({.max_batch = 1,
                             .max_buffered = 1,
                             .block_timeout = std::chrono::nanoseconds::max()}),
      clock);
  CHECK(cache.put("a", "1"));
  std::atomic<bool> done{false};
  bool accepted = false;
  std::thread writer([&] {
    accepted = cache.put("b", "1");  // full: waits (overflow would reject at once)
    done = true;
  });
  wait_until([&] { return cache.metrics().write_behind.blocked == 1; });
  std::this_thread::sleep_for(10ms);
  CHECK_FALSE(done.load());
  cache.flush();  // makes room
  writer.join();
  CHECK(accepted);
  CHECK(cache.metrics().write_behind.rejected == 0);
}

// ---- shutdown with a deadline and a hanging store -----------------------------------

using outgrow_test::gate;

TEST_CASE("shutdown with a deadline returns while the store hangs and reports every write",
          "[write_behind][drain][shutdown]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  gate g;
  std::atomic<int> calls{0};
  db.on_store = [&] {
    if (calls.fetch_add(1) == 0) g.wait();  // the first store call hangs
  };
  using cache_t = cache_of<outgrow::write_behind>;
  std::unique_ptr<cache_t> cache(new cache_t(
      db, std::tie(l1, l2), {}, outgrow::write_behind({.max_batch = 1}), clock));
  CHECK(cache->put("a", "1"));
  CHECK(cache->put("b", "2"));
  CHECK(cache->put("c", "3"));
  const auto start = std::chrono::steady_clock::now();
  const auto report = cache->shutdown(start + 100ms);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(took >= 100ms);
  CHECK(took < 900ms);
  CHECK_FALSE(report.drained);
  REQUIRE(report.in_flight.size() == 1);  // "a": its store call is still running
  CHECK(report.in_flight[0].key == "a");
  CHECK(report.in_flight[0].value == "1");
  REQUIRE(report.unstored.size() == 2);  // never attempted: handed back, in order
  CHECK(report.unstored[0].key == "b");
  CHECK(report.unstored[0].value == "2");
  CHECK(report.unstored[1].key == "c");
  CHECK(cache->put("d", "4") == false);  // closed
  const auto s = cache->metrics().write_behind;
  CHECK(s.handed_back == 2);
  CHECK(s.queue_depth == 1);  // "a", in flight
  CHECK(g.waiting.load() == 1);

  g.release();    // the hanging call stores "a"; nothing is retried or stored later
  cache.reset();  // the destructor waits for the store call left running
  CHECK(db.at("a") == "1");
  CHECK(db.at("b") == std::nullopt);
  CHECK(db.at("c") == std::nullopt);
}

TEST_CASE("a store call that fails after the shutdown deadline is dead-lettered",
          "[write_behind][drain][shutdown]") {
  using cache_t = cache_of<outgrow::write_behind>;
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  gate g;
  db.on_store = [&] {
    g.wait();
    db.failing = true;  // fails once released (would be retried before the deadline)
  };
  std::vector<std::string> dead;
  std::unique_ptr<cache_t> cache(new cache_t(db, std::tie(l1, l2),
                                             {.dead_letter =
                                                  [&](auto batch) {
                                                    for (const auto& w : batch.writes)
                                                      dead.push_back(w.key);
                                                  }},
                                             outgrow::write_behind{}, clock));
  CHECK(cache->put("x", "1"));
  const auto report = cache->shutdown(std::chrono::steady_clock::now() + 50ms);
  CHECK_FALSE(report.drained);
  CHECK(report.unstored.empty());
  REQUIRE(report.in_flight.size() == 1);
  g.release();
  cache->flush();  // returns at once after the deadline: nothing left to drain
  cache.reset();   // waits for the store call; its failure goes to the hook, no retry
  CHECK(dead == std::vector<std::string>{"x"});
  CHECK(db.at("x") == std::nullopt);
}

TEST_CASE("shutdown with a deadline that suffices drains like shutdown",
          "[write_behind][drain][shutdown]") {
  manual_clock clock;
  str_tier l1(clock);
  str_tier l2(clock);
  kv_store db;
  cache_of<outgrow::write_behind> cache(db, std::tie(l1, l2), {}, outgrow::write_behind{},
                                        clock);
  CHECK(cache.put("a", "1"));
  CHECK(cache.put("b", "2"));
  const auto report = cache.shutdown(std::chrono::hours::max());
  CHECK(report.drained);
  CHECK(report.unstored.empty());
  CHECK(report.in_flight.empty());
  CHECK(db.at("a") == "1");
  CHECK(db.at("b") == "2");
  CHECK(cache.shutdown(0s).drained);  // a second call: nothing to do
}
