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

    local w, lives = settled({ before, after })
    for _, name in ipairs(tcplab.states.list) do
      assert.equal(w[name], lives[1][name], name .. ": the handle opened before the sockets")
      assert.equal(w[name], lives[2][name], name .. ": the handle opened in the middle")
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
    local t = assert(tcplab.counts{ live = true })
    assert.equal("live", (tcplab.answered_by()))
    local h = assert(tcplab.live_cached())
    assert.equal(h, tcplab.live_cached())       -- kept: the second call reads maps
    local w = walk()
    for _, name in ipairs(tcplab.states.list) do assert.equal(w[name], t[name], name) end
    assert.matches("ESTABLISHED%s+" .. w.ESTABLISHED, tostring(t))
    -- states = ...: only those
    local some = assert(tcplab.counts{ live = true, states = { "LISTEN", "ESTAB" } })
    assert.same({ LISTEN = w.LISTEN, ESTABLISHED = w.ESTABLISHED }, plain_keys(some))
    tcplab.live_release()
    assert.has_error(function() h:counts() end, "attempt to use a closed live handle")
  end)
end)
