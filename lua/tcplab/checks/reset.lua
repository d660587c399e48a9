--- reset: does the server's close send RST instead of FIN? close() with
-- unread bytes in the receive buffer (or SO_LINGER 0) sends RST: the peer's
-- read fails with ECONNRESET and the server's socket goes straight to CLOSE
-- (no LAST_ACK, no FIN_WAIT). Told by the recorder (the server side's
-- transitions) and by the client's read.
local tcplab = require "tcplab"
local checks = require "tcplab.checks"

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
      return { ok = false, evidence = "could not connect: " .. tostring(c.err) }
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
    local evidence
    if rst then
      evidence = ("the server's close sent RST (%s%s): unread data or SO_LINGER 0")
        :format(c.errno == tcplab.errno.ECONNRESET and "the client read ECONNRESET; " or "", shown)
    elseif left > 0 then
      evidence = ("the server did not close within %g s (no FIN, no RST): %s"):format(opts.grace, shown)
    else
      evidence = ("FIN, no RST: server %s"):format(shown)
    end
    evidence = evidence .. (" [%s]"):format(rec.method)
    return { ok = not rst, evidence = evidence, transitions = seq, method = rec.method, rst = rst,
             closed = left == 0 }
  end,
}
