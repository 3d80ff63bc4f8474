// black_friday/redis_l2.hpp — the demo's L2 on a real Redis (`black_friday --redis
// HOST:PORT`; `scripts/dev demo --redis` starts a local redis-server for it).
#pragma once

#include <outgrow/redis/redis_tier.hpp>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "shop.hpp"

namespace black_friday {

/// Each cache gets its own key namespace ("black_friday:<cache>:"), emptied first so
/// every run starts cold, as the in-process L2 does.
struct redis_l2 {
  template <class V>
  using tier = outgrow::redis_tier<std::uint64_t, V>;
  static constexpr std::string_view name = "Redis (redis_tier)";
  std::string host;
  int port = 6379;

  template <class V>
  std::unique_ptr<tier<V>> make(std::string_view cache, std::size_t /*capacity*/,
                                const clock_type& /*clock*/) const {
    auto t = std::make_unique<tier<V>>(
        outgrow::redis_tier_config{.connection = {.host = host, .port = port},
                                   .key_prefix = fmt::format("black_friday:{}:", cache)});
    if (!t->ping()) throw std::runtime_error(fmt::format("no Redis at {}:{}", host, port));
    t->clear();
    return t;
  }
};

}  // namespace black_friday
