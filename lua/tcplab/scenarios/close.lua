--- The client closes first: FIN_WAIT1 -> FIN_WAIT2 against CLOSE_WAIT; the
-- server reads the queued data, then EOF; the server closes: LAST_ACK ->
-- CLOSED; the client waits in TIME_WAIT (2MSL timer visible). FIN_WAIT1 and
-- LAST_ACK are held by dropping the pure ACKs that would end them.
local fault = require "tcplab.fault"
local observe = require "tcplab.observe"
local kit = require "tcplab.scenarios.kit"
local wire = require "tcplab.wire"

return {
  title = "close",
  needs_root = true,
  claim = "FIN_WAIT_1 -> FIN_WAIT2 -> TIME_WAIT (2MSL) against CLOSE_WAIT -> LAST_ACK -> CLOSED",
  run = function(opts)
    local hold = opts and opts.hold or 0.4
    local s = kit.begin("close", opts)
    local tl, srv = s.tl, s.srv
    local cli <close> = kit.connect(s)
    local conn <close> = kit.accept(s)
    local client_end = observe.tuple(cli)
    local server_end = observe.tuple(conn)

    local ack_to_client = assert(fault.drop{ segment = "ack", sport = s.port })
    tl:step("server", "fault: drop the server's pure ACKs", tostring(ack_to_client))
    tl:step("client", 'write("bye")', assert(cli:write("bye")))
    tl:step("client", "close()", cli:close())
    tl:await("server", "CLOSE_WAIT", 2)
    kit.held(s, "client", "FIN_WAIT1", hold)
    tl:step("server", "fault: lift", ack_to_client:lift())
    tl:await("client", "FIN_WAIT2", 3)

    local data = tl:step("server", "read(100)", conn:read(100, 2))
    tl:check(data == "bye", "the server reads the queued data first")
    local eof = tl:step("server", "read(100)", conn:read(100, 2))
    tl:check(eof == "", "then EOF")

    local ack_to_server = assert(fault.drop{ segment = "ack", dport = s.port })
    tl:step("client", "fault: drop the client's pure ACKs", tostring(ack_to_server))
    tl:step("server", "close()", conn:close())
    tl:await("client", "TIME_WAIT", 2)
    kit.held(s, "server", "LAST_ACK", hold)
    tl:step("client", "fault: lift", ack_to_server:lift())
    tl:await("server", "CLOSED", 5)
    local _, tw = observe.state(client_end)
    tl:check(tw and tw.timer == "timewait" and tw.expires_ms > 50000,
             ("the client's TIME_WAIT timer runs: %s ms left of 60000"):format(tw and tw.expires_ms or "?"))
    -- the seed's close as FIN/ACK exchanges, read off the captured segments
    kit.on_wire(s, "the close on the wire", function(c)
      local fins = wire.fins(c)
      tl:check(#fins == 2, ("on the wire: two FINs, one from each end (saw %d)"):format(#fins))
      for _, f in ipairs(fins) do
        local fin, ack = f.fin, f.ack
        local other = fin.from == "client" and "server" or "client"
        tl:check(ack ~= nil,
                 ("the %s's FIN (seq %d, %d data bytes) takes one sequence number: the %s acknowledges %s")
                   :format(fin.from, fin.seq, fin.len, other,
                           ack and ("ack %d == %d + %d + 1"):format(ack.ack, fin.seq, fin.len) or "(no ACK seen)"))
      end
      if fins[1] then
        local first = fins[1].fin.from
        local ends = { client = client_end, server = server_end }
        local mine = observe.state(ends[first])
        local theirs = observe.state(ends[first == "client" and "server" or "client"])
        tl:check(mine == "TIME_WAIT" and theirs ~= "TIME_WAIT",
                 ("TIME_WAIT on the side that sent the first FIN (the %s): %s; the other end: %s")
                   :format(first, tostring(mine), tostring(theirs)))
      end
    end)
    srv:close()
    return kit.finish(s, {
      client = { "ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT" },
      server = { "ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE" },
    }, { time_wait_ms = tw and tw.expires_ms })
  end,
}
