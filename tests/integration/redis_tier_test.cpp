// Integration tests of outgrow::redis_tier against a real redis-server (started on a free
// loopback port without persistence by tests/support/redis_server.hpp).
//
// No test sleeps to make time pass, with one documented exception: the TTL test waits
// (bounded, polling) for the real server to expire a 20 ms key. A hung server is
// simulated with SIGSTOP / SIGCONT, so timeouts are checked by behaviour (the call
// returns a miss while the server is frozen) rather than by measuring time.
#include <outgrow/cache/cache.hpp>
#include <outgrow/cache/tiered_cache.hpp>
#include <outgrow/cache/write_policy.hpp>
#include <outgrow/core/clock.hpp>
#include <outgrow/redis/redis_tier.hpp>
#include <outgrow/resilience/circuit_breaker.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"
#include "map_store.hpp"
#include "redis_server.hpp"

using namespace std::chrono_literals;
using namespace std::string_literals;

namespace {

outgrow::redis_tier_config config_for(const outgrow_test::redis_server& server,
                                      std::string prefix) {
  // Generous timeouts: sanitizer builds are slow, and only the SIGSTOP tests want
  // timeouts to fire (they set their own).
  // The seed is the tier's former fixed default: reconnect delays as before.
  return {.connection = {.host = server.host(),
                         .port = server.port(),
                         .connect_timeout = 2s,
                         .command_timeout = 2s,
                         .seed = 0x0E15'7ED1'5EEDULL},
          .key_prefix = std::move(prefix)};
}

std::string raw_get(outgrow_test::redis_server& server, const std::string& key) {
  auto r = server.command("GET %b", key.data(), key.size());
  return std::string(outgrow_test::reply_text(*r));
}

long long pttl(outgrow_test::redis_server& server, const std::string& key) {
  auto r = server.command("PTTL %b", key.data(), key.size());
  return r->integer;
}

enum class color : std::uint8_t { red = 1, green = 2, blue = 200 };

struct point {
  std::int32_t x;
  std::int32_t y;
  double weight;
  friend bool operator==(const point&, const point&) = default;
};

template <class Key, class Value>
void check_round_trip(outgrow_test::redis_server& server, const Key& key,
                      const Value& value,
                      std::optional<std::string> expected_bytes = std::nullopt) {
  outgrow::redis_tier<Key, Value> tier(config_for(server, "rt:"));
  REQUIRE(tier.put(key, value));
  const std::optional<Value> back = tier.get(key);
  REQUIRE(back.has_value());
  if constexpr (std::is_floating_point_v<Value>) {
    if (std::isnan(value)) {
      CHECK(std::isnan(*back));
    } else {
      CHECK(*back == value);
    }
  } else {
    CHECK(*back == value);
  }
  if (expected_bytes) CHECK(raw_get(server, tier.redis_key(key)) == *expected_bytes);
  CHECK(tier.metrics().decode_errors == 0);
  tier.clear();
}

/// A user codec for a type that is not trivially copyable: "n|a|b|c" with '|' escaped.
struct tags {
  std::string name;
  std::vector<std::string> items;
  friend bool operator==(const tags&, const tags&) = default;
};

struct tags_codec {
  void encode(const std::string& k, std::string& out) const { out += k; }
  void encode(const tags& t, std::string& out) const {
    out += t.name;
    for (const auto& i : t.items) {
      out += '|';
      out += i;
    }
  }
  std::optional<tags> decode(std::string_view in, std::type_identity<tags>) const {
    if (in.empty() || in.front() == '|') return std::nullopt;
    tags t;
    std::size_t at = in.find('|');
    t.name = std::string(in.substr(0, at));
    while (at != std::string_view::npos) {
      const std::size_t next = in.find('|', at + 1);
      t.items.emplace_back(in.substr(
          at + 1, next == std::string_view::npos ? std::string_view::npos : next - at - 1));
      at = next;
    }
    return t;
  }
};

using outgrow_test::map_store;

/// A raw-bytes value whose bool member the codec cannot check by itself: the
/// redis_validate hook does (reading the bool through its bytes: loading a bool that
/// holds 2 would itself be undefined behaviour).
struct flagged {
  std::int32_t count;
  bool enabled;
  friend bool operator==(const flagged&, const flagged&) = default;
};
bool redis_validate(const flagged& f) {
  unsigned char b = 0;
  std::memcpy(&b, &f.enabled, 1);
  return b <= 1;
}

/// Same size and alignment as `point`, another type.
struct other_point {
  std::int32_t a;
  std::int32_t b;
  double c;
};

enum class power : std::uint8_t { off = 0, on = 1 };
bool redis_validate(power p) {
  return p == power::off || p == power::on;
}

struct frozen {  // SIGSTOP the server for a scope (SIGCONT on exit, also on failure)
  explicit frozen(pid_t p) : pid(p) { ::kill(pid, SIGSTOP); }
  ~frozen() { ::kill(pid, SIGCONT); }
  pid_t pid;
};

}  // namespace

