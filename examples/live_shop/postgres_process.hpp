// examples/live_shop/postgres_process.hpp — a PostgreSQL primary and streaming replicas
// of its own, on loopback, in a temporary directory: for the live shop's demo and tests.
//
// What it does: `initdb` a primary (wal_level=replica, max_wal_senders, trust
// authentication, fsync off: a throw-away cluster), start it on a free 127.0.0.1 port,
// `pg_basebackup -R -X stream` one data directory per replica, start each on another
// free port (hot_standby, streaming from the primary), and wait until the primary says
// "ready" in its postmaster.pid (a replica: accepting read-only connections). The destructor stops every server by pid (SIGQUIT = `pg_ctl stop -m
// immediate`, SIGKILL if it is still there after 10 s; replicas first) and removes the
// directory — also when a start fails half-way (the constructor cleans up before it
// throws) or the owning process dies (PR_SET_PDEATHSIG in the servers).
//
//   live_shop::postgres_cluster pg({.replicas = 1});
//   pg.primary();        // live_shop::address{"127.0.0.1", 41234}
//   pg.replicas()[0];    // the replica's address
//   pg.conninfo(pg.primary());  // "host=127.0.0.1 port=41234 user=postgres dbname=postgres"
//
// Binaries: options.bin_dir, else $OUTGROW_PG_BIN_DIR, else the newest
// /usr/lib/postgresql/<version>/bin (Debian), else the directory of `initdb` on PATH.
// postgres_cluster::unavailable() says why a cluster cannot start here (no binaries;
// root without a `postgres` user) — tests skip on it.
//
// Root: PostgreSQL refuses to run as root. When this process is root, every PostgreSQL
// program runs as the `postgres` user (setgid/setgroups/setuid in the forked child,
// before exec; the temporary directory is chowned to it), so the same code works in a
// root CI container and as a normal user, who runs them as himself.
//
// Trade-offs: ports come from binding 127.0.0.1:0 and closing (a server that then fails
// to bind is retried on a fresh port, 3 times). Replication is asynchronous: a replica
// may be behind the primary, which is what read-your-writes routing is about.
// wal_keep_size (128 MB) keeps the WAL a replica still needs; there are no slots.
// Thread-safety: none; construct and destroy on one thread — and keep that thread alive,
// as PR_SET_PDEATHSIG fires when the thread that forked the servers exits.
// Cost: initdb + start + base backup + start ≈ 1-2 s on a laptop (fsync off).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "http.hpp"  // live_shop::address

namespace live_shop {

struct postgres_options {
  /// Streaming replicas of the primary. [0, 8]
  int replicas = 1;
  /// Directory of initdb, postgres and pg_basebackup; empty = found (see above).
  std::string bin_dir{};
  /// Extra `name=value` settings for every server (passed as -c name=value).
  std::vector<std::string> settings{};
  /// How long one server may take to accept connections.
  std::chrono::milliseconds start_timeout{30'000};
};

class postgres_cluster {
 public:
  /// The superuser and database the cluster is created with (trust authentication).
  static constexpr const char* user = "postgres";
  static constexpr const char* database = "postgres";

  /// The PostgreSQL binaries' directory, or "" if none is installed.
  static std::string find_bin_dir() {
    namespace fs = std::filesystem;
    const auto has_all = [](const fs::path& d) {
      std::error_code ec;
      return fs::exists(d / "initdb", ec) && fs::exists(d / "postgres", ec) &&
             fs::exists(d / "pg_basebackup", ec);
    };
    if (const char* env = std::getenv("OUTGROW_PG_BIN_DIR"); env != nullptr && *env) {
      return has_all(env) ? std::string(env) : std::string();
    }
    std::error_code ec;
    int best = -1;
    fs::path best_dir;
    for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
      const std::string name = e.path().filename().string();
      char* end = nullptr;
      const long v = std::strtol(name.c_str(), &end, 10);
      if (end != name.c_str() && *end == '\0' && v > best && has_all(e.path() / "bin")) {
        best = static_cast<int>(v);
        best_dir = e.path() / "bin";
      }
    }
    if (best >= 0) return best_dir.string();
    if (const char* path = std::getenv("PATH"); path != nullptr) {
      std::istringstream in(path);
      for (std::string d; std::getline(in, d, ':');) {
        if (d.empty()) continue;
        // /usr/local/bin/initdb may be a symlink into the real bin directory.
        const fs::path real = fs::canonical(fs::path(d) / "initdb", ec);
        if (!ec && has_all(real.parent_path())) return real.parent_path().string();
      }
    }
    return {};
  }

