--- State transitions of the sockets on chosen ports, in order, with times.
--
-- Method 1, "tracepoint" (root): the kernel tracepoint sock/inet_sock_set_state
-- in a private tracefs instance (never the global buffer), filtered by port
-- in the kernel, clock "mono" (the clock of tcplab.core.now()).
-- Method 2, "sampling": a helper process dumps the sockets every millisecond
-- and reports changes; it can miss states shorter than that.
--
-- The true story: the tracepoint follows the full socket, which the kernel
-- replaces by a time-wait placeholder; it then says FIN_WAIT2 -> CLOSE (or
-- CLOSING -> CLOSE) and never TIME_WAIT. stop() asks the dump about each such
-- four-tuple: when a placeholder is in TIME_WAIT the event becomes
-- X -> TIME_WAIT (time: the later of the event and the start of the 60 s
-- TIME_WAIT timer, derived from its remaining time); when the placeholder is
-- still FIN_WAIT2 the CLOSE is left out. rec.raw keeps the kernel's own events.
local core = require "tcplab.core"
local states = require "tcplab.states"

local trace = {}

local TRACEFS = "/sys/kernel/tracing"
local TIME_WAIT_LEN = 60.0   -- TCP_TIMEWAIT_LEN
local SAMPLE_INTERVAL = 0.001

