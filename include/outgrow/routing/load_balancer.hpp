// outgrow/routing/load_balancer.hpp — spread requests over a set of equivalent endpoints.
//
// What: the textbook's load balancer as a library a client embeds: a Policy picks one
// endpoint per request, `pick()` returns an RAII lease that counts the request in
// flight and records its outcome and latency, and health tracking keeps failing
// endpoints out of rotation (passive outlier ejection, active checks on a Boost.Asio
// timer, slow start on return, a panic mode when too few are healthy). Membership can
// change while other threads pick. Use it in front of any pool of interchangeable
// backends (service instances, read replicas — see read_write_splitter.hpp).
//
//   outgrow::load_balancer<std::string, outgrow::power_of_two_choices> lb(
//       {{"app-1", 1.0}, {"app-2", 1.0}, {"app-3", 2.0}}, {.consecutive_failures = 5});
//   if (auto lease = lb.pick()) {                // false only when nothing is routable
//     auto reply = http_get(*lease, "/orders");  // *lease: the chosen endpoint
//     reply.ok() ? lease.success() : lease.failure();
//   }                                            // dropped without outcome = abandoned
//   lb.add("app-4");  lb.drain("app-1");         // from any thread, while others pick
//   lb.start_health_checks(io.get_executor(),
//                          [](const std::string& e) { return ping(e); });
//   fmt::print("{}\n", lb.metrics());
//
// Policies (the Policy template parameter; concept `balancing_policy`, open: see
// "Writing a policy" below):
//   round_robin           each routable endpoint in turn (weights ignored)
//   weighted_round_robin  nginx's smooth WRR, pick for pick: weights {5,1,1} give
//                         a a b a c a a, {1,3} b a b b (see "Smooth WRR" below)
//   least_connections     fewest in-flight leases per unit of weight (O(N) scan, ties
//                         rotate)
//   key_hash (ip_hash)    pick(key): a consistent-hash ring (ring_placement from
//                         hash_ring.hpp, 160 points per unit of weight as nginx `hash ...
//                         consistent`) over the routable endpoints; an endpoint leaving
//                         rotation moves only its own keys. The balancer checks the
//                         ring's limits itself (at least one point per endpoint, at most
//                         8388608 in all), so errors name load_balancer and a failed
//                         add()/set_weight() changes nothing
//   least_response_time   power of two choices on EWMA latency × (in flight + 1) /
//                         weight (Finagle/Linkerd "p2c + EWMA"); endpoints without a
//                         recent sample score 0 so they get probed
//   power_of_two_choices  two distinct random endpoints, the one with fewer in-flight
//                         leases per weight (Envoy's default "least request"), on
//                         approximate loads across threads (see "Per-thread stripes")
//   random_choice, weighted_random   uniform / weight-proportional random
// Per-thread stripes (issue 20: picks that scale with cores): no pick writes a cache
// line another thread's picks write. Each picking thread has a stripe of its own (up to
// the hardware threads rounded up to a power of two, 2 to 8; more threads share them):
// its own round-robin cursor, random stream and pick counters, and per endpoint its own
// lease counters (detail/balancer_endpoint.hpp). A pick plus its lease's release is two
// atomic adds on the thread's own lines; metrics() and least_connections sum the
// stripes, p2c and LRT re-read another thread's count of an endpoint only every
// 256 x E picks (E endpoints). What that means for each policy:
//   round_robin, WRR  each thread goes round (or through nginx's sequence) on its own
//                     cursor; the first thread to pick starts at endpoint 0 and gets the
//                     exact single-threaded sequence, the thread on stripe k starts k
//                     places on. Over any window each endpoint's count stays within one
//                     pick per picking thread of an even (weighted) share, where the old
//                     shared cursor let racing picks draw the same slot.
//   random draws      config.seed seeds the first thread's stream (single-threaded runs
//                     with a seed are reproducible, as before); each further stripe
//                     draws its own stream derived from the seed.
//   in-flight counts  least_connections, in_flight() and metrics(): exact sums of the
//                     stripes (relaxed loads; never a snapshot across endpoints).
//                     p2c and LRT (policies declaring approximate_load): approximate —
//                     the picking thread's own leases exactly, other threads' as its
//                     stripe last read them, re-read when that copy is 256 x E of its
//                     picks old over E routable endpoints (detail::
//                     lb_load_refresh_interval; a first read is always fresh): other
//                     threads' leases are seen at most 256 x E - 1 of this thread's
//                     picks late (2,047 with 8 endpoints), and each thread makes at
//                     most one such cross-core read per 256 picks whatever E is (with a
//                     fixed 256 picks, 8 endpoints cost 8 per 256, and p2c on two cores
//                     of an AMD EPYC VM picked 1.04x one thread's total; 1.78-1.80x now).
//                     With one picking thread every read is exact (the other stripes
//                     are zero), so single-threaded picks are unchanged; with more,
//                     each thread balances its own leases exactly, so their sum stays
//                     balanced, and the copies correct for imbalance between threads
//                     (one holding long leases, or pinning with pick_if). Why: reading
//                     the stripe another core has just written costs a cache miss,
//                     which made exact p2c on two threads slower than on one, and two
//                     random choices degrade gracefully on old loads (Mitzenmacher,
//                     "How useful is old information?", 2000); pick_if's fallback under
//                     p2c/LRT reads the same view. Caveat: the staleness is counted in
//                     the reader's picks, not in time: a thread that picks once a
//                     second from 8 endpoints may act on other threads' leases half an
//                     hour old.
//                     least_connections stays exact: taking the minimum over all on old
//                     loads herds the threads' picks onto the endpoint that looked least
//                     loaded at the last refresh (the same paper), and it is the policy
//                     for few long leases (HAProxy leastconn for SQL/LDAP sessions, the
//                     replicas of read_write_splitter) where one lease more decides the
//                     pick. So it scales less from a second core; p2c is the
//                     least-request policy that scales (issue 20's 2-thread goal).
// Unset seed = a random seed per balancer.
//
// Writing a policy: a Policy is any default-constructible type with a `name` and a
// noexcept pick over a read-only balancer_view of the current snapshot's routable
// endpoints (in_flight, weight, effective_weight, load, latency, usable, hash) and a
// pick_context (the thread's cursor, its seeded random stream, the key of pick(key)),
// returning an index in [0, view.size()) (size() >= 1). The smallest one:
//
//   struct first_usable {  // the first endpoint not ejected or failing checks
//     static constexpr std::string_view name = "first_usable";
//     std::size_t pick(const outgrow::balancer_view& v, outgrow::pick_context&) const
//         noexcept {
//       for (std::size_t i = 0; i < v.size(); ++i) if (v.usable(i)) return i;
//       return 0;  // panic mode: none usable, all routable
//     }
//   };
//   outgrow::load_balancer<std::string, first_usable> lb({"a", "b"});
//
// A policy that precomputes per snapshot (as weighted_round_robin's table, key_hash's
// ring) declares `struct table` (or a type alias), `void build(table&, const
// balancer_view&, const load_balancer_config&) const` — run under the writer lock on
// every membership or health change — and picks with `pick(view, const table&, ctx)`.
// Optional `static constexpr bool` declarations (default false) say what it reads, for
// the configuration checks and the engine: draws_random (reads config.seed),
// ramps_weights (slow start applies), measures_latency (every lease's latency is
// measured; reads latency_stale_after), load_aware (pick_if's fallback takes the least
// loaded accepted endpoint, not the next one), approximate_load (the view's in-flight
// counts may be approximate: see "Per-thread stripes"), keyed (pick(key) exists,
// endpoints are hashed with the Hasher, reads ring_vnodes; a static table_cost(weight,
// others, config, owner) may bound the table). Calls are static: no virtual call on
// the pick path. The built-in policies (detail/balancer_policies.hpp) are written the
// same way.
//
// Smooth WRR (weighted_round_robin) reproduces nginx's ngx_http_upstream_get_peer: each
// pick adds every weight to its current weight, takes the largest current weight (the
// first endpoint on ties, in insertion order) and subtracts the total from it. nginx
// takes integers; our weights are doubles, so each snapshot first turns them into the
// smallest integers with exactly the same ratios (each weight read as its shortest
// decimal: {2.5, 0.5, 0.5} gives the sequence of {5, 1, 1}, {0.1, 0.3} that of {1, 3};
// slow-start steps keep exact ratios too; detail/wrr_smooth.hpp says how). A period up
// to 65,536 picks is precomputed, and a pick is one table load at the thread's cursor. A
// longer period (weights such as {100000, 1, 1} or {0.00001, 1}, or results of
// arithmetic such as 0.1 + 0.2, which have no short decimal) is not tabulated: every
// pick runs nginx's O(N) step on the snapshot's current weights under a spin lock shared
// by the picks only (about 7 ns plus 1 ns per endpoint, where a table pick costs the
// same as round_robin).
// Differences from nginx: (1) nginx's passive health is not modelled: nginx lowers a
// failed peer's effective_weight by weight / max_fails (raising it by 1 per pick) and
// skips it after max_fails failures within fail_timeout; here failures do not change
// the sequence, and consecutive_failures eject the endpoint (Envoy's way, below).
// endpoint_metrics::effective_weight is the slow-start weight, not nginx's. (2) A
// membership or health change publishes a new snapshot: the sequence continues at each
// thread's cursor (modulo the new period) or, for long periods, restarts from zero
// current weights, where nginx carries each peer's current_weight over. (3) Threads
// walk the table each on its own cursor (above); nginx serializes picks on one.
//
// Leases: pick() counts the lease in flight; success()/failure() record the outcome
// (and the latency: measured with the Clock when config.measure_latency is set or the
// policy is least_response_time, or passed explicitly as success(latency)). A lease
// dropped without an outcome counts as *abandoned*: neither success nor failure (no
// effect on health or latency). Leases must not outlive the balancer; they may outlive
// their endpoint's removal (or its replacement by add() of the same endpoint), and
// their outcomes still count: metrics() totals cover every endpoint ever added, the
// removed ones' share is removed_endpoints(), so once no lease is in flight
// picks == successes + failures + abandoned exactly, whatever the churn. (A removed
// endpoint's state lives on, shared, while a lease or an old snapshot holds it; its
// last reference folds its counts into the removed-endpoints totals.) Health is not
// updated by a removed endpoint's outcomes.
//
// Health (defaults from Envoy's outlier detection and HAProxy's checks):
//   passive  `consecutive_failures` (5, Envoy's consecutive_5xx) failures in a row eject
//            an endpoint for base_ejection_time (30 s) × its number of ejections, capped
//            at max_ejection_time (300 s); as Envoy's ejectTimeBackoff, the multiplier
//            grows while multiplier × base < max + base (to 11 with the defaults). A
//            success, an ejection and a return to service reset the run of failures.
//            At most max_ejection_fraction (10 %) of the endpoints are ejected at once
//            (Envoy's 100·(ejected + 1)/N <= max_ejection_percent), but always at least
//            one; refused ejections count as `ejections_overflow` (Envoy's
//            ejections_overflow). max_ejection_fraction = 0 is a config_error rather
//            than "at least one" (turn ejection off with consecutive_failures = 0).
//            Differences from Envoy, deliberate: (1) Envoy ejects at least one host only
//            with always_eject_one_host (default false since it was added; before, the
//            docs promised "at least one host regardless"): with fewer than 10
//            endpoints, Envoy's default 10 % never ejects, which would turn passive
//            health off for the small pools a client-side balancer usually has. (2) There
//            is no `interval` sweep (Envoy: 10 s): an endpoint returns exactly when its
//            ejection ends (noticed by the next pick or refresh()), not at the next sweep,
//            and the multiplier decays by one per base_ejection_time (30 s) spent in
//            service instead of one per sweep, so an endpoint that fails again soon after
//            returning stays out longer than under Envoy. Picks do all the work lazily;
//            there is no timer to run the sweep on.
//   active   start_health_checks(executor, check) runs check(endpoint) -> bool for every
//            endpoint each health_check_interval (2 s) on a steady_timer;
//            unhealthy_threshold (3) failed checks in a row take it out, healthy_threshold
//            (2) passes bring it back (HAProxy fall 3 / rise 2). report_health() pushes a
//            result; run_health_checks() runs one round synchronously.
//   slow start  a returning or newly added endpoint's weight ramps from
//            slow_start_min_weight (10 %, Envoy's min_weight_percent) to 100 % over
//            slow_start_window (0 = off, as nginx and Envoy) in slow_start_steps steps
//            (Envoy's ramp, aggression 1.0, is continuous: max(10 %, t / window)).
//            Applies to the load- and weight-driven policies (not to round_robin,
//            random_choice, or key_hash, whose ring keeps configured weights so keys do
//            not move during the ramp: for those a slow_start_window is a config_error).
//   panic    when fewer than panic_threshold (50 %, Envoy) of the endpoints in rotation
//            are healthy (strictly fewer: 2 of 4 is not panic, as Envoy), balance across
//            all of them, ejected and unhealthy included.
// Endpoints taken out by drain() (or set_excluded(), used by read_write_splitter for
// lagging replicas) leave rotation without counting as unhealthy.
//
// Configuration (load_balancer_config) is checked whole by the constructor: out of
// range, max_ejection_time below base_ejection_time, or a non-default value of a field
// the policy or the rest of the configuration never reads (ring_vnodes outside
// key_hash, seed under round_robin, slow_start_steps without a slow_start_window, ...)
// throws config_error "load_balancer: <field> must be ..., got ...". Nothing is clamped.
//
// Thread-safety: every member function from any thread. Picks read an immutable
// membership snapshot (core/snapshot.hpp published<T>), never lock (but for a WRR
// period too long to tabulate, where picks share a spin lock) and write only the
// picking thread's stripe (above); a lease may end on another thread. Membership and
// health changes build a new snapshot under a writer mutex and publish it. Time-based
// changes (an ejection ending, a slow-start step) are applied by the first pick that
// notices them, with try_lock: a pick never waits for a writer. The last reference to a
// removed endpoint (its last lease ending, or the last old snapshot listing it being
// freed) folds its counters into the removed-endpoints totals under a small mutex of
// their own, once per removed endpoint.
// Complexity: pick O(1) for round robin, WRR (O(N) when its period exceeds 65,536),
// p2c, LRT, random and key_hash; O(log N) weighted_random; O(N) least_connections.
// Membership/health changes O(N) plus the policy's table (WRR period <= 65536 entries
// built in O(period × N), ring 160 × weight points per endpoint).
// No allocation on the pick path in steady state.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/any_io_executor.hpp>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/detail/periodic_task.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/core/snapshot.hpp>
#include <outgrow/routing/detail/balancer_config.hpp>
#include <outgrow/routing/detail/balancer_endpoint.hpp>
#include <outgrow/routing/detail/balancer_engine.hpp>
#include <outgrow/routing/detail/balancer_policies.hpp>
#include <outgrow/routing/detail/outlier_detection.hpp>
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow {

// ---- configuration, metrics ----------------------------------------------------------

/// Every field is checked by the constructor (load_balancer::validate): a value out of
/// range, or a non-default value of a field that the chosen policy or the rest of the
/// configuration never reads (as Caffeine's builder does: ring_vnodes under
/// round_robin, slow_start_steps with slow_start_window = 0, ...), throws config_error.
/// Nothing is clamped silently. Accepted although redundant: measure_latency = true
/// under least_response_time (which measures anyway, so the value holds), and the
/// active-health fields, which report_health() and start_health_checks() read at run
/// time whatever the configuration.
struct load_balancer_config {
  // passive health (outlier detection)
  /// Failures in a row that eject an endpoint: 5, Envoy's consecutive_5xx. 0 = off
  /// (then the three ejection fields below must keep their defaults).
  std::uint32_t consecutive_failures = 5;
  /// First ejection's length; the n-th lasts n × this: 30 s, Envoy. (0, 24 h]
  std::chrono::nanoseconds base_ejection_time = std::chrono::seconds{30};
  /// Cap on one ejection: 300 s, Envoy. [base_ejection_time, 24 h]
  std::chrono::nanoseconds max_ejection_time = std::chrono::seconds{300};
  /// Largest share of endpoints ejected at once: 10 %, Envoy. (0, 1]. At least one
  /// endpoint may always be ejected (see "Health" in the header: small pools would
  /// otherwise have no passive health), so 0 is rejected rather than read as one.
  double max_ejection_fraction = 0.1;
  // active health
  /// Between rounds of active checks: 2 s, HAProxy `inter`. (0, 24 h]
  std::chrono::nanoseconds health_check_interval = std::chrono::seconds{2};
  /// Passed checks in a row that bring an endpoint back: 2, HAProxy `rise`. [1, 1000]
  std::uint32_t healthy_threshold = 2;
  /// Failed checks in a row that take it out: 3, HAProxy `fall`. [1, 1000]
  std::uint32_t unhealthy_threshold = 3;
  // slow start
  /// Ramp-up time for returning/new endpoints; 0 = off (nginx, Envoy). [0, 24 h]. Must
  /// stay 0 under round_robin, random_choice and key_hash (no weights to ramp).
  std::chrono::nanoseconds slow_start_window{0};
  /// Weight share at the start of the ramp: 0.1, Envoy's min_weight_percent. (0, 1]
  /// (default only when slow_start_window is 0, as slow_start_steps)
  double slow_start_min_weight = 0.1;
  /// Steps of the ramp (each step republishes the snapshot): 10. [1, 1000]
  std::uint32_t slow_start_steps = 10;
  // panic
  /// Below this share of healthy endpoints, balance across all: 0.5, Envoy. 0 = never.
  /// [0, 1]
  double panic_threshold = 0.5;
  // latency
  /// Measure every lease's latency with the Clock (two clock reads per lease). Always on
  /// for least_response_time; otherwise pass latencies to success(latency).
  bool measure_latency = false;
  /// Weight of a new latency sample in the EWMA: 0.2 (outgrow's choice). (0, 1]
  double ewma_weight = 0.2;
  /// least_response_time: an endpoint with no sample for this long scores as unknown
  /// (and gets probed): 10 s, Finagle's peak-EWMA decay time. (0, 24 h];
  /// least_response_time only.
  std::chrono::nanoseconds latency_stale_after = std::chrono::seconds{10};
  // key_hash
  /// Ring points per unit of weight: 160, nginx `hash ... consistent`. [1, 100000];
  /// key_hash only. The ring holds at most 8388608 points (ring_vnodes × total weight,
  /// each endpoint rounded to a whole number of points, at least 1): checked by the
  /// constructor, add() and set_weight().
  std::uint32_t ring_vnodes = 160;
  /// Seed of the random stream (random_choice, weighted_random, p2c, LRT, and key_hash's
  /// pick() without a key); unset = a random seed per balancer (resolve_seed), set =
  /// reproducible picks. Must stay unset under round_robin, weighted_round_robin,
  /// least_connections and any policy that does not declare draws_random.
  std::optional<std::uint64_t> seed{};
};

enum class endpoint_status : std::uint8_t {
  available = 0,
  slow_start = 1,  ///< available, weight still ramping up
  ejected = 2,     ///< passive health: too many consecutive failures
  unhealthy = 3,   ///< active health checks failing
  draining = 4,    ///< drain(): no new leases, in-flight ones finish
  excluded = 5,    ///< set_excluded(): held out by the owner (e.g. replication lag)
};

[[nodiscard]] constexpr std::string_view to_string(endpoint_status s) noexcept {
  switch (s) {
    case endpoint_status::available:
      return "available";
    case endpoint_status::slow_start:
      return "slow_start";
    case endpoint_status::ejected:
      return "ejected";
    case endpoint_status::unhealthy:
      return "unhealthy";
    case endpoint_status::draining:
      return "draining";
    case endpoint_status::excluded:
      return "excluded";
  }
  return "unknown";
}

/// Balancer-wide counters and the current health picture. The counters include every
/// endpoint ever added: removed ones too, with the outcomes of their leases that end
/// after the removal (see removed_endpoints()), so once no lease is in flight
/// picks == successes + failures + abandoned exactly. successes is derived (picks −
/// failures − abandoned − in flight), so under concurrent traffic it may lag by a few.
struct load_balancer_metrics {
  static constexpr std::string_view metrics_name = "load_balancer_metrics";
  std::uint64_t picks = 0;
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;
  std::uint64_t abandoned = 0;  ///< leases dropped without an outcome
  std::uint64_t in_flight = 0;
  std::uint64_t no_endpoint = 0;  ///< picks that found nothing routable
  std::uint64_t panic_picks = 0;  ///< picks made in panic mode
  std::uint64_t ejections = 0;
  std::uint64_t ejections_overflow = 0;  ///< ejections refused by max_ejection_fraction
  std::uint64_t returns = 0;             ///< ejected/unhealthy endpoints back in rotation
  std::size_t endpoints = 0;
  std::size_t routable = 0;  ///< endpoints picks currently choose from
  std::size_t ejected = 0;
  std::size_t unhealthy = 0;
  std::size_t draining = 0;
  std::size_t excluded = 0;
  bool panic = false;

  template <class F>
  void for_each_metric(F&& f) const {
    f("picks", picks);
    f("successes", successes);
    f("failures", failures);
    f("abandoned", abandoned);
    f("in_flight", in_flight);
    f("no_endpoint", no_endpoint);
    f("panic_picks", panic_picks);
    f("ejections", ejections);
    f("ejections_overflow", ejections_overflow);
    f("returns", returns);
    f("endpoints", endpoints);
    f("routable", routable);
    f("ejected", ejected);
    f("unhealthy", unhealthy);
    f("draining", draining);
    f("excluded", excluded);
    f("panic", panic);
  }
};

/// The removed endpoints' share of load_balancer_metrics: every pick of an endpoint made
/// before or after its remove() (a racing pick may still draw it), with the outcomes of
/// leases that outlived the removal. An endpoint removed and added again counts here for
/// its first life and in endpoints() for its second.
struct removed_endpoint_metrics {
  static constexpr std::string_view metrics_name = "removed_endpoint_metrics";
  std::uint64_t picks = 0;
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;
  std::uint64_t abandoned = 0;
  std::uint64_t in_flight = 0;  ///< leases still held on removed endpoints
  std::size_t lingering = 0;    ///< removed endpoints still held by a lease or snapshot

  template <class F>
  void for_each_metric(F&& f) const {
    f("picks", picks);
    f("successes", successes);
    f("failures", failures);
    f("abandoned", abandoned);
    f("in_flight", in_flight);
    f("lingering", lingering);
  }
};

/// One endpoint's state and counters (see load_balancer_metrics for how successes is
/// derived).
template <class Endpoint>
struct endpoint_metrics {
  static constexpr std::string_view metrics_name = "endpoint_metrics";
  Endpoint endpoint;
  endpoint_status status = endpoint_status::available;
  double weight = 1.0;
  double effective_weight = 1.0;  ///< weight as picks see it (slow start applied)
  std::uint64_t in_flight = 0;
  std::uint64_t picks = 0;
  std::uint64_t successes = 0;
  std::uint64_t failures = 0;
  std::uint64_t abandoned = 0;
  std::uint64_t ejections = 0;
  std::chrono::nanoseconds latency_ewma{0};  ///< 0 = no sample yet

  template <class F>
  void for_each_metric(F&& f) const {
    if constexpr (fmt::is_formattable<Endpoint>::value) f("endpoint", endpoint);
    f("status", to_string(status));
    f("weight", weight);
    f("effective_weight", effective_weight);
    f("in_flight", in_flight);
    f("picks", picks);
    f("successes", successes);
    f("failures", failures);
    f("abandoned", abandoned);
    f("ejections", ejections);
    f("latency_ewma", latency_ewma);
  }
};

// ---- the balancer ---------------------------------------------------------------------

template <class Endpoint, balancing_policy Policy = round_robin,
          clock_source Clock = steady_clock_source, class Hasher = xxh3_hasher>
requires std::copyable<Endpoint> && std::equality_comparable<Endpoint>
class load_balancer {
  using engine_type =
      detail::balancer_engine<Endpoint, Policy, Clock, Hasher, load_balancer_config>;
  using state = typename engine_type::state;
  using outcome = detail::lb_outcome;
  static constexpr bool keyed = detail::lb_policy_traits<Policy>::keyed;

 public:
  using endpoint_type = Endpoint;
  using policy_type = Policy;
  using clock_type = Clock;

  /// One picked endpoint, counted in flight until success(), failure() or abandon() —
  /// or destruction, which counts as abandoned. Converts to false when pick() found no
  /// routable endpoint. Move-only; must not outlive the balancer.
  class lease {
   public:
    lease() noexcept = default;
    lease(lease&& o) noexcept
        : lb_(std::exchange(o.lb_, nullptr)),
          state_(std::exchange(o.state_, nullptr)),
          started_ns_(o.started_ns_),
          stripe_(o.stripe_) {}
    lease& operator=(lease&& o) noexcept {
      if (this != &o) {
        finish(outcome::abandoned, -1);
        lb_ = std::exchange(o.lb_, nullptr);
        state_ = std::exchange(o.state_, nullptr);
        started_ns_ = o.started_ns_;
        stripe_ = o.stripe_;
      }
      return *this;
    }
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease() { finish(outcome::abandoned, -1); }

    explicit operator bool() const noexcept { return state_ != nullptr; }
    /// The chosen endpoint. Precondition: *this is true.
    [[nodiscard]] const Endpoint& endpoint() const noexcept { return state_->endpoint; }
    [[nodiscard]] const Endpoint& operator*() const noexcept { return state_->endpoint; }
    [[nodiscard]] const Endpoint* operator->() const noexcept { return &state_->endpoint; }

    void success() noexcept { finish(outcome::success, -1); }
    void failure() noexcept { finish(outcome::failure, -1); }
    /// With a latency measured by the caller (used instead of the Clock's).
    void success(std::chrono::nanoseconds latency) noexcept {
      finish(outcome::success, std::max<std::int64_t>(0, latency.count()));
    }
    void failure(std::chrono::nanoseconds latency) noexcept {
      finish(outcome::failure, std::max<std::int64_t>(0, latency.count()));
    }
    /// Neither success nor failure (what dropping the lease does).
    void abandon() noexcept { finish(outcome::abandoned, -1); }

   private:
    friend class load_balancer;
    lease(engine_type* lb, detail::lb_pick<state> p) noexcept
        : lb_(p.state != nullptr ? lb : nullptr),
          state_(p.state),
          started_ns_(p.now),
          stripe_(p.stripe) {}
    void finish(outcome o, std::int64_t latency_ns) noexcept {
      if (state_ == nullptr) return;
      state* s = std::exchange(state_, nullptr);
      lb_->record(*s, o, latency_ns, started_ns_, stripe_);
      s->release(stripe_);  // on the stripe that started it (see detail/balancer_endpoint)
    }
    engine_type* lb_ = nullptr;
    state* state_ = nullptr;
    std::int64_t started_ns_ = 0;
    std::uint32_t stripe_ = 0;
  };

  /// Braced endpoint lists: load_balancer<std::string>({"a", "b"}).
  /// Throws: config_error as the range constructor.
  template <class T>
  requires std::convertible_to<const T&, Endpoint>
  explicit load_balancer(std::initializer_list<T> endpoints,
                         load_balancer_config config = {}, Clock clock = {},
                         Hasher hasher = {})
      : load_balancer(to_weighted_nodes<Endpoint>(endpoints), config, std::move(clock),
                      std::move(hasher)) {}

  /// Weighted braced lists: load_balancer<std::string>({{"a", 5}, {"b", 1}}).
  /// Throws: config_error as the range constructor.
  explicit load_balancer(std::initializer_list<weighted_node<Endpoint>> endpoints,
                         load_balancer_config config = {}, Clock clock = {},
                         Hasher hasher = {})
      : load_balancer(std::vector<weighted_node<Endpoint>>(endpoints), config,
                      std::move(clock), std::move(hasher)) {}

  /// Any range of endpoints or of weighted_node<Endpoint>. It may be empty (a front
  /// whose instances register later): pick() is false, counted as no_endpoint, until
  /// add(), as after removing the last endpoint.
  /// Throws: config_error for a weight outside (0, 1e6] (key_hash: see ring_vnodes), a
  /// duplicate endpoint or a bad config field (see validate()).
  template <class R>
  requires node_range<R, Endpoint> || weighted_node_range<R, Endpoint>
  explicit load_balancer(const R& endpoints, load_balancer_config config = {},
                         Clock clock = {}, Hasher hasher = {})
      : engine_(to_weighted_nodes<Endpoint>(endpoints), config, std::move(clock),
                std::move(hasher)) {}

  load_balancer(const load_balancer&) = delete;
  load_balancer& operator=(const load_balancer&) = delete;
  ~load_balancer() { stop_health_checks(); }

  // ---- picking --------------------------------------------------------------------

  /// A lease on the endpoint the policy picks; false when nothing is routable. For
  /// key_hash, pick() uses a random key. Never throws and never waits for a writer
  /// (right after a publish, the first local() of a thread copies the new snapshot
  /// under published<>'s brief internal lock).
  [[nodiscard]] lease pick() noexcept {
    return lease(&engine_, engine_.pick_impl(accept_all{}, std::nullopt));
  }

  /// key_hash (a keyed policy): the owner of `key` on the ring of routable endpoints.
  template <class Key>
  requires keyed && key_hasher<Hasher, Key>
  [[nodiscard]] lease pick(const Key& key) noexcept {
    return pick_hash(static_cast<std::uint64_t>(engine_.hasher_(key)));
  }
  /// key_hash with a precomputed 64-bit key hash.
  [[nodiscard]] lease pick_hash(std::uint64_t hash) noexcept
  requires keyed
  {
    return lease(&engine_, engine_.pick_impl(accept_all{}, hash));
  }

  /// Like pick(), restricted to endpoints for which accept(endpoint) is true: the
  /// policy's choice when accepted, else the best accepted endpoint by the policy's
  /// load measure (the fewest in flight per weight for a load_aware policy:
  /// least_connections, p2c and LRT; the next accepted one after the choice otherwise).
  /// False when none is accepted. read_write_splitter uses it for read-your-writes.
  /// `accept` must be cheap and must not itself pick from a balancer (it runs while
  /// this pick holds its snapshot).
  template <class Accept>
  requires std::predicate<Accept&, const Endpoint&>
  [[nodiscard]] lease pick_if(Accept&& accept) noexcept(
      std::is_nothrow_invocable_v<Accept&, const Endpoint&>) {
    return lease(&engine_, engine_.pick_impl(accept, std::nullopt));
  }

  // ---- membership (any thread; picks continue meanwhile) ---------------------------

  /// Adds an endpoint (slow start applies if configured).
  /// Throws: config_error if `endpoint` is a member or `weight` is outside (0, 1e6]
  /// (key_hash: see ring_vnodes); nothing changes then.
  void add(const Endpoint& endpoint, double weight = 1.0) { engine_.add(endpoint, weight); }

  /// Removes an endpoint at once; its outstanding leases stay valid and finish
  /// normally, their outcomes counted in metrics() (see removed_endpoints()).
  /// Throws: config_error if `endpoint` is not a member.
  void remove(const Endpoint& endpoint) { engine_.remove(endpoint); }

  /// Takes an endpoint out of rotation without removing it: in-flight leases finish,
  /// no new ones start (see in_flight(endpoint) before remove()). undrain() undoes it.
  /// Throws: config_error if `endpoint` is not a member.
  void drain(const Endpoint& endpoint) {
    engine_.set_flag(endpoint, &state::draining, true, "drain");
  }
  /// Throws: config_error if `endpoint` is not a member.
  void undrain(const Endpoint& endpoint) {
    engine_.set_flag(endpoint, &state::draining, false, "undrain");
  }

  /// Holds an endpoint out of rotation (true) or lets it back (false) for reasons of the
  /// caller's (read_write_splitter: replication lag). Not counted as unhealthy.
  /// Throws: config_error if `endpoint` is not a member.
  void set_excluded(const Endpoint& endpoint, bool excluded) {
    engine_.set_flag(endpoint, &state::excluded, excluded, "set_excluded");
  }

  /// Throws: config_error if `endpoint` is not a member or `weight` is outside
  /// (0, 1e6] (key_hash: see ring_vnodes); nothing changes then.
  void set_weight(const Endpoint& endpoint, double weight) {
    engine_.set_weight(endpoint, weight);
  }

  [[nodiscard]] bool contains(const Endpoint& endpoint) const {
    return engine_.contains(endpoint);
  }
  [[nodiscard]] std::size_t size() const { return engine_.size(); }
  /// Number of endpoints picks currently choose from (no lock).
  [[nodiscard]] std::size_t routable() const {
    return engine_.current_.local().pool.routable.size();
  }
  /// True when the current snapshot is in panic mode (no lock).
  [[nodiscard]] bool panic() const { return engine_.current_.local().pool.panic; }

  /// Leases of `endpoint` in flight (0 for unknown endpoints).
  [[nodiscard]] std::uint64_t in_flight(const Endpoint& endpoint) const {
    return engine_.in_flight(endpoint);
  }

  // ---- health ---------------------------------------------------------------------

  /// One active health-check result for `endpoint` (ignored for unknown endpoints).
  void report_health(const Endpoint& endpoint, bool healthy) {
    engine_.report_health(endpoint, healthy);
  }

  /// Runs check(endpoint) -> bool once for every endpoint (outside the balancer's
  /// lock; an exception counts as a failed check) and applies the results.
  template <class Check>
  requires std::predicate<Check&, const Endpoint&>
  void run_health_checks(Check&& check) {
    engine_.run_health_checks(check);
  }

  /// Runs run_health_checks(check) every config.health_check_interval on a
  /// steady_timer of `executor` until stop_health_checks() (or destruction). The
  /// executor's context must outlive the balancer or stop_health_checks(). Replaces a
  /// previous schedule.
  template <class Check>
  requires std::predicate<Check&, const Endpoint&>
  void start_health_checks(boost::asio::any_io_executor executor, Check check) {
    stop_health_checks();
    std::lock_guard lock(checks_mutex_);
    checks_.emplace(
        std::move(executor), engine_.config_.health_check_interval,
        [this, check = std::move(check)]() mutable { run_health_checks(check); });
  }

  /// Stops the schedule and waits for a round in progress. Not from inside a check.
  void stop_health_checks() {
    std::lock_guard lock(checks_mutex_);
    checks_.reset();
  }

  /// Applies time-based changes due now (ejections ending, slow-start steps). Picks do
  /// this on their own; call it when there is no traffic to notice.
  void refresh() { engine_.refresh(); }

  // ---- observation ----------------------------------------------------------------

  /// Totals over every endpoint ever added (removed ones included: see
  /// load_balancer_metrics).
  [[nodiscard]] load_balancer_metrics metrics() const {
    return engine_.template metrics<load_balancer_metrics, removed_endpoint_metrics,
                                    endpoint_status>();
  }

  /// The removed endpoints' counters (included in metrics()): picks and outcomes of
  /// endpoints no longer members, including leases that ended after the removal.
  [[nodiscard]] removed_endpoint_metrics removed_endpoints() const {
    return engine_.template removed_endpoints<removed_endpoint_metrics>();
  }

  /// Per-endpoint state and counters of the members, in insertion order.
  [[nodiscard]] std::vector<endpoint_metrics<Endpoint>> endpoints() const {
    return engine_.template endpoints<endpoint_metrics<Endpoint>, endpoint_status>();
  }

  /// The current status of one endpoint.
  /// Throws: config_error if `endpoint` is not a member.
  [[nodiscard]] endpoint_status status(const Endpoint& endpoint) const {
    return engine_.template status<endpoint_status>(endpoint);
  }

  [[nodiscard]] const load_balancer_config& config() const noexcept {
    return engine_.config_;
  }
  [[nodiscard]] const Clock& clock() const noexcept { return engine_.clock_; }

  /// Checks `c` for this balancer (the constructor calls it): every field in its range,
  /// max_ejection_time >= base_ejection_time, and a field this Policy or configuration
  /// never reads left at its default (see load_balancer_config). read_write_splitter
  /// passes its own name and "replicas.".
  /// Throws: config_error "<owner>: <prefix><field> must be ..., got ..." if not valid.
  static void validate(const load_balancer_config& c,
                       std::string_view owner = "load_balancer",
                       std::string_view prefix = "") {
    detail::lb_validate<Policy>(c, owner, prefix);
  }

 private:
  using accept_all = typename engine_type::accept_all;

  engine_type engine_;
  // Active health checks.
  std::mutex checks_mutex_;
  std::optional<detail::periodic_task> checks_;
};

}  // namespace outgrow

template <>
struct fmt::formatter<outgrow::endpoint_status> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(outgrow::endpoint_status s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(outgrow::to_string(s), ctx);
  }
};
