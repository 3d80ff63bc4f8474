// tests/support/redis_sentinel.hpp — a real Sentinel set-up for integration tests.
//
// `outgrow_test::redis_sentinel_group` starts one master, `replicas` replicas
// (--replicaof the master) and `sentinels` redis-server --sentinel processes monitoring
// it under `master_name` with a quorum of a majority, each an outgrow_test::redis_server
// (free loopback ports, temporary directories, killed with the test). The constructor
// waits until every replica has synced and every sentinel knows the replicas and the
// other sentinels, so a failover can happen.
//
//   outgrow_test::redis_sentinel_group group({.replicas = 2, .sentinels = 3});
//   auto sentinels = group.sentinel_addresses();      // "127.0.0.1:port" each
//   group.master().kill();                           // SIGKILL the master
//   auto port = group.wait_for_new_master(old, 30s);  // a replica promoted
//
// Waiting polls a real condition with a bound; it never makes test time pass.
// Thread-safety: none (as redis_server).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "redis_server.hpp"

namespace outgrow_test {

struct redis_sentinel_options {
  int replicas = 2;   ///< [0, 8]
  int sentinels = 3;  ///< [1, 9]; quorum = a majority
  std::string master_name = "outgrow";
  /// How long a master may be unreachable before sentinels call it down.
  std::chrono::milliseconds down_after{1000};
  std::chrono::milliseconds failover_timeout{5000};
  std::chrono::milliseconds ready_timeout{30'000};
};

class redis_sentinel_group {
 public:
  explicit redis_sentinel_group(redis_sentinel_options options = {})
      : options_(std::move(options)) {
    if (options_.replicas < 0 || options_.replicas > 8 || options_.sentinels < 1 ||
        options_.sentinels > 9) {
      throw std::invalid_argument(
          "redis_sentinel_group: replicas in [0, 8], sentinels in [1, 9]");
    }
    const std::vector<std::string> fast_sync = {"--repl-diskless-sync-delay", "0"};
    master_ = std::make_unique<redis_server>(redis_server_options{.extra_args = fast_sync});
    for (int i = 0; i < options_.replicas; ++i) {
      std::vector<std::string> args = fast_sync;
      args.insert(args.end(),
                  {"--replicaof", master_->host(), std::to_string(master_->port())});
      replicas_.push_back(
          std::make_unique<redis_server>(redis_server_options{.extra_args = args}));
    }
    const std::string conf = fmt::format(
        "sentinel monitor {0} {1} {2} {3}\n"
        "sentinel down-after-milliseconds {0} {4}\n"
        "sentinel failover-timeout {0} {5}\n",
        options_.master_name, master_->host(), master_->port(), options_.sentinels / 2 + 1,
        options_.down_after.count(), options_.failover_timeout.count());
    for (int i = 0; i < options_.sentinels; ++i) {
      sentinels_.push_back(std::make_unique<redis_server>(
          redis_server_options{.config_text = conf, .sentinel = true}));
    }
    if (!wait_ready(options_.ready_timeout)) {
      throw std::runtime_error("redis_sentinel_group: not ready within the ready timeout");
    }
  }

  redis_sentinel_group(const redis_sentinel_group&) = delete;
  redis_sentinel_group& operator=(const redis_sentinel_group&) = delete;

  [[nodiscard]] redis_server& master() { return *master_; }
  [[nodiscard]] redis_server& replica(std::size_t i) { return *replicas_.at(i); }
  [[nodiscard]] redis_server& sentinel(std::size_t i) { return *sentinels_.at(i); }
  [[nodiscard]] const std::string& master_name() const noexcept {
    return options_.master_name;
  }

  /// "127.0.0.1:<port>" of every sentinel.
  [[nodiscard]] std::vector<std::string> sentinel_addresses() const {
    std::vector<std::string> out;
    for (const auto& s : sentinels_)
      out.push_back(fmt::format("{}:{}", s->host(), s->port()));
    return out;
  }

  /// The master port a running sentinel reports, if one answers.
  [[nodiscard]] std::optional<int> master_port() {
    for (auto& s : sentinels_) {
      if (!s->running()) continue;
      try {
        const redis_reply r =
            s->command("SENTINEL get-master-addr-by-name %s", options_.master_name.c_str());
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
          return std::stoi(std::string(reply_text(*r->element[1])));
        }
      } catch (const std::exception&) {
        // the next sentinel
      }
    }
    return std::nullopt;
  }

  /// The node (master or replica fixture) listening on `port`, if any.
  [[nodiscard]] redis_server* node_on(int port) {
    if (master_->port() == port) return master_.get();
    for (auto& r : replicas_) {
      if (r->port() == port) return r.get();
    }
    return nullptr;
  }

  /// Polls until every running sentinel names a master other than `old_port` and that
  /// node answers ROLE as master; returns its port, or nullopt after `timeout`.
  std::optional<int> wait_for_new_master(int old_port, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto port = agreed_master(); port && *port != old_port && is_master(*port)) {
        return port;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

 private:
  std::optional<int> agreed_master() {
    std::optional<int> agreed;
    for (auto& s : sentinels_) {
      if (!s->running()) continue;
      try {
        const redis_reply r =
            s->command("SENTINEL get-master-addr-by-name %s", options_.master_name.c_str());
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return std::nullopt;
        const int port = std::stoi(std::string(reply_text(*r->element[1])));
        if (agreed && *agreed != port) return std::nullopt;
        agreed = port;
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
    return agreed;
  }

  bool is_master(int port) {
    redis_server* n = node_on(port);
    if (n == nullptr || !n->running()) return false;
    try {
      const std::string info(reply_text(*n->command("INFO replication")));
      return info.find("role:master") != std::string::npos;
    } catch (const std::exception&) {
      return false;
    }
  }

  // Field `name` of SENTINEL MASTER's flat name/value array, as a number.
  static std::optional<long> field(const redisReply& r, std::string_view name) {
    if (r.type != REDIS_REPLY_ARRAY) return std::nullopt;
    for (std::size_t i = 0; i + 1 < r.elements; i += 2) {
      if (reply_text(*r.element[i]) == name) {
        return std::stol(std::string(reply_text(*r.element[i + 1])));
      }
    }
    return std::nullopt;
  }

  bool wait_ready(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      bool ready = true;
      try {
        for (auto& r : replicas_) {
          const std::string info(reply_text(*r->command("INFO replication")));
          ready = ready && info.find("master_link_status:up") != std::string::npos;
        }
        for (auto& s : sentinels_) {
          const redis_reply m =
              s->command("SENTINEL MASTER %s", options_.master_name.c_str());
          ready = ready && field(*m, "num-slaves") == options_.replicas &&
                  field(*m, "num-other-sentinels") == options_.sentinels - 1;
        }
      } catch (const std::exception&) {
        ready = false;
      }
      if (ready) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  redis_sentinel_options options_;
  std::unique_ptr<redis_server> master_;
  std::vector<std::unique_ptr<redis_server>> replicas_;
  std::vector<std::unique_ptr<redis_server>> sentinels_;
};

}  // namespace outgrow_test
