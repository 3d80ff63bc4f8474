// session_store: two app instances share their users' sessions in Redis — a login on one
// is seen by the other, concurrent updates are detected, an optional in-process L1 kept
// fresh by Redis's own invalidations, rotate and "log out everywhere".
//
//   session_store --redis 127.0.0.1:6379   # use a running Redis
//   session_store                          # start redis-server (OUTGROW_REDIS_SERVER or
//                                          # PATH) on a free port; skip if there is none
#include <outgrow/redis/session_store.hpp>

#include <cstdlib>
#include <string>
#include <thread>

#include "redis_process.hpp"

using namespace std::chrono_literals;
using outgrow::session_status;

namespace {
using sessions = outgrow::session_store<std::string>;  // data: the cart, as text
}  // namespace

int main(int argc, char** argv) {
  outgrow::session_store_config config{.key_prefix = "example:session:",
                                       .idle_timeout = 30min,
                                       .absolute_lifetime = 8h,
                                       .max_sessions_per_user = 5};
  pid_t child = -1;
  if (argc == 3 && std::string(argv[1]) == "--redis") {
    const std::string where = argv[2];
    config.connection.host = where.substr(0, where.rfind(':'));
    config.connection.port = std::atoi(where.c_str() + where.rfind(':') + 1);
  } else {
    config.connection.port = example::free_port();
    config.connection.reconnect_backoff = {1ms, 5ms};
    child = example::start_redis(config.connection.port);
  }
  {
    sessions app_a(config);  // two instances of one service behind a load balancer
    sessions app_b(config);
    auto login = app_a.create("ada", "cart=");
    for (int i = 0; child > 0 && i < 200 && !login; ++i) {  // wait for our redis-server
      std::this_thread::sleep_for(10ms);
      login = app_a.create("ada", "cart=");
    }
    if (!login) {
      fmt::print(
          "session_store: needs Redis (redis-server on PATH or --redis HOST:PORT)\n");
      if (child > 0) ::kill(child, SIGKILL);
      return 77;  // "skipped" (the smoke test reports it so, never as passed)
    }
    const outgrow::session_id cookie = *login;  // prints only a prefix: {} is safe to log
    fmt::print("a: ada logged in, session {}\n", cookie);

    auto seen = app_b.get(outgrow::session_id(cookie.reveal()));  // the next request
    fmt::print("b: session of {}, version {}, data \"{}\"\n", seen->user, seen->version,
               seen->data);

    // Both instances add to the cart from the same version: one wins, one must retry.
    const auto on_a = app_a.update(cookie, seen->version, seen->data + "book;");
    const auto on_b = app_b.update(cookie, seen->version, seen->data + "pen;");
    fmt::print("a's update: {}, b's update: {}\n", on_a, on_b);
    if (on_b == session_status::conflict) {  // re-read, re-apply, retry
      auto fresh = app_b.get(cookie);
      fmt::print("b retries: {}\n",
                 app_b.update(cookie, fresh->version, fresh->data + "pen;"));
    }
    fmt::print("cart now: \"{}\"\n", app_a.get(cookie)->data);

    {  // An instance with an in-process L1: repeated gets skip Redis, and any write to
       // the session in Redis (here app_a's update) drops the held copy first.
      auto l1_config = config;
      l1_config.l1_capacity = 10'000;
      sessions app_c(l1_config);
      for (int i = 0; i < 3; ++i) (void)app_c.get(cookie);
      (void)app_a.update(cookie, app_a.get(cookie)->version, "cart=book;pen;mug;");
      const auto m = app_c.metrics();
      fmt::print("c (L1): {} of 3 gets from the L1; after a's update c reads \"{}\"\n",
                 m.l1_hits, app_c.get(cookie)->data);
    }

    const auto rotated = app_a.rotate(cookie);  // privilege change: new id, same data
    fmt::print("rotated to {}; the old id is now {}\n", *rotated, app_b.get(cookie).status);

    (void)app_b.create("ada", "cart=");  // ada on a second device
    fmt::print("log out everywhere: {} sessions\n", *app_b.destroy_all("ada"));
    fmt::print("{}\n", app_b.metrics());
  }
  example::stop_process(child);
  return 0;
}