TEST_CASE("redis_tier round-trips every default codec type", "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  check_round_trip<std::string, std::string>(server, "user:42", "Ada", "Ada"s);
  check_round_trip<std::string, std::string>(server, "\0bin\xff"s, "\0\x01\x02\xff"s,
                                             "\0\x01\x02\xff"s);
  check_round_trip<std::string, std::string>(server, "empty", "", ""s);
  check_round_trip<std::int64_t, std::int64_t>(
      server, -7, std::numeric_limits<std::int64_t>::min(), "-9223372036854775808"s);
  check_round_trip<int, std::uint64_t>(
      server, 42, std::numeric_limits<std::uint64_t>::max(), "18446744073709551615"s);
  check_round_trip<int, int>(server, 0, -12345, "-12345"s);
  check_round_trip<int, double>(server, 1, 0.1, "0.1"s);
  check_round_trip<int, double>(server, 2, -1e300, "-1e+300"s);
  check_round_trip<int, double>(server, 3, std::numeric_limits<double>::infinity(), "inf"s);
  check_round_trip<int, double>(server, 4, std::numeric_limits<double>::quiet_NaN());
  check_round_trip<int, float>(server, 5, 3.25F, "3.25"s);
  check_round_trip<int, bool>(server, 6, true, "1"s);
  check_round_trip<int, bool>(server, 7, false, "0"s);
  check_round_trip<int, char>(server, 8, 'x', "x"s);
  check_round_trip<int, color>(server, 9, color::blue, "200"s);
  check_round_trip<int, point>(server, 10, point{-3, 7, 2.5});
  check_round_trip<point, std::string>(server, point{1, 2, 0.5}, "keyed by a struct");
  check_round_trip<color, std::int16_t>(server, color::green, std::int16_t{-300}, "-300"s);

  // Keys carry the prefix and the codec's encoding: readable for numbers.
  outgrow::redis_tier<int, std::string> tier(config_for(server, "users:"));
  CHECK(tier.redis_key(42) == "users:42");
}

TEST_CASE("redis_tier treats undecodable values as misses", "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  outgrow::redis_tier<std::string, int> tier(config_for(server, "bad:"));
  (void)server.command("SET %s %s", "bad:k", "not-a-number");
  (void)server.command("SET %s %s", "bad:k2", "12x");
  CHECK_FALSE(tier.get("k"));
  CHECK_FALSE(tier.get("k2"));
  const auto s = tier.metrics();
  CHECK(s.decode_errors == 2);
  CHECK(s.misses == 2);
  CHECK(s.failed_reads == 0);  // the server answered: not a failure
}

TEST_CASE("redis_tier rejects foreign and corrupt raw-bytes values",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  outgrow::redis_tier<std::string, point> points(config_for(server, "pt:"));
  REQUIRE(points.put("good", point{1, 2, 3.5}));
  CHECK(points.get("good") == point{1, 2, 3.5});
  const std::string good = raw_get(server, points.redis_key("good"));
  CHECK(good.size() == 10 + sizeof(point));  // magic, codec id, fingerprint, bytes

  // The right size for the struct itself, but no header: foreign bytes.
  (void)server.command("SET %s %s", "pt:plain", "abcdefghabcdefgh");
  CHECK_FALSE(points.get("plain"));
  // Written by a tier of another type with the same size and alignment.
  outgrow::redis_tier<std::string, other_point> others(config_for(server, "pt:"));
  REQUIRE(others.put("other", other_point{1, 2, 3.5}));
  CHECK_FALSE(points.get("other"));
  // A truncated and a corrupted header.
  const std::string cut = good.substr(0, good.size() - 1);
  (void)server.command("SET %s %b", "pt:cut", cut.data(), cut.size());
  CHECK_FALSE(points.get("cut"));
  std::string bad_magic = good;
  bad_magic[0] = 'x';
  (void)server.command("SET %s %b", "pt:magic", bad_magic.data(), bad_magic.size());
  CHECK_FALSE(points.get("magic"));
  auto s = points.metrics();
  CHECK(s.decode_errors == 4);
  CHECK(s.hits == 1);
  CHECK(s.failed_reads == 0);
  // Left alone (not deleted): the next put overwrites it, or its TTL expires it.
  CHECK(raw_get(server, "pt:plain") == "abcdefghabcdefgh");

  // A bool member holding 2: the header is right, the hook rejects it.
  outgrow::redis_tier<std::string, flagged> flags(config_for(server, "fl:"));
  REQUIRE(flags.put("f", flagged{7, true}));
  CHECK(flags.get("f") == flagged{7, true});
  std::string bytes = raw_get(server, flags.redis_key("f"));
  bytes[10 + offsetof(flagged, enabled)] = 2;
  (void)server.command("SET %s %b", "fl:f", bytes.data(), bytes.size());
  CHECK_FALSE(flags.get("f"));
  CHECK(flags.metrics().decode_errors == 1);

  // An enum with two enumerators reading 7.
  outgrow::redis_tier<std::string, power> powers(config_for(server, "pw:"));
  REQUIRE(powers.put("p", power::on));
  CHECK(powers.get("p") == power::on);
  (void)server.command("SET %s %s", "pw:p", "7");
  CHECK_FALSE(powers.get("p"));
  CHECK(powers.metrics().decode_errors == 1);
}

