--- What every scenario does the same way: a listener on the loopback of
-- its family, a transition recorder on its port, the final accounting.
local tcplab = require "tcplab.kernel"
local timeline = require "tcplab.timeline"
local trace = require "tcplab.trace"
local netns = require("tcplab.kernel").netns
local sys = require "tcplab.sys"
local wire = require "tcplab.wire"

local kit = {}

-- Recorders started by kit.begin and not yet finished: scenarios.run stops
-- them when a scenario fails or is interrupted.
local active = {}
local captures = {}   -- the same for packet captures

--- Stop every recorder a scenario left running (its tracefs instance or
-- helper process goes with it). Returns how many there were.
function kit.release()
  local n = 0
  for rec in pairs(active) do
    pcall(rec._remove, rec)
    active[rec] = nil
    n = n + 1
  end
  for cap in pairs(captures) do
    cap:close()
    captures[cap] = nil
  end
  return n
end

kit.CAPTURE_METHOD = "AF_PACKET on lo, kernel timestamps (SO_TIMESTAMPNS, realtime moved to the monotonic clock by an offset measured at open)"

-- Packets: as root, a capture of the scenario's port on lo (in the
-- scenario's own namespace when it has one). Without root: a note.
local function start_capture(s)
  if not sys.is_root() then
    s.capture_note = "packets not captured: capture needs root (CAP_NET_RAW)"
    return
  end
  local cap, err = tcplab.capture.open(s.port)
  if not cap then
    s.capture_note = "packets not captured: " .. tostring(err)
    return
  end
  captures[cap] = true
  s.cap = cap
end

