// concurrent_cache's writer side (issue 20: put that scales from 1 to 2 threads): the
// 4-byte writer lock (detail::cc_spin_mutex), the shard header that keeps everything a
// write changes in one cache line, and the per-thread puts / evictions / expirations
// counters that replaced the per-shard ones.
#include <outgrow/cache/concurrent_cache.hpp>
#include <outgrow/cache/detail/concurrent_cache_shard.hpp>
#include <outgrow/core/clock.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "catch.hpp"

namespace {

using writer_test_cache = outgrow::concurrent_cache<std::uint64_t, std::uint64_t>;

}  // namespace

TEST_CASE("cc_spin_mutex try_lock fails while held and succeeds after unlock") {
  outgrow::detail::cc_spin_mutex m;
  REQUIRE(m.try_lock());
  CHECK_FALSE(m.try_lock());
  m.unlock();
  CHECK(m.try_lock());
  m.unlock();
  {
    const std::lock_guard lock(m);
    CHECK_FALSE(m.try_lock());
  }
  CHECK(m.try_lock());
  m.unlock();
}

TEST_CASE("stress: cc_spin_mutex excludes with more threads than cores") {
  // Eight threads on a 2-core machine: holders get preempted (and yield inside the
  // lock now and then), so waiters exhaust their spins, yield and nap; a plain counter
  // changed under the lock must come out exact (and ThreadSanitizer checks that the
  // lock's acquire / release orders every change).
  outgrow::detail::cc_spin_mutex m;
  std::uint64_t counter = 0;  // guarded by m
  std::uint64_t in_section = 0;
  std::atomic<int> overlaps{0};
  constexpr int kLockThreads = 8;
  constexpr int kRounds = 20'000;
  std::latch start(kLockThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kLockThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kRounds; ++i) {
        const std::lock_guard lock(m);
        if (++in_section != 1) overlaps.fetch_add(1);
        ++counter;
        if ((i & 1023) == 0) std::this_thread::yield();  // hold it across a reschedule
        --in_section;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(overlaps.load() == 0);
  CHECK(counter == std::uint64_t{kLockThreads} * kRounds);
}

TEST_CASE("a lock-free shard keeps seq lock and SIEVE state in one cache line") {
  using shard = outgrow::detail::cc_shard<std::uint64_t, std::uint64_t,
                                          outgrow::steady_clock_source, true>;
  static_assert(sizeof(outgrow::detail::cc_spin_mutex) == 4);
  const auto s = std::make_unique<shard>();
  const auto at = [&](const auto& member) {
    return static_cast<std::size_t>(reinterpret_cast<const char*>(&member) -
                                    reinterpret_cast<const char*>(&s->seq));
  };
  CHECK(reinterpret_cast<std::uintptr_t>(&s->seq) % 64 == 0);
  // Everything a put, erase or eviction writes in the header.
  CHECK(at(s->mutex) + sizeof(s->mutex) <= 64);
  CHECK(at(s->size) < 64);
  CHECK(at(s->fresh) < 64);
  CHECK(at(s->free_head) < 64);
  CHECK(at(s->next_order) < 64);
  CHECK(at(s->lanes) + sizeof(s->lanes) <= 64);
  CHECK(at(s->ttl_entries) < 64);
  // What lookups read besides seq: one line of its own that no write touches.
  const auto before = [&](const auto& member) {
    return static_cast<std::size_t>(reinterpret_cast<const char*>(&s->seq) -
                                    reinterpret_cast<const char*>(&member));
  };
  for (const std::size_t d : {before(s->index), before(s->chunks), before(s->slots),
                              before(s->chunk_count), before(s->capacity)}) {
    CHECK(d > 0);
    CHECK(d <= 64);
  }
  CHECK(reinterpret_cast<std::uintptr_t>(&s->index) % 64 == 0);
}

namespace {

// A thread that runs the functions it is handed, one at a time, while the caller
// waits: lets a test drive a cache from two threads in a fixed order.
class turn_thread {
 public:
  turn_thread() : thread_([this] { loop(); }) {}
  turn_thread(const turn_thread&) = delete;
  turn_thread& operator=(const turn_thread&) = delete;
  ~turn_thread() {
    run([this] { done_ = true; });
    thread_.join();
  }
  void run(std::function<void()> f) {
    std::unique_lock lock(mutex_);
    job_ = std::move(f);
    cv_.notify_all();
    cv_.wait(lock, [&] { return !job_; });
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (!done_) {
      cv_.wait(lock, [&] { return static_cast<bool>(job_); });
      job_();
      job_ = nullptr;
      cv_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

TEST_CASE("SIEVE evicts in the same order when two threads' inserts share a shard") {
  // A shard keeps one SIEVE lane per thread-slot parity, merged by insertion number;
  // the eviction order must be exactly that of one queue. The same random operations
  // (gets, puts with and without TTL, erases, clock steps) run on one cache from one
  // thread and on another from two threads of different slot parity, in turns of
  // random length; every result and the final counters must agree.
  using cache_t =
      outgrow::concurrent_cache<std::uint64_t, std::uint64_t, outgrow::manual_clock>;
  std::vector<std::unique_ptr<turn_thread>> pool;
  std::array<turn_thread*, 2> by_parity{};
  while (by_parity[0] == nullptr || by_parity[1] == nullptr) {
    REQUIRE(pool.size() < 64);
    pool.push_back(std::make_unique<turn_thread>());
    std::size_t slot = 0;
    pool.back()->run([&] { slot = outgrow::detail::cc_thread_slot(); });
    if (by_parity[slot % 2] == nullptr) by_parity[slot % 2] = pool.back().get();
  }

  for (const std::size_t capacity : {std::size_t{1}, std::size_t{7}, std::size_t{64}}) {
    CAPTURE(capacity);
    outgrow::manual_clock clock_one, clock_two;
    cache_t one({.capacity = capacity, .shards = 1}, clock_one);
    cache_t two({.capacity = capacity, .shards = 1}, clock_two);
    std::mt19937_64 ops(capacity * 7919 + 1);
    std::mt19937_64 turns(capacity + 17);
    std::size_t mismatches = 0;
    std::size_t first_mismatch = 0;
    std::size_t turn_left = 0;
    std::size_t side = 0;
    constexpr std::size_t kOps = 20'000;
    for (std::size_t i = 0; i < kOps; ++i) {
      const std::uint64_t key = ops() % (3 * capacity + 2);
      const unsigned kind = static_cast<unsigned>(ops() % 100);
      if (kind == 99) {
        clock_one.advance(std::chrono::seconds(1));
        clock_two.advance(std::chrono::seconds(1));
        continue;
      }
      const auto apply = [&](cache_t& c) -> std::uint64_t {
        if (kind < 55) return c.get(key).value_or(~std::uint64_t{0});
        if (kind < 85) return c.put(key, key + i) ? 1U : 0U;
        if (kind < 95) return c.put(key, key + i, std::chrono::seconds(3)) ? 1U : 0U;
        return c.erase(key) ? 1U : 0U;
      };
      std::uint64_t a = 0;
      std::uint64_t b = 0;
      by_parity[0]->run([&] { a = apply(one); });
      if (turn_left == 0) {
        side = turns() % 2;
        turn_left = 1 + turns() % 6;
      }
      --turn_left;
      by_parity[side]->run([&] { b = apply(two); });
      if (a != b && mismatches++ == 0) first_mismatch = i;
    }
    CAPTURE(first_mismatch);
    CHECK(mismatches == 0);
    const auto m1 = one.metrics();
    const auto m2 = two.metrics();
    CHECK(m1.hits == m2.hits);
    CHECK(m1.misses == m2.misses);
    CHECK(m1.puts == m2.puts);
    CHECK(m1.evictions == m2.evictions);
    CHECK(m1.expirations == m2.expirations);
    CHECK(m1.evictions > 0);
    CHECK(one.size() == two.size());
  }
}

TEST_CASE("stress: puts evictions and expirations are counted exactly across threads") {
  // Four threads put over a key space three times the capacity (evictions on every
  // shard), with a TTL on a quarter of the puts while the manual clock jumps past it
  // (expirations by cleanup, by the SIEVE hand and by readers), then erase what is left:
  // every put is counted once and every entry stored leaves by exactly one of evicted,
  // expired or erased.
  using ttl_cache =
      outgrow::concurrent_cache<std::uint64_t, std::uint64_t, outgrow::manual_clock>;
  outgrow::manual_clock clock;
  ttl_cache c({.capacity = 600, .shards = 4}, clock);
  constexpr int kPutThreads = 4;
  constexpr int kOps = 30'000;
  std::atomic<std::uint64_t> puts{0};
  std::atomic<std::uint64_t> inserts{0};  // puts of a key not cached at the time
  std::atomic<std::uint64_t> erased{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kPutThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(t) * 104'729 + 3);
      for (int i = 0; i < kOps; ++i) {
        // Each thread owns the keys k with k % kPutThreads == t, so "was it cached" is
        // decided by this thread alone.
        const std::uint64_t k = (rng() % 450) * kPutThreads + static_cast<std::uint64_t>(t);
        const auto op = rng() % 100;
        if (op < 70) {
          const bool cached = c.get(k).has_value();  // an expired entry goes here
          if (op < 18) {
            c.put(k, k, std::chrono::milliseconds(5));
          } else {
            c.put(k, k);
          }
          puts.fetch_add(1);
          // Not cached: no other thread writes k, so this put surely inserted it.
          if (!cached) inserts.fetch_add(1);
        } else if (op < 75) {
          if (c.erase(k)) erased.fetch_add(1);
        } else {
          (void)c.get(k);
        }
        if (t == 0 && (i & 511) == 0) clock.advance(std::chrono::milliseconds(2));
      }
    });
  }
  for (auto& th : threads) th.join();
  // Remove what is left: each live entry is erased (true) or, if expired, counted as
  // an expiration.
  clock.advance(std::chrono::milliseconds(1));
  for (std::uint64_t k = 0; k < 450 * kPutThreads; ++k) {
    if (c.erase(k)) erased.fetch_add(1);
  }
  const auto m = c.metrics();
  CHECK(c.size() == 0);
  CHECK(m.puts == puts.load());
  CHECK(m.evictions > 0);
  CHECK(m.expirations > 0);
  // The cache is empty, so every insert left exactly once (evicted, expired or erased).
  // The inserts counted above are a lower bound (a key evicted between a thread's get
  // and its put is inserted again, uncounted), the puts an upper bound.
  CHECK(m.evictions + m.expirations + erased.load() >= inserts.load());
  CHECK(m.evictions + m.expirations + erased.load() <= puts.load());
}

TEST_CASE("metrics count puts evictions and expirations of several threads") {
  // Deterministic: 2 threads, each putting its own 1,000 keys into a 1,000-entry cache
  // with one shard, one after the other (so evictions are exact).
  writer_test_cache c({.capacity = 1000, .shards = 1});
  for (int t = 0; t < 2; ++t) {
    std::thread([&c, t] {
      for (std::uint64_t k = 0; k < 1000; ++k) {
        c.put(static_cast<std::uint64_t>(t) * 1000 + k, k);
      }
    }).join();
  }
  const auto m = c.metrics();
  CHECK(m.puts == 2000);
  CHECK(m.evictions == 1000);
  CHECK(m.expirations == 0);
  CHECK(c.size() == 1000);
}
