// Conan test_package: the packaged headers compile and their dependencies
// (Boost, {fmt}, xxHash, and hiredis with the redis component) reach a consumer.
#include <outgrow/outgrow.hpp>

#include <fmt/format.h>
#include <boost/version.hpp>

#ifdef OUTGROW_TEST_REDIS
#include <hiredis/hiredis.h>
#endif

#include <cstdint>
#include <cstdio>

int main() {
  const outgrow::xxh3_hasher hash;
  const std::uint64_t h = hash("user:42");
  fmt::print("outgrow {} (Boost {}): xxh3(\"user:42\") = {:016x}\n",
             outgrow::version_string, BOOST_LIB_VERSION, h);
  // Golden value pinned by the unit tests: the hash must not vary across builds.
  if (h != 0x9fc1e605fa7174aaULL) {
    std::fputs("test_package: unexpected hash value\n", stderr);
    return 1;
  }
#ifdef OUTGROW_TEST_REDIS
  fmt::print("hiredis {}.{}.{}\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
  redisFree(nullptr);  // links against the hiredis library; a no-op on nullptr
#endif
  return 0;
}
