// outgrow/cache/detail/tiered_cache_engine.hpp — the machinery behind tiered_cache.
//
// tiered_cache (tiered_cache.hpp) documents the behaviour and forwards every member to
// this engine: the read path (tiers, write-behind buffer, negative cache, single-flight
// loads, promotion), the write path under per-key stripes, get_all's batched loads,
// the invalidation bus link, refresh-ahead / XFetch and the write-behind flush
// scheduling, shutdown and metrics. Its parts live next to it: tier_access.hpp,
// negative_cache.hpp, refresh_ahead.hpp, background.hpp.
//
// Consistency rule used throughout: every write bumps its stripe's generation under the
// stripe's mutex; a load or promotion caches its result only if the generation it read
// before looking is still current (else it is returned but not cached).
//
// Bus gate: while a connected bus that has delivering() (invalidation_bus_with_delivering)
// says false, the tiers bus messages reach (bus_reaches_) and the negative cache are
// neither read nor filled (writes erase the key there instead of storing it): they could
// be stale. Without such a bus the gate costs one relaxed atomic load per read.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include <outgrow/cache/backing_store.hpp>
#include <outgrow/cache/detail/background.hpp>
#include <outgrow/cache/detail/negative_cache.hpp>
#include <outgrow/cache/detail/refresh_ahead.hpp>
#include <outgrow/cache/detail/store_writes.hpp>
#include <outgrow/cache/detail/tier_access.hpp>
#include <outgrow/cache/detail/write_behind_buffer.hpp>
#include <outgrow/cache/invalidation.hpp>
#include <outgrow/cache/single_flight.hpp>
#include <outgrow/cache/tier.hpp>
#include <outgrow/cache/tiered_cache_config.hpp>
#include <outgrow/cache/write_policy.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/core/deadline.hpp>
#include <outgrow/core/error.hpp>
#include <outgrow/core/metrics.hpp>

namespace outgrow::detail {

/// tiered_cache<tiers<Ts...>, Store, WritePolicy, Clock>'s state and algorithms.
template <class Store, class WritePolicy, class Clock, class... Ts>
class tiered_cache_engine {
 public:
  // The public names (key_type, config_type, ...) are tiered_cache's.
  using Key = typename Store::key_type;
  using Value = typename Store::mapped_type;
  using hasher = typename store_hasher<Store>::type;
  static constexpr std::size_t tier_count = sizeof...(Ts);
  using time_point = typename Clock::time_point;
  using config_type = tiered_cache_config<Key, Value, time_point>;
  using dead_letter = dead_letter_batch<Key, Value, time_point>;
  static constexpr write_policy_kind kind = WritePolicy::kind;
  static constexpr bool is_write_behind = kind == write_policy_kind::write_behind;
  static constexpr bool is_refresh_ahead = kind == write_policy_kind::refresh_ahead;
  using buffer_type = write_behind_buffer<Key, Value, Clock, hasher>;
  using buffered = typename buffer_type::write;

  using shutdown_report = write_behind_shutdown_report<Key, Value, time_point>;
  using hit_type = tier_hit<Value, time_point>;

  tiered_cache_engine(Store& store, std::tuple<Ts&...> tier_refs, config_type config,
                      WritePolicy policy, Clock clock)
      : tiered_cache_engine(std::index_sequence_for<Ts...>{}, store, tier_refs,
                            std::move(config), std::move(policy), std::move(clock)) {}

  tiered_cache_engine(const tiered_cache_engine&) = delete;
  tiered_cache_engine& operator=(const tiered_cache_engine&) = delete;

  // Drains; after a shutdown(deadline) that left store calls or handlers running,
  // waits for them (they would otherwise return into freed memory).
  ~tiered_cache_engine() {
    try {
      shutdown();
    } catch (...) {  // a drain never throws store errors (they become dead letters)
    }
    background_.wait_idle();
    if constexpr (is_write_behind) buffer_->wait_quiescent();
  }

  // ---- reads ---------------------------------------------------------------------

  std::optional<Value> get(const Key& key) {
    if constexpr (kind == write_policy_kind::cache_aside) {
      return read(key, static_cast<const store_loader*>(nullptr));
    } else {
      const store_loader load{this};
      return read(key, &load);
    }
  }

