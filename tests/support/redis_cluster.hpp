// tests/support/redis_cluster.hpp — a real Redis Cluster for integration tests.
//
// `outgrow_test::redis_cluster` starts masters x (1 + replicas) redis-server processes in
// cluster mode (each an outgrow_test::redis_server: free loopback ports, temporary
// directory, killed with the test process), joins them with
// `redis-cli --cluster create ... --cluster-replicas R --cluster-yes`, and waits until
// every node reports cluster_state:ok with all 16384 slots assigned.
//
//   outgrow_test::redis_cluster cluster({.masters = 3, .replicas = 1});
//   auto seeds = cluster.addresses();                 // "127.0.0.1:port" of every node
//   auto m = cluster.master_of(slot);                 // node index serving a slot
//   cluster.reshard(cluster.node_id(0), cluster.node_id(1), 100);   // move 100 slots
//   cluster.node(m).kill();                           // SIGKILL a master
//   cluster.wait_until_ok(std::chrono::seconds(20));  // a replica was promoted
//
// Topology queries parse CLUSTER NODES from a live node. Waiting polls a real condition
// with a bound; it never makes test time pass.
//
// Thread-safety: none; use from one thread (as redis_server).
#pragma once

#ifndef OUTGROW_REDIS_CLI
#error \
    "redis_cluster.hpp needs OUTGROW_REDIS_CLI (the redis-cli path; tests/CMakeLists.txt)"
#endif

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "redis_server.hpp"

