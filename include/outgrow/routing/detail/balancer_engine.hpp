// outgrow/routing/detail/balancer_engine.hpp — the engine behind load_balancer:
// membership snapshots, the pick path, outcomes, outlier ejection and active checks.
//
// load_balancer (routing/load_balancer.hpp) is the documented interface and forwards
// here; this is everything it does, kept in one class so the public header stays
// readable. Picks read an immutable snapshot (published<snapshot>: the routable pool and
// the policy's table) and never lock; membership and health changes rebuild and publish
// a snapshot under `mutex_`; time-based changes (an ejection ending, a slow-start step)
// are applied by the first pick that notices them, with try_lock. The Policy is called
// statically (pick per pick, build per snapshot). Config is load_balancer_config (a
// template parameter only so this header does not depend on the public one).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <outgrow/core/clock.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/core/metrics.hpp>
#include <outgrow/core/seed.hpp>
#include <outgrow/core/snapshot.hpp>
#include <outgrow/routing/detail/balancer_config.hpp>
#include <outgrow/routing/detail/balancer_endpoint.hpp>
#include <outgrow/routing/detail/balancer_policies.hpp>
#include <outgrow/routing/detail/outlier_detection.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow::detail {

/// What a pick returns to the balancer: the endpoint's state (null: nothing routable
/// or accepted) with a reference taken, and the Clock time it read (0 if none).
template <class State>
struct lb_pick {
  State* state = nullptr;
  std::int64_t now = 0;
  std::uint32_t stripe = 0;  // the picking thread's stripe (lb_stripe_for)
};

/// One picking stripe of a balancer (see balancer_endpoint.hpp): the round-robin cursor,
/// the random stream and the pick counters of the threads that use it.
struct alignas(lb_stripe_align) lb_pick_stripe {
  std::atomic<std::uint64_t> cursor{0};
  std::atomic<std::uint64_t> draws{0};
  std::atomic<std::uint64_t> no_endpoint{0};
  std::atomic<std::uint64_t> panic_picks{0};
  // Picks of an approximate_load policy on this stripe, from lb_load_first_epoch (so a
  // stripe's first read of an endpoint's load is fresh): the cache's clock.
  std::atomic<std::uint64_t> epoch{lb_load_first_epoch};
  std::uint64_t seed = 0;  // stripe 0: the balancer's seed; others derived from it
};

enum class lb_outcome : std::uint8_t { success, failure, abandoned };

template <class Endpoint, class Policy, class Clock, class Hasher, class Config>
class balancer_engine {
 public:
  using state = lb_endpoint<Endpoint>;
  using traits = lb_policy_traits<Policy>;
  using table_type = typename lb_policy_table<Policy>::type;
  using outcome = lb_outcome;
  static constexpr std::int64_t no_refresh = std::numeric_limits<std::int64_t>::max();
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  static constexpr std::string_view primitive = "load_balancer";

  struct snapshot {
    std::vector<std::shared_ptr<state>> members;  // ownership: every member
    balancer_pool pool;                           // the routable set picks choose from
    [[no_unique_address]] table_type table{};     // the policy's, built per snapshot
    std::int64_t next_refresh_ns = no_refresh;
  };

  struct accept_all {
    constexpr bool operator()(const Endpoint&) const noexcept { return true; }
  };

  /// Throws: config_error for a bad weight, a duplicate or a bad config (an empty list
  /// is fine: picks find nothing until add()).
  balancer_engine(std::vector<weighted_node<Endpoint>> list, const Config& config,
                  Clock clock, Hasher hasher)
      : config_(validated(config)),
        clock_(std::move(clock)),
        hasher_(std::move(hasher)),
        members_(primitive, hasher_),
        seed_(resolve_seed(config.seed)),
        current_(std::make_shared<const snapshot>()),
        stripe_mask_(static_cast<std::uint32_t>(lb_stripe_count() - 1)),
        stripes_(std::make_unique<lb_pick_stripe[]>(lb_stripe_count())) {
    // Stripe k starts its cursor at k (threads spread from their first pick) and draws
    // its own stream; stripe 0, the first picking thread's, is the seed's own.
    for (std::uint32_t k = 0; k <= stripe_mask_; ++k) {
      stripes_[k].cursor.store(k, std::memory_order_relaxed);
      stripes_[k].seed = k == 0 ? seed_ : lb_draw(seed_ ^ 0xD1B54A32D192ED03ULL, k);
    }
    std::lock_guard lock(mutex_);
    const std::int64_t now = now_ns();
    for (auto& wn : list) add_locked(wn.node, wn.weight, now, /*ramp=*/false);
    publish_locked(now);
  }

