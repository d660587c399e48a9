--- Both ends close at once: their FINs cross, both go FIN_WAIT1 -> CLOSING,
-- then TIME_WAIT on both sides.
--
-- On loopback a FIN arrives before the other end can close, so the FINs are
-- made to cross: a slow token bucket (tbf) on our namespace's lo, with filler
-- data queued ahead, keeps both FINs in flight. Pure ACKs to and from the
-- port are dropped so neither FIN is acknowledged, then the FIN retransmits
-- too (a retransmitted FIN would acknowledge the peer's FIN and end CLOSING).
local tcplab = require "tcplab.kernel"
local fault = require "tcplab.fault"
local netns = require("tcplab.kernel").netns
local sys = require "tcplab.sys"
local kit = require "tcplab.scenarios.kit"

local function sh(cmd)
  local out, ok = sys.run("tc", cmd)
  if not ok then error("simultaneous close: '" .. cmd .. "' failed: " .. tostring(out), 2) end
end

-- A slow lo while the guard lives; restored on close, also after an error.
local function slow_lo()
  assert(netns.is_ours(), "simultaneous close changes lo: only in a namespace of our own")
  sh("ip link set lo mtu 1500")
  sh("tc qdisc add dev lo root tbf rate 1mbit burst 3000 latency 5s")
  return setmetatable({}, { __close = function()
    sys.run("tc", "tc qdisc del dev lo root; ip link set lo mtu 65536")
  end })
end

--- Close both ends of a connected pair (cli to port, conn accepted) at once,
-- so that their FINs cross. Returns the drop rules that hold both ends in
-- CLOSING (lift them to let CLOSING end in TIME_WAIT). note(side, text, value)
-- records each step (a timeline's step, or nothing).
local function cross(family, host, port, cli, conn, note)
  note = note or function() end
  local cli_end, srv_end = kit.tuples_of(cli), kit.tuples_of(conn)
  local lo <close> = slow_lo()
  note("server", "tc: tbf 1 Mbit on lo, mtu 1500", true)
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
  note("client", "filler queued on lo", fcli:write(("x"):rep(48000), 0))
  note("client", "close()", cli:close())
  note("server", "close()", conn:close())
  -- both FINs have passed the output hook and wait in the qdisc: drop the retransmits
  rules[#rules + 1] = assert(fault.drop{ segment = "fin", sport = port })
  rules[#rules + 1] = assert(fault.drop{ segment = "fin", dport = port })
  note("server", "fault: drop FIN retransmits both ways", true)
  local observe = require "tcplab.observe"
  -- the FINs are delivered once the filler ahead of them has drained
  observe.await(cli_end, "CLOSING", 5)
  observe.await(srv_end, "CLOSING", 5)
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
    tl:await("client", "TIME_WAIT", 5)
    tl:await("server", "TIME_WAIT", 5)
    srv:close()
    return kit.finish(s, {
      client = { "ESTABLISHED>FIN_WAIT1>CLOSING>TIME_WAIT" },
      server = { "ESTABLISHED>FIN_WAIT1>CLOSING>TIME_WAIT" },
    })
  end,
}
