// Integration tests of outgrow::session_store against a real redis-server (started on a
// free loopback port without persistence by tests/support/redis_server.hpp).
//
// Expiry is checked through PTTL and by rewriting a session's creation time with
// redis-cli-style commands (the store uses the server's clock), not by sleeping; one test
// waits (bounded, polling) for a real 200 ms absolute lifetime to run out. The must-show
// test forks 4 processes (before any thread exists) that create 10,000 sessions and
// update shared sessions concurrently; the parent kills them by pid at the end, also when
// it fails.
#include <outgrow/redis/session_store.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"
#include "redis_cluster.hpp"
#include "redis_server.hpp"

using namespace std::chrono_literals;
using outgrow::session_status;

namespace {

outgrow::session_store_config config_for(int port) {
  // Generous command timeouts: sanitizer builds and 4 processes on 2 cores are slow.
  return {.connection = {.host = "127.0.0.1",
                         .port = port,
                         .connect_timeout = 2s,
                         .command_timeout = 2s,
                         .reconnect_backoff = outgrow::full_jitter_backoff{1ms, 5ms},
                         .seed = 18},
          .key_prefix = "test:sess:",
          .idle_timeout = 10s,
          .absolute_lifetime = 60s};
}

using store = outgrow::session_store<std::string>;
using counter_store = outgrow::session_store<std::int64_t>;

long long integer(outgrow_test::redis_server& server, const std::string& cmd,
                  const std::string& key) {
  auto r = server.command((cmd + " %b").c_str(), key.data(), key.size());
  REQUIRE(r->type == REDIS_REPLY_INTEGER);
  return r->integer;
}

long long server_now_ms(outgrow_test::redis_server& server) {
  auto r = server.command("TIME");
  REQUIRE(r->type == REDIS_REPLY_ARRAY);
  return std::stoll(std::string(outgrow_test::reply_text(*r->element[0]))) * 1000 +
         std::stoll(std::string(outgrow_test::reply_text(*r->element[1]))) / 1000;
}

void hset(outgrow_test::redis_server& server, const std::string& key, const char* field,
          const std::string& value) {
  auto r = server.command("HSET %b %s %b", key.data(), key.size(), field, value.data(),
                          value.size());
  REQUIRE(r->type == REDIS_REPLY_INTEGER);
}

// Makes the session at `key` look created `ago_ms` ago (server clock) by a store whose
// absolute lifetime is `absolute_ms`: its c and h fields.
void created_ago(outgrow_test::redis_server& server, const std::string& key,
                 long long ago_ms, long long absolute_ms) {
  const long long created = server_now_ms(server) - ago_ms;
  hset(server, key, "c", std::to_string(created));
  hset(server, key, "h", std::to_string(created + absolute_ms));
}

void pexpire(outgrow_test::redis_server& server, const std::string& key, long long ms) {
  auto r = server.command("PEXPIRE %b %lld", key.data(), key.size(), ms);
  REQUIRE(r->type == REDIS_REPLY_INTEGER);
  REQUIRE(r->integer == 1);
}

long long dbsize(outgrow_test::redis_server& server) {
  auto r = server.command("DBSIZE");
  return r->integer;
}

template <class E>
void check_config_error(const outgrow::session_store_config& c, const std::string& text) {
  try {
    store s(c);
    FAIL("no config_error for " << text);
  } catch (const E& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(text) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("session_store rejects invalid configuration naming the field") {
  using C = outgrow::session_store_config;
  const auto bad = [](auto change, const std::string& text) {
    C c = config_for(6379);
    change(c);
    check_config_error<outgrow::config_error>(c, "session_store: " + text);
  };
  bad([](C& c) { c.key_prefix = "nocolon"; }, "key_prefix must be");
  bad([](C& c) { c.key_prefix = "a{b}:"; }, "key_prefix must be");
  bad([](C& c) { c.idle_timeout = 0s; }, "idle_timeout must be");
  bad([](C& c) { c.idle_timeout = 400 * 24h; }, "idle_timeout must be");
  bad([](C& c) { c.absolute_lifetime = 5s; }, "absolute_lifetime must be in [10s");
  bad([](C& c) { c.max_sessions_per_user = 0; }, "max_sessions_per_user must be");
  bad([](C& c) { c.pool_size = 0; }, "pool_size must be");
  bad([](C& c) { c.pool_timeout = -1ms; }, "pool_timeout must be");
  bad([](C& c) { c.max_value_size = 0; }, "max_value_size must be");
  bad([](C& c) { c.connection.port = 0; }, "connection.port must be");
  bad([](C& c) { c.connection.command_timeout = 0s; },
      "connection.command_timeout must be");
  // A prefix longer than 1024 bytes (every key would carry it).
  bad([](C& c) { c.key_prefix = std::string(1024, 'p') + ":"; },
      "key_prefix (bytes) must be in [0, 1024], got 1025");
  // A sentinel password without sentinels is ignored by the topology: refused, like
  // sentinel.master_name, and never printed.
  bad([](C& c) { c.connection.sentinel.password = "s3cret"; },
      "connection.sentinel.password must be empty without sentinels");
  try {
    C c = config_for(6379);
    c.connection.sentinel.password = "s3cret";
    store s(c);
    FAIL("no config_error for connection.sentinel.password");
  } catch (const outgrow::config_error& e) {
    CHECK(std::string(e.what()).find("s3cret") == std::string::npos);
    CHECK(e.field() == "connection.sentinel.password");
  }
  C ok = config_for(6379);
  ok.key_prefix = "";
  CHECK_NOTHROW(store(ok));
  ok.key_prefix = std::string(1023, 'p') + ":";
  CHECK_NOTHROW(store(ok));
  ok.connection.sentinel = {
      .sentinels = {{"127.0.0.1", 26379}}, .master_name = "m", .password = "s3cret"};
  CHECK_NOTHROW(store(ok));  // connects lazily
}

TEST_CASE("session_id prints only its tag and a prefix of its secret") {
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  const auto made = s.create("ada", "data");
  REQUIRE(made.status == session_status::ok);
  const outgrow::session_id& id = *made;
  REQUIRE(id.well_formed());
  const std::string whole(id.reveal());
  CHECK(whole.size() == 37);
  CHECK(whole[4] == '.');
  const std::string shown = fmt::format("{}", id);
  CHECK(shown == whole.substr(0, 9) + "...");
  std::ostringstream os;
  os << id;
  CHECK(os.str() == shown);
  CHECK(shown.find(whole.substr(9)) == std::string::npos);
  // A malformed id is never echoed.
  const outgrow::session_id junk("secret-cookie-value");
  CHECK(!junk.well_formed());
  CHECK(fmt::format("{}", junk).find("secret") == std::string::npos);
  CHECK(fmt::format("{}", outgrow::session_id{}) == "<no session id>");
  // Two ids of one user share the tag (one slot), not the secret.
  const auto other = s.create("ada", "data");
  REQUIRE(other);
  CHECK(other->reveal().substr(0, 4) == id.reveal().substr(0, 4));
  CHECK(other->reveal().substr(5) != id.reveal().substr(5));
  // Keys carry the tag as a hash tag.
  const auto [key, base] = s.redis_keys(id);
  CHECK(key == "test:sess:{" + whole.substr(0, 4) + "}:s:" + whole.substr(5));
  CHECK(s.redis_index_key("ada") == base + "u:ada");
  CHECK(s.redis_index_key("a:b%c").ends_with("u:a%3Ab%25c"));
}

TEST_CASE("session_store create then get returns data user version and times") {
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  const long long before = server_now_ms(server);
  const auto made = s.create("ada", "cart=3");
  REQUIRE(made.status == session_status::ok);
  const auto got = s.get(*made);
  REQUIRE(got.status == session_status::ok);
  CHECK(got->data == "cart=3");
  CHECK(got->user == "ada");
  CHECK(got->version == 1);
  const auto created_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(got->created.time_since_epoch())
          .count();
  CHECK(created_ms >= before);
  CHECK(got->expires - got->created >= 10s);
  CHECK(got->expires - got->created <= 10s + 1s);
  const auto m = s.metrics();
  CHECK(m.created == 1);
  CHECK(m.hits == 1);
  CHECK(m.misses == 0);
  CHECK(fmt::format("{}", m).starts_with("session_store_metrics{created=1"));
}

TEST_CASE("session_store get and update slide the expiry") {
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  const auto made = s.create("ada", "x");
  REQUIRE(made);
  const std::string key = s.redis_keys(*made).first;
  const long long first = integer(server, "PTTL", key);
  CHECK(first > 9000);
  CHECK(first <= 10000);
  // As if 9 s had passed without use: 1 s left.
  pexpire(server, key, 1000);
  REQUIRE(s.get(*made));
  CHECK(integer(server, "PTTL", key) > 9000);
  pexpire(server, key, 1000);
  REQUIRE(s.update(*made, 1, "y") == session_status::ok);
  CHECK(integer(server, "PTTL", key) > 9000);
  // The index entry follows the session's expiry (its score).
  auto score = server.command("ZSCORE %b %b", s.redis_index_key("ada").data(),
                              s.redis_index_key("ada").size(),
                              made->reveal().substr(5).data(), std::size_t{32});
  REQUIRE(score->type == REDIS_REPLY_STRING);
  CHECK(std::stoll(std::string(outgrow_test::reply_text(*score))) >
        server_now_ms(server) + 9000);
}

TEST_CASE("session_store caps the expiry at the absolute lifetime") {
  outgrow_test::redis_server server;
  auto c = config_for(server.port());
  c.idle_timeout = 1s;
  c.absolute_lifetime = 1500ms;
  store s(c);
  const auto made = s.create("ada", "x");
  REQUIRE(made);
  const std::string key = s.redis_keys(*made).first;
  CHECK(integer(server, "PTTL", key) <= 1000);
  // Created 1 s ago (server clock): at most 500 ms left, however it is used.
  created_ago(server, key, 1000, 1500);
  REQUIRE(s.get(*made));
  const long long left = integer(server, "PTTL", key);
  CHECK(left > 0);
  CHECK(left <= 500);
  // Created 2 s ago: past its lifetime, a miss, and deleted.
  created_ago(server, key, 2000, 1500);
  CHECK(s.get(*made).status == session_status::missing);
  CHECK(integer(server, "EXISTS", key) == 0);
  // rotate keeps the creation time: it cannot extend a session.
  const auto second = s.create("ada", "x");
  REQUIRE(second);
  const std::string key2 = s.redis_keys(*second).first;
  created_ago(server, key2, 1200, 1500);
  const auto rotated = s.rotate(*second);
  REQUIRE(rotated);
  CHECK(integer(server, "PTTL", s.redis_keys(*rotated).first) <= 300);
}

TEST_CASE("session_store sessions really expire at the absolute lifetime") {
  outgrow_test::redis_server server;
  auto c = config_for(server.port());
  c.idle_timeout = 150ms;
  c.absolute_lifetime = 200ms;
  store s(c);
  const auto made = s.create("ada", "x");
  REQUIRE(made);
  // Polling with get keeps sliding the idle expiry: only the cap can end it.
  session_status last = session_status::ok;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (last == session_status::ok && std::chrono::steady_clock::now() < deadline) {
    last = s.get(*made).status;
    std::this_thread::sleep_for(20ms);
  }
  CHECK(last == session_status::missing);
  CHECK(s.update(*made, 1, "y") == session_status::missing);
}

TEST_CASE("session_store update detects a concurrent update") {
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  const auto made = s.create("ada", "a");
  REQUIRE(made);
  CHECK(s.update(*made, 1, "b") == session_status::ok);
  CHECK(s.update(*made, 1, "c") == session_status::conflict);  // lost the race
  auto got = s.get(*made);
  REQUIRE(got);
  CHECK(got->version == 2);
  CHECK(got->data == "b");
  CHECK(s.update(*made, 2, "c") == session_status::ok);
  CHECK(s.get(*made)->version == 3);
  CHECK(s.update(*made, 99, "d") == session_status::conflict);
  const auto m = s.metrics();
  CHECK(m.updates == 2);
  CHECK(m.conflicts == 2);
}

TEST_CASE("session_store rotate moves the session to a new id atomically") {
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  const auto made = s.create("ada", "cart=1");
  REQUIRE(made);
  REQUIRE(s.update(*made, 1, "cart=2") == session_status::ok);
  const auto before = s.get(*made);
  REQUIRE(before);
  const auto rotated = s.rotate(*made);
  REQUIRE(rotated.status == session_status::ok);
  CHECK(*rotated != *made);
  CHECK(rotated->reveal().substr(0, 4) == made->reveal().substr(0, 4));
  CHECK(s.get(*made).status == session_status::missing);
  CHECK(s.update(*made, 2, "z") == session_status::missing);
  CHECK(s.rotate(*made).status == session_status::missing);
  const auto after = s.get(*rotated);
  REQUIRE(after);
  CHECK(after->data == "cart=2");
  CHECK(after->version == 2);
  CHECK(after->created == before->created);
  CHECK(after->user == "ada");
  const std::string index = s.redis_index_key("ada");
  CHECK(integer(server, "ZCARD", index) == 1);
  CHECK(s.destroy_all("ada").value == std::optional<std::size_t>{1});
  CHECK(s.metrics().rotations == 1);
}

TEST_CASE("session_store destroy and destroy_all") {
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  std::vector<outgrow::session_id> ada;
  for (int i = 0; i < 3; ++i) ada.push_back(*s.create("ada", "x"));
  const auto bob = s.create("bob", "y");
  REQUIRE(bob);
  CHECK(s.destroy(ada[0]) == session_status::ok);
  CHECK(s.get(ada[0]).status == session_status::missing);
  CHECK(s.destroy(ada[0]) == session_status::missing);
  CHECK(integer(server, "ZCARD", s.redis_index_key("ada")) == 2);
  const auto all = s.destroy_all("ada");
  REQUIRE(all.status == session_status::ok);
  CHECK(*all == 2);
  for (const auto& id : ada) CHECK(s.get(id).status == session_status::missing);
  CHECK(integer(server, "EXISTS", s.redis_index_key("ada")) == 0);
  CHECK(s.get(*bob));
  CHECK(*s.destroy_all("ada") == 0);
  CHECK(*s.destroy_all("nobody") == 0);
  CHECK(dbsize(server) == 2);  // bob's session and index
  CHECK(s.metrics().destroyed == 3);
}

TEST_CASE("session_store keys users with separators and prefixes apart") {
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  // The index key is built in C++ (create) and in Lua (get, destroy): they must agree.
  for (const std::string& user :
       std::vector<std::string>{"a:b%c", "x{y}z", "100%", std::string("nul\0byte", 8)}) {
    INFO(user);
    const auto id = s.create(user, "x");
    REQUIRE(id);
    const auto got = s.get(*id);
    REQUIRE(got);
    CHECK(got->user == user);
    CHECK(integer(server, "ZCARD", s.redis_index_key(user)) == 1);
    CHECK(s.destroy(*id) == session_status::ok);
    CHECK(integer(server, "EXISTS", s.redis_index_key(user)) == 0);  // emptied
    REQUIRE(s.create(user, "y"));
    CHECK(*s.destroy_all(user) == 1);
  }
  CHECK(s.metrics().decode_errors == 0);
  // Another key_prefix is another namespace.
  auto other = config_for(server.port());
  other.key_prefix = "test:sess:v2:";
  store s2(other);
  const auto id = s.create("ada", "x");
  REQUIRE(id);
  CHECK(s2.get(*id).status == session_status::missing);
  CHECK(*s2.destroy_all("ada") == 0);
  CHECK(s.get(*id));
}

TEST_CASE("session_store max_sessions_per_user evicts the session expiring soonest") {
  outgrow_test::redis_server server;
  auto c = config_for(server.port());
  c.max_sessions_per_user = 2;
  store s(c);
  const auto a = s.create("ada", "a");
  const auto b = s.create("ada", "b");
  REQUIRE(a);
  REQUIRE(b);
  // a is used after b was created: b now expires first.
  std::this_thread::sleep_for(5ms);  // distinct millisecond expiries on the server
  REQUIRE(s.get(*a));
  const auto d = s.create("ada", "d");
  REQUIRE(d);
  CHECK(s.get(*b).status == session_status::missing);
  CHECK(s.get(*a));
  CHECK(s.get(*d));
  CHECK(integer(server, "ZCARD", s.redis_index_key("ada")) == 2);
  CHECK(s.metrics().evicted == 1);
  // Other users are not affected.
  CHECK(s.create("bob", "x"));
  CHECK(s.get(*a));
}

TEST_CASE("session_store prunes expired sessions from the index") {
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  const auto a = s.create("ada", "a");
  REQUIRE(a);
  const std::string key = s.redis_keys(*a).first;
  const std::string index = s.redis_index_key("ada");
  // As if a had expired: its key gone, its index score in the past.
  REQUIRE(integer(server, "DEL", key) == 1);
  const std::string secret(a->reveal().substr(5));
  server.command("ZADD %b XX 1 %b", index.data(), index.size(), secret.data(),
                 secret.size());
  REQUIRE(s.create("ada", "b"));
  CHECK(integer(server, "ZCARD", index) == 1);
}

TEST_CASE("session_store forged expired and malformed ids are misses") {
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  const std::vector<std::string> malformed = {"",
                                              "abc",
                                              std::string(37, 'a'),
                                              "ABCD.0123456789abcdef0123456789abcdef",
                                              "abcd.0123456789ABCDEF0123456789abcdef",
                                              "abcd:0123456789abcdef0123456789abcdef",
                                              "abcd.0123456789abcdef0123456789abcde",
                                              "abcd.0123456789abcdef0123456789abcdef0",
                                              "ab}d.0123456789abcdef0123456789abcdef",
                                              std::string(1 << 20, 'x')};
  for (const auto& text : malformed) {
    const outgrow::session_id id(text);
    CHECK(s.get(id).status == session_status::missing);
    CHECK(s.update(id, 1, "x") == session_status::missing);
    CHECK(s.rotate(id).status == session_status::missing);
    CHECK(s.destroy(id) == session_status::missing);
  }
  auto m = s.metrics();
  CHECK(m.malformed_ids == 4 * malformed.size());
  CHECK(m.misses == malformed.size());
  CHECK(m.connects == 0);  // refused without a round trip
  // Well-formed but forged: a miss after one round trip.
  const auto real = s.create("ada", "x");
  REQUIRE(real);
  const std::string whole(real->reveal());
  const outgrow::session_id forged(whole.substr(0, 5) + std::string(32, '0'));
  CHECK(s.get(forged).status == session_status::missing);
  CHECK(s.update(forged, 1, "y") == session_status::missing);
  CHECK(s.rotate(forged).status == session_status::missing);
  CHECK(s.destroy(forged) == session_status::missing);
  // The right secret under another tag names another key: a miss.
  const std::string other_tag = whole.substr(0, 4) == "0000" ? "0001" : "0000";
  CHECK(s.get(outgrow::session_id(other_tag + whole.substr(4))).status ==
        session_status::missing);
  CHECK(s.get(*real));
  CHECK(s.metrics().decode_errors == 0);
}

TEST_CASE("session_store reports corrupt or foreign values as decode errors") {
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  std::uint64_t expected_errors = 0;
  const auto corrupt_get = [&](const outgrow::session_id& id) {
    CHECK(s.get(id).status == session_status::corrupt);
    ++expected_errors;
    CHECK(s.metrics().decode_errors == expected_errors);
  };

  SECTION("a string at the session key") {
    const auto id = *s.create("ada", "x");
    const std::string key = s.redis_keys(id).first;
    server.command("SET %b garbage", key.data(), key.size());
    corrupt_get(id);
    CHECK(s.update(id, 1, "y") == session_status::corrupt);
    CHECK(s.rotate(id).status == session_status::corrupt);
    CHECK(s.destroy(id) == session_status::corrupt);  // deleted all the same
    CHECK(integer(server, "EXISTS", key) == 0);
  }
  SECTION("malformed fields") {
    for (const auto& [field, value] : std::vector<std::pair<const char*, std::string>>{
             {"v", "abc"},
             {"v", "0"},
             {"v", "1.5"},
             {"v", "nan"},
             {"c", "x"},
             {"h", "x"},
             {"h", "0"},                    // before its creation
             {"h", "9007199254740991"}}) {  // more than 366 days after it
      const auto id = *s.create("ada", "x");
      hset(server, s.redis_keys(id).first, field, value);
      INFO(field << "=" << value);
      corrupt_get(id);
    }
    const auto id = *s.create("ada", "x");
    const std::string key = s.redis_keys(id).first;
    server.command("HDEL %b d", key.data(), key.size());
    corrupt_get(id);
  }
  SECTION("another user's value") {
    const auto id = *s.create("ada", "x");
    hset(server, s.redis_keys(id).first, "u", "mallory");
    corrupt_get(id);  // not in mallory's index: never mallory's session
    // A whole session of bob copied under ada's tag.
    const auto bob = *s.create("bob", "bob's data");
    const auto ada2 = *s.create("ada", "x");
    const std::string from = s.redis_keys(bob).first;
    const std::string to = s.redis_keys(ada2).first;
    server.command("DEL %b", to.data(), to.size());
    server.command("COPY %b %b", from.data(), from.size(), to.data(), to.size());
    corrupt_get(ada2);
    CHECK(s.get(bob)->data == "bob's data");
  }
  SECTION("data the codec rejects or over max_value_size") {
    counter_store numbers(config_for(server.port()));
    const auto id = *numbers.create("ada", 7);
    hset(server, numbers.redis_keys(id).first, "d", "seven");
    CHECK(numbers.get(id).status == session_status::corrupt);
    CHECK(numbers.metrics().decode_errors == 1);
    auto small = config_for(server.port());
    small.max_value_size = 8;
    store tiny(small);
    const auto t = *tiny.create("ada", "12345678");
    hset(server, tiny.redis_keys(t).first, "d", "123456789");
    CHECK(tiny.get(t).status == session_status::corrupt);
    CHECK(tiny.metrics().decode_errors == 1);
  }
  SECTION("a corrupt index") {
    const std::string index = s.redis_index_key("ada");
    server.command("SET %b x", index.data(), index.size());
    CHECK(s.create("ada", "x").status == session_status::corrupt);
    CHECK(s.destroy_all("ada").status == session_status::corrupt);
    CHECK(integer(server, "EXISTS", index) == 0);  // deleted: it named no session
    CHECK(s.create("ada", "x"));
    CHECK(s.metrics().decode_errors == 2);
  }
}

TEST_CASE("session_store rejects bad inputs without writing") {
  outgrow_test::redis_server server;
  auto c = config_for(server.port());
  c.max_value_size = 16;
  store s(c);
  CHECK(s.create("", "x").status == session_status::rejected);
  CHECK(s.create(std::string(1025, 'u'), "x").status == session_status::rejected);
  CHECK(s.create("ada", std::string(17, 'x')).status == session_status::rejected);
  CHECK(s.destroy_all("").status == session_status::rejected);
  const auto id = s.create(std::string(1024, 'u'), std::string(16, 'x'));
  REQUIRE(id);
  CHECK(s.update(*id, 1, std::string(17, 'x')) == session_status::rejected);
  CHECK(s.get(*id)->data == std::string(16, 'x'));
  CHECK(s.metrics().rejected == 5);
  CHECK(dbsize(server) == 2);
}

TEST_CASE("session_store answers unavailable while redis is down and recovers") {
  outgrow_test::redis_server server;
  auto c = config_for(server.port());
  c.connection.connect_timeout = 200ms;
  c.connection.command_timeout = 500ms;
  store s(c);
  const auto id = s.create("ada", "x");
  REQUIRE(id);
  server.kill();
  CHECK(s.get(*id).status == session_status::unavailable);  // not a miss
  CHECK(s.create("ada", "y").status == session_status::unavailable);
  CHECK(s.update(*id, 1, "z") == session_status::unavailable);
  CHECK(s.rotate(*id).status == session_status::unavailable);
  CHECK(s.destroy(*id) == session_status::unavailable);
  CHECK(s.destroy_all("ada").status == session_status::unavailable);
  auto m = s.metrics();
  CHECK(m.unavailable == 6);
  CHECK(m.transport_errors + m.connect_failures + m.short_circuited >= 1);
  CHECK(m.misses == 0);
  // Back, empty (no persistence) and without the scripts: EVAL reloads them.
  server.restart();
  outgrow::session_result<outgrow::session_id> again;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!again && std::chrono::steady_clock::now() < deadline) {
    again = s.create("ada", "back");
    if (!again) std::this_thread::sleep_for(5ms);  // the reconnect backoff (<= 5 ms)
  }
  REQUIRE(again.status == session_status::ok);
  CHECK(s.get(*again)->data == "back");
  CHECK(s.get(*id).status == session_status::missing);  // lost with the data set
}

TEST_CASE("session_store is safe from many threads sharing one store") {
  outgrow_test::redis_server server;
  auto c = config_for(server.port());
  c.pool_size = 2;  // fewer connections than threads: callers wait for one
  counter_store s(c);
  const auto shared = s.create("shared", 0);
  REQUIRE(shared);
  constexpr int threads = 4;
  constexpr int rounds = 50;
  std::array<long, threads> won{};
  std::array<long, threads> failures{};
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const auto ti = static_cast<std::size_t>(t);
        for (int i = 0; i < rounds; ++i) {
          if (!s.create(fmt::format("user-{}", t), i)) ++failures[ti];
          for (;;) {  // the first calls also race to load the scripts
            const auto got = s.get(*shared);
            if (!got) {
              ++failures[ti];
              break;
            }
            const auto r = s.update(*shared, got->version, got->data + 1);
            if (r == session_status::ok) {
              ++won[ti];
              break;
            }
            if (r != session_status::conflict) {
              ++failures[ti];
              break;
            }
          }
        }
      });
    }
  }
  for (const long f : failures) CHECK(f == 0);
  const auto got = s.get(*shared);
  REQUIRE(got);
  CHECK(got->data == threads * rounds);
  CHECK(got->version == 1 + threads * rounds);
  const auto m = s.metrics();
  CHECK(m.updates == threads * rounds);
  CHECK(m.created == 1 + threads * rounds);
  CHECK(m.open_connections <= 2);
}

