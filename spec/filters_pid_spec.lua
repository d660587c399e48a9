-- pid = N / comm = "name" (library) and --pid / --comm (list, counts, watch,
-- trace): the sockets a process holds, joined on the owners walk, checked
-- against `ss -tanp` for a child process this spec starts, in a network
-- namespace of its own.
local support = require "support"
local tcplab = require "tcplab"
local cjson = require "cjson"

local run = support.tcplab

-- A child holding n connections to 127.0.0.1:port (fds 3..), running as
-- `name` (a symlink to lua5.4: /proc/PID/comm is its first 15 bytes) and
-- waiting on its stdin. Returns { pid, comm, stop = function }.
local function holder(port, n, name)
  local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
  local exe = dir .. "/" .. name
  assert(os.execute("ln -s /usr/bin/lua5.4 " .. support.shq(exe)))
  local redirs = {}
  for i = 1, n do redirs[i] = ("%d<>/dev/tcp/127.0.0.1/%d"):format(i + 2, port) end
  local script = assert(io.open(dir .. "/run.sh", "w"))
  script:write("exec ", table.concat(redirs, " "), "\n",
               "echo $$ >", support.shq(dir .. "/pid"), "\n",
               "exec ", support.shq(exe), [[ -e 'io.read("a")']], "\n")
  script:close()
  local h = assert(io.popen("exec bash " .. support.shq(dir .. "/run.sh"), "w"))
  local comm = name:sub(1, 15)
  local pid = tonumber(support.wait_for(function()
    return support.slurp("cat " .. support.shq(dir .. "/pid") .. " 2>/dev/null"):match("%d+")
  end, 10))
  local ready = pid and support.wait_for(function()
    return support.slurp(("cat /proc/%d/comm 2>/dev/null"):format(pid)):gsub("%s+$", "") == comm
  end, 10)
  local stopped = false
  return { pid = pid, comm = comm, ready = ready, stop = function()
    if stopped then return end
    stopped = true
    -- by its pid: a process started since (tcplab trace &) may hold the pipe's other end too
    if pid then os.execute(("kill %d 2>/dev/null"):format(pid)) end
    h:close()   -- and wait for it
    os.execute("rm -rf " .. support.shq(dir))
  end }
end

