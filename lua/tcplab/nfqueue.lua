--- Network conditions decided per packet by a Lua function (NFQUEUE), in a
-- namespace that tcplab made. tcplab.fault.queue, fault.delay and fault.loss
-- are this module (doc/fault-queue.md).
--
--   local q <close> = assert(tcplab.fault.queue{ netns = ns, port = 8080,
--     on_packet = function(pkt)            -- pkt.direction "to" | "from" the port
--       if pkt.flags == "SA" then return { delay = 0.3 } end
--       return "pass"                      -- "drop", "duplicate", { hold = true }
--     end })
--   q:run_for(2)       -- serve the queue for 2 s (or q:step(t) from your own loop)
--   q:lift()           -- or leave scope: rules gone, held packets passed, queue closed
--
-- The packets of the port (both directions, IPv4 and IPv6) go to an NFQUEUE
-- of the namespace through an xtables rule (iptables -j NFQUEUE
-- --queue-bypass; nft's `queue` statement where iptables is missing). They
-- wait in the kernel until this process gives each its verdict, which it
-- does only inside q:step / q:run_for / q:run_until: nothing runs behind the
-- caller's back and no call blocks longer than the time it is given. While
-- nobody steps, the port's packets wait (the connection stalls; nothing is
-- lost): step while the traffic you want to shape is in flight.
--
-- Bounded: a callback that raises, returns something else than a verdict,
-- or runs longer than `timeout` seconds gets its packet passed; a held
-- packet is passed when it has waited `timeout` seconds. Each such case is
-- a record in q.errors and one warning line (spec.warn: false or a function
-- of the line; default stderr).
local core = require "tcplab.core"
local netns = require("tcplab.kernel").netns
local sys = require "tcplab.sys"
local args = require "tcplab.args"

local EPERM, EBUSY = core.errno.EPERM, core.errno.EBUSY
local nfqueue = {}

local MARK = core.nfqueue.INJECT_MARK
local MAX_WARNINGS = 20
local DEFAULT_TIMEOUT = 2
local MAX_QUEUE = 0xffff   -- queue numbers are 16 bits (not a port: args.bad_port is not for these)

-- The verdicts a callback may return, for messages.
local VERDICTS = '"pass", "drop", "duplicate", { delay = S }, { hold = true } (or nil: pass)'

local Queue = {}
Queue.__index = Queue

