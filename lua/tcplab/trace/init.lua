--- State transitions of the sockets on chosen ports, in order, with times.
--
-- Three sources, named in rec.method:
-- * "bpf" (root, a module built with BPF): a BPF program on the tracepoint
--   sock/inet_sock_set_state (csrc/bpf/state_tp.bpf.c) filters by network
--   namespace and port in the kernel and streams each event through a ring
--   buffer with the socket's cookie, its namespace's inode and a
--   CLOCK_MONOTONIC timestamp (the clock of tcplab.now()). rec.lost counts
--   what was not written: events the ring buffer had no room for, and
--   (rec.skipped) transitions the kernel did not run the program for because
--   it was already running on that CPU, a softirq interrupting it; a second
--   program records those, rec.rescued counts them). A transition still
--   missing is filled in from its socket's chain of events, and each
--   socket's last state is checked against the dump at stop()
--   (trace/repair.lua); those are marked ev.inferred, rec.inferred counts
--   them. opts.netns = "all" records every namespace (ev.netns).
-- * "tracepoint" (root): the kernel tracepoint sock/inet_sock_set_state in a
--   private tracefs instance (trace/tracefs.lua), filtered by port in the
--   kernel, clock "mono" (the clock of tcplab.now()). The tracepoint is
--   host-wide: it cannot tell namespaces apart, so rec.scope says so, and
--   with opts.addrs only events to or from those addresses are kept (the
--   scenarios give each run addresses no other process uses).
-- * "sampling": a helper process dumps this namespace's sockets every
--   millisecond (trace/sampler.lua); states shorter than that can be missed.
--
-- The TIME_WAIT story: the tracepoint follows the full socket, which the
-- kernel replaces by a time-wait placeholder; it then says FIN_WAIT2 -> CLOSE
-- (or FIN_WAIT1/CLOSING -> CLOSE) and never TIME_WAIT. The BPF recorder tells
-- the two apart in the kernel (the socket already unhashed and the peer's FIN
-- taken: tcp_time_wait() into TIME_WAIT) and writes X -> TIME_WAIT at that
-- moment (ev.kernel = "CLOSE" keeps the tracepoint's word). Where no event
-- says so (the tracefs recorder; an orphan whose FIN_WAIT2 became a
-- placeholder before the peer's FIN, which then enters TIME_WAIT without any
-- event), stop() asks the dump about each such four-tuple: when a
-- placeholder is in TIME_WAIT the event becomes X -> TIME_WAIT with
-- ev.inferred = "dump" (time: the later of the event and the start of the
-- 60 s TIME_WAIT timer, derived from its remaining time); when the
-- placeholder is still FIN_WAIT2 the CLOSE is left out. rec.raw keeps the
-- kernel's own events. See doc/kernel-recorder.md.
local args = require "tcplab.args"
local tracefs = require "tcplab.trace.tracefs"
local sys = require "tcplab.sys"
local sampler = require "tcplab.trace.sampler"
local expect = require "tcplab.trace.expect"
local repair = require "tcplab.trace.repair"
local witness = require "tcplab.trace.witness"
local wire = require "tcplab.wire"

local trace = {}

local TIME_WAIT_LEN = 60.0   -- TCP_TIMEWAIT_LEN
local DEFAULT_LIMIT = 120    -- seconds a sampling helper runs at most

local Recorder = {}
Recorder.__index = Recorder
expect.install(Recorder)

local function bad(msg) args.error("start", 1, msg, 4) end

local function check_opts(opts)
  if type(opts) ~= "table" then bad("table expected, got " .. type(opts)) end
  local ports = opts.ports or { opts.port }
  if opts.all_ports == true and opts.port == nil and opts.ports == nil then ports = {}
  elseif type(ports) ~= "table" or #ports == 0 then bad("port or ports expected (or all_ports = true)") end
  for i, p in ipairs(ports) do
    local msg = args.bad_port(p)
    if msg then bad((opts.ports and ("ports[%d]"):format(i) or "port") .. ": " .. msg) end
  end
  if #ports > tracefs.MAX_PORTS then bad(("at most %d ports"):format(tracefs.MAX_PORTS)) end
  local method = opts.method
  if method ~= nil and method ~= "bpf" and method ~= "tracepoint" and method ~= "sampling" then
    bad("method: 'bpf', 'tracepoint' or 'sampling' expected")
  end
  local limit = opts.limit or DEFAULT_LIMIT
  if type(limit) ~= "number" or limit ~= limit or limit <= 0 or limit > 86400 then
    bad("limit: seconds 0..86400 expected, got " .. args.show(opts.limit))
  end
  local buffer_kb = opts.buffer_kb or 1024
  if math.type(buffer_kb) ~= "integer" or buffer_kb < 1 or buffer_kb > 1 << 20 then
    bad("buffer_kb: integer 1..2^20 expected, got " .. tostring(opts.buffer_kb))
  end
  if opts.netns ~= nil and type(opts.netns) ~= "string" then
    bad("netns: a path or 'all' expected, got " .. args.show(opts.netns))
  end
  if opts.netns ~= nil and method ~= nil and method ~= "bpf" then
    bad("netns needs method 'bpf' (the tracepoint cannot tell namespaces apart, the sampler samples its own)")
  end
  local addrs
  if opts.addrs ~= nil then
    if type(opts.addrs) ~= "table" then bad("addrs: list of addresses expected") end
    addrs = {}
    for _, a in ipairs(opts.addrs) do
      if type(a) ~= "string" then bad("addrs: list of address strings expected") end
      addrs[a] = true
    end
  end
  return ports, method, limit, buffer_kb, addrs
end

--- Is the tracepoint usable here (tracefs mounted or mountable, root)?
trace.tracepoint_available = tracefs.available

--- Names of this process's tracefs instances that exist now.
trace.instances = tracefs.mine

local SAMPLING = ("sampling (every %g ms; states shorter than that can be missed)")
  :format(sampler.INTERVAL * 1000)

--- The recorders in the order trace.start tries them when no method is
-- named: the one place the choice is made (the scenarios, tcplab.lab,
-- `tcplab check` and `tcplab trace` all leave it to start). BPF first: it
-- filters by namespace in the kernel, says when TIME_WAIT begins, and counts
-- what it did not deliver (rec.lost, rec.skipped, rec.undelivered).
trace.METHODS = { "bpf", "tracepoint", "sampling" }

--- opts.witness (with BPF, in this namespace, with opts.addrs): a tracefs recorder runs
-- beside it, and stop() adds the transitions BPF was not called for
-- (ev.witness = "tracefs"), counted in rec.missed (trace/witness.lua).
--- Start recording the transitions of sockets with sport or dport in opts.port
-- (or opts.ports, at most 64). opts.method: "bpf", "tracepoint", "sampling"
-- or nil (the first of trace.METHODS that can be used here; with opts.live,
-- only those that stream events: not the sampler). opts.addrs: keep only
-- tracepoint events to or from these addresses. opts.limit: seconds the
-- sampling helper runs at most (120). opts.netns: path of the namespace
-- recorded (bpf) and whose dump is read at stop(); "all": every namespace
-- (bpf only). opts.life (bpf): the event that ends each socket carries its
-- lifetime (ev.life; trace/life.lua). Returns a recorder, or nil and a message.
function trace.start(opts)
  local ports, method, limit, buffer_kb, addrs = check_opts(opts)
  local tcplab = require "tcplab.kernel"
  -- every start, whichever recorder it picks, sweeps the tracefs instances of
  -- dead processes (a SIGKILL leaves its instance behind)
  if sys.is_root() then tracefs.sweep() end
  -- the namespace whose dump stop() reads: by inode, checked again there
  local netns_id, nerr
  if opts.netns ~= "all" then
    netns_id, nerr = tcplab.netns.id(opts.netns)
    if not netns_id then return nil, nerr end
  end
  local rec = setmetatable({ ports = ports, netns = opts.netns, netns_id = netns_id, addrs = addrs, lost = 0,
                             foreign = 0, limit = limit }, Recorder)
  local why
  if method == nil or method == "bpf" or opts.netns ~= nil then
    local h, err = require("tcplab.kernel").bpf_trace{ ports = ports, netns = opts.netns, buffer_kb = buffer_kb,
                                                       life = opts.life == true or nil }
    local where = opts.netns == "all" and "every network namespace" or "this network namespace"
    if h then
      rec.bpf, rec.bpf_seen, rec.method = h, {}, "bpf"
      rec.scope = where .. (addrs and " (in-kernel filter), filtered by port and address" or " (in-kernel filter)")
      -- witness = "tuples": the caller narrows the host-wide tracefs events
      -- itself (rec.witness_keep(ev), set before stop(): the four-tuples a
      -- capture in the recorded namespace saw), so a namespace is no obstacle
      local tuples = opts.witness == "tuples" and opts.netns ~= "all"
      if opts.witness and ((addrs and opts.netns == nil) or tuples) and tracefs.available() then
        -- the tracefs recorder beside it fills what BPF was not called for (trace/witness.lua)
        rec.tracefs = tracefs.create(ports, buffer_kb)
        rec.missed = rec.tracefs and 0 or nil
        rec.witness_tuples = tuples or nil
      end
    elseif opts.netns ~= nil then
      return nil, "netns needs the BPF recorder: " .. tostring(err)
    elseif method == "bpf" then
      return nil, "bpf: " .. tostring(err)
    else
      why = "bpf: " .. tostring(err)
    end
  end
  if not rec.method and method ~= "sampling" then
    local inst, err
    if tracefs.available() then
      inst, err = tracefs.create(ports, buffer_kb)
    else
      err = "the tracepoint needs root and tracefs"
    end
    if inst then
      rec.tracefs, rec.method, rec.fallback = inst, "tracepoint", why
      rec.scope = addrs and "host-wide tracepoint, filtered by port and address"
        or "host-wide tracepoint, filtered by port only: events of another namespace using the same port are included"
    elseif method == "tracepoint" then
      return nil, err
    else
      why = why and (why .. "; " .. tostring(err)) or err
    end
  end
  if not rec.method and opts.live then
    return nil, why
  end
  if not rec.method then
    local h, err = sampler.spawn(ports, sampler.INTERVAL, limit)
    if not h then return nil, err end
    rec.sampler, rec.method, rec.scope = h, SAMPLING, "this network namespace"
    rec.fallback = why
  end
  rec.started = require("tcplab.kernel").now()
  return rec
end

local PLACEHOLDER_FROM = { FIN_WAIT1 = true, FIN_WAIT2 = true, CLOSING = true }

-- Sort events by time, keeping the given order between equal times (an
-- inferred transition carries the time of the event it comes before).
local function by_time(events)
  local at = {}
  for i, ev in ipairs(events) do at[ev] = i end
  table.sort(events, function(a, b)
    if a.time ~= b.time then return a.time < b.time end
    return at[a] < at[b]
  end)
  return events
end

-- Rewrite the full socket's X -> CLOSE into what the placeholder shows
-- (dump: the namespace's sockets at stop()).
local function tell_truth(raw, dump)
  local tcplab = require "tcplab.kernel"
  local now = tcplab.now()
  local events = {}
  for _, ev in ipairs(raw) do
    local told = ev
    if ev.to == "CLOSE" and PLACEHOLDER_FROM[ev.from] then
      for _, r in ipairs(dump) do
        if r.inode == 0 and (r.state == "TIME_WAIT" or r.state == "FIN_WAIT2") and r.sport == ev.sport and r.dport == ev.dport
           and r.src == ev.src and r.dst == ev.dst then
          if r.state == "TIME_WAIT" then
            local entered = now - (TIME_WAIT_LEN - r.expires_ms / 1000)
            told = { time = math.max(ev.time, entered), family = ev.family, src = ev.src,
                     sport = ev.sport, dst = ev.dst, dport = ev.dport, from = ev.from,
                     to = "TIME_WAIT", kernel = "CLOSE", derived = "dump", cookie = ev.cookie,
                     netns = ev.netns, inferred = ev.inferred or "dump" }
          else
            told = nil   -- the placeholder is still FIN_WAIT2: nothing closed yet
          end
          break
        end
      end
    end
    if told then events[#events + 1] = told end
  end
  return by_time(events)
end

-- Only events to or from the recorder's addresses (when it has some).
local function ours(rec, events)
  if not rec.addrs then return events end
  local kept = {}
  for _, ev in ipairs(events) do
    if rec.addrs[ev.src] or rec.addrs[ev.dst] then kept[#kept + 1] = ev
    else rec.foreign = rec.foreign + 1 end
  end
  return kept
end

-- The sockets of the recorded namespace now (for the TIME_WAIT rewrite and
-- the last states), or nil with a warning added: every namespace is
-- recorded, the dump failed, or the caller is no longer in the namespace
-- it started in.
function Recorder:_dump(warnings)
  if self.netns == "all" then return nil end
  local tcplab = require "tcplab.kernel"
  local id = tcplab.netns.id(self.netns)
  if id ~= self.netns_id then
    warnings[#warnings + 1] = "not in the recorded namespace at stop(): no TIME_WAIT rewrite, no last-state check"
    return nil
  end
  local dump, err = tcplab.snapshot{ netns = self.netns }
  if not dump then
    warnings[#warnings + 1] = "the dump at stop() failed (" .. tostring(err) .. "): no TIME_WAIT rewrite, no last-state check"
  end
  return dump
end

--- Release what the recorder holds (tracefs instance, helper process); idempotent.
function Recorder:_remove()
  if self.bpf then self.bpf:close() self.bpf = nil end
  if self.stream then tracefs.end_stream(self.stream) end
  if self.tracefs then tracefs.remove(self.tracefs) self.tracefs = nil end
  if self.sampler then
    local out = sampler.stop(self.sampler)
    self.sampler = nil
    return out
  end
end

-- What the BPF ring buffer holds now (waiting up to timeout for the first),
-- kept in rec.bpf_seen; returns the new ones.
local function bpf_take(self, timeout)
  if not self.bpf then return {} end
  local got = self.bpf:poll(timeout) or {}
  for _, ev in ipairs(got) do self.bpf_seen[#self.bpf_seen + 1] = ev end
  return got
end

--- Live events, as they happen (bpf and tracepoint recorders): for ev in
-- rec:events() do ... end. Each is { time, family, src, sport, dst, dport,
-- from, to } (and cookie and netns, from bpf) as the kernel says it (no
-- TIME_WAIT rewrite: that needs the dump at the end; a transition the kernel
-- skipped comes, marked inferred = "gap", just before the socket's next event). The loop ends after rec:stop(),
-- when opts.limit seconds have passed since the first call, or on Ctrl-C.
function Recorder:events()
  if self.bpf then
    local tcplab = require "tcplab.kernel"
    local deadline, queue, qi = tcplab.now() + self.limit, {}, 1
    local follow = repair.chain()
    return function()
      while true do
        if queue[qi] then qi = qi + 1 return queue[qi - 1] end
        if not self.bpf or tcplab.now() >= deadline then return nil end
        local left = deadline - tcplab.now()
        local got, err = self.bpf:poll(math.min(0.2, math.max(left, 0)))
        if not got then
          if err == "interrupted" then return nil end
          got = {}
        end
        queue, qi = {}, 1
        for _, ev in ipairs(got) do
          self.bpf_seen[#self.bpf_seen + 1] = ev
          local missing = follow(ev)
          if missing then queue[#queue + 1] = missing end
          queue[#queue + 1] = ev
        end
        queue = ours(self, queue)
      end
    end
  end
  if not self.tracefs and not self.stream then
    if self.recorded then return function() return nil end end   -- stopped: the stream has ended
    error("events(): a live stream needs the tracepoint recorder or bpf (rec.method is " .. tostring(self.method) .. ")", 2)
  end
  if not self.stream then
    local st, err = tracefs.stream(self.tracefs, self.limit)
    if not st then error("events(): " .. err, 2) end
    self.stream, self.streamed = st, {}
  end
  return function()
    while self.stream and self.stream.pipe do
      local line = self.stream.pipe:read("l")
      if not line then return nil end
      self.streamed[#self.streamed + 1] = line
      local ev = ours(self, tracefs.parse(line))[1]
      if ev then return ev end
    end
    return nil
  end
end

--- Stop recording; returns the events (also in rec.recorded). rec.lost counts
-- events the ring buffer lost (0 when none); rec.raw is the kernel's view.
function Recorder:stop()
  if self.recorded then return self.recorded end
  local warnings = {}
  if self.bpf then
    -- drain: every event the program wrote (its per-CPU counts) is read, or
    -- counted as undelivered; a writer still between reserve and submit on
    -- another CPU gets a few short waits (bounded)
    bpf_take(self, 0)
    local full, skipped, rescued, undelivered = self.bpf:lost()
    for _ = 1, 20 do
      if undelivered == 0 then break end
      bpf_take(self, 0.01)
      full, skipped, rescued, undelivered = self.bpf:lost()
    end
    self.lost, self.skipped, self.rescued, self.undelivered = full + skipped + undelivered, skipped, rescued, undelivered
    self.stats = self.bpf:stats()
    local seen = self.bpf_seen
    local text, tlost
    if self.tracefs then text, tlost = tracefs.read(self.tracefs) end
    self:_remove()
    self.raw = ours(self, seen)
    if text then
      local by_tracefs = ours(self, tracefs.parse(text))
      if self.witness_tuples or self.witness_keep then   -- without a predicate: none kept
        local kept = {}
        for _, ev in ipairs(by_tracefs) do if self.witness_keep and self.witness_keep(ev) then kept[#kept + 1] = ev end end
        by_tracefs = kept
      end
      self.raw, self.missed = witness.merge(self.raw, by_tracefs)
      if tlost > 0 then
        warnings[#warnings + 1] = ("the tracefs witness lost %d events"):format(tlost)
      end
    end
    local events, filled = repair.gaps(self.raw)   -- the ring's order: each socket's own order
    local dump = self:_dump(warnings)
    if dump then
      local tail, n = repair.ends(events, dump, require("tcplab.kernel").now())
      for _, ev in ipairs(tail) do events[#events + 1] = ev end
      filled = filled + n
      self.recorded = tell_truth(events, dump)
    else   -- no dump of the recorded namespace: the kernel's events as they are
      self.recorded = by_time(events)
    end
    self.inferred = filled
  elseif self.tracefs then
    local streamed = ""
    if self.stream then   -- what the live stream consumed, then what it had not read yet
      local rest = tracefs.end_stream(self.stream)
      streamed = table.concat(self.streamed, "\n") .. "\n" .. rest
    end
    local text, lost = tracefs.read(self.tracefs)
    text = streamed .. text
    self.lost = lost
    self:_remove()
    self.raw = ours(self, tracefs.parse(text))
    local dump = self:_dump(warnings)
    self.recorded = dump and tell_truth(self.raw, dump) or by_time(self.raw)
  elseif self.sampler then
    local limited
    self.raw, limited = sampler.parse(self:_remove() or "")
    self.recorded = self.raw
    if limited then
      warnings[#warnings + 1] = ("the sampler stopped after its limit of %g s: later transitions are missing")
        :format(self.limit)
    end
  else
    self.raw, self.recorded = {}, {}
  end
  if self.skipped and self.skipped > 0 then   -- of any namespace or port: maybe none of ours
    self.note = ("the kernel skipped the recorder for %d transitions of some socket on this host (it was already " ..
      "running on that CPU); %d transitions were filled in from each socket's chain and the dump (ev.inferred)")
      :format(self.skipped, self.inferred)
  end
  if self.undelivered and self.undelivered > 0 then
    warnings[#warnings + 1] = ("%d events written by the program never came out of the ring buffer: the sequence is incomplete")
      :format(self.undelivered)
  end
  local full = self.lost - (self.skipped or 0) - (self.undelivered or 0)
  if self.skipped and full > 0 then
    warnings[#warnings + 1] = ("%d events lost (ring buffer full): the sequence is incomplete"):format(full)
  elseif not self.skipped and self.lost > 0 then
    warnings[#warnings + 1] = ("%d events lost (ring buffer overrun): the sequence is incomplete"):format(self.lost)
  end
  if #warnings > 0 then self.warning = table.concat(warnings, "; ") end
  return self.recorded
end

--- The recorded events one at a time (stops the recorder first).
function Recorder:each()
  local events, i = self.recorded or self:stop(), 0
  return function()
    i = i + 1
    return events[i]
  end
end

--- A stopped recorder over events recorded earlier (to replay expect()).
function trace.from_events(events, opts)
  opts = opts or {}
  local ports = check_opts(opts)
  return setmetatable({ ports = ports, recorded = events, raw = events,
                        method = opts.method or "replay", lost = opts.lost or 0, foreign = 0 }, Recorder)
end

Recorder.__close = function(self) if not self.recorded then self:stop() end self:_remove() end
Recorder.__gc = function(self) self:_remove() end

--- Which side an event belongs to: "server" when its source port is one of the
-- recorded ports, "client" when its destination port is.
function Recorder:side(ev)
  return wire.side(ev.sport, self.ports)
end

--- The observed transitions "FROM>TO", optionally only those of one side.
function Recorder:sequence(side)
  local seq = {}
  for _, ev in ipairs(self.recorded or self:stop()) do
    if side == nil or self:side(ev) == side then seq[#seq + 1] = ev.from .. ">" .. ev.to end
  end
  return seq
end

return trace
