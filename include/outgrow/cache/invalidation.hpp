// outgrow/cache/invalidation.hpp — tell every cache holding a key that it changed.
//
// TTLs bound staleness; an invalidation bus removes it. When one instance writes or
// erases a key, it publishes the key; every subscribed cache drops its copy, so the
// next read fetches the new value. A tiered_cache connected to a bus publishes on
// put / erase / invalidate / erase_if and drops the key from its tiers when another
// instance publishes it (it ignores its own messages, recognised by `origin`).
//
//   outgrow::in_process_invalidation_bus<std::string> bus;
//   auto sub = bus.subscribe([&](const outgrow::invalidation_event<std::string>& e) {
//     if (e.kind == outgrow::invalidation_kind::key) l1.erase(*e.key);
//     else l1.clear();                       // publish_clear() or a gap, see below
//   });
//   bus.publish("user:42");                  // every subscriber's handler runs
//   // `sub` unsubscribes when destroyed; after that its handler is never called.
//
// Smallest conforming bus for the `invalidation_bus` concept:
//
//   struct null_bus {
//     using key_type = std::string;
//     void publish(const std::string&, std::uint64_t origin) {}
//     void publish_clear(std::uint64_t origin) {}
//     outgrow::invalidation_subscription subscribe(
//         std::function<void(const outgrow::invalidation_event<std::string>&)>) {
//       return {};
//     }
//   };
//
// Delivery semantics.
//   - in_process_invalidation_bus (this header) delivers synchronously, on the
//     publishing thread, to every subscriber, exactly once, in publish order per
//     publishing thread. Nothing is lost. A handler that is running when its
//     subscription is destroyed finishes first (destruction waits for it).
//   - The Redis bus (outgrow/redis/redis_invalidation.hpp) sends each message with
//     PUBLISH to a channel every instance SUBSCRIBEs to (or, in tracking mode, has
//     Redis itself report every write to the watched keys, see that header). Redis
//     pub/sub is fire-and-forget: messages published while a subscriber is
//     disconnected are lost, not queued. So when its connection drops and comes back,
//     the Redis bus delivers one local event {kind = clear, cause = gap} to its
//     subscribers (it is not broadcast), and a tiered_cache responds by clearing the
//     tiers a bus message reaches — by default every tier not marked shared (its
//     in-process L1/L2, not Redis; see tier_traits and
//     tiered_cache_config::bus_invalidates_tiers): the only safe assumption after a
//     gap is that any key may have changed. Delivery across instances is at most once
//     and asynchronous (a reader elsewhere may still see the old value for a round
//     trip), so TTLs remain the bound on staleness; the bus only shortens it.
//     `in_process_invalidation_bus::notify_gap()` produces the same event, to test
//     how subscribers react.
//   - Handlers must be quick and must not publish on, or subscribe to, the bus that
//     is calling them (a handler may unsubscribe itself).
//   - Optional member `bool delivering() const noexcept` (concept
//     invalidation_bus_with_delivering): false while the bus may be missing other
//     instances' invalidations (the Redis bus: while its subscriber is not subscribed —
//     not started yet, or its connection lost and not yet re-subscribed). A connected
//     tiered_cache then neither reads nor fills the tiers bus messages reach (its
//     in-process tiers by default) nor its negative cache: reads go through to the
//     shared tiers and the store, so a write it cannot hear about is never served
//     stale from L1. A gap event still clears those tiers once the bus delivers again.
//     in_process_invalidation_bus loses nothing and has no such member. Cost: a
//     tiered_cache without such a bus pays one relaxed atomic load per read; with one,
//     also an indirect call of delivering().
//
// Thread-safety: publish, publish_clear, notify_gap, subscribe and unsubscribing (by
// destroying or reset()ting a subscription) may happen from any thread, concurrently.
// A subscription may outlive its bus.
// Complexity: publish O(subscribers) handler calls plus one vector copy of
// shared pointers; subscribe / unsubscribe O(subscribers).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/core/metrics.hpp>

namespace outgrow {

/// What an invalidation message asks for.
enum class invalidation_kind : std::uint8_t {
  key,    ///< drop one key
  clear,  ///< drop everything
};

/// Why a message was delivered.
enum class invalidation_cause : std::uint8_t {
  published,  ///< somebody called publish()/publish_clear()
  gap,        ///< messages may have been lost (e.g. a reconnect); always kind == clear
};

template <class Key>
struct invalidation_event {
  invalidation_kind kind = invalidation_kind::key;
  std::optional<Key> key;    ///< set when kind == key
  std::uint64_t origin = 0;  ///< the publisher's id (0 = anonymous)
  invalidation_cause cause = invalidation_cause::published;
};

template <class Key>
using invalidation_handler = std::function<void(const invalidation_event<Key>&)>;

/// RAII handle of one subscription: destroying (or reset()ting) it unsubscribes, and
/// once that returns the handler is never called again. Movable, not copyable.
class invalidation_subscription {
 public:
  invalidation_subscription() = default;
  explicit invalidation_subscription(std::function<void()> cancel)
      : cancel_(std::move(cancel)) {}
  invalidation_subscription(invalidation_subscription&& o) noexcept
      : cancel_(std::exchange(o.cancel_, nullptr)) {}
  invalidation_subscription& operator=(invalidation_subscription&& o) noexcept {
    if (this != &o) {
      reset();
      cancel_ = std::exchange(o.cancel_, nullptr);
    }
    return *this;
  }
  invalidation_subscription(const invalidation_subscription&) = delete;
  invalidation_subscription& operator=(const invalidation_subscription&) = delete;
  ~invalidation_subscription() { reset(); }

