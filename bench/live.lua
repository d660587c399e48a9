-- make bench (after bench/run.lua): live counts (tcplab.live) at about the
-- bench's socket counts, in a private network namespace (root):
--   * the live read (h:counts()) in µs, beside the netlink counts walk;
--   * the load and seed of a handle (ms) at each size;
--   * the data path: connections/s of a churn loop (connect, accept, close)
--     with and without the programs attached, rounds alternating;
--   * drift: live equal to a walk after --cycles connection cycles from
--     several processes, once the namespace is quiet.
-- Writes its own section of bench/results.md (between the live markers).
--   lua5.4 bench/live.lua [--sizes 1000,10000,100000] [--cycles 1000000] [--procs 4] [--out bench/results.md]
local tcplab = require "tcplab"
local now, sleep = tcplab.core.now, tcplab.core.sleep

local opts = { sizes = { 1000, 10000, 100000 }, cycles = 1000000, procs = 4, out = "bench/results.md",
               rounds = 20, churn = 1500, parts = { sizes = true, datapath = true, drift = true } }
do
  local i = 1
  while i <= #arg do
    local k, v = arg[i], arg[i + 1]
    if k == "--sizes" then
      opts.sizes = {}
      for n in v:gmatch("%d+") do opts.sizes[#opts.sizes + 1] = tonumber(n) end
    elseif k == "--cycles" then opts.cycles = tonumber(v)
    elseif k == "--procs" then opts.procs = tonumber(v)
    elseif k == "--rounds" then opts.rounds = tonumber(v)
    elseif k == "--churn" then opts.churn = tonumber(v)
    elseif k == "--out" then opts.out = v
    elseif k == "--parts" then
      opts.parts = {}
      for p in v:gmatch("[%a]+") do opts.parts[p] = true end
    else
      io.stderr:write("usage: bench/live.lua [--sizes 1000,10000] [--cycles N] [--procs N] [--rounds N] " ..
        "[--churn N] [--parts sizes,datapath,drift] [--out FILE]\n")
      os.exit(2)
    end
    i = i + 2
  end
end

local function say(fmt, ...) io.stderr:write(fmt:format(...), "\n") io.stderr:flush() end
local function slurp(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  p:close()
  return s
end

assert(slurp("id -u"):match("^0"), "bench/live.lua needs root (a private network namespace, BPF)")
local probe, why = tcplab.live()
if not probe then
  say("bench/live.lua: live counts cannot load here: %s", why)
  os.exit(1)
end
probe:close()

local STATES = tcplab.states.list
local function equal(a, b)
  for _, s in ipairs(STATES) do if (a[s] or 0) ~= (b[s] or 0) then return false end end
  return true
end
local function total(c)
  local n = 0
  for _, s in ipairs(STATES) do n = n + (c[s] or 0) end
  return n
end
local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local home = assert(tcplab.core.netns.open())
assert(tcplab.netns.unshare())
local tmp = slurp("mktemp -d"):gsub("%s+$", "")
local helpers = {}

local function cleanup()
  for _, h in ipairs(helpers) do h.pipe:close() end
  helpers = {}
  os.execute("rm -rf " .. tmp)
end

local function spawn(pairs, tw, listeners)
  local index = #helpers + 1
  local ready = ("%s/%d.ready"):format(tmp, index)
  local cmd = ("exec lua5.4 bench/load.lua %s %d %d %d %d"):format(ready, index, pairs, tw, listeners)
  helpers[index] = { pipe = assert(io.popen(cmd, "w")), ready = ready }
end

local function wait_ready(limit)
  local deadline = now() + limit
  for i, h in ipairs(helpers) do
    repeat
      local f = io.open(h.ready)
      local ok = f and f:read("a"):match("^ready")
      if f then f:close() end
      if ok then break end
      if now() > deadline then error("helper " .. i .. " did not get ready in time") end
      sleep(0.05)
    until false
  end
end

-- Live and a walk, until two live reads around the walk agree (bounded).
local function settled(h)
  local w, l
  for _ = 1, 200 do
    l = h:counts()
    w = assert(tcplab.counts{ backend = "netlink" })
    if equal(l, w) and equal(h:counts(), w) then return true, l, w end
    sleep(0.05)
  end
  return false, l, w
end

local rows, datapath, drift = {}, {}, {}
local ok_run, err = pcall(function()
  -- 1. reads and seeds at each size -------------------------------------
  local h0 = assert(tcplab.live())   -- opened before any socket
  local have = 0
  for _, size in ipairs(opts.parts.sizes and opts.sizes or {}) do
    while have < size do
      local want = math.min(size - have, 8000)
      local pairs_ = math.floor(want * 0.45)
      local tw = math.floor(want * 0.05)
      spawn(pairs_, tw, 5)
      have = have + 2 * pairs_ + tw + 5
    end
    wait_ready(600)
    local same, l, w = settled(h0)
    local reads = {}
    for _ = 1, 200 do
      local t0 = now()
      assert(h0:counts())
      reads[#reads + 1] = (now() - t0) * 1e6
    end
    local walks = {}
    for _ = 1, 5 do
      local t0 = now()
      assert(tcplab.counts{ backend = "netlink" })
      walks[#walks + 1] = (now() - t0) * 1e3
    end
    local h1 = assert(tcplab.live())   -- load and seed at this size
    local seed_ms = h1:info().load_ms
    local same1 = settled(h1)
    h1:close()
    rows[#rows + 1] = { size = total(w), read_us = median(reads), walk_ms = median(walks), seed_ms = seed_ms,
                        same = same and same1, tw = w.TIME_WAIT, est = w.ESTABLISHED }
    say("live: %d sockets: read %.1f µs (median of 200), netlink counts %.2f ms, seed %.0f ms, equal to a walk: %s",
        rows[#rows].size, rows[#rows].read_us, rows[#rows].walk_ms, seed_ms, tostring(rows[#rows].same))
  end
  h0:close()
  cleanup()

  -- 2. the data path: connections per second with and without the programs
  local ns = assert(tcplab.netns.new())
  -- each round: wall-clock rate and CPU time of this process per connection
  -- (user + system: the loopback softirq runs in our context and, without
  -- IRQ time accounting, is charged to us), rounds alternating without/with
  local function churn(n)
    local l = assert(ns:listen("127.0.0.1", 7600, 1024))
    local t0, c0 = now(), os.clock()
    for i = 1, n do
      local c = assert(ns:connect("127.0.0.1", 7600, 2))
      local a = assert(l:accept(2))
      if i % 2 == 0 then assert(c:setopt("linger", 0)) end
      c:close()
      a:close()
    end
    local rate, cpu_us = n / (now() - t0), (os.clock() - c0) / n * 1e6
    l:close()
    return rate, cpu_us
  end
  if opts.parts.datapath then
    churn(500)   -- warm up
    local off, on, off_cpu, on_cpu, ratio = {}, {}, {}, {}, {}
    for r = 1, opts.rounds do
      local a, ac = churn(opts.churn)
      local h <close> = assert(tcplab.live{ netns = ns })
      local b, bc = churn(opts.churn)
      off[#off + 1], on[#on + 1], off_cpu[#off_cpu + 1], on_cpu[#on_cpu + 1] = a, b, ac, bc
      ratio[#ratio + 1] = bc / ac
      say("live: data path round %d: %.0f conn/s without, %.0f with; CPU %.1f µs/conn without, %.1f with",
          r, a, b, ac, bc)
    end
    datapath = { off = median(off), on = median(on), off_cpu = median(off_cpu), on_cpu = median(on_cpu),
                 ratio = median(ratio), rounds = opts.rounds, churn = opts.churn }
  end
  ns:close()

  -- 3. drift after many cycles from several processes --------------------
  if not opts.parts.drift then return end
  local script = tmp:gsub("[^/]+$", "") .. "tcplab-live-churn-" .. require("tcplab.sys").pid() .. ".lua"
  local f = assert(io.open(script, "w"))
  f:write([[
    local t = require "tcplab"
    local n, port = tonumber(arg[1]), tonumber(arg[2])
    local l = assert(t.listen("127.0.0.1", port, 1024))
    for i = 1, n do
      local c = assert(t.connect("127.0.0.1", port, 2))
      local a = assert(l:accept(2))
      local k = i % 8
      if k == 0 then c:close() a:close()          -- client first: TIME_WAIT
      elseif k == 1 then a:close() c:close()      -- server first
      else assert(c:setopt("linger", 0)) c:close() a:close() end   -- RST: no TIME_WAIT
    end
    l:close()
  ]])
  f:close()
  local h = assert(tcplab.live())
  local per = opts.cycles // opts.procs
  local cmd = {}
  for p = 1, opts.procs do cmd[#cmd + 1] = ("lua5.4 %s %d %d &"):format(script, per, 7700 + p) end
  local t0 = now()
  assert(os.execute(table.concat(cmd, " ") .. " wait"))
  local secs = now() - t0
  os.remove(script)
  local same, l, w = settled(h)
  drift = { cycles = per * opts.procs, procs = opts.procs, secs = secs, same = same, live = l, walk = w,
            misses = h:info().misses, rescued = h:info().rescued }
  say("live: drift after %d cycles (%d processes, %.0f s): equal to a walk: %s (misses %d, rescued %d)",
      drift.cycles, opts.procs, secs, tostring(same), drift.misses, drift.rescued)
  h:close()
end)
cleanup()
assert(home:enter())
if not ok_run then error(err, 0) end

-- the section of bench/results.md -----------------------------------------
-- (parts not run this time keep their lines from the last run)
local f0 = io.open(opts.out)
local old_text = f0 and f0:read("a") or ""
if f0 then f0:close() end
local old_section = old_text:match("<!%-%- live %-%->(.-)<!%-%- /live %-%->") or ""
local function old_lines(pattern)
  local out = {}
  for line in old_section:gmatch("[^\n]+") do if line:match(pattern) then out[#out + 1] = line end end
  return out
end
local lines = { "<!-- live -->", "## Live counts (tcplab.live, bench/live.lua)", "",
  ("Machine: %s, %s. Each size: helper processes hold ESTABLISHED pairs, listeners and TIME_WAIT " ..
   "sockets in a private namespace; a handle opened before them answers."):format(
    slurp("nproc"):gsub("%s+$", "") .. " CPUs", slurp("uname -r"):gsub("%s+$", "")), "",
  "| sockets | live read (µs, median of 200) | netlink counts walk (ms) | load + seed of a new handle (ms) | live = walk |",
  "|---:|---:|---:|---:|:---:|" }
for _, r in ipairs(rows) do
  lines[#lines + 1] = ("| %d | %.1f | %.2f | %.0f | %s |"):format(r.size, r.read_us, r.walk_ms, r.seed_ms,
    r.same and "yes" or "NO")
end
if #rows == 0 then for _, l in ipairs(old_lines("^| %d")) do lines[#lines + 1] = l end end
if not datapath.off then
  for _, l in ipairs(old_lines("^Data path:")) do lines[#lines + 1] = "" lines[#lines + 1] = l end
end
if datapath.off then
  lines[#lines + 1] = ""
  lines[#lines + 1] = ("Data path: a churn loop (connect, accept, close; half with RST) in its own namespace, %d " ..
    "cycles a round, %d rounds alternating without and with a handle on that namespace. Medians: %.0f conn/s " ..
    "without, %.0f with (wall clock, dominated by the load of the shared host); CPU time of the process per " ..
    "connection %.1f µs without, %.1f with; the median of each pair's CPU ratio: %+.1f%%."):format(
    datapath.churn, datapath.rounds, datapath.off, datapath.on, datapath.off_cpu, datapath.on_cpu,
    (datapath.ratio - 1) * 100)
end
if drift.cycles then
  lines[#lines + 1] = ""
  lines[#lines + 1] = ("Drift: %d connection cycles from %d processes (%.0f s; 1 in 8 client-first, 1 in 8 " ..
    "server-first, the rest RST), then quiet: live %s a walk (misses %d, rescued %d). Walk: %s."):format(
    drift.cycles, drift.procs, drift.secs, drift.same and "equal to" or "DIFFERENT from", drift.misses, drift.rescued,
    (function()
      local parts = {}
      for _, s in ipairs(STATES) do
        if (drift.walk[s] or 0) > 0 then parts[#parts + 1] = s .. " " .. drift.walk[s] end
      end
      return #parts > 0 and table.concat(parts, ", ") or "empty"
    end)())
end
if not drift.cycles then
  for _, l in ipairs(old_lines("^Drift:")) do lines[#lines + 1] = "" lines[#lines + 1] = l end
end
lines[#lines + 1] = "<!-- /live -->"
local section = table.concat(lines, "\n")
local f = io.open(opts.out)
local text = f and f:read("a") or ""
if f then f:close() end
local a, b = text:find("<!%-%- live %-%->.-<!%-%- /live %-%->")
if a then text = text:sub(1, a - 1) .. section .. text:sub(b + 1)
else text = text .. (text:sub(-1) == "\n" and "\n" or "\n\n") .. section .. "\n" end
f = assert(io.open(opts.out, "w"))
f:write(text)
f:close()
print(section)
