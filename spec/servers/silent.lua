-- Reads requests and never answers; closes when the client hangs up.
local here = arg[0]:match("^(.*/)") or "./"
package.path = here .. "?.lua;" .. here .. "../../lua/?.lua;" .. here .. "../../lua/?/init.lua;" .. package.path
package.cpath = package.cpath .. ";" .. here .. "../../lua/?.so"   -- from a checkout, after LUA_CPATH
require "serve" { silent = true }
