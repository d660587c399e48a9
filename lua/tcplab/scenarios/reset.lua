--- Resets: close with linger 0 sends RST (no TIME_WAIT anywhere, the peer's
-- read fails with ECONNRESET once, then reads EOF); close with unread data
-- sends RST too; connect to a closed port is refused.
local tcplab = require "tcplab"
local observe = require "tcplab.observe"
local kit = require "tcplab.scenarios.kit"

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
