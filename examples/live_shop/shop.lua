-- examples/live_shop/shop.lua — the live shop's shoppers, as a wrk load script (issue 21).
--
-- What: every wrk thread is one shopper, `shopper-<n>` (n = 1, 2, ... unique across the
-- threads), doing what tests/integration/live_shop_test.cpp's shoppers do, through the
-- front (front.cpp):
--   POST /login?user=shopper-n           once (again until it answers 200); the
--                                        shop_session cookie from its Set-Cookie
--   then, for i = 0, 1, 2, ...:
--   POST /orders?item=item-i             201: remember the order id and the shop_lsn
--                                        cookie (read-your-writes position)
--   GET  /orders                         only after a 201: must contain {"id":<that id>,
--   GET  /me                             must be "shopper-n\n"
--   GET  /product/<1 + (n*7919 + i) % 500>
-- Both cookies go with every request (Cookie: shop_session=..; shop_lsn=..). Before each
-- request the shopper thinks: delay() returns the think time of the current phase.
--
-- Run (front on 127.0.0.1:8080; OUTDIR must exist):
--   wrk -t 4 -c 4 -d 60s --latency -s examples/live_shop/shop.lua \
--       http://127.0.0.1:8080 -- OUTDIR 0:150,20:8,70:150
-- SCHEDULE "0:150,20:8,70:150": think 150 ms from t = 0 s, 8 ms from t = 20 s, 150 ms
-- from t = 70 s, t being the seconds since the thread's first request (its shopper's
-- first think; the threads start within milliseconds of each other). Phases are
-- "<start s>:<think ms>", starts increasing from 0. Default: "0:100".
-- examples/live_shop/demo.cpp (`scripts/dev demo --live`) starts a whole shop and runs it.
--
-- ONE CONNECTION PER THREAD: -t N -c N. A shopper is a thread's script state (its
-- cookies, its order, where it is in its loop), so a second connection in the thread
-- would interleave two request streams in one shopper and break its checks. The script
-- reads wrk's -t/-c from /proc/self/cmdline and refuses (exit 2) when they differ; where
-- that file does not exist it warns and trusts you.
--
-- Output: a short human summary on stdout, and in OUTDIR
--   wrk-summary.txt  "key value" lines (below), for scripts;
--   acked.txt        the id of every order acknowledged (201), one per line, sorted:
--                    what the shop owes (each must end fulfilled or dead-lettered).
-- wrk-summary.txt keys — wrk's own:
--   requests                  responses received (all threads)
--   duration_us               the run's length
--   errors_connect/_read/_write/_status/_timeout   wrk's socket errors; status = answers
--                             > 399 (401s and 5xx alike); timeout = answers slower
--                             than --timeout (wrk keeps waiting; it is not a reconnect)
--   latency_p50_us/_p90_us/_p99_us/_max_us   wrk's request latency (send to answer,
--                             think time excluded; wrk's coordinated-omission
--                             correction applied)
-- the script's, summed over the threads:
--   requests_login, requests_post_orders, requests_get_orders, requests_get_me,
--   requests_get_product      requests sent, per kind (their sum = requests +
--                             transport errors + unanswered_at_end)
--   gets                      GETs sent (/orders, /me, /product)
--   posts                     POST /orders sent (logins not included)
--   logins                    POST /login answered 200 with a session cookie
--   login_errors              POST /login answered otherwise (the shopper tries again)
--   get_errors                a GET answered neither 200 nor 401 (the front retries
--                             GETs on another instance, so a crash should leave it 0)
--   logged_out                any 401, or GET /me answered with another user
--   stale                     GET /orders (200) without the order just acknowledged
--   post_errors               POST /orders answered neither 201 nor 401 (the front does
--                             not retry POSTs: a 502 when the instance died under it)
--   orders_acked              POST /orders answered 201 (= the lines of acked.txt)
--   get_transport_errors      a GET that got no answer at all: wrk called request()
--   post_transport_errors     again while it was still awaited (wrk reconnected after a
--                             read/write error or the peer closing); POST = login and
--                             orders. The shopper keeps its cookies and goes on with
--                             its next step (a login is tried again).
--   unanswered_at_end         requests still awaited when wrk stopped (neither counted
--                             as errors nor in acked.txt)
--
-- Trade-offs: one shopper per thread bounds a run to a few hundred shoppers (threads),
-- enough for the shop on one machine; the think time is per request, the same for
-- every shopper of a phase (no randomness: runs compare). wrk's script states are
-- separate, so done() collects each thread's counters with thread:get(), as strings
-- built on demand (wrk 4.1's copy of a table pops one value too many from the thread's
-- Lua stack). wrk calls request() once before the run to check the request it returns
-- (never sent): the script tells it by delay() not having been called yet. Requires
-- wrk >= 4.0 (LuaJIT); Linux for the -t/-c check and the monotonic clock (FFI).

