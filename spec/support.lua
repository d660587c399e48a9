--- Helpers shared by the specs: this process's fds, shell oracles, root.
local support = {}

local function slurp(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end
support.slurp = slurp

--- A string quoted for sh.
function support.shq(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

function support.pid()
  local f <close> = assert(io.open("/proc/self/stat"))
  return f:read("n")
end

--- Number of open fds of this process once garbage is collected (an
-- unreachable socket's fd is closed by __gc; a leak survives it). Counted
-- in-process: a popen("ls") would count its own pipe now and then.
function support.fd_count()
  if collectgarbage("isrunning") then
    collectgarbage()
    collectgarbage()
  end
  return require("tcplab.core")._fds()
end

--- Inode number behind one of our fds, from /proc/PID/fd.
function support.fd_inode(fd)
  local link = slurp(("readlink /proc/%d/fd/%d"):format(support.pid(), fd))
  return tonumber(link:match("socket:%[(%d+)%]"))
end

function support.is_root()
  return require("tcplab.sys").is_root()
end

--- Run a shell command the way a user would run tcplab: no LUA_PATH or
-- LUA_CPATH from the test harness, from the checkout's bin/. Returns the
-- output (stdout and stderr) and the exit status as a number.
function support.tcplab(args, opts)
  opts = opts or {}
  local cmd = ("cd %s && env -u LUA_PATH -u LUA_CPATH %s %s %s 2>&1; echo rc=$?")
    :format(support.shq(opts.cwd or "."), opts.env or "", opts.bin or "bin/tcplab", args)
  local out, rc = slurp(cmd):match("^(.-)rc=(%d+)\n$")
  return out, tonumber(rc)
end

--- Child pids of a process, from /proc (ps and pgrep hang under the ASan
-- preload of make test-asan).
function support.children(pid)
  local f = io.open(("/proc/%d/task/%d/children"):format(pid, pid))
  local out = {}
  if f then
    for child in f:read("a"):gmatch("%d+") do out[#out + 1] = tonumber(child) end
    f:close()
  end
  return out
end

--- Does the process exist (and is it not a zombie)?
function support.alive(pid)
  local f = io.open(("/proc/%d/stat"):format(pid))
  if not f then return false end
  local state = f:read("a"):match("^%d+ %b() (%a)")
  f:close()
  return state ~= "Z" and state ~= "X"
end

--- Number of keys of a table.
function support.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

--- Wait (bounded) until pred() is true; returns its last value.
function support.wait_for(pred, seconds)
  local core = require "tcplab.core"
  local deadline = core.now() + (seconds or 5)
  repeat
    local v = pred()
    if v then return v end
    core.sleep(0.01)
  until core.now() > deadline
  return pred()
end

--- Sorted output lines of a shell pipeline.
function support.lines(cmd)
  local out = {}
  for line in slurp(cmd):gmatch("[^\n]+") do out[#out + 1] = line end
  table.sort(out)
  return out
end

--- The recorder a scenario picks here: "bpf" where the BPF recorder loads,
-- else "tracepoint" (root) -- tried once, by loading it.
local recorder
function support.recorder()
  if recorder == nil then
    local h = require("tcplab").bpf_trace{ ports = { 1 } }
    recorder = h and "bpf" or "tracepoint"
    if h then h:close() end
  end
  return recorder
end

--- Each socket's events (by cookie) form a chain: every event starts in the
-- state the one before it ended in. Returns true, or false and the break.
function support.chained(events)
  local last = {}
  for _, ev in ipairs(events) do
    if ev.cookie and ev.cookie ~= 0 and not ev.derived then
      local prev = last[ev.cookie]
      if prev and prev.to ~= ev.from then
        return false, ("cookie %d: %s>%s then %s>%s"):format(ev.cookie, prev.from, prev.to, ev.from, ev.to)
      end
      last[ev.cookie] = ev
    end
  end
  return true
end

--- Run `body` only as root; otherwise mark it pending and say why.
function support.as_root(it_fn, pending_fn, name, body)
  if support.is_root() then
    it_fn(name, body)
  else
    pending_fn(name .. " (needs root: network namespace)")
  end
end

--- Build a C unit test (spec/c/NAME.c plus the csrc files it needs, no Lua
-- unless cflags says so) and turn each of its "ok NAME" / "FAIL NAME" lines
-- into a busted test (it_fn and assert are busted's); `expected` is how many
-- checks it must run.
function support.c_unit(it_fn, assert, o)
  local bin = os.tmpname()
  local build = slurp(("cc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror %s -o %s %s 2>&1")
    :format(o.cflags or "", bin, table.concat(o.sources, " ")))
  local out = build == "" and slurp((o.run_env or "") .. bin .. " 2>&1") or ""
  os.remove(bin)

  it_fn("builds", function() assert.equal("", build) end)
  for line in out:gmatch("[^\n]+") do
    local status, name = line:match("^(%a+) (.+)$")
    if status == "ok" or status == "FAIL" then
      it_fn(name, function() assert.equal("ok", status) end)
    end
  end
  it_fn("ran all its checks", function()
    assert.matches("\n0 failed\n$", out)
    local n = select(2, out:gsub("\nok ", "")) + (out:match("^ok ") and 1 or 0)
    assert.equal(o.expected, n)
  end)
end

return support