TEST_CASE("redis_tier calls a codec's validate hook after decoding",
          "[redis_tier][integration]") {
  struct positive_codec : outgrow::redis_default_codec {
    using redis_default_codec::decode;
    using redis_default_codec::encode;
    bool validate(const int& v) const { return v > 0; }
  };
  outgrow_test::redis_server server;
  outgrow::redis_tier<std::string, int, positive_codec> tier(config_for(server, "pos:"));
  REQUIRE(tier.put("a", 5));
  REQUIRE(tier.put("b", -5));
  CHECK(tier.get("a") == 5);
  CHECK_FALSE(tier.get("b"));
  CHECK(tier.metrics().decode_errors == 1);
}

TEST_CASE("redis_tier round-trips a user codec", "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  outgrow::redis_tier<std::string, tags, tags_codec> tier(config_for(server, "tags:"));
  const tags t{"fruit", {"apple", "pear", ""}};
  REQUIRE(tier.put("a", t));
  CHECK(tier.get("a") == t);
  CHECK(raw_get(server, "tags:a") == "fruit|apple|pear|");
  (void)server.command("SET %s %s", "tags:broken", "|no-name");
  CHECK_FALSE(tier.get("broken"));
  CHECK(tier.metrics().decode_errors == 1);
}

TEST_CASE("redis_tier sets TTLs with PX and expired keys are misses",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  auto config = config_for(server, "ttl:");
  config.default_ttl = 90s;
  outgrow::redis_tier<std::string, std::string> tier(config);

  REQUIRE(tier.put("default", "v"));
  CHECK(pttl(server, "ttl:default") > 80'000);
  CHECK(pttl(server, "ttl:default") <= 90'000);

  REQUIRE(tier.put("explicit", "v", 1500ms));
  CHECK(pttl(server, "ttl:explicit") > 0);
  CHECK(pttl(server, "ttl:explicit") <= 1500);

  REQUIRE(tier.put("sub-ms", "v", 10us));  // rounded up to 1 ms, never "no expiry"
  CHECK(pttl(server, "ttl:sub-ms") <= 1);

  CHECK_THROWS_AS(tier.put("zero", "v", 0ns), outgrow::config_error);

  outgrow::redis_tier<std::string, std::string> forever(config_for(server, "ttl:"));
  REQUIRE(forever.put("none", "v"));
  CHECK(pttl(server, "ttl:none") == -1);

  // Expiry itself is the server's: wait (bounded, 5 s) for a 20 ms key to go. This is
  // the only test waiting for real time, because expiry is Redis's clock, not ours.
  REQUIRE(tier.put("short", "v", 20ms));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  bool expired = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!tier.get("short")) {
      expired = true;
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  CHECK(expired);
}

TEST_CASE("redis_tier get_many and put_many batch across max_batch",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  auto config = config_for(server, "batch:");
  config.max_batch = 7;
  outgrow::redis_tier<int, std::string> tier(config);

  std::vector<std::pair<int, std::string>> items;
  for (int i = 0; i < 50; i += 2) items.emplace_back(i, fmt::format("value-{}", i));
  CHECK(tier.put_many(items, 60s) == items.size());
  CHECK(pttl(server, "batch:10") > 0);

  std::vector<int> keys(50);
  for (int i = 0; i < 50; ++i) keys[static_cast<std::size_t>(i)] = i;
  const auto values = tier.get_many(keys);
  REQUIRE(values.size() == keys.size());
  for (int i = 0; i < 50; ++i) {
    INFO("key " << i);
    const auto& v = values[static_cast<std::size_t>(i)];
    if (i % 2 == 0) {
      REQUIRE(v.has_value());
      CHECK(*v == fmt::format("value-{}", i));
    } else {
      CHECK_FALSE(v.has_value());
    }
  }
  const auto s = tier.metrics();
  CHECK(s.hits == 25);
  CHECK(s.misses == 25);
  CHECK(s.puts == 25);
  CHECK(s.failed_reads == 0);
  CHECK(tier.get_many(std::span<const int>{}).empty());
}

TEST_CASE("redis_tier erase and clear stay inside the key prefix",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  outgrow::redis_tier<std::string, std::string> a(config_for(server, "a*[x]:"));
  outgrow::redis_tier<std::string, std::string> b(config_for(server, "b:"));
  (void)server.command("SET %s %s", "foreign", "1");
  (void)server.command("SET %s %s", "a-not-ours", "1");  // would match an unescaped a*
  for (int i = 0; i < 2500; ++i) {                       // more than one SCAN page
    REQUIRE(a.put(std::to_string(i), "x"));
  }
  REQUIRE(b.put("1", "y"));
  CHECK(a.size() == 2500);
  CHECK(b.size() == 1);

  CHECK(a.erase("7"));
  CHECK_FALSE(a.erase("7"));
  CHECK(a.metrics().erased == 1);
  CHECK(a.size() == 2499);

  a.clear();
  CHECK(a.size() == 0);
  CHECK(b.get("1") == "y");
  CHECK(raw_get(server, "foreign") == "1");
  CHECK(raw_get(server, "a-not-ours") == "1");
  CHECK(a.metrics().failed_writes == 0);
}

TEST_CASE("redis_tier namespaces never overlap, even when one prefix extends another",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  outgrow::redis_tier<std::string, int> a(config_for(server, "app:"));
  outgrow::redis_tier<std::string, int> b(config_for(server, "app:v2:"));
  outgrow::redis_tier<std::string, int> all(config_for(server, ""));
  REQUIRE(a.put("v2:count", 1));  // would be "app:v2:count" unescaped
  REQUIRE(a.put("100%", 4));
  CHECK(a.redis_key("v2:count") == "app:v2%3Acount");
  CHECK(a.redis_key("100%") == "app:100%25");
  CHECK_FALSE(b.get("count"));  // not A's value
  REQUIRE(b.put("count", 2));
  REQUIRE(all.put("count", 3));
  CHECK(a.get("v2:count") == 1);
  CHECK(a.get("100%") == 4);
  CHECK(b.get("count") == 2);
  CHECK(all.get("count") == 3);
  CHECK(a.size() == 2);
  CHECK(b.size() == 1);
  CHECK(all.size() == 1);
  a.clear();  // SCAN MATCH app:* also sees app:v2:count, which is B's
  CHECK(a.size() == 0);
  CHECK(b.get("count") == 2);
  CHECK(all.get("count") == 3);
  all.clear();  // every key without ':'
  CHECK(b.get("count") == 2);
  CHECK(all.size() == 0);
  CHECK_THROWS_AS((outgrow::redis_tier<std::string, int>({.key_prefix = "app"})),
                  outgrow::config_error);
  CHECK_THROWS_AS((outgrow::redis_tier<std::string, int>({.key_prefix = "app:v2"})),
                  outgrow::config_error);
}

TEST_CASE("redis_tier pool serves 8 threads", "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  auto config = config_for(server, "pool:");
  config.pool_size = 3;
  config.pool_timeout = 30s;
  outgrow::redis_tier<std::string, std::string> tier(config);

  constexpr int threads = 8;
  constexpr int per_thread = 300;
  std::array<int, threads> wrong{};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&tier, &wrong, t] {
      for (int i = 0; i < per_thread; ++i) {
        const std::string key = fmt::format("{}:{}", t, i);
        const std::string value = fmt::format("v{}-{}", t, i);
        if (!tier.put(key, value)) ++wrong[static_cast<std::size_t>(t)];
        if (tier.get(key) != value) ++wrong[static_cast<std::size_t>(t)];
      }
    });
  }
  for (auto& w : workers) w.join();
  for (int t = 0; t < threads; ++t) CHECK(wrong[static_cast<std::size_t>(t)] == 0);
  const auto s = tier.metrics();
  CHECK(s.puts == threads * per_thread);
  CHECK(s.hits == threads * per_thread);
  CHECK(s.pool_timeouts == 0);
  CHECK(s.transport_errors == 0);
  CHECK(s.open_connections <= 3);
  CHECK(s.connects <= 3);
  CHECK(tier.size() == threads * per_thread);
}

