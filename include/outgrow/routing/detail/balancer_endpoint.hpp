// outgrow/routing/detail/balancer_endpoint.hpp — one load-balancer endpoint's shared
// state, the ledger of removed endpoints, and the routable set a snapshot publishes.
//
// Per-thread stripes: a pick must not write a cache line that another core's picks
// write too, or two threads pick slower than one. So an endpoint's lease counters live
// in `stripes` cache-line pairs (lb_stripe_count(): the hardware threads rounded up to
// a power of two, 2 to 8; inline, 1 KB per endpoint), and a picking thread writes only
// its own stripe (lb_stripe_for: the first thread to pick from a balancer gets stripe
// 0, and live threads get distinct stripes up to the stripe count; more threads share
// them, with atomic increments either way). Starting a lease is one atomic add to the
// stripe's `acquired`, ending it one to its `released` (on the stripe that started it,
// carried by the lease); the in-flight count of an endpoint is the sum over its
// stripes of acquired − released, read by least_connections, metrics() and the
// balancer's in_flight() with relaxed loads.
//
// Approximate loads (issue 20): reading another core's stripe costs a cache miss when
// that core has just written it, which made p2c on two threads slower than on one. A
// policy declaring approximate_load (p2c, LRT) reads in_flight_seen(): the picking
// stripe's own count exactly, plus the other stripes' sum as this stripe last read it,
// cached on the stripe's own line and re-read when it is lb_load_refresh_interval(E)
// or more of the stripe's picks old (the stripe's pick `epoch`; E routable endpoints).
// So other threads' leases are seen at most 256 x E − 1 of this thread's picks late;
// with one picking thread the other stripes are zero and the view is exact.
//
// Lifetime: an endpoint's state lives as long as a membership snapshot lists it or a
// lease holds it. While listed, no lease count is kept in one word: the last snapshot
// reference (the shared_ptr deleter, unlist()) closes every stripe's `released` (bit 63,
// fetch_or, which also returns the releases so far) and computes the leases still
// outstanding, R = picks − releases so far; it adds R to `refs_`, and every release
// that finds its stripe closed subtracts one from `refs_` instead. Whoever brings
// `refs_` to zero (the unlisting itself when R is 0) is the last reference: it folds the
// endpoint's counters into the ledger shared by the balancer and its endpoints (either
// may go first: old snapshots can linger in threads' snapshot caches) and deletes it,
// so totals stay exact whatever the churn. No pick happens after the unlisting (picks
// reach an endpoint only through a snapshot listing it), so every acquire is counted.
// balancer_endpoint_core is the part that does not depend on the Endpoint type: what
// picks, policies (through balancer_view) and outlier detection read and write.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <outgrow/cache/detail/concurrent_cache_shard.hpp>  // cc_thread_slot
#include <outgrow/core/metrics.hpp>

