// stateless_app: the textbook's stateless service. Three app instances (processes) sit
// behind outgrow::load_balancer and keep every user's session in Redis
// (outgrow::session_store), so any instance can serve any request. Midway, one instance
// is SIGKILLed: the balancer ejects it after one failed request, that request is retried
// on another instance, and no user is logged out — their sessions were never in the dead
// process.
//
//   stateless_app --redis 127.0.0.1:6379   # use a running Redis
//   stateless_app                          # start redis-server (OUTGROW_REDIS_SERVER or
//                                          # PATH) on a free port; exit 77 if there is none
//
// Each instance is a child process answering one-line requests on a pipe (a stand-in for
// HTTP; the live shop example does it over HTTP):
//   LOGIN <user>            -> OK <session id>
//   ADD <session id> <item> -> OK <cart>        (read, append, versioned update; a
//                                                 conflict is re-read and retried)
//   VIEW <session id>       -> OK <user> <cart> | MISS (logged out)
// The front (this process) sends 300 logins and 6,000 requests from a seeded stream, one
// at a time, so the run is reproducible.
#include <outgrow/redis/session_store.hpp>
#include <outgrow/routing/load_balancer.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "redis_process.hpp"

using namespace std::chrono_literals;

namespace {

using sessions = outgrow::session_store<std::string>;  // data: the cart, as text

// ---- one app instance ---------------------------------------------------------------

std::string handle(sessions& store, const std::string& line) {
  const auto space = line.find(' ');
  const std::string verb = line.substr(0, space);
  const std::string rest = space == std::string::npos ? "" : line.substr(space + 1);
  if (verb == "LOGIN") {
    auto id = store.create(rest, "");
    return id ? "OK " + std::string(id->reveal()) : "ERR";
  }
  const auto split = rest.find(' ');
  const outgrow::session_id id(rest.substr(0, split));
  if (verb == "VIEW") {
    auto s = store.get(id);
    if (s.status == outgrow::session_status::missing) return "MISS";
    return s ? "OK " + s->user + " " + s->data : "ERR";
  }
  if (verb == "ADD") {
    const std::string item = split == std::string::npos ? "" : rest.substr(split + 1);
    for (int attempt = 0; attempt < 5; ++attempt) {  // optimistic concurrency
      auto s = store.get(id);
      if (s.status == outgrow::session_status::missing) return "MISS";
      if (!s) return "ERR";
      const auto r = store.update(id, s->version, s->data + item + ";");
      if (r == outgrow::session_status::ok) return "OK " + s->data + item + ";";
      if (r != outgrow::session_status::conflict) return "ERR";
    }
    return "ERR";
  }
  return "ERR";
}

[[noreturn]] void run_instance(const outgrow::session_store_config& config, int in_fd,
                               int out_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the front
  sessions store(config);              // its own connections; no user state in here
  FILE* in = ::fdopen(in_fd, "r");
  FILE* out = ::fdopen(out_fd, "w");
  std::array<char, 512> buf{};
  while (std::fgets(buf.data(), buf.size(), in) != nullptr) {
    std::string line(buf.data());
    if (!line.empty() && line.back() == '\n') line.pop_back();
    std::fprintf(out, "%s\n", handle(store, line).c_str());
    std::fflush(out);
  }
  std::_Exit(0);
}

// ---- the front ----------------------------------------------------------------------

struct instance {
  std::string name;
  pid_t pid = -1;
  FILE* to = nullptr;    // requests
  FILE* from = nullptr;  // replies
  int served = 0;
};

instance spawn(const std::string& name, const outgrow::session_store_config& config,
               const std::vector<instance>& earlier) {
  int req[2];
  int rep[2];
  if (::pipe(req) != 0 || ::pipe(rep) != 0) std::exit(1);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(req[1]);
    ::close(rep[0]);
    for (const instance& e : earlier) {  // the front's ends of the others' pipes: an
      ::close(::fileno(e.to));           // instance holding them would keep another
      ::close(::fileno(e.from));         // from ever seeing EOF
    }
    run_instance(config, req[0], rep[1]);
  }
  ::close(req[0]);
  ::close(rep[1]);
  return {name, pid, ::fdopen(req[1], "w"), ::fdopen(rep[0], "r")};
}