TEST_CASE("redis_tier turns a killed server into misses and reconnects after restart",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;  // drives the reconnect backoff
  auto config = config_for(server, "kill:");
  config.pool_size = 1;
  config.connection.reconnect_backoff = outgrow::full_jitter_backoff(1s, 1s);
  outgrow::redis_tier<std::string, std::string, outgrow::redis_default_codec,
                      outgrow::no_breaker, outgrow::manual_clock>
      tier(config, {}, clock);

  REQUIRE(tier.put("k", "v1"));
  REQUIRE(tier.get("k") == "v1");

  server.kill();
  CHECK_FALSE(tier.get("k"));  // the open connection fails (EOF / reset)
  auto s = tier.metrics();
  CHECK(s.transport_errors == 1);
  CHECK(s.failed_reads == 1);
  CHECK(s.open_connections == 0);

  CHECK_FALSE(tier.get("k"));  // reconnect attempt: refused
  s = tier.metrics();
  CHECK(s.connect_failures == 1);

  // Within the backoff, calls do no I/O at all.
  for (int i = 0; i < 10; ++i) CHECK_FALSE(tier.get("k"));
  CHECK_FALSE(tier.put("k", "v2"));  // failed write: remembered for repair
  CHECK_FALSE(tier.erase("gone"));
  s = tier.metrics();
  CHECK(s.connect_failures == 1);
  CHECK(s.short_circuited == 12);
  CHECK(s.rejected_puts == 1);
  CHECK(s.failed_writes == 2);
  CHECK(s.repair_pending == 2);
  CHECK(s.misses == 12);

  server.restart();            // same port, empty data set
  CHECK_FALSE(tier.get("k"));  // still backing off: not even tried
  CHECK(tier.metrics().short_circuited == 13);

  clock.advance(1s);
  CHECK_FALSE(tier.get("k"));  // reconnects; repairs first; the key is absent
  s = tier.metrics();
  CHECK(s.connects == 2);
  CHECK(s.repaired == 2);
  CHECK(s.repair_pending == 0);
  REQUIRE(tier.put("k", "v3"));
  CHECK(tier.get("k") == "v3");
  CHECK(tier.ping());
  fmt::print("after kill and restart: {}\n", tier.metrics());
}

