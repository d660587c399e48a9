--- A server that never closes: every client's close leaves a CLOSE_WAIT
-- socket behind, and counts() shows them pile up. How a script finds the
-- leak: CLOSE_WAIT on the server port grows, each record's inode is one of
-- the server's open fds, and they go away only when the server closes them.
local tcplab = require "tcplab.kernel"
local kit = require "tcplab.scenarios.kit"

local function close_wait_on(port)
  local counts = assert(tcplab.counts{ states = "CLOSE_WAIT", sport = port })
  return counts.CLOSE_WAIT or 0
end

return {
  title = "close_wait leak",
  claim = "CLOSE_WAIT means the application has not called close()",
  run = function(opts)
    local rounds = opts and opts.rounds or 5
    local s = kit.begin("close_wait leak", opts)
    local tl, srv = s.tl, s.srv
    local leaked, growth = {}, {}
    for i = 1, rounds do
      local cli = assert(tcplab.socket(s.family))
      assert(cli:connect(s.host, s.port, 2))
      leaked[i] = assert(srv:accept(2))       -- the server keeps it and never closes
      cli:close()
      tcplab.sleep(0.005)
      growth[i] = close_wait_on(s.port)
      tl:step("client", ("client %d connects and closes"):format(i), ("CLOSE_WAIT on :%d = %d"):format(s.port, growth[i]))
    end
    tl:check(growth[rounds] == rounds, ("CLOSE_WAIT grows with every client: %s"):format(table.concat(growth, " ")))
    local mine = {}
    for _, sock in ipairs(leaked) do mine[sock:inode()] = true end
    local owned = 0
    local recs = assert(tcplab.snapshot{ states = "CLOSE_WAIT", sport = s.port })
    for _, r in ipairs(recs) do if mine[r.inode] then owned = owned + 1 end end
    tl:check(owned == #recs and owned == rounds,
             ("every CLOSE_WAIT record's inode is an fd the server still holds (%d of %d)"):format(owned, #recs))
    tl:step("server", "the fix: close() each", true)
    for _, sock in ipairs(leaked) do sock:close() end
    tcplab.sleep(0.01)
    tl:check(close_wait_on(s.port) == 0, "after close() no CLOSE_WAIT is left")
    srv:close()
    return kit.finish(s, { server = { "ESTABLISHED>CLOSE_WAIT" } }, { growth = growth })
  end,
}
