local tcplab = require "tcplab"
local support = require "support"
local core = require "tcplab.core"
local sys = require "tcplab.sys"

-- fault.queue / delay / loss (NFQUEUE, doc/fault-queue.md). Every run has a
-- namespace of its own (tcplab.netns.new()); the wire is read with a capture
-- of the port in it, which sees a segment when it leaves (after the verdict):
-- a dropped segment never shows, a delayed one shows when it is let go.
-- No assertion reads a clock: only orders and counts.

local function lab()
  local ns = assert(tcplab.netns.new())
  local srv = assert(ns:listen("127.0.0.1", 0))
  local port = select(2, srv:getsockname())
  local cap = assert(ns:capture(port))
  local wire = {}
  local function read_wire()
    for _, seg in ipairs(assert(cap:read(0))) do wire[#wire + 1] = seg end
    return wire
  end
  return ns, srv, port, read_wire, cap
end

-- A client whose connect is in flight (non-blocking): the queue must be
-- stepped for its handshake to go on.
local function start_client(ns, port)
  local c = assert(ns:socket("inet"))
  local ok, err = c:connect("127.0.0.1", port, 0)
  assert(ok or err == "timeout", err)
  return c
end

local function established(c) return function() return c:state() == "ESTABLISHED" end end
-- The server side is there once the handshake's last ACK got through.
local function accepted(srv)
  local conn
  return function()
    conn = conn or srv:accept(0)
    return conn
  end
end

local function rules_in(ns)
  local out = ns:run(sys.run, "iptables", "iptables -w 5 -S OUTPUT; ip6tables -w 5 -S OUTPUT")
  local n = 0
  for _ in out:gmatch("NFQUEUE") do n = n + 1 end
  return n
end

-- Queue instances of the namespace (/proc/net/netfilter/nfnetlink_queue is per namespace).
local function queues_in(ns)
  return ns:run(function()
    local f = io.open("/proc/net/netfilter/nfnetlink_queue")
    if not f then return 0 end
    local n = 0
    for _ in f:lines() do n = n + 1 end
    f:close()
    return n
  end)
end

local function quiet(lines) return function(line) lines[#lines + 1] = line end end

describe("fault.queue arguments #unit", function()
  local ns_stub = nil
  it("names the field that is wrong and says what to type", function()
    assert.has_error(function() tcplab.fault.queue("x") end, "bad argument #1 to 'queue' (table expected, got string)")
    assert.has_error(function() tcplab.fault.queue{ on_packet = print } end,
      "bad argument #1 to 'queue' (port: port 1..65535 expected, got nil)")
    assert.has_error(function() tcplab.fault.queue{ port = "80", on_packet = print } end,
      'bad argument #1 to \'queue\' (port: port 1..65535 expected, got string "80")')
    assert.has_error(function() tcplab.fault.queue{ port = 80 } end,
      "bad argument #1 to 'queue' (on_packet: function(pkt) returning a verdict expected, got nil)")
    assert.has_error(function() tcplab.fault.queue{ port = 80, on_packet = print, queue = 70000 } end,
      "bad argument #1 to 'queue' (queue: queue number 0..65535 expected, got 70000)")
    assert.has_error(function() tcplab.fault.queue{ port = 80, on_packet = print, timeout = 0 } end,
      "bad argument #1 to 'queue' (timeout: seconds (0..3600] expected, got 0)")
    assert.has_error(function() tcplab.fault.queue{ port = 80, on_packet = print, netns = "/proc/1/ns/net" } end,
      'bad argument #1 to \'queue\' (netns: an open handle from tcplab.netns.new() expected, got string "/proc/1/ns/net")')
    assert.has_error(function() tcplab.fault.queue{ port = 80, on_packet = print, warn = true } end,
      "bad argument #1 to 'queue' (warn: false or function(line) expected, got true)")
    assert.has_error(function() tcplab.fault.delay{ port = 80 } end,
      "bad argument #1 to 'delay' (seconds: 0..3600 expected, got nil)")
    assert.has_error(function() tcplab.fault.delay{ port = 80, seconds = 1, flags = "SYN" } end,
      'bad argument #1 to \'delay\' (flags: letters of FSRPAUEW expected ("SA": SYN-ACK), got string "SYN")')
    assert.has_error(function() tcplab.fault.delay{ port = 80, seconds = 1, direction = "in" } end,
      'bad argument #1 to \'delay\' (direction: "to" or "from" (the port) expected, got string "in")')
    assert.has_error(function() tcplab.fault.delay{ port = 0, seconds = 1 } end,
      "bad argument #1 to 'delay' (port: port 1..65535 expected, got 0)")
    assert.has_error(function() tcplab.fault.loss{ port = 80, rate = 10 } end,
      "bad argument #1 to 'loss' (rate: a fraction 0..1 expected (0.1 is 10%), got 10)")
    assert.has_error(function() tcplab.fault.loss{ port = 80, rate = 0.5, seed = 1.5 } end,
      "bad argument #1 to 'loss' (seed: integer expected, got 1.5)")
    assert.is_nil(ns_stub)
  end)

  it("refuses the host's namespace", function()
    local q, err = tcplab.fault.queue{ port = 80, on_packet = print }
    assert.is_nil(q)
    assert.matches("runs only in a namespace tcplab made", err)
  end)

  it("parses queued-packet messages without Lua in the parser", function()
    local msg = require "nfqueue_msg"
    local f = assert(io.open("fuzz/capture_corpus/inet-01-S", "rb"))
    local syn = f:read("a"):sub(15)   -- the IP packet behind lo's Ethernet header
    f:close()
    local list, refused = core.nfqueue.parse(msg.packet(7, syn, 3, 0x7cb1) .. msg.packet(8, syn) .. msg.error(2))
    assert.equal(2, #list)
    assert.equal(1, refused)
    local p = list[1]
    assert.same({ 7, 3, 0x7cb1, true, "inet", "127.0.0.1", "127.0.0.1", "S", 0, #syn },
                { p.id, p.hook, p.mark, p.tcp, p.family, p.src, p.dst, p.flags, p.len, #p.raw })
    assert.equal(syn, p.raw)
    assert.equal(8, list[2].id)
    -- a header cut short is no TCP packet (passed as such), not a crash
    assert.is_false(core.nfqueue.parse(msg.packet(9, syn:sub(1, 30)))[1].tcp)
    -- a length that lies ends the walk: 0xffffffff (libmnl's check reads it as -1), past the end, zero
    for _, len in ipairs({ 0xffffffff, 4096, 0 }) do
      assert.same({}, (core.nfqueue.parse(msg.packet(1, syn, 3, nil, len) .. msg.packet(2, syn))))
    end
    assert.same({}, (core.nfqueue.parse(("\255"):rep(40))))
    assert.same({}, (core.nfqueue.parse("")))
  end)
end)

describe("fault.queue", function()
  support.as_root(it, pending, "passes packets and counts them; lift leaves no rule, no queue, no fd", function()
    local fds = support.fd_count()
    local ns, srv, port, read_wire, cap = lab()
    local seen = {}
    local q = assert(tcplab.fault.queue{ netns = ns, port = port, on_packet = function(pkt)
      seen[#seen + 1] = pkt.direction .. " " .. pkt.flags
      return "pass"
    end })
    assert.equal(4, rules_in(ns))   -- to and from the port, IPv4 and IPv6
    assert.equal(1, queues_in(ns))
    assert.equal("iptables", q.via)
    local c = start_client(ns, port)
    assert.is_true((q:run_until(accepted(srv), 5)))
    assert.same({ "to S", "from SA", "to A" }, seen)
    assert.equal(3, q.counts.pass)
    assert.matches("^fault queue %d+ port " .. port .. " via iptables: 3 packets %(3 pass", tostring(q))
    assert(q:lift())
    assert(q:lift())   -- idempotent
    assert.matches("%(lifted%)$", tostring(q))
    assert.equal(0, rules_in(ns))
    assert.equal(0, queues_in(ns))
    -- after the lift the port's traffic flows with nobody stepping
    local c2 = assert(ns:connect("127.0.0.1", port, 3))
    local flags = {}
    for i, seg in ipairs(read_wire()) do if i <= 3 then flags[i] = seg.flags end end
    assert.same({ "S", "SA", "A" }, flags)
    c2:close(); c:close(); cap:close(); srv:close(); ns:close()
    collectgarbage()
    assert.equal(fds, support.fd_count())
  end)

  support.as_root(it, pending, "drop: the kernel retransmits the SYN that never reached the wire", function()
    local ns, srv, port, read_wire = lab()
    local syns = {}
    local q <close> = assert(tcplab.fault.queue{ netns = ns, port = port, on_packet = function(pkt)
      if pkt.flags == "S" then
        syns[#syns + 1] = pkt.seq
        if #syns == 1 then return "drop" end
      end
      return "pass"
    end })
    local c = start_client(ns, port)
    assert.is_true((q:run_until(established(c), 10)))
    assert.equal(2, #syns)
    assert.equal(syns[1], syns[2])          -- the retransmit: same sequence number
    local on_wire = 0
    for _, s in ipairs(read_wire()) do if s.flags == "S" then on_wire = on_wire + 1 end end
    assert.equal(1, on_wire)                -- the dropped one never left
    assert.equal(1, q.counts.drop)
    c:close(); srv:close(); ns:close()
  end)

  support.as_root(it, pending, "delay: a delayed segment reaches the wire after one sent later", function()
    local ns, srv, port, read_wire = lab()
    local c = assert(ns:connect("127.0.0.1", port, 3))
    local conn = assert(srv:accept(3))
    local q <close> = assert(tcplab.fault.queue{ netns = ns, port = port, on_packet = function(pkt)
      if pkt.direction == "to" and pkt.len > 0 then return { delay = 0.4 } end
      return "pass"
    end })
    assert(c:write("first"))                -- client -> port: delayed
    assert(conn:write("second"))            -- port -> client, written after
    local got = ""
    assert.is_true((q:run_until(function()
      got = got .. (conn:read(100, 0) or "")
      return got == "first"
    end, 5)))
    local order = {}
    for _, s in ipairs(read_wire()) do
      if s.len > 0 then order[#order + 1] = (s.dport == port and "to" or "from") .. " " .. s.len end
    end
    assert.same({ "from 6", "to 5" }, order)
    assert.equal(1, q.counts.delay)
    assert.equal(0, #q.errors)
    c:close(); conn:close(); srv:close(); ns:close()
  end)

  support.as_root(it, pending, "duplicate: the segment is on the wire twice and read once", function()
    local ns, srv, port, read_wire = lab()
    local c = assert(ns:connect("127.0.0.1", port, 3))
    local conn = assert(srv:accept(3))
    local q <close> = assert(tcplab.fault.queue{ netns = ns, port = port, on_packet = function(pkt)
      if pkt.direction == "to" and pkt.len > 0 then return "duplicate" end
      return "pass"
    end })
    assert(c:write("hello"))
    local got = ""
    assert.is_true((q:run_until(function()
      got = got .. (conn:read(100, 0) or "")
      return got == "hello"
    end, 5)))
    q:run_for(0.1)
    assert.equal("hello", got .. (conn:read(100, 0) or ""))
    local copies, seq = 0, nil
    for _, s in ipairs(read_wire()) do
      if s.dport == port and s.len == 5 then
        copies = copies + 1
        assert(seq == nil or seq == s.seq)
        seq = s.seq
      end
    end
    assert.equal(2, copies)
    assert.equal(1, q.counts.duplicate)
    c:close(); conn:close(); srv:close(); ns:close()
  end)

  support.as_root(it, pending, "hold and release: the held segment leaves after the one behind it", function()
    local ns, srv, port, read_wire = lab()
    local c = assert(ns:connect("127.0.0.1", port, 3))
    assert(c:setopt("nodelay", true))
    local conn = assert(srv:accept(3))
    local q
    q = assert(tcplab.fault.queue{ netns = ns, port = port, on_packet = function(pkt)
      if pkt.direction == "to" and pkt.len == 1 then return { hold = true } end
      if pkt.direction == "to" and pkt.len == 2 then q:release() end
      return "pass"
    end })
    assert(c:write("a"))
    q:step(0.2)
    assert.equal(1, q:pending())
    assert(c:write("bc"))
    local got = ""
    assert.is_true((q:run_until(function()
      got = got .. (conn:read(100, 0) or "")
      return got == "abc"
    end, 5)))
    local order = {}
    for _, s in ipairs(read_wire()) do
      if s.dport == port and s.len > 0 then order[#order + 1] = s.len end
    end
    assert.same({ 2, 1 }, order)          -- reordered on the wire, in order for the reader
    assert.equal(0, #q.errors)
    q:lift()
    c:close(); conn:close(); srv:close(); ns:close()
  end)

  support.as_root(it, pending, "a callback that raises, runs too long or answers nonsense passes its packet and says so", function()
    local ns, srv, port = lab()
    local lines = {}
    local n = 0
    local q <close> = assert(tcplab.fault.queue{ netns = ns, port = port, timeout = 0.2, warn = quiet(lines),
      on_packet = function(pkt)
        n = n + 1
        if n == 1 then error("boom") end
        if n == 2 then core.sleep(0.3) return "drop" end     -- too slow: its drop does not count
        if n == 3 then while true do end end                 -- a busy loop is stopped
        if n == 4 then return "maybe" end
        return "pass"
      end })
    local c = start_client(ns, port)
    assert.is_true((q:run_until(accepted(srv), 10)))
    -- the handshake needed no retransmit: every packet was passed
    assert.equal(3, n)
    assert.equal(3, #q.errors)
    assert.equal("raised", q.errors[1].what)
    assert.matches("boom", q.errors[1].message)
    assert.equal("timeout", q.errors[2].what)
    assert.equal("timeout", q.errors[3].what)
    assert.equal(3, #lines)
    assert.matches("^tcplab: queue %d+ port " .. port .. ": packet %d+ %(to S%) passed: callback raised: .*boom", lines[1])
    assert(c:write("x"))
    q:run_for(0.2)
    assert.equal("verdict", q.errors[4].what)
    assert.matches('callback returned string "maybe"; expected "pass"', q.errors[4].message)
    assert.equal(0, q.counts.drop)
    c:close(); srv:close(); ns:close()
  end)

  support.as_root(it, pending, "a held packet that nobody releases is passed after the timeout", function()
    local ns, srv, port = lab()
    local lines = {}
    local q <close> = assert(tcplab.fault.queue{ netns = ns, port = port, timeout = 0.3, warn = quiet(lines),
      on_packet = function(pkt)
        if pkt.flags == "S" then return { hold = true } end
        return "pass"
      end })
    local c = start_client(ns, port)
    assert.is_true((q:run_until(established(c), 5)))
    assert.equal("hold", q.errors[1].what)
    assert.matches("held .* without release", q.errors[1].message)
    assert.equal(0, q:pending())
    c:close(); srv:close(); ns:close()
  end)

  support.as_root(it, pending, "lift passes what is still held; a port with no traffic serves nothing", function()
    local ns, srv, port = lab()
    local q = assert(tcplab.fault.queue{ netns = ns, port = port, timeout = 60, on_packet = function()
      return { hold = true }
    end })
    assert.equal(0, q:step(0))
    assert.same({ false, 0 }, { q:run_for(0.1) })
    local c = start_client(ns, port)
    q:step(0.5)
    assert.equal(1, q:pending())
    assert(q:lift())
    assert.equal(0, rules_in(ns))
    assert.is_true(support.wait_for(established(c), 3))
    assert.same({ nil, "queue lifted" }, { q:step(0) })
    c:close(); srv:close(); ns:close()
  end)

  support.as_root(it, pending, "closing the core queue passes the packets it read and gave no verdict", function()
    local ns, srv, port, read_wire = lab()
    local cq = assert(ns:run(core.nfqueue.open, 9))
    assert.equal("nfqueue 9 (0 packets)", tostring(cq))
    local out, ok = ns:run(sys.run, "iptables", ("iptables -w 5 -I OUTPUT -p tcp --dport %d -m mark ! --mark 0x%x " ..
      "-j NFQUEUE --queue-num 9 --queue-bypass"):format(port, core.nfqueue.INJECT_MARK))
    assert(ok, out)
    local c = start_client(ns, port)
    local got = assert(cq:read(3))
    assert.equal(1, #got)
    assert.equal("S", got[1].flags)
    assert(cq:close())
    assert.equal("nfqueue (closed)", tostring(cq))
    assert.has_error(function() cq:read(0) end, "attempt to use a closed nfqueue")
    assert.is_true(support.wait_for(established(c), 5))
    assert.equal(0, c:info().total_retrans)   -- passed at close: the SYN needed no retransmit
    local syns = 0
    for _, s in ipairs(read_wire()) do if s.flags == "S" then syns = syns + 1 end end
    assert.equal(1, syns)
    c:close(); srv:close(); ns:close()
  end)

  support.as_root(it, pending, "fault.delay holds only the flags asked for; fault.loss drops at its rate", function()
    local ns, srv, port, read_wire = lab()
    local d = assert(tcplab.fault.delay{ netns = ns, port = port, seconds = 0.2, flags = "AS" })
    local c = start_client(ns, port)
    assert.is_true((d:run_until(accepted(srv), 5)))
    assert.equal(1, d.counts.delay)       -- the SYN-ACK ("AS" is "SA")
    assert.equal(2, d.counts.pass)
    assert(d:lift())
    c:close()
    local l = assert(tcplab.fault.loss{ netns = ns, port = port, rate = 1, flags = "S", seed = 7 })
    local c2 = start_client(ns, port)
    l:run_for(1.5)                        -- long enough for a SYN retransmit
    assert.is_true(l.counts.drop >= 2)
    assert.equal(0, l.counts.pass)
    assert.are_not.equal("ESTABLISHED", c2:state())
    assert(l:lift())
    assert.is_true(support.wait_for(established(c2), 5))
    local syns_on_wire = 0
    for _, s in ipairs(read_wire()) do if s.flags == "S" then syns_on_wire = syns_on_wire + 1 end end
    assert.is_true(syns_on_wire >= 2)     -- the first client's SYN and a retransmit after the lift
    c2:close(); srv:close(); ns:close()
  end)

  support.as_root(it, pending, "scenario slow_wire: SYN retransmits while SYN-ACKs are held, a resend after 3 dup ACKs", function()
    local r = assert(tcplab.scenarios.run("slow_wire"))
    local failed = {}
    for _, c in ipairs(r.checks) do if not c.ok then failed[#failed + 1] = c.claim end end
    assert.same({}, failed)
    assert.is_true(r.ok)
    assert.equal(3, r.syns)
    assert.is_true(r.dupacks >= 3)
    assert.equal(0, r.rto_timeouts)
    assert.is_truthy(r.segments and #r.segments > 0)
  end)
end)
