// Fuzz-style tests of the decoders of stream data used by redis_stream_queue.hpp
// (include/outgrow/redis/detail/stream_fields.hpp: no hiredis, no server needed): the job
// entry fields, the dead-letter entry fields and the numeric field parsers. Each decoder
// gets 100,000 inputs from a fixed-seed std::mt19937_64 — a third encoded from a random
// value (must decode to exactly that value), a third such encodings mutated (drop,
// duplicate, rename, corrupt), a third random field lists — and every input must either
// decode, consistently (re-encoding the result decodes to the same value), or be counted
// as a decode error. Run under ASan + UBSan to show there is no UB either.
#include <outgrow/redis/detail/stream_fields.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "catch.hpp"

namespace {

using outgrow::detail::rsq_dead_fields;
using outgrow::detail::rsq_decode_error;
using outgrow::detail::rsq_job_fields;

constexpr int iterations = 100'000;

struct gen {
  std::mt19937_64 rng;
  explicit gen(std::uint64_t seed) : rng(seed) {}

  std::uint64_t below(std::uint64_t n) { return rng() % n; }
  bool coin() { return (rng() & 1U) != 0; }

  /// Bytes of every kind: text, digits, signs, spaces, NUL, high bytes.
  std::string bytes(std::size_t max_len = 12) {
    static constexpr char alphabet[] = "0123456789-+ jkenfsrcltJ:\n\t\x7f\x80\xff";
    std::string s(below(max_len + 1), '\0');
    for (char& c : s) {
      c = below(8) == 0 ? static_cast<char>(rng())
                        : alphabet[below(sizeof alphabet)];  // includes the NUL
    }
    return s;
  }

  std::string digits(std::size_t max_len = 25) {
    std::string s(1 + below(max_len), '0');
    for (char& c : s) c = static_cast<char>('0' + below(10));
    return s;
  }

  /// Numbers near and past every boundary the parsers check.
  std::string number_text() {
    static const std::string edges[] = {"0",
                                        "1",
                                        "4294967295",
                                        "4294967296",
                                        "9223372036854",
                                        "9223372036855",
                                        "9223372036854775807",
                                        "9223372036854775808",
                                        "-9223372036854775808",
                                        "-9223372036854775809",
                                        "18446744073709551615",
                                        "18446744073709551616",
                                        "99999999999999999999999999",
                                        "-1",
                                        "-0",
                                        "+1",
                                        " 1",
                                        "1 ",
                                        "0x10",
                                        "1e3",
                                        "",
                                        "-",
                                        "00000000000000000000000000001"};
    switch (below(4)) {
      case 0:
        return edges[below(std::size(edges))];
      case 1:
        return digits();
      case 2:
        return (coin() ? "-" : "") + digits(20);
      default:
        return bytes(22);
    }
  }

  std::uint64_t any_u64() {
    switch (below(3)) {
      case 0:
        return below(10);
      case 1:
        return rng() >> below(64);
      default:
        return std::numeric_limits<std::uint64_t>::max() - below(3);
    }
  }

  std::int64_t time_ms() {
    const auto max = static_cast<std::uint64_t>(outgrow::detail::rsq_max_time_ms);
    return static_cast<std::int64_t>(coin() ? below(max + 1) : max - below(3));
  }

  std::optional<std::string> maybe(std::size_t max_len = 12) {
    if (coin()) return std::nullopt;
    return bytes(max_len);
  }
};

/// Plain-digit reference for rsq_parse_u64: digits only, value <= max (no overflow).
std::optional<std::uint64_t> reference_u64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  constexpr std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (max - d) / 10) return std::nullopt;  // v * 10 + d would exceed max
    v = v * 10 + d;
  }
  return v;
}

std::optional<std::int64_t> reference_i64(std::string_view s) {
  const bool negative = s.starts_with('-');
  const auto magnitude = reference_u64(negative ? s.substr(1) : s);
  if (!magnitude) return std::nullopt;
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (!negative) {
    if (*magnitude > max) return std::nullopt;
    return static_cast<std::int64_t>(*magnitude);
  }
  if (*magnitude > max + 1) return std::nullopt;
  if (*magnitude == max + 1) return std::numeric_limits<std::int64_t>::min();
  return -static_cast<std::int64_t>(*magnitude);
}

std::vector<std::string_view> views(const std::vector<std::string>& v) {
  return {v.begin(), v.end()};
}

