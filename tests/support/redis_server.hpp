// tests/support/redis_server.hpp — a real redis-server for integration tests.
//
// `outgrow_test::redis_server` starts the redis-server binary named by the
// OUTGROW_REDIS_SERVER macro (tests/CMakeLists.txt defines it for tests/integration/)
// on a free loopback port, in a fresh temporary directory, with no persistence, and
// waits until it answers PING. The destructor stops it; a test that fails, throws or is
// killed leaves no server behind (the child also gets SIGKILL when the test process
// dies: PR_SET_PDEATHSIG on Linux).
//
//   outgrow_test::redis_server server;                         // plain server
//   outgrow_test::redis_server node({.cluster = true});        // cluster mode
//   auto reply = server.command("SET %s %s", "k", "v");        // RAII redisReply
//   outgrow_test::redis_context c = server.connect();          // RAII redisContext
//   redisAppendCommand(c.get(), "GET %b", key.data(), key.size());
//   server.kill();     // SIGKILL: simulate a crash
//   server.restart();  // same port, empty data set
//   server.stop();     // SIGTERM, SIGKILL after options.stop_timeout
//
// Details:
//  - The port comes from binding a socket to 127.0.0.1:0 and reading it back; if
//    redis-server then fails to bind it (another process took it in between), a new
//    port is tried, up to options.port_attempts times. Ports are only ever bound on
//    127.0.0.1. After PING, the fixture checks INFO's process_id, so it never mistakes
//    another server on the same port for its own.
//  - Cluster mode (`.cluster = true`) adds --cluster-enabled yes, nodes.conf in the
//    temporary directory and a second free port as --cluster-port (Redis >= 7.0;
//    the default bus port, port + 10000, may not exist for ephemeral ports).
//  - extra_args are appended to the command line; "{dir}" in them is replaced by the
//    temporary directory.
//  - redis-server's stdout/stderr go to <dir>/redis.log, printed to stderr (and put in
//    the exception message) when a start fails.
//  - Waiting for start-up polls connect + PING for at most options.start_timeout: that
//    waits for a process, it does not make test time pass.
//  - The fixture ignores SIGPIPE process-wide, so writing to a killed server fails with
//    EPIPE (a hiredis error) instead of killing the test.
//
// Thread-safety: none; create and use it on one thread. On Linux the server is killed
// when the thread that started (or restarted) it exits, as PR_SET_PDEATHSIG follows the
// parent thread.
#pragma once

#ifndef OUTGROW_REDIS_SERVER
#error \
    "redis_server.hpp needs OUTGROW_REDIS_SERVER (the redis-server path); tests/CMakeLists.txt defines it for tests/integration/*_test.cpp"
