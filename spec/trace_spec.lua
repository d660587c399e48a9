local tcplab = require "tcplab"
local kernel = require "tcplab.kernel"   -- the recorder asks it for bpf_trace (the facade only re-exports)
local support = require "support"

describe("the transition recorder #kernel #root #bpf", function()
  if not support.is_root() then
    pending("need root: a namespace of its own and tracefs")
    return
  end

  setup(function() assert(tcplab.netns.unshare()) end)

  -- the BPF recorder loads here (root and a module built with BPF)
  local has_bpf = (function()
    local h = tcplab.bpf_trace{ ports = { 1 } }
    if h then h:close() return true end
    return false
  end)()
  local bpf_it = has_bpf and it or function(name) pending(name .. " (no BPF recorder here)") end

  local function walk(port, host)
    local cli = assert(tcplab.connect(host or "127.0.0.1", port, 2))
    return cli
  end

  it("falls back to sampling and says so in rec.method", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local rec = assert(tcplab.trace.start{ port = port, method = "sampling" })
    assert.matches("^sampling .*can be missed", rec.method)
    local cli = walk(port)
    local conn = assert(srv:accept(2))
    local t = tcplab.observe.tuple(cli)
    cli:close()
    assert(tcplab.await_state(t, "FIN_WAIT2", 2))
    tcplab.core.sleep(0.05)
    conn:close()
    assert(tcplab.await_state(t, "TIME_WAIT", 2))
    tcplab.core.sleep(0.05)
    rec:stop()
    -- what must hold whatever the scheduling: the sampler samples once more
    -- at stop(), so the last state of each end is reported, and each event
    -- starts from the state the previous one of its tuple ended in
    local last, by_tuple = {}, {}
    for _, ev in ipairs(rec.recorded) do
      local key = table.concat({ ev.src, ev.sport, ev.dst, ev.dport }, " ")
      assert.equal(by_tuple[key] or ev.from, ev.from, key)
      by_tuple[key] = ev.to
      last[rec:side(ev)] = ev.to
    end
    assert.equal("TIME_WAIT", last.client)   -- sampling sees the dump: TIME_WAIT directly
    assert.equal("CLOSE", last.server)
    assert.equal(0, rec.lost)
    assert.is_nil(rec.warning)
  end)

  it("the sampler says when it stopped at its limit, and takes no code as limit", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local rec = assert(tcplab.trace.start{ port = port, method = "sampling", limit = 0.1 })
    assert(support.wait_for(function() return tcplab.core.now() > rec.started + 0.3 end))
    rec:stop()
    assert.matches("limit of 0.1 s", rec.warning)
    assert.has_error(function() tcplab.trace.start{ port = port, method = "sampling", limit = "1 os.exit(3)" } end,
      'bad argument #1 to \'start\' (limit: seconds 0..86400 expected, got string "1 os.exit(3)")')
  end)

  it("the sampling helper dies with its parent (SIGKILL)", function()
    local script = [[
      local t = require "tcplab"
      local l = assert(t.listen("127.0.0.1", 0))
      local rec = assert(t.trace.start{ port = select(2, l:getsockname()), method = "sampling" })
      print(rec.sampler.pid) io.stdout:flush()
      t.core.sleep(30)]]
    local p = assert(io.popen("exec lua5.4 -e " .. support.shq(script) .. " & echo $!"))
    local parent = tonumber(p:read("l"))
    local helper = tonumber(p:read("l"))
    assert.truthy(helper, "the helper started")
    assert.is_true(require("tcplab.sys").alive(helper))
    os.execute("kill -KILL " .. parent)
    p:close()
    assert.is_true(support.wait_for(function() return not require("tcplab.sys").alive(helper) end, 5))
  end)

  it("sweeps instances left by a dead process, and falls back to sampling when tracefs fails", function()
    local dead = tonumber(support.slurp("sh -c 'echo $$'"))
    local stale = "/sys/kernel/tracing/instances/tcplab-" .. dead .. "-1"
    assert(os.execute("mkdir " .. stale))
    local mine_stale = "/sys/kernel/tracing/instances/" .. require("tcplab.trace.tracefs").prefix() .. "999"
    assert(os.execute("mkdir " .. mine_stale))
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local rec = assert(tcplab.trace.start{ port = select(2, srv:getsockname()), method = "tracepoint" })
    assert.equal("tracepoint", rec.method)
    assert.is_nil(io.open(stale .. "/trace"))
    assert.is_nil(io.open(mine_stale .. "/trace"))
    rec:stop()
    local tracefs = require "tcplab.trace.tracefs"
    local root = tracefs.ROOT
    tracefs.ROOT = "/nonexistent-tracefs"
    local bpf_trace = kernel.bpf_trace
    kernel.bpf_trace = function() return nil, "disabled by the spec" end
    local ok, fallback = pcall(tcplab.trace.start, { port = select(2, srv:getsockname()) })
    tracefs.ROOT, kernel.bpf_trace = root, bpf_trace
    assert(ok, fallback)
    assert.matches("^sampling", fallback.method)
    assert.matches("tracepoint", fallback.fallback)
    assert.matches("bpf: disabled by the spec", fallback.fallback)
    fallback:stop()
    assert.same({}, tcplab.trace.instances())
  end)

  it("keeps only the run's own addresses: another namespace on the same port cannot satisfy expect", function()
    local srv <close> = assert(tcplab.listen("127.0.0.2", 0))
    local port = select(2, srv:getsockname())
    local all <close> = assert(tcplab.trace.start{ port = port, method = "tracepoint" })
    local mine <close> = assert(tcplab.trace.start{ port = port, method = "tracepoint", addrs = { "127.0.0.2" } })
    local bpf <close> = has_bpf and assert(tcplab.trace.start{ port = port })   -- no addrs: the kernel filters by namespace
    assert.matches("port only", all.scope)
    if bpf then
      assert.equal("bpf", bpf.method)
      assert.equal("this network namespace (in-kernel filter)", bpf.scope)
    end
    -- another namespace: a reset on the same port number
    local script = ([[
      local t = require "tcplab"
      assert(t.netns.unshare())
      local l = assert(t.listen("127.0.0.1", %d))
      local c = assert(t.connect("127.0.0.1", %d, 2))
      local a = assert(l:accept(2))
      c:setopt("linger", 0) c:close() a:close() print("done")]]):format(port, port)
    assert.equal("done\n", support.slurp("lua5.4 -e " .. support.shq(script) .. " 2>&1"))
    local cli = assert(tcplab.connect("127.0.0.2", port, 2))
    local conn = assert(srv:accept(2))
    local t = tcplab.observe.tuple(cli)
    local cookies = { [assert(cli:cookie())] = "client", [assert(conn:cookie())] = "server" }
    cli:close() conn:close()
    assert(tcplab.await_state(t, "TIME_WAIT", 2))
    all:stop() mine:stop()
    if not bpf then return end
    bpf:stop()
    assert.is_true(all:expect{ client = { "ESTABLISHED>CLOSE" } })      -- the other namespace's reset
    assert.is_nil(mine:expect{ client = { "ESTABLISHED>CLOSE" } })
    assert.is_true(mine:expect{ client = { "ESTABLISHED>FIN_WAIT1" } })
    assert.is_true(mine.foreign > 0)
    -- bpf: the other namespace's events never left the kernel
    assert.is_nil(bpf:expect{ client = { "ESTABLISHED>CLOSE" } })
    assert.is_true(bpf:expect{ client = { "CLOSE>SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT" },
                               server = { "LISTEN>SYN_RECV>ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE" } })
    assert.equal(0, bpf.foreign)
    assert.equal(0, bpf.lost)
    for _, ev in ipairs(bpf.raw) do
      assert.equal("127.0.0.2", ev.dst == "127.0.0.2" and ev.dst or ev.src)
      -- each event joins its socket by cookie (the listener's events are the request's)
      if ev.from ~= "LISTEN" then assert.equal(bpf:side(ev), cookies[ev.cookie], ev.from .. ">" .. ev.to) end
    end
  end)

  bpf_it("bpf: the recorder's first choice, live events with the socket's cookie and the tcplab.now() clock", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local rec <close> = assert(tcplab.trace.start{ port = port, limit = 5 })
    assert.equal("bpf", rec.method)
    local t0 = tcplab.now()
    local cli = walk(port)
    local conn = assert(srv:accept(2))
    local cookie = assert(cli:cookie())
    local got = {}
    for ev in rec:events() do
      got[#got + 1] = ev
      if ev.cookie == cookie and ev.to == "ESTABLISHED" then break end
    end
    local last = got[#got]
    assert.equal("SYN_SENT", last.from)
    assert.equal(cookie, last.cookie)
    assert.is_true(last.time >= t0 and last.time <= tcplab.now())
    cli:close() conn:close()
    rec:stop()
    assert.is_true(rec:expect{ client = { "CLOSE>SYN_SENT>ESTABLISHED>FIN_WAIT1" } })
    assert.is_nil(rec.bpf)
  end)

  it("bpf: method = 'bpf' says why when it cannot load; without it the tracepoint records", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local bpf_trace = kernel.bpf_trace
    kernel.bpf_trace = function() return nil, "built without BPF (spec)" end
    local ok1, r1, why = pcall(tcplab.trace.start, { port = port, method = "bpf" })
    local ok2, r2 = pcall(tcplab.trace.start, { port = port })
    kernel.bpf_trace = bpf_trace
    assert(ok1, r1) assert(ok2, r2)
    assert.is_nil(r1)
    assert.equal("bpf: built without BPF (spec)", why)
    assert.equal("tracepoint", r2.method)
    r2:stop()
    if not has_bpf then return end
    local h <close> = assert(tcplab.bpf_trace{ ports = { port } })
    assert.same({}, h:poll(0))
    assert.equal(0, h:lost())
    h:close() h:close()
    assert.has_error(function() h:poll(0) end, "bpf trace: closed")
  end)

  for _, method in ipairs(has_bpf and { "bpf", "tracepoint" } or { "tracepoint" }) do
  it("tells the TIME_WAIT story the dump shows, keeping the kernel's in rec.raw (" .. method .. ")", function()
    local srv <close> = assert(tcplab.listen("::1", 0))
    local port = select(2, srv:getsockname())
    local rec <close> = assert(tcplab.trace.start{ port = port, method = method })
    assert.equal(method, rec.method)
    local cli = walk(port, "::1")
    local conn = assert(srv:accept(2))
    cli:close()
    assert.equal("", conn:read(1, 2))
    conn:close()
    assert(tcplab.await_state(srv, "LISTEN"))
    tcplab.core.sleep(0.02)
    local events = rec:stop()
    local raw_tw, told_tw = false, nil
    for _, ev in ipairs(rec.raw) do raw_tw = raw_tw or ev.to == "TIME_WAIT" end
    for _, ev in ipairs(events) do if ev.to == "TIME_WAIT" then told_tw = ev end end
    assert.truthy(told_tw)
    assert.equal("CLOSE", told_tw.kernel)         -- what the tracepoint itself said
    assert.equal("::1", told_tw.src)
    if method == "bpf" then   -- the moment tcp_time_wait() ran: recorded, not inferred
      assert.is_true(raw_tw)
      assert.is_nil(told_tw.inferred)
      assert.is_nil(told_tw.derived)
      assert.equal("placeholder, peer's FIN taken", told_tw.why)
    else                      -- the tracepoint never says TIME_WAIT: the dump does, the time is inferred
      assert.is_false(raw_tw)
      assert.equal("dump", told_tw.derived)
      assert.equal("dump", told_tw.inferred)
    end
  end)
  end

  for _, method in ipairs(has_bpf and { "bpf", "tracepoint" } or { "tracepoint" }) do
  it("reports lost events when the ring buffer overruns (" .. method .. ")", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0, 512))
    local port = select(2, srv:getsockname())
    local rec = assert(tcplab.trace.start{ port = port, buffer_kb = 4, method = method })
    assert.equal(method, rec.method)
    for _ = 1, 300 do
      local c = walk(port)
      local a = assert(srv:accept(2))
      c:setopt("linger", 0)
      c:close()
      a:close()
    end
    rec:stop()
    assert.is_true(rec.lost > 0)
    assert.matches("events lost", rec.warning)
    local ok, msg = rec:expect{ client = { "SYN_SENT>CLOSING" } }
    assert.is_nil(ok)
    assert.matches("events lost", msg)
  end)
  end

  it("checks its arguments", function()
    local ports = {}
    for i = 1, 65 do ports[i] = 1000 + i end
    assert.has_error(function() tcplab.trace.start{ ports = ports } end,
      "bad argument #1 to 'start' (at most 64 ports)")
    assert.has_error(function() tcplab.trace.start(5) end)
    assert.has_error(function() tcplab.trace.start{ port = 0 } end)
    assert.has_error(function() tcplab.trace.start{ port = 80, method = "magic" } end)
    local rec = tcplab.trace.from_events({}, { port = 80 })
    assert.has_error(function() rec:expect{ "ESTABLISHED" } end)
    assert.has_error(function() rec:expect{ "ESTABLISHED>NOPE" } end)
    assert.is_true(rec:expect{})
  end)

  it("refuses a namespace path that is none, and a namespace with a recorder that cannot filter by it", function()
    local fifo = os.tmpname()
    os.remove(fifo)
    assert(os.execute("mkfifo " .. fifo))
    for _, path in ipairs({ fifo, "/etc/passwd", "/tmp", "/proc/self/ns/pid" }) do
      local rec, err = tcplab.trace.start{ port = 1, netns = path }
      assert.is_nil(rec, path)
      assert.matches(path:gsub("%p", "%%%0") .. ": not a network namespace", err)
    end
    os.remove(fifo)
    local rec, err = tcplab.trace.start{ port = 1, netns = "/nonexistent/ns" }
    assert.is_nil(rec)
    assert.matches("/nonexistent/ns", err)
    assert.error_matches(function() tcplab.trace.start{ port = 1, netns = "/proc/self/ns/net", method = "sampling" } end,
      "netns needs method 'bpf'")
    assert.error_matches(function() tcplab.trace.start{ port = 1, netns = "/proc/self/ns/net", method = "tracepoint" } end,
      "netns needs method 'bpf'")
  end)

  bpf_it("bpf_trace names the field it refuses, and poll refuses a NaN timeout", function()
    for _, case in ipairs({ { { netns = {} }, "netns: a path or \"all\" expected, got table" },
                            { { buffer_kb = 1.5 }, "buffer_kb: integer 1..2^20 expected, got 1.5" },
                            { { ports = "80" }, "ports: table expected, got string" },
                            { { ports = { 80, "x" } }, "ports[2]: port 1..65535 expected, got string \"x\"" },
                            { { ports = { 80.0 } }, "ports[1]: port 1..65535 expected, got 80.0" } }) do
      local ok, err = pcall(tcplab.bpf_trace, case[1])
      assert.is_false(ok)
      assert.equal("bpf_trace: " .. case[2], err)
    end
    local h <close> = assert(tcplab.bpf_trace{ ports = { 1 } })
    assert.error_matches(function() h:poll(0 / 0) end, "seconds expected, got nan")
  end)

  bpf_it("makes nothing up when stop() is called from another namespace: no last-state check, a warning", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local rec = assert(tcplab.trace.start{ port = port, method = "bpf" })
    local cli <close> = walk(port)
    local conn <close> = assert(srv:accept(2))
    local home <close> = assert(tcplab.netns.open())
    local away <close> = assert(tcplab.netns.unshare())   -- the caller moves; the sockets stay open where they are
    local events = rec:stop()
    assert(home:enter())
    assert.matches("not in the recorded namespace at stop%(%)", rec.warning)
    assert.equal(0, rec.inferred)
    for _, ev in ipairs(events) do assert.is_nil(ev.inferred, ev.from .. ">" .. ev.to) end
    assert.truthy(rec:expect{ client = { "CLOSE>SYN_SENT>ESTABLISHED" }, server = { "LISTEN>SYN_RECV>ESTABLISHED" } })
  end)
end)