-- "src:sport dst:dport" of each socket ss -tanp shows held by pid.
local function ss_of(pid)
  local set = {}
  for line in support.slurp("ss -tanpH"):gmatch("[^\n]+") do
    if line:find(("pid=%d,"):format(pid), 1, true) then
      local l, p = line:match("^%S+%s+%d+%s+%d+%s+(%S+)%s+(%S+)")
      set[#set + 1] = l .. " " .. p:gsub(":%*$", ":0")   -- a listener's peer: ss writes *
    end
  end
  table.sort(set)
  return set
end

local function tuples(records)
  local set = {}
  for _, r in ipairs(records) do set[#set + 1] = ("%s:%d %s:%d"):format(r.src, r.sport, r.dst, r.dport) end
  table.sort(set)
  return set
end

describe("pid and comm filters #kernel #root", function()
  if not support.is_root() then
    pending("needs root: a network namespace of our own, and every process's fds")
    return
  end
  setup(function() assert(tcplab.netns.unshare()) end)

  local srv, port, child, accepted
  before_each(function()
    srv = assert(tcplab.listen("127.0.0.1", 0, 8))
    port = select(2, srv:getsockname())
    child = holder(port, 2, ("tlhold-%d-with-a-long-name"):format(support.pid()))
    local a1 = assert(srv:accept(5))
    local a2 = assert(srv:accept(5))
    accepted = { a1, a2 }
    assert.truthy(child.ready, "the child holds its two connections")
  end)
  after_each(function()
    child.stop()
    for _, a in ipairs(accepted) do a:close() end
    srv:close()
  end)

  it("snapshot{ pid = N } returns the sockets ss -tanp shows held by that pid, and only those", function()
    local recs = assert(tcplab.snapshot{ pid = child.pid })
    local oracle = ss_of(child.pid)
    assert.equal(2, #oracle, table.concat(oracle, "\n"))
    assert.same(oracle, tuples(recs))
    for _, r in ipairs(recs) do
      assert.equal(port, r.dport)
      assert.equal(child.pid, r.owners[1].pid)
    end
    -- ours (the listener and the two accepted ends) are left out of the child's, and the other way round
    local mine = assert(tcplab.snapshot{ pid = support.pid(), sport = port })
    assert.same(ss_of(support.pid()), tuples(assert(tcplab.snapshot{ pid = support.pid() })))
    assert.equal(3, #mine)
  end)

  it("comm matches the kernel's 15 bytes of the name, given whole or cut", function()
    assert.same(tuples(assert(tcplab.snapshot{ pid = child.pid })),
                tuples(assert(tcplab.snapshot{ comm = ("tlhold-%d-with-a-long-name"):format(support.pid()) })))
    assert.equal(2, #assert(tcplab.snapshot{ comm = child.comm }))
    assert.equal(0, #assert(tcplab.snapshot{ comm = "no-such-comm-x" }))
    assert.equal(2, #assert(tcplab.snapshot{ comm = child.comm, pid = child.pid }))
    assert.equal(0, #assert(tcplab.snapshot{ comm = child.comm, pid = support.pid() }))
  end)

  it("counts{ pid = N } counts the filtered records only, per state and per key", function()
    assert.same({ ESTABLISHED = 2 }, assert(tcplab.counts{ pid = child.pid }))
    assert.same({ [port] = { ESTABLISHED = 2 } }, assert(tcplab.counts{ pid = child.pid, by = "dport" }))
    assert.same({ ESTABLISHED = 2, LISTEN = 1 }, assert(tcplab.counts{ pid = support.pid(), sport = port }))
    assert.same({}, assert(tcplab.counts{ comm = "no-such-comm-x" }))
  end)

  it("rejects a bad pid or comm naming the field", function()
    assert.error_matches(function() tcplab.snapshot{ pid = 0 } end, "pid: a process id")
    assert.error_matches(function() tcplab.snapshot{ pid = "12" } end, "pid: a process id")
    assert.error_matches(function() tcplab.counts{ comm = "" } end, "comm: a process name")
    assert.error_matches(function() tcplab.counts{ comm = 5 } end, "comm: a process name")
    assert.error_matches(function() tcplab.counts{ pid = 1, by = "port" } end, "by: ")
    assert.error_matches(function() tcplab.snapshot{ pid = 1, columns = true } end, "not with columns")
  end)

  it("tcplab list --pid N and --comm NAME print the sockets ss -tanp shows for that pid", function()
    local out, rc = run(("list --pid %d --format json"):format(child.pid))
    assert.equal(0, rc, out)
    assert.same(ss_of(child.pid), tuples(cjson.decode(out)))
    out, rc = run(("list --comm %s"):format(child.comm))
    assert.equal(0, rc, out)
    local lines = 0
    for line in out:gmatch("[^\n]+") do
      if line:find("ESTABLISHED", 1, true) then
        lines = lines + 1
        assert.truthy(line:find(("pid=%d,"):format(child.pid), 1, true), line)
      end
    end
    assert.equal(2, lines, out)
  end)

  it("tcplab counts --pid and watch --pid count the process's sockets only", function()
    local out, rc = run(("counts --pid %d --format json"):format(child.pid))
    assert.equal(0, rc, out)
    assert.same({ ESTABLISHED = 2 }, cjson.decode(out))
    out, rc = run(("watch --pid %d --count 1"):format(support.pid()))
    assert.equal(0, rc, out)
    assert.matches("ESTABLISHED%s+2", out)
    assert.matches("LISTEN%s+1", out)
    out, rc = run(("watch --comm %s --count 1"):format(child.comm))
    assert.equal(0, rc, out)
    assert.matches("ESTABLISHED%s+2", out)
    assert.matches("LISTEN%s+0%s", out)
  end)

  it("refuses --pid of no process (exit 1), a bad --pid (exit 2), and prometheus output with --pid", function()
    local out, rc = run("list --pid 2147483646")
    assert.equal(1, rc, out)
    assert.matches("no such process", out)
    out, rc = run("counts --pid 0")
    assert.equal(2, rc, out)
    out, rc = run("counts --comm ''")
    assert.equal(2, rc, out)
    out, rc = run(("counts --pid %d --format prometheus"):format(child.pid))
    assert.equal(2, rc, out)
    assert.matches("%-%-pid: text or json", out)
  end)
end)

-- Start `tcplab trace ARGS` in the background (output in DIR/out, exit
-- status in DIR/rc), as trace_live_spec does; returns a reader of its
-- output once the header is out (the recorder records from then on).
local function start_trace(args, dir)
  local root = support.slurp("pwd"):gsub("%s+$", "")
  assert(os.execute(("cd %s && (env -u LUA_PATH -u LUA_CPATH bin/tcplab trace %s >%s/out 2>&1; " ..
    "echo $? >%s/rc) </dev/null >/dev/null 2>&1 &"):format(support.shq(root), args, dir, dir)))
  local function out() return support.slurp("cat " .. dir .. "/out 2>/dev/null") end
  -- bounds, not timings: generous, since on a loaded host beside a million sockets of
  -- another process a walk alone can take a second (doc/kernel-walk-scope.md)
  assert.truthy(support.wait_for(function() return out():find("OLD -> NEW", 1, true) end, 60), out())
  return out
end

describe("tcplab trace --pid / --comm #kernel #root #bpf", function()
  if not support.is_root() then
    pending("needs root: the recorder, a network namespace of our own")
    return
  end
  setup(function() assert(tcplab.netns.unshare()) end)

  for _, how in ipairs({ "pid", "comm" }) do
    it(("prints only the transitions of sockets the process holds (--%s), joined on the socket"):format(how), function()
      local srv <close> = assert(tcplab.listen("127.0.0.1", 0, 8))
      local port = select(2, srv:getsockname())
      local child = holder(port, 2, "tltrace-" .. how)
      local a1 <close> = assert(srv:accept(5))
      local a2 <close> = assert(srv:accept(5))
      assert.truthy(child.ready, "the child holds its two connections")
      local ports = {}
      for _, r in ipairs(assert(tcplab.snapshot{ dport = port })) do ports[#ports + 1] = r.sport end
      local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
      local ok, err = pcall(function()
        local arg = how == "pid" and child.pid or child.comm
        start_trace(("--%s %s --port %d --count 2 --duration 90"):format(how, arg, port), dir)
        -- ours first: a connection of this process, opened and closed (4 transitions and more)
        do
          local c <close> = assert(tcplab.connect("127.0.0.1", port, 2))
          local a <close> = assert(srv:accept(2))
        end
        child.stop()   -- its two sockets: ESTABLISHED -> FIN_WAIT1, ours go to CLOSE_WAIT
      end)
      child.stop()
      local rc = tonumber(support.wait_for(function()
        return support.slurp("cat " .. dir .. "/rc 2>/dev/null"):match("%d+")
      end, 100))
      local out = support.slurp("cat " .. dir .. "/out")
      os.execute("rm -rf " .. support.shq(dir))
      assert(ok, err)
      assert.equal(0, rc, out)
      local events = {}
      for line in out:gmatch("[^\n]+") do
        if not line:find("OLD -> NEW", 1, true) then events[#events + 1] = line end
      end
      assert.equal(2, #events, out)
      local seen = {}
      for _, line in ipairs(events) do
        assert.matches("ESTABLISHED %-> FIN_WAIT1", line)
        seen[#seen + 1] = tonumber(line:match("127%.0%.0%.1:(%d+)%s+127%.0%.0%.1:" .. port))
      end
      table.sort(seen)
      table.sort(ports)
      assert.same(ports, seen)
    end)
  end
end)
