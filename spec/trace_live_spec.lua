local support = require "support"
local tcplab = require "tcplab"

local run = support.tcplab

-- A listener of ours and one connection to it, closed on both ends.
local function connection(l, port)
  local c <close> = assert(tcplab.connect("127.0.0.1", port, 2))
  local a <close> = assert(l:accept(2))
end

-- Start `tcplab trace ARGS` in the background as a user would (output in
-- DIR/out, exit status in DIR/rc); returns its pid and a reader of its
-- output, once the header is out (the recorder records from then on).
local function start_trace(args, dir)
  local root = support.slurp("pwd"):gsub("%s+$", "")
  assert(os.execute(("cd %s && (env -u LUA_PATH -u LUA_CPATH bin/tcplab trace %s >%s/out 2>&1; " ..
    "echo $? >%s/rc) </dev/null >/dev/null 2>&1 & echo $! >%s/pid"):format(support.shq(root), args, dir, dir, dir)))
  local shell = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/pid 2>/dev/null") end))
  local pid = support.wait_for(function() return support.children(shell)[1] end)
  assert.truthy(pid, "tcplab trace started")
  local function out() return support.slurp("cat " .. dir .. "/out 2>/dev/null") end
  assert.truthy(support.wait_for(function() return out():find("OLD -> NEW", 1, true) end, 10), out())
  return pid, out
end

-- The exit status of the command start_trace started in dir (waits up to 20 s).
local function exit_status(dir)
  return tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/rc 2>/dev/null"):match("%d+") end, 20))
end

