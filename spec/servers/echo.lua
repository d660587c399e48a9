-- A well-behaved echo server: echoes, closes when the client hangs up.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
require "serve" {}
