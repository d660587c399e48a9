--- The seed's claims on the wire: each scenario's captured segments, read
-- with tcplab.wire, against the live kernel (root: a namespace of its own).
local tcplab = require "tcplab"
local wire = require "tcplab.wire"
local support = require "support"

describe("sequence numbers across the 2^32 wrap #unit", function()
  -- a FIN sent at the last sequence number: its ACK carries 0 (RFC 9293 3.4)
  local function seg(from, flags, seq, ack, len)
    return { from = from, flags = flags, seq = seq, ack = ack, len = len or 0, conn = "c>s" }
  end

  it("wire.add wraps modulo 2^32", function()
    assert.equal(0, wire.add(0xffffffff, 1))
    assert.equal(0x10, wire.add(0xfffffff0, 0x20))
    assert.equal(5, wire.add(5, 0))
  end)

  it("wire.fins pairs a FIN at seq 2^32-1 (and one whose data crosses the wrap) with the ACK of 0 (of 4)", function()
    local conn = { segments = {
      seg("client", "FA", 0xffffffff, 100),
      seg("server", "A", 100, 0),
      seg("server", "FPA", 0xfffffffe, 0, 5),
      seg("client", "A", 0, 4),
    } }
    local fins = wire.fins(conn)
    assert.equal(2, #fins)
    assert.equal(conn.segments[2], fins[1].ack)
    assert.equal(conn.segments[4], fins[2].ack)
  end)
end)

describe("on the wire #kernel #root", function()
  if not support.is_root() then
    pending("need root: capture (AF_PACKET) in the scenario's own namespace")
    return
  end

  local function run(name, family)
    local r = assert(tcplab.scenarios.run(name, { family = family }))
    -- the scenario's own wire claims held (its other claims: scenarios_spec)
    local wired = 0
    for _, c in ipairs(r.checks) do
      if c.claim:find("on the wire", 1, true) or c.claim:find("acknowledges", 1, true)
        or c.claim:find("after the final ACK", 1, true) or c.claim:find("sent the first FIN", 1, true) then
        assert(c.ok, name .. ": " .. c.claim)
        wired = wired + 1
      end
    end
    assert.is_true(wired >= 2, "wire claims checked")
    assert.truthy(r.capture_method, "a capture ran")
    local conns = wire.connections(wire.label(r.segments, r.port), r.events, r.port)
    assert.is_true(#conns >= 1)
    return r, conns
  end

  for _, family in ipairs({ "inet", "inet6" }) do
    it("handshake (" .. family .. "): SYN, SYN-ACK acking client_isn + 1, ACK acking server_isn + 1; connect() after the SYN-ACK, accept() after the ACK", function()
      local r, conns = run("handshake", family)
      local hs = wire.handshake(conns[1])
      assert.equal("S", hs.syn.flags)
      assert.equal(wire.add(hs.syn.seq, 1), hs.synack.ack)
      assert.equal(wire.add(hs.synack.seq, 1), hs.ack.ack)
      assert.equal(r.client_isn, hs.syn.seq)
      assert.equal(r.server_isn, hs.synack.seq)
      assert.is_true(hs.syn.options.mss > 0 and hs.synack.options.mss > 0)
      assert.is_true(r.connect_returned >= hs.synack.t)
      assert.is_true(r.accept_returned >= hs.ack.t)
      -- the dropped first SYN never reached lo: the SYN on the wire is the retransmit, ~1 s in
      local call_t
      for _, row in ipairs(r.steps) do if row.call:match("^socket") and row.side == "client" then call_t = row.t end end
      assert.is_true(hs.syn.t - call_t >= 0.9, ("SYN after %.3f s"):format(hs.syn.t - call_t))
    end)
  end

  it("close: each FIN takes one sequence number and is acknowledged with fin_seq + 1; the first FIN's sender waits in TIME_WAIT", function()
    local r, conns = run("close", "inet")
    local fins = wire.fins(conns[1])
    assert.equal(2, #fins)
    assert.equal("client", fins[1].fin.from)
    assert.equal("server", fins[2].fin.from)
    for _, f in ipairs(fins) do
      assert.equal(wire.add(f.fin.seq, f.fin.len + 1), f.ack.ack)
      assert.is_true(f.ack.t >= f.fin.t)
    end
    assert.truthy(r.time_wait_ms and r.time_wait_ms > 50000)
  end)

  it("reset: close() with unread bytes sends RST (no FIN) acknowledging them; linger 0 sends RST from the client", function()
    local _, conns = run("reset", "inet")
    assert.equal(2, #conns)
    assert.equal(1, #wire.with(conns[1], "R", "client"))
    assert.equal(0, #wire.with(conns[1], "F"))
    local data = wire.find(conns[2], "client", "PA")
    local rst = wire.with(conns[2], "R", "server")
    assert.equal(6, data.len)
    assert.equal(1, #rst)
    assert.equal(wire.add(data.seq, 6), rst[1].ack)
    assert.equal(0, #wire.with(conns[2], "F"))
  end)
end)
