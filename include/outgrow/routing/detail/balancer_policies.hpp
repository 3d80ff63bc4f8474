// outgrow/routing/detail/balancer_policies.hpp — the balancing-policy concept, the view
// and context a policy picks with, and the built-in policies.
//
// Documented in load_balancer.hpp ("Policies", "Writing a policy"), which includes this
// header; the public names (balancer_view, pick_context, balancing_policy, round_robin,
// ...) are in namespace outgrow and stay there. Kept apart so the public header stays
// documentation plus the balancer's interface, while each policy's engine (the smooth
// WRR table, the key-hash ring, the p2c draw) reads in one place. The load_balancer
// calls a policy statically: pick(view, [table,] context) per pick, build(table, view,
// config) per membership snapshot; detail::lb_policy_traits reads a policy's optional
// declarations with their defaults.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/core/error.hpp>
#include <outgrow/core/hash.hpp>
#include <outgrow/routing/detail/balancer_endpoint.hpp>
#include <outgrow/routing/detail/wrr_smooth.hpp>
#include <outgrow/routing/hash_ring.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow {

struct load_balancer_config;

/// The exact share of an endpoint's configured weight that slow start leaves: num / den
/// exactly (num == 0: no exact form), value as a double. 1/1 outside a ramp.
using weight_share = detail::lb_weight_share;

namespace detail {
/// How a balancer_view reads in-flight counts: exact (every stripe summed) or, for a
/// policy declaring approximate_load, as picking stripe `stripe` sees them at its pick
/// `epoch` (its own leases exactly, other threads' at most `interval` − 1 picks late,
/// lb_load_refresh_interval(size()) when the balancer makes the view; 0 reads every
/// stripe: see "Per-thread stripes" in load_balancer.hpp).
struct lb_load_view {
  bool approximate = false;
  std::uint32_t stripe = 0;
  std::uint64_t epoch = 0;
  std::uint64_t interval = 0;
};
}  // namespace detail

/// Read-only view of one membership snapshot's routable endpoints, as a policy sees
/// them: indices 0 .. size() - 1 in insertion order; size() >= 1 whenever pick() is
/// called. Valid for the duration of one pick() or build() call. Reads are lock-free
/// (relaxed atomics for the live counters).
class balancer_view {
 public:
  /// Made by the balancer per pick; public so a policy can be unit-tested on a pool
  /// (`loads`: exact unless the balancer passes a picking stripe's approximate view).
  balancer_view(const detail::balancer_pool& pool, std::int64_t now_ns,
                std::int64_t latency_stale_after_ns,
                detail::lb_load_view loads = {}) noexcept
      : pool_(&pool),
        now_ns_(now_ns),
        stale_after_ns_(latency_stale_after_ns),
        loads_(loads) {}