  /// Why no cluster can be started here, or "" when it can.
  static std::string unavailable(const std::string& bin_dir = find_bin_dir()) {
    if (bin_dir.empty()) {
      return "PostgreSQL binaries (initdb, postgres, pg_basebackup) not found: install "
             "Debian's postgresql or set OUTGROW_PG_BIN_DIR";
    }
    if (::geteuid() == 0 && ::getpwnam("postgres") == nullptr) {
      return "running as root and there is no 'postgres' user to run PostgreSQL as";
    }
    return {};
  }

  /// Throws: std::runtime_error (with the failing program's log) when the cluster
  /// cannot be created or a server does not start.
  explicit postgres_cluster(postgres_options options = {}) : options_(std::move(options)) {
    if (options_.replicas < 0 || options_.replicas > 8) {
      throw std::invalid_argument(fmt::format(
          "postgres_cluster: replicas must be in [0, 8], got {}", options_.replicas));
    }
    if (options_.bin_dir.empty()) options_.bin_dir = find_bin_dir();
    if (const std::string why = unavailable(options_.bin_dir); !why.empty()) {
      throw std::runtime_error("postgres_cluster: " + why);
    }
    try {
      setup();
    } catch (...) {
      stop();
      throw;
    }
  }

  postgres_cluster(const postgres_cluster&) = delete;
  postgres_cluster& operator=(const postgres_cluster&) = delete;
  ~postgres_cluster() { stop(); }

  [[nodiscard]] const address& primary() const noexcept { return servers_.front().where; }
  [[nodiscard]] std::vector<address> replicas() const {
    std::vector<address> out;
    for (std::size_t i = 1; i < servers_.size(); ++i) out.push_back(servers_[i].where);
    return out;
  }
  [[nodiscard]] pid_t primary_pid() const noexcept { return servers_.front().pid; }
  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_; }

  /// A libpq connection string for `where` (this cluster's user and database).
  [[nodiscard]] static std::string conninfo(const address& where) {
    return fmt::format("host={} port={} user={} dbname={}", where.host, where.port, user,
                       database);
  }

  /// The server log of the primary (index 0) or replica i (1..).
  [[nodiscard]] std::string log(std::size_t index) const {
    if (index >= servers_.size()) return {};
    return read_file(servers_[index].log);
  }

  /// Stops every server (replicas first; SIGQUIT, SIGKILL after 10 s) and removes the
  /// directory. Idempotent.
  void stop() noexcept {
    for (auto it = servers_.rbegin(); it != servers_.rend(); ++it) kill_server(*it);
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }

 private:
  struct server {
    address where;
    std::filesystem::path data;
    std::filesystem::path log;
    pid_t pid = -1;
  };
  struct runner {  // whom the PostgreSQL programs run as
    bool switch_user = false;
    uid_t uid = 0;
    gid_t gid = 0;
  };

  void setup() {
    namespace fs = std::filesystem;
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      as_ = runner{true, pw->pw_uid, pw->pw_gid};
    }
    std::string pattern = (fs::temp_directory_path() / "outgrow-pg-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw posix_error("mkdtemp");
    dir_ = pattern;
    if (as_.switch_user && ::chown(dir_.c_str(), as_.uid, as_.gid) != 0) {
      throw posix_error("chown " + dir_.string());
    }
    const fs::path bin = options_.bin_dir;

    server p;  // (assigned, not designated-initialized: GCC 12 -O2 warns falsely)
    p.data = dir_ / "primary";
    p.log = dir_ / "primary.log";
    run_to_end({(bin / "initdb").string(), "-D", p.data.string(), "-U", user,
                "--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"},
               dir_ / "initdb.log");
    servers_.push_back(std::move(p));
    start(servers_.back());

    for (int i = 1; i <= options_.replicas; ++i) {
      server r;
      r.data = dir_ / fmt::format("replica{}", i);
      r.log = dir_ / fmt::format("replica{}.log", i);
      const address& from = servers_.front().where;
      run_to_end({(bin / "pg_basebackup").string(), "-h", from.host, "-p",
                  std::to_string(from.port), "-U", user, "-D", r.data.string(), "-R", "-X",
                  "stream", "-c", "fast", "--no-sync"},
                 dir_ / fmt::format("basebackup{}.log", i));
      servers_.push_back(std::move(r));
      start(servers_.back());
    }
  }

