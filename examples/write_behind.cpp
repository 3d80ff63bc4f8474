// write_behind: acknowledge writes once cached, store them later in batches. Four
// threads record users' last activity 50,000 times; the database sees a few hundred
// batch calls (repeated writes to a user coalesce), rides out a short outage with
// retries, and after shutdown() holds every user's last acknowledged value. A batch
// the database keeps refusing would go to the dead-letter hook (none here; see
// tests/cache/write_policy_test.cpp for a database that never comes back).
#include <outgrow/cache/concurrent_cache.hpp>
#include <outgrow/cache/tiered_cache.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/thread_pool.hpp>

using namespace std::chrono_literals;

namespace {

struct activity {
  std::uint64_t page = 0;
  std::uint64_t sequence = 0;  // per user, increasing
};

/// The database: thread-safe, 200 us per batch call, can be taken down.
struct activity_db {
  using key_type = std::uint64_t;
  using mapped_type = activity;

  std::mutex mutex;
  std::unordered_map<std::uint64_t, activity> rows;
  std::uint64_t batch_calls = 0;
  std::uint64_t failed_calls = 0;
  int outage_calls = 0;  // fail this many upcoming calls
  bool down = false;

  std::optional<activity> load(const std::uint64_t& user) {
    std::lock_guard lock(mutex);
    auto it = rows.find(user);
    return it == rows.end() ? std::nullopt : std::optional(it->second);
  }
  void store(const std::uint64_t& user, const activity& a) {
    store_batch(std::vector<std::pair<std::uint64_t, activity>>{{user, a}});
  }
  void store_batch(std::span<const std::pair<std::uint64_t, activity>> batch) {
    std::this_thread::sleep_for(200us);  // a round trip to the database
    std::lock_guard lock(mutex);
    ++batch_calls;
    if (down || outage_calls > 0) {
      if (outage_calls > 0) --outage_calls;
      ++failed_calls;
      throw std::runtime_error("connection refused");
    }
    for (const auto& [user, a] : batch) rows[user] = a;
  }
  void erase(const std::uint64_t& user) {
    std::lock_guard lock(mutex);
    rows.erase(user);
  }
};

using l1_t = outgrow::concurrent_cache<std::uint64_t, activity>;
using cache_t =
    outgrow::tiered_cache<outgrow::tiers<l1_t>, activity_db, outgrow::write_behind>;

}  // namespace

int main() {
  constexpr int threads = 4;
  constexpr int writes_per_thread = 12'500;
  constexpr std::uint64_t users = 2'000;

  boost::asio::thread_pool flushers(2);  // declared first: it outlives the cache
  activity_db db;
  db.outage_calls = 3;  // a short outage right at the start
  l1_t l1({.capacity = 10'000, .default_ttl = 10min});
  std::atomic<std::size_t> dead_letters{0};
  cache_t cache(db, std::tie(l1),
                {.dead_letter =
                     [&](cache_t::dead_letter batch) {
                       // In a service: persist these (a file, a queue) and replay later.
                       dead_letters += batch.writes.size();
                     }},
                // Full buffer: block (the default). Retries: 5 ms, 10 ms, ... 50 ms.
                outgrow::write_behind({.max_batch = 200,
                                       .max_delay = 20ms,
                                       .max_buffered = 5'000,
                                       .max_retries = 5,
                                       .retry_base = 5ms,
                                       .retry_cap = 50ms}));
  cache.start(flushers.get_executor());  // flushes and retries run on the pool

  // Each thread owns the users congruent to its index, so "last value" is defined.
  std::vector last(threads, std::vector<std::uint64_t>(users, 0));
  std::vector<std::thread> request_threads;
  for (int t = 0; t < threads; ++t) {
    request_threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(t) + 1);
      auto& mine = last[static_cast<std::size_t>(t)];
      for (int i = 0; i < writes_per_thread; ++i) {
        // A few active users write most often.
        const std::uint64_t slot =
            (rng() % 100 < 80) ? rng() % 50 : rng() % (users / threads);
        const std::uint64_t user = slot * threads + static_cast<std::uint64_t>(t);
        const std::uint64_t seq = mine[user] + 1;
        if (cache.put(user, activity{rng() % 1000, seq})) mine[user] = seq;
      }
    });
  }
  for (auto& t : request_threads) t.join();
  const auto before = cache.metrics().write_behind;
  cache.shutdown();  // drains: every acknowledged write is stored or dead-lettered
  const auto s = cache.metrics().write_behind;

  std::size_t lost = 0;
  for (int t = 0; t < threads; ++t) {
    for (std::uint64_t u = 0; u < users; ++u) {
      const auto expected = last[static_cast<std::size_t>(t)][u];
      if (expected == 0) continue;
      const auto row = db.load(u);
      if (!row || row->sequence != expected) ++lost;
    }
  }
  fmt::print(
      "write-behind: {} writes from {} threads, {} coalesced; {} rows stored in {} batch "
      "calls ({:.0f}x fewer calls than writes)\n",
      s.acknowledged, threads, s.coalesced, s.flushed, db.batch_calls,
      static_cast<double>(s.acknowledged) / static_cast<double>(db.batch_calls));
  fmt::print(
      "  outage: {} failed calls, {} retries, {} dead letters; {} still buffered at\n"
      "  shutdown; users whose last write is missing from the database: {}\n",
      db.failed_calls, s.retries, dead_letters.load(), before.queue_depth, lost);

  const bool ok =
      lost == 0 && dead_letters == 0 && s.flushed + s.coalesced == s.acknowledged;
  return ok ? 0 : 1;
}
