// Built against an installed (or embedded) outgrow: proves headers, include paths and
// transitive dependencies (Boost, fmt, xxHash, Threads) reach a consumer. It includes a
// few headers, not the umbrella: the umbrella compiling on its own is
// tests/core/umbrella_test.cpp's job, and parsing it here six times (three ways of
// consuming, two programs each) made these tests the slowest of the suite.
#include <outgrow/core/hash.hpp>
#include <outgrow/core/version.hpp>
#include <outgrow/queue/bounded_queue.hpp>

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