  [[nodiscard]] std::size_t size() const noexcept { return pool_->routable.size(); }
  /// Leases of endpoint i in flight now: exact, or under a policy declaring
  /// approximate_load this thread's exactly plus other threads' as last refreshed.
  [[nodiscard]] std::uint64_t in_flight(std::size_t i) const noexcept {
    if (loads_.approximate)
      return pool_->routable[i]->in_flight_seen(loads_.stripe, loads_.epoch,
                                                loads_.interval);
    return pool_->routable[i]->in_flight();
  }
  /// The configured weight of endpoint i.
  [[nodiscard]] double weight(std::size_t i) const noexcept {
    return pool_->info[i].weight;
  }
  /// Its weight as picks see it (slow start applied), and 1 / that.
  [[nodiscard]] double effective_weight(std::size_t i) const noexcept {
    return pool_->info[i].effective_weight;
  }
  [[nodiscard]] double inverse_weight(std::size_t i) const noexcept {
    return pool_->inverse_weight[i];
  }
  /// effective_weight / weight, exactly when it can be (slow start's step / steps).
  [[nodiscard]] weight_share slow_start_share(std::size_t i) const noexcept {
    return pool_->info[i].share;
  }
  /// True when every routable endpoint has the same effective weight.
  [[nodiscard]] bool equal_weights() const noexcept { return pool_->equal_weights; }
  /// False only in panic mode, for an endpoint that is ejected or failing active checks
  /// (panic routes to every endpoint in rotation; a policy may still prefer the usable).
  [[nodiscard]] bool usable(std::size_t i) const noexcept { return pool_->info[i].usable; }
  [[nodiscard]] bool panic() const noexcept { return pool_->panic; }
  /// (in flight + 1) / effective weight: the "least request" load measure.
  [[nodiscard]] double load(std::size_t i) const noexcept {
    // Through int64: unsigned 64-bit to double conversion costs a branch on x86-64.
    return static_cast<double>(static_cast<std::int64_t>(in_flight(i) + 1)) *
           inverse_weight(i);
  }
  /// True when endpoint i carries less load per weight than endpoint j.
  [[nodiscard]] bool less_loaded(std::size_t i, std::size_t j) const noexcept {
    if (pool_->equal_weights) return in_flight(i) < in_flight(j);
    return load(i) < load(j);
  }
  /// EWMA latency of endpoint i in nanoseconds; 0 when it has no sample within
  /// config.latency_stale_after (unknown: worth probing). Latencies are recorded when
  /// the policy declares measures_latency (or config.measure_latency is set).
  [[nodiscard]] double latency(std::size_t i) const noexcept {
    const detail::balancer_endpoint_core& e = *pool_->routable[i];
    const std::int64_t last = e.last_sample_ns.load(std::memory_order_relaxed);
    if (last == detail::balancer_endpoint_core::no_sample ||
        now_ns_ - last > stale_after_ns_) {
      return 0.0;
    }
    return static_cast<double>(e.ewma_ns.load(std::memory_order_relaxed));
  }
  /// The endpoint's hash by the balancer's Hasher (keyed policies; 0 otherwise).
  [[nodiscard]] std::uint64_t hash(std::size_t i) const noexcept {
    return pool_->routable[i]->hash;
  }

 private:
  const detail::balancer_pool* pool_;
  std::int64_t now_ns_;
  std::int64_t stale_after_ns_;
  detail::lb_load_view loads_;
};

/// What a pick may draw on besides the view: the picking thread's cursor and seeded
/// random stream (its stripe's: see "Per-thread stripes" in load_balancer.hpp; the
/// first picking thread's stream is config.seed's), and the key of pick(key). Cursor
/// and stream advance with relaxed load/store, not a locked add: threads sharing a
/// stripe (more threads than stripes) may draw the same value, the spread stays even.
class pick_context {
 public:
  /// Made by the balancer per pick; public so a policy can be unit-tested.
  pick_context(std::atomic<std::uint64_t>& cursor, std::atomic<std::uint64_t>& draws,
               std::uint64_t seed, std::optional<std::uint64_t> key = {}) noexcept
      : cursor_(&cursor),
        draws_(&draws),
        seed_(seed),
        key_(key.value_or(0)),
        keyed_(key.has_value()) {}

  /// The thread's cursor, in [0, n), one step further on every call (round robin).
  [[nodiscard]] std::size_t cursor(std::size_t n) noexcept {
    std::uint64_t c = cursor_->load(std::memory_order_relaxed);
    if (c >= n) c = 0;
    cursor_->store(c + 1, std::memory_order_relaxed);
    return static_cast<std::size_t>(c);
  }
  /// The next 64 random bits of the seeded stream (reproducible single-threaded).
  [[nodiscard]] std::uint64_t random() noexcept {
    const std::uint64_t d = draws_->load(std::memory_order_relaxed);
    draws_->store(d + 1, std::memory_order_relaxed);
    return detail::lb_draw(seed_, d);
  }
  /// pick(key) / pick_hash(): the key's 64-bit hash; pick(): no key.
  [[nodiscard]] bool has_key() const noexcept { return keyed_; }
  [[nodiscard]] std::uint64_t key() const noexcept { return key_; }