TEST_CASE("session_store on a redis cluster keeps each user in one slot") {
  outgrow_test::redis_cluster cluster({.masters = 3, .replicas = 0});
  auto c = config_for(cluster.node(0).port());
  c.connection.cluster.nodes = {{cluster.node(0).host(), cluster.node(0).port()}};
  store s(c);
  struct made {
    std::string user;
    outgrow::session_id id;
  };
  std::vector<made> sessions;
  for (int u = 0; u < 100; ++u) {
    const std::string user = fmt::format("user-{}", u);
    for (int k = 0; k < 2; ++k) {
      const auto id = s.create(user, fmt::format("{}-{}", user, k));
      REQUIRE(id);
      sessions.push_back({user, *id});
    }
  }
  // A session and its user's index live in one slot, on that slot's master.
  std::set<std::size_t> masters;
  for (const auto& m : sessions) {
    const std::string key = s.redis_keys(m.id).first;
    const std::string index = s.redis_index_key(m.user);
    const auto slot = outgrow::redis_cluster_hash_slot(key);
    REQUIRE(slot == outgrow::redis_cluster_hash_slot(index));
    const std::size_t node = cluster.master_of(slot).value();
    masters.insert(node);
    auto r = cluster.node(node).command("EXISTS %b %b", key.data(), key.size(),
                                        index.data(), index.size());
    CHECK(r->integer == 2);
  }
  CHECK(masters.size() == 3);  // the users are spread over every master
  // Move slots (and their keys) while the store keeps serving: MOVED / ASK absorbed.
  const std::size_t from = cluster.master_of(0).value();
  const std::size_t to = cluster.master_of(16383).value();
  cluster.reshard(cluster.node_id(from), cluster.node_id(to), 2000);
  for (const auto& m : sessions) {
    const auto got = s.get(m.id);
    REQUIRE(got.status == session_status::ok);
    CHECK(got->user == m.user);
    CHECK(s.update(m.id, 1, got->data + "+") == session_status::ok);
    CHECK(s.update(m.id, 1, "lost") == session_status::conflict);
  }
  const auto rotated = s.rotate(sessions.front().id);
  REQUIRE(rotated);
  CHECK(s.get(sessions.front().id).status == session_status::missing);
  for (int u = 0; u < 100; ++u) {
    const auto all = s.destroy_all(fmt::format("user-{}", u));
    REQUIRE(all.status == session_status::ok);
    CHECK(*all == 2);
  }
  for (const auto& m : sessions) CHECK(s.get(m.id).status == session_status::missing);
  const auto m = s.metrics();
  CHECK(m.unavailable == 0);
  CHECK(m.decode_errors == 0);
  std::fprintf(stderr, "session_store on a cluster: %llu redirects followed\n",
               static_cast<unsigned long long>(m.redirects));
}

