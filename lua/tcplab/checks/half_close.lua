--- half-close: the client sends its request and shuts down its writing side
-- (shutdown(SHUT_WR): a FIN, the server reads EOF); a request/response
-- server still answers on the half that is open, then closes its own end
-- (the client reads EOF): PASS proves both. An answer with no close after it
-- is a FAIL (the server leaves the connection half-open, in CLOSE_WAIT); no
-- answer is a FAIL. Needs a request (--send): without one, "not run".
local checks = require "tcplab.checks.common"

return {
  title = "half-close",
  claim = "after the client's shutdown(SHUT_WR) the server still answers, then closes its end",
  run = function(lab, opts)
    if opts.send == "" then
      return { status = "not run", evidence = "not run: needs a request (--send BYTES)" }
    end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.shutdown = true
    local clients = checks.exchange(lab, 1, o)
    checks.close_all(clients)
    local c = clients[1]
    if not c.connected then
      return { status = "not run", evidence = ("not run: could not connect to %s port %d: %s"):format(
        lab.host, lab.port, tostring(c.err)) }
    end
    local answered = #c.reply > 0
    local evidence = answered and ("answered %d bytes after the client's shutdown(write)"):format(#c.reply)
      or ("no answer within %g s after the client's shutdown(write)"):format(opts.deadline)
    local status = "fail"
    if c.errno then evidence = evidence .. "; then " .. tostring(c.err)
    elseif c.eof then
      evidence = evidence .. "; then the server closed its end (EOF)"
      if answered then status = "pass" end
    else
      evidence = evidence .. ("; the server kept its end open %g s after the client's FIN (half-open: " ..
                              "its socket stays in CLOSE_WAIT)"):format(opts.deadline)
    end
    return { status = status, evidence = evidence, reply = c.reply, eof = c.eof, err = c.err }
  end,
}
