// tests/support/live_shop_support.hpp — what the live shop's integration tests share:
// where the shop's programs are, a scratch directory, waiting for a program's port or
// ready file, and (with libpq) one number from a SQL query (orders_db.hpp).
#pragma once

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <thread>

#include "../../examples/live_shop/http.hpp"  // live_shop::address
#include "catch.hpp"
#ifdef OUTGROW_LIVE_SHOP_WITH_PG
#include "../../examples/live_shop/orders_db.hpp"
#endif

namespace outgrow_test {

/// The directory of the live shop's programs: $OUTGROW_LIVE_SHOP_BIN_DIR, else the one
/// the build names (OUTGROW_LIVE_SHOP_BIN_DIR), else "".
inline std::filesystem::path live_shop_bin_dir() {
  if (const char* env = std::getenv("OUTGROW_LIVE_SHOP_BIN_DIR"); env != nullptr)
    return env;
#ifdef OUTGROW_LIVE_SHOP_BIN_DIR
  return OUTGROW_LIVE_SHOP_BIN_DIR;
#else
  return {};
#endif
}

/// A fresh temporary directory, removed with its content.
struct scratch_dir {
  scratch_dir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "outgrow-live-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path path;
};

/// Waits (20 s at most; fails the test after) until `file` exists.
inline void wait_for_file(const std::filesystem::path& file) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
  while (!std::filesystem::exists(file)) {
    if (std::chrono::steady_clock::now() > deadline)
      FAIL("no file " << file << " within 20 s");
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
}

/// The port a program started with --port 0 wrote to `file` (waits 20 s at most).
inline unsigned short wait_for_port_file(const std::filesystem::path& file) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(file);
    unsigned port = 0;
    if (in >> port && port > 0 && port < 65536) return static_cast<unsigned short>(port);
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  FAIL("no port file " << file << " within 20 s");
  return 0;
}

/// 127.0.0.1 and the port in `file` (see wait_for_port_file).
inline live_shop::address wait_for_address(const std::filesystem::path& file) {
  return {"127.0.0.1", wait_for_port_file(file)};
}

#ifdef OUTGROW_LIVE_SHOP_WITH_PG
using live_shop::sql_number;
#endif

}  // namespace outgrow_test
