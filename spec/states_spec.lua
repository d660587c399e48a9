local tcplab = require "tcplab"
local states = tcplab.states

describe("state names #unit", function()
  it("are the kernel's numbers with netstat and ss spellings", function()
    assert.same({ "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
                  "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING" }, states.list)
    assert.equal(1, states.number.ESTABLISHED)
    assert.equal(10, states.number.LISTEN)
    assert.equal("ESTAB", states.ss.ESTABLISHED)
    assert.equal("FIN-WAIT-1", states.ss.FIN_WAIT1)
    assert.equal("UNCONN", states.ss.CLOSE)
  end)

  it("spell every state as ss (iproute2's sstate_name) and node_exporter's tcpstat do", function()
    -- written out from iproute2 misc/ss.c and node_exporter collector/tcpstat_linux.go
    local ss = { ESTABLISHED = "ESTAB", SYN_SENT = "SYN-SENT", SYN_RECV = "SYN-RECV", FIN_WAIT1 = "FIN-WAIT-1",
                 FIN_WAIT2 = "FIN-WAIT-2", TIME_WAIT = "TIME-WAIT", CLOSE = "UNCONN", CLOSE_WAIT = "CLOSE-WAIT",
                 LAST_ACK = "LAST-ACK", LISTEN = "LISTEN", CLOSING = "CLOSING" }
    local label = { ESTABLISHED = "established", SYN_SENT = "syn_sent", SYN_RECV = "syn_recv",
                    FIN_WAIT1 = "fin_wait1", FIN_WAIT2 = "fin_wait2", TIME_WAIT = "time_wait", CLOSE = "close",
                    CLOSE_WAIT = "close_wait", LAST_ACK = "last_ack", LISTEN = "listen", CLOSING = "closing" }
    for _, name in ipairs(states.list) do
      assert.equal(ss[name], states.ss[name], name)
      assert.equal(label[name], states.label[name], name)
    end
  end)

  it("accept what people type and answer with one spelling", function()
    local cases = {
      FIN_WAIT_1 = "FIN_WAIT1", ["fin-wait-1"] = "FIN_WAIT1", FIN_WAIT2 = "FIN_WAIT2",
      ["FIN-WAIT-2"] = "FIN_WAIT2", ESTAB = "ESTABLISHED", established = "ESTABLISHED",
      ["SYN-RECV"] = "SYN_RECV", SYN_RCVD = "SYN_RECV", SYNC_SENT = "SYN_SENT",
      ["time-wait"] = "TIME_WAIT", UNCONN = "CLOSE", CLOSED = "CLOSE", ["Close-Wait"] = "CLOSE_WAIT",
    }
    for typed, canonical in pairs(cases) do
      assert.equal(canonical, states.canonical(typed), typed)
    end
  end)

  it("reject unknown names listing the valid ones", function()
    local name, err = states.canonical("FIN_WAIT_3")
    assert.is_nil(name)
    assert.equal("unknown state 'FIN_WAIT_3' (valid: ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT1 " ..
                 "FIN_WAIT2 TIME_WAIT CLOSE CLOSE_WAIT LAST_ACK LISTEN CLOSING)", err)
    assert.is_nil(states.canonical("UNKNOWN"))
    assert.is_nil(states.canonical(3))
  end)

  it("make kernel state masks", function()
    assert.equal(1 << 10, states.mask("LISTEN"))
    assert.equal((1 << 1) | (1 << 6), states.mask({ "ESTAB", "time-wait" }))
    assert.equal(states.ALL_MASK, states.mask(nil))
    assert.equal(0xffe, states.ALL_MASK)
  end)
end)

describe("the state table #unit", function()
  it("has the C core's numbers and names", function()
    local core = require "tcplab.core"
    for num = 0, #core.STATES do
      assert.equal(core.STATES[num], tcplab.states.name[num], "state " .. num)
    end
    assert.equal(#core.STATES, #tcplab.states.list)
  end)
end)
