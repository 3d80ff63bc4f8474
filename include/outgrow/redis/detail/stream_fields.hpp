// outgrow/redis/detail/stream_fields.hpp — the decoders (and encoders) of the fields that
// redis_stream_queue.hpp keeps in Redis streams. Everything read back from Redis is
// untrusted (another client, an operator or an older version may have written it), so
// every decoder here takes the flat field list of a stream entry as strings, checks it
// completely and returns either the decoded value or an rsq_decode_error — never UB,
// never a partially trusted value. No hiredis: tests fuzz these directly.
//
// Layouts (field names are one or two letters to keep entries small):
//   job entry (the main stream):   j <payload> [k <idempotency key>]
//   dead letter (<stream>:dead):   [j <payload>] src <id> n <attempts> et <error type>
//                                  e <error> ff <first failure ms> lf <last failure ms>
//                                  [k <idempotency key>]
// A field list is malformed when its length is odd, a name is unknown or repeated, a
// required field is missing, or a number is not plain decimal (digits only, no sign,
// no spaces) within its range: attempts in [0, 2^64), times in [0, the largest
// system_clock time point] ms. A dead letter without `j` is one whose source entry had
// no usable job field: it can be inspected and purged, never replayed.
//
// Thread-safety: free functions, no shared state. Complexity: O(fields) (quadratic in
// the number of fields only through the fixed, tiny set of names).
#pragma once

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace outgrow::detail {

/// Why a field list could not be decoded.
enum class rsq_decode_error : std::uint8_t {
  none = 0,
  odd_field_count = 1,  ///< names and values do not pair up
  unknown_field = 2,    ///< a name this version does not write
  duplicate_field = 3,  ///< a name twice
  missing_field = 4,    ///< a required field is absent
  bad_number = 5,       ///< not plain decimal digits, or out of range
};

[[nodiscard]] constexpr std::string_view to_string(rsq_decode_error e) noexcept {
  switch (e) {
    case rsq_decode_error::none:
      return "none";
    case rsq_decode_error::odd_field_count:
      return "odd field count";
    case rsq_decode_error::unknown_field:
      return "unknown field";
    case rsq_decode_error::duplicate_field:
      return "duplicate field";
    case rsq_decode_error::missing_field:
      return "missing field";
    case rsq_decode_error::bad_number:
      return "bad number";
  }
  return "unknown";
}

/// Plain decimal digits (no sign, space or prefix) filling `s`, within uint64_t.
[[nodiscard]] inline std::optional<std::uint64_t> rsq_parse_u64(
    std::string_view s) noexcept {
  if (s.empty()) return std::nullopt;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  std::uint64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

/// An optional '-' then plain decimal digits filling `s`, within int64_t.
[[nodiscard]] inline std::optional<std::int64_t> rsq_parse_i64(
    std::string_view s) noexcept {
  const std::string_view digits = s.starts_with('-') ? s.substr(1) : s;
  if (digits.empty()) return std::nullopt;
  for (const char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  std::int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

/// The largest millisecond count a system_clock::time_point holds (times beyond it
/// would overflow the conversion).
inline constexpr std::int64_t rsq_max_time_ms =
    std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::duration::max())
        .count();

/// A time field: milliseconds since the epoch in [0, rsq_max_time_ms].
[[nodiscard]] inline std::optional<std::int64_t> rsq_parse_time_ms(
    std::string_view s) noexcept {
  const auto v = rsq_parse_u64(s);
  if (!v || *v > static_cast<std::uint64_t>(rsq_max_time_ms)) return std::nullopt;
  return static_cast<std::int64_t>(*v);
}

/// A delivery count as Redis reports it (an integer reply): nullopt when negative.
[[nodiscard]] constexpr std::optional<std::uint64_t> rsq_delivery_count(
    long long reported) noexcept {
  if (reported < 0) return std::nullopt;
  return static_cast<std::uint64_t>(reported);
}

/// Finds each expected name once in a flat name/value list. `names` and `values` have
/// the same size; values[i] is set when names[i] occurs.
inline rsq_decode_error rsq_collect(std::span<const std::string_view> fields,
                                    std::span<const std::string_view> names,
                                    std::span<std::optional<std::string_view>> values) {
  if (fields.size() % 2 != 0) return rsq_decode_error::odd_field_count;
  for (std::size_t i = 0; i < fields.size(); i += 2) {
    bool known = false;
    for (std::size_t n = 0; n < names.size(); ++n) {
      if (fields[i] != names[n]) continue;
      if (values[n]) return rsq_decode_error::duplicate_field;
      values[n] = fields[i + 1];
      known = true;
      break;
    }
    if (!known) return rsq_decode_error::unknown_field;
  }
  return rsq_decode_error::none;
}

// ---- job entries (the main stream) ---------------------------------------------------

struct rsq_job_fields {
  std::string payload{};
  std::optional<std::string> key{};
  friend bool operator==(const rsq_job_fields&, const rsq_job_fields&) = default;
};

/// j <payload> [k <key>], as enqueue() writes them.
[[nodiscard]] inline std::vector<std::string> rsq_encode_job_fields(
    std::string_view payload, std::optional<std::string_view> key) {
  std::vector<std::string> out{"j", std::string(payload)};
  if (key) {
    out.emplace_back("k");
    out.emplace_back(*key);
  }
  return out;
}

/// Decodes a job entry into `out`. On an error, `salvaged` (if given) gets the payload
/// when exactly one `j` could be found (kept in the dead letter), else nullopt.
inline rsq_decode_error rsq_decode_job_fields(
    std::span<const std::string_view> fields, rsq_job_fields& out,
    std::optional<std::string>* salvaged = nullptr) {
  static constexpr std::string_view names[] = {"j", "k"};
  std::optional<std::string_view> values[2];
  rsq_decode_error e = rsq_collect(fields, names, values);
  if (e == rsq_decode_error::none && !values[0]) e = rsq_decode_error::missing_field;
  if (e != rsq_decode_error::none) {
    if (salvaged != nullptr) {
      salvaged->reset();
      std::size_t count = 0;
      for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
        if (fields[i] == "j") {
          ++count;
          *salvaged = std::string(fields[i + 1]);
        }
      }
      if (count != 1) salvaged->reset();
    }
    return e;
  }
  out.payload.assign(*values[0]);
  if (values[1]) {
    out.key = std::string(*values[1]);
  } else {
    out.key.reset();
  }
  return rsq_decode_error::none;
}

// ---- dead letters (<stream>:dead) ----------------------------------------------------

struct rsq_dead_fields {
  /// nullopt: the source entry had no usable job field (not replayable).
  std::optional<std::string> payload{};
  std::string source_id{};
  std::uint64_t attempts = 0;
  std::string error_type{};
  std::string error{};
  std::int64_t first_failure_ms = 0;
  std::int64_t last_failure_ms = 0;
  std::optional<std::string> key{};
  friend bool operator==(const rsq_dead_fields&, const rsq_dead_fields&) = default;
};

/// The fields in the order the dead-letter script writes them.
[[nodiscard]] inline std::vector<std::string> rsq_encode_dead_fields(
    const rsq_dead_fields& d) {
  std::vector<std::string> out;
  if (d.payload) {
    out.emplace_back("j");
    out.push_back(*d.payload);
  }
  out.insert(out.end(),
             {"src", d.source_id, "n", std::to_string(d.attempts), "et", d.error_type, "e",
              d.error, "ff", std::to_string(d.first_failure_ms), "lf",
              std::to_string(d.last_failure_ms)});
  if (d.key) {
    out.emplace_back("k");
    out.push_back(*d.key);
  }
  return out;
}

/// Decodes a dead-letter entry into `out` (left unspecified on an error).
inline rsq_decode_error rsq_decode_dead_fields(std::span<const std::string_view> fields,
                                               rsq_dead_fields& out) {
  static constexpr std::string_view names[] = {"j", "src", "n", "et", "e", "ff", "lf", "k"};
  std::optional<std::string_view> v[8];
  if (const auto e = rsq_collect(fields, names, v); e != rsq_decode_error::none) return e;
  for (std::size_t i = 1; i <= 6; ++i) {
    if (!v[i]) return rsq_decode_error::missing_field;
  }
  const auto attempts = rsq_parse_u64(*v[2]);
  const auto first = rsq_parse_time_ms(*v[5]);
  const auto last = rsq_parse_time_ms(*v[6]);
  if (!attempts || !first || !last) return rsq_decode_error::bad_number;
  if (v[0]) {
    out.payload = std::string(*v[0]);
  } else {
    out.payload.reset();
  }
  out.source_id.assign(*v[1]);
  out.attempts = *attempts;
  out.error_type.assign(*v[3]);
  out.error.assign(*v[4]);
  out.first_failure_ms = *first;
  out.last_failure_ms = *last;
  if (v[7]) {
    out.key = std::string(*v[7]);
  } else {
    out.key.reset();
  }
  return rsq_decode_error::none;
}

}  // namespace outgrow::detail
