--- Both ends close at once: their FINs cross, both go FIN_WAIT1 -> CLOSING,
-- then TIME_WAIT on both sides.
--
-- On loopback a FIN arrives before the other end can close, so the FINs are
-- made to cross: a slow token bucket (tbf) on our namespace's lo, with filler
-- data queued ahead, keeps both FINs in flight. Pure ACKs to and from the
-- port are dropped so neither FIN is acknowledged, then the FIN retransmits
-- too (a retransmitted FIN would acknowledge the peer's FIN and end CLOSING).
local core = require "tcplab.core"
local fault = require "tcplab.fault"
local netns = require "tcplab.netns"
local kit = require "tcplab.scenarios.kit"

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  if not ok then error("simultaneous close: '" .. cmd .. "' failed", 2) end
end

-- A slow lo while the guard lives; restored on close, also after an error.
local function slow_lo()
  assert(netns.is_ours(), "simultaneous close changes lo: only in a namespace of our own")
  sh("ip link set lo mtu 1500")
  sh("tc qdisc add dev lo root tbf rate 1mbit burst 3000 latency 5s")
  return setmetatable({}, { __close = function()
    os.execute("tc qdisc del dev lo root >/dev/null 2>&1; ip link set lo mtu 65536")
  end })
end

return {
  title = "simultaneous close",
  needs_root = true,
  claim = "both ends close at once: CLOSING on both, then TIME_WAIT on both",
  run = function(opts)
    local s = kit.begin("simultaneous close", opts)
    local tl, srv = s.tl, s.srv
    local lo <close> = slow_lo()
    tl:step("server", "tc: tbf 1 Mbit on lo, mtu 1500", true)
    local cli <close> = kit.connect(s)
    local conn <close> = kit.accept(s)

    local fsrv <close> = assert(core.socket(s.family))
    assert(fsrv:bind(s.host, 0))
    assert(fsrv:listen(1))
    local fcli <close> = assert(core.socket(s.family))
    assert(fcli:connect(s.host, select(2, fsrv:getsockname()), 2))
    local fconn <close> = assert(fsrv:accept(2))

    local rules = {}
    for _, spec in ipairs({ { segment = "ack", sport = s.port }, { segment = "ack", dport = s.port } }) do
      rules[#rules + 1] = assert(fault.drop(spec))
    end
    tl:step("client", "fault: drop pure ACKs both ways", true)
    local queued = fcli:write(("x"):rep(48000), 0)
    tl:step("client", "filler queued on lo", queued)
    tl:step("client", "close()", cli:close())
    tl:step("server", "close()", conn:close())
    -- both FINs have passed the output hook and wait in the qdisc: drop the retransmits
    rules[#rules + 1] = assert(fault.drop{ segment = "fin", sport = s.port })
    rules[#rules + 1] = assert(fault.drop{ segment = "fin", dport = s.port })
    tl:step("server", "fault: drop FIN retransmits both ways", true)
    tl:await("client", "CLOSING", 4)
    tl:await("server", "CLOSING", 4)
    kit.held(s, "client", "CLOSING", 0.3)
    kit.held(s, "server", "CLOSING", 0.05)
    for _, r in ipairs(rules) do r:lift() end
    tl:step("client", "fault: lift all", true)
    tl:await("client", "TIME_WAIT", 5)
    tl:await("server", "TIME_WAIT", 5)
    fcli:close() fconn:close() fsrv:close() srv:close()
    return kit.finish(s, {
      client = { "ESTABLISHED>FIN_WAIT1>CLOSING>TIME_WAIT" },
      server = { "ESTABLISHED>FIN_WAIT1>CLOSING>TIME_WAIT" },
    })
  end,
}