 private:
  std::atomic<std::uint64_t>* cursor_;
  std::atomic<std::uint64_t>* draws_;
  std::uint64_t seed_;
  std::uint64_t key_;
  bool keyed_;
};

namespace detail {

template <class P>
concept lb_plain_policy = requires(P& p, const balancer_view& v, pick_context& c) {
  { p.pick(v, c) } noexcept -> std::convertible_to<std::size_t>;
};

template <class P>
concept lb_tabled_policy =
    std::default_initializable<typename P::table> &&
    requires(P& p, const balancer_view& v, typename P::table& build_into,
             const typename P::table& t, pick_context& c, const load_balancer_config& cfg) {
      p.build(build_into, v, cfg);
      { p.pick(v, t, c) } noexcept -> std::convertible_to<std::size_t>;
    };

}  // namespace detail

/// A balancing policy (see "Writing a policy" in load_balancer.hpp): a default-
/// constructible type with a `name` and a noexcept `pick(view, context)` returning an
/// index in [0, view.size()) — or, with per-snapshot state, a `table` type, a
/// `build(table&, view, config)` and `pick(view, table, context)`. Optional `static
/// constexpr bool` declarations (all false by default) tell the balancer what the policy
/// reads: draws_random, ramps_weights, measures_latency, load_aware, keyed.
template <class P>
concept balancing_policy = std::default_initializable<P> && requires {
  { P::name } -> std::convertible_to<std::string_view>;
} && (detail::lb_plain_policy<P> || detail::lb_tabled_policy<P>);

namespace detail {

/// A policy's optional declarations, with their defaults.
template <class P>
struct lb_policy_traits {
  static constexpr bool draws_random = [] {
    if constexpr (requires { P::draws_random; }) return bool{P::draws_random};
    return false;
  }();
  static constexpr bool ramps_weights = [] {
    if constexpr (requires { P::ramps_weights; }) return bool{P::ramps_weights};
    return false;
  }();
  static constexpr bool measures_latency = [] {
    if constexpr (requires { P::measures_latency; }) return bool{P::measures_latency};
    return false;
  }();
  static constexpr bool load_aware = [] {
    if constexpr (requires { P::load_aware; }) return bool{P::load_aware};
    return false;
  }();
  static constexpr bool keyed = [] {
    if constexpr (requires { P::keyed; }) return bool{P::keyed};
    return false;
  }();
  static constexpr bool approximate_load = [] {
    if constexpr (requires { P::approximate_load; }) return bool{P::approximate_load};
    return false;
  }();
  static constexpr bool has_table = lb_tabled_policy<P>;
};

template <class P, bool = lb_tabled_policy<P>>
struct lb_policy_table {
  struct type {};
};
template <class P>
struct lb_policy_table<P, true> {
  using type = typename P::table;
};

/// Two distinct candidates from one draw: a from its high bits, b (among the other
/// n - 1) from its rotated low bits, shifted past a without a branch. n >= 2.
[[nodiscard]] inline std::pair<std::size_t, std::size_t> lb_two_choices(
    std::uint64_t r, std::size_t n) noexcept {
  const auto a = static_cast<std::size_t>(hash_to_range(r, n));
  auto b = static_cast<std::size_t>(hash_to_range(std::rotl(r, 32), n - 1));
  b += static_cast<std::size_t>(b >= a);
  return {a, b};
}

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

}  // namespace detail

// ---- the built-in policies (described in load_balancer.hpp) ---------------------------

/// Each routable endpoint in turn (weights ignored).
struct round_robin {
  static constexpr std::string_view name = "round_robin";
  [[nodiscard]] std::size_t pick(const balancer_view& v, pick_context& c) const noexcept {
    return c.cursor(v.size());
  }
};