/// One request to one instance; nullopt when the instance is gone (EOF / broken pipe).
std::optional<std::string> ask(instance& app, const std::string& request) {
  if (std::fprintf(app.to, "%s\n", request.c_str()) < 0 || std::fflush(app.to) != 0) {
    return std::nullopt;
  }
  std::array<char, 512> buf{};
  if (std::fgets(buf.data(), buf.size(), app.from) == nullptr) return std::nullopt;
  std::string reply(buf.data());
  if (!reply.empty() && reply.back() == '\n') reply.pop_back();
  ++app.served;
  return reply;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);  // a dead instance is a failed write, not our death
  outgrow::session_store_config config{.key_prefix = "example:stateless:"};
  config.connection.reconnect_backoff = {1ms, 5ms};
  pid_t redis = -1;
  if (argc == 3 && std::string(argv[1]) == "--redis") {
    const std::string where = argv[2];
    config.connection.host = where.substr(0, where.rfind(':'));
    config.connection.port = std::atoi(where.c_str() + where.rfind(':') + 1);
  } else {
    config.connection.port = example::free_port();
    redis = example::start_redis(config.connection.port);
  }
  {  // wait for Redis (our own takes a few milliseconds to start)
    sessions probe(config);
    bool up = false;
    for (int i = 0; i < 300 && !up; ++i) {
      if (auto id = probe.create("probe", "")) {
        up = true;
        (void)probe.destroy(*id);
      } else {
        std::this_thread::sleep_for(10ms);
      }
    }
    if (!up) {
      fmt::print(
          "stateless_app: needs Redis (redis-server on PATH or --redis HOST:PORT)\n");
      example::stop_process(redis);
      return 77;  // "skipped" (the smoke test reports it so, never as passed)
    }
  }

  std::vector<instance> apps;  // forked before any thread exists in this process
  for (const char* name : {"app-1", "app-2", "app-3"}) {
    apps.push_back(spawn(name, config, apps));
  }
  std::map<std::string, std::size_t> index{{"app-1", 0}, {"app-2", 1}, {"app-3", 2}};

  // Least request (P2C); one failed request ejects an instance (a dead process does not
  // come back), and a third of the pool may be ejected.
  outgrow::load_balancer<std::string, outgrow::power_of_two_choices> lb(
      {{"app-1", 1.0}, {"app-2", 1.0}, {"app-3", 1.0}},
      {.consecutive_failures = 1, .max_ejection_fraction = 0.34, .seed = 7});

  int retried = 0;
  auto send = [&](const std::string& request) -> std::string {
    for (int attempt = 0; attempt < 3; ++attempt) {
      auto lease = lb.pick();
      if (!lease) break;
      instance& app = apps[index.at(*lease)];
      if (auto reply = ask(app, request)) {
        lease.success();
        return *reply;
      }
      lease.failure();  // the instance died: eject it and try another
      ++retried;
    }
    return "ERR";
  };

  std::mt19937_64 rng(42);
  std::vector<std::string> users;
  std::vector<std::string> cookies;
  for (int u = 0; u < 300; ++u) {
    users.push_back(fmt::format("user-{}", u));
    const std::string reply = send("LOGIN " + users.back());
    cookies.push_back(reply.starts_with("OK ") ? reply.substr(3) : "");
  }
  std::vector<int> items(users.size(), 0);
  int logged_out = 0;
  int errors = 0;
  int wrong_cart = 0;
  std::array<int, 3> before_kill{};
  for (int r = 0; r < 6000; ++r) {
    if (r == 3000) {  // an instance dies mid-run, with no warning
      for (std::size_t i = 0; i < apps.size(); ++i) before_kill[i] = apps[i].served;
      ::kill(apps[1].pid, SIGKILL);
      ::waitpid(apps[1].pid, nullptr, 0);
      fmt::print("after {} requests: SIGKILL {} (pid {})\n", r, apps[1].name, apps[1].pid);
    }
    const std::size_t u = rng() % users.size();
    if (rng() % 3 == 0) {
      const std::string reply = send(fmt::format("ADD {} i{}", cookies[u], items[u]));
      if (reply == "MISS") ++logged_out;
      if (reply.starts_with("OK ")) ++items[u];
      if (reply == "ERR") ++errors;
    } else {
      const std::string reply = send("VIEW " + cookies[u]);
      if (reply == "MISS") ++logged_out;
      if (reply == "ERR") ++errors;
      // The cart holds exactly the items this user added, whichever instance added them.
      std::string expected = "OK " + users[u] + " ";
      for (int i = 0; i < items[u]; ++i) expected += fmt::format("i{};", i);
      if (reply.starts_with("OK ") && reply != expected) ++wrong_cart;
    }
  }

  fmt::print("\n{:<8} {:>16} {:>16}\n", "instance", "before the kill", "after the kill");
  for (std::size_t i = 0; i < apps.size(); ++i) {
    fmt::print("{:<8} {:>16} {:>16}\n", apps[i].name, before_kill[i],
               apps[i].served - before_kill[i]);
  }
  fmt::print(
      "\n300 users, 6000 requests: {} logged out, {} wrong carts, {} errors; {} request(s) "
      "retried on another instance after the kill\n",
      logged_out, wrong_cart, errors, retried);
  fmt::print("sessions live in Redis, so losing an instance lost no login.\n");

  for (auto& app : apps) {
    std::fclose(app.to);  // EOF: the instance exits
    if (app.pid != apps[1].pid) ::waitpid(app.pid, nullptr, 0);
    std::fclose(app.from);
  }
  example::stop_process(redis);
  return logged_out == 0 && wrong_cart == 0 && errors == 0 ? 0 : 1;
}
