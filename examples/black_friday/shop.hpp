// black_friday/shop.hpp — the simulated shop behind the flagship demo.
//
// A deterministic simulation (manual_clock, fixed seeds) of an online shop through a
// Black Friday 10x traffic spike. Every figure in the report is counted during the
// run; check() verifies the identities that tie the figures together (requests = hits
// + misses per tier, orders = paid + deferred, ...), which the demo prints and
// tests/examples/black_friday_test.cpp asserts.
//
// Sections (each one a pattern from the library):
//   catalogue  product pages through L1 (outgrow::cache, W-TinyLFU) -> L2 (a shared
//              concurrent_cache, as a Redis tier would be) -> database: cache-aside
//              for pages, refresh-ahead for prices, write-through for inventory,
//              write-behind for view counters;
//   orders     sharded by user over 4 shards, then a dry-run reshard to 5;
//   payments   behind a circuit breaker while the provider fails for a while.
#pragma once

#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/concurrent_cache.hpp>
#include <outgrow/cache/tiered_cache.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/shard_router.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

namespace black_friday {

using namespace std::chrono_literals;
using clock_type = outgrow::manual_clock;

/// How big a run is. The default takes a few seconds; `quick` (tests) is ~10x smaller.
struct options {
  bool quick = false;
  std::uint64_t seed = 42;
  /// Simulated minutes: 10 quiet, 10 ramping up to 10x, 10 at the peak, 10 back down.
  int minutes = 40;
  double base_rate = 100.0;  ///< requests per simulated second before the spike
  std::size_t products = 5'000;
  std::size_t users = 20'000;
};

// ---- traffic ----------------------------------------------------------------------

/// Requests per second at second `t` of the Black Friday shape: quiet, a 10-minute
/// ramp to 10x, a plateau, a ramp back down (each a quarter of the run).
inline double traffic_rate(const options& o, int t) {
  const double quarter = o.minutes * 60.0 / 4.0;
  const double x = t / quarter;
  double factor = 1.0;
  if (x >= 1.0 && x < 2.0) factor = 1.0 + 9.0 * (x - 1.0);
  if (x >= 2.0 && x < 3.0) factor = 10.0;
  if (x >= 3.0) factor = 10.0 - 9.0 * std::min(1.0, x - 3.0);
  return o.base_rate * factor;
}

/// Zipf-distributed ids in [0, n): a few products get most of the views.
class zipf {
 public:
  zipf(std::size_t n, double s) {
    cdf_.reserve(n);
    double sum = 0.0;
    for (std::size_t i = 1; i <= n; ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i), s);
      cdf_.push_back(sum);
    }
    for (double& c : cdf_) c /= sum;
  }
  template <class Rng>
  std::uint64_t operator()(Rng& rng) const {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    return static_cast<std::uint64_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) -
                                      cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

// ---- the database -----------------------------------------------------------------

/// The shop's database: every read and write that reaches it is counted.
struct database {
  std::vector<std::int64_t> price_cents;
  std::vector<std::int64_t> stock;
  std::vector<std::uint64_t> views;
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;
  std::uint64_t write_calls = 0;  // batched writes count once here