--- The segments captured so far (waiting up to `wait` seconds for the
-- first new one), labelled client/server, and the connections they make.
-- Without a capture: nil and the note saying why.
function kit.wire(s, wait)
  if not s.cap then return nil, s.capture_note end
  local new = assert(s.cap:read(wait or 0.05))
  for _, seg in ipairs(wire.label(new, s.port)) do s.segments[#s.segments + 1] = seg end
  return wire.connections(s.segments, nil, s.port)
end

--- Claims about the wire: run check(conn) with the scenario's first
-- connection, or record `claim` as not observed when nothing was captured.
function kit.on_wire(s, claim, check, wait)
  local conn, why = kit.connection(s, wait)
  if not conn then return s.tl:unobserved(claim, why) end
  return check(conn)
end

--- The one connection of a scenario (its first), or nil and why.
function kit.connection(s, wait)
  local conns, why = kit.wire(s, wait)
  if not conns then return nil, why end
  if not conns[1] then return nil, "no segment captured" end
  return conns[1]
end

-- In a namespace of our own the scenario's loopback addresses are made from
-- this process's PID: 127.A.B.C, and fd74:636c::/32 on lo for IPv6. The
-- tracepoint is host-wide; events to or from these addresses are ours.
local function own_address(family)
  local pid = sys.pid()
  if family == "inet6" then
    local addr = ("fd74:636c::%x:%x"):format(pid >> 16, pid & 0xffff)
    local out, ok = sys.run("ip", "ip -6 addr add " .. addr .. "/128 dev lo nodad")
    if not ok and not out:match("File exists") then error("ip -6 addr add " .. addr .. ": " .. out, 0) end
    return addr
  end
  return ("127.%d.%d.%d"):format((pid >> 16) & 255, (pid >> 8) & 255, pid & 255)
end

--- The loopback address a scenario of `family` uses.
function kit.host(family)
  if netns.is_ours() then return own_address(family) end
  return family == "inet6" and "::1" or "127.0.0.1"
end

-- In a namespace of our own, an orphaned FIN_WAIT2 stays a full socket
-- (tcp_fin_timeout 120 s: the first 60 s on the socket's own timer) instead of
-- moving at once into a time-wait placeholder. The peer's FIN then reaches
-- the socket itself, and tcp_time_wait() -- the moment TIME_WAIT begins --
-- is seen by the recorder (doc/kernel-recorder.md, doc/kernel-notes.md); in a placeholder
-- TIME_WAIT would begin with no event at all.
kit.FIN_TIMEOUT = 120
local function keep_fin_wait2_whole()
  if not netns.is_ours() or not sys.is_root() then return end
  sys.writefile("/proc/sys/net/ipv4/tcp_fin_timeout", tostring(kit.FIN_TIMEOUT))
end

--- A timeline and a listening server socket; the recorder starts on its port.
function kit.begin(title, opts)
  opts = opts or {}
  local family = opts.family or "inet"
  local host = kit.host(family)
  local tl = timeline.new(("%s (%s)"):format(title, family))
  local srv = tl:step("server", "socket()", assert(tcplab.socket(family)))
  assert(srv:setopt("reuseaddr", true))
  tl:step("server", ("bind(%s, 0)"):format(host), assert(srv:bind(host, 0)))
  tl:watch("server", srv)
  tl:step("server", ("listen(%d)"):format(opts.backlog or 8), assert(srv:listen(opts.backlog or 8)))
  -- the address and port as the kernel writes them (dumps and the tracepoint's text are compared with them)
  local port
  host, port = srv:getsockname()
  -- the recorder trace.start picks (trace.METHODS: BPF first, filtered by this namespace
  -- in the kernel); the run's own addresses keep other namespaces out of the tracepoint
  keep_fin_wait2_whole()
  local rec = assert(trace.start{ port = port, method = opts.trace_method, addrs = { host }, witness = true })
  active[rec] = true
  local s = { tl = tl, srv = srv, port = port, host = host, family = family, rec = rec, segments = {} }
  start_capture(s)
  return s
end

--- A client socket connected to the scenario's listener (timeline steps included).
function kit.connect(s, timeout)
  local cli = s.tl:step("client", "socket()", assert(tcplab.socket(s.family)))
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
-- Without root the sampler records: a transition it did not see may simply
-- have been shorter than its interval, so a failed expectation is reported
-- as not observed, with the reason, and does not fail the scenario.
function kit.finish(s, expect, extra)
  local rec = s.rec
  if s.cap then
    kit.wire(s, 0.05)
    local drops, undecoded = s.cap:drops(), s.cap:undecoded()
    if drops > 0 or undecoded > 0 then
      s.tl:check(false, ("the capture saw every segment (%d dropped by the kernel, %d not decoded)"):format(drops, undecoded))
    end
    s.cap:close()
    captures[s.cap] = nil
  end
  rec:stop()
  active[rec] = nil
  if expect then
    local ok, msg = rec:expect(expect)
    if ok then
      s.tl:check(true, ("transitions as expected (%s)"):format(rec.method))
    elseif rec.method:match("^sampling") then
      s.tl:unobserved(msg, "the sampler can miss short states; run as root for the kernel tracepoint")
    else
      if rec.method == "bpf" then   -- what the recorder knows of its own gaps
        msg = ("%s [bpf: %d lost, %d skipped by the kernel, %d rescued, %d inferred, %s missed (seen by tracefs)]")
          :format(msg, rec.lost, rec.skipped, rec.rescued, rec.inferred, tostring(rec.missed))
      end
      s.tl:check(false, msg)
    end
  end
  if rec.warning then s.tl:check(false, rec.warning) end
  local result = s.tl:result(extra)
  result.method = rec.method
  result.events = rec.recorded
  result.transitions = { client = rec:sequence("client"), server = rec:sequence("server") }
  result.lost = rec.lost
  result.skipped, result.rescued, result.inferred, result.note = rec.skipped, rec.rescued, rec.inferred, rec.note
  result.missed = rec.missed
  result.scope = rec.scope
  result.port = s.port
  result.segments = s.cap and s.segments or nil
  result.capture_method = s.cap and kit.CAPTURE_METHOD or nil
  result.capture_note = s.capture_note
  return result
end

--- The four-tuple of an open socket, to follow it after close.
function kit.tuples_of(sock)
  return require("tcplab.observe").tuple(sock)
end

--- Hold: poll for `seconds`, checking that `side` stays in `state` the whole time.
function kit.held(s, side, state, seconds)
  local deadline, seen = tcplab.now() + seconds, nil
  repeat
    seen = s.tl:state(side)
    if seen ~= state then break end
    tcplab.sleep(0.01)
  until tcplab.now() > deadline
  return s.tl:check(seen == state, ("%s is held in %s for %.1f s (saw %s)"):format(side, state, seconds, seen))
end

return kit
