// outgrow/redis/detail/cluster.hpp — which node a command goes to: one pool for a
// standalone or Sentinel server, or one pool per Redis Cluster node with the slot map.
//
// redis_router<Clock> is what a Redis part holds instead of one redis_pool. Without
// `connection.cluster` it is that one pool (the slot argument is ignored). With it:
//   - the slot map (16384 owners, one atomic index each) is read with CLUSTER SLOTS from
//     the seed nodes and the nodes learnt since; replies are untrusted (slots outside
//     [0, 16383], bad ports or hosts are refused, an empty host means the node asked);
//   - run(slot, op) runs op on a pooled connection to the slot's master; the pool records
//     the first MOVED / ASK / TRYAGAIN / CLUSTERDOWN error reply of the call
//     (redis_pooled_connection::redirect), and the router follows it: MOVED sets the
//     slot's owner and re-reads the map (at most every 100 ms), ASK runs op once on the
//     named node after ASKING, TRYAGAIN / CLUSTERDOWN wait 10 ms × attempt and retry — at
//     most max_redirects times. A redirected command did not run, so running op again is
//     safe; a transport failure is not retried (the command may have run) but re-reads
//     the map so the next call finds a promoted replica;
//   - run_each_master(op) runs op once on every master (SCAN-based operations);
//   - run_read(slot, op): with sentinel.read_from_replicas (not clustered), op runs on a
//     second pool whose connections go to Sentinel's replicas; when that fails (no
//     replica, transport, backoff, an error reply such as -LOADING) op runs again on the
//     master: only for reads, which may run twice. Otherwise run(slot, op).
// The free functions redis_read_cluster_slots / redis_cluster_master_of (the slot map,
// parsed defensively) and redis_parse_redirect are shared with the stream queue's link
// (detail/stream_link.hpp), which pins one connection to the master of its queue's slot.
// Nodes are added as they are learnt (at most 256) and never removed while the router
// lives, so a pool is never destroyed under a caller.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <outgrow/redis/connection.hpp>
#include <outgrow/redis/detail/connection.hpp>
#include <outgrow/redis/detail/pool.hpp>
#include <outgrow/routing/redis_cluster_slots.hpp>

