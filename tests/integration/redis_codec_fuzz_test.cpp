// Fuzz-style tests of every decoder that reads Redis data in redis/codec.hpp and
// redis/detail/invalidation_wire.hpp: the path redis_tier decodes values with
// (detail::redis_decode_value: size limit, codec, validation hooks) for each type the
// default codec supports, and the invalidation bus's message parser. Each decoder gets
// 100,000 inputs from a fixed-seed std::mt19937_64 — valid encodings, mutations of them
// (flipped, replaced, inserted, erased bytes, truncation, extension) and random bytes —
// and must not crash (run under ASan + UBSan), and every input must either decode to a
// value that encodes back to it (or, for decimal text that has several spellings, to a
// value that round-trips) or be a decode error, which the test counts. No server needed.
#include <hiredis/hiredis.h>

#include <outgrow/redis/codec.hpp>
#include <outgrow/redis/detail/connection.hpp>
#include <outgrow/redis/detail/invalidation_wire.hpp>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "catch.hpp"

namespace {

constexpr int inputs_per_decoder = 100'000;
constexpr std::size_t max_size = 1 << 20;

enum class color : std::uint8_t { red = 1, green = 2, blue = 200 };
enum class power : std::uint8_t { off = 0, on = 1 };
bool redis_validate(power p) {
  return p == power::off || p == power::on;
}

struct point {
  std::int32_t x;
  std::int32_t y;
  double weight;
};
bool same(const point& a, const point& b) {
  return std::memcmp(&a, &b, sizeof(point)) == 0;  // NaN weights too
}

struct flagged {  // padding and a bool: not every bit pattern is valid
  std::int32_t count;
  bool enabled;
};
bool redis_validate(const flagged& f) {
  unsigned char b = 0;
  std::memcpy(&b, &f.enabled, 1);
  return b <= 1;
}
bool same(const flagged& a, const flagged& b) {
  unsigned char ea = 0;
  unsigned char eb = 0;
  std::memcpy(&ea, &a.enabled, 1);
  std::memcpy(&eb, &b.enabled, 1);
  return a.count == b.count && ea == eb;
}

template <class T>
bool same(const T& a, const T& b) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::bit_cast<std::conditional_t<sizeof(T) == 8, std::uint64_t, std::uint32_t>>(
               a) ==
           std::bit_cast<std::conditional_t<sizeof(T) == 8, std::uint64_t, std::uint32_t>>(
               b);
  } else {
    return a == b;
  }
}

/// Random inputs around valid encodings.
class input_source {
 public:
  explicit input_source(std::uint64_t seed) : rng_(seed) {}

  std::uint64_t next() { return rng_(); }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(rng_() % n); }

  std::string random_bytes(std::size_t max_len) {
    std::string s(below(max_len + 1), '\0');
    for (char& c : s) c = static_cast<char>(rng_());
    return s;
  }

  /// One of: a valid encoding as is, mutated 1-4 times, or random bytes.
  std::string around(std::string valid) {
    const std::size_t pick = below(10);
    if (pick == 0) return valid;
    if (pick == 1) return random_bytes(40);
    const std::size_t mutations = 1 + below(4);
    for (std::size_t m = 0; m < mutations; ++m) {
      switch (below(6)) {
        case 0:  // flip a bit
          if (!valid.empty())
            valid[below(valid.size())] ^= static_cast<char>(1U << below(8));
          break;
        case 1:  // replace a byte
          if (!valid.empty()) valid[below(valid.size())] = static_cast<char>(rng_());
          break;
        case 2:  // insert a byte
          valid.insert(valid.begin() + static_cast<std::ptrdiff_t>(below(valid.size() + 1)),
                       static_cast<char>(rng_()));
          break;
        case 3:  // erase a byte
          if (!valid.empty())
            valid.erase(valid.begin() + static_cast<std::ptrdiff_t>(below(valid.size())));
          break;
        case 4:  // truncate
          valid.resize(below(valid.size() + 1));
          break;
        default:  // extend
          valid += random_bytes(8);
          break;
      }
    }
    return valid;
  }

 private:
  std::mt19937_64 rng_;
};

struct fuzz_result {
  int decoded = 0;
  int decode_errors = 0;
};

