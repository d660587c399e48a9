--- With every SYN to the port dropped the connecting socket is held in
-- SYN_SENT, retransmitting; connect with a timeout reports the timeout.
local tcplab = require "tcplab.kernel"
local fault = require "tcplab.fault"
local observe = require "tcplab.observe"
local kit = require "tcplab.scenarios.kit"

return {
  title = "syn_sent",
  needs_root = true,
  claim = "the client sends SYN and enters SYN_SENT",
  run = function(opts)
    local wait = opts and opts.wait or 1.5
    local s = kit.begin("syn_sent", opts)
    local tl = s.tl
    local drop <close> = assert(fault.drop{ segment = "syn", dport = s.port })
    tl:step("server", "fault: drop SYNs to the port", tostring(drop))
    local t0 = tcplab.now()
    local cli <close>, ok, err, errno = kit.connect(s, wait)
    local took = tcplab.now() - t0
    tl:check(ok == nil and err == "timeout" and errno == tcplab.errno.ETIMEDOUT,
             ("connect(timeout %.1f) returned nil, %q, %s after %.2f s"):format(wait, tostring(err), tostring(errno), took))
    tl:check(took >= wait - 0.01 and took < wait + 0.5, "on time")
    tl:check(cli:state() == "SYN_SENT", "TCP_INFO says SYN_SENT")
    local state, rec = observe.state(observe.tuple(cli, s.host, s.port))
    tl:check(state == "SYN_SENT" and rec.timer == "on" and rec.retrans >= 1,
             ("the dump says %s, retransmit timer %s, %s SYN retransmits so far")
               :format(state, rec and rec.timer or "?", rec and rec.retrans or "?"))
    local dropped = drop:dropped()
    tl:check(dropped >= 2, ("%d SYNs dropped"):format(dropped))
    drop:lift()
    cli:close()
    s.srv:close()
    return kit.finish(s, { client = { "CLOSE>SYN_SENT" } }, { syns_dropped = dropped })
  end,
}
