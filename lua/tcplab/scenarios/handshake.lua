--- connect() returns at the second handshake step, accept() only after the
-- third: with the client's final ACK dropped, the client is ESTABLISHED and
-- connect has returned while the server holds a SYN_RECV request socket and
-- accept has nothing; lift the drop and accept returns.
local core = require "tcplab.core"
local fault = require "tcplab.fault"
local observe = require "tcplab.observe"
local kit = require "tcplab.scenarios.kit"

return {
  title = "handshake",
  needs_root = true,
  claim = "connect() returns after the 2nd step, accept() after the 3rd",
  run = function(opts)
    local s = kit.begin("handshake", opts)
    local tl, srv = s.tl, s.srv
    local drop <close> = assert(fault.drop{ segment = "ack", dport = s.port })
    tl:step("client", "fault: drop the client's pure ACKs", tostring(drop))
    local cli <close>, ok = kit.connect(s)
    local connected_at = core.now()
    tl:check(ok, "connect() returned")
    tl:check(cli:state() == "ESTABLISHED", "the client is ESTABLISHED (TCP_INFO)")
    local server_end = { src = s.host, sport = s.port, dst = s.host, dport = select(2, cli:getsockname()) }
    local seen = observe.state(server_end)
    tl:check(seen == "SYN_RECV", ("the server side is SYN_RECV in the dump (saw %s)"):format(seen))
    local conn, err, errno = srv:accept(0)
    tl:step("server", "accept() non-blocking", conn, err, errno)
    tl:check(conn == nil and errno == 11, "accept has nothing yet: EAGAIN")
    local backlog = assert(core.snapshot(1 << 10, "any", s.port, nil, false))[1]
    tl:check(backlog.rqueue == 0, "the accept queue is empty (rqueue 0)")
    tl:step("client", "fault: lift the drop", drop:lift())
    local accepted
    accepted, err, errno = srv:accept(5)   -- the SYN-ACK retransmit draws a new ACK
    tl:step("server", "accept(5)", accepted and tostring(accepted) or accepted, err, errno)
    tl:check(accepted ~= nil, "after the lift accept() returns")
    if accepted then tl:watch("server", accepted) end
    tl:step("server", "(state after accept)", true)
    local result
    cli:close()
    if accepted then accepted:close() end
    result = kit.finish(s, {
      client = { "CLOSE>SYN_SENT>ESTABLISHED" },
      server = { "LISTEN>SYN_RECV>ESTABLISHED" },
    })
    -- the server's ESTABLISHED event comes after connect() had returned
    for _, ev in ipairs(result.events) do
      if ev.sport == s.port and ev.to == "ESTABLISHED" then
        tl:check(ev.time > connected_at, ("server ESTABLISHED %.3f s after connect() returned")
          :format(ev.time - connected_at))
        break
      end
    end
    result.ok = tl:ok()
    return result
  end,
}
