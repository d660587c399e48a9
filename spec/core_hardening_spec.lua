-- The C core under conditions the other specs do not reach: Ctrl-C in the
-- middle of a wait, signals for the command line program, a helper whose
-- parent dies, namespace paths that are not namespaces, connect on a socket
-- that is already connected, and a sock_diag dump the kernel interrupts.
-- Anything that would hang if a fix regressed runs in a subprocess with a
-- bound.
local tcplab = require "tcplab"
local support = require "support"
local core = tcplab.core
local shq = support.shq

local function fds()
  collectgarbage()
  collectgarbage()
  return core._fds()
end

-- A private scratch directory, removed by the returned function.
local function tmpdir()
  local dir = support.slurp("mktemp -d /tmp/tcplab-spec.XXXXXX"):gsub("%s+$", "")
  assert(dir:match("^/tmp/tcplab%-spec%."), dir)
  return dir, function() os.execute("rm -rf " .. shq(dir)) end
end

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Poll (bounded) until pred() returns a true value; returns it, or nil.
local function wait_for(pred, seconds, step)
  local stop = core.now() + seconds
  repeat
    local v = pred()
    if v then return v end
    core.sleep(step or 0.01)
  until core.now() > stop
  return pred()
end

local function alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"   -- a zombie is dead
end

-- `lua5.4 -e script` in the background (LUA_PATH/LUA_CPATH inherited),
-- under `timeout` as a last resort; p.pid is the lua process's own. SIGINT
-- starts out ignored, as for any background job of a non-interactive sh
-- (timeout would otherwise reset it): lua.c must install its handler anyway.
local function spawn(script)
  local dir, remove = tmpdir()
  local p = { dir = dir }
  local inner = ("trap '' INT; echo $$ > %s/pid; exec lua5.4 -e %s > %s/out 2> %s/err")
    :format(dir, shq(script), dir, dir)
  assert(os.execute(("(timeout -s KILL 30 sh -c %s; echo $? > %s/rc) 2>/dev/null &")
    :format(shq(inner), dir)))
  p.pid = wait_for(function() local s = read_file(dir .. "/pid") return s and tonumber(s) end, 5)
  assert(p.pid, "the subprocess started")
  function p.ready()
    return wait_for(function() return (read_file(dir .. "/out") or ""):find("ready\n", 1, true) end, 10)
  end
  -- Exit status within `bound` seconds (nil if still running), and the time it took.
  function p.exit(bound)
    local t0 = core.now()
    local rc = wait_for(function() local s = read_file(dir .. "/rc") return s and tonumber(s) end, bound, 0.001)
    return rc, core.now() - t0
  end
  function p.stderr() return read_file(dir .. "/err") or "" end
  function p.stdout() return read_file(dir .. "/out") or "" end
  function p.cleanup()
    if alive(p.pid) then os.execute("kill -KILL " .. p.pid .. " 2>/dev/null") end
    wait_for(function() return read_file(dir .. "/rc") end, 5)
    remove()
  end
  return p
end

describe("core._fds() #kernel #root", function()
  it("counts this process's open fds, without the directory it reads", function()
    local n0 = fds()
    assert.is_true(n0 >= 3)
    local a <close> = assert(core.socket("inet"))
    local b <close> = assert(core.socket("inet6"))
    assert.equal(n0 + 2, core._fds())
    a:close()
    assert.equal(n0 + 1, core._fds())
    b:close()
    assert.equal(n0, core._fds())
  end)
end)

