#include <outgrow/routing/jump_hash.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

using outgrow::jump_hash;
using jump = outgrow::jump_placement<std::string>;

static_assert(outgrow::placement<jump>);
static_assert(outgrow::placement<outgrow::jump_placement<int>>);
static_assert(std::is_same_v<jump::node_type, std::string>);
static_assert(std::is_same_v<jump::hasher_type, outgrow::xxh3_hasher>);
static_assert(jump_hash(1, 1) == 0);  // usable in constant expressions

// lookup(key) exists only for keys the Hasher can hash.
template <class P, class Key>
concept can_look_up = requires(const P& p, const Key& key) { p.lookup(key); };
static_assert(can_look_up<jump, std::string_view>);
static_assert(can_look_up<jump, int>);
static_assert(!can_look_up<jump, std::vector<int>>);

namespace {

std::vector<std::string> node_names(std::size_t n) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < n; ++i) names.push_back(fmt::format("node-{}", i));
  return names;
}

/// The what() of the config_error `f` throws, or a marker when it throws nothing.
template <class F>
std::string config_error_message(F&& f) {
  try {
    f();
  } catch (const outgrow::config_error& e) {
    return e.what();
  }
  return "<no config_error>";
}

/// Over `samples` probes: keys whose owner changed without `node` being the new
/// owner (for an add) or the old owner (for a remove). Optimal movement gives 0.
template <class P>
std::size_t moved_not_involving(const P& before, const P& after, const std::string& node,
                                std::size_t samples) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < samples; ++i) {
    const std::uint64_t h = outgrow::sample_hash(i);
    const std::string& a = *before.lookup_hash(h);
    const std::string& b = *after.lookup_hash(h);
    if (a != b && a != node && b != node) ++bad;
  }
  return bad;
}

}  // namespace

// Known answers of other implementations (ClickHouse, Guava, the Rust crate):
// jump_hash_conformance_test.cpp.
TEST_CASE("jump_hash returns -1 for no buckets and 0 for one bucket", "[jump_hash]") {
  CHECK(jump_hash(42, 0) == -1);
  CHECK(jump_hash(42, -5) == -1);
  CHECK(jump_hash(0, std::int32_t{-2147483647 - 1}) == -1);
  for (std::uint64_t i = 0; i < 10'000; ++i) {
    REQUIRE(jump_hash(outgrow::sample_hash(i), 1) == 0);
  }
  // Extreme keys and bucket counts stay in range.
  for (std::uint64_t key : {std::uint64_t{0}, ~std::uint64_t{0}, std::uint64_t{1} << 63}) {
    const std::int32_t b = jump_hash(key, 2147483647);
    CHECK(b >= 0);
    CHECK(b < 2147483647);
  }
}