TEST_CASE("redis_tier repairs a key whose write was short-circuited",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  outgrow::circuit_breaker<> breaker;
  outgrow::redis_tier<std::string, std::string, outgrow::redis_default_codec,
                      outgrow::circuit_breaker<>>
      tier(config_for(server, "repair:"), breaker);
  REQUIRE(tier.put("k", "old"));
  breaker.force_open();
  CHECK_FALSE(tier.put("k", "new"));  // never reached Redis, which still holds "old"
  CHECK(raw_get(server, "repair:k") == "old");
  CHECK(tier.metrics().repair_pending == 1);
  breaker.reset();
  // The next call repairs before anything else: the stale "old" is never served.
  CHECK_FALSE(tier.get("k"));
  CHECK(tier.metrics().repaired == 1);
}

TEST_CASE("redis_tier times out on a frozen server instead of waiting for it",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  auto config = config_for(server, "slow:");
  config.connection.connect_timeout = 100ms;
  config.connection.command_timeout = 100ms;
  config.pool_size = 1;
  outgrow::redis_tier<std::string, std::string> tier(config);
  REQUIRE(tier.put("k", "v"));
  {
    const frozen stopped(server.pid());
    // The server would answer "v" once resumed; a miss proves the call gave up first.
    CHECK_FALSE(tier.get("k"));
    CHECK(tier.metrics().transport_errors == 1);
    CHECK(tier.metrics().open_connections == 0);
  }
  CHECK(tier.get("k") == "v");  // a fresh connection; the late reply was never read
  CHECK(tier.metrics().connects == 2);
}

