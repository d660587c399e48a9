-- Namespaces as values (issue 20.3): a namespace is a handle; sockets,
-- dumps and faults are made in it, and no public call returns with this
-- process anywhere but in the namespace it was in, errors and Ctrl-C
-- included. Everything here looks only at what this process made: its own
-- namespaces, its own sockets (by inode), its own lab.
local tcplab = require "tcplab"
local support = require "support"

local it_root = function(name, body) support.as_root(it, pending, name, body) end

local function server(port)
  return { "lua5.4", "spec/servers/echo.lua", tostring(port) }
end

-- A listener of this process in its own namespace: the socket, its port, its inode.
local function own_listener()
  local l = assert(tcplab.listen("127.0.0.1", 0, 4))
  local _, port = l:getsockname()
  return l, port, l:inode()
end

-- Inodes of the LISTEN sockets on port in the namespace the filter names.
local function listen_inodes(port, ns)
  local out = {}
  for _, r in ipairs(assert(tcplab.snapshot{ states = "LISTEN", sport = port, netns = ns })) do
    out[#out + 1] = r.inode
  end
  table.sort(out)
  return out
end

-- Call f with a count hook that raises "interrupted!" (what lua.c's SIGINT
-- handler makes happen) after n VM instructions; the error, or nil when f
-- ended first.
local function interrupted_after(n, f)
  local ok, err = pcall(function()
    debug.sethook(function() debug.sethook() error("interrupted!") end, "", n)
    local r = table.pack(f())
    debug.sethook()
    return table.unpack(r, 1, r.n)
  end)
  debug.sethook()
  if ok then return nil end
  return err
end

describe("tcplab.netns handles #kernel #root", function()
  local home
  setup(function() home = tcplab.netns.id() end)

  it_root("new() makes a namespace with lo up and leaves the caller where it was", function()
    local ns <close> = assert(tcplab.netns.new())
    assert.equal(home, tcplab.netns.id())
    assert.are_not.equal(home, ns:id())
    assert.is_true(tcplab.netns.owns(ns))
    assert.is_false(ns:is_current())
    local mine <close>, port, inode = own_listener()
    -- the same port inside: a different socket, which the caller's dump does not show
    local inside <close> = assert(ns:listen("127.0.0.1", port, 4))
    assert.equal(home, tcplab.netns.id())
    assert.same({ inode }, listen_inodes(port))
    assert.same({ inside:inode() }, listen_inodes(port, ns))
    assert.equal(1, tcplab.counts{ netns = ns, states = "LISTEN", sport = port }.LISTEN)
    -- a client made in the namespace reaches the listener there (lo is up), not ours
    local c <close> = assert(ns:connect("127.0.0.1", port, 2))
    assert.equal(home, tcplab.netns.id())
    local conn <close> = assert(inside:accept(2))
    assert(c:write("x", 1))
    assert.equal("x", conn:read(1, 2))
    local s <close> = assert(ns:socket("inet6"))
    assert.equal("inet6", s:family())
  end)

  it_root("run() returns fn's results and comes back before raising what fn raised", function()
    local ns <close> = assert(tcplab.netns.new())
    local inside, a, b = ns:run(function(x, y) return tcplab.netns.id(), x, y end, 1, "two")
    assert.same({ ns:id(), 1, "two" }, { inside, a, b })
    local ok, err = pcall(ns.run, ns, function() error({ code = 7 }) end)
    assert.is_false(ok)
    assert.same({ code = 7 }, err)    -- the very value, not a copy as text
    assert.equal(home, tcplab.netns.id())
    assert.has_error(function() ns:run(42) end)
    assert.has_error(function() ns:socket("bogus") end)
    assert.has_error(function() ns:listen("127.0.0.1", 70000) end)
    assert.has_error(function() ns:connect("not an address", 1, 1) end)
    assert.equal(home, tcplab.netns.id())
    local refused, msg = ns:connect("127.0.0.1", 1, 1)   -- nothing listens there inside
    assert.is_nil(refused)
    assert.matches("refused", msg)
    ns:close()
    assert.has_error(function() ns:socket("inet") end, "attempt to use a closed netns")
    assert.is_false(tcplab.netns.owns(ns))
    assert.equal(home, tcplab.netns.id())
  end)

  it_root("an interrupt inside run() is raised in the caller's namespace", function()
    local ns <close> = assert(tcplab.netns.new())
    for _, n in ipairs({ 1, 10, 100, 1000 }) do
      local err = interrupted_after(n, function()
        return ns:run(function() for _ = 1, 1e6 do tcplab.netns.id() end end)
      end)
      assert.matches("interrupted!$", err)
      assert.equal(home, tcplab.netns.id(), "after an interrupt at instruction " .. n)
    end
  end)

  it_root("open() takes a path, a name or a pid; snapshot and counts take the handle", function()
    local ns <close> = assert(tcplab.netns.new())
    local again <close> = assert(tcplab.netns.open(ns:path()))
    assert.equal(ns:id(), again:id())
    local self <close> = assert(tcplab.netns.open(support.pid()))
    assert.equal(home, self:id())
    local none, err = tcplab.netns.open("tcplab-no-such-name")
    assert.is_nil(none)
    assert.matches("/run/netns/tcplab%-no%-such%-name", err)
    assert.has_error(function() tcplab.netns.open(0) end)
    assert.is_false(tcplab.netns.owns(again))   -- opened, not made: faults refuse it
  end)

  it_root("ns:capture(port) sees the segments on the namespace's lo", function()
    local ns <close> = assert(tcplab.netns.new())
    local inside <close> = assert(ns:listen("127.0.0.1", 0, 4))
    local _, port = inside:getsockname()
    local cap <close> = assert(ns:capture(port))
    assert.equal(home, tcplab.netns.id())
    local c <close> = assert(ns:connect("127.0.0.1", port, 2))
    local flags = {}
    for _, seg in ipairs(assert(cap:read(1))) do flags[#flags + 1] = seg.flags end
    assert.same({ "S", "SA", "A" }, flags)
  end)

  it_root("fault.drop{netns = ns} drops in that namespace only, lifted from the caller's", function()
    local ns <close> = assert(tcplab.netns.new())
    local inside <close> = assert(ns:listen("127.0.0.1", 0, 4))
    local _, port = inside:getsockname()
    local rule = assert(tcplab.fault.drop{ netns = ns, segment = "syn", dport = port })
    assert.equal(home, tcplab.netns.id())
    local c, err = ns:connect("127.0.0.1", port, 0.3)
    assert.is_nil(c)
    assert.equal("timeout", err)
    assert.is_true(rule:dropped() >= 1)
    assert.is_true(rule:lift())
    assert(ns:connect("127.0.0.1", port, 2)):close()
    assert.equal(home, tcplab.netns.id())
    local out = support.slurp("nft list tables 2>&1")
    assert.is_nil(out:match("tcplab"), "no table of ours in the caller's namespace")
    local opened <close> = assert(tcplab.netns.open())
    assert.has_error(function() tcplab.fault.drop{ netns = opened, segment = "syn" } end)
    assert.has_error(function() tcplab.fault.drop{ netns = "/proc/self/ns/net", segment = "syn" } end)
    assert(tcplab.fault.clear(ns))
  end)
end)

describe("a lab never moves the caller #kernel #root", function()
  local home, fds
  setup(function() home = tcplab.netns.id() fds = support.fd_count() end)

  it_root("start, every method and close return in the caller's namespace; counts{} counts the caller's", function()
    local mine <close>, port, inode = own_listener()
    local lab <close> = assert(tcplab.lab{ cmd = server(port), port = port })
    assert.equal(home, tcplab.netns.id(), "after start")
    -- the lab's server listens on the same port in its namespace: the caller's dumps see only ours
    local srv = assert(lab:listeners())[1]
    assert.are_not.equal(inode, srv.inode)
    assert.same({ inode }, listen_inodes(port))
    assert.equal(1, tcplab.counts{ states = "LISTEN", sport = port }.LISTEN)
    assert.same({ srv.inode }, listen_inodes(port, lab.netns))
    assert.equal(1, lab:counts{ states = "LISTEN" }.LISTEN)
    -- a client of the lab talks to the lab's server, not to our silent listener
    local c <close> = assert(lab:connect())
    assert(c:write("hello", 1))
    assert.equal("hello", c:read(5, 2))
    assert.equal(home, tcplab.netns.id(), "after connect")
    assert.equal(1, #assert(lab:server_sockets{ states = "ESTABLISHED" }))
    assert.is_table(lab:owners())
    assert.is_number(assert(lab:counters()):get("ListenDrops"))
    assert.equal(home, tcplab.netns.id(), "after the dumps")
    local rule = assert(lab:drop{ segment = "syn", dport = port })
    assert.equal(home, tcplab.netns.id(), "after drop")
    local late, err = lab:connect(0.3)
    assert.is_nil(late)
    assert.equal("timeout", err)
    assert.is_true(rule:lift())
    assert.equal(home, tcplab.netns.id(), "after lift")
    assert.has_error(function() lab:drop{ segment = "bogus" } end)
    assert.has_error(function() lab:snapshot{ states = "NO_SUCH_STATE" } end)
    assert.equal(home, tcplab.netns.id(), "after argument errors")
    local rec = assert(lab:trace())
    assert.equal(home, tcplab.netns.id(), "after trace")
    assert(lab:connect()):close()
    rec:stop()
    -- recorded in the lab's namespace: the client's handshake is there
    local seq = table.concat(rec:sequence("client"), " ")
    assert.matches("SYN_SENT>ESTABLISHED", seq, 1, true)
    if rec.method == "bpf" then   -- BPF itself saw them (not only the host-wide witness beside it)
      local own = 0
      for _, ev in ipairs(rec.recorded) do if ev.witness == nil then own = own + 1 end end
      assert.is_true(own > 0, "BPF recorded none of the lab's transitions")
    end
    assert.equal(home, tcplab.netns.id(), "after trace")
    assert.is_true(lab:close())
    assert.equal(home, tcplab.netns.id(), "after close")
    assert.same({ inode }, listen_inodes(port))
  end)

  it_root("a failed start returns in the caller's namespace: bad argument, command not found, early exit", function()
    assert.has_error(function() tcplab.lab{ cmd = "x", port = 1 } end)
    assert.equal(home, tcplab.netns.id())
    local lab, err = tcplab.lab{ cmd = { "./tcplab-no-such-server" }, port = 8080 }
    assert.is_nil(lab)
    assert.matches("command not found", err)
    assert.equal(home, tcplab.netns.id())
    lab, err = tcplab.lab{ cmd = { "lua5.4", "-e", "os.exit(3)" }, port = 8080 }
    assert.is_nil(lab)
    assert.matches("exited before listening", err)
    assert.equal(home, tcplab.netns.id())
  end)

  it_root("an interrupt anywhere in a lab's start or its calls leaves the caller at home", function()
    local _, port = own_listener()
    for _, n in ipairs({ 50, 500, 2000, 8000, 30000 }) do
      local err = interrupted_after(n, function()
        local lab <close> = assert(tcplab.lab{ cmd = server(port), port = port })
        assert(lab:connect()):close()
        assert(lab:snapshot())
        return true
      end)
      if err then assert.matches("interrupted!", err) end
      assert.equal(home, tcplab.netns.id(), "after an interrupt at instruction " .. n)
      collectgarbage() collectgarbage()   -- a lab the interrupt left unreferenced
    end
  end)

  it_root("checks run against a lab return in the caller's namespace", function()
    local lab <close> = assert(tcplab.lab{ cmd = server(8080), port = 8080 })
    local results = tcplab.checks.run_all(lab, { clients = 2, send = "ping\n" }, { "close_wait", "reset" })
    assert.equal(2, #results)
    for _, r in ipairs(results) do assert(r.ok, r.name .. ": " .. tostring(r.evidence)) end
    assert.equal(home, tcplab.netns.id())
    lab:close()
    assert.equal(home, tcplab.netns.id())
  end)

  it_root("leaves no fd and no namespace handle behind", function()
    collectgarbage() collectgarbage()
    assert.equal(fds, support.fd_count())
    assert.equal(home, tcplab.netns.id())
  end)
end)

describe("scenarios never move the caller #kernel #root", function()
  local home
  setup(function() home = tcplab.netns.id() end)

  local kit = require "tcplab.scenarios.kit"
  -- a scenario of the spec's own: what it saw while it ran
  local seen
  local function register(body)
    package.loaded["tcplab.scenarios.probe"] = { run = body }
    table.insert(tcplab.scenarios.NAMES, "probe")
  end
  local function unregister()
    for i, n in ipairs(tcplab.scenarios.NAMES) do
      if n == "probe" then table.remove(tcplab.scenarios.NAMES, i) break end
    end
    package.loaded["tcplab.scenarios.probe"] = nil
  end
  after_each(unregister)

  it_root("the body runs in a namespace of its own; the caller is home after it", function()
    register(function(opts)
      local s = kit.begin("probe", opts)
      seen = { id = tcplab.netns.id(), ours = tcplab.netns.is_ours() }
      return kit.finish(s)
    end)
    assert(tcplab.scenarios.run("probe"))
    assert.are_not.equal(home, seen.id)
    assert.is_true(seen.ours)
    assert.equal(home, tcplab.netns.id())
    assert.same({}, tcplab.trace.instances())
  end)

  it_root("after a scenario that raises, an unknown name, a bad option, an interrupt", function()
    register(function(opts)
      local s = kit.begin("probe", opts)
      assert(tcplab.fault.drop{ segment = "syn", dport = s.port })
      error("boom")
    end)
    local r, err = tcplab.scenarios.run("probe")
    assert.is_nil(r)
    assert.matches("boom", err)
    assert.equal(home, tcplab.netns.id())
    assert.is_nil(tcplab.scenarios.run("no_such_scenario"))
    assert.has_error(function() tcplab.scenarios.run("lifecycle", 42) end)
    assert.equal(home, tcplab.netns.id())
    for _, n in ipairs({ 100, 2000, 20000 }) do
      err = interrupted_after(n, function() return tcplab.scenarios.run("lifecycle") end)
      if err then assert.matches("interrupted!", err) end
      assert.equal(home, tcplab.netns.id(), "after an interrupt at instruction " .. n)
      assert.same({}, tcplab.trace.instances())
    end
  end)

  it_root("scenario runs return in the caller's namespace (scenarios_spec asserts it after each of them too)", function()
    for _, name in ipairs({ "lifecycle", "two_sockets", "reset", "syn_sent" }) do
      local r, err = tcplab.scenarios.run(name)
      assert(r, err)
      assert.equal(home, tcplab.netns.id(), name)
    end
  end)
end)