// ---- must show: 4 processes -------------------------------------------------------------

namespace {

constexpr std::size_t kProcesses = 4;
constexpr std::size_t kPerProcess = 2500;  // 10,000 sessions
constexpr std::size_t kUsers = 64;
constexpr std::size_t kShared = 4;
constexpr std::size_t kUpdateEvery = 16;  // one shared update per 16 creates
const std::string kTarget = "user-7";

/// Kills (SIGKILL) and reaps every child still listed, on any exit from the test.
struct children {
  std::vector<pid_t> pids;
  ~children() {
    for (const pid_t p : pids) {
      if (p <= 0) continue;
      ::kill(p, SIGKILL);
      int st = 0;
      while (::waitpid(p, &st, 0) < 0 && errno == EINTR) {
      }
    }
  }
};

/// A child's work: its share of the sessions, interleaved with updates of the shared
/// sessions (re-read and retry on conflict). Reports on `out` and exits.
[[noreturn]] void child_main(std::size_t index, int port,
                             const std::vector<outgrow::session_id>& shared, int out) {
  int code = 0;
  std::string report;
  try {
    counter_store s(config_for(port));
    std::array<long, kShared> won{};
    long created = 0;
    long conflicts = 0;
    long unexpected = 0;
    std::vector<std::string> target_ids;
    for (std::size_t i = 0; i < kPerProcess; ++i) {
      const std::string user = fmt::format("user-{}", (i + index * 7) % kUsers);
      const auto made = s.create(user, static_cast<std::int64_t>(i));
      if (made) {
        ++created;
        if (user == kTarget) target_ids.emplace_back(made->reveal());
      } else {
        ++unexpected;
      }
      if (i % kUpdateEvery != 0) continue;
      const std::size_t j = (i / kUpdateEvery + index) % kShared;
      for (int attempt = 0; attempt < 1000; ++attempt) {
        const auto got = s.get(shared[j]);
        if (!got) {
          ++unexpected;
          break;
        }
        const session_status r = s.update(shared[j], got->version, got->data + 1);
        if (r == session_status::ok) {
          ++won[j];
          break;
        }
        if (r != session_status::conflict) {
          ++unexpected;
          break;
        }
        ++conflicts;
      }
    }
    report =
        fmt::format("{} {} {} {}", created, conflicts, s.metrics().conflicts, unexpected);
    for (const long w : won) report += fmt::format(" {}", w);
    report += fmt::format(" {}", target_ids.size());
    for (const auto& id : target_ids) report += " " + id;
    report += "\n";
  } catch (...) {
    code = 5;
  }
  std::size_t done = 0;
  while (done < report.size()) {
    const ssize_t n = ::write(out, report.data() + done, report.size() - done);
    if (n <= 0) {
      code = 6;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  std::_Exit(code);
}

}  // namespace

TEST_CASE("session_store must show: 10k sessions from 4 processes and no update lost") {
  outgrow_test::redis_server server;
  const int port = server.port();
  std::vector<outgrow::session_id> shared;
  {
    counter_store s(config_for(port));
    for (std::size_t j = 0; j < kShared; ++j) shared.push_back(*s.create("shared", 0));
  }
  std::fflush(nullptr);
  children kids;
  std::vector<int> pipes;
  const pid_t parent = ::getpid();
  for (std::size_t p = 0; p < kProcesses; ++p) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) std::_Exit(3);
      ::close(fds[0]);
      child_main(p, port, shared, fds[1]);
    }
    ::close(fds[1]);
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
    kids.pids.push_back(pid);
    pipes.push_back(fds[0]);
  }
  // Read reports while waiting (bounded), so no child blocks on a full pipe.
  std::vector<std::string> reports(kProcesses);
  std::vector<int> exits(kProcesses, -1);
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + 25s;
  std::size_t running = kProcesses;
  while (running > 0 && std::chrono::steady_clock::now() < deadline) {
    for (std::size_t p = 0; p < kProcesses; ++p) {
      char buf[4096];
      ssize_t n = 0;
      while ((n = ::read(pipes[p], buf, sizeof buf)) > 0) {
        reports[p].append(buf, static_cast<std::size_t>(n));
      }
      if (kids.pids[p] <= 0) continue;
      int st = 0;
      if (::waitpid(kids.pids[p], &st, WNOHANG) == kids.pids[p]) {
        exits[p] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        kids.pids[p] = -1;
        --running;
      }
    }
    std::this_thread::sleep_for(5ms);
  }
  for (std::size_t p = 0; p < kProcesses; ++p) {
    char buf[4096];
    ssize_t n = 0;
    while ((n = ::read(pipes[p], buf, sizeof buf)) > 0) {
      reports[p].append(buf, static_cast<std::size_t>(n));
    }
    ::close(pipes[p]);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  REQUIRE(running == 0);  // else the guard kills them

  long created = 0, conflicts = 0, metric_conflicts = 0, unexpected = 0;
  std::array<long, kShared> won{};
  std::vector<outgrow::session_id> target;
  for (std::size_t p = 0; p < kProcesses; ++p) {
    INFO("process " << p);
    REQUIRE(exits[p] == 0);
    std::istringstream in(reports[p]);
    long c = 0, k = 0, mk = 0, u = 0;
    REQUIRE(static_cast<bool>(in >> c >> k >> mk >> u));
    created += c;
    conflicts += k;
    metric_conflicts += mk;
    unexpected += u;
    for (long& w : won) {
      long x = 0;
      REQUIRE(static_cast<bool>(in >> x));
      w += x;
    }
    std::size_t ids = 0;
    REQUIRE(static_cast<bool>(in >> ids));
    for (std::size_t i = 0; i < ids; ++i) {
      std::string id;
      REQUIRE(static_cast<bool>(in >> id));
      target.emplace_back(id);
    }
  }
  std::fprintf(stderr,
               "session_store must-show: %ld sessions from %d processes in %.2f s; %ld "
               "shared updates, %ld conflicts retried\n",
               created, static_cast<int>(kProcesses), seconds,
               won[0] + won[1] + won[2] + won[3], conflicts);
  CHECK(unexpected == 0);
  CHECK(created == static_cast<long>(kProcesses * kPerProcess));
  CHECK(conflicts == metric_conflicts);
  // sessions + the shared ones + an index per user + the shared user's index
  const long fixed = static_cast<long>(kShared + kUsers) + 1;
  CHECK(dbsize(server) == created + fixed);

  counter_store s(config_for(port));
  long total = 0;
  for (std::size_t j = 0; j < kShared; ++j) {
    const auto got = s.get(shared[j]);
    REQUIRE(got);
    INFO("shared session " << j);
    CHECK(got->version == static_cast<std::uint64_t>(1 + won[j]));  // no update lost
    CHECK(got->data == won[j]);
    total += won[j];
  }
  CHECK(total ==
        static_cast<long>(kProcesses * ((kPerProcess + kUpdateEvery - 1) / kUpdateEvery)));

  // destroy_all leaves no session of that user.
  const std::string index = s.redis_index_key(kTarget);
  CHECK(integer(server, "ZCARD", index) == static_cast<long long>(target.size()));
  const auto all = s.destroy_all(kTarget);
  REQUIRE(all.status == session_status::ok);
  CHECK(*all == target.size());
  for (const auto& id : target) CHECK(s.get(id).status == session_status::missing);
  CHECK(integer(server, "EXISTS", index) == 0);
  const std::string pattern = s.redis_keys(target.front()).second + "s:*";
  std::string cursor = "0";
  long left = 0;
  do {
    auto r = server.command("SCAN %s MATCH %b COUNT 1000", cursor.c_str(), pattern.data(),
                            pattern.size());
    REQUIRE(r->type == REDIS_REPLY_ARRAY);
    cursor = std::string(outgrow_test::reply_text(*r->element[0]));
    for (std::size_t i = 0; i < r->element[1]->elements; ++i) {
      const std::string key(outgrow_test::reply_text(*r->element[1]->element[i]));
      auto u = server.command("HGET %b u", key.data(), key.size());
      if (outgrow_test::reply_text(*u) == kTarget) ++left;
    }
  } while (cursor != "0");
  CHECK(left == 0);
  CHECK(dbsize(server) == created + fixed - static_cast<long long>(target.size()) - 1);
}

