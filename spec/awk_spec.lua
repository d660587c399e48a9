local tcplab = require "tcplab"
local support = require "support"

-- Builds, in a fresh namespace, a known mix of states and compares our
-- counts with the seed's real pipelines run in the same namespace.
describe("the seed's awk counts #kernel #root", function()
  if not support.is_root() then
    pending("need root: they run in a fresh network namespace")
    return
  end

  local keep, rules = {}, {}
  local function hold(s) keep[#keep + 1] = s return s end
  local crossing = require "tcplab.scenarios.simultaneous_close"

  -- a bound on each wait, not a timing: under load (20+ on 2 cores) softirqs run in
  -- ksoftirqd beside busy processes, and a 2 s bound on a loopback connect failed once
  local WAIT = 10

  local function pair(lst, host)
    local cli = hold(assert(tcplab.connect(host, select(2, lst:getsockname()), WAIT)))
    local conn = hold(assert(lst:accept(2)))
    return cli, conn
  end

  setup(function()
    assert(tcplab.netns.unshare())
    local l4 = hold(assert(tcplab.listen("127.0.0.1", 0, 16)))
    local l6 = hold(assert(tcplab.listen("::1", 0, 16)))
    local dual = hold(assert(tcplab.socket("inet6")))
    assert(dual:setopt("v6only", false))
    assert(dual:bind("::", 0))
    assert(dual:listen(16))
    pair(l4, "127.0.0.1")                         -- ESTABLISHED x2, v4
    pair(l6, "::1")                               -- ESTABLISHED x2, v6
    pair(dual, "127.0.0.1")                       -- ESTABLISHED x2, v4-mapped on a v6 socket
    for _, spec in ipairs({ { l4, "127.0.0.1" }, { l6, "::1" } }) do  -- TIME_WAIT, v4 and v6
      local cli, conn = pair(spec[1], spec[2])
      local t = tcplab.observe.tuple(cli)
      cli:close()
      assert.equal("", conn:read(10, WAIT))
      conn:close()
      assert(tcplab.await_state(t, "TIME_WAIT", WAIT))
    end
    local cli, conn = pair(l6, "::1")             -- FIN_WAIT2 / CLOSE_WAIT
    local t = tcplab.observe.tuple(cli)
    cli:close()
    assert(tcplab.await_state(t, "FIN_WAIT2", WAIT))
    assert(tcplab.await_state(conn, "CLOSE_WAIT", WAIT))
    hold(assert(tcplab.connect("127.0.0.1", select(2, l4:getsockname()), WAIT)))  -- x2, one still queued

    -- the states whose ss spellings differ most, each held by dropping segments
    local function port_of(s) return (select(2, s:getsockname())) end
    local function drop(spec) rules[#rules + 1] = assert(tcplab.fault.drop(spec)) end
    -- SYN-SENT: every SYN to the port dropped
    local l_syn = hold(assert(tcplab.listen("127.0.0.1", 0, 4)))
    drop{ segment = "syn", dport = port_of(l_syn) }
    local c_syn = hold(assert(tcplab.socket("inet")))
    assert.same({ nil, "timeout", 115 }, { c_syn:connect("127.0.0.1", port_of(l_syn), 0) })
    -- SYN-RECV: the client's final ACK dropped (the client is ESTABLISHED)
    local l_recv = hold(assert(tcplab.listen("127.0.0.1", 0, 4)))
    drop{ segment = "ack", dport = port_of(l_recv) }
    local c_recv = hold(assert(tcplab.connect("127.0.0.1", port_of(l_recv), WAIT)))
    assert(tcplab.await_state({ src = "127.0.0.1", sport = port_of(l_recv), dst = "127.0.0.1",
                                dport = port_of(c_recv) }, "SYN_RECV", WAIT))
    -- FIN-WAIT-1 against CLOSE-WAIT: the server's ACK of the FIN dropped
    local l_fw = hold(assert(tcplab.listen("127.0.0.1", 0, 4)))
    local c_fw, a_fw = pair(l_fw, "127.0.0.1")
    drop{ segment = "ack", sport = port_of(l_fw) }
    local t_fw = tcplab.observe.tuple(c_fw)
    c_fw:close()
    assert(tcplab.await_state(a_fw, "CLOSE_WAIT", WAIT))
    assert(tcplab.await_state(t_fw, "FIN_WAIT1", WAIT))
    -- LAST-ACK against TIME-WAIT: the client's last ACK dropped
    local l_la = hold(assert(tcplab.listen("::1", 0, 4)))
    local c_la, a_la = pair(l_la, "::1")
    local t_la, s_la = tcplab.observe.tuple(c_la), tcplab.observe.tuple(a_la)
    c_la:close()
    assert(tcplab.await_state(t_la, "FIN_WAIT2", WAIT))
    drop{ segment = "ack", dport = port_of(l_la) }
    a_la:close()
    assert(tcplab.await_state(s_la, "LAST_ACK", WAIT))
    assert(tcplab.await_state(t_la, "TIME_WAIT", WAIT))
    -- CLOSING on both ends: FINs that cross (see the simultaneous_close scenario)
    local l_cl = hold(assert(tcplab.listen("127.0.0.1", 0, 4)))
    local c_cl, a_cl = pair(l_cl, "127.0.0.1")
    local t_cl, s_cl = tcplab.observe.tuple(c_cl), tcplab.observe.tuple(a_cl)
    for _, r in ipairs(crossing.cross("inet", "127.0.0.1", port_of(l_cl), c_cl, a_cl)) do rules[#rules + 1] = r end
    assert(tcplab.await_state(t_cl, "CLOSING", 5))
    assert(tcplab.await_state(s_cl, "CLOSING", 5))
  end)

  teardown(function()
    for _, r in ipairs(rules) do r:lift() end
    for _, s in ipairs(keep) do s:close() end
  end)

  it("counts are exact in a namespace of our own", function()
    assert.is_true(tcplab.netns.is_ours())
    assert.same({ LISTEN = 8, ESTABLISHED = 9, SYN_SENT = 1, SYN_RECV = 1, FIN_WAIT1 = 1, FIN_WAIT2 = 1,
                  CLOSE_WAIT = 2, LAST_ACK = 1, TIME_WAIT = 3, CLOSING = 2 },
                tcplab.counts())
  end)

  it("awk.netstat() prints the lines of netstat -n | awk", function()
    local ours = assert(tcplab.awk.netstat())
    local theirs = support.lines(tcplab.awk.NETSTAT_PIPELINE)
    assert.same(theirs, ours)
    assert.same({ "CLOSE_WAIT 2", "CLOSING 2", "ESTABLISHED 9", "FIN_WAIT1 1", "FIN_WAIT2 1", "LAST_ACK 1",
                  "SYN_RECV 1", "SYN_SENT 1", "TIME_WAIT 3" }, ours)
  end)

  it("awk.ss() prints the lines of ss -ant | awk", function()
    local ours = assert(tcplab.awk.ss())
    local theirs = support.lines(tcplab.awk.SS_PIPELINE)
    assert.same(theirs, ours)
    assert.same({ "CLOSE-WAIT 2", "CLOSING 2", "ESTAB 9", "FIN-WAIT-1 1", "FIN-WAIT-2 1", "LAST-ACK 1",
                  "LISTEN 8", "SYN-RECV 1", "SYN-SENT 1", "TIME-WAIT 3" }, ours)
  end)

  it("counts agrees with #snapshot per state", function()
    local by_state = {}
    for _, r in ipairs(assert(tcplab.snapshot())) do
      by_state[r.state] = (by_state[r.state] or 0) + 1
    end
    assert.same(tcplab.counts(), by_state)
  end)

  it("the v4-mapped connection shows v4 addresses on an inet6 record", function()
    local mapped = 0
    for _, r in ipairs(assert(tcplab.snapshot{ family = "inet6", states = "ESTABLISHED" })) do
      if r.src == "127.0.0.1" then mapped = mapped + 1 end
    end
    assert.equal(1, mapped)  -- the accepted end; the client is a plain inet socket
  end)

  it("tcplab stat prints both styles from the command line", function()
    local out = support.tcplab("stat --style ss")
    assert.equal(table.concat(assert(tcplab.awk.ss()), "\n") .. "\n", out)
    assert.equal(support.slurp(tcplab.awk.SS_PIPELINE .. " | LC_ALL=C sort"), out)
    out = support.tcplab("stat")
    assert.equal(support.slurp(tcplab.awk.NETSTAT_PIPELINE .. " | LC_ALL=C sort"), out)
  end)
end)