  /// Unsubscribes now (idempotent).
  void reset() noexcept {
    if (cancel_) std::exchange(cancel_, nullptr)();
  }
  [[nodiscard]] bool active() const noexcept { return static_cast<bool>(cancel_); }

 private:
  std::function<void()> cancel_;
};

/// A bus caches subscribe to (see the header comment for the smallest conforming type).
template <class B>
concept invalidation_bus =
    requires(B& b, const typename B::key_type& k, std::uint64_t origin,
             invalidation_handler<typename B::key_type> handler) {
      typename B::key_type;
      b.publish(k, origin);
      b.publish_clear(origin);
      { b.subscribe(std::move(handler)) } -> std::same_as<invalidation_subscription>;
    };

/// A bus that says whether it is delivering other instances' invalidations now (see
/// "delivering()" in the header comment); must be cheap (it is called on every read).
template <class B>
concept invalidation_bus_with_delivering = invalidation_bus<B> && requires(const B& b) {
  { b.delivering() } noexcept -> std::convertible_to<bool>;
};

/// Counters of an in_process_invalidation_bus.
struct invalidation_bus_metrics {
  static constexpr std::string_view metrics_name = "invalidation_bus_metrics";
  std::uint64_t published = 0;  ///< publish() + publish_clear() + notify_gap() calls
  std::uint64_t delivered = 0;  ///< handler calls
  std::uint64_t subscribers = 0;

  template <class F>
  void for_each_metric(F&& f) const {
    f("published", published);
    f("delivered", delivered);
    f("subscribers", subscribers);
  }
};

namespace detail {
template <class Key>
struct bus_slot {
  explicit bus_slot(invalidation_handler<Key> h) : handler(std::move(h)) {}
  // Recursive: a handler may unsubscribe itself while being delivered to.
  std::recursive_mutex delivering;
  bool active = true;  // guarded by `delivering`
  invalidation_handler<Key> handler;
};

template <class Key>
struct bus_state {
  std::mutex mutex;
  std::vector<std::shared_ptr<bus_slot<Key>>> slots;  // guarded by mutex
  counter published;
  counter delivered;
};
}  // namespace detail

/// Invalidation within one process: several tiered_caches (or anything else) that
/// share keys, e.g. per-thread-pool L1s over one L2.
template <class Key>
class in_process_invalidation_bus {
 public:
  using key_type = Key;
  using event_type = invalidation_event<Key>;

  in_process_invalidation_bus() = default;
  in_process_invalidation_bus(const in_process_invalidation_bus&) = delete;
  in_process_invalidation_bus& operator=(const in_process_invalidation_bus&) = delete;

  /// Every subscriber drops `key`.
  void publish(const Key& key, std::uint64_t origin = 0) {
    deliver(event_type{invalidation_kind::key, key, origin, invalidation_cause::published});
  }

  /// Every subscriber drops everything.
  void publish_clear(std::uint64_t origin = 0) {
    deliver(event_type{invalidation_kind::clear, std::nullopt, origin,
                       invalidation_cause::published});
  }

  /// Delivers {kind = clear, cause = gap} to every subscriber: what a cross-instance
  /// bus does after it may have missed messages. For testing subscribers.
  void notify_gap() {
    deliver(event_type{invalidation_kind::clear, std::nullopt, 0, invalidation_cause::gap});
  }

  /// Calls `handler` for every message from now until the subscription is destroyed.
  [[nodiscard]] invalidation_subscription subscribe(invalidation_handler<Key> handler) {
    auto slot = std::make_shared<detail::bus_slot<Key>>(std::move(handler));
    {
      std::lock_guard lock(state_->mutex);
      state_->slots.push_back(slot);
    }
    std::weak_ptr<detail::bus_state<Key>> weak = state_;
    return invalidation_subscription([weak, slot] {
      if (auto state = weak.lock()) {
        std::lock_guard lock(state->mutex);
        std::erase(state->slots, slot);
      }
      std::lock_guard wait_for_delivery(slot->delivering);
      slot->active = false;
    });
  }

  [[nodiscard]] invalidation_bus_metrics metrics() const {
    std::lock_guard lock(state_->mutex);
    return {.published = state_->published.load(),
            .delivered = state_->delivered.load(),
            .subscribers = state_->slots.size()};
  }

 private:
  void deliver(const event_type& event) {
    std::vector<std::shared_ptr<detail::bus_slot<Key>>> targets;
    {
      std::lock_guard lock(state_->mutex);
      state_->published.add();
      targets = state_->slots;
    }
    for (const auto& slot : targets) {
      std::lock_guard lock(slot->delivering);
      if (!slot->active) continue;
      state_->delivered.add();
      slot->handler(event);
    }
  }

  std::shared_ptr<detail::bus_state<Key>> state_ =
      std::make_shared<detail::bus_state<Key>>();
};

static_assert(invalidation_bus<in_process_invalidation_bus<int>>);

}  // namespace outgrow