// ---- the optional L1 (l1_capacity > 0) ------------------------------------------------

namespace {

using l1_store = outgrow::session_store<std::string, outgrow::redis_default_codec,
                                        outgrow::manual_clock>;

outgrow::session_store_config l1_config_for(int port) {
  auto c = config_for(port);
  c.l1_capacity = 100;
  c.l1_ttl = 1s;
  return c;
}

/// Reads `id` through `s` until a get is served by the L1 (the get after the one that
/// slid the expiry fills it); the session's data.
std::string warm(l1_store& s, const outgrow::session_id& id) {
  const auto hits = s.metrics().l1_hits;
  std::string data;
  for (int i = 0; i < 3 && s.metrics().l1_hits == hits; ++i) {
    const auto got = s.get(id);
    REQUIRE(got.status == session_status::ok);
    data = got->data;
  }
  REQUIRE(s.metrics().l1_hits == hits + 1);
  return data;
}

void raw(outgrow_test::redis_server& server, const char* format, const std::string& key) {
  auto r = server.command(format, key.data(), key.size());
  REQUIRE(r->type != REDIS_REPLY_ERROR);
}

}  // namespace

TEST_CASE("session_store l1 rejects invalid configuration naming the field") {
  using C = outgrow::session_store_config;
  const auto bad = [](auto change, const std::string& text) {
    C c = l1_config_for(6379);
    change(c);
    check_config_error<outgrow::config_error>(c, "session_store: " + text);
  };
  bad([](C& c) { c.l1_capacity = 10'000'001; }, "l1_capacity must be in [0, 10000000]");
  bad([](C& c) { c.l1_ttl = 0s; }, "l1_ttl must be in [1ms");
  bad([](C& c) { c.l1_ttl = 3s; }, "l1_ttl must be in [1ms, 2500ms], got 3s");
  bad(
      [](C& c) {
        c.l1_capacity = 0;
        c.l1_ttl = 2s;
      },
      "l1_ttl must be left at its default (1s) while l1_capacity is 0, got 2s");
  bad(
      [](C& c) {
        c.connection.cluster.nodes = {{"127.0.0.1", 7000}};
      },
      "l1_capacity must be 0 with connection.cluster (tracking is per node), got 100");
  // idle_timeout under 4 ms leaves no l1_ttl in [1ms, idle_timeout / 4]: said first.
  bad([](C& c) { c.idle_timeout = 3ms; },
      "idle_timeout must be at least 4ms while l1_capacity > 0 (l1_ttl must fit in "
      "[1ms, idle_timeout / 4]), got 3ms");
  C ok = l1_config_for(6379);
  ok.l1_ttl = 2500ms;  // idle_timeout / 4
  CHECK_NOTHROW(store(ok));
  ok.idle_timeout = 4ms;
  ok.l1_ttl = 1ms;
  CHECK_NOTHROW(store(ok));
}

