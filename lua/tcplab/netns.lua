--- Network namespaces: a fresh one for this process, and a held reference
-- (an fd) to each namespace the library made, so "is this one ours?" is
-- answered against the namespace itself, never a reusable inode number.
local core = require "tcplab.core"
local args = require "tcplab.args"

local netns = {}
local made = {}   -- handles of the namespaces unshare() made, still held

--- Move this process into a fresh network namespace with lo up (root).
-- Returns a handle to it (truthy), or nil, msg, errno. The library counts
-- the namespace as its own while the handle is open; handle:close() lets
-- the kernel free it once nothing else uses it.
function netns.unshare()
  local h, err, errno = core.netns.unshare()
  if not h then return nil, err, errno end
  made[#made + 1] = h
  return h
end

--- A handle to the namespace at path (default: the current one), or nil, msg, errno.
function netns.open(path)
  if path ~= nil and type(path) ~= "string" then args.error("open", 1, "path string expected, got " .. type(path)) end
  return core.netns.open(path)
end

--- Identity (inode) of the current namespace, or of the one at path.
function netns.id(path)
  if path ~= nil and type(path) ~= "string" then args.error("id", 1, "path string expected, got " .. type(path)) end
  return core.netns.id(path)
end

--- Move this process into the namespace at path (/run/netns/X, /proc/PID/ns/net).
function netns.enter(path)
  if type(path) ~= "string" then args.error("enter", 1, "path string expected, got " .. type(path)) end
  return core.netns.enter(path)
end

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

--- Path naming the namespace this process is in now (for {netns = ...}).
function netns.self_path()
  return "/proc/" .. require("tcplab.sys").pid() .. "/ns/net"
end

return netns
