local tcplab = require "tcplab"
local support = require "support"
local core = tcplab.core

describe("under load #kernel #root", function()
  if not support.is_root() then
    pending("need root: runs in a fresh network namespace")
    return
  end
  setup(function() assert(tcplab.netns.unshare()) end)

  local function lua_kb()
    collectgarbage() collectgarbage()
    return collectgarbage("count")
  end

  it("100,000 socket/bind/listen/connect/accept/close cycles leak no fd and no memory", function()
    local fds0, mem0 = support.fd_count(), lua_kb()
    local t0, cycles = core.now(), 100000
    for i = 1, cycles do
      local srv <close> = assert(core.socket("inet"))
      assert(srv:bind("127.0.0.1", 0))
      assert(srv:listen(1))
      local cli <close> = assert(core.socket("inet"))
      assert(cli:setopt("linger", 0))        -- RST: no TIME_WAIT piles up
      assert(cli:connect("127.0.0.1", select(2, srv:getsockname()), 2))
      local conn <close> = assert(srv:accept(2))
      if i % 20000 == 0 then
        io.stderr:write(("  %d cycles, %.1f s\n"):format(i, core.now() - t0))
      end
    end
    local fds1, grown = support.fd_count(), lua_kb() - mem0
    io.stderr:write(("  %d cycles in %.1f s: fds %d -> %d, Lua heap %+.1f KiB\n")
      :format(cycles, core.now() - t0, fds0, fds1, grown))
    assert.equal(fds0, fds1)
    assert.is_true(grown < 64, ("Lua memory grew by %.1f KiB"):format(grown))
    assert.same({}, assert(tcplab.counts{ states = { "ESTABLISHED", "LISTEN", "TIME_WAIT" } }))
  end)

  it("1,000 snapshots and counts leak no fd and no memory", function()
    local keep = {}
    local l = assert(tcplab.listen("127.0.0.1", 0, 64))
    local port = select(2, l:getsockname())
    for i = 1, 20 do keep[i] = assert(tcplab.connect("127.0.0.1", port, 2)) end
    -- ours: the listener and 20 pairs (the namespace may still hold a closing socket of the
    -- test before, on a busy host)
    local function ours(recs)
      local n = 0
      for _, r in ipairs(recs) do
        if r.sport == port or r.dport == port then n = n + 1 end
      end
      return n
    end
    local fds0, mem0 = support.fd_count(), lua_kb()
    for i = 1, 1000 do
      assert.equal(41, ours(assert(tcplab.snapshot{ info = i % 2 == 0 })))
      assert(tcplab.counts())
      assert(tcplab.snapshot{ columns = true })
    end
    local fds1, grown = support.fd_count(), lua_kb() - mem0
    io.stderr:write(("  3000 dumps (1000 each of snapshot, counts, columns): fds %d -> %d, Lua heap %+.1f KiB\n")
      :format(fds0, fds1, grown))
    assert.equal(fds0, fds1)
    assert.is_true(grown < 64, ("Lua memory grew by %.1f KiB"):format(grown))
    for _, s in ipairs(keep) do s:close() end
    l:close()
  end)

  it("snapshots taken while another process churns connections stay consistent: each still socket exactly once", function()
    local script = [[
      local core = require "tcplab.core"
      local l = assert(core.socket("inet")) assert(l:bind("127.0.0.1", 0)) assert(l:listen(512))
      local port = select(2, l:getsockname())
      local stop, n = core.now() + 3, 0
      while core.now() < stop do
        local c = assert(core.socket("inet"))
        assert(c:connect("127.0.0.1", port, 1))
        local a = assert(l:accept(1))
        if n % 2 == 0 then c:setopt("linger", 0) end
        c:close() a:close() n = n + 1
      end
      print(n)]]
    -- sockets of ours that do not move: each must be in every snapshot exactly once
    local keep, want = {}, {}
    local l = assert(tcplab.listen("127.0.0.1", 0, 64))
    local lport = select(2, l:getsockname())
    keep[#keep + 1] = l
    want["LISTEN " .. lport .. ">0"] = true
    for _ = 1, 30 do
      local c = assert(tcplab.connect("127.0.0.1", lport, 2))
      local a = assert(l:accept(2))
      keep[#keep + 1], keep[#keep + 2] = c, a
      local cport = select(2, c:getsockname())
      want["ESTABLISHED " .. cport .. ">" .. lport] = true
      want["ESTABLISHED " .. lport .. ">" .. cport] = true
    end
    local churn = assert(io.popen("exec lua5.4 -e " .. support.shq(script)))
    core.sleep(0.2)
    local valid, snaps, seen = {}, 0, 0
    for _, name in ipairs(tcplab.states.list) do valid[name] = true end
    local stop = core.now() + 2
    repeat   -- for 2 s, and at least 5 rounds however slow the host (bounded: 1000)
      for _, columns in ipairs({ false, true }) do
        local recs = assert(tcplab.snapshot{ columns = columns })
        if columns then   -- the same records as rows
          local rows = {}
          for i = 1, recs.n do
            rows[i] = { state = recs.state[i], sport = recs.sport[i], dport = recs.dport[i],
                        src = recs.src[i], dst = recs.dst[i] }
          end
          recs = rows
        end
        local times = {}
        for _, r in ipairs(recs) do
          assert(valid[r.state], r.state)
          assert(r.sport >= 0 and r.sport <= 65535 and r.dport >= 0 and r.dport <= 65535)
          assert(r.src == "127.0.0.1" and (r.dst == "127.0.0.1" or r.dst == "0.0.0.0"))
          local k = r.state .. " " .. r.sport .. ">" .. r.dport
          if want[k] then times[k] = (times[k] or 0) + 1 end
        end
        for k in pairs(want) do
          assert.equal(1, times[k] or 0, ("%s in snapshot %d (columns %s)"):format(k, snaps + 1, tostring(columns)))
        end
        seen = seen + #recs
      end
      snaps = snaps + 1
    until (snaps >= 5 and core.now() >= stop) or snaps >= 1000
    local cycles = tonumber(churn:read("a"))
    churn:close()
    for _, s in ipairs(keep) do s:close() end
    assert.is_true(cycles and cycles > 100, "the churn ran")
    assert.is_true(seen > snaps)
  end)

  it("a timeout holds when signals interrupt the wait (EINTR)", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local c <close> = assert(tcplab.connect("127.0.0.1", select(2, l:getsockname()), 2))
    local a <close> = assert(l:accept(2))
    core._interrupt_every(0.02)
    local t0 = core.now()
    local data, err, errno = a:read(10, 0.3)
    local took = core.now() - t0
    local t1 = core.now()
    local conn, aerr = l:accept(0.2)
    local took_accept = core.now() - t1
    local t2 = core.now()
    core.sleep(0.15)
    local took_sleep = core.now() - t2
    local alarms = core._interrupt_every(0)
    assert.is_true(alarms >= 10, "signals arrived: " .. alarms)
    assert.same({ nil, "timeout", 110 }, { data, err, errno })
    assert.is_true(took >= 0.3 and took < 0.55, "read returned after " .. took)
    assert.is_nil(conn)
    assert.equal("timeout", aerr)
    assert.is_true(took_accept >= 0.2 and took_accept < 0.45, "accept returned after " .. took_accept)
    assert.is_true(took_sleep >= 0.15, "sleep slept " .. took_sleep)
  end)

  it("connect with a timeout never blocks past it (SYN to an address that drops)", function()
    local f <close> = assert(tcplab.fault.drop{ segment = "syn", dport = 9 })
    local c <close> = assert(core.socket("inet"))
    local t0 = core.now()
    assert.same({ nil, "timeout", 110 }, { c:connect("127.0.0.1", 9, 0.25) })
    assert.is_true(core.now() - t0 < 0.4)
    assert.same({ nil, "timeout", 115 }, { c:connect("127.0.0.1", 9, 0) })   -- EINPROGRESS
  end)
end)
