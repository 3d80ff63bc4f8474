// The translation unit that builds the precompiled header the examples share
// (CMakeLists.txt, OUTGROW_EXAMPLE_PCH). It defines nothing of its own.
namespace outgrow_example {
int pch_anchor() noexcept {
  return 0;
}
}  // namespace outgrow_example