#endif

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include <hiredis/hiredis.h>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace outgrow_test {

struct redis_context_deleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
/// An owned hiredis connection (redisFree on destruction).
using redis_context = std::unique_ptr<redisContext, redis_context_deleter>;

struct redis_reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
/// An owned hiredis reply (freeReplyObject on destruction).
using redis_reply = std::unique_ptr<redisReply, redis_reply_deleter>;

/// The bytes of a string, status or error reply ("" for other types).
inline std::string_view reply_text(const redisReply& r) noexcept {
  return r.str != nullptr ? std::string_view(r.str, r.len) : std::string_view{};
}

/// Runs one command on `c` (hiredis's printf-like format: %s C string, %b bytes + size_t
/// length, %d int, ...). Throws std::runtime_error when the connection fails; an error
/// reply from the server (REDIS_REPLY_ERROR) is returned, not thrown.
template <class... Args>
redis_reply redis_command(redisContext* c, const char* format, Args... args) {
  static_assert(((std::is_arithmetic_v<Args> || std::is_pointer_v<Args>)&&...),
                "hiredis formats take C strings (.c_str(), .data()), sizes and numbers");
  redis_reply reply(static_cast<redisReply*>(redisCommand(c, format, args...)));
  if (!reply) {
    throw std::runtime_error(
        fmt::format("redis command \"{}\" failed: {}", format, c->errstr));
  }
  return reply;
}

struct redis_server_options {
  /// Start in cluster mode (needed for CLUSTER KEYSLOT & co.).
  bool cluster = false;
  /// Appended to the command line; "{dir}" is replaced by the temporary directory.
  std::vector<std::string> extra_args{};
  /// How long to wait for the server to answer PING.
  std::chrono::milliseconds start_timeout{10'000};
  /// How long stop() waits after SIGTERM before sending SIGKILL.
  std::chrono::milliseconds stop_timeout{10'000};
  /// Fresh ports tried when redis-server cannot bind the one picked.
  int port_attempts = 5;
  /// The redis-server binary.
  std::string executable = OUTGROW_REDIS_SERVER;
  /// A configuration file's text, written to <dir>/redis.conf and passed as the first
  /// argument ("{dir}" is replaced); empty = none. Sentinels need one (they rewrite it).
  std::string config_text{};
  /// Start in Sentinel mode (--sentinel; needs config_text with a `sentinel monitor`).
  bool sentinel = false;
};

namespace detail {

inline std::runtime_error posix_error(std::string_view what) {
  return std::runtime_error(
      fmt::format("redis_server: {}: {}", what, std::strerror(errno)));
}

/// `count` distinct free TCP ports on 127.0.0.1 (all sockets stay bound until every
/// port is known, so they differ).
inline std::vector<int> free_loopback_ports(std::size_t count) {
  std::vector<int> fds;
  std::vector<int> ports;
  auto close_all = [&fds] {
    for (const int fd : fds) ::close(fd);
  };
  for (std::size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      close_all();
      throw posix_error("socket");
    }
    fds.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      close_all();
      throw posix_error("bind 127.0.0.1:0");
    }
    ports.push_back(ntohs(addr.sin_port));
  }
  close_all();
  return ports;
}

inline timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

inline std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (std::size_t at = s.find(from); at != std::string::npos;
       at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
  return s;
}

inline std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return fmt::format("wait status {}", status);
}

}  // namespace detail