describe("connect on a socket that is already connected (EISCONN) #kernel #root", function()
  if support.is_root() then setup(function() assert(tcplab.netns.unshare()) end) end

  it("a listening socket's connect fails with EISCONN instead of reporting success", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    assert.same({ nil, "connect: Transport endpoint is already connected", 106 },
                { l:connect("127.0.0.1", 1) })
  end)

  it("a connect on a socket whose connect completed fails with EISCONN, to the same peer or another", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    local l2 <close> = assert(tcplab.listen("127.0.0.1", 0))
    local c <close> = assert(core.socket("inet"))
    assert.is_true(c:connect("127.0.0.1", port, 2))
    local a <close> = assert(l:accept(2))
    assert.same({ nil, "connect: Transport endpoint is already connected", 106 },
                { c:connect("127.0.0.1", port, 2) })
    assert.same({ nil, "connect: Transport endpoint is already connected", 106 },
                { c:connect("127.0.0.1", select(2, l2:getsockname()), 2) })
    assert.same({ nil, "connect: Transport endpoint is already connected", 106 },
                { c:connect("127.0.0.1", 1, 2) })
  end)

  it("a connect polled with timeout 0 ends in true once the handshake is done", function()
    local l <close> = assert(tcplab.listen("::1", 0))
    local port = select(2, l:getsockname())
    local c <close> = assert(core.socket("inet6"))
    local ok, err, errno = c:connect("::1", port, 0)
    assert.is_true(ok or (err == "timeout" and errno == 115))
    local done = wait_for(function() return c:connect("::1", port, 0) == true end, 5)
    assert.is_true(done)
    -- completed and reported once: from now on connect(2)'s own answer
    assert.same({ nil, "connect: Transport endpoint is already connected", 106 },
                { c:connect("::1", port, 0) })
    assert.same({ nil, "connect: Transport endpoint is already connected", 106 },
                { c:connect("::1", port + (port == 65535 and -1 or 1), 0) })
  end)
end)

describe("Ctrl-C (SIGINT to the lua5.4 interpreter) #kernel #root", function()
  local listen = [[
    local core = require "tcplab.core"
    local l = assert(core.socket("inet"))
    assert(l:bind("127.0.0.1", 0)) assert(l:listen())
  ]]
  local cases = {
    { "accept() with no timeout", listen .. [[
        print("ready") io.stdout:flush()
        l:accept()
        print("accept returned")]] },
    { "read() on a connected socket with no timeout", listen .. [[
        local c = assert(core.socket("inet"))
        assert(c:connect("127.0.0.1", select(2, l:getsockname()), 2))
        local a = assert(l:accept(2))
        print("ready") io.stdout:flush()
        a:read(10)
        print("read returned")]] },
    { "write() into a full buffer with no timeout", listen .. [[
        local c = assert(core.socket("inet"))
        assert(c:setopt("sndbuf", 4096))
        assert(c:connect("127.0.0.1", select(2, l:getsockname()), 2))
        local a = assert(l:accept(2))
        local data = ("x"):rep(16 * 1024 * 1024)
        print("ready") io.stdout:flush()
        c:write(data)
        print("write returned")]] },
    { "core.sleep(30)", [[
        local core = require "tcplab.core"
        print("ready") io.stdout:flush()
        core.sleep(30)
        print("sleep returned")]] },
  }
  for _, case in ipairs(cases) do
    it("interrupts " .. case[1] .. ": the interpreter raises 'interrupted!' at once", function()
      local p = spawn(case[2])
      local ok, err = pcall(function()
        assert.truthy(p.ready(), "the subprocess printed ready: " .. p.stderr())
        -- the backgrounded shell ignores SIGINT; lua.c installs its handler anyway
        local status = read_file("/proc/" .. p.pid .. "/status")
        local sigcgt = tonumber(status:match("SigCgt:%s*(%x+)"), 16)
        assert.equal(1, (sigcgt >> 1) & 1, "lua5.4 catches SIGINT")
        -- the signal must find it inside the wait, not on its way there
        assert.truthy(wait_for(function()
          local wchan = read_file("/proc/" .. p.pid .. "/wchan") or ""
          return wchan:find("poll", 1, true) or wchan:find("nanosleep", 1, true)
        end, 5), "the subprocess waits in poll() or clock_nanosleep()")
        os.execute("kill -INT " .. p.pid)
        local rc, took = p.exit(5)
        io.stderr:write(("  Ctrl-C during %s: exited %s after %.3f s\n")
          :format(case[1], tostring(rc), took))
        assert.equal(1, rc)
        assert.matches("interrupted!", p.stderr())
        assert.not_matches("returned", p.stdout())
      end)
      p.cleanup()
      assert(ok, err)
    end)
  end

  it("a SIGALRM whose handler leaves the Lua state alone does not end a wait early", function()
    local l <close> = assert(core.socket("inet"))
    assert(l:bind("127.0.0.1", 0))
    assert(l:listen())
    core._interrupt_every(0.01)
    local t0 = core.now()
    local r1 = { l:accept(0.2) }
    local t1 = core.now()
    local r2 = core.sleep(0.1)
    local t2 = core.now()
    local alarms = core._interrupt_every(0)
    assert.is_true(alarms >= 5, "signals arrived: " .. alarms)
    assert.same({ nil, "timeout", 110 }, r1)
    assert.is_true(t1 - t0 >= 0.2, "accept waited " .. (t1 - t0))
    assert.is_true(r2)
    assert.is_true(t2 - t1 >= 0.1, "sleep slept " .. (t2 - t1))
  end)
end)