describe("fault injection #kernel #root", function()
  it("refuses to run outside a namespace the library made", function()
    -- a fresh process has made no namespace, whichever one it is in
    local out = support.slurp([[lua5.4 -e 'local t = require "tcplab"
      io.write(tostring(select(2, t.fault.drop{ segment = "syn", dport = 9 })))' 2>&1]])
    assert.matches("only inside a namespace made by tcplab.netns.unshare", out)
  end)

  it("checks its arguments", function()
    assert.has_error(function() tcplab.fault.drop{ segment = "urg" } end,
      "bad argument #1 to 'drop' (segment: unknown 'urg'; valid: syn synack ack fin rst data any)")
    assert.has_error(function() tcplab.fault.drop{ segment = "syn", dport = 0 } end)
    assert.has_error(function() tcplab.fault.drop("syn") end)
  end)

  support.as_root(it, pending, "drops what it is asked to and removes its rule when lifted", function()
      assert(tcplab.netns.unshare())
      local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
      local port = select(2, srv:getsockname())
      do
        local rule <close> = assert(tcplab.fault.drop{ segment = "syn", dport = port })
        local cli <close> = assert(tcplab.socket("inet"))
        assert.same({ nil, "timeout", 110 }, { cli:connect("127.0.0.1", port, 0.3) })
        assert.equal(1, rule:dropped())
      end
      assert.equal("", (support.slurp("nft list chain inet tcplab_fault output"):match("drop") and "rule left") or "")
      local cli <close> = assert(tcplab.connect("127.0.0.1", port, 1))
      assert.is_true(tcplab.fault.clear())
      assert.equal("", support.slurp("nft list ruleset"))
  end)

  support.as_root(it, pending, "drops only the first SYN with once = true", function()
    assert(tcplab.netns.unshare())
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local rule <close> = assert(tcplab.fault.drop{ segment = "syn", dport = port, once = true })
    local t0 = tcplab.core.now()
    local cli <close> = assert(tcplab.connect("127.0.0.1", port, 5))
    assert.is_true(tcplab.core.now() - t0 >= 0.9)   -- the retransmit, a second later, passed
    assert.equal(1, rule:dropped())
  end)

  support.as_root(it, pending, "holds its namespace: once its handle is closed, a namespace is not ours", function()
    -- a fresh process: the namespace it starts in is not one it made
    local script = [[
      local t = require "tcplab"
      local before = assert(t.netns.open())
      local h = assert(t.netns.unshare())
      io.write(tostring(t.netns.is_ours()), " ")
      assert(before:enter())
      before:close()
      io.write(tostring(t.netns.is_ours()), " ")
      assert(h:enter())
      io.write(tostring(t.netns.is_ours()), " ")
      h:close()                               -- no longer held: the kernel may reuse its inode
      io.write(tostring(t.netns.is_ours()), " ")
      io.write(tostring(select(2, t.fault.drop{ segment = "syn", dport = 9 })))]]
    assert.equal("true false true false tcplab.fault runs only inside a namespace made by tcplab.netns.unshare() " ..
                 "(this one is not: the host's firewall is never touched)",
                 support.slurp("lua5.4 -e " .. support.shq(script) .. " 2>&1"))
  end)
end)
