-- A load helper for bench/run.lua: holds ESTABLISHED pairs (clients bound to
-- its own loopback source address), a few listeners, and leaves TIME_WAIT
-- sockets behind. Writes "ready N" to READYFILE, then holds everything until
-- its standard input closes (the parent ends, or is interrupted).
--   lua5.4 bench/load.lua READYFILE INDEX PAIRS TIMEWAIT LISTENERS
local tcplab = require "tcplab"

local ready_file, index, npairs, ntw, nlisten = arg[1], tonumber(arg[2]), tonumber(arg[3]),
  tonumber(arg[4]), tonumber(arg[5])
local src = ("127.0.%d.1"):format(index)
local keep = {}
local function hold(s) keep[#keep + 1] = s return s end

local srv = hold(assert(tcplab.listen(src, 0, 4096)))
local host, port = srv:getsockname()
for _ = 2, nlisten do hold(assert(tcplab.listen(src, 0, 16))) end

local function connect_one()
  local c = assert(tcplab.socket("inet"))
  assert(c:bind(src, 0))
  assert(c:connect(host, port, 5))
  return c
end

local made = 0
while made < npairs do            -- in batches that fit the accept queue
  local batch = math.min(1024, npairs - made)
  for _ = 1, batch do hold(connect_one()) end
  for _ = 1, batch do hold(assert(srv:accept(5))) end
  made = made + batch
end
for _ = 1, ntw do                 -- client closes first: its end stays in TIME_WAIT
  local c = connect_one()
  local a = assert(srv:accept(5))
  c:close()
  assert(a:read(1, 5) == "")
  a:close()
end

local f = assert(io.open(ready_file, "w"))
f:write("ready ", #keep, "\n")
f:close()
io.read("a")
