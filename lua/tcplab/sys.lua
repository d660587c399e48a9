--- This process and the files it reads: pid, root, whole-file reads and
-- writes, and commands run through the shell with short error messages.
local sys = {}

local pid
--- This process's id (read once).
function sys.pid()
  if not pid then
    local f <close> = assert(io.open("/proc/self/stat"))
    pid = f:read("n")
  end
  return pid
end

--- Is this process root (effective uid 0)?
function sys.is_root()
  local f = io.open("/proc/self/status")
  local text = f and f:read("a") or ""
  if f then f:close() end
  return text:match("\nUid:%s+%d+%s+0%s") ~= nil
end

--- Does process `p` exist and run (a zombie has ended: it only waits to be reaped)?
function sys.alive(p)
  local f = io.open("/proc/" .. p .. "/stat")
  if not f then return false end
  local state = (f:read("a") or ""):match("^%d+ %b() (%a)")
  f:close()
  return state ~= nil and state ~= "Z" and state ~= "X"
end

--- The whole file, or nil and a message.
function sys.readfile(path)
  local f <close>, err = io.open(path)   -- closed also when an error (Ctrl-C) unwinds
  if not f then return nil, err end
  return f:read("a")
end

--- Write data to path (tracefs and /proc report a bad value when the write is
-- flushed, so close is checked too). true, or nil and a message naming the path.
function sys.writefile(path, data)
  -- <close>: an error raised between open and close (Ctrl-C) must not leave the
  -- file open, or tracefs refuses to remove its instance (EBUSY) until it is collected
  local f <close>, err = io.open(path, "w")
  if not f then return nil, err end
  local ok, werr = f:write(data)
  local cok, cerr = f:close()
  if not ok or not cok then return nil, ("%s: %s"):format(path, werr or cerr) end
  return true
end

--- A string quoted for sh.
function sys.shq(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- io.popen whose failure names the program, not the whole command line.
function sys.popen(what, cmd, mode)
  local p, err = io.popen(cmd, mode or "r")
  if not p then
    return nil, ("%s: %s"):format(what, (tostring(err):match(": ([^:]+)$") or tostring(err)))
  end
  return p
end

--- Run a command; its output, and true when it exited 0.
function sys.run(what, cmd)
  local p, err = sys.popen(what, cmd .. " 2>&1")
  if not p then return nil, false, err end
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

return sys
