// outgrow/core/version.hpp — the library version as macros and constants.
//
//   static_assert(outgrow::version_major == 0);
//   fmt::print("outgrow {}\n", outgrow::version_string);
//
// Kept in step with project(VERSION) in CMakeLists.txt (a test checks it).
// Thread-safety: constants. Complexity: none.
#pragma once

#define OUTGROW_VERSION_MAJOR 0
#define OUTGROW_VERSION_MINOR 1
#define OUTGROW_VERSION_PATCH 0

namespace outgrow {
inline constexpr int version_major = OUTGROW_VERSION_MAJOR;
inline constexpr int version_minor = OUTGROW_VERSION_MINOR;
inline constexpr int version_patch = OUTGROW_VERSION_PATCH;
inline constexpr const char* version_string = "0.1.0";
}  // namespace outgrow
