-- Listens with a small backlog (2 unless told), then sleeps 30 s before
-- accepting anything: a burst overflows its accept queue.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
require "serve" { backlog = 2, sleep = 30 }