describe("core.catch_signals() (for bin/) #kernel #root", function()
  local script = [[
    local core = require "tcplab.core"
    assert(core.catch_signals())
    assert(core.caught_signal() == nil)
    local l = assert(core.socket("inet"))
    assert(l:bind("127.0.0.1", 0)) assert(l:listen())
    -- "ready" inside the pcall: a signal that lands before accept() is entered is raised there too
    local ok, err = pcall(function() print("ready") io.stdout:flush() return l:accept() end)
    io.stderr:write("pcall: ", tostring(ok), " ", tostring(err), "; signal ", tostring(core.caught_signal()), "\n")
    if not ok then os.exit(128 + core.caught_signal()) end
    os.exit(3)]]

  for _, case in ipairs({ { "TERM", "terminated", 15 }, { "INT", "interrupted!", 2 } }) do
    local sig, msg, num = case[1], case[2], case[3]
    it(("turns SIG%s during accept() into an error '%s' that pcall catches, and exit %d")
      :format(sig, msg, 128 + num), function()
      local p = spawn(script)
      local ok, err = pcall(function()
        assert.truthy(p.ready(), "the subprocess printed ready: " .. p.stderr())
        -- and is asleep in accept() (bounded; on a busy host it may still be on its way)
        wait_for(function() return (read_file(("/proc/%d/stat"):format(p.pid)) or ""):match("^%d+ %b() S ") end, 2)
        os.execute(("kill -%s %d"):format(sig, p.pid))
        local rc, took = p.exit(5)
        io.stderr:write(("  SIG%s with catch_signals: exit %s after %.3f s\n"):format(sig, tostring(rc), took))
        assert.equal(128 + num, rc)
        assert.matches("pcall: false [^\n]*" .. msg:gsub("!", "%%!") .. "; signal " .. num, p.stderr())
      end)
      p.cleanup()
      assert(ok, err)
    end)
  end

  it("leaves the default action for a second signal, which kills", function()
    local p = spawn([[
      local core = require "tcplab.core"
      assert(core.catch_signals())
      print("ready") io.stdout:flush()
      local ok, err = pcall(core.sleep, 30)
      io.stderr:write("first: ", tostring(err), "\n")
      print("again") io.stdout:flush()
      core.sleep(30)
      os.exit(3)]])
    local ok, err = pcall(function()
      assert.truthy(p.ready())
      os.execute("kill -TERM " .. p.pid)
      assert.truthy(wait_for(function() return p.stdout():find("again", 1, true) end, 5))
      os.execute("kill -TERM " .. p.pid)
      assert.equal(128 + 15, (p.exit(5)))        -- killed by the signal (sh reports 143)
      assert.matches("first: [^\n]*terminated", p.stderr())
    end)
    p.cleanup()
    assert(ok, err)
  end)
end)

