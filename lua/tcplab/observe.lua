--- The state of one end of a connection as the kernel's dump tells it,
-- found by its four-tuple, so it stays visible after close (TIME_WAIT,
-- LAST_ACK, an orphaned FIN_WAIT2), where TCP_INFO says only CLOSE.
local core = require "tcplab.core"
local states = require "tcplab.states"

local observe = {}

--- The four-tuple of an open socket: { src, sport, dst, dport, family }.
-- A socket still connecting has no peer name yet: pass the address it is
-- connecting to as peer_host, peer_port.
function observe.tuple(sock, peer_host, peer_port)
  local src, sport = sock:getsockname()
  local dst, dport = sock:getpeername()
  if not dst then dst, dport = peer_host or "*", peer_port or 0 end   -- a listener, or connecting
  return { family = sock:family(), src = src, sport = sport, dst = dst, dport = dport }
end

local function matches(rec, t)
  return rec.sport == t.sport and rec.dport == t.dport
     and (t.dst == "*" or rec.dst == t.dst) and (t.src == nil or rec.src == t.src)
end

--- Dump state of a tuple ("CLOSED" when the kernel no longer has it).
-- Returns the state and the record.
function observe.state(t, netns)
  local recs, err = core.snapshot(states.ALL_MASK, "any", t.sport, nil, false, netns)
  if not recs then error("observe: " .. err, 2) end
  for _, rec in ipairs(recs) do
    if matches(rec, t) then return rec.state, rec end
  end
  return "CLOSED"
end

--- Poll the dump until the tuple (or socket) is in `want`; bounded by timeout
-- seconds (default 2). Returns true, or false and the last state seen.
function observe.await(target, want, timeout, netns)
  local name = want == "CLOSED" and "CLOSED" or assert(states.canonical(want))
  local t = type(target) == "table" and target or observe.tuple(target)
  local deadline = core.now() + (timeout or 2)
  local seen
  repeat
    seen = observe.state(t, netns)
    if seen == name then return true, seen end
    core.sleep(0.002)
  until core.now() > deadline
  return false, seen
end

return observe
