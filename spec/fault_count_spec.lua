local tcplab = require "tcplab"
local support = require "support"

-- fault.count: the rule shape the simultaneous close uses to know that both
-- FINs have left (an nft counter without a verdict).
describe("fault.count", function()
  it("checks its arguments like drop, naming itself", function()
    assert.has_error(function() tcplab.fault.count{ segment = "urg" } end,
      "bad argument #1 to 'count' (segment: unknown 'urg'; valid: syn synack ack fin rst data any)")
    assert.has_error(function() tcplab.fault.count("fin") end,
      "bad argument #1 to 'count' (table expected, got string)")
  end)

  support.as_root(it, pending, "counts matching segments and lets them pass", function()
    assert(tcplab.netns.unshare())
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local syns <close> = assert(tcplab.fault.count{ segment = "syn", dport = port })
    local fins <close> = assert(tcplab.fault.count{ segment = "fin", dport = port })
    assert.equal("fault count tcp dport " .. port .. " tcp flags & (syn|ack) == syn", tostring(syns))
    assert.equal(0, syns:packets())
    local cli = assert(tcplab.connect("127.0.0.1", port, 2))   -- the SYN passed: no retransmit needed
    local conn <close> = assert(srv:accept(2))
    assert.equal(1, syns:packets())
    assert.equal(0, fins:packets())
    local t = tcplab.observe.tuple(cli)
    cli:close()
    assert.equal("", conn:read(10, 2))                         -- the FIN arrived
    assert(tcplab.await_state(t, "FIN_WAIT2", 2))
    assert.equal(1, fins:packets())
    assert(syns:lift())
    assert.equal(1, syns:packets())                            -- the last count stays readable
    assert.equal("fault count tcp dport " .. port .. " tcp flags & (syn|ack) == syn (lifted)", tostring(syns))
  end)
end)
