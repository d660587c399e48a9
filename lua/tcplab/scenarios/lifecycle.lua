--- The seed's walk: socket, bind, listen, accept / connect, write / read,
-- close; the server's read sees the data, then EOF; the server closes.
local kit = require "tcplab.scenarios.kit"

return {
  title = "lifecycle",
  claim = "socket -> bind -> listen -> accept/connect -> write/read -> close; read sees EOF",
  run = function(opts)
    local s = kit.begin("lifecycle", opts)
    local tl, srv = s.tl, s.srv
    local cli <close> = kit.connect(s)
    local conn <close> = kit.accept(s)
    tl:check(srv:state() == "LISTEN", "the listening socket stays LISTEN after accept")
    tl:check(srv:fileno() ~= conn:fileno(), "accept returns a second socket (another fd)")

    tl:step("client", 'write("hello")', assert(cli:write("hello")))
    local data = tl:step("server", "read(100)", conn:read(100, 2))
    tl:check(data == "hello", "the server reads what the client wrote")

    tl:step("client", "close()", cli:close())
    tl:await("client", "FIN_WAIT2", 2)
    tl:await("server", "CLOSE_WAIT", 2)
    local eof = tl:step("server", "read(100)", conn:read(100, 2))
    tl:check(eof == "", 'after the client\'s close the server\'s read returns EOF ("")')
    tl:step("server", "close()", conn:close())
    tl:await("client", "TIME_WAIT", 2)
    tl:await("server", "CLOSED", 2)
    srv:close()
    return kit.finish(s, {
      client = { "CLOSE>SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT" },
      server = { "LISTEN>SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE" },
    }, { port = s.port })
  end,
}
