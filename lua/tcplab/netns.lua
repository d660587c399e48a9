--- Network namespaces: a fresh one for this process, and the record of
-- which namespaces the library made (fault injection runs only in those).
local core = require "tcplab.core"

local netns = {}
local ours = {}

--- Move this process into a fresh network namespace with lo up (root).
function netns.unshare()
  local ok, err, errno = core.netns.unshare()
  if not ok then return nil, err, errno end
  ours[core.netns.id()] = true
  return true
end

--- Identity (inode) of the current namespace, or of the one at path.
function netns.id(path)
  if path ~= nil and type(path) ~= "string" then
    error("bad argument #1 to 'id' (path string expected, got " .. type(path) .. ")", 2)
  end
  return core.netns.id(path)
end

--- Move this process into the namespace at path (/run/netns/X, /proc/PID/ns/net).
function netns.enter(path)
  if type(path) ~= "string" then
    error("bad argument #1 to 'enter' (path string expected, got " .. type(path) .. ")", 2)
  end
  return core.netns.enter(path)
end

--- True when the current namespace is one that netns.unshare() made.
function netns.is_ours()
  return ours[core.netns.id()] == true
end

--- Path naming the namespace this process is in now (for {netns = ...}).
function netns.self_path()
  local f <close> = assert(io.open("/proc/self/stat"))
  return "/proc/" .. f:read("n") .. "/ns/net"
end

return netns