TEST_CASE("redis_tier enforces max_value_size on writes and reads",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  auto config = config_for(server, "big:");
  config.max_value_size = 1 << 20;
  outgrow::redis_tier<std::string, std::string> tier(config);
  REQUIRE(tier.put("k", "old"));
  // A put over the limit is rejected and deletes the older value it would replace.
  CHECK_FALSE(tier.put("k", std::string((1 << 20) + 1, 'x')));
  CHECK_FALSE(tier.get("k"));
  auto s = tier.metrics();
  CHECK(s.oversized == 1);
  CHECK(s.rejected_puts == 1);
  CHECK(s.transport_errors == 0);
  CHECK(tier.put("k", std::string(1 << 20, 'x')));  // at the limit: fine
  CHECK(tier.get("k")->size() == 1 << 20);

  // A value written by someone else, over the limit: a decode error, not a hit; the
  // read stops buffering at the limit and drops the connection (the rest is unread).
  const std::string huge(4 << 20, 'y');
  (void)server.command("SET %s %b", "big:huge", huge.data(), huge.size());
  CHECK_FALSE(tier.get("huge"));
  s = tier.metrics();
  CHECK(s.oversized == 2);
  CHECK(s.decode_errors == 1);
  CHECK(s.failed_reads == 0);
  CHECK(tier.get("k")->size() == 1 << 20);  // the next call reconnects
  // In a batch, each element is checked: the small one is still a hit.
  const std::string over((1 << 20) + 100, 'z');
  (void)server.command("SET %s %b", "big:over", over.data(), over.size());
  REQUIRE(tier.put("small", "s"));
  const std::vector<std::string> keys = {"small", "over"};
  const auto values = tier.get_many(keys);
  CHECK(values[0] == "s");
  CHECK_FALSE(values[1]);
  s = tier.metrics();
  CHECK(s.oversized == 3);
  CHECK(s.decode_errors == 2);
  CHECK(s.failed_reads == 0);
  // put_many rejects the oversized item only.
  const std::vector<std::pair<std::string, std::string>> items = {
      {"a", "1"}, {"b", std::string((1 << 20) + 1, 'b')}};
  CHECK(tier.put_many(items) == 1);
  CHECK(tier.metrics().oversized == 4);
  CHECK_THROWS_AS((outgrow::redis_tier<std::string, std::string>({.max_value_size = 0})),
                  outgrow::config_error);
  CHECK_THROWS_AS(
      (outgrow::redis_tier<std::string, std::string>({.max_value_size = (512U << 20) + 1})),
      outgrow::config_error);
}

