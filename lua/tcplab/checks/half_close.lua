--- half-close: the client sends its request and shuts down its writing side
-- (shutdown(SHUT_WR): a FIN, the server reads EOF); a request/response
-- server still answers on the half that is open. Needs a request (--send).
local checks = require "tcplab.checks"

return {
  title = "half-close",
  claim = "after the client's shutdown(SHUT_WR) the server still answers",
  run = function(lab, opts)
    if opts.send == "" then
      return { ok = true, informational = true, evidence = "not run: needs a request (--send BYTES)" }
    end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.shutdown = true
    local clients = checks.exchange(lab, 1, o)
    checks.close_all(clients)
    local c = clients[1]
    if not c.connected then return { ok = false, evidence = "could not connect: " .. tostring(c.err) } end
    local ok = #c.reply > 0
    local evidence = ok and ("answered %d bytes after the client's shutdown(write)"):format(#c.reply)
      or ("no answer within %g s after the client's shutdown(write)"):format(opts.deadline)
    if c.errno then evidence = evidence .. "; then " .. tostring(c.err)
    elseif c.eof then evidence = evidence .. "; then the server closed (EOF)"
    else evidence = evidence .. "; the server kept its end open" end
    return { ok = ok, evidence = evidence, reply = c.reply, eof = c.eof, err = c.err }
  end,
}
