// Catch2 v2 / v3 compatibility: tests include this header instead of Catch2 directly.
// Debian 12 ships Catch2 2.13 (single header); Conan and vcpkg ship Catch2 3.x.
#pragma once

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#define OUTGROW_CATCH2_V3 1
// v2 exports Approx at global scope (catch.hpp: `using Catch::Detail::Approx;`) and
// tests use it unqualified; v3 only has Catch::Approx, so export it the same way.
using Catch::Approx;
#elif __has_include(<catch2/catch.hpp>)
#include <catch2/catch.hpp>
#define OUTGROW_CATCH2_V3 0
#else
#error "outgrow tests need Catch2 (v2.13 or v3)"
#endif

namespace outgrow_test {
#if OUTGROW_CATCH2_V3
using Catch::Approx;
#else
using Catch::Detail::Approx;
#endif
}  // namespace outgrow_test
