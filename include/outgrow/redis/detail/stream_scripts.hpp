// outgrow/redis/detail/stream_scripts.hpp — the Lua scripts of redis_stream_queue.
//
// Every step that must change several keys at once (complete, fail, dead-letter, claim,
// replay, extend) runs as one script on the server, so a worker that dies between two
// commands cannot leave a job acknowledged and lost. rsq_link (stream_link.hpp) loads
// them with SCRIPT LOAD on each connect and runs them with EVALSHA; the semantics they
// implement are documented in redis/redis_stream_queue.hpp ("Delivery", "Idempotency").
// Kept apart from the C++ so the scripts read as one listing, next to their KEYS/ARGV
// contracts. No hiredis here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace outgrow::detail {

/// Which script; indexes rsq_scripts (and rsq_link's loaded SHA1s).
enum class rsq_script : std::uint8_t { complete, fail, dead_letter, claim, replay, extend };
inline constexpr std::size_t rsq_script_count = 6;

// Every script starts with rsq_lua_prelude and first checks the type of each key it
// writes (a key of another type — left by an operator or another program — makes it
// return an OUTGROW_WRONGTYPE error having changed nothing: the entry stays pending and
// is delivered again) and validates its arguments. It then does every write that could
// still fail before its first irreversible step (XACK / XDEL of a job or a dead letter),
// because Redis does not roll back a script that fails part-way: a job is never
// acknowledged and lost. Counters in <stream>:stats come last, with redis.pcall (a
// non-integer field there cannot undo a completion).
inline constexpr std::string_view rsq_lua_prelude = R"lua(
local function need(k, want)
  local t = redis.call('TYPE', k)['ok']
  if t ~= 'none' and t ~= want then
    return redis.error_reply('OUTGROW_WRONGTYPE ' .. k .. ' holds a ' .. t ..
      ', expected a ' .. want .. ' (nothing changed; the entry stays pending)')
  end
  return nil
end
local function count(stats, field)
  redis.pcall('HINCRBY', stats, field, 1)
end
)lua";

// complete: KEYS stream failures stats [done]; ARGV group id ttl_ms {n arg...}*
// -> {0 stale | 1 completed | 2 duplicate, failed effects}
inline constexpr std::string_view rsq_complete_lua = R"lua(
local bad = need(KEYS[1], 'stream') or need(KEYS[2], 'hash') or need(KEYS[3], 'hash') or
            (KEYS[4] and need(KEYS[4], 'string'))
if bad then return bad end
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  if not n or n < 1 or n > 7000 or i + n > #ARGV then
    return redis.error_reply('OUTGROW_BADARGS a commit() command has ' .. tostring(ARGV[i]) ..
      ' arguments (1 .. 7000 allowed; nothing changed)')
  end
  i = i + n + 1
end
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {0, 0} end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if KEYS[4] and not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[3]) then
  count(KEYS[3], 'duplicates')
  return {2, 0}
end
local failed = 0
i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local cmd = {}
  for j = 1, n do cmd[j] = ARGV[i + j] end
  local r = redis.pcall(unpack(cmd))
  if type(r) == 'table' and r.err then failed = failed + 1 end
  i = i + n + 1
end
count(KEYS[3], 'completed')
return {1, failed}
)lua";

// fail: KEYS stream failures; ARGV group consumer id idle_ms type message -> 1 | 0 stale
inline constexpr std::string_view rsq_fail_lua = R"lua(
local bad = need(KEYS[1], 'stream') or need(KEYS[2], 'hash')
if bad then return bad end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local first = now
local old = redis.call('HGET', KEYS[2], ARGV[3])
if old then first = string.match(old, '^(%d+)') or now end
redis.call('HSET', KEYS[2], ARGV[3], first .. '\n' .. now .. '\n' .. ARGV[5] .. '\n' .. ARGV[6])
return 1
)lua";

