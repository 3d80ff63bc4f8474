// outgrow/redis/detail/namespace_scan.hpp — visit or delete every key of a redis_tier
// namespace.
//
// SCAN MATCH prefix* in pages of about 1000 keys, keeping only the keys of the namespace
// itself (no ':' after the prefix: keys with one belong to longer prefixes), and UNLINK
// per page. O(keys in the database): for clear(), size() and repairs, not request paths.
#pragma once

#include <hiredis/hiredis.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <outgrow/redis/detail/key_namespace.hpp>
#include <outgrow/redis/detail/pool.hpp>
#include <outgrow/redis/detail/reply.hpp>

namespace outgrow::detail {

/// Calls on_keys(std::span<redisReply* const>) -> redis_status with each SCAN page's
/// keys of the namespace `prefix`; stops at the first status that is not ok. Each
/// command's reply may buffer up to `limit` bytes.
template <class Clock, class F>
redis_status redis_scan_namespace(const redis_pool<Clock>& pool, redis_pooled_connection& c,
                                  std::string_view prefix, std::size_t limit, F&& on_keys) {
  const std::string pattern = redis_prefix_pattern(prefix);
  std::string cursor = "0";
  std::vector<redisReply*> ours;
  do {
    const std::string_view args[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
    redis_reply_ptr r;
    if (const auto s = pool.exec(c, args, r, limit); s != redis_status::ok) return s;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
      return redis_status::server;
    }
    cursor.assign(r->element[0]->str, r->element[0]->len);
    const redisReply* keys = r->element[1];
    ours.clear();
    for (std::size_t i = 0; i < keys->elements; ++i) {
      const redisReply* k = keys->element[i];
      if (k->type == REDIS_REPLY_STRING && redis_in_namespace({k->str, k->len}, prefix)) {
        ours.push_back(keys->element[i]);
      }
    }
    if (!ours.empty()) {
      const auto s = on_keys(std::span<redisReply* const>(ours.data(), ours.size()));
      if (s != redis_status::ok) return s;
    }
  } while (cursor != "0");
  return redis_status::ok;
}

/// UNLINKs every key of the namespace `prefix`, one UNLINK per SCAN page.
template <class Clock>
redis_status redis_unlink_namespace(const redis_pool<Clock>& pool,
                                    redis_pooled_connection& c, std::string_view prefix,
                                    std::size_t limit) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  return redis_scan_namespace(
      pool, c, prefix, limit, [&](std::span<redisReply* const> keys) {
        argv.assign(1, "UNLINK");
        lens.assign(1, 6);
        for (const redisReply* k : keys) {
          argv.push_back(k->str);
          lens.push_back(k->len);
        }
        redis_reply_ptr r;
        const auto s =
            pool.exec(c, static_cast<int>(argv.size()), argv.data(), lens.data(), r, limit);
        if (s != redis_status::ok) return s;
        return r->type == REDIS_REPLY_INTEGER ? redis_status::ok : redis_status::server;
      });
}

}  // namespace outgrow::detail
