local support = require "support"
local tcplab = require "tcplab"

local run = support.tcplab

-- A listener of ours and one connection to it, closed on both ends.
local function connection(l, port)
  local c <close> = assert(tcplab.connect("127.0.0.1", port, 2))
  local a <close> = assert(l:accept(2))
end

describe("live transitions", function()
  support.as_root(it, pending, "tcplab trace --port P --count N prints each transition as it comes, then ends cleanly", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    local root = support.slurp("pwd"):gsub("%s+$", "")
    assert(os.execute(("cd %s && (env -u LUA_PATH -u LUA_CPATH bin/tcplab trace --port %d --count 4 --duration 20 " ..
      ">%s/out 2>&1; echo $? >%s/rc) & echo $! >%s/pid"):format(support.shq(root), port, dir, dir, dir)))
    local shell = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/pid 2>/dev/null") end))
    local pid = support.wait_for(function() return support.children(shell)[1] end)
    assert.truthy(pid, "tcplab started")
    -- the header is printed once the instance records
    assert.truthy(support.wait_for(function() return support.slurp("cat " .. dir .. "/out"):find("OLD -> NEW", 1, true) end, 10))
    connection(l, port)
    local rc = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/rc 2>/dev/null"):match("%d+") end, 20))
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
    for _, args in ipairs({ "--count 0", "--count x", "--duration 0", "--duration=-1", "--port 70000" }) do
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

describe("a live stream's reader", function()
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

describe("tcplab trace --owners", function()
  support.as_root(it, pending, "names the process holding each socket, joined on the socket", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    local root = support.slurp("pwd"):gsub("%s+$", "")
    assert(os.execute(("cd %s && (env -u LUA_PATH -u LUA_CPATH bin/tcplab trace --owners --port %d --count 2 --duration 20 " ..
      ">%s/out 2>&1; echo $? >%s/rc) &"):format(support.shq(root), port, dir, dir)))
    assert.truthy(support.wait_for(function() return support.slurp("cat " .. dir .. "/out 2>/dev/null"):find("OLD -> NEW", 1, true) end, 10))
    local c <close> = assert(tcplab.connect("127.0.0.1", port, 2))   -- held until the command has printed
    local rc = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/rc 2>/dev/null"):match("%d+") end, 20))
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