  std::optional<Value> get_or_load(const Key& key) {
    const store_loader load{this};
    return read(key, &load);
  }

  template <class Loader>
  requires std::is_invocable_r_v<std::optional<Value>, Loader&, const Key&>
  std::optional<Value> get_or_load(const Key& key, Loader&& loader) {
    const auto load = [&](const Key& k) -> std::optional<Value> { return loader(k); };
    return read(key, &load);
  }

  std::vector<std::optional<Value>> get_all(std::span<const Key> keys) {
    std::vector<std::optional<Value>> out(keys.size());
    std::vector<std::size_t> missing;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto r = cached(keys[i], true);
      if (r.found) {
        out[i] = std::move(r.value);
      } else {
        missing.push_back(i);
      }
    }
    if (missing.empty() || kind == write_policy_kind::cache_aside) {
      misses_.add(missing.size());
      return out;
    }
    misses_.add(missing.size());
    using ticket = typename single_flight<Key, std::optional<Value>, hasher>::ticket;
    std::vector<ticket> tickets;
    tickets.reserve(missing.size());
    std::vector<std::size_t> led;  // positions in `tickets`
    for (std::size_t j = 0; j < missing.size(); ++j) {
      tickets.push_back(flights_.join(keys[missing[j]]));
      if (tickets.back().leader()) {
        led.push_back(j);
      } else {
        shared_loads_.add();
      }
    }
    // Lead first (never wait while leading), re-checking what a previous leader stored.
    std::vector<std::size_t> to_load;
    std::vector<std::uint64_t> seen;
    for (std::size_t j : led) {
      const Key& key = keys[missing[j]];
      const std::uint64_t g = stripe_for(key).generation.load(std::memory_order_acquire);
      auto r = cached(key, false);
      if (r.found) {
        tickets[j].complete(std::move(r.value));
      } else {
        to_load.push_back(j);
        seen.push_back(g);
      }
    }
    if (!to_load.empty()) load_led(keys, missing, tickets, to_load, seen);
    std::exception_ptr first_error;
    for (std::size_t j = 0; j < missing.size(); ++j) {
      try {
        out[missing[j]] = tickets[j].get();
      } catch (...) {
        if (!first_error) first_error = std::current_exception();
      }
    }
    if (first_error) std::rethrow_exception(first_error);
    return out;
  }

  // ---- writes --------------------------------------------------------------------

  bool put(const Key& key, Value value) {
    return write(key, std::move(value), config_.default_ttl);
  }

  bool put(const Key& key, Value value, std::chrono::nanoseconds ttl) {
    require(ttl > std::chrono::nanoseconds::zero(), "tiered_cache", "put(ttl)",
            "in (0s, inf)", ttl);
    return write(key, std::move(value), ttl);
  }

  bool erase(const Key& key) { return write(key, std::nullopt, std::nullopt); }

  template <class Pred>
  requires(tier_with_erase_if<Ts> && ...) &&
          std::is_invocable_r_v<bool, Pred&, const Key&, const Value&>
  std::size_t erase_if(Pred pred) {
    std::vector<Key> removed;
    std::size_t count = 0;
    auto recording = [&](const Key& k, const Value& v) {
      if (!pred(k, v)) return false;
      removed.push_back(k);
      return true;
    };
    for_each_tier([&](auto, auto& g) {
      count +=
          g.with([&](auto& t) { return static_cast<std::size_t>(t.erase_if(recording)); });
    });
    {
      std::unordered_set<Key, hasher> seen_keys;
      std::erase_if(removed, [&](const Key& k) { return !seen_keys.insert(k).second; });
    }
    for (const Key& k : removed) {
      auto& s = stripe_for(k);
      s.generation.fetch_add(1, std::memory_order_acq_rel);
      forget(k);
    }
    if (auto* link = bus_.load(std::memory_order_acquire)) {
      for (const Key& k : removed) link->publish(k, id_);
    }
    return count;
  }

  void invalidate(const Key& key) {
    drop_local(key, all_tiers());
    if (auto* link = bus_.load(std::memory_order_acquire)) link->publish(key, id_);
  }

