// outgrow/redis/detail/tier_repair.hpp — redis_tier's repair after failed writes: delete
// the keys a redis_repair_set remembers (or clear the namespace) once Redis answers.
//
// Two forms, both leaving what they could not delete remembered (give_back):
//   - redis_tier_repair_on(router, c, ...): on the connection the call is about to use,
//     before it serves anything else — UNLINK in batches of max_batch keys (one server
//     or Sentinel's master, reads and writes on one pool);
//   - redis_tier_repair_by_key(router, ...): each key UNLINKed on its own slot's master,
//     a remembered clear on every master — on a cluster, and when reads go to replicas
//     (sentinel.read_from_replicas: a replica refuses writes, so repairs take their own
//     call to the master first).
#pragma once

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <outgrow/core/metrics.hpp>
#include <outgrow/redis/detail/cluster.hpp>
#include <outgrow/redis/detail/namespace_scan.hpp>
#include <outgrow/redis/detail/pool.hpp>
#include <outgrow/redis/detail/repair_set.hpp>

namespace outgrow::detail {

/// Deletes the remembered keys (or clears the namespace `prefix`) on c; keys not deleted
/// stay remembered. `limit` bounds each reply; `repaired` counts the keys deleted.
template <class Clock>
redis_status redis_tier_repair_on(const redis_router<Clock>& router,
                                  redis_pooled_connection& c, redis_repair_set& repairs,
                                  std::string_view prefix, std::size_t max_batch,
                                  std::size_t limit, counter& repaired) noexcept {
  auto work = repairs.take();
  redis_status s = redis_status::ok;
  try {
    if (work.clear_all) {
      s = redis_unlink_namespace(router.first_pool(), c, prefix, limit);
    } else {
      auto& keys = work.keys;
      std::vector<const char*> argv;
      std::vector<std::size_t> lens;
      std::size_t done = 0;
      while (done < keys.size() && s == redis_status::ok) {
        const std::size_t end = std::min(keys.size(), done + max_batch);
        argv.assign(1, "UNLINK");
        lens.assign(1, 6);
        for (std::size_t i = done; i < end; ++i) {
          argv.push_back(keys[i].data());
          lens.push_back(keys[i].size());
        }
        redis_reply_ptr r;
        s = router.exec(c, static_cast<int>(argv.size()), argv.data(), lens.data(), r,
                        limit);
        if (s != redis_status::ok) {
          if (s == redis_status::too_large) s = redis_status::transport;
        } else if (r->type != REDIS_REPLY_INTEGER) {
          s = redis_status::server;
        } else {
          repaired.add(end - done);
          done = end;
        }
      }
      keys.erase(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(done));
    }
  } catch (...) {
    s = redis_status::codec;
  }
  if (s != redis_status::ok) repairs.give_back(std::move(work));  // what is left
  return s;
}

/// Each remembered key UNLINKed on its own slot's master (router.run), a remembered
/// clear on every master; stops at the first failure, which stays remembered.
template <class Clock>
redis_status redis_tier_repair_by_key(redis_router<Clock>& router,
                                      redis_repair_set& repairs, std::string_view prefix,
                                      std::size_t limit, counter& repaired) noexcept {
  auto work = repairs.take();
  redis_status s = redis_status::ok;
  try {
    if (work.clear_all) {
      s = router.run_each_master([&](redis_pooled_connection& c) {
        return redis_unlink_namespace(router.first_pool(), c, prefix, limit);
      });
    } else {
      auto& keys = work.keys;
      std::size_t done = 0;
      for (; done < keys.size() && s == redis_status::ok; ++done) {
        s = router.run(router.slot_of(keys[done]), [&](redis_pooled_connection& c) {
          const std::string_view args[] = {"UNLINK", keys[done]};
          redis_reply_ptr r;
          if (const auto e = router.exec(c, args, r, limit); e != redis_status::ok) {
            return e == redis_status::too_large ? redis_status::transport : e;
          }
          return r->type == REDIS_REPLY_INTEGER ? redis_status::ok : redis_status::server;
        });
        if (s == redis_status::ok) repaired.add();
      }
      if (s != redis_status::ok) --done;  // the key that failed stays remembered
      keys.erase(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(done));
    }
  } catch (...) {
    s = redis_status::codec;
  }
  if (s != redis_status::ok) repairs.give_back(std::move(work));
  return s;
}

}  // namespace outgrow::detail
