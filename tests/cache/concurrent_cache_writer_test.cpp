// concurrent_cache's writer side (issue 20: put that scales from 1 to 2 threads): the
// 4-byte writer lock (detail::cc_spin_mutex), the shard header that keeps everything a
// write changes in one cache line, and the per-thread puts / evictions / expirations
// counters that replaced the per-shard ones.
#include <outgrow/cache/concurrent_cache.hpp>
#include <outgrow/cache/detail/concurrent_cache_shard.hpp>
#include <outgrow/core/clock.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
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
  // Everything a put, erase or eviction writes in the header, and what lookups read.
  CHECK(at(s->mutex) + sizeof(s->mutex) <= 64);
  CHECK(at(s->size) < 64);
  CHECK(at(s->fresh) < 64);
  CHECK(at(s->free_head) < 64);
  CHECK(at(s->head) < 64);
  CHECK(at(s->tail) < 64);
  CHECK(at(s->hand) < 64);
  CHECK(at(s->ttl_entries) < 64);
  CHECK(at(s->index) < 64);
  CHECK(at(s->chunks) < 64);
  CHECK(at(s->slots) < 64);
  CHECK(at(s->chunk_count) < 64);
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
