#include <outgrow/routing/rendezvous.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

#include "counting_new.hpp"  // lookups must never allocate

using rendezvous = outgrow::rendezvous_placement<std::string>;
using outgrow::weighted_node;

static_assert(outgrow::placement<rendezvous>);
static_assert(outgrow::placement<outgrow::rendezvous_placement<int>>);
static_assert(std::is_same_v<rendezvous::node_type, std::string>);
static_assert(std::is_same_v<rendezvous::hasher_type, outgrow::xxh3_hasher>);

// lookup(key) exists only for keys the Hasher can hash.
template <class P, class Key>
concept can_look_up = requires(const P& p, const Key& key) { p.lookup(key); };
static_assert(can_look_up<rendezvous, std::string_view>);
static_assert(can_look_up<rendezvous, int>);
static_assert(!can_look_up<rendezvous, std::vector<int>>);

namespace {

std::vector<std::string> node_names(std::size_t n) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < n; ++i) names.push_back(fmt::format("node-{}", i));
  return names;
}

template <class F>
std::string config_error_message(F&& f) {
  try {
    f();
  } catch (const outgrow::config_error& e) {
    return e.what();
  }
  return "<no config_error>";
}

/// Over `samples` probes: keys whose owner changed without `node` being the old or
/// the new owner. Rendezvous moves only the changed node's keys, so this is 0.
std::size_t moved_not_involving(const rendezvous& before, const rendezvous& after,
                                const std::string& node, std::size_t samples) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < samples; ++i) {
    const std::uint64_t h = outgrow::sample_hash(i);
    const std::string& a = *before.lookup_hash(h);
    const std::string& b = *after.lookup_hash(h);
    if (a != b && a != node && b != node) ++bad;
  }
  return bad;
}

/// The textbook definition, written out: the highest -w / ln(u), lowest index on ties.
const std::string* reference_owner(const rendezvous& p, std::uint64_t key_hash) {
  const outgrow::xxh3_hasher h;
  const std::string* best = nullptr;
  double best_score = 0.0;
  for (const auto& wn : p.nodes()) {
    const double u = outgrow::hash_to_unit_open(outgrow::hash_mix(key_hash, h(wn.node)));
    const double score = -wn.weight / std::log(u);
    if (best == nullptr || score > best_score) {
      best = &wn.node;
      best_score = score;
    }
  }
  return best;
}

}  // namespace

// Golden vectors: owners and preference lists of fixed keys for fixed memberships,
// computed once with this implementation and pinned. Changing any of them moves keys
// in every deployment: that is a breaking change.
TEST_CASE("rendezvous golden owners", "[rendezvous][golden]") {
  struct golden {
    std::string_view key;
    std::string_view owner;
  };
  SECTION("five nodes") {
    const rendezvous p({"db-0", "db-1", "db-2", "db-3", "db-4"});
    const golden table[] = {
        {"user:1", "db-4"},  {"user:42", "db-3"},
        {"user:43", "db-2"}, {"order:2026-11-27:000001", "db-4"},
        {"cart:7", "db-0"},  {"session:abc", "db-1"},
        {"", "db-2"},        {"123456789", "db-2"},
    };
    for (const auto& g : table) {
      INFO("key " << g.key);
      CHECK(*p.lookup(g.key) == g.owner);
    }
    CHECK(*p.lookup(std::uint64_t{0}) == "db-4");
    CHECK(*p.lookup(std::uint64_t{42}) == "db-2");
    CHECK(*p.lookup(std::uint64_t{123456789}) == "db-0");
    using list = std::vector<std::string>;
    CHECK(p.preference_list("user:1", 5) == list{"db-4", "db-0", "db-2", "db-1", "db-3"});
    CHECK(p.preference_list("user:42", 5) == list{"db-3", "db-2", "db-0", "db-4", "db-1"});
    CHECK(p.preference_list("cart:7", 3) == list{"db-0", "db-4", "db-3"});
  }
  SECTION("weights 1 2 4") {
    const rendezvous p(
        std::vector<weighted_node<std::string>>{{"a", 1.0}, {"b", 2.0}, {"c", 4.0}});
    const golden table[] = {
        {"user:1", "c"},  {"user:42", "c"},
        {"user:43", "c"}, {"order:2026-11-27:000001", "c"},
        {"cart:7", "b"},  {"session:abc", "a"},
        {"", "c"},        {"123456789", "a"},
    };
    for (const auto& g : table) {
      INFO("key " << g.key);
      CHECK(*p.lookup(g.key) == g.owner);
    }
    CHECK(*p.lookup(std::uint64_t{42}) == "b");
    using list = std::vector<std::string>;
    CHECK(p.preference_list("cart:7", 3) == list{"b", "c", "a"});
    CHECK(p.preference_list("session:abc", 3) == list{"a", "c", "b"});
  }
}