/// Fuzzes the tier's decode path for T. `make` draws a random valid value; `canonical`
/// says whether the encoding is unique (so a decoded input must be exactly encode(v)).
template <class T, class Make>
fuzz_result fuzz_values(std::uint64_t seed, Make make, bool canonical) {
  const outgrow::redis_default_codec codec;
  input_source src(seed);
  fuzz_result r;
  for (int i = 0; i < inputs_per_decoder; ++i) {
    std::string valid;
    codec.encode(make(src), valid);
    const std::string input = src.around(std::move(valid));
    const std::optional<T> v =
        outgrow::detail::redis_decode_value<T>(codec, input, max_size);
    if (!v) {
      ++r.decode_errors;  // what redis_tier counts in metrics().decode_errors
      continue;
    }
    ++r.decoded;
    std::string again;
    codec.encode(*v, again);
    if (canonical) {
      REQUIRE(again == input);
    }
    const auto back = outgrow::detail::redis_decode_value<T>(codec, again, max_size);
    REQUIRE(back.has_value());
    REQUIRE(same(*back, *v));
  }
  REQUIRE(r.decoded + r.decode_errors == inputs_per_decoder);
  return r;
}

template <class T>
T random_number(input_source& src) {
  if constexpr (std::is_floating_point_v<T>) {
    using bits = std::conditional_t<sizeof(T) == 8, std::uint64_t, std::uint32_t>;
    return std::bit_cast<T>(static_cast<bits>(src.next()));  // NaNs and infinities too
  } else {
    return static_cast<T>(src.next());
  }
}

}  // namespace

TEST_CASE("fuzz: the default codec's decoders", "[redis_codec][fuzz]") {
  std::uint64_t seed = 0xF022'0001;
  const auto report = [](std::string_view type, const fuzz_result& r) {
    fmt::print("{:<14} decoded {:>6}, decode errors {:>6}\n", type, r.decoded,
               r.decode_errors);
    // The mix yields both outcomes for every type but std::string (any bytes are one).
    CHECK(r.decoded > 0);
    if (type != "std::string") CHECK(r.decode_errors > 0);
  };
  report("std::string",
         fuzz_values<std::string>(
             seed++, [](input_source& s) { return s.random_bytes(24); }, true));
  report("bool", fuzz_values<bool>(
                     seed++, [](input_source& s) { return s.next() % 2 == 0; }, true));
  report("char",
         fuzz_values<char>(
             seed++, [](input_source& s) { return static_cast<char>(s.next()); }, true));
  // Decimal text: from_chars also accepts leading zeros ("007"): round trip only.
  report("int8", fuzz_values<std::int8_t>(seed++, random_number<std::int8_t>, false));
  report("uint16", fuzz_values<std::uint16_t>(seed++, random_number<std::uint16_t>, false));
  report("int32", fuzz_values<std::int32_t>(seed++, random_number<std::int32_t>, false));
  report("int64", fuzz_values<std::int64_t>(seed++, random_number<std::int64_t>, false));
  report("uint64", fuzz_values<std::uint64_t>(seed++, random_number<std::uint64_t>, false));
  report("float", fuzz_values<float>(seed++, random_number<float>, false));
  report("double", fuzz_values<double>(seed++, random_number<double>, false));
  report("enum",
         fuzz_values<color>(
             seed++, [](input_source& s) { return static_cast<color>(s.next()); }, false));
  report("enum+hook",
         fuzz_values<power>(
             seed++, [](input_source& s) { return s.next() % 2 ? power::on : power::off; },
             false));
  report("raw struct", fuzz_values<point>(
                           seed++,
                           [](input_source& s) {
                             return point{static_cast<std::int32_t>(s.next()),
                                          static_cast<std::int32_t>(s.next()),
                                          random_number<double>(s)};
                           },
                           true));
  // Padding bytes are not preserved by copies: compare members, not encodings.
  report("raw+hook", fuzz_values<flagged>(
                         seed++,
                         [](input_source& s) {
                           flagged f{};
                           f.count = static_cast<std::int32_t>(s.next());
                           f.enabled = s.next() % 2 == 0;
                           return f;
                         },
                         false));
}

struct pinned_v1 {
  std::int32_t n;
};
struct pinned_v1_renamed {
  std::int32_t n;
};
// A pinned type name: the fingerprint no longer depends on the compiler's spelling.
template <>
inline constexpr std::string_view outgrow::redis_type_name<pinned_v1> = "pinned/1";
template <>
inline constexpr std::string_view outgrow::redis_type_name<pinned_v1_renamed> = "pinned/1";

TEST_CASE("redis_type_name pins the raw encoding's type fingerprint", "[redis_codec]") {
  const outgrow::redis_default_codec codec;
  std::string bytes;
  codec.encode(pinned_v1{42}, bytes);
  // Same pinned name, size and alignment: readable as the renamed type.
  const auto renamed = codec.decode(bytes, std::type_identity<pinned_v1_renamed>{});
  REQUIRE(renamed.has_value());
  CHECK(renamed->n == 42);
  // Another type of the same size: not readable.
  CHECK_FALSE(codec.decode(bytes, std::type_identity<float>{}));
  struct unpinned {
    std::int32_t n;
  };
  CHECK_FALSE(codec.decode(bytes, std::type_identity<unpinned>{}));
}

