-- The socket builder of make bench-scale (bench/scale.lua) and of
-- spec/bench_scale_spec.lua: ESTABLISHED pairs spread over bench/load.lua
-- helpers, none holding more than `per_process` fds (the open-files limit is
-- per process), and TIME_WAIT sockets, which need no fd, topped up to a target
-- by short-lived helpers (a TIME_WAIT socket lives about 60 s: doc/kernel-scale.md).
-- Everything runs in the caller's network namespace: the caller makes a
-- private one first (tcplab.netns.unshare()) so that the helpers inherit it.
--
--   local build = require "scale_build"          -- package.path with bench/?.lua
--   local b = build.new{ tmp = dir, per_process = 19000, say = print }
--   b:add_pairs(50000); b:wait(600)               -- progress lines through say
--   b:topup_timewait(5000)
--   b:close()                                     -- every helper gone when it returns
local tcplab = require "tcplab"
local now, sleep = tcplab.core.now, tcplab.core.sleep

local build = {}

-- fds a helper holds besides its pairs: stdin, stdout, stderr, the listener,
-- the ready file, one pair in the making, and room for the runtime.
build.RESERVE = 16
-- TIME_WAIT sockets per top-up helper: each one has its own source address,
-- and a TIME_WAIT socket keeps its local port, so stay well inside one
-- address's ephemeral port range (28,232 by default).
build.TW_PER_HELPER = 20000
-- Source address indexes of the top-up helpers (bench/load.lua INDEX): above
-- those of the pair helpers, so the two never share an address.
build.TW_INDEX0 = 1000

--- Pairs one helper can hold with at most `per_process` fds.
function build.pairs_cap(per_process)
  local cap = (per_process - build.RESERVE) // 2
  if cap < 1 then
    error(("per_process: %d fds leave no room for a pair (at least %d)"):format(per_process, build.RESERVE + 2), 2)
  end
  return cap
end

--- The pairs of each helper, for `pairs` pairs at most `cap` per helper: as
-- few helpers as fit, sizes differing by one at most.
function build.split(npairs, cap)
  local out = {}
  if npairs <= 0 then return out end
  local helpers = (npairs + cap - 1) // cap
  local base, extra = npairs // helpers, npairs % helpers
  for i = 1, helpers do out[i] = base + (i <= extra and 1 or 0) end
  return out
end

