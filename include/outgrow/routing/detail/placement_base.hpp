// outgrow/routing/detail/placement_base.hpp — the common shape of the placement policies.
//
// jump_placement, maglev_placement, rendezvous_placement and ring_placement share their
// constructors, assign overloads, lookups and accessors (the "common shape" of
// routing/placement.hpp). placement_base writes them once; each policy supplies an
// engine: the structures its lookups read (Maglev's table, the ring's points, the
// rendezvous node hashes) and how a membership change updates them. The public class
// derives from placement_base<Node, Hasher, Config, engine> and inherits its
// constructors, adding only what is its own (table(), arc_moves(), ...).
//
// Engine requirements (E = EngineFor<Node, Hasher, Config>, node_type = Node,
// config_type = Config, members = node_set<Node, Hasher>):
//   static constexpr std::string_view primitive;          // names it in config_error
//   const node_type* lookup_hash(const members&, std::uint64_t) const noexcept;
//   and either (rebuilding engines: every change builds new structures)
//     void rebuild(const config_type&, const members& next);  // strong guarantee
//   or (in-place engines: each change edits the members and the engine together)
//     void add(const config_type&, members&, const node_type&, double weight);
//     void remove(const config_type&, members&, const node_type&);
//     void set_weight(const config_type&, members&, const node_type&, double weight);
//     void assign(const config_type&, members&, std::vector<weighted_node<node_type>>);
//   optional:
//     static config_type validated(config_type);             // throws config_error
//     std::vector<node_type> preference_list_hash(const members&, std::uint64_t,
//                                                 std::size_t n) const;
// Every change is all-or-nothing: a rebuilding engine's rebuild() throws before it
// modifies anything, and the base commits the new membership only after it succeeded;
// an in-place engine validates before it edits.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/core/hash.hpp>
#include <outgrow/routing/placement.hpp>

namespace outgrow::detail {

template <class Node, class Hasher, class Config,
          template <class, class, class> class EngineFor>
class placement_base {
  using Engine = EngineFor<Node, Hasher, Config>;

 public:
  using node_type = Node;
  using hasher_type = Hasher;
  using config_type = Config;

 protected:
  using members_type = node_set<node_type, hasher_type>;

  static constexpr bool in_place =
      requires(Engine& e, const config_type& c, members_type& m, const node_type& n,
               std::vector<weighted_node<node_type>> v) {
        e.add(c, m, n, 1.0);
        e.remove(c, m, n);
        e.set_weight(c, m, n, 1.0);
        e.assign(c, m, std::move(v));
      };
  static constexpr bool has_preference_list =
      requires(const Engine& e, const members_type& m) {
        {
          e.preference_list_hash(m, std::uint64_t{0}, std::size_t{0})
        } -> std::same_as<std::vector<node_type>>;
      };

 public:
  /// The name config_error messages start with ("maglev", "hash_ring", ...).
  static constexpr std::string_view primitive = Engine::primitive;

  /// Throws: config_error if `config` is out of range (see the policy's config).
  explicit placement_base(config_type config = {}, hasher_type hasher = {})
      : config_(validated(std::move(config))), members_(primitive, std::move(hasher)) {}

  /// Any range of Node or of weighted_node<Node> (std::vector, std::span, ...);
  /// templates constrained by node_range / weighted_node_range, as the common shape
  /// says, so a braced list never reaches them (see the initializer_list overloads).
  /// Throws: config_error if `config` is out of range, a node repeats or a weight is
  /// not accepted by the policy.
  template <class R>
  requires node_range<R, node_type> || weighted_node_range<R, node_type>
  explicit placement_base(const R& nodes, config_type config = {}, hasher_type hasher = {})
      : placement_base(std::move(config), std::move(hasher)) {
    assign(to_weighted_nodes<node_type>(nodes));
  }

  /// Braced lists of nodes: P({"a", "b"}). A template (not initializer_list<Node>) so
  /// that a weighted list {{"a", 1}, {"b", 2}} can never be read as two std::string
  /// (const char*, count) constructions; it goes to the weighted overload below.
  /// Throws: config_error as the range constructor.
  template <class T>
  requires std::convertible_to<const T&, node_type>
  explicit placement_base(std::initializer_list<T> nodes, config_type config = {},
                          hasher_type hasher = {})
      : placement_base(std::move(config), std::move(hasher)) {
    assign(to_weighted_nodes<node_type>(nodes));
  }

  /// Weighted braced lists: P({{"a", 1.0}, {"b", 2.0}}).
  /// Throws: config_error as the range constructor.
  explicit placement_base(std::initializer_list<weighted_node<node_type>> nodes,
                          config_type config = {}, hasher_type hasher = {})
      : placement_base(std::move(config), std::move(hasher)) {
    assign(std::vector<weighted_node<node_type>>(nodes));
  }

  // ---- membership (all-or-nothing) ---------------------------------------------------

