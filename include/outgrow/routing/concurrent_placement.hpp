// outgrow/routing/concurrent_placement.hpp — any placement policy, safe to change while
// other threads look up.
//
// Wraps a placement value (ring, jump, Maglev, rendezvous) in published immutable
// snapshots (core/snapshot.hpp): lookups read the current snapshot without locking;
// add/remove/set_weight copy it, change the copy and publish it, so a lookup sees
// either the old or the new membership, never a half-built one.
//
//   outgrow::concurrent_placement<outgrow::maglev_placement<std::string>> shards(
//       outgrow::maglev_placement<std::string>({"db-0", "db-1", "db-2"}));
//   std::optional<std::string> owner = shards.lookup("user:42");  // any thread
//   shards.add("db-3");                                            // any thread
//   auto pinned = shards.snapshot();   // one consistent view for a batch of lookups
//
// Lookups return std::optional<Node> (a copy: the snapshot a pointer would point into
// may be retired by the next membership change), so prefer cheap node types: ids,
// short strings, shared_ptr<endpoint>. For zero-copy batches, pin a snapshot() and
// call its lookup_hash(), which returns const Node*.
//
// Thread-safety: every member function may be called from any thread. Mutations are
// serialized by an internal mutex (writers only); lookups take no lock.
// Complexity: lookup = one acquire load + the policy's lookup; mutations = a copy of the
// policy plus its rebuild. A mutation that throws (config_error) publishes nothing.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include <outgrow/core/hash.hpp>
#include <outgrow/core/snapshot.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow {

template <placement P>
class concurrent_placement {
 public:
  using policy_type = P;
  using node_type = typename P::node_type;

  explicit concurrent_placement(P initial = P{})
      : current_(std::make_shared<const P>(std::move(initial))) {}

  /// Owner of `key` (hashed with the policy's hasher), or nullopt when empty.
  template <class Key>
  [[nodiscard]] std::optional<node_type> lookup(const Key& key) const {
    return copy_of(current_.local().lookup(key));
  }

  /// Owner of a key whose hash was computed already.
  [[nodiscard]] std::optional<node_type> lookup_hash(std::uint64_t key_hash) const {
    return copy_of(current_.local().lookup_hash(key_hash));
  }

  /// An owning pointer to the current membership, for consistent batches of lookups.
  [[nodiscard]] std::shared_ptr<const P> snapshot() const { return current_.load(); }

  [[nodiscard]] std::size_t size() const { return current_.local().size(); }
  [[nodiscard]] bool empty() const { return size() == 0; }
  [[nodiscard]] std::uint64_t version() const noexcept { return current_.version(); }

  /// P::add on a copy, then published.
  /// Throws: config_error if P::add does (node present, weight not accepted).
  void add(const node_type& node, double weight = 1.0) {
    update([&](P& p) { p.add(node, weight); });
  }
  /// Throws: config_error if `node` is not a member.
  void remove(const node_type& node) {
    update([&](P& p) { p.remove(node); });
  }
  /// Throws: config_error if `node` is not a member or `weight` is not accepted.
  void set_weight(const node_type& node, double weight) {
    update([&](P& p) { p.set_weight(node, weight); });
  }
  /// Throws: config_error if a node repeats or a weight is not accepted.
  void assign(std::vector<weighted_node<node_type>> nodes) {
    update([&](P& p) { p.assign(std::move(nodes)); });
  }

  /// Copies the current policy, applies `mutate(P&)` and publishes the result. If
  /// mutate throws, nothing is published and the exception propagates.
  /// Throws: whatever `mutate` throws.
  template <class F>
  void update(F&& mutate) {
    std::lock_guard lock(write_mutex_);
    auto next = std::make_shared<P>(*current_.load());
    std::forward<F>(mutate)(*next);
    current_.publish(std::move(next));
  }

 protected:
  [[nodiscard]] const P& local() const { return current_.local(); }

  static std::optional<node_type> copy_of(const node_type* node) {
    if (node == nullptr) return std::nullopt;
    return *node;
  }

 private:
  std::mutex write_mutex_;
  published<P> current_;
};

}  // namespace outgrow