namespace outgrow::detail {

/// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 host:port" parsed; nullopt when malformed.
struct redis_redirect {
  bool ask = false;
  std::uint16_t slot = 0;
  redis_endpoint to;
};

[[nodiscard]] inline std::optional<redis_redirect> redis_parse_redirect(
    std::string_view text) {
  redis_redirect r;
  if (text.starts_with("MOVED ")) {
    text.remove_prefix(6);
  } else if (text.starts_with("ASK ")) {
    r.ask = true;
    text.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const std::size_t space = text.find(' ');
  if (space == std::string_view::npos || space == 0 || space > 5) return std::nullopt;
  unsigned slot = 0;
  for (const char ch : text.substr(0, space)) {
    if (ch < '0' || ch > '9') return std::nullopt;
    slot = slot * 10 + static_cast<unsigned>(ch - '0');
  }
  if (slot >= redis_cluster_slot_count) return std::nullopt;
  const std::string_view address = text.substr(space + 1);
  const std::size_t colon = address.rfind(':');  // IPv6 hosts contain ':' too
  if (colon == std::string_view::npos || colon == 0 || colon > 255) return std::nullopt;
  const int port = redis_parse_port(address.substr(colon + 1));
  if (port == 0) return std::nullopt;
  r.slot = static_cast<std::uint16_t>(slot);
  r.to = {std::string(address.substr(0, colon)), port};
  return r;
}

/// Slots [first, last] of a CLUSTER SLOTS reply and the master serving them.
struct redis_slot_owner {
  int first = 0;
  int last = 0;
  redis_endpoint master;
};

/// Reads CLUSTER SLOTS from the node at `e` (connecting with `connection`'s timeouts and
/// password) into `out`; false on any failure. The reply is untrusted: slots outside
/// [0, 16383], bad ports or hosts refuse the whole reply; an empty host (or "?") means
/// the node asked.
[[nodiscard]] inline bool redis_read_cluster_slots(
    const redis_connection_config& connection, const redis_endpoint& e,
    std::vector<redis_slot_owner>& out) noexcept {
  try {
    out.clear();
    std::string error;
    redis_context_ptr c =
        redis_open_node(connection, e.host, e.port, connection.password, 0, error);
    if (!c) return false;
    const std::string_view args[] = {"CLUSTER", "SLOTS"};
    const redis_reply_ptr r = redis_argv(c.get(), args);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0) return false;
    for (std::size_t i = 0; i < r->elements; ++i) {
      const redisReply* range = r->element[i];
      if (range->type != REDIS_REPLY_ARRAY || range->elements < 3) return false;
      const redisReply* first = range->element[0];
      const redisReply* last = range->element[1];
      const redisReply* master = range->element[2];
      if (first->type != REDIS_REPLY_INTEGER || last->type != REDIS_REPLY_INTEGER ||
          master->type != REDIS_REPLY_ARRAY || master->elements < 2 ||
          master->element[1]->type != REDIS_REPLY_INTEGER) {
        return false;
      }
      const long long lo = first->integer;
      const long long hi = last->integer;
      const long long port = master->element[1]->integer;
      if (lo < 0 || hi < lo || hi >= redis_cluster_slot_count || port < 1 || port > 65535) {
        return false;
      }
      std::string_view host = redis_text(master->element[0]);
      if (host.empty() || host == "?") host = e.host;  // "the node you asked"
      if (host.size() > 255) return false;
      out.push_back({static_cast<int>(lo), static_cast<int>(hi),
                     redis_endpoint{std::string(host), static_cast<int>(port)}});
    }
    return true;
  } catch (...) {
    out.clear();
    return false;
  }
}

/// The master of `slot` as the first of `connection.cluster.nodes` that answers CLUSTER
/// SLOTS says; nullopt (and `error` set) when none answers or none serves the slot.
/// Throws: std::bad_alloc if memory runs out.
[[nodiscard]] inline std::optional<redis_endpoint> redis_cluster_master_of(
    const redis_connection_config& connection, std::uint16_t slot, std::string& error) {
  std::vector<redis_slot_owner> ranges;
  for (const redis_endpoint& seed : connection.cluster.nodes) {
    if (!redis_read_cluster_slots(connection, seed, ranges)) continue;
    for (const redis_slot_owner& r : ranges) {
      if (slot >= r.first && slot <= r.last) return r.master;
    }
    error = "no master serves slot " + std::to_string(slot);
    return std::nullopt;
  }
  error = "no cluster seed node answered CLUSTER SLOTS";
  return std::nullopt;
}

/// The masters serving slots now (sorted by host and port, each once), read with CLUSTER
/// SLOTS from the first of connection.cluster.nodes, then of `also`, that answers; in
/// `owner`, the index of the one serving `slot`. Empty when no node answered.
/// Throws: std::bad_alloc if memory runs out.
[[nodiscard]] inline std::vector<redis_endpoint> redis_cluster_masters(
    const redis_connection_config& connection, const std::vector<redis_endpoint>& also,
    std::uint16_t slot, std::size_t& owner) {
  std::vector<redis_slot_owner> ranges;
  bool read = false;
  for (const auto* list : {&connection.cluster.nodes, &also}) {
    for (const redis_endpoint& e : *list) {
      read = redis_read_cluster_slots(connection, e, ranges);
      if (read) break;
    }
    if (read) break;
  }
  std::vector<redis_endpoint> masters;
  if (!read) return masters;
  const auto less = [](const redis_endpoint& a, const redis_endpoint& b) {
    return a.host != b.host ? a.host < b.host : a.port < b.port;
  };
  for (const redis_slot_owner& r : ranges) masters.push_back(r.master);
  std::sort(masters.begin(), masters.end(), less);
  masters.erase(std::unique(masters.begin(), masters.end(),
                            [](const redis_endpoint& a, const redis_endpoint& b) {
                              return a.host == b.host && a.port == b.port;
                            }),
                masters.end());
  owner = 0;
  for (const redis_slot_owner& r : ranges) {
    if (slot < r.first || slot > r.last) continue;
    owner = static_cast<std::size_t>(
        std::lower_bound(masters.begin(), masters.end(), r.master, less) - masters.begin());
  }
  return masters;
}

/// True for an error reply a Redis Cluster node gives for a command it did not run
/// (MOVED, ASK, TRYAGAIN, CLUSTERDOWN): the command may be sent again.
[[nodiscard]] inline bool redis_is_redirect_error(const redisReply* r) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ERROR) return false;
  const std::string_view t(r->str, r->len);
  return t.starts_with("MOVED ") || t.starts_with("ASK ") || t.starts_with("TRYAGAIN") ||
         t.starts_with("CLUSTERDOWN");
}

