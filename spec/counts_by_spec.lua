local tcplab = require "tcplab"
local support = require "support"

describe("counts{ by = ... } #kernel #root", function()
  if not support.is_root() then
    pending("needs root: a network namespace of our own")
    return
  end
  setup(function() assert(tcplab.netns.unshare()) end)

  local keep, p1, p2
  before_each(function()
    keep = {}
    local function hold(s) keep[#keep + 1] = s return s end
    local a = hold(assert(tcplab.listen("127.0.0.1", 0, 16)))
    local b = hold(assert(tcplab.listen("::1", 0, 16)))
    p1, p2 = select(2, a:getsockname()), select(2, b:getsockname())
    for i = 1, 3 do   -- 3 to p1 from 127.0.0.2, 2 to p2 from ::1
      local c = hold(assert(tcplab.socket("inet")))
      assert(c:bind("127.0.0.2", 0))
      assert(c:connect("127.0.0.1", p1, 2))
      hold(assert(a:accept(2)))
      if i <= 2 then
        hold(assert(tcplab.connect("::1", p2, 2)))
        hold(assert(b:accept(2)))
      end
    end
  end)
  after_each(function() for _, s in ipairs(keep) do s:close() end end)

  it("counts each local port's states in one dump", function()
    local by = assert(tcplab.counts{ by = "sport", states = { "LISTEN", "ESTABLISHED" } })
    assert.same({ LISTEN = 1, ESTABLISHED = 3 }, by[p1])
    assert.same({ LISTEN = 1, ESTABLISHED = 2 }, by[p2])
    local to = assert(tcplab.counts{ by = "dport", states = "ESTABLISHED" })
    assert.same({ ESTABLISHED = 3 }, to[p1])
    assert.same({ ESTABLISHED = 2 }, to[p2])
  end)

  it("counts by address, v4 and v6 keys as strings", function()
    local src = assert(tcplab.counts{ by = "src", states = "ESTABLISHED" })
    assert.same({ ESTABLISHED = 3 }, src["127.0.0.2"])
    assert.same({ ESTABLISHED = 3 }, src["127.0.0.1"])
    assert.same({ ESTABLISHED = 4 }, src["::1"])
    local dst = assert(tcplab.counts{ by = "dst", states = "LISTEN", family = "inet6" })
    assert.same({ ["::"] = { LISTEN = 1 } }, dst)
  end)

  it("keeps every key past the table's first growth: 200 listeners give 200 ports", function()
    -- each port is met twice in the dump: its listener, later its accepted
    -- socket (found again only if the grown table still finds the key)
    local ports = {}
    for _ = 1, 200 do
      local l = assert(tcplab.listen("127.0.0.1", 0, 1))
      keep[#keep + 1] = l
      local port = select(2, l:getsockname())
      ports[#ports + 1] = port
      keep[#keep + 1] = assert(tcplab.connect("127.0.0.1", port, 2))
      keep[#keep + 1] = assert(l:accept(2))
    end
    -- inet only: before_each's ::1 listener may draw one of these port numbers
    -- (a port of its own family; seen once in a full run: LISTEN 2 on a port)
    local f = { states = { "LISTEN", "ESTABLISHED" }, family = "inet" }
    local want = {}
    for _, r in ipairs(assert(tcplab.snapshot(f))) do
      local t = want[r.sport] or {}
      want[r.sport] = t
      t[r.state] = (t[r.state] or 0) + 1
    end
    f.by = "sport"
    local by = assert(tcplab.counts(f))
    for _, p in ipairs(ports) do
      assert.equal(1, by[p] and by[p].LISTEN, "port " .. p)
      assert.is_true(by[p].ESTABLISHED >= 1, "port " .. p)
    end
    assert.is_true(support.count(want) >= 202)
    assert.same(want, by)
  end)

  it("agrees with a snapshot of the same sockets, key by key", function()
    local f = { states = { "LISTEN", "ESTABLISHED" } }
    for _, key in ipairs({ "sport", "dport", "src", "dst" }) do
      f.by = nil
      local want = {}
      for _, r in ipairs(assert(tcplab.snapshot(f))) do
        local t = want[r[key]] or {}
        want[r[key]] = t
        t[r.state] = (t[r.state] or 0) + 1
      end
      f.by = key
      assert.same(want, assert(tcplab.counts(f)), key)
    end
  end)
end)

describe("tcplab counts --by #kernel #root", function()
  it("prints KEY STATE N per port from the command line, and JSON keyed by strings", function()
    local tcplab = require "tcplab"
    local support = require "support"
    local l <close> = assert(tcplab.listen("127.0.0.1", 0, 4))
    local port = select(2, l:getsockname())
    local c <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    local out, rc = support.tcplab(("counts --by sport --sport %d"):format(port))
    assert.equal(0, rc, out)
    assert.equal(("%d\tESTABLISHED\t1\n%d\tLISTEN\t1\n"):format(port, port), out)
    out, rc = support.tcplab(("counts --by sport --sport %d --format json"):format(port))
    assert.equal(0, rc, out)
    assert.equal(('{"%d":{"ESTABLISHED":1,"LISTEN":1}}\n'):format(port), out:gsub('"LISTEN":1,"ESTABLISHED":1', '"ESTABLISHED":1,"LISTEN":1'))
    for _, args in ipairs({ "counts --by port", "counts --by sport --format prometheus", "counts --by sport --netns all" }) do
      local o, r = support.tcplab(args)
      assert.equal(2, r, args .. ": " .. o)
    end
  end)
end)
