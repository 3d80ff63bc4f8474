// black_friday/shop.hpp — the simulated shop behind the flagship demo.
//
// A deterministic simulation (manual_clock, fixed seeds) of an online shop through a
// Black Friday 10x traffic spike. Every figure in the report is counted during the
// run; check() verifies the identities that tie the figures together (requests = hits
// + misses per tier, orders = paid + deferred, ...), which the demo prints and
// tests/examples/black_friday_test.cpp asserts.
//
// Sections (each one a pattern from the library):
//   app tier   a load balancer (least response time) across app replicas that an
//              autoscaler (HPA-style target tracking on CPU) adds and removes; a
//              replica takes 60 s to start; one replica is on a noisy host (3x slower);
//   catalogue  product pages through L1 (outgrow::cache, W-TinyLFU) -> L2 (a shared
//              concurrent_cache, as a Redis tier would be) -> database: cache-aside
//              for pages, refresh-ahead for prices, write-through for inventory,
//              write-behind for view counters;
//   orders     sharded by user over 4 shards, then a dry-run reshard to 5; "my orders"
//              reads through a read/write splitter with two replicas, one of which
//              lags badly at the peak, in read-your-writes mode (and, for comparison,
//              what eventual consistency would have served);
//   payments   behind a circuit breaker while the provider fails for a while;
//   fulfilment orders through a work_queue (2 worker threads): a flaky warehouse API
//              (retried), poison orders with an unknown address (dead-lettered, then
//              replayed once the address book is fixed).
#pragma once

#include <outgrow/autoscale/autoscaler.hpp>
#include <outgrow/autoscale/scaling_policy.hpp>
#include <outgrow/autoscale/simulator.hpp>
#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/concurrent_cache.hpp>
#include <outgrow/cache/tiered_cache.hpp>
#include <outgrow/core/backoff.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/queue/work_queue.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/load_balancer.hpp>
#include <outgrow/routing/read_write_splitter.hpp>
#include <outgrow/routing/shard_router.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

namespace black_friday {

using namespace std::chrono_literals;
using clock_type = outgrow::manual_clock;

/// How big a run is. The default takes a few seconds; `quick` (tests) is ~10x smaller.
struct options {
  std::string svg_path;  ///< where to write the replica chart; empty = no file
  bool quick = false;
  std::uint64_t seed = 42;
  /// Simulated minutes, in five equal phases: quiet, ramping up to 10x, the peak,
  /// ramping back down, quiet again (10 minutes each by default).
  int minutes = 50;
  double base_rate = 100.0;  ///< requests per simulated second before the spike
  std::size_t products = 5'000;
  std::size_t users = 20'000;
};

// ---- traffic ----------------------------------------------------------------------

/// The second at `fraction` of the run.
inline std::chrono::seconds at_fraction(const options& o, double fraction) {
  return std::chrono::seconds(static_cast<std::int64_t>(o.minutes * 60 * fraction));
}

/// Requests per second at second `t` of the Black Friday shape: quiet, a ramp to 10x,
/// a plateau, a ramp back down, quiet (each a fifth of the run).
inline double traffic_rate(const options& o, int t) {
  const double x = t / (o.minutes * 60.0 / 5.0);  // phase, 0 to 5
  double factor = 1.0;
  if (x >= 1.0 && x < 2.0) factor = 1.0 + 9.0 * (x - 1.0);
  if (x >= 2.0 && x < 3.0) factor = 10.0;
  if (x >= 3.0 && x < 4.0) factor = 10.0 - 9.0 * (x - 3.0);
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
  void store(const std::uint64_t&, const std::string&) {}  // pages are rendered, not stored
  void erase(const std::uint64_t&) {}
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
    auto& cell = (db->*Field)[id];
    cell = static_cast<std::remove_reference_t<decltype(cell)>>(v);
  }
  void store_batch(const std::vector<std::pair<std::uint64_t, std::int64_t>>& rows) {
    for (const auto& [id, v] : rows) store(id, v);
  }
  void erase(const std::uint64_t&) {}
};

// ---- report -----------------------------------------------------------------------