/// Indexes 0..n-1 grouped by slot_of(i) (ascending slots), in order within each group:
/// how a batch over many keys is split into one command per hash slot.
template <class SlotOf>
std::vector<std::pair<std::uint16_t, std::vector<std::size_t>>> redis_group_by_slot(
    std::size_t n, SlotOf slot_of) {
  std::vector<std::pair<std::uint16_t, std::vector<std::size_t>>> groups;
  std::vector<std::pair<std::uint16_t, std::size_t>> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = {slot_of(i), i};
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [slot, i] : order) {
    if (groups.empty() || groups.back().first != slot) groups.push_back({slot, {}});
    groups.back().second.push_back(i);
  }
  return groups;
}

template <class Clock>
class redis_router {
 public:
  static constexpr std::size_t max_nodes = 256;

  redis_router(const redis_connection_config& connection, std::size_t pool_size,
               std::chrono::nanoseconds wait, std::uint64_t seed, Clock clock)
      : connection_(connection),
        pool_size_(pool_size),
        wait_(wait),
        seed_(seed),
        clock_(std::move(clock)),
        clustered_(!connection.cluster.nodes.empty()) {
    for (auto& owner : owners_) owner.store(-1, std::memory_order_relaxed);
    if (!clustered_) {
      (void)add_node_locked(connection_);  // the one server (or Sentinel's master)
      if (connection_.sentinel.read_from_replicas) {
        replicas_ = std::make_unique<redis_pool<Clock>>(connection_, pool_size_, wait_,
                                                        seed_ + 1, clock_, true);
      }
    } else {
      std::lock_guard lock(nodes_mutex_);
      for (const redis_endpoint& e : connection_.cluster.nodes) {
        (void)node_index_locked(e);
      }
    }
  }

  redis_router(const redis_router&) = delete;
  redis_router& operator=(const redis_router&) = delete;

  [[nodiscard]] bool clustered() const noexcept { return clustered_; }

  /// Runs op(redis_pooled_connection&) -> redis_status on the master of `slot` (the one
  /// server when not clustered), following redirections; the final status.
  template <class Op>
  redis_status run(std::uint16_t slot, Op&& op) noexcept {
    if (!clustered_) return node(0).pool->run(op);
    std::optional<std::size_t> ask_node;
    redis_status s = redis_status::transport;
    for (int attempt = 0; attempt <= connection_.cluster.max_redirects; ++attempt) {
      std::size_t target = 0;
      if (ask_node) {
        target = *ask_node;
      } else {
        const int owner = owners_[slot].load(std::memory_order_acquire);
        if (owner < 0) {
          refresh(true);
          const int again = owners_[slot].load(std::memory_order_acquire);
          if (again < 0) return redis_status::transport;  // nobody serves the slot
          target = static_cast<std::size_t>(again);
        } else {
          target = static_cast<std::size_t>(owner);
        }
      }
      const bool asking = ask_node.has_value();
      ask_node.reset();
      std::string redirect;
      s = node(target).pool->run([&](redis_pooled_connection& c) {
        c.redirect.clear();
        if (asking) {
          const std::string_view args[] = {"ASKING"};
          redis_reply_ptr r;
          if (const auto a = node(target).pool->exec(c, args, r, 1024);
              a != redis_status::ok) {
            return a;
          }
        }
        const redis_status result = op(c);
        redirect = std::move(c.redirect);
        c.redirect.clear();
        return result;
      });
      if (s == redis_status::transport || s == redis_status::backoff) {
        refresh(false);  // maybe a failover: the next call finds the new master
        return s;
      }
      if (redirect.empty()) return s;
      redirects_.add();
      if (auto r = redis_parse_redirect(redirect)) {
        const std::size_t to = node_index(r->to);
        if (to == max_nodes) return s;
        if (r->ask) {
          ask_node = to;
        } else {
          owners_[r->slot].store(static_cast<int>(to), std::memory_order_release);
          refresh(false);
        }
      } else {  // TRYAGAIN (keys of a multi-key command mid-migration) / CLUSTERDOWN
        if (redirect.starts_with("CLUSTERDOWN")) refresh(false);
        std::this_thread::sleep_for(std::chrono::milliseconds{10} * (attempt + 1));
      }
    }
    return s;
  }