TEST_CASE("session_store reports a creation time in the future as a decode error") {
  // 2^53 - 1 ms would overflow system_clock's nanoseconds (undefined behaviour) and
  // would lift the absolute lifetime cap; an hour ahead of the server's clock only the
  // latter. Either is corrupt, in every operation that reads the session, with or
  // without the L1 (whose get also reads the server's time).
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  outgrow::manual_clock clock;
  l1_store l1(l1_config_for(server.port()), {}, clock);
  const std::string an_hour_ahead = std::to_string(server_now_ms(server) + 3'600'000);
  for (const std::string& created : {std::string("9007199254740991"), an_hour_ahead}) {
    INFO("c=" << created);
    const auto id = *s.create("ada", "x");
    hset(server, s.redis_keys(id).first, "c", created);
    CHECK(s.get(id).status == session_status::corrupt);
    CHECK(l1.get(id).status == session_status::corrupt);
    CHECK(s.update(id, 1, "y") == session_status::corrupt);
    CHECK(s.rotate(id).status == session_status::corrupt);
    CHECK(s.metrics().decode_errors == (created == an_hour_ahead ? 6 : 3));
    CHECK(s.metrics().hits == 0);
  }
  CHECK(l1.metrics().decode_errors == 2);
  CHECK(l1.metrics().l1_entries == 0);
  // Within the allowed clock skew (a failover to a node whose clock is a little behind)
  // a session stays valid.
  const auto id = *s.create("ada", "x");
  const long long soon = server_now_ms(server) + 10'000;
  hset(server, s.redis_keys(id).first, "c", std::to_string(soon));
  const auto got = s.get(id);
  REQUIRE(got.status == session_status::ok);
  CHECK(got->created.time_since_epoch() == std::chrono::milliseconds{soon});
}

