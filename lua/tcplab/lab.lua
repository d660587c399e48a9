--- A lab around any command: the command runs in a fresh network namespace
-- with lo up, and the lab hands back what tcplab offers for its own sockets
-- (clients, snapshot, counts, owners, recorder, faults), scoped to it.
--
--   local lab <close> = assert(tcplab.lab{ cmd = { "./myserver", "--port", "8080" }, port = 8080 })
--   local c = assert(lab:connect())           -- a client from the same namespace
--   lab:server_sockets{ states = "CLOSE_WAIT" } -- records with .owner = { pid, fd, comm }
--   lab:close()                               -- SIGTERM, SIGKILL after grace, namespace gone
--
-- While a lab is open this process is inside the lab's namespace (that is
-- how the clients and the dumps see the server); close() moves it back to
-- the namespace it came from. One lab at a time per process.
local tcplab = require "tcplab"
local sys = require "tcplab.sys"
local args = require "tcplab.args"

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
  if math.type(port) ~= "integer" or port < 1 or port > 65535 then
    bad("port: 1..65535 expected, got " .. args.show(port))
  end
  for _, k in ipairs({ "timeout", "grace" }) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v <= 0 or v > 3600) then
      bad(("%s: seconds 0..3600 expected, got %s"):format(k, args.show(v)))
    end
  end
  if opts.host ~= nil and (type(opts.host) ~= "string" or opts.host:find(":", 1, true)) then
    bad("host: an IPv4 address string expected")
  end
end

---------------------------------------------------------------- processes
-- Under make test-asan ps and pgrep hang: everything here reads /proc.

-- State letter of a process, or nil when it is gone.
local function proc_state(pid)
  local stat = sys.readfile(("/proc/%d/stat"):format(pid))
  return stat and stat:match("^%d+ %b() (%a)")
end

-- Alive: exists and is not a zombie.
local function alive(pid)
  local s = proc_state(pid)
  return s ~= nil and s ~= "Z" and s ~= "X"
end
lab.alive = alive