  void invalidate_all() {
    clear_local(all_tiers());
    if (auto* link = bus_.load(std::memory_order_acquire)) link->publish_clear(id_);
  }

  // ---- invalidation bus ----------------------------------------------------------

  template <invalidation_bus Bus>
  requires std::same_as<typename Bus::key_type, Key>
  void connect(Bus& bus) {
    auto link = std::make_unique<bus_link>();
    link->publish = [&bus](const Key& k, std::uint64_t origin) { bus.publish(k, origin); };
    link->publish_clear = [&bus](std::uint64_t origin) { bus.publish_clear(origin); };
    link->subscription =
        bus.subscribe([this](const invalidation_event<Key>& e) { on_bus_event(e); });
    if constexpr (invalidation_bus_with_delivering<Bus>) {
      link->source = &bus;
      link->delivering = [](const void* b) noexcept {
        return static_cast<bool>(static_cast<const Bus*>(b)->delivering());
      };
    }
    std::lock_guard lock(bus_mutex_);
    bus_.store(link.get(), std::memory_order_release);
    gated_.store(link->delivering != nullptr, std::memory_order_relaxed);
    bus_links_.push_back(std::move(link));
  }

  void disconnect() {
    std::lock_guard lock(bus_mutex_);
    gated_.store(false, std::memory_order_relaxed);
    bus_.store(nullptr, std::memory_order_release);
    for (auto& l : bus_links_) l->subscription.reset();
  }

  [[nodiscard]] std::uint64_t id() const noexcept { return id_; }

  // ---- background work -----------------------------------------------------------

  void start(boost::asio::any_io_executor executor) {
    background_.start(std::move(executor), is_write_behind);
    if constexpr (is_write_behind) schedule_flush();
  }

  std::size_t poll() { return run_due(clock_.now()); }

  std::size_t run_due(time_point now) {
    if constexpr (is_write_behind) {
      return buffer_->run_due(now, writer{this});
    } else {
      (void)now;
      return 0;
    }
  }

  void flush() {
    if constexpr (is_write_behind) buffer_->flush(writer{this});
  }

  void shutdown() {
    std::lock_guard lock(shutdown_mutex_);
    if (shut_down_) return;
    closed_.store(true, std::memory_order_release);
    background_.stop();
    if constexpr (is_write_behind) {
      buffer_->close();
      buffer_->flush(writer{this});
    }
    disconnect();
    shut_down_ = true;
  }

  shutdown_report shutdown(std::chrono::steady_clock::time_point deadline) {
    std::lock_guard lock(shutdown_mutex_);
    shutdown_report report;
    if (shut_down_) return report;
    closed_.store(true, std::memory_order_release);
    // A handler still running at the deadline is waited for by the destructor.
    (void)background_.stop_until(deadline);
    if constexpr (is_write_behind) {
      buffer_->close();
      const bool drained = background_.run_until(
          [this]() noexcept {
            try {
              buffer_->flush(writer{this});
            } catch (...) {  // store failures become dead letters; nothing else throws
            }
          },
          deadline);
      if (!drained) {
        buffer_->abandon(report);
        report.drained = false;
      }
    }
    disconnect();
    shut_down_ = true;
    return report;
  }
  template <class Rep, class Period>
  shutdown_report shutdown(std::chrono::duration<Rep, Period> grace) {
    return shutdown(saturating_add(std::chrono::steady_clock::now(), grace));
  }

  [[nodiscard]] std::vector<dead_letter> take_dead_letters() {
    if constexpr (is_write_behind) {
      return buffer_->take_dead_letters();
    } else {
      return {};
    }
  }

  // ---- observation ---------------------------------------------------------------

  [[nodiscard]] tiered_cache_metrics metrics() const {
    tiered_cache_metrics s;
    s.hits = hits_.load();
    s.misses = misses_.load();
    s.load_successes = load_successes_.load();
    s.load_failures = load_failures_.load();
    s.total_load_time = std::chrono::nanoseconds{
        static_cast<std::chrono::nanoseconds::rep>(load_time_ns_.load())};
    s.puts = puts_.load();
    s.rejected_puts = rejected_.load();
    for_each_tier([&](auto, auto& g) {
      const cache_metrics t = g.metrics();
      s.evictions += t.evictions;
      s.expirations += t.expirations;
    });
    s.negative_hits = negative_hits_.load();
    s.buffer_hits = buffer_hits_.load();
    s.promotions = promotions_.load();
    s.shared_loads = shared_loads_.load();
    s.loads_not_cached = loads_not_cached_.load();
    s.early_recomputes = early_recomputes_.load();
    s.refreshes = refreshes_.load();
    s.refresh_failures = refresh_failures_.load();
    s.refreshes_discarded = refreshes_discarded_.load();
    if constexpr (is_write_behind) s.write_behind = buffer_->metrics();
    return s;
  }

