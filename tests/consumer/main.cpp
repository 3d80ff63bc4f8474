// Built against an installed (or embedded) outgrow: proves headers, include paths and
// transitive dependencies (Boost, fmt, xxHash, Threads) reach a consumer.
#include <outgrow/outgrow.hpp>

#include <fmt/format.h>
#include <boost/version.hpp>

int main() {
  const outgrow::xxh3_hasher hash;
  // Golden value (also pinned in tests/core/hash_test.cpp).
  if (hash("user:42") != 0x9fc1e605fa7174aaULL) {
    fmt::print(stderr, "consumer: unexpected hash {:016x}\n", hash("user:42"));
    return 1;
  }
  fmt::print("consumer: outgrow {} with Boost {} ok\n", outgrow::version_string,
             BOOST_LIB_VERSION);
  return 0;
}