/// Applies 1..3 random mutations to an encoded field list.
void mutate(gen& g, std::vector<std::string>& f, std::span<const std::string_view> names) {
  const std::uint64_t n = 1 + g.below(3);
  for (std::uint64_t m = 0; m < n; ++m) {
    switch (g.below(8)) {
      case 0:  // drop one string (names and values no longer pair up)
        if (!f.empty()) f.erase(f.begin() + static_cast<std::ptrdiff_t>(g.below(f.size())));
        break;
      case 1:  // drop a pair
        if (f.size() >= 2) {
          const auto i = static_cast<std::ptrdiff_t>(2 * g.below(f.size() / 2));
          f.erase(f.begin() + i, f.begin() + i + 2);
        }
        break;
      case 2:  // duplicate a pair
        if (f.size() >= 2) {
          const auto i = 2 * g.below(f.size() / 2);
          const std::string a = f[i], b = f[i + 1];
          f.push_back(a);
          f.push_back(b);
        }
        break;
      case 3:  // rename a field (known, unknown or empty)
        if (f.size() >= 2) {
          f[2 * g.below(f.size() / 2)] =
              g.coin() ? std::string(names[g.below(names.size())]) : g.bytes(3);
        }
        break;
      case 4:  // corrupt a value with a number-like or random text
        if (f.size() >= 2) f[2 * g.below(f.size() / 2) + 1] = g.number_text();
        break;
      case 5:  // truncate or extend a value
        if (!f.empty()) {
          std::string& s = f[g.below(f.size())];
          if (g.coin() && !s.empty()) {
            s.resize(g.below(s.size()));
          } else {
            s += g.coin() ? g.digits(5) : g.bytes(3);
          }
        }
        break;
      case 6:  // add a random pair
        f.push_back(g.coin() ? std::string(names[g.below(names.size())]) : g.bytes(3));
        f.push_back(g.number_text());
        break;
      default:  // swap two strings
        if (f.size() >= 2) std::swap(f[g.below(f.size())], f[g.below(f.size())]);
        break;
    }
  }
}

/// A random field list: names from `names` and junk, values of any kind.
std::vector<std::string> random_fields(gen& g, std::span<const std::string_view> names) {
  std::vector<std::string> f(g.below(18));
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (i % 2 == 0) {
      f[i] = g.below(5) == 0 ? g.bytes(3) : std::string(names[g.below(names.size())]);
    } else {
      f[i] = g.coin() ? g.number_text() : g.bytes();
    }
  }
  return f;
}

}  // namespace