  explicit database(std::size_t products)
      : price_cents(products), stock(products, 1'000'000), views(products, 0) {
    for (std::size_t i = 0; i < products; ++i) {
      price_cents[i] = 499 + static_cast<std::int64_t>((i * 7919) % 20'000);
    }
  }
};

/// Product pages (rendered HTML in a real shop; a string here).
struct page_store {
  using key_type = std::uint64_t;
  using mapped_type = std::string;
  database* db;
  std::optional<std::string> load(const std::uint64_t& id) {
    ++db->reads;
    return fmt::format("<h1>product {}</h1>", id);
  }
  void store(const std::uint64_t&, const std::string&) { ++db->writes; }
  void erase(const std::uint64_t&) { ++db->writes; }
};

/// Prices, stock and view counters: one row field each.
template <auto Field>
struct column_store {
  using key_type = std::uint64_t;
  using mapped_type = std::int64_t;
  database* db;
  std::optional<std::int64_t> load(const std::uint64_t& id) {
    ++db->reads;
    return static_cast<std::int64_t>((db->*Field)[id]);
  }
  void store(const std::uint64_t& id, const std::int64_t& v) {
    ++db->writes;
    ++db->write_calls;
    (db->*Field)[id] = static_cast<std::remove_reference_t<decltype((db->*Field)[id])>>(v);
  }
  void store_batch(const std::vector<std::pair<std::uint64_t, std::int64_t>>& rows) {
    ++db->write_calls;
    for (const auto& [id, v] : rows) {
      ++db->writes;
      (db->*Field)[id] =
          static_cast<std::remove_reference_t<decltype((db->*Field)[id])>>(v);
    }
  }
  void erase(const std::uint64_t&) { ++db->writes; }
};

// ---- report -----------------------------------------------------------------------

/// One tiered cache's figures.
struct cache_figures {
  std::string name;
  std::string policy;
  std::uint64_t requests = 0;  // reads asked of the cache
  std::uint64_t l1_hits = 0, l1_misses = 0;
  std::uint64_t l2_hits = 0, l2_misses = 0;
  std::uint64_t db_loads = 0;   // loads that reached the database
  std::uint64_t writes = 0;     // puts acknowledged
  std::uint64_t db_writes = 0;  // rows the database received for this cache
  std::uint64_t db_write_calls = 0;
  std::uint64_t refreshes = 0;    // refresh-ahead background reloads
  std::uint64_t buffer_hits = 0;  // write-behind: answered from the write buffer
};

struct report {
  options opts;
  std::uint64_t requests = 0;
  std::uint64_t page_views = 0, purchases = 0;
  std::vector<cache_figures> caches;
  std::uint64_t db_reads = 0;
  std::uint64_t db_reads_without_cache = 0;  // what the reads would have cost uncached
  // orders
  std::vector<std::uint64_t> orders_per_shard;
  double reshard_moved_fraction = 0.0;      // consistent 4 -> 5
  double reshard_moved_fraction_mod = 0.0;  // hash % N 4 -> 5, for comparison
  // payments
  std::uint64_t orders = 0, paid = 0, payment_deferred = 0, provider_calls = 0;
  std::uint64_t rejected_by_breaker = 0;
  std::vector<std::string> breaker_timeline;
};

// ---- the run ----------------------------------------------------------------------

inline report run(options o) {
  if (o.quick) {
    o.base_rate /= 10.0;
    o.products /= 5;
  }
  report r;
  r.opts = o;
  clock_type clock;
  std::mt19937_64 rng(o.seed);
  boost::asio::io_context io;  // refresh-ahead reloads run here
  database db(o.products);

  // Catalogue caches: L1 per process (W-TinyLFU), L2 shared (here a concurrent_cache).
  using page_l1 = outgrow::cache<std::uint64_t, std::string, outgrow::w_tiny_lfu,
                                 outgrow::unit_weigher, clock_type>;
  using page_l2 = outgrow::concurrent_cache<std::uint64_t, std::string, clock_type>;
  using num_l1 = outgrow::cache<std::uint64_t, std::int64_t, outgrow::w_tiny_lfu,
                                outgrow::unit_weigher, clock_type>;
  using num_l2 = outgrow::concurrent_cache<std::uint64_t, std::int64_t, clock_type>;
  const std::size_t l1_size = std::max<std::size_t>(64, o.products / 20);  // 5 %
  const std::size_t l2_size = o.products;  // the whole catalogue fits in L2

  page_store pages_db{&db};
  column_store<&database::price_cents> prices_db{&db};
  column_store<&database::stock> stock_db{&db};
  column_store<&database::views> views_db{&db};
  page_l1 pages_l1({.capacity = l1_size}, clock);
  page_l2 pages_l2({.capacity = l2_size}, clock);
  num_l1 prices_l1({.capacity = l1_size}, clock), stock_l1({.capacity = l1_size}, clock),
      views_l1({.capacity = l1_size}, clock);
  num_l2 prices_l2({.capacity = l2_size}, clock), stock_l2({.capacity = l2_size}, clock),
      views_l2({.capacity = l2_size}, clock);

  outgrow::tiered_cache<outgrow::tiers<page_l1, page_l2>, page_store, outgrow::cache_aside,
                        clock_type>
      pages(pages_db, std::tie(pages_l1, pages_l2), {.ttl = 10min}, {}, clock);
  outgrow::tiered_cache<outgrow::tiers<num_l1, num_l2>, decltype(prices_db),
                        outgrow::refresh_ahead, clock_type>
      prices(prices_db, std::tie(prices_l1, prices_l2), {.ttl = 60s},
             outgrow::refresh_ahead({.refresh_fraction = 0.8}), clock);
  outgrow::tiered_cache<outgrow::tiers<num_l1, num_l2>, decltype(stock_db),
                        outgrow::write_through, clock_type>
      stock(stock_db, std::tie(stock_l1, stock_l2), {.ttl = 5min}, {}, clock);
  outgrow::tiered_cache<outgrow::tiers<num_l1, num_l2>, decltype(views_db),
                        outgrow::write_behind, clock_type>
      views(views_db, std::tie(views_l1, views_l2), {.ttl = 30min},
            outgrow::write_behind({.max_batch = 500, .max_delay = 5s}), clock);
  prices.start(io.get_executor());

  // Orders: sharded by user over 4 shards on a consistent-hash ring.
  using ring_shards =
      outgrow::consistent_shards<outgrow::ring_placement<outgrow::shard_id>>;
  outgrow::shard_router<std::string, ring_shards> orders(ring_shards(4));

  // Payments: the provider times out between 22 and 24 minutes into the run (at the
  // peak); 5 consecutive failures open the breaker for 30 s.
  outgrow::circuit_breaker<outgrow::consecutive_failures, clock_type> breaker(
      {.failure_threshold = 5, .open_for = 30s}, clock);
  const auto outage_from = std::chrono::seconds(o.minutes * 60 * 22 / 40);
  const auto outage_to = std::chrono::seconds(o.minutes * 60 * 24 / 40);
  breaker.on_transition([&](const outgrow::breaker_transition& t) {
    r.breaker_timeline.push_back(fmt::format(
        "t={:>6.1f}s  {} -> {}",
        std::chrono::duration<double>(t.at.time_since_epoch()).count(), t.from, t.to));
  });

  const zipf popular(o.products, 0.9);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::uniform_int_distribution<std::uint64_t> any_user(0, o.users - 1);
  std::uint64_t page_reads = 0, price_reads = 0, stock_reads = 0, view_reads = 0;
  std::uint64_t stock_writes = 0, view_writes = 0;

  double carry = 0.0;
  const int seconds = o.minutes * 60;
  for (int t = 0; t < seconds; ++t) {
    carry += traffic_rate(o, t);
    const auto n = static_cast<std::uint64_t>(carry);
    carry -= static_cast<double>(n);
    const auto step = std::chrono::nanoseconds(1s) / static_cast<std::int64_t>(n + 1);
    for (std::uint64_t i = 0; i < n; ++i) {
      clock.advance(step);
      ++r.requests;
      const std::uint64_t product = popular(rng);
      const std::uint64_t user = any_user(rng);
      // Every request shows a product page: cache-aside, spelled out.
      ++r.page_views;
      ++page_reads;
      if (!pages.get(product)) {
        if (auto page = pages_db.load(product)) pages.put(product, *page);
      }
      ++price_reads;
      (void)prices.get(product);
      ++view_reads;
      const std::int64_t seen = views.get(product).value_or(0);
      views.put(product, seen + 1);
      ++view_writes;
      if (coin(rng) < 0.03) {  // 3 % buy it
        ++r.purchases;
        ++stock_reads;
        const std::int64_t left = stock.get(product).value_or(0);
        stock.put(product, left - 1);  // write-through: database first
        ++stock_writes;
        ++r.orders;
        (void)orders.route(fmt::format("user:{}", user));
        const bool provider_down =
            clock.elapsed() >= outage_from && clock.elapsed() < outage_to;
        const bool charged = breaker.call(
            [&] {
              ++r.provider_calls;
              if (provider_down) throw std::runtime_error("payment provider timeout");
              return true;
            },
            [&](std::exception_ptr) { return false; });
        (charged ? r.paid : r.payment_deferred)++;
      }
    }
    clock.advance(std::chrono::nanoseconds(1s) - step * static_cast<std::int64_t>(n));
    // Once a simulated second: merchants reprice a product, and background work runs.
    const std::uint64_t repriced = popular(rng);
    db.price_cents[repriced] -= 1;
    ++db.writes;
    views.poll();
    io.restart();
    io.poll();
  }
  views.shutdown();
  prices.shutdown();
  io.restart();
  io.poll();

  auto figures = [](std::string name, std::string policy, const auto& c,
                    std::uint64_t reads, std::uint64_t writes) {
    cache_figures f;
    f.name = std::move(name);
    f.policy = std::move(policy);
    const auto s = c.stats();
    const outgrow::cache_stats l1 = c.template tier_stats<0>();
    const outgrow::cache_stats l2 = c.template tier_stats<1>();
    f.requests = reads;
    f.l1_hits = l1.hits;
    f.l1_misses = l1.misses;
    f.l2_hits = l2.hits;
    f.l2_misses = l2.misses;
    f.db_loads = s.load_successes + s.load_failures;
    f.writes = writes;
    f.refreshes = s.refreshes;
    f.buffer_hits = s.buffer_hits;
    return f;
  };
  r.caches.push_back(figures("product pages", "cache-aside", pages, page_reads, 0));
  r.caches.back().db_loads = r.caches.back().l2_misses;  // cache-aside: the app loads
  r.caches.push_back(figures("prices", "refresh-ahead", prices, price_reads, 0));
  r.caches.push_back(figures("stock", "write-through", stock, stock_reads, stock_writes));
  r.caches.push_back(
      figures("view counters", "write-behind", views, view_reads, view_writes));
  r.caches.back().db_writes = db.views.empty() ? 0 : 0;
  std::uint64_t view_rows = 0;
  for (const std::uint64_t v : db.views) view_rows += v;
  r.caches.back().db_writes = view_rows;
  r.db_reads = db.reads;
  r.db_reads_without_cache = page_reads + price_reads + stock_reads + view_reads;

  const auto load = orders.load_report();
  r.orders_per_shard = load.counts;
  r.reshard_moved_fraction = orders.plan(ring_shards(5)).moved_fraction;
  outgrow::shard_router<std::string, outgrow::hash_mod<>> by_mod(outgrow::hash_mod<>(4));
  r.reshard_moved_fraction_mod = by_mod.plan(outgrow::hash_mod<>(5)).moved_fraction;
  r.rejected_by_breaker = breaker.metrics().rejected;
  return r;
}

/// The identities that tie the report's figures together; each failure is described.
inline std::vector<std::string> check(const report& r) {
  std::vector<std::string> failed;
  auto expect = [&](bool ok, std::string what) {
    if (!ok) failed.push_back(std::move(what));
  };
  for (const cache_figures& c : r.caches) {
    // Every read is answered by L1, by L2, from the write-behind buffer, or by a load.
    // (Refresh-ahead reloads are loads no request waited for.)
    expect(c.requests + c.refreshes == c.l1_hits + c.l2_hits + c.buffer_hits + c.db_loads,
           fmt::format("{}: requests ({}) + refreshes ({}) = L1 hits ({}) + L2 hits ({}) + "
                       "buffer hits ({}) + database loads ({})",
                       c.name, c.requests, c.refreshes, c.l1_hits, c.l2_hits, c.buffer_hits,
                       c.db_loads));
    // What L1 missed, L2 was asked (plus the re-check before each load).
    expect(c.l2_hits + c.l2_misses == c.l1_misses,
           fmt::format("{}: L2 lookups ({}) = L1 misses ({})", c.name,
                       c.l2_hits + c.l2_misses, c.l1_misses));
  }
  expect(r.paid + r.payment_deferred == r.orders, "orders = paid + deferred");
  return failed;
}

}  // namespace black_friday
