--- A lab around any command: the command runs in a fresh network namespace
-- with lo up, and the lab hands back what tcplab offers for its own sockets
-- (clients, snapshot, counts, owners, recorder, faults), scoped to it.
--
--   local lab <close> = assert(tcplab.lab{ cmd = { "./myserver", "--port", "8080" }, port = 8080 })
--   local c = assert(lab:connect())           -- a client from the same namespace
--   lab:server_sockets{ states = "CLOSE_WAIT" } -- records with .owner = { pid, fd, comm }
--   lab:close()                               -- SIGTERM, SIGKILL after grace, namespace gone
--
-- Every process of the command is contained: it runs under an init of the
-- lab's own, the first process of a fresh PID namespace (core.spawn_contained,
-- csrc/spawn.c). What the command forks, from any thread, daemonized or not,
-- stays in that namespace, and when the lab's init dies the kernel kills all
-- of it: at close(), when the lab is collected, and when this process exits
-- or is killed (init watches a pipe whose write end only this process holds).
-- The output is kept in two bounded rings in memory (the last 64 KiB of
-- stdout and of stderr); nothing is written to /tmp. opts.max_pids adds a
-- pids cgroup with that limit (a fork bomb stays bounded).
--
-- The lab's namespace is a value (lab.netns, from tcplab.netns.new()): this
-- process never moves into it. Clients are made in it (ns:socket), dumps
-- read it (snapshot{netns = ns}), faults go into it (fault.drop{netns = ns}),
-- the command is forked from inside it (ns:run). Whatever a lab call does,
-- it returns with the caller in the namespace it was in, errors and Ctrl-C
-- included (doc/namespaces.md). One lab at a time per process (its clients'
-- address is made from the PID).
local tcplab = require "tcplab.kernel"
local sys = require "tcplab.sys"
local args = require "tcplab.args"
local core = require "tcplab.core"

local lab = {}

local Lab = {}
Lab.__index = Lab

local open_lab   -- the lab this process is in, if any

local DEFAULTS = { timeout = 5, grace = 2, host = "127.0.0.1" }

local function bad(msg) args.error("lab", 1, msg, 4) end

local function check_opts(opts)
  if type(opts) ~= "table" then bad("table expected, got " .. type(opts)) end
  local cmd = opts.cmd
  if type(cmd) ~= "table" or #cmd == 0 then bad("cmd: list of strings expected (program and arguments)") end
  for i, a in ipairs(cmd) do
    if type(a) ~= "string" and math.type(a) ~= "integer" then
      bad(("cmd[%d]: string expected, got %s"):format(i, type(a)))
    end
  end
  local port = opts.port
  local port_msg = args.bad_port(port)
  if port_msg then bad("port: " .. port_msg:gsub("^port ", "")) end
  for _, k in ipairs({ "timeout", "grace" }) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v <= 0 or v > 3600) then
      bad(("%s: seconds 0..3600 expected, got %s"):format(k, args.show(v)))
    end
  end
  local mp = opts.max_pids
  if mp ~= nil and (math.type(mp) ~= "integer" or mp < 1 or mp > 1000000) then
    bad("max_pids: 1..1000000 expected, got " .. args.show(mp))
  end
  if opts.host ~= nil and (type(opts.host) ~= "string" or not (opts.host:match("^%d+%.%d+%.%d+%.%d+$")
                                                               or opts.host:find(":", 1, true))) then
    bad("host: an IPv4 or IPv6 address string expected, got " .. args.show(opts.host))
  end
end

---------------------------------------------------------------- processes
-- Under make test-asan ps and pgrep hang: everything here reads /proc.