  template <std::size_t I>
  requires(I < tier_count)
  [[nodiscard]] cache_metrics tier_metrics() const {
    return std::get<I>(tiers_).metrics();
  }

  template <std::size_t I>
  requires(I < tier_count)
  [[nodiscard]] auto& tier() const noexcept {
    return std::get<I>(tiers_).get();
  }

  [[nodiscard]] const config_type& config() const noexcept { return config_; }
  [[nodiscard]] const WritePolicy& policy() const noexcept { return policy_; }
  [[nodiscard]] Store& store() const noexcept { return store_; }

 private:
  struct store_loader {
    tiered_cache_engine* self;
    std::optional<Value> operator()(const Key& key) const { return self->store_.load(key); }
  };

  // Flushes a write-behind batch to the store (see write_behind_buffer).
  struct writer {
    tiered_cache_engine* self;
    std::exception_ptr operator()(const std::vector<const buffered*>& todo,
                                  std::vector<char>& ok) const {
      return store_writes(self->store_, todo, ok);
    }
  };

  struct alignas(64) stripe {
    std::mutex mutex;
    std::atomic<std::uint64_t> generation{0};
  };
  static constexpr std::size_t stripe_count = 64;

  struct bus_link {
    std::function<void(const Key&, std::uint64_t)> publish;
    std::function<void(std::uint64_t)> publish_clear;
    invalidation_subscription subscription;
    // The bus's delivering(), for buses that have it (else null): see "Bus gate".
    bool (*delivering)(const void*) noexcept = nullptr;
    const void* source = nullptr;
  };

  struct lookup_result {
    bool found = false;
    std::optional<Value> value;
  };

  template <std::size_t... I>
  tiered_cache_engine(std::index_sequence<I...>, Store& store, std::tuple<Ts&...> refs,
                      config_type config, WritePolicy policy, Clock clock)
      : store_(store),
        tiers_(std::get<I>(refs)...),
        config_(std::move(config)),
        policy_(std::move(policy)),
        clock_(std::move(clock)) {
    validate();
    if constexpr (is_write_behind) {
      buffer_ = std::make_unique<buffer_type>(policy_.config, clock_, config_.dead_letter);
    }
    for (std::size_t i = 0; i < tier_count; ++i) {
      bus_reaches_[i] = config_.bus_invalidates_tiers ? i < *config_.bus_invalidates_tiers
                                                      : !tier_shared_[i];
    }
  }

  void validate() const {
    using namespace std::chrono_literals;
    if (config_.default_ttl) {
      require(*config_.default_ttl > 0ns, "tiered_cache", "default_ttl", "in (0s, inf)",
              *config_.default_ttl);
    }
    if (config_.negative_ttl) {
      require(*config_.negative_ttl > 0ns, "tiered_cache", "negative_ttl", "in (0s, inf)",
              *config_.negative_ttl);
    }
    require_at_least("tiered_cache", "negative_capacity", config_.negative_capacity,
                     std::size_t{1});
    require_in_range("tiered_cache", "xfetch_beta", config_.xfetch_beta, 0.0, 100.0);
    if (config_.xfetch_delta) {
      require(*config_.xfetch_delta > 0ns, "tiered_cache", "xfetch_delta", "in (0s, inf)",
              *config_.xfetch_delta);
    }
    if (config_.bus_invalidates_tiers) {
      require_in_range("tiered_cache", "bus_invalidates_tiers",
                       *config_.bus_invalidates_tiers, std::size_t{1}, tier_count);
    }
    if constexpr (is_write_behind) write_behind::validate(policy_.config);
    if constexpr (is_refresh_ahead) refresh_ahead::validate(policy_.config);
  }