TEST_CASE("rendezvous lookup follows the weighted HRW definition", "[rendezvous]") {
  // Equal weights take a fast path that compares the hashes without std::log; it
  // must pick exactly what the formula picks, for any common weight.
  for (const double w : {1.0, 3.0, 0.25}) {
    std::vector<weighted_node<std::string>> nodes;
    for (const auto& n : node_names(16)) nodes.push_back({n, w});
    const rendezvous p(nodes);
    std::size_t mismatches = 0;
    for (std::uint64_t i = 0; i < 50'000; ++i) {
      const std::uint64_t h = outgrow::sample_hash(i);
      if (p.lookup_hash(h) != reference_owner(p, h)) ++mismatches;
    }
    CHECK(mismatches == 0);
  }
  std::vector<weighted_node<std::string>> mixed;
  for (const auto& n : node_names(16)) {
    mixed.push_back({n, 1.0 + static_cast<double>(mixed.size() % 5)});
  }
  const rendezvous p(mixed);
  std::size_t mismatches = 0;
  for (std::uint64_t i = 0; i < 50'000; ++i) {
    const std::uint64_t h = outgrow::sample_hash(i);
    if (p.lookup_hash(h) != reference_owner(p, h)) ++mismatches;
  }
  CHECK(mismatches == 0);

  const outgrow::xxh3_hasher h;
  CHECK(p.lookup("user:42") == p.lookup_hash(h("user:42")));
  CHECK(p.lookup(42) == p.lookup_hash(h(std::uint64_t{42})));
}

