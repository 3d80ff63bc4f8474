// load_balancer: spread requests over service instances, eject a failing one, drain one
// for a deploy, and watch what the balancer did. Simulated time (manual_clock), so the
// 30 s ejection passes instantly.
#include <outgrow/routing/load_balancer.hpp>

#include <chrono>
#include <map>
#include <random>
#include <string>

#include <fmt/format.h>

using namespace std::chrono_literals;

namespace {

template <class Balancer>
std::map<std::string, int> send(Balancer& lb, int requests, const std::string& broken = "",
                                std::mt19937* rng = nullptr) {
  std::map<std::string, int> served;
  for (int i = 0; i < requests; ++i) {
    auto lease = lb.pick();
    if (!lease) continue;
    ++served[*lease];
    if (*lease == broken) {
      lease.failure();  // e.g. HTTP 503
    } else {
      // A latency the caller measured; feeds the per-endpoint EWMA.
      lease.success(std::chrono::milliseconds(rng ? 2 + (*rng)() % 3 : 2));
    }
  }
  return served;
}

void show(std::string_view title, const std::map<std::string, int>& served) {
  fmt::print("  {:<44}", title);
  for (const auto& [name, n] : served) fmt::print(" {}={:<4}", name, n);
  fmt::print("\n");
}

}  // namespace

int main() {
  std::mt19937 rng(7);

  // 1. Smooth weighted round robin: nginx's interleaving, exact shares.
  outgrow::load_balancer<std::string, outgrow::weighted_round_robin> wrr(
      {{"a", 5.0}, {"b", 1.0}, {"c", 1.0}});
  std::string order;
  for (int i = 0; i < 14; ++i) order += *wrr.pick();
  fmt::print("smooth weighted round robin, weights 5:1:1 -> {}\n", order);

  // 2. Power of two choices with passive health checks, on simulated time.
  outgrow::manual_clock clock;
  outgrow::load_balancer<std::string, outgrow::power_of_two_choices, outgrow::manual_clock>
      lb({"app-1", "app-2", "app-3", "app-4"},
         {.consecutive_failures = 5,  // Envoy's outlier detection defaults
          .base_ejection_time = 30s,
          .max_ejection_fraction = 0.25,
          .seed = 42},
         clock);

  fmt::print("\npower of two choices over 4 instances:\n");
  show("1000 requests, all healthy:", send(lb, 1000, "", &rng));

  show("1000 requests, app-3 answers 503:", send(lb, 1000, "app-3", &rng));
  fmt::print("  app-3 is now {} (after 5 failures in a row)\n", lb.status("app-3"));
  show("1000 more requests:", send(lb, 1000, "app-3", &rng));

  clock.advance(30s);
  show("30 s later, app-3 fixed, 1000 requests:", send(lb, 1000, "", &rng));
  fmt::print("  app-3 is {} again\n", lb.status("app-3"));

  // 3. Drain an instance for a deploy: no new requests, in-flight ones finish.
  auto in_flight = lb.pick_if([](const std::string& e) { return e == "app-1"; });
  lb.drain("app-1");
  show("app-1 draining, 1000 requests:", send(lb, 1000, "", &rng));
  fmt::print("  app-1 still has {} request in flight\n", lb.in_flight("app-1"));
  in_flight.success();
  lb.remove("app-1");
  lb.add("app-5");
  show("app-1 replaced by app-5, 1000 requests:", send(lb, 1000, "", &rng));

  // 4. Key hash: the same user always lands on the same instance.
  outgrow::load_balancer<std::string, outgrow::key_hash> sticky(
      {"cache-1", "cache-2", "cache-3"});
  fmt::print("\nkey hash: user:42 -> {}, user:42 again -> {}, user:7 -> {}\n",
             *sticky.pick("user:42"), *sticky.pick("user:42"), *sticky.pick("user:7"));

  fmt::print("\n{}\n", lb.metrics());
  for (const auto& e : lb.endpoints()) {
    fmt::print("  {:<6} {:<10} picks={:<5} failures={:<3} ejections={} latency_ewma={}\n",
               e.endpoint, to_string(e.status), e.picks, e.failures, e.ejections,
               std::chrono::duration_cast<std::chrono::microseconds>(e.latency_ewma));
  }
  return 0;
}