TEST_CASE("session_store l1 serves a repeated get from the process") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  l1_store s(l1_config_for(server.port()), {}, clock);
  const auto id = s.create("ada", "cart=3");
  REQUIRE(id);
  const auto first = s.get(*id);  // create's expiry is fresh: no slide, so it fills
  REQUIRE(first.status == session_status::ok);
  auto m = s.metrics();
  CHECK(m.l1_misses == 1);
  CHECK(m.l1_entries == 1);
  const auto second = s.get(*id);
  REQUIRE(second.status == session_status::ok);
  CHECK(second->data == "cart=3");
  CHECK(second->user == "ada");
  CHECK(second->version == 1);
  CHECK(second->expires == first->expires);  // as of the load
  m = s.metrics();
  CHECK(m.l1_hits == 1);
  CHECK(m.hits == 2);
  CHECK(m.l1_bypassed == 0);
  CHECK(fmt::format("{}", m).find("l1_hits=1") != std::string::npos);
  // Forged (same tag, another secret) and malformed ids never hit.
  std::string forged(id->reveal());
  forged.back() = forged.back() == '0' ? '1' : '0';
  CHECK(s.get(outgrow::session_id(forged)).status == session_status::missing);
  CHECK(s.get(outgrow::session_id(std::string(id->reveal()) + "0")).status ==
        session_status::missing);
  CHECK(s.metrics().l1_hits == 1);
  // An entry lives at most l1_ttl: after it, the get asks Redis.
  clock.advance(1s);
  CHECK(s.get(*id)->data == "cart=3");
  CHECK(s.metrics().l1_hits == 1);
}

namespace {

/// Session data whose copy throws while `copies_fail` is set (the L1 copies what it
/// holds; a get's own result is only moved).
bool copies_fail = false;
struct fragile {
  std::string text;
  fragile() = default;
  explicit fragile(std::string t) : text(std::move(t)) {}
  fragile(const fragile& o) : text(o.text) {
    if (copies_fail) throw std::runtime_error("copy refused");
  }
  fragile(fragile&&) noexcept = default;
  fragile& operator=(const fragile&) = default;
  fragile& operator=(fragile&&) noexcept = default;
  ~fragile() = default;
};
struct fragile_codec {
  void encode(const fragile& v, std::string& out) const { out += v.text; }
  std::optional<fragile> decode(std::string_view in, std::type_identity<fragile>) const {
    return fragile(std::string(in));
  }
};

}  // namespace

TEST_CASE("session_store l1 returns a read whose L1 insert threw") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  outgrow::session_store<fragile, fragile_codec, outgrow::manual_clock> s(
      l1_config_for(server.port()), {}, clock);
  const auto id = s.create("ada", fragile("cart=3"));
  REQUIRE(id);
  copies_fail = true;  // the insert's copy throws after Redis answered
  const auto got = s.get(*id);
  copies_fail = false;
  REQUIRE(got.status == session_status::ok);
  CHECK(got->data.text == "cart=3");
  auto m = s.metrics();
  CHECK(m.unavailable == 0);
  CHECK(m.hits == 1);
  CHECK(m.l1_entries == 0);  // nothing held
  // Nothing broken: the next get fills the L1, the one after hits.
  REQUIRE(s.get(*id));
  REQUIRE(s.get(*id));
  m = s.metrics();
  CHECK(m.l1_entries == 1);
  CHECK(m.l1_hits == 1);
}

TEST_CASE("session_store scripts whose reply handling throws report an unknown outcome") {
  // The script ran (it was sent and answered): an exception while reading its reply is
  // not "nothing was sent" (codec, which session_store reports as rejected).
  outgrow_test::redis_server server;
  store s(config_for(server.port()));
  const auto id = s.create("ada", "x");
  REQUIRE(id);
  const auto [key, base] = s.redis_keys(*id);
  const auto c = config_for(server.port());
  outgrow::detail::session_link<outgrow::steady_clock_source> link(
      c.connection, 1, 1s, 18, {}, std::size_t{1} << 20);
  const std::string_view args[] = {key,     base,    id->reveal().substr(5),
                                   "10000", "60000", "0"};
  int replies = 0;
  const auto thrown = link.eval(outgrow::detail::session_script::get, 1, args,
                                [&](const redisReply&) -> outgrow::detail::redis_status {
                                  ++replies;
                                  throw std::runtime_error("reply handling failed");
                                });
  CHECK(replies == 1);
  CHECK(thrown != outgrow::detail::redis_status::codec);
  CHECK(thrown == outgrow::detail::redis_status::unknown);
  CHECK(link.server_errors() == 0);
  // The connection is still usable.
  const auto fine =
      link.eval(outgrow::detail::session_script::get, 1, args, [](const redisReply& r) {
        return outgrow::detail::session_int(r, 0) == 1
                   ? outgrow::detail::redis_status::ok
                   : outgrow::detail::redis_status::server;
      });
  CHECK(fine == outgrow::detail::redis_status::ok);
  CHECK(link.router().transport_errors() == 0);
}

