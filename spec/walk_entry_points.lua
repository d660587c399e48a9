-- Every C entry point of tcplab.core once, good and bad paths, for
-- `make test-valgrind` (no busted: valgrind sees only this process).
-- Exits 0 when every step ran; valgrind decides about leaks and bad accesses.
local tcplab = require "tcplab"
local core = tcplab.core
local root = io.popen("id -u"):read("a"):match("^0") ~= nil

local steps = 0
local function step(ok, ...)
  steps = steps + 1
  return ok, ...
end
local function raises(f, ...) step(assert(not pcall(f, ...), "expected an error")) end

if root then assert(tcplab.netns.unshare()) end

for _, family in ipairs({ "inet", "inet6" }) do
  local host = family == "inet6" and "::1" or "127.0.0.1"
  local srv = assert(core.socket(family))
  step(srv:setopt("reuseaddr", true))
  step(srv:getopt("linger"))
  step(srv:setopt("linger", 3))
  step(srv:setopt("linger", false))
  step(srv:bind(host, 0))
  step(srv:listen(4))
  local port = select(2, srv:getsockname())
  step(tostring(srv))
  local cli = assert(core.socket(family))
  step(cli:connect(host, port, 1))
  local conn = assert(srv:accept(1))
  step(cli:write(("x"):rep(100000), 1))
  local got = 0
  for _ = 1, 100000 do   -- bounded: an early EOF fails instead of spinning
    if got >= 100000 then break end
    local chunk = assert(conn:read(65536, 1))
    assert(#chunk > 0, "EOF before 100000 bytes")
    got = got + #chunk
  end
  step(conn:read(10, 0))
  step(cli:info(), cli:state(), cli:getpeername(), cli:fileno(), cli:inode(), cli:cookie())
  step(cli:settimeout(0.5), cli:gettimeout(), cli:family(), cli:isclosed())
  step(cli:shutdown("write"))
  step(conn:read(10, 1))
  step(tostring(conn))
  step(srv:accept(0))
  step(tcplab.snapshot(), tcplab.snapshot{ info = true }, tcplab.snapshot{ columns = true, info = true })
  step(tcplab.snapshot{ sport = port, dport = 1, family = family, states = { "ESTAB", "LISTEN" } })
  step(tcplab.snapshot{ owners = true }, tcplab.snapshot{ owners = true, columns = true, info = true })
  step(tcplab.snapshot{ sport = "1-65535", dport = { 0, 65535 }, src = host .. (family == "inet" and "/8" or "/128"),
                        dst = family == "inet" and "0.0.0.0/0" or "::/0" })
  step(tcplab.counts{ src = "10.0.0.0/8", dst = "::1", sport = "100-200" })
  step(tcplab.counts(), tcplab.counts{ states = "LISTEN" })
  step(tcplab.awk.netstat(), tcplab.awk.ss())
  -- the streaming walk (each.c): complete, broken, raised in the body, closed by hand
  for _, be in ipairs({ "netlink", "bpf" }) do
    local iter = core.each{ states = 0xfff, backend = be }
    if iter then
      for rec in core.each{ states = 0xfff, backend = be, info = be == "netlink" } do step(rec.state, rec.src) end
      for rec in core.each{ states = 0xfff, backend = be, port = port } do step(rec.dst) break end
      step(pcall(function() for _ in core.each{ states = 0xfff, backend = be } do error("body") end end))
      local it2, s2, c2, w2 = core.each{ states = 0xfff, backend = be }
      step(it2(s2, c2), tostring(w2))
      w2:close()
      raises(it2, s2, c2)
    end
  end
  local bad = assert(core.socket(family))
  step(bad:connect(host, 1, 1))                  -- refused
  step(bad:bind(host, port))                     -- in use, or invalid after the failed connect
  do local closing <close> = assert(core.socket(family)) end
  cli:close() conn:close() srv:close() bad:close()
  step(cli:close())
  raises(cli.state, cli)
end

raises(core.socket, "unix")
local s = assert(core.socket("inet"))
raises(s.setopt, s, "nosuch", 1)
raises(s.getopt, s, "nosuch")
raises(s.bind, s, "1.2.3.4.5", 0)
raises(s.bind, s, "127.0.0.1", 70000)
raises(s.read, s, 0)
raises(s.accept, s, -1)
raises(tcplab.snapshot, { states = "NOPE" })
raises(core.snapshot, { states = -1 })
raises(core.snapshot, { owners = 1 })
raises(core.counts, { owners = true })
raises(core.counts, { by = "x" })
raises(core.snapshot, { sport = "9-3" })
raises(core.snapshot, { src = "1.2.3.4/40" })
for _, by in ipairs({ "sport", "dport", "src", "dst" }) do step(core.counts{ by = by }) end
raises(core.counts, { family = "unix" })
raises(core.backend, "nosuch")
step(core.backend(), core.backend("netlink"), core.errno.ECONNREFUSED)
-- the BPF backend (or its reason, unprivileged or built without)
step(core.backend("bpf"), core.bpf_info(), core._dump_backend())
step(core.snapshot{ states = 0xfff, backend = "bpf" }, core.snapshot{ states = 0xfff, backend = "bpf", columns = true })
step(core.counts{ states = 0xfff, backend = "bpf" }, core.counts{ states = 0xfff, backend = "bpf", netns = "/proc/self/ns/net" })
step(core.snapshot{ states = 0xfff, backend = "bpf", info = true }, core.counts{ states = 0x400, backend = "bpf", sport = 1 })
step(core._bpf_unload(), core.counts{ states = 0xfff, backend = "bpf" }, core.bpf_info())
step(core.counts{ netns = "/nonexistent/netns" })
step(core.each{ netns = "/nonexistent/netns" })
raises(core.each, { columns = true })
raises(core.each, { owners = true })
-- the BPF transition recorder (or its reason): poll, lost, every close path
do
  raises(core.bpf_trace, 1)
  raises(core.bpf_trace, { ports = { 0 } })
  step(core.bpf_trace{ ports = {}, netns = "/nonexistent/netns" })
  local tr = core.bpf_trace{ ports = { 1, 2 } }
  if tr then
    step(tr:poll(0), tr:poll(0.01), tr:lost())
    tr:close()
    raises(tr.poll, tr, 0)
    tr:close()
    do local t2 <close> = core.bpf_trace{ ports = { 3 } } step(t2 and t2:poll(0)) end
    step(core.bpf_trace{}) -- left to __gc
    collectgarbage()
  end
end
step(s:read(1, 0), s:write("x", 0), s:shutdown("both"))
s:close()
step(core.now(), core.sleep(0.001), core.netns.id(), core.netns.id("/nonexistent"))
step(core._interrupt_every(0.01))
core.sleep(0.05)
step(core._interrupt_every(0))
step(core._fds(), core.caught_signal())
step(core.catch_signals())
do
  local f <close> = assert(io.open("/proc/self/stat"))
  step(core.die_with_parent(tonumber(f:read("a"):match("^%d+ %b() %a (%d+)"))))
end
raises(core.die_with_parent, 0)
step(core.netns.id("/dev/null"), core.netns.enter("/dev/null"), core.netns.open("/nonexistent"))
step(core.counts{ netns = "/dev/null" })
raises(core.netns.open, "/proc/self/ns/net\0")
do
  local h = assert(core.netns.open())
  step(h:id(), h:is_current(), tostring(h))
  step(h:close(), h:close(), tostring(h))
  raises(h.id, h)
  do local h2 <close> = assert(core.netns.open("/proc/self/ns/net")) end
  step(core.netns.open())   -- left to the collector
end
raises(core._inject_dump_faults, { nosuch = 1 })
for _, faults in ipairs({ { interrupt = 2 }, { enobufs = 2 }, { interrupt = 9 }, { enobufs = 9 } }) do
  core._inject_dump_faults(faults)
  step(core.snapshot{ states = 0xfff, info = true })
  step(core._dump_stats())
  core._inject_dump_faults(faults)
  step(core.snapshot{ states = 0xfff, columns = true })
  core._inject_dump_faults(faults)
  step(core.counts{ states = 0xfff })
end
core._inject_dump_faults{}
if root then
  local home = assert(core.netns.open())
  local fresh = assert(core.netns.unshare())
  step(home:is_current(), fresh:is_current(), tostring(fresh))
  core._inject_dump_faults{ enobufs = 2 }
  step(core.counts{ states = 0xfff, netns = "/proc/self/ns/net" })
  step(home:enter(), fresh:enter())
  home:close() fresh = nil
  step(core.netns.enter("/proc/self/ns/net"))
  step(core.netns.enter("/nonexistent"))
  local path = tcplab.netns.self_path()
  step(tcplab.snapshot{ netns = path }, tcplab.counts{ netns = path })
  local l = assert(tcplab.listen("127.0.0.1", 0))
  local rec = assert(tcplab.trace.start{ port = select(2, l:getsockname()) })
  local c = assert(tcplab.connect("127.0.0.1", select(2, l:getsockname()), 1))
  c:close() l:close()
  step(rec:stop())
end
-- the packet capture: open, read (raw and not), parse good and bad bytes, close twice, gc
for _, bytes in ipairs({ "", ("\0"):rep(80), ("E"):rep(60), ("`"):rep(100) }) do
  step(core.capture.parse(bytes), core.capture.parse(bytes, "frame"))
end
raises(core.capture.parse, "x", "nosuch")
raises(core.capture.open, 0)
if root then
  local l = assert(tcplab.listen("127.0.0.1", 0))
  local port = select(2, l:getsockname())
  local cap = assert(core.capture.open(port))
  local c = assert(tcplab.connect("127.0.0.1", port, 1))
  local segs = step(cap:read(1, true))
  for _, seg in ipairs(segs) do step(core.capture.parse(seg.raw, "frame")) end
  step(cap:read(0), tostring(cap), cap:port(), cap:undecoded(), cap:drops(), cap:isclosed())
  c:close() l:close()
  step(cap:close(), cap:close(), tostring(cap))
  raises(cap.read, cap)
  do local gone <close> = assert(core.capture.open(port)) end
  step(core.capture.open(port))   -- left to the collector
else
  step(core.capture.open(5000))   -- nil, "capture socket: Operation not permitted"
end
-- live counts: open (here and bad paths), read, info, close twice, gc
raises(core.live, {})
step(core.live("/nonexistent/netns"))
if root then
  local h = core.live()
  if h then
    step(h:counts(), h:info(), tostring(h))
    step(h:close(), h:close(), tostring(h))
    raises(h.counts, h)
    step(core.live())   -- left to the collector
  end
  step(core._bpf_fds())
end
collectgarbage()
print(("walked %d steps%s"):format(steps, root and "" or " (not root: namespace steps left out)"))
