// black_friday — the flagship demo: a simulated shop through a Black Friday 10x spike,
// every pattern of the library working together. See shop.hpp for the model.
//
//   scripts/dev demo            # or: build the black_friday target and run it
//   black_friday --quick        # a 10x smaller run (what the test runs)
#include "shop.hpp"

#include <cstring>

#include <fmt/format.h>

int main(int argc, char** argv) {
  black_friday::options opts;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) opts.quick = true;
  }
  const black_friday::report r = black_friday::run(opts);
  fmt::print("requests {}\n", r.requests);
  for (const auto& c : r.caches) {
    fmt::print(
        "{:<14} {:<13} req {:>8} L1 {:>8}/{:>8} L2 {:>8}/{:>8} buf {:>6} loads {:>6} "
        "refresh {}\n",
        c.name, c.policy, c.requests, c.l1_hits, c.l1_misses, c.l2_hits, c.l2_misses,
        c.buffer_hits, c.db_loads, c.refreshes);
  }
  for (const auto& line : r.breaker_timeline) fmt::print("  {}\n", line);
  fmt::print("orders {} paid {} deferred {} provider calls {} rejected {}\n", r.orders,
             r.paid, r.payment_deferred, r.provider_calls, r.rejected_by_breaker);
  fmt::print("moved {:.3f} vs mod {:.3f}\n", r.reshard_moved_fraction,
             r.reshard_moved_fraction_mod);
  const auto failed = black_friday::check(r);
  for (const auto& f : failed) fmt::print("INCONSISTENT: {}\n", f);
  return failed.empty() ? 0 : 1;
}