/// nginx's smooth weighted round robin, pick for pick (detail/wrr_smooth.hpp).
struct weighted_round_robin {
  static constexpr std::string_view name = "weighted_round_robin";
  static constexpr bool ramps_weights = true;
  struct table {
    std::vector<std::uint32_t> period;              // one period, when short enough
    std::unique_ptr<detail::smooth_wrr_live> live;  // else nginx's step per pick
  };
  template <class Config>
  void build(table& t, const balancer_view& v, const Config&) const {
    if (v.size() == 0) return;
    std::vector<detail::wrr_weight> weights;
    weights.reserve(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      const weight_share s = v.slow_start_share(i);
      weights.push_back({v.weight(i), {s.num, s.den}, s.value});
    }
    auto ints = detail::wrr_integer_weights(weights);
    std::int64_t total = 0;
    for (const auto w : ints) total += w;
    if (total <= detail::smooth_wrr_table_limit) {
      t.period = detail::smooth_wrr_period(std::move(ints));
    } else {
      t.live = std::make_unique<detail::smooth_wrr_live>(std::move(ints));
    }
  }
  [[nodiscard]] std::size_t pick(const balancer_view&, const table& t,
                                 pick_context& c) const noexcept {
    if (t.live) [[unlikely]]
      return t.live->next();
    return t.period[c.cursor(t.period.size())];
  }
};

/// Fewest in-flight leases per unit of weight (O(N) scan from the cursor: ties rotate),
/// on exact counts (see "Per-thread stripes" in load_balancer.hpp for why).
struct least_connections {
  static constexpr std::string_view name = "least_connections";
  static constexpr bool ramps_weights = true;
  static constexpr bool load_aware = true;
  [[nodiscard]] std::size_t pick(const balancer_view& v, pick_context& c) const noexcept {
    const std::size_t n = v.size();
    const std::size_t start = c.cursor(n);
    std::size_t best = start;
    if (v.equal_weights()) {
      std::uint64_t best_load = v.in_flight(start);
      for (std::size_t k = 1; k < n && best_load != 0; ++k) {
        const std::size_t i = start + k < n ? start + k : start + k - n;
        const std::uint64_t load = v.in_flight(i);
        if (load < best_load) {
          best = i;
          best_load = load;
        }
      }
      return best;
    }
    double best_cost = v.load(start);
    for (std::size_t k = 1; k < n; ++k) {
      const std::size_t i = start + k < n ? start + k : start + k - n;
      const double cost = v.load(i);
      if (cost < best_cost) {
        best = i;
        best_cost = cost;
      }
    }
    return best;
  }
};

/// A consistent-hash ring over the routable endpoints (pick(key); pick() draws a key).
struct key_hash {
  static constexpr std::string_view name = "key_hash";
  static constexpr bool keyed = true;
  static constexpr bool draws_random = true;  // pick() without a key
  using table = std::optional<detail::lb_ring>;
  template <class Config>
  void build(table& t, const balancer_view& v, const Config& config) const {
    std::vector<weighted_node<detail::lb_ring_slot>> slots;
    slots.reserve(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      slots.push_back({{static_cast<std::uint32_t>(i), v.hash(i)}, v.weight(i)});
    }
    t.emplace(slots, hash_ring_config{.vnodes = config.ring_vnodes});
  }
  [[nodiscard]] std::size_t pick(const balancer_view&, const table& t,
                                 pick_context& c) const noexcept {
    const std::uint64_t h = c.has_key() ? c.key() : c.random();
    return t->lookup_hash(h)->index;
  }
  /// The ring points of an endpoint of `weight` (ring_vnodes × weight, rounded, as
  /// ring_placement counts them), checked before anything changes — so the message
  /// names the balancer and it stays as it was — to be at least one and to keep the
  /// ring over every member (`others` points besides) within ring_placement's limit.
  /// Throws: config_error if either check fails.
  template <class Config>
  static std::size_t table_cost(double weight, std::size_t others, const Config& config,
                                std::string_view owner) {
    const double vnodes = config.ring_vnodes;
    require(vnodes * weight >= 0.5, owner, "weight",
            fmt::format("at least {} under key_hash (1 / (2 x ring_vnodes): a smaller "
                        "weight has no ring point of its own)",
                        0.5 / vnodes),
            weight);
    const auto points = static_cast<std::size_t>(std::round(vnodes * weight));
    require(others + points <= detail::lb_ring::max_points, owner,
            "ring_vnodes x total weight",
            fmt::format("at most {} ring points (key_hash, ring_vnodes = {})",
                        detail::lb_ring::max_points, config.ring_vnodes),
            others + points);
    return points;
  }
};
/// nginx's ip_hash is key_hash with the client address as the key.
using ip_hash = key_hash;