  void add(const Endpoint& endpoint, double weight) {
    std::lock_guard lock(mutex_);
    const std::int64_t now = now_ns();
    add_locked(endpoint, weight, now, /*ramp=*/true);
    publish_locked(now);
  }

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
    table_cost_ -= table_cost_checked(s.weight, 0);
    states_.erase(states_.begin() + static_cast<std::ptrdiff_t>(i));
    publish_locked(now_ns());
  }

  void set_weight(const Endpoint& endpoint, double weight) {
    std::lock_guard lock(mutex_);
    state& s = *states_[index_or_throw(endpoint, "set_weight(endpoint)")];
    const double old = s.weight;
    members_.set_weight(endpoint, weight);  // validates the weight
    std::size_t points = 0;
    const std::size_t old_points = table_cost_checked(old, 0);
    try {
      points = table_cost_checked(weight, table_cost_ - old_points);
    } catch (...) {
      members_.set_weight(endpoint, old);
      throw;
    }
    s.weight = weight;
    table_cost_ = table_cost_ - old_points + points;
    publish_locked(now_ns());
  }

  void report_health(const Endpoint& endpoint, bool healthy) {
    std::lock_guard lock(mutex_);
    const std::size_t i = members_.find(endpoint);
    if (i == members_.npos) return;
    const std::int64_t now = now_ns();
    if (apply_check_locked(*states_[i], healthy, now)) publish_locked(now);
  }

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

  void set_flag(const Endpoint& endpoint, bool balancer_endpoint_core::*flag, bool value,
                std::string_view what) {
    std::lock_guard lock(mutex_);
    state& s = *states_[index_or_throw(endpoint, what)];
    if (s.*flag == value) return;
    s.*flag = value;
    publish_locked(now_ns());
  }

  void refresh() {
    std::lock_guard lock(mutex_);
    publish_locked(now_ns());
  }

  template <class Removed>
  Removed removed_locked() const {
    Removed r;
    std::lock_guard lock(ledger_->mutex);
    r.picks = ledger_->picks;
    r.failures = ledger_->failures;
    r.abandoned = ledger_->abandoned;
    for (const state* s : ledger_->removed) {
      const lb_endpoint_counts c = s->counts();
      r.picks += c.picks;
      r.failures += c.failures;
      r.abandoned += c.abandoned;
      r.in_flight += c.in_flight;
    }
    r.lingering = ledger_->removed.size();
    const std::uint64_t done = r.failures + r.abandoned + r.in_flight;
    r.successes = r.picks > done ? r.picks - done : 0;
    return r;
  }

  static Config validated(Config c) {
    lb_validate<Policy>(c, primitive, "");
    return c;
  }

  // -- observation (the public metric types are template parameters) --

  template <class Status>
  static Status status_of(const state& s) noexcept {
    if (s.draining) return Status::draining;
    if (s.excluded) return Status::excluded;
    if (s.ejected) return Status::ejected;
    if (!s.healthy) return Status::unhealthy;
    if (s.slow_starting) return Status::slow_start;
    return Status::available;
  }

  template <class Metrics, class Removed, class Status>
  [[nodiscard]] Metrics metrics() const {
    std::lock_guard lock(mutex_);
    Metrics m;
    const Removed r = removed_locked<Removed>();
    m.picks = r.picks;
    m.failures = r.failures;
    m.abandoned = r.abandoned;
    m.in_flight = r.in_flight;
    for (const auto& s : states_) {
      const lb_endpoint_counts c = s->counts();
      m.picks += c.picks;
      m.failures += c.failures;
      m.abandoned += c.abandoned;
      m.in_flight += c.in_flight;
      const auto st = status_of<Status>(*s);
      m.ejected += s->ejected ? 1U : 0U;
      m.unhealthy += s->healthy ? 0U : 1U;
      m.draining += st == Status::draining ? 1U : 0U;
      m.excluded += st == Status::excluded ? 1U : 0U;
    }
    const std::uint64_t done = m.failures + m.abandoned + m.in_flight;
    m.successes = m.picks > done ? m.picks - done : 0;
    for (std::uint32_t k = 0; k <= stripe_mask_; ++k) {
      m.no_endpoint += stripes_[k].no_endpoint.load(std::memory_order_relaxed);
      m.panic_picks += stripes_[k].panic_picks.load(std::memory_order_relaxed);
    }
    m.ejections = ejections_.load();
    m.ejections_overflow = ejections_overflow_.load();
    m.returns = returns_.load();
    m.endpoints = states_.size();
    const auto snap = current_.load();
    m.routable = snap->pool.routable.size();
    m.panic = snap->pool.panic;
    return m;
  }

  template <class Removed>
  [[nodiscard]] Removed removed_endpoints() const {
    std::lock_guard lock(mutex_);
    return removed_locked<Removed>();
  }

  template <class Item, class Status>
  [[nodiscard]] std::vector<Item> endpoints() const {
    std::lock_guard lock(mutex_);
    std::vector<Item> out;
    out.reserve(states_.size());
    for (const auto& s : states_) {
      Item e{.endpoint = s->endpoint};
      e.status = status_of<Status>(*s);
      e.weight = s->weight;
      e.effective_weight = s->effective_weight;
      const lb_endpoint_counts c = s->counts();
      e.in_flight = c.in_flight;
      e.picks = c.picks;
      e.failures = c.failures;
      e.abandoned = c.abandoned;
      const std::uint64_t done = e.failures + e.abandoned + e.in_flight;
      e.successes = e.picks > done ? e.picks - done : 0;
      e.ejections = s->ejections_total;
      e.latency_ewma = std::chrono::nanoseconds{s->ewma_ns.load(std::memory_order_relaxed)};
      out.push_back(std::move(e));
    }
    return out;
  }

  template <class Status>
  [[nodiscard]] Status status(const Endpoint& endpoint) const {
    std::lock_guard lock(mutex_);
    return status_of<Status>(*states_[index_or_throw(endpoint, "status(endpoint)")]);
  }

  [[nodiscard]] bool contains(const Endpoint& endpoint) const {
    std::lock_guard lock(mutex_);
    return members_.contains(endpoint);
  }
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(mutex_);
    return states_.size();
  }
  [[nodiscard]] std::uint64_t in_flight(const Endpoint& endpoint) const {
    std::lock_guard lock(mutex_);
    const std::size_t i = members_.find(endpoint);
    return i == members_.npos ? 0 : states_[i]->in_flight();
  }
  [[nodiscard]] std::int64_t now_ns() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               clock_.now().time_since_epoch())
        .count();
  }

  // -- pick path --

  template <class Accept>
  lb_pick<state> pick_impl(Accept&& accept, std::optional<std::uint64_t> key) noexcept(
      std::is_nothrow_invocable_v<Accept&, const Endpoint&>) {
    const snapshot* s = &current_.local();
    std::int64_t now = 0;
    if (traits::measures_latency || s->next_refresh_ns != no_refresh ||
        config_.measure_latency) {
      now = now_ns();
      if (now >= s->next_refresh_ns) [[unlikely]] {
        refresh_from_pick(now);
        s = &current_.local();
      }
    }
    const std::uint32_t k = lb_stripe_for(first_slot_, stripe_mask_);
    lb_pick_stripe& stripe = stripes_[k];
    const std::size_t n = s->pool.routable.size();
    if (n == 0) [[unlikely]] {
      stripe.no_endpoint.fetch_add(1, std::memory_order_relaxed);
      return {};
    }
    lb_load_view loads{};
    if constexpr (traits::approximate_load) {
      // Relaxed load/store, not a locked add: threads sharing a stripe may both read the
      // same epoch, which only delays a refresh by a pick.
      loads = {true, k, stripe.epoch.load(std::memory_order_relaxed),
               lb_load_refresh_interval(n)};
      stripe.epoch.store(loads.epoch + 1, std::memory_order_relaxed);
    }
    const outgrow::balancer_view view(s->pool, now, config_.latency_stale_after.count(),
                                      loads);
    outgrow::pick_context context(stripe.cursor, stripe.draws, stripe.seed, key);
    std::size_t i = 0;
    if constexpr (traits::has_table) {
      i = static_cast<std::size_t>(policy_.pick(view, s->table, context));
    } else {
      i = static_cast<std::size_t>(policy_.pick(view, context));
    }
    state* chosen = static_cast<state*>(s->pool.routable[i]);
    if constexpr (!std::same_as<std::remove_cvref_t<Accept>, accept_all>) {
      if (!accept(std::as_const(chosen->endpoint))) {
        i = choose_accepted(view, *s, n, i, accept);
        if (i == npos) return {};
        chosen = static_cast<state*>(s->pool.routable[i]);
      }
    }
    if (s->pool.panic) [[unlikely]]
      stripe.panic_picks.fetch_add(1, std::memory_order_relaxed);
    chosen->acquire(k);
    return {chosen, now, k};
  }

  /// pick_if: the best accepted endpoint after the policy's rejected choice — by load
  /// for load-aware policies, else the next accepted one.
  template <class Accept>
  std::size_t choose_accepted(const outgrow::balancer_view& view, const snapshot& s,
                              std::size_t n, std::size_t rejected, Accept& accept) {
    std::size_t best = npos;
    double best_cost = 0.0;
    for (std::size_t k = 1; k < n; ++k) {
      const std::size_t i = rejected + k < n ? rejected + k : rejected + k - n;
      if (!accept(std::as_const(static_cast<const state*>(s.pool.routable[i])->endpoint)))
        continue;
      if constexpr (!traits::load_aware) {
        return i;
      } else {
        const double c = view.load(i);
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

  /// A lease started on `stripe` ends with `o`.
  void record(state& s, outcome o, std::int64_t latency_ns, std::int64_t started_ns,
              std::uint32_t stripe) noexcept {
    if (o == outcome::abandoned) {
      s.add_abandoned(stripe);
      return;
    }
    if (latency_ns < 0 && (traits::measures_latency || config_.measure_latency)) {
      const std::int64_t now = now_ns();
      latency_ns = std::max<std::int64_t>(0, now - started_ns);
      s.last_sample_ns.store(now, std::memory_order_relaxed);
    } else if (latency_ns >= 0 && traits::measures_latency) {
      s.last_sample_ns.store(now_ns(), std::memory_order_relaxed);
    }
    if (latency_ns >= 0) lb_record_latency(s, latency_ns, config_.ewma_weight);
    if (o == outcome::success) {
      if (s.consecutive_failures.load(std::memory_order_relaxed) != 0) {
        s.consecutive_failures.store(0, std::memory_order_relaxed);
      }
      return;
    }
    s.add_failure(stripe);
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
    if (ejected >= lb_ejections_allowed(config_, states_.size())) {
      ejections_overflow_.add();
      return;
    }
    const std::int64_t now = now_ns();
    lb_eject(s, config_, now);
    ejections_.add();
    try {
      publish_locked(now);
    } catch (...) {
      // Out of memory: the ejection takes effect with the next successful publish.
    }
  }

  /// Applies one check result; true when the endpoint's routing state changed.
  bool apply_check_locked(state& s, bool healthy, std::int64_t now) {
    const lb_check_result r = lb_apply_check(s, healthy, config_, now);
    if (r.returned) returns_.add();
    return r.changed;
  }

  // -- membership & snapshots (mutex_ held) --

  void add_locked(const Endpoint& endpoint, double weight, std::int64_t now, bool ramp) {
    members_.add(endpoint, weight);  // validates weight and duplicates
    std::uint64_t h = 0;
    if constexpr (traits::keyed) {
      static_assert(key_hasher<Hasher, Endpoint>,
                    "load_balancer<Endpoint, keyed policy>: Hasher must hash Endpoint");
      h = static_cast<std::uint64_t>(hasher_(endpoint));
    }
    try {
      const std::size_t cost = table_cost_checked(weight, table_cost_);
      auto s = state::make(endpoint, h, ledger_);
      s->weight = weight;
      s->in_service_since_ns = now;
      if (ramp) s->ramp_start_ns = now;
      states_.push_back(std::move(s));
      table_cost_ += cost;
    } catch (...) {
      members_.remove(endpoint);
      throw;
    }
  }

  /// The policy's table_cost of an endpoint of `weight` with `others` besides (key_hash:
  /// ring points), which throws config_error over the table's limits; 0 without one.
  std::size_t table_cost_checked(double weight, std::size_t others) const {
    if constexpr (requires { Policy::table_cost(weight, others, config_, primitive); }) {
      return Policy::table_cost(weight, others, config_, primitive);
    } else {
      (void)weight;
      (void)others;
      return 0;
    }
  }

  std::size_t index_or_throw(const Endpoint& endpoint, std::string_view what) const {
    const std::size_t i = members_.find(endpoint);
    require(i != members_.npos, primitive, what, "a member endpoint", lb_label(endpoint));
    return i;
  }

  /// Applies due time-based changes and publishes a fresh snapshot.
  void publish_locked(std::int64_t now) {
    auto next = std::make_shared<snapshot>();
    next->members = states_;
    // Ejections that ended return to service.
    for (const auto& s : states_) {
      if (s->ejected && now >= s->ejected_until_ns) {
        s->ejected = false;
        if (s->healthy) {
          returns_.add();
          lb_back_in_service(*s, now);
        }
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
    balancer_pool& pool = next->pool;
    pool.panic = config_.panic_threshold > 0.0 && in_rotation > 0 &&
                 static_cast<double>(healthy) <
                     config_.panic_threshold * static_cast<double>(in_rotation);
    for (const auto& s : states_) {
      s->slow_starting = false;
      s->effective_weight = s->weight;
      if (s->draining || s->excluded) continue;
      const bool usable = !s->ejected && s->healthy;
      if (!pool.panic && !usable) continue;
      lb_routable_info info{.weight = s->weight, .usable = usable};
      double w = s->weight;
      if constexpr (traits::ramps_weights) {
        const lb_ramp r = lb_slow_start(*s, config_, now);
        if (r.factor < 1.0) {
          s->slow_starting = true;
          w *= r.factor;
          next->next_refresh_ns = std::min(next->next_refresh_ns, r.due);
        }
        info.share = {r.exact.num, r.exact.den, r.factor};
      }
      s->effective_weight = w;
      info.effective_weight = w;
      pool.routable.push_back(s.get());
      pool.inverse_weight.push_back(1.0 / w);
      pool.info.push_back(info);
    }
    for (const auto& info : pool.info)
      pool.equal_weights =
          pool.equal_weights && info.effective_weight == pool.info[0].effective_weight;
    if constexpr (traits::has_table) {
      policy_.build(next->table,
                    outgrow::balancer_view(pool, now, config_.latency_stale_after.count()),
                    config_);
    }
    current_.publish(std::move(next));
  }

  Config config_;
  Clock clock_;
  Hasher hasher_;
  [[no_unique_address]] Policy policy_{};
  // Membership (writers, under mutex_).
  mutable std::mutex mutex_;
  node_set<Endpoint, Hasher> members_;          // validation + lookup by endpoint
  std::vector<std::shared_ptr<state>> states_;  // parallel to members_.nodes()
  std::size_t table_cost_ = 0;  // the policy's table_cost of all members (key_hash: ring)
  // Removed endpoints' counters; shared with every state, which may outlive *this.
  const std::shared_ptr<lb_ledger<Endpoint>> ledger_ =
      std::make_shared<lb_ledger<Endpoint>>();
  const std::uint64_t seed_;
  // Pick path: per-thread stripes (balancer_endpoint.hpp), no shared line written.
  published<snapshot> current_;
  const std::uint32_t stripe_mask_;
  // The thread slot of the first picking thread (lb_stripe_for); max = none yet.
  std::atomic<std::uint64_t> first_slot_{std::numeric_limits<std::uint64_t>::max()};
  const std::unique_ptr<lb_pick_stripe[]> stripes_;
  // Writer-side counters.
  counter ejections_;
  counter ejections_overflow_;
  counter returns_;
};

}  // namespace outgrow::detail