---------------------------------------------------------------- the rule
-- One spec per family and direction; the same text adds (-I) and deletes (-D).
local function xt_specs(port, num)
  local out = {}
  for _, dir in ipairs({ "--dport", "--sport" }) do
    out[#out + 1] = ("OUTPUT -p tcp %s %d -m mark ! --mark 0x%x -j NFQUEUE --queue-num %d --queue-bypass")
      :format(dir, port, MARK, num)
  end
  return out
end

local function sh(cmd)
  local out, ok = sys.run("queue", cmd)
  return ok, (out or ""):gsub("%s+$", "")
end

-- Which tool puts the rule in: iptables (the xtables NFQUEUE target; here
-- with the nf_tables backend), else nft's queue statement. Runs inside ns.
local function add_rules(port, num)
  local tried = {}
  local added = {}
  local ok4, out4
  for _, tool in ipairs({ "iptables", "ip6tables" }) do
    local ok, out = true, ""
    for _, spec in ipairs(xt_specs(port, num)) do
      ok, out = sh(("%s -w 5 -I %s"):format(tool, spec))
      if not ok then break end
      added[#added + 1] = { tool = tool, spec = spec }
    end
    if tool == "iptables" then ok4, out4 = ok, out end
  end
  if ok4 then return "iptables", added end
  tried[#tried + 1] = "iptables: " .. out4
  local table_ = ("tcplab_queue_%d"):format(num)
  local script = ("add table inet %s\nadd chain inet %s output { type filter hook output priority 0; }\n" ..
                  "add rule inet %s output meta mark != 0x%x tcp dport %d queue num %d bypass\n" ..
                  "add rule inet %s output meta mark != 0x%x tcp sport %d queue num %d bypass")
                 :format(table_, table_, table_, MARK, port, num, table_, MARK, port, num)
  local ok, out = sh("nft -f - <<'TCPLAB_EOF'\n" .. script .. "\nTCPLAB_EOF")
  if ok then return "nft", { { tool = "nft", table = table_ } } end
  sh("nft delete table inet " .. table_)
  tried[#tried + 1] = "nft queue: " .. out
  for _, r in ipairs(added) do sh(("%s -w 5 -D %s"):format(r.tool, r.spec)) end
  return nil, "no way to queue packets here (" .. table.concat(tried, "; ") .. ")"
end

local function delete_rules(rules)
  local errs = {}
  for _, r in ipairs(rules) do
    local ok, out
    if r.tool == "nft" then ok, out = sh("nft delete table inet " .. r.table)
    else ok, out = sh(("%s -w 5 -D %s"):format(r.tool, r.spec)) end
    if not ok then errs[#errs + 1] = r.tool .. ": " .. out end
  end
  if #errs > 0 then return nil, table.concat(errs, "; ") end
  return true
end

---------------------------------------------------------------- arguments
-- The fields each function takes: a misspelt one (sedd = 7) is an error,
-- not a silent default.
local COMMON = { "netns", "port", "queue", "timeout", "warn" }
local FIELDS = { queue = { "on_packet" }, delay = { "seconds", "flags", "direction" },
                 loss = { "rate", "flags", "direction", "seed" } }
for fname, list in pairs(FIELDS) do
  local set = {}
  for _, k in ipairs(COMMON) do set[k] = true end
  for _, k in ipairs(list) do set[k] = true end
  FIELDS[fname] = set
end

local function check_fields(fname, spec)
  local known = FIELDS[fname]
  for k in pairs(spec) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      local shown = type(k) == "string" and ("%q"):format(k) or args.show(k)
      args.error(fname, 1, ("unknown field %s; %s takes %s"):format(shown, fname, table.concat(names, ", ")))
    end
  end
end

local function check(fname, spec, need_callback)
  local function bad(msg) args.error(fname, 1, msg) end
  if type(spec) ~= "table" then bad("table expected, got " .. type(spec)) end
  local ns = spec.netns
  if ns ~= nil and not netns.owns(ns) then
    bad("netns: an open handle from tcplab.netns.new() expected, got " .. args.show(ns))
  end
  local port_bad = args.bad_port(spec.port)
  if port_bad then bad("port: " .. port_bad) end
  if need_callback and type(spec.on_packet) ~= "function" then
    bad("on_packet: function(pkt) returning a verdict expected, got " .. args.show(spec.on_packet))
  end
  local qn = spec.queue
  if qn ~= nil and (math.type(qn) ~= "integer" or qn < 0 or qn > MAX_QUEUE) then
    bad(("queue: queue number 0..%d expected, got %s"):format(MAX_QUEUE, args.show(qn)))
  end
  local t = spec.timeout
  if t ~= nil and (type(t) ~= "number" or t ~= t or t <= 0 or t > 3600) then
    bad("timeout: seconds (0..3600] expected, got " .. args.show(t))
  end
  if spec.warn ~= nil and spec.warn ~= false and type(spec.warn) ~= "function" then
    bad("warn: false or function(line) expected, got " .. args.show(spec.warn))
  end
end

---------------------------------------------------------------- open
--- A queue on spec.port in spec.netns (or the current namespace, which
-- must be one tcplab made): { netns, port, on_packet, queue, timeout, warn }.
-- Returns the queue, or nil and a message.
function nfqueue.open(spec, fname)
  fname = fname or "queue"
  if fname == "queue" and type(spec) == "table" then check_fields("queue", spec) end
  check(fname, spec, true)
  local ns = spec.netns
  if ns == nil then
    ns = netns.current_ours()
    if not ns then
      return nil, "tcplab.fault.queue runs only in a namespace tcplab made (netns = tcplab.netns.new(), " ..
                  "or inside tcplab.netns.unshare()): the host's packets are never queued"
    end
  end
  return nfqueue._open_in(ns, spec)
end

-- The queue in the namespace of handle ns (checked by the caller: one that
-- tcplab made, or the current namespace of a helper process a lab started
-- inside its own namespace, tcplab.lab.netem).
function nfqueue._open_in(ns, spec)
  -- The queue first, then the rule: a packet queued before anyone listens
  -- would pass (--queue-bypass) unseen.
  -- A number another socket holds answers EPERM (the kernel checks the
  -- owner before EBUSY, which only the holder itself gets): both mean taken.
  local q, err, errno
  local first = spec.queue or 0
  local last = spec.queue and first or math.min(first + 63, MAX_QUEUE)
  for num = first, last do
    q, err, errno = ns:run(core.nfqueue.open, num)
    if q or (errno ~= EPERM and errno ~= EBUSY) then break end
  end
  if not q and (errno == EPERM or errno == EBUSY) then
    if spec.queue then
      return nil, ("queue: number %d is in use in this namespace (another NFQUEUE listener holds it): " ..
                   "pick another queue = N, or leave queue out for the first free one"):format(first)
    end
    return nil, ("queue: numbers %d..%d are all in use in this namespace"):format(first, last)
  end
  if not q then return nil, "queue: " .. tostring(err) end
  local via, rules = ns:run(add_rules, spec.port, q:number())
  if not via then
    q:close()
    return nil, "queue: " .. rules
  end
  local self = setmetatable({
    netns = ns, port = spec.port, number = q:number(), via = via,
    on_packet = spec.on_packet, timeout = spec.timeout or DEFAULT_TIMEOUT,
    warn = spec.warn == nil and function(line) io.stderr:write(line, "\n") end or spec.warn or nil,
    errors = {}, counts = { pass = 0, drop = 0, delay = 0, duplicate = 0, hold = 0 }, seen = 0,
    _q = q, _rules = rules, _pending = {}, _arrivals = 0, _warned = 0, _release = nil,
  }, Queue)
  return self
end

---------------------------------------------------------------- serving
function Queue:_error(pkt, what, msg)
  local e = { id = pkt.id, flags = pkt.flags, direction = pkt.direction, what = what, message = msg }
  self.errors[#self.errors + 1] = e
  if self.warn then
    self._warned = self._warned + 1
    if self._warned <= MAX_WARNINGS then
      self.warn(("tcplab: queue %d port %d: packet %d (%s %s) passed: %s"):format(
        self.number, self.port, pkt.id, pkt.direction or "?", pkt.flags or "?", msg))
    elseif self._warned == MAX_WARNINGS + 1 then
      self.warn(("tcplab: queue %d port %d: more packets passed after errors (q.errors lists them all)")
        :format(self.number, self.port))
    end
  end
end

function Queue:_accept(entry)
  local ok, err = self._q:verdict(entry.id, "accept")
  if not ok then self:_error(entry.pkt, "verdict", tostring(err)) end
end

-- Pass the pending packets that are due (delays that ran out, holds that
-- waited too long), in the order they are due, arrival order on a tie.
function Queue:_release_due(now)
  local due = {}
  local keep = {}
  for _, e in ipairs(self._pending) do
    if e.due <= now then due[#due + 1] = e else keep[#keep + 1] = e end
  end
  if #due == 0 then return end
  self._pending = keep
  table.sort(due, function(a, b) if a.due ~= b.due then return a.due < b.due end return a.n < b.n end)
  for _, e in ipairs(due) do
    if e.kind == "hold" then
      self:_error(e.pkt, "hold", ("held %.3g s without release (timeout %g s)"):format(now - e.t, self.timeout))
    end
    self:_accept(e)
  end
end

-- The packet as the callback sees it (no raw bytes: those stay here).
local function public(p, port, n, t)
  return {
    id = p.id, n = n, t = t, family = p.family, src = p.src, sport = p.sport, dst = p.dst, dport = p.dport,
    flags = p.flags, seq = p.seq, ack = p.ack, win = p.win, len = p.len,
    direction = p.dport == port and "to" or "from",
  }
end

-- Run the callback with a deadline, on a coroutine of its own: a count hook
-- on that thread raises once it has run past the deadline (a busy loop); a
-- callback that waits in C is measured on return. Its own thread also means
-- a yield cannot leave step() with the packet unanswered (it is an error
-- here), and the caller's hooks (lua.c's Ctrl-C) are never touched.
local TIMEOUT_MSG = "tcplab: callback ran past its timeout"
local YIELD_MSG = "tcplab: callback yielded"
local function call_bounded(fn, pkt, timeout)
  local deadline = core.now() + timeout
  local co = coroutine.create(fn)
  debug.sethook(co, function()
    if core.now() > deadline then error(TIMEOUT_MSG, 0) end
  end, "", 1000)
  local t0 = core.now()
  local ok, verdict = coroutine.resume(co, pkt)
  local took = core.now() - t0
  if ok and coroutine.status(co) == "suspended" then
    coroutine.close(co)
    return false, YIELD_MSG, took
  end
  return ok, verdict, took
end

-- An error value as text, whatever its __tostring does.
local function error_text(v)
  local ok, text = pcall(tostring, v)
  if ok and type(text) == "string" then return text end
  return "(a " .. type(v) .. " whose __tostring failed)"
end

function Queue:_handle(p, now)
  self.seen = self.seen + 1
  self._arrivals = self._arrivals + 1
  local pkt = p.tcp and public(p, self.port, self._arrivals, now) or { id = p.id, n = self._arrivals, t = now }
  local entry = { id = p.id, raw = p.raw, pkt = pkt, n = self._arrivals, t = now }
  if not p.tcp then return self:_accept(entry) end
  self._in_callback, self._release = true, {}
  local ok, verdict, took = call_bounded(self.on_packet, pkt, self.timeout)
  self._in_callback = false
  local released = self._release
  self._release = nil
  local function finish() for _, id in ipairs(released) do self:release(id) end end
  if not ok then
    if verdict == TIMEOUT_MSG then
      self:_error(pkt, "timeout", ("callback ran longer than its timeout (%g s)"):format(self.timeout))
    elseif verdict == YIELD_MSG then
      self:_error(pkt, "raised", "callback yielded (a callback runs to its end: return a verdict, " ..
                                 "or { hold = true } and q:release(id) later)")
    else
      self:_error(pkt, "raised", "callback raised: " .. error_text(verdict))
    end
    self.counts.pass = self.counts.pass + 1
    self:_accept(entry)
    return finish()
  end
  if took > self.timeout then
    self:_error(pkt, "timeout", ("callback took %.3g s (timeout %g s)"):format(took, self.timeout))
    self.counts.pass = self.counts.pass + 1
    self:_accept(entry)
    return finish()
  end
  local kind
  if verdict == nil or verdict == "pass" then kind = "pass"
  elseif verdict == "drop" or verdict == "duplicate" then kind = verdict
  elseif type(verdict) == "table" then   -- raw fields: a verdict's metatable runs no code of the callback's here
    local hold, delay = rawget(verdict, "hold"), rawget(verdict, "delay")
    if hold == true and delay == nil then kind = "hold"
    elseif hold == nil and type(delay) == "number" and delay >= 0 and delay <= 3600 then kind = "delay" end
  end
  if not kind then
    self:_error(pkt, "verdict", ("callback returned %s; expected %s"):format(args.show(verdict), VERDICTS))
    self.counts.pass = self.counts.pass + 1
    self:_accept(entry)
    return finish()
  end
  self.counts[kind] = self.counts[kind] + 1
  if kind == "pass" then
    self:_accept(entry)
  elseif kind == "drop" then
    local vok, err = self._q:verdict(entry.id, "drop")
    if not vok then self:_error(pkt, "verdict", tostring(err)) end
  elseif kind == "duplicate" then
    local iok, err = self._q:inject(entry.raw)
    if not iok then self:_error(pkt, "duplicate", "copy not sent: " .. tostring(err)) end
    self:_accept(entry)
  else
    entry.kind = kind
    entry.due = now + (kind == "hold" and self.timeout or verdict.delay)   -- a raw field: kind "delay" checked it
    self._pending[#self._pending + 1] = entry
  end
  finish()
end

local function check_timeout(fname, t, n)
  if type(t) ~= "number" or t ~= t or t < 0 then
    args.error(fname, n, "seconds >= 0 expected, got " .. args.show(t))
  end
end

--- Serve the queue for up to `timeout` seconds (default 0: what is there
-- now): packets that arrived get their callback and verdict, delays and
-- holds that ran out are passed. Returns as soon as a batch was handled.
-- Returns the number of packets handled, or nil, "interrupted", EINTR.
function Queue:step(timeout)
  if timeout == nil then timeout = 0 end
  check_timeout("step", timeout, 1)
  if not self._q then return nil, "queue lifted" end
  local now = core.now()
  self:_release_due(now)
  local wait = timeout
  for _, e in ipairs(self._pending) do
    if e.due - now < wait then wait = math.max(0, e.due - now) end
  end
  local list, err, errno = self._q:read(wait)
  if not list then return nil, err, errno end
  now = core.now()
  for _, p in ipairs(list) do self:_handle(p, now) end
  self:_release_due(core.now())
  return #list
end

--- Serve until `seconds` have passed. Returns packets handled, or nil, err.
function Queue:run_for(seconds)
  check_timeout("run_for", seconds, 1)
  return self:run_until(function() return false end, seconds)
end

--- Serve until pred() is true (checked after each step) or `seconds` have
-- passed. Returns true when pred held, false on the deadline (then the
-- packet count), or nil, err.
function Queue:run_until(pred, seconds)
  if type(pred) ~= "function" then args.error("run_until", 1, "function expected, got " .. args.show(pred)) end
  check_timeout("run_until", seconds, 2)
  local deadline = core.now() + seconds
  local n = 0
  while true do
    if pred() then return true, n end
    local left = deadline - core.now()
    if left <= 0 then return false, n end
    local got, err, errno = self:step(math.min(left, 0.05))
    if not got then return nil, err, errno end
    n = n + got
  end
end

--- Let held packets go now (all of them, in the order they were held, or
-- the one with that id). Called from inside a callback, the release happens
-- after that callback's own packet got its verdict: hold A, then on B
-- release and pass, and B is on the wire before A. Returns how many.
function Queue:release(id)
  if id ~= nil and math.type(id) ~= "integer" then
    args.error("release", 1, "packet id (integer) expected, got " .. args.show(id))
  end
  if self._in_callback then
    if id then self._release[#self._release + 1] = id
    else for _, e in ipairs(self._pending) do if e.kind == "hold" then self._release[#self._release + 1] = e.id end end end
    return 0
  end
  local keep, n = {}, 0
  for _, e in ipairs(self._pending) do
    if e.kind == "hold" and (id == nil or e.id == id) then
      self:_accept(e)
      n = n + 1
    else
      keep[#keep + 1] = e
    end
  end
  self._pending = keep
  return n
end

--- Packets waiting for their verdict here (delayed or held).
function Queue:pending() return #self._pending end

--- Take the rules out, pass every packet still waiting (held or delayed,
-- in arrival order, then those queued meanwhile), close the queue.
-- Idempotent. true, or nil and a message.
function Queue:lift()
  if not self._q then return true end
  local q, rules = self._q, self._rules
  self._q = nil
  local ok, err = true, nil
  -- the rules first: nothing new is queued after this
  -- a handle still open (ours, or a lab helper's own namespace): lift there
  if pcall(self.netns.id, self.netns) then ok, err = self.netns:run(delete_rules, rules) end
  local late = {}
  for _ = 1, 1000 do   -- bounded: the queue holds at most 1024 packets
    local list = q:read(0)
    if not list or #list == 0 then break end
    for _, p in ipairs(list) do late[#late + 1] = p.id end
  end
  table.sort(self._pending, function(a, b) return a.n < b.n end)
  for _, e in ipairs(self._pending) do pcall(q.verdict, q, e.id, "accept") end
  for _, id in ipairs(late) do pcall(q.verdict, q, id, "accept") end
  self._pending = {}
  q:close()   -- and every packet still queued is accepted on close
  if not ok then return nil, "queue: rule not removed: " .. tostring(err) end
  return true
end

function Queue:is_lifted() return self._q == nil end

Queue.__close = function(self) self:lift() end
Queue.__gc = function(self) pcall(self.lift, self) end
Queue.__tostring = function(self)
  local c = self.counts
  return ("fault queue %d port %d via %s: %d packets (%d pass, %d drop, %d delay, %d duplicate, %d hold, %d errors)%s")
    :format(self.number, self.port, self.via, self.seen, c.pass, c.drop, c.delay, c.duplicate, c.hold,
            #self.errors, self._q and "" or " (lifted)")
end

---------------------------------------------------------------- shorthands
local FLAG_LETTERS = "FSRPAUEW"
local function canon_flags(s)
  local out = {}
  for i = 1, #FLAG_LETTERS do
    local l = FLAG_LETTERS:sub(i, i)
    if s:find(l, 1, true) then out[#out + 1] = l end
  end
  return table.concat(out)
end

local function check_match(fname, spec)
  local f = spec.flags
  if f ~= nil and (type(f) ~= "string" or f == "" or f:find("[^FSRPAUEW]")) then
    args.error(fname, 1, "flags: letters of FSRPAUEW expected (\"SA\": SYN-ACK), got " .. args.show(f))
  end
  local d = spec.direction
  if d ~= nil and d ~= "to" and d ~= "from" then
    args.error(fname, 1, 'direction: "to" or "from" (the port) expected, got ' .. args.show(d))
  end
  return f and canon_flags(f), d
end

local function matcher(flags, direction)
  return function(pkt)
    return (flags == nil or pkt.flags == flags) and (direction == nil or pkt.direction == direction)
  end
end

local function with_callback(spec, on_packet)
  local t = {}
  for k, v in pairs(spec) do t[k] = v end
  t.on_packet = on_packet
  return t
end

--- Delay the port's packets by `seconds` (only those whose flags are
-- exactly `flags`, "SA" for SYN-ACKs, and going `direction` "to"/"from" the
-- port, when given): { netns, port, seconds, flags, direction, timeout }.
function nfqueue.delay(spec)
  if type(spec) ~= "table" then args.error("delay", 1, "table expected, got " .. type(spec)) end
  check_fields("delay", spec)
  local s = spec.seconds
  if type(s) ~= "number" or s ~= s or s < 0 or s > 3600 then
    args.error("delay", 1, "seconds: 0..3600 expected, got " .. args.show(s))
  end
  local match = matcher(check_match("delay", spec))
  local verdict = { delay = s }
  check("delay", with_callback(spec, print), true)
  return nfqueue.open(with_callback(spec, function(pkt)
    if match(pkt) then return verdict end
    return "pass"
  end), "delay")
end

--- A generator of numbers in (0, 1) of our own (a Lehmer LCG), so that
-- math.random's state stays the caller's; seed nil: from the clock.
function nfqueue.random(seed)
  local state = (seed or math.floor(core.now() * 1e6)) % 2147483646 + 1   -- never 0
  return function()
    state = (state * 48271) % 2147483647
    return state / 2147483647
  end
end

--- Drop each of the port's packets with probability `rate` (0..1; matching
-- flags/direction when given): { netns, port, rate, flags, direction, seed }.
-- seed (integer) makes the choice repeatable.
function nfqueue.loss(spec)
  if type(spec) ~= "table" then args.error("loss", 1, "table expected, got " .. type(spec)) end
  check_fields("loss", spec)
  local r = spec.rate
  if type(r) ~= "number" or r ~= r or r < 0 or r > 1 then
    args.error("loss", 1, "rate: a fraction 0..1 expected (0.1 is 10%), got " .. args.show(r))
  end
  if spec.seed ~= nil and math.type(spec.seed) ~= "integer" then
    args.error("loss", 1, "seed: integer expected, got " .. args.show(spec.seed))
  end
  local match = matcher(check_match("loss", spec))
  check("loss", with_callback(spec, print), true)
  local random = nfqueue.random(spec.seed)
  return nfqueue.open(with_callback(spec, function(pkt)
    if match(pkt) and random() < r then return "drop" end
    return "pass"
  end), "loss")
end

return nfqueue
