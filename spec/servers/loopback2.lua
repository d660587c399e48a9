-- A well-behaved echo server that listens on 127.0.0.2 only: a client
-- dialling 127.0.0.1 is refused.
local here = arg[0]:match("^(.*/)") or "./"
package.path = here .. "?.lua;" .. here .. "../../lua/?.lua;" .. here .. "../../lua/?/init.lua;" .. package.path
package.cpath = package.cpath .. ";" .. here .. "../../lua/?.so"   -- from a checkout, after LUA_CPATH
require "serve" { host = "127.0.0.2" }
