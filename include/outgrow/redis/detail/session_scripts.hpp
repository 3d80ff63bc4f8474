// outgrow/redis/detail/session_scripts.hpp — the Lua scripts of session_store.
//
// Every operation of session_store is one script, so a session and its user's index
// change together or not at all (a process that dies between two commands cannot leave
// a live session missing from its index, which destroy_all would then miss). The
// semantics are documented in redis/session_store.hpp; this file is the listing, with
// each script's KEYS / ARGV / reply contract. No hiredis here.
//
// Keys (built by detail/session_keys.hpp; `base` is "<prefix>{<tag>}:"):
//   base .. "s:" .. secret        a hash: u (user), v (version), c (created, ms since the
//                                 epoch on the Redis server's clock; more than 60 s
//                                 ahead of it is corrupt), h (the absolute expiry, ms,
//                                 fixed at create: c + absolute_lifetime then; in [c,
//                                 c + 366 d], absent in sessions written before it:
//                                 c + the reader's absolute_lifetime), d (encoded data);
//                                 PEXPIREAT = its expiry
//   base .. "u:" .. esc(user)     the user's index: a sorted set, member = secret,
//                                 score = that session's expiry (ms); expires with the
//                                 user's last possible session (the latest h; a create
//                                 only ever moves its expiry later)
// Every key a script touches carries the same hash tag {<tag>} as its declared KEYS, so
// on Redis Cluster it lives in the same slot on the same node (scripts touch undeclared
// keys only inside that slot, which Cluster allows; never across slots).
//
// Time is the Redis server's (TIME), so every app instance agrees on expiry whatever its
// own clock says. Values are untrusted: a key of another type, a missing or non-numeric
// field, or a session absent from its user's index is reported (codes below), never an
// error that aborts half-way. Replies start with a code:
//   0 missing (absent, or past its absolute lifetime: deleted)
//   1 ok
//   2 corrupt (not a session hash, or fields malformed: created more than 60 s in the
//     future too — at most 60 s of clock skew between nodes, e.g. after a failover)
//   3 foreign (not in the index of the user it names)
//   4 conflict (version differs)
//   5 id taken (new secret collides: the caller draws another)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace outgrow::detail {

/// Which script; indexes session_scripts (and session_store's loaded SHA1s).
enum class session_script : std::uint8_t {
  create,
  get,
  update,
  rotate,
  destroy,
  destroy_all
};
inline constexpr std::size_t session_script_count = 6;

// Shared by every script: the server's time, the index key of a user, load_session,
// which reads and checks the session at k (ARGV base, secret, idle_ms, absolute_ms come
// first in every script that calls it), and slide, the sliding expiry.
inline constexpr std::string_view session_lua_prelude = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function index_of(base, user)
  return base .. 'u:' .. (string.gsub((string.gsub(user, '%%', '%%25')), ':', '%%3A'))
end
local function int_field(s, lo)
  local n = tonumber(s)
  if not n or n ~= n or n ~= math.floor(n) or n < lo or n > 9007199254740991 then
    return nil
  end
  return n
end
-- -> code, fields {u, v, c, d}, now, hard expiry, index key
local function load_session(k, base, secret, absolute)
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' then return 0 end
  if t ~= 'hash' then return 2 end
  local f = redis.call('HMGET', k, 'u', 'v', 'c', 'd', 'h')
  local v, c = int_field(f[2], 1), int_field(f[3], 0)
  if not f[1] or not f[4] or not v or not c then return 2 end
  local now = now_ms()
  -- created in the future (beyond clock skew between nodes) would lift the lifetime cap
  if c > now + 60000 then return 2 end
  -- the cap fixed at create (h, within 366 days of it); without h (written before h
  -- existed), created + this store's absolute lifetime
  local hard = c + absolute
  if f[5] then
    hard = int_field(f[5], c)
    if not hard or hard > c + 31622400000 then return 2 end
  end
  if hard <= now then
    redis.call('DEL', k)
    return 0
  end
  local idx = index_of(base, f[1])
  if redis.call('TYPE', idx)['ok'] ~= 'zset' or not redis.call('ZSCORE', idx, secret) then
    return 3
  end
  return 1, {f[1], v, c, f[4]}, now, hard, idx
end
-- Sets the sliding expiry of session k (member `secret` of idx): min(now + idle, hard).
local function slide(k, idx, secret, now, idle, hard)
  local exp = math.min(now + idle, hard)
  redis.call('PEXPIREAT', k, exp)
  redis.call('ZADD', idx, 'XX', exp, secret)
  return exp
end
)lua";