namespace outgrow::detail {

/// Most stripes an endpoint has (kept inline in its state: no pointer to follow on a
/// pick). More picking threads than this share stripes.
inline constexpr std::size_t lb_max_stripes = 8;

/// Stripes per balancer: the hardware threads rounded up to a power of two, in
/// [2, lb_max_stripes] (the same for every balancer of the process).
[[nodiscard]] inline std::size_t lb_stripe_count() noexcept {
  static const std::size_t n = std::clamp<std::size_t>(
      std::bit_ceil(std::max(1U, std::thread::hardware_concurrency())), 2, lb_max_stripes);
  return n;
}

/// This thread's stripe of a balancer: its dense thread slot (cc_thread_slot: 0, 1, 2,
/// ... over the live threads, recycled at thread exit) counted from the slot of the
/// first thread that picked from this balancer (`first`, set once), modulo the stripes.
/// So the first picking thread gets stripe 0, and up to lb_stripe_count() live threads
/// get stripes of their own.
[[nodiscard]] inline std::uint32_t lb_stripe_for(std::atomic<std::uint64_t>& first,
                                                 std::uint32_t mask) noexcept {
  constexpr std::uint64_t unset = std::numeric_limits<std::uint64_t>::max();
  const std::uint64_t slot = cc_thread_slot();
  std::uint64_t base = first.load(std::memory_order_relaxed);
  if (base == unset) [[unlikely]] {
    if (first.compare_exchange_strong(base, slot, std::memory_order_relaxed)) base = slot;
  }
  return static_cast<std::uint32_t>((slot - base) & mask);
}

/// Two cache lines: x86 cores prefetch the adjacent line of a pair.
inline constexpr std::size_t lb_stripe_align = 128;

/// Approximate loads: a stripe re-reads the other stripes' in-flight sum of an
/// endpoint when its cached copy is lb_load_refresh_interval(E) of the stripe's picks
/// old, E being the routable endpoints (see the file comment). A re-read costs about
/// one cache miss on each side (the reader's, and the writer's next locked add to the
/// line it shared): 150-300 ns together between the cores of a 2-core AMD EPYC VM. Each
/// endpoint's copy is re-read at most once per 256 x E picks, so a stripe makes at most
/// one re-read per 256 picks whatever E is, where exact reads made two per pick. (A
/// fixed 256 picks made E re-reads per 256 picks: with 8 endpoints on that VM, p2c on
/// two threads picked 1.04x one thread's total, against 1.78-1.80x now in
/// balancer_bench.)
inline constexpr std::uint64_t lb_load_refresh_picks_per_endpoint = 256;

/// The age, in a stripe's picks, at which its copy of other stripes' loads is re-read
/// (computed once per pick by the balancer, passed in the view's lb_load_view).
[[nodiscard]] constexpr std::uint64_t lb_load_refresh_interval(
    std::size_t endpoints) noexcept {
  return lb_load_refresh_picks_per_endpoint * std::max<std::uint64_t>(1, endpoints);
}

/// A stripe's first pick epoch: more picks after a copy's "never read" epoch 0 than any
/// interval, so a first read is always fresh (without a branch of its own).
inline constexpr std::uint64_t lb_load_first_epoch = std::uint64_t{1} << 62;

/// One stripe of an endpoint's lease counters (see the file comment).
struct alignas(lb_stripe_align) lb_endpoint_stripe {
  static constexpr std::uint64_t closed = std::uint64_t{1} << 63;
  std::atomic<std::uint64_t> acquired{0};  // leases started (= picks)
  std::atomic<std::uint64_t> released{0};  // leases ended; bit 63: closed (unlisted)
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> abandoned{0};
  // Approximate loads (written by this stripe's picking threads only): the other
  // stripes' in-flight sum and the stripe pick epoch it was read at (0: never).
  std::atomic<std::int64_t> others{0};
  std::atomic<std::uint64_t> others_epoch{0};
};

/// One endpoint's lease counters summed over its stripes.
struct lb_endpoint_counts {
  std::uint64_t picks = 0;
  std::uint64_t in_flight = 0;
  std::uint64_t failures = 0;
  std::uint64_t abandoned = 0;
};

/// The Endpoint-independent state of one endpoint (see the file comment).
class balancer_endpoint_core {
 public:
  static constexpr std::int64_t no_sample = std::numeric_limits<std::int64_t>::min();

  explicit balancer_endpoint_core(std::uint64_t h)
      : hash(h), stripe_count_(lb_stripe_count()) {}
  balancer_endpoint_core(const balancer_endpoint_core&) = delete;
  balancer_endpoint_core& operator=(const balancer_endpoint_core&) = delete;

  /// A lease starts on stripe k (< lb_stripe_count()).
  void acquire(std::size_t k) noexcept {
    stripes_[k].acquired.fetch_add(1, std::memory_order_relaxed);
  }
  void add_failure(std::size_t k) noexcept {
    stripes_[k].failures.fetch_add(1, std::memory_order_relaxed);
  }
  void add_abandoned(std::size_t k) noexcept {
    stripes_[k].abandoned.fetch_add(1, std::memory_order_relaxed);
  }

  /// Leases in flight: the sum over the stripes of acquired − released, each stripe's
  /// releases read before its acquires (a racing lease moved to another thread may
  /// make the sum briefly negative: then 0).
  [[nodiscard]] std::uint64_t in_flight() const noexcept {
    // Unrolled for each stripe count (the hot read of p2c and least_connections).
    switch (stripe_count_) {
      case 2:
        return in_flight_of<2>(stripes_);
      case 4:
        return in_flight_of<4>(stripes_);
      default:
        return in_flight_of<lb_max_stripes>(stripes_);
    }
  }
  /// Approximate loads (see the file comment): stripe k's leases in flight exactly plus
  /// the other stripes' as cached on stripe k, re-read first when the cache is
  /// `interval` or more picks older than `epoch` (stripe k's pick count, from
  /// lb_load_first_epoch, so a first read is always fresh). Called only by stripe k's
  /// picking threads.
  [[nodiscard]] std::uint64_t in_flight_seen(std::size_t k, std::uint64_t epoch,
                                             std::uint64_t interval) const noexcept {
    lb_endpoint_stripe& own = stripes_[k];
    std::int64_t others = 0;
    if (epoch - own.others_epoch.load(std::memory_order_relaxed) >= interval) [[unlikely]] {
      others = others_in_flight(k);
      own.others.store(others, std::memory_order_relaxed);
      own.others_epoch.store(epoch, std::memory_order_relaxed);
    } else {
      others = own.others.load(std::memory_order_relaxed);
    }
    const std::uint64_t released = unclosed(own.released.load(std::memory_order_relaxed));
    const std::int64_t sum =
        static_cast<std::int64_t>(own.acquired.load(std::memory_order_relaxed) - released) +
        others;
    return sum > 0 ? static_cast<std::uint64_t>(sum) : 0;
  }
  /// All counters, read in an order (outcomes, releases, picks) that keeps the derived
  /// successes (picks − failures − abandoned − in flight) from going negative.
  [[nodiscard]] lb_endpoint_counts counts() const noexcept {
    lb_endpoint_counts c;
    std::uint64_t released = 0;
    for (std::size_t k = 0; k < stripe_count_; ++k) {
      c.failures += stripes_[k].failures.load(std::memory_order_relaxed);
      c.abandoned += stripes_[k].abandoned.load(std::memory_order_relaxed);
    }
    for (std::size_t k = 0; k < stripe_count_; ++k)
      released += unclosed(stripes_[k].released.load(std::memory_order_relaxed));
    for (std::size_t k = 0; k < stripe_count_; ++k)
      c.picks += stripes_[k].acquired.load(std::memory_order_relaxed);
    c.in_flight = c.picks > released ? c.picks - released : 0;
    return c;
  }

