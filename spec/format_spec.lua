local support = require "support"
local tcplab = require "tcplab"
local cjson = require "cjson"

local run = support.tcplab

-- A listener of ours with backlog 7 and one client it has not accepted:
-- the accept queue holds 1. Everything asserted is filtered on its port.
local function fixture()
  local l = assert(tcplab.listen("127.0.0.1", 0, 7))
  local port = select(2, l:getsockname())
  local c = assert(tcplab.connect("127.0.0.1", port, 2))
  assert.truthy(support.wait_for(function()
    local s = tcplab.snapshot{ sport = port, states = "LISTEN" }
    return s and s[1] and s[1].rqueue == 1
  end), "the handshake completed on the server")
  return l, c, port, select(2, c:getsockname())
end

-- the command runs in this process's namespace, as its child (no --netns: that needs root)
local function netns() return "" end

describe("--format json", function()
  it("prints one object per socket with the Lua records' field names, numbers as numbers", function()
    local l0, c0, port = fixture()
    local l <close> = l0
    local c <close> = c0
    local out, rc = run("list --format json " .. netns() .. "--state listen --sport " .. port)
    assert.equal(0, rc, out)
    local got = cjson.decode(out)
    local want = tcplab.snapshot{ states = "LISTEN", sport = port }
    assert.equal(1, #got)
    for k, v in pairs(want[1]) do
      if k ~= "expires_ms" then assert.equal(v, got[1][k], k) end
      assert.equal(type(v), type(got[1][k]), k)
    end
    assert.equal(support.count(want[1]), support.count(got[1]))
    assert.equal(l:inode(), got[1].inode)
    assert.equal(7, got[1].wqueue)
  end)

  it("prints [] for an empty list, {} for no counts", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    local out, rc = run("list --format json " .. netns() .. "--state closing --sport " .. port)
    assert.equal(0, rc, out)
    assert.equal("[]\n", out)
    out = run("counts --format json " .. netns() .. "--state closing --sport " .. port)
    assert.equal("{}\n", out)
    out = run("counts --format json " .. netns() .. "--state listen --sport " .. port)
    assert.same({ LISTEN = 1 }, cjson.decode(out))
  end)

  it("summary: the same table as tcplab.summary, full_listeners a list even when empty", function()
    local l0, c0, port = fixture()
    local l <close> = l0
    local c <close> = c0
    local out, rc = run("summary --format json " .. netns() .. "--sport " .. port)
    assert.equal(0, rc, out)
    local got = cjson.decode(out)
    assert.matches('"full_listeners":%[%]', out)
    assert.same(tcplab.summary{ sport = port }, got)
    assert.equal(1, got.states.LISTEN)
    assert.equal(1, got.states.ESTABLISHED)
  end)
end)

describe("--format prometheus", function()
  it("names all eleven states with node_exporter's labels, zeros included, with HELP and TYPE", function()
    local out, rc = run("counts --format prometheus " .. netns())
    assert.equal(0, rc, out)
    assert.matches("^# HELP tcplab_tcp_connection_states [^\n]+\n# TYPE tcplab_tcp_connection_states gauge\n", out)
    local states = require "tcplab.states"
    for _, name in ipairs(states.list) do
      local n = select(2, out:gsub('\ntcplab_tcp_connection_states{state="' .. states.label[name] .. '"} %d+\n', "%0"))
      assert.equal(1, n, name)
    end
    assert.equal("established", states.label.ESTABLISHED)
    assert.is_nil(out:find("node_", 1, true) and out:find("\nnode_", 1, true))
  end)

  it("counts per local port for listeners and --port, with the listener's queue and backlog", function()
    local l0, c0, port, cport = fixture()
    local l <close> = l0
    local c <close> = c0
    local out, rc = run("counts --format prometheus " .. netns() .. "--port " .. cport)
    assert.equal(0, rc, out)
    local function value(series)
      return tonumber(out:match("\n" .. series:gsub("[%[%]{}%(%)%.%-%+]", "%%%0") .. " (%d+)\n"))
    end
    assert.equal(1, value(('tcplab_tcp_port_connection_states{port="%d",state="listen"}'):format(port)))
    -- the queued connection is an ESTABLISHED socket with the listener's port
    assert.equal(1, value(('tcplab_tcp_port_connection_states{port="%d",state="established"}'):format(port)))
    assert.equal(0, value(('tcplab_tcp_port_connection_states{port="%d",state="time_wait"}'):format(port)))
    assert.equal(1, value(('tcplab_tcp_port_connection_states{port="%d",state="established"}'):format(cport)))
    assert.equal(1, value(('tcplab_tcp_listen_queue{port="%d"}'):format(port)))
    assert.equal(7, value(('tcplab_tcp_listen_backlog{port="%d"}'):format(port)))
    assert.matches("\n# TYPE tcplab_tcp_listen_queue gauge\n", out)
    assert.matches("\n# TYPE tcplab_tcp_listen_backlog gauge\n", out)
  end)
end)

describe("tcplab.summary", function()
  it("counts a listener whose accept queue is over its backlog as full (queue > backlog)", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0, 1))
    local port = select(2, l:getsockname())
    local c1 <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    local c2 <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    local s = support.wait_for(function()
      local t = assert(tcplab.summary{ sport = port })
      return #t.full_listeners == 1 and t
    end)
    assert.truthy(s, "the queue reached backlog + 1")
    assert.same({ family = "inet", src = "127.0.0.1", port = port, queue = 2, backlog = 1, inode = l:inode() },
                s.full_listeners[1])
    assert.equal(1, s.listeners)
    assert.equal(s.total, s.families.inet + s.families.inet6)
    -- the two queued connections have no inode yet (not accepted) and are no orphans
    local all = assert(tcplab.summary{ sport = port, states = "ESTABLISHED" })
    assert.equal(2, all.states.ESTABLISHED)
    assert.equal(0, all.orphans)
  end)

  it("counts a closed client still finishing (inode 0, not TIME_WAIT) as an orphan", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    local c = assert(tcplab.connect("127.0.0.1", port, 2))
    local conn <close> = assert(l:accept(2))
    c:close()   -- FIN_WAIT1/FIN_WAIT2: no process holds it any more
    local s = support.wait_for(function()
      local t = assert(tcplab.summary{ dport = port })
      return t.orphans == 1 and t
    end)
    assert.truthy(s)
    assert.equal(0, s.time_wait)
    conn:close()   -- the client goes on to TIME_WAIT, which is no orphan
    s = support.wait_for(function()
      local t = assert(tcplab.summary{ dport = port })
      return t.time_wait == 1 and t
    end)
    assert.truthy(s)
    assert.equal(0, s.orphans)
  end)

  it("raises on a bad filter, naming the function and the field", function()
    assert.has_error(function() tcplab.summary("x") end, "bad argument #1 to 'summary' (filter table expected, got string)")
    assert.error_matches(function() tcplab.summary{ bogus = 1 } end, "unknown filter field 'bogus'")
    assert.error_matches(function() tcplab.tcpstat{ ports = { 70000 } } end,
      "bad argument #1 to 'tcpstat' %(ports%[1%]: port 0..65535 expected, got 70000%)")
    assert.error_matches(function() tcplab.tcpstat{ ports = 5 } end, "ports: list of ports expected")
  end)
