--- listen(fd, N): how many handshakes complete with nobody calling accept,
-- what happens to the next client, and the clamp by net.core.somaxconn.
-- The kernel's numbers, not the textbook's: the accept queue holds N + 1
-- (sk_acceptq_is_full() tests "> N"); the next SYN is dropped and counted
-- as ListenOverflows and ListenDrops, and that client stays in SYN_SENT.
local tcplab = require "tcplab.kernel"
local kit = require "tcplab.scenarios.kit"
local observe = require "tcplab.observe"
local wire = require "tcplab.wire"

-- The gap before the i-th SYN retransmit as the kernel's timers say: the
-- initial RTO (1 s) for the first tcp_syn_linear_timeouts, then doubling.
local function syn_gap(i)
  local f = io.open("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")
  local linear = f and f:read("n") or 0
  if f then f:close() end
  return i <= linear and 1 or 2 ^ (i - linear), linear
end

-- The last client's SYNs on the wire: dropped (no SYN-ACK answers them) and
-- retransmitted with the same sequence number at the kernel's intervals.
local function check_dropped_syns(tl, cap, port, last, wait)
  local segs = {}
  local deadline = tcplab.now() + wait
  repeat
    for _, seg in ipairs(assert(cap:read(0.2))) do segs[#segs + 1] = seg end
  until tcplab.now() >= deadline
  local lport = select(2, last:getsockname())
  local conn
  for _, c in ipairs(wire.connections(wire.label(segs, port), nil, port)) do
    if c.cport == lport then conn = c end
  end
  local syns = conn and wire.with(conn, "S", "client") or {}
  local answered = conn and #wire.with(conn, "S", "server") or 0
  tl:check(#syns >= 3 and answered == 0,
           ("on the wire: the next client's SYN and its retransmissions, %d SYNs, none answered by a SYN-ACK (%d)")
             :format(#syns, answered))
  for i = 2, #syns do
    local gap, linear = syn_gap(i - 1)
    local seen = syns[i].t - syns[i - 1].t
    tl:check(syns[i].seq == syns[1].seq and math.abs(seen - gap) < 0.3,
             ("SYN retransmit %d: same seq %d, %.3f s after the previous (the kernel's timer: %g s; tcp_syn_linear_timeouts %d)")
               :format(i - 1, syns[i].seq, seen, gap, linear))
  end
  return syns
end

local counters = require "tcplab.counters"
local fault = require "tcplab.fault"

local function sysctl(path, value)
  local f = assert(io.open("/proc/sys/" .. path, value and "w" or "r"))
  local r = value and f:write(tostring(value)) or f:read("n")
  f:close()
  return r
end

local function try_backlog(tl, family, host, n, watch_syns)
  local srv <close> = assert(tcplab.socket(family))
  assert(srv:bind(host, 0))
  assert(srv:listen(n))
  local port = select(2, srv:getsockname())
  local cap <close> = watch_syns and assert(tcplab.capture.open(port)) or nil
  local before = assert(counters())
  local clients, completed = {}, 0
  for i = 1, n + 2 do
    local c = assert(tcplab.socket(family))
    clients[i] = c
    local ok = c:connect(host, port, 0.3)
    if ok then completed = completed + 1 end
  end
  local lst = assert(tcplab.snapshot{ states = "LISTEN", sport = port })[1]
  local last = clients[#clients]
  local last_state = observe.state(observe.tuple(last, host, port))
  local moved = counters.delta(before, assert(counters()))
  local overflows, drops = moved:get("ListenOverflows"), moved:get("ListenDrops")
  tl:step("server", ("listen(%d), %d clients, no accept"):format(n, n + 2),
          ("rqueue %d wqueue %d"):format(lst.rqueue, lst.wqueue))
  tl:check(lst.wqueue == n, ("backlog %d: the LISTEN socket's wqueue shows %d"):format(n, lst.wqueue))
  tl:check(lst.rqueue == n + 1, ("backlog %d: %d handshakes complete without accept (N + 1)"):format(n, lst.rqueue))
  tl:check(completed == n + 1, ("backlog %d: %d connect() calls returned"):format(n, completed))
  tl:check(last_state == "SYN_SENT", ("backlog %d: the next client waits in %s"):format(n, last_state))
  -- each dropped SYN (the next client's, and its retransmits if one came) counts once in both
  tl:check(overflows >= 1 and drops == overflows and moved:get("TCPReqQFullDrop") == 0,
           ("backlog %d: counters: ListenOverflows +%d, ListenDrops +%d (the accept queue was full: " ..
            "not TCPReqQFullDrop, +%d)"):format(n, overflows, drops, moved:get("TCPReqQFullDrop")))
  local syns = cap and check_dropped_syns(tl, cap, port, last, 2.7)
  for _, c in ipairs(clients) do c:close() end
  local syn_times = {}
  for i, seg in ipairs(syns or {}) do syn_times[i] = seg.t - syns[1].t end
  return { counters = moved:summary({ "ListenOverflows", "ListenDrops" }), backlog = n, syn_times = cap and syn_times or nil, rqueue = lst.rqueue, wqueue = lst.wqueue, completed = completed,
           next_client = last_state, listen_overflows = overflows, listen_drops = drops }
end

-- A handshake's final ACK reaching a full accept queue: with
-- tcp_abort_on_overflow 0 the kernel ignores it (the client believes it is
-- connected; the request socket stays), with 1 it answers RST. To get there:
-- listen(1) (the accept queue holds 2), pure ACKs to the port dropped so
-- every handshake stops at a request socket, and each client's first data
-- segment completes its handshake: A and C complete and fill the queue,
-- then B's data arrives.
local function abort_on_overflow(tl, s, abort)
  local path = "/proc/sys/net/ipv4/tcp_abort_on_overflow"
  if not tcplab.netns.current_ours() then
    error("backlog: tcp_abort_on_overflow is only set inside a namespace tcplab made", 0)
  end
  local old = sysctl("net/ipv4/tcp_abort_on_overflow")
  sysctl("net/ipv4/tcp_abort_on_overflow", abort)
  tl:step("server", ("sysctl net.ipv4.tcp_abort_on_overflow=%d (this namespace only)"):format(abort),
          (assert(require("tcplab.sys").readfile(path)):match("%d+")))
  local srv <close> = assert(tcplab.socket(s.family))
  assert(srv:bind(s.host, 0))
  assert(srv:listen(1))
  local port = select(2, srv:getsockname())
  local cap <close> = s.cap and assert(tcplab.capture.open(port)) or nil
  local drop <close> = assert(fault.drop{ segment = "ack", dport = port })
  local function client()
    local c = assert(tcplab.socket(s.family))
    local ok, err = c:connect(s.host, port, 2)
    assert(ok, err)
    return c, select(2, c:getsockname())
  end
  local function complete(c, lport)   -- data carries the ACK; wait until the server has it
    assert(c:write("x"))
    local t = { src = s.host, sport = port, dst = "*", dport = lport, family = s.family }
    return observe.await(t, "ESTABLISHED", 2)
  end
  local a, aport = client()
  local b, bport = client()
  local ok_a = complete(a, aport)
  local c, cport = client()
  local ok_c = complete(c, cport)
  local lst = assert(tcplab.snapshot{ states = "LISTEN", sport = port })[1]
  local before = assert(counters())
  assert(b:write("x"))
  -- B's segment is processed on lo at once; poll (bounded) for it, and read before
  -- B's retransmit (200 ms at the least) counts once more
  local moved, deadline = nil, tcplab.now() + 1
  repeat
    moved = counters.delta(before, assert(counters()))
    if moved:get("ListenOverflows") > 0 then break end
    tcplab.sleep(0.005)
  until tcplab.now() > deadline
  local server_b = observe.state({ src = s.host, sport = port, dst = "*", dport = bport, family = s.family })
  local got, err, errno = b:read(16, 0.5)
  tl:step("client", ("B (:%d) write(\"x\") with the accept queue full (%d of backlog 1); B read()"):format(bport, lst.rqueue),
          got, err, errno)
  local rsts = nil
  if cap then
    local segs = assert(cap:read(0.05))
    rsts = 0
    for _, seg in ipairs(wire.label(segs, port)) do
      if seg.from == "server" and seg.dport == bport and seg.flags:find("R", 1, true) then rsts = rsts + 1 end
    end
  end
  local row = { abort_on_overflow = abort, accept_queue = lst.rqueue, server_b = server_b,
                listen_overflows = moved:get("ListenOverflows"), listen_drops = moved:get("ListenDrops"),
                rsts = rsts, read_err = err, counters = moved:summary({ "ListenOverflows", "ListenDrops", "EmbryonicRsts" }) }
  tl:check(ok_a and ok_c and lst.rqueue == 2 and row.listen_overflows == 1 and row.listen_drops == 1,
    ("abort_on_overflow %d: B's ACK found the accept queue full (%d): counters ListenOverflows +%d, ListenDrops +%d")
      :format(abort, lst.rqueue, row.listen_overflows, row.listen_drops))
  if abort == 1 then
    tl:check(errno == tcplab.errno.ECONNRESET and server_b == "CLOSED" and moved:get("EmbryonicRsts") == 1,
      ("abort_on_overflow 1: the server answered RST (B's read: %s; the server keeps %s for B; EmbryonicRsts +%d)")
        :format(tostring(err), server_b, moved:get("EmbryonicRsts")))
  else
    tl:check(err == "timeout" and server_b == "SYN_RECV" and moved:get("EmbryonicRsts") == 0,
      ("abort_on_overflow 0: the ACK is ignored: B thinks it is connected (read: %s), the server keeps B's " ..
       "request socket (%s) and will retransmit its SYN-ACK"):format(tostring(err), server_b))
  end
  if rsts then
    tl:check(rsts == abort, ("on the wire: %d RST from the server to B"):format(rsts))
  end
  for _, x in ipairs({ a, b, c }) do x:close() end
  sysctl("net/ipv4/tcp_abort_on_overflow", old)
  return row
end

return {
  title = "backlog",
  needs_root = true,   -- writes net.core.somaxconn of its own namespace
  claim = "listen(fd, backlog): backlog bounds the accept queue",
  run = function(opts)
    local s = kit.begin("backlog", opts)
    local tl = s.tl
    local rows = {}
    for i, n in ipairs(opts and opts.backlogs or { 1, 2, 4 }) do
      -- the first backlog also watches the next client's SYNs on the wire
      rows[#rows + 1] = try_backlog(tl, s.family, s.host, n, i == 1 and s.cap ~= nil)
    end
    -- the clamp: listen(100) with somaxconn 3 gives a backlog of 3
    local old = sysctl("net/core/somaxconn")
    sysctl("net/core/somaxconn", 3)
    local big <close> = assert(tcplab.socket(s.family))
    assert(big:bind(s.host, 0))
    assert(big:listen(100))
    local lst = assert(tcplab.snapshot{ states = "LISTEN", sport = select(2, big:getsockname()) })[1]
    sysctl("net/core/somaxconn", old)
    tl:step("server", "somaxconn=3; listen(100)", ("wqueue %d"):format(lst.wqueue))
    tl:check(lst.wqueue == 3, ("net.core.somaxconn clamps listen(100) to %d"):format(lst.wqueue))
    local aborts = {}
    for _, abort in ipairs({ 0, 1 }) do aborts[#aborts + 1] = abort_on_overflow(tl, s, abort) end
    s.srv:close()
    local moved = {}
    for _, r in ipairs(rows) do moved[#moved + 1] = { what = ("backlog %d"):format(r.backlog), summary = r.counters } end
    for _, r in ipairs(aborts) do
      moved[#moved + 1] = { what = ("tcp_abort_on_overflow %d"):format(r.abort_on_overflow), summary = r.counters }
    end
    return kit.finish(s, nil, { backlogs = rows, somaxconn_clamped = lst.wqueue, abort_on_overflow = aborts,
                                counters_moved = moved })
  end,
}