TEST_CASE("jump_hash is monotone as buckets grow by one", "[jump_hash]") {
  // A key's bucket for n + 1 buckets is its bucket for n, or the new bucket n.
  std::size_t violations = 0, moved = 0, checks = 0;
  for (std::uint64_t i = 0; i < 2'000; ++i) {
    const std::uint64_t h = outgrow::sample_hash(i);
    std::int32_t previous = jump_hash(h, 1);
    for (std::int32_t n = 1; n < 300; ++n) {
      const std::int32_t next = jump_hash(h, n + 1);
      if (next != previous && next != n) ++violations;
      if (next != previous) ++moved;
      ++checks;
      previous = next;
    }
  }
  CHECK(violations == 0);
  CHECK(moved > 0);
  CHECK(checks == 2'000 * 299);
}

// Golden vectors: owners of fixed keys for fixed memberships, computed once with this
// implementation and pinned. Changing any of them moves keys in every deployment:
// that is a breaking change.
TEST_CASE("jump_placement golden owners", "[jump_hash][golden]") {
  const jump p({"db-0", "db-1", "db-2", "db-3", "db-4"});
  struct golden {
    std::string_view key;
    std::string_view owner;
  };
  const golden table[] = {
      {"user:1", "db-1"},  {"user:42", "db-1"},
      {"user:43", "db-1"}, {"order:2026-11-27:000001", "db-4"},
      {"cart:7", "db-1"},  {"session:abc", "db-3"},
      {"", "db-0"},        {"123456789", "db-4"},
  };
  for (const auto& g : table) {
    INFO("key " << g.key);
    REQUIRE(p.lookup(g.key) != nullptr);
    CHECK(*p.lookup(g.key) == g.owner);
  }
  CHECK(*p.lookup(std::uint64_t{0}) == "db-1");
  CHECK(*p.lookup(std::uint64_t{42}) == "db-3");
  CHECK(*p.lookup(std::uint64_t{123456789}) == "db-3");
}

TEST_CASE("jump_placement maps bucket i to the i-th node", "[jump_hash]") {
  const jump p(node_names(7));
  const outgrow::xxh3_hasher h;
  for (std::uint64_t i = 0; i < 1'000; ++i) {
    const std::uint64_t kh = outgrow::sample_hash(i);
    const auto b = static_cast<std::size_t>(jump_hash(kh, 7));
    REQUIRE(p.lookup_hash(kh) == &p.nodes()[b].node);
  }
  CHECK(p.lookup("user:42") == p.lookup_hash(h("user:42")));
  CHECK(p.lookup(std::string("user:42")) == p.lookup("user:42"));
  CHECK(p.lookup(42) == p.lookup_hash(h(std::uint64_t{42})));
}

TEST_CASE("jump_placement moves the optimal fraction when the last node changes",
          "[jump_hash][movement]") {
  for (const std::size_t n : {std::size_t{10}, std::size_t{100}}) {
    const jump before(node_names(n));
    const std::string added = fmt::format("node-{}", n);
    const std::string last = fmt::format("node-{}", n - 1);

    jump grown = before;
    grown.add(added);
    const double moved_add = outgrow::moved_fraction(before, grown);
    const double optimum_add = 1.0 / static_cast<double>(n + 1);

    jump shrunk = before;
    shrunk.remove(last);
    const double moved_remove = outgrow::moved_fraction(before, shrunk);
    const double optimum_remove = 1.0 / static_cast<double>(n);

    WARN(
        fmt::format("jump N={}: add last moved {:.5f} ({:.3f}x of 1/(N+1)); remove last "
                    "moved {:.5f} ({:.3f}x of 1/N)",
                    n, moved_add, moved_add / optimum_add, moved_remove,
                    moved_remove / optimum_remove));
    CHECK(moved_add <= 1.10 * optimum_add);
    CHECK(moved_add >= 0.90 * optimum_add);
    CHECK(moved_remove <= 1.10 * optimum_remove);
    CHECK(moved_remove >= 0.90 * optimum_remove);
    // Every moved key moved to the added node / from the removed node.
    CHECK(moved_not_involving(before, grown, added, 200'000) == 0);
    CHECK(moved_not_involving(before, shrunk, last, 200'000) == 0);
  }
}

TEST_CASE("jump_placement removing a middle node moves the last node into its slot",
          "[jump_hash][movement]") {
  for (const std::size_t n : {std::size_t{10}, std::size_t{100}}) {
    const jump before(node_names(n));
    jump after = before;
    const std::string removed = fmt::format("node-{}", n / 2);
    after.remove(removed);
    REQUIRE(after.size() == n - 1);
    CHECK(after.nodes()[n / 2].node == fmt::format("node-{}", n - 1));
    CHECK(after.nodes().back().node == fmt::format("node-{}", n - 2));
    CHECK_FALSE(after.contains(removed));

    // Expected: the removed node's 1/N, plus the last node's keys that leave its old
    // bucket, 1/N * (N-2)/(N-1): about 2/N, the documented cost.
    const double nd = static_cast<double>(n);
    const double expected = 1.0 / nd + (nd - 2.0) / (nd * (nd - 1.0));
    const double moved = outgrow::moved_fraction(before, after);
    WARN(fmt::format("jump N={}: remove a middle node moved {:.5f} ({:.3f}x of 1/N)", n,
                     moved, moved * nd));
    CHECK(moved <= 1.10 * expected);
    CHECK(moved >= 0.90 * expected);
  }
}

TEST_CASE("jump_placement balances 100 nodes within 5 percent", "[jump_hash][balance]") {
  const jump p(node_names(100));
  const double ptm = outgrow::peak_to_mean(p);
  WARN(fmt::format("jump N=100: peak-to-mean {:.4f} over 1M keys", ptm));
  CHECK(ptm <= 1.05);
  CHECK(ptm >= 1.0);
}

TEST_CASE("jump_placement rejects weights other than 1", "[jump_hash][weights]") {
  jump p({"db-0"});
  CHECK(config_error_message([&] { p.add("db-1", 2.0); }) ==
        "jump_hash: weight must be 1 (jump hash has no weights), got 2");
  CHECK(config_error_message([&] { p.set_weight("db-0", 0.5); }) ==
        "jump_hash: weight must be 1 (jump hash has no weights), got 0.5");
  CHECK(config_error_message([] {
          jump weighted(std::vector<outgrow::weighted_node<std::string>>{
              {"a", 1.0}, {"b", 2.0}, {"c", 4.0}});
        }) == "jump_hash: weight must be 1 (jump hash has no weights), got 2");
  // Weight 1 is accepted everywhere.
  CHECK_NOTHROW(p.add("db-1", 1.0));
  CHECK_NOTHROW(p.set_weight("db-1", 1.0));
  const jump unit(std::vector<outgrow::weighted_node<std::string>>{{"a", 1.0}, {"b", 1.0}});
  CHECK(unit.size() == 2);
  CHECK(p.size() == 2);
}

TEST_CASE("jump_placement rejects bad membership changes", "[jump_hash][errors]") {
  jump p({"db-0", "db-1"});
  CHECK(config_error_message([&] { p.add("db-0"); }) ==
        "jump_hash: add(node) must be a node not already present, got db-0");
  CHECK(config_error_message([&] { p.remove("db-9"); }) ==
        "jump_hash: remove(node) must be a node in the placement, got db-9");
  CHECK(config_error_message([&] { p.set_weight("db-9", 1.0); }) ==
        "jump_hash: set_weight(node) must be a node in the placement, got db-9");
  CHECK(config_error_message([&] { p.add("db-2", 0.0); }) ==
        "jump_hash: weight must be in (0, 1000000], got 0");
  CHECK(config_error_message([&] { p.add("db-2", -1.0); }) ==
        "jump_hash: weight must be in (0, 1000000], got -1");
  CHECK(config_error_message([] {
          jump dup({"a", "b", "a"});
        }) == "jump_hash: add(node) must be a node not already present, got a");
  // A failed assign leaves the membership as it was.
  CHECK_THROWS_AS(p.assign(std::vector<std::string>{"x", "y", "x"}), outgrow::config_error);
  REQUIRE(p.size() == 2);
  CHECK(p.nodes()[0].node == "db-0");
  CHECK(p.nodes()[1].node == "db-1");
}

TEST_CASE("jump_placement lookups on an empty placement return nullptr",
          "[jump_hash][errors]") {
  jump p;
  CHECK(p.empty());
  CHECK(p.size() == 0);
  CHECK(p.lookup("user:42") == nullptr);
  CHECK(p.lookup_hash(0) == nullptr);
  CHECK(p.lookup_hash(~std::uint64_t{0}) == nullptr);
  p.add("db-0");
  CHECK(*p.lookup("user:42") == "db-0");
  p.remove("db-0");
  CHECK(p.empty());
  CHECK(p.lookup("user:42") == nullptr);
  const jump from_empty(std::vector<std::string>{});
  CHECK(from_empty.lookup_hash(7) == nullptr);
  CHECK(outgrow::moved_fraction(p, from_empty, 1'000) == 0.0);
}

TEST_CASE("jump_placement add and remove round trip", "[jump_hash]") {
  const jump before(node_names(10));
  jump p = before;
  p.add("node-10");
  CHECK(p.contains("node-10"));
  p.remove("node-10");
  CHECK(p.nodes() == before.nodes());
  CHECK(outgrow::moved_fraction(before, p, 100'000) == 0.0);
  p.assign(node_names(3));
  CHECK(p.size() == 3);
  CHECK(p.nodes()[2].node == "node-2");
}

TEST_CASE("jump_hash constructors and assign accept braced lists", "[jump_hash]") {
  // Two string literals are two nodes (not std::vector's iterator-pair constructor).
  const jump two({"a", "b"});
  CHECK(two.size() == 2);
  CHECK(two.nodes()[1].node == "b");
  const jump none({});
  CHECK(none.empty());
  // Any range of things convertible to Node, or of weighted nodes.
  const std::array<const char*, 3> names{"a", "b", "c"};
  const jump from_array(names);
  CHECK(from_array.size() == 3);
  CHECK(from_array.nodes()[2].node == "c");
  const outgrow::jump_placement<int> one_int({7});
  CHECK(one_int.size() == 1);
  CHECK(*one_int.lookup("anything") == 7);
  const jump weighted({{"a", 1.0}, {"b", 1.0}});
  CHECK(weighted.size() == 2);
  jump p;
  p.assign({"x", "y"});
  CHECK(p.size() == 2);
  p.assign({{"x", 1.0}, {"y", 1.0}, {"z", 1.0}});
  CHECK(p.size() == 3);
  p.assign({});
  CHECK(p.empty());
}

TEST_CASE("a large node list reports the error adding one by one would hit first",
          "[jump_hash][errors]") {
  // assign() of many nodes finds duplicates by sorting on hashes (O(N log N)), but must
  // name the same node as N add() calls would: the first one equal to an earlier one,
  // unless a bad weight comes before it.
  std::vector<outgrow::weighted_node<std::string>> nodes;
  for (int i = 0; i < 200; ++i) nodes.push_back({fmt::format("n{}", i), 1.0});
  nodes[150].node = "n10";
  nodes[90].node = "n170";  // equal to a later node: fails at index 170
  nodes[120].node = "n5";
  CHECK(config_error_message([&] { jump p(nodes); }) ==
        "jump_hash: add(node) must be a node not already present, got n5");
  nodes[100].weight = 0.0;
  CHECK(config_error_message([&] { jump p(nodes); }) ==
        "jump_hash: weight must be in (0, 1000000], got 0");
  nodes[100].weight = 1.0;
  nodes[120].node = "n120";
  nodes[150].node = "n150";
  CHECK(config_error_message([&] { jump p(nodes); }) ==
        "jump_hash: add(node) must be a node not already present, got n170");
  nodes[170].node = "n-other";
  const jump ok(nodes);
  CHECK(ok.size() == 200);
}
