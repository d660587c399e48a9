-- Echoes, but never closes an accepted socket after the peer hangs up:
-- every client leaves a CLOSE_WAIT socket behind.
local here = arg[0]:match("^(.*/)") or "./"
package.path = here .. "?.lua;" .. here .. "../../lua/?.lua;" .. here .. "../../lua/?/init.lua;" .. package.path
package.cpath = package.cpath .. ";" .. here .. "../../lua/?.so"   -- from a checkout, after LUA_CPATH
require "serve" { close_on_eof = false }