local defaults = { schedule = "0:100" }

-- The counters, in wrk-summary.txt's order.
local counter_names = {
  "requests_login", "requests_post_orders", "requests_get_orders", "requests_get_me",
  "requests_get_product", "gets", "posts", "logins", "login_errors", "get_errors", "logged_out", "stale",
  "post_errors", "orders_acked", "get_transport_errors", "post_transport_errors",
  "unanswered_at_end",
}

local function fail(message)
  io.stderr:write("shop.lua: ", message, "\n")
  io.stderr:flush()
  os.exit(2)
end

-- "0:150,20:8" -> { {start = 0, think = 150}, {start = 20, think = 8} }, or nil + why.
local function parse_schedule(text)
  local phases = {}
  for part in string.gmatch(text, "[^,]+") do
    local start, think = string.match(part, "^%s*(%d+%.?%d*)%s*:%s*(%d+)%s*$")
    if not start then
      return nil, "SCHEDULE: phase '" .. part .. "' must be <start s>:<think ms>"
    end
    start, think = tonumber(start), tonumber(think)
    if #phases == 0 and start ~= 0 then
      return nil, "SCHEDULE: the first phase must start at 0, got " .. start
    end
    if #phases > 0 and start <= phases[#phases].start then
      return nil, "SCHEDULE: phase starts must increase, got " .. start .. " after " ..
                  phases[#phases].start
    end
    phases[#phases + 1] = { start = start, think = think }
  end
  if #phases == 0 then return nil, "SCHEDULE: no phase in '" .. text .. "'" end
  return phases
end

-- ---- setup() and done(): wrk's main script state ------------------------------------

local threads = {}

-- wrk's -t and -c, as on its command line (nil when /proc/self/cmdline is missing).
local function wrk_threads_and_connections()
  local file = io.open("/proc/self/cmdline", "rb")
  if not file then return nil end
  local args = {}
  for arg in string.gmatch(file:read("*a"), "([^%z]*)%z") do args[#args + 1] = arg end
  file:close()
  local values = { t = "2", c = "10" } -- wrk's defaults
  local long = { threads = "t", connections = "c", duration = "d", script = "s",
                 header = "H", timeout = "T" }
  local i = 2
  while i <= #args do
    local a = args[i]
    if a == "--" then break end
    local name, value = string.match(a, "^%-%-(%w+)=(.*)$")
    if not name then name = string.match(a, "^%-%-(%w+)$") end
    if name then
      local short = long[name]
      if short and not value then value = args[i + 1]; i = i + 1 end
      if short then values[short] = value end
    elseif string.sub(a, 1, 1) == "-" and #a > 1 then -- -t4, -t 4, -Lt4 (getopt)
      for k = 2, #a do
        local c = string.sub(a, k, k)
        if string.find("tcdsHT", c, 1, true) then
          value = string.sub(a, k + 1)
          if value == "" then value = args[i + 1]; i = i + 1 end
          values[c] = value
          break
        end
      end
    end
    i = i + 1
  end
  local function count(text) -- wrk's SI suffixes: 1k, 1M, 1G
    local n, unit = string.match(text or "", "^(%d+%.?%d*)([kKmMgG]?)$")
    if not n then return nil end
    local scale = { [""] = 1, k = 1e3, K = 1e3, m = 1e6, M = 1e6, g = 1e9, G = 1e9 }
    return math.floor(tonumber(n) * scale[unit])
  end
  return count(values.t), count(values.c)
end

function setup(thread)
  if #threads == 0 then
    local t, c = wrk_threads_and_connections()
    if t == nil then
      io.stderr:write("shop.lua: cannot read wrk's -t/-c (no /proc/self/cmdline): ",
                      "make sure -t equals -c (one connection per thread)\n")
    elseif t ~= c then
      fail(string.format("one connection per thread: run wrk with -t N -c N (got -t %d " ..
                         "-c %d); each thread is one shopper", t, c))
    end
  end
  threads[#threads + 1] = thread
  thread:set("shopper", #threads)
end

local function parse_counts(text, into)
  for key, value in string.gmatch(text or "", "(%S+) (%d+)\n") do
    into[key] = (into[key] or 0) + tonumber(value)
  end
end

function done(summary, latency, requests)
  local outdir = threads[1] and threads[1]:get("outdir")
  local totals = {}
  for _, name in ipairs(counter_names) do totals[name] = 0 end
  local acked = {}
  for _, thread in ipairs(threads) do
    parse_counts(thread:get("shop_counts"), totals)
    for id in string.gmatch(thread:get("shop_acked") or "", "(%d+)\n") do
      acked[#acked + 1] = tonumber(id)
    end
  end
  table.sort(acked)
  totals.gets = totals.requests_get_orders + totals.requests_get_me +
                totals.requests_get_product
  totals.posts = totals.requests_post_orders

  local lines = {
    { "requests", summary.requests },
    { "duration_us", summary.duration },
    { "errors_connect", summary.errors.connect },
    { "errors_read", summary.errors.read },
    { "errors_write", summary.errors.write },
    { "errors_status", summary.errors.status },
    { "errors_timeout", summary.errors.timeout },
    { "latency_p50_us", latency:percentile(50) },
    { "latency_p90_us", latency:percentile(90) },
    { "latency_p99_us", latency:percentile(99) },
    { "latency_max_us", latency.max },
  }
  for _, name in ipairs(counter_names) do lines[#lines + 1] = { name, totals[name] } end

  if outdir then
    local out = assert(io.open(outdir .. "/wrk-summary.txt", "w"))
    for _, kv in ipairs(lines) do
      out:write(string.format("%s %d\n", kv[1], math.floor(kv[2])))
    end
    out:close()
    out = assert(io.open(outdir .. "/acked.txt", "w"))
    for _, id in ipairs(acked) do out:write(string.format("%d\n", id)) end
    out:close()
  end

  print(string.format("shop: %d shoppers, %d logins (errors %d); %d GETs: errors %d, " ..
                      "no answer %d; %d POST /orders: acknowledged %d, errors %d, no " ..
                      "answer %d; stale reads %d, logged out %d; unanswered at the end %d",
                      #threads, totals.logins, totals.login_errors, totals.gets,
                      totals.get_errors, totals.get_transport_errors, totals.posts,
                      totals.orders_acked, totals.post_errors, totals.post_transport_errors,
                      totals.stale, totals.logged_out, totals.unanswered_at_end))
  print(string.format("shop: latency p50 %.1f ms, p99 %.1f ms, max %.1f ms; written: %s",
                      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
                      latency.max / 1000,
                      outdir and (outdir .. "/wrk-summary.txt, acked.txt") or "nothing"))
end

-- ---- init(), delay(), request(), response(): one state per wrk thread ---------------

local number              -- n of the shopper (setup() gave it: the global `shopper`)
local user                -- "shopper-<n>"
local session_cookie      -- "shop_session=<id>" once logged in
local lsn_cookie          -- "shop_lsn=<lsn>" after the first order
local step = "login"      -- the request to send next (a key of `send`)
local iteration = 0       -- i of the loop
local order_id            -- the order just acknowledged (nil if the POST failed)
local awaiting            -- the step of the request sent and not yet answered
local delayed = false     -- delay() called: request()s before it are wrk's dry run
local counts = {}
local acked = {}          -- the acknowledged order ids
local schedule, phase = nil, 1
local clock, started_at

-- A monotonic clock in seconds: clock_gettime through LuaJIT's FFI, else os.time().
do
  local ok, ffi = pcall(require, "ffi")
  if ok and pcall(ffi.cdef, [[
        typedef struct { long tv_sec; long tv_nsec; } shop_timespec;
        int clock_gettime(int clock_id, shop_timespec *tp);
      ]]) then
    local now = ffi.new("shop_timespec")
    clock = function()
      ffi.C.clock_gettime(1, now) -- CLOCK_MONOTONIC (Linux)
      return tonumber(now.tv_sec) + tonumber(now.tv_nsec) * 1e-9
    end
  else
    clock = os.time
  end
end

-- What done() reads with thread:get(): strings built when asked (wrk's thread:get reads
-- a global, through the globals' metatable).
setmetatable(_G, { __index = function(_, name)
  if name == "shop_counts" then
    local text = {}
    for _, key in ipairs(counter_names) do
      local n = counts[key]
      if key == "unanswered_at_end" then n = awaiting and 1 or 0 end
      text[#text + 1] = string.format("%s %d\n", key, n or 0)
    end
    return table.concat(text)
  elseif name == "shop_acked" then
    return #acked > 0 and (table.concat(acked, "\n") .. "\n") or ""
  end
  return nil
end })

local function count(name) counts[name] = (counts[name] or 0) + 1 end

function init(args)
  number = shopper or 1
  user = "shopper-" .. number
  outdir = args[1] -- a global: done() reads it
  if not outdir or outdir == "" then
    fail("usage: wrk -t N -c N -d T -s shop.lua URL -- OUTDIR [SCHEDULE]")
  end
  local why
  schedule, why = parse_schedule(args[2] or defaults.schedule)
  if not schedule then fail(why) end
  if number == 1 then -- OUTDIR must take the files (checked once, before the load)
    local probe = outdir .. "/.shop-lua-probe"
    local file = io.open(probe, "w")
    if not file then fail("OUTDIR '" .. outdir .. "' is not a writable directory") end
    file:close()
    os.remove(probe)
  end
end

function delay()
  local now = clock()
  if not started_at then started_at = now end
  delayed = true
  local t = now - started_at
  while phase < #schedule and t >= schedule[phase + 1].start do phase = phase + 1 end
  return schedule[phase].think
end

local function format(method, path)
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end -- wrk's -H ones
  if session_cookie then
    headers["Cookie"] = lsn_cookie and (session_cookie .. "; " .. lsn_cookie)
                        or session_cookie
  end
  return wrk.format(method, path, headers, method == "POST" and "" or nil)
end

local send = {
  login = function() return "POST", "/login?user=" .. user end,
  post_orders = function() return "POST", "/orders?item=item-" .. iteration end,
  get_orders = function() return "GET", "/orders" end,
  get_me = function() return "GET", "/me" end,
  get_product = function()
    return "GET", "/product/" .. (1 + (number * 7919 + iteration) % 500)
  end,
}
local is_post = { login = true, post_orders = true }

-- The cookie `name` from a response's Set-Cookie ("name=value; Path=/" -> "name=value").
local function set_cookie(headers, name)
  for key, value in pairs(headers) do
    if string.lower(key) == "set-cookie" then
      local pair = string.match(value, "^%s*([^;]*)")
      if pair and string.sub(pair, 1, #name + 1) == name .. "=" then return pair end
    end
  end
  return nil
end

-- The answer to the request of `kind` (status nil: none came) moves the shopper on.
local function answered(kind, status, headers, body)
  if status == nil then
    count(is_post[kind] and "post_transport_errors" or "get_transport_errors")
  elseif status == 401 then
    count("logged_out")
  end
  if kind == "login" then
    local cookie = status == 200 and set_cookie(headers, "shop_session")
    if cookie then
      session_cookie = cookie
      count("logins")
      step = "post_orders"
    elseif status then
      count("login_errors")
    end
  elseif kind == "post_orders" then
    order_id = nil
    if status == 201 then
      order_id = string.match(body, '^%s*{"id":(%d+)')
      lsn_cookie = set_cookie(headers, "shop_lsn") or lsn_cookie
      if order_id then
        count("orders_acked")
        acked[#acked + 1] = order_id
      else
        count("post_errors") -- a 201 without an id: not an order we can check
      end
    elseif status and status ~= 401 then
      count("post_errors")
    end
    step = order_id and "get_orders" or "get_me"
  else
    if status and status ~= 200 and status ~= 401 then count("get_errors") end
    if kind == "get_orders" then
      if status == 200 and not string.find(body, '{"id":' .. order_id .. ',', 1, true) then
        count("stale")
      end
      step = "get_me"
    elseif kind == "get_me" then
      if status == 200 and body ~= user .. "\n" then count("logged_out") end
      step = "get_product"
    else
      iteration = iteration + 1
      step = "post_orders"
    end
  end
end

function request()
  if not delayed then -- wrk's dry run (it parses one request before starting): not sent
    return format(send[step]())
  end
  if awaiting then answered(awaiting, nil) end -- the previous one got no answer
  awaiting = step
  count("requests_" .. step)
  return format(send[step]())
end

function response(status, headers, body)
  local kind = awaiting
  awaiting = nil
  if kind then answered(kind, status, headers, body) end
end
