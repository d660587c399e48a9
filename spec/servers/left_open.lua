-- Opens a lab around a server that ignores SIGTERM and never closes it:
--   lua5.4 spec/servers/left_open.lua MODE PORT
-- MODE error: error("oops"); exit: os.exit(1); exit_close: os.exit(1, true)
-- (the state is closed, collection in whatever order); collect: the lab is
-- dropped and collected, then the script goes on and exits normally.
-- Prints "lab INIT_PID NS_INODE CMD_PID TMPNAMES" first, so the spec can
-- look for what is left; TMPNAMES counts os.tmpname calls during the start.
local here = arg[0]:match("^(.*/)") or "./"
package.path = here .. "../../lua/?.lua;" .. here .. "../../lua/?/init.lua;" .. package.path
package.cpath = package.cpath .. ";" .. here .. "../../lua/?.so"
local tcplab = require "tcplab"
local mode, port = arg[1], assert(math.tointeger(tonumber(arg[2])), "PORT")
local tmpnames, tmpname = 0, os.tmpname
os.tmpname = function() tmpnames = tmpnames + 1 return tmpname() end   -- luacheck: ignore
local lab = assert(tcplab.lab{ port = port, grace = 0.5, cmd = { "sh", "-c",
  "trap '' TERM; sleep 300 & exec lua5.4 " .. here .. "echo.lua " .. port } })
local init = lab.contained:init_pid()
local p = io.popen("stat -L -c %i /proc/" .. init .. "/ns/pid")
local ino = p:read("l")
p:close()
io.write(("lab %d %s %d %d\n"):format(init, ino, lab.pid, tmpnames))
io.flush()
if mode == "error" then error("oops") end
if mode == "exit" then os.exit(1) end
if mode == "exit_close" then os.exit(1, true) end
if mode == "collect" then
  lab = nil   -- luacheck: ignore
  collectgarbage()
  collectgarbage()
  io.write("collected\n")
end
