--- tcplab.live: per-state counts of one network namespace kept up to date
-- by the kernel (BPF programs; csrc/live.c, doc/live.md,
-- doc/kernel-live.md), so that a read costs a few map reads, not a walk.
--
--   local h = assert(tcplab.live{ netns = ns })   -- ns: a handle, a name, a path; nil: this one
--   print(h:counts())                              -- all eleven states
--   h:close()                                      -- or let __close / __gc do it
--
-- Layer 2 (the kernel's answers): requires the C core and the pure helpers.
local core = require "tcplab.core"
local states = require "tcplab.states"
local args = require "tcplab.args"
local namespaces = require "tcplab.namespaces"

local live = {}

------------------------------------------------------------ count tables
-- A count table: every one of the eleven states (zeros included), printed
-- one state a line in the kernel's order.
local Counts = {}
live.Counts = Counts

Counts.__tostring = function(c)
  local total, lines = 0, {}
  for _, name in ipairs(states.list) do
    total = total + (c[name] or 0)
    lines[#lines + 1] = ("  %-12s %d"):format(name, c[name] or 0)
  end
  return ("tcp states (%d sockets)\n%s"):format(total, table.concat(lines, "\n"))
end

--- t (a table of state = n) with every state present and Counts' metatable.
function live.count_table(t)
  local out = {}
  for _, name in ipairs(states.list) do out[name] = t[name] or 0 end
  return setmetatable(out, Counts)
end

------------------------------------------------------------ the handle
local methods = core.live_methods
if methods then
  local raw = rawget(methods, "_raw_counts") or methods.counts
  methods._raw_counts = raw
  --- h:counts(): { ESTABLISHED = n, ... } (all eleven), or nil, msg, errno.
  function methods.counts(h)
    local t, err, errno = raw(h)
    if not t then return nil, err, errno end
    return setmetatable(t, Counts)
  end
end

local function is_netns_handle(v)
  local mt = type(v) == "userdata" and getmetatable(v)
  return mt and mt.__index == core.netns.methods or false
end

-- The namespace path of opts.netns (nil: the calling thread's), or nil, msg.
local function netns_path(fname, netns)
  if netns == nil then return nil end
  if is_netns_handle(netns) then
    local ok, path = pcall(netns.path, netns)
    if not ok then args.error(fname, 1, "netns: the namespace handle is closed") end
    return path
  end
  if type(netns) ~= "string" or netns == "" or netns == "all" then
    args.error(fname, 1, "netns: a namespace handle (tcplab.netns.new/open), a name (/run/netns/NAME, " ..
      "\"pid:N\") or a path expected, got " .. args.show(netns))
  end
  return namespaces.resolve(netns)
end

local function check_opts(fname, opts)
  if opts ~= nil and type(opts) ~= "table" then
    args.error(fname, 1, "options table expected ({ netns = ns | name | path }), got " .. args.show(opts))
  end
  for k in pairs(opts or {}) do
    if k ~= "netns" then
      args.error(fname, 1, ("unknown option '%s' (valid: netns)"):format(tostring(k)))
    end
  end
end

--- A live handle on a namespace: tcplab.live{ netns = ns | name | path | nil }
-- (nil: this thread's namespace). Root (CAP_BPF) and the kernel's BTF.
-- Returns the handle (h:counts(), h:info(), h:close(), __close, __gc,
-- __tostring), or nil, msg, errno saying why BPF cannot load ("live: needs
-- root (CAP_BPF)", "live: no BTF ...", "live: built without BPF ...").
function live.open(opts)
  check_opts("live", opts)
  local netns = opts and opts.netns
  local path, err = netns_path("live", netns)
  if netns ~= nil and not path then return nil, err end
  return core.live(path)
end

------------------------------------------------------------ the cache
-- One handle per namespace for counts{ live = true }: the first call loads
-- and seeds (tens to hundreds of ms), later ones read maps (µs). A handle
-- holds its namespace (an fd): the entry for a netns handle goes when that
-- handle is collected; live.release() closes them now.
local by_handle = setmetatable({}, { __mode = "k" })
local by_id = {}

-- The cache key of a namespace (nil: this thread's): the handle itself, or
-- the namespace's inode (never reused while our handle holds it).
local function key_of(netns, path)
  if is_netns_handle(netns) then return netns, by_handle end
  local id, err = core.netns.id(path)
  if not id then return nil, nil, err end
  return id, by_id
end

--- The cached handle of a namespace, opened on first use: h, or nil, msg, errno.
function live.cached(netns)
  local path, err = netns_path("counts", netns)
  if netns ~= nil and not path then return nil, err end
  local key, cache, kerr = key_of(netns, path)
  if not key then return nil, kerr end
  local h = cache[key]
  if h and pcall(h.info, h) then return h end   -- closed by its user: open again
  local new, why, errno = core.live(path)
  if not new then return nil, why, errno end
  cache[key] = new
  return new
end

--- Close the cached handle of a namespace (nil: every cached handle).
function live.release(netns)
  if netns == nil then
    for k, h in pairs(by_handle) do h:close() by_handle[k] = nil end
    for k, h in pairs(by_id) do h:close() by_id[k] = nil end
    return
  end
  local path = netns_path("live_release", netns)
  local key, cache = key_of(netns, path)
  if key and cache[key] then
    cache[key]:close()
    cache[key] = nil
  end
end

return live
