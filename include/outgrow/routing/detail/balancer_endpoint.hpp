// outgrow/routing/detail/balancer_endpoint.hpp — one load-balancer endpoint's shared
// state, the ledger of removed endpoints, and the routable set a snapshot publishes.
//
// An endpoint's state lives as long as a membership snapshot lists it or a lease holds
// it, so it is reference-counted by hand: one 64-bit word packs
// [picks since last fold : 32][in flight : 31][listed : 1], and starting a lease is one
// atomic add, ending it one atomic sub that also tells whether this was the last
// reference. The last reference of a removed endpoint folds its counters into the
// ledger shared by the balancer and its endpoints (either may go first: old snapshots
// can linger in threads' snapshot caches), so totals stay exact whatever the churn.
// balancer_endpoint_core is the part that does not depend on the Endpoint type: what
// picks, policies (through balancer_view) and outlier detection read and write.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/core/metrics.hpp>

namespace outgrow::detail {

/// The Endpoint-independent state of one endpoint (see the file comment for `word_`).
class balancer_endpoint_core {
 public:
  static constexpr std::uint64_t listed_unit = 1;
  static constexpr std::uint64_t lease_unit = 2;
  static constexpr std::uint64_t pick_unit = std::uint64_t{1} << 32;
  static constexpr std::uint64_t low_mask = pick_unit - 1;
  static constexpr std::uint64_t fold_at = std::uint64_t{1} << 31;
  static constexpr std::int64_t no_sample = std::numeric_limits<std::int64_t>::min();

  explicit balancer_endpoint_core(std::uint64_t h) noexcept : hash(h) {}
  balancer_endpoint_core(const balancer_endpoint_core&) = delete;
  balancer_endpoint_core& operator=(const balancer_endpoint_core&) = delete;

  void acquire() noexcept {
    const std::uint64_t prev =
        word_.fetch_add(pick_unit + lease_unit, std::memory_order_relaxed);
    if ((prev >> 32) == fold_at - 1) [[unlikely]] {
      // Exactly one pick crosses 2^31 unfolded picks: move them to the 64-bit total.
      folded_.fetch_add(fold_at, std::memory_order_relaxed);
      word_.fetch_sub(fold_at << 32, std::memory_order_relaxed);
    }
  }
  [[nodiscard]] std::uint64_t in_flight() const noexcept {
    return (word_.load(std::memory_order_relaxed) & low_mask) >> 1;
  }
  [[nodiscard]] std::uint64_t picks() const noexcept {
    return folded_.load(std::memory_order_relaxed) +
           (word_.load(std::memory_order_relaxed) >> 32);
  }

  const std::uint64_t hash;  // by the balancer's Hasher (keyed policies only, else 0)
  // Hot: updated by leases.
  alignas(64) std::atomic<std::uint64_t> word_{listed_unit};
  std::atomic<std::uint32_t> consecutive_failures{0};
  std::atomic<std::int64_t> ewma_ns{0};  // 0 = no sample
  std::atomic<std::int64_t> last_sample_ns{no_sample};
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

 protected:
  ~balancer_endpoint_core() = default;
};

template <class Endpoint>
class lb_endpoint;

/// Where the counters of removed endpoints live, shared by a balancer and its endpoints'
/// states. A removed endpoint still referenced (by a lease or an old snapshot) is listed
/// in `removed` and read live; its last reference folds its final counts into the totals
/// below under `mutex`, so a reader holding `mutex` sees every pick exactly once.
template <class Endpoint>
struct lb_ledger {
  std::mutex mutex;
  std::vector<const lb_endpoint<Endpoint>*> removed;
  std::uint64_t picks = 0, failures = 0, abandoned = 0;  // of removed endpoints gone

  /// Called by an endpoint's last reference, just before it is deleted.
  void retire(const lb_endpoint<Endpoint>& e) noexcept;
};

/// One endpoint's shared state: the core plus the endpoint value and its ledger.
template <class Endpoint>
class lb_endpoint final : public balancer_endpoint_core {
 public:
  lb_endpoint(Endpoint e, std::uint64_t h, std::shared_ptr<lb_ledger<Endpoint>> l)
      : balancer_endpoint_core(h), endpoint(std::move(e)), ledger(std::move(l)) {}

  /// A shared_ptr whose last copy drops the "listed" reference instead of deleting.
  static std::shared_ptr<lb_endpoint> make(Endpoint e, std::uint64_t h,
                                           std::shared_ptr<lb_ledger<Endpoint>> l) {
    return std::shared_ptr<lb_endpoint>(new lb_endpoint(std::move(e), h, std::move(l)),
                                        [](lb_endpoint* p) { p->release(listed_unit); });
  }

  /// Drops one reference (a lease or the listing); deletes on the last one.
  void release(std::uint64_t unit) noexcept {
    if ((word_.fetch_sub(unit, std::memory_order_acq_rel) & low_mask) == unit) {
      ledger->retire(*this);  // a removed endpoint's final counts join the totals
      delete this;
    }
  }

  const Endpoint endpoint;
  const std::shared_ptr<lb_ledger<Endpoint>> ledger;
  bool removed = false;  // guarded by ledger->mutex
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

/// The exact share of a configured weight that slow start leaves (step / steps, or
/// slow_start_min_weight read exactly; num == 0: no exact form) and the same as a double.
struct lb_weight_share {
  std::uint64_t num = 1;
  std::uint64_t den = 1;
  double value = 1.0;
};

/// Per routable endpoint, what a policy may read besides the hot fields.
struct lb_routable_info {
  double weight = 1.0;            // configured
  double effective_weight = 1.0;  // slow start applied
  lb_weight_share share{};        // effective_weight / weight
  bool usable = true;             // false: ejected or unhealthy, routable in panic only
};

/// The routable set of one membership snapshot, as picks and policies see it.
struct balancer_pool {
  std::vector<balancer_endpoint_core*> routable;  // the set picks choose from
  std::vector<double> inverse_weight;             // 1 / effective weight, per routable
  std::vector<lb_routable_info> info;             // per routable
  bool panic = false;
  bool equal_weights = true;  // every routable endpoint has the same effective weight
};

/// splitmix64 of seed + n·golden: the n-th draw of a seeded random stream.
[[nodiscard]] constexpr std::uint64_t lb_draw(std::uint64_t seed,
                                              std::uint64_t n) noexcept {
  std::uint64_t x = seed + (n + 1) * 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/// An endpoint as error messages name it.
template <class T>
[[nodiscard]] std::string lb_label(const T& value) {
  if constexpr (fmt::is_formattable<T>::value) {
    return fmt::format("{}", value);
  } else {
    return "<endpoint>";
  }
}

}  // namespace outgrow::detail
