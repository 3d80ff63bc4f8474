#include <outgrow/routing/read_write_splitter.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

#include "catch.hpp"

using namespace std::chrono_literals;
using outgrow::consistency;
using outgrow::manual_clock;
using outgrow::route_error;
using outgrow::route_reason;
using outgrow::route_target;
using outgrow::session_token;
using outgrow::statement;

namespace {
using splitter =
    outgrow::read_write_splitter<std::string, outgrow::least_connections, manual_clock>;
using spec = outgrow::replica_spec<std::string>;

/// Routes a read, records success, returns (connection, reason).
std::pair<std::string, route_reason> read_once(splitter& db, session_token& s,
                                               outgrow::route_options o = {}) {
  auto r = db.read(s, o);
  REQUIRE(r);
  std::pair<std::string, route_reason> out{*r, r.reason()};
  r.success();
  return out;
}

// ---- the read-your-writes model ------------------------------------------------------

/// A primary and three replicas that apply the primary's writes in order, each after
/// a random lag; 100 sessions issue 100k random reads and writes.
struct model_result {
  std::uint64_t reads = 0, replica_reads = 0, stale_reads = 0, writes = 0;
  std::uint64_t stale_risk_metric = 0, session_ahead = 0;
};

model_result run_model(consistency mode) {
  constexpr int sessions = 100, keys = 64, ops = 100'000, replicas = 3;
  manual_clock clock;
  splitter db("primary", {{"r0"}, {"r1"}, {"r2"}}, {.default_consistency = mode}, clock);
  std::mt19937_64 rng(20261123);

  struct write_event {
    std::uint64_t position;
    int key;
    manual_clock::time_point apply_at;
  };
  std::vector<std::uint64_t> primary_value(keys, 0);  // version = position of last write
  struct replica_state {
    std::string name;
    std::vector<std::uint64_t> value = std::vector<std::uint64_t>(keys, 0);
    std::uint64_t applied = 0;
    std::deque<write_event> pending;
    manual_clock::time_point last_apply{};
  };
  std::vector<replica_state> rs(replicas);
  for (int r = 0; r < replicas; ++r)
    rs[static_cast<std::size_t>(r)].name = fmt::format("r{}", r);

  std::vector<session_token> tokens(sessions);
  std::vector<std::map<int, std::uint64_t>> own_writes(sessions);  // key -> version
  std::uint64_t position = 0;
  model_result out;

  for (int op = 0; op < ops; ++op) {
    clock.advance(std::chrono::microseconds(rng() % 200));
    // Replicas apply what is due, in order, and push their position.
    for (auto& r : rs) {
      bool moved = false;
      while (!r.pending.empty() && r.pending.front().apply_at <= clock.now()) {
        const auto& w = r.pending.front();
        r.value[static_cast<std::size_t>(w.key)] = w.position;
        r.applied = w.position;
        r.pending.pop_front();
        moved = true;
      }
      if (moved) db.report_applied(r.name, r.applied);
    }
    const auto s = static_cast<std::size_t>(rng() % sessions);
    if (rng() % 100 < 20) {  // a write
      const int key = static_cast<int>(rng() % keys);
      auto w = db.write(tokens[s]);
      REQUIRE(w);
      REQUIRE(w.target() == route_target::primary);
      const std::uint64_t p = ++position;
      primary_value[static_cast<std::size_t>(key)] = p;
      for (auto& r : rs) {
        // Lag: mostly 0-10 ms, sometimes (0.2 %) a 100 ms stall; applied in order.
        const auto lag =
            rng() % 1000 < 2 ? 100ms : std::chrono::microseconds(rng() % 10'000);
        const auto at = std::max(r.last_apply, clock.now() + lag);
        r.last_apply = at;
        r.pending.push_back({p, key, at});
      }
      own_writes[s][key] = p;
      w.success(p);
      ++out.writes;
      continue;
    }
    // A read: half the time of a key this session wrote.
    int key = static_cast<int>(rng() % keys);
    if (!own_writes[s].empty() && rng() % 2 == 0) {
      auto it = own_writes[s].begin();
      std::advance(it, static_cast<long>(rng() % own_writes[s].size()));
      key = it->first;
    }
    auto r = db.read(tokens[s]);
    REQUIRE(r);
    std::uint64_t seen = 0;
    if (r.target() == route_target::replica) {
      ++out.replica_reads;
      const auto idx = static_cast<std::size_t>((*r)[1] - '0');
      seen = rs[idx].value[static_cast<std::size_t>(key)];
    } else {
      seen = primary_value[static_cast<std::size_t>(key)];
    }
    r.success();
    ++out.reads;
    const auto own = own_writes[s].find(key);
    if (own != own_writes[s].end() && seen < own->second) ++out.stale_reads;
  }
  const auto m = db.metrics();
  out.stale_risk_metric = m.stale_risk_reads;
  out.session_ahead = m.session_ahead;
  CHECK(m.writes == out.writes);
  CHECK(m.reads_to_replicas == out.replica_reads);
  CHECK(m.reads_to_replicas + m.reads_to_primary == out.reads);
  return out;
}
}  // namespace

static_assert(outgrow::metrics_snapshot<outgrow::read_write_splitter_metrics>);
static_assert(outgrow::metrics_snapshot<outgrow::splitter_endpoint_metrics<std::string>>);
static_assert(outgrow::read_write_splitter_config{}.time_window == 2s);
static_assert(!outgrow::read_write_splitter_config{}.primary_accepts_reads);

TEST_CASE("read your writes model check never reads stale while replicas serve most reads",
          "[read_write_splitter]") {
  const model_result ryw = run_model(consistency::read_your_writes);
  const double replica_share =
      static_cast<double>(ryw.replica_reads) / static_cast<double>(ryw.reads);
  fmt::print(
      "read_your_writes: {} reads, {:.1f} % on replicas, {} stale, {} fell back "
      "(session ahead)\n",
      ryw.reads, 100.0 * replica_share, ryw.stale_reads, ryw.session_ahead);
  CHECK(ryw.reads + ryw.writes == 100'000);
  CHECK(ryw.stale_reads == 0);
  CHECK(replica_share >= 0.70);
  CHECK(ryw.session_ahead > 0);  // the check did have to fall back sometimes

  const model_result eventual = run_model(consistency::eventual);
  fmt::print(
      "eventual: {} reads, {} on replicas, {} stale reads of the session's own writes "
      "({} reads on a replica behind the session)\n",
      eventual.reads, eventual.replica_reads, eventual.stale_reads,
      eventual.stale_risk_metric);
  CHECK(eventual.stale_reads > 0);
  CHECK(eventual.stale_risk_metric >= eventual.stale_reads);
  CHECK(eventual.replica_reads == eventual.reads);
}

TEST_CASE("writes read_for_update and transactions go to the primary",
          "[read_write_splitter]") {
  manual_clock clock;
  splitter db("p", {{"r1"}, {"r2"}}, {}, clock);
  session_token s;
  auto w = db.route(statement::write, s);
  CHECK(*w == "p");
  CHECK(w.reason() == route_reason::write);
  CHECK(s.has_written());
  CHECK(s.position_pending);
  w.success(7);
  CHECK(s.last_write_position == 7);
  CHECK_FALSE(s.position_pending);
  CHECK(db.primary_position() == 7);

  session_token fresh;
  auto u = db.route(statement::read_for_update, fresh);
  CHECK(*u == "p");
  CHECK(u.reason() == route_reason::read_for_update);
  CHECK_FALSE(fresh.has_written());
  auto t = db.route(statement::read, fresh, {.in_transaction = true});
  CHECK(*t == "p");
  CHECK(t.reason() == route_reason::in_transaction);
  auto r = db.read(fresh);
  CHECK(r.target() == route_target::replica);
  CHECK(r.reason() == route_reason::replica);
}

TEST_CASE("read your writes waits for the session's position", "[read_write_splitter]") {
  manual_clock clock;
  splitter db("p", {{"r1"}, {"r2"}}, {}, clock);
  session_token s;
  db.write(s).success(100);
  CHECK(read_once(db, s) ==
        std::pair<std::string, route_reason>{"p", route_reason::session_ahead});
  db.report_applied("r2", 100);
  for (int i = 0; i < 5; ++i) CHECK(read_once(db, s).first == "r2");  // only r2 has it
  db.report_applied("r1", 150);
  std::set<std::string> seen;
  for (int i = 0; i < 6; ++i) seen.insert(read_once(db, s).first);
  CHECK(seen == std::set<std::string>{"r1", "r2"});
  // Another session has no requirement; eventual ignores it; strong never uses replicas.
  session_token other;
  CHECK(read_once(db, other).second == route_reason::replica);
  CHECK(read_once(db, s, {.mode = consistency::strong}) ==
        std::pair<std::string, route_reason>{"p", route_reason::strong});
  // A write whose position is unknown: primary for time_window, then the old position.
  db.write(s).success();
  CHECK(s.position_pending);
  CHECK(read_once(db, s).second == route_reason::recent_write);
  clock.advance(2s);
  CHECK(read_once(db, s).second == route_reason::replica);
}

TEST_CASE("a session carried by its position alone reads its writes in another process",
          "[read_write_splitter]") {
  manual_clock clock;
  splitter db("p", {{"r1"}, {"r2"}}, {}, clock);
  // The process that wrote sent position 100 in a cookie; this one never saw the write.
  session_token s = session_token::from_position(100);
  CHECK(s.has_written());
  CHECK_FALSE(session_token{}.has_written());
  CHECK(db.max_applied_position() == 0);
  CHECK(read_once(db, s) ==
        std::pair<std::string, route_reason>{"p", route_reason::session_ahead});
  db.report_applied("r1", 99);
  CHECK(db.max_applied_position() == 99);
  CHECK(read_once(db, s).second == route_reason::session_ahead);
  db.report_applied("r2", 100);
  CHECK(db.max_applied_position() == 100);
  for (int i = 0; i < 4; ++i) CHECK(read_once(db, s).first == "r2");
  // No time on this splitter's clock: time_window has nothing to wait for.
  CHECK(read_once(db, s, {.mode = consistency::time_window}).second ==
        route_reason::replica);
  // The session merged with a later local write keeps the stricter of both.
  session_token local;
  db.write(local).success(120);
  s.merge(local);
  CHECK(s.last_write_position == 120);
  CHECK(read_once(db, s).second == route_reason::session_ahead);
}

TEST_CASE("time_window mode reads from the primary for two seconds after a write",
          "[read_write_splitter]") {
  manual_clock clock;
  splitter db("p", {{"r1"}}, {.default_consistency = consistency::time_window}, clock);
  session_token s;
  CHECK(read_once(db, s).second == route_reason::replica);
  db.write(s).success(5);
  CHECK(read_once(db, s).second == route_reason::recent_write);
  clock.advance(1999ms);
  CHECK(read_once(db, s).second == route_reason::recent_write);
  clock.advance(1ms);
  CHECK(read_once(db, s).second == route_reason::replica);  // Rails: 2 s, then replicas
  CHECK(db.metrics().recent_write == 2);
}

TEST_CASE("max_replication_lag excludes a lagging replica with hysteresis",
          "[read_write_splitter]") {
  manual_clock clock;
  splitter db("p", {{"r1"}, {"r2"}, {"r3", 1.0, 30s}},
              {.default_consistency = consistency::eventual, .max_replication_lag = 10s},
              clock);
  session_token s;
  db.report_lag("r1", 11s);
  std::set<std::string> seen;
  for (int i = 0; i < 10; ++i) seen.insert(read_once(db, s).first);
  CHECK(seen == std::set<std::string>{"r2", "r3"});
  // Near the limit: stays out until <= 80 % of it (no flapping).
  db.report_lag("r1", 9s);
  CHECK(db.endpoints()[1].excluded_for_lag);
  db.report_lag("r1", 10s);
  CHECK(db.endpoints()[1].excluded_for_lag);
  db.report_lag("r1", 8s);
  CHECK_FALSE(db.endpoints()[1].excluded_for_lag);
  db.report_lag("r1", 10s);  // at the limit is not over it
  CHECK_FALSE(db.endpoints()[1].excluded_for_lag);
  // Per-replica limit: r3 tolerates 30 s.
  db.report_lag("r3", 20s);
  CHECK_FALSE(db.endpoints()[3].excluded_for_lag);
  auto m = db.metrics();
  CHECK(m.lag_exclusions == 1);
  CHECK(m.lag_readmissions == 1);

  // Position-based limit (pgpool delay_threshold, GitLab max_replication_difference).
  splitter bytes(
      "p", {{"r1"}, {"r2"}},
      {.default_consistency = consistency::eventual, .max_replication_lag_positions = 1000},
      clock);
  bytes.report_applied("r1", 5000);
  bytes.report_applied("r2", 5000);
  bytes.report_primary_position(6500);  // both 1500 behind: both out
  CHECK(bytes.metrics().replicas_excluded_for_lag == 2);
  auto r = bytes.read(s);
  CHECK(r.reason() == route_reason::no_usable_replica);
  CHECK(*r == "p");
  bytes.report_applied("r2", 5600);  // 900 behind: above 80 % of 1000, still out
  CHECK(bytes.metrics().replicas_excluded_for_lag == 2);
  bytes.report_applied("r2", 5800);  // 700 behind: back
  CHECK(bytes.metrics().replicas_excluded_for_lag == 1);
  CHECK(read_once(bytes, s).first == "r2");
}

TEST_CASE("no usable replica falls back to the primary or returns an error",
          "[read_write_splitter]") {
  manual_clock clock;
  splitter fail("p", {{"r1"}},
                {.default_consistency = consistency::eventual,
                 .max_replication_lag = 1s,
                 .no_usable_replica = outgrow::no_replica_policy::fail},
                clock);
  session_token s;
  fail.report_lag("r1", 5s);
  auto r = fail.read(s);
  CHECK_FALSE(r);
  CHECK(r.error() == route_error::no_usable_replica);
  CHECK(r.reason() == route_reason::no_usable_replica);
  CHECK(fail.metrics().errors_no_usable_replica == 1);
  // Writes are unaffected.
  CHECK(fail.write(s).target() == route_target::primary);

  // No replicas at all (allowed): reads use the primary by default.
  splitter lonely("p", {}, {}, clock);
  session_token fresh;
  CHECK(read_once(lonely, fresh) ==
        std::pair<std::string, route_reason>{"p", route_reason::no_usable_replica});
}

TEST_CASE("primary_accepts_reads adds the primary to the read pool",
          "[read_write_splitter]") {
  manual_clock clock;
  splitter db("p", {{"r1"}},
              {.default_consistency = consistency::eventual, .primary_accepts_reads = true},
              clock);
  session_token s;
  std::map<std::string, int> counts;
  for (int i = 0; i < 100; ++i) {
    auto r = db.read(s);
    ++counts[*r];
    if (*r == "p") CHECK(r.reason() == route_reason::primary_in_pool);
    r.success();
  }
  CHECK(counts["p"] == 50);
  CHECK(counts["r1"] == 50);
  CHECK(db.metrics().primary_in_pool == 50);
}

TEST_CASE("primary unavailable makes writes fail clearly and promotion takes over",
          "[read_write_splitter]") {
  manual_clock clock;
  splitter db("p", {{"r1"}, {"r2"}}, {.primary_failure_threshold = 3}, clock);
  session_token s;
  for (int i = 0; i < 3; ++i) db.write(s).failure();
  CHECK_FALSE(db.primary_available());
  auto w = db.write(s);
  CHECK_FALSE(w);
  CHECK(w.error() == route_error::primary_unavailable);
  CHECK(w.reason() == route_reason::primary_unavailable);
  CHECK(fmt::format("{}", w.reason()) == "primary_unavailable");
  // Reads that need the primary fail too; plain reads keep using replicas.
  CHECK(db.read(s, {.mode = consistency::strong}).error() ==
        route_error::primary_unavailable);
  session_token reader;
  CHECK(db.read(reader).target() == route_target::replica);
  CHECK(db.metrics().primary_failures == 1);
  db.mark_primary_up();
  CHECK(db.write(s).target() == route_target::primary);

  // Promotion callback: the most caught-up replica becomes the primary.
  db.report_applied("r1", 40);
  db.report_applied("r2", 90);
  std::string failed;
  db.on_primary_failure([&](const outgrow::primary_failure<std::string>& f) {
    failed = f.failed_primary;
    const auto best = std::max_element(f.replicas.begin(), f.replicas.end(),
                                       [](const auto& a, const auto& b) {
                                         return a.applied_position < b.applied_position;
                                       });
    return std::optional<std::string>(best->connection);
  });
  db.mark_primary_down();
  CHECK(failed == "p");
  CHECK(db.primary() == "r2");
  CHECK(db.primary_available());
  auto w2 = db.write(s);
  CHECK(*w2 == "r2");
  w2.success(91);
  const auto e = db.endpoints();
  REQUIRE(e.size() == 2);  // r2 left the read pool
  CHECK(e[1].connection == "r1");
  CHECK(db.metrics().promotions == 1);
  CHECK(read_once(db, s).second == route_reason::session_ahead);  // r1 is at 40
}

TEST_CASE("replica failures feed the balancer's passive health", "[read_write_splitter]") {
  manual_clock clock;
  splitter db("p", {{"r1"}, {"r2"}},
              {.default_consistency = consistency::eventual,
               .replicas = {.consecutive_failures = 3, .max_ejection_fraction = 0.5}},
              clock);
  session_token s;
  int failed = 0;
  while (failed < 3) {
    auto r = db.read(s);
    if (*r == "r1") {
      r.failure();
      ++failed;
    } else {
      r.success();
    }
  }
  CHECK(db.endpoints()[1].status == outgrow::endpoint_status::ejected);
  for (int i = 0; i < 5; ++i) CHECK(read_once(db, s).first == "r2");
  CHECK(db.replica_pool_metrics().ejections == 1);
  clock.advance(30s);
  std::set<std::string> seen;
  for (int i = 0; i < 4; ++i) seen.insert(read_once(db, s).first);
  CHECK(seen.count("r1") == 1);
}

TEST_CASE("replication state is polled on an asio timer", "[read_write_splitter]") {
  boost::asio::io_context io;
  outgrow::read_write_splitter<std::string> db(
      "p", {{"r1"}, {"r2"}}, {.max_replication_lag = 5s, .poll_interval = 1ms});
  std::atomic<int> polls{0};
  db.start_polling(io.get_executor(), [&](const std::string& c) {
    if (c == "p") {
      polls.fetch_add(1);
      return outgrow::replication_report{.applied_position = 500};
    }
    if (c == "r1") return outgrow::replication_report{.applied_position = 500, .lag = 0s};
    if (polls.load() > 1) throw std::runtime_error("r2 unreachable");
    return outgrow::replication_report{.applied_position = 100, .lag = 60s};
  });
  while (polls.load() < 2) io.run_one();
  db.stop_polling();
  CHECK(db.primary_position() == 500);
  const auto e = db.endpoints();
  CHECK(e[1].applied_position == 500);
  CHECK(e[2].applied_position == 100);
  CHECK(e[2].excluded_for_lag);
  session_token s;
  db.write(s).success(500);
  auto r = db.read(s);
  CHECK(*r == "r1");
}

TEST_CASE("bad splitter input throws config_error", "[read_write_splitter]") {
  using outgrow::config_error;
  CHECK_THROWS_WITH(
      splitter(std::nullopt, {{"r1"}}),
      "read_write_splitter: primary must be set (a splitter needs a primary), "
      "got none");
  CHECK_THROWS_AS(splitter("p", {{"r1"}, {"r1"}}), config_error);
  CHECK_THROWS_AS(splitter("p", {{"p"}}), config_error);
  CHECK_THROWS_AS(splitter("p", {{"r1", 0.0}}), config_error);
  CHECK_THROWS_AS(splitter("p", {{"r1", -2.0}}), config_error);
  CHECK_THROWS_AS(splitter("p", {}, {.lag_readmit_fraction = 1.5}), config_error);
  CHECK_THROWS_AS(splitter("p", {}, {.primary_read_weight = 0.0}), config_error);
  CHECK_THROWS_AS(splitter("p", {}, {.poll_interval = 0s}), config_error);
  CHECK_THROWS_AS(splitter("p", {}, {.replicas = {.panic_threshold = 2.0}}), config_error);
  // The nested replica balancer's checks name the splitter and the field's path.
  CHECK_THROWS_WITH(
      splitter("p", {}, {.replicas = {.panic_threshold = 2.0}}),
      "read_write_splitter: replicas.panic_threshold must be in [0, 1], got 2");
  CHECK_THROWS_WITH(
      splitter("p", {},
               {.replicas = {.base_ejection_time = 60s, .max_ejection_time = 30s}}),
      "read_write_splitter: replicas.max_ejection_time must be in [1min, 24h] (not below "
      "base_ejection_time), got 30s");
  CHECK_THROWS_WITH(splitter("p", {}, {.replicas = {.seed = 42}}),
                    "read_write_splitter: replicas.seed must be unset (the default) under "
                    "least_connections: the policy draws no random numbers, got 42");
  CHECK_THROWS_WITH(splitter("p", {}, {.replicas = {.ring_vnodes = 10}}),
                    "read_write_splitter: replicas.ring_vnodes must be 160 (the default) "
                    "under least_connections: only key_hash reads it, got 10");
  CHECK_THROWS_WITH(splitter("p", {}, {.replicas = {.slow_start_steps = 4}}),
                    "read_write_splitter: replicas.slow_start_steps must be 10 (the "
                    "default) when slow_start_window = 0s: slow start is off and never "
                    "reads it, got 4");
  // A weight for a primary that never joins the read pool is never read.
  CHECK_THROWS_WITH(splitter("p", {}, {.primary_read_weight = 2.0}),
                    "read_write_splitter: primary_read_weight must be 1 (the default) when "
                    "primary_accepts_reads = false: the primary never joins the read pool "
                    "then, got 2");
  CHECK_NOTHROW(
      splitter("p", {}, {.primary_accepts_reads = true, .primary_read_weight = 2.0}));
  splitter db("p", {{"r1"}});
  CHECK_THROWS_AS(db.add_replica({"r1"}), config_error);
  CHECK_THROWS_AS(db.remove_replica("zz"), config_error);
}

TEST_CASE("splitter metrics and endpoints print with fmt", "[read_write_splitter]") {
  manual_clock clock;
  splitter db("p", {{"r1"}}, {}, clock);
  session_token s;
  db.write(s).success(3);
  read_once(db, s);
  const std::string m = fmt::format("{}", db.metrics());
  CHECK(
      m.rfind(
          "read_write_splitter_metrics{reads_to_replicas=0, reads_to_primary=1, writes=1,",
          0) == 0);
  const std::string e = fmt::format("{}", db.endpoints()[0]);
  CHECK(e.rfind("splitter_endpoint{connection=p, role=primary,", 0) == 0);
  CHECK(fmt::format("{}", consistency::read_your_writes) == "read_your_writes");

  session_token a{.last_write_position = 5, .last_write_ns = 10};
  const session_token b{
      .last_write_position = 3, .last_write_ns = 20, .position_pending = true};
  a.merge(b);
  CHECK(a == session_token{
                 .last_write_position = 5, .last_write_ns = 20, .position_pending = true});
}

TEST_CASE("concurrent routing with lag reports and topology changes is safe",
          "[read_write_splitter]") {
  outgrow::read_write_splitter<std::string, outgrow::power_of_two_choices> db(
      "p", {{"r1"}, {"r2"}}, {.max_replication_lag = 5s});
  std::atomic<bool> stop{false};
  std::atomic<int> ready{0};
  constexpr int workers = 3;
  std::vector<int> wrong(workers, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < workers; ++t) {
    threads.emplace_back([&, t] {
      session_token s;
      std::uint64_t pos = 0;
      bool counted = false;
      while (!stop.load(std::memory_order_relaxed)) {
        if (pos % 4 == 0) {
          auto w = db.write(s);
          if (w && *w != "p") ++wrong[static_cast<std::size_t>(t)];
          w.success(++pos);
        } else {
          ++pos;
          auto r = db.read(s);
          if (r) r.success();
        }
        if (!counted) {
          counted = true;
          ready.fetch_add(1);
        }
      }
    });
  }
  while (ready.load() < workers) std::this_thread::yield();
  for (int i = 0; i < 300; ++i) {
    db.report_applied("r1", static_cast<std::uint64_t>(i) * 10);
    db.report_lag("r2", std::chrono::seconds(i % 9));
    db.add_replica({"r3"});
    db.remove_replica("r3");
  }
  stop = true;
  for (auto& t : threads) t.join();
  for (const int w : wrong) CHECK(w == 0);
  CHECK(db.replica_pool_metrics().in_flight == 0);
}