TEST_CASE("rendezvous does not depend on membership order", "[rendezvous]") {
  std::vector<weighted_node<std::string>> nodes;
  for (const auto& n : node_names(20)) {
    nodes.push_back({n, 1.0 + static_cast<double>(nodes.size() % 3)});
  }
  const rendezvous forward(nodes);
  std::reverse(nodes.begin(), nodes.end());
  const rendezvous backward(nodes);
  rendezvous incremental;
  for (const auto& wn : nodes) incremental.add(wn.node, wn.weight);
  CHECK(outgrow::moved_fraction(forward, backward, 100'000) == 0.0);
  CHECK(outgrow::moved_fraction(forward, incremental, 100'000) == 0.0);
}

TEST_CASE("rendezvous moves the optimal fraction on adding or removing any node",
          "[rendezvous][movement]") {
  for (const std::size_t n : {std::size_t{10}, std::size_t{100}}) {
    const rendezvous before(node_names(n));
    const std::string added = fmt::format("node-{}", n);
    const std::string removed = fmt::format("node-{}", n / 2);

    rendezvous grown = before;
    grown.add(added);
    const double moved_add = outgrow::moved_fraction(before, grown);
    const double optimum_add = 1.0 / static_cast<double>(n + 1);

    rendezvous shrunk = before;
    shrunk.remove(removed);
    const double moved_remove = outgrow::moved_fraction(before, shrunk);
    const double optimum_remove = 1.0 / static_cast<double>(n);

    WARN(
        fmt::format("rendezvous N={}: add moved {:.5f} ({:.3f}x of 1/(N+1)); remove a "
                    "middle node moved {:.5f} ({:.3f}x of 1/N)",
                    n, moved_add, moved_add / optimum_add, moved_remove,
                    moved_remove / optimum_remove));
    CHECK(moved_add <= 1.10 * optimum_add);
    CHECK(moved_add >= 0.90 * optimum_add);
    CHECK(moved_remove <= 1.10 * optimum_remove);
    CHECK(moved_remove >= 0.90 * optimum_remove);
    // Only keys of the added / removed node move.
    CHECK(moved_not_involving(before, grown, added, 200'000) == 0);
    CHECK(moved_not_involving(before, shrunk, removed, 200'000) == 0);
  }
}

TEST_CASE("rendezvous set_weight moves keys only to or from that node",
          "[rendezvous][movement]") {
  const rendezvous before(node_names(10));
  rendezvous heavier = before;
  heavier.set_weight("node-3", 2.0);
  CHECK(moved_not_involving(before, heavier, "node-3", 200'000) == 0);
  const auto counts = outgrow::key_counts(heavier, 200'000);
  // 2 / 11 of the keys.
  CHECK(static_cast<double>(counts[3].second) / 200'000.0 ==
        Approx(2.0 / 11.0).margin(0.01));
  rendezvous back = heavier;
  back.set_weight("node-3", 1.0);
  CHECK(outgrow::moved_fraction(before, back, 100'000) == 0.0);
}

TEST_CASE("rendezvous balances 100 nodes within 5 percent", "[rendezvous][balance]") {
  const rendezvous p(node_names(100));
  const double ptm = outgrow::peak_to_mean(p);
  WARN(fmt::format("rendezvous N=100: peak-to-mean {:.4f} over 1M keys", ptm));
  CHECK(ptm <= 1.05);
  CHECK(ptm >= 1.0);
}

TEST_CASE("rendezvous weights 1 2 4 get shares of 1/7 2/7 4/7", "[rendezvous][weights]") {
  const rendezvous p(
      std::vector<weighted_node<std::string>>{{"a", 1.0}, {"b", 2.0}, {"c", 4.0}});
  const double expected[] = {1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0};
  const auto counts = outgrow::key_counts(p);
  REQUIRE(counts.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    const double share = static_cast<double>(counts[i].second) / 1e6;
    WARN(fmt::format("rendezvous weight {}: key share {:.4f} (target {:.4f})",
                     p.nodes()[i].weight, share, expected[i]));
    CHECK(counts[i].first == p.nodes()[i].node);
    CHECK(share == Approx(expected[i]).margin(0.02));
  }
}

TEST_CASE("rendezvous preference lists are distinct and start with the owner",
          "[rendezvous][replicas]") {
  rendezvous p(node_names(8));
  for (std::uint64_t i = 0; i < 2'000; ++i) {
    const std::uint64_t h = outgrow::sample_hash(i);
    const auto list = p.preference_list_hash(h, 3);
    REQUIRE(list.size() == 3);
    CHECK(list[0] == *p.lookup_hash(h));
    CHECK(std::set<std::string>(list.begin(), list.end()).size() == 3);
    // A longer list extends a shorter one.
    const auto all = p.preference_list_hash(h, 8);
    CHECK(std::equal(list.begin(), list.end(), all.begin()));
  }
  CHECK(p.preference_list("user:42", 100).size() == 8);  // clamped to size()
  CHECK(p.preference_list("user:42", 0).empty());

  // When the owner leaves, its keys go to their second choice: replicas already there.
  const auto list = p.preference_list("user:42", 2);
  p.remove(list[0]);
  CHECK(*p.lookup("user:42") == list[1]);

  const rendezvous none;
  CHECK(none.preference_list("user:42", 3).empty());
}

TEST_CASE("rendezvous rejects bad membership changes", "[rendezvous][errors]") {
  rendezvous p({"db-0", "db-1"});
  CHECK(config_error_message([&] { p.add("db-0"); }) ==
        "rendezvous: add(node) must be a node not already present, got db-0");
  CHECK(config_error_message([&] { p.remove("db-9"); }) ==
        "rendezvous: remove(node) must be a node in the placement, got db-9");
  CHECK(config_error_message([&] { p.set_weight("db-9", 2.0); }) ==
        "rendezvous: set_weight(node) must be a node in the placement, got db-9");
  CHECK(config_error_message([&] { p.add("db-2", 0.0); }) ==
        "rendezvous: weight must be in (0, 1000000], got 0");
  CHECK(config_error_message([&] { p.set_weight("db-0", -1.5); }) ==
        "rendezvous: weight must be in (0, 1000000], got -1.5");
  CHECK(config_error_message([&] { p.add("db-2", 2e6); }) ==
        "rendezvous: weight must be in (0, 1000000], got 2000000");
  CHECK(config_error_message([] {
          rendezvous dup({"a", "b", "a"});
        }) == "rendezvous: add(node) must be a node not already present, got a");
  CHECK(config_error_message([] {
          rendezvous bad(std::vector<weighted_node<std::string>>{{"a", 1.0}, {"b", 0.0}});
        }) == "rendezvous: weight must be in (0, 1000000], got 0");

  // Failed changes leave the placement as it was.
  const rendezvous copy = p;
  CHECK_THROWS_AS(p.assign(std::vector<std::string>{"x", "y", "x"}), outgrow::config_error);
  CHECK_THROWS_AS(p.add("db-1", 2.0), outgrow::config_error);
  CHECK(p.nodes() == copy.nodes());
  CHECK(outgrow::moved_fraction(copy, p, 10'000) == 0.0);
}

TEST_CASE("rendezvous lookups on an empty placement return nullptr",
          "[rendezvous][errors]") {
  rendezvous p;
  CHECK(p.empty());
  CHECK(p.lookup("user:42") == nullptr);
  CHECK(p.lookup_hash(0) == nullptr);
  p.add("db-0", 3.0);
  CHECK(*p.lookup("user:42") == "db-0");
  p.remove("db-0");
  CHECK(p.empty());
  CHECK(p.lookup_hash(~std::uint64_t{0}) == nullptr);
}

TEST_CASE("rendezvous lookups never allocate", "[rendezvous]") {
  const rendezvous uniform(node_names(50));
  std::vector<weighted_node<std::string>> mixed;
  for (const auto& n : node_names(50)) {
    mixed.push_back({n, 1.0 + static_cast<double>(mixed.size() % 4)});
  }
  const rendezvous weighted(mixed);
  const std::string key = "user:42";
  const std::size_t before = outgrow_test::allocations();
  std::size_t found = 0;
  for (std::uint64_t i = 0; i < 1'000; ++i) {
    found += uniform.lookup_hash(outgrow::sample_hash(i)) != nullptr ? 1U : 0U;
    found += weighted.lookup_hash(outgrow::sample_hash(i)) != nullptr ? 1U : 0U;
  }
  found += uniform.lookup(key) != nullptr ? 1U : 0U;
  found += weighted.lookup(std::string_view(key)) != nullptr ? 1U : 0U;
  CHECK(outgrow_test::allocations() - before == 0);
  CHECK(found == 2'002);
  // Control: the counter sees allocations (preference_list returns a vector).
  const auto replicas = uniform.preference_list("user:42", 3);
  CHECK(replicas.size() == 3);
  CHECK(outgrow_test::allocations() > before);
}

TEST_CASE("rendezvous constructors and assign accept braced lists", "[rendezvous]") {
  // Two string literals are two nodes (not std::vector's iterator-pair constructor).
  const rendezvous two({"a", "b"});
  CHECK(two.size() == 2);
  CHECK(two.nodes()[1].node == "b");
  const rendezvous none({});
  CHECK(none.empty());
  // Any range of things convertible to Node, or of weighted nodes.
  const std::array<const char*, 3> names{"a", "b", "c"};
  const rendezvous from_array(names);
  CHECK(from_array.size() == 3);
  CHECK(from_array.nodes()[2].node == "c");
  const outgrow::rendezvous_placement<int> one_int({7});
  CHECK(one_int.size() == 1);
  CHECK(*one_int.lookup("anything") == 7);
  const rendezvous weighted({{"a", 1.0}, {"b", 2.0}});
  REQUIRE(weighted.size() == 2);
  CHECK(weighted.nodes()[1] == outgrow::weighted_node<std::string>{"b", 2.0});
  rendezvous p;
  p.assign({"x", "y"});
  CHECK(p.size() == 2);
  p.assign({{"x", 1.0}, {"y", 3.0}, {"z", 2.0}});
  CHECK(p.nodes()[1].weight == 3.0);
  p.assign({});
  CHECK(p.empty());
}
