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
-- unreachable socket's fd is closed by __gc; a leak survives it).
function support.fd_count()
  if collectgarbage("isrunning") then
    collectgarbage()
    collectgarbage()
  end
  return tonumber(slurp("ls /proc/" .. support.pid() .. "/fd | wc -l"))
end

--- Inode number behind one of our fds, from /proc/PID/fd.
function support.fd_inode(fd)
  local link = slurp(("readlink /proc/%d/fd/%d"):format(support.pid(), fd))
  return tonumber(link:match("socket:%[(%d+)%]"))
end

function support.is_root()
  return slurp("id -u"):match("^0") ~= nil
end

--- Sorted output lines of a shell pipeline.
function support.lines(cmd)
  local out = {}
  for line in slurp(cmd):gmatch("[^\n]+") do out[#out + 1] = line end
  table.sort(out)
  return out
end

--- Run `body` only as root; otherwise mark it pending and say why.
function support.as_root(it_fn, pending_fn, name, body)
  if support.is_root() then
    it_fn(name, body)
  else
    pending_fn(name .. " (needs root: network namespace)")
  end
end

return support
