--- tcplab.kernel: the kernel's answers (layer 2 of doc/layout.md).
-- Sockets, snapshots, counts, backends, the namespace handles and the
-- re-exports of the C core that every layer above uses. It requires only
-- the C core and the pure helpers (and, lazily, tcplab.namespaces and
-- tcplab.sys, which sit beside or below it); `require "tcplab"` (init.lua)
-- is the facade that re-exports this table plus the upper layers, so the
-- API reference (LDoc) lists these functions under the module tcplab.
-- @module tcplab
local core = require "tcplab.core"
local states = require "tcplab.states"
local args = require "tcplab.args"

local tcplab = {
  core = core,            -- the C module itself, for those who want it
  socket = core.socket,   -- socket("inet" | "inet6")
  bpf_trace = core.bpf_trace,  -- bpf_trace{ ports, netns }: the BPF transition recorder (trace/init.lua)
  now = core.now,         -- seconds on the monotonic clock (the tracepoint's clock too)
  sleep = core.sleep,     -- sleep(seconds): true, or nil, "interrupted", EINTR on Ctrl-C
  errno = core.errno,     -- errno values by name: tcplab.errno.ECONNREFUSED
  -- capture.open(port [, { interface, snaplen }]): TCP segments to/from port on lo or
  -- another interface (root), cap:read([timeout [, raw [, max]]]);
  -- capture.parse(bytes [, "ip"|"frame"]): the decoder on its own
  capture = core.capture,
}

--- For command-line programs and helper processes (the library itself
-- installs no signal handler): SIGINT/SIGTERM raise "interrupted!" /
-- "terminated" in Lua code and end any wait; caught_signal() tells which
-- came; die_with_parent(ppid) ends this process when its parent dies.
tcplab.process = {
  catch_signals = core.catch_signals,
  caught_signal = core.caught_signal,
  die_with_parent = core.die_with_parent,
}

--- Is this error a Ctrl-C or SIGTERM that must be raised again, not reported?
-- ("interrupted!" from lua.c's or catch_signals' SIGINT, "terminated" from
-- catch_signals' SIGTERM.) The one place that reads those messages.
function tcplab.process.is_signal(e)
  return type(e) == "string" and (e:match("interrupted!$") or e:match("terminated$")) ~= nil
end

---------------------------------------------------------------- namespaces
-- A held reference (an fd) to each namespace the library made, so "is this
-- one ours?" is answered against the namespace itself, never a reusable
-- inode number.
local netns = {}
tcplab.netns = netns
local made = {}   -- handles of the namespaces unshare() made, still held

local function path_arg(fname, path, optional)
  if (path ~= nil or not optional) and type(path) ~= "string" then
    args.error(fname, 1, "path string expected, got " .. type(path))
  end
  return path
end

--- A fresh network namespace with lo up (root), as a value: the caller
-- stays in its own namespace. Returns a handle (ns:socket, ns:listen,
-- ns:connect, ns:run, snapshot{netns = ns}, fault.drop{netns = ns}), or
-- nil, msg, errno. The library counts the namespace as its own while the
-- handle is open; ns:close() lets the kernel free it once nothing uses it.
function netns.new()
  local h, err, errno = core.netns.new()
  if not h then return nil, err, errno end
  made[#made + 1] = h
  return h
end

--- Move this process into a fresh network namespace with lo up (root).
-- Prefer netns.new(): this one changes where every later call looks.
-- Returns a handle to it (truthy), or nil, msg, errno.
function netns.unshare()
  local h, err, errno = core.netns.unshare()
  if not h then return nil, err, errno end
  made[#made + 1] = h
  return h
end

--- A handle to a namespace, or nil, msg, errno: no argument, the current one;
-- an integer, that process's (/proc/PID/ns/net); "pid:N" or a name
-- (/run/netns/NAME); a path. h:run(fn, ...), h:socket(family),
-- h:listen(host, port, backlog), h:connect(host, port, timeout), h:id(),
-- h:is_current(), h:close().
function netns.open(spec)
  if math.type(spec) == "integer" then
    if spec < 1 then args.error("open", 1, "pid: a positive integer expected, got " .. spec) end
    return core.netns.open(("/proc/%d/ns/net"):format(spec))
  end
  path_arg("open", spec, true)
  if spec ~= nil and not spec:find("/", 1, true) then
    local path, err = netns.resolve(spec)
    if not path then return nil, err end
    spec = path
  end
  return core.netns.open(spec)
end

--- True when h is a handle netns.new() or netns.unshare() made and is still open.
function netns.owns(h)
  for _, m in ipairs(made) do
    if rawequal(m, h) then return (pcall(h.fd, h)) end
  end
  return false
end

-- What a handle does besides run/id/close (the C core switches the thread
-- in and back around each call; a socket keeps its namespace for life).
local methods = core.netns.methods

--- A socket ("inet" | "inet6") in the namespace: sock, or nil, msg, errno.
function methods.socket(h, family) return h:run(core.socket, family) end

--- tcplab.listen in the namespace.
function methods.listen(h, host, port, backlog) return h:run(tcplab.listen, host, port, backlog) end

--- tcplab.connect from the namespace: the socket is made inside, connected from here.
function methods.connect(h, host, port, timeout)
  local s, err, errno = h:socket(type(host) == "string" and host:find(":", 1, true) and "inet6" or "inet")
  if not s then return nil, err, errno end
  local ok, res, msg, no = pcall(s.connect, s, host, port, timeout)
  if not ok or not res then
    s:close()
    if not ok then error((tostring(res):gsub("to '[%w_]+' %(", "to 'connect' (", 1)), 0) end
    return nil, msg, no
  end
  return s
end

--- A packet capture of port on the namespace's lo (root): tcplab.capture.open
-- made inside it (a packet socket sees the interfaces of the namespace it was
-- made in); opts as capture.open's ({ interface = "lo" | NAME | "any", snaplen }).
function methods.capture(h, port, opts) return h:run(core.capture.open, port, opts) end

--- A path naming the namespace while the handle is open (/proc/self/fd/N).
function methods.path(h) return "/proc/self/fd/" .. h:fd() end

--- Identity (inode) of the current namespace, or of the one at path.
function netns.id(path) return core.netns.id(path_arg("id", path, true)) end

--- Move this process into the namespace at path (/run/netns/X, /proc/PID/ns/net).
-- Prefer a handle's run(): this one changes where every later call looks.
function netns.enter(path) return core.netns.enter(path_arg("enter", path)) end

--- The handle of the current namespace when netns.unshare() made it (and the
-- handle is still open), else nil.
function netns.current_ours()
  for i = #made, 1, -1 do
    local h = made[i]
    local open, current = pcall(h.is_current, h)   -- a closed handle raises
    if not open then table.remove(made, i)
    elseif current then return h end
  end
  return nil
end

--- True when the current namespace is one that netns.unshare() made.
function netns.is_ours()
  return netns.current_ours() ~= nil
end

--- The path of a namespace given by name or path: "NAME" is /run/netns/NAME
-- (it must exist), "pid:N" is /proc/N/ns/net, anything with a "/" is a path.
-- nil and a message naming the path that failed.
function netns.resolve(spec) return require("tcplab.namespaces").resolve(spec) end

--- Path naming the namespace this process is in now (for {netns = ...}).
function netns.self_path()
  return "/proc/" .. require("tcplab.sys").pid() .. "/ns/net"
end

local function family_of(host)
  return type(host) == "string" and host:find(":", 1, true) and "inet6" or "inet"
end

-- Run steps on a new socket; close it at once when one fails or raises.
-- An argument error names the convenience the caller called (fname).
local function build(fname, family, steps)
  local sock, err, errno = core.socket(family)
  if not sock then return nil, err, errno end
  for _, step in ipairs(steps) do
    local ok, res, msg, no = pcall(step, sock)
    if not ok or not res then
      sock:close()
      if not ok then   -- a bad argument: same position in the convenience's arguments
        error((tostring(res):gsub("to '[%w_]+' %(", "to '" .. fname .. "' (", 1)), 0)
      end
      return nil, msg, no
    end
  end
  return sock
end

--- A listening socket on host:port (reuseaddr set): sock, or nil, msg, errno.
function tcplab.listen(host, port, backlog)
  if backlog ~= nil and (math.type(backlog) ~= "integer" or backlog < 0 or backlog > 0x7fffffff) then
    args.error("listen", 3, "backlog: integer 0..2^31-1 expected, got " .. args.show(backlog))
  end
  return build("listen", family_of(host), {
    function(s) return s:setopt("reuseaddr", true) end,
    function(s) return s:bind(host, port) end,
    function(s) return s:listen(backlog) end,
  })
end

--- A socket connected to host:port within timeout seconds (nil: wait).
function tcplab.connect(host, port, timeout)
  return build("connect", family_of(host), { function(s) return s:connect(host, port, timeout) end })
end

-- The filter is checked by the C core (once); only state names become its mask here.
-- A netns handle becomes the path the core takes (/proc/self/fd/N).
local function is_handle(v) return type(v) == "userdata" and getmetatable(v) and getmetatable(v).__index == methods end
-- What answered the last counts{ live = true } (nil after any other call):
-- { by = "live" } or { by = backend, why = live's reason }.
local last_live

local function with_mask(fname, f)
  if type(f) == "table" and is_handle(f.netns) then
    local g = {}
    for k, v in pairs(f) do g[k] = v end
    g.netns = f.netns:path()
    f = g
  end
  if type(f) ~= "table" or f.states == nil then return f end
  local mask, err = states.mask(f.states)
  if not mask then
    args.error(fname, 1, "states" .. (err:sub(1, 1) == "[" and err or ": " .. err), 4)
  end
  local g = {}
  for k, v in pairs(f) do g[k] = v end
  g.states = mask
  return g
end

-- pid = N / comm = "name": sockets a process holds, joined on the owners
-- walk after the dump (the C core knows neither field). Returns the filter
-- for the core (owners on, pid/comm gone) and a predicate, or f, nil.
-- comm is matched as the kernel keeps it: its first 15 bytes.
local COMM_LEN = 15
local function owner_step(fname, f)
  if type(f) ~= "table" or (f.pid == nil and f.comm == nil) then return f, nil end
  local pid, comm = f.pid, f.comm
  if pid ~= nil and (math.type(pid) ~= "integer" or pid < 1 or pid > 0x7fffffff) then
    args.error(fname, 1, "pid: a process id (integer 1..2^31-1) expected, got " .. args.show(pid), 4)
  end
  if comm ~= nil and (type(comm) ~= "string" or comm == "" or comm:find("\0", 1, true)) then
    args.error(fname, 1, "comm: a process name (non-empty string, as in /proc/PID/comm) expected, got " ..
      args.show(comm), 4)
  end
  if f.columns then
    args.error(fname, 1, "pid/comm: not with columns = true (filter the records instead)", 4)
  end
  if comm then comm = comm:sub(1, COMM_LEN) end
  local g = {}
  for k, v in pairs(f) do g[k] = v end
  g.pid, g.comm, g.owners = nil, nil, true
  return g, function(r)
    for _, o in ipairs(r.owners or {}) do
      if (pid == nil or o.pid == pid) and (comm == nil or o.comm == comm) then return true end
    end
    return false
  end
end

-- The records of the filter that keep passes (the list's other fields stay).
local function keep_records(list, keep)
  local out = {}
  for k, v in pairs(list) do
    if math.type(k) ~= "integer" then out[k] = v end
  end
  for _, r in ipairs(list) do
    if keep(r) then out[#out + 1] = r end
  end
  return setmetatable(out, getmetatable(list))
end

-- Per-state counts (and per key with by) of records, in core.counts' shape.
local function count_records(list, by)
  local counts = {}
  for _, r in ipairs(list) do
    local t = counts
    if by then
      local key = r[by]
      t = counts[key] or {}
      counts[key] = t
    end
    t[r.state] = (t[r.state] or 0) + 1
  end
  return counts
end

--- Every TCP socket of the namespace matching the filter, one table each:
-- state family src sport dst dport rqueue wqueue uid inode cookie timer
-- expires_ms retrans (+ info). filter: states, family, sport, dport, src, dst, info,
-- netns (a path, or a handle from tcplab.netns.new/open),
-- backend, owners. sport/dport: a port, "LO-HI" or {lo, hi}; src/dst: "ADDR" or "ADDR/BITS"
-- (v4 or v6; a v4 prefix also matches v4-mapped v6 sockets); all in the kernel's bytecode.
-- With columns = true: one table { n = count, state = {...}, src = {...}, ... }
-- whose i-th entries describe socket i (cheaper to build and to hold; bench/results.md).
-- With owners = true: each record gets owners = { {pid, comm, fd}, ... } (every process
-- holding the socket, found by one walk of /proc/*/fd; {} for TIME_WAIT and request
-- sockets, which no fd holds). The result gets owners_unreadable = the number of
-- processes whose fds could not be read (not root); when it is not 0, every record with
-- an inode says owners_incomplete = true (an owner may be missing).
-- pid = N, comm = "name": only sockets such a process holds (owners on).
function tcplab.snapshot(f)
  last_live = nil
  local g, keep = owner_step("snapshot", f)
  local list, err, errno = core.snapshot(with_mask("snapshot", g))
  if not list or not keep then return list, err, errno end
  return keep_records(list, keep)
end

--- The same rows as snapshot(f), one at a time, read from a fixed buffer:
--   for rec in tcplab.each{ states = "ESTABLISHED" } do print(rec.sport) end
-- Lua memory stays O(1) in the number of sockets; the walk's netlink socket
-- (or BPF iterator fd) is closed when the loop ends, breaks or raises (the
-- loop's closing value). Same filter as snapshot, but no owners or columns.
-- Or nil, msg, errno when the walk cannot start (wrap in assert() in a for);
-- a walk that fails midway raises (doc/each.md).
function tcplab.each(f)
  last_live = nil
  return core.each(with_mask("each", f))
end


-- counts{ live = true, netns = ..., states = ... }: from the namespace's
-- cached live handle (tcplab.live_cached), else a walk and the reason.
local LIVE_FIELDS = { live = true, netns = true, states = true, backend = true }
local function live_counts(f)
  for k in pairs(f) do
    if not LIVE_FIELDS[k] then
      args.error("counts", 1, ("%s: not with live = true (live counts are per state for the whole " ..
        "namespace: valid with it are netns, states)"):format(tostring(k)), 4)
    end
  end
  if f.netns == "all" then args.error("counts", 1, "live = true: one namespace at a time (not netns = \"all\")", 4) end
  local live = require "tcplab.live"
  local mask = f.states ~= nil and with_mask("counts", { states = f.states }).states or nil
  local h, why = live.cached(f.netns)
  local t, err, errno
  if h then
    t, err, errno = h:counts()
    if t then last_live = { by = "live" } else why = err end
  end
  if not t then
    local g = {}
    for k, v in pairs(f) do if k ~= "live" then g[k] = v end end
    t, err, errno = core.counts(with_mask("counts", g))
    if not t then return nil, err, errno end
    t = live.count_table(t)
    last_live = { by = core._dump_backend(), why = why }
  end
  if mask then
    for name, n in pairs(states.number) do
      if n > 0 and mask & (1 << n) == 0 then t[name] = nil end
    end
  end
  return t
end

--- The same filter, counted per state in C: { ESTABLISHED = n, ... }.
-- With by = "sport" | "dport" | "src" | "dst": per key, in the same one pass:
-- { [8080] = { ESTABLISHED = 3, CLOSE_WAIT = 40 }, ... } (addresses as strings).
-- With live = true (and only netns, states): from the namespace's live
-- handle, opened on the first call and kept (one per namespace, tcplab.live):
-- every state, zeros included; where live cannot load, a walk in the same
-- shape, and answered_by() says which answered and why (doc/live.md).
function tcplab.counts(f)
  last_live = nil
  if type(f) == "table" and f.live ~= nil then
    if f.live ~= true and f.live ~= false then
      args.error("counts", 1, "live: true or false expected, got " .. args.show(f.live))
    end
    if f.live then return live_counts(f) end
    local g = {}
    for k, v in pairs(f) do if k ~= "live" then g[k] = v end end
    f = g
  end
  if type(f) == "table" and f.netns == "all" then return tcplab.counts_all(f) end
  local g, keep = owner_step("counts", f)
  if not keep then return core.counts(with_mask("counts", f)) end
  -- pid/comm: counted from the records the owners walk kept
  local by = g.by
  if by ~= nil and by ~= "sport" and by ~= "dport" and by ~= "src" and by ~= "dst" then
    args.error("counts", 1, "by: \"sport\", \"dport\", \"src\" or \"dst\" expected, got " .. args.show(by))
  end
  g.by = nil
  local list, err, errno = core.snapshot(with_mask("counts", g))
  if not list then return nil, err, errno end
  return count_records(keep_records(list, keep), by)
end

--- The backend that answers snapshot/counts (name: "auto" or one of them),
-- and { netlink = true | "why not", ... }.
function tcplab.backend(name)
  return core.backend(name)
end

--- The backend that answered this process's last snapshot or counts call
-- ("netlink" or "bpf"): what "auto" chose for that operation (snapshot,
-- counts, counts by key each have their own rule; doc/performance.md).
-- After counts{ live = true }: "live", or the walk's backend and, second,
-- why live could not answer.
function tcplab.answered_by()
  if last_live then return last_live.by, last_live.why end
  return core._dump_backend()
end

--- Live counts of a namespace, kept by the kernel: tcplab.live{ netns = ns |
-- name | path } (nil: this one) returns a handle (h:counts(), h:close()) or
-- nil, msg, errno where BPF cannot load (tcplab.live module, doc/live.md).
function tcplab.live(opts)
  return require("tcplab.live").open(opts)
end

--- The handle counts{ live = true, netns = netns } uses (opened on first use
-- and kept): h, or nil, msg, errno.
function tcplab.live_cached(netns)
  return require("tcplab.live").cached(netns)
end

--- Close the kept handle of a namespace (nil: all of them), releasing its
-- BPF programs and its hold on the namespace.
function tcplab.live_release(netns)
  return require("tcplab.live").release(netns)
end

--- The network namespaces of the host, one entry per namespace inode:
-- { id, name, pid, path }: named ones (/run/netns/NAME, name NAME) first, then
-- those of running processes (name "pid:PID", path /proc/PID/ns/net).
function tcplab.namespaces()
  return require("tcplab.namespaces").list()
end

--- The one loop over every namespace: fn(path, ns) for each entry ns of
-- namespaces(), in that order. A namespace for which fn returns nil (it went
-- away between the listing and the call) is left out. Returns the list of
-- { ns = entry, value = what fn returned }.
function tcplab.across_namespaces(fn)
  if type(fn) ~= "function" then args.error("across_namespaces", 1, "function expected, got " .. args.show(fn)) end
  local out = {}
  for _, ns in ipairs(tcplab.namespaces()) do
    local v = fn(ns.path, ns)
    if v ~= nil then out[#out + 1] = { ns = ns, value = v } end
  end
  return out
end

--- counts{ netns = "all" }: the counts of every namespace of namespaces(), in
-- one call: { [name] = { ESTABLISHED = n, ... } }, and the namespace list.
-- A namespace that went away between the listing and its count is left out.
function tcplab.counts_all(f)
  if f ~= nil and type(f) ~= "table" then args.error("counts", 1, "filter table expected, got " .. type(f)) end
  local one = {}
  for k, v in pairs(f or {}) do one[k] = v end
  local by_name, seen = {}, {}
  for _, r in ipairs(tcplab.across_namespaces(function(path)
    one.netns = path
    return tcplab.counts(one)
  end)) do
    by_name[r.ns.name] = r.value
    seen[#seen + 1] = r.ns
  end
  return by_name, seen
end


return tcplab