TEST_CASE("session_store l1 slides the expiry only when it moves by l1_ttl") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  l1_store s(l1_config_for(server.port()), {}, clock);
  const auto id = s.create("ada", "x");
  REQUIRE(id);
  const std::string key = s.redis_keys(*id).first;
  pexpire(server, key, 5000);  // idle_timeout 10 s: a get moves it by ~5 s
  REQUIRE(s.get(*id));
  CHECK(integer(server, "PTTL", key) > 9000);  // slid
  CHECK(s.metrics().l1_entries == 0);          // its own write invalidates: not held
  REQUIRE(s.get(*id));                         // no slide now: held
  CHECK(s.metrics().l1_entries == 1);
  REQUIRE(s.get(*id));
  CHECK(s.metrics().l1_hits == 1);
  // An entry never outlives the session's remaining time in Redis: with 300 ms left
  // before the absolute lifetime, the entry lives 300 ms, not l1_ttl.
  const auto other = s.create("bob", "y");
  REQUIRE(other);
  const std::string other_key = s.redis_keys(*other).first;
  created_ago(server, other_key, 60'000 - 300, 60'000);
  const auto hits = s.metrics().l1_hits;
  REQUIRE(s.get(*other));  // hard cap below the current expiry: no slide, held
  REQUIRE(s.get(*other));
  CHECK(s.metrics().l1_hits == hits + 1);
  clock.advance(301ms);
  const auto after = s.get(*other);  // asks Redis (which may already have expired it)
  CHECK(s.metrics().l1_hits == hits + 1);
  CHECK((after.status == session_status::ok || after.status == session_status::missing));
}

TEST_CASE("session_store l1 drops what another instance updates rotates or destroys") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  l1_store a(l1_config_for(server.port()), {}, clock);
  store b(config_for(server.port()));
  const auto id = a.create("ada", "v1");
  REQUIRE(id);
  CHECK(warm(a, *id) == "v1");
  // update
  REQUIRE(b.update(*id, 1, "v2") == session_status::ok);
  auto got = a.get(*id);
  REQUIRE(got.status == session_status::ok);
  CHECK(got->data == "v2");
  CHECK(got->version == 2);
  CHECK(a.metrics().l1_invalidations >= 1);
  CHECK(warm(a, *id) == "v2");
  // rotate
  const auto fresh = b.rotate(*id);
  REQUIRE(fresh);
  CHECK(a.get(*id).status == session_status::missing);
  CHECK(warm(a, *fresh) == "v2");
  // destroy
  REQUIRE(b.destroy(*fresh) == session_status::ok);
  CHECK(a.get(*fresh).status == session_status::missing);
  // destroy_all
  const auto x = a.create("ada", "x");
  const auto y = a.create("ada", "y");
  REQUIRE(x);
  REQUIRE(y);
  CHECK(warm(a, *x) == "x");
  CHECK(warm(a, *y) == "y");
  const auto gone = b.destroy_all("ada");
  REQUIRE(gone);
  CHECK(*gone == 2);
  CHECK(a.get(*x).status == session_status::missing);
  CHECK(a.get(*y).status == session_status::missing);
  // Another L1 instance's writes, and this instance's own.
  l1_store c(l1_config_for(server.port()), {}, clock);
  const auto z = a.create("cy", "z1");
  REQUIRE(z);
  CHECK(warm(a, *z) == "z1");
  CHECK(warm(c, *z) == "z1");
  REQUIRE(c.update(*z, 1, "z2") == session_status::ok);
  CHECK(a.get(*z)->data == "z2");
  CHECK(c.get(*z)->data == "z2");
  REQUIRE(a.update(*z, 2, "z3") == session_status::ok);
  CHECK(a.get(*z)->data == "z3");
  CHECK(c.get(*z)->data == "z3");
  CHECK(a.metrics().l1_gaps == 0);
}

TEST_CASE("session_store l1 drops what a plain client deletes changes or flushes") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  l1_store s(l1_config_for(server.port()), {}, clock);
  const auto id = s.create("ada", "v1");
  REQUIRE(id);
  const std::string key = s.redis_keys(*id).first;
  CHECK(warm(s, *id) == "v1");
  hset(server, key, "d", "changed");  // redis-cli HSET
  CHECK(s.get(*id)->data == "changed");
  CHECK(warm(s, *id) == "changed");
  raw(server, "DEL %b", key);  // redis-cli DEL
  CHECK(s.get(*id).status == session_status::missing);
  const auto other = s.create("bob", "b");
  REQUIRE(other);
  CHECK(warm(s, *other) == "b");
  const auto gaps = s.metrics().l1_gaps;
  REQUIRE(server.command("FLUSHDB")->type == REDIS_REPLY_STATUS);
  // Redis answers FLUSHDB before it writes the flush notice (unlike a key's, which goes
  // out first): the PING's answer comes after it.
  REQUIRE(server.command("PING")->type == REDIS_REPLY_STATUS);
  CHECK(s.get(*other).status == session_status::missing);
  CHECK(s.metrics().l1_gaps == gaps + 1);
}

TEST_CASE("session_store l1 never serves stale data after its tracking connection dies") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto c = l1_config_for(server.port());
  c.connection.connect_timeout = 200ms;
  c.connection.command_timeout = 500ms;
  l1_store s(c, {}, clock);
  const auto id = s.create("ada", "v1");
  REQUIRE(id);
  const std::string key = s.redis_keys(*id).first;
  CHECK(warm(s, *id) == "v1");
  // The tracking connection is killed, then a plain client writes: that write's
  // invalidation is lost with the connection, yet the next get reads Redis.
  const auto killed = server.command("CLIENT KILL TYPE pubsub");
  REQUIRE(killed->type == REDIS_REPLY_INTEGER);
  REQUIRE(killed->integer == 1);
  hset(server, key, "d", "v2");
  CHECK(s.get(*id)->data == "v2");
  auto m = s.metrics();
  CHECK(m.l1_gaps == 1);
  CHECK(m.l1_hits == 1);
  CHECK(warm(s, *id) == "v2");  // tracking again: hits again
  // Redis gone: the L1 is bypassed (unavailable, never a held copy).
  server.kill();
  CHECK(s.get(*id).status == session_status::unavailable);
  m = s.metrics();
  CHECK(m.l1_gaps == 2);
  CHECK(m.l1_bypassed >= 1);
  CHECK(m.l1_entries == 0);
  CHECK(m.l1_connect_failures >= 1);
  // Back (empty): tracking again once a reconnect is allowed.
  server.restart();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  outgrow::session_result<outgrow::session_id> again;
  while (!again && std::chrono::steady_clock::now() < deadline) {
    clock.advance(2s);  // past any reconnect backoff (manual clock)
    again = s.create("ada", "back");
    if (!again) std::this_thread::sleep_for(5ms);  // the pool's backoff (<= 5 ms)
  }
  REQUIRE(again);
  CHECK(warm(s, *again) == "back");
}

TEST_CASE(
    "session_store l1 stores shared by threads lose no update and read their writes") {
  outgrow_test::redis_server server;
  auto c = l1_config_for(server.port());
  c.pool_size = 2;
  using l1_counter_store = outgrow::session_store<std::int64_t>;
  l1_counter_store a(c);
  l1_counter_store b(c);
  const auto shared = a.create("shared", 0);
  REQUIRE(shared);
  constexpr int threads = 4;  // two per store
  constexpr int rounds = 40;
  std::array<long, threads> failures{};
  std::array<long, threads> stale{};
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const auto ti = static_cast<std::size_t>(t);
        l1_counter_store& s = t % 2 == 0 ? a : b;
        for (int i = 0; i < rounds; ++i) {
          for (int attempt = 0;; ++attempt) {
            const auto got = s.get(*shared);
            if (!got || attempt > 1000) {
              ++failures[ti];
              break;
            }
            const auto r = s.update(*shared, got->version, got->data + 1);
            if (r == session_status::ok) {
              const auto mine = s.get(*shared);  // read-your-writes through the L1
              if (!mine || mine->version < got->version + 1) ++stale[ti];
              break;
            }
            if (r != session_status::conflict) {
              ++failures[ti];
              break;
            }
          }
        }
      });
    }
  }
  for (const long f : failures) CHECK(f == 0);
  for (const long s : stale) CHECK(s == 0);
  const auto got = b.get(*shared);
  REQUIRE(got);
  CHECK(got->data == threads * rounds);
  CHECK(got->version == 1 + threads * rounds);
  CHECK(a.metrics().updates + b.metrics().updates == threads * rounds);
  CHECK(a.metrics().l1_gaps + b.metrics().l1_gaps == 0);
}

