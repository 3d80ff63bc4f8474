// examples/live_shop/postgres.cpp — the live shop's database: a throw-away PostgreSQL
// primary and streaming replicas on loopback, until SIGINT / SIGTERM.
//
// What it shows: live_shop::postgres_cluster (postgres_process.hpp) as a program, for
// the demo script and for trying the app by hand:
//   live_shop_postgres --replicas 1 --address-file pg.txt &
//   # pg.txt: "primary 127.0.0.1:41234\nreplica 127.0.0.1:41240\n"
//   live_shop_app --id app-1 --port 8081 --pg-primary 127.0.0.1:41234
//                 --pg-replica 127.0.0.1:41240       (one command line)
//   curl -i -X POST '127.0.0.1:8081/orders?user=alice&item=book'   # Set-Cookie: shop_lsn
//   curl -b shop_lsn=<lsn> '127.0.0.1:8081/orders?user=alice'
// Everything (data directories, logs) lives in a temporary directory removed at exit;
// the servers are stopped by pid (immediate shutdown) at exit, and die with this
// process if it is killed. As root, PostgreSQL runs as the `postgres` user.
#include <signal.h>

#include <cstdio>
#include <exception>
#include <string>

#include <fmt/format.h>

#include "http.hpp"
#include "postgres_process.hpp"

int main(int argc, char** argv) try {
  const live_shop::command_line cli("live_shop_postgres",
                                    "[--replicas N] [--address-file FILE]");
  int replicas = 1;
  std::string address_file;
  cli.parse(argc, argv, [&](std::string_view name, const std::string& value) {
    if (name == "--replicas") {
      replicas = static_cast<int>(cli.number(name, value, 0, 8));
    } else if (name == "--address-file") {
      address_file = value;
    } else {
      return false;
    }
    return true;
  });
  if (const std::string why = live_shop::postgres_cluster::unavailable(); !why.empty()) {
    fmt::print(stderr, "live_shop_postgres: {}\n", why);
    return 1;
  }
  // Block the stop signals before the servers start: sigwait below takes them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  live_shop::postgres_cluster pg({.replicas = replicas});
  std::string text = fmt::format("primary {}\n", pg.primary().str());
  for (const auto& r : pg.replicas()) text += fmt::format("replica {}\n", r.str());
  if (!address_file.empty()) {
    const std::string tmp = address_file + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      std::fputs(text.c_str(), f);
      std::fclose(f);
      std::rename(tmp.c_str(), address_file.c_str());
    }
  }
  fmt::print("live_shop_postgres in {}\n{}", pg.dir().string(), text);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  fmt::print("live_shop_postgres: signal {}, stopping\n", sig);
  return 0;  // ~postgres_cluster stops the servers and removes the directory
} catch (const std::exception& e) {
  fmt::print(stderr, "live_shop_postgres: {}\n", e.what());
  return 1;
}
