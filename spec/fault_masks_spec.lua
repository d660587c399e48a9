--- fault.drop's segment kinds match what their names say, judged on real
-- traffic in a namespace of our own (KERNEL-NOTES: a pure-ACK match needs psh
-- in the mask, or data segments go too).
local tcplab = require "tcplab"
local support = require "support"

describe("fault.drop{ segment = ... } #kernel #root", function()
  if not support.is_root() then
    pending("needs root: nftables rules in a network namespace of our own")
    return
  end
  local home
  setup(function()
    home = assert(tcplab.netns.open())
    assert(tcplab.netns.unshare())
  end)
  teardown(function()
    assert(home:enter())
    home:close()
  end)

  it("'ack' drops pure ACKs only: data (PSH|ACK) still arrives, the handshake's last ACK does not", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0, 8))
    local port = select(2, l:getsockname())
    local c <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    local a <close> = assert(l:accept(2))
    local rule <close> = assert(tcplab.fault.drop{ segment = "ack", dport = port })
    assert(c:write("hello", 2))
    assert.equal("hello", (a:read(5, 5)))
    -- a new connection's final ACK is pure: the server end stays in SYN_RECV
    local c2 <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    local cport = select(2, c2:getsockname())
    assert(tcplab.await_state({ src = "127.0.0.1", sport = port, dst = "127.0.0.1", dport = cport }, "SYN_RECV", 2))
  end)
end)