TEST_CASE("fuzz: the tier's decoder rejects values over max_value_size",
          "[redis_codec][fuzz]") {
  const outgrow::redis_default_codec codec;
  const std::string big(100, 'x');
  CHECK(outgrow::detail::redis_decode_value<std::string>(codec, big, 100) == big);
  CHECK_FALSE(outgrow::detail::redis_decode_value<std::string>(codec, big, 99));
}

namespace {

template <class Key, class Make>
fuzz_result fuzz_messages(std::uint64_t seed, Make make_key) {
  const outgrow::redis_default_codec codec;
  input_source src(seed);
  fuzz_result r;
  for (int i = 0; i < inputs_per_decoder; ++i) {
    const bool clear = src.below(8) == 0;
    const bool old_format = src.below(4) == 0;
    const std::uint64_t from = src.next();
    const std::uint64_t seq = src.next();
    std::string valid;
    if (old_format) {
      valid.push_back(clear ? 'C' : 'K');
      outgrow::detail::redis_put_u64(valid, from);
    } else {
      valid = outgrow::detail::redis_invalidation_header(clear, from, seq);
    }
    if (!clear) codec.encode(make_key(src), valid);
    const std::string input = src.around(std::move(valid));
    const auto m = outgrow::detail::redis_parse_invalidation<Key>(codec, input);
    if (!m) {
      ++r.decode_errors;  // what the bus counts in metrics().decode_errors
      continue;
    }
    ++r.decoded;
    REQUIRE(m->clear != m->key.has_value());
    // The message it parsed to formats back to the input (key codecs are canonical
    // for strings; for numbers the key must round-trip).
    std::string again;
    if (m->has_seq) {
      again = outgrow::detail::redis_invalidation_header(m->clear, m->from, m->seq);
    } else {
      again.push_back(m->clear ? 'C' : 'K');
      outgrow::detail::redis_put_u64(again, m->from);
    }
    REQUIRE(input.starts_with(again));
    if (m->key) {
      std::string key_bytes;
      codec.encode(*m->key, key_bytes);
      if constexpr (std::is_same_v<Key, std::string>) {
        REQUIRE(again + key_bytes == input);
      }
      const auto back =
          outgrow::detail::redis_decode_value<Key>(codec, key_bytes, max_size);
      REQUIRE(back == m->key);
    } else {
      REQUIRE(again == input);
    }
  }
  REQUIRE(r.decoded + r.decode_errors == inputs_per_decoder);
  return r;
}

}  // namespace

TEST_CASE("fuzz: the invalidation bus's message parser", "[redis_codec][fuzz]") {
  const auto strings = fuzz_messages<std::string>(
      0xF022'1001, [](input_source& s) { return s.random_bytes(24); });
  const auto numbers = fuzz_messages<std::int64_t>(
      0xF022'1002, [](input_source& s) { return static_cast<std::int64_t>(s.next()); });
  for (const auto& r : {strings, numbers}) {
    fmt::print("messages: decoded {:>6}, decode errors {:>6}\n", r.decoded,
               r.decode_errors);
    CHECK(r.decoded > 0);
    CHECK(r.decode_errors > 0);
  }
}

TEST_CASE("redis_format_command writes exactly what hiredis formats",
          "[redis_codec][fuzz]") {
  // Pipelines (detail/stream_link.hpp) format commands themselves; Redis must receive the
  // bytes hiredis would have sent: empty arguments, binary bytes, CR LF inside an
  // argument, lengths across digit boundaries, up to 64 KiB.
  std::mt19937_64 rng(20261203);
  const std::size_t lengths[] = {0, 1, 9, 10, 99, 100, 999, 1000, 65'536};
  for (int round = 0; round < 2'000; ++round) {
    std::vector<std::string> args(1 + rng() % 12);
    for (auto& a : args) {
      const std::size_t n =
          rng() % 4 == 0 ? lengths[rng() % std::size(lengths)] : rng() % 40;
      a.resize(n);
      for (auto& c : a) {
        c = rng() % 4 == 0 ? "\r\n\0$"[rng() % 4] : static_cast<char>(rng());
      }
    }
    std::vector<std::string_view> views(args.begin(), args.end());
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    char* formatted = nullptr;
    const int n = redisFormatCommandArgv(&formatted, static_cast<int>(args.size()),
                                         argv.data(), lens.data());
    REQUIRE(n > 0);
    const std::string expected(formatted, static_cast<std::size_t>(n));
    redisFreeCommand(formatted);
    std::string ours = "prefix";  // appends, never overwrites
    outgrow::detail::redis_format_command(ours, views);
    REQUIRE(ours == "prefix" + expected);
  }
}
