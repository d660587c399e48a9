--- Write real captured frames to DIR (the capture fuzzer's seed corpus):
-- in a fresh namespace (root), v4 and v6 connections on lo with a
-- handshake, data, a FIN close and an RST close.
--   lua5.4 fuzz/capture_corpus.lua DIR
local tcplab = require "tcplab"
local dir = assert(arg[1], "usage: capture_corpus.lua DIR")
assert(tcplab.netns.unshare())
os.execute("ip -6 addr add fd74:636c::1/128 dev lo nodad 2>/dev/null")
for _, family in ipairs({ "inet", "inet6" }) do
  local host = family == "inet6" and "fd74:636c::1" or "127.0.0.1"
  local srv = assert(tcplab.socket(family))
  assert(srv:bind(host, 0))
  assert(srv:listen(4))
  local port = select(2, srv:getsockname())
  local cap = assert(tcplab.capture.open(port))
  local c = assert(tcplab.socket(family))
  assert(c:connect(host, port, 2))
  local a = assert(srv:accept(2))
  assert(c:write("hello"))
  assert(a:read(10, 1))
  c:close()
  assert(a:read(10, 1))
  a:close()
  local r = assert(tcplab.socket(family))          -- an RST: linger 0
  assert(r:connect(host, port, 2))
  local ra = assert(srv:accept(2))
  assert(r:setopt("linger", 0))
  r:close()
  ra:close()
  tcplab.sleep(0.05)
  for i, seg in ipairs(cap:read(1, true)) do
    local f = assert(io.open(("%s/%s-%02d-%s"):format(dir, family, i, seg.flags), "wb"))
    f:write(seg.raw)
    f:close()
  end
  cap:close()
  srv:close()
end
