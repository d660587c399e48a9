local tcplab = require "tcplab"
local support = require "support"

local function find(recs, pred)
  for _, r in ipairs(recs) do if pred(r) then return r end end
end

describe("snapshot #kernel #root", function()
  local srv, port
  before_each(function()
    srv = assert(tcplab.listen("127.0.0.1", 0, 8))
    port = select(2, srv:getsockname())
  end)
  after_each(function() srv:close() end)

  it("finds the test's own sockets with tuple, state and the fd's inode", function()
    local cli <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    local conn <close> = assert(srv:accept(2))
    local cport = select(2, cli:getsockname())
    local recs = assert(tcplab.snapshot{ sport = port })
    local lst = find(recs, function(r) return r.state == "LISTEN" end)
    local acc = find(recs, function(r) return r.state == "ESTABLISHED" end)
    assert.truthy(lst)
    assert.truthy(acc)
    assert.equal(support.fd_inode(srv:fileno()), lst.inode)
    assert.equal(support.fd_inode(conn:fileno()), acc.inode)
    assert.same({ "inet", "127.0.0.1", port, "127.0.0.1", cport },
                { acc.family, acc.src, acc.sport, acc.dst, acc.dport })
    assert.equal(conn:cookie(), acc.cookie)
    local mine = assert(tcplab.snapshot{ sport = cport, dport = port })
    assert.equal(1, #mine)
    assert.equal(support.fd_inode(cli:fileno()), mine[1].inode)
    assert.equal("ESTABLISHED", mine[1].state)
  end)

  it("shows the LISTEN accept queue as rqueue and the backlog as wqueue", function()
    local clients = {}
    for i = 1, 3 do clients[i] = assert(tcplab.connect("127.0.0.1", port, 2)) end
    local lst
    for _ = 1, 200 do  -- the third ACK is processed in softirq; bounded wait
      lst = assert(tcplab.snapshot{ sport = port, states = "LISTEN" })[1]
      if lst.rqueue == 3 then break end
      tcplab.core.sleep(0.005)
    end
    assert.equal(3, lst.rqueue)
    assert.equal(8, lst.wqueue)
    for _, c in ipairs(clients) do c:close() end
  end)

  it("sees TIME_WAIT, which TCP_INFO cannot, with its timer", function()
    local cli = assert(tcplab.connect("127.0.0.1", port, 2))
    local conn <close> = assert(srv:accept(2))
    local t = tcplab.observe.tuple(cli)
    cli:close()
    assert.equal("", conn:read(10, 2))
    conn:close()
    assert.is_true(tcplab.observe.await(t, "TIME_WAIT", 2))
    local _, rec = tcplab.observe.state(t)
    assert.equal("timewait", rec.timer)
    assert.is_true(rec.expires_ms > 0 and rec.expires_ms <= 60000)
    assert.equal(0, rec.inode)
  end)

  it("filters by state, family and port in the kernel", function()
    -- on a live host other sockets may share the port number (a client's
    -- ephemeral port, a TIME_WAIT): judge by our listener's inode
    local l6 <close> = assert(tcplab.listen("::1", 0, 4))
    local p6, ino = select(2, l6:getsockname()), l6:inode()
    local function has_ours(f)
      local found = false
      for _, r in ipairs(assert(tcplab.snapshot(f))) do
        if f.family then assert.equal(f.family, r.family) end
        if f.sport then assert.equal(f.sport, r.sport) end
        if f.states == "LISTEN" then assert.equal("LISTEN", r.state) end
        found = found or r.inode == ino
      end
      return found
    end
    assert.is_false(has_ours{ sport = p6, family = "inet" })
    assert.is_true(has_ours{ sport = p6, family = "inet6" })
    assert.is_true(has_ours{ sport = p6 })
    assert.is_true(has_ours{ states = "LISTEN" })
    assert.is_false(has_ours{ sport = p6, states = { "ESTAB", "time-wait" } })
    assert.is_false(has_ours{ sport = p6, dport = 1 })
  end)

  it("adds tcp_info when info = true", function()
    local cli <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    local conn <close> = assert(srv:accept(2))
    local rec = assert(tcplab.snapshot{ sport = port, states = "ESTABLISHED", info = true })[1]
    assert.equal("table", type(rec.info))
    assert.equal("ESTABLISHED", rec.info.state)
    assert.is_true(rec.info.snd_cwnd > 0)
    assert.is_nil(assert(tcplab.snapshot{ sport = port, states = "ESTABLISHED" })[1].info)
  end)

  it("columns = true gives the same records as columns of arrays", function()
    local clients = {}
    for i = 1, 4 do clients[i] = assert(tcplab.connect("127.0.0.1", port, 2)) end
    local rows = assert(tcplab.snapshot{ sport = port })
    local cols = assert(tcplab.snapshot{ sport = port, columns = true })
    assert.equal(#rows, cols.n)
    assert.equal(5, cols.n)   -- the listener and 4 queued connections
    local fields = { "state", "family", "src", "sport", "dst", "dport", "rqueue", "wqueue",
                     "uid", "inode", "cookie", "timer", "expires_ms", "retrans" }
    local function key(get) return table.concat((function()
      local t = {} for _, f in ipairs(fields) do t[#t + 1] = tostring(get(f)) end return t end)(), " ") end
    local a, b = {}, {}
    for i = 1, #rows do
      a[i] = key(function(f) return rows[i][f] end)
      b[i] = key(function(f) return cols[f][i] end)
    end
    table.sort(a) table.sort(b)
    assert.same(a, b)
    for _, c in ipairs(clients) do c:close() end
  end)

  it("counts agrees with #snapshot per state", function()
    local socks = {}
    for i = 1, 5 do socks[#socks + 1] = assert(tcplab.connect("127.0.0.1", port, 2)) end
    for i = 1, 5 do socks[#socks + 1] = assert(srv:accept(2)) end
    local closed = tcplab.observe.tuple(socks[1])
    socks[1]:close()
    assert(tcplab.await_state(closed, "FIN_WAIT2", 2))   -- let the close settle first
    -- on a live host other sockets may change between the two dumps: a few tries
    local counts, by_state
    for _ = 1, 5 do
      counts, by_state = assert(tcplab.counts()), {}
      for _, r in ipairs(assert(tcplab.snapshot())) do by_state[r.state] = (by_state[r.state] or 0) + 1 end
      if counts.ESTABLISHED == by_state.ESTABLISHED and counts.LISTEN == by_state.LISTEN
         and counts.TIME_WAIT == by_state.TIME_WAIT and counts.FIN_WAIT2 == by_state.FIN_WAIT2 then break end
    end
    assert.same(by_state, counts)
    for _, s in ipairs(socks) do s:close() end
  end)

  it("leaves the garbage collector running, as it found it", function()
    assert.is_true(collectgarbage("isrunning"))
    assert(tcplab.snapshot())
    assert.is_true(collectgarbage("isrunning"))
    collectgarbage("stop")
    assert(tcplab.snapshot{ columns = true })
    assert.is_false(collectgarbage("isrunning"))
    collectgarbage("restart")
  end)

  it("asking for LISTEN only counts just the listeners", function()
    local cli <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    local counts = assert(tcplab.counts{ states = "LISTEN" })
    assert.is_nil(counts.ESTABLISHED)
    assert.is_true(counts.LISTEN >= 1)
  end)
end)

describe("snapshot of another namespace #kernel #root", function()
  support.as_root(it, pending, "reads /run/netns/NAME without moving the process", function()
    local name = "tcplab-spec-" .. support.pid()
    local dir = os.tmpname()
    assert(os.execute("ip netns add " .. name))
    -- a helper process inside that namespace holds a listener on port 7777
    local script = "package.path='lua/?.lua;lua/?/init.lua;'..package.path " ..
      "package.cpath='lua/?.so;'..package.cpath local t=require'tcplab' " ..
      "local l=assert(t.listen('0.0.0.0',7777,5)) io.open('" .. dir .. "','w'):write('ready'):close() t.core.sleep(10)"
    assert(os.execute(("ip netns exec %s lua5.4 -e \"%s\" & echo $! > %s.pid")
      :format(name, script, dir)))
    local ok, err = pcall(function()
      local ready
      for _ = 1, 400 do
        local f = io.open(dir)
        ready = f and f:read("a") == "ready"
        if f then f:close() end
        if ready then break end
        tcplab.core.sleep(0.01)
      end
      assert.is_true(ready)
      local before = tcplab.netns.id()
      local recs = assert(tcplab.snapshot{ netns = "/run/netns/" .. name })
      assert.equal(1, #recs)
      assert.same({ "LISTEN", 7777, 5 }, { recs[1].state, recs[1].sport, recs[1].wqueue })
      assert.same({ LISTEN = 1 }, tcplab.counts{ netns = "/run/netns/" .. name })
      assert.equal(before, tcplab.netns.id())  -- we did not move
      assert.same({ nil, "open /run/netns/no-such-" .. name .. ": No such file or directory", 2 },
                  { tcplab.counts{ netns = "/run/netns/no-such-" .. name } })
    end)
    os.execute(("kill $(cat %s.pid) 2>/dev/null; ip netns del %s; rm -f %s %s.pid"):format(dir, name, dir, dir))
    assert(ok, err)
  end)
end)
