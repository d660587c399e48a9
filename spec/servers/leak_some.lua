-- Echoes, and closes two of every three accepted sockets after the peer
-- hangs up: every third client leaves a CLOSE_WAIT socket behind.
local here = arg[0]:match("^(.*/)") or "./"
package.path = here .. "?.lua;" .. here .. "../../lua/?.lua;" .. here .. "../../lua/?/init.lua;" .. package.path
package.cpath = package.cpath .. ";" .. here .. "../../lua/?.so"   -- from a checkout, after LUA_CPATH
require "serve" { keep_one_in = 3 }