--- The process and all its descendants, parents first.
function lab.tree(pid)
  local out, seen, i = { pid }, { [pid] = true }, 1
  while i <= #out do
    local p = out[i]
    local text = sys.readfile(("/proc/%d/task/%d/children"):format(p, p)) or ""
    for child in text:gmatch("%d+") do
      child = tonumber(child)
      if not seen[child] then seen[child] = true out[#out + 1] = child end
    end
    i = i + 1
  end
  return out
end

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

-- Signal processes (kill is a shell builtin; no ps or pkill).
local function signal(pids, sig)
  local list = {}
  for _, p in ipairs(pids) do if alive(p) then list[#list + 1] = tostring(p) end end
  if #list > 0 then os.execute(("kill -%s %s 2>/dev/null"):format(sig, table.concat(list, " "))) end
end

-- Wait (bounded) until none of pids is alive; true when they are all gone.
local function wait_gone(pids, seconds)
  local deadline = tcplab.now() + seconds
  while true do
    local left = false
    for _, p in ipairs(pids) do if alive(p) then left = true break end end
    if not left then return true end
    if tcplab.now() >= deadline then return false end
    sleep_until(deadline, 0.01)
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

--- What the command wrote so far: stdout, stderr.
function Lab:output()
  if self.final_output then return self.final_output.stdout, self.final_output.stderr end
  return sys.readfile(self.files.stdout) or "", sys.readfile(self.files.stderr) or ""
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

--- The process tree of the command now (empty once it is gone).
function Lab:pids()
  if not alive(self.pid) then return {} end
  return lab.tree(self.pid)
end

--- Did the command exit? Then also how: "exit", code or "signal", number.
function Lab:exited()
  if self.status then return true, self.status[1], self.status[2] end
  if alive(self.pid) then return false end
  -- our child: reap it (a zombie now) to learn its status
  local _, how, code = self.proc:close()
  self.proc = nil
  self.status = { how, code }
  return true, how, code
end

local function scoped(self, f)
  local copy = {}
  for k, v in pairs(f or {}) do copy[k] = v end
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

--- TcpExt counters of the lab's namespace (/proc/net/netstat is per namespace).
function Lab:netstat()
  local text = sys.readfile("/proc/net/netstat") or ""
  local out = {}
  for header, values in text:gmatch("TcpExt: ([^\n]+)\nTcpExt: ([^\n]+)") do
    local names, nums = {}, {}
    for w in header:gmatch("%S+") do names[#names + 1] = w end
    for w in values:gmatch("%S+") do nums[#nums + 1] = tonumber(w) end
    for i, n in ipairs(names) do out[n] = nums[i] end
  end
  return out
end

--- A new client socket bound to the lab's client address (so the host-wide
-- recorder can tell the lab's connections apart), not yet connected.
function Lab:client()
  local s, err, errno = tcplab.socket("inet")
  if not s then return nil, err, errno end
  local ok
  ok, err, errno = s:bind(self.client_addr, 0)
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
  local o = { port = self.port, addrs = { self.client_addr }, witness = true }
  for k, v in pairs(opts or {}) do o[k] = v end
  local rec, err = tcplab.trace.start(o)
  if rec then self.recorders[rec] = true end
  return rec, err
end

--- Drop segments in the lab's namespace (tcplab.fault.drop); lifted at close.
function Lab:drop(spec)
  local rule, err = tcplab.fault.drop(spec)
  if rule then self.rules[#self.rules + 1] = rule end
  return rule, err
end

--- Stop the command's process tree: SIGTERM, SIGKILL after the grace period,
-- then wait (bounded) until it is gone. Returns true, or nil and the pids left.
function Lab:stop()
  local pids = self:pids()
  signal(pids, "TERM")
  if not wait_gone(pids, self.grace) then
    for _, p in ipairs(self:pids()) do pids[#pids + 1] = p end
    signal(pids, "KILL")
    self.killed = true
    if not wait_gone(pids, 2) then
      local left = {}
      for _, p in ipairs(pids) do if alive(p) then left[#left + 1] = p end end
      return nil, left
    end
  end
  self:exited()
  return true
end

--- Stop the process tree, lift faults, stop recorders, leave the namespace,
-- remove the output files. Idempotent; the output stays in lab:output().
-- Returns true, or nil and what could not be undone.
function Lab:close()
  if self.closed then return true end
  self.closed = true
  local problems = {}
  local stopped, left = true, nil
  if self.pid then stopped, left = self:stop() end
  if not stopped then problems[#problems + 1] = "processes left: " .. table.concat(left, " ") end
  for rec in pairs(self.recorders) do pcall(rec._remove, rec) end
  self.recorders = {}
  for _, rule in ipairs(self.rules) do pcall(rule.lift, rule) end
  if self.made and self.made:is_current() then pcall(tcplab.fault.clear) end
  if self.files then
    local out, err = self:output()
    self.final_output = { stdout = out, stderr = err }
    os.remove(self.files.stdout)
    os.remove(self.files.stderr)
  end
  if self.home then
    local ok, err = self.home:enter()
    if not ok then problems[#problems + 1] = "cannot return to the caller's namespace: " .. tostring(err) end
    self.home:close()
  end
  if self.made then self.made:close() end
  if open_lab == self then open_lab = nil end
  if #problems > 0 then return nil, table.concat(problems, "; ") end
  return true
end

Lab.__close = function(self) self:close() end
Lab.__gc = function(self) if not self.closed then pcall(self.close, self) end end
Lab.__tostring = function(self)
  return ("lab %s :%d pid %s%s"):format(table.concat(self.cmd, " "), self.port, tostring(self.pid),
                                        self.closed and " (closed)" or "")
end

-- Start the command (this process is already in the lab's namespace).
local function spawn(self)
  local files = { stdout = os.tmpname(), stderr = os.tmpname() }
  self.files = files
  local argv = {}
  for i, a in ipairs(self.cmd) do argv[i] = sys.shq(a) end
  -- the shell popen starts prints its pid and becomes the command: the
  -- command is this process's child (close() reaps it), killed with this
  -- process when setpriv can ask for that
  local deathsig = findable("setpriv") and "setpriv --pdeathsig KILL -- " or ""
  local line = ("echo $$; exec %s%s <%s >%s 2>%s"):format(deathsig, table.concat(argv, " "), "/dev/null",
                                                         sys.shq(files.stdout), sys.shq(files.stderr))
  local p, err = sys.popen("sh", line)
  if not p then return nil, err end
  local pid = tonumber(p:read("l"))
  if not pid then p:close() return nil, "cannot start the command" end
  self.proc, self.pid = p, pid
  return true
end

-- Wait (bounded) until a socket of the command's process tree listens on the port.
local function await_listen(self)
  local deadline = tcplab.now() + self.timeout
  local others
  while true do
    local mine = assert(self:listeners())
    if #mine > 0 then self.listener = mine[1] return true end
    local exited, how, code = self:exited()
    if exited then
      return nil, ("the command exited before listening on port %d (%s %s)\n%s")
        :format(self.port, tostring(how), tostring(code), self:_output_text())
    end
    others = self:server_sockets{ states = "LISTEN" }
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

local function is_signal(e)
  return type(e) == "string" and (e:match("interrupted!$") or e:match("terminated$"))
end
lab.is_signal = is_signal

--- Start a lab: opts.cmd (list: program and arguments; no shell), opts.port,
-- opts.timeout (seconds to wait for the listener, 5), opts.grace (seconds
-- between SIGTERM and SIGKILL, 2), opts.host (the address clients connect
-- to, 127.0.0.1). Returns the lab, or nil and a message with the command's
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
    cmd = cmd, port = opts.port, host = opts.host or DEFAULTS.host,
    timeout = opts.timeout or DEFAULTS.timeout, grace = opts.grace or DEFAULTS.grace,
    client_addr = ("127.%d.%d.%d"):format((pid >> 16) & 255, (pid >> 8) & 255, pid & 255),
    recorders = {}, rules = {},
  }, Lab)
  if self.client_addr == "127.0.0.1" or self.client_addr == self.host then self.client_addr = "127.0.0.2" end
  local home, err = tcplab.netns.open()
  if not home then return nil, "cannot hold the current namespace: " .. tostring(err) end
  self.home = home
  local made
  made, err = tcplab.netns.unshare()
  if not made then
    home:close()
    return nil, "cannot make a fresh namespace: " .. tostring(err)
  end
  self.made = made
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
