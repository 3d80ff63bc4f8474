// redis_cache: two service instances share a Redis L2 under their own in-process L1s;
// a write on one evicts the key from the other's L1 through Redis pub/sub. Then the
// tracking mode: Redis itself reports a write by another program (no outgrow bus) and
// the L1s drop the key.
//
//   redis_cache --redis 127.0.0.1:6379   # use a running Redis
//   redis_cache                          # start redis-server (OUTGROW_REDIS_SERVER or
//                                        # PATH) on a free port; skip if there is none
#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/tiered_cache.hpp>
#include <outgrow/redis/redis_invalidation.hpp>
#include <outgrow/redis/redis_tier.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "redis_process.hpp"

using namespace std::chrono_literals;

namespace {

struct product_db {  // the backing store: counts the queries the caches save
  using key_type = std::string;
  using mapped_type = std::string;
  std::optional<std::string> load(const std::string& id) {
    std::lock_guard lock(mutex);
    ++queries;
    return rows.contains(id) ? std::optional(rows[id]) : std::nullopt;
  }
  void store(const std::string& id, const std::string& v) {
    std::lock_guard lock(mutex);
    rows[id] = v;
  }
  void erase(const std::string& id) {
    std::lock_guard lock(mutex);
    rows.erase(id);
  }
  std::mutex mutex;
  std::map<std::string, std::string> rows;
  int queries = 0;
};

using l1_cache = outgrow::cache<std::string, std::string>;
using l2_cache = outgrow::redis_tier<std::string, std::string>;
using bus_type = outgrow::redis_invalidation_bus<std::string>;

struct service_instance {  // what each replica of a service holds
  service_instance(product_db& db, const std::string& host, int port,
                   outgrow::redis_invalidation_mode mode = {})
      : l2({.connection = {.host = host, .port = port}, .key_prefix = "example:product:"}),
        bus({.connection = {.host = host, .port = port},
             .channel = "example:invalidate",
             .mode = mode,  // tracking: Redis reports every client's writes
             .tracking_prefix = "example:product:"}),
        cache(db, std::tie(l1, l2), {.default_ttl = 1min}) {
    cache.connect(bus);  // publish our writes, drop others' keys from L1
    bus.start();         // the subscriber thread
  }
  l1_cache l1{{.capacity = 1000}};
  l2_cache l2;
  bus_type bus;
  outgrow::tiered_cache<outgrow::tiers<l1_cache, l2_cache>, product_db,
                        outgrow::write_through>
      cache;
};

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 0;
  pid_t child = -1;
  if (argc == 3 && std::string(argv[1]) == "--redis") {
    const std::string where = argv[2];
    host = where.substr(0, where.rfind(':'));
    port = std::atoi(where.c_str() + where.rfind(':') + 1);
  } else {
    port = example::free_port();
    child = example::start_redis(port);  // OUTGROW_REDIS_SERVER, or the one on PATH
    l2_cache probe({.connection = {.port = port, .reconnect_backoff = {1ms, 5ms}}});
    for (int i = 0; child > 0 && i < 200 && !probe.ping(); ++i) {
      std::this_thread::sleep_for(10ms);
    }
    if (child < 0 || !probe.ping()) {
      fmt::print("redis_cache: needs Redis (redis-server on PATH or --redis HOST:PORT)\n");
      if (child > 0) ::kill(child, SIGKILL);
      return 77;  // "skipped" (the smoke test reports it so, never as passed)
    }
    fmt::print("started redis-server on 127.0.0.1:{}\n", port);
  }

  product_db db;
  for (int i = 0; i < 100; ++i) db.rows[fmt::format("sku-{}", i)] = fmt::format("${}", i);
  {
    service_instance a(db, host, port);
    service_instance b(db, host, port);
    a.bus.wait_subscribed(2s), b.bus.wait_subscribed(2s);

    for (int n = 0; n < 500; ++n) {  // both instances read the catalogue 5 times
      (void)a.cache.get(fmt::format("sku-{}", n % 100));
      (void)b.cache.get(fmt::format("sku-{}", n % 100));
    }
    fmt::print("1000 reads, {} database queries (b found a's loads in Redis)\n",
               db.queries);

    const auto before = b.bus.metrics().received;
    a.cache.put("sku-7", "$6.99 (sale)");  // db, a's L1, Redis; then PUBLISH
    for (int i = 0; i < 200 && b.bus.metrics().received == before; ++i) {
      std::this_thread::sleep_for(1ms);  // the invalidation is one round trip away
    }
    fmt::print("after a's write, b reads sku-7: {}\n", b.cache.get("sku-7").value_or("?"));
    fmt::print("b L1: {}\nb L2: {}\nbus: {}\n", b.cache.tier_metrics<0>(), b.l2.metrics(),
               b.bus.metrics());
  }
  {  // tracking mode: another program writes Redis directly, nothing is PUBLISHed
    constexpr auto tracking = outgrow::redis_invalidation_mode::tracking;
    service_instance c(db, host, port, tracking);
    service_instance d(db, host, port, tracking);
    c.bus.wait_subscribed(2s), d.bus.wait_subscribed(2s);
    (void)c.cache.get("sku-8"), (void)d.cache.get("sku-8");  // in both L1s now
    const auto seen = [&] { return c.bus.metrics().tracked + d.bus.metrics().tracked; };
    const auto before = seen();
    l2_cache other_program(
        {.connection = {.host = host, .port = port}, .key_prefix = "example:product:"});
    other_program.put("sku-8", "$7.49 (price job)");
    for (int i = 0; i < 200 && seen() < before + 2; ++i) {
      std::this_thread::sleep_for(1ms);  // Redis reports the write one round trip later
    }
    fmt::print("after another program's write, c and d read sku-8: {}, {}\n",
               c.cache.get("sku-8").value_or("?"), d.cache.get("sku-8").value_or("?"));
    c.cache.invalidate_all();  // tidy up the example's keys in Redis
  }
  if (child > 0) {
    ::kill(child, SIGTERM);
    ::waitpid(child, nullptr, 0);
  }
  return 0;
}
