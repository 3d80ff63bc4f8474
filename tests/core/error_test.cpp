#include <outgrow/core/error.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "catch.hpp"

using namespace std::chrono_literals;

static_assert(std::is_base_of_v<std::invalid_argument, outgrow::config_error>);

TEST_CASE("require_in_range names primitive, field, range and value", "[error]") {
  CHECK_NOTHROW(
      outgrow::require_in_range("circuit_breaker", "failure_threshold", 5, 1, 1'000'000));
  CHECK_THROWS_WITH(
      outgrow::require_in_range("circuit_breaker", "failure_threshold", 0, 1, 1'000'000),
      "circuit_breaker: failure_threshold must be in [1, 1000000], got 0");
  CHECK_THROWS_AS(outgrow::require_in_range("x", "y", 11, 1, 10), outgrow::config_error);
  // bounds are inclusive
  CHECK_NOTHROW(outgrow::require_in_range("x", "y", 1, 1, 10));
  CHECK_NOTHROW(outgrow::require_in_range("x", "y", 10, 1, 10));
}

TEST_CASE("require_in_range prints doubles and durations", "[error]") {
  CHECK_THROWS_WITH(outgrow::require_in_range("hash_ring", "load_factor", 0.5, 1.0, 100.0),
                    "hash_ring: load_factor must be in [1, 100], got 0.5");
  CHECK_THROWS_WITH(outgrow::require_in_range("circuit_breaker", "open_for", 0ms, 1ms, 24h),
                    "circuit_breaker: open_for must be in [1ms, 24h], got 0s");
  // NaN is outside every range.
  CHECK_THROWS_AS(outgrow::require_in_range("x", "ratio", std::nan(""), 0.0, 1.0),
                  outgrow::config_error);
}

TEST_CASE("durations print in the largest exact unit", "[error]") {
  CHECK_THROWS_WITH(outgrow::require_in_range(
                        "x", "open_for", std::chrono::nanoseconds{25h},
                        std::chrono::nanoseconds{1ms}, std::chrono::nanoseconds{24h}),
                    "x: open_for must be in [1ms, 24h], got 25h");
  CHECK_THROWS_WITH(
      outgrow::require(false, "x", "ttl", "positive", std::chrono::nanoseconds{1500us}),
      "x: ttl must be positive, got 1500us");
  CHECK_THROWS_WITH(
      outgrow::require(false, "x", "ttl", "positive", std::chrono::minutes{-10}),
      "x: ttl must be positive, got -10min");
}

TEST_CASE("durations beyond the nanosecond range print without overflowing", "[error]") {
  CHECK_THROWS_WITH(
      outgrow::require(false, "x", "slo", "at most 1h", std::chrono::seconds::max()),
      "x: slo must be at most 1h, got 9223372036854775807s");
  CHECK_THROWS_WITH(
      outgrow::require(false, "x", "slo", "at most 1h", std::chrono::hours::min()),
      "x: slo must be at most 1h, got -9223372036854775808h");
  CHECK_THROWS_WITH(
      outgrow::require(false, "x", "slo", "at most 1h", std::chrono::nanoseconds::max()),
      "x: slo must be at most 1h, got 9223372036854775807ns");
}

TEST_CASE("require_at_least prints an open-ended range", "[error]") {
  CHECK_THROWS_WITH(outgrow::require_at_least("bounded_queue", "capacity", 0, 1),
                    "bounded_queue: capacity must be in [1, inf), got 0");
  CHECK_NOTHROW(outgrow::require_at_least("bounded_queue", "capacity", 1, 1));
}

TEST_CASE("require states a requirement and keeps field and primitive", "[error]") {
  try {
    outgrow::require(false, "hash_ring", "remove(node)", "a node in the ring",
                     std::string("db-7"));
    FAIL("require(false, ...) did not throw");
  } catch (const outgrow::config_error& e) {
    CHECK(std::string(e.what()) ==
          "hash_ring: remove(node) must be a node in the ring, got db-7");
    CHECK(e.primitive() == "hash_ring");
    CHECK(e.field() == "remove(node)");
  }
  CHECK_NOTHROW(outgrow::require(true, "hash_ring", "remove(node)", "a node", 1));
  CHECK_THROWS_WITH(outgrow::require(false, "router", "strict", "true", false),
                    "router: strict must be true, got false");
}