// dead_letter: KEYS stream dlq failures stats [done]; ARGV group consumer id attempts
// type message payload has_key key dlq_maxlen has_payload
// -> dlq id | '' (completed) | false (stale). The XADD to the dead-letter stream comes
// before the XACK: at worst (a failure between them) a job is dead-lettered twice.
inline constexpr std::string_view rsq_dead_letter_lua = R"lua(
local bad = need(KEYS[1], 'stream') or need(KEYS[2], 'stream') or need(KEYS[3], 'hash') or
            need(KEYS[4], 'hash') or (KEYS[5] and need(KEYS[5], 'string'))
if bad then return bad end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return false end
local old = redis.call('HGET', KEYS[3], ARGV[3])
local id = ''
if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 1 then
  count(KEYS[4], 'duplicates')
else
  local t = redis.call('TIME')
  local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
  local first = now
  if old then first = string.match(old, '^(%d+)') or now end
  local cmd = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[10], '*'}
  if ARGV[11] == '1' then cmd[#cmd + 1] = 'j'; cmd[#cmd + 1] = ARGV[7] end
  local rest = {'src', ARGV[3], 'n', ARGV[4], 'et', ARGV[5], 'e', ARGV[6], 'ff', first,
                'lf', now}
  for _, v in ipairs(rest) do cmd[#cmd + 1] = v end
  if ARGV[8] == '1' then cmd[#cmd + 1] = 'k'; cmd[#cmd + 1] = ARGV[9] end
  id = redis.call(unpack(cmd))
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
if id ~= '' then
  count(KEYS[4], 'dead_lettered')
  if ARGV[5] == 'outgrow::malformed_entry' then count(KEYS[4], 'malformed') end
end
return id
)lua";

// claim: KEYS stream; ARGV group consumer min_idle_ms start count
// -> {next, {{id, fields|nil, deliveries}...}, {deleted ids}}
inline constexpr std::string_view rsq_claim_lua = R"lua(
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for i, e in ipairs(r[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
  local n = 0
  if #p > 0 then n = p[1][4] end
  out[i] = {e[1], e[2], n}
end
return {r[1], out, r[3] or {}}
)lua";

// replay: KEYS dlq stream stats [done]; ARGV dlq_id maxlen('' = none)
// -> {1, new id} | {2} duplicate | {0} gone | {3} no single job field (left in place).
// The XADD to the main stream comes before the XDEL of the dead letter.
inline constexpr std::string_view rsq_replay_lua = R"lua(
local bad = need(KEYS[1], 'stream') or need(KEYS[2], 'stream') or need(KEYS[3], 'hash') or
            (KEYS[4] and need(KEYS[4], 'string'))
if bad then return bad end
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return {0} end
local f = e[1][2]
local job, key, jobs = nil, nil, 0
for i = 1, #f - 1, 2 do
  if f[i] == 'j' then job = f[i + 1]; jobs = jobs + 1 elseif f[i] == 'k' then key = f[i + 1] end
end
if jobs ~= 1 then return {3} end
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[1])
  count(KEYS[3], 'replay_duplicates')
  return {2}
end
local cmd = {'XADD', KEYS[2]}
if ARGV[2] ~= '' then cmd[3] = 'MAXLEN'; cmd[4] = '~'; cmd[5] = ARGV[2] end
cmd[#cmd + 1] = '*'; cmd[#cmd + 1] = 'j'; cmd[#cmd + 1] = job
if key then cmd[#cmd + 1] = 'k'; cmd[#cmd + 1] = key end
local id = redis.call(unpack(cmd))
redis.call('XDEL', KEYS[1], ARGV[1])
count(KEYS[3], 'replayed')
return {1, id}
)lua";

// extend: KEYS stream; ARGV group consumer id -> 1 | 0 (no longer ours)
inline constexpr std::string_view rsq_extend_lua = R"lua(
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', 0, 'JUSTID')
return 1
)lua";

inline constexpr std::string_view rsq_scripts[rsq_script_count] = {
    rsq_complete_lua, rsq_fail_lua,   rsq_dead_letter_lua,
    rsq_claim_lua,    rsq_replay_lua, rsq_extend_lua};

}  // namespace outgrow::detail