/// One tiered cache's figures.
struct cache_figures {
  std::string name;
  std::string policy;
  std::uint64_t requests = 0;  // reads asked of the cache
  std::uint64_t l1_hits = 0, l1_misses = 0;
  std::uint64_t l2_hits = 0, l2_misses = 0;
  std::uint64_t db_loads = 0;     // loads that reached the database
  std::uint64_t refreshes = 0;    // refresh-ahead background reloads
  std::uint64_t buffer_hits = 0;  // write-behind: answered from the write buffer
  // write-behind: writes acknowledged, superseded in the buffer, stored, batch calls
  std::uint64_t acknowledged = 0, coalesced = 0, flushed = 0, batches = 0;
};

struct report {
  options opts;
  std::string l2_name;
  // app tier
  std::uint64_t slo_violations = 0;  // requests answered slower than 500 ms
  int min_replicas = 0, peak_replicas = 0, scale_ups = 0, scale_downs = 0;
  std::vector<std::string> scaling_log;  // the first scaling decisions, with reasons
  std::vector<double> replica_series;    // replicas (ready + starting), per 15 s
  std::vector<double> demand_series;     // replicas the load needed at 100 %, per 15 s
  std::uint64_t lb_picks = 0;
  double slow_replica_share = 0.0;       // share of traffic the slow replica got
  double slow_replica_fair_share = 0.0;  // its share under round robin
  outgrow::simulation_result chart;      // for the SVG
  // replicas
  std::uint64_t my_order_reads = 0, reads_on_replicas = 0, reads_on_primary = 0;
  std::uint64_t stale_reads = 0;           // read_your_writes: must stay 0
  std::uint64_t stale_reads_eventual = 0;  // what eventual consistency would have served
  std::uint64_t lag_exclusions = 0;
  std::uint64_t fallbacks_session_ahead = 0;
  std::uint64_t requests = 0;
  std::uint64_t page_views = 0, purchases = 0;
  std::vector<cache_figures> caches;
  std::uint64_t db_reads = 0;
  std::uint64_t db_reads_without_cache = 0;  // what the reads would have cost uncached
  std::uint64_t view_total_in_db = 0;        // sum of the view counters after shutdown
  std::uint64_t stock_sold_in_db = 0;        // units the database's stock went down by
  // orders
  std::vector<std::uint64_t> orders_per_shard;
  double reshard_moved_fraction = 0.0;      // consistent 4 -> 5
  double reshard_moved_fraction_mod = 0.0;  // hash % N 4 -> 5, for comparison
  // payments
  std::uint64_t orders = 0, paid = 0, payment_deferred = 0, provider_calls = 0;
  std::uint64_t rejected_by_breaker = 0;
  std::vector<std::string> breaker_timeline;
  // fulfilment
  std::uint64_t fulfilled_first_pass = 0, retried = 0, dead_lettered = 0;
  std::uint64_t replayed = 0, fulfilled = 0, handed_back = 0, fulfilment_attempts = 0;
  std::vector<std::string> dead_letter_samples;
};

/// An order for the fulfilment queue.
struct order {
  std::uint64_t id = 0;
  std::uint64_t product = 0;
  bool poison = false;  // an address the warehouse does not know
  bool flaky = false;   // the warehouse API times out on the first attempt
  int attempts = 0;
};

// ---- the run ----------------------------------------------------------------------

/// The default L2: an in-process concurrent_cache standing in for a shared cache
/// (redis_l2.hpp has the Redis one). make<V>(name, capacity, clock) builds one tier.
struct local_l2 {
  template <class V>
  using tier = outgrow::concurrent_cache<std::uint64_t, V, clock_type>;
  static constexpr std::string_view name = "in-process concurrent_cache";
  template <class V>
  std::unique_ptr<tier<V>> make(std::string_view, std::size_t capacity,
                                const clock_type& clock) const {
    return std::make_unique<tier<V>>(outgrow::concurrent_cache_config{.capacity = capacity},
                                     clock);
  }
};