  /// True when reads go to Sentinel's replicas first (run_read).
  [[nodiscard]] bool replica_reads() const noexcept { return replicas_ != nullptr; }

  /// A read: op on a replica's connection (replica_reads()), else or when that failed
  /// on the master of `slot` as run(). op must be safe to run twice.
  template <class Op>
  redis_status run_read(std::uint16_t slot, Op&& op) noexcept {
    if (replicas_) {
      const redis_status s = replicas_->run(op);
      if (s == redis_status::ok || s == redis_status::codec ||
          s == redis_status::too_large) {
        if (s == redis_status::ok) replica_reads_.add();
        return s;  // served, or a failure the master would repeat
      }
      replica_fallbacks_.add();
    }
    return run(slot, op);
  }

  /// Runs op once on every node that masters at least one slot (the one server when not
  /// clustered); stops at the first status that is not ok.
  template <class Op>
  redis_status run_each_master(Op&& op) noexcept {
    if (!clustered_) return node(0).pool->run(op);
    refresh(false);
    std::array<bool, max_nodes> masters{};
    for (const auto& owner : owners_) {
      const int o = owner.load(std::memory_order_acquire);
      if (o >= 0) masters[static_cast<std::size_t>(o)] = true;
    }
    bool any = false;
    for (std::size_t i = 0; i < max_nodes; ++i) {
      if (!masters[i]) continue;
      any = true;
      if (const redis_status s = node(i).pool->run(op); s != redis_status::ok) return s;
    }
    return any ? redis_status::ok : redis_status::transport;
  }

  /// The slot of an encoded key (0 when not clustered: one server has no slots).
  [[nodiscard]] std::uint16_t slot_of(std::string_view key) const noexcept {
    return clustered_ ? redis_cluster_hash_slot(key) : std::uint16_t{0};
  }

  // The pools' shared I/O (every node's pool has the same timeouts).
  redis_status exec(redis_pooled_connection& c, int argc, const char** argv,
                    const std::size_t* lens, redis_reply_ptr& out,
                    std::size_t limit) const noexcept {
    return node(0).pool->exec(c, argc, argv, lens, out, limit);
  }
  redis_status exec(redis_pooled_connection& c, std::span<const std::string_view> args,
                    redis_reply_ptr& out, std::size_t limit) const noexcept {
    return node(0).pool->exec(c, args, out, limit);
  }
  redis_status read_reply(redis_pooled_connection& c, redis_reply_ptr& out,
                          std::size_t limit) const noexcept {
    return node(0).pool->read_reply(c, out, limit);
  }
  [[nodiscard]] auto command_deadline() const noexcept {
    return node(0).pool->command_deadline();
  }
  /// The first node's pool (the one server when not clustered).
  [[nodiscard]] const redis_pool<Clock>& first_pool() const noexcept {
    return *node(0).pool;
  }

  // Counters summed over the nodes.
  [[nodiscard]] std::uint64_t pool_timeouts() const noexcept {
    return sum(&redis_pool<Clock>::pool_timeouts);
  }
  [[nodiscard]] std::uint64_t transport_errors() const noexcept {
    return sum(&redis_pool<Clock>::transport_errors);
  }
  [[nodiscard]] std::uint64_t connects() const noexcept {
    return sum(&redis_pool<Clock>::connects);
  }
  [[nodiscard]] std::uint64_t connect_failures() const noexcept {
    return sum(&redis_pool<Clock>::connect_failures);
  }
  [[nodiscard]] std::uint64_t open_connections() const noexcept {
    return sum(&redis_pool<Clock>::open_connections);
  }
  [[nodiscard]] std::uint64_t redirects() const noexcept { return redirects_.load(); }
  [[nodiscard]] std::uint64_t replica_reads_served() const noexcept {
    return replica_reads_.load();
  }
  [[nodiscard]] std::uint64_t replica_fallbacks() const noexcept {
    return replica_fallbacks_.load();
  }
  [[nodiscard]] std::uint64_t map_refreshes() const noexcept { return refreshes_.load(); }
  [[nodiscard]] std::size_t nodes() const noexcept {
    return node_count_.load(std::memory_order_acquire);
  }

