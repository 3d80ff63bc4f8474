// outgrow/admission/detail/redis_gcra.hpp — the Lua script of redis_rate_limiter, its
// arguments and the parsing of its (untrusted) reply.
//
// The script is the GCRA of detail/gcra.hpp run inside Redis, on Redis's clock (TIME),
// so every process sharing a bucket decides on one time line. Time and amounts are
// 1/8 ns ticks as in gcra.hpp, but a Redis Lua number is a double (exact integers only
// below 2^53), so every quantity crosses the wire and lives in the script as a pair
// (microseconds, remainder in ticks: 0 <= remainder < 8000): microseconds since the Unix
// epoch stay below 2^53 until the year 2255, and a remainder never exceeds 8000.
// The bucket is one Redis string "<tat_us> <tat_remainder>" (the theoretical arrival
// time) that expires when the bucket would be full again.
#pragma once

#include <hiredis/hiredis.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

#include <outgrow/admission/detail/gcra.hpp>

namespace outgrow::detail::redis_gcra {

/// Ticks (1/8 ns) per microsecond: the radix of the remainder of every pair.
inline constexpr std::int64_t ticks_per_us = 1000 * gcra::ticks_per_ns;

// KEYS[1] the bucket; ARGV cost_us cost_rem capacity_us capacity_rem (the request's
// n × T and the bucket's burst × T as pairs). -> {1, 0, 0} admitted (the bucket
// updated, expiring when full again) | {0, wait_us, wait_rem} rejected (nothing
// changed; wait = the time until the request would fit) | an error reply: the key holds
// another type (WRONGTYPE, from GET) or a string that is not a bucket (OUTGROW_BADSTATE).
// Effects replication (the default since Redis 5, the only mode of Redis 7) makes the
// TIME read safe before the SET.
inline constexpr std::string_view script = R"lua(
local R = 8000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost_us, cost_rem = tonumber(ARGV[1]), tonumber(ARGV[2])
local cap_us, cap_rem = tonumber(ARGV[3]), tonumber(ARGV[4])
local tat_us, tat_rem = now, 0
local s = redis.call('GET', KEYS[1])
if s then
  local a, b = string.match(s, '^(%d+) (%d+)$')
  a, b = tonumber(a), tonumber(b)
  if not a or not b or a >= 9007199254740992 or b >= R then
    return redis.error_reply('OUTGROW_BADSTATE ' .. KEYS[1] .. ' holds no rate limiter state')
  end
  if a > now or (a == now and b > 0) then tat_us, tat_rem = a, b end
end
local next_us, next_rem = tat_us + cost_us, tat_rem + cost_rem
if next_rem >= R then next_us, next_rem = next_us + 1, next_rem - R end
local wait_us, wait_rem = next_us - now - cap_us, next_rem - cap_rem
if wait_rem < 0 then wait_us, wait_rem = wait_us - 1, wait_rem + R end
if wait_us > 0 or (wait_us == 0 and wait_rem > 0) then return {0, wait_us, wait_rem} end
local full_ms = math.ceil((next_us - now + (next_rem > 0 and 1 or 0)) / 1000)
if full_ms < 1 then full_ms = 1 end
redis.call('SET', KEYS[1], string.format('%d %d', next_us, next_rem), 'PX', full_ms)
return {1, 0, 0}
)lua";

/// SHA1 of `script` (what SCRIPT LOAD returns; a test checks it). A stale value only
/// costs a NOSCRIPT and an EVAL per decision.
inline constexpr std::string_view script_sha1 = "341e99bbd8de77d7edf05f6d7089d76e7de37cc0";

/// A tick count as the script's (microseconds, remainder) pair, in decimal.
struct pair_text {
  char us[24];
  char rem[8];
  std::size_t us_len = 0;
  std::size_t rem_len = 0;

  explicit pair_text(std::int64_t ticks) noexcept {
    us_len = static_cast<std::size_t>(
        std::to_chars(us, us + sizeof us, ticks / ticks_per_us).ptr - us);
    rem_len = static_cast<std::size_t>(
        std::to_chars(rem, rem + sizeof rem, ticks % ticks_per_us).ptr - rem);
  }
  [[nodiscard]] std::string_view micros() const noexcept { return {us, us_len}; }
  [[nodiscard]] std::string_view remainder() const noexcept { return {rem, rem_len}; }
};

/// The script's answer: admitted, or rejected with the ticks until the request fits.
struct answer {
  bool admitted = false;
  std::int64_t wait = 0;
};

/// Reads the script's reply; nullopt unless it is exactly {1, 0, 0} or {0, us, rem} with
/// a positive wait that fits in ticks and 0 <= rem < 8000 (a reply from anything else —
/// another script, a proxy, a corrupt stream — is never read as a decision).
[[nodiscard]] inline std::optional<answer> parse(const redisReply* r) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
      r->element == nullptr) {
    return std::nullopt;
  }
  for (std::size_t i = 0; i < 3; ++i) {
    if (r->element[i] == nullptr || r->element[i]->type != REDIS_REPLY_INTEGER) {
      return std::nullopt;
    }
  }
  const long long verdict = r->element[0]->integer;
  const long long us = r->element[1]->integer;
  const long long rem = r->element[2]->integer;
  if (verdict == 1 && us == 0 && rem == 0) return answer{true, 0};
  constexpr long long max_us = std::numeric_limits<std::int64_t>::max() / ticks_per_us - 1;
  if (verdict != 0 || us < 0 || us > max_us || rem < 0 || rem >= ticks_per_us ||
      (us == 0 && rem == 0)) {
    return std::nullopt;
  }
  return answer{false, us * ticks_per_us + rem};
}

}  // namespace outgrow::detail::redis_gcra