end)

describe("--format on the command line", function()
  it("refuses an unknown format with exit status 2, naming it", function()
    for _, cmd in ipairs({ "list", "counts", "stat", "summary" }) do
      local out, rc = run(cmd .. " --format xml")
      assert.equal(2, rc, out)
      assert.matches("'%-%-format' must be one of 'text', 'json', 'prometheus'", out)
      assert.is_nil(out:find("traceback", 1, true))
    end
    local out, rc = run("namespaces --format prometheus")
    assert.equal(2, rc, out)
  end)

  it("stat --format json gives the style's own names and counts", function()
    local out, rc = run("stat --style ss --format json " .. netns())
    assert.equal(0, rc, out)
    local got = cjson.decode(out)
    for name, n in pairs(got) do
      assert.equal("number", type(n))
      assert.is_nil(name:find("_", 1, true), name)   -- ss spellings: ESTAB, TIME-WAIT
    end
  end)
end)

describe("stat --format prometheus", function()
  it("leaves out the listen series in netstat's style (netstat -n counts no listener) and has all eleven in ss's", function()
    local netstat = support.tcplab("stat --format prometheus")
    local ss = support.tcplab("stat --style ss --format prometheus")
    local function series(text)
      local n = 0
      for _ in text:gmatch("\ntcplab_tcp_connection_states{state=\"[a-z_0-9]+\"} %d+") do n = n + 1 end
      return n
    end
    assert.equal(10, series(netstat))
    assert.is_nil(netstat:find('state="listen"', 1, true))
    assert.equal(11, series(ss))
  end)
end)