TEST_CASE("session_store l1 gives up a silent tracking connection after its heartbeat") {
  outgrow_test::redis_server server;
  outgrow::manual_clock clock;
  auto c = l1_config_for(server.port());
  c.connection.connect_timeout = 200ms;
  c.connection.command_timeout = 200ms;
  l1_store s(c, {}, clock);
  const auto id = s.create("ada", "v1");
  REQUIRE(id);
  CHECK(warm(s, *id) == "v1");
  struct frozen {  // SIGSTOP the server for a scope (SIGCONT on exit, also on failure)
    explicit frozen(pid_t p) : pid(p) { ::kill(pid, SIGSTOP); }
    ~frozen() { ::kill(pid, SIGCONT); }
    pid_t pid;
  };
  {
    const frozen stopped(server.pid());  // connections stay open, nothing answers
    clock.advance(100ms);                // silence: this get sends the heartbeat PING
    CHECK(s.get(*id)->data == "v1");     // trusted until the PING is overdue
    CHECK(s.metrics().l1_hits == 2);
    clock.advance(200ms);  // command_timeout without an answer: given up
    CHECK(s.get(*id).status == session_status::unavailable);  // Redis, not the L1
    const auto m = s.metrics();
    CHECK(m.l1_gaps == 1);
    CHECK(m.l1_entries == 0);
    CHECK(m.l1_hits == 2);
  }
  clock.advance(2s);  // past the reconnect backoffs (manual clock)
  outgrow::session_result<outgrow::session<std::string>> back;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!back && std::chrono::steady_clock::now() < deadline) {
    clock.advance(2s);
    back = s.get(*id);
    if (!back) std::this_thread::sleep_for(5ms);  // the pool's broken connection
  }
  REQUIRE(back);
  CHECK(back->data == "v1");
}

TEST_CASE("session_store l1 reconnects without holding up other lookups") {
  // A listener that never accepts stands for a Redis that takes connections and never
  // answers: the L1's connect attempt waits there (command timeout 10 s). Meanwhile a
  // lookup from another thread must bypass the L1 at once, not queue behind the attempt.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(listener >= 0);
  struct fd_closer {
    int fd;
    ~fd_closer() {
      if (fd >= 0) ::close(fd);
    }
  } listening{listener};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  outgrow::redis_connection_config conn;
  conn.port = ntohs(addr.sin_port);
  conn.connect_timeout = 5s;
  conn.command_timeout = 10s;
  outgrow::manual_clock clock;
  outgrow::detail::session_l1<std::string, outgrow::manual_clock> l1(conn, "app:", 10, 1s,
                                                                     7, clock);
  const std::string key = "app:{ada}:s:secret";
  std::atomic<bool> first_done{false};
  std::atomic<bool> first_hit{true};
  std::thread first([&] {
    outgrow::detail::session_l1_ticket t;
    first_hit = l1.lookup(key, t).has_value();  // connects: waits for an answer
    first_done = true;
  });
  struct joiner {
    std::thread& t;
    int& fd;
    void finish() {  // closing the listener resets the waiting connection
      if (fd >= 0) ::close(fd);
      fd = -1;
      if (t.joinable()) t.join();
    }
    ~joiner() { finish(); }  // on failure too
  } join_first{first, listening.fd};
  // The attempt has connected (the connection waits in the listener's queue).
  pollfd pending{listener, POLLIN, 0};
  REQUIRE(::poll(&pending, 1, 10'000) == 1);
  outgrow::detail::session_l1_ticket t;
  CHECK_FALSE(l1.lookup(key, t).has_value());
  CHECK_FALSE(t.usable);           // bypassed: not tracking
  CHECK_FALSE(first_done.load());  // ... while the attempt still waits
  join_first.finish();
  CHECK_FALSE(first_hit.load());
  const auto counts = l1.counts();
  CHECK(counts.connect_failures == 1);  // one attempt, the first thread's
  CHECK(counts.bypassed == 2);
}

TEST_CASE("session_store l1 reads a bounded share of an invalidation flood per lookup") {
  // Writes under the prefix flood the tracking connection; one lookup reads at most the
  // drain budget (16 KiB here) under the L1's mutex, and while more is pending the L1
  // is bypassed (an entry may be stale until its invalidation is read).
  outgrow_test::redis_server server;
  outgrow::redis_connection_config conn;
  conn.port = server.port();
  outgrow::manual_clock clock;
  outgrow::detail::session_l1<std::string, outgrow::manual_clock> l1(
      conn, "flood:", 10, 1s, 7, clock, std::size_t{16} << 10);
  const std::string key = "flood:{ada}:s:secret";
  outgrow::detail::session_l1_ticket t;
  REQUIRE_FALSE(l1.lookup(key, t).has_value());  // connects, starts tracking
  REQUIRE(t.usable);
  l1.insert(key, "v1", 60s, t);
  REQUIRE(l1.lookup(key, t) == "v1");
  // About 100 KiB of invalidations (other keys under the prefix), each command
  // answered after its invalidation was written to the tracking connection.
  const std::string padding(200, 'x');
  for (int i = 0; i < 400; ++i) {
    const std::string other = fmt::format("flood:{}:{}", padding, i);
    raw(server, "SET %b 1", other);
  }
  CHECK_FALSE(l1.lookup(key, t).has_value());  // behind: bypassed
  CHECK_FALSE(t.usable);
  CHECK(l1.counts().bypassed == 1);
  // Each lookup reads 16 KiB more; caught up, the entry (not written) is served again.
  std::optional<std::string> back;
  for (int i = 0; i < 20 && !back; ++i) back = l1.lookup(key, t);
  CHECK(back == "v1");
  const auto counts = l1.counts();
  CHECK(counts.bypassed >= 5);  // over 80 KiB pending: five lookups or more behind
  CHECK(counts.gaps == 0);
}

TEST_CASE("session_store keeps the absolute lifetime a session was created with") {
  // A rolling deploy: stores with other lifetimes read the same sessions. The cap is
  // the one fixed at create, and a user's index never expires before their sessions.
  outgrow_test::redis_server server;
  auto short_lived = config_for(server.port());
  short_lived.idle_timeout = 10s;
  short_lived.absolute_lifetime = 20s;
  auto long_lived = config_for(server.port());
  long_lived.idle_timeout = 30s;
  long_lived.absolute_lifetime = 60s;
  store a(short_lived);
  store b(long_lived);

  const auto id = a.create("ada", "x");
  REQUIRE(id);
  const std::string key = a.redis_keys(*id).first;
  REQUIRE(b.get(*id));  // slides to min(now + 30 s, created + 20 s)
  CHECK(integer(server, "PTTL", key) <= 20'000);
  CHECK(integer(server, "PTTL", key) > 10'000);

  // The index: created by the 60 s store, then a 20 s store adds a session.
  const auto first = b.create("bob", "y");
  REQUIRE(first);
  const std::string index = b.redis_keys(*first).second + "u:bob";  // the user's index
  REQUIRE(integer(server, "EXISTS", index) == 1);
  const auto second = a.create("bob", "z");
  REQUIRE(second);
  CHECK(integer(server, "PTTL", index) > 20'000);  // still the 60 s session's
  REQUIRE(b.get(*first));
  REQUIRE(a.get(*second));
}
