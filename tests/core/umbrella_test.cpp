// The umbrella header compiles on its own and the version matches CMake's.
#include <outgrow/outgrow.hpp>

#include <string>

#include <fmt/format.h>

#include "catch.hpp"

#ifndef OUTGROW_SOURCE_DIR
#error "OUTGROW_SOURCE_DIR must be defined by the test build"
#endif

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

TEST_CASE("version macros agree with project(VERSION) in CMakeLists.txt", "[version]") {
  std::ifstream in(std::string(OUTGROW_SOURCE_DIR) + "/CMakeLists.txt");
  REQUIRE(in.good());
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string cmake = buf.str();
  std::smatch m;
  REQUIRE(std::regex_search(cmake, m, std::regex(R"(VERSION\s+(\d+)\.(\d+)\.(\d+))")));
  CHECK(std::stoi(m[1]) == OUTGROW_VERSION_MAJOR);
  CHECK(std::stoi(m[2]) == OUTGROW_VERSION_MINOR);
  CHECK(std::stoi(m[3]) == OUTGROW_VERSION_PATCH);
  CHECK(fmt::format("{}.{}.{}", outgrow::version_major, outgrow::version_minor,
                    outgrow::version_patch) == outgrow::version_string);
}

TEST_CASE("the umbrella header includes every public header of every area", "[umbrella]") {
  namespace fs = std::filesystem;
  const fs::path include = fs::path(OUTGROW_SOURCE_DIR) / "include" / "outgrow";
  std::ifstream in(include / "outgrow.hpp");
  REQUIRE(in.good());
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string umbrella = buf.str();
  std::size_t checked = 0;
  for (const auto& area : fs::directory_iterator(include)) {
    if (!area.is_directory()) continue;
    const std::string name = area.path().filename().string();
    if (name == "redis" || name == "detail") continue;  // optional integration / internals
    for (const auto& header : fs::directory_iterator(area.path())) {
      if (header.path().extension() != ".hpp") continue;
      const std::string file = header.path().filename().string();
      if (name == "core" && file == "stats.hpp")
        continue;  // the former name of metrics.hpp
      // Optional integrations outside redis/ that need hiredis (they include a Redis
      // part) are left out of the umbrella as redis/ is.
      std::ifstream text(header.path());
      std::stringstream body;
      body << text.rdbuf();
      if (body.str().find("#include <outgrow/redis/") != std::string::npos) continue;
      const std::string line = "#include <outgrow/" + name + "/" + file + ">";
      INFO(line);
      CHECK(umbrella.find(line) != std::string::npos);
      ++checked;
    }
  }
  CHECK(checked > 50);
}