--- The TIME_WAIT count of the caller's namespace, O(1) (/proc/net/sockstat).
function build.timewait_now()
  local f = assert(io.open("/proc/net/sockstat"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("TCP:.- tw (%d+)")) or 0
end

local B = {}
B.__index = B

function build.new(opts)
  local self = setmetatable({
    tmp = assert(opts.tmp, "tmp: a private directory for the helpers' ready files"),
    per_process = opts.per_process or 19000,
    say = opts.say or function() end,
    lua = opts.lua or "lua5.4",
    script = opts.script or "bench/load.lua",
    helpers = {},         -- the pair helpers: { pipe, ready, pairs, pid }
    next_tw = build.TW_INDEX0,
    pairs = 0,            -- pairs asked for so far
    tw_made = 0,          -- TIME_WAIT sockets made by top-ups, in all
    released = 0,
  }, B)
  self.cap = build.pairs_cap(self.per_process)
  return self
end

local function read_state(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local word, n, pid = s:match("^(%a+) (%d+) (%d+)")
  return word, tonumber(n), tonumber(pid)
end

function B:spawn(index, npairs, ntw, once)
  local ready = ("%s/%d.ready"):format(self.tmp, index)
  local cmd = ("exec %s %s %s %d %d %d 1%s"):format(self.lua, self.script, ready, index, npairs, ntw,
    once and " once" or "")
  return { pipe = assert(io.popen(cmd, "w")), ready = ready, pairs = npairs, tw = ntw, index = index }
end

--- Start helpers for `npairs` more ESTABLISHED pairs (2 * npairs sockets) and
-- one listener each. Returns the number of helpers started.
function B:add_pairs(npairs)
  local list = build.split(npairs, self.cap)
  for _, p in ipairs(list) do
    local index = #self.helpers + 1
    if index >= build.TW_INDEX0 then error("too many pair helpers (raise per_process)", 2) end
    self.helpers[index] = self:spawn(index, p, 0)
  end
  self.pairs = self.pairs + npairs
  return #list
end

-- Wait until every helper in `list` says ready; progress through say every
-- `every` seconds; an error names a helper that failed or the deadline.
local function wait_list(self, list, limit, what)
  local t0 = now()
  local deadline, next_say = t0 + limit, t0 + 2
  while true do
    local ready, made = 0, 0
    for i, h in ipairs(list) do
      local word, n, pid = read_state(h.ready)
      if word == "failed" then error(("%s: helper %d failed (its stderr says why)"):format(what, i), 0) end
      if pid then h.pid = pid end
      if word == "ready" then ready = ready + 1 end
      made = made + (word == "made" and n or word == "ready" and 2 * h.pairs + h.tw or 0)
    end
    if ready == #list then return now() - t0 end
    local t = now()
    if t > deadline then error(("%s: %d of %d helpers not ready after %d s"):format(what, #list - ready, #list, limit), 0) end
    if t >= next_say then
      self.say(("  %s: %d sockets made, %d of %d helpers ready, %.0f s"):format(what, made, ready, #list, t - t0))
      next_say = t + 5
    end
    sleep(0.05)
  end
end

--- Wait (at most `limit` seconds) for every pair helper; returns the seconds waited.
function B:wait(limit)
  return wait_list(self, self.helpers, limit, "building")
end

--- Make TIME_WAIT sockets until the namespace holds `target` (as counted by
-- sockstat just before); helpers that exit once done. Returns the number made.
function B:topup_timewait(target, limit)
  local need = target - build.timewait_now()
  if need <= 0 then return 0 end
  local list = {}
  local left = need
  while left > 0 do
    local n = math.min(left, build.TW_PER_HELPER)
    list[#list + 1] = self:spawn(self.next_tw, 0, n, true)
    self.next_tw = self.next_tw + 1
    if self.next_tw > 65535 then self.next_tw = build.TW_INDEX0 end
    left = left - n
  end
  local ok, err = pcall(wait_list, self, list, limit or 600, "TIME_WAIT")
  for _, h in ipairs(list) do
    h.pipe:close()                 -- they exit by themselves: this only reaps
    os.remove(h.ready)
  end
  if not ok then error(err, 0) end
  self.tw_made = self.tw_made + need
  return need
end

--- The pids of the pair helpers (known once each wrote its ready file).
function B:pids()
  local out = {}
  for _, h in ipairs(self.helpers) do
    if not h.pid then h.pid = select(3, read_state(h.ready)) end
    out[#out + 1] = h.pid
  end
  return out
end

--- Resident memory of the pair helpers, KiB in all (VmRSS).
function B:rss_kb()
  local kb = 0
  for _, pid in ipairs(self:pids()) do
    local f = io.open(("/proc/%d/status"):format(pid))
    if f then
      kb = kb + (tonumber(f:read("a"):match("VmRSS:%s*(%d+)")) or 0)
      f:close()
    end
  end
  return kb
end

--- End every helper: close its stdin (it exits) and reap it; when this
-- returns, none of them is alive. Returns the number of helpers seen gone
-- (their /proc entry absent once reaped).
function B:close()
  local n = 0
  for _, h in ipairs(self.helpers) do
    if not h.pid then h.pid = select(3, read_state(h.ready)) end
    h.pipe:close()                 -- pclose: waits for the helper's exit
    os.remove(h.ready)
    local f = h.pid and io.open(("/proc/%d/stat"):format(h.pid))
    if f then f:close() else n = n + 1 end
  end
  self.helpers = {}
  self.released = self.released + n
  return n
end

return build
