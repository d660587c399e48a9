--- `tcplab trace --life`: one line per connection when it closes (like BCC's
-- tcplife), run as a user runs it, in a network namespace of the spec's own
-- (unshare -n: everything in it dies with the driver). Two processes of
-- their own names (lifesrv, lifecli: symlinks to lua5.4, so comm says which)
-- exchange 1000 bytes one way and 3000 the other on each connection and
-- close in both orders; one more connection is open before the trace starts.
-- Nothing here depends on timings: every wait is bounded, and what is
-- asserted is what must hold (ends, owner, bytes, states).
local support = require "support"
local cjson = require "cjson"

local N = 4   -- connections made while tracing (plus the one open before)

-- Run the driver in a fresh namespace; returns the directory (out, err, rc,
-- srv.pid, pre.pid, cli.pid) -- the caller removes it.
local function drive(port, trace_args, json)
  local root = support.slurp("pwd"):gsub("%s+$", "")
  local dir = support.slurp("mktemp -d /tmp/tcplab-life-XXXXXX"):gsub("%s+$", "")
  local lua = support.slurp("command -v lua5.4"):gsub("%s+$", "")
  local script = ([[
set -u
D=%s; P=%d
cd %s
ip link set lo up
ln -s %s $D/lifesrv; ln -s %s $D/lifecli
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/lua/?.so;;"
wait_file() { i=0; while [ ! -s "$1" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; }
$D/lifesrv spec/servers/life_peer.lua server $P %d $D/srv.ready & echo $! >$D/srv.pid
wait_file $D/srv.ready
$D/lifecli spec/servers/life_peer.lua pre $P $D/pre.ready $D/go & echo $! >$D/pre.pid
wait_file $D/pre.ready
env -u LUA_PATH -u LUA_CPATH bin/tcplab trace --life %s >$D/out 2>$D/err & T=$!
i=0; while ! grep -q %s $D/%s 2>/dev/null && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
touch $D/go
$D/lifecli spec/servers/life_peer.lua client $P %d & echo $! >$D/cli.pid
wait $T; echo $? >$D/rc
wait
]]):format(dir, port, root, lua, lua, N + 1, trace_args, json and "recording" or "STATES", json and "err" or "out", N)
  local f = assert(io.open(dir .. "/driver.sh", "w"))
  f:write(script)
  f:close()
  os.execute("unshare -n sh " .. dir .. "/driver.sh >" .. dir .. "/driver.log 2>&1")
  return dir
end

local function cat(dir, name) return support.slurp(("cat %s/%s 2>/dev/null"):format(dir, name)) end
local function pid_of(dir, name) return math.tointeger(tonumber(cat(dir, name):match("%d+"))) end

-- The states a connection must go through, by who closed first.
local function check_states(states, side, closed_first, since_start, what)
  local s = table.concat(states, ">")
  if since_start then   -- from the state it was in when the trace started
    assert.equal("ESTABLISHED", states[1], what)
  else
    assert.equal(side == "client" and "SYN_SENT" or "SYN_RECV", states[1], what)
    assert.equal("ESTABLISHED", states[2], what)
  end
  if closed_first then
    -- FIN_WAIT1, then the full socket ends into TIME_WAIT (the peer's FIN came
    -- first) or hands a FIN_WAIT2 placeholder over (CLOSE)
    assert.truthy(s:find("ESTABLISHED>FIN_WAIT1>", 1, true), what .. ": " .. s)
    assert.truthy(s:match(">TIME_WAIT$") or s:match(">FIN_WAIT2>CLOSE$"), what .. ": " .. s)
  else
    assert.truthy(s:match("ESTABLISHED>CLOSE_WAIT>LAST_ACK>CLOSE$"), what .. ": " .. s)
  end
end

describe("tcplab trace --life #kernel #root #bpf", function()
  support.as_root(it, pending, "prints each connection once when it closes: ends, owner, bytes each way, states", function()
    local port = 18400 + math.random(0, 500)
    local dir = drive(port, ("--port %d --count %d --duration 30"):format(port, 2 * (N + 1)))
    local out, rc = cat(dir, "out"), tonumber(cat(dir, "rc"))
    local srv, pre, cli = pid_of(dir, "srv.pid"), pid_of(dir, "pre.pid"), pid_of(dir, "cli.pid")
    local log = cat(dir, "driver.log") .. cat(dir, "err")
    os.execute("rm -rf " .. dir)
    assert.equal(0, rc, out .. log)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.matches("^PID +COMM +LOCAL +REMOTE +TX_BYTES +RX_BYTES +DURATION%(s%) +STATES$", lines[1])
    assert.equal(1 + 2 * (N + 1), #lines, out)
    -- by the client's port: its client line and its server line
    local by_port = {}
    for i = 2, #lines do
      local pid, comm, lhost, lport, rhost, rport, tx, rx, dur, states =
        lines[i]:match("^(%S+) +(%S+) +([%d.]+):(%d+) +([%d.]+):(%d+) +(%d+) +(%d+) +(>?[%d.]+) +(%S+)$")
      assert.truthy(pid, lines[i])
      assert.equal("127.0.0.1", lhost)
      assert.equal("127.0.0.1", rhost)
      local side = tonumber(lport) == port and "server" or "client"
      if side == "client" then assert.equal(port, tonumber(rport), lines[i]) end
      local key = side == "client" and tonumber(lport) or tonumber(rport)
      by_port[key] = by_port[key] or {}
      assert.is_nil(by_port[key][side], "one line per connection end: " .. lines[i])
      by_port[key][side] = { pid = tonumber(pid), comm = comm, tx = tonumber(tx), rx = tonumber(rx),
                             since = dur:sub(1, 1) == ">", states = states, line = lines[i] }
    end
    local ports = {}
    for p, ends in pairs(by_port) do
      assert.truthy(ends.client and ends.server, "both ends of :" .. p .. "\n" .. out)
      ports[#ports + 1] = p
    end
    assert.equal(N + 1, #ports, out)
    -- the connection open before the trace: the one whose lines say so
    local pre_port
    for _, p in ipairs(ports) do
      if by_port[p].client.since then
        assert.is_nil(pre_port, "one connection was open before the trace\n" .. out)
        pre_port = p
      end
    end
    assert.truthy(pre_port, out)
    -- who closed first, read off the client's states (FIN_WAIT1: the client);
    -- the server's states must agree, and the peers closed half each way
    local client_first = 0
    for _, p in ipairs(ports) do
      local ends = by_port[p]
      local since = p == pre_port
      local cfirst = ends.client.states:find("FIN_WAIT1", 1, true) ~= nil
      if not since and cfirst then client_first = client_first + 1 end
      if since then assert.is_true(cfirst, "the pre connection's client closed first: " .. ends.client.line) end
      -- owner: the process that made each end (comm from the symlink it ran as)
      assert.equal(since and pre or cli, ends.client.pid, ends.client.line)
      assert.equal("lifecli", ends.client.comm, ends.client.line)
      assert.equal(srv, ends.server.pid, ends.server.line)
      assert.equal("lifesrv", ends.server.comm, ends.server.line)
      -- data bytes, without the SYN and FINs tcp_sock's counters include
      assert.equal(1000, ends.client.tx, ends.client.line)
      assert.equal(3000, ends.client.rx, ends.client.line)
      assert.equal(3000, ends.server.tx, ends.server.line)
      assert.equal(1000, ends.server.rx, ends.server.line)
      assert.equal(since, ends.server.since, ends.server.line)
      local function list(s) local t = {} for x in s:gmatch("[^>]+") do t[#t + 1] = x end return t end
      check_states(list(ends.client.states), "client", cfirst, since, ends.client.line)
      check_states(list(ends.server.states), "server", not cfirst, since, ends.server.line)
    end
    assert.equal(N // 2, client_first, out)
  end)

  support.as_root(it, pending, "--format json writes one object per line that cjson parses; --comm keeps one owner's", function()
    local port = 18400 + math.random(501, 1000)
    local dir = drive(port, ("--port %d --comm lifecli --count %d --duration 30 --format json"):format(port, N + 1), true)
    local out, rc = cat(dir, "out"), tonumber(cat(dir, "rc"))
    local pre, cli = pid_of(dir, "pre.pid"), pid_of(dir, "cli.pid")
    local log = cat(dir, "driver.log") .. cat(dir, "err")
    os.execute("rm -rf " .. dir)
    assert.equal(0, rc, out .. log)
    local n, since = 0, 0
    for line in out:gmatch("[^\n]+") do
      n = n + 1
      local ok, r = pcall(cjson.decode, line)
      assert.is_true(ok, line)
      assert.equal("lifecli", r.comm, line)
      assert.equal(r.since_start and pre or cli, r.pid, line)
      assert.equal(port, r.dport, line)
      assert.equal("127.0.0.1", r.src, line)
      assert.equal("inet", r.family, line)
      assert.equal(1000, r.sent, line)
      assert.equal(3000, r.received, line)
      assert.is_true(r.bytes_exact, line)
      assert.equal("number", type(r.duration), line)
      assert.equal("table", type(r.states), line)
      assert.equal(r.since_start and "ESTABLISHED" or "SYN_SENT", r.states[1], line)
      assert.equal("local", r.opener, line)
      if r.since_start then since = since + 1 end
    end
    assert.equal(N + 1, n, out)
    assert.equal(1, since, out)
  end)

  support.as_root(it, pending, "a port with no traffic prints the header only; Ctrl-C ends it with 130", function()
    local run = support.tcplab
    local out, rc = run("trace --life --port 1 --duration 0.5")
    assert.equal(0, rc, out)
    assert.matches("^PID +COMM .- STATES\n$", out)
    local dir = support.slurp("mktemp -d /tmp/tcplab-life-XXXXXX"):gsub("%s+$", "")
    assert(os.execute(("(env -u LUA_PATH -u LUA_CPATH bin/tcplab trace --life --port 1 --duration 30 >%s/out 2>&1; " ..
      "echo $? >%s/rc) </dev/null >/dev/null 2>&1 & echo $! >%s/pid"):format(dir, dir, dir)))
    assert.truthy(support.wait_for(function() return cat(dir, "out"):find("STATES", 1, true) end, 10), cat(dir, "out"))
    local shell = pid_of(dir, "pid")
    local pid = support.wait_for(function() return support.children(shell)[1] end)
    os.execute("kill -INT " .. pid)
    local rc2 = tonumber(support.wait_for(function() return cat(dir, "rc"):match("%d+") end, 20))
    local out2 = cat(dir, "out")
    os.execute("rm -rf " .. dir)
    assert.equal(130, rc2, out2)
    assert.matches("interrupted", out2)
  end)

  support.as_root(it, pending, "as a user without root it says it needs root and exits 1", function()
    local out, rc = support.tcplab("trace --life --duration 1",
      { env = "setpriv --reuid=nobody --regid=nogroup --clear-groups" })
    assert.equal(1, rc, out)
    assert.matches("^tcplab: lifetimes need the BPF recorder, which needs root", out)
  end)

  it("refuses bad arguments with exit status 2, naming the option", function()
    local run = support.tcplab
    for args, says in pairs({
      ["trace --format json"] = "%-%-format json needs .*or %-%-life",
      ["trace --life --format xml"] = "format",
      ["trace --life --count 0"] = "%-%-count",
      ["trace --life --port 0"] = "%-%-port",
      ["trace --life --duration 0"] = "%-%-duration",
      ["trace --life --comm ''"] = "%-%-comm",
    }) do
      local out, rc = run(args)
      assert.equal(2, rc, args .. ": " .. out)
      assert.matches(says, out, 1)
    end
  end)
end)

describe("lifetimes from the recorder's events #unit", function()
  local life = require "tcplab.trace.life"
  local fmt = require "tcplab.format.life"

  local function ending(l, over)
    local ev = { family = "inet", src = "10.0.0.1", sport = 40000, dst = "10.0.0.2", dport = 80, time = 12.5,
                 from = "FIN_WAIT2", to = "TIME_WAIT", cookie = 7, netns = 4026531840, life = l }
    for k, v in pairs(over or {}) do ev[k] = v end
    return ev
  end

  it("subtracts the acked SYN of an active open and the FINs from tcp_sock's counters", function()
    local r = life.of(ending{ born = 10, bytes_acked = 1002, bytes_received = 3000, active = true, passive = false,
      fin_acked = true, fin_received = false, pid = 42, comm = "curl",
      path = { "CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" } }, 5, { 80 })
    assert.equal(1000, r.sent)
    assert.equal(3000, r.received)
    assert.is_true(r.bytes_exact)
    assert.same({ "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" }, r.states)
    assert.equal(2.5, r.duration)
    assert.is_false(r.since_start)
    assert.equal("local", r.opener)
    assert.equal(42, r.pid)
    assert.matches("10%.0%.0%.1:40000 %-> 10%.0%.0%.2:80 pid 42 %(curl%), 1000 bytes sent, 3000 received", tostring(r))
  end)

  it("a passive end's acked bytes carry no SYN; its received bytes the peer's FIN", function()
    local r = life.of(ending({ born = 10, bytes_acked = 3001, bytes_received = 1001, active = false, passive = true,
      fin_acked = true, fin_received = true, path = { "LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSE" } },
      { sport = 80, dport = 40000, to = "CLOSE" }), 5, { 80 })
    assert.equal(3000, r.sent)
    assert.equal(1000, r.received)
    assert.same({ "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSE" }, r.states)
    assert.equal("remote", r.opener)
    assert.is_nil(r.pid)
  end)

  it("a refused connect acked nothing: no SYN to subtract", function()
    local r = life.of(ending({ born = 10, bytes_acked = 0, bytes_received = 0, active = true,
      path = { "CLOSE", "SYN_SENT", "CLOSE" } }, { to = "CLOSE" }), 5, { 80 })
    assert.equal(0, r.sent)
    assert.same({ "SYN_SENT", "CLOSE" }, r.states)
  end)

  it("a connection open before the trace: duration from the start, states from the first seen, opener by port", function()
    local l = { born = 11, bytes_acked = 1002, bytes_received = 3000, fin_acked = true,
                path = { "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" } }
    local r = life.of(ending(l), 5, { 80 })
    assert.is_true(r.since_start)
    assert.equal(7.5, r.duration)
    assert.same({ "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" }, r.states)
    assert.equal(1000, r.sent)   -- dport 80 is a traced port: this end connected
    assert.is_true(r.bytes_exact)
    -- every port traced: the opener cannot be told, and the line says so
    local u = life.of(ending(l), 5, {})
    assert.is_false(u.bytes_exact)
    assert.is_nil(u.opener)
    local buf = {}
    fmt.text(u, { write = function(_, ...) for _, s in ipairs({ ... }) do buf[#buf + 1] = s end end })
    local line = table.concat(buf)
    assert.matches(" ~1001 +3000 +>7%.500000 ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT\n$", line)
  end)

  it("a listener's end is no connection", function()
    assert.is_nil(life.of(ending({ born = 1, bytes_acked = 0, bytes_received = 0, listener = true,
      path = { "CLOSE", "LISTEN", "CLOSE" } }), 0, {}))
    assert.is_nil(life.of(ending(nil), 0, {}))
  end)

  it("matches the owner by pid and by comm (its first 15 bytes); no owner matches no filter that names one", function()
    local r = { pid = 42, comm = "averyveryverylo" }
    assert.is_true(life.matches(r, {}))
    assert.is_true(life.matches(r, { pid = 42 }))
    assert.is_false(life.matches(r, { pid = 43 }))
    assert.is_true(life.matches(r, { comm = "averyveryverylongname" }))
    assert.is_false(life.matches({}, { comm = "x" }))
    assert.is_true(life.matches({}, {}))
  end)

  it("json: one object per line, null for an owner not seen, the states as a list", function()
    local r = life.of(ending({ born = 10, bytes_acked = 3, bytes_received = 1, active = true, fin_acked = true,
      path = { "CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" } }), 5, { 80 })
    local buf = {}
    fmt.json(r, { write = function(_, ...) for _, s in ipairs({ ... }) do buf[#buf + 1] = s end end })
    local text = table.concat(buf)
    assert.matches("^{.*}\n$", text)
    local o = cjson.decode(text)
    assert.equal(cjson.null, o.pid)
    assert.equal(cjson.null, o.comm)
    assert.equal(1, o.sent)
    assert.same({ "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" }, o.states)
  end)

  local function render(f, r)
    local buf = {}
    f(r, { write = function(_, ...) for _, s in ipairs({ ... }) do buf[#buf + 1] = s end end })
    return table.concat(buf)
  end

  it("a path the kernel's record cut says so: >... in text, states_truncated in json; a whole one does not", function()
    local path = { "CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" }
    local cut = life.of(ending({ born = 10, bytes_acked = 3, bytes_received = 1, active = true, fin_acked = true,
      path = path, path_full = true }), 5, { 80 })
    assert.is_true(cut.path_full)
    assert.matches(" SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT>%.%.%.\n$", render(fmt.text, cut))
    assert.is_true(cjson.decode(render(fmt.json, cut)).states_truncated)
    local whole = life.of(ending({ born = 10, bytes_acked = 3, bytes_received = 1, active = true, fin_acked = true,
      path = path }), 5, { 80 })
    assert.is_nil(whole.path_full)
    assert.matches(" SYN_SENT>ESTABLISHED>FIN_WAIT1>FIN_WAIT2>TIME_WAIT\n$", render(fmt.text, whole))
    assert.is_nil(cjson.decode(render(fmt.json, whole)).states_truncated)
  end)

  it("text keeps one column per field when the owner's comm has a space in it", function()
    local r = life.of(ending({ born = 10, bytes_acked = 3, bytes_received = 1, active = true, fin_acked = true,
      pid = 42, comm = "my app",
      path = { "CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" } }), 5, { 80 })
    local fields = {}
    for w in render(fmt.text, r):gmatch("%S+") do fields[#fields + 1] = w end
    local head = {}
    for w in render(function(_, out) fmt.header(out) end, r):gmatch("%S+") do head[#head + 1] = w end
    assert.equal(#head, #fields)
    assert.equal("my_app", fields[2])
  end)

  it("an IPv6 connection's ends are bracketed in text ([addr]:port) and plain in json", function()
    local r = life.of(ending({ born = 10, bytes_acked = 3, bytes_received = 1, active = true, fin_acked = true,
      path = { "CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" } },
      { family = "inet6", src = "fd00::1", dst = "::1" }), 5, { 80 })
    local line = render(fmt.text, r)
    assert.truthy(line:find(" [fd00::1]:40000 ", 1, true), line)
    assert.truthy(line:find(" [::1]:80 ", 1, true), line)
    local o = cjson.decode(render(fmt.json, r))
    assert.same({ "inet6", "fd00::1", 40000, "::1", 80 }, { o.family, o.src, o.sport, o.dst, o.dport })
  end)

  it("json: opener null when the traced ports cannot tell it, the end's side when they can", function()
    local l = { born = 11, bytes_acked = 1002, bytes_received = 3000, fin_acked = true,
                path = { "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" } }
    local o = cjson.decode(render(fmt.json, life.of(ending(l), 5, {})))
    assert.equal(cjson.null, o.opener)
    assert.is_false(o.bytes_exact)
    assert.equal("local", cjson.decode(render(fmt.json, life.of(ending(l), 5, { 80 }))).opener)
  end)
end)
