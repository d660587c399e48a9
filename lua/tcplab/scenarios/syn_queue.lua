--- The SYN queue (half-open connections, SYN_RECV) and what listen()'s
-- backlog does to it, with net.ipv4.tcp_syncookies at 0, 1 and 2 (set in the
-- scenario's own namespace only). The handshakes' final ACKs are dropped
-- (nftables, in that namespace), so every answered SYN leaves a request
-- socket behind; a burst of clients then fills the queue.
--
-- What this kernel does (asserted, not assumed; the cap is read from the
-- dump): request sockets accumulate up to a cap set by backlog (the same
-- test as the accept queue's, "> backlog"), not by tcp_max_syn_backlog.
-- Cookies off: SYNs past the cap are dropped (TCPReqQFullDrop, ListenDrops)
-- and their clients retransmit the same SYN on the kernel's timer. Cookies
-- on: SYN-ACKs past the cap carry a cookie, no request socket holds them
-- (they are never retransmitted), and the client's next ACK creates the
-- connection from the cookie alone (SyncookiesRecv). Mode 2: every SYN-ACK
-- is a cookie.
local tcplab = require "tcplab.kernel"
local kit = require "tcplab.scenarios.kit"
local fault = require "tcplab.fault"
local wire = require "tcplab.wire"
local sys = require "tcplab.sys"
local counters = require "tcplab.counters"

local SYNCOOKIES = "/proc/sys/net/ipv4/tcp_syncookies"
local MAX_SYN_BACKLOG = "/proc/sys/net/ipv4/tcp_max_syn_backlog"

local function read_number(path)
  return tonumber((assert(sys.readfile(path)):match("%-?%d+")))
end

-- The sysctl is per namespace: write it only in a namespace this process made.
local function set_syncookies(tl, mode)
  if not tcplab.netns.current_ours() then
    error("syn_queue: net.ipv4.tcp_syncookies is only set inside a namespace tcplab made " ..
          "(run it through tcplab.scenarios.run as root)", 0)
  end
  assert(sys.writefile(SYNCOOKIES, tostring(mode)))
  local now = read_number(SYNCOOKIES)
  tl:step("server", ("sysctl net.ipv4.tcp_syncookies=%d (this namespace only)"):format(mode), now)
  return now
end

-- Request sockets of the listener on port: the client ports of its SYN_RECV entries.
local function syn_recv(port)
  local set, n = {}, 0
  for _, r in ipairs(assert(tcplab.snapshot{ states = "SYN_RECV", sport = port })) do
    set[r.dport], n = true, n + 1
  end
  return n, set
end

-- Clients per state as their own TCP_INFO says.
local function client_states(clients)
  local by = {}
  for _, c in ipairs(clients) do
    local st = c.sock:state()
    by[st] = (by[st] or 0) + 1
  end
  return by
end

-- Poll (bounded) until the clients' states and the SYN_RECV count stop
-- changing between two looks: every first SYN has been answered or dropped.
local function settle(clients, port)
  local last, deadline = nil, tcplab.now() + 0.8
  repeat
    tcplab.sleep(0.05)
    local by = client_states(clients)
    local key = ("%d/%d/%d"):format(by.ESTABLISHED or 0, by.SYN_SENT or 0, (syn_recv(port)))
    if key == last then return end
    last = key
  until tcplab.now() > deadline
end

-- A listener of its own, ACKs to it dropped, a capture of its port, and
-- `n` clients connecting at once (non-blocking).
local function burst(s, backlog, n)
  local srv = assert(tcplab.socket(s.family))
  assert(srv:bind(s.host, 0))
  assert(srv:listen(backlog))
  local port = select(2, srv:getsockname())
  local b = { srv = srv, port = port, clients = {}, backlog = backlog }
  b.cap = s.cap and assert(tcplab.capture.open(port)) or nil
  b.drop = assert(fault.drop{ segment = "ack", dport = port })
  b.before = assert(counters())
  b.t0 = tcplab.now()
  for i = 1, n do
    local c = assert(tcplab.socket(s.family))
    local ok, err = c:connect(s.host, port, 0)
    assert(ok or err == "timeout", err)
    b.clients[i] = { sock = c, port = select(2, c:getsockname()) }
  end
  settle(b.clients, port)
  b.queued, b.in_queue = syn_recv(port)
  b.states = client_states(b.clients)
  b.after = assert(counters())
  b.elapsed = tcplab.now() - b.t0
  b.delta = counters.delta(b.before, b.after)
  return b
end

-- The segments of a burst's capture until `wait` seconds after it started, per client port.
local function segments(b, wait)
  if not b.cap then return nil end
  local segs = {}
  local deadline = b.t0 + wait
  repeat
    for _, seg in ipairs(assert(b.cap:read(0.1))) do segs[#segs + 1] = seg end
  until tcplab.now() >= deadline
  for _, seg in ipairs(assert(b.cap:read(0))) do segs[#segs + 1] = seg end
  local by = {}
  for _, c in ipairs(wire.connections(wire.label(segs, b.port), nil, b.port)) do by[c.cport] = c end
  b.drops = b.cap:drops() + b.cap:undecoded()
  return by
end

local function finish_burst(b)
  for _, c in ipairs(b.clients) do c.sock:close() end
  if b.cap then b.cap:close() end
  b.drop:lift()
  b.srv:close()
end

-- The gap before the i-th SYN retransmit (the kernel's timer): the initial
-- RTO (1 s) for the first tcp_syn_linear_timeouts, then doubling.
local function syn_gap(i)
  local linear = tonumber((sys.readfile("/proc/sys/net/ipv4/tcp_syn_linear_timeouts") or ""):match("%d+")) or 0
  return i <= linear and 1 or 2 ^ (i - linear), linear
end

local function unobserved_wire(tl, claim, s)
  tl:unobserved(claim, s.capture_note or "packets not captured")
end

-- Cookies off: the cap, the dropped SYNs and their retransmits.
local function cookies_off(tl, s, backlog, n, wait)
  set_syncookies(tl, 0)
  local b = burst(s, backlog, n)
  local cap, est, waiting = b.queued, b.states.ESTABLISHED or 0, b.states.SYN_SENT or 0
  tl:step("server", ("listen(%d); %d clients connect, final ACKs dropped"):format(backlog, n),
          ("%d SYN_RECV; clients: %d ESTABLISHED, %d SYN_SENT"):format(cap, est, waiting))
  tl:check(cap >= 1 and cap < n and est == cap and waiting == n - cap,
    ("cookies off, backlog %d: request sockets (SYN_RECV) accumulate to %d, the kernel's cap; %d clients " ..
     "got a SYN-ACK (ESTABLISHED), the other %d wait in SYN_SENT"):format(backlog, cap, est, waiting))
  local full, drops = b.delta:get("TCPReqQFullDrop"), b.delta:get("ListenDrops")
  if b.elapsed < 0.9 then   -- before the first SYN retransmit (1 s)
    tl:check(full == n - cap and drops == n - cap,
      ("counters: TCPReqQFullDrop +%d, ListenDrops +%d: one per SYN past the cap (%d)"):format(full, drops, n - cap))
  else
    tl:unobserved(("counters: TCPReqQFullDrop +%d, ListenDrops +%d"):format(full, drops),
                  ("read %.2f s after the burst, after the first SYN retransmits"):format(b.elapsed))
  end
  local by = segments(b, wait)
  local row = { syncookies = 0, backlog = backlog, clients = n, cap = cap, established = est, syn_sent = waiting,
                counters = b.delta:summary({ "TCPReqQFullDrop", "ListenDrops", "TCPReqQFullDoCookies", "SyncookiesSent" }) }
  if by then
    local retransmitting, same_seq, answered, syns_total, times = 0, true, 0, 0, nil
    for _, c in ipairs(b.clients) do
      local conn = by[c.port]
      if not b.in_queue[c.port] and conn then
        local syns = wire.with(conn, "S", "client")
        syns_total = syns_total + #syns
        answered = answered + #wire.with(conn, "S", "server")
        if #syns >= 2 then retransmitting = retransmitting + 1 end
        for _, syn in ipairs(syns) do if syn.seq ~= syns[1].seq then same_seq = false end end
        times = times or syns
      end
    end
    tl:check(retransmitting == waiting and same_seq and answered == 0,
      ("on the wire: each of the %d dropped clients retransmits the same SYN (seq unchanged), none answered by " ..
       "a SYN-ACK (%d of them retransmitted)"):format(waiting, retransmitting))
    times = times or {}
    row.syn_times = {}
    for i = 1, #times do row.syn_times[i] = times[i].t - times[1].t end
    for i = 2, #times do
      local gap, linear = syn_gap(i - 1)
      local seen = times[i].t - times[i - 1].t
      tl:check(math.abs(seen - gap) < 0.3,
        ("SYN retransmit %d: %.3f s after the previous (the kernel's timer: %g s; tcp_syn_linear_timeouts %d)")
          :format(i - 1, seen, gap, linear))
    end
    tl:check(#times >= 3, ("one dropped client's SYNs in %.1f s: %d"):format(wait, #times))
    -- every dropped SYN, retransmits included, counted once (the clients close first: no more SYNs)
    for _, c in ipairs(b.clients) do c.sock:close() end
    local total = counters.delta(b.before, assert(counters()))
    tl:check(total:get("TCPReqQFullDrop") == syns_total and total:get("ListenDrops") == syns_total,
      ("counters over the whole run: TCPReqQFullDrop +%d, ListenDrops +%d = the %d unanswered SYNs on the wire")
        :format(total:get("TCPReqQFullDrop"), total:get("ListenDrops"), syns_total))
    row.counters = total:summary({ "TCPReqQFullDrop", "ListenDrops", "TCPReqQFullDoCookies", "SyncookiesSent" })
    tl:check(b.drops == 0, ("the capture saw every segment (%d lost)"):format(b.drops))
  else
    unobserved_wire(tl, "on the wire: the dropped clients retransmit the same SYN", s)
  end
  finish_burst(b)
  return row
end

-- Cookies on (mode 1): past the cap, SYN-ACKs carry cookies and no request
-- socket; a cookie client's next ACK (with data: pure ACKs are dropped)
-- creates the connection.
local function cookies_on(tl, s, backlog, n, wait)
  set_syncookies(tl, 1)
  local b = burst(s, backlog, n)
  local cap, est = b.queued, b.states.ESTABLISHED or 0
  tl:step("server", ("listen(%d); %d clients connect, final ACKs dropped"):format(backlog, n),
          ("%d SYN_RECV; clients: %d ESTABLISHED"):format(cap, est))
  tl:check(cap >= 1 and cap < n and est == n,
    ("cookies on, backlog %d: %d request sockets (the cap), yet all %d clients got a SYN-ACK (ESTABLISHED)")
      :format(backlog, cap, est))
  local cookies, sent = b.delta:get("TCPReqQFullDoCookies"), b.delta:get("SyncookiesSent")
  tl:check(cookies == n - cap and sent == n - cap and b.delta:get("TCPReqQFullDrop") == 0,
    ("counters: TCPReqQFullDoCookies +%d, SyncookiesSent +%d: a cookie for each SYN past the cap (%d), none dropped")
      :format(cookies, sent, n - cap))
  local row = { syncookies = 1, backlog = backlog, clients = n, cap = cap, established = est,
                counters = b.delta:summary({ "TCPReqQFullDrop", "ListenDrops", "TCPReqQFullDoCookies", "SyncookiesSent" }) }
  local by = segments(b, wait)
  if by then
    local once, again = 0, 0
    for _, c in ipairs(b.clients) do
      local synacks = by[c.port] and #wire.with(by[c.port], "S", "server") or 0
      if b.in_queue[c.port] then
        if synacks >= 2 then again = again + 1 end
      elseif synacks == 1 then
        once = once + 1
      end
    end
    tl:check(again == cap and once == n - cap,
      ("on the wire after %.1f s: the %d queued SYN-ACKs are retransmitted (a request socket's timer), the %d cookie " ..
       "SYN-ACKs are sent once (no request socket holds them): %d and %d"):format(wait, cap, n - cap, again, once))
    tl:check(b.drops == 0, ("the capture saw every segment (%d lost)"):format(b.drops))
  else
    unobserved_wire(tl, "on the wire: cookie SYN-ACKs are never retransmitted", s)
  end
  -- a cookie client's next segment: data, whose ACK carries the cookie back
  local last = b.clients[#b.clients]
  local held = b.in_queue[last.port] and "a request socket" or "no socket"
  local before = assert(counters())
  assert(last.sock:write("x"))
  local conn, err = b.srv:accept(2)
  local recv = counters.delta(before, assert(counters())):get("SyncookiesRecv")
  local peer = conn and select(2, conn:getpeername())
  tl:step("client", ("client :%d write(\"x\") (the final ACK rides on data)"):format(last.port),
          conn and tostring(conn) or err)
  tl:check(held == "no socket" and conn ~= nil and peer == last.port and recv == 1,
    ("the server held %s for client :%d; its ACK created the connection from the cookie alone: accept() returned " ..
     "it (peer :%s), SyncookiesRecv +%d"):format(held, last.port, tostring(peer), recv))
  row.cookie_accepted = peer == last.port
  if conn then conn:close() end
  finish_burst(b)
  return row
end

-- Mode 2: a cookie for every SYN, no request socket at all.
local function cookies_always(tl, s, backlog, n)
  set_syncookies(tl, 2)
  local b = burst(s, backlog, n)
  local est = b.states.ESTABLISHED or 0
  tl:step("server", ("listen(%d); %d clients connect, final ACKs dropped"):format(backlog, n),
          ("%d SYN_RECV; clients: %d ESTABLISHED"):format(b.queued, est))
  local sent, decided = b.delta:get("SyncookiesSent"), b.delta:get("TCPReqQFullDoCookies")
  tl:check(b.queued == 0 and est == n and sent == n and decided == n,
    ("syncookies=2: no request socket (%d SYN_RECV), all %d clients answered, SyncookiesSent +%d: a cookie for " ..
     "every SYN (the kernel counts each as TCPReqQFullDoCookies too, +%d, though the queue is empty)")
      :format(b.queued, est, sent, decided))
  local row = { syncookies = 2, backlog = backlog, clients = n, cap = b.queued, established = est,
                counters = b.delta:summary({ "TCPReqQFullDrop", "ListenDrops", "TCPReqQFullDoCookies", "SyncookiesSent" }) }
  finish_burst(b)
  return row
end

return {
  title = "syn_queue",
  needs_root = true,   -- sets net.ipv4.tcp_syncookies and drops ACKs in its own namespace
  claim = "the SYN queue holds half-open connections (SYN_RCVD); backlog sizes the accept queue",
  run = function(opts)
    opts = opts or {}
    local backlog, n = opts.backlog or 4, opts.clients or 20
    local s = kit.begin("syn_queue", { family = opts.family, backlog = backlog })
    local tl = s.tl
    local old = read_number(SYNCOOKIES)
    local max_syn = read_number(MAX_SYN_BACKLOG)
    tl:step("server", "sysctl net.ipv4.tcp_max_syn_backlog", max_syn)
    local rows = {}
    local ok, err = pcall(function()
      rows[#rows + 1] = cookies_off(tl, s, backlog, n, opts.wait or 2.4)
      -- the cap follows backlog: half the backlog, no retransmits awaited
      local small = math.max(1, backlog // 2)
      set_syncookies(tl, 0)
      local b = burst(s, small, n)
      tl:step("server", ("listen(%d); %d clients connect, final ACKs dropped"):format(small, n),
              ("%d SYN_RECV"):format(b.queued))
      tl:check(b.queued - rows[1].cap == small - backlog and max_syn > n,
        ("the cap follows backlog: listen(%d) %d, listen(%d) %d request sockets; tcp_max_syn_backlog (%d) " ..
         "did not bound them"):format(backlog, rows[1].cap, small, b.queued, max_syn))
      finish_burst(b)
      rows[#rows + 1] = cookies_on(tl, s, backlog, n, opts.cookie_wait or 1.6)
      rows[#rows + 1] = cookies_always(tl, s, backlog, n)
      -- one handshake on the scenario's own listener, cookies always: the ladder
      local cli <close> = kit.connect(s, 2)
      local srv_conn <close> = kit.accept(s)
      tl:check(srv_conn ~= nil, "syncookies=2: a plain handshake still completes (the cookie's ACK makes the socket)")
    end)
    sys.writefile(SYNCOOKIES, tostring(old))
    if not ok then error(err, 0) end
    tl:step("server", ("sysctl net.ipv4.tcp_syncookies=%d (restored)"):format(old), read_number(SYNCOOKIES))
    s.srv:close()
    local moved = {}
    for _, r in ipairs(rows) do
      moved[#moved + 1] = { what = ("syncookies=%d, backlog %d, %d clients"):format(r.syncookies, r.backlog, r.clients),
                            summary = r.counters }
    end
    return kit.finish(s, nil, { modes = rows, max_syn_backlog = max_syn, counters_moved = moved })
  end,
}
