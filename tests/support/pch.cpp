// The translation unit that builds the precompiled header the test executables share
// (tests/CMakeLists.txt, OUTGROW_TEST_PCH). It defines nothing of its own.
namespace outgrow_test {
int pch_anchor() noexcept {
  return 0;
}
}  // namespace outgrow_test