  /// Starts `s` on a free port and waits until its postmaster.pid says it accepts
  /// connections ("ready"; "standby" for a hot standby in some versions).
  void start(server& s) {
    std::string last_log;
    for (int attempt = 0; attempt < 3; ++attempt) {
      s.where = address{"127.0.0.1", free_port()};
      std::vector<std::string> args{
          (std::filesystem::path(options_.bin_dir) / "postgres").string(),
          "-D",
          s.data.string(),
          "-p",
          std::to_string(s.where.port),
          "-c",
          "listen_addresses=127.0.0.1",
          "-c",
          "unix_socket_directories=" + dir_.string(),
          "-c",
          "wal_level=replica",
          "-c",
          "max_wal_senders=10",
          "-c",
          "wal_keep_size=128MB",
          "-c",
          "hot_standby=on",
          "-c",
          "fsync=off",
          "-c",
          "max_connections=100",
          "-c",
          "shared_buffers=32MB",
          "-c",
          "logging_collector=off"};
      for (const std::string& setting : options_.settings) {
        args.push_back("-c");
        args.push_back(setting);
      }
      s.pid = spawn(args, s.log, /*die_with_parent=*/true);
      const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
      for (;;) {
        int wstatus = 0;
        if (::waitpid(s.pid, &wstatus, WNOHANG) == s.pid) {
          s.pid = -1;
          break;  // exited: most likely the port was taken; try another
        }
        if (const std::string st = postmaster_status(s); st == "ready" || st == "standby") {
          return;  // (PostgreSQL 15 writes "ready" for a hot standby too)
        }
        if (std::chrono::steady_clock::now() > deadline) {
          kill_server(s);
          throw std::runtime_error(fmt::format(
              "postgres_cluster: {} not ready within {} ms; log:\n{}", s.data.string(),
              options_.start_timeout.count(), read_file(s.log)));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      last_log = read_file(s.log);
    }
    throw std::runtime_error(
        fmt::format("postgres_cluster: {} did not start (3 ports tried); log:\n{}",
                    s.data.string(), last_log));
  }

  /// The 8th line of postmaster.pid ("ready", "standby", "starting", ...) once the file
  /// names the server's own pid.
  [[nodiscard]] static std::string postmaster_status(const server& s) {
    std::ifstream in(s.data / "postmaster.pid");
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    if (lines.size() < 8 || lines[0] != std::to_string(s.pid)) return {};
    std::string st = lines[7];
    while (!st.empty() && st.back() == ' ') st.pop_back();
    return st;
  }

  /// Runs a program to its end (as the PostgreSQL user); throws with its log on failure.
  void run_to_end(const std::vector<std::string>& args, const std::filesystem::path& log) {
    const pid_t pid = spawn(args, log, /*die_with_parent=*/true);
    int wstatus = 0;
    while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
      throw std::runtime_error(
          fmt::format("postgres_cluster: {} failed (wait status {}):\n{}", args.front(),
                      wstatus, read_file(log)));
    }
  }

  /// fork + (switch user) + exec; stdout and stderr go to `log`.
  pid_t spawn(const std::vector<std::string>& args, const std::filesystem::path& log,
              bool die_with_parent) {
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) throw posix_error("open " + log.string());
    if (as_.switch_user && ::fchown(log_fd, as_.uid, as_.gid) != 0) {
      ::close(log_fd);
      throw posix_error("chown " + log.string());
    }
    const std::string cwd = dir_.string();
    const runner as = as_;
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {  // only async-signal-safe calls until exec
      if (as.switch_user) {
        if (::setgid(as.gid) != 0 || ::setgroups(1, &as.gid) != 0 ||
            ::setuid(as.uid) != 0) {
          ::_exit(126);
        }
      }
      // After setuid: a credential change clears the parent-death signal. SIGQUIT is
      // PostgreSQL's immediate shutdown (it stops its backends too).
      if (die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGQUIT);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
      const int null_fd = ::open("/dev/null", O_RDONLY);
      if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
      ::close_range(3, ~0U, 0);
      if (::chdir(cwd.c_str()) != 0) ::_exit(125);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log_fd);
    if (pid < 0) throw posix_error("fork");
    return pid;
  }

  static void kill_server(server& s) noexcept {
    if (s.pid <= 0) return;
    ::kill(s.pid, SIGQUIT);  // immediate shutdown
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (::waitpid(s.pid, nullptr, WNOHANG) != s.pid) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(s.pid, SIGKILL);
        ::waitpid(s.pid, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    s.pid = -1;
  }

  static unsigned short free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw posix_error("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), len) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
    ::close(fd);
    if (!ok) throw posix_error("bind 127.0.0.1:0");
    return ntohs(a.sin_port);
  }

  static std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  static std::runtime_error posix_error(std::string_view what) {
    return std::runtime_error(
        fmt::format("postgres_cluster: {}: {}", what, std::strerror(errno)));
  }

  postgres_options options_;
  runner as_{};
  std::filesystem::path dir_;
  std::vector<server> servers_;  // the primary first
};

}  // namespace live_shop
