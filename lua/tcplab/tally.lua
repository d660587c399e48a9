--- Counts from one snapshot, in Lua: the summary (like `ss -s`) and the
-- tcpstat tallies the Prometheus format renders (per state, per local port,
-- listener queues). Plain tables in, plain tables out; uses the public API.
local tcplab = require "tcplab.kernel"
local states = require "tcplab.states"
local args = require "tcplab.args"

local tally = {}

local function zeros()
  local t = {}
  for _, name in ipairs(states.list) do t[name] = 0 end
  return t
end
tally.zeros = zeros

-- Split a filter into the snapshot's filter and the extra keys of `extra`.
local function split(fname, f, extra)
  if f == nil then return {}, {} end
  if type(f) ~= "table" then args.error(fname, 1, "filter table expected, got " .. type(f), 4) end
  local snap, more = {}, {}
  for k, v in pairs(f) do
    if extra[k] then more[k] = v else snap[k] = v end
  end
  return snap, more
end

local function ports_arg(fname, ports)
  if ports == nil then return {} end
  if type(ports) ~= "table" then args.error(fname, 1, "ports: list of ports expected, got " .. type(ports), 5) end
  for i, p in ipairs(ports) do
    local bad = args.bad_port(p)   -- a port to count is a local port: 0 is none
    if bad then args.error(fname, 1, ("ports[%d]: %s"):format(i, bad), 5) end
  end
  return ports
end

-- Orphans: sockets their application closed while the kernel still finishes
-- them: no process holds them (inode 0) and they are in FIN_WAIT1, FIN_WAIT2,
-- CLOSING or LAST_ACK. Other sockets with inode 0 are no orphans: TIME_WAIT
-- placeholders, request sockets (SYN_RECV) and connections waiting in an
-- accept queue (ESTABLISHED or CLOSE_WAIT, not accepted yet).
local ORPHAN = { FIN_WAIT1 = true, FIN_WAIT2 = true, CLOSING = true, LAST_ACK = true }

local function summarize(records)
  local s = { total = #records, states = zeros(), families = { inet = 0, inet6 = 0 },
              family_states = { inet = zeros(), inet6 = zeros() }, orphans = 0,
              time_wait = 0, listeners = 0, full_listeners = {} }
  for _, r in ipairs(records) do
    s.states[r.state] = s.states[r.state] + 1
    s.families[r.family] = s.families[r.family] + 1
    s.family_states[r.family][r.state] = s.family_states[r.family][r.state] + 1
    if r.inode == 0 and ORPHAN[r.state] then s.orphans = s.orphans + 1 end
    if r.state == "LISTEN" then
      s.listeners = s.listeners + 1
      -- the kernel drops a SYN when the queue is > backlog (sk_acceptq_is_full)
      if r.rqueue > r.wqueue then
        s.full_listeners[#s.full_listeners + 1] = { family = r.family, src = r.src, port = r.sport,
                                                    queue = r.rqueue, backlog = r.wqueue, inode = r.inode }
      end
    end
  end
  s.time_wait = s.states.TIME_WAIT
  table.sort(s.full_listeners, function(a, b) return a.port < b.port end)
  return s
end

--- Totals of one snapshot: total, states (all eleven), families, family_states,
-- orphans, time_wait, listeners, full_listeners {family, src, port, queue, backlog, inode}.
function tally.summary(f)
  local snap = split("summary", f, {})
  local records, err, errno = tcplab.snapshot(snap)
  if not records then return nil, err, errno end
  return summarize(records)
end

-- One namespace's tallies from its records.
local function tcpstat_of(records, ports)
  local t = { states = zeros(), ports = {}, listeners = {} }
  local wanted, by_port = {}, {}
  for _, p in ipairs(ports) do wanted[p] = true end
  for _, r in ipairs(records) do
    if r.state == "LISTEN" then
      wanted[r.sport] = true
      local l = by_port[r.sport]
      if not l then
        l = { port = r.sport, queue = 0, backlog = 0 }
        by_port[r.sport] = l
        t.listeners[#t.listeners + 1] = l
      end
      l.queue, l.backlog = l.queue + r.rqueue, l.backlog + r.wqueue
    end
  end
  local per = {}
  for p in pairs(wanted) do
    per[p] = { port = p, states = zeros() }
    t.ports[#t.ports + 1] = per[p]
  end
  for _, r in ipairs(records) do
    t.states[r.state] = t.states[r.state] + 1
    local pp = per[r.sport]
    if pp then pp.states[r.state] = pp.states[r.state] + 1 end
  end
  table.sort(t.ports, function(a, b) return a.port < b.port end)
  table.sort(t.listeners, function(a, b) return a.port < b.port end)
  return t
end

--- The tallies node_exporter's tcpstat collector would give, and more: a list
-- with one entry per namespace counted ({netns = "all"}: every namespace, each
-- entry with its netns name; otherwise one entry without): { netns, states,
-- ports = { {port, states} } (every listener's local port and f.ports),
-- listeners = { {port, queue, backlog} } (summed over the listeners of a port) }.
function tally.tcpstat(f)
  local snap, more = split("tcpstat", f, { ports = true })
  local ports = ports_arg("tcpstat", more.ports)
  local out = {}
  if snap.netns == "all" then
    for _, r in ipairs(tcplab.across_namespaces(function(path)
      snap.netns = path
      return tcplab.snapshot(snap)   -- nil: the namespace went away since the listing
    end)) do
      local t = tcpstat_of(r.value, ports)
      t.netns = r.ns.name
      out[#out + 1] = t
    end
    return out
  end
  local records, err, errno = tcplab.snapshot(snap)
  if not records then return nil, err, errno end
  out[1] = tcpstat_of(records, ports)
  return out
end

return tally
