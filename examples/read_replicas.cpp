// read_replicas: writes to the primary, reads to replicas — and a user who just saved
// their profile never sees the old one. Three in-memory "databases" replicate with lag;
// the splitter routes each statement and says why.
#include <outgrow/routing/read_write_splitter.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

using namespace std::chrono_literals;

namespace {

/// A toy database: key -> (value, position of the write that set it).
struct database {
  std::map<std::string, std::string> rows;
  std::uint64_t applied = 0;
};

struct cluster {
  database primary;
  std::map<std::string, database> replicas{{"replica-a", {}}, {"replica-b", {}}};
  std::vector<std::pair<std::uint64_t, std::pair<std::string, std::string>>> log;

  std::uint64_t write(const std::string& key, const std::string& value) {
    primary.rows[key] = value;
    log.push_back({++primary.applied, {key, value}});
    return primary.applied;
  }
  /// Replays the primary's log on a replica up to `position`.
  void replicate(const std::string& replica, std::uint64_t position) {
    database& db = replicas.at(replica);
    for (const auto& [pos, kv] : log) {
      if (pos > db.applied && pos <= position) db.rows[kv.first] = kv.second;
    }
    db.applied = std::max(db.applied, position);
  }
  std::string read(const std::string& conn, const std::string& key) {
    database& db = conn == "primary" ? primary : replicas.at(conn);
    auto it = db.rows.find(key);
    return it == db.rows.end() ? "<none>" : it->second;
  }
};

}  // namespace

int main() {
  cluster db;
  outgrow::manual_clock clock;
  outgrow::read_write_splitter<std::string, outgrow::least_connections,
                               outgrow::manual_clock>
      router("primary", {{"replica-a"}, {"replica-b"}},
             {.default_consistency = outgrow::consistency::read_your_writes,
              .max_replication_lag = 10s},
             clock);

  // Both replicas start caught up with an old profile.
  const auto p0 = db.write("profile:42", "name=Ada, city=London");
  for (const char* r : {"replica-a", "replica-b"}) {
    db.replicate(r, p0);
    router.report_applied(r, p0);
  }
  router.report_primary_position(p0);

  outgrow::session_token alice;  // lives in Alice's HTTP session
  auto show = [&](const char* who, outgrow::session_token& session,
                  outgrow::consistency mode) {
    auto r = router.read(session, {.mode = mode});
    const std::string row = db.read(*r, "profile:42");
    fmt::print("  {:<6} reads ({:<16}) from {:<9} [{:<13}] -> {}\n", who, mode, *r,
               r.reason(), row);
    r.success();
  };

  fmt::print("1. Alice updates her profile (the write goes to the primary):\n");
  {
    auto w = router.write(alice);
    const auto position = db.write("profile:42", "name=Ada, city=Paris");
    fmt::print("  write -> {} [{}], commit position {}\n", *w, w.reason(), position);
    w.success(position);  // the session now requires this position
  }

  fmt::print("\n2. Replicas have not applied it yet:\n");
  show("Alice", alice, outgrow::consistency::eventual);  // what a naive split would do
  show("Alice", alice, outgrow::consistency::read_your_writes);
  outgrow::session_token bob;
  show("Bob", bob, outgrow::consistency::read_your_writes);

  fmt::print("\n3. replica-b applies position {}; replica-a stalls (lag 30 s):\n",
             alice.last_write_position);
  db.replicate("replica-b", alice.last_write_position);
  router.report_applied("replica-b", alice.last_write_position);
  router.report_lag("replica-b", 0s);
  router.report_lag("replica-a", 30s);  // over max_replication_lag = 10 s: skipped
  for (int i = 0; i < 2; ++i) show("Alice", alice, outgrow::consistency::read_your_writes);
  for (int i = 0; i < 2; ++i) show("Bob", bob, outgrow::consistency::read_your_writes);

  fmt::print("\n4. replica-a catches up (lag 5 s: back under 80 % of the limit):\n");
  db.replicate("replica-a", alice.last_write_position);
  router.report_applied("replica-a", alice.last_write_position);
  router.report_lag("replica-a", 5s);
  for (int i = 0; i < 2; ++i) show("Alice", alice, outgrow::consistency::read_your_writes);

  fmt::print("\n5. The primary goes down: writes fail clearly, reads continue:\n");
  router.mark_primary_down();
  {
    auto w = router.write(alice);
    fmt::print("  write -> {} (error: {})\n", w ? "routed" : "refused", w.reason());
  }
  show("Alice", alice, outgrow::consistency::read_your_writes);

  fmt::print("\n{}\n", router.metrics());
  for (const auto& e : router.endpoints()) {
    fmt::print("  {:<9} {:<7} applied={:<2} reads={} writes={} lag_excluded={}\n",
               e.connection, e.primary ? "primary" : "replica", e.applied_position, e.reads,
               e.writes, e.excluded_for_lag);
  }
  return 0;
}
