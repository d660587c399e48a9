-- Echoes, but never closes an accepted socket after the peer hangs up:
-- every client leaves a CLOSE_WAIT socket behind.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
require "serve" { close_on_eof = false }
