local tcplab = require "tcplab"
local support = require "support"

-- Every claim of the seed, run against the real kernel, each scenario in a
-- network namespace of its own, transitions recorded by the tracepoint.
describe("the seed's claims #kernel #root", function()
  if not support.is_root() then
    pending("need root: each scenario runs in its own network namespace with nft faults")
    return
  end

  local fds_before, home

  setup(function()
    fds_before = support.fd_count()
    home = tcplab.netns.id()
  end)

  local function run(name, opts)
    local result, err = tcplab.scenarios.run(name, opts)
    assert(result, err)
    assert.equal(home, tcplab.netns.id(), "run() returns the caller to its namespace")
    for _, c in ipairs(result.checks) do
      assert(c.ok, name .. ": " .. c.claim)
    end
    assert.is_true(result.ok)
    assert.equal(support.recorder(), result.method)   -- the one trace.start picks (BPF first)
    -- nothing of ours lost: the ring buffer had room (the kernel's skips are of
    -- any socket on the host; those of ours were rescued or filled in)
    assert.equal(0, result.lost - (result.skipped or 0))
    assert(support.chained(result.events))
    assert.matches("address", result.scope)   -- only events of the run's own addresses
    return result
  end

  local function sub(seq, want)   -- want appears in seq in order
    local i = 1
    for _, tr in ipairs(seq) do if tr == want[i] then i = i + 1 end end
    return i > #want
  end

  for _, family in ipairs({ "inet", "inet6" }) do
    it("lifecycle (" .. family .. "): data, then EOF, then the server closes", function()
      local r = run("lifecycle", { family = family })
      assert.is_true(sub(r.transitions.client, { "CLOSE>SYN_SENT", "SYN_SENT>ESTABLISHED",
        "ESTABLISHED>FIN_WAIT1", "FIN_WAIT1>FIN_WAIT2", "FIN_WAIT2>TIME_WAIT" }))
      assert.is_true(sub(r.transitions.server, { "LISTEN>SYN_RECV", "SYN_RECV>ESTABLISHED",
        "ESTABLISHED>CLOSE_WAIT", "CLOSE_WAIT>LAST_ACK", "LAST_ACK>CLOSE" }))
    end)
  end

  it("two sockets: the listener and each connected socket differ", function()
    local r = run("two_sockets")
    local fds, inodes = {}, {}
    for i = 1, 3 do fds[r.fds[i]], inodes[r.inodes[i]] = true, true end
    assert.equal(3, #r.fds)
    assert.equal(3, support.count(fds))
    assert.equal(3, support.count(inodes))
  end)

  for _, family in ipairs({ "inet", "inet6" }) do
    it("handshake (" .. family .. "): connect() returns at the 2nd step, accept() after the 3rd", function()
      local r = run("handshake", { family = family })
      -- in the kernel's own times: client ESTABLISHED, then connect() returns,
      -- then the server's ESTABLISHED, then accept() returns
      assert.is_true(r.client_established <= r.connect_returned)
      assert.is_true(r.connect_returned < r.server_established)
      assert.is_true(r.server_established <= r.accept_returned)
    end)
  end

  it("backlog: the accept queue holds backlog + 1, the next SYN is dropped", function()
    local r = run("backlog")
    for _, row in ipairs(r.backlogs) do
      assert.equal(row.backlog + 1, row.rqueue)
      assert.equal(row.backlog, row.wqueue)
      assert.equal("SYN_SENT", row.next_client)
      assert.is_true(row.listen_overflows >= 1)
      assert.equal(row.listen_overflows, row.listen_drops)
      assert.equal(("ListenOverflows +%d, ListenDrops +%d"):format(row.listen_overflows, row.listen_drops), row.counters)
    end
    assert.equal(3, r.somaxconn_clamped)
    -- a final ACK at a full accept queue: ignored (0) or answered with RST (1)
    local off, on = r.abort_on_overflow[1], r.abort_on_overflow[2]
    assert.same({ 0, 2, 1, 1, "SYN_RECV", "timeout" }, { off.abort_on_overflow, off.accept_queue, off.listen_overflows,
                                                        off.listen_drops, off.server_b, off.read_err })
    assert.same({ 1, 2, 1, 1, "CLOSED" }, { on.abort_on_overflow, on.accept_queue, on.listen_overflows,
                                           on.listen_drops, on.server_b })
    assert.matches("reset by peer", on.read_err)
    assert.equal("EmbryonicRsts +1, ListenOverflows +1, ListenDrops +1", on.counters)
    assert.same({ 0, 1 }, { off.rsts, on.rsts })
  end)

  for _, family in ipairs({ "inet", "inet6" }) do
    it("syn_queue (" .. family .. "): backlog caps the SYN queue; past it SYNs are dropped, or answered with cookies", function()
      local before = assert(io.open("/proc/sys/net/ipv4/tcp_syncookies")):read("n")
      local r = run("syn_queue", { family = family })
      local off, on, always = r.modes[1], r.modes[2], r.modes[3]
      -- the cap is what the kernel gave, the same with and without cookies, and smaller than the burst
      assert.is_true(off.cap >= 1 and off.cap < off.clients)
      assert.equal(off.cap, on.cap)
      assert.equal(off.cap, off.established)
      assert.equal(off.clients - off.cap, off.syn_sent)
      assert.is_true(#off.syn_times >= 3)
      assert.matches("^ListenDrops %+%d+, TCPReqQFullDrop %+%d+$", off.counters)
      assert.equal(on.clients, on.established)
      assert.equal(("SyncookiesSent +%d, TCPReqQFullDoCookies +%d"):format(on.clients - on.cap, on.clients - on.cap),
                   on.counters)
      assert.is_true(on.cookie_accepted)
      assert.equal(0, always.cap)
      assert.equal(always.clients, always.established)
      assert.is_true(r.max_syn_backlog > off.clients)
      -- the sysctl was set in the scenario's namespace, never in the caller's
      assert.equal(before, assert(io.open("/proc/sys/net/ipv4/tcp_syncookies")):read("n"))
      local shown = {}
      for _, st in ipairs(r.steps) do
        local mode = st.call and st.call:match("^sysctl net%.ipv4%.tcp_syncookies=(%d) %(this namespace only%)")
        if mode then shown[#shown + 1] = tonumber(mode) end
      end
      assert.same({ 0, 0, 1, 2 }, shown)
      -- under the ladder: the counters that moved, per mode
      local buf = { parts = {} }
      function buf:write(...) for _, p in ipairs({ ... }) do self.parts[#self.parts + 1] = tostring(p) end end
      require("tcplab.format.ladder").print(r, buf)
      local text = table.concat(buf.parts)
      assert.matches("\n  counters, syncookies=0, backlog 4, 20 clients: ListenDrops %+%d+, TCPReqQFullDrop %+%d+\n", text)
      assert.matches("\n  counters, syncookies=2, backlog 4, 20 clients: SyncookiesSent %+20, TCPReqQFullDoCookies %+20\n", text)
    end)
  end

  it("close: FIN_WAIT1 and LAST_ACK held, TIME_WAIT with its 2MSL timer", function()
    local r = run("close")
    assert.is_true(r.time_wait_ms > 50000 and r.time_wait_ms <= 60000)
  end)

  it("syn_sent: dropped SYNs hold SYN_SENT and connect times out", function()
    local r = run("syn_sent")
    assert.is_true(r.syns_dropped >= 2)
  end)

  for _, family in ipairs({ "inet", "inet6" }) do
    it("simultaneous close (" .. family .. "): CLOSING on both ends, then TIME_WAIT on both", function()
      local r = run("simultaneous_close", { family = family })
      -- both FINs were held until both existed: each end's first FIN leaves the other's unacknowledged
      local crossed = 0
      for _, c in ipairs(r.checks) do
        if c.claim:match("first FIN does not acknowledge") then crossed = crossed + 1 end
      end
      assert.equal(2, crossed)
    end)
  end

  it("reset: RST instead of FIN, ECONNRESET, ECONNREFUSED", function()
    local r = run("reset")
    for _, side in ipairs({ "client", "server" }) do
      for _, tr in ipairs(r.transitions[side]) do
        assert.is_nil(tr:match("TIME_WAIT"), "no TIME_WAIT after a reset")
      end
    end
  end)

  it("close_wait leak: CLOSE_WAIT piles up until the server closes", function()
    local r = run("close_wait_leak", { rounds = 6 })
    assert.same({ 1, 2, 3, 4, 5, 6 }, r.growth)
  end)

  it("a failed expectation shows what was expected and what was seen", function()
    local r = run("lifecycle")
    local rec = tcplab.trace.from_events(r.events, { port = r.port })
    local ok, msg = rec:expect{ client = { "SYN_SENT>CLOSING" } }
    assert.is_nil(ok)
    assert.matches("client: expected SYN_SENT>CLOSING\n  observed CLOSE>SYN_SENT, SYN_SENT>ESTABLISHED", msg)
  end)

  it("cleans up after a scenario that raises: recorder stopped, caller back home", function()
    local kit = require "tcplab.scenarios.kit"
    package.loaded["tcplab.scenarios.exploding"] = {
      run = function(opts)
        local s = kit.begin("exploding", opts)
        assert(tcplab.fault.drop{ segment = "syn", dport = s.port })
        error("boom")
      end,
    }
    table.insert(tcplab.scenarios.NAMES, "exploding")
    local result, err = tcplab.scenarios.run("exploding")
    table.remove(tcplab.scenarios.NAMES)
    package.loaded["tcplab.scenarios.exploding"] = nil
    assert.is_nil(result)
    assert.matches("boom", err)
    assert.equal(home, tcplab.netns.id())
    assert.same({}, tcplab.trace.instances())
  end)

  it("leaves no tracefs instance of this process, no host nft table of ours, no fd behind", function()
    assert.same({}, tcplab.trace.instances())
    assert.is_nil(support.slurp("nsenter -t 1 -n nft list tables 2>&1"):match("tcplab"))
    assert.equal(fds_before, support.fd_count())
  end)
end)
