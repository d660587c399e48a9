-- The BPF transition recorder tells the truth: TIME_WAIT when tcp_time_wait()
-- runs, a namespace filter that a reused inode cannot fool, every event the
-- program wrote delivered or counted, dead tracefs instances swept by every
-- start, and a bounded number of recorders alive per process.
local tcplab = require "tcplab"
local support = require "support"

describe("the BPF recorder", function()
  if not support.is_root() then
    pending("needs root: namespaces of its own and BPF")
    return
  end
  local home
  setup(function()
    home = assert(tcplab.netns.open())
    assert(tcplab.netns.unshare())
  end)
  teardown(function() if home then home:close() end end)

  local has_bpf = (function()
    local h = tcplab.bpf_trace{ ports = { 1 } }
    if h then h:close() return true end
    return false
  end)()
  local bpf_it = has_bpf and it or function(name) pending(name .. " (no BPF recorder here)") end

  local function fin_timeout(v)
    local f = assert(io.open("/proc/sys/net/ipv4/tcp_fin_timeout", "w"))
    f:write(tostring(v))
    f:close()
  end

  -- connect, the client closes (an orphan), wait until the server has its
  -- FIN, the server closes; the recorder's events and the captured segments
  local function orphan_close(host)
    local srv <close> = assert(tcplab.listen(host, 0))
    local port = select(2, srv:getsockname())
    local cap <close> = assert(tcplab.capture.open(port))
    local rec <close> = assert(tcplab.trace.start{ port = port, method = "bpf" })
    local cli = assert(tcplab.connect(host, port, 2))
    local cport = select(2, cli:getsockname())
    local conn = assert(srv:accept(2))
    local t = tcplab.observe.tuple(cli)
    cli:close()
    assert.equal("", conn:read(1, 2))
    assert(tcplab.await_state(t, "FIN_WAIT2", 2))
    conn:close()
    assert(tcplab.await_state(t, "TIME_WAIT", 2))
    local segs = assert(cap:read(0.05))
    for _ = 1, 20 do   -- bounded: the last ACK may still be on its way to the capture
      local more = assert(cap:read(0.02))
      if #more == 0 then break end
      for _, s in ipairs(more) do segs[#segs + 1] = s end
    end
    rec:stop()
    return rec, segs, port, cport
  end

  local function find(events, pred)
    for _, ev in ipairs(events) do if pred(ev) then return ev end end
  end

  bpf_it("records FIN_WAIT2 -> TIME_WAIT when tcp_time_wait() runs: after the client's ACK of the server's FIN, before the server takes it", function()
    fin_timeout(120)   -- the orphan's FIN_WAIT2 stays a full socket: the FIN reaches it
    local rec, segs, port, cport = orphan_close("127.0.0.1")
    fin_timeout(60)
    local tw = find(rec.raw, function(ev) return ev.sport == cport and ev.to == "TIME_WAIT" end)
    assert.truthy(tw, "no TIME_WAIT event for the client")
    assert.equal("FIN_WAIT2", tw.from)
    assert.equal("CLOSE", tw.kernel)
    assert.equal("placeholder, peer's FIN taken", tw.why)
    assert.is_nil(tw.inferred)
    -- on the wire: the server's FIN, then the client's ACK of it
    local fin = find(segs, function(s) return s.sport == port and s.flags:find("F", 1, true) end)
    assert.truthy(fin, "the server's FIN was not captured")
    local ack = find(segs, function(s)
      return s.sport == cport and s.flags:find("A", 1, true) and s.ack == (fin.seq + fin.len + 1) % 2 ^ 32
    end)
    assert.truthy(ack, "the client's ACK of the FIN was not captured")
    assert.is_true(fin.t <= ack.t)
    -- and in the recorder's one clock (the capture's realtime-to-monotonic offset
    -- is off by some microseconds, as much as the gap itself: no cross-clock
    -- comparison here): after the server sent that FIN (its CLOSE_WAIT -> LAST_ACK),
    -- before that ACK reached the server (its LAST_ACK -> CLOSE)
    local sent_fin = find(rec.raw, function(ev) return ev.sport == port and ev.to == "LAST_ACK" end)
    local took_ack = find(rec.raw, function(ev) return ev.sport == port and ev.from == "LAST_ACK" end)
    assert.truthy(sent_fin)
    assert.truthy(took_ack)
    assert.is_true(sent_fin.time < tw.time)
    assert.is_true(tw.time < took_ack.time)
    -- and the recorded sequence says so
    local told = find(rec.recorded, function(ev) return ev.sport == cport and ev.to == "TIME_WAIT" end)
    assert.equal(tw.time, told.time)
    assert.is_nil(told.inferred)
  end)

  bpf_it("puts the close scenario's client TIME_WAIT at the server's first FIN, not at a retransmission", function()
    local result = assert(tcplab.scenarios.run("close"))
    assert.is_true(result.ok)
    assert.equal("bpf", result.method)
    local tw = find(result.events, function(ev) return ev.to == "TIME_WAIT" and ev.sport ~= result.port end)
    assert.truthy(tw, "no client TIME_WAIT")
    assert.equal("FIN_WAIT2", tw.from)
    assert.equal("CLOSE", tw.kernel)
    assert.is_nil(tw.inferred)
    local fins = {}
    for _, sg in ipairs(result.segments) do
      if sg.from == "server" and sg.flags:find("F", 1, true) then fins[#fins + 1] = sg end
    end
    assert.is_true(#fins >= 1)
    -- after the server's first FIN left (its CLOSE_WAIT -> LAST_ACK, the recorder's clock)
    local sent_fin = find(result.events, function(ev) return ev.sport == result.port and ev.to == "LAST_ACK" end)
    assert.is_true(sent_fin.time < tw.time)
    -- the client's ACKs are dropped while the server is held in LAST_ACK: its FIN
    -- comes again, at least 200 ms later (TCP's minimum RTO), and TIME_WAIT is not put there
    if fins[2] then assert.is_true(tw.time < fins[2].t) end
    local out = os.tmpname()
    local f = assert(io.open(out, "w"))
    require("tcplab.format.ladder").print(result, f)
    f:close()
    local text = support.slurp("cat " .. out)
    os.remove(out)
    assert.matches("%[TIME_WAIT%]", text)
    assert.is_nil(text:find("[TIME_WAIT] (inferred)", 1, true))
  end)

  bpf_it("leaves an orphan's FIN_WAIT2 placeholder as CLOSE, and marks the TIME_WAIT the dump shows inferred", function()
    fin_timeout(60)    -- the default: the orphan moves into a placeholder before the FIN
    local rec, _, _, cport = orphan_close("127.0.0.1")
    local close = find(rec.raw, function(ev) return ev.sport == cport and ev.from == "FIN_WAIT2" end)
    assert.truthy(close)
    assert.equal("CLOSE", close.to)
    assert.equal("placeholder, peer's FIN not taken", close.why)
    assert.is_nil(find(rec.raw, function(ev) return ev.sport == cport and ev.to == "TIME_WAIT" end))
    local told = find(rec.recorded, function(ev) return ev.sport == cport and ev.to == "TIME_WAIT" end)
    assert.truthy(told, "the dump's TIME_WAIT was not told")
    assert.equal("dump", told.inferred)
  end)

  bpf_it("shows an inferred state as inferred in the ladder, the JSON and the text report", function()
    local result = {
      name = "x", port = 80, t0 = 0, method = "tracepoint", lost = 0, ok = true, steps = {}, checks = {},
      transitions = { client = { "FIN_WAIT2>TIME_WAIT" }, server = {} },
      events = {
        { time = 0.5, src = "127.0.0.1", sport = 4000, dst = "127.0.0.1", dport = 80, from = "ESTABLISHED",
          to = "FIN_WAIT1" },
        { time = 1.5, src = "127.0.0.1", sport = 4000, dst = "127.0.0.1", dport = 80, from = "FIN_WAIT2",
          to = "TIME_WAIT", inferred = "dump" },
      },
    }
    local function render(fn)
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      fn(result, f)
      f:close()
      local text = support.slurp("cat " .. path)
      os.remove(path)
      return text
    end
    local ladder = render(require("tcplab.format.ladder").print)
    assert.matches("%[TIME_WAIT%] %(inferred%)", ladder)
    assert.matches("%[FIN_WAIT1%]%s+│", ladder)
    assert.matches("%(inferred%): not recorded when it happened", ladder)
    local doc = require("cjson").decode(render(require("tcplab.format.json").scenario))
    local trs = doc.connections[1].transitions
    assert.equal("TIME_WAIT", trs[2].to)
    assert.equal("dump", trs[2].inferred)
    assert.is_nil(trs[1].inferred)
    local text = render(require("tcplab.format.timeline").report)
    assert.matches("inferred: FIN_WAIT2>TIME_WAIT at 1.500 s %(from a socket dump", text)
  end)

  bpf_it("filters by the namespace's cookie: a new namespace on the freed inode is not recorded", function()
    local tag = ("tcplab-hrec-%d"):format(support.pid())
    local a, b = tag .. "-a", tag .. "-b"
    local function ns_traffic(name, port)
      assert(os.execute(("ip -n %s link set lo up"):format(name)))
      assert(tcplab.netns.enter("/run/netns/" .. name))
      local srv = assert(tcplab.listen("127.0.0.1", port))
      local cli = assert(tcplab.connect("127.0.0.1", port, 2))
      local conn = assert(srv:accept(2))
      cli:close() conn:close() srv:close()
    end
    local here = assert(tcplab.netns.open())
    assert(os.execute("ip netns add " .. a))
    local a_id = assert(tcplab.netns.id("/run/netns/" .. a))
    local port = 40000 + support.pid() % 20000
    local rec <close> = assert(tcplab.trace.start{ port = port, method = "bpf", netns = "/run/netns/" .. a })
    local ok_a, err_a = pcall(ns_traffic, a, port)
    assert(here:enter())
    assert(ok_a, err_a)
    local a_events = #rec.bpf:poll(0.2)
    assert.is_true(a_events > 0)   -- the recorder does see A
    assert(os.execute("ip netns del " .. a))
    -- a new namespace until one gets A's inode back (bounded)
    -- (the kernel frees a namespace's inode from a work queue, a little after
    -- the last reference goes, and other processes make namespaces too)
    -- On a busy host the inode may not come back within the bound: B is then
    -- another namespace on another inode, and what must hold still holds (a
    -- recorder of A records nothing of B); the reuse only makes an inode
    -- filter's mistake visible, the cookie filter must pass either way.
    local MAX = 100
    for i = 1, MAX do
      assert(os.execute("ip netns add " .. b))
      if tcplab.netns.id("/run/netns/" .. b) == a_id or i == MAX then break end
      assert(os.execute("ip netns del " .. b))
      tcplab.sleep(0.02)
    end
    local ok, err = pcall(ns_traffic, b, port)
    assert(here:enter())
    os.execute("ip netns del " .. b)
    here:close()
    assert(ok, err)
    assert.same({}, rec.bpf:poll(0.2))   -- B's transitions are not A's
  end)

  bpf_it("delivers every event the program wrote, and says so (written = delivered, nothing undelivered)", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local rec <close> = assert(tcplab.trace.start{ port = port, method = "bpf" })
    for _ = 1, 50 do
      local c = assert(tcplab.connect("127.0.0.1", port, 2))
      local a = assert(srv:accept(2))
      c:close() a:close()
    end
    rec:stop()
    assert.is_true(rec.stats.written > 0)
    assert.equal(rec.stats.written, rec.stats.delivered)
    assert.equal(0, rec.undelivered)
    assert.equal(#rec.raw, rec.stats.delivered)
    assert.is_true(rec.stats.port_hits >= rec.stats.written)
    assert.equal(0, rec.stats.netns_misses)
  end)

  it("merges the tracefs witness: what BPF lacks is added with the socket's cookie and counted; a BPF TIME_WAIT matches the tracepoint's CLOSE", function()
    local witness = require "tcplab.trace.witness"
    local function ev(t, sport, dport, from, to, extra)
      local e = { time = t, src = "127.0.0.1", sport = sport, dst = "127.0.0.1", dport = dport, from = from, to = to }
      for k, v in pairs(extra or {}) do e[k] = v end
      return e
    end
    local bpf = {
      ev(1, 5000, 80, "SYN_SENT", "ESTABLISHED", { cookie = 7 }),
      ev(2, 5000, 80, "ESTABLISHED", "FIN_WAIT1", { cookie = 7 }),
      ev(5, 5000, 80, "FIN_WAIT2", "TIME_WAIT", { cookie = 7, kernel = "CLOSE" }),
    }
    local seen = {
      ev(1, 5000, 80, "SYN_SENT", "ESTABLISHED"),
      ev(2, 5000, 80, "ESTABLISHED", "FIN_WAIT1"),
      ev(3, 5000, 80, "FIN_WAIT1", "FIN_WAIT2"),
      ev(5, 5000, 80, "FIN_WAIT2", "CLOSE"),
    }
    local merged, added = witness.merge(bpf, seen)
    assert.equal(1, added)
    assert.equal(4, #merged)
    local got = {}
    for i, e in ipairs(merged) do got[i] = e.from .. ">" .. e.to .. ":" .. tostring(e.cookie) .. ":" .. tostring(e.witness) end
    assert.same({ "SYN_SENT>ESTABLISHED:7:nil", "ESTABLISHED>FIN_WAIT1:7:nil", "FIN_WAIT1>FIN_WAIT2:7:tracefs",
                  "FIN_WAIT2>TIME_WAIT:7:nil" }, got)
    assert(support.chained(merged))
  end)

  it("sweeps a dead process's tracefs instance at every recorder start, BPF too", function()
    -- a dead process's instance (another tcplab process on the host may sweep it
    -- too), and one carrying our PID that this process did not make (a dead
    -- process's whose PID we now have: only we sweep that one)
    local dead = tonumber(support.slurp("sh -c 'echo $$'"))
    local stale = "/sys/kernel/tracing/instances/tcplab-" .. dead .. "-7"
    local reused = "/sys/kernel/tracing/instances/" .. require("tcplab.trace.tracefs").prefix() .. "998"
    assert(os.execute("mkdir " .. stale))
    assert(os.execute("mkdir " .. reused))
    local rec = assert(tcplab.trace.start{ port = 9, method = has_bpf and "bpf" or "sampling" })
    local gone = io.open(stale .. "/trace") == nil and io.open(reused .. "/trace") == nil
    rec:stop()
    os.execute("rmdir " .. stale .. " " .. reused .. " 2>/dev/null")
    assert.is_true(gone)
  end)

  bpf_it("tells the collector what a recorder costs: never-closed recorders stay within the cap, reachable ones are refused with advice", function()
    local open, cap = tcplab.core.bpf_trace_open()
    assert.equal(0, open)
    local most = 0
    for _ = 1, cap + 3 do
      local h = assert(tcplab.bpf_trace{ ports = { 9 }, buffer_kb = 4 })   -- never closed
      most = math.max(most, (tcplab.core.bpf_trace_open()))
      h = nil
    end
    assert.is_true(most <= cap)
    collectgarbage()
    assert.equal(0, (tcplab.core.bpf_trace_open()))
    local held = {}
    for i = 1, cap do held[i] = assert(tcplab.bpf_trace{ ports = { 9 }, buffer_kb = 4 }) end
    assert.has_error(function() tcplab.bpf_trace{ ports = { 9 }, buffer_kb = 4 } end,
      ("bpf_trace: %d recorders are open in this process (at most %d): close the ones you are done with " ..
       "(rec:close(), or local rec <close> = ...)"):format(cap, cap))
    for _, h in ipairs(held) do h:close() end
    assert.equal(0, (tcplab.core.bpf_trace_open()))
  end)
end)
