-- tcplab.live: per-state counts kept by the kernel, checked against a
-- netlink walk of the same quiet namespace (our own: unshare), every one of
-- the eleven states built on purpose; handles opened before and after the
-- sockets; drift after churn from several processes; the handle's
-- lifecycle; the fallback where BPF cannot load (doc/live.md).
local tcplab = require "tcplab"
local core = require "tcplab.core"
local support = require "support"

local HOST = "127.0.0.1"

local function can_live()
  if not support.is_root() then return false, "needs root" end
  local h, why = core.live()
  if not h then return false, why end
  h:close()
  return true
end

-- The walk's counts in live's shape: all eleven states.
local function walk()
  local c = assert(tcplab.counts{ backend = "netlink" })
  local out = {}
  for _, name in ipairs(tcplab.states.list) do out[name] = c[name] or 0 end
  return out
end

local function plain(c)
  local out = {}
  for _, name in ipairs(tcplab.states.list) do out[name] = c[name] end
  return out
end

local function plain_keys(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

local function show(c)
  local parts = {}
  for _, name in ipairs(tcplab.states.list) do parts[#parts + 1] = name .. "=" .. tostring(c[name]) end
  return table.concat(parts, " ")
end

local function same(a, b)
  for _, name in ipairs(tcplab.states.list) do if a[name] ~= b[name] then return false end end
  return true
end

-- Live (every handle) and a walk, read until two live reads around the walk
-- agree with it (timers may move a socket between reads): bounded.
local function settled(handles, tries)
  local w, lives
  for _ = 1, tries or 100 do
    lives = {}
    for i, h in ipairs(handles) do lives[i] = plain(assert(h:counts())) end
    w = walk()
    local ok = true
    for i, h in ipairs(handles) do
      local again = plain(assert(h:counts()))
      if not same(lives[i], w) or not same(again, w) then ok = false end
    end
    if ok then return w, lives end
    tcplab.sleep(0.05)
  end
  return w, lives
end

local function wait_state(pred, seconds)
  return support.wait_for(pred, seconds or 5)
end

describe("live counts #kernel #root #bpf", function()
  local ok, why = can_live()
  if not ok then
    it("need root and BPF", function() pending("live cannot load here: " .. tostring(why)) end)
    return
  end

  local home
  setup(function()
    home = assert(core.netns.open())
    assert(tcplab.netns.unshare())   -- a quiet namespace of our own: only our sockets
  end)
  teardown(function()
    tcplab.fault.clear()
    tcplab.live_release()
    assert(home:enter())
    home:close()
  end)

  it("equal a netlink walk in every one of the eleven states, for sockets made before and after the handle", function()
    local keep = {}
    local function hold(s) keep[#keep + 1] = s return s end
    local before <close> = assert(tcplab.live())

    -- CLOSING: both FINs cross (the simultaneous-close scenario's gate)
    local sim = require("tcplab.scenarios.simultaneous_close")
    local lc = hold(assert(tcplab.listen(HOST, 7011)))
    local cc = assert(tcplab.connect(HOST, 7011, 2))
    local ac = assert(lc:accept(2))
    local rules = sim.cross("inet", HOST, 7011, cc, ac)
    for _, r in ipairs(rules) do hold(r) end

    -- LISTEN, ESTABLISHED (3 pairs)
    local l1 = hold(assert(tcplab.listen(HOST, 7001, 64)))
    for _ = 1, 3 do
      hold(assert(tcplab.connect(HOST, 7001, 2)))
      hold(assert(l1:accept(2)))
    end
    -- SYN_SENT: the SYNs to 7002 are dropped (2 sockets)
    hold(assert(tcplab.fault.drop{ segment = "syn", dport = 7002 }))
    for _ = 1, 2 do
      local s = hold(assert(tcplab.socket("inet")))
      s:connect(HOST, 7002, 0)
    end
    -- SYN_RECV: the handshake's final ACKs to 7003 are dropped (3 request sockets)
    local l3 = hold(assert(tcplab.listen(HOST, 7003, 16)))
    hold(assert(tcplab.fault.drop{ segment = "ack", dport = 7003 }))
    for _ = 1, 3 do
      local s = hold(assert(tcplab.socket("inet")))
      s:connect(HOST, 7003, 0)
    end
    local after <close> = assert(tcplab.live())   -- opened in the middle

    -- FIN_WAIT1 (an orphan and a full socket): 7004's ACKs of the FIN are dropped
    local l4 = hold(assert(tcplab.listen(HOST, 7004)))
    hold(assert(tcplab.fault.drop{ segment = "ack", sport = 7004 }))
    local f1a = assert(tcplab.connect(HOST, 7004, 2))
    hold(assert(l4:accept(2)))
    local f1b = hold(assert(tcplab.connect(HOST, 7004, 2)))
    hold(assert(l4:accept(2)))
    f1a:close()                       -- orphan FIN_WAIT1
    assert(f1b:shutdown("write"))     -- FIN_WAIT1, still open
    -- FIN_WAIT2 full (shutdown, still open) and placeholder (closed: an orphan)
    -- with CLOSE_WAIT across; TIME_WAIT on both paths; LAST_ACK (7006's ACKs dropped)
    local l5 = hold(assert(tcplab.listen(HOST, 7005, 64)))
    local fw2 = hold(assert(tcplab.connect(HOST, 7005, 2)))
    hold(assert(l5:accept(2)))        -- CLOSE_WAIT
    assert(fw2:shutdown("write"))
    for _ = 1, 2 do                   -- orphan FIN_WAIT2 placeholders, CLOSE_WAIT across
      local c = assert(tcplab.connect(HOST, 7005, 2))
      hold(assert(l5:accept(2)))
      c:close()
    end
    for _ = 1, 3 do                   -- TIME_WAIT through a FIN_WAIT2 placeholder
      local c = assert(tcplab.connect(HOST, 7005, 2))
      local a = assert(l5:accept(2))
      c:close()
      wait_state(function() return a:read(1, 1) == "" end, 2)
      a:close()
    end
    do                                -- TIME_WAIT from a full FIN_WAIT2
      local c = assert(tcplab.connect(HOST, 7005, 2))
      local a = assert(l5:accept(2))
      assert(c:shutdown("write"))
      wait_state(function() return a:read(1, 1) == "" end, 2)
      a:close()
      hold(c)
    end
    local l6 = hold(assert(tcplab.listen(HOST, 7006)))
    local la = hold(assert(tcplab.connect(HOST, 7006, 2)))
    local lb = assert(l6:accept(2))
    hold(assert(tcplab.fault.drop{ segment = "ack", dport = 7006 }))
    assert(la:shutdown("write"))      -- its FIN carries data's ACK flag (PSH-less FIN|ACK passes)
    wait_state(function() return lb:read(1, 1) == "" end, 2)
    lb:close()                        -- LAST_ACK: the peer's ACK of our FIN is dropped

    local late <close> = assert(tcplab.live())   -- every socket made before it: the seed alone
    local w, lives = settled({ before, after, late })
    for _, name in ipairs(tcplab.states.list) do
      assert.equal(w[name], lives[1][name], name .. ": the handle opened before the sockets")
      assert.equal(w[name], lives[2][name], name .. ": the handle opened in the middle")
      assert.equal(w[name], lives[3][name], name .. ": the handle opened after them")
    end
    -- every state the walk can show was built
    for _, name in ipairs({ "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
                            "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING" }) do
      assert.is_true(w[name] > 0, name .. " was not built: " .. tostring(w[name]))
    end
    assert.equal(2, w.SYN_SENT)
    assert.equal(3, w.SYN_RECV)
    assert.equal(5, w.TIME_WAIT)       -- 3 through a placeholder, 1 from a full FIN_WAIT2, LAST_ACK's peer
    assert.equal(6, w.LISTEN)          -- 7001, 7003, 7004, 7005, 7006 and CLOSING's 7011
    assert.equal(3, w.FIN_WAIT2)       -- 1 full, 2 placeholders
    assert.equal(0, before:info().misses)
    tcplab.fault.clear()
    for i = #keep, 1, -1 do
      local k = keep[i]
      if k.close then k:close() elseif k.lift then k:lift() end
    end
    cc:close() ac:close()
  end)

  it("answer counts{ live = true } from one kept handle per namespace, and say so", function()
    local l <close> = assert(tcplab.listen(HOST, 7101))
    local c <close> = assert(tcplab.connect(HOST, 7101, 2))
    local a <close> = assert(l:accept(2))
    local t, w, by, why
    for _ = 1, 100 do   -- TIME_WAIT of earlier tests may expire between the two reads: until they agree
      local w0 = walk()
      t = assert(tcplab.counts{ live = true })
      by, why = tcplab.answered_by()   -- before the next walk answers
      w = walk()
      if same(w0, w) and same(t, w) then break end
      tcplab.sleep(0.05)
    end
    assert.equal("live", by, "answered by " .. tostring(by) .. ": " .. tostring(why))
    assert.equal("netlink", (tcplab.answered_by()))   -- a later walk: its own backend again
    local h = assert(tcplab.live_cached())
    assert.equal(h, tcplab.live_cached())       -- kept: the second call reads maps
    for _, name in ipairs(tcplab.states.list) do assert.equal(w[name], t[name], name .. ": walk " .. show(w) .. " live " .. show(t)) end
    assert.matches("ESTABLISHED%s+" .. w.ESTABLISHED, tostring(t))
    -- states = ...: only those
    local some = assert(tcplab.counts{ live = true, states = { "LISTEN", "ESTAB" } })
    assert.same({ LISTEN = w.LISTEN, ESTABLISHED = w.ESTABLISHED }, plain_keys(some))
    tcplab.live_release()
    assert.has_error(function() h:counts() end, "attempt to use a closed live handle")
  end)

  it("never count another namespace's sockets", function()
    local h <close> = assert(tcplab.live())
    local other <close> = assert(tcplab.netns.new())
    local ol <close> = assert(other:listen(HOST, 7301))
    local held = {}
    for i = 1, 4 do
      held[i] = assert(other:connect(HOST, 7301, 2))
      held[#held + 1] = assert(ol:accept(2))
    end
    local w, lives = settled({ h })
    for _, name in ipairs(tcplab.states.list) do assert.equal(w[name], lives[1][name], name) end
    assert.equal(8, assert(tcplab.counts{ netns = other, backend = "netlink" }).ESTABLISHED)   -- both ends
    for _, s in ipairs(held) do s:close() end
  end)

  it("do not drift: churn from several processes and a namespace made and destroyed again and again, then equal a walk", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local t = require "tcplab"
      local mode, n, port = arg[1], tonumber(arg[2]), tonumber(arg[3])
      local function churn()
        local l = assert(t.listen("127.0.0.1", port, 128))
        for i = 1, n do
          local c = assert(t.connect("127.0.0.1", port, 2))
          local a = assert(l:accept(2))
          local k = i % 4
          if k == 0 then c:close() a:close()                            -- client first
          elseif k == 1 then a:close() c:close()                        -- server first
          elseif k == 2 then assert(c:setopt("linger", 0)) c:close() a:close()   -- RST
          else assert(a:write("x")) c:close() a:close() end           -- unread data: RST
        end
        l:close()
      end
      if mode == "here" then churn()
      else for _ = 1, 4 do assert(t.netns.unshare()) churn() end end   -- each namespace goes when we move on
    ]])
    f:close()
    local CYCLES = 2500
    local h1 <close> = assert(tcplab.live())
    local keep <close> = assert(tcplab.listen(HOST, 7200))
    local cmd = ("for p in 7201 7202 7203; do lua5.4 %s here %d $p & done; lua5.4 %s other %d 7204 & " ..
                 "sleep 0.3; echo started; wait; echo done"):format(script, CYCLES, script, CYCLES // 5)
    local p = assert(io.popen(cmd))
    assert.equal("started", p:read("l"))
    local h2 <close> = assert(tcplab.live())   -- seeded while the churn runs
    assert.equal("done", p:read("l"))
    p:close()
    os.remove(script)
    local w, lives = settled({ h1, h2 }, 200)
    for _, name in ipairs(tcplab.states.list) do
      assert.equal(w[name], lives[1][name], name .. " (opened before the churn): walk " .. show(w) ..
        " live " .. show(lives[1]))
      assert.equal(w[name], lives[2][name], name .. " (opened during the churn): walk " .. show(w) ..
        " live " .. show(lives[2]))
    end
    assert.is_true(w.TIME_WAIT >= CYCLES, "TIME_WAIT after the churn: " .. w.TIME_WAIT)
    assert.equal(1, w.LISTEN)
    assert.equal(0, h1:info().misses)
    assert.equal(0, h2:info().misses)
  end)

  it("count right when sockets change state while the seed walk visits them", function()
    local go = os.tmpname()
    os.remove(go)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      local t = require "tcplab"
      local l = assert(t.listen("127.0.0.1", 7501, 4096))
      local pairs_ = {}
      for i = 1, 1500 do
        local c = assert(t.connect("127.0.0.1", 7501, 2))
        pairs_[i] = { c, assert(l:accept(2)) }
      end
      io.write("ready\n") io.flush()
      for _ = 1, 400 do   -- bounded: about 20 s
        local g = io.open(%q)
        if g then g:close() break end
        t.sleep(0.05)
      end
      for i = 1, #pairs_ do                -- close them all, client first, paced over seconds:
        pairs_[i][1]:close()               -- the handle's load and seed fall among them
        pairs_[i][2]:close()
        if i %% 2 == 0 then t.sleep(0.002) end
      end
      l:close()
      io.write("done\n")
    ]]):format(go))
    f:close()
    local p = assert(io.popen("lua5.4 " .. script))
    assert.equal("ready", p:read("l"))
    assert(io.open(go, "w")):close()
    local h <close> = assert(tcplab.live())   -- seeded while the closes run
    assert.equal("done", p:read("l"))
    p:close()
    os.remove(go)
    os.remove(script)
    local w, lives = settled({ h }, 200)
    for _, name in ipairs(tcplab.states.list) do
      assert.equal(w[name], lives[1][name], name .. ": walk " .. show(w) .. " live " .. show(lives[1]))
    end
    assert.equal(0, h:info().misses)
  end)

  it("release the BPF programs, maps and links on close, <close> and collection; a closed handle says so", function()
    collectgarbage()
    collectgarbage()
    local before = core._bpf_fds()
    local h = assert(tcplab.live())
    assert.is_true(core._bpf_fds() > before)
    assert.matches("^live netns %d+", tostring(h))
    h:close()
    h:close()   -- twice: harmless
    assert.equal("live (closed)", tostring(h))
    assert.equal(before, core._bpf_fds())
    assert.has_error(function() h:counts() end, "attempt to use a closed live handle")
    assert.has_error(function() h:info() end, "attempt to use a closed live handle")
    do local _ <close> = assert(tcplab.live()) end
    assert.equal(before, core._bpf_fds())
    local function open_and_drop() assert(tcplab.live()) end
    open_and_drop()
    collectgarbage()
    collectgarbage()
    assert.equal(before, core._bpf_fds())
    local fds = support.fd_count()
    for _ = 1, 3 do assert(tcplab.live()):close() end
    assert.equal(fds, support.fd_count())
  end)

  it("at the open-files limit say so (not 'verifier refused') and leave no BPF fd behind", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local tcplab, core = require "tcplab", require "tcplab.core"
      local base, hs, why = core._bpf_fds(), {}, nil
      for i = 1, 10 do   -- 40 fds hold one handle (about 18 fds), not three
        local h, err = tcplab.live{}
        if not h then why = err break end
        hs[i] = h
      end
      for _, h in ipairs(hs) do h:close() end
      print(#hs, tostring(why), core._bpf_fds() - base)
    ]])
    f:close()
    local out = support.slurp(("ulimit -n 40 && lua5.4 %s 2>&1"):format(script))
    os.remove(script)
    local n, why, left = out:match("^(%d+)\t(.-)\t(%-?%d+)\n")
    assert.truthy(n, out)
    assert.is_true(tonumber(n) < 10, out)
    assert.matches("^live: .*Too many open files$", why)
    assert.falsy(why:find("verifier", 1, true), why)
    assert.equal("0", left)
  end)

  it("tcplab counts --live and watch --live answer from the kernel's counters; filters they cannot honour are usage errors", function()
    local l <close> = assert(tcplab.listen(HOST, 7401))
    local c <close> = assert(tcplab.connect(HOST, 7401, 2))
    local a <close> = assert(l:accept(2))
    local out, rc, got, w
    for _ = 1, 20 do    -- until no TIME_WAIT of earlier tests expired around the command
      local w0 = walk()
      out, rc = support.tcplab("counts --live --format json")
      assert.equal(0, rc, out)
      got = require("cjson").decode(out)
      w = walk()
      if same(w0, w) and same(got, w) then break end
    end
    for _, name in ipairs(tcplab.states.list) do assert.equal(w[name], got[name], name .. ": walk " .. show(w) .. " live " .. show(got)) end
    out, rc = support.tcplab("watch --live --count 2 --interval 0.1 --state listen,established")
    assert.equal(0, rc, out)
    assert.equal(2, select(2, out:gsub("tcplab watch", "")))
    assert.matches("LISTEN%s+" .. w.LISTEN, out)
    for _, bad in ipairs({ { "--sport 7401", "--live: not with --sport" }, { "--by sport", "--live: not with --by" },
                          { "--netns all", "--live: one namespace at a time" }, { "--pid 1", "--live: not with --pid" } }) do
      out, rc = support.tcplab("counts --live " .. bad[1])
      assert.equal(2, rc, out)
      assert.matches(bad[2], out, 1, true)
    end
  end)

  it("name the argument that is wrong", function()
    assert.has_error(function() tcplab.live(3) end,
      "bad argument #1 to 'live' (options table expected ({ netns = ns | name | path }), got 3)")
    assert.has_error(function() tcplab.live{ nets = 1 } end, "bad argument #1 to 'live' (unknown option 'nets' (valid: netns))")
    for _, bad in ipairs({ 3, "", "all", true }) do
      assert.has_error(function() tcplab.live{ netns = bad } end,
        "bad argument #1 to 'live' (netns: a namespace handle (tcplab.netns.new/open), a name (/run/netns/NAME, " ..
        "\"pid:N\") or a path expected, got " .. require("tcplab.args").show(bad) .. ")")
    end
    local ns = assert(tcplab.netns.new())
    ns:close()
    assert.has_error(function() tcplab.live{ netns = ns } end, "bad argument #1 to 'live' (netns: the namespace handle is closed)")
    local h, err = tcplab.live{ netns = "tcplab-no-such-ns" }
    assert.is_nil(h)
    assert.equal("namespace 'tcplab-no-such-ns': open /run/netns/tcplab-no-such-ns: No such file or directory", err)
    local h2, err2, errno = tcplab.live{ netns = "/proc/self/ns/uts" }
    assert.is_nil(h2)
    assert.equal("/proc/self/ns/uts: not a network namespace", err2)
    assert.equal(tcplab.errno.EINVAL, errno)
    assert.has_error(function() tcplab.counts{ live = "yes" } end,
      "bad argument #1 to 'counts' (live: true or false expected, got string \"yes\")")
    assert.has_error(function() tcplab.counts{ live = true, sport = 80 } end,
      "bad argument #1 to 'counts' (sport: not with live = true (live counts are per state for the whole " ..
      "namespace: valid with it are netns, states))")
  end)
