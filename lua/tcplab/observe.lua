--- The state of one end of a connection as the kernel's dump tells it,
-- found by its four-tuple, so it stays visible after close (TIME_WAIT,
-- LAST_ACK, an orphaned FIN_WAIT2), where TCP_INFO says only CLOSE.
local tcplab = require "tcplab.kernel"
local states = require "tcplab.states"
local args = require "tcplab.args"

local observe = {}

-- The dump shows addresses without a scope id: "fe80::42%d0" is "fe80::42" there.
local function unscoped(host)
  return (host:gsub("%%.*$", ""))
end

--- The four-tuple of an open socket: { src, sport, dst, dport, family }.
-- A socket still connecting has no peer name yet: pass the address it is
-- connecting to as peer_host, peer_port.
function observe.tuple(sock, peer_host, peer_port)
  local src, sport = sock:getsockname()
  local dst, dport = sock:getpeername()
  if not dst then dst, dport = peer_host or "*", peer_port or 0 end   -- a listener, or connecting
  return { family = sock:family(), src = unscoped(src), sport = sport,
           dst = dst == "*" and dst or unscoped(dst), dport = dport }
end

local function matches(rec, t)
  return rec.sport == t.sport and rec.dport == t.dport
     and (t.dst == "*" or rec.dst == t.dst) and (t.src == nil or rec.src == t.src)
end

-- A four-tuple table as tuple() makes it: sport and dport ports, dst an
-- address or "*", src nil or an address. Raises naming fname and argument n.
local function check_tuple(fname, n, t, level)
  if type(t) ~= "table" then
    args.error(fname, n, "four-tuple { sport, dport, dst [, src] } or socket expected, got " .. args.show(t), level)
  end
  for _, key in ipairs({ "sport", "dport" }) do
    local p = t[key]
    local bad = args.bad_port(p, true)
    if bad then args.error(fname, n, ("%s: %s"):format(key, bad), level) end
  end
  if type(t.dst) ~= "string" then
    args.error(fname, n, "dst: address or \"*\" expected, got " .. args.show(t.dst), level)
  end
  if t.src ~= nil and type(t.src) ~= "string" then
    args.error(fname, n, "src: address or nil expected, got " .. args.show(t.src), level)
  end
end

--- Dump state of a tuple ("CLOSED" when the kernel no longer has it).
-- Returns the state and the record.
function observe.state(t, netns)
  check_tuple("state", 1, t, 4)
  if netns ~= nil and type(netns) ~= "string" then
    args.error("state", 2, "netns: path string or nil expected, got " .. args.show(netns))
  end
  local recs, err = tcplab.snapshot{ sport = t.sport, netns = netns }
  if not recs then error("observe: " .. err, 2) end
  for _, rec in ipairs(recs) do
    if matches(rec, t) then return rec.state, rec end
  end
  return "CLOSED"
end

--- The name await() waits for: a canonical state, or "CLOSED" (gone from the dump).
local function wanted(want)
  if type(want) == "string" and want:upper() == "CLOSED" then return "CLOSED" end
  local name, err = states.canonical(want)
  if not name then args.error("await_state", 2, err, 4) end
  return name
end

--- Poll the dump until the tuple (or socket) is in `want`; bounded by timeout
-- seconds (default 2). Returns true, or false and the last state seen.
function observe.await(target, want, timeout, netns)
  local name = wanted(want)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0
                         or timeout == math.huge) then
    args.error("await_state", 3, "timeout: seconds >= 0 expected, got " .. args.show(timeout))
  end
  local t = target
  if type(target) == "userdata" and getmetatable(target) and getmetatable(target).__name == "tcplab.socket" then
    t = observe.tuple(target)
  else
    check_tuple("await_state", 1, target, 4)
  end
  local deadline = tcplab.now() + (timeout or 2)
  local seen
  repeat
    seen = observe.state(t, netns)
    if seen == name then return true, seen end
    tcplab.sleep(0.002)
  until tcplab.now() > deadline
  return false, seen
end

return observe
