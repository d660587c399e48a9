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

describe("--format json #kernel #root", function()
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

describe("--format prometheus #kernel #root", function()
  it("escapes backslash, double quote and newline in label values; promtool accepts the result", function()
    local name = 'odd"ns\\x\nnext'
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    require("tcplab.format.prometheus").counts({ [name] = { LISTEN = 2 } }, f, true)
    f:close()
    local text = support.slurp("cat " .. path)
    local check = os.execute("command -v promtool >/dev/null 2>&1") == true
      and support.slurp("env -u LD_PRELOAD promtool check metrics <" .. path .. " 2>&1; echo rc=$?")
    os.remove(path)
    assert.truthy(text:find('\ntcplab_tcp_connection_states{netns="odd\\"ns\\\\x\\nnext",state="listen"} 2\n', 1, true), text)
    assert.is_nil(text:find("\nnext", 1, true), "a raw newline inside a label value")
    if check then assert.equal("rc=0\n", check) end
  end)

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

describe("tcplab.summary #kernel #root", function()
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
      "bad argument #1 to 'tcpstat' %(ports%[1%]: port 1..65535 expected, got 70000%)")
    assert.error_matches(function() tcplab.tcpstat{ ports = 5 } end, "ports: list of ports expected")
  end)
end)

describe("--format on the command line #kernel #root", function()
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

describe("stat --format prometheus #kernel #root", function()
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

-- Names come from outside: a process's comm, a namespace's name. Bytes that
-- are not UTF-8 are written \xNN; JSON stays JSON, Prometheus stays valid.
describe("names with bytes that are not UTF-8, quotes, backslashes, newlines", function()
  local NOPRELOAD = "env -u LD_PRELOAD "
  local function promtool(text)
    if os.execute("command -v promtool >/dev/null 2>&1") ~= true then return nil end
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    local f = assert(io.open(dir .. "/m.prom", "wb"))
    f:write(text)
    f:close()
    local out = support.slurp(NOPRELOAD .. "promtool check metrics <" .. dir .. "/m.prom 2>&1; echo rc=$?")
    os.execute("rm -rf " .. dir)
    return out
  end

  it("list --owners --format json: a comm with a stray byte is valid JSON, the byte written \\xNN", function()
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    local exe = dir .. "/lu\xffa"   -- the comm is the executable's name
    assert(os.execute("cp \"$(command -v lua5.4)\" " .. support.shq(exe)))
    local script = [[local l = assert(require("tcplab").listen("127.0.0.1", 0))
      io.write(select(2, l:getsockname()), "\n") io.stdout:flush() io.read("a")]]
    local child = assert(io.popen(("%s -e %s >%s/port"):format(support.shq(exe), support.shq(script), dir), "w"))
    local port = support.wait_for(function()
      return tonumber(support.slurp("cat " .. dir .. "/port 2>/dev/null"):match("^(%d+)\n"))
    end, 10)
    local out, rc = run("list --owners --format json --state listen --sport " .. tostring(port))
    child:close()   -- stdin EOF: the child ends
    os.execute("rm -rf " .. dir)
    assert.truthy(port, "the child listens")
    assert.equal(0, rc, out)
    assert.truthy(utf8.len(out), "the output is UTF-8")
    local got = cjson.decode(out)
    assert.equal(1, #got)
    assert.equal("lu\\xFFa", got[1].owners[1].comm)
  end)

  it("prometheus: two namespaces' listeners on one port are two series (the netns label on every listener gauge)", function()
    local prometheus = require "tcplab.format.prometheus"
    local zeros = require("tcplab.tally").zeros
    local list = {
      { netns = "a", states = zeros(), ports = {}, listeners = { { port = 80, queue = 1, backlog = 5 } } },
      { netns = "b", states = zeros(), ports = {}, listeners = { { port = 80, queue = 2, backlog = 7 } } },
    }
    local buf = tcplab.export.buffer()
    prometheus.tcpstat(list, buf)
    local text = buf:text()
    for _, want in ipairs({ 'tcplab_tcp_listen_queue{netns="a",port="80"} 1', 'tcplab_tcp_listen_queue{netns="b",port="80"} 2',
                            'tcplab_tcp_listen_backlog{netns="a",port="80"} 5', 'tcplab_tcp_listen_backlog{netns="b",port="80"} 7' }) do
      assert.truthy(text:find("\n" .. want .. "\n", 1, true), want .. " in\n" .. text)
    end
    local series = {}
    for key in text:gmatch("\n([%w_]+%b{}) ") do
      assert.is_nil(series[key], "one series twice: " .. key)
      series[key] = true
    end
  end)

  it("prometheus: label values escaped and valid UTF-8 (promtool accepts); each metric sums to what it claims", function()
    local prometheus = require "tcplab.format.prometheus"
    local zeros = require("tcplab.tally").zeros
    local weird = 'a"b\\c\nd\xffe'
    local all, p22, p80 = zeros(), zeros(), zeros()
    all.ESTABLISHED, all.LISTEN, all.TIME_WAIT = 5, 2, 3
    p22.LISTEN = 1
    p80.LISTEN, p80.ESTABLISHED = 1, 2
    local list = {
      { netns = weird, states = all, ports = { { port = 22, states = p22 }, { port = 80, states = p80 } },
        listeners = { { port = 22, queue = 0, backlog = 5 }, { port = 80, queue = 1, backlog = 7 } } },
      { netns = "plain", states = zeros(), ports = {}, listeners = {} },
    }
    local buf = tcplab.export.buffer()
    prometheus.tcpstat(list, buf)
    local text = buf:text()
    assert.truthy(utf8.len(text), "the output is UTF-8")
    assert.matches('\ntcplab_tcp_connection_states{netns="a\\"b\\\\c\\nd\\\\xFFe",state="listen"} 2\n', text, 1, true)
    local sums, helps, types = {}, {}, {}
    for line in text:gmatch("[^\n]+") do
      local h = line:match("^# HELP (%S+) ")
      local t = line:match("^# TYPE (%S+) gauge$")
      if h then helps[h] = (helps[h] or 0) + 1
      elseif t then types[t] = (types[t] or 0) + 1
      else
        local name, labels, value = line:match("^([%w_]+)(%b{}) (%d+)$")
        assert.truthy(name, line)
        local ns = labels:match('^{netns="(.-)",') or ""
        local key = name .. " " .. (ns == "plain" and "plain" or "weird")
        sums[key] = (sums[key] or 0) + tonumber(value)
      end
    end
    assert.same({ ["tcplab_tcp_connection_states weird"] = 10, ["tcplab_tcp_connection_states plain"] = 0,
                  ["tcplab_tcp_port_connection_states weird"] = 4,
                  ["tcplab_tcp_listen_queue weird"] = 1, ["tcplab_tcp_listen_backlog weird"] = 12 }, sums)
    for _, name in ipairs({ "tcplab_tcp_connection_states", "tcplab_tcp_port_connection_states",
                            "tcplab_tcp_listen_queue", "tcplab_tcp_listen_backlog" }) do
      assert.equal(1, helps[name], name)
      assert.equal(1, types[name], name)
    end
    local check = promtool(text)
    if check then assert.equal("rc=0\n", check, text) else pending("promtool is not installed (Debian prometheus)") end
  end)
end)