namespace {
/// A TCP proxy in front of the real server that forwards requests at once and replies
/// slowly (chunk bytes per `every`): a slow link, where each socket read gets data well
/// within the socket timeout. The pacing sleeps model the link; the test measures how
/// long the tier waits, it does not wait for time to pass.
class trickle_proxy {
 public:
  trickle_proxy(int target_port, std::size_t chunk, std::chrono::milliseconds every)
      : target_(target_port), chunk_(chunk), every_(every) {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(listen_, reinterpret_cast<const sockaddr*>(&addr), len) == 0);
    REQUIRE(::getsockname(listen_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    REQUIRE(::listen(listen_, 4) == 0);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { serve(); });
  }
  trickle_proxy(const trickle_proxy&) = delete;
  trickle_proxy& operator=(const trickle_proxy&) = delete;
  ~trickle_proxy() {
    stop_ = true;
    ::shutdown(listen_, SHUT_RDWR);
    {
      std::lock_guard lock(mutex_);
      for (const int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    acceptor_.join();
    for (auto& t : pumps_) t.join();
    for (const int fd : fds_) ::close(fd);
    ::close(listen_);
  }
  [[nodiscard]] int port() const { return port_; }

 private:
  void serve() {
    while (!stop_) {
      const int client = ::accept(listen_, nullptr, nullptr);
      if (client < 0) return;
      const int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<std::uint16_t>(target_));
      ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
      (void)::connect(upstream, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
      std::lock_guard lock(mutex_);
      fds_.push_back(client);
      fds_.push_back(upstream);
      pumps_.emplace_back(
          [this, client, upstream] { pump(client, upstream, 1 << 16, {}); });
      pumps_.emplace_back(
          [this, client, upstream] { pump(upstream, client, chunk_, every_); });
    }
  }
  void pump(int from, int to, std::size_t chunk, std::chrono::milliseconds every) {
    std::vector<char> buf(chunk);
    while (!stop_) {
      const auto n = ::read(from, buf.data(), buf.size());
      if (n <= 0) break;
      if (::send(to, buf.data(), static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) break;
      if (every.count() > 0) std::this_thread::sleep_for(every);
    }
    ::shutdown(to, SHUT_RDWR);
    ::shutdown(from, SHUT_RDWR);
  }
  int target_;
  std::size_t chunk_;
  std::chrono::milliseconds every_;
  int listen_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<int> fds_;
  std::thread acceptor_;
  std::vector<std::thread> pumps_;
};
}  // namespace

TEST_CASE("redis_tier bounds a whole command by command_timeout, not each socket read",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  const std::string value(256 << 10, 'v');  // 64 chunks of 4 KiB: ~640 ms on the link
  (void)server.command("SET %s %b", "slow:big", value.data(), value.size());
  (void)server.command("SET %s %s", "slow:small", "s");
  trickle_proxy link(server.port(), 4096, 10ms);
  auto config = config_for(server, "slow:");
  config.connection.port = link.port();
  config.connection.command_timeout = 100ms;
  config.pool_size = 1;
  outgrow::redis_tier<std::string, std::string> tier(config);
  REQUIRE(tier.get("small") == "s");  // the link works
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(tier.get("big"));
  const auto took = std::chrono::steady_clock::now() - start;
  // A bound check on a fault path: each 10 ms read was within the 100 ms socket timeout,
  // so only a deadline over the whole command stops it near 100 ms (2x allowed for a
  // loaded machine); per-read timeouts alone took the whole ~640 ms.
  CHECK(took < 2 * *config.connection.command_timeout);
  const auto s = tier.metrics();
  CHECK(s.transport_errors == 1);
  CHECK(s.failed_reads == 1);
}

TEST_CASE("redis_tier with an open circuit_breaker does no I/O",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  outgrow::circuit_breaker<outgrow::consecutive_failures, outgrow::manual_clock> breaker(
      {.failure_threshold = 3, .open_for = 5s}, clock);
  auto config = config_for(server, "cb:");
  config.connection.connect_timeout = 100ms;
  config.connection.command_timeout = 100ms;
  config.pool_size = 1;
  outgrow::redis_tier<std::string, std::string, outgrow::redis_default_codec,
                      decltype(breaker)>
      tier(config, breaker);
  REQUIRE(tier.put("k", "v"));
  {
    const frozen stopped(server.pid());
    for (int i = 0; i < 3; ++i) CHECK_FALSE(tier.get("k"));
    CHECK(breaker.state() == outgrow::breaker_state::open);
    const auto before = tier.metrics();
    for (int i = 0; i < 100; ++i) CHECK_FALSE(tier.get("k"));
    const auto after = tier.metrics();
    CHECK(after.short_circuited - before.short_circuited == 100);
    CHECK(after.transport_errors == before.transport_errors);
    CHECK(after.connects == before.connects);
    CHECK(after.connect_failures == before.connect_failures);
  }
  clock.advance(5s);
  CHECK(tier.get("k") == "v");  // the half-open probe succeeds
  CHECK(breaker.state() == outgrow::breaker_state::closed);
  CHECK(breaker.metrics().failures == 3);
}

namespace {
/// A breaker defined outside the library (the `redis_breaker` concept is open): counts
/// what the tier reports and refuses every call while `open` is set.
struct counting_breaker {
  struct permit {
    counting_breaker* b;
    explicit operator bool() const { return !b->open.load(); }
    void success() { ++b->successes; }
    void failure() { ++b->failures; }
    void ignore() { ++b->ignored; }
  };
  permit try_acquire() { return {this}; }
  std::atomic<bool> open{false};
  std::atomic<int> successes{0}, failures{0}, ignored{0};
};
static_assert(outgrow::redis_breaker<counting_breaker>);
}  // namespace

TEST_CASE("redis_tier reports to a user-defined breaker", "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  counting_breaker breaker;
  auto config = config_for(server, "userbreaker:");
  config.pool_size = 1;
  outgrow::redis_tier<std::string, std::string, outgrow::redis_default_codec,
                      counting_breaker>
      tier(config, breaker);
  REQUIRE(tier.put("k", "v"));
  CHECK(tier.get("k") == "v");
  CHECK(breaker.successes == 2);
  REQUIRE(server.command("LPUSH userbreaker:list2 x"));
  CHECK_FALSE(tier.get("list2"));  // WRONGTYPE: a live server's error reply is ignored
  CHECK(breaker.ignored == 1);
  breaker.open = true;
  CHECK_FALSE(tier.get("k"));  // refused: no I/O
  CHECK(tier.metrics().short_circuited == 1);
  breaker.open = false;
  server.kill();
  CHECK_FALSE(tier.get("k"));  // the connection fails: a failure
  CHECK(breaker.failures == 1);
  CHECK(breaker.successes == 2);
}

TEST_CASE("tiered_cache over redis_tier keeps serving when Redis dies with write_behind",
          "[redis_tier][integration]") {
  outgrow_test::redis_server server;
  auto config = config_for(server, "wb:");
  config.connection.connect_timeout = 200ms;
  config.connection.command_timeout = 200ms;
  outgrow::cache<std::string, std::string> l1({.capacity = 10'000});
  outgrow::redis_tier<std::string, std::string> l2(config);
  map_store store;
  outgrow::tiered_cache<outgrow::tiers<decltype(l1), decltype(l2)>, map_store,
                        outgrow::write_behind>
      cache(store, std::tie(l1, l2), {.default_ttl = 10min},
            outgrow::write_behind(
                {.max_batch = 1000, .max_delay = 1h, .max_buffered = 1000}));

  for (int i = 0; i < 100; ++i) REQUIRE(cache.put(fmt::format("k{}", i), "before"));
  cache.flush();
  CHECK(store.snapshot().size() == 100);
  CHECK(l2.size() == 100);

  server.kill();
  // Acknowledged writes while Redis is down.
  for (int i = 50; i < 150; ++i) REQUIRE(cache.put(fmt::format("k{}", i), "during"));
  // Reads: L1 and the store answer; none is wrong.
  int wrong = 0;
  for (int i = 0; i < 150; ++i) {
    const auto v = cache.get(fmt::format("k{}", i));
    if (v != (i < 50 ? "before" : "during")) ++wrong;
  }
  CHECK(wrong == 0);
  l1.clear();  // lose L1 as well: the store (through the buffer) still answers
  for (int i = 0; i < 150; ++i) {
    const auto v = cache.get(fmt::format("k{}", i));
    if (v != (i < 50 ? "before" : "during")) ++wrong;
  }
  CHECK(wrong == 0);
  cache.flush();
  const auto data = store.snapshot();
  CHECK(data.size() == 150);
  for (int i = 0; i < 150; ++i) {
    const auto it = data.find(fmt::format("k{}", i));
    REQUIRE(it != data.end());
    CHECK(it->second == (i < 50 ? "before" : "during"));
  }
  CHECK(cache.take_dead_letters().empty());
  const auto redis = cache.tier_metrics<1>();
  CHECK(redis.misses > 0);
  CHECK(redis.rejected_puts > 0);
  CHECK(l2.metrics().failed_reads > 0);

  // Recovery: Redis comes back empty; the L2 refills and serves again.
  server.restart();
  l1.clear();
  const auto hits_before = l2.metrics().hits;
  // The reconnect backoff (real clock, at most 1 s) may still short-circuit a few
  // calls: wait, bounded, for the tier to reconnect.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!l2.ping() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  REQUIRE(l2.ping());
  for (int i = 0; i < 150; ++i) CHECK(cache.get(fmt::format("k{}", i)).has_value());
  l1.clear();
  for (int i = 0; i < 150; ++i) CHECK(cache.get(fmt::format("k{}", i)).has_value());
  CHECK(l2.metrics().hits - hits_before == 150);
  fmt::print("{}\n{}\n", cache.metrics(), l2.metrics());
}

TEST_CASE("redis_tier rejects invalid configuration", "[redis_tier]") {
  using tier = outgrow::redis_tier<std::string, std::string>;
  CHECK_THROWS_AS(tier({.connection = {.port = 0}}), outgrow::config_error);
  CHECK_THROWS_AS(tier({.connection = {.host = ""}}), outgrow::config_error);
  CHECK_THROWS_AS(tier({.default_ttl = 0s}), outgrow::config_error);
  CHECK_THROWS_AS(tier({.pool_size = 0}), outgrow::config_error);
  CHECK_THROWS_AS(tier({.connection = {.command_timeout = 0s}}), outgrow::config_error);
  CHECK_THROWS_AS(tier({.max_batch = 0}), outgrow::config_error);
  try {
    tier bad({.pool_size = 5000});
    FAIL("accepted pool_size 5000");
  } catch (const outgrow::config_error& e) {
    CHECK(std::string(e.what()) == "redis_tier: pool_size must be in [1, 1024], got 5000");
  }
  try {  // a nested field is named by its path
    tier bad({.connection = {.port = 0}});
    FAIL("accepted connection.port 0");
  } catch (const outgrow::config_error& e) {
    CHECK(std::string(e.what()) ==
          "redis_tier: connection.port must be in [1, 65535], got 0");
  }
  // Nothing listens (a port just found free): construction still succeeds (lazy
  // connect), calls are misses.
  const int closed_port = outgrow_test::detail::free_loopback_ports(1).at(0);
  tier unreachable({.connection = {.port = closed_port, .connect_timeout = 100ms}});
  CHECK_FALSE(unreachable.get("k"));
  CHECK_FALSE(unreachable.put("k", "v"));
  CHECK(unreachable.metrics().connect_failures >= 1);
}
