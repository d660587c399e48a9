local tcplab = require "tcplab"
local support = require "support"

describe("the transition recorder", function()
  if not support.is_root() then
    pending("need root: a namespace of its own and tracefs")
    return
  end

  setup(function() assert(tcplab.netns.unshare()) end)

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
    -- sampling sees the dump, so TIME_WAIT appears directly
    assert(rec:expect{ client = { "FIN_WAIT2>TIME_WAIT" }, server = { "CLOSE_WAIT>CLOSE" } })
    assert.equal(0, rec.lost)
  end)

  it("tells the TIME_WAIT story the dump shows, keeping the kernel's in rec.raw", function()
    local srv <close> = assert(tcplab.listen("::1", 0))
    local port = select(2, srv:getsockname())
    local rec <close> = assert(tcplab.trace.start{ port = port })
    assert.equal("tracepoint", rec.method)
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
    assert.is_false(raw_tw)                       -- the kernel never says TIME_WAIT
    assert.truthy(told_tw)
    assert.equal("CLOSE", told_tw.kernel)
    assert.equal("dump", told_tw.derived)
    assert.equal("::1", told_tw.src)
  end)

  it("reports lost events when the ring buffer overruns", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0, 512))
    local port = select(2, srv:getsockname())
    local rec = assert(tcplab.trace.start{ port = port, buffer_kb = 4 })
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

  it("checks its arguments", function()
    assert.has_error(function() tcplab.trace.start(5) end)
    assert.has_error(function() tcplab.trace.start{ port = 0 } end)
    assert.has_error(function() tcplab.trace.start{ port = 80, method = "magic" } end)
    local rec = tcplab.trace.from_events({}, { port = 80 })
    assert.has_error(function() rec:expect{ "ESTABLISHED" } end)
    assert.has_error(function() rec:expect{ "ESTABLISHED>NOPE" } end)
    assert.is_true(rec:expect{})
  end)
end)

describe("fault injection", function()
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

  if support.is_root() then
    it("drops what it is asked to and removes its rule when lifted", function()
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
  end
end)
