// Compares outgrow::redis_cluster_hash_slot with a live redis-server's CLUSTER KEYSLOT,
// and checks the redis_server fixture leaves no process behind.
#include <outgrow/routing/redis_cluster_slots.hpp>

#include <signal.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "redis_server.hpp"

namespace {

// SplitMix64: a fixed, portable sequence, so the key set is the same everywhere.
class splitmix64 {
 public:
  explicit splitmix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform-enough in [0, n) for test data.
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
  char byte() { return static_cast<char>(next() & 0xffU); }

 private:
  std::uint64_t state_;
};

std::string from_alphabet(splitmix64& rng, std::string_view alphabet, std::size_t length) {
  std::string s;
  for (std::size_t i = 0; i < length; ++i) s += alphabet[rng.below(alphabet.size())];
  return s;
}

// 10,000 keys that exercise every branch of the hash-tag rule.
std::vector<std::string> make_keys() {
  using namespace std::string_literals;
  std::vector<std::string> keys = {""s,
                                   "foo"s,
                                   "bar"s,
                                   "somekey"s,
                                   "{"s,
                                   "}"s,
                                   "{}"s,
                                   "}{"s,
                                   "{{}}"s,
                                   "{}{}"s,
                                   "{a}"s,
                                   "a{b}c"s,
                                   "foo{}{bar}"s,
                                   "foo{{bar}}zap"s,
                                   "foo{bar}{zap}"s,
                                   "{user1000}.following"s,
                                   "{user1000}.followers"s,
                                   "user:{42}:cart"s,
                                   "user:{42}:orders"s,
                                   "{{"s,
                                   "}}"s,
                                   "a}b{c}"s,
                                   "{{a}"s,
                                   "{a{b}}"s,
                                   "foo{bar"s,
                                   "foo}bar{"s,
                                   "\0"s,
                                   "\0{\0}\0"s,
                                   "{\0}"s,
                                   "{}\0"s,
                                   "ключ:{пользователь}:корзина"s,
                                   "😀{🔑}😀"s,
                                   "\xff\xfe{\x80}\x81"s,
                                   "\xc3\x28{\xa0\xa1}"s,
                                   std::string(1000, '{'),
                                   std::string(1000, '}'),
                                   std::string(500, '{') + std::string(500, '}'),
                                   "{" + std::string(100'000, 'x') + "}",
                                   std::string(100'000, 'y') + "{tag}",
                                   std::string(65'536, '\0')};

  const std::vector<std::string_view> utf8 = {"é",  "ß", "ж", "中", "文", "😀",
                                              "🔑", "€", "{", "}",  "a",  "\xe2\x80\x8b"};
  splitmix64 rng(20261127);
  for (std::size_t i = 0; keys.size() < 10'000; ++i) {
    std::string key;
    switch (i % 10) {
      case 0:  // plain keys
        key = "key:" + std::to_string(i);
        break;
      case 1:  // tagged application keys
        key = "user:{" + std::to_string(rng.below(1000)) + "}:cart";
        break;
      case 2:  // brace-dense short strings: empty tags, nested and unmatched braces
        key = from_alphabet(rng, "{}ab", rng.below(13));
        break;
      case 3:  // arbitrary bytes, NUL and 0x80-0xff included
        for (std::size_t n = rng.below(40); n > 0; --n) key += rng.byte();
        break;
      case 4:  // UTF-8 with braces in between
        for (std::size_t n = rng.below(12); n > 0; --n) key += utf8[rng.below(utf8.size())];
        break;
      case 5: {  // long keys with a tag somewhere (maybe empty, maybe none)
        key = from_alphabet(rng, "abcdefghijklmnopqrstuvwxyz:0123456789",
                            200 + rng.below(4000));
        const std::size_t at = rng.below(key.size());
        const std::size_t tag = rng.below(4);  // 0: empty tag "{}"
        key.insert(at, "{" + from_alphabet(rng, "xyz{", tag) + "}");
        break;
      }
      case 6:  // prefix{inner}suffix with random parts, inner possibly empty
        key = from_alphabet(rng, "ab}", rng.below(4)) + "{" +
              from_alphabet(rng, "ab{", rng.below(3)) + "}" +
              from_alphabet(rng, "ab{}", rng.below(4));
        break;
      case 7: {  // binary keys with a binary tag
        std::string inner;
        for (std::size_t n = rng.below(8); n > 0; --n) inner += rng.byte();
        key = "\x00\x01"s + "{" + inner + "}" + "\xfe\xff"s;
        break;
      }
      case 8:  // keys like "order:{2026-11-27}:000123"
        key = "order:{2026-11-" + std::to_string(10 + rng.below(20)) +
              "}:" + std::to_string(rng.below(1'000'000));
        break;
      default:  // very long keys once in a while, otherwise short random bytes
        if (i % 1000 == 9) {
          key = std::string(50'000 + rng.below(50'000), 'k');
          key[rng.below(key.size())] = '{';
          key[rng.below(key.size())] = '}';
        } else {
          for (std::size_t n = 1 + rng.below(6); n > 0; --n) key += rng.byte();
        }
        break;
    }
    keys.push_back(std::move(key));
  }
  return keys;
}

std::string printable(std::string_view key) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (const char c : key.substr(0, 60)) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b < 0x7f && b != '\\') {
      out += c;
    } else {
      out += "\\x";
      out += hex[b >> 4];
      out += hex[b & 0xfU];
    }
  }
  if (key.size() > 60) out += "... (" + std::to_string(key.size()) + " bytes)";
  return out;
}

bool process_exists(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

}  // namespace

TEST_CASE(
    "redis_cluster_hash_slot equals CLUSTER KEYSLOT of a live redis-server for 10000 keys",
    "[redis_cluster][integration]") {
  outgrow_test::redis_server server({.cluster = true});
  const std::vector<std::string> keys = make_keys();
  REQUIRE(keys.size() == 10'000);

  outgrow_test::redis_context c = server.connect();
  std::vector<std::string> mismatches;
  std::size_t compared = 0;
  constexpr std::size_t batch = 500;
  for (std::size_t begin = 0; begin < keys.size(); begin += batch) {
    const std::size_t end = std::min(keys.size(), begin + batch);
    for (std::size_t i = begin; i < end; ++i) {
      REQUIRE(redisAppendCommand(c.get(), "CLUSTER KEYSLOT %b", keys[i].data(),
                                 keys[i].size()) == REDIS_OK);
    }
    for (std::size_t i = begin; i < end; ++i) {
      void* raw = nullptr;
      INFO("hiredis: " << c->errstr);
      REQUIRE(redisGetReply(c.get(), &raw) == REDIS_OK);
      const outgrow_test::redis_reply reply(static_cast<redisReply*>(raw));
      REQUIRE(reply);
      INFO("reply: " << outgrow_test::reply_text(*reply));
      REQUIRE(reply->type == REDIS_REPLY_INTEGER);
      const long long ours = outgrow::redis_cluster_hash_slot(keys[i]);
      if (reply->integer != ours) {
        mismatches.push_back("key \"" + printable(keys[i]) + "\": server " +
                             std::to_string(reply->integer) + ", ours " +
                             std::to_string(ours));
      }
      ++compared;
    }
  }
  CHECK(compared == keys.size());
  if (!mismatches.empty()) {
    std::string report;
    for (std::size_t i = 0; i < mismatches.size() && i < 20; ++i)
      report += mismatches[i] + "\n";
    FAIL(mismatches.size() << " mismatches, first ones:\n" << report);
  }
}

TEST_CASE("redis_server stop leaves no process behind", "[redis_server][integration]") {
  outgrow_test::redis_server server;
  const pid_t pid = server.pid();
  REQUIRE(pid > 0);
  REQUIRE(process_exists(pid));
  const outgrow_test::redis_reply pong = server.command("PING");
  CHECK(outgrow_test::reply_text(*pong) == "PONG");

  server.stop();
  CHECK_FALSE(server.running());
  CHECK(::kill(pid, 0) == -1);
  CHECK(errno == ESRCH);
  server.stop();  // idempotent
}

TEST_CASE("redis_server kill and restart reuse the port with an empty data set",
          "[redis_server][integration]") {
  outgrow_test::redis_server server;
  const int port = server.port();
  const pid_t first_pid = server.pid();
  const outgrow_test::redis_reply set = server.command("SET %s %s", "k", "v");
  CHECK(outgrow_test::reply_text(*set) == "OK");

  server.kill();
  CHECK_FALSE(process_exists(first_pid));
  CHECK_THROWS(server.connect());

  server.restart();
  CHECK(server.port() == port);
  CHECK(server.pid() != first_pid);
  // No persistence: the key is gone.
  const outgrow_test::redis_reply get = server.command("GET %s", "k");
  CHECK(get->type == REDIS_REPLY_NIL);
}

TEST_CASE("redis_server destructor stops the server and removes its directory",
          "[redis_server][integration]") {
  pid_t pid = -1;
  std::filesystem::path dir;
  {
    outgrow_test::redis_server server({.cluster = true});
    pid = server.pid();
    dir = server.dir();
    CHECK(std::filesystem::exists(dir / "nodes.conf"));
    CHECK(server.cluster_port() > 0);
  }
  CHECK_FALSE(process_exists(pid));
  CHECK_FALSE(std::filesystem::exists(dir));
}

TEST_CASE("redis_server start failure reports the redis log",
          "[redis_server][integration]") {
  try {
    outgrow_test::redis_server server({.extra_args = {"--no-such-option", "1"}});
    FAIL("redis-server should have refused the option");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK(what.find("redis.log") != std::string::npos);
    CHECK(what.find("no-such-option") != std::string::npos);
  }
}

#if defined(__linux__)
TEST_CASE("redis_server dies with a test process that exits without cleanup",
          "[redis_server][integration]") {
  // A child test process starts a server, reports its pid and directory, then _exits
  // inside the fixture's scope, so no destructor runs (as after a crash or a ctest
  // timeout): PR_SET_PDEATHSIG must kill the server. As a child subreaper this process
  // inherits the orphaned server and can reap it and read how it died.
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  struct subreaper_off {
    ~subreaper_off() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  } restore;
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    try {
      const outgrow_test::redis_server server;
      const pid_t pid = server.pid();
      const std::string dir = server.dir().string();
      (void)!::write(fds[1], &pid, sizeof pid);
      (void)!::write(fds[1], dir.data(), dir.size());
      ::_exit(0);  // still in the fixture's scope: its destructor never runs
    } catch (...) {
      ::_exit(1);
    }
  }
  ::close(fds[1]);
  std::string report;
  std::array<char, 512> buffer{};
  for (ssize_t n; (n = ::read(fds[0], buffer.data(), buffer.size())) > 0;) {
    report.append(buffer.data(), static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(report.size() > sizeof(pid_t));
  pid_t server_pid = -1;
  std::memcpy(&server_pid, report.data(), sizeof server_pid);
  const std::filesystem::path dir = report.substr(sizeof server_pid);
  REQUIRE(server_pid > 0);

  // Reap the server (bounded: this waits for a process, it does not make time pass).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  pid_t reaped = 0;
  while ((reaped = ::waitpid(server_pid, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (reaped == 0) {  // still running: the check failed; do not leave it behind
    ::kill(server_pid, SIGKILL);
    ::waitpid(server_pid, &status, 0);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  REQUIRE(reaped == server_pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK_FALSE(process_exists(server_pid));
}
#endif
