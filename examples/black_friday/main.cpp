// black_friday — the flagship demo: a simulated shop through a Black Friday 10x spike,
// with every pattern of the library working together (see shop.hpp for the model).
// Every figure printed is counted during this run; the consistency checks at the end
// tie them together.
//
//   scripts/dev demo                   # builds and runs this
//   black_friday --quick               # a 10x smaller run (what the smoke test runs)
//   black_friday --svg replicas.svg    # where to write the replica chart
//   black_friday --seed 7              # another random day
//   black_friday --redis 127.0.0.1:6379  # L2 on a real Redis (a 10x smaller run: every
//                                        # L1 miss is a network round trip)
#include "shop.hpp"
#if defined(OUTGROW_DEMO_WITH_REDIS)
#include "redis_l2.hpp"
#endif

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <fmt/format.h>

namespace {

double pct(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

void print(const black_friday::report& r) {
  const auto& o = r.opts;
  fmt::print("outgrow black_friday: a shop through a 10x traffic spike\n");
  fmt::print("{} simulated minutes, {:.0f} -> {:.0f} requests/s, seed {}{}\n\n", o.minutes,
             black_friday::traffic_rate(o, 0),
             black_friday::traffic_rate(o, o.minutes * 30), o.seed,
             o.quick ? " (quick run)" : "");

  fmt::print("1. App replicas: load balancer (least response time) + autoscaler\n");
  fmt::print(
      "   requests {}, replicas {} -> peak {} -> {} ({} scale-ups, {} scale-downs)\n",
      r.requests, r.replica_series.empty() ? 0 : static_cast<int>(r.replica_series[0]),
      r.peak_replicas,
      r.replica_series.empty() ? 0 : static_cast<int>(r.replica_series.back()), r.scale_ups,
      r.scale_downs);
  fmt::print("   over the 500 ms SLO: {} requests ({:.2f} %), while new replicas started\n",
             r.slo_violations, pct(r.slo_violations, r.requests));
  fmt::print(
      "   noisy host (app 2, 3x slower): {:.1f} % of requests; round robin: {:.1f} %\n",
      100.0 * r.slow_replica_share, 100.0 * r.slow_replica_fair_share);
  double top = 1.0;
  for (double v : r.demand_series) top = std::max(top, v);
  for (double v : r.replica_series) top = std::max(top, v);
  fmt::print("   replicas    {}\n", outgrow::sparkline(r.replica_series, 60, top));
  fmt::print("   needed@100% {}\n", outgrow::sparkline(r.demand_series, 60, top));
  for (const auto& d : r.scaling_log) fmt::print("   {}\n", d);
  if (!o.svg_path.empty()) fmt::print("   chart: {}\n", o.svg_path);

  fmt::print("\n2. Catalogue: L1 in process (W-TinyLFU) -> L2 {} -> database\n", r.l2_name);
  fmt::print("   {:<14} {:<13} {:>9} {:>8} {:>8} {:>9} {:>9}\n", "cache", "policy", "reads",
             "L1 hit", "L2 hit", "from DB", "reloads");
  for (const auto& c : r.caches) {
    fmt::print("   {:<14} {:<13} {:>9} {:>7.1f}% {:>7.1f}% {:>9} {:>9}\n", c.name, c.policy,
               c.requests, pct(c.l1_hits, c.requests), pct(c.l2_hits, c.l1_misses),
               c.db_loads - c.refreshes, c.refreshes);
  }
  fmt::print("   database reads {} instead of {}: {:.1f} % saved by the caches\n",
             r.db_reads, r.db_reads_without_cache,
             100.0 - pct(r.db_reads, r.db_reads_without_cache));
  const auto& views = r.caches.back();
  fmt::print(
      "   view counters (write-behind): {} increments acknowledged, {} coalesced in\n"
      "   the buffer, {} rows stored in {} batch calls; the database counts {} views\n",
      views.acknowledged, views.coalesced, views.flushed, views.batches,
      r.view_total_in_db);

  fmt::print("\n3. Orders sharded by user over 4 shards (consistent hashing)\n");
  fmt::print("   orders per shard: {}\n", fmt::join(r.orders_per_shard, " / "));
  fmt::print("   dry-run reshard 4 -> 5: {:.1f} % of users move (hash % N: {:.1f} %)\n",
             100.0 * r.reshard_moved_fraction, 100.0 * r.reshard_moved_fraction_mod);

  fmt::print("\n4. \"My orders\" through the read/write splitter (read-your-writes)\n");
  fmt::print("   reads {}: {} on replicas ({:.1f} %), {} on the primary\n",
             r.my_order_reads, r.reads_on_replicas,
             pct(r.reads_on_replicas, r.my_order_reads), r.reads_on_primary);
  fmt::print("   stale reads: {} (eventual consistency would have served {})\n",
             r.stale_reads, r.stale_reads_eventual);
  fmt::print(
      "   replica 2 excluded for lag {} times; reads sent to the primary because the\n"
      "   session was ahead of every replica: {}\n",
      r.lag_exclusions, r.fallbacks_session_ahead);

  fmt::print("\n5. Payments behind a circuit breaker (provider times out for 2 minutes)\n");
  for (const auto& line : r.breaker_timeline) fmt::print("   {}\n", line);
  fmt::print("   orders {}: paid {}, deferred {} ({} without calling the provider)\n",
             r.orders, r.paid, r.payment_deferred, r.rejected_by_breaker);

  fmt::print(
      "\n6. Fulfilment through the work queue (2 workers, 3 attempts, dead letters)\n");
  fmt::print(
      "   fulfilled {} of {} ({} retries after warehouse timeouts), dead-lettered {}\n",
      r.fulfilled_first_pass, r.orders, r.retried, r.dead_lettered);
  for (const auto& d : r.dead_letter_samples) fmt::print("   dead letter: {}\n", d);
  fmt::print("   address book fixed, dead letters replayed: {}; fulfilled {} of {}\n",
             r.replayed, r.fulfilled, r.orders);
}

}  // namespace

int main(int argc, char** argv) {
  black_friday::options opts;
  std::string redis;
  opts.svg_path =
      (std::filesystem::temp_directory_path() / "outgrow_black_friday.svg").string();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      opts.quick = true;
    } else if (arg == "--svg" && i + 1 < argc) {
      opts.svg_path = argv[++i];
    } else if (arg == "--redis" && i + 1 < argc) {
      redis = argv[++i];
    } else if (arg == "--seed" && i + 1 < argc) {
      opts.seed = std::strtoull(argv[++i], nullptr, 10);
    } else {
      fmt::print(
          stderr,
          "usage: black_friday [--quick] [--svg PATH] [--seed N] [--redis HOST:PORT]\n");
      return 2;
    }
  }
  black_friday::report r;
  if (redis.empty()) {
    r = black_friday::run(opts);
  } else {
#if defined(OUTGROW_DEMO_WITH_REDIS)
    const auto colon = redis.rfind(':');
    black_friday::redis_l2 l2{
        redis.substr(0, colon),
        colon == std::string::npos ? 6379 : std::atoi(redis.substr(colon + 1).c_str())};
    opts.quick = true;
    r = black_friday::run(opts, l2);
#else
    fmt::print(stderr, "--redis: this build has no hiredis (outgrow::redis)\n");
    return 2;
#endif
  }
  print(r);
  const auto failed = black_friday::check(r);
  fmt::print("\nconsistency checks: {}\n", failed.empty() ? "all passed" : "FAILED");
  for (const auto& f : failed) fmt::print("   failed: {}\n", f);
  return failed.empty() ? 0 : 1;
}
