--- The tracepoint sock/inet_sock_set_state in a private tracefs instance.
--
-- Instances are global to the machine: each is named tcplab-PID-SEQ after the
-- process that made it, and a process only ever looks at its own. One left
-- by a process that died without cleaning up (SIGKILL) is swept by the next
-- start; so is one carrying our PID that this process did not make (a dead
-- process's, whose PID was reused).
local sys = require "tcplab.sys"

local tracefs = {}

tracefs.ROOT = "/sys/kernel/tracing"
local EVENT = "events/sock/inet_sock_set_state"
--- Ports one filter can name: tracefs refuses longer filters (EINVAL).
tracefs.MAX_PORTS = 64

local made = {}    -- name -> dir for the instances this process made and holds
local seq = 0

local function instances_dir() return tracefs.ROOT .. "/instances" end

--- Is the tracepoint usable here (tracefs mounted or mountable, root)?
function tracefs.available()
  local fmt = tracefs.ROOT .. "/" .. EVENT .. "/format"
  if not sys.readfile(fmt) then
    os.execute("mount -t tracefs nodev " .. tracefs.ROOT .. " 2>/dev/null")
  end
  return sys.readfile(fmt) ~= nil and sys.is_root()
end

--- The prefix of this process's instance names.
function tracefs.prefix()
  return ("tcplab-%d-"):format(sys.pid())
end

--- Names of all tcplab instances on the machine (any process).
local function all_instances()
  local p = sys.popen("ls tracefs instances", "ls -1 " .. instances_dir() .. " 2>/dev/null")
  if not p then return {} end
  local names = {}
  for name in p:lines() do
    if name:match("^tcplab%-%d+%-%d+$") then names[#names + 1] = name end
  end
  p:close()
  return names
end

--- This process's instances that exist now.
function tracefs.mine()
  local out = {}
  for _, name in ipairs(all_instances()) do
    if name:sub(1, #tracefs.prefix()) == tracefs.prefix() then out[#out + 1] = name end
  end
  return out
end

local function remove_dir(dir)
  sys.writefile(dir .. "/tracing_on", "0")
  sys.writefile(dir .. "/" .. EVENT .. "/enable", "0")
  return os.remove(dir)   -- rmdir: tracefs frees the instance and its buffers
end

-- When the Lua state closes (os.exit(code, true), the end of a script, or
-- lua_close after an error raised while an instance was being set up), the
-- instances still held go with it.
local reaper = setmetatable({}, { __gc = function()
  for name, dir in pairs(made) do
    remove_dir(dir)
    made[name] = nil
  end
end })
tracefs._reaper = reaper

--- Remove instances whose process is gone; returns how many were removed.
function tracefs.sweep()
  local n, me = 0, sys.pid()
  for _, name in ipairs(all_instances()) do
    local pid = tonumber(name:match("^tcplab%-(%d+)%-"))
    if (pid == me and not made[name]) or (pid ~= me and not sys.alive(pid)) then
      if remove_dir(instances_dir() .. "/" .. name) then n = n + 1 end
    end
  end
  return n
end

--- A new instance recording the ports' transitions: { dir = ..., name = ... },
-- or nil and a message.
function tracefs.create(ports, buffer_kb)
  if #ports > tracefs.MAX_PORTS then
    return nil, ("at most %d ports per recorder (tracefs filter length)"):format(tracefs.MAX_PORTS)
  end
  tracefs.sweep()
  local name, dir
  for _ = 1, 100 do   -- bounded: a name in use (not ours to remove) is skipped
    seq = seq + 1
    name = tracefs.prefix() .. seq
    dir = instances_dir() .. "/" .. name
    -- registered before mkdir runs: Ctrl-C while we wait for mkdir would
    -- otherwise leave an instance nobody knows of
    made[name] = dir
    local _, ok = sys.run("mkdir", "mkdir " .. sys.shq(dir))
    if ok then break end
    made[name] = nil
    name = nil
  end
  if not name then return nil, "mkdir " .. instances_dir() .. "/" .. tracefs.prefix() .. "N failed" end
  local inst = { dir = dir, name = name }
  local conds = {}
  for _, p in ipairs(ports) do conds[#conds + 1] = ("sport == %d || dport == %d"):format(p, p) end
  if #conds == 0 then conds[1] = "1" end   -- no port: every TCP socket (tracefs has no "true")
  local ev = dir .. "/" .. EVENT .. "/"
  for _, step in ipairs({
    { dir .. "/trace_clock", "mono" },
    { dir .. "/buffer_size_kb", tostring(buffer_kb) },
    { ev .. "filter", #ports == 0 and "protocol == 6" or ("protocol == 6 && (" .. table.concat(conds, " || ") .. ")") },
    { ev .. "enable", "1" },
    { dir .. "/tracing_on", "1" },
  }) do
    local done, ok, err = pcall(sys.writefile, step[1], step[2])
    if not (done and ok) then
      tracefs.remove(inst)
      if not done then error(ok, 0) end   -- interrupted: raise it again, nothing left
      return nil, err
    end
  end
  return inst
end

--- Stop recording; the buffer's text and the number of events lost.
function tracefs.read(inst)
  sys.writefile(inst.dir .. "/tracing_on", "0")
  local lost = 0
  for cpu = 0, 4095 do
    local stats = sys.readfile(("%s/per_cpu/cpu%d/stats"):format(inst.dir, cpu))
    if not stats then break end
    for line in stats:gmatch("[^\n]+") do
      local n = line:match("^overrun: (%d+)") or line:match("^dropped events: (%d+)")
      if n then lost = lost + tonumber(n) end
    end
  end
  return sys.readfile(inst.dir .. "/trace") or "", lost
end

--- A live stream of the instance's events: a helper (cat, under timeout so
-- it ends after `limit` seconds even if nobody stops it) reads trace_pipe,
-- which consumes what it reads and blocks until an event comes. Both
-- timeout and cat die with their parent (setpriv --pdeathsig), so a SIGKILL
-- of this process leaves no reader behind.
-- { pipe = file, pid = helper pid }, or nil and a message.
function tracefs.stream(inst, limit)
  local p, err = sys.popen("trace_pipe", ("echo $$; exec setpriv --pdeathsig KILL timeout %d setpriv --pdeathsig KILL cat %s"):format(
    math.max(1, math.ceil(limit)), sys.shq(inst.dir .. "/trace_pipe")))
  if not p then return nil, err end
  local pid = tonumber(p:read("l"))
  if not pid then p:close() return nil, "trace_pipe: the helper did not start" end
  return { pipe = p, pid = pid }
end

--- End a stream; the text its helper had already written.
function tracefs.end_stream(stream)
  if not stream.pipe then return "" end
  os.execute("kill " .. stream.pid .. " 2>/dev/null")
  local rest = stream.pipe:read("a") or ""
  stream.pipe:close()
  stream.pipe = nil
  return rest
end

--- Remove the instance (idempotent). tracefs refuses (EBUSY) while one of the
-- instance's files is open; a handle dropped by an error is closed by a
-- collection, so try again after one. One that still cannot go stays known,
-- for the reaper when the Lua state closes.
function tracefs.remove(inst)
  if inst.name and made[inst.name] then
    if remove_dir(inst.dir) or (collectgarbage() and remove_dir(inst.dir))
       or not sys.readfile(inst.dir .. "/tracing_on") then
      made[inst.name] = nil
    end
  end
  inst.name = nil
end

local function unmap(addr)
  return addr:match("^::ffff:(%d+%.%d+%.%d+%.%d+)$") or addr
end

local function state(name)   -- the dump reports request sockets as SYN_RECV
  return name == "NEW_SYN_RECV" and "SYN_RECV" or name
end

--- Events of the trace text: { time, family, src, sport, dst, dport, from, to }.
function tracefs.parse(text)
  local events = {}
  for t, fam, sport, dport, saddr, daddr, s6, d6, from, to in text:gmatch(
      "(%d+%.%d+): inet_sock_set_state: family=(%S+) protocol=%S+ sport=(%d+) dport=(%d+) " ..
      "saddr=(%S+) daddr=(%S+) saddrv6=(%S+) daddrv6=(%S+) oldstate=TCP_(%S+) newstate=TCP_(%S+)") do
    local v6 = fam == "AF_INET6"
    events[#events + 1] = {
      time = tonumber(t), family = v6 and "inet6" or "inet",
      src = v6 and unmap(s6) or saddr, sport = tonumber(sport),
      dst = v6 and unmap(d6) or daddr, dport = tonumber(dport),
      from = state(from), to = state(to),
    }
  end
  return events
end

return tracefs
