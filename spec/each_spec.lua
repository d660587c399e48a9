-- tcplab.each: the rows of snapshot, one at a time from a fixed buffer, the
-- walk's fd closed when the loop ends, breaks or raises (doc/each.md).
-- Everything runs in a namespace of our own, left (and freed) at the end.
local tcplab = require "tcplab"
local support = require "support"
local core = tcplab.core

-- Everything a row says that does not tick while we look (expires_ms does).
local FIELDS = { "state", "family", "src", "sport", "dst", "dport", "rqueue", "wqueue", "uid",
                 "inode", "cookie", "retrans" }

local function key(r)
  local parts = {}
  for i, f in ipairs(FIELDS) do parts[i] = tostring(r[f]) end
  return table.concat(parts, " ")
end

local function keyset(rows)
  local set, n = {}, 0
  for _, r in ipairs(rows) do set[key(r)] = true n = n + 1 end
  return set, n
end

local function collect(f)
  local rows = {}
  for rec in assert(tcplab.each(f)) do rows[#rows + 1] = rec end
  return rows
end

local function names(r)
  local out = {}
  for k in pairs(r) do out[#out + 1] = k end
  table.sort(out)
  return table.concat(out, " ")
end

local function sorted_keys(rows)
  local out = {}
  for _, r in ipairs(rows) do out[#out + 1] = key(r) end
  table.sort(out)
  return out
end

describe("each: a streaming walk #kernel #root", function()
  if not support.is_root() then
    pending("need root: runs in a fresh network namespace")
    return
  end

  local home, mine, srv, port, keep
  local bpf = tcplab.backend("bpf") == "bpf"
  local BACKENDS = bpf and { "netlink", "bpf" } or { "netlink" }

  setup(function()
    home = assert(tcplab.netns.open())
    mine = assert(tcplab.netns.unshare())
    -- our own namespace: room for tens of thousands of TIME_WAIT sockets
    for path, value in pairs { ["/proc/sys/net/ipv4/ip_local_port_range"] = "1024 65535",
                               ["/proc/sys/net/ipv4/tcp_tw_reuse"] = "0" } do
      local f = assert(io.open(path, "w"))
      f:write(value)
      f:close()
    end
    srv = assert(tcplab.listen("127.0.0.1", 0, 4096))
    port = select(2, srv:getsockname())
    keep = { assert(tcplab.listen("::1", 0)) }
    for _ = 1, 20 do
      keep[#keep + 1] = assert(tcplab.connect("127.0.0.1", port, 5))
      keep[#keep + 1] = assert(srv:accept(5))
    end
  end)

  teardown(function()
    for _, s in ipairs(keep or {}) do s:close() end
    if srv then srv:close() end
    if home then assert(home:enter()) home:close() end
    if mine then mine:close() end   -- the namespace and its TIME_WAIT sockets go with it
  end)

  -- n more TIME_WAIT sockets (the client closes first): no fd held.
  local function time_wait(n)
    for _ = 1, n do
      local c <close> = assert(tcplab.connect("127.0.0.1", port, 5))
      local a <close> = assert(srv:accept(5))
      c:close()
      assert.equal("", a:read(1, 5))
    end
  end

  describe("yields the rows snapshot returns", function()
    setup(function() time_wait(30) end)
    for _, backend in ipairs(BACKENDS) do
      for label, f in pairs {
        all = {},
        established = { states = { "ESTABLISHED" } },
        ["port = P"] = { port = 0 },   -- filled with the listener's port below
        ["port = LO-HI"] = { port = "LO-HI" },
        ["family inet6"] = { family = "inet6" },
        ["TIME_WAIT"] = { states = "TIME_WAIT" },
      } do
        it(("as a set of rows, backend %s, filter %s"):format(backend, label), function()
          local g = { backend = backend }
          for k, v in pairs(f) do g[k] = v end
          if g.port == 0 then g.port = port end
          if g.port == "LO-HI" then g.port = { port - 1, port } end
          local snap = assert(tcplab.snapshot(g))
          local rows = collect(g)
          assert.is_true(#rows > 0)
          assert.same(sorted_keys(snap), sorted_keys(rows))
          -- the same fields, printed alike (a lazy row: spec/each_rows_spec.lua)
          local by_key = {}
          for _, r in ipairs(snap) do by_key[key(r)] = r end
          for _, r in ipairs(rows) do
            assert.equal(names(by_key[key(r)]), names(r))
            assert.equal(tostring(by_key[key(r)]), tostring(r))
            assert.equal("userdata", type(r))
          end
        end)
      end
    end

    it("with info = true: tcp_info and cong as snapshot has them (netlink)", function()
      local rows = collect { states = "ESTABLISHED", info = true }
      assert.equal(40, #rows)
      for _, r in ipairs(rows) do
        assert.equal("table", type(r.info))
        assert.equal("string", type(r.cong))
      end
    end)

    it("in another namespace by path, like snapshot{netns = path}", function()
      local path = tcplab.netns.self_path()
      assert.same(sorted_keys(assert(tcplab.snapshot { netns = path, states = "ESTABLISHED" })),
                  sorted_keys(collect { netns = path, states = "ESTABLISHED" }))
      local it, msg, errno = tcplab.each { netns = "/nonexistent/ns" }
      assert.is_nil(it)
      assert.matches("/nonexistent/ns", msg)
      assert.equal(core.errno.ENOENT, errno)
      assert.same({ tcplab.snapshot { netns = "/nonexistent/ns" } }, { tcplab.each { netns = "/nonexistent/ns" } })
    end)
  end)

  describe("closes its netlink socket or iterator fd", function()
    setup(function() time_wait(2000) end)   -- several buffers' worth
    for _, backend in ipairs(BACKENDS) do
      it("when the loop completes, breaks or raises (" .. backend .. ")", function()
        local f = { backend = backend }
        collectgarbage("collect")
        collectgarbage("stop")   -- a missing __close must not be hidden by __gc
        local before = core._fds()
        local n, during = 0, nil
        for _ in assert(tcplab.each(f)) do
          n = n + 1
          during = during or core._fds()
        end
        assert.is_true(n > 2000)
        assert.equal(before + 1, during)     -- the walk's fd, counted while it runs
        assert.equal(before, core._fds())

        n = 0
        for _ in assert(tcplab.each(f)) do
          n = n + 1
          if n == 10 then break end
        end
        assert.equal(before, core._fds())

        local ok, err = pcall(function()
          for _ in assert(tcplab.each(f)) do error("boom in the body") end
        end)
        assert.is_false(ok)
        assert.matches("boom in the body", err)
        assert.equal(before, core._fds())

        -- the walk closes its fd itself once complete, before any __close
        local iter, s, c, walk = assert(tcplab.each(f))
        while iter(s, c) do end
        assert.equal(before, core._fds())
        assert.is_nil(iter(s, c))             -- a complete walk stays complete
        assert.matches("closed after", tostring(walk))
        walk:close()

        -- closed early (walk:close()), a further call says so
        iter, s, c, walk = assert(tcplab.each(f))
        assert(iter(s, c))
        walk:close()
        assert.equal(before, core._fds())
        assert.has_error(function() iter(s, c) end,
          "each: the walk is closed (its loop ended or it was closed)")
        collectgarbage("restart")
      end)
    end

    it("and a dump the kernel interrupts raises instead of ending quietly (netlink)", function()
      local before = support.fd_count()
      core._inject_dump_faults { interrupt = 1 }
      local ok, err = pcall(function()
        for _ in assert(tcplab.each { backend = "netlink" }) do end
      end)
      core._inject_dump_faults {}
      assert.is_false(ok)
      assert.matches("NLM_F_DUMP_INTR", err)
      core._inject_dump_faults { enobufs = 1 }
      ok, err = pcall(function()
        for _ in assert(tcplab.each { backend = "netlink" }) do end
      end)
      core._inject_dump_faults {}
      assert.is_false(ok)
      assert.matches("ENOBUFS", err)
      assert.equal(before, support.fd_count())
    end)
  end)

  if bpf then
    it("keeps its own filter when another BPF walk runs inside the loop body", function()
      time_wait(2000)
      local want = assert(tcplab.counts { states = "TIME_WAIT", backend = "netlink" }).TIME_WAIT
      local n, other = 0, 0
      for rec in assert(tcplab.each { states = "TIME_WAIT", backend = "bpf" }) do
        if rec.state == "TIME_WAIT" then n = n + 1 else other = other + 1 end
        if n % 500 == 1 then
          assert(tcplab.snapshot { states = "LISTEN", backend = "bpf" })
        end
      end
      assert.equal(0, other)
      assert.is_true(n >= want - 10 and n <= want, ("each %d, netlink count %d"):format(n, want))
    end)
  end

  describe("Lua memory", function()
    -- the peak of the Lua heap over a walk reading two fields per row, less
    -- the heap before it: the same at N and 4N sockets for a streaming walk
    local function peak_growth(f)
      collectgarbage("incremental")   -- the GC state an earlier stop/restart leaves collects late
      collectgarbage("collect")
      collectgarbage("collect")
      local base, peak, n, sum = collectgarbage("count"), 0, 0, 0
      for rec in assert(tcplab.each(f)) do
        n = n + 1
        sum = sum + rec.sport + #rec.state
        if n % 128 == 0 then
          local now = collectgarbage("count") - base
          if now > peak then peak = now end
        end
      end
      return peak, n
    end

    local function time_wait_total(n)
      local have = assert(tcplab.counts { states = "TIME_WAIT", backend = "netlink" }).TIME_WAIT or 0
      if have < n then time_wait(n - have) end
    end

    it("stays bounded from N to 4N sockets (6,000 and 24,000), for every backend", function()
      local f, peak1, n1 = { states = "TIME_WAIT" }, {}, {}
      time_wait_total(6000)
      for _, backend in ipairs(BACKENDS) do
        f.backend = backend
        peak1[backend], n1[backend] = peak_growth(f)
      end
      time_wait_total(24000)
      for _, backend in ipairs(BACKENDS) do
        f.backend = backend
        local peak4, n4 = peak_growth(f)
        io.stderr:write(("  each (%s): peak Lua heap growth %.0f KiB at %d rows, %.0f KiB at %d rows\n")
          :format(backend, peak1[backend], n1[backend], peak4, n4))
        -- TIME_WAIT lasts 60 s: on a busy host the first ones may expire
        -- before the last are made; at least 3.5x the first walk's rows
        assert.is_true(n1[backend] >= 5000 and n4 >= 3.5 * n1[backend], ("rows: %d then %d"):format(n1[backend], n4))
        -- a walk that kept its rows would add about 0.5 KiB per row: 9 MiB more here;
        -- the incremental collector's lag on a busy host is a few MiB at most
        assert.is_true(peak4 < peak1[backend] + 4096,
          ("Lua heap grew %.0f KiB at %d rows, %.0f KiB at %d"):format(peak1[backend], n1[backend], peak4, n4))
      end
    end)

    for _, backend in ipairs(BACKENDS) do
      it("rows kept past their iteration stay what they were, many buffers later (" .. backend .. ")", function()
        time_wait_total(6000)
        local f = { backend = backend, states = { "TIME_WAIT", "ESTABLISHED", "LISTEN" } }
        local kept, copies, i = {}, {}, 0
        for rec in assert(tcplab.each(f)) do
          i = i + 1
          if i == 1 or i == 1000 or i == 5000 then
            kept[#kept + 1] = rec
            copies[#copies + 1] = key(rec)
          end
        end
        assert.equal(3, #kept)
        local now = keyset(assert(tcplab.snapshot(f)))
        for j, rec in ipairs(kept) do
          assert.equal(copies[j], key(rec))
          assert.is_true(now[key(rec)], key(rec))
        end
      end)
    end
  end)
end)

describe("each: bad filter fields raise like snapshot's #unit", function()
  local function message(fn, f)
    local ok, err = pcall(fn, f)
    assert.is_false(ok)
    return (tostring(err):gsub("'each'", "'X'"):gsub("'snapshot'", "'X'"))
  end
  for label, f in pairs {
    ["an unknown field"] = { bogus = 1 },
    ["a port out of range"] = { sport = 70000 },
    ["a bad range"] = { dport = "9-3" },
    ["a bad family"] = { family = "ipx" },
    ["an unknown state"] = { states = "NOPE" },
    ["a bad address"] = { src = "10.0.0.300" },
    ["a bad backend"] = { backend = "smoke" },
    ["info not a boolean"] = { info = "yes" },
    ["not a table"] = 42,
  } do
    it(label, function()
      assert.equal(message(tcplab.snapshot, f), message(tcplab.each, f))
      assert.matches("'each'", select(2, pcall(tcplab.each, f)))
    end)
  end
  it("columns and owners, which a row at a time has no use for, say what to use", function()
    assert.has_error(function() tcplab.each { columns = true } end,
      "bad argument #1 to 'each' (columns: each() yields one row at a time; use snapshot{columns = true} for columns)")
    local ok, err = pcall(tcplab.each, { owners = true })
    assert.is_false(ok)
    assert.matches("owners: only snapshot%(%) lists owners", err)
  end)
end)