 private:
  struct node_entry {
    redis_endpoint endpoint;
    std::unique_ptr<redis_pool<Clock>> pool;
  };

  [[nodiscard]] const node_entry& node(std::size_t i) const noexcept { return *nodes_[i]; }

  template <class Getter>
  std::uint64_t sum(Getter getter) const noexcept {
    std::uint64_t total = 0;
    const std::size_t n = node_count_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) total += (node(i).pool.get()->*getter)();
    if (replicas_) total += (replicas_.get()->*getter)();
    return total;
  }

  /// Index of the node at `e`, added if new; max_nodes when the table is full.
  std::size_t node_index(const redis_endpoint& e) noexcept {
    std::lock_guard lock(nodes_mutex_);
    return node_index_locked(e);
  }

  std::size_t node_index_locked(const redis_endpoint& e) noexcept {
    const std::size_t n = node_count_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) {
      if (nodes_[i]->endpoint.port == e.port && nodes_[i]->endpoint.host == e.host)
        return i;
    }
    redis_connection_config direct = connection_;
    direct.host = e.host;
    direct.port = e.port;
    direct.cluster = {};
    direct.sentinel = {};
    return add_node_locked(direct);
  }

  std::size_t add_node_locked(const redis_connection_config& direct) noexcept {
    const std::size_t n = node_count_.load(std::memory_order_relaxed);
    if (n == max_nodes) return max_nodes;
    try {
      auto entry = std::make_unique<node_entry>();
      entry->endpoint = {direct.host, direct.port};
      entry->pool =
          std::make_unique<redis_pool<Clock>>(direct, pool_size_, wait_, seed_ + n, clock_);
      nodes_[n] = std::move(entry);
    } catch (...) {
      return max_nodes;
    }
    node_count_.store(n + 1, std::memory_order_release);
    return n;
  }

  /// Re-reads the slot map from the first node that answers. Unless `force`, at most
  /// once per 100 ms; a refresh already under way in another thread is not waited for.
  void refresh(bool force) noexcept {
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_refresh_.load(std::memory_order_acquire) <
                      std::chrono::milliseconds{100}) {
      return;
    }
    std::unique_lock lock(refresh_mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return;
    last_refresh_.store(now, std::memory_order_release);
    refreshes_.add();
    const std::size_t known = node_count_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < known; ++i) {
      if (read_map(node(i).endpoint)) return;
    }
  }

  /// CLUSTER SLOTS from the node at `e` applied to the owners; false on any failure.
  bool read_map(const redis_endpoint& e) noexcept {
    try {
      std::vector<redis_slot_owner> ranges;
      if (!redis_read_cluster_slots(connection_, e, ranges)) return false;
      for (const redis_slot_owner& range : ranges) {
        const std::size_t owner = node_index(range.master);
        if (owner == max_nodes) return false;
        for (int s = range.first; s <= range.last; ++s) {
          owners_[static_cast<std::size_t>(s)].store(static_cast<int>(owner),
                                                     std::memory_order_release);
        }
      }
      return true;
    } catch (...) {
      return false;
    }
  }

  const redis_connection_config connection_;
  const std::size_t pool_size_;
  const std::chrono::nanoseconds wait_;
  const std::uint64_t seed_;
  const Clock clock_;
  const bool clustered_;

  std::mutex nodes_mutex_;  // adding nodes
  std::array<std::unique_ptr<node_entry>, max_nodes> nodes_{};
  std::atomic<std::size_t> node_count_{0};
  std::array<std::atomic<int>, redis_cluster_slot_count> owners_{};

  std::unique_ptr<redis_pool<Clock>> replicas_;  // sentinel.read_from_replicas

  std::mutex refresh_mutex_;
  std::atomic<std::chrono::steady_clock::time_point> last_refresh_{};
  counter redirects_, refreshes_, replica_reads_, replica_fallbacks_;
};

}  // namespace outgrow::detail
