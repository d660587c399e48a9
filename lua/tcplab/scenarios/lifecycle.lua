--- The seed's walk: socket, bind, listen, accept / connect, write / read,
-- close; the server's read sees the data, then EOF; the server closes.
local core = require "tcplab.core"
local timeline = require "tcplab.timeline"

return function(opts)
  opts = opts or {}
  local family = opts.family or "inet"
  local host = family == "inet6" and "::1" or "127.0.0.1"
  local tl = timeline.new("lifecycle (" .. family .. ")")

  local srv <close> = tl:step("server", "socket()", assert(core.socket(family)))
  tl:step("server", ("bind(%s, 0)"):format(host), assert(srv:bind(host, 0)))
  tl:watch("server", srv)
  tl:step("server", "listen(8)", assert(srv:listen(8)))
  local _, port = srv:getsockname()

  local cli <close> = tl:step("client", "socket()", assert(core.socket(family)))
  assert(cli:connect(host, port, 2))
  tl:watch("client", cli)
  tl:step("client", ("connect(%s, %d)"):format(host, port), true)
  local conn <close> = assert(srv:accept(2))
  tl:watch("server", conn)
  tl:step("server", "accept()", tostring(conn))
  tl:check(srv:state() == "LISTEN", "the listening socket stays LISTEN after accept")
  tl:check(srv:fileno() ~= conn:fileno(), "accept returns a second socket (another fd)")

  tl:step("client", 'write("hello")', assert(cli:write("hello")))
  local data = tl:step("server", "read(100)", conn:read(100, 2))
  tl:check(data == "hello", "the server reads what the client wrote")

  tl:step("client", "close()", cli:close())
  tl:await("client", "FIN_WAIT2", 2)
  tl:await("server", "CLOSE_WAIT", 2)
  local eof = tl:step("server", "read(100)", conn:read(100, 2))
  tl:check(eof == "", "after the client's close the server's read returns EOF (\"\")")
  tl:step("server", "close()", conn:close())
  tl:await("client", "TIME_WAIT", 2)
  tl:await("server", "CLOSED", 2)
  srv:close()
  return tl:result({ port = port })
end