-- Alive: exists and is not a zombie (sys.alive, the one reader of /proc/PID/stat's state).
local alive = sys.alive
lab.alive = alive

-- CPU seconds (user + system) a set of processes used so far.
function lab.cpu(pids)
  local ticks = 0
  for _, p in ipairs(pids) do
    local stat = sys.readfile(("/proc/%d/stat"):format(p))
    if stat then
      local rest = stat:match("^%d+ %b() (.*)$")
      local f = {}
      for w in rest:gmatch("%S+") do f[#f + 1] = w end
      ticks = ticks + (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)   -- utime, stime
    end
  end
  return ticks / 100   -- USER_HZ
end

--- Sockets held by processes: { [inode] = { pid, fd, comm } }, from
-- /proc/PID/fd (one find for all of them; only the lab's few processes).
function lab.owners(pids)
  local dirs = {}
  for _, p in ipairs(pids) do dirs[#dirs + 1] = ("/proc/%d/fd"):format(p) end
  local owners = {}
  if #dirs == 0 then return owners end
  local p = io.popen("find " .. table.concat(dirs, " ") .. " -lname 'socket:*' -printf '%h %f %l\\n' 2>/dev/null")
  if not p then return owners end
  local comms = {}
  for line in p:lines() do
    local pid, fd, inode = line:match("^/proc/(%d+)/fd (%d+) socket:%[(%d+)%]$")
    if pid then
      pid = tonumber(pid)
      if comms[pid] == nil then
        comms[pid] = (sys.readfile(("/proc/%d/comm"):format(pid)) or "?"):gsub("%s+$", "")
      end
      inode = tonumber(inode)
      if not owners[inode] then owners[inode] = { pid = pid, fd = tonumber(fd), comm = comms[pid] } end
    end
  end
  p:close()
  return owners
end

local function sleep_until(deadline, step)
  local left = deadline - tcplab.now()
  if left > 0 then tcplab.sleep(math.min(step, left)) end
end

local SIGTERM = 15

-- Wait (bounded) until the lab has no process left but its init; true when so.
local function wait_empty(self, seconds)
  local deadline = tcplab.now() + seconds
  while true do
    if #self.contained:members() == 0 then return true end
    if tcplab.now() >= deadline then return false end
    sleep_until(deadline, 0.01)
  end
end

---------------------------------------------------------------- pids cgroup
-- Where a pids controller can be used: a cgroup v2 mount whose root hands
-- "pids" to its children, else a v1 hierarchy with the pids controller.
-- Returns the directory, or nil and why not.
local function pids_hierarchy()
  local mounts = sys.readfile("/proc/self/mounts") or ""
  local v1
  -- only mounts at /sys/fs/cgroup: the same hierarchy mounted elsewhere (a
  -- chroot being built, a container's root) may be unmounted under us
  for dir, fstype, mopts in mounts:gmatch("%S+ (%S+) (%S+) (%S+)[^\n]*") do
    if dir ~= "/sys/fs/cgroup" and dir:sub(1, 15) ~= "/sys/fs/cgroup/" then
      -- not ours to use
    elseif fstype == "cgroup2" then
      local sub = sys.readfile(dir .. "/cgroup.subtree_control") or ""
      if (" " .. sub .. " "):find("%spids%s") then return dir, "cgroup2" end
    elseif fstype == "cgroup" and not v1 and ("," .. mopts .. ","):find(",pids,", 1, true) then
      v1 = dir
    end
  end
  if v1 then return v1, "cgroup v1" end
  return nil, "no pids cgroup controller here (neither a cgroup2 root delegating pids nor a v1 pids hierarchy)"
end

local cgroup_seq = 0

-- Remove the cgroups of labs whose process is gone (killed before close).
local function sweep_cgroups(root)
  local p = io.popen("ls -1 " .. sys.shq(root) .. " 2>/dev/null")
  if not p then return end
  local dead = {}
  for name in p:lines() do
    local owner = name:match("^tcplab%-lab%-(%d+)%-%d+$")
    if owner and not alive(tonumber(owner)) then dead[#dead + 1] = name end
  end
  p:close()
  for _, name in ipairs(dead) do os.remove(root .. "/" .. name) end
end

-- A fresh pids cgroup limited to max: its directory, or nil and a message.
local function make_cgroup(max)
  local root, kind = pids_hierarchy()
  if not root then return nil, kind end
  sweep_cgroups(root)
  cgroup_seq = cgroup_seq + 1
  local dir = ("%s/tcplab-lab-%d-%d"):format(root, sys.pid(), cgroup_seq)
  local ok, err = os.execute("mkdir " .. sys.shq(dir) .. " 2>/dev/null")
  if not ok then return nil, "cannot make the cgroup " .. dir .. ": " .. tostring(err) end
  ok, err = sys.writefile(dir .. "/pids.max", tostring(max))
  if not ok then os.remove(dir) return nil, err end
  return dir, kind
end

-- Remove a lab's cgroup once its processes are gone (bounded: the kernel
-- may take a moment to release the last one).
local function remove_cgroup(dir)
  local deadline = tcplab.now() + 2
  while true do
    if os.remove(dir) or not io.open(dir .. "/pids.max") then return true end
    if tcplab.now() >= deadline then return nil, "cgroup left: " .. dir end
    sleep_until(deadline, 0.02)
  end
end

-- A command is findable: a path to an executable file, or a name on PATH.
local function findable(prog)
  local out = sys.run("sh", "command -v " .. sys.shq(prog))
  return out ~= nil and out:match("%S") ~= nil
end

---------------------------------------------------------------- the lab
local function tail(text, n)
  text = text or ""
  if #text > n then text = "..." .. text:sub(-n) end
  return text
end

--- What the command wrote so far, the last 64 KiB of each: stdout, stderr,
-- then how many bytes it wrote to each in all.
function Lab:output()
  if self.final_output then
    local f = self.final_output
    return f.stdout, f.stderr, f.stdout_bytes, f.stderr_bytes
  end
  if not self.contained then return "", "", 0, 0 end
  return self.contained:output()
end

-- The command's output for an error message.
function Lab:_output_text()
  local out, err = self:output()
  local parts = {}
  if out:match("%S") then parts[#parts + 1] = "stdout: " .. tail(out, 2000):gsub("%s+$", "") end
  if err:match("%S") then parts[#parts + 1] = "stderr: " .. tail(err, 2000):gsub("%s+$", "") end
  if #parts == 0 then return "(no output)" end
  return table.concat(parts, "\n")
end

--- Every live process of the lab now (host pids, ascending): the command
-- and all it started, wherever they went (setsid, double fork, threads),
-- not the lab's own init. Empty once the lab is closed.
function Lab:pids()
  if not self.contained then return {} end
  local pids = self.contained:members()
  table.sort(pids)
  return pids
end

--- Did the command (the first process) exit? Then also how: "exit", code or
-- "signal", number. Processes it left behind may still run: see pids().
function Lab:exited()
  if not self.contained then return false end
  local _, how, code = self.contained:command()
  if not how then return false end
  return true, how, code
end

local function scoped(self, f)
  local copy = {}
  for k, v in pairs(f or {}) do copy[k] = v end
  copy.netns = self.netns
  return copy
end

--- tcplab.snapshot in the lab's namespace (the filter as tcplab.snapshot's).
function Lab:snapshot(f) return tcplab.snapshot(scoped(self, f)) end

--- tcplab.counts in the lab's namespace.
function Lab:counts(f) return tcplab.counts(scoped(self, f)) end

--- Records of the sockets the command's processes hold, each with
-- .owner = { pid, fd, comm } (joined by inode); the filter as snapshot's.
-- Sockets waiting in an accept queue have no owner yet and are not listed.
function Lab:server_sockets(f)
  local recs, err = self:snapshot(f)
  if not recs then return nil, err end
  local owners = lab.owners(self:pids())
  local out = {}
  for _, r in ipairs(recs) do
    local o = r.inode ~= 0 and owners[r.inode]
    if o then r.owner = o out[#out + 1] = r end
  end
  return out
end

--- { [inode] = { pid, fd, comm } } for the sockets the command's processes hold.
function Lab:owners() return lab.owners(self:pids()) end

--- The listening socket(s) of the command on the lab's port.
function Lab:listeners()
  return self:server_sockets{ states = "LISTEN", sport = self.port }
end

--- The address the lab's clients bind to, in the family of the address they
-- dial (self.host): 127.x.y.z from this process's pid, or for IPv6 an
-- fd74::/16 address of the same kind added to the lab's lo (::1 if that fails).
function Lab:client_address()
  if not self.host:find(":", 1, true) then return self.client_addr end
  if not self.client_addr6 then
    local pid = sys.pid()
    local a = ("fd74::%x:%x"):format(0x100 | (pid >> 16), pid & 0xffff)
    local ok = self.netns and self.netns:run(os.execute, ("ip -6 addr add %s/128 dev lo nodad 2>/dev/null"):format(a))
    self.client_addr6 = ok and a or "::1"
  end
  return self.client_addr6
end

--- tcplab.counters (nstat's counters) of the lab's namespace.
function Lab:counters(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.netns = self.netns:path()
  return require("tcplab.counters")(o)
end

--- A new client socket bound to the lab's client address (so the host-wide
-- recorder can tell the lab's connections apart), not yet connected; its
-- family is the one of the address the clients dial (self.host).
function Lab:client()
  local s, err, errno = self.netns:socket(self.host:find(":", 1, true) and "inet6" or "inet")
  if not s then return nil, err, errno end
  local ok
  ok, err, errno = s:bind(self:client_address(), 0)
  if not ok then s:close() return nil, err, errno end
  return s
end

--- A client connected to the server (timeout seconds, default 2; 0: do not wait,
-- the socket is returned with the connect in progress).
function Lab:connect(timeout)
  local s, err, errno = self:client()
  if not s then return nil, err, errno end
  local ok
  ok, err, errno = s:connect(self.host, self.port, timeout or 2)
  if not ok and not (timeout == 0 and errno == tcplab.errno.EINPROGRESS) then s:close() return nil, err, errno end
  return s
end

--- A recorder of the lab's transitions (the one trace.start picks, as for
-- the scenarios): the port, and only connections of the lab's client address.
function Lab:trace(opts)
  local o = { port = self.port, addrs = { self:client_address() }, witness = true }
  for k, v in pairs(opts or {}) do o[k] = v end
  -- started inside the lab's namespace: "this namespace" of the recorder
  -- (BPF's in-kernel filter, the witness, the dump at stop()) is the lab's
  local ns = self.netns
  local rec, err = ns:run(require("tcplab.trace").start, o)
  if rec then
    self.recorders[rec] = true
    local stop = rec.stop
    rec.stop = function(r, ...)
      if not (pcall(ns.fd, ns)) then return stop(r, ...) end   -- the lab is closed: it says so in a warning
      return ns:run(stop, r, ...)
    end
  end
  return rec, err
end

--- Drop segments in the lab's namespace (tcplab.fault.drop); lifted at close.
function Lab:drop(spec)
  if type(spec) ~= "table" then args.error("drop", 1, "table expected, got " .. type(spec)) end
  local copy = {}
  for k, v in pairs(spec) do copy[k] = v end
  copy.netns = self.netns
  local rule, err = require("tcplab.fault").drop(copy)
  if rule then self.rules[#self.rules + 1] = rule end
  return rule, err
end

--- Stop every process of the lab: SIGTERM to each, then, after the grace
-- period, SIGKILL to the lab's init, on which the kernel kills all that is
-- left in its PID namespace (and waits for it). Returns true and how many
-- processes were stopped; nil and the pids left if any outlived that.
function Lab:stop()
  local h = self.contained
  if not h then return true, self.stopped or 0 end
  local seen, n = {}, 0
  local function note(pids) for _, p in ipairs(pids) do if not seen[p] then seen[p] = true n = n + 1 end end end
  note(h:members())
  h:signal(SIGTERM)
  if not wait_empty(self, self.grace) then
    note(h:members())
    self.killed = true
  end
  self.status = { select(2, h:command()) }
  h:kill()   -- init's death: the kernel kills and reaps the rest
  self.stopped = n
  local left = {}
  for p in pairs(seen) do if alive(p) then left[#left + 1] = p end end
  if #left > 0 then return nil, left end
  return true, n
end

--- Stop every process of the lab, lift faults, stop recorders, leave the
-- namespace, remove the cgroup. Idempotent; the output stays in lab:output().
-- Returns true and the number of processes it stopped (also lab.stopped),
-- or nil and what could not be undone.
function Lab:close()
  if self.closed then return true, self.stopped or 0 end
  self.closed = true
  local problems = {}
  if self.contained then
    local out, err, nout, nerr = self.contained:output()
    local stopped, left = self:stop()
    if not stopped then problems[#problems + 1] = "processes left: " .. table.concat(left, " ") end
    out, err, nout, nerr = self.contained:output()   -- what it wrote while stopping too
    self.final_output = { stdout = out, stderr = err, stdout_bytes = nout, stderr_bytes = nerr }
    self.contained = nil
  end
  if self.cgroup then
    local ok, cerr = remove_cgroup(self.cgroup)
    if not ok then problems[#problems + 1] = cerr end
    self.cgroup = nil
  end
  for rec in pairs(self.recorders) do pcall(rec._remove, rec) end
  self.recorders = {}
  for _, rule in ipairs(self.rules) do pcall(rule.lift, rule) end
  if self.netns then
    pcall(require("tcplab.fault").clear, self.netns)
    self.netns:close()
  end
  if open_lab == self then open_lab = nil end
  if #problems > 0 then return nil, table.concat(problems, "; ") end
  return true, self.stopped or 0
end

Lab.__close = function(self) self:close() end
Lab.__gc = function(self) if not self.closed then pcall(self.close, self) end end
Lab.__tostring = function(self)
  return ("lab %s :%d pid %s%s"):format(table.concat(self.cmd, " "), self.port, tostring(self.pid),
                                        self.closed and " (closed)" or "")
end

-- Start the command under the lab's init, forked from inside the lab's
-- network namespace (self.netns:run), which the command inherits.
local function spawn(self)
  if self.max_pids then
    local dir, err = make_cgroup(self.max_pids)
    if not dir then return nil, "max_pids: " .. err end
    self.cgroup, self.cgroup_kind = dir, err
  end
  local h, err = self.netns:run(core.spawn_contained,
    { argv = self.cmd, cgroup_procs = self.cgroup and self.cgroup .. "/cgroup.procs" })
  if not h then
    local hint = self.max_pids and tostring(err):match("^fork the command") and
      (" (max_pids %d counts the lab's own init too)"):format(self.max_pids) or ""
    return nil, "cannot start the command: " .. tostring(err) .. hint
  end
  self.contained = h
  self.pid = (h:command())
  return true
end

-- The listener is found: clients dial where it listens (unless opts.host said where).
local function found(self, listeners)
  self.listener = listeners[1]
  if not self.host_given then self.host = lab.dial_address(listeners) end
  return true
end

-- Wait (bounded) until a socket of the command's process tree listens on the port.
local function await_listen(self)
  local deadline = tcplab.now() + self.timeout
  local others
  while true do
    local mine = assert(self:listeners())
    if #mine > 0 then return found(self, mine) end
    local exited, how, code = self:exited()
    if exited and #self:pids() == 0 then   -- a daemon's first process exits too: wait for what it left
      return nil, ("the command exited before listening on port %d (%s %s)\n%s")
        :format(self.port, tostring(how), tostring(code), self:_output_text())
    end
    others = self:server_sockets{ states = "LISTEN" }
    -- the two looks are not atomic: processes that come and go between them
    -- (a busy forking server) can hide the owner from the first one
    local on_port = {}
    for _, r in ipairs(others or {}) do
      if r.sport == self.port then on_port[#on_port + 1] = r end
    end
    if #on_port > 0 then return found(self, on_port) end
    if tcplab.now() >= deadline then break end
    sleep_until(deadline, 0.02)
  end
  if others and #others > 0 then
    local ports = {}
    for _, r in ipairs(others) do ports[#ports + 1] = ("%s:%d"):format(r.src, r.sport) end
    return nil, ("the command listens on %s, not on port %d (waited %g s)\n%s")
      :format(table.concat(ports, " "), self.port, self.timeout, self:_output_text())
  end
  return nil, ("the command never listened on port %d (waited %g s)\n%s")
    :format(self.port, self.timeout, self:_output_text())
end

--- Where clients reach a set of LISTEN records: an IPv4 listener first
-- (its address, 127.0.0.1 for 0.0.0.0), else the IPv6 one (::1 for ::).
function lab.dial_address(listeners)
  local pick = listeners[1]
  for _, r in ipairs(listeners) do if r.family == "inet" then pick = r break end end
  if pick.src == "0.0.0.0" then return "127.0.0.1" end
  if pick.src == "::" then return "::1" end
  return pick.src
end

local is_signal = tcplab.process.is_signal
lab.is_signal = is_signal

--- Start a lab: opts.cmd (list: program and arguments; no shell), opts.port,
-- opts.timeout (seconds to wait for the listener, 5), opts.grace (seconds
-- between SIGTERM and SIGKILL, 2), opts.max_pids (a pids cgroup limit for
-- all of the command's processes; none by default), opts.host (the address clients
-- connect to; by default where the command's listener is: lab.dial_address).
-- Returns the lab, or nil and a message with the command's
-- output ("needs root" as a third value when that is why). Ctrl-C during
-- the start cleans up and is raised again.
function lab.start(opts)
  check_opts(opts)
  if not sys.is_root() then
    return nil, "tcplab.lab needs root (a private network namespace for the command)", "needs root"
  end
  if open_lab and not open_lab.closed then
    return nil, "a lab is already open in this process (" .. tostring(open_lab) .. "): close it first"
  end
  local cmd = {}
  for i, a in ipairs(opts.cmd) do cmd[i] = tostring(a) end
  if not findable(cmd[1]) then return nil, "command not found: " .. cmd[1] end
  local pid = sys.pid()
  local self = setmetatable({
    cmd = cmd, port = opts.port, host = opts.host or DEFAULTS.host, host_given = opts.host ~= nil,
    timeout = opts.timeout or DEFAULTS.timeout, grace = opts.grace or DEFAULTS.grace, max_pids = opts.max_pids,
    client_addr = ("127.%d.%d.%d"):format((pid >> 16) & 255, (pid >> 8) & 255, pid & 255),
    recorders = {}, rules = {},
  }, Lab)
  if self.client_addr == "127.0.0.1" or self.client_addr == self.host then self.client_addr = "127.0.0.2" end
  local ns, err = tcplab.netns.new()
  if not ns then return nil, "cannot make a fresh namespace: " .. tostring(err) end
  self.netns = ns
  open_lab = self
  local ok, res, msg = xpcall(function()
    local started, serr = spawn(self)
    if not started then return nil, serr end
    return await_listen(self)
  end, function(e) return is_signal(e) and e or debug.traceback(e, 2) end)
  if ok and res then return self end
  self:close()
  if not ok then
    if is_signal(res) then error(res, 0) end
    return nil, res
  end
  return nil, msg
end

return lab