namespace outgrow_test {

/// Exit status and combined stdout/stderr of a finished child process.
struct process_result {
  int exit_code = -1;  ///< -1 when killed by a signal or by the timeout
  std::string output;
};

/// Runs `args` (args[0] = executable path) with stdin from /dev/null, waits at most
/// `timeout` (then SIGKILL), and returns its exit code and output. The child dies with
/// the test process. Throws std::runtime_error when it cannot be started.
inline process_result run_process(const std::vector<std::string>& args,
                                  std::chrono::milliseconds timeout) {
  char path[] = "/tmp/outgrow-process-XXXXXX";
  const int out_fd = ::mkstemp(path);
  if (out_fd < 0) throw detail::posix_error("mkstemp");
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child < 0) {
    ::close(out_fd);
    ::unlink(path);
    throw detail::posix_error("fork");
  }
  if (child == 0) {
#if defined(__linux__)
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
#else
    (void)parent;
#endif
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(out_fd, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out_fd);
  process_result result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(child, &status, WNOHANG);
    if (r == child) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      status = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (status != -1 && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  result.output = buf.str();
  ::unlink(path);
  return result;
}

struct redis_cluster_options {
  int masters = 3;   ///< [3, 16]: redis-cli --cluster create needs at least 3
  int replicas = 1;  ///< replicas per master, [0, 4]
  /// cluster-node-timeout: how long a master may be unreachable before its replica is
  /// promoted (Redis's default is 15 s; tests want a failover within seconds).
  std::chrono::milliseconds node_timeout{1000};
  /// How long the constructor waits for cluster_state:ok on every node.
  std::chrono::milliseconds ready_timeout{60'000};
  std::string cli = OUTGROW_REDIS_CLI;
};

/// One line of CLUSTER NODES.
struct cluster_node_info {
  std::string id;
  int port = 0;
  bool master = false;
  bool failed = false;  ///< flags include "fail" (or "fail?": suspected)
  std::string master_id;
  std::vector<std::pair<int, int>> slots;  ///< inclusive ranges served
};

class redis_cluster {
 public:
  explicit redis_cluster(redis_cluster_options options = {})
      : options_(std::move(options)) {
    if (options_.masters < 3 || options_.masters > 16 || options_.replicas < 0 ||
        options_.replicas > 4) {
      throw std::invalid_argument("redis_cluster: masters in [3, 16], replicas in [0, 4]");
    }
    const int count = options_.masters * (1 + options_.replicas);
    for (int i = 0; i < count; ++i) {
      nodes_.push_back(std::make_unique<redis_server>(redis_server_options{
          .cluster = true,
          .extra_args = {"--cluster-node-timeout",
                         std::to_string(options_.node_timeout.count()),
                         // A slot whose master is down still answers for other slots.
                         "--cluster-require-full-coverage", "no",
                         // Replicas sync at once (the default waits 5 s for more).
                         "--repl-diskless-sync-delay", "0"}}));
    }
    std::vector<std::string> args = {options_.cli, "--cluster", "create"};
    for (const auto& n : nodes_) args.push_back(address(*n));
    args.insert(args.end(),
                {"--cluster-replicas", std::to_string(options_.replicas), "--cluster-yes"});
    const process_result created = run_process(args, options_.ready_timeout);
    if (created.exit_code != 0) {
      throw std::runtime_error("redis_cluster: redis-cli --cluster create failed:\n" +
                               created.output);
    }
    if (!wait_until_ok(options_.ready_timeout) ||
        !wait_until_replicas_synced(options_.ready_timeout)) {
      throw std::runtime_error("redis_cluster: not ok within the ready timeout");
    }
  }

  redis_cluster(const redis_cluster&) = delete;
  redis_cluster& operator=(const redis_cluster&) = delete;

  [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }
  [[nodiscard]] redis_server& node(std::size_t i) { return *nodes_.at(i); }

  /// "127.0.0.1:<port>" of every node (seeds for a client).
  [[nodiscard]] std::vector<std::string> addresses() const {
    std::vector<std::string> out;
    for (const auto& n : nodes_) out.push_back(address(*n));
    return out;
  }

  /// CLUSTER NODES as seen by the first running node that answers.
  [[nodiscard]] std::vector<cluster_node_info> topology() {
    for (auto& n : nodes_) {
      if (!n->running()) continue;
      try {
        const redis_reply r = n->command("CLUSTER NODES");
        if (r->type == REDIS_REPLY_STRING) return parse_nodes(reply_text(*r));
      } catch (const std::exception&) {
        // try the next node
      }
    }
    throw std::runtime_error("redis_cluster: no node answers CLUSTER NODES");
  }

  /// The node index (into node()) whose port serves `slot` as master, if any.
  [[nodiscard]] std::optional<std::size_t> master_of(int slot) {
    for (const cluster_node_info& info : topology()) {
      if (!info.master || info.failed) continue;
      for (const auto& [lo, hi] : info.slots) {
        if (slot >= lo && slot <= hi) return index_of_port(info.port);
      }
    }
    return std::nullopt;
  }

  /// The cluster node id of node(i).
  [[nodiscard]] std::string node_id(std::size_t i) {
    const redis_reply r = node(i).command("CLUSTER MYID");
    return std::string(reply_text(*r));
  }

  /// Moves `slots` slots from master `from_id` to master `to_id` with
  /// `redis-cli --cluster reshard` (keys migrate with MIGRATE while clients keep
  /// running: they see ASK / MOVED). Throws when redis-cli fails.
  void reshard(const std::string& from_id, const std::string& to_id, int slots,
               std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
    const std::string via = any_running_address();
    const process_result r =
        run_process({options_.cli, "--cluster", "reshard", via, "--cluster-from", from_id,
                     "--cluster-to", to_id, "--cluster-slots", std::to_string(slots),
                     "--cluster-yes", "--cluster-pipeline", "100"},
                    timeout);
    if (r.exit_code != 0) {
      throw std::runtime_error("redis_cluster: reshard failed:\n" + r.output);
    }
  }

  /// Polls until every running replica whose master runs has its replication link up
  /// (a replica that never synced cannot be promoted); false after `timeout`.
  bool wait_until_replicas_synced(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      bool synced = true;
      for (auto& n : nodes_) {
        if (!n->running()) continue;
        try {
          const std::string info(reply_text(*n->command("INFO replication")));
          if (info.find("role:slave") != std::string::npos &&
              info.find("master_link_status:up") == std::string::npos) {
            synced = false;
          }
        } catch (const std::exception&) {
          synced = false;
        }
      }
      if (synced) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  /// Polls until every running node reports cluster_state:ok with 16384 slots ok and
  /// sees only running, non-failed masters serving slots; false after `timeout`.
  bool wait_until_ok(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (all_ok()) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

 private:
  static std::string address(const redis_server& n) {
    return fmt::format("{}:{}", n.host(), n.port());
  }

  std::string any_running_address() const {
    for (const auto& n : nodes_) {
      if (n->running()) return address(*n);
    }
    throw std::runtime_error("redis_cluster: no node is running");
  }

  std::optional<std::size_t> index_of_port(int port) const {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i]->port() == port) return i;
    }
    return std::nullopt;
  }

  bool all_ok() {
    for (auto& n : nodes_) {
      if (!n->running()) continue;
      try {
        const redis_reply r = n->command("CLUSTER INFO");
        const std::string_view info = reply_text(*r);
        if (info.find("cluster_state:ok") == std::string_view::npos ||
            info.find("cluster_slots_ok:16384") == std::string_view::npos) {
          return false;
        }
        // Every master serving slots must be a node that runs (a killed master counts
        // until its replica has been promoted).
        for (const cluster_node_info& m :
             parse_nodes(reply_text(*n->command("CLUSTER NODES")))) {
          if (!m.master || m.slots.empty()) continue;
          const std::optional<std::size_t> i = index_of_port(m.port);
          if (m.failed || !i || !nodes_[*i]->running()) return false;
        }
      } catch (const std::exception&) {
        return false;
      }
    }
    return true;
  }

  static std::vector<cluster_node_info> parse_nodes(std::string_view text) {
    std::vector<cluster_node_info> out;
    std::istringstream lines{std::string(text)};
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      std::vector<std::string> f;
      for (std::string x; fields >> x;) f.push_back(x);
      if (f.size() < 8) continue;
      cluster_node_info info;
      info.id = f[0];
      const std::size_t colon = f[1].rfind(':');
      if (colon != std::string::npos) info.port = std::atoi(f[1].c_str() + colon + 1);
      info.master = f[2].find("master") != std::string::npos;
      info.failed = f[2].find("fail") != std::string::npos;
      info.master_id = f[3];
      for (std::size_t i = 8; i < f.size(); ++i) {
        if (f[i].front() == '[') continue;  // a slot being imported / migrated
        const std::size_t dash = f[i].find('-');
        const int lo = std::atoi(f[i].c_str());
        const int hi = dash == std::string::npos ? lo : std::atoi(f[i].c_str() + dash + 1);
        info.slots.emplace_back(lo, hi);
      }
      out.push_back(std::move(info));
    }
    return out;
  }

  redis_cluster_options options_;
  std::vector<std::unique_ptr<redis_server>> nodes_;
};

}  // namespace outgrow_test
