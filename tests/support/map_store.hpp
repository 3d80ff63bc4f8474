// tests/support/map_store.hpp — a thread-safe in-memory backing store (a `backing_store`
// for tiered_cache) that counts its loads; shared by the Redis integration tests.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace outgrow_test {

struct map_store {
  using key_type = std::string;
  using mapped_type = std::string;
  std::optional<std::string> load(const std::string& k) {
    std::lock_guard lock(mutex);
    ++loads;
    auto it = data.find(k);
    if (it == data.end()) return std::nullopt;
    return it->second;
  }
  void store(const std::string& k, const std::string& v) {
    std::lock_guard lock(mutex);
    data[k] = v;
  }
  void erase(const std::string& k) {
    std::lock_guard lock(mutex);
    data.erase(k);
  }
  std::map<std::string, std::string> snapshot() {
    std::lock_guard lock(mutex);
    return data;
  }
  std::mutex mutex;
  std::map<std::string, std::string> data;
  std::size_t loads = 0;
};

}  // namespace outgrow_test
