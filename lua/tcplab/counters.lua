--- The kernel's TCP counters of a network namespace: the Tcp MIB
-- (/proc/net/snmp) and the TcpExt MIB (/proc/net/netstat), named as
-- `nstat -az` names them (TcpActiveOpens, TcpExtListenOverflows) and with
-- the same set: nstat leaves out Tcp's settings and its one gauge
-- (RtoAlgorithm, RtoMin, RtoMax, MaxConn, CurrEstab); they are kept apart
-- here, in c.settings.
--
--   local c = tcplab.counters{ netns = "blue" }     -- or nil: this namespace
--   c.TcpExtListenOverflows, c:get("ListenOverflows"), print(c)
--   local d = tcplab.counters.delta(before, after)  -- what moved, per name
--
-- Both files are per namespace and show the namespace of the process that
-- opens them: a namespace given by pid:N (or /proc/N/ns/net) is read from
-- /proc/N/net/ (no setns needed); any other is entered for the two reads and
-- left again before anything can raise (root).
local args = require "tcplab.args"
local sys = require "tcplab.sys"

local counters = {}

-- Values nstat does not show (useless_number() in iproute2's nstat.c).
counters.SETTINGS = { TcpRtoAlgorithm = true, TcpRtoMin = true, TcpRtoMax = true, TcpMaxConn = true,
                      TcpCurrEstab = true }

local Counters = {}
-- methods first, then the counters by name: c.TcpExtListenOverflows
Counters.__index = function(c, k) return Counters[k] or rawget(c, "values")[k] end

-- "Tcp: A B\nTcp: 1 2" -> names and values in file order, prefixed as nstat does.
-- Knows nothing of Lua values beyond strings and integers: fed any bytes, it
-- returns what it could pair (a short value line pairs fewer names).
function counters.parse(text, mib, into, order, settings)
  for header, values in tostring(text):gmatch(mib .. ": ([^\n]*)\n" .. mib .. ": ([^\n]*)") do
    local names, nums = {}, {}
    for w in header:gmatch("%S+") do names[#names + 1] = w end
    for w in values:gmatch("%S+") do nums[#nums + 1] = math.tointeger(tonumber(w)) end
    for i, n in ipairs(names) do
      local name, v = mib .. n, nums[i]
      if v and into[name] == nil and (settings or {})[name] == nil then
        if counters.SETTINGS[name] then
          if settings then settings[name] = v end
        else
          into[name] = v
          order[#order + 1] = name
        end
      end
    end
  end
end

-- The two files' text, read in the namespace at path (nil: this one).
local function read_files(path)
  local dir = "/proc/net/"
  local pid = path and path:match("^/proc/(%d+)/ns/net$")
  if pid then dir = "/proc/" .. pid .. "/net/" end
  local function both()
    local snmp, err = sys.readfile(dir .. "snmp")
    if not snmp then return nil, err end
    local netstat, nerr = sys.readfile(dir .. "netstat")
    if not netstat then return nil, nerr end
    return snmp, netstat
  end
  if not path or pid then
    local snmp, netstat = both()
    if not snmp and pid then
      return nil, ("namespace %s: the process is gone (%s)"):format(path, netstat)
    end
    return snmp, netstat
  end
  -- read inside the namespace (ns:run switches this thread in and back, errors and Ctrl-C included)
  local ns <close>, err = require("tcplab.kernel").netns.open(path)
  if not ns then return nil, err end
  dir = "/proc/thread-self/net/"
  return ns:run(both)
end

local function full_name(c, name)
  if c.values[name] ~= nil then return name end
  if type(name) == "string" and c.values["TcpExt" .. name] ~= nil then return "TcpExt" .. name end
  if type(name) == "string" and c.values["Tcp" .. name] ~= nil then return "Tcp" .. name end
  return nil
end

local function unknown(fname, n, c, name)
  args.error(fname, n, ("unknown counter '%s' (names as nstat prints them, e.g. TcpExtListenOverflows " ..
    "or ListenOverflows; %d known: tcplab nstat -z lists them)"):format(tostring(name), #c.names), 4)
end

local function make(values, order, settings, netns, t)
  return setmetatable({ values = values, names = order, settings = settings, netns = netns, time = t }, Counters)
end

-- names: a list of counter names (nstat's or short); keep only those, in that order.
local function only(c, names, fname)
  local values, order = {}, {}
  for _, name in ipairs(names) do
    local full = full_name(c, name)
    if not full then unknown(fname, 1, c, name) end
    if values[full] == nil then
      values[full] = c.values[full]
      order[#order + 1] = full
    end
  end
  return make(values, order, c.settings, c.netns, c.time)
end

--- The counters of one namespace: opts.netns is nil (this one), a name
-- (/run/netns/NAME), "pid:N" or a path; opts.names keeps only those counters.
-- Returns the counters, or nil and a message naming the namespace.
function counters.read(opts)
  if opts ~= nil and type(opts) ~= "table" then
    args.error("counters", 1, "table expected, got " .. type(opts))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "netns" and k ~= "names" then
      args.error("counters", 1, ("unknown option %s (valid: netns names)"):format(args.show(k)))
    end
  end
  if opts.netns ~= nil and (type(opts.netns) ~= "string" or opts.netns == "") then
    args.error("counters", 1, "netns: a name, pid:PID or a path expected, got " .. args.show(opts.netns))
  end
  if opts.names ~= nil and type(opts.names) ~= "table" then
    args.error("counters", 1, "names: a list of counter names expected, got " .. args.show(opts.names))
  end
  local path
  if opts.netns then
    local err
    path, err = require("tcplab.namespaces").resolve(opts.netns)
    if not path then return nil, err end
  end
  local snmp, netstat = read_files(path)
  if not snmp then return nil, netstat end
  local values, order, settings = {}, {}, {}
  counters.parse(snmp, "Tcp", values, order, settings)
  counters.parse(netstat, "TcpExt", values, order, settings)
  if #order == 0 then return nil, ("no Tcp counters in %s/snmp"):format(path or "/proc/net") end
  local c = make(values, order, settings, opts.netns, require("tcplab.kernel").now())
  if opts.names then c = only(c, opts.names, "counters") end
  return c
end

--- Every namespace of tcplab.namespaces(): a list of { netns = NAME, counters = c },
-- leaving out a namespace that went away between the listing and its read.
function counters.all(opts)
  local out = {}
  for _, r in ipairs(require("tcplab.kernel").across_namespaces(function(path)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.netns = path
    return (counters.read(o))
  end)) do
    r.value.netns = r.ns.name
    out[#out + 1] = { netns = r.ns.name, counters = r.value }
  end
  return out
end

--- One counter by nstat's name or its short name (ListenOverflows); an
-- unknown name raises, naming it.
function Counters:get(name)
  local full = full_name(self, name)
  if not full then unknown("get", 1, self, name) end
  return self.values[full]
end

--- The counters that are not 0 (a delta's: that moved), as a list of { name, value }.
function Counters:moved()
  local out = {}
  for _, name in ipairs(self.names) do
    if self.values[name] ~= 0 then out[#out + 1] = { name = name, value = self.values[name] } end
  end
  return out
end

--- "ListenOverflows +3, ListenDrops +3": what moved, short names, for a line under a ladder.
function Counters:summary(names)
  local parts = {}
  for _, m in ipairs(self:moved()) do
    local keep = not names
    for _, n in ipairs(names or {}) do if full_name(self, n) == m.name then keep = true end end
    if keep then
      parts[#parts + 1] = ("%s %s%d"):format(m.name:gsub("^TcpExt", ""):gsub("^Tcp", ""),
        m.value >= 0 and "+" or "", m.value)
    end
  end
  return table.concat(parts, ", ")
end

Counters.__tostring = function(self)
  local lines = { ("tcp counters%s%s (%d)"):format(self.netns and " of netns " or "", self.netns or "",
    #self.names) }
  for _, name in ipairs(self.names) do lines[#lines + 1] = ("  %-34s %d"):format(name, self.values[name]) end
  return table.concat(lines, "\n")
end

local function is_counters(v) return getmetatable(v) == Counters end

--- b - a for every counter of both (counters only ever grow; a negative
-- value means the two are from different namespaces or a reset). The
-- result is counters too (print it, :moved(), :summary()), with
-- .interval = seconds between the two reads.
function counters.delta(a, b)
  if not is_counters(a) then args.error("delta", 1, "counters expected, got " .. args.show(a)) end
  if not is_counters(b) then args.error("delta", 2, "counters expected, got " .. args.show(b)) end
  local values, order = {}, {}
  for _, name in ipairs(b.names) do
    if a.values[name] ~= nil then
      values[name] = b.values[name] - a.values[name]
      order[#order + 1] = name
    end
  end
  local d = make(values, order, b.settings, b.netns, b.time)
  d.interval = b.time - a.time
  return d
end

counters.is = is_counters

return setmetatable(counters, { __call = function(_, opts) return counters.read(opts) end })
