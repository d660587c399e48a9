--- A slow, lossy wire for a lab (tcplab check --delay/--loss): the lab's
-- port goes through an NFQUEUE (tcplab.nfqueue) served by a helper process
-- started inside the lab's namespace, so the checks' own calls (blocking
-- connects and reads) need not step the queue. Each packet to or from the
-- port is dropped with probability `loss`, else let go `delay` seconds after
-- it was queued (so a round trip is slower by twice `delay`).
--
--   local em = assert(netem.start(lab, { delay = 0.1, loss = 0.05 }))
--   ...                      -- the checks run
--   local summary = em:stop()  -- { packets, dropped, delayed, errors, via }
--
-- The helper exits when stopped (SIGTERM: the rules are lifted, every packet
-- still held is passed) and, on its own, when this process is gone (its
-- parent changes): nothing outlives the check.
local sys = require "tcplab.sys"

local netem = {}

local Netem = {}
Netem.__index = Netem

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- Start the helper in lab.netns for lab.port; opts = { delay = seconds,
-- loss = 0..1, seed }. Returns the handle, or nil and a message.
function netem.start(lab, opts)
  local delay, loss = opts.delay or 0, opts.loss or 0
  local code = ("require('tcplab.lab.netem').child(%d, %.17g, %.17g, %s, %d)"):format(
    lab.port, delay, loss, opts.seed and tostring(math.tointeger(opts.seed)) or "nil", sys.pid())
  local cmd = ("exec env LUA_PATH=%s LUA_CPATH=%s lua5.4 -e %s 2>&1"):format(
    shq(package.path), shq(package.cpath), shq(code))
  -- forked from inside the namespace: the helper and its queue live there
  local p, err = lab.netns:run(io.popen, cmd, "r")
  if not p then return nil, "network conditions: " .. tostring(err) end
  local line = p:read("l") or ""
  local pid, via = line:match("^ready (%d+) (%S+)$")
  if not pid then
    local rest = p:read("a") or ""
    p:close()
    return nil, "network conditions: " .. (line .. " " .. rest):gsub("%s+$", "")
  end
  return setmetatable({ pipe = p, pid = tonumber(pid), via = via, delay = delay, loss = loss }, Netem)
end

--- Stop the helper: its rules lifted, its held packets passed. Returns
-- { packets, dropped, delayed, errors, via, delay, loss } (the helper's
-- counts), or nil and a message.
function Netem:stop()
  if not self.pipe then return self.summary end
  sys.run("kill", "kill -TERM " .. self.pid)
  local out = self.pipe:read("a") or ""
  self.pipe:close()
  self.pipe = nil
  local n, d, l, e = out:match("done (%d+) (%d+) (%d+) (%d+)")
  if not n then return nil, "network conditions: the helper said: " .. out:gsub("%s+$", "") end
  self.summary = { packets = tonumber(n), dropped = tonumber(d), delayed = tonumber(l), errors = tonumber(e),
                   via = self.via, delay = self.delay, loss = self.loss }
  return self.summary
end

Netem.__close = function(self) if self.pipe then self:stop() end end
-- Collected (or at exit) without stop(): stop it first, else the pipe's own
-- close would wait for a helper that waits for this process to go.
Netem.__gc = Netem.__close
Netem.__tostring = function(self)
  return ("netem delay %g s loss %g via %s (helper pid %d%s)"):format(self.delay, self.loss, self.via, self.pid,
    self.pipe and "" or ", stopped")
end

-- The parent of this process now.
local function ppid()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("^%d+ %b() %a (%d+)"))
end

--- The helper's body (run by `lua5.4 -e`, inside the lab's namespace).
function netem.child(port, delay, loss, seed, parent)
  local core = require "tcplab.core"
  local nfqueue = require "tcplab.nfqueue"
  core.catch_signals()   -- SIGTERM raises "terminated": the loop ends, the rules go
  local random = nfqueue.random(seed)
  local verdict = { delay = delay }
  local here = assert(core.netns.open())
  local q, err = nfqueue._open_in(here, { port = port, timeout = 5, warn = false, on_packet = function()
    if loss > 0 and random() < loss then return "drop" end
    if delay > 0 then return verdict end
    return "pass"
  end })
  if not q then
    io.stdout:write("error ", tostring(err), "\n")
    os.exit(1)
  end
  io.stdout:write(("ready %d %s\n"):format(require("tcplab.sys").pid(), q.via))
  io.stdout:flush()
  pcall(function()
    while ppid() == parent do
      local n = q:step(0.1)
      if not n then break end
    end
  end)
  q:lift()
  io.stdout:write(("done %d %d %d %d\n"):format(q.seen, q.counts.drop, q.counts.delay, #q.errors))
  io.stdout:flush()
  os.exit(0)
end

return netem
