--- Connection lifetimes, like BCC's tcplife: one record per connection when
-- its full socket ends (the kernel's CLOSE, the TIME_WAIT handover
-- included), made from the BPF recorder's life option (trace.start{ life =
-- true }): the program keeps each socket's first time seen, its states and
-- its owner in socket storage, and the event that ends the socket carries
-- them with tcp_sock's byte counts (csrc/bpf/state_tp.bpf.c).
--
--   local rec <close> = assert(life.start{ ports = { 8080 } })
--   for r in life.each(rec) do print(r) end
--
-- A record: { family, src, sport, dst, dport, netns, cookie, pid, comm (nil
-- when no owner was seen), start, ended (CLOCK_MONOTONIC seconds), duration,
-- since_start (the connection was open before the trace: its duration is
-- counted from the trace's start, and its states from the one it was in),
-- sent, received (data bytes), bytes_exact, states = { ... } }.
-- Listeners are not connections and give no record. See doc/trace.md.
local args = require "tcplab.args"
local sys = require "tcplab.sys"
local wire = require "tcplab.wire"

local life = {}

local Lifetime = {}
Lifetime.__index = Lifetime

local function endpoint(host, port) return wire.endpoint(host, port) end

Lifetime.__tostring = function(r)
  return ("lifetime %s -> %s %s %s, %d bytes sent, %d received, %s%.6f s: %s"):format(
    endpoint(r.src, r.sport), endpoint(r.dst, r.dport),
    r.pid and ("pid " .. r.pid) or "no owner seen", r.comm and ("(" .. r.comm .. ")") or "",
    r.sent, r.received, r.since_start and "more than " or "", r.duration, table.concat(r.states, " "))
end

-- Which end opened the connection: the first transition the program saw
-- (CLOSE -> SYN_SENT: active; LISTEN -> SYN_RECV: passive), else the
-- state it was first seen in, else the traced ports (wire.side); nil when
-- nothing tells.
local function opened_actively(ev, l, ports)
  if l.active then return true end
  if l.passive then return false end
  local first = l.path[1]
  if first == "SYN_SENT" then return true end
  if first == "SYN_RECV" or first == "LISTEN" then return false end
  if ports and #ports > 0 then return wire.side(ev.sport, ports) == "client" end
  return nil
end

--- The data bytes of an ending socket's counters (ev.life): tcp_sock's
-- bytes_acked also counts the SYN once it is acked (an active open that got
-- past SYN_SENT) and our FIN once it is acked; bytes_received counts the
-- peer's FIN (doc/kernel-life.md). Returns sent, received, and whether
-- the SYN's part is known (false: the opener could not be told; sent may
-- be one more than the data).
function life.data_bytes(l, active)
  local syn = 0
  if active then
    for i = 2, #l.path do   -- the SYN was acked: the socket left SYN_SENT for a synchronized state
      local s = l.path[i]
      if s ~= "SYN_SENT" and s ~= "CLOSE" then syn = 1 break end
    end
  end
  local sent = l.bytes_acked - syn - (l.fin_acked and 1 or 0)
  local received = l.bytes_received - (l.fin_received and 1 or 0)
  return math.max(sent, 0), math.max(received, 0), active ~= nil
end

--- The lifetime an event ends (a table with __tostring), or nil: the event
-- ends no socket, or a listener's. t0: when the trace started (the
-- duration of a connection open before it is counted from there); ports:
-- the traced ports (to tell the opener of such a connection).
function life.of(ev, t0, ports)
  local l = ev.life
  if type(l) ~= "table" or l.listener then return nil end
  local active = opened_actively(ev, l, ports)
  local born = l.active or l.passive
  local states = {}
  for i = born and 2 or 1, #l.path do states[#states + 1] = l.path[i] end
  local sent, received, exact = life.data_bytes(l, active)
  local start = born and l.born or t0
  return setmetatable({
    family = ev.family, src = ev.src, sport = ev.sport, dst = ev.dst, dport = ev.dport,
    netns = ev.netns, cookie = ev.cookie, pid = l.pid, comm = l.comm,
    start = start, ended = ev.time, duration = math.max(ev.time - start, 0), since_start = not born,
    sent = sent, received = received, bytes_exact = exact, states = states, path_full = l.path_full or nil,
    opener = active == true and "local" or active == false and "remote" or nil,
  }, Lifetime)
end

--- Does record r pass the owner filter { pid = N, comm = NAME } (comm: its
-- first 15 bytes, as the kernel keeps it)? A record without an owner never
-- passes a filter that names one.
function life.matches(r, filter)
  if filter.pid and r.pid ~= filter.pid then return false end
  if filter.comm and r.comm ~= filter.comm:sub(1, 15) then return false end
  return true
end

--- Start a recorder for lifetimes: trace.start with life = true and the
-- BPF method (the only one that can read a socket's counters as it ends).
-- opts: ports (a list; none: every port), netns (a path or "all"), limit
-- (seconds, 86400), buffer_kb. Returns the recorder, or nil and why.
function life.start(opts)
  if type(opts) ~= "table" then args.error("life.start", 1, "table expected, got " .. type(opts), 3) end
  if not sys.is_root() then
    return nil, "lifetimes need the BPF recorder, which needs root (a program on the tracepoint and socket storage)"
  end
  local trace = require "tcplab.trace"
  local ports = opts.ports or {}
  local rec, err = trace.start{ ports = #ports > 0 and ports or nil, all_ports = #ports == 0 or nil,
                                netns = opts.netns, limit = opts.limit, buffer_kb = opts.buffer_kb,
                                method = "bpf", life = true, live = true }
  if not rec then return nil, "lifetimes need the BPF recorder (" .. tostring(err):gsub("^bpf: ", "") .. ")" end
  return rec
end

--- The lifetimes of rec (from life.start) as their sockets end: for r in
-- life.each(rec) do ... end. Ends when the recorder's limit has passed, on
-- Ctrl-C, or when rec is stopped.
function life.each(rec)
  local events = rec:events()
  local t0 = rec.started
  return function()
    for ev in events do
      local r = life.of(ev, t0, rec.ports)
      if r then return r end
    end
    return nil
  end
end

return life
