--- Both ends close at once: their FINs cross, both go FIN_WAIT1 -> CLOSING,
-- then TIME_WAIT on both sides.
--
-- On loopback a FIN is delivered inside the close() that sends it, before the
-- other end can close, and a FIN sent after the peer's FIN arrived carries an
-- ACK of it (the peer then goes FIN_WAIT1 -> FIN_WAIT2 -> TIME_WAIT, never
-- CLOSING). So the two FINs are held in a gate until both exist, whatever the
-- scheduling: a token bucket (tbf) on our namespace's lo whose head packet (a
-- filler of another connection) waits for tokens for ~25 minutes. Both
-- close() calls put their FIN behind it (an nft counter on the port proves
-- each FIN left the output hook); then the bucket is made fast and both FINs
-- go out, each carrying an ACK that does not cover the other's FIN: both
-- ends enter CLOSING. Pure ACKs of the port are dropped from the start and
-- the FIN retransmits once both FINs are in the gate, so CLOSING lasts until
-- the rules are lifted.
local tcplab = require "tcplab.kernel"
local fault = require "tcplab.fault"
local netns = require("tcplab.kernel").netns
local sys = require "tcplab.sys"
local kit = require "tcplab.scenarios.kit"
local wire = require "tcplab.wire"

local function sh(cmd)
  local out, ok = sys.run("tc", cmd)
  if not ok then error("simultaneous close: '" .. cmd .. "' failed: " .. tostring(out), 2) end
  return out
end