describe("live transitions #kernel #root #bpf", function()
  support.as_root(it, pending, "tcplab trace --port P --count N prints each transition as it comes, then ends cleanly", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    local pid = start_trace(("--port %d --count 4 --duration 20"):format(port), dir)
    connection(l, port)
    local rc = exit_status(dir)
    local out = support.slurp("cat " .. dir .. "/out")
    local helpers = support.children(pid)
    os.execute("rm -rf " .. dir)
    assert.equal(0, rc, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(5, #lines, out)   -- the header and --count 4
    for i = 2, 5 do
      assert.matches("^%d+%.%d+ +inet +%S+ +%S+ +[A-Z_12]+ %-> [A-Z_12]+$", lines[i])
      assert.truthy(lines[i]:find(":" .. port, 1, true), lines[i])
    end
    assert.matches("CLOSE %-> SYN_SENT", out)
    assert.is_false(support.alive(pid))
    for _, h in ipairs(helpers) do assert.is_false(support.alive(h)) end
    assert.is_nil(support.slurp("ls /sys/kernel/tracing/instances"):match("tcplab%-" .. pid .. "%-%d+"))
  end)

  support.as_root(it, pending, "rec:events() yields the transitions live; stop() ends the stream and keeps them", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    local rec = assert(tcplab.trace.start{ port = port, method = "tracepoint", limit = 10 })
    connection(l, port)
    local seen = {}
    for ev in rec:events() do   -- bounded: the stream ends after limit = 10 s
      seen[#seen + 1] = ev.from .. ">" .. ev.to
      if ev.sport == port and ev.to == "CLOSE" then break end   -- the server end is gone
    end
    assert.truthy(#seen >= 4, table.concat(seen, " "))
    assert.equal("CLOSE>SYN_SENT", seen[1])
    local stream_pid = rec.stream.pid
    local events = rec:stop()
    assert.truthy(#events >= #seen - 1)
    assert.is_nil(rec:events()())   -- stopped: the stream has ended
    assert.truthy(rec:expect{ server = { "LISTEN>SYN_RECV>ESTABLISHED" } })
    assert.is_false(support.wait_for(function() return not support.alive(stream_pid) end) == false)
    assert.same({}, tcplab.trace.instances())
  end)

  it("tcplab trace refuses bad arguments with exit status 2, naming the option", function()
    local many = {}
    for i = 1, 65 do many[i] = "--port " .. (1000 + i) end
    for _, args in ipairs({ "--count 0", "--count x", "--duration 0", "--duration=-1", "--port 70000",
                            "--port 0", table.concat(many, " "), "--netns ''" }) do
      local out, rc = run("trace " .. args)
      assert.equal(2, rc, args .. ": " .. out)
      assert.matches(args:match("^%-%-%a+"), out)
    end
  end)

  it("rec:events() of a sampling recorder raises, naming the method", function()
    local rec <close> = assert(tcplab.trace.start{ port = 1, method = "sampling", limit = 5 })
    assert.error_matches(function() rec:events() end, "live stream needs the tracepoint recorder")
  end)
end)

describe("a live stream's reader #kernel #root #bpf", function()
  support.as_root(it, pending, "dies with the process that streams, even after SIGKILL", function()
    local script = [[
      local t = require "tcplab"
      local l = assert(t.listen("127.0.0.1", 0))
      local rec = assert(t.trace.start{ port = select(2, l:getsockname()), method = "tracepoint" })
      local next_event = rec:events()
      print(rec.stream.pid) io.stdout:flush()
      next_event()   -- blocks: nothing happens on that port]]
    local p = assert(io.popen("exec lua5.4 -e " .. support.shq(script) .. " & echo $!"))
    local parent = tonumber(p:read("l"))
    local reader = tonumber(p:read("l"))
    assert.truthy(reader, "the reader started")
    local chain = { reader }
    for _, c in ipairs(support.children(reader)) do chain[#chain + 1] = c end   -- timeout's cat
    os.execute("kill -KILL " .. parent)
    p:close()
    for _, pid in ipairs(chain) do
      assert.is_true(support.wait_for(function() return not support.alive(pid) end, 5), "reader " .. pid .. " left")
    end
    -- the instance of the killed process is swept by the next recorder
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local rec <close> = assert(tcplab.trace.start{ port = select(2, l:getsockname()), method = "tracepoint" })
    assert.is_nil(support.slurp("ls /sys/kernel/tracing/instances"):match("tcplab%-" .. parent .. "%-"))
  end)
end)

describe("tcplab trace --owners #kernel #root #bpf", function()
  support.as_root(it, pending, "names the process holding each socket, joined on the socket", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    start_trace(("--owners --port %d --count 2 --duration 20"):format(port), dir)
    local c <close> = assert(tcplab.connect("127.0.0.1", port, 2))   -- held until the command has printed
    local rc = exit_status(dir)
    local out = support.slurp("cat " .. dir .. "/out")
    os.execute("rm -rf " .. dir)
    assert.equal(0, rc, out)
    local me = require("tcplab.sys").pid()
    -- this process among the owners (a child forked by a popen may hold it for a moment too)
    local line = out:match("[^\n]*SYN_SENT %-> ESTABLISHED[^\n]*")
    assert.truthy(line, out)
    assert.truthy(line:find(('pid=%d,fd=%d)'):format(me, c:fileno()), 1, true), line)
    assert.matches("CLOSE %-> SYN_SENT  %-\n", out)   -- its port not chosen yet: no socket to join
  end)
end)

describe("tcplab trace --netns #kernel #root #bpf", function()
  local me = support.pid()
  local a, b = ("tcplab-spec-%d-ta"):format(me), ("tcplab-spec-%d-tb"):format(me)

  -- In namespace `path`: a listener on port (or the listener given) and one
  -- connection to it from client address `from`, left open (the caller
  -- closes them).
  local function connect_in(home, path, port, from)
    assert(tcplab.netns.enter(path))
    local l, c, s
    local ok, err = pcall(function()
      l = type(port) == "number" and assert(tcplab.listen("127.0.0.1", port)) or port
      c = assert(tcplab.socket("inet"))
      assert(c:bind(from, 0))
      assert(c:connect("127.0.0.1", select(2, l:getsockname()), 2))
      s = assert(l:accept(2))
    end)
    assert(home:enter())
    assert(ok, err)
    return l, c, s
  end

  support.as_root(it, pending, "follows the namespace asked for only, in the kernel; 'all' names each line's namespace", function()
    if support.recorder() ~= "bpf" then
      local out, rc = run("trace --netns /proc/self/ns/net --count 1 --duration 1")
      assert.equal(1, rc, out)
      assert.matches("needs the BPF recorder", out)
      return
    end
    local home = assert(tcplab.netns.open())
    local held, dirs, pids = {}, {}, {}
    local ok, err = pcall(function()
      assert(os.execute(("ip netns add %s && ip netns add %s && ip -n %s link set lo up && ip -n %s link set lo up")
        :format(a, b, a, b)))
      local pa, pb = "/run/netns/" .. a, "/run/netns/" .. b
      -- the same port in both; b's client comes from 127.0.0.2
      local la = assert(tcplab.netns.enter(pa)) and assert(tcplab.listen("127.0.0.1", 0))
      assert(home:enter())
      held[#held + 1] = la
      local port = select(2, la:getsockname())

      dirs[1] = support.slurp("mktemp -d"):gsub("%s+$", "")
      local pid1, out1 = start_trace(("--netns %s --port %d --count 2 --duration 20"):format(a, port), dirs[1])
      pids[1] = pid1
      dirs[2] = support.slurp("mktemp -d"):gsub("%s+$", "")
      local pid2, out2 = start_trace(("--netns all --port %d --duration 20"):format(port), dirs[2])
      pids[2] = pid2

      for _, s in ipairs({ connect_in(home, pb, port, "127.0.0.2") }) do held[#held + 1] = s end
      local _, c, s = connect_in(home, pa, la, "127.0.0.1")
      held[#held + 1], held[#held + 2] = c, s
      -- --netns a: only a's two client transitions (b's came first, on the same port)
      assert.equal(0, exit_status(dirs[1]), out1())
      local lines = {}
      for line in out1():gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equal(3, #lines, out1())
      for i = 2, 3 do
        assert.falsy(lines[i]:find("127.0.0.2", 1, true), lines[i])
        assert.truthy(lines[i]:find(":" .. port, 1, true), lines[i])
      end
      assert.matches("CLOSE %-> SYN_SENT", lines[2])
      assert.matches("SYN_SENT %-> ESTABLISHED", lines[3])
      assert.is_false(support.alive(pid1))
      -- --netns all: both namespaces' handshakes, each line with its namespace's name
      local function both()
        local o = out2()
        return o:find(("\n%%S+ +%s +inet +127%%.0%%.0%%.2:%%d+ +127%%.0%%.0%%.1:%d +SYN_SENT %%-> ESTABLISHED")
            :format(b:gsub("%-", "%%-"), port))
          and o:find(("\n%%S+ +%s +inet +127%%.0%%.0%%.1:%%d+ +127%%.0%%.0%%.1:%d +SYN_SENT %%-> ESTABLISHED")
            :format(a:gsub("%-", "%%-"), port))
      end
      assert.truthy(support.wait_for(both, 10), out2())
      os.execute("kill -INT " .. pid2)
      assert.equal(130, exit_status(dirs[2]), out2())
      assert.is_false(support.alive(pid2))
    end)
    for _, pid in pairs(pids) do os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    for i = #held, 1, -1 do held[i]:close() end
    assert(home:enter())
    home:close()
    for _, d in ipairs(dirs) do os.execute("rm -rf " .. d) end
    os.execute(("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null"):format(a, b))
    assert(ok, err)
  end)

  it("refuses a path that is not a namespace (exit 1, naming it) and bad values (exit 2)", function()
    local out, rc = run("trace --netns /etc/passwd --count 1")
    assert.equal(1, rc, out)
    assert.matches("/etc/passwd", out)
    out, rc = run("trace --netns")
    assert.equal(2, rc, out)
    assert.matches("%-%-netns", out)
  end)
end)
