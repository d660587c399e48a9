--- listen(fd, N): how many handshakes complete with nobody calling accept,
-- what happens to the next client, and the clamp by net.core.somaxconn.
-- The kernel's numbers, not the textbook's: the accept queue holds N + 1
-- (sk_acceptq_is_full() tests "> N"); the next SYN is dropped and counted
-- as ListenOverflows and ListenDrops, and that client stays in SYN_SENT.
local tcplab = require "tcplab"
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

local function netstat_counter(name)
  local f = assert(io.open("/proc/net/netstat"))
  local text = f:read("a")
  f:close()
  for header, values in text:gmatch("TcpExt: ([^\n]+)\nTcpExt: ([^\n]+)") do
    local names, nums = {}, {}
    for w in header:gmatch("%S+") do names[#names + 1] = w end
    for w in values:gmatch("%S+") do nums[#nums + 1] = tonumber(w) end
    for i, n in ipairs(names) do if n == name then return nums[i] end end
  end
  return nil
end

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
  local overflows0, drops0 = netstat_counter("ListenOverflows"), netstat_counter("ListenDrops")
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
  local overflows = netstat_counter("ListenOverflows") - overflows0
  local drops = netstat_counter("ListenDrops") - drops0
  tl:step("server", ("listen(%d), %d clients, no accept"):format(n, n + 2),
          ("rqueue %d wqueue %d"):format(lst.rqueue, lst.wqueue))
  tl:check(lst.wqueue == n, ("backlog %d: the LISTEN socket's wqueue shows %d"):format(n, lst.wqueue))
  tl:check(lst.rqueue == n + 1, ("backlog %d: %d handshakes complete without accept (N + 1)"):format(n, lst.rqueue))
  tl:check(completed == n + 1, ("backlog %d: %d connect() calls returned"):format(n, completed))
  tl:check(last_state == "SYN_SENT", ("backlog %d: the next client waits in %s"):format(n, last_state))
  tl:check(overflows >= 1 and drops >= 1,
           ("backlog %d: ListenOverflows +%d, ListenDrops +%d"):format(n, overflows, drops))
  local syns = cap and check_dropped_syns(tl, cap, port, last, 2.7)
  for _, c in ipairs(clients) do c:close() end
  local syn_times = {}
  for i, seg in ipairs(syns or {}) do syn_times[i] = seg.t - syns[1].t end
  return { backlog = n, syn_times = cap and syn_times or nil, rqueue = lst.rqueue, wqueue = lst.wqueue, completed = completed,
           next_client = last_state, listen_overflows = overflows, listen_drops = drops }
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
    s.srv:close()
    return kit.finish(s, nil, { backlogs = rows, somaxconn_clamped = lst.wqueue })
  end,
}