-- The gate: tbf at 8 bit/s with a 1600-byte bucket; a 1500-byte segment
-- queued behind an empty bucket waits ~1500 s. Opened by a fast rate and a
-- kick (tbf's change does not dequeue by itself). Lo is restored on close,
-- also after an error.
local GATE_CLOSED = "tbf rate 8bit burst 1600 limit 200000"
local GATE_OPEN = "tbf rate 10gbit burst 200000 limit 200000"
local function gate()
  assert(netns.is_ours(), "simultaneous close changes lo: only in a namespace of our own")
  sh("ip link set lo mtu 1500")
  sh("tc qdisc add dev lo root " .. GATE_CLOSED)
  return setmetatable({}, { __close = function()
    sys.run("tc", "tc qdisc del dev lo root; ip link set lo mtu 65536")
  end })
end

-- Packets waiting in lo's qdisc.
local function backlog()
  return tonumber(sh("tc -s qdisc show dev lo"):match("backlog %d+b (%d+)p")) or 0
end

-- Wait (bounded) until every rule in `rules` has counted a packet.
local function all_counted(rules, seconds)
  local deadline = tcplab.now() + seconds
  repeat
    local missing = false
    for _, r in ipairs(rules) do if r:packets() < 1 then missing = true end end
    if not missing then return true end
    tcplab.sleep(0.01)
  until tcplab.now() > deadline
  return false
end

--- Close both ends of a connected pair (cli to port, conn accepted) at once,
-- so that their FINs cross. Returns the drop rules that hold both ends in
-- CLOSING (lift them to let CLOSING end in TIME_WAIT). note(side, text, value)
-- records each step (a timeline's step, or nothing).
local function cross(family, host, port, cli, conn, note)
  note = note or function() end
  local cli_end, srv_end = kit.tuples_of(cli), kit.tuples_of(conn)
  -- the filler's connection, made before the gate closes
  local fsrv <close> = assert(tcplab.socket(family))
  assert(fsrv:bind(host, 0))
  assert(fsrv:listen(1))
  local fcli <close> = assert(tcplab.socket(family))
  assert(fcli:connect(host, select(2, fsrv:getsockname()), 2))
  local fconn <close> = assert(fsrv:accept(2))
  assert(fcli:setopt("linger", 0))   -- the filler goes at once when closed (RST), queued or not
  assert(fconn:setopt("linger", 0))
  local rules = {}
  for _, spec in ipairs({ { segment = "ack", sport = port }, { segment = "ack", dport = port } }) do
    rules[#rules + 1] = assert(fault.drop(spec))
  end
  note("client", "fault: drop pure ACKs both ways", true)
  local fin_out <close> = assert(fault.count{ segment = "fin", sport = port })
  local fin_in <close> = assert(fault.count{ segment = "fin", dport = port })
  local fins = { fin_in, fin_out }   -- the client's FIN goes to port, the server's from it
  local lo <close> = gate()
  note("server", "tc: lo gated (" .. GATE_CLOSED .. ")", true)
  note("client", "filler queued on lo", fcli:write(("x"):rep(6000), 0))
  local queued = backlog()
  if queued < 1 then error("simultaneous close: the gate on lo holds nothing (backlog 0)", 0) end
  note("client", "close()", cli:close())
  note("server", "close()", conn:close())
  -- both FINs have passed the output hook and wait in the gate
  if not all_counted(fins, 5) then
    error(("simultaneous close: a FIN did not leave (client %d, server %d)"):format(
      fins[1]:packets(), fins[2]:packets()), 0)
  end
  note("server", "both FINs wait in the gate (packets queued)", backlog())
  for _, f in ipairs(fins) do f:lift() end
  -- the FINs' retransmits would acknowledge the peer's FIN: dropped until lifted
  rules[#rules + 1] = assert(fault.drop{ segment = "fin", sport = port })
  rules[#rules + 1] = assert(fault.drop{ segment = "fin", dport = port })
  note("server", "fault: drop FIN retransmits both ways", true)
  sh("tc qdisc change dev lo root " .. GATE_OPEN)
  -- the kick: an enqueue runs the qdisc. A fresh socket's SYN (the filler's own
  -- socket may not send: TCP small queues hold it while its data waits)
  local kick <close> = assert(tcplab.socket(family))
  assert(kick:setopt("linger", 0))
  note("server", "tc: gate opened", kick:connect(host, select(2, fsrv:getsockname()), 0) or true)
  local observe = require "tcplab.observe"
  observe.await(cli_end, "CLOSING", 10)
  observe.await(srv_end, "CLOSING", 10)
  return rules
end

return {
  title = "simultaneous close",
  needs_root = true,
  claim = "both ends close at once: CLOSING on both, then TIME_WAIT on both",
  cross = cross,
  run = function(opts)
    local s = kit.begin("simultaneous close", opts)
    local tl, srv = s.tl, s.srv
    local cli <close> = kit.connect(s)
    local conn <close> = kit.accept(s)
    local rules = cross(s.family, s.host, s.port, cli, conn, function(...) tl:step(...) end)
    tl:await("client", "CLOSING", 4)
    tl:await("server", "CLOSING", 4)
    kit.held(s, "client", "CLOSING", 0.3)
    kit.held(s, "server", "CLOSING", 0.05)
    for _, r in ipairs(rules) do r:lift() end
    tl:step("client", "fault: lift all", true)
    -- TIME_WAIT comes with the next FIN retransmit, whose timer backed off
    -- while the FINs were dropped: a bound well past any backoff of a slow run
    tl:await("client", "TIME_WAIT", 30)
    tl:await("server", "TIME_WAIT", 30)
    -- the crossing on the wire: each end's first FIN left before the other's
    -- arrived, so its ACK field stops at the other's FIN
    kit.on_wire(s, "the FINs crossed on the wire", function(c)
      local first = {}
      for _, seg in ipairs(c.segments) do
        if seg.flags:find("F", 1, true) and not first[seg.from] then first[seg.from] = seg end
      end
      for _, side in ipairs({ "client", "server" }) do
        local other = side == "client" and "server" or "client"
        local f, o = first[side], first[other]
        tl:check(f and o and f.ack == wire.add(o.seq, o.len),
                 ("the %s's first FIN does not acknowledge the %s's FIN: ack %s, the %s's FIN at seq %s"):format(
                   side, other, f and f.ack or "(no FIN seen)", other, o and wire.add(o.seq, o.len) or "(no FIN seen)"))
      end
    end)
    srv:close()
    return kit.finish(s, {
      client = { "ESTABLISHED>FIN_WAIT1>CLOSING>TIME_WAIT" },
      server = { "ESTABLISHED>FIN_WAIT1>CLOSING>TIME_WAIT" },
    })
  end,
}