describe("core.die_with_parent(ppid) #kernel #root", function()
  -- sh starts the child and waits; TL_PARENT is the shell's pid.
  local function start(child_script, keep_parent)
    local dir, remove = tmpdir()
    local inner = ("TL_PARENT=$$ lua5.4 -e %s > %s/out 2> %s/err & echo $! > %s/child; %s")
      :format(shq(child_script), dir, dir, dir, keep_parent and "wait" or "exit 0")
    assert(os.execute(("sh -c %s & echo $! > %s/parent"):format(shq(inner), dir)))
    local function pid(name)
      return wait_for(function() local s = read_file(dir .. "/" .. name) return s and tonumber(s) end, 5)
    end
    return dir, pid("parent"), pid("child"), remove
  end

  it("makes the child die (SIGKILL) when its parent is killed", function()
    local dir, parent, child, remove = start([[
      local core = require "tcplab.core"
      print(core.die_with_parent(tonumber(os.getenv("TL_PARENT")))) io.stdout:flush()
      core.sleep(30)]], true)
    local ok, err = pcall(function()
      assert.truthy(parent and child)
      assert.truthy(wait_for(function() return read_file(dir .. "/out") == "true\n" end, 10),
                    "die_with_parent returned true: " .. (read_file(dir .. "/err") or ""))
      assert.is_true(alive(child))
      os.execute("kill -KILL " .. parent)
      local t0 = core.now()
      assert.truthy(wait_for(function() return not alive(child) end, 5), "the child died")
      io.stderr:write(("  child gone %.3f s after its parent was killed\n"):format(core.now() - t0))
    end)
    if child and alive(child) then os.execute("kill -KILL " .. child) end
    remove()
    assert(ok, err)
  end)

  it("returns false when the parent is already gone", function()
    local dir, _, child, remove = start([[
      local core = require "tcplab.core"
      local parent = tonumber(os.getenv("TL_PARENT"))
      local function ppid()
        local f = assert(io.open("/proc/self/stat"))
        local s = f:read("a") f:close()
        return tonumber(s:match("^%d+ %b() %a (%d+)"))
      end
      local stop = core.now() + 10
      while ppid() == parent and core.now() < stop do core.sleep(0.01) end
      print(core.die_with_parent(parent))]], false)
    local ok, err = pcall(function()
      assert.truthy(child)
      -- the shell creates the file at once; the answer is a whole line
      assert.truthy(wait_for(function() return (read_file(dir .. "/out") or ""):find("\n") end, 15),
                    "the child answered: " .. (read_file(dir .. "/err") or ""))
      assert.equal("false\n", read_file(dir .. "/out"))
    end)
    if child and alive(child) then os.execute("kill -KILL " .. child) end
    remove()
    assert(ok, err)
  end)

  it("rejects a pid that cannot be one", function()
    for _, bad in ipairs({ 0, -1, 2 ^ 40 }) do
      local ok, err = pcall(core.die_with_parent, bad)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[^']*' %(pid out of range%)", err)
    end
  end)
end)

describe("network namespace paths #kernel #root", function()
  local dir, remove
  setup(function() dir, remove = tmpdir() end)
  teardown(function() remove() end)

  it("a FIFO given as a netns path fails at once, naming the path, instead of hanging", function()
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo " .. shq(fifo)))
    local script = [[
      local core = require "tcplab.core"
      local path = os.getenv("TL_FIFO")
      for _, r in ipairs({
        { core.counts{ states = 0xfff, netns = path } },
        { core.snapshot{ states = 0xfff, netns = path } },
        { core.netns.enter(path) }, { core.netns.id(path) }, { core.netns.open(path) } }) do
        print(tostring(r[1]) .. "|" .. tostring(r[2]) .. "|" .. tostring(r[3]))
      end]]
    local t0 = core.now()
    local out = support.slurp(("TL_FIFO=%s timeout 5 lua5.4 -e %s 2>&1; echo rc=$?"):format(shq(fifo), shq(script)))
    io.stderr:write(("  FIFO checks took %.3f s\n"):format(core.now() - t0))
    local want = ("nil|%s: not a network namespace|22\n"):format(fifo)
    assert.equal(want:rep(5) .. "rc=0\n", out)
  end)

  it("a regular file or another kind of namespace is not a network namespace", function()
    local file = dir .. "/plain"
    assert(io.open(file, "w")):close()
    for _, path in ipairs({ file, "/proc/self/ns/uts", "/dev/null" }) do
      local want = { nil, path .. ": not a network namespace", 22 }
      assert.same(want, { core.counts{ states = 0xfff, netns = path } })
      assert.same(want, { core.netns.id(path) })
      assert.same(want, { core.netns.enter(path) })
      assert.same(want, { core.netns.open(path) })
    end
  end)

  it("a missing path's error names it", function()
    local path = dir .. "/no-such-netns"
    local want = { nil, "open " .. path .. ": No such file or directory", 2 }
    assert.same(want, { core.counts{ states = 0xfff, netns = path } })
    assert.same(want, { core.snapshot{ states = 0xfff, netns = path } })
    assert.same(want, { core.netns.id(path) })
    assert.same(want, { core.netns.enter(path) })
    assert.same(want, { core.netns.open(path) })
  end)

  it("none of these failures leaks an fd", function()
    local before = fds()
    for _ = 1, 50 do
      core.counts{ states = 0xfff, netns = dir .. "/no-such" }
      core.counts{ states = 0xfff, netns = "/dev/null" }
      core.netns.id("/dev/null")
      core.netns.open("/dev/null")
    end
    assert.equal(before, fds())
  end)

  it("a path with a zero byte is a programmer error", function()
    for _, f in ipairs({ core.netns.open, core.netns.id, core.netns.enter }) do
      local ok, err = pcall(f, "/proc/self/ns/net\0x")
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[^']*' %(path contains a zero byte%)", err)
    end
  end)
end)

describe("the netns handle (core.netns.open / unshare) #kernel #root", function()
  if not support.is_root() then
    pending("needs root: unshare")
    return
  end
  local home
  setup(function() home = assert(core.netns.unshare()) end)
  teardown(function() if home then home:enter() home:close() end end)

  it("open, unshare, enter: is_current follows the thread's namespace", function()
    local old <close> = assert(core.netns.open())
    assert.is_true(old:is_current())
    assert.equal(core.netns.id(), old:id())
    assert.equal(("netns /proc/thread-self/ns/net (inode %d)"):format(old:id()), tostring(old))
    local new <close> = assert(core.netns.unshare())
    assert.equal(("netns unshare() (inode %d)"):format(new:id()), tostring(new))
    assert.are_not.equal(old:id(), new:id())
    assert.is_false(old:is_current())
    assert.is_true(new:is_current())
    assert.equal(new:id(), core.netns.id())
    assert.is_true(old:enter())
    assert.is_true(old:is_current())
    assert.is_false(new:is_current())
    assert.is_true(new:enter())
    assert.is_true(new:is_current())
    -- lo is up in the new namespace
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    assert(tcplab.connect("127.0.0.1", select(2, l:getsockname()), 2)):close()
  end)

  it("a namespace opened by path is the one at that path", function()
    local h <close> = assert(core.netns.open("/proc/self/ns/net"))
    assert.is_true(h:is_current())
    assert.equal(core.netns.id("/proc/self/ns/net"), h:id())
  end)

  it("a closed handle raises on use; closing again, collecting and tostring are harmless", function()
    local h = assert(core.netns.open())
    assert.is_true(h:close())
    assert.is_true(h:close())
    assert.equal("netns (closed)", tostring(h))
    for _, m in ipairs({ "enter", "id", "is_current" }) do
      local ok, err = pcall(h[m], h)
      assert.is_false(ok)
      assert.matches("attempt to use a closed netns", err)
    end
    local kept
    do
      local h2 <close> = assert(core.netns.open())
      kept = h2
    end
    assert.equal("netns (closed)", tostring(kept))
    local ok, err = pcall(function() local t = { id = h.id } return t:id() end)
    assert.is_false(ok)
    assert.matches("tcplab.netns expected", err)
  end)

  it("handles hold one fd each and give it back", function()
    local before = fds()
    local hs = {}
    for i = 1, 20 do hs[i] = assert(core.netns.open()) end
    assert.equal(before + 20, core._fds())
    for i = 1, 10 do hs[i]:close() end
    assert.equal(before + 10, core._fds())
    hs = nil
    assert.equal(before, fds())
    for _ = 1, 20 do
      local n <close> = assert(core.netns.unshare())
    end
    assert(home:enter())
    assert.equal(before, fds())
  end)
end)

describe("an interrupted or overflowing sock_diag dump #kernel #root", function()
  if not support.is_root() then
    pending("needs root: runs in a fresh network namespace")
    return
  end
  local NL = { backend = "netlink" }   -- the faults are sock_diag's
  local keep, l = {}, nil
  setup(function()
    assert(tcplab.netns.unshare())
    l = assert(tcplab.listen("127.0.0.1", 0, 512))
    local port = select(2, l:getsockname())
    for i = 1, 150 do   -- 301 sockets: with info the reply takes several buffers
      keep[#keep + 1] = assert(tcplab.connect("127.0.0.1", port, 2))
      keep[#keep + 1] = assert(l:accept(2))
      if i % 50 == 0 then collectgarbage() end
    end
  end)
  teardown(function()
    for _, s in ipairs(keep) do s:close() end
    l:close()
  end)
  after_each(function()
    core._inject_dump_faults{}   -- nothing pending leaks into later specs
    assert(tcplab.counts(NL))
    assert.same({ restarts = 0, reopens = 0 }, core._dump_stats())
  end)

  -- The records that do not change while nothing happens, sorted.
  local function stable(recs)
    local out = {}
    for i, r in ipairs(recs) do
      out[i] = table.concat({ r.state, r.src, r.sport, r.dst, r.dport, r.inode, r.cookie }, " ")
    end
    table.sort(out)
    return out
  end

  local function no_duplicates(lines)
    for i = 2, #lines do assert.are_not.equal(lines[i - 1], lines[i]) end
  end

  for _, case in ipairs({ { "interrupt", "restarts" }, { "enobufs", "reopens" } }) do
    local fault, stat = case[1], case[2]
    it(("with %s = 3 snapshot and counts equal the fault-free ones and %s == 3"):format(fault, stat), function()
      local fds0 = fds()
      local want = stable(assert(tcplab.snapshot{ info = true }))
      local want_counts = assert(tcplab.counts(NL))
      assert.equal(301, #want)
      assert.same({ ESTABLISHED = 300, LISTEN = 1 }, want_counts)
      no_duplicates(want)

      core._inject_dump_faults{ [fault] = 3 }
      local got = stable(assert(tcplab.snapshot{ info = true }))
      assert.same({ restarts = fault == "interrupt" and 3 or 0, reopens = fault == "enobufs" and 3 or 0 },
                  core._dump_stats())
      no_duplicates(got)
      assert.same(want, got)

      core._inject_dump_faults{ [fault] = 3 }
      assert.same(want_counts, assert(tcplab.counts(NL)))
      assert.equal(3, core._dump_stats()[stat])

      core._inject_dump_faults{ [fault] = 3 }
      local cols = assert(tcplab.snapshot{ columns = true, backend = "netlink" })
      assert.equal(3, core._dump_stats()[stat])
      assert.equal(301, cols.n)
      assert.equal(301, #cols.sport)
      assert.equal(fds0, fds())
    end)
  end

  it("with interrupt past the bound the call returns nil, 'netlink dump kept being interrupted', EAGAIN", function()
    local fds0 = fds()
    core._inject_dump_faults{ interrupt = 9 }   -- MAX_RESTARTS (8) + 1
    assert.same({ nil, "netlink dump kept being interrupted: Resource temporarily unavailable", 11 },
                { tcplab.snapshot(NL) })
    assert.same({ restarts = 8, reopens = 0 }, core._dump_stats())
    core._inject_dump_faults{ interrupt = 9 }
    assert.same({ nil, "netlink dump kept being interrupted: Resource temporarily unavailable", 11 },
                { tcplab.counts(NL) })
    assert.equal(fds0, fds())
  end)

  it("with enobufs past the bound the call returns nil, 'netlink dump kept losing messages', ENOBUFS", function()
    local fds0 = fds()
    core._inject_dump_faults{ enobufs = 9 }
    assert.same({ nil, "netlink dump kept losing messages: No buffer space available", 105 },
                { tcplab.snapshot{ columns = true, backend = "netlink" } })
    assert.same({ restarts = 0, reopens = 8 }, core._dump_stats())
    core._inject_dump_faults{ enobufs = 9 }
    assert.same({ nil, "netlink dump kept losing messages: No buffer space available", 105 },
                { tcplab.counts(NL) })
    assert.equal(fds0, fds())
  end)

  it("a dump of another namespace by path reopens inside that namespace", function()
    -- a process that stays in this namespace names it by path
    local pid = tonumber(support.slurp("sleep 30 > /dev/null 2>&1 & echo $!"))
    local path = "/proc/" .. pid .. "/ns/net"
    local ok, err = pcall(function()
      local want = assert(tcplab.counts(NL))
      local other <close> = assert(core.netns.open())
      local here <close> = assert(core.netns.unshare())   -- move away; the dump must not follow
      core._inject_dump_faults{ enobufs = 2 }
      local got = { tcplab.counts{ netns = path, backend = "netlink" } }
      local stats = core._dump_stats()
      local empty = { tcplab.counts(NL) }                   -- the fresh namespace is empty
      assert(other:enter())
      assert.same({ want }, got)
      assert.equal(2, stats.reopens)
      assert.same({ {} }, empty)
    end)
    os.execute("kill " .. pid)
    assert(ok, err)
  end)

  it("faults are counted down one per dump attempt and a fault-free dump has zero stats", function()
    core._inject_dump_faults{ interrupt = 1, enobufs = 1 }
    assert(tcplab.counts(NL))
    assert.same({ restarts = 1, reopens = 1 }, core._dump_stats())
    assert(tcplab.counts(NL))
    assert.same({ restarts = 0, reopens = 0 }, core._dump_stats())
  end)

  it("rejects unknown faults and counts out of range", function()
    local cases = {
      { { interupt = 1 }, "unknown fault 'interupt' %(valid: interrupt enobufs%)" },
      { { interrupt = -1 }, "interrupt: count 0%.%.1000 expected" },
      { { enobufs = 1001 }, "enobufs: count 0%.%.1000 expected" },
      { { enobufs = "x" }, "enobufs: count 0%.%.1000 expected" },
      { { enobufs = 1.5 }, "enobufs: count 0%.%.1000 expected" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(core._inject_dump_faults, case[1])
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[^']*' %(" .. case[2], err)
    end
    assert.is_false((pcall(core._inject_dump_faults, 3)))
  end)
end)

describe("counts by key past the first resize of its table #kernel", function()
  it("keeps every one of 200 ports whole: its listener and its accepted connection under one key", function()
    local keep, ports = {}, {}
    for i = 1, 200 do
      local l = assert(tcplab.listen("127.0.0.1", 0))
      ports[i] = select(2, l:getsockname())
      local c = assert(tcplab.connect("127.0.0.1", ports[i], 2))
      local a = assert(l:accept(2))
      keep[#keep + 1], keep[#keep + 2], keep[#keep + 3] = l, c, a
    end
    local by = assert(tcplab.counts{ by = "sport", states = { "LISTEN", "ESTABLISHED" }, src = "127.0.0.1" })
    local wrong = {}
    for _, p in ipairs(ports) do
      local k = by[p]
      if not (k and k.LISTEN == 1 and k.ESTABLISHED == 1) then wrong[#wrong + 1] = p end
    end
    for _, s in ipairs(keep) do s:close() end
    assert.same({}, wrong)
  end)
end)
