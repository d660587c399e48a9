-- Listens with a small backlog (2 unless told), then sleeps 30 s before
-- accepting anything: a burst overflows its accept queue.
local here = arg[0]:match("^(.*/)") or "./"
package.path = here .. "?.lua;" .. here .. "../../lua/?.lua;" .. here .. "../../lua/?/init.lua;" .. package.path
package.cpath = package.cpath .. ";" .. here .. "../../lua/?.so"   -- from a checkout, after LUA_CPATH
require "serve" { backlog = 2, sleep = 30 }
