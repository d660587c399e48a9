local support = require "support"
local tcplab = require "tcplab"

local run = support.tcplab

-- nstat -saz's lines (no history read or written) as name -> value, Tcp and TcpExt only.
local function nstat(prefix)
  local out = support.slurp((prefix or "") .. "nstat -saz 2>&1")
  local t, n = {}, 0
  for name, v in out:gmatch("\n(Tcp%w+)%s+(%d+)") do t[name] = tonumber(v) n = n + 1 end
  return t, n, out
end

describe("the kernel's TCP counters #kernel #root", function()
  local pid = support.pid()
  local name = ("tcplab-cnt-%d"):format(pid)
  local path = "/run/netns/" .. name
  local fds_before

  local function del() os.execute("ip netns del " .. name .. " 2>/dev/null") end

  -- n connects to a closed port and one handshake, made inside the namespace
  local function traffic(n)
    local home = assert(tcplab.netns.open())
    assert(tcplab.netns.enter(path))
    local ok, err = pcall(function()
      for _ = 1, n do
        local s = assert(tcplab.socket("inet"))
        assert.is_nil((s:connect("127.0.0.1", 9, 1)))
        s:close()
      end
      local l = assert(tcplab.listen("127.0.0.1", 0, 4))
      local c = assert(tcplab.connect("127.0.0.1", select(2, l:getsockname()), 2))
      c:close()
      l:close()
    end)
    assert(home:enter())
    home:close()
    assert(ok, err)
  end

  setup(function()
    if not support.is_root() then return end
    del()
    assert(os.execute(("ip netns add %s && ip -n %s link set lo up"):format(name, name)))
    fds_before = support.fd_count()
  end)
  teardown(function()
    if support.is_root() then del() end
  end)

  it("counters() of this namespace have nstat's names and set: Tcp less its settings, all of TcpExt", function()
    local c = assert(tcplab.counters())
    local theirs, n = nstat()
    assert.equal(n, #c.names)
    for k in pairs(theirs) do assert.is_number(c.values[k], k) end
    assert.is_nil(c.values.TcpCurrEstab)
    assert.is_number(c.settings.TcpCurrEstab)
    assert.equal(c.TcpExtListenOverflows, c:get("ListenOverflows"))
    assert.equal(c.values.TcpActiveOpens, c:get("TcpActiveOpens"))
    assert.matches("\n  TcpExtListenOverflows%s+%d+", tostring(c))
  end)

  support.as_root(it, pending, "a named namespace read is equal to nstat -az run in it (quiet between the reads)", function()
    traffic(3)
    tcplab.sleep(0.3)   -- delayed ACKs and the like settle; nothing else runs in this namespace
    local before = assert(tcplab.counters{ netns = name })
    local theirs, n, raw = nstat("nsenter --net=" .. path .. " ")
    local after = assert(tcplab.counters{ netns = name })
    assert.equal(#before.names, n, raw)
    local nonzero = 0
    for _, k in ipairs(before.names) do
      -- equal unless the counter moved between our two reads (then nstat's is between them)
      assert(theirs[k] >= before.values[k] and theirs[k] <= after.values[k],
             ("%s: nstat %s, ours %d..%d"):format(k, tostring(theirs[k]), before.values[k], after.values[k]))
      if before.values[k] ~= 0 then nonzero = nonzero + 1 end
    end
    assert.is_true(before.TcpActiveOpens >= 4 and before.TcpAttemptFails >= 3 and nonzero >= 6)
    assert.equal(path, tcplab.netns.resolve(name))
    assert.equal(fds_before, support.fd_count(), "the round trip into the namespace leaves no fd")
  end)

  support.as_root(it, pending, "delta(a, b) counts exactly what was done in between; pid:N reads the same namespace", function()
    local a = assert(tcplab.counters{ netns = name })
    traffic(5)
    local b = assert(tcplab.counters{ netns = name })
    local d = tcplab.counters.delta(a, b)
    assert.equal(6, d.TcpActiveOpens)       -- 5 refused + 1 handshake
    assert.equal(5, d.TcpAttemptFails)      -- the refused ones
    assert.equal(1, d.TcpPassiveOpens)
    assert.is_true(d.interval >= 0)
    assert.matches("ActiveOpens %+6", d:summary())
    assert.matches("AttemptFails %+5", d:summary({ "AttemptFails" }))
    assert.is_nil(d:summary({ "AttemptFails" }):find("ActiveOpens", 1, true))
    -- a process in the namespace: read through /proc/PID/net without entering it
    local p = io.popen(("exec ip netns exec %s sh -c 'echo $$; exec sleep 5'"):format(name))
    local child = tonumber(p:read("l"))
    local c = assert(tcplab.counters{ netns = "pid:" .. child })
    assert.equal(b.TcpActiveOpens, c.TcpActiveOpens)
    os.execute("kill " .. child)
    p:close()
    assert.equal(fds_before, support.fd_count())
  end)

  it("bad input: unknown counter names raise naming the name; a namespace that is gone is nil, message", function()
    assert.has_error(function() tcplab.counters{ names = { "ListenOverflows", "NoSuchThing" } } end,
      "bad argument #1 to 'counters' (unknown counter 'NoSuchThing' (names as nstat prints them, e.g. " ..
      "TcpExtListenOverflows or ListenOverflows; 145 known: tcplab nstat -z lists them))")
    local c = assert(tcplab.counters{ names = { "ListenDrops", "TcpActiveOpens" } })
    assert.same({ "TcpExtListenDrops", "TcpActiveOpens" }, c.names)
    assert.error_matches(function() c:get("Nope") end, "unknown counter 'Nope'")
    assert.error_matches(function() tcplab.counters{ netns = "" } end, "netns: a name, pid:PID or a path expected")
    assert.error_matches(function() tcplab.counters{ nets = "x" } end, "unknown option string \"nets\"")
    assert.error_matches(function() tcplab.counters.delta(c, {}) end, "#2 to 'delta' %(counters expected")
    local gone, err = tcplab.counters{ netns = "tcplab-no-such-ns-" .. pid }
    assert.is_nil(gone)
    assert.matches("namespace 'tcplab%-no%-such%-ns%-%d+': open /run/netns/tcplab%-no%-such%-ns%-%d+: No such file", err)
    -- a process that is gone
    local p = io.popen("sh -c 'echo $$'")
    local dead = tonumber(p:read("l"))
    p:close()
    gone, err = tcplab.counters{ netns = "pid:" .. dead }
    assert.is_nil(gone)
    assert.matches("pid:" .. dead, err, 1, true)
  end)
end)

describe("tcplab nstat #kernel #root", function()
  local pid = support.pid()
  local name = ("tcplab-nst-%d"):format(pid)
  local function del() os.execute("ip netns del " .. name .. " 2>/dev/null") end
  setup(function() if support.is_root() then del() assert(os.execute("ip netns add " .. name)) end end)
  teardown(function() if support.is_root() then del() end end)

  support.as_root(it, pending, "prints a namespace's counters as nstat does, in text, json and prometheus", function()
    local out, rc = run("nstat -z --netns " .. name)
    assert.equal(0, rc, out)
    local theirs, n = nstat("nsenter --net=/run/netns/" .. name .. " ")
    assert.equal("#netns " .. name .. "\n", out:match("^[^\n]*\n"))
    local lines = 0
    for k, v in out:gmatch("\n(Tcp%w+)%s+(%d+)") do
      lines = lines + 1
      assert.equal(theirs[k], tonumber(v), k)   -- nothing runs there: a quiet namespace
    end
    assert.equal(n, lines)
    out, rc = run("nstat --netns " .. name .. " --format json ListenOverflows TcpExtListenDrops")
    assert.equal(0, rc, out)
    local j = require("cjson").decode(out)
    assert.same({ TcpExtListenOverflows = 0, TcpExtListenDrops = 0 }, j.counters)
    assert.equal(name, j.netns)
    out, rc = run("nstat --netns all --format prometheus ListenOverflows")
    assert.equal(0, rc, out)
    assert.matches("# TYPE tcplab_netstat_TcpExt_ListenOverflows untyped\n", out, 1, true)
    assert.matches('\ntcplab_netstat_TcpExt_ListenOverflows{netns="' .. name .. '"} 0\n', out, 1, true)
    out = run("nstat --format prometheus ActiveOpens")
    assert.matches("\ntcplab_netstat_Tcp_ActiveOpens %d+\n", out)
  end)

  support.as_root(it, pending, "--interval prints what moved in each interval", function()
    local out, rc = run("nstat --netns " .. name .. " --interval 0.2 --count 2 ActiveOpens")
    assert.equal(0, rc, out)
    local frames = 0
    for v in out:gmatch("#netns " .. name:gsub("%-", "%%-") .. "  %(change over [%d.]+ s%)\nTcpActiveOpens%s+(%d+)") do
      frames = frames + 1
      assert.equal("0", v)
    end
    assert.equal(2, frames, out)
  end)

  it("bad input: usage errors exit 2, a namespace that is gone exits 1", function()
    for _, args in ipairs({ "--interval 0", "--interval nan", "--interval -1", "NoSuchCounter",
                            "--count 2", "--format prometheus --interval 1", "--netns ''" }) do
      local out, rc = run("nstat " .. args)
      assert.equal(2, rc, args .. ": " .. out)
      assert.matches("^tcplab: ", out)
    end
    local out, rc = run("nstat --netns tcplab-gone-" .. pid)
    assert.equal(1, rc, out)
    assert.matches("namespace 'tcplab%-gone%-%d+'", out)
  end)
end)
