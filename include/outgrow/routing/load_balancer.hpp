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
//   lb.start_health_checks(io.get_executor(), [](const std::string& e) { return ping(e);
//   }); fmt::print("{}\n", lb.metrics());
//
// Policies (the Policy template parameter; concept `balancing_policy`):
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
//                         leases per weight (Envoy's default "least request")
//   random_choice, weighted_random   uniform / weight-proportional random
// Random draws come from a seeded stream (config.seed), so single-threaded runs are
// reproducible. Under concurrency the round-robin cursor and the random stream are
// advanced with relaxed load/store, not a locked add: two racing picks may draw the same
// slot (the spread stays even); this keeps a pick at two atomic read-modify-writes.
//
// Smooth WRR (weighted_round_robin) reproduces nginx's ngx_http_upstream_get_peer: each
// pick adds every weight to its current weight, takes the largest current weight (the
// first endpoint on ties, in insertion order) and subtracts the total from it. nginx
// takes integers; our weights are doubles, so each membership snapshot first turns them
// into the smallest integers with exactly the same ratios:
//   - a weight is read as the shortest decimal that denotes it (what printing it shows:
//     0.1 is 1/10, 2.5 is 5/2, 1.0 / 3 is 3333333333333333/10^16) or, when it has none
//     with at most 15-16 digits, as its exact binary value m·2^e. Integer weights are
//     used as they are, so they give nginx's sequence; {2.5, 0.5, 0.5} gives the one of
//     {5, 1, 1} and {0.1, 0.3} the one of {1, 3}: long-run shares are exact.
//   - the integers are brought to a common denominator and divided by their gcd. Only if
//     that needs more than 2^62 / N in total (weights spanning ~60 bits, as {1e6, 1e-13})
//     are they rounded, at 2^-(61 - 2·log2 N) of the largest weight.
//   - a slow-start step multiplies a weight by exactly step / steps (or by
//     slow_start_min_weight, read as above), so ramps keep exact ratios too.
// The sequence repeats every sum-of-integers picks. Up to 65,536 it is precomputed, and a
// pick is one table load at a shared cursor (the lock-free path described below). A
// longer period (weights such as {100000, 1, 1} or {0.00001, 1}, or results of
// arithmetic such as 0.1 + 0.2, which have no short decimal) is not tabulated: every
// pick runs nginx's O(N) step on the snapshot's current weights under a spin lock shared
// by the picks only (about 7 ns plus 1 ns per endpoint, where a table pick costs the
// same as round_robin).
// Differences from nginx: (1) nginx's passive health is not modelled: nginx lowers a
// failed peer's effective_weight by weight / max_fails (raising it by 1 per pick) and
// skips it after max_fails failures within fail_timeout; here failures do not change
// the sequence, and consecutive_failures eject the endpoint (Envoy's way, below).
// endpoint_stats::effective_weight is the slow-start weight, not nginx's. (2) A
// membership or health change publishes a new snapshot: the sequence continues at the
// shared cursor (modulo the new period) or, for long periods, restarts from zero current
// weights, where nginx carries each peer's current_weight over. (3) Concurrent picks
// from a table may draw the same slot (below); nginx serializes picks.
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
// membership snapshot (core/snapshot.hpp published<T>) and never lock (but for a WRR
// period too long to tabulate, where picks share a spin lock); membership and
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
#include <bit>
#include <chrono>
#include <cmath>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/snapshot.hpp>
#include <outgrow/core/stats.hpp>
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow {

// ---- policies ------------------------------------------------------------------------

struct round_robin {
  static constexpr std::string_view name = "round_robin";
};
struct weighted_round_robin {
  static constexpr std::string_view name = "weighted_round_robin";
};
struct least_connections {
  static constexpr std::string_view name = "least_connections";
};
struct key_hash {
  static constexpr std::string_view name = "key_hash";
};
/// nginx's ip_hash is key_hash with the client address as the key.
using ip_hash = key_hash;
struct least_response_time {
  static constexpr std::string_view name = "least_response_time";
};
struct power_of_two_choices {
  static constexpr std::string_view name = "power_of_two_choices";
};
struct random_choice {
  static constexpr std::string_view name = "random";
};
struct weighted_random {
  static constexpr std::string_view name = "weighted_random";
};

/// One of the policies above (the smallest conforming type is `round_robin`, an empty
/// tag; the balancer implements each policy, the tag selects it at compile time).
template <class P>
concept balancing_policy =
    std::same_as<P, round_robin> || std::same_as<P, weighted_round_robin> ||
    std::same_as<P, least_connections> || std::same_as<P, key_hash> ||
    std::same_as<P, least_response_time> || std::same_as<P, power_of_two_choices> ||
    std::same_as<P, random_choice> || std::same_as<P, weighted_random>;

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
  /// (and gets probed): 10 s, Finagle's peak-EWMA decay time. (0, 24 h]; least_response_
  /// time only.
  std::chrono::nanoseconds latency_stale_after = std::chrono::seconds{10};
  // key_hash
  /// Ring points per unit of weight: 160, nginx `hash ... consistent`. [1, 100000];
  /// key_hash only. The ring holds at most 8388608 points (ring_vnodes × total weight,
  /// each endpoint rounded to a whole number of points, at least 1): checked by the
  /// constructor, add() and set_weight().
  std::uint32_t ring_vnodes = 160;
  /// Seed of the random stream (random_choice, weighted_random, p2c, LRT, and key_hash's
  /// pick() without a key); 0 = from std::random_device. Must stay 0 under round_robin,
  /// weighted_round_robin and least_connections, which draw nothing.
  std::uint64_t seed = 0;
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
struct lb_metrics {
  static constexpr std::string_view metrics_name = "lb_metrics";
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

/// The removed endpoints' share of lb_metrics: every pick of an endpoint made before or
/// after its remove() (a racing pick may still draw it), with the outcomes of leases
/// that outlived the removal. An endpoint removed and added again counts here for its
/// first life and in endpoints() for its second.
struct lb_removed_stats {
  static constexpr std::string_view metrics_name = "lb_removed_stats";
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

/// One endpoint's state and counters (see lb_metrics for how successes is derived).
template <class Endpoint>
struct endpoint_stats {
  static constexpr std::string_view metrics_name = "endpoint_stats";
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

namespace detail {

/// Runs `task` every `interval` on a steady_timer bound to the user's executor until
/// stop(). stop() waits for a running task and must not be called from inside it. The
/// executor's execution context must outlive the periodic_task or its stop().
class periodic_task {
 public:
  periodic_task(boost::asio::any_io_executor executor, std::chrono::nanoseconds interval,
                std::function<void()> task)
      : shared_(std::make_shared<state>(std::move(executor), interval, std::move(task))) {
    std::lock_guard lock(shared_->mutex);
    arm(shared_);
  }
  periodic_task(const periodic_task&) = delete;
  periodic_task& operator=(const periodic_task&) = delete;
  ~periodic_task() { stop(); }

  void stop() {
    std::unique_lock lock(shared_->mutex);
    shared_->stopped = true;
    if (shared_->timer) shared_->timer->cancel();
    shared_->idle.wait(lock, [&] { return !shared_->running; });
    shared_->timer.reset();
  }

 private:
  struct state {
    state(boost::asio::any_io_executor executor, std::chrono::nanoseconds every,
          std::function<void()> fn)
        : timer(std::in_place, std::move(executor)), interval(every), task(std::move(fn)) {}
    std::mutex mutex;
    std::condition_variable idle;
    std::optional<boost::asio::steady_timer> timer;
    std::chrono::nanoseconds interval;
    std::function<void()> task;
    bool stopped = false;
    bool running = false;
  };

  /// Arms the timer; state::mutex held.
  static void arm(const std::shared_ptr<state>& s) {
    s->timer->expires_after(s->interval);
    s->timer->async_wait(
        [weak = std::weak_ptr<state>(s)](const boost::system::error_code& ec) {
          if (ec) return;
          const std::shared_ptr<state> self = weak.lock();
          if (!self) return;
          {
            std::lock_guard lock(self->mutex);
            if (self->stopped) return;
            self->running = true;
          }
          try {
            self->task();
          } catch (...) {
            // A failing task must not stop the schedule.
          }
          std::lock_guard lock(self->mutex);
          self->running = false;
          self->idle.notify_all();
          if (!self->stopped) arm(self);
        });
  }

  std::shared_ptr<state> shared_;
};

/// A key-hash ring slot: an index into the snapshot's routable endpoints, placed by the
/// endpoint's own stable hash (so placement depends on endpoints, not indices).
struct lb_ring_slot {
  std::uint32_t index = 0;
  std::uint64_t hash = 0;
  friend bool operator==(const lb_ring_slot&, const lb_ring_slot&) = default;
};
struct lb_ring_slot_hasher {
  [[nodiscard]] std::uint64_t operator()(const lb_ring_slot& s) const noexcept {
    return s.hash;
  }
};
using lb_ring = ring_placement<lb_ring_slot, lb_ring_slot_hasher>;

template <class Endpoint>
class lb_endpoint;

/// Where the counters of removed endpoints live, shared by a balancer and its endpoints'
/// states (both may go first: old snapshots can linger in threads' snapshot caches).
/// A removed endpoint still referenced (by a lease or an old snapshot) is listed in
/// `removed` and read live; its last reference folds its final counts into the totals
/// below under `mutex`, so a reader holding `mutex` sees every pick exactly once.
template <class Endpoint>
struct lb_ledger {
  std::mutex mutex;
  std::vector<const lb_endpoint<Endpoint>*> removed;
  std::uint64_t picks = 0, failures = 0, abandoned = 0;  // of removed endpoints gone

  /// Called by an endpoint's last reference, just before it is deleted.
  void retire(const lb_endpoint<Endpoint>& e) noexcept;
};

/// One endpoint's shared state. Lives as long as a membership snapshot lists it or a
/// lease holds it: `word_` packs [picks since last fold : 32][in flight : 31][listed : 1],
/// so starting a lease is one atomic add and ending it one atomic sub that also tells
/// whether this was the last reference.
template <class Endpoint>
class lb_endpoint {
 public:
  static constexpr std::uint64_t listed_unit = 1;
  static constexpr std::uint64_t lease_unit = 2;
  static constexpr std::uint64_t pick_unit = std::uint64_t{1} << 32;
  static constexpr std::uint64_t low_mask = pick_unit - 1;
  static constexpr std::uint64_t fold_at = std::uint64_t{1} << 31;

  lb_endpoint(Endpoint e, std::uint64_t h, std::shared_ptr<lb_ledger<Endpoint>> l)
      : endpoint(std::move(e)), hash(h), ledger(std::move(l)) {}

  /// A shared_ptr whose last copy drops the "listed" reference instead of deleting.
  static std::shared_ptr<lb_endpoint> make(Endpoint e, std::uint64_t h,
                                           std::shared_ptr<lb_ledger<Endpoint>> l) {
    return std::shared_ptr<lb_endpoint>(new lb_endpoint(std::move(e), h, std::move(l)),
                                        [](lb_endpoint* p) { p->release(listed_unit); });
  }

  void acquire() noexcept {
    const std::uint64_t prev =
        word_.fetch_add(pick_unit + lease_unit, std::memory_order_relaxed);
    if ((prev >> 32) == fold_at - 1) [[unlikely]] {
      // Exactly one pick crosses 2^31 unfolded picks: move them to the 64-bit total.
      folded_.fetch_add(fold_at, std::memory_order_relaxed);
      word_.fetch_sub(fold_at << 32, std::memory_order_relaxed);
    }
  }
  /// Drops one reference (a lease or the listing); deletes on the last one.
  void release(std::uint64_t unit) noexcept {
    if ((word_.fetch_sub(unit, std::memory_order_acq_rel) & low_mask) == unit) {
      ledger->retire(*this);  // a removed endpoint's final counts join the totals
      delete this;
    }
  }
  [[nodiscard]] std::uint64_t in_flight() const noexcept {
    return (word_.load(std::memory_order_relaxed) & low_mask) >> 1;
  }
  [[nodiscard]] std::uint64_t picks() const noexcept {
    return folded_.load(std::memory_order_relaxed) +
           (word_.load(std::memory_order_relaxed) >> 32);
  }

  const Endpoint endpoint;
  const std::uint64_t hash;
  const std::shared_ptr<lb_ledger<Endpoint>> ledger;
  bool removed = false;  // guarded by ledger->mutex
  // Hot: updated by leases.
  alignas(64) std::atomic<std::uint64_t> word_{listed_unit};
  std::atomic<std::uint32_t> consecutive_failures{0};
  std::atomic<std::int64_t> ewma_ns{0};  // 0 = no sample
  std::atomic<std::int64_t> last_sample_ns{std::numeric_limits<std::int64_t>::min()};
  std::atomic<std::uint64_t> folded_{0};
  counter failures;
  counter abandoned;
  // Writer-side state, guarded by the balancer's mutex.
  double weight = 1.0;
  bool draining = false;
  bool excluded = false;
  bool ejected = false;
  bool healthy = true;  // active checks
  std::int64_t ejected_until_ns = 0;
  std::int64_t in_service_since_ns = 0;
  std::int64_t ramp_start_ns = std::numeric_limits<std::int64_t>::min();  // slow start
  std::uint32_t ejection_multiplier = 0;
  std::uint64_t ejections_total = 0;
  std::uint32_t checks_passed = 0;
  std::uint32_t checks_failed = 0;
  double effective_weight = 1.0;  // as last published
  bool slow_starting = false;     // as last published
};

template <class Endpoint>
void lb_ledger<Endpoint>::retire(const lb_endpoint<Endpoint>& e) noexcept {
  std::lock_guard lock(mutex);
  if (!e.removed) return;  // a member (the balancer is going away)
  picks += e.picks();
  failures += e.failures.load();
  abandoned += e.abandoned.load();
  removed.erase(std::find(removed.begin(), removed.end(), &e));
}

// ---- smooth weighted round robin (nginx's ngx_http_upstream_get_peer) ----------------
//
// nginx works on integer weights. Ours are doubles, so a membership snapshot first turns
// them into integers with exactly the same ratios (wrr_integer_weights), then either
// precomputes one period of the sequence (at most smooth_wrr_table_limit picks: a pick
// is a table load) or, for longer periods, runs nginx's step itself on every pick
// (smooth_wrr_live: O(N) under a spin lock, as nginx does under its upstream zone
// lock). Both produce nginx's sequence for the same integer weights, pick for pick.

/// One period of a smooth WRR sequence longer than this is not tabulated.
inline constexpr std::int64_t smooth_wrr_table_limit = 65536;

/// An exact rational num / den (den > 0).
struct wrr_rational {
  std::uint64_t num = 0;
  std::uint64_t den = 1;
};

[[nodiscard]] inline bool wrr_checked_mul(std::uint64_t a, std::uint64_t b,
                                          std::uint64_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

[[nodiscard]] inline wrr_rational wrr_reduced(wrr_rational r) noexcept {
  const std::uint64_t g = std::gcd(r.num, r.den);
  return g > 1 ? wrr_rational{r.num / g, r.den / g} : r;
}

/// The shortest decimal m / 10^k that reads back as `w` (what printing `w` shows: 0.1
/// is 1/10, 2.5 is 5/2), for m < 2^53; nullopt when there is none (w = 1.0 / 3.0 is
/// 3333333333333333 / 10^16, 0.1 + 0.2 has no such decimal).
[[nodiscard]] inline std::optional<wrr_rational> wrr_decimal(double w) noexcept {
  constexpr double exact_limit = 9007199254740992.0;  // 2^53
  if (!(w > 0.0) || !std::isfinite(w)) return std::nullopt;
  double scale = 1.0;     // 10^k: exact as a double up to 10^22
  std::uint64_t den = 1;  // 10^k
  for (int k = 0; k <= 19; ++k) {
    const double scaled = w * scale;
    if (scaled >= exact_limit) return std::nullopt;
    const auto m0 = static_cast<std::uint64_t>(std::llround(scaled));
    // w * 10^k is rounded once, so the decimal is m0 or a neighbour. m / 10^k is then
    // one correctly rounded division of two exact doubles: what parsing "m e-k" gives.
    for (const std::uint64_t m : {m0, m0 + 1, m0 - 1}) {
      if (m == 0 || m > m0 + 1 || static_cast<double>(m) >= exact_limit) continue;
      if (static_cast<double>(m) / scale == w) return wrr_reduced({m, den});
    }
    if (k < 19) {  // 10^19 is the last power of ten a uint64 holds
      scale *= 10.0;
      den *= 10;
    }
  }
  return std::nullopt;
}

/// The exact binary value of `w` as a rational (every finite double is m·2^e), or
/// nullopt when it does not fit 64-bit numerator and denominator.
[[nodiscard]] inline std::optional<wrr_rational> wrr_binary(double w) noexcept {
  if (!(w > 0.0) || !std::isfinite(w)) return std::nullopt;
  int exp = 0;
  const double frac = std::frexp(w, &exp);  // w = frac · 2^exp, frac in [0.5, 1)
  auto m = static_cast<std::uint64_t>(std::ldexp(frac, 53));
  exp -= 53;
  while ((m & 1U) == 0) {
    m >>= 1;
    ++exp;
  }
  if (exp >= 0) {
    if (exp >= 64 || m > (std::numeric_limits<std::uint64_t>::max() >> exp)) {
      return std::nullopt;
    }
    return wrr_rational{m << exp, 1};
  }
  if (exp <= -64) return std::nullopt;
  return wrr_rational{m, std::uint64_t{1} << -exp};
}

/// `w` as an exact rational: its shortest decimal, else its binary value.
[[nodiscard]] inline std::optional<wrr_rational> wrr_exact(double w) noexcept {
  if (auto d = wrr_decimal(w)) return d;
  return wrr_binary(w);
}

/// One endpoint's smooth-WRR weight: `weight` × factor_num / factor_den, where the
/// factor is exact (slow start's step / steps) and `weight` a configured weight.
struct wrr_weight {
  double weight = 1.0;
  wrr_rational factor{1, 1};
  double factor_value = 1.0;  // factor as a double (for the approximate fallback)
};

/// The smallest positive integers with exactly the ratios of `weights` (each weight
/// read by wrr_exact, times its exact factor), their sum at most 2^62 / N so that
/// nginx's current weights (always within ±N × sum) cannot overflow. When the ratios
/// need more than that (weights spanning ~60 bits, e.g. {1e6, 1e-13}), each weight is
/// instead rounded to a multiple of 2^-(61 - 2·bit_width(N)) of the largest one (at
/// least 1): 2^-57 of it for 2 endpoints, 2^-41 for 1000.
[[nodiscard]] inline std::vector<std::int64_t> wrr_integer_weights(
    const std::vector<wrr_weight>& weights) {
  const std::size_t n = weights.size();
  std::vector<std::int64_t> out(n, 1);
  if (n == 0) return out;
  const std::uint64_t budget =
      (std::uint64_t{1} << 62) / static_cast<std::uint64_t>(n);  // sum limit
  // Exact: a common denominator of the rationals.
  std::vector<wrr_rational> r(n);
  bool exact = true;
  std::uint64_t lcm = 1;
  for (std::size_t i = 0; i < n && exact; ++i) {
    const auto w = wrr_exact(weights[i].weight);
    const wrr_rational f = wrr_reduced(weights[i].factor);
    std::uint64_t num = 0, den = 0;
    exact = w && f.num != 0 && wrr_checked_mul(w->num, f.num, num) &&
            wrr_checked_mul(w->den, f.den, den);
    if (!exact) break;
    r[i] = wrr_reduced({num, den});
    exact = wrr_checked_mul(lcm / std::gcd(lcm, r[i].den), r[i].den, lcm);
  }
  if (exact) {
    std::uint64_t g = 0;
    std::vector<std::uint64_t> ints(n);
    for (std::size_t i = 0; i < n && exact; ++i) {
      exact = wrr_checked_mul(r[i].num, lcm / r[i].den, ints[i]);
      g = std::gcd(g, ints[i]);
    }
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < n && exact; ++i) {
      ints[i] /= g;
      exact = ints[i] <= budget - total;
      total += exact ? ints[i] : 0;
    }
    if (exact) {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int64_t>(ints[i]);
      return out;
    }
  }
  // Approximate: scale by a power of two so the largest weight is 2^bits (exact), round.
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = weights[i].weight * weights[i].factor_value;
  const double max_w = *std::max_element(v.begin(), v.end());
  const int bits = std::max(1, 61 - 2 * static_cast<int>(std::bit_width(n)));
  const int shift = bits - std::ilogb(max_w);
  std::int64_t g = 0;
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = std::max<std::int64_t>(1, std::llround(std::ldexp(v[i], shift)));
    g = std::gcd(g, out[i]);
  }
  for (auto& x : out) x /= g;
  return out;
}

/// nginx's smooth weighted round robin over integer weights, step by step: every pick
/// adds each weight to its current weight, chooses the largest current weight (the
/// first on ties) and subtracts the total from it (ngx_http_upstream_get_peer with
/// effective_weight == weight). Weights {5, 1, 1} give 0 0 1 0 2 0 0, repeating.
class smooth_wrr {
 public:
  smooth_wrr() = default;
  explicit smooth_wrr(std::vector<std::int64_t> weights)
      : weight_(std::move(weights)), current_(weight_.size(), 0) {
    for (const auto w : weight_) total_ += w;
  }
  /// The next index. Precondition: at least one weight.
  std::size_t next() noexcept {
    std::size_t best = 0;
    for (std::size_t i = 0; i < weight_.size(); ++i) {
      current_[i] += weight_[i];
      if (current_[i] > current_[best]) best = i;
    }
    current_[best] -= total_;
    return best;
  }
  [[nodiscard]] const std::vector<std::int64_t>& weights() const noexcept {
    return weight_;
  }
  [[nodiscard]] const std::vector<std::int64_t>& current() const noexcept {
    return current_;
  }
  /// Length of one period: after `total()` picks every current weight is 0 again.
  [[nodiscard]] std::int64_t total() const noexcept { return total_; }

 private:
  std::vector<std::int64_t> weight_;
  std::vector<std::int64_t> current_;
  std::int64_t total_ = 0;
};

/// One period of the sequence, as indices (total() <= smooth_wrr_table_limit).
inline std::vector<std::uint32_t> smooth_wrr_period(std::vector<std::int64_t> weights) {
  smooth_wrr wrr(std::move(weights));
  std::vector<std::uint32_t> seq(static_cast<std::size_t>(wrr.total()));
  for (auto& s : seq) s = static_cast<std::uint32_t>(wrr.next());
  return seq;
}

/// smooth_wrr shared by the picks of one snapshot whose period is too long to tabulate:
/// every pick runs nginx's step under a spin lock (held for the O(N) step only).
class smooth_wrr_live {
 public:
  explicit smooth_wrr_live(std::vector<std::int64_t> weights) : wrr_(std::move(weights)) {}
  std::size_t next() noexcept {
    while (busy_.exchange(true, std::memory_order_acquire)) {
      while (busy_.load(std::memory_order_relaxed)) std::this_thread::yield();
    }
    const std::size_t i = wrr_.next();
    busy_.store(false, std::memory_order_release);
    return i;
  }

 private:
  std::atomic<bool> busy_{false};
  smooth_wrr wrr_;
};

/// splitmix64 of seed + n·golden: the n-th draw of a seeded random stream.
[[nodiscard]] constexpr std::uint64_t lb_draw(std::uint64_t seed,
                                              std::uint64_t n) noexcept {
  std::uint64_t x = seed + (n + 1) * 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

template <class T>
[[nodiscard]] std::string lb_label(const T& value) {
  if constexpr (fmt::is_formattable<T>::value) {
    return fmt::format("{}", value);
  } else {
    return "<endpoint>";
  }
}

}  // namespace detail

// ---- the balancer ---------------------------------------------------------------------

template <class Endpoint, balancing_policy Policy = round_robin,
          clock_source Clock = steady_clock_source, class Hasher = xxh3_hasher>
requires std::copyable<Endpoint> && std::equality_comparable<Endpoint>
class load_balancer {
  using state = detail::lb_endpoint<Endpoint>;
  using time_point = typename Clock::time_point;
  static constexpr std::int64_t no_refresh = std::numeric_limits<std::int64_t>::max();
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  static constexpr bool is_hashed = std::same_as<Policy, key_hash>;
  static constexpr bool is_weighted = !std::same_as<Policy, round_robin> &&
                                      !std::same_as<Policy, random_choice> && !is_hashed;
  static constexpr bool always_measures = std::same_as<Policy, least_response_time>;
  // Policies that read config.seed (key_hash: pick() without a key draws one).
  static constexpr bool draws_random = !std::same_as<Policy, round_robin> &&
                                       !std::same_as<Policy, weighted_round_robin> &&
                                       !std::same_as<Policy, least_connections>;
  static constexpr std::string_view primitive = "load_balancer";

  enum class outcome : std::uint8_t { success, failure, abandoned };

  struct snapshot {
    std::vector<std::shared_ptr<state>> members;  // ownership: every member
    std::vector<state*> routable;                 // the set picks choose from
    std::vector<double> inverse_weight;           // 1 / effective weight, per routable
    std::vector<double> cumulative;               // weighted_random
    std::vector<std::uint32_t> wrr;               // weighted_round_robin period, or
    std::unique_ptr<detail::smooth_wrr_live> wrr_live;  // its live state (long periods)
    std::optional<detail::lb_ring> ring;                // key_hash
    std::int64_t next_refresh_ns = no_refresh;
    bool panic = false;
    bool equal_weights = true;  // every routable endpoint has the same effective weight
  };

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
          started_ns_(o.started_ns_) {}
    lease& operator=(lease&& o) noexcept {
      if (this != &o) {
        finish(outcome::abandoned, -1);
        lb_ = std::exchange(o.lb_, nullptr);
        state_ = std::exchange(o.state_, nullptr);
        started_ns_ = o.started_ns_;
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
    lease(load_balancer* lb, state* s, std::int64_t started_ns) noexcept
        : lb_(lb), state_(s), started_ns_(started_ns) {}
    void finish(outcome o, std::int64_t latency_ns) noexcept {
      if (state_ == nullptr) return;
      state* s = std::exchange(state_, nullptr);
      lb_->record(*s, o, latency_ns, started_ns_);
      s->release(state::lease_unit);
    }
    load_balancer* lb_ = nullptr;
    state* state_ = nullptr;
    std::int64_t started_ns_ = 0;
  };

  /// Braced endpoint lists: load_balancer<std::string>({"a", "b"}).
  template <class T>
  requires std::convertible_to<const T&, Endpoint>
  explicit load_balancer(std::initializer_list<T> endpoints,
                         load_balancer_config config = {}, Clock clock = {},
                         Hasher hasher = {})
      : load_balancer(to_weighted_nodes<Endpoint>(endpoints), config, std::move(clock),
                      std::move(hasher)) {}

  /// Weighted braced lists: load_balancer<std::string>({{"a", 5}, {"b", 1}}).
  explicit load_balancer(std::initializer_list<weighted_node<Endpoint>> endpoints,
                         load_balancer_config config = {}, Clock clock = {},
                         Hasher hasher = {})
      : load_balancer(std::vector<weighted_node<Endpoint>>(endpoints), config,
                      std::move(clock), std::move(hasher)) {}

  /// Any range of endpoints or of weighted_node<Endpoint>. Throws config_error for no
  /// endpoints, a weight outside (0, 1e6], a duplicate endpoint or a bad config field.
  template <class R>
  requires node_range<R, Endpoint> || weighted_node_range<R, Endpoint>
  explicit load_balancer(const R& endpoints, load_balancer_config config = {},
                         Clock clock = {}, Hasher hasher = {})
      : config_(validated(config)),
        clock_(std::move(clock)),
        hasher_(std::move(hasher)),
        members_(primitive, hasher_),
        seed_(config.seed != 0 ? config.seed : random_seed()),
        current_(std::make_shared<const snapshot>()) {
    auto list = to_weighted_nodes<Endpoint>(endpoints);
    require(!list.empty(), primitive, "endpoints", "a non-empty list", "none");
    std::lock_guard lock(mutex_);
    const std::int64_t now = now_ns();
    for (auto& wn : list) add_locked(wn.node, wn.weight, now, /*ramp=*/false);
    publish_locked(now);
  }

  load_balancer(const load_balancer&) = delete;
  load_balancer& operator=(const load_balancer&) = delete;
  ~load_balancer() { stop_health_checks(); }

  // ---- picking --------------------------------------------------------------------

  /// A lease on the endpoint the policy picks; false when nothing is routable. For
  /// key_hash, pick() uses a random key. Never throws and never waits for a writer
  /// (right after a publish, the first local() of a thread copies the new snapshot
  /// under published<>'s brief internal lock).
  [[nodiscard]] lease pick() noexcept { return pick_impl(accept_all{}, 0, false); }

  /// key_hash: the owner of `key` on the ring of routable endpoints.
  template <class Key>
  requires is_hashed && key_hasher<Hasher, Key>
  [[nodiscard]] lease pick(const Key& key) noexcept {
    return pick_impl(accept_all{}, static_cast<std::uint64_t>(hasher_(key)), true);
  }
  /// key_hash with a precomputed 64-bit key hash.
  [[nodiscard]] lease pick_hash(std::uint64_t hash) noexcept requires is_hashed {
    return pick_impl(accept_all{}, hash, true);
  }

  /// Like pick(), restricted to endpoints for which accept(endpoint) is true: the
  /// policy's choice when accepted, else the best accepted endpoint by the policy's
  /// load measure (the fewest in flight per weight for least_connections, p2c and LRT;
  /// the next accepted one after the choice otherwise). False when none is accepted.
  /// read_write_splitter uses it for read-your-writes. `accept` must be cheap and must
  /// not itself pick from a balancer (it runs while this pick holds its snapshot).
  template <class Accept>
  requires std::predicate<Accept&, const Endpoint&>
  [[nodiscard]] lease pick_if(Accept&& accept) noexcept(
      std::is_nothrow_invocable_v<Accept&, const Endpoint&>) {
    return pick_impl(accept, 0, false);
  }

  // ---- membership (any thread; picks continue meanwhile) ---------------------------

  /// Adds an endpoint (slow start applies if configured). config_error on a duplicate
  /// or a weight outside (0, 1e6].
  void add(const Endpoint& endpoint, double weight = 1.0) {
    std::lock_guard lock(mutex_);
    const std::int64_t now = now_ns();
    add_locked(endpoint, weight, now, /*ramp=*/true);
    publish_locked(now);
  }

  /// Removes an endpoint at once; its outstanding leases stay valid and finish
  /// normally, their outcomes counted in metrics() (see removed_endpoints()).
  /// config_error if unknown.
  void remove(const Endpoint& endpoint) {
    std::lock_guard lock(mutex_);
    const std::size_t i = index_or_throw(endpoint, "remove(endpoint)");
    state& s = *states_[i];
    {
      // From here on metrics() reads its counters through the ledger, until its last
      // reference folds them into the ledger's totals.
      std::lock_guard ledger_lock(ledger_->mutex);
      ledger_->removed.push_back(&s);
      s.removed = true;
    }
    members_.remove(endpoint);
    ring_points_ -= ring_points_checked(s.weight, 0);
    states_.erase(states_.begin() + static_cast<std::ptrdiff_t>(i));
    publish_locked(now_ns());
  }

  /// Takes an endpoint out of rotation without removing it: in-flight leases finish,
  /// no new ones start (see in_flight(endpoint) before remove()). undrain() undoes it.
  void drain(const Endpoint& endpoint) {
    set_flag(endpoint, &state::draining, true, "drain");
  }
  void undrain(const Endpoint& endpoint) {
    set_flag(endpoint, &state::draining, false, "undrain");
  }

  /// Holds an endpoint out of rotation (true) or lets it back (false) for reasons of the
  /// caller's (read_write_splitter: replication lag). Not counted as unhealthy.
  void set_excluded(const Endpoint& endpoint, bool excluded) {
    set_flag(endpoint, &state::excluded, excluded, "set_excluded");
  }

  /// config_error for an unknown endpoint or a weight outside (0, 1e6] (key_hash: see
  /// ring_vnodes); nothing changes then.
  void set_weight(const Endpoint& endpoint, double weight) {
    std::lock_guard lock(mutex_);
    state& s = *states_[index_or_throw(endpoint, "set_weight(endpoint)")];
    const double old = s.weight;
    members_.set_weight(endpoint, weight);  // validates the weight
    std::size_t points = 0;
    const std::size_t old_points = ring_points_checked(old, 0);
    try {
      points = ring_points_checked(weight, ring_points_ - old_points);
    } catch (...) {
      members_.set_weight(endpoint, old);
      throw;
    }
    s.weight = weight;
    ring_points_ = ring_points_ - old_points + points;
    publish_locked(now_ns());
  }

  [[nodiscard]] bool contains(const Endpoint& endpoint) const {
    std::lock_guard lock(mutex_);
    return members_.contains(endpoint);
  }
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(mutex_);
    return states_.size();
  }
  /// Number of endpoints picks currently choose from (no lock).
  [[nodiscard]] std::size_t routable() const { return current_.local().routable.size(); }
  /// True when the current snapshot is in panic mode (no lock).
  [[nodiscard]] bool panic() const { return current_.local().panic; }

  /// Leases of `endpoint` in flight (0 for unknown endpoints).
  [[nodiscard]] std::uint64_t in_flight(const Endpoint& endpoint) const {
    std::lock_guard lock(mutex_);
    const std::size_t i = members_.find(endpoint);
    return i == members_.npos ? 0 : states_[i]->in_flight();
  }

  // ---- health ---------------------------------------------------------------------

  /// One active health-check result for `endpoint` (ignored for unknown endpoints).
  void report_health(const Endpoint& endpoint, bool healthy) {
    std::lock_guard lock(mutex_);
    const std::size_t i = members_.find(endpoint);
    if (i == members_.npos) return;
    const std::int64_t now = now_ns();
    if (apply_check_locked(*states_[i], healthy, now)) publish_locked(now);
  }

  /// Runs check(endpoint) -> bool once for every endpoint (outside the balancer's
  /// lock; an exception counts as a failed check) and applies the results.
  template <class Check>
  requires std::predicate<Check&, const Endpoint&>
  void run_health_checks(Check&& check) {
    std::vector<std::shared_ptr<state>> targets;
    {
      std::lock_guard lock(mutex_);
      targets = states_;
    }
    std::vector<char> results(targets.size(), 0);
    for (std::size_t i = 0; i < targets.size(); ++i) {
      try {
        results[i] = std::invoke(check, std::as_const(targets[i]->endpoint)) ? 1 : 0;
      } catch (...) {
        results[i] = 0;
      }
    }
    std::lock_guard lock(mutex_);
    const std::int64_t now = now_ns();
    bool changed = false;
    for (std::size_t i = 0; i < targets.size(); ++i) {
      if (std::find(states_.begin(), states_.end(), targets[i]) == states_.end()) continue;
      changed = apply_check_locked(*targets[i], results[i] != 0, now) || changed;
    }
    if (changed) publish_locked(now);
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
        std::move(executor), config_.health_check_interval,
        [this, check = std::move(check)]() mutable { run_health_checks(check); });
  }

  /// Stops the schedule and waits for a round in progress. Not from inside a check.
  void stop_health_checks() {
    std::lock_guard lock(checks_mutex_);
    checks_.reset();
  }

  /// Applies time-based changes due now (ejections ending, slow-start steps). Picks do
  /// this on their own; call it when there is no traffic to notice.
  void refresh() {
    std::lock_guard lock(mutex_);
    publish_locked(now_ns());
  }

  // ---- observation ----------------------------------------------------------------

  /// Totals over every endpoint ever added (removed ones included: see lb_metrics).
  [[nodiscard]] lb_metrics metrics() const {
    std::lock_guard lock(mutex_);
    lb_metrics m;
    const lb_removed_stats r = removed_locked();
    m.picks = r.picks;
    m.failures = r.failures;
    m.abandoned = r.abandoned;
    m.in_flight = r.in_flight;
    for (const auto& s : states_) {
      m.picks += s->picks();
      m.failures += s->failures.load();
      m.abandoned += s->abandoned.load();
      m.in_flight += s->in_flight();
      const auto st = status_of(*s);
      m.ejected += s->ejected ? 1U : 0U;
      m.unhealthy += s->healthy ? 0U : 1U;
      m.draining += st == endpoint_status::draining ? 1U : 0U;
      m.excluded += st == endpoint_status::excluded ? 1U : 0U;
    }
    const std::uint64_t done = m.failures + m.abandoned + m.in_flight;
    m.successes = m.picks > done ? m.picks - done : 0;
    m.no_endpoint = no_endpoint_.load();
    m.panic_picks = panic_picks_.load();
    m.ejections = ejections_.load();
    m.ejections_overflow = ejections_overflow_.load();
    m.returns = returns_.load();
    m.endpoints = states_.size();
    const auto snap = current_.load();
    m.routable = snap->routable.size();
    m.panic = snap->panic;
    return m;
  }

  /// The removed endpoints' counters (included in metrics()): picks and outcomes of
  /// endpoints no longer members, including leases that ended after the removal.
  [[nodiscard]] lb_removed_stats removed_endpoints() const {
    std::lock_guard lock(mutex_);
    return removed_locked();
  }

  /// Per-endpoint state and counters of the members, in insertion order.
  [[nodiscard]] std::vector<endpoint_stats<Endpoint>> endpoints() const {
    std::lock_guard lock(mutex_);
    std::vector<endpoint_stats<Endpoint>> out;
    out.reserve(states_.size());
    for (const auto& s : states_) {
      endpoint_stats<Endpoint> e{.endpoint = s->endpoint};
      e.status = status_of(*s);
      e.weight = s->weight;
      e.effective_weight = s->effective_weight;
      e.in_flight = s->in_flight();
      e.picks = s->picks();
      e.failures = s->failures.load();
      e.abandoned = s->abandoned.load();
      const std::uint64_t done = e.failures + e.abandoned + e.in_flight;
      e.successes = e.picks > done ? e.picks - done : 0;
      e.ejections = s->ejections_total;
      e.latency_ewma = std::chrono::nanoseconds{s->ewma_ns.load(std::memory_order_relaxed)};
      out.push_back(std::move(e));
    }
    return out;
  }

  /// The current status of one endpoint; config_error if unknown.
  [[nodiscard]] endpoint_status status(const Endpoint& endpoint) const {
    std::lock_guard lock(mutex_);
    return status_of(*states_[index_or_throw(endpoint, "status(endpoint)")]);
  }

  [[nodiscard]] const load_balancer_config& config() const noexcept { return config_; }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

  /// Throws config_error unless `c` is valid for this balancer (the constructor calls
  /// it): every field in its range, max_ejection_time >= base_ejection_time, and a
  /// field this Policy or configuration never reads left at its default (see
  /// load_balancer_config). Messages read "<owner>: <prefix><field> must be ...";
  /// read_write_splitter passes its own name and "replicas.".
  static void validate(const load_balancer_config& c,
                       std::string_view owner = "load_balancer",
                       std::string_view prefix = "") {
    using namespace std::chrono;
    const nanoseconds day = hours{24};
    const load_balancer_config d{};
    const auto field = [&](std::string_view name) {
      return fmt::format("{}{}", prefix, name);
    };
    const auto describe = [](const auto& v) { return detail::describe_value(v); };
    // A non-default value of a field that is never read is a mistake, not a no-op.
    const auto unread = [&](bool is_default, std::string_view name, const auto& value,
                            const auto& default_value, std::string_view why) {
      require(is_default, owner, field(name),
              fmt::format("{} (the default) {}", describe(default_value), why), value);
    };
    require_in_range(owner, field("consecutive_failures"), c.consecutive_failures, 0U,
                     1'000'000U);
    require(c.base_ejection_time > nanoseconds{0} && c.base_ejection_time <= day, owner,
            field("base_ejection_time"), "in (0s, 24h]", c.base_ejection_time);
    require(c.max_ejection_time > nanoseconds{0} && c.max_ejection_time <= day, owner,
            field("max_ejection_time"), "in (0s, 24h]", c.max_ejection_time);
    require(c.max_ejection_fraction > 0.0 && c.max_ejection_fraction <= 1.0, owner,
            field("max_ejection_fraction"),
            "in (0, 1] (one endpoint may always be ejected; consecutive_failures = 0 "
            "turns ejection off)",
            c.max_ejection_fraction);
    if (c.consecutive_failures == 0) {
      constexpr std::string_view off =
          "when consecutive_failures = 0: passive ejection is off and never reads it";
      unread(c.base_ejection_time == d.base_ejection_time, "base_ejection_time",
             c.base_ejection_time, d.base_ejection_time, off);
      unread(c.max_ejection_time == d.max_ejection_time, "max_ejection_time",
             c.max_ejection_time, d.max_ejection_time, off);
      unread(c.max_ejection_fraction == d.max_ejection_fraction, "max_ejection_fraction",
             c.max_ejection_fraction, d.max_ejection_fraction, off);
    }
    require(c.max_ejection_time >= c.base_ejection_time, owner, field("max_ejection_time"),
            fmt::format("in [{}, 24h] (not below base_ejection_time)",
                        describe(c.base_ejection_time)),
            c.max_ejection_time);
    require(c.health_check_interval > nanoseconds{0} && c.health_check_interval <= day,
            owner, field("health_check_interval"), "in (0s, 24h]", c.health_check_interval);
    require_in_range(owner, field("healthy_threshold"), c.healthy_threshold, 1U, 1000U);
    require_in_range(owner, field("unhealthy_threshold"), c.unhealthy_threshold, 1U, 1000U);
    require_in_range(owner, field("slow_start_window"), c.slow_start_window, nanoseconds{0},
                     day);
    require(c.slow_start_min_weight > 0.0 && c.slow_start_min_weight <= 1.0, owner,
            field("slow_start_min_weight"), "in (0, 1]", c.slow_start_min_weight);
    require_in_range(owner, field("slow_start_steps"), c.slow_start_steps, 1U, 1000U);
    if constexpr (!is_weighted) {
      unread(c.slow_start_window == d.slow_start_window, "slow_start_window",
             c.slow_start_window, d.slow_start_window,
             fmt::format("under {}: slow start ramps weights, which it {}", Policy::name,
                         is_hashed ? "keeps as configured on the ring so keys do not move"
                                   : "does not use"));
    }
    if (c.slow_start_window == nanoseconds{0}) {
      constexpr std::string_view off =
          "when slow_start_window = 0s: slow start is off and never reads it";
      unread(c.slow_start_min_weight == d.slow_start_min_weight, "slow_start_min_weight",
             c.slow_start_min_weight, d.slow_start_min_weight, off);
      unread(c.slow_start_steps == d.slow_start_steps, "slow_start_steps",
             c.slow_start_steps, d.slow_start_steps, off);
    }
    require_in_range(owner, field("panic_threshold"), c.panic_threshold, 0.0, 1.0);
    require(c.ewma_weight > 0.0 && c.ewma_weight <= 1.0, owner, field("ewma_weight"),
            "in (0, 1]", c.ewma_weight);
    require(c.latency_stale_after > nanoseconds{0} && c.latency_stale_after <= day, owner,
            field("latency_stale_after"), "in (0s, 24h]", c.latency_stale_after);
    if constexpr (!always_measures) {
      unread(c.latency_stale_after == d.latency_stale_after, "latency_stale_after",
             c.latency_stale_after, d.latency_stale_after,
             fmt::format("under {}: only least_response_time reads it", Policy::name));
    }
    require_in_range(owner, field("ring_vnodes"), c.ring_vnodes, 1U, 100'000U);
    if constexpr (!is_hashed) {
      unread(c.ring_vnodes == d.ring_vnodes, "ring_vnodes", c.ring_vnodes, d.ring_vnodes,
             fmt::format("under {}: only key_hash reads it", Policy::name));
    }
    if constexpr (!draws_random) {
      unread(c.seed == d.seed, "seed", c.seed, d.seed,
             fmt::format("under {}: the policy draws no random numbers", Policy::name));
    }
  }

 private:
  struct accept_all {
    constexpr bool operator()(const Endpoint&) const noexcept { return true; }
  };

  lb_removed_stats removed_locked() const {
    lb_removed_stats r;
    std::lock_guard lock(ledger_->mutex);
    r.picks = ledger_->picks;
    r.failures = ledger_->failures;
    r.abandoned = ledger_->abandoned;
    for (const state* s : ledger_->removed) {
      r.picks += s->picks();
      r.failures += s->failures.load();
      r.abandoned += s->abandoned.load();
      r.in_flight += s->in_flight();
    }
    r.lingering = ledger_->removed.size();
    const std::uint64_t done = r.failures + r.abandoned + r.in_flight;
    r.successes = r.picks > done ? r.picks - done : 0;
    return r;
  }

  static load_balancer_config validated(load_balancer_config c) {
    validate(c);
    return c;
  }

  static std::uint64_t random_seed() {
    std::random_device rd;
    const std::uint64_t s = (std::uint64_t{rd()} << 32) ^ rd();
    return s == 0 ? 0x6f7574677277ULL : s;
  }

  [[nodiscard]] std::int64_t now_ns() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               clock_.now().time_since_epoch())
        .count();
  }

  // -- pick path --

  template <class Accept>
  lease pick_impl(Accept&& accept, std::uint64_t key, bool keyed) noexcept(
      std::is_nothrow_invocable_v<Accept&, const Endpoint&>) {
    const snapshot* s = &current_.local();
    std::int64_t now = 0;
    constexpr bool needs_now = always_measures;
    if (needs_now || s->next_refresh_ns != no_refresh || config_.measure_latency) {
      now = now_ns();
      if (now >= s->next_refresh_ns) [[unlikely]] {
        refresh_from_pick(now);
        s = &current_.local();
      }
    }
    const std::size_t n = s->routable.size();
    if (n == 0) [[unlikely]] {
      no_endpoint_.add();
      return lease{};
    }
    std::size_t i = choose(*s, n, key, keyed, now);
    if constexpr (!std::same_as<std::remove_cvref_t<Accept>, accept_all>) {
      if (!accept(std::as_const(s->routable[i]->endpoint))) {
        i = choose_accepted(*s, n, i, accept);
        if (i == npos) return lease{};
      }
    }
    if (s->panic) [[unlikely]]
      panic_picks_.add();
    state* chosen = s->routable[i];
    chosen->acquire();
    return lease(this, chosen, now);
  }

  std::uint64_t next_cursor(std::size_t n) noexcept {
    // Relaxed load + store, not fetch_add: racing picks may reuse a slot (see header).
    std::uint64_t c = cursor_.load(std::memory_order_relaxed);
    if (c >= n) c = 0;
    cursor_.store(c + 1, std::memory_order_relaxed);
    return c;
  }
  std::uint64_t next_random() noexcept {
    const std::uint64_t d = draws_.load(std::memory_order_relaxed);
    draws_.store(d + 1, std::memory_order_relaxed);
    return detail::lb_draw(seed_, d);
  }

  static double load_cost(const snapshot& s, std::size_t i) noexcept {
    // Through int64: unsigned 64-bit to double conversion costs a branch on x86-64.
    return static_cast<double>(static_cast<std::int64_t>(s.routable[i]->in_flight() + 1)) *
           s.inverse_weight[i];
  }
  /// True when routable[i] carries less load per weight than routable[j].
  static bool less_loaded(const snapshot& s, std::size_t i, std::size_t j) noexcept {
    if (s.equal_weights) return s.routable[i]->in_flight() < s.routable[j]->in_flight();
    return load_cost(s, i) < load_cost(s, j);
  }
  double latency_cost(const snapshot& s, std::size_t i, std::int64_t now) const noexcept {
    const state& e = *s.routable[i];
    double ewma = static_cast<double>(e.ewma_ns.load(std::memory_order_relaxed));
    const std::int64_t last = e.last_sample_ns.load(std::memory_order_relaxed);
    if (last == std::numeric_limits<std::int64_t>::min() ||
        now - last > config_.latency_stale_after.count()) {
      ewma = 0.0;  // unknown or stale: probe it
    }
    return (ewma + 1.0) * static_cast<double>(e.in_flight() + 1) * s.inverse_weight[i];
  }

  std::size_t choose(const snapshot& s, std::size_t n, std::uint64_t key, bool keyed,
                     std::int64_t now) noexcept {
    if constexpr (std::same_as<Policy, round_robin>) {
      return static_cast<std::size_t>(next_cursor(n));
    } else if constexpr (std::same_as<Policy, weighted_round_robin>) {
      if (s.wrr_live) [[unlikely]]
        return s.wrr_live->next();
      return s.wrr[static_cast<std::size_t>(next_cursor(s.wrr.size()))];
    } else if constexpr (std::same_as<Policy, random_choice>) {
      return static_cast<std::size_t>(hash_to_range(next_random(), n));
    } else if constexpr (std::same_as<Policy, weighted_random>) {
      const double total = s.cumulative.back();
      const double u = hash_to_unit_open(next_random()) * total;
      const auto it = std::upper_bound(s.cumulative.begin(), s.cumulative.end(), u);
      return std::min(n - 1, static_cast<std::size_t>(it - s.cumulative.begin()));
    } else if constexpr (std::same_as<Policy, least_connections>) {
      const std::size_t start = static_cast<std::size_t>(next_cursor(n));
      std::size_t best = start;
      if (s.equal_weights) {
        std::uint64_t best_load = s.routable[start]->in_flight();
        for (std::size_t k = 1; k < n && best_load != 0; ++k) {
          const std::size_t i = start + k < n ? start + k : start + k - n;
          const std::uint64_t load = s.routable[i]->in_flight();
          if (load < best_load) {
            best = i;
            best_load = load;
          }
        }
        return best;
      }
      double best_cost = load_cost(s, start);
      for (std::size_t k = 1; k < n; ++k) {
        const std::size_t i = start + k < n ? start + k : start + k - n;
        const double c = load_cost(s, i);
        if (c < best_cost) {
          best = i;
          best_cost = c;
        }
      }
      return best;
    } else if constexpr (std::same_as<Policy, power_of_two_choices> ||
                         std::same_as<Policy, least_response_time>) {
      if (n == 1) return 0;
      const std::uint64_t r = next_random();
      // Two distinct candidates from one draw: a from its high bits, b (among the
      // other n - 1) from its rotated low bits, shifted past a without a branch.
      const auto a = static_cast<std::size_t>(hash_to_range(r, n));
      auto b = static_cast<std::size_t>(hash_to_range(std::rotl(r, 32), n - 1));
      b += static_cast<std::size_t>(b >= a);
      if constexpr (std::same_as<Policy, power_of_two_choices>) {
        (void)now;
        return less_loaded(s, b, a) ? b : a;
      } else {
        return latency_cost(s, b, now) < latency_cost(s, a, now) ? b : a;
      }
    } else {  // key_hash
      const std::uint64_t h = keyed ? key : next_random();
      return s.ring->lookup_hash(h)->index;
    }
  }

  template <class Accept>
  std::size_t choose_accepted(const snapshot& s, std::size_t n, std::size_t rejected,
                              Accept& accept) {
    constexpr bool load_aware = std::same_as<Policy, least_connections> ||
                                std::same_as<Policy, power_of_two_choices> ||
                                std::same_as<Policy, least_response_time>;
    std::size_t best = npos;
    double best_cost = 0.0;
    for (std::size_t k = 1; k < n; ++k) {
      const std::size_t i = rejected + k < n ? rejected + k : rejected + k - n;
      if (!accept(std::as_const(s.routable[i]->endpoint))) continue;
      if constexpr (!load_aware) {
        return i;
      } else {
        const double c = load_cost(s, i);
        if (best == npos || c < best_cost) {
          best = i;
          best_cost = c;
        }
      }
    }
    return best;
  }

  void refresh_from_pick(std::int64_t now) noexcept {
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return;  // a writer is at it; use the current snapshot
    const auto snap = current_.load();
    if (now < snap->next_refresh_ns) return;  // someone refreshed already
    try {
      publish_locked(now);
    } catch (...) {
      // Out of memory while rebuilding: keep the old snapshot; a later pick retries.
    }
  }

  // -- outcomes --

  void record(state& s, outcome o, std::int64_t latency_ns,
              std::int64_t started_ns) noexcept {
    if (o == outcome::abandoned) {
      s.abandoned.add();
      return;
    }
    if (latency_ns < 0 && (always_measures || config_.measure_latency)) {
      const std::int64_t now = now_ns();
      latency_ns = std::max<std::int64_t>(0, now - started_ns);
      s.last_sample_ns.store(now, std::memory_order_relaxed);
    } else if (latency_ns >= 0 && always_measures) {
      s.last_sample_ns.store(now_ns(), std::memory_order_relaxed);
    }
    if (latency_ns >= 0) {
      // Relaxed read-modify-write without a lock: concurrent samples may overwrite
      // each other (the average stays an average of recent samples).
      const std::int64_t old = s.ewma_ns.load(std::memory_order_relaxed);
      const double next =
          old == 0 ? static_cast<double>(latency_ns)
                   : static_cast<double>(old) +
                         config_.ewma_weight * static_cast<double>(latency_ns - old);
      s.ewma_ns.store(std::max<std::int64_t>(1, static_cast<std::int64_t>(next)),
                      std::memory_order_relaxed);
    }
    if (o == outcome::success) {
      if (s.consecutive_failures.load(std::memory_order_relaxed) != 0) {
        s.consecutive_failures.store(0, std::memory_order_relaxed);
      }
      return;
    }
    s.failures.add();
    if (config_.consecutive_failures == 0) return;
    const std::uint32_t run =
        s.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
    if (run >= config_.consecutive_failures) try_eject(s);
  }

  void try_eject(state& s) noexcept {
    std::lock_guard lock(mutex_);
    // Only current members (a removed endpoint's late failures count in metrics() but
    // eject nothing).
    const bool member = std::any_of(states_.begin(), states_.end(),
                                    [&](const auto& p) { return p.get() == &s; });
    if (!member || s.ejected) return;
    if (s.consecutive_failures.load(std::memory_order_relaxed) <
        config_.consecutive_failures) {
      return;  // a success came in between
    }
    std::size_t ejected = 0;
    for (const auto& p : states_) ejected += p->ejected ? 1U : 0U;
    const auto allowed = std::max<std::size_t>(
        1,
        static_cast<std::size_t>(std::floor(
            config_.max_ejection_fraction * static_cast<double>(states_.size()) + 1e-9)));
    if (ejected >= allowed) {
      ejections_overflow_.add();
      return;
    }
    const std::int64_t now = now_ns();
    // The multiplier decays by one per base_ejection_time spent in service.
    const std::int64_t base = config_.base_ejection_time.count();
    const auto served = static_cast<std::uint64_t>(
        std::max<std::int64_t>(0, now - s.in_service_since_ns) / base);
    s.ejection_multiplier =
        served >= s.ejection_multiplier
            ? 0U
            : s.ejection_multiplier - static_cast<std::uint32_t>(served);
    const std::int64_t cap = config_.max_ejection_time.count();  // >= base: validated
    // Envoy's ejectTimeBackoff: it grows while multiplier × base < cap + base, so it
    // stops one step past the cap (11 with the defaults) and decays from there.
    if (static_cast<double>(s.ejection_multiplier) * static_cast<double>(base) <
        static_cast<double>(cap) + static_cast<double>(base)) {
      ++s.ejection_multiplier;
    }
    const double length = std::min(static_cast<double>(base) * s.ejection_multiplier,
                                   static_cast<double>(cap));
    s.ejected = true;
    s.ejected_until_ns = now + static_cast<std::int64_t>(length);
    s.consecutive_failures.store(0, std::memory_order_relaxed);
    ++s.ejections_total;
    ejections_.add();
    try {
      publish_locked(now);
    } catch (...) {
      // Out of memory: the ejection takes effect with the next successful publish.
    }
  }

  /// Applies one check result; true when the endpoint's routing state changed.
  bool apply_check_locked(state& s, bool healthy, std::int64_t now) {
    if (healthy) {
      s.checks_failed = 0;
      if (s.healthy) return false;
      if (++s.checks_passed < config_.healthy_threshold) return false;
      s.healthy = true;
      s.checks_passed = 0;
      if (!s.ejected) back_in_service(s, now);
      return true;
    }
    s.checks_passed = 0;
    if (!s.healthy) return false;
    if (++s.checks_failed < config_.unhealthy_threshold) return false;
    s.healthy = false;
    s.checks_failed = 0;
    return true;
  }

  void back_in_service(state& s, std::int64_t now) {
    returns_.add();
    s.in_service_since_ns = now;
    s.ramp_start_ns = now;
    s.consecutive_failures.store(0, std::memory_order_relaxed);
  }

  // -- membership & snapshots (mutex_ held) --

  void add_locked(const Endpoint& endpoint, double weight, std::int64_t now, bool ramp) {
    members_.add(endpoint, weight);  // validates weight and duplicates
    std::uint64_t h = 0;
    if constexpr (is_hashed) {
      static_assert(key_hasher<Hasher, Endpoint>,
                    "load_balancer<Endpoint, key_hash>: Hasher must hash Endpoint");
      h = static_cast<std::uint64_t>(hasher_(endpoint));
    }
    try {
      const std::size_t points = ring_points_checked(weight, ring_points_);
      auto s = state::make(endpoint, h, ledger_);
      s->weight = weight;
      s->in_service_since_ns = now;
      if (ramp) s->ramp_start_ns = now;
      states_.push_back(std::move(s));
      ring_points_ += points;
    } catch (...) {
      members_.remove(endpoint);
      throw;
    }
  }

  /// key_hash: the ring points of an endpoint of `weight` (as ring_placement counts
  /// them: ring_vnodes × weight, rounded), after checking here — before anything
  /// changes, so the message names load_balancer and the balancer stays as it was —
  /// that it gets at least one and that the ring over every member (`others` points
  /// besides) stays within ring_placement's limit. Other policies: 0.
  std::size_t ring_points_checked(double weight, std::size_t others) const {
    if constexpr (!is_hashed) {
      (void)weight;
      (void)others;
      return 0;
    } else {
      const double vnodes = config_.ring_vnodes;
      require(vnodes * weight >= 0.5, primitive, "weight",
              fmt::format("at least {} under key_hash (1 / (2 x ring_vnodes): a smaller "
                          "weight has no ring point of its own)",
                          0.5 / vnodes),
              weight);
      const auto points = static_cast<std::size_t>(std::round(vnodes * weight));
      require(others + points <= detail::lb_ring::max_points, primitive,
              "ring_vnodes x total weight",
              fmt::format("at most {} ring points (key_hash, ring_vnodes = {})",
                          detail::lb_ring::max_points, config_.ring_vnodes),
              others + points);
      return points;
    }
  }

  std::size_t index_or_throw(const Endpoint& endpoint, std::string_view what) const {
    const std::size_t i = members_.find(endpoint);
    require(i != members_.npos, primitive, what, "a member endpoint",
            detail::lb_label(endpoint));
    return i;
  }

  void set_flag(const Endpoint& endpoint, bool state::*flag, bool value,
                std::string_view what) {
    std::lock_guard lock(mutex_);
    state& s = *states_[index_or_throw(endpoint, what)];
    if (s.*flag == value) return;
    s.*flag = value;
    publish_locked(now_ns());
  }

  endpoint_status status_of(const state& s) const {
    if (s.draining) return endpoint_status::draining;
    if (s.excluded) return endpoint_status::excluded;
    if (s.ejected) return endpoint_status::ejected;
    if (!s.healthy) return endpoint_status::unhealthy;
    if (s.slow_starting) return endpoint_status::slow_start;
    return endpoint_status::available;
  }

  struct ramp_result {
    double factor = 1.0;               // weight share now
    std::int64_t due = no_refresh;     // when the next step is due
    detail::wrr_rational exact{1, 1};  // factor exactly (step / steps); num 0: none
  };

  /// Slow-start factor of `s` at `now` (stepped) and when the next step is due.
  ramp_result ramp(const state& s, std::int64_t now) const {
    const std::int64_t window = config_.slow_start_window.count();
    if (window == 0 || s.ramp_start_ns == std::numeric_limits<std::int64_t>::min() ||
        now - s.ramp_start_ns >= window) {
      return {};
    }
    const double steps = config_.slow_start_steps;
    const double elapsed = static_cast<double>(now - s.ramp_start_ns);
    const double step = std::floor(elapsed * steps / static_cast<double>(window));
    const double factor = std::max(config_.slow_start_min_weight, step / steps);
    const auto next = s.ramp_start_ns +
                      static_cast<std::int64_t>(
                          std::ceil((step + 1.0) * static_cast<double>(window) / steps));
    const detail::wrr_rational exact =
        step / steps >= config_.slow_start_min_weight
            ? detail::wrr_rational{static_cast<std::uint64_t>(step),
                                   config_.slow_start_steps}
            : detail::wrr_exact(config_.slow_start_min_weight)
                  .value_or(detail::wrr_rational{0, 1});
    return {factor, std::max(next, now + 1), exact};
  }

  /// Applies due time-based changes and publishes a fresh snapshot.
  void publish_locked(std::int64_t now) {
    auto next = std::make_shared<snapshot>();
    next->members = states_;
    // Ejections that ended return to service.
    for (const auto& s : states_) {
      if (s->ejected && now >= s->ejected_until_ns) {
        s->ejected = false;
        if (s->healthy) back_in_service(*s, now);
      }
    }
    std::size_t in_rotation = 0, healthy = 0;
    for (const auto& s : states_) {
      if (s->draining || s->excluded) continue;
      ++in_rotation;
      if (!s->ejected && s->healthy) ++healthy;
      if (s->ejected)
        next->next_refresh_ns = std::min(next->next_refresh_ns, s->ejected_until_ns);
    }
    next->panic = config_.panic_threshold > 0.0 && in_rotation > 0 &&
                  static_cast<double>(healthy) <
                      config_.panic_threshold * static_cast<double>(in_rotation);
    std::vector<double> weights;
    std::vector<std::uint64_t> hashes;
    std::vector<double> ring_weights;
    std::vector<detail::wrr_weight> wrr_weights;
    for (const auto& s : states_) {
      s->slow_starting = false;
      s->effective_weight = s->weight;
      if (s->draining || s->excluded) continue;
      if (!next->panic && (s->ejected || !s->healthy)) continue;
      double w = s->weight;
      if constexpr (is_weighted) {
        const ramp_result r = ramp(*s, now);
        if (r.factor < 1.0) {
          s->slow_starting = true;
          w *= r.factor;
          next->next_refresh_ns = std::min(next->next_refresh_ns, r.due);
        }
        if constexpr (std::same_as<Policy, weighted_round_robin>) {
          wrr_weights.push_back({s->weight, r.exact, r.factor});
        }
      }
      s->effective_weight = w;
      next->routable.push_back(s.get());
      next->inverse_weight.push_back(1.0 / w);
      weights.push_back(w);
      ring_weights.push_back(s->weight);
      hashes.push_back(s->hash);
    }
    for (const double w : weights)
      next->equal_weights = next->equal_weights && w == weights[0];
    if constexpr (std::same_as<Policy, weighted_random>) {
      double sum = 0.0;
      for (const double w : weights) next->cumulative.push_back(sum += w);
    } else if constexpr (std::same_as<Policy, weighted_round_robin>) {
      if (!wrr_weights.empty()) {
        auto ints = detail::wrr_integer_weights(wrr_weights);
        std::int64_t total = 0;
        for (const auto w : ints) total += w;
        if (total <= detail::smooth_wrr_table_limit) {
          next->wrr = detail::smooth_wrr_period(std::move(ints));
        } else {
          next->wrr_live = std::make_unique<detail::smooth_wrr_live>(std::move(ints));
        }
      }
    } else if constexpr (is_hashed) {
      std::vector<weighted_node<detail::lb_ring_slot>> slots;
      for (std::size_t i = 0; i < hashes.size(); ++i) {
        slots.push_back({{static_cast<std::uint32_t>(i), hashes[i]}, ring_weights[i]});
      }
      next->ring.emplace(slots, hash_ring_config{.vnodes = config_.ring_vnodes});
    }
    current_.publish(std::move(next));
  }

  load_balancer_config config_;
  Clock clock_;
  Hasher hasher_;
  // Membership (writers, under mutex_).
  mutable std::mutex mutex_;
  detail::node_set<Endpoint, Hasher> members_;  // validation + lookup by endpoint
  std::vector<std::shared_ptr<state>> states_;  // parallel to members_.nodes()
  std::size_t ring_points_ = 0;  // key_hash: ring points of all members (<= max_points)
  // Removed endpoints' counters; shared with every state, which may outlive *this.
  const std::shared_ptr<detail::lb_ledger<Endpoint>> ledger_ =
      std::make_shared<detail::lb_ledger<Endpoint>>();
  const std::uint64_t seed_;
  // Pick path.
  published<snapshot> current_;
  alignas(64) std::atomic<std::uint64_t> cursor_{0};
  alignas(64) std::atomic<std::uint64_t> draws_{0};
  alignas(64) counter no_endpoint_;
  counter panic_picks_;
  counter ejections_;
  counter ejections_overflow_;
  counter returns_;
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