TEST_CASE("rsq_parse_u64 and rsq_parse_i64 accept exactly the in-range decimal numbers") {
  gen g(0x5EED'0001);
  std::uint64_t ok_u = 0, err_u = 0, ok_i = 0, err_i = 0, ok_t = 0, err_t = 0;
  for (int i = 0; i < iterations; ++i) {
    std::string s;
    std::optional<std::uint64_t> encoded_u;
    std::optional<std::int64_t> encoded_i;
    switch (i % 3) {
      case 0: {  // round trip from a value
        encoded_u = g.any_u64();
        encoded_i = static_cast<std::int64_t>(g.rng());
        s = std::to_string(*encoded_u);
        break;
      }
      case 1:  // an encoded value, mutated
        s = std::to_string(g.any_u64());
        if (g.coin()) {
          s.insert(g.below(s.size() + 1), g.coin() ? g.digits(3) : g.bytes(2));
        } else {
          s.erase(g.below(s.size()), 1 + g.below(3));
        }
        break;
      default:
        s = g.number_text();
        break;
    }
    const auto u = outgrow::detail::rsq_parse_u64(s);
    CHECK(u == reference_u64(s));
    if (encoded_u) CHECK(u == encoded_u);
    (u ? ok_u : err_u) += 1;

    const std::string si = encoded_i ? std::to_string(*encoded_i) : s;
    const auto v = outgrow::detail::rsq_parse_i64(si);
    CHECK(v == reference_i64(si));
    if (encoded_i) CHECK(v == encoded_i);
    (v ? ok_i : err_i) += 1;

    const auto t = outgrow::detail::rsq_parse_time_ms(s);
    const bool in_range =
        u && *u <= static_cast<std::uint64_t>(outgrow::detail::rsq_max_time_ms);
    CHECK(t.has_value() == in_range);
    if (t) CHECK(static_cast<std::uint64_t>(*t) == *u);
    (t ? ok_t : err_t) += 1;

    const auto reported = static_cast<long long>(g.rng());
    const auto d = outgrow::detail::rsq_delivery_count(reported);
    CHECK(d.has_value() == (reported >= 0));
    if (d) CHECK(*d == static_cast<std::uint64_t>(reported));
  }
  CHECK(ok_u + err_u == iterations);
  CHECK(ok_i + err_i == iterations);
  CHECK(ok_t + err_t == iterations);
  CHECK(ok_u >= iterations / 3);    // every round trip decoded
  CHECK(err_u >= iterations / 10);  // and the corpus did hit the error paths
  CHECK(err_t > 0);
  // The boundaries, explicitly.
  using outgrow::detail::rsq_parse_i64;
  using outgrow::detail::rsq_parse_u64;
  CHECK(rsq_parse_u64("18446744073709551615") == std::numeric_limits<std::uint64_t>::max());
  CHECK(!rsq_parse_u64("18446744073709551616"));
  CHECK(!rsq_parse_u64("-0"));
  CHECK(!rsq_parse_u64("+1"));
  CHECK(rsq_parse_i64("-9223372036854775808") == std::numeric_limits<std::int64_t>::min());
  CHECK(!rsq_parse_i64("-9223372036854775809"));
  CHECK(!rsq_parse_i64("9223372036854775808"));
  CHECK(!rsq_parse_i64("-"));
  CHECK(!outgrow::detail::rsq_parse_time_ms(
      std::to_string(outgrow::detail::rsq_max_time_ms + 1)));
}

TEST_CASE("rsq_decode_job_fields round-trips jobs and counts every malformed entry") {
  static constexpr std::string_view names[] = {"j", "k", "src", "J", ""};
  gen g(0x5EED'0002);
  std::uint64_t decoded = 0, errors = 0, round_trips = 0;
  for (int i = 0; i < iterations; ++i) {
    std::optional<rsq_job_fields> original;
    std::vector<std::string> fields;
    if (i % 3 != 2) {
      rsq_job_fields v{g.bytes(24), g.maybe()};
      fields = outgrow::detail::rsq_encode_job_fields(v.payload, v.key);
      if (i % 3 == 0) {
        original = v;
      } else {
        mutate(g, fields, names);
      }
    } else {
      fields = random_fields(g, names);
    }
    const auto in = views(fields);
    rsq_job_fields out{"stale", std::string("stale")};
    std::optional<std::string> salvaged = std::string("stale");
    const rsq_decode_error e = outgrow::detail::rsq_decode_job_fields(in, out, &salvaged);
    if (e == rsq_decode_error::none) {
      ++decoded;
      if (original) {
        CHECK(out == *original);
        ++round_trips;
      }
      // Consistent: the canonical encoding of what was decoded decodes to the same.
      const auto again = outgrow::detail::rsq_encode_job_fields(
          out.payload, out.key ? std::optional<std::string_view>(*out.key) : std::nullopt);
      rsq_job_fields out2;
      REQUIRE(outgrow::detail::rsq_decode_job_fields(views(again), out2) ==
              rsq_decode_error::none);
      CHECK(out2 == out);
      // What it decoded came from the input.
      std::size_t js = 0;
      for (std::size_t f = 0; f + 1 < in.size(); f += 2) {
        if (in[f] == "j") ++js;
      }
      CHECK(js == 1);
    } else {
      ++errors;
      CHECK(!original);  // an unmutated encoding never fails
      if (salvaged) {    // salvage only an unambiguous job field
        std::size_t js = 0;
        std::string_view last;
        for (std::size_t f = 0; f + 1 < in.size(); f += 2) {
          if (in[f] == "j") {
            ++js;
            last = in[f + 1];
          }
        }
        CHECK(js == 1);
        CHECK(*salvaged == last);
      }
    }
  }
  CHECK(decoded + errors == iterations);
  CHECK(round_trips == (iterations + 2) / 3);
  CHECK(errors >= iterations / 10);
}

TEST_CASE(
    "rsq_decode_dead_fields round-trips dead letters and counts every malformed one") {
  static constexpr std::string_view names[] = {"j",  "src", "n", "et", "e",
                                               "ff", "lf",  "k", "x",  "N"};
  gen g(0x5EED'0003);
  std::uint64_t decoded = 0, errors = 0, round_trips = 0;
  for (int i = 0; i < iterations; ++i) {
    std::optional<rsq_dead_fields> original;
    std::vector<std::string> fields;
    if (i % 3 != 2) {
      rsq_dead_fields v;
      v.payload = g.maybe(24);
      v.source_id = g.bytes();
      v.attempts = g.any_u64();
      v.error_type = g.bytes();
      v.error = g.bytes(30);
      v.first_failure_ms = g.time_ms();
      v.last_failure_ms = g.time_ms();
      v.key = g.maybe();
      fields = outgrow::detail::rsq_encode_dead_fields(v);
      if (i % 3 == 0) {
        original = v;
      } else {
        mutate(g, fields, names);
      }
    } else {
      fields = random_fields(g, names);
    }
    rsq_dead_fields out;
    const rsq_decode_error e = outgrow::detail::rsq_decode_dead_fields(views(fields), out);
    if (e == rsq_decode_error::none) {
      ++decoded;
      if (original) {
        CHECK(out == *original);
        ++round_trips;
      }
      CHECK(out.first_failure_ms >= 0);
      CHECK(out.first_failure_ms <= outgrow::detail::rsq_max_time_ms);
      CHECK(out.last_failure_ms >= 0);
      CHECK(out.last_failure_ms <= outgrow::detail::rsq_max_time_ms);
      // The times convert to system_clock without overflow (UBSan checks this too).
      const auto tp = std::chrono::system_clock::time_point(
          std::chrono::duration_cast<std::chrono::system_clock::duration>(
              std::chrono::milliseconds(out.last_failure_ms)));
      CHECK(tp.time_since_epoch().count() >= 0);
      const auto again = outgrow::detail::rsq_encode_dead_fields(out);
      rsq_dead_fields out2;
      REQUIRE(outgrow::detail::rsq_decode_dead_fields(views(again), out2) ==
              rsq_decode_error::none);
      CHECK(out2 == out);
    } else {
      ++errors;
      CHECK(!original);
      CHECK(outgrow::detail::to_string(e) != "unknown");
    }
  }
  CHECK(decoded + errors == iterations);
  CHECK(round_trips == (iterations + 2) / 3);
  CHECK(errors >= iterations / 10);
}
