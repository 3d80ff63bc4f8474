// cache_aside: the textbook caching pattern and its arithmetic. The application asks
// the cache first; on a miss it queries the database and puts the row in the cache;
// on an update it writes the database and invalidates the cache. With a 99 % hit rate,
// 1000 requests/s become 10 database queries/s — here measured on a simulated minute
// of traffic, not assumed.
//
// Tiers: an outgrow::concurrent_cache as L1 (shared by request threads). The clock is
// a manual_clock so that the "minute" takes milliseconds; use the default
// steady_clock_source in a service.
//
// Run: build the `cache_aside` target and run it.
#include <outgrow/cache/concurrent_cache.hpp>
#include <outgrow/cache/tiered_cache.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

using namespace std::chrono_literals;

namespace {

struct product {
  std::uint64_t id = 0;
  std::string name;
  std::uint64_t price_cents = 0;
};

/// The database: counts the queries that reach it.
struct product_db {
  using key_type = std::uint64_t;
  using mapped_type = product;
  std::uint64_t queries = 0;
  std::uint64_t updates = 0;

  std::optional<product> load(const std::uint64_t& id) {
    ++queries;
    if (id >= 10'000) return std::nullopt;  // no such product
    return product{id, fmt::format("product {}", id), 100 + id % 9'900};
  }
  void store(const std::uint64_t&, const product&) { ++updates; }
  void erase(const std::uint64_t&) { ++updates; }
};

/// Zipf-distributed product ids (a few products get most views), seeded.
class zipf {
 public:
  zipf(std::uint64_t n, double s, std::uint64_t seed) : rng_(seed) {
    cdf_.reserve(n);
    double sum = 0.0;
    for (std::uint64_t i = 1; i <= n; ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i), s);
      cdf_.push_back(sum);
    }
    for (auto& c : cdf_) c /= sum;
  }
  std::uint64_t next() {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    return static_cast<std::uint64_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) -
                                      cdf_.begin());
  }

 private:
  std::mt19937_64 rng_;
  std::vector<double> cdf_;
};

}  // namespace

int main() {
  using l1_t = outgrow::concurrent_cache<std::uint64_t, product, outgrow::manual_clock>;
  using cache_t = outgrow::tiered_cache<outgrow::tiers<l1_t>, product_db,
                                        outgrow::cache_aside, outgrow::manual_clock>;
  outgrow::manual_clock clock;
  l1_t l1({.capacity = 20'000}, clock);  // room for the whole catalogue
  product_db db;
  cache_t cache(db, std::tie(l1), {.default_ttl = 10min}, {}, clock);

  // The cache-aside read, spelled out. (cache.get_or_load(id) does the same in one
  // call and also makes concurrent misses of one key share one query.)
  auto view_product = [&](std::uint64_t id) -> std::optional<product> {
    if (auto hit = cache.get(id)) return hit;
    std::optional<product> row = db.load(id);
    if (row) cache.put(id, *row);
    return row;
  };
  // The cache-aside write: database first, then drop the cached copy.
  auto change_price = [&](std::uint64_t id, std::uint64_t cents) {
    auto row = db.load(id).value();
    row.price_cents = cents;
    db.store(id, row);
    cache.invalidate(id);
  };

  // Simulated minutes at 1000 requests/s over a 10,000-product catalogue (Zipf 1.3:
  // a few products get most views), with a price change every second. Five minutes
  // warm the cache up; the sixth is measured.
  constexpr int rate = 1000;
  zipf popularity(10'000, 1.3, 42);
  auto run_minute = [&] {
    for (int second = 0; second < 60; ++second) {
      for (int r = 0; r < rate; ++r) {
        (void)view_product(popularity.next());
        clock.advance(1ms);
      }
      change_price(popularity.next(), 999);
    }
  };
  for (int minute = 0; minute < 5; ++minute) run_minute();  // warm-up
  const auto warm = cache.metrics();
  const auto queries_before = db.queries;
  run_minute();
  const auto s = cache.metrics();
  const auto requests = s.requests() - warm.requests();
  const auto hits = s.hits - warm.hits;
  const double hit_rate = static_cast<double>(hits) / static_cast<double>(requests);
  const auto read_queries = (s.misses - warm.misses);
  const double per_second = static_cast<double>(read_queries) / 60.0;

  fmt::print("cache-aside over one simulated minute (after 5 warm-up minutes)\n");
  fmt::print("  requests          {:>8}  ({} /s)\n", requests, rate);
  fmt::print("  cache hits        {:>8}  hit rate {:.2f} %\n", hits, 100.0 * hit_rate);
  fmt::print("  database reads    {:>8}  = {:.1f} /s\n", read_queries, per_second);
  fmt::print("  the arithmetic:   {} req/s x (1 - {:.4f}) = {:.1f} DB queries/s\n", rate,
             hit_rate, rate * (1.0 - hit_rate));
  fmt::print("  (db.queries also counts the 60 reads made by price updates: {})\n",
             db.queries - queries_before);
  fmt::print("\n  hit rate -> DB queries/s at {} req/s\n", rate);
  for (double h : {0.90, 0.99, 0.999}) {
    fmt::print("    {:>6.1f} %  -> {:>6.1f}\n", 100.0 * h, rate * (1.0 - h));
  }
  fmt::print("\n  overall: {}\n  L1:      {}\n", s, cache.tier_metrics<0>());

  // The books must balance: every miss of the measured minute reached the database.
  const bool ok = read_queries + 60 == db.queries - queries_before && hit_rate > 0.98;
  return ok ? 0 : 1;
}