/// Power of two choices on EWMA latency × (in flight + 1) / weight (Finagle/Linkerd
/// "p2c + EWMA"); endpoints without a recent sample score 0, so they get probed.
struct least_response_time {
  static constexpr std::string_view name = "least_response_time";
  static constexpr bool ramps_weights = true;
  static constexpr bool draws_random = true;
  static constexpr bool measures_latency = true;
  static constexpr bool load_aware = true;
  static constexpr bool approximate_load = true;
  [[nodiscard]] std::size_t pick(const balancer_view& v, pick_context& c) const noexcept {
    if (v.size() == 1) return 0;
    const auto [a, b] = detail::lb_two_choices(c.random(), v.size());
    return cost(v, b) < cost(v, a) ? b : a;
  }
  [[nodiscard]] static double cost(const balancer_view& v, std::size_t i) noexcept {
    return (v.latency(i) + 1.0) * static_cast<double>(v.in_flight(i) + 1) *
           v.inverse_weight(i);
  }
};

/// Two distinct random endpoints, the one with fewer in-flight leases per weight
/// (Envoy's default "least request"), on approximate loads (other threads' leases seen
/// at most 256 x E − 1 of this thread's picks late over E endpoints).
struct power_of_two_choices {
  static constexpr std::string_view name = "power_of_two_choices";
  static constexpr bool ramps_weights = true;
  static constexpr bool draws_random = true;
  static constexpr bool load_aware = true;
  static constexpr bool approximate_load = true;
  [[nodiscard]] std::size_t pick(const balancer_view& v, pick_context& c) const noexcept {
    if (v.size() == 1) return 0;
    const auto [a, b] = detail::lb_two_choices(c.random(), v.size());
    return v.less_loaded(b, a) ? b : a;
  }
};

/// Uniform random.
struct random_choice {
  static constexpr std::string_view name = "random_choice";
  static constexpr bool draws_random = true;
  [[nodiscard]] std::size_t pick(const balancer_view& v, pick_context& c) const noexcept {
    return static_cast<std::size_t>(hash_to_range(c.random(), v.size()));
  }
};

/// Weight-proportional random (O(log N): a binary search over cumulative weights).
struct weighted_random {
  static constexpr std::string_view name = "weighted_random";
  static constexpr bool ramps_weights = true;
  static constexpr bool draws_random = true;
  using table = std::vector<double>;  // cumulative effective weights
  template <class Config>
  void build(table& t, const balancer_view& v, const Config&) const {
    double sum = 0.0;
    t.reserve(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) t.push_back(sum += v.effective_weight(i));
  }
  [[nodiscard]] std::size_t pick(const balancer_view& v, const table& t,
                                 pick_context& c) const noexcept {
    const double u = hash_to_unit_open(c.random()) * t.back();
    const auto it = std::upper_bound(t.begin(), t.end(), u);
    return std::min(v.size() - 1, static_cast<std::size_t>(it - t.begin()));
  }
};

}  // namespace outgrow