  template <class F>
  void for_each_tier(F&& f) const {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f(std::integral_constant<std::size_t, I>{}, std::get<I>(tiers_)), ...);
    }(std::index_sequence_for<Ts...>{});
  }

  [[nodiscard]] static std::array<bool, tier_count> all_tiers() {
    std::array<bool, tier_count> all{};
    all.fill(true);
    return all;
  }

  stripe& stripe_for(const Key& key) const {
    return stripes_[hasher{}(key) % stripe_count];
  }

  // False while a connected bus with delivering() says it may be missing invalidations:
  // then the tiers it reaches and the negative cache are skipped (see "Bus gate").
  [[nodiscard]] bool local_usable() const noexcept {
    if (!gated_.load(std::memory_order_relaxed)) return true;
    const bus_link* link = bus_.load(std::memory_order_acquire);
    return link == nullptr || link->delivering == nullptr || link->delivering(link->source);
  }

  // Whether tier i may be read or filled now (`local` = local_usable()).
  [[nodiscard]] bool tier_usable(std::size_t i, bool local) const noexcept {
    return local || !bus_reaches_[i];
  }

  template <std::size_t I = 0>
  std::optional<hit_type> find(const Key& key, bool local) const {
    if constexpr (I == tier_count) {
      return std::nullopt;
    } else {
      if (tier_usable(I, local)) {
        if (auto h = std::get<I>(tiers_).lookup(key)) {
          h->tier = I;
          return h;
        }
      }
      return find<I + 1>(key, local);
    }
  }

  // Tiers, then write-behind buffer, then negative cache. Counts hits when `count`.
  lookup_result cached(const Key& key, bool count) {
    const std::uint64_t seen = stripe_for(key).generation.load(std::memory_order_acquire);
    const bool local = local_usable();
    if (auto h = find(key, local)) {
      if (count) {
        hits_.add();
        if (h->tier > 0) promote(key, *h, seen);
      }
      return {true, std::move(h->value)};
    }
    if constexpr (is_write_behind) {
      if (auto b = buffer_->lookup(key)) {
        if (count) {
          hits_.add();
          buffer_hits_.add();
        }
        return {true, std::move(*b)};
      }
    }
    if (local && negative_.hit(key)) {
      if (count) {
        hits_.add();
        negative_hits_.add();
      }
      return {true, std::nullopt};
    }
    return {};
  }

  template <class Load>
  std::optional<Value> read(const Key& key, const Load* load) {
    stripe& s = stripe_for(key);
    const std::uint64_t seen = s.generation.load(std::memory_order_acquire);
    const bool local = local_usable();
    if (auto h = find(key, local)) {
      const time_point now = clock_.now();
      if (h->tier > 0) promote(key, *h, seen);
      if (h->timed && h->expires != time_point::max()) {
        if constexpr (is_refresh_ahead) {
          if (refresh_due(*h, now)) {
            start_refresh(key);
          } else if (xfetch_early(*h, now)) {
            early_recomputes_.add();
            start_refresh(key);
          }
        } else {
          if (load != nullptr && xfetch_early(*h, now)) {
            early_recomputes_.add();
            misses_.add();
            return load_once(key, *load, false);
          }
        }
      }
      hits_.add();
      return std::move(h->value);
    }
    if constexpr (is_write_behind) {
      if (auto b = buffer_->lookup(key)) {
        hits_.add();
        buffer_hits_.add();
        return std::move(*b);
      }
    }
    if (local && negative_.hit(key)) {
      hits_.add();
      negative_hits_.add();
      return std::nullopt;
    }
    misses_.add();
    if (load == nullptr) return std::nullopt;
    return load_once(key, *load, true);
  }

  // Single-flight load; `recheck` makes the leader look in the cache first (a caller
  // that missed just before the previous leader stored the value finds it there).
  template <class Load>
  std::optional<Value> load_once(const Key& key, const Load& load, bool recheck) {
    auto t = flights_.join(key);
    if (!t.leader()) {
      shared_loads_.add();
      return t.get();
    }
    try {
      // Read the write counter before looking again: a write after this point makes
      // the load's result uncacheable, a write before it is found by the re-check.
      const std::uint64_t seen = stripe_for(key).generation.load(std::memory_order_acquire);
      if (recheck) {
        if (auto r = cached(key, false); r.found) {
          t.complete(std::move(r.value));
          return t.get();
        }
      }
      const time_point start = clock_.now();
      std::optional<Value> v;
      try {
        v = load(key);
      } catch (...) {
        record_load(start, false);
        throw;
      }
      record_load(start, true);
      store_loaded(key, v, seen, std::nullopt);
      t.complete(std::move(v));
    } catch (...) {
      t.fail(std::current_exception());
    }
    return t.get();
  }

  template <class Tickets>
  void load_led(std::span<const Key> keys, const std::vector<std::size_t>& missing,
                Tickets& tickets, const std::vector<std::size_t>& to_load,
                const std::vector<std::uint64_t>& seen) {
    std::vector<Key> batch;
    for (std::size_t j : to_load) batch.push_back(keys[missing[j]]);
    if constexpr (backing_store_with_load_batch<Store>) {
      const time_point start = clock_.now();
      std::vector<std::optional<Value>> values;
      try {
        values = store_.load_batch(std::span<const Key>(batch));
        if (values.size() != batch.size()) {
          throw std::length_error("tiered_cache: load_batch returned " +
                                  std::to_string(values.size()) + " results for " +
                                  std::to_string(batch.size()) + " keys");
        }
      } catch (...) {
        record_load(start, false);
        const auto error = std::current_exception();
        for (std::size_t j : to_load) tickets[j].fail(error);
        return;
      }
      record_load(start, true);
      for (std::size_t n = 0; n < to_load.size(); ++n) {
        store_loaded(batch[n], values[n], seen[n], std::nullopt);
        tickets[to_load[n]].complete(std::move(values[n]));
      }
    } else {
      for (std::size_t n = 0; n < to_load.size(); ++n) {
        const time_point start = clock_.now();
        try {
          auto v = store_.load(batch[n]);
          record_load(start, true);
          store_loaded(batch[n], v, seen[n], std::nullopt);
          tickets[to_load[n]].complete(std::move(v));
        } catch (...) {
          record_load(start, false);
          tickets[to_load[n]].fail(std::current_exception());
        }
      }
    }
  }

  void record_load(time_point start, bool ok) {
    const auto took =
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.now() - start);
    load_time_ns_.add(static_cast<std::uint64_t>(std::max<std::int64_t>(took.count(), 0)));
    (ok ? load_successes_ : load_failures_).add();
  }

  // Caches a load's result unless the key was written since `seen`; a refresh passes
  // its token, which must still be current. Under write_behind the store may lag the
  // buffer: a buffered write for the key replaces the loaded value (returned and cached).
  bool store_loaded(const Key& key, std::optional<Value>& v, std::uint64_t seen,
                    std::optional<std::uint64_t> refresh_token) {
    stripe& s = stripe_for(key);
    std::lock_guard lock(s.mutex);
    if constexpr (is_write_behind) {
      if (auto buffered_value = buffer_->lookup(key)) v = std::move(*buffered_value);
    }
    bool current = s.generation.load(std::memory_order_acquire) == seen;
    if constexpr (is_refresh_ahead)
      current = refreshing_.settle(key, refresh_token, current);
    if (!current) {
      (refresh_token ? refreshes_discarded_ : loads_not_cached_).add();
      return false;
    }
    const bool local = local_usable();
    if (v) {
      for_each_tier([&](auto index, auto& g) {
        if (tier_usable(decltype(index)::value, local)) {
          g.put(key, *v, config_.default_ttl);
        } else {
          g.erase(key);
        }
      });
      negative_.erase(key);
    } else {
      for_each_tier([&](auto, auto& g) { g.erase(key); });
      if (local) {
        negative_.put(key);
      } else {
        negative_.erase(key);
      }
    }
    return true;
  }

  void promote(const Key& key, const hit_type& h, std::uint64_t seen) {
    std::optional<std::chrono::nanoseconds> ttl = config_.default_ttl;
    if (h.timed && h.expires != time_point::max()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::nanoseconds>(h.expires - clock_.now());
      if (left <= std::chrono::nanoseconds::zero()) return;
      ttl = ttl ? std::min(*ttl, left) : left;
    }
    stripe& s = stripe_for(key);
    std::lock_guard lock(s.mutex);
    if (s.generation.load(std::memory_order_acquire) != seen) return;
    const bool local = local_usable();
    for_each_tier([&](auto index, auto& g) {
      constexpr std::size_t i = decltype(index)::value;
      if (i < h.tier && tier_usable(i, local)) g.put(key, h.value, ttl);
    });
    promotions_.add();
  }

  bool write(const Key& key, std::optional<Value> value,
             std::optional<std::chrono::nanoseconds> ttl) {
    if (closed_.load(std::memory_order_acquire)) {
      rejected_.add();
      return false;
    }
    stripe& s = stripe_for(key);
    const bool is_put = value.has_value();
    if constexpr (is_write_behind) {
      auto r = buffer_->reserve(key);
      if (!r.accepted()) {
        rejected_.add();
        return false;
      }
      bool due = false;
      {
        std::lock_guard lock(s.mutex);
        s.generation.fetch_add(1, std::memory_order_acq_rel);
        apply_to_tiers(key, value, ttl);
        due = buffer_->enqueue(std::move(r), key, std::move(value));
        forget(key);
      }
      if (background_.started()) {
        if (due) {
          post_flush();
        } else if (!background_.timer_armed()) {
          schedule_flush();
        }
      }
    } else {
      std::lock_guard lock(s.mutex);
      if constexpr (kind != write_policy_kind::cache_aside) {
        if (value) {
          store_.store(key, *value);
        } else {
          store_.erase(key);
        }
      }
      s.generation.fetch_add(1, std::memory_order_acq_rel);
      if constexpr (kind == write_policy_kind::read_through) {
        apply_to_tiers(key, std::nullopt, ttl);
      } else {
        apply_to_tiers(key, value, ttl);
      }
      forget(key);
    }
    if (is_put) puts_.add();
    if (auto* link = bus_.load(std::memory_order_acquire)) link->publish(key, id_);
    return true;
  }

  void apply_to_tiers(const Key& key, const std::optional<Value>& value,
                      std::optional<std::chrono::nanoseconds> ttl) {
    const bool local = local_usable();
    for_each_tier([&](auto index, auto& g) {
      if (value && tier_usable(decltype(index)::value, local)) {
        g.put(key, *value, ttl);
      } else {
        g.erase(key);
      }
    });
  }

  // The key changed: drop its negative entry and any pending refresh.
  void forget(const Key& key) {
    negative_.erase(key);
    if constexpr (is_refresh_ahead) refreshing_.forget(key);
  }

  void drop_local(const Key& key, const std::array<bool, tier_count>& which) {
    stripe& s = stripe_for(key);
    std::lock_guard lock(s.mutex);
    s.generation.fetch_add(1, std::memory_order_acq_rel);
    for_each_tier([&](auto index, auto& g) {
      if (which[decltype(index)::value]) g.erase(key);
    });
    forget(key);
  }

  void clear_local(const std::array<bool, tier_count>& which) {
    for (auto& s : stripes_) s.generation.fetch_add(1, std::memory_order_acq_rel);
    for_each_tier([&](auto index, auto& g) {
      if (which[decltype(index)::value]) g.clear();
    });
    negative_.clear();
    if constexpr (is_refresh_ahead) refreshing_.clear();
  }

  void on_bus_event(const invalidation_event<Key>& e) {
    if (e.origin == id_ && e.cause == invalidation_cause::published) return;
    if (e.kind == invalidation_kind::key) {
      if (e.key) drop_local(*e.key, bus_reaches_);
    } else {
      clear_local(bus_reaches_);
    }
  }

  // ---- refresh-ahead and XFetch --------------------------------------------------

  [[nodiscard]] bool refresh_due(const hit_type& h, time_point now) const {
    if constexpr (is_refresh_ahead) {
      const auto full =
          config_.default_ttl
              ? *config_.default_ttl
              : std::chrono::duration_cast<std::chrono::nanoseconds>(h.expires - h.written);
      return refresh_point_passed(full, h.expires, now, policy_.config.refresh_fraction);
    } else {
      (void)h;
      (void)now;
      return false;
    }
  }

  [[nodiscard]] bool xfetch_early(const hit_type& h, time_point now) {
    if (config_.xfetch_beta <= 0.0) return false;
    std::chrono::nanoseconds delta{};
    if (config_.xfetch_delta) {
      delta = *config_.xfetch_delta;
    } else {
      const auto loads = load_successes_.load() + load_failures_.load();
      if (loads == 0) return false;
      delta = std::chrono::nanoseconds{
          static_cast<std::chrono::nanoseconds::rep>(load_time_ns_.load() / loads)};
    }
    return xfetch_.early(now, h.expires, delta, config_.xfetch_beta);
  }

  void start_refresh(const Key& key) {
    if constexpr (is_refresh_ahead) {
      if (closed_.load(std::memory_order_acquire)) return;
      const auto started = refreshing_.begin(key, clock_.now());
      if (!started) return;
      const std::uint64_t token = *started;
      refreshes_.add();
      const std::uint64_t seen = stripe_for(key).generation.load(std::memory_order_acquire);
      if (background_.started()) {
        background_.post([this, key, token, seen] { run_refresh(key, token, seen); });
      } else {
        run_refresh(key, token, seen);
      }
    } else {
      (void)key;
    }
  }

  void run_refresh(const Key& key, std::uint64_t token, std::uint64_t seen) noexcept {
    const time_point start = clock_.now();
    std::optional<Value> v;
    try {
      v = store_.load(key);
    } catch (...) {
      record_load(start, false);
      refresh_failures_.add();
      // Keep serving the old value; no new reload for this key for retry_after.
      refreshing_.failed(key, token, clock_.now(), policy_.config.retry_after);
      return;
    }
    record_load(start, true);
    try {
      store_loaded(key, v, seen, token);
    } catch (...) {  // a tier that throws: the old value stays
      refresh_failures_.add();
    }
  }

  // ---- write-behind scheduling ---------------------------------------------------

  void post_flush() {
    background_.post_once([this] { background_run(); });
  }

  void background_run() noexcept {
    try {
      (void)run_due(clock_.now());
    } catch (...) {  // run_due turns store failures into retries; nothing else throws
    }
    schedule_flush();
  }

  // Arms the timer for the buffer's next deadline (or posts at once if due).
  void schedule_flush() noexcept {
    if constexpr (is_write_behind) {
      std::optional<time_point> next;
      try {
        next = buffer_->next_deadline();
      } catch (...) {  // allocation failure: poll()/flush() still work
        return;
      }
      background_.arm(next, closed_, [this] { background_run(); });
    }
  }

  Store& store_;
  std::tuple<guarded_tier<Ts, time_point>...> tiers_;
  static constexpr std::array<bool, tier_count> tier_shared_{tier_traits<Ts>::shared...};
  std::array<bool, tier_count> bus_reaches_{};
  const config_type config_;
  const WritePolicy policy_;
  Clock clock_;
  const std::uint64_t id_ = next_cache_id();

  mutable std::array<stripe, stripe_count> stripes_;
  single_flight<Key, std::optional<Value>, hasher> flights_;
  std::unique_ptr<buffer_type> buffer_;

  negative_cache<Key, Clock, hasher> negative_{clock_, config_.negative_ttl,
                                               config_.negative_capacity};
  refresh_tracker<Key, time_point, hasher> refreshing_;
  xfetch_sampler xfetch_{config_.xfetch_seed};

  std::mutex bus_mutex_;
  std::atomic<bus_link*> bus_{nullptr};
  std::atomic<bool> gated_{false};  // bus_ has delivering(): see "Bus gate"

  std::vector<std::unique_ptr<bus_link>> bus_links_;

  background_scheduler<Clock> background_{clock_};
  std::atomic<bool> closed_{false};
  std::mutex shutdown_mutex_;
  bool shut_down_ = false;

  counter hits_, misses_, load_successes_, load_failures_, load_time_ns_, puts_, rejected_,
      negative_hits_, buffer_hits_, promotions_, shared_loads_, loads_not_cached_,
      early_recomputes_, refreshes_, refresh_failures_, refreshes_discarded_;
};

}  // namespace outgrow::detail
