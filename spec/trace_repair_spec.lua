local repair = require "tcplab.trace.repair"

-- Events as the BPF recorder writes them: one socket is one cookie.
local function ev(cookie, from, to, time)
  return { cookie = cookie, from = from, to = to, time = time, family = "inet",
           src = "127.0.0.1", sport = cookie, dst = "127.0.0.2", dport = 80, netns = 7 }
end

local function seq(events)
  local out = {}
  for _, e in ipairs(events) do
    out[#out + 1] = e.cookie .. ":" .. e.from .. ">" .. e.to .. (e.inferred and ("(" .. e.inferred .. ")") or "")
  end
  return table.concat(out, " ")
end

describe("tcplab.trace.repair: transitions the kernel skipped #unit", function()
  it("leaves complete chains alone", function()
    local events = { ev(1, "CLOSE", "SYN_SENT", 1), ev(2, "LISTEN", "SYN_RECV", 2),
                     ev(1, "SYN_SENT", "ESTABLISHED", 3), ev(2, "SYN_RECV", "ESTABLISHED", 4) }
    local out, n = repair.gaps(events)
    assert.equal(0, n)
    assert.equal(seq(events), seq(out))
  end)

  it("fills a hole between two events of one socket, before the later one, with its time and tuple", function()
    local events = { ev(1, "ESTABLISHED", "FIN_WAIT1", 1), ev(2, "ESTABLISHED", "CLOSE_WAIT", 2),
                     ev(1, "FIN_WAIT2", "CLOSE", 5) }
    local out, n = repair.gaps(events)
    assert.equal(1, n)
    assert.equal("1:ESTABLISHED>FIN_WAIT1 2:ESTABLISHED>CLOSE_WAIT 1:FIN_WAIT1>FIN_WAIT2(gap) 1:FIN_WAIT2>CLOSE",
      seq(out))
    local filled = out[3]
    assert.equal(5, filled.time)
    assert.same({ "inet", "127.0.0.1", 1, "127.0.0.2", 80, 7 },
      { filled.family, filled.src, filled.sport, filled.dst, filled.dport, filled.netns })
  end)

  it("marks a filled-in transition that is no single TCP step as collapsed", function()
    local out = repair.gaps({ ev(1, "CLOSE", "SYN_SENT", 1), ev(1, "FIN_WAIT2", "CLOSE", 2) })
    assert.equal("SYN_SENT>FIN_WAIT2", out[2].from .. ">" .. out[2].to)
    assert.is_true(out[2].collapsed)
    out = repair.gaps({ ev(1, "ESTABLISHED", "FIN_WAIT1", 1), ev(1, "FIN_WAIT2", "CLOSE", 2) })
    assert.is_nil(out[2].collapsed)
  end)

  -- TCP's state diagram (RFC 9293 3.3.2) as Linux walks it, TIME_WAIT as the dump shows it
  for _, edge in ipairs({ "CLOSE>SYN_SENT", "CLOSE>LISTEN", "LISTEN>SYN_RECV", "LISTEN>CLOSE", "SYN_SENT>ESTABLISHED",
                          "SYN_SENT>SYN_RECV", "SYN_SENT>CLOSE", "SYN_RECV>ESTABLISHED", "SYN_RECV>FIN_WAIT1",
                          "SYN_RECV>CLOSE", "ESTABLISHED>FIN_WAIT1", "ESTABLISHED>CLOSE_WAIT", "ESTABLISHED>CLOSE",
                          "FIN_WAIT1>FIN_WAIT2", "FIN_WAIT1>CLOSING", "FIN_WAIT1>TIME_WAIT", "FIN_WAIT1>CLOSE",
                          "FIN_WAIT2>TIME_WAIT", "FIN_WAIT2>CLOSE", "CLOSING>TIME_WAIT", "CLOSING>CLOSE",
                          "CLOSE_WAIT>LAST_ACK", "CLOSE_WAIT>CLOSE", "LAST_ACK>CLOSE" }) do
    it("a filled-in " .. edge .. " is one TCP step, not collapsed", function()
      local from, to = edge:match("^(.-)>(.*)$")
      local out, n = repair.gaps({ ev(1, "UNKNOWN", from, 1), ev(1, to, "CLOSE", 2) })
      assert.equal(1, n)
      assert.equal(edge, out[2].from .. ">" .. out[2].to)
      assert.is_nil(out[2].collapsed, edge)
    end)
  end

  it("does not join events without a cookie (tracefs, sampler)", function()
    local a, b = ev(1, "CLOSE", "SYN_SENT", 1), ev(1, "FIN_WAIT1", "FIN_WAIT2", 2)
    a.cookie, b.cookie = nil, nil
    local _, n = repair.gaps({ a, b })
    assert.equal(0, n)
  end)

  it("a live stream gets the same fill, just before the socket's next event", function()
    local follow = repair.chain()
    assert.is_nil(follow(ev(1, "ESTABLISHED", "FIN_WAIT1", 1)))
    local missing = follow(ev(1, "FIN_WAIT2", "CLOSE", 2))
    assert.equal("FIN_WAIT1>FIN_WAIT2", missing.from .. ">" .. missing.to)
    assert.equal("gap", missing.inferred)
  end)

  it("brings each socket's last state to what the dump says, by cookie", function()
    local events = { ev(1, "ESTABLISHED", "FIN_WAIT1", 1),     -- dump: TIME_WAIT placeholder
                     ev(2, "ESTABLISHED", "CLOSE_WAIT", 2),    -- dump: still CLOSE_WAIT
                     ev(3, "CLOSE_WAIT", "LAST_ACK", 3),       -- gone from the dump
                     ev(4, "FIN_WAIT2", "CLOSE", 4) }          -- already closed: left to the TIME_WAIT rewrite
    local dump = { { cookie = 1, state = "TIME_WAIT" }, { cookie = 2, state = "CLOSE_WAIT" },
                   { cookie = 4, state = "TIME_WAIT" }, { cookie = 9, state = "LISTEN" } }
    local tail, n = repair.ends(events, dump, 10)
    assert.equal(2, n)
    assert.equal("1:FIN_WAIT1>TIME_WAIT(dump) 3:LAST_ACK>CLOSE(dump)", seq(tail))
    assert.equal(10, tail[1].time)
    assert.is_nil(tail[1].collapsed, "FIN_WAIT1 -> TIME_WAIT is one step (the FIN and the ACK of ours in one segment)")
  end)
end)
