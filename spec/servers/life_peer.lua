-- One end of the connections spec/trace_life_spec.lua traces, each with
-- known byte counts: the client writes 1000 bytes, the server answers 3000.
--   life_peer.lua server PORT N READY   accept N connections (READY: a file written once listening)
--   life_peer.lua client PORT N         make N connections, one after the other
--   life_peer.lua pre PORT READY GO     one connection, exchanged, then held until the file GO exists
-- Who closes first: the server's first connection (the pre one) waits for
-- the client's FIN; then connection i of the client closes first when i is
-- even, the server when i is odd. Every wait is bounded (10 s).
local tcplab = require "tcplab"
local role, port = arg[1], math.tointeger(tonumber(arg[2]))

local function read_n(s, want)
  local got = 0
  while got < want do
    local d = assert(s:read(65536, 10))
    assert(#d > 0, "EOF after " .. got .. " of " .. want .. " bytes")
    got = got + #d
  end
end

local function touch(path)
  local f = assert(io.open(path, "w"))
  f:write("ready\n")
  f:close()
end

local function client_side(c, close_first)
  assert(c:write(string.rep("x", 1000)))
  read_n(c, 3000)
  if not close_first then assert(c:read(10, 10) == "", "the server's FIN") end
  c:close()
end

if role == "server" then
  local n = math.tointeger(tonumber(arg[3]))
  local l = assert(tcplab.listen("127.0.0.1", port))
  touch(arg[4])
  for i = 1, n do
    local a = assert(l:accept(10))
    read_n(a, 1000)
    assert(a:write(string.rep("y", 3000)))
    local j = i - 1   -- the client's connection number (0: the pre one)
    if j == 0 or j % 2 == 0 then assert(a:read(10, 10) == "", "the client's FIN") end
    a:close()
  end
  l:close()
elseif role == "client" then
  for i = 1, math.tointeger(tonumber(arg[3])) do
    client_side(assert(tcplab.connect("127.0.0.1", port, 10)), i % 2 == 0)
  end
elseif role == "pre" then
  local c = assert(tcplab.connect("127.0.0.1", port, 10))
  assert(c:write(string.rep("x", 1000)))
  read_n(c, 3000)
  touch(arg[3])
  for _ = 1, 1000 do   -- at most 10 s
    local f = io.open(arg[4])
    if f then f:close() break end
    tcplab.sleep(0.01)
  end
  c:close()
else
  error("life_peer.lua: server, client or pre expected, got " .. tostring(role))
end
