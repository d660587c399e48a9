local tcplab = require "tcplab"
local support = require "support"
local core = tcplab.core

-- The BPF iterator backend answers what the sock_diag backend answers:
-- the same records (every socket kind, v4 and v6, queues, inodes,
-- cookies) and the same counts, in a namespace of our own, with filters
-- applied in the program; and auto falls back to netlink where it must.

local function bpf_usable()
  return tcplab.backend("bpf") == "bpf"
end

-- The fields both backends must agree on while nothing moves (expires_ms
-- and retrans tick between two dumps).
local function key(r)
  return table.concat({ r.family, r.state, r.src, r.sport, r.dst, r.dport, r.rqueue, r.wqueue,
                        r.uid, r.inode, r.cookie, r.timer }, " ")
end

local function keys(recs)
  local out = {}
  for i, r in ipairs(recs) do out[i] = key(r) end
  table.sort(out)
  return out
end

describe("the bpf backend #kernel #root #bpf", function()
  if not support.is_root() then
    pending("needs root: loads a BPF program and runs in a fresh network namespace")
    return
  end
  if not bpf_usable() then
    local _, avail = tcplab.backend()
    pending("bpf backend not usable here: " .. tostring(avail.bpf))
    return
  end

  local keep, rules = {}, {}
  local function hold(s) keep[#keep + 1] = s return s end
  local function port_of(s) return (select(2, s:getsockname())) end
  local function pair(lst, host)
    local cli = hold(assert(tcplab.connect(host, port_of(lst), 2)))
    local conn = hold(assert(lst:accept(2)))
    return cli, conn
  end
  local l4

  setup(function()
    assert(tcplab.netns.unshare())
    l4 = hold(assert(tcplab.listen("127.0.0.1", 0, 16)))
    local l6 = hold(assert(tcplab.listen("::1", 0, 16)))
    local dual = hold(assert(tcplab.socket("inet6")))
    assert(dual:setopt("v6only", false))
    assert(dual:bind("::", 0))
    assert(dual:listen(16))
    pair(l4, "127.0.0.1")                         -- ESTABLISHED, v4
    pair(l6, "::1")                               -- ESTABLISHED, v6
    pair(dual, "127.0.0.1")                       -- ESTABLISHED, v4-mapped on a v6 socket
    for _, spec in ipairs({ { l4, "127.0.0.1" }, { l6, "::1" } }) do  -- TIME_WAIT, v4 and v6
      local cli, conn = pair(spec[1], spec[2])
      local t = tcplab.observe.tuple(cli)
      cli:close()
      assert.equal("", conn:read(10, 2))
      conn:close()
      assert(tcplab.await_state(t, "TIME_WAIT", 2))
    end
    local cli, conn = pair(l6, "::1")             -- FIN_WAIT2 (orphaned: a time-wait placeholder) / CLOSE_WAIT
    local t = tcplab.observe.tuple(cli)
    cli:close()
    assert(tcplab.await_state(t, "FIN_WAIT2", 2))
    assert(tcplab.await_state(conn, "CLOSE_WAIT", 2))
    local c2, a2 = pair(l4, "127.0.0.1")          -- FIN_WAIT2 still open (a full socket)
    assert(c2:shutdown("write"))
    assert(tcplab.await_state(a2, "CLOSE_WAIT", 2))
    hold(assert(tcplab.connect("127.0.0.1", port_of(l4), 2)))  -- unaccepted: LISTEN rqueue 1
    hold(assert(tcplab.connect("::1", port_of(l6), 2)))
    local function drop(spec) rules[#rules + 1] = assert(tcplab.fault.drop(spec)) end
    -- SYN-SENT: every SYN to the port dropped
    local l_syn = hold(assert(tcplab.listen("127.0.0.1", 0, 4)))
    drop{ segment = "syn", dport = port_of(l_syn) }
    local c_syn = hold(assert(tcplab.socket("inet")))
    assert.same({ nil, "timeout", 115 }, { c_syn:connect("127.0.0.1", port_of(l_syn), 0) })
    -- SYN-RECV: the client's final ACK dropped, v4 and v6
    for _, host in ipairs({ "127.0.0.1", "::1" }) do
      local l_recv = hold(assert(tcplab.listen(host, 0, 4)))
      drop{ segment = "ack", dport = port_of(l_recv) }
      local c_recv = hold(assert(tcplab.connect(host, port_of(l_recv), 2)))
      assert(tcplab.await_state({ src = host, sport = port_of(l_recv), dst = host,
                                  dport = port_of(c_recv) }, "SYN_RECV", 2))
    end
    -- a write queue: data sent to a peer that does not ACK it
    local l_wq = hold(assert(tcplab.listen("127.0.0.1", 0, 4)))
    local c_wq = pair(l_wq, "127.0.0.1")
    drop{ segment = "ack", sport = port_of(l_wq) }
    assert(c_wq:write(("x"):rep(1000)))
  end)

  teardown(function()
    for _, r in ipairs(rules) do r:lift() end
    for _, s in ipairs(keep) do s:close() end
  end)

  it("returns the same records as the netlink backend, every kind of socket", function()
    local viab = assert(tcplab.snapshot{ backend = "bpf" })
    assert.equal("bpf", core._dump_backend())
    local vian = assert(tcplab.snapshot{ backend = "netlink" })
    assert.equal("netlink", core._dump_backend())
    assert.same(keys(vian), keys(viab))
    local seen = {}
    for _, r in ipairs(viab) do seen[r.state .. " " .. r.family] = true end
    for _, want in ipairs({ "LISTEN inet", "LISTEN inet6", "ESTABLISHED inet", "ESTABLISHED inet6",
                            "TIME_WAIT inet", "TIME_WAIT inet6", "SYN_RECV inet", "SYN_RECV inet6",
                            "FIN_WAIT2 inet", "FIN_WAIT2 inet6", "CLOSE_WAIT inet6", "SYN_SENT inet" }) do
      assert.is_true(seen[want], want)
    end
    -- the queues are real: an unaccepted connection, unacknowledged data
    local lst = assert(tcplab.snapshot{ backend = "bpf", sport = port_of(l4), states = { "LISTEN" } })
    assert.equal(1, #lst)
    assert.equal(1, lst[1].rqueue)
    assert.equal(16, lst[1].wqueue)
    local wq = 0
    for _, r in ipairs(viab) do wq = math.max(wq, r.wqueue) end
    assert.equal(1000, wq)
  end)

  it("gives each timer's expiry and retransmit count as netlink does (read between two netlink dumps)", function()
    -- expires_ms and retrans move between dumps: a bpf value is judged only
    -- against two netlink dumps around it that agree on the socket's retrans
    -- (the same timer instance); it must lie between them
    local function by_cookie(recs)
      local out = {}
      for _, r in ipairs(recs) do if r.timer ~= "off" and r.cookie then out[r.cookie] = r end end
      return out
    end
    -- the SYN_SENT socket (its SYNs dropped) has retransmitted at least once
    assert.truthy(support.wait_for(function()
      for _, r in ipairs(assert(tcplab.snapshot{ backend = "netlink", states = "SYN_SENT" })) do
        if r.retrans >= 1 then return true end
      end
    end, 10), "a SYN retransmitted")
    local judged, kinds, retransmitted = 0, {}, 0
    for _ = 1, 20 do   -- bounded: a few rounds until each timer kind was judged
      local n1 = by_cookie(assert(tcplab.snapshot{ backend = "netlink" }))
      local b = by_cookie(assert(tcplab.snapshot{ backend = "bpf" }))
      local n2 = by_cookie(assert(tcplab.snapshot{ backend = "netlink" }))
      for cookie, r in pairs(b) do
        local a, z = n1[cookie], n2[cookie]
        if a and z and a.retrans == z.retrans and a.timer == z.timer and a.expires_ms >= z.expires_ms then
          assert.equal(a.timer, r.timer)
          assert.equal(a.retrans, r.retrans, r.state .. " retrans")
          -- jiffies-based on both sides; 10 ms for rounding
          assert.is_true(r.expires_ms <= a.expires_ms + 10 and r.expires_ms >= z.expires_ms - 10,
            ("%s %s: bpf expires_ms %d, netlink %d then %d"):format(r.state, r.timer, r.expires_ms, a.expires_ms, z.expires_ms))
          judged = judged + 1
          kinds[r.state .. " " .. r.timer] = true
          if r.retrans > 0 then retransmitted = retransmitted + 1 end
        end
      end
      if kinds["TIME_WAIT timewait"] and kinds["SYN_SENT on"] and retransmitted > 0 then break end
    end
    assert.is_true(retransmitted > 0, "a socket that retransmitted was compared")
    assert.is_true(judged >= 3, "timers judged: " .. judged)
    assert.is_true(kinds["TIME_WAIT timewait"], "a TIME_WAIT timer was compared")
    assert.is_true(kinds["SYN_SENT on"], "a retransmitting SYN_SENT timer was compared")
  end)

  it("columns hold the same records", function()
    local cols = assert(tcplab.snapshot{ backend = "bpf", columns = true })
    local rows = {}
    for i = 1, cols.n do
      local r = {}
      for k, col in pairs(cols) do if k ~= "n" then r[k] = col[i] end end
      rows[i] = r
    end
    assert.same(keys(assert(tcplab.snapshot{ backend = "netlink" })), keys(rows))
  end)

  it("counts per state in the kernel, the same as the netlink backend", function()
    local b = assert(tcplab.counts{ backend = "bpf" })
    assert.equal("bpf", core._dump_backend())
    assert.same(assert(tcplab.counts{ backend = "netlink" }), b)
    assert.is_true(b.LISTEN >= 6 and b.SYN_RECV == 2 and b.TIME_WAIT == 2 and b.FIN_WAIT2 == 2)
  end)

  it("applies states, family and port filters in the program as netlink does", function()
    local filters = {
      { states = { "LISTEN" } }, { states = { "TIME_WAIT", "SYN_RECV" } }, { family = "inet" },
      { family = "inet6" }, { sport = port_of(l4) }, { dport = port_of(l4) },
      { family = "inet", states = { "ESTABLISHED" }, dport = port_of(l4) }, { states = { "CLOSING" } },
    }
    for _, f in ipairs(filters) do
      local fb, fn = { backend = "bpf" }, { backend = "netlink" }
      for k, v in pairs(f) do fb[k], fn[k] = v, v end
      assert.same(keys(assert(tcplab.snapshot(fn))), keys(assert(tcplab.snapshot(fb))))
      assert.same(assert(tcplab.counts(fn)), assert(tcplab.counts(fb)))
    end
  end)

  it("auto answers with bpf where the namespace is large enough, with netlink below and for what bpf cannot see", function()
    local default, snap = core._bpf_min_sockets("counts"), core._bpf_min_sockets("snapshot")
    finally(function() core._bpf_min_sockets("counts", default) core._bpf_min_sockets("snapshot", snap) end)
    -- this namespace holds a few dozen sockets: the iterator's visit of every bucket costs more
    assert(tcplab.counts())
    assert.equal("netlink", core._dump_backend())
    assert(tcplab.snapshot{})
    assert.equal("netlink", core._dump_backend())
    local pid = tonumber(support.slurp("sleep 30 > /dev/null 2>&1 & echo $!"))
    local ok, err = pcall(function()
      assert(tcplab.counts{ netns = "/proc/" .. pid .. "/ns/net" })   -- sized in that namespace
      assert.equal("netlink", core._dump_backend())
      core._bpf_min_sockets("counts", 1)
      assert(tcplab.counts{ netns = "/proc/" .. pid .. "/ns/net" })
      assert.equal("bpf", core._dump_backend())
    end)
    os.execute("kill " .. pid)
    assert(ok, err)
    core._bpf_min_sockets("counts", 1)
    core._bpf_min_sockets("snapshot", 1)
    assert(tcplab.counts())
    assert.equal("bpf", core._dump_backend())
    assert(tcplab.snapshot{ states = { "ESTABLISHED", "LISTEN" } })
    assert.equal("bpf", core._dump_backend())
    assert(tcplab.counts{ states = { "LISTEN" } })      -- sock_diag walks the listeners alone
    assert.equal("netlink", core._dump_backend())
    local with_info = assert(tcplab.snapshot{ info = true, sport = port_of(l4) })
    assert.equal("netlink", core._dump_backend())
    assert.is_table(with_info[1].info)
    local none, err = tcplab.snapshot{ backend = "bpf", info = true }
    assert.is_nil(none)
    assert.matches("bpf: cannot answer filter field 'info'", err)
  end)

  it("dumps another namespace by path", function()
    local pid = tonumber(support.slurp("sleep 30 > /dev/null 2>&1 & echo $!"))
    local path = "/proc/" .. pid .. "/ns/net"
    local ok, err = pcall(function()
      local want = keys(assert(tcplab.snapshot{ backend = "netlink" }))
      local other <close> = assert(core.netns.open())
      local here <close> = assert(core.netns.unshare())   -- move away; the dump must not follow
      local got = keys(assert(tcplab.snapshot{ backend = "bpf", netns = path }))
      local empty = assert(tcplab.counts{ backend = "bpf" })
      assert(other:enter())
      assert.same(want, got)
      assert.same({}, empty)
    end)
    os.execute("kill " .. pid)
    assert(ok, err)
  end)

  it("loads once per process, reports the load time, and releases everything", function()
    assert(tcplab.counts{ backend = "bpf" })
    local info = core.bpf_info()
    assert.is_true(info.loaded)
    assert.is_true(info.load_ms > 0)
    local fds0 = support.fd_count()
    for _ = 1, 20 do
      assert(tcplab.counts{ backend = "bpf" })
      assert(tcplab.snapshot{ backend = "bpf" })
    end
    assert.equal(fds0, support.fd_count())        -- no iterator fd left per dump
    assert.equal(info.load_ms, core.bpf_info().load_ms)  -- not loaded again
    core._bpf_unload()
    assert.is_false(core.bpf_info().loaded)
    assert.is_true(support.fd_count() < fds0)     -- program, maps and link closed
    assert(tcplab.counts{ backend = "bpf" })      -- and loaded again on demand
    assert.is_true(core.bpf_info().loaded)
    -- nothing pinned
    assert.equal("", support.slurp("ls /sys/fs/bpf 2>/dev/null | grep -i tcplab"))
  end)
end)

describe("the bpf backend under churn #kernel #root #bpf", function()
  if not support.is_root() or not bpf_usable() then
    pending("needs root and a usable bpf backend")
    return
  end

  it("agrees with netlink on every socket that lives through both walks", function()
    local here <close> = assert(core.netns.open())
    local fresh <close> = assert(core.netns.unshare())
    local keep = {}
    local lst = assert(tcplab.listen("127.0.0.1", 0, 4096))
    local port = select(2, lst:getsockname())
    local held = {}
    for i = 1, 50 do
      keep[#keep + 1] = assert(tcplab.connect("127.0.0.1", port, 2))
      keep[#keep + 1] = assert(lst:accept(2))
      held[select(2, keep[#keep - 1]:getsockname())] = true
    end
    -- a child in this namespace opens and closes connections to its own listener
    -- until the stop file exists (at most 60 s)
    local stop = os.tmpname()
    os.remove(stop)
    local child = assert(io.popen(([[exec lua5.4 -e '
      local t = require "tcplab"
      local l = assert(t.listen("127.0.0.1", 0, 4096))
      local p = select(2, l:getsockname())
      io.write("ready\n") io.flush()
      local deadline = t.core.now() + 60
      while t.core.now() < deadline and not io.open("%s") do
        for _ = 1, 20 do
          local c = t.connect("127.0.0.1", p, 1)
          local a = l:accept(1)
          if c then c:close() end
          if a then a:close() end
        end
      end']]):format(stop), "r"))
    assert.equal("ready", child:read("l"))
    local function stable(recs)
      local out = {}
      for _, r in ipairs(recs) do
        if (r.state == "LISTEN" and r.sport == port)
            -- our held pairs by their whole tuple: the child's clients may reuse a held
            -- client's port number towards its own listener
            or (r.state == "ESTABLISHED" and ((held[r.sport] and r.dport == port)
                                              or (r.sport == port and held[r.dport]))) then
          out[#out + 1] = key(r)
        end
      end
      table.sort(out)
      return out
    end
    -- compare until the namespace was seen changing between the two walks of
    -- a round a few times (bounded): the agreement is judged under churn
    local rounds, moving = 0, 0
    repeat
      local b = assert(tcplab.snapshot{ backend = "bpf" })
      local n = assert(tcplab.snapshot{ backend = "netlink" })
      assert.equal(101, #stable(b))
      assert.same(stable(n), stable(b))
      if #b ~= #n then moving = moving + 1 end
      rounds = rounds + 1
    until (rounds >= 5 and moving >= 3) or rounds >= 2000
    assert(io.open(stop, "w")):close()
    child:close()
    os.remove(stop)
    for _, s in ipairs(keep) do s:close() end
    lst:close()
    assert(here:enter())
    assert.is_true(moving >= 3, ("the namespace changed between the walks in %d of %d rounds"):format(moving, rounds))
  end)
end)

describe("without the bpf backend #kernel #root #bpf", function()
  it("a user without CAP_BPF gets netlink answers and the reason", function()
    if not support.is_root() or os.execute("command -v setpriv >/dev/null") ~= true then
      pending("needs root and setpriv to drop to nobody")
      return
    end
    local out = support.slurp([[setpriv --reuid=65534 --regid=65534 --clear-groups lua5.4 -e '
      local t = require "tcplab"
      local name, avail = t.backend()
      local c = t.counts()
      io.write(name, "|", tostring(avail.bpf), "|", tostring(avail.netlink), "|", type(c), "|",
               t.core._dump_backend(), "|", (select(2, t.snapshot{ backend = "bpf" })))' 2>&1]])
    -- the build's own reason where it has no BPF at all, else the missing capability
    local _, here = tcplab.backend()
    local why = here.bpf == true and "bpf: needs root (CAP_BPF)" or here.bpf
    assert.equal(("netlink|%s|true|table|netlink|%s"):format(why, why), out)
  end)

  it("without the kernel's BTF, backend() and the recorder say so and fall back", function()
    if not support.is_root() or support.recorder() ~= "bpf" then
      pending("needs root and a module built with BPF")
      return
    end
    -- a private mount namespace hides /sys/kernel/btf from this child only
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local t = require "tcplab"
      local name, avail = t.backend()
      local c = t.counts{ backend = "auto" }
      local r, why = t.trace.start{ port = 1, method = "bpf" }
      local fb = assert(t.trace.start{ port = 1 })
      io.write(name, "|", avail.bpf, "|", type(c), "|", t.core._dump_backend(), "|", tostring(r), " ", why,
               "|", fb.method, "|", fb.fallback)
      fb:stop()]])
    f:close()
    local out = support.slurp(("unshare -m sh -c 'mount -t tmpfs none /sys/kernel/btf && lua5.4 %s' 2>&1"):format(script))
    os.remove(script)
    local why = "bpf: no BTF (/sys/kernel/btf/vmlinux)"
    assert.equal(("netlink|%s|table|netlink|nil %s|tracepoint|%s"):format(why, why, why), out)
  end)

  for _, case in ipairs({ { "BPF=0", "BPF=0" }, { "BPF_CLANG=no-such-clang", "no clang" } }) do
    it(("a build with %s says so, and backend() gives the reason"):format(case[1]), function()
      local tmp = support.slurp("mktemp -d"):gsub("%s+$", "")
      local log = support.slurp(("cp -r csrc lua bin rockspec Makefile .ci %s/ && rm -f %s/lua/tcplab/core.so && " ..
        "env -u LD_PRELOAD make -s -C %s %s 2>&1"):format(tmp, tmp, tmp, case[1]))
      local out = support.slurp(("cd /tmp && LUA_CPATH='%s/lua/?.so' lua5.4 -e '" ..
        "local t = require \"tcplab\"; local name, avail = t.backend(); local c = t.counts()" ..
        "; io.write(name, \"|\", avail.bpf, \"|\", type(c), \"|\", t.core._dump_backend())" ..
        "; local _, tw = t.bpf_trace{ ports = { 1 } }; local r, rw = t.trace.start{ port = 1, method = \"bpf\" }" ..
        "; local fb = assert(t.trace.start{ port = 1 }); io.write(\"|\", tw, \"|\", tostring(r), \" \", rw, \"|\", tostring(fb.method ~= \"bpf\")); fb:stop()' 2>&1"):format(tmp))
      os.execute("rm -rf " .. tmp)
      local why = "built without BPF (" .. case[2] .. ")"
      assert.matches("tcplab: building without the BPF iterator backend (" .. case[2] .. ")", log, 1, true)
      -- the transition recorder: no bpf, the reason, and the fallback
      assert.equal("netlink|bpf: " .. why .. "|table|netlink|" .. why .. "|nil bpf: " .. why .. "|true", out)
    end)
  end
end)