local function readfile(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function writefile(path, data)
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  local ok, werr = f:write(data)
  local cok, cerr = f:close()   -- tracefs reports a bad value when the write is flushed
  if not ok or not cok then return nil, ("%s: %s"):format(path, werr or cerr) end
  return true
end

--- Is the tracepoint usable here (tracefs mounted or mountable, root)?
function trace.tracepoint_available()
  if not readfile(TRACEFS .. "/events/sock/inet_sock_set_state/format") then
    os.execute("mount -t tracefs nodev " .. TRACEFS .. " 2>/dev/null")
  end
  return readfile(TRACEFS .. "/events/sock/inet_sock_set_state/format") ~= nil
     and os.execute("test -w " .. TRACEFS .. "/instances") == true
end

local Recorder = {}
Recorder.__index = Recorder

local function port_list(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'start' (table expected, got " .. type(opts) .. ")", 3)
  end
  local ports = opts.ports or { opts.port }
  if #ports == 0 then error("bad argument #1 to 'start' (port or ports expected)", 3) end
  for _, p in ipairs(ports) do
    if math.type(p) ~= "integer" or p < 1 or p > 65535 then
      error("bad argument #1 to 'start' (port 1..65535 expected, got " .. tostring(p) .. ")", 3)
    end
  end
  return ports
end

local seq = 0
local function instance_name()
  seq = seq + 1
  local f <close> = assert(io.open("/proc/self/stat"))
  return ("tcplab-%d-%d"):format(f:read("n"), seq)
end

local function start_tracepoint(rec)
  local dir = TRACEFS .. "/instances/" .. instance_name()
  local ok, err = os.execute("mkdir " .. dir)
  if not ok then return nil, "mkdir " .. dir .. " failed: " .. tostring(err) end
  rec.dir = dir
  local conds = {}
  for _, p in ipairs(rec.ports) do conds[#conds + 1] = ("sport == %d || dport == %d"):format(p, p) end
  local ev = dir .. "/events/sock/inet_sock_set_state/"
  local steps = {
    { dir .. "/trace_clock", "mono" },
    { dir .. "/buffer_size_kb", tostring(rec.buffer_kb) },
    { ev .. "filter", "protocol == 6 && (" .. table.concat(conds, " || ") .. ")" },
    { ev .. "enable", "1" },
    { dir .. "/tracing_on", "1" },
  }
  for _, step in ipairs(steps) do
    local wok, werr = writefile(step[1], step[2])
    if not wok then rec:_remove() return nil, werr end
  end
  return true
end

local function start_sampler(rec)
  local script = [[
    local core = require "tcplab.core"
    local ports, interval, limit = {}, INTERVAL, LIMIT
    for p in ("PORTS"):gmatch("%d+") do ports[#ports + 1] = tonumber(p) end
    io.stdout:setvbuf("line")
    local f = io.open("/proc/self/stat") print(f:read("n")) f:close()
    local last, stop, first = {}, core.now() + limit, true
    while core.now() < stop do
      local seen, t = {}, core.now()
      for _, p in ipairs(ports) do
        for _, which in ipairs({ "s", "d" }) do
          local recs = core.snapshot(0xffe, "any", which == "s" and p or nil, which == "d" and p or nil)
          for _, r in ipairs(recs or {}) do
            local key = table.concat({ r.family, r.src, r.sport, r.dst, r.dport }, " ")
            seen[key] = r.state
          end
        end
      end
      if first then print("ready") end   -- the sockets as they were at start are no event
      for key, st in pairs(first and {} or seen) do
        if last[key] ~= st then print(("%.6f %s %s %s"):format(t, last[key] or "CLOSE", st, key)) end
      end
      for key, st in pairs(first and {} or last) do
        if not seen[key] then print(("%.6f %s CLOSE %s"):format(t, st, key)) end
      end
      last, first = seen, false
      core.sleep(interval)
    end]]
  script = script:gsub("INTERVAL", tostring(SAMPLE_INTERVAL)):gsub("LIMIT", tostring(rec.limit))
                 :gsub("PORTS", table.concat(rec.ports, ","))
  local function shq(v) return "'" .. v:gsub("'", "'\\''") .. "'" end
  local cmd = ("LUA_PATH=%s LUA_CPATH=%s exec lua5.4 -e %s"):format(
    shq(package.path), shq(package.cpath), shq(script))
  local p, err = io.popen(cmd, "r")
  if not p then return nil, err end
  local pid = p:read("l")
  if not tonumber(pid) then p:close() return nil, "sampler did not start" end
  rec.sampler, rec.sampler_pid = p, pid
  if p:read("l") ~= "ready" then rec:_remove() return nil, "sampler failed" end
  return true
end

--- Start recording the transitions of sockets with sport or dport in opts.port
-- (or opts.ports). opts.method: "tracepoint", "sampling" or nil (tracepoint when
-- available). Returns a recorder, or nil and a message.
function trace.start(opts)
  local ports = port_list(opts)
  local method = opts.method
  if method ~= nil and method ~= "tracepoint" and method ~= "sampling" then
    error("bad argument #1 to 'start' (method: 'tracepoint' or 'sampling' expected)", 2)
  end
  if method == nil then method = trace.tracepoint_available() and "tracepoint" or "sampling" end
  local rec = setmetatable({ ports = ports, netns = opts.netns, buffer_kb = opts.buffer_kb or 1024,
                             limit = opts.limit or 120, lost = 0 }, Recorder)
  local ok, err
  if method == "tracepoint" then
    ok, err = start_tracepoint(rec)
    rec.method = "tracepoint"
  else
    ok, err = start_sampler(rec)
    rec.method = ("sampling (every %g ms; states shorter than that can be missed)"):format(SAMPLE_INTERVAL * 1000)
  end
  if not ok then return nil, err end
  rec.started = core.now()
  return rec
end

local function unmap(addr)
  return addr:match("^::ffff:(%d+%.%d+%.%d+%.%d+)$") or addr
end

local function parse_tracepoint(text)
  local events = {}
  for t, fam, sport, dport, saddr, daddr, s6, d6, from, to in text:gmatch(
      "(%d+%.%d+): inet_sock_set_state: family=(%S+) protocol=%S+ sport=(%d+) dport=(%d+) " ..
      "saddr=(%S+) daddr=(%S+) saddrv6=(%S+) daddrv6=(%S+) oldstate=TCP_(%S+) newstate=TCP_(%S+)") do
    local v6 = fam == "AF_INET6"
    events[#events + 1] = {
      time = tonumber(t), family = v6 and "inet6" or "inet",
      src = v6 and unmap(s6) or saddr, sport = tonumber(sport),
      dst = v6 and unmap(d6) or daddr, dport = tonumber(dport),
      from = from == "NEW_SYN_RECV" and "SYN_RECV" or from,
      to = to == "NEW_SYN_RECV" and "SYN_RECV" or to,
    }
  end
  return events
end

function Recorder:_remove()
  if self.dir then
    writefile(self.dir .. "/tracing_on", "0")
    writefile(self.dir .. "/events/sock/inet_sock_set_state/enable", "0")
    os.execute("rmdir " .. self.dir .. " 2>/dev/null")
    self.dir = nil
  end
  if self.sampler then
    os.execute("kill " .. self.sampler_pid .. " 2>/dev/null")
    local out = self.sampler:read("a")
    self.sampler:close()
    self.sampler = nil
    return out
  end
end

function Recorder:_lost()
  local lost = 0
  local p = io.popen("cat " .. self.dir .. "/per_cpu/cpu*/stats 2>/dev/null")
  local text = p:read("a")
  p:close()
  for stats in text:gmatch("[^\n]+") do
    local n = stats:match("^overrun: (%d+)") or stats:match("^dropped events: (%d+)")
    if n then lost = lost + tonumber(n) end
  end
  return lost
end

local PLACEHOLDER_FROM = { FIN_WAIT1 = true, FIN_WAIT2 = true, CLOSING = true }

-- Rewrite the full socket's X -> CLOSE into what the placeholder shows.
local function tell_truth(raw, netns)
  local mask = (1 << states.number.TIME_WAIT) | (1 << states.number.FIN_WAIT2)
  local dump = core.snapshot(mask, "any", nil, nil, false, netns) or {}
  local now = core.now()
  local events = {}
  for _, ev in ipairs(raw) do
    local told = ev
    if ev.to == "CLOSE" and PLACEHOLDER_FROM[ev.from] then
      for _, r in ipairs(dump) do
        if r.inode == 0 and r.sport == ev.sport and r.dport == ev.dport
           and r.src == ev.src and r.dst == ev.dst then
          if r.state == "TIME_WAIT" then
            local entered = now - (TIME_WAIT_LEN - r.expires_ms / 1000)
            told = { time = math.max(ev.time, entered), family = ev.family, src = ev.src,
                     sport = ev.sport, dst = ev.dst, dport = ev.dport, from = ev.from,
                     to = "TIME_WAIT", kernel = "CLOSE", derived = "dump" }
          else
            told = nil   -- the placeholder is still FIN_WAIT2: nothing closed yet
          end
          break
        end
      end
    end
    if told then events[#events + 1] = told end
  end
  table.sort(events, function(a, b) return a.time < b.time end)
  return events
end

local function parse_samples(text)
  local events = {}
  for line in text:gmatch("[^\n]+") do
    local t, from, to, fam, src, sport, dst, dport =
      line:match("^(%S+) (%S+) (%S+) (%S+) (%S+) (%d+) (%S+) (%d+)$")
    if t then
      events[#events + 1] = { time = tonumber(t), from = from, to = to, family = fam, src = src,
                              sport = tonumber(sport), dst = dst, dport = tonumber(dport) }
    end
  end
  return events
end

--- Stop recording; returns the events (also in rec.events). rec.lost counts
-- events the ring buffer lost (0 when none); rec.raw is the kernel's view.
function Recorder:stop()
  if self.events then return self.events end
  if self.dir then
    writefile(self.dir .. "/tracing_on", "0")
    self.lost = self:_lost()
    self.raw = parse_tracepoint(readfile(self.dir .. "/trace") or "")
    self:_remove()
    self.events = tell_truth(self.raw, self.netns)
  else
    self.raw = parse_samples(self:_remove() or "")
    self.events = self.raw
  end
  if self.lost > 0 then
    self.warning = ("%d events lost (ring buffer overrun): the sequence is incomplete"):format(self.lost)
  end
  return self.events
end

--- A stopped recorder over events recorded earlier (to replay expect()).
function trace.from_events(events, opts)
  opts = opts or {}
  return setmetatable({ ports = port_list(opts), events = events, raw = events,
                        method = opts.method or "replay", lost = opts.lost or 0 }, Recorder)
end

Recorder.__close = function(self) if not self.events then self:stop() end end
Recorder.__gc = function(self) self:_remove() end

--- Which side an event belongs to: "server" when its source port is one of the
-- recorded ports, "client" when its destination port is.
function Recorder:side(ev)
  for _, p in ipairs(self.ports) do
    if ev.sport == p then return "server" end
  end
  return "client"
end

--- The observed transitions "FROM>TO", optionally only those of one side.
function Recorder:sequence(side)
  local seq = {}
  for _, ev in ipairs(self.events or self:stop()) do
    if side == nil or self:side(ev) == side then seq[#seq + 1] = ev.from .. ">" .. ev.to end
  end
  return seq
end

local function expand(list)
  local out = {}
  for _, item in ipairs(list) do
    local names = {}
    for part in item:gmatch("[^>]+") do
      local name = part == "CLOSED" and "CLOSE" or states.canonical(part)
      if not name then error(("expect: unknown state '%s' in '%s'"):format(part, item), 4) end
      names[#names + 1] = name
    end
    if #names < 2 then error(("expect: 'FROM>TO' expected, got '%s'"):format(item), 4) end
    for i = 1, #names - 1 do out[#out + 1] = names[i] .. ">" .. names[i + 1] end
  end
  return out
end

--- Assert transitions happened in this order (other transitions may come
-- between). expect{ "A>B", ... } checks all events; expect{ client = {...},
-- server = {...} } checks each side. "A>B>C" is short for "A>B", "B>C".
-- Returns true, or nil and a message with the expected and observed sequences.
function Recorder:expect(spec)
  if type(spec) ~= "table" then error("bad argument #1 to 'expect' (table expected)", 2) end
  local groups = {}
  if #spec > 0 then groups[#groups + 1] = { side = nil, want = expand(spec) } end
  for _, side in ipairs({ "client", "server" }) do
    if spec[side] then groups[#groups + 1] = { side = side, want = expand(spec[side]) } end
  end
  for _, g in ipairs(groups) do
    local seen, i = self:sequence(g.side), 1
    for _, tr in ipairs(seen) do
      if tr == g.want[i] then i = i + 1 end
    end
    if i <= #g.want then
      return nil, ("%s: expected %s\n  observed %s\n  (missing from %s on; method: %s%s)"):format(
        g.side or "all sockets", table.concat(g.want, ", "), table.concat(seen, ", "),
        g.want[i], self.method, self.lost > 0 and ("; " .. self.lost .. " events lost") or "")
    end
  end
  return true
end

return trace