end)

describe("live counts where BPF cannot load #kernel #root", function()
  local function run_child(wrap)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local t = require "tcplab"
      local h, why, errno = t.live()
      local c = assert(t.counts{ live = true })
      local n = 0
      for _ in pairs(c) do n = n + 1 end
      local by, by_why = t.answered_by()
      io.write(tostring(h), "|", why, "|", tostring(errno), "|", n, "|", tostring(c.CLOSING), "|", by, "|", by_why,
               "|", tostring(c):match("^tcp states %(%d+ sockets%)") or "?")]])
    f:close()
    os.execute("chmod 644 " .. script)
    local out = support.slurp(wrap:format("lua5.4 " .. script) .. " 2>&1")
    os.remove(script)
    return out
  end

  it("say why (no BTF) and answer with a walk in the same shape", function()
    if not support.is_root() or not core.live then pending("needs root") return end
    local out = run_child("unshare -m sh -c 'mount -t tmpfs none /sys/kernel/btf && %s'")
    local why = "live: no BTF (/sys/kernel/btf/vmlinux)"
    assert.equal(("nil|%s|%d|11|0|netlink|%s|tcp states"):format(why, tcplab.errno.ENOENT, why),
                 (out:gsub("|tcp states %(%d+ sockets%)$", "|tcp states")))
  end)

  it("tcplab counts --live says on stderr that a walk answered, and why, and exits 0", function()
    if not support.is_root() then pending("needs root") return end
    local out, rc = support.tcplab("", { bin = "unshare -m sh -c 'mount -t tmpfs none /sys/kernel/btf && " ..
      "bin/tcplab counts --live --state listen'" })
    assert.equal(0, rc, out)
    assert.matches("tcplab: --live: counted by a walk (netlink): live: no BTF (/sys/kernel/btf/vmlinux)\n", out, 1, true)
    assert.matches("LISTEN\t%d+\n", out)
  end)

  it("say why (not root) and answer with a walk", function()
    if not support.is_root() or os.execute("command -v setpriv >/dev/null") ~= true then
      pending("needs root and setpriv to drop to nobody")
      return
    end
    local out = run_child("setpriv --reuid=65534 --regid=65534 --clear-groups %s")
    local why = "live: needs root (CAP_BPF)"
    assert.equal(("nil|%s|%d|11|0|netlink|%s|tcp states"):format(why, tcplab.errno.EPERM, why),
                 (out:gsub("|tcp states %(%d+ sockets%)$", "|tcp states")))
  end)
end)

describe("live counts print readably #unit", function()
  it("tostring heads with the number of sockets (their sum over the states), then one line per state", function()
    local live = require "tcplab.live"
    local c = live.count_table{ ESTABLISHED = 4, LISTEN = 1, TIME_WAIT = 2 }
    local text = tostring(c)
    assert.matches("^tcp states %(7 sockets%)\n", text)
    assert.matches("\n  ESTABLISHED  4\n", text, 1, true)
    assert.truthy(text:find("\n  CLOSING      0", 1, true), text)
    local n = 0
    for _ in text:gmatch("\n") do n = n + 1 end
    assert.equal(#tcplab.states.list, n)
    assert.matches("^tcp states %(0 sockets%)", tostring(live.count_table{}))
  end)
end)