  /// Adds `node` with `weight`.
  /// Throws: config_error if `node` is present already or `weight` is not in
  /// (0, 1e6] (or not accepted by the policy: jump hash takes only 1).
  void add(const node_type& node, double weight = 1.0) {
    if constexpr (in_place) {
      engine_.add(config_, members_, node, weight);
    } else {
      change([&](members_type& next) { next.add(node, weight); });
    }
  }

  /// Removes `node`.
  /// Throws: config_error if `node` is not a member.
  void remove(const node_type& node) {
    if constexpr (in_place) {
      engine_.remove(config_, members_, node);
    } else {
      change([&](members_type& next) { next.remove(node); });
    }
  }

  /// Changes the weight of `node`.
  /// Throws: config_error if `node` is not a member or `weight` is not accepted.
  void set_weight(const node_type& node, double weight) {
    if constexpr (in_place) {
      engine_.set_weight(config_, members_, node, weight);
    } else {
      change([&](members_type& next) { next.set_weight(node, weight); });
    }
  }

  /// Replaces the membership with `nodes`.
  /// Throws: config_error if a node repeats or a weight is not accepted.
  void assign(std::vector<weighted_node<node_type>> nodes) {
    if constexpr (in_place) {
      engine_.assign(config_, members_, std::move(nodes));
    } else {
      change([&](members_type& next) { next.assign(std::move(nodes)); });
    }
  }

  /// Replaces the membership with any node_range (weight 1 each) or
  /// weighted_node_range.
  /// Throws: config_error as assign(vector).
  template <class R>
  requires node_range<R, node_type> || weighted_node_range<R, node_type>
  void assign(const R& nodes) {
    assign(to_weighted_nodes<node_type>(nodes));
  }

  /// assign({"a", "b"}): weight 1 each.
  /// Throws: config_error as assign(vector).
  template <class T>
  requires std::convertible_to<const T&, node_type>
  void assign(std::initializer_list<T> nodes) {
    assign(to_weighted_nodes<node_type>(nodes));
  }

  /// assign({{"a", 1.0}, {"b", 2.0}}).
  /// Throws: config_error as assign(vector).
  void assign(std::initializer_list<weighted_node<node_type>> nodes) {
    assign(std::vector<weighted_node<node_type>>(nodes));
  }

  // ---- lookups -----------------------------------------------------------------------

  /// The node owning `key`, or nullptr when there are no nodes.
  template <class Key>
  requires key_hasher<hasher_type, Key>
  [[nodiscard]] const node_type* lookup(const Key& key) const
      noexcept(noexcept(std::declval<const hasher_type&>()(key))) {
    return lookup_hash(static_cast<std::uint64_t>(members_.hasher()(key)));
  }

  /// The node owning a key whose Hasher value is `key_hash`; nullptr when empty.
  [[nodiscard]] const node_type* lookup_hash(std::uint64_t key_hash) const noexcept {
    return engine_.lookup_hash(members_, key_hash);
  }

  /// The min(n, size()) distinct nodes next in line for `key`, the owner first: the
  /// replica set (policies that rank nodes per key: rendezvous, ring).
  template <class Key>
  requires key_hasher<hasher_type, Key> && has_preference_list
  [[nodiscard]] std::vector<node_type> preference_list(const Key& key,
                                                       std::size_t n) const {
    return preference_list_hash(static_cast<std::uint64_t>(members_.hasher()(key)), n);
  }

  /// preference_list for a key whose Hasher value is `key_hash`.
  [[nodiscard]] std::vector<node_type> preference_list_hash(std::uint64_t key_hash,
                                                            std::size_t n) const
  requires has_preference_list
  {
    return engine_.preference_list_hash(members_, key_hash, n);
  }

  // ---- accessors ---------------------------------------------------------------------

  [[nodiscard]] bool contains(const node_type& node) const {
    return members_.contains(node);
  }
  [[nodiscard]] std::size_t size() const noexcept { return members_.size(); }
  [[nodiscard]] bool empty() const noexcept { return members_.size() == 0; }
  /// The members with their weights, in membership order.
  [[nodiscard]] const std::vector<weighted_node<node_type>>& nodes() const noexcept {
    return members_.nodes();
  }
  [[nodiscard]] const config_type& config() const noexcept { return config_; }
  [[nodiscard]] const hasher_type& hasher() const noexcept { return members_.hasher(); }

 protected:
  [[nodiscard]] const Engine& engine() const noexcept { return engine_; }
  [[nodiscard]] const members_type& members() const noexcept { return members_; }

 private:
  static config_type validated(config_type config) {
    if constexpr (requires { Engine::validated(config); }) {
      return Engine::validated(std::move(config));
    } else {
      return config;
    }
  }

  /// Copies the membership, applies `edit`, rebuilds the engine from the copy and
  /// commits both; nothing changes if `edit` or the rebuild throws.
  template <class Edit>
  void change(Edit&& edit) {
    members_type next = members_;
    std::forward<Edit>(edit)(next);
    engine_.rebuild(config_, next);
    members_ = std::move(next);
  }

  config_type config_;
  members_type members_;
  Engine engine_{};
};

}  // namespace outgrow::detail
