--- Resets: close with linger 0 sends RST (no TIME_WAIT anywhere, the peer's
-- read fails with ECONNRESET once, then reads EOF); close with unread data
-- sends RST too; connect to a closed port is refused.
local tcplab = require "tcplab.kernel"
local observe = require "tcplab.observe"
local kit = require "tcplab.scenarios.kit"
local wire = require "tcplab.wire"

local ECONNRESET, ECONNREFUSED = tcplab.errno.ECONNRESET, tcplab.errno.ECONNREFUSED

return {
  title = "reset",
  claim = "an abortive close (RST) skips FIN_WAIT/TIME_WAIT; a closed port refuses",
  run = function(opts)
    local s = kit.begin("reset", opts)
    local tl, srv = s.tl, s.srv

    -- 1. linger 0
    local cli <close> = kit.connect(s)
    local conn <close> = kit.accept(s)
    local client_end = observe.tuple(cli)
    tl:step("client", "setopt('linger', 0)", assert(cli:setopt("linger", 0)))
    tl:step("client", "close()", cli:close())
    local _, err, errno = tl:step("server", "read(10)", conn:read(10, 2))
    tl:check(errno == ECONNRESET, ("the peer's read fails with ECONNRESET (%s)"):format(tostring(err)))
    local again = tl:step("server", "read(10)", conn:read(10, 2))
    tl:check(again == "", "then reads EOF")
    tl:check(observe.state(client_end) == "CLOSED", "no TIME_WAIT on the closing side")
    tl:step("server", "close()", conn:close())
    tl:check(observe.state(client_end) == "CLOSED" and
             #assert(tcplab.snapshot{ sport = s.port }) == 1,
             "nothing but the listener is left on the port")

    -- 2. close with unread data
    local cli2 <close> = assert(tcplab.socket(s.family))
    assert(cli2:connect(s.host, s.port, 2))
    tl:watch("client", cli2)
    local conn2 <close> = kit.accept(s)
    tl:step("client", 'write("unread")', assert(cli2:write("unread")))
    assert(cli2:read(1, 0) == nil)
    tcplab.sleep(0.01)
    tl:step("server", "close() with 6 unread bytes", conn2:close())
    local _, err2, errno2 = tl:step("client", "read(10)", cli2:read(10, 2))
    tl:check(errno2 == ECONNRESET, ("unread data makes close send RST: %s"):format(tostring(err2)))
    -- on the wire: the server's close() sends an RST (and no FIN) after the 6 bytes it never read
    local cport2 = select(2, cli2:getsockname())
    local conns, why = kit.wire(s, 0.05)
    if not conns then
      tl:unobserved("the RST of a close with unread data, on the wire", why)
    else
      local c2
      for _, c in ipairs(conns) do if c.cport == cport2 then c2 = c end end
      local data = c2 and wire.find(c2, "client", "PA")
      local rst = c2 and wire.with(c2, "R", "server")[1]
      local fin = c2 and wire.with(c2, "F", "server")[1]
      tl:check(data and data.len == 6 and rst and not fin and rst.t > data.t,
               ("on the wire: the client's 6 bytes (seq %s), then the server's RST (seq %s, flags %s) and no FIN")
                 :format(data and data.seq or "?", rst and rst.seq or "?", rst and rst.flags or "-"))
      tl:check(rst and data and rst.ack == wire.add(data.seq, data.len),
               ("the RST acknowledges the unread bytes it discards: ack %s == %s + 6")
                 :format(rst and rst.ack or "?", data and data.seq or "?"))
    end

    -- 3. a closed port
    local probe = assert(tcplab.socket(s.family))
    assert(probe:bind(s.host, 0))
    local closed_port = select(2, probe:getsockname())
    probe:close()
    local cli3 <close> = assert(tcplab.socket(s.family))
    local ok, err3, errno3 = tl:step("client", ("connect(%s, %d) closed port"):format(s.host, closed_port),
                                     cli3:connect(s.host, closed_port, 2))
    tl:check(not ok and errno3 == ECONNREFUSED, ("refused: %s"):format(tostring(err3)))
    cli2:close()
    srv:close()
    return kit.finish(s, {
      client = { "ESTABLISHED>CLOSE" },
      server = { "ESTABLISHED>CLOSE" },
    })
  end,
}