// create: KEYS session index; ARGV base secret idle_ms absolute_ms user data max(0 = none)
// -> {1, created, expires, evicted} | {2} (index is not a sorted set) | {5}
inline constexpr std::string_view session_create_lua = R"lua(
local base, idle, absolute = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local it = redis.call('TYPE', KEYS[2])['ok']
if it ~= 'none' and it ~= 'zset' then return {2} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {5} end
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local evicted, max = 0, tonumber(ARGV[7])
if max > 0 then
  local n = redis.call('ZCARD', KEYS[2])
  if n >= max then
    for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, n - max)) do
      evicted = evicted + redis.call('DEL', base .. 's:' .. m)
      redis.call('ZREM', KEYS[2], m)
    end
  end
end
local exp, hard = now + math.min(idle, absolute), now + absolute
redis.call('HSET', KEYS[1], 'u', ARGV[5], 'v', 1, 'c', now, 'h', hard, 'd', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], exp)
redis.call('ZADD', KEYS[2], exp, ARGV[2])
-- the index lives as long as its longest-lived session: never shortened (a store with
-- a shorter absolute lifetime, or a clock stepped back, would cut others' sessions off)
local left = redis.call('PTTL', KEYS[2])
if left < 0 or left < absolute then redis.call('PEXPIREAT', KEYS[2], hard) end
return {1, now, exp, evicted}
)lua";

// get: KEYS session; ARGV base secret idle_ms absolute_ms min_slide_ms
// -> {1, user, version, created, expires, data, now, slid} | {0} | {2} | {3}
// min_slide_ms > 0 (session_store's L1): the expiry slides only when that moves it by at
// least min_slide_ms (slid = 1); otherwise nothing is written (slid = 0, expires = the
// current expiry), so that a get does not report its own write to every tracking L1.
inline constexpr std::string_view session_get_lua = R"lua(
local code, f, now, hard, idx = load_session(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[4]))
if code ~= 1 then return {code} end
local idle, min_slide = tonumber(ARGV[3]), tonumber(ARGV[5])
if min_slide > 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl >= 0 and math.min(now + idle, hard) - (now + ttl) < min_slide then
    return {1, f[1], f[2], f[3], math.min(now + ttl, hard), f[4], now, 0}
  end
end
local exp = slide(KEYS[1], idx, ARGV[2], now, idle, hard)
return {1, f[1], f[2], f[3], exp, f[4], now, 1}
)lua";

// update: KEYS session; ARGV base secret idle_ms absolute_ms expected_version data
// -> {1, new version, expires} | {4, current version} | {0} | {2} | {3}
inline constexpr std::string_view session_update_lua = R"lua(
local code, f, now, hard, idx = load_session(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[4]))
if code ~= 1 then return {code} end
if tonumber(ARGV[5]) ~= f[2] then return {4, f[2]} end
redis.call('HSET', KEYS[1], 'v', f[2] + 1, 'd', ARGV[6])
local exp = slide(KEYS[1], idx, ARGV[2], now, tonumber(ARGV[3]), hard)
return {1, f[2] + 1, exp}
)lua";

// rotate: KEYS session new_session; ARGV base secret idle_ms absolute_ms new_secret
// -> {1, expires} | {5} | {0} | {2} | {3}. Data, version, user and creation time move to
// the new key (RENAME); the old secret leaves the index, the new one enters it.
inline constexpr std::string_view session_rotate_lua = R"lua(
local code, f, now, hard, idx = load_session(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[4]))
if code ~= 1 then return {code} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {5} end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('ZREM', idx, ARGV[2])
redis.call('ZADD', idx, 0, ARGV[5])
local exp = slide(KEYS[2], idx, ARGV[5], now, tonumber(ARGV[3]), hard)
return {1, exp}
)lua";

// destroy: KEYS session; ARGV base secret -> {1} deleted | {0} absent | {2} a foreign or
// corrupt value at the key, deleted (that id must not work either way)
inline constexpr std::string_view session_destroy_lua = R"lua(
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {0} end
local user = nil
if t == 'hash' then user = redis.call('HGET', KEYS[1], 'u') end
redis.call('DEL', KEYS[1])
if not user then return {2} end
local idx = index_of(ARGV[1], user)
if redis.call('TYPE', idx)['ok'] == 'zset' then redis.call('ZREM', idx, ARGV[2]) end
return {1}
)lua";

// destroy_all: KEYS index; ARGV base -> {1, sessions deleted} | {2} (index is not a sorted
// set: deleted, as it cannot name sessions)
inline constexpr std::string_view session_destroy_all_lua = R"lua(
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {1, 0} end
if t ~= 'zset' then
  redis.call('DEL', KEYS[1])
  return {2}
end
local n = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. 's:' .. m)
end
redis.call('DEL', KEYS[1])
return {1, n}
)lua";

inline constexpr std::string_view session_scripts[session_script_count] = {
    session_create_lua, session_get_lua,     session_update_lua,
    session_rotate_lua, session_destroy_lua, session_destroy_all_lua};

}  // namespace outgrow::detail