/// A redis-server child process on a free loopback port (see the header comment).
class redis_server {
 public:
  explicit redis_server(redis_server_options options = {}) : options_(std::move(options)) {
    ignore_sigpipe();
    std::string pattern =
        (std::filesystem::temp_directory_path() / "outgrow-redis-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw detail::posix_error("mkdtemp");
    dir_ = pattern;
    try {
      std::string failures;
      for (int attempt = 0; attempt < options_.port_attempts; ++attempt) {
        const std::vector<int> ports =
            detail::free_loopback_ports(options_.cluster ? 2 : 1);
        port_ = ports[0];
        cluster_port_ = options_.cluster ? ports[1] : 0;
        if (launch()) return;
        failures += fmt::format(" {}", port_);
      }
      fail(fmt::format("could not bind a free port in {} attempts (tried{})",
                       options_.port_attempts, failures),
           0);
    } catch (...) {
      cleanup();
      throw;
    }
  }

  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  ~redis_server() { cleanup(); }

  [[nodiscard]] const std::string& host() const noexcept { return host_; }
  [[nodiscard]] int port() const noexcept { return port_; }
  /// The cluster bus port (0 unless started with .cluster = true).
  [[nodiscard]] int cluster_port() const noexcept { return cluster_port_; }
  /// The server's process id, or -1 when it is not running.
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] bool running() const noexcept { return pid_ > 0; }
  /// The temporary directory (working directory, nodes.conf, redis.log).
  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_; }
  [[nodiscard]] std::filesystem::path log_path() const { return dir_ / "redis.log"; }
  /// Everything redis-server wrote since the fixture was created.
  [[nodiscard]] std::string log() const { return read_log(0); }

  /// A new blocking connection; `timeout` bounds the connect and every later read or
  /// write. Throws std::runtime_error when the connection fails.
  [[nodiscard]] redis_context connect(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    const timeval tv = detail::to_timeval(timeout);
    redis_context c(redisConnectWithTimeout(host_.c_str(), port_, tv));
    if (!c) throw std::runtime_error("redis_server: hiredis could not allocate a context");
    if (c->err != 0) {
      throw std::runtime_error(fmt::format("redis_server: connect to {}:{} failed: {}",
                                           host_, port_, c->errstr));
    }
    if (redisSetTimeout(c.get(), tv) != REDIS_OK) {
      throw std::runtime_error("redis_server: could not set the socket timeout");
    }
    return c;
  }

  /// Runs one command on the fixture's own connection (opened on first use, reopened
  /// after stop/kill/restart); see redis_command().
  template <class... Args>
  redis_reply command(const char* format, Args... args) {
    if (!control_) control_ = connect();
    try {
      return redis_command(control_.get(), format, args...);
    } catch (...) {
      control_.reset();  // a failed context cannot be reused
      throw;
    }
  }

  /// SIGTERM, wait up to options.stop_timeout, then SIGKILL. Reaps the process.
  void stop() noexcept {
    if (pid_ <= 0) return;
    control_.reset();
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + options_.stop_timeout;
    while (!try_reap()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        reap();
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
  }

  /// SIGKILL (a crash: no shutdown, connections drop). Reaps the process.
  void kill() noexcept {
    if (pid_ <= 0) return;
    control_.reset();
    ::kill(pid_, SIGKILL);
    reap();
    pid_ = -1;
  }

  /// Stops the server if it runs and starts it again on the same port(s) and directory.
  /// Without persistence the data set starts empty. Throws if the port was taken.
  void restart() {
    stop();
    if (!launch()) fail(fmt::format("port {} is no longer free", port_), log_offset_);
  }

 private:
  static void ignore_sigpipe() noexcept {
    struct sigaction sa {};
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGPIPE, &sa, nullptr);
  }

  std::vector<std::string> arguments() const {
    std::vector<std::string> args = {options_.executable};
    if (!options_.config_text.empty()) {
      const std::filesystem::path conf = dir_ / "redis.conf";
      if (!std::filesystem::exists(conf)) {  // a sentinel rewrites it: keep its changes
        std::ofstream(conf) << detail::replace_all(options_.config_text, "{dir}",
                                                   dir_.string());
      }
      args.push_back(conf.string());
    }
    if (options_.sentinel) args.emplace_back("--sentinel");
    const auto option = [&args](std::string name, std::string value) {
      args.push_back(std::move(name));
      args.push_back(std::move(value));
    };
    option("--port", std::to_string(port_));
    option("--bind", host_);
    option("--dir", dir_.string());
    option("--daemonize", "no");
    option("--save", "");          // no RDB snapshots
    option("--appendonly", "no");  // no AOF
    option("--logfile", "");       // stdout, which the child redirects to redis.log
    if (options_.cluster) {
      option("--cluster-enabled", "yes");
      option("--cluster-config-file", (dir_ / "nodes.conf").string());
      option("--cluster-port", std::to_string(cluster_port_));
    }
    for (const std::string& a : options_.extra_args) {
      args.push_back(detail::replace_all(a, "{dir}", dir_.string()));
    }
    return args;
  }

  /// Starts redis-server on port_ and waits for it. Returns false when it could not
  /// bind the port (the caller may pick another); throws on any other failure.
  bool launch() {
    const std::string log_file = log_path().string();
    const int log_fd =
        ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) throw detail::posix_error("open " + log_file);
    log_offset_ = static_cast<std::size_t>(::lseek(log_fd, 0, SEEK_END));

    // Everything the child needs is prepared before fork: between fork and exec only
    // async-signal-safe calls are allowed (the test process may have threads).
    std::vector<std::string> args = arguments();
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string dir = dir_.string();
    const pid_t parent = ::getpid();

    const pid_t child = ::fork();
    if (child < 0) {
      ::close(log_fd);
      throw detail::posix_error("fork");
    }
    if (child == 0) exec_child(parent, log_fd, dir.c_str(), argv.data());
    ::close(log_fd);
    pid_ = child;

    const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        if (read_log(log_offset_).find("Address already in use") != std::string::npos) {
          return false;
        }
        fail(fmt::format("redis-server {}", detail::describe_status(status)), log_offset_);
      }
      if (answers_ping()) return true;
      if (std::chrono::steady_clock::now() >= deadline) {
        kill();
        fail(fmt::format("no PONG within {} ms", options_.start_timeout.count()),
             log_offset_);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  [[noreturn]] static void exec_child(pid_t parent, int log_fd, const char* dir,
                                      char* const* argv) noexcept {
#if defined(__linux__)
    // Die with the test process, even if it is SIGKILLed (ctest timeout, abort).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
#else
    (void)parent;
#endif
    // Default signal handling and mask, whatever the test process set up.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGPIPE, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);

    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    // Do not hold the test's sockets (e.g. connections to other servers) open.
#if defined(__linux__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    if (::close_range(3, ~0U, 0) != 0)
#endif
    {
      for (int fd = 3; fd < 4096; ++fd) ::close(fd);
    }
    if (::chdir(dir) != 0)
      child_failed("redis_server: chdir to the temporary directory failed\n");
    ::execv(argv[0], argv);
    child_failed("redis_server: execv of the redis-server binary failed\n");
  }

  // In the child before exec: write(2) and _exit(2) are async-signal-safe.
  template <std::size_t N>
  [[noreturn]] static void child_failed(const char (&message)[N]) noexcept {
    (void)!::write(STDERR_FILENO, message, N - 1);
    ::_exit(127);
  }

  bool answers_ping() const {
    redis_context c(redisConnectWithTimeout(
        host_.c_str(), port_, detail::to_timeval(std::chrono::milliseconds(200))));
    if (!c || c->err != 0) return false;
    if (redisSetTimeout(c.get(), detail::to_timeval(std::chrono::seconds(2))) != REDIS_OK) {
      return false;
    }
    redis_reply pong(static_cast<redisReply*>(redisCommand(c.get(), "PING")));
    if (!pong || pong->type != REDIS_REPLY_STATUS || reply_text(*pong) != "PONG") {
      return false;
    }
    // Make sure it is our server, not another one that got the port first.
    redis_reply info(static_cast<redisReply*>(redisCommand(c.get(), "INFO server")));
    if (!info || info->type != REDIS_REPLY_STRING) return false;
    return reply_text(*info).find(fmt::format("\r\nprocess_id:{}\r\n", pid_)) !=
           std::string_view::npos;
  }

  /// Non-blocking reap of pid_; true when the process is gone.
  bool try_reap() noexcept {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    return r == pid_ || (r < 0 && errno != EINTR);
  }

  void reap() noexcept {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }

  std::string read_log(std::size_t offset) const {
    std::ifstream in(log_path(), std::ios::binary);
    if (!in) return {};
    in.seekg(static_cast<std::streamoff>(offset));
    return std::string(std::istreambuf_iterator<char>(in),
                       std::istreambuf_iterator<char>());
  }

  [[noreturn]] void fail(const std::string& what, std::size_t log_offset) const {
    const std::string log_text = read_log(log_offset);
    const std::string message =
        fmt::format("redis_server: start of {} on {}:{} failed: {}\n--- {} ---\n{}",
                    options_.executable, host_, port_, what, log_path().string(), log_text);
    std::fprintf(stderr, "%s\n", message.c_str());
    throw std::runtime_error(message);
  }

  void cleanup() noexcept {
    stop();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  redis_server_options options_;
  std::string host_ = "127.0.0.1";
  std::filesystem::path dir_;
  int port_ = 0;
  int cluster_port_ = 0;
  pid_t pid_ = -1;
  std::size_t log_offset_ = 0;
  redis_context control_;
};

}  // namespace outgrow_test
