// examples/redis_process.hpp — what the Redis examples need to run anywhere: a
// redis-server of their own on a free loopback port (no persistence, logs discarded),
// stopped when the example ends. Not part of the library: in a service, Redis is
// already running and you pass its address.
#pragma once

#include <arpa/inet.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

extern char** environ;

namespace example {

/// A free TCP port on 127.0.0.1 (bind to port 0 and read it back; a tiny race: fine).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), len);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// redis-server (OUTGROW_REDIS_SERVER, or the one on PATH) on 127.0.0.1:port; its pid,
/// or -1 when it cannot be started.
inline pid_t start_redis(int port) {
  const char* env = std::getenv("OUTGROW_REDIS_SERVER");
  const char* exe = env != nullptr ? env : "redis-server";
  const std::string p = std::to_string(port);
  const char* argv[] = {exe, "--port",       p.c_str(), "--bind",    "127.0.0.1", "--save",
                        "",  "--appendonly", "no",      "--logfile", "/dev/null", nullptr};
  pid_t pid = -1;
  return ::posix_spawnp(&pid, exe, nullptr, nullptr, const_cast<char**>(argv), environ) == 0
             ? pid
             : -1;
}

/// Stops a process started above (SIGTERM, then waits for it).
inline void stop_process(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
}

}  // namespace example