  const std::uint64_t hash;  // by the balancer's Hasher (keyed policies only, else 0)
  std::atomic<std::uint32_t> consecutive_failures{0};
  std::atomic<std::int64_t> ewma_ns{0};  // 0 = no sample
  std::atomic<std::int64_t> last_sample_ns{no_sample};
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

  [[nodiscard]] static std::uint64_t unclosed(std::uint64_t released) noexcept {
    return released & ~lb_endpoint_stripe::closed;
  }
  template <std::size_t N>
  [[nodiscard]] static std::uint64_t in_flight_of(const lb_endpoint_stripe* st) noexcept {
    std::uint64_t sum = 0;
    for (std::size_t k = 0; k < N; ++k) {
      const std::uint64_t released = st[k].released.load(std::memory_order_relaxed);
      sum += st[k].acquired.load(std::memory_order_relaxed) - unclosed(released);
    }
    return static_cast<std::int64_t>(sum) > 0 ? sum : 0;
  }

  /// The in-flight sum of every stripe but k (may be negative while a lease moves).
  [[nodiscard]] std::int64_t others_in_flight(std::size_t k) const noexcept {
    std::uint64_t sum = 0;
    for (std::size_t j = 0; j < stripe_count_; ++j) {
      if (j == k) continue;
      const std::uint64_t released = stripes_[j].released.load(std::memory_order_relaxed);
      sum += stripes_[j].acquired.load(std::memory_order_relaxed) - unclosed(released);
    }
    return static_cast<std::int64_t>(sum);
  }

  const std::size_t stripe_count_;
  // Mutable: in_flight_seen() caches other stripes' counts on the reader's own stripe.
  mutable lb_endpoint_stripe stripes_[lb_max_stripes];  // the first stripe_count_ used
  // Leases outstanding after the unlisting (see the file comment); 0 while listed.
  std::atomic<std::int64_t> refs_{0};
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

  /// A shared_ptr whose last copy unlists the endpoint instead of deleting it.
  static std::shared_ptr<lb_endpoint> make(Endpoint e, std::uint64_t h,
                                           std::shared_ptr<lb_ledger<Endpoint>> l) {
    return std::shared_ptr<lb_endpoint>(new lb_endpoint(std::move(e), h, std::move(l)),
                                        [](lb_endpoint* p) { p->unlist(); });
  }

  /// Ends a lease started on stripe k; deletes the endpoint if it was the last
  /// reference (see the file comment).
  void release(std::size_t k) noexcept {
    const std::uint64_t prev = stripes_[k].released.fetch_add(1, std::memory_order_acq_rel);
    if ((prev & lb_endpoint_stripe::closed) == 0) [[likely]]
      return;
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy();
  }

 private:
  /// The last snapshot listing the endpoint let go of it: close the stripes, count the
  /// leases still out, and delete now if there are none.
  void unlist() noexcept {
    std::uint64_t released = 0, acquired = 0;
    for (std::size_t k = 0; k < stripe_count_; ++k) {
      released += unclosed(stripes_[k].released.fetch_or(lb_endpoint_stripe::closed,
                                                         std::memory_order_acq_rel));
    }
    for (std::size_t k = 0; k < stripe_count_; ++k)
      acquired += stripes_[k].acquired.load(std::memory_order_acquire);
    const auto out = static_cast<std::int64_t>(acquired - released);
    if (refs_.fetch_add(out, std::memory_order_acq_rel) + out == 0) destroy();
  }
  void destroy() noexcept {
    ledger->retire(*this);  // a removed endpoint's final counts join the totals
    delete this;
  }

 public:
  const Endpoint endpoint;
  const std::shared_ptr<lb_ledger<Endpoint>> ledger;
  bool removed = false;  // guarded by ledger->mutex
};

template <class Endpoint>
void lb_ledger<Endpoint>::retire(const lb_endpoint<Endpoint>& e) noexcept {
  std::lock_guard lock(mutex);
  if (!e.removed) return;  // a member (the balancer is going away)
  const lb_endpoint_counts c = e.counts();
  picks += c.picks;
  failures += c.failures;
  abandoned += c.abandoned;
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
