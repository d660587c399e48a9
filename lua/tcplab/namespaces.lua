--- The network namespaces of the host: the named ones under /run/netns and
-- those of running processes (/proc/PID/ns/net), one entry per namespace
-- inode: { id, name, pid, path }. Uses the C core's netns.id (this module sits below tcplab.kernel).
local core = require "tcplab.core"
local sys = require "tcplab.sys"

local namespaces = {}

namespaces.RUN_DIR = "/run/netns"

-- Entries of a directory (names only), sorted; {} when it cannot be listed.
-- Names are read NUL-separated: a name may hold a newline (ip netns add
-- "$(printf 'a\nb')" works), and must not be split into two or dropped.
local function ls(dir)
  local p = sys.popen("find", "find " .. sys.shq(dir) .. " -mindepth 1 -maxdepth 1 -printf '%f\\0' 2>/dev/null")
  local out = {}
  if not p then return out end
  local all = p:read("a") or ""
  p:close()
  for name in all:gmatch("([^%z]+)%z") do out[#out + 1] = name end
  table.sort(out)
  return out
end

--- Every namespace once: named ones first (by name), then the others by the
-- lowest pid in them. name: the /run/netns name, else "pid:PID"; pid: the
-- lowest pid in it (nil when no process is); path: what enters it.
function namespaces.list()
  local by_id, out = {}, {}
  for _, name in ipairs(ls(namespaces.RUN_DIR)) do
    local path = namespaces.RUN_DIR .. "/" .. name
    local id = core.netns.id(path)   -- nil, msg: not a namespace (a stale mount point)
    if id and not by_id[id] then
      local e = { id = id, name = name, path = path }
      by_id[id] = e
      out[#out + 1] = e
    end
  end
  local pids = {}
  for _, entry in ipairs(ls("/proc")) do
    local pid = math.tointeger(tonumber(entry))
    if pid and entry:match("^%d+$") then pids[#pids + 1] = pid end
  end
  table.sort(pids)
  local unnamed = {}
  for _, pid in ipairs(pids) do
    local path = ("/proc/%d/ns/net"):format(pid)
    local id = core.netns.id(path)   -- nil: the process is gone (or a kernel thread): skip
    if id then
      local e = by_id[id]
      if not e then
        e = { id = id, name = "pid:" .. pid, path = path }
        by_id[id] = e
        unnamed[#unnamed + 1] = e
      end
      e.pid = e.pid or pid
    end
  end
  for _, e in ipairs(unnamed) do out[#out + 1] = e end
  return out
end

--- The path of a namespace given by name or path: a string with a "/" is a
-- path and is returned as it is; "pid:N" is /proc/N/ns/net; any other name
-- is /run/netns/NAME, which must exist. nil and a message naming the path.
function namespaces.resolve(spec)
  if type(spec) ~= "string" or spec == "" then
    return nil, "namespace name or path expected, got " .. require("tcplab.args").show(spec)
  end
  if spec:find("/", 1, true) then return spec end
  local path
  local pid = spec:match("^pid:(%d+)$")
  if pid then path = "/proc/" .. pid .. "/ns/net"
  else path = namespaces.RUN_DIR .. "/" .. spec end
  local id, err = core.netns.id(path)
  if not id then
    return nil, ("namespace '%s': %s"):format(spec, err:find(path, 1, true) and err or (path .. ": " .. err))
  end
  return path
end

return namespaces
