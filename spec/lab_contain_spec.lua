local tcplab = require "tcplab"
local support = require "support"

-- Every process of a lab is contained (a PID namespace under the lab's own
-- init): servers that daemonize, fork from a thread, fork thousands of
-- children or fork-bomb are followed and stopped, and a lab left open never
-- keeps its script from exiting. Each spec looks only at its own lab's PID
-- namespace, held open (so its inode cannot be reused) while it looks.
local it_root = function(name, body) support.as_root(it, pending, name, body) end

local PORT = 8080
local unruly   -- the compiled spec/servers/unruly.c

-- Host pids of the processes in the PID namespace with this inode.
local function in_namespace(ino)
  local out = {}
  local p = io.popen("stat -L -c '%i %n' /proc/[0-9]*/ns/pid 2>/dev/null")
  for line in p:lines() do
    local i, pid = line:match("^(%d+) /proc/(%d+)/ns/pid$")
    if i == ino and support.alive(tonumber(pid)) then out[#out + 1] = tonumber(pid) end
  end
  p:close()
  return out
end

-- Hold the lab's PID namespace; returns its inode and the held file.
local function hold_namespace(lab)
  local init = lab.contained:init_pid()
  local f = assert(io.open("/proc/" .. init .. "/ns/pid"))
  local ino = support.slurp("stat -L -c %i /proc/" .. init .. "/ns/pid"):match("%d+")
  return ino, f
end

local function echo_ok(lab)
  local c <close> = assert(lab:connect(2))
  assert(c:write("ping", 2))
  assert.equal("ping", c:read(4, 2))
end

-- Close the lab and check that nothing of it is left; returns the count close() gave.
local function close_and_check(lab)
  local ino, held = hold_namespace(lab)
  local ok, stopped = lab:close()
  assert.is_true(ok, stopped)
  assert.same({}, in_namespace(ino))
  held:close()
  assert.same({}, lab:pids())
  return stopped
end

describe("tcplab.lab contains every process of the server #kernel #root", function()
  setup(function()
    if not support.is_root() then return end
    unruly = os.tmpname()
    local cflags = "-std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -pthread"
    local out = support.slurp(("cc %s -o %s spec/servers/unruly.c 2>&1"):format(cflags, unruly))
    assert(out == "", out)
  end)
  teardown(function() if unruly then os.remove(unruly) unruly = nil end end)

  it_root("follows a server that daemonizes before it listens, tests it and stops it", function()
    local lab <close> = assert(tcplab.lab{ cmd = { unruly, "daemon-before", tostring(PORT) }, port = PORT })
    assert.is_true((lab:exited()))           -- its first process is gone ...
    local pids = lab:pids()
    assert.equal(1, #pids)                   -- ... the daemon runs on
    assert.equal(pids[1], assert(lab:listeners())[1].owner.pid)
    echo_ok(lab)
    assert.equal(1, close_and_check(lab))
  end)

  it_root("follows a server that daemonizes after it listens", function()
    local lab <close> = assert(tcplab.lab{ cmd = { unruly, "daemon-after", tostring(PORT) }, port = PORT })
    assert(support.wait_for(function() return (lab:exited()) end, 5), "the first process exits")
    assert.equal(1, #lab:pids())
    echo_ok(lab)
    assert.equal(1, close_and_check(lab))
  end)

  it_root("stops a child forked from a thread that is not the main one", function()
    local lab <close> = assert(tcplab.lab{ cmd = { unruly, "thread-child", tostring(PORT) }, port = PORT })
    assert(support.wait_for(function() return (lab:output()):match("thread child %d+") end, 5))
    assert.equal(2, #lab:pids())
    assert.equal(2, close_and_check(lab))
  end)

  -- fork() takes 10-20 ms each on this busy host (3,000 took 36-62 s, in a PID namespace
  -- or not): the wait is bounded generously
  it_root("stops what is left of 3,000 forked children (the six that setsid and sleep)", function()
    local lab <close> = assert(tcplab.lab{ cmd = { unruly, "fork-loop", tostring(PORT), "3000" }, port = PORT })
    assert(support.wait_for(function() return (lab:output()):match("forked 3000") end, 240), "forked 3000")
    assert(support.wait_for(function() return #lab:pids() == 7 end, 10), "7 processes: " .. #lab:pids())
    assert.equal(7, close_and_check(lab))
  end)

  it_root("bounds a fork bomb run as nobody by max_pids, and stops all of it", function()
    local lab <close> = assert(tcplab.lab{ cmd = { unruly, "forkbomb", tostring(PORT) }, port = PORT, max_pids = 100 })
    assert.matches("^" .. lab.cgroup:gsub("%p", "%%%0") .. "$", lab.cgroup)
    -- the bomb fills its cgroup: 100 processes at most (its own RLIMIT_NPROC safety net is 400)
    local most = 0
    support.wait_for(function()
      local n = #lab:pids()
      if n > most then most = n end
      return n >= 90
    end, 20)
    assert.is_true(most >= 90, "the bomb grew to " .. most)
    assert.is_true(most <= 100, "the bomb grew past max_pids: " .. most)
    local uid = support.slurp("stat -c %u /proc/" .. lab:pids()[1]):match("%d+")
    assert.equal("65534", uid)
    local cgroup = lab.cgroup
    local stopped = close_and_check(lab)
    -- every distinct process signalled: the bomb refills its cgroup while SIGTERM lands
    assert.is_true(stopped >= 90, "stopped " .. stopped)
    assert.is_nil(io.open(cgroup .. "/pids.max"), "the cgroup is removed")
  end)

  it_root("tcplab check tests a daemonizing server and says how many processes it stopped", function()
    local out = support.tcplab(("check --port %d --clients 2 --send 'ping\\n' -- %s daemon-before %d")
      :format(PORT, unruly, PORT))
    assert.matches("\nPASS  close%-wait", "\n" .. out)
    assert.is_nil(out:match("exited before listening"), out)
    assert.matches("\nstopped 1 process of the command at the end\n", out)
    local json = support.tcplab(("check --port %d --clients 2 --format json -- %s thread-child %d")
      :format(PORT, unruly, PORT))
    assert.matches('"stopped":2,', json)
  end)

  it_root("removes the pids cgroup of a lab whose process was killed before closing it", function()
    -- a pid that is gone: a shell that printed its own and exited
    local dead = tonumber(support.slurp("sh -c 'echo $$'"):match("%d+"))
    assert.is_false(support.alive(dead))
    local first <close> = assert(tcplab.lab{ cmd = { unruly, "daemon-after", tostring(PORT) }, port = PORT, max_pids = 10 })
    local root = first.cgroup:match("^(.*)/[^/]+$")
    local stale = ("%s/tcplab-lab-%d-1"):format(root, dead)
    first:close()
    assert(os.execute("mkdir " .. stale))
    local lab <close> = assert(tcplab.lab{ cmd = { unruly, "daemon-after", tostring(PORT) }, port = PORT, max_pids = 10 })
    local gone = io.open(stale .. "/pids.max") == nil
    if not gone then os.remove(stale) end
    assert.is_true(gone, "stale cgroup left: " .. stale)
    assert.equal(1, close_and_check(lab))
  end)

  it_root("says max_pids needs a number and reports a bad one", function()
    assert.has_error(function() tcplab.lab{ cmd = { "x" }, port = PORT, max_pids = 0 } end,
      "bad argument #1 to 'lab' (max_pids: 1..1000000 expected, got 0)")
    local lab, err = tcplab.lab{ cmd = { "sleep", "10" }, port = PORT, max_pids = 1 }
    assert.is_nil(lab)
    assert.equal("cannot start the command: fork the command: Resource temporarily unavailable " ..
                 "(max_pids 1 counts the lab's own init too)", err)
  end)
end)

describe("tcplab.lab keeps only bounded output #kernel #root", function()
  setup(function()
    if not support.is_root() or unruly then return end
    unruly = os.tmpname()
    local out = support.slurp(("cc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -pthread -o %s spec/servers/unruly.c 2>&1")
      :format(unruly))
    assert(out == "", out)
  end)
  teardown(function() if unruly then os.remove(unruly) unruly = nil end end)

  local function rss_kib()
    return tonumber(support.slurp("cat /proc/" .. support.pid() .. "/status"):match("VmRSS:%s*(%d+)"))
  end

  it_root("keeps the last 64 KiB of 50 MiB on each stream, in memory, and no file", function()
    local tmpnames, tmpname = 0, os.tmpname
    os.tmpname = function() tmpnames = tmpnames + 1 return tmpname() end
    local before = rss_kib()
    local lab <close>, err = tcplab.lab{ cmd = { unruly, "noisy", tostring(PORT), "25" }, port = PORT }
    os.tmpname = tmpname
    assert(lab, err)
    assert(support.wait_for(function() return select(2, lab:output()):match("done\n$") end, 60), "the server wrote it all")
    local out, errs, nout, nerr = lab:output()
    assert.equal(65536, #out)
    assert.equal(("o"):rep(1023) .. "\n", out:sub(-1024))
    assert.equal(25 * 1024 * 1024 + #"listening on 127.0.0.1:8080\n", nout)
    assert.equal(25 * 1024 * 1024 + #"done\n", nerr)
    assert.equal(("e"):rep(1023) .. "\ndone\n", errs:sub(-1029))
    local grown = rss_kib() - before
    assert.is_true(grown < 16 * 1024, "RSS grew by " .. grown .. " KiB")
    assert.equal(0, tmpnames, "no temp file")
    lab:close()
    assert.equal(65536, #(lab:output()))   -- kept after close
  end)
end)

describe("a lab left open #kernel #root", function()
  for _, mode in ipairs({ "error", "exit", "exit_close", "collect" }) do
    it_root("never keeps the script from exiting and leaves nothing behind: " .. mode, function()
      -- timeout bounds a hang (exit 124); the lab's processes are looked up by pid and namespace
      local out, rc = support.slurp(("timeout -s KILL 30 lua5.4 spec/servers/left_open.lua %s %d 2>&1; echo rc=$?")
        :format(mode, PORT)):match("^(.-)rc=(%d+)\n$")
      local init, ino, cmd, tmpnames = out:match("lab (%d+) (%d+) (%d+) (%d+)\n")
      assert(init, out)
      -- nothing left: no live process of that namespace among the ones we know
      local left = {}
      for _, p in ipairs({ tonumber(init), tonumber(cmd) }) do
        local now = support.slurp(("stat -L -c %%i /proc/%d/ns/pid 2>/dev/null"):format(p)):match("%d+")
        if now == ino and support.alive(p) then left[#left + 1] = p end
      end
      if #left > 0 then os.execute("kill -KILL " .. init .. " 2>/dev/null") end   -- do not leave it to the host
      assert.same({}, left)
      assert.same({}, in_namespace(ino))
      assert.are_not.equal("137", rc, "the script hung: " .. out)
      assert.equal(mode == "collect" and "0" or "1", rc)
      assert.equal("0", tmpnames)
      if mode == "error" then assert.matches("oops", out) end
    end)
  end
end)
