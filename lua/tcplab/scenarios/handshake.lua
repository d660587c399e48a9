--- connect() returns at the second handshake step, accept() only after the
-- third. The client's first SYN is dropped, so the SYN-ACK comes only after
-- the SYN retransmit (1 s): connect() must have waited for it and returns
-- with the client ESTABLISHED. The client's final ACK is dropped too, so the
-- server holds a SYN_RECV request socket and accept has nothing; lift the
-- drop and accept returns (at the SYN-ACK retransmit, which draws a new ACK).
local tcplab = require "tcplab.kernel"
local fault = require "tcplab.fault"
local observe = require "tcplab.observe"
local kit = require "tcplab.scenarios.kit"
local wire = require "tcplab.wire"

local EAGAIN = tcplab.errno.EAGAIN

return {
  title = "handshake",
  needs_root = true,
  claim = "connect() returns after the 2nd step, accept() after the 3rd",
  run = function(opts)
    local s = kit.begin("handshake", opts)
    local tl, srv = s.tl, s.srv
    local first_syn <close> = assert(fault.drop{ segment = "syn", dport = s.port, once = true })
    local drop <close> = assert(fault.drop{ segment = "ack", dport = s.port })
    tl:step("client", "fault: drop the first SYN and every pure ACK", tostring(drop))
    local started, result_wire = tcplab.now(), nil
    local cli <close>, ok = kit.connect(s, 5)
    local connected_at = tcplab.now()
    local state_at_return = cli:state()
    tl:check(ok, "connect() returned")
    tl:check(first_syn:dropped() == 1, "the first SYN was dropped")
    tl:check(connected_at - started >= 0.9,
             ("connect() waited for the SYN-ACK that answered the retransmitted SYN (%.2f s)")
               :format(connected_at - started))
    tl:check(state_at_return == "ESTABLISHED",
             ("the client is ESTABLISHED when connect() returns (TCP_INFO: %s)"):format(state_at_return))
    local client_host, client_port = cli:getsockname()
    local server_end = { src = s.host, sport = s.port, dst = client_host, dport = client_port }
    local seen = observe.state(server_end)
    tl:check(seen == "SYN_RECV", ("the server side is SYN_RECV in the dump (saw %s)"):format(seen))
    local conn, err, errno = srv:accept(0)
    tl:step("server", "accept() non-blocking", conn, err, errno)
    tl:check(conn == nil and errno == EAGAIN, "accept has nothing yet: EAGAIN")
    local listener = assert(require("tcplab.kernel").snapshot{ states = "LISTEN", sport = s.port })[1]
    tl:check(listener.rqueue == 0, "the accept queue is empty (rqueue 0)")
    tl:step("client", "fault: lift the drop", drop:lift())
    local accepted
    accepted, err, errno = srv:accept(5)   -- the SYN-ACK retransmit draws a new ACK
    local accepted_at = tcplab.now()
    tl:step("server", "accept(5)", accepted and tostring(accepted) or accepted, err, errno)
    tl:check(accepted ~= nil, "after the lift accept() returns")
    if accepted then tl:watch("server", accepted) end
    -- the seed's handshake in sequence numbers, read off the captured segments
    kit.on_wire(s, "the handshake on the wire", function(conn)
      local hs = wire.handshake(conn)
      local syn, sa, ack = hs.syn, hs.synack, hs.ack
      tl:check(syn and sa and sa.t > syn.t, "on the wire: a SYN, then a SYN-ACK")
      if not (syn and sa) then return end
      tl:check(sa.ack == wire.add(syn.seq, 1),
               ("the SYN-ACK acknowledges client_isn + 1: ack %d == %d + 1, and carries server_isn %d")
                 :format(sa.ack, syn.seq, sa.seq))
      tl:check(ack and ack.ack == wire.add(sa.seq, 1),
               ("the client's ACK acknowledges server_isn + 1: ack %s == %d + 1")
                 :format(ack and ack.ack or "(none)", sa.seq))
      tl:check(connected_at >= sa.t and (not ack or connected_at <= ack.t + 0.001),
               ("connect() returned after the SYN-ACK was on the wire (+%.3f s) and before (or with) the final ACK")
                 :format(connected_at - sa.t))
      tl:check(ack and accepted and accepted_at >= ack.t,
               ("accept() returned only after the final ACK (+%.3f s)")
                 :format(ack and accepted_at - ack.t or 0))
      result_wire = { client_isn = syn.seq, server_isn = sa.seq }
    end)
    cli:close()
    if accepted then accepted:close() end
    local result = kit.finish(s, {
      client = { "CLOSE>SYN_SENT>ESTABLISHED" },
      server = { "LISTEN>SYN_RECV>ESTABLISHED" },
    })
    -- the kernel's own times: the client became ESTABLISHED before connect()
    -- returned; the server only after it, and before accept() returned
    if result.method == "tracepoint" or result.method == "bpf" then
      local client_est, server_est
      for _, ev in ipairs(result.events) do
        if ev.to == "ESTABLISHED" and ev.from == "SYN_SENT" then client_est = client_est or ev.time end
        if ev.to == "ESTABLISHED" and ev.from == "SYN_RECV" then server_est = server_est or ev.time end
      end
      tl:check(client_est and client_est <= connected_at,
               "the client's SYN_SENT>ESTABLISHED came before connect() returned")
      tl:check(server_est and server_est > connected_at and server_est <= accepted_at,
               ("the server's SYN_RECV>ESTABLISHED came after connect() returned (%s s later) and before accept() returned")
                 :format(server_est and ("%.3f"):format(server_est - connected_at) or "?"))
      result.client_established, result.server_established = client_est, server_est
      result.connect_returned, result.accept_returned = connected_at, accepted_at
    end
    if result_wire then result.client_isn, result.server_isn = result_wire.client_isn, result_wire.server_isn end
    result.ok = tl:ok()
    return result
  end,
}
