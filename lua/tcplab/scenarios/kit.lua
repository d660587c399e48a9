--- What every scenario does the same way: a listener on the loopback of
-- its family, a transition recorder on its port, the final accounting.
local core = require "tcplab.core"
local timeline = require "tcplab.timeline"
local trace = require "tcplab.trace"

local kit = {}

function kit.host(family)
  return family == "inet6" and "::1" or "127.0.0.1"
end

--- A timeline and a listening server socket; the recorder starts on its port.
function kit.begin(title, opts)
  opts = opts or {}
  local family = opts.family or "inet"
  local host = kit.host(family)
  local tl = timeline.new(("%s (%s)"):format(title, family))
  local srv = tl:step("server", "socket()", assert(core.socket(family)))
  assert(srv:setopt("reuseaddr", true))
  tl:step("server", ("bind(%s, 0)"):format(host), assert(srv:bind(host, 0)))
  tl:watch("server", srv)
  tl:step("server", ("listen(%d)"):format(opts.backlog or 8), assert(srv:listen(opts.backlog or 8)))
  local port = select(2, srv:getsockname())
  local rec = assert(trace.start{ port = port, method = opts.trace_method })
  return { tl = tl, srv = srv, port = port, host = host, family = family, rec = rec }
end

--- A client socket connected to the scenario's listener (timeline steps included).
function kit.connect(s, timeout)
  local cli = s.tl:step("client", "socket()", assert(core.socket(s.family)))
  local ok, err, errno = cli:connect(s.host, s.port, timeout or 2)
  s.tl:watch("client", cli, s.host, s.port)
  s.tl:step("client", ("connect(%s, %d)"):format(s.host, s.port), ok, err, errno)
  return cli, ok, err, errno
end

--- accept() on the scenario's listener: the connected socket becomes the
-- server end the timeline follows.
function kit.accept(s)
  local conn = assert(s.srv:accept(2))
  s.tl:watch("server", conn)
  s.tl:step("server", "accept()", tostring(conn))
  return conn
end

--- Stop the recorder, check the expected transitions, build the result.
function kit.finish(s, expect, extra)
  local rec = s.rec
  rec:stop()
  if expect then
    local ok, msg = rec:expect(expect)
    s.tl:check(ok, ok and ("transitions as expected (%s)"):format(rec.method) or msg)
  end
  if rec.warning then s.tl:check(false, rec.warning) end
  local result = s.tl:result(extra)
  result.method = rec.method
  result.events = rec.events
  result.transitions = { client = rec:sequence("client"), server = rec:sequence("server") }
  result.lost = rec.lost
  return result
end

--- Hold: poll for `seconds`, checking that `side` stays in `state` the whole time.
function kit.held(s, side, state, seconds)
  local deadline, seen = core.now() + seconds, nil
  repeat
    seen = s.tl:state(side)
    if seen ~= state then break end
    core.sleep(0.01)
  until core.now() > deadline
  return s.tl:check(seen == state, ("%s is held in %s for %.1f s (saw %s)"):format(side, state, seconds, seen))
end

return kit
