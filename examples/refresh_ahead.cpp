// refresh_ahead: keep a hot value fresh without ever making a reader wait for it. An
// exchange rate is read 20 times a second and cached for 60 s. With read_through,
// every expiry makes one reader wait for the database — and if the database is down
// at that moment, readers get errors. With refresh_ahead, once 80 % of the TTL has
// passed the next read still returns the cached rate and starts one background
// reload; the value is replaced before it expires, readers never wait after the first
// load, and a short outage goes unnoticed (a failed reload keeps the old value until
// its hard expiry, retried once a second).
//
// Ten simulated minutes, on a manual_clock; reloads are posted to an io_context that
// the loop runs after each read (in a service: cache.start(pool.get_executor()) on a
// boost::asio::thread_pool, and the default steady_clock_source).
//
// Run: build the `refresh_ahead` target and run it.
#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/tiered_cache.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

using namespace std::chrono_literals;

namespace {

/// The rates database: counts loads; down during [outage_from, outage_until).
struct rates_db {
  using key_type = std::string;
  using mapped_type = double;

  outgrow::manual_clock clock;
  outgrow::manual_clock::time_point outage_from{};
  outgrow::manual_clock::time_point outage_until{};
  int loads = 0;

  std::optional<double> load(const std::string&) {
    ++loads;
    if (clock.now() >= outage_from && clock.now() < outage_until) {
      throw std::runtime_error("rates database unavailable");
    }
    return 1.08 + 0.0001 * loads;
  }
  void store(const std::string&, const double&) {}
  void erase(const std::string&) {}
};

struct outcome {
  int reads = 0;
  int errors = 0;
  std::uint64_t waited = 0;  // reads that had to wait for the database
  int loads = 0;
  outgrow::tiered_cache_metrics stats;
};

using l1_t = outgrow::cache<std::string, double, outgrow::lru, outgrow::unit_weigher,
                            outgrow::manual_clock>;

template <class Policy>
outcome simulate(Policy policy) {
  outgrow::manual_clock clock;
  boost::asio::io_context io;
  rates_db db{clock, outgrow::manual_clock::time_point{235s},
              outgrow::manual_clock::time_point{245s}};
  l1_t l1({.capacity = 100}, clock);
  outgrow::tiered_cache<outgrow::tiers<l1_t>, rates_db, Policy, outgrow::manual_clock>
      rates(db, std::tie(l1), {.default_ttl = 60s}, policy, clock);
  rates.start(io.get_executor());
  outcome o;
  for (auto t = 0ms; t < 10min; t += 50ms) {  // 20 reads/s for 10 minutes
    ++o.reads;
    try {
      (void)rates.get("EUR/USD");
    } catch (const std::runtime_error&) {
      ++o.errors;
    }
    io.restart();
    io.poll();  // background reloads run here
    clock.advance(50ms);
  }
  rates.shutdown();
  o.stats = rates.metrics();
  o.waited = o.stats.misses;
  o.loads = db.loads;
  return o;
}

void report(std::string_view name, const outcome& o) {
  fmt::print("  {:<14} {:>6} {:>14} {:>14} {:>12} {:>10} {:>10}\n", name, o.reads, o.waited,
             o.errors, o.loads, o.stats.refreshes, o.stats.refresh_failures);
}

}  // namespace

int main() {
  const outcome plain = simulate(outgrow::read_through{});
  const outcome ahead = simulate(outgrow::refresh_ahead({.refresh_fraction = 0.8}));
  fmt::print("10 simulated minutes, 20 reads/s, TTL 60 s, database down 235-245 s\n");
  fmt::print("  {:<14} {:>6} {:>14} {:>14} {:>12} {:>10} {:>10}\n", "policy", "reads",
             "reads waiting", "reads failing", "db loads", "reloads", "failed");
  report("read_through", plain);
  report("refresh_ahead", ahead);
  fmt::print("\n  refresh_ahead: {}\n", ahead.stats);

  // read_through: a wait at every expiry, and errors while the database is down.
  // refresh_ahead: one wait (the very first read), no errors.
  const bool ok = ahead.waited == 1 && ahead.errors == 0 && plain.waited > ahead.waited &&
                  plain.errors > 0 && ahead.stats.refresh_failures > 0;
  return ok ? 0 : 1;
}
