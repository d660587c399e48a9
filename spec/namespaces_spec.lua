local support = require "support"
local tcplab = require "tcplab"

local run = support.tcplab

describe("every namespace #kernel #root", function()
  local pid = support.pid()
  local a, b = ("tcplab-spec-%d-a"):format(pid), ("tcplab-spec-%d-b"):format(pid)

  local function del(name) os.execute("ip netns del " .. name .. " 2>/dev/null") end

  support.as_root(it, pending, "namespaces() lists ours by name; counts{netns = 'all'} counts each; --netns NAME", function()
    local listener, home
    local ok, err = pcall(function()
      assert(os.execute(("ip netns add %s && ip netns add %s"):format(a, b)))
      home = assert(tcplab.netns.open())
      assert(tcplab.netns.enter("/run/netns/" .. a))
      local l, lerr = tcplab.listen("127.0.0.1", 0, 5)
      assert(home:enter())
      listener = assert(l, lerr)
      local port = select(2, listener:getsockname())

      local list = tcplab.namespaces()
      local by_name, ids = {}, {}
      for _, ns in ipairs(list) do
        by_name[ns.name] = ns
        assert.is_nil(ids[ns.id], "one entry per inode")
        ids[ns.id] = true
      end
      for _, name in ipairs({ a, b }) do
        assert.truthy(by_name[name], name)
        assert.equal("/run/netns/" .. name, by_name[name].path)
        assert.equal(tcplab.netns.id("/run/netns/" .. name), by_name[name].id)
      end
      assert.truthy(ids[tcplab.netns.id()], "this process's namespace is listed")

      local counts, seen = tcplab.counts{ netns = "all" }
      assert.same({ LISTEN = 1 }, counts[a])
      assert.same({}, counts[b])
      assert.truthy(#seen >= 2)
      local only = tcplab.counts{ netns = "all", sport = port, states = "LISTEN" }
      assert.same({ LISTEN = 1 }, only[a])

      local out, rc = run("counts --netns " .. a)
      assert.equal(0, rc, out)
      assert.equal("LISTEN\t1\n", out)
      out, rc = run("counts --netns all --sport " .. port)
      assert.equal(0, rc, out)
      assert.matches("\n?" .. a:gsub("%-", "%%-") .. "\tLISTEN\t1\n", out)
      out, rc = run("counts --format prometheus --netns all --sport " .. port)
      assert.equal(0, rc, out)
      assert.matches(('tcplab_tcp_port_connection_states{netns="%s",port="%d",state="listen"} 1\n'):format(a, port):gsub("%-", "%%-"), out)
      assert.matches(('tcplab_tcp_listen_backlog{netns="%s",port="%d"} 5\n'):format(a, port):gsub("%-", "%%-"), out)
      out, rc = run("namespaces --format json")
      assert.equal(0, rc, out)
      assert.matches(('"name":"%s"'):format(b):gsub("%-", "%%-"), out)
    end)
    if listener then listener:close() end
    if home then home:enter() home:close() end
    del(a) del(b)
    assert.is_nil(io.open("/run/netns/" .. a), "namespace a left behind")
    assert.is_nil(io.open("/run/netns/" .. b), "namespace b left behind")
    assert(ok, err)
  end)

  it("--netns NAME that does not exist fails with exit status 1, naming the path", function()
    local name = ("tcplab-spec-%d-none"):format(pid)
    local out, rc = run("counts --netns " .. name)
    assert.equal(1, rc, out)
    assert.matches("/run/netns/" .. name:gsub("%-", "%%-"), out)
    out, rc = run("list --netns pid:999999999")
    assert.equal(1, rc, out)
    assert.matches("/proc/999999999/ns/net", out)
    out, rc = run("summary --netns all")
    assert.equal(1, rc, out)
    assert.matches("/run/netns/all", out)
  end)

  it("netns.resolve: a path as it is, a name under /run/netns, pid:N; errors name the path", function()
    assert.equal("/proc/1/ns/net", tcplab.netns.resolve("/proc/1/ns/net"))
    assert.equal("/proc/" .. pid .. "/ns/net", tcplab.netns.resolve("pid:" .. pid))
    local path, err = tcplab.netns.resolve("nosuch-" .. pid)
    assert.is_nil(path)
    assert.matches("/run/netns/nosuch%-" .. pid, err)
    assert.is_nil((tcplab.netns.resolve(42)))
    assert.matches("name or path expected", select(2, tcplab.netns.resolve(nil)))
  end)
  support.as_root(it, pending, "a name with a newline or a byte that is not UTF-8 is listed, counted, and valid JSON and Prometheus", function()
    local nl, bad = ("tcplab-spec-%d-n\nl"):format(pid), ("tcplab-spec-%d-b\xffd"):format(pid)
    local bad_shown = ("tcplab-spec-%d-b\\xFFd"):format(pid)   -- what JSON and Prometheus say
    local listener, home
    local ok, err = pcall(function()
      assert(os.execute(("ip netns add %s && ip netns add %s"):format(support.shq(nl), support.shq(bad))))
      home = assert(tcplab.netns.open())
      assert(tcplab.netns.enter("/run/netns/" .. nl))
      local l, lerr = tcplab.listen("127.0.0.1", 0, 3)
      assert(home:enter())
      listener = assert(l, lerr)
      local names = {}
      for _, ns in ipairs(tcplab.namespaces()) do names[ns.name] = ns.path end
      assert.equal("/run/netns/" .. nl, names[nl])
      assert.equal("/run/netns/" .. bad, names[bad])
      local counts = tcplab.counts{ netns = "all" }
      assert.same({ LISTEN = 1 }, counts[nl])
      assert.same({}, counts[bad])

      local out, rc = run("namespaces --format json")
      assert.equal(0, rc, out)
      assert.truthy(utf8.len(out), "UTF-8")
      local seen = {}
      for _, e in ipairs(require("cjson").decode(out)) do seen[e.name] = true end
      assert.truthy(seen[nl], "the newline name, whole")
      assert.truthy(seen[bad_shown], "the stray byte as \\xFF")
      out, rc = run("counts --netns all --format json")
      assert.equal(0, rc, out)
      assert.truthy(utf8.len(out), "UTF-8")
      assert.same({ LISTEN = 1 }, require("cjson").decode(out)[nl])

      out, rc = run("counts --netns all --format prometheus")
      assert.equal(0, rc, out)
      assert.truthy(utf8.len(out), "UTF-8")
      local want_nl = ('tcplab_tcp_connection_states{netns="tcplab-spec-%d-n\\nl",state="listen"} 1\n'):format(pid)
      local want_bad = ('tcplab_tcp_connection_states{netns="tcplab-spec-%d-b\\\\xFFd",state="listen"} 0\n'):format(pid)
      assert.truthy(out:find(want_nl, 1, true), out)
      assert.truthy(out:find(want_bad, 1, true), out)
      if os.execute("command -v promtool >/dev/null 2>&1") == true then
        local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
        local f = assert(io.open(dir .. "/m.prom", "wb"))
        f:write(out)
        f:close()
        local check = support.slurp("env -u LD_PRELOAD promtool check metrics <" .. dir .. "/m.prom 2>&1; echo rc=$?")
        os.execute("rm -rf " .. dir)
        assert.equal("rc=0\n", check)
      end
    end)
    if listener then listener:close() end
    if home then home:enter() home:close() end
    os.execute(("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null"):format(support.shq(nl), support.shq(bad)))
    assert.is_nil(io.open("/run/netns/" .. nl), "namespace left behind")
    assert.is_nil(io.open("/run/netns/" .. bad), "namespace left behind")
    assert(ok, err)
  end)
end)