template <class L2 = local_l2>
report run(options o, const L2& l2 = {}) {
  if (o.quick) {
    o.base_rate /= 10.0;
    o.products /= 5;
  }
  report r;
  r.opts = o;
  r.l2_name = L2::name;
  clock_type clock;
  std::mt19937_64 rng(o.seed);
  boost::asio::io_context io;  // refresh-ahead reloads run here
  database db(o.products);

  // Catalogue caches: L1 per process (W-TinyLFU), L2 shared (here a concurrent_cache).
  using page_l1 = outgrow::cache<std::uint64_t, std::string, outgrow::w_tiny_lfu,
                                 outgrow::unit_weigher, clock_type>;
  using page_l2 = typename L2::template tier<std::string>;
  using num_l1 = outgrow::cache<std::uint64_t, std::int64_t, outgrow::w_tiny_lfu,
                                outgrow::unit_weigher, clock_type>;
  using num_l2 = typename L2::template tier<std::int64_t>;
  const std::size_t l1_size = std::max<std::size_t>(64, o.products / 20);  // 5 %
  const std::size_t l2_size = o.products;  // the whole catalogue fits in L2

  page_store pages_db{&db};
  column_store<&database::price_cents> prices_db{&db};
  column_store<&database::stock> stock_db{&db};
  column_store<&database::views> views_db{&db};
  page_l1 pages_l1({.capacity = l1_size}, clock);
  const std::unique_ptr<page_l2> pages_l2 =
      l2.template make<std::string>("pages", l2_size, clock);
  num_l1 prices_l1({.capacity = l1_size}, clock), stock_l1({.capacity = l1_size}, clock),
      views_l1({.capacity = l1_size}, clock);
  const std::unique_ptr<num_l2> prices_l2 =
      l2.template make<std::int64_t>("prices", l2_size, clock);
  const std::unique_ptr<num_l2> stock_l2 =
      l2.template make<std::int64_t>("stock", l2_size, clock);
  const std::unique_ptr<num_l2> views_l2 =
      l2.template make<std::int64_t>("views", l2_size, clock);

  outgrow::tiered_cache<outgrow::tiers<page_l1, page_l2>, page_store, outgrow::cache_aside,
                        clock_type>
      pages(pages_db, std::tie(pages_l1, *pages_l2), {.default_ttl = 10min}, {}, clock);
  outgrow::tiered_cache<outgrow::tiers<num_l1, num_l2>, decltype(prices_db),
                        outgrow::refresh_ahead, clock_type>
      prices(prices_db, std::tie(prices_l1, *prices_l2), {.default_ttl = 60s},
             outgrow::refresh_ahead({.refresh_fraction = 0.8}), clock);
  outgrow::tiered_cache<outgrow::tiers<num_l1, num_l2>, decltype(stock_db),
                        outgrow::write_through, clock_type>
      stock(stock_db, std::tie(stock_l1, *stock_l2), {.default_ttl = 5min}, {}, clock);
  outgrow::tiered_cache<outgrow::tiers<num_l1, num_l2>, decltype(views_db),
                        outgrow::write_behind, clock_type>
      views(views_db, std::tie(views_l1, *views_l2), {.default_ttl = 30min},
            outgrow::write_behind({.max_batch = 500, .max_delay = 5s}), clock);
  prices.start(io.get_executor());

  // Orders: sharded by user over 4 shards on a consistent-hash ring.
  using ring_shards =
      outgrow::consistent_shards<outgrow::ring_placement<outgrow::shard_id>>;
  outgrow::shard_router<std::string, ring_shards> orders(ring_shards(4));

  // Payments: the provider times out for 2 minutes at the peak (minutes 24-26 of 50);
  // 5 consecutive failures open the breaker for 30 s.
  outgrow::circuit_breaker<outgrow::consecutive_failures, clock_type> breaker(
      {.failure_threshold = 5, .open_for = 30s}, clock);
  const auto outage_from = at_fraction(o, 0.48);
  const auto outage_to = at_fraction(o, 0.52);
  breaker.on_transition([&](const outgrow::breaker_transition& t) {
    r.breaker_timeline.push_back(fmt::format(
        "t={:>6.1f}s  {} -> {}",
        std::chrono::duration<double>(t.at.time_since_epoch()).count(), t.from, t.to));
  });

  // Fulfilment: 2 worker threads; retries after 1 ms, 2 ms (a service would keep the
  // default full-jitter 100 ms .. 10 s; the demo runs in compressed time).
  std::atomic<bool> address_book_fixed{false};
  std::atomic<std::uint64_t> fulfilled{0}, attempts{0};
  outgrow::work_queue<order, outgrow::steady_clock_source, outgrow::exponential_backoff>
      fulfilment(
          {.capacity = 4096, .workers = 2, .max_attempts = 3},
          [&](order& job) {
            ++attempts;
            ++job.attempts;
            if (job.poison && !address_book_fixed.load()) {
              throw std::invalid_argument(
                  fmt::format("order {}: unknown delivery address", job.id));
            }
            if (job.flaky && job.attempts == 1) {
              throw std::runtime_error("warehouse API timed out");
            }
            ++fulfilled;
          },
          {}, outgrow::exponential_backoff{1ms, 10ms});

  // ---- app tier: replicas behind a load balancer, sized by an autoscaler ----------
  // A replica serves half the quiet-time traffic (50 requests/s in the full run, 20 ms
  // each); app 2 runs on a noisy host: 3x slower.
  const double capacity = o.base_rate / 2.0;
  constexpr auto service_time = 20ms;
  constexpr auto startup = 60s;
  struct app {
    bool slow = false;
    bool running = false;  // started (ready or still starting)
    bool ready = false;    // in the balancer
    clock_type::time_point ready_at{};
    double served_this_second = 0.0;
  };
  std::vector<app> apps(1);  // index = endpoint id; 0 unused
  auto start_app = [&](bool ready_now) {
    app a;
    a.slow = apps.size() == 2;
    a.running = true;
    a.ready = ready_now;
    a.ready_at = clock.now() + (ready_now ? 0s : startup);
    apps.push_back(a);
    return static_cast<int>(apps.size() - 1);
  };
  std::vector<int> initial;
  for (int i = 0; i < 3; ++i) initial.push_back(start_app(true));
  int ready_apps = 3;  // the balancer's endpoints
  // Least response time (p2c over latency EWMA): the noisy host gets less traffic.
  // New replicas ramp up over 30 s (slow start) instead of taking a full share cold.
  using balancer = outgrow::load_balancer<int, outgrow::least_response_time, clock_type>;
  balancer lb(initial, {.slow_start_window = 30s, .seed = o.seed}, clock);
  // Target tracking on requests/s per replica: 70 % of a replica's capacity
  // (the HPA's usual CPU target), with the HPA's default behaviour.
  outgrow::autoscaler<clock_type> scaler({.min_replicas = 3, .max_replicas = 60}, clock);
  scaler.add_policy(
      outgrow::target_tracking({.metrics = {{"rps_per_replica", 0.7 * capacity}}}));
  auto running_apps = [&] {
    int running = 0, starting = 0;
    for (const app& a : apps) {
      running += a.running ? 1 : 0;
      starting += a.running && !a.ready ? 1 : 0;
    }
    return std::pair{running, starting};
  };
  scaler.on_scale([&](const outgrow::scaling_decision& d) {
    if (r.scaling_log.size() < 4) r.scaling_log.push_back(fmt::format("{}", d));
    if (d.desired > d.current) {
      ++r.scale_ups;
      for (int i = d.current; i < d.desired; ++i) (void)start_app(false);
    } else {
      ++r.scale_downs;
      // Stop the newest replicas first: drain them from the balancer.
      int to_stop = d.current - d.desired;
      for (std::size_t id = apps.size() - 1; id > 0 && to_stop > 0; --id) {
        if (!apps[id].running) continue;
        if (apps[id].ready) {
          lb.remove(static_cast<int>(id));
          --ready_apps;
        }
        apps[id].running = apps[id].ready = false;
        --to_stop;
      }
    }
  });
  scaler.set_replicas(3, 0);
  r.min_replicas = r.peak_replicas = 3;
  r.chart.report.policy = "target tracking (70 % of a replica's capacity)";
  r.chart.capacity_per_replica = capacity;
  double served_window = 0.0;  // requests in the current 15 s evaluation period
  double fair_share_sum = 0.0;
  std::uint64_t slow_picks = 0;

  // ---- replicas: "my orders" through a read/write splitter -------------------------
  // The primary's commit position grows with every order; replica 1 applies it 300 ms
  // later, replica 2 1 s later, but 12 s later around the peak (minutes 19-31 of 50).
  using splitter =
      outgrow::read_write_splitter<std::string, outgrow::least_connections, clock_type>;
  const std::vector<outgrow::replica_spec<std::string>> db_replicas = {{"db-replica-1"},
                                                                       {"db-replica-2"}};
  splitter ryw("db-primary", db_replicas,
               {.default_consistency = outgrow::consistency::read_your_writes,
                .max_replication_lag = 5s},
               clock);
  splitter eventual(
      "db-primary", db_replicas,
      {.default_consistency = outgrow::consistency::eventual, .max_replication_lag = 5s},
      clock);
  std::vector<outgrow::session_token> ryw_sessions(o.users), eventual_sessions(o.users);
  std::vector<std::pair<clock_type::time_point, std::uint64_t>> commits;  // (time, pos)
  const auto lag_from = at_fraction(o, 0.38);
  const auto lag_to = at_fraction(o, 0.62);
  auto replica_lag = [&](const std::string& replica) -> std::chrono::nanoseconds {
    if (replica == "db-replica-1") return 300ms;
    const auto t = clock.elapsed();
    return t >= lag_from && t < lag_to ? 12s : 1s;
  };
  // What a replica has really applied now (the ground truth the splitter never sees).
  auto applied = [&](const std::string& replica) -> std::uint64_t {
    const auto horizon = clock.now() - replica_lag(replica);
    const auto it = std::upper_bound(
        commits.begin(), commits.end(), horizon,
        [](clock_type::time_point t, const auto& c) { return t < c.first; });
    return it == commits.begin() ? 0 : std::prev(it)->second;
  };
  auto read_my_orders = [&](std::uint64_t user) {
    ++r.my_order_reads;
    if (auto read = ryw.read(ryw_sessions[user])) {
      if (*read == "db-primary") {
        ++r.reads_on_primary;
      } else {
        ++r.reads_on_replicas;
        if (applied(*read) < ryw_sessions[user].last_write_position) ++r.stale_reads;
      }
      read.success();
    }
    if (auto read = eventual.read(eventual_sessions[user])) {
      if (*read != "db-primary" &&
          applied(*read) < eventual_sessions[user].last_write_position) {
        ++r.stale_reads_eventual;
      }
      read.success();
    }
  };

  const zipf popular(o.products, 0.9);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::uniform_int_distribution<std::uint64_t> any_user(0, o.users - 1);
  std::uint64_t page_reads = 0, price_reads = 0, stock_reads = 0, view_reads = 0;

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
      // The balancer picks an app replica; its latency grows with its load.
      if (auto lease = lb.pick()) {
        ++r.lb_picks;
        app& a = apps[static_cast<std::size_t>(*lease)];
        const double cap = a.slow ? capacity / 3.0 : capacity;
        const double load = ++a.served_this_second / cap;
        const auto base = a.slow ? 3 * service_time : service_time;
        const auto latency = load < 1.0
                                 ? std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       base / (1.0 - std::min(load, 0.96)))
                                 : std::chrono::nanoseconds(1s);  // over capacity: queued
        if (latency > 500ms) ++r.slo_violations;
        if (a.slow) ++slow_picks;
        fair_share_sum += 1.0 / static_cast<double>(ready_apps);
        lease.success(latency);
      }
      const std::uint64_t product = popular(rng);
      const std::uint64_t user = any_user(rng);
      if (coin(rng) < 0.10) read_my_orders(user);  // 10 % look at their orders
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
      if (coin(rng) < 0.03) {  // 3 % buy it
        ++r.purchases;
        ++stock_reads;
        const std::int64_t left = stock.get(product).value_or(0);
        stock.put(product, left - 1);  // write-through: database first
        ++r.orders;
        (void)orders.route(fmt::format("user:{}", user));
        // The order row is written on the primary; its commit position goes into the
        // user's session, and the confirmation page reads "my orders" right away.
        if (auto write = ryw.write(ryw_sessions[user])) {
          const std::uint64_t position = commits.size() + 1;
          commits.emplace_back(clock.now(), position);
          write.success(position);
          if (auto w = eventual.write(eventual_sessions[user])) w.success(position);
        }
        read_my_orders(user);
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
        // Every accepted order is fulfilled (a deferred charge is settled later).
        order job{r.orders, product, r.orders % 500 == 7, r.orders % 40 == 3, 0};
        if (!fulfilment.submit(std::move(job), fmt::format("order-{}", r.orders))) {
          throw std::runtime_error("fulfilment queue refused an order");
        }
      }
    }
    clock.advance(std::chrono::nanoseconds(1s) - step * static_cast<std::int64_t>(n));
    // Once a simulated second: replicas report replication state, replicas finish
    // starting, and every 15 s the autoscaler evaluates.
    const std::uint64_t primary_position = commits.size();
    for (splitter* sp : {&ryw, &eventual}) {
      sp->report_primary_position(primary_position);
      for (const auto& rep : db_replicas) {
        sp->report_applied(rep.connection, applied(rep.connection));
        sp->report_lag(rep.connection, replica_lag(rep.connection));
      }
    }
    for (std::size_t id = 1; id < apps.size(); ++id) {
      app& a = apps[id];
      served_window += a.served_this_second;
      a.served_this_second = 0.0;
      if (a.running && !a.ready && clock.now() >= a.ready_at) {
        a.ready = true;
        ++ready_apps;
        lb.add(static_cast<int>(id));
      }
    }
    if ((t + 1) % 15 == 0) {
      const auto [running, starting] = running_apps();
      const int ready = running - starting;
      scaler.observe("rps_per_replica", served_window / 15.0 / ready);
      scaler.set_replicas(running, starting);
      r.chart.timeline.push_back({.t = std::chrono::seconds(t + 1),
                                  .load = served_window / 15.0,
                                  .replicas = running,
                                  .ready = ready});
      r.replica_series.push_back(running);
      r.demand_series.push_back(served_window / 15.0 / capacity);
      served_window = 0.0;
      scaler.tick();
      const int now_running = running_apps().first;
      r.peak_replicas = std::max(r.peak_replicas, now_running);
      r.min_replicas = std::min(r.min_replicas, now_running);
    }
    // Merchants reprice a product, and background work runs.
    const std::uint64_t repriced = popular(rng);
    db.price_cents[repriced] -= 1;
    views.poll();
    io.restart();
    io.poll();
  }
  views.shutdown();
  prices.shutdown();

  // Fulfilment: let the workers finish, show the dead letters, fix the cause, replay.
  if (!fulfilment.wait_until_idle(60s)) throw std::runtime_error("fulfilment stuck");
  r.fulfilled_first_pass = fulfilled.load();
  const auto m = fulfilment.metrics();
  r.retried = m.retried;
  r.dead_lettered = m.dead_lettered;
  fulfilment.dead_letters().for_each([&](const auto& e) {
    if (r.dead_letter_samples.size() < 3) {
      r.dead_letter_samples.push_back(
          fmt::format("{} ({}, {} attempts)", e.error, e.error_type, e.attempts));
    }
  });
  address_book_fixed = true;
  r.replayed = fulfilment.dead_letters().replay_all(fulfilment).replayed;
  if (!fulfilment.wait_until_idle(60s)) throw std::runtime_error("fulfilment stuck");
  r.handed_back = fulfilment.stop(1s).size();
  r.fulfilled = fulfilled.load();
  r.fulfilment_attempts = attempts.load();
  io.restart();
  io.poll();

  auto figures = [](std::string name, std::string policy, const auto& c,
                    std::uint64_t reads) {
    cache_figures f;
    f.name = std::move(name);
    f.policy = std::move(policy);
    const auto s = c.metrics();
    const outgrow::cache_metrics top = c.template tier_metrics<0>();
    const outgrow::cache_metrics shared = c.template tier_metrics<1>();
    f.requests = reads;
    f.l1_hits = top.hits;
    f.l1_misses = top.misses;
    f.l2_hits = shared.hits;
    f.l2_misses = shared.misses;
    f.db_loads = s.load_successes + s.load_failures;
    f.refreshes = s.refreshes;
    f.buffer_hits = s.buffer_hits;
    f.acknowledged = s.write_behind.acknowledged;
    f.coalesced = s.write_behind.coalesced;
    f.flushed = s.write_behind.flushed;
    f.batches = s.write_behind.batches;
    return f;
  };
  r.caches.push_back(figures("product pages", "cache-aside", pages, page_reads));
  r.caches.back().db_loads = r.caches.back().l2_misses;  // cache-aside: the app loads
  r.caches.push_back(figures("prices", "refresh-ahead", prices, price_reads));
  r.caches.push_back(figures("stock", "write-through", stock, stock_reads));
  r.caches.push_back(figures("view counters", "write-behind", views, view_reads));
  std::uint64_t view_total = 0;  // what the database's counters add up to
  for (const std::uint64_t v : db.views) view_total += v;
  r.view_total_in_db = view_total;
  for (const std::int64_t left : db.stock) {
    r.stock_sold_in_db += static_cast<std::uint64_t>(1'000'000 - left);
  }
  r.db_reads = db.reads;
  r.db_reads_without_cache = page_reads + price_reads + stock_reads + view_reads;

  const auto load = orders.load_report();
  r.orders_per_shard = load.counts;
  r.reshard_moved_fraction = orders.plan(ring_shards(5)).moved_fraction;
  outgrow::shard_router<std::string, outgrow::hash_mod<>> by_mod(outgrow::hash_mod<>(4));
  r.reshard_moved_fraction_mod = by_mod.plan(outgrow::hash_mod<>(5)).moved_fraction;
  r.rejected_by_breaker = breaker.metrics().rejected;
  r.slow_replica_share = static_cast<double>(slow_picks) / static_cast<double>(r.lb_picks);
  r.slow_replica_fair_share = fair_share_sum / static_cast<double>(r.lb_picks);
  const auto split = ryw.metrics();
  r.lag_exclusions = split.lag_exclusions;
  r.fallbacks_session_ahead = split.session_ahead;
  if (!o.svg_path.empty()) {
    outgrow::write_svg_file(o.svg_path, std::span(&r.chart, 1),
                            {.title = "Black Friday: app replicas over time"});
  }
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
  const cache_figures& views = r.caches.back();
  expect(views.acknowledged == views.coalesced + views.flushed,
         fmt::format("view counter writes acknowledged ({}) = coalesced ({}) + stored ({})",
                     views.acknowledged, views.coalesced, views.flushed));
  expect(r.stock_sold_in_db == r.purchases,
         fmt::format("stock (write-through) went down by every purchase ({} of {})",
                     r.stock_sold_in_db, r.purchases));
  expect(r.view_total_in_db == r.page_views,
         fmt::format("every page view counted in the database ({} of {})",
                     r.view_total_in_db, r.page_views));
  expect(r.lb_picks == r.requests,
         fmt::format("every request got a replica ({} of {})", r.lb_picks, r.requests));
  expect(r.reads_on_replicas + r.reads_on_primary == r.my_order_reads,
         fmt::format("my-orders reads ({}) = on replicas ({}) + on the primary ({})",
                     r.my_order_reads, r.reads_on_replicas, r.reads_on_primary));
  expect(r.stale_reads == 0,
         fmt::format("read-your-writes served {} stale reads", r.stale_reads));
  expect(r.fulfilled_first_pass + r.dead_lettered == r.orders,
         fmt::format("orders ({}) = fulfilled ({}) + dead-lettered ({})", r.orders,
                     r.fulfilled_first_pass, r.dead_lettered));
  expect(r.replayed == r.dead_lettered && r.fulfilled == r.orders && r.handed_back == 0,
         fmt::format("after the replay every order is fulfilled ({} of {})", r.fulfilled,
                     r.orders));
  return failed;
}

}  // namespace black_friday
