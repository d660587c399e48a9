--- reset: does the server's close send RST instead of FIN? close() with
-- unread bytes in the receive buffer (or SO_LINGER 0) sends RST: the peer's
-- read fails with ECONNRESET and the server's socket goes straight to CLOSE
-- (no LAST_ACK, no FIN_WAIT). Told by the recorder (the server side's
-- transitions) and by the client's read. What it proves is what it saw the
-- server's close send: PASS needs the server's FIN (its socket through
-- LAST_ACK to CLOSE, or gone) and no RST; a server that never closes its end
-- within the grace sends neither, so nothing is proved: "not run" (and
-- close-wait is told: checks.cross_check).
local tcplab = require "tcplab.kernel"
local checks = require "tcplab.checks.common"

local RST_ENDS = { ["ESTABLISHED>CLOSE"] = true, ["CLOSE_WAIT>CLOSE"] = true, ["SYN_RECV>CLOSE"] = true }

return {
  title = "reset",
  claim = "the server ends connections with FIN, not RST",
  run = function(lab, opts)
    local rec = assert(lab:trace())
    local clients = checks.exchange(lab, 1, opts)
    local c = clients[1]
    if not c.connected then
      rec:stop()
      return { status = "not run", evidence = ("not run: could not connect to %s port %d: %s"):format(
        lab.host, lab.port, tostring(c.err)) }
    end
    local port = c.port
    checks.close_all(clients)
    -- give the server its grace to close its end
    local deadline = tcplab.now() + opts.grace
    local left
    repeat
      tcplab.sleep(0.02)
      left = 0
      for _, r in ipairs(assert(lab:snapshot{ sport = lab.port })) do
        if r.dport == port and r.state ~= "TIME_WAIT" then left = left + 1 end
      end
    until left == 0 or tcplab.now() > deadline
    rec:stop()
    local seq = {}
    for _, ev in ipairs(rec:stop()) do
      if ev.sport == lab.port and ev.dport == port then seq[#seq + 1] = ev.from .. ">" .. ev.to end
    end
    local rst = c.errno == tcplab.errno.ECONNRESET
    for _, tr in ipairs(seq) do if RST_ENDS[tr] then rst = true end end
    local shown = #seq > 0 and table.concat(seq, " ") or "(no event)"
    local evidence, status
    if rst then
      status = "fail"
      evidence = ("the server's close sent RST (%s%s): unread data or SO_LINGER 0")
        :format(c.errno == tcplab.errno.ECONNRESET and "the client read ECONNRESET; " or "", shown)
    elseif left > 0 then
      status = "not run"
      evidence = ("not run: the server did not close its end within %g s of the client's hang-up, so it sent " ..
                  "neither FIN nor RST and there was no close to judge: %s"):format(opts.grace, shown)
    else
      status = "pass"
      evidence = ("the server closed with FIN, no RST (its end: %s)"):format(shown)
    end
    evidence = evidence .. (" [%s]"):format(rec.method)
    return { status = status, evidence = evidence, transitions = seq, method = rec.method, rst = rst,
             closed = left == 0 }
  end,
}
