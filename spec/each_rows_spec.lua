-- The rows of tcplab.each are lazy rows (csrc/row.c): a userdata holding its
-- own copy of the record, fields decoded when read. They must read like the
-- snapshot rows of the same sockets, field for field, print alike, and stay
-- what they were once the walk has moved on (doc/each.md).
-- Everything runs in a quiet namespace of our own, left (and freed) at the end.
local tcplab = require "tcplab"
local support = require "support"
local cjson = require "cjson"

-- name=value of every field pairs() gives, sorted: a row's whole content.
local function content(r)
  local parts = {}
  for k, v in pairs(r) do
    if type(v) == "table" then
      local sub = {}
      for k2, v2 in pairs(v) do sub[#sub + 1] = tostring(k2) .. ":" .. tostring(v2) end
      table.sort(sub)
      v = "{" .. table.concat(sub, ",") .. "}"
    end
    parts[#parts + 1] = tostring(k) .. "=" .. tostring(v)
  end
  table.sort(parts)
  return table.concat(parts, " ")
end

local function names(r)
  local out = {}
  for k in pairs(r) do out[#out + 1] = k end
  table.sort(out)
  return table.concat(out, " ")
end

local function collect(f)
  local rows = {}
  for rec in assert(tcplab.each(f)) do rows[#rows + 1] = rec end
  return rows
end

local function by_cookie(rows)
  local t, n = {}, 0
  for _, r in ipairs(rows) do
    assert.is_nil(t[r.cookie], "two rows with cookie " .. tostring(r.cookie))
    t[r.cookie] = r
    n = n + 1
  end
  return t, n
end

-- tcp_info fields that do not move on an idle loopback connection
local STILL_INFO = { "snd_mss", "rcv_mss", "advmss", "pmtu", "options", "snd_cwnd", "bytes_acked",
                     "bytes_received", "segs_out", "segs_in", "ca_state", "rto_us" }

describe("each: its rows read like snapshot rows #kernel #root", function()
  if not support.is_root() then
    pending("need root: runs in a fresh network namespace")
    return
  end

  local home, mine, srv, port, srv6, port6, keep = nil, nil, nil, nil, nil, nil, {}
  local bpf = tcplab.backend("bpf") == "bpf"
  local BACKENDS = bpf and { "netlink", "bpf" } or { "netlink" }
  local TIME_WAIT = 3000   -- many buffers' worth, each from its own source address

  -- a client bound to src, connected to host:p; and the server's end
  local function pair(family, src, host, p, listener)
    local c = assert(tcplab.socket(family))
    assert(c:bind(src, 0))
    assert(c:connect(host, p, 5))
    return c, assert(listener:accept(5))
  end

  setup(function()
    home = assert(tcplab.netns.open())
    mine = assert(tcplab.netns.unshare())
    srv = assert(tcplab.listen("127.0.0.1", 0, 4096))
    port = select(2, srv:getsockname())
    srv6 = assert(tcplab.listen("::1", 0, 64))
    port6 = select(2, srv6:getsockname())
    for i = 1, 20 do
      local c, a = pair("inet", ("127.0.%d.1"):format(i), "127.0.0.1", port, srv)
      keep[#keep + 1], keep[#keep + 2] = c, a
    end
    for _ = 1, 5 do
      local c, a = pair("inet6", "::1", "::1", port6, srv6)
      keep[#keep + 1], keep[#keep + 2] = c, a
    end
    -- TIME_WAIT from distinct source addresses: the rows of one buffer
    -- differ from those of the next in their bytes, not only their ports
    for i = 0, TIME_WAIT - 1 do
      local c, a = pair("inet", ("127.1.%d.%d"):format(i // 250, i % 250 + 1), "127.0.0.1", port, srv)
      c:close()
      assert.equal("", a:read(1, 5))
      a:close()
    end
  end)

  teardown(function()
    for _, s in ipairs(keep) do s:close() end
    if srv then srv:close() end
    if srv6 then srv6:close() end
    if home then assert(home:enter()) home:close() end
    if mine then mine:close() end
  end)

  for _, backend in ipairs(BACKENDS) do
    it("every field of every row equals the snapshot row's for the same socket (" .. backend .. ")", function()
      local snap, n = by_cookie(assert(tcplab.snapshot { backend = backend }))
      local rows = collect { backend = backend }
      assert.equal(n, #rows)
      assert.is_true(n > TIME_WAIT)
      local fields = 0
      for _, r in ipairs(rows) do
        assert.equal("userdata", type(r))
        local s = snap[r.cookie]
        assert.is_table(s, "no snapshot row for " .. tostring(r))
        assert.equal(names(s), names(r))
        for k, v in pairs(s) do
          if k == "expires_ms" then   -- a timer counts down between the two walks
            assert.is_true(r[k] >= 0 and r[k] <= v, ("expires_ms %d then %d"):format(v, r[k]))
          else
            assert.equal(v, r[k], ("field %s of %s"):format(k, tostring(s)))
          end
          fields = fields + 1
        end
        assert.equal(tostring(s), tostring(r))
      end
      assert.is_true(fields >= 14 * n)
    end)
  end

  it("with info = true: cong and tcp_info as snapshot has them, rec.info one table (netlink)", function()
    local f = { backend = "netlink", states = "ESTABLISHED", info = true }
    local snap, n = by_cookie(assert(tcplab.snapshot(f)))
    local rows = collect(f)
    assert.equal(50, n)
    assert.equal(n, #rows)
    for _, r in ipairs(rows) do
      local s = snap[r.cookie]
      assert.equal(s.cong, r.cong)
      assert.equal("string", type(r.cong))
      assert.is_table(r.info)
      assert.equal(r.info, r.info)   -- the same table each time it is read
      for _, k in ipairs(STILL_INFO) do
        assert.equal(s.info[k], r.info[k], "info." .. k)
      end
      assert.equal(names(s.info), names(r.info))
    end
  end)

  for _, backend in ipairs(BACKENDS) do
    it("a kept row stays what it was while the walk reads on, after the loop and a collection (" ..
       backend .. ")", function()
      local kept, copies, srcs, distinct = {}, {}, {}, 0
      local function check(upto)
        for j = 1, upto do assert.equal(copies[j], content(kept[j]), "row " .. j) end
      end
      local i = 0
      for rec in assert(tcplab.each { backend = backend }) do
        i = i + 1
        kept[i], copies[i] = rec, content(rec)
        if not srcs[rec.src] then srcs[rec.src], distinct = true, distinct + 1 end
        if i % 1000 == 0 then check(i) end
      end
      assert.is_true(i > TIME_WAIT)
      assert.is_true(distinct > TIME_WAIT // 2, "distinct sources: " .. distinct)
      check(i)
      collectgarbage()
      collectgarbage()
      for _ in assert(tcplab.each { backend = backend }) do end   -- another walk, its buffers
      check(i)
    end)
  end

  -- threads of this process, read in-process
  local function threads()
    local f = assert(io.open("/proc/self/status"))
    local n = tonumber(f:read("a"):match("\nThreads:%s*(%d+)"))
    f:close()
    return n
  end
  -- the count once an ended thread is reaped: pthread_join returns before the
  -- kernel drops the thread from Threads:, so wait (bounded) for want
  local function settle(want)
    for _ = 1, 400 do
      if threads() == want then return want end
      tcplab.core.sleep(0.005)
    end
    return threads()
  end

  describe("the netlink walk reads the next buffer in a thread while the loop runs", function()
    after_each(function() tcplab.core._each_prefetch(true) end)

    it("and yields the same rows in the same order as a walk without it", function()
      local f = { backend = "netlink" }
      local with = {}
      for rec in assert(tcplab.each(f)) do with[#with + 1] = content(rec) end
      assert.is_true(tcplab.core._each_prefetch(false))
      local i = 0
      for rec in assert(tcplab.each(f)) do
        i = i + 1
        local a, b = with[i]:gsub("expires_ms=%d+", ""), content(rec):gsub("expires_ms=%d+", "")
        assert.equal(a, b, "row " .. i)
      end
      assert.equal(#with, i)
      assert.is_true(i > TIME_WAIT)
    end)

    it("and joins it when the loop completes, breaks or raises, or the walk is closed", function()
      local base = settle(1)   -- the Lua thread alone, once earlier walks are reaped
      local during = 0
      for _ in assert(tcplab.each { backend = "netlink" }) do during = math.max(during, threads()) end
      assert.equal(base + 1, during)   -- many buffers: the reader ran
      assert.equal(base, settle(base))
      local n = 0
      for _ in assert(tcplab.each { backend = "netlink" }) do
        n = n + 1
        if n == 2000 then break end
      end
      assert.equal(base, settle(base))
      assert.is_false(pcall(function()
        local k = 0
        for _ in assert(tcplab.each { backend = "netlink" }) do
          k = k + 1
          if k == 2000 then error("boom") end
        end
      end))
      assert.equal(base, settle(base))
      local iter, s, c, walk = assert(tcplab.each { backend = "netlink" })
      for _ = 1, 1000 do assert(iter(s, c)) end
      assert.equal(base + 1, threads())
      walk:close()
      assert.equal(base, settle(base))
      -- one buffer's walk never starts it
      during = 0
      for _ in assert(tcplab.each { backend = "netlink", states = "LISTEN" }) do during = math.max(during, threads()) end
      assert.equal(base, during)
      -- nor does the BPF walk (its filter is a global of the program)
      if bpf then
        during = 0
        for _ in assert(tcplab.each { backend = "bpf" }) do during = math.max(during, threads()) end
        assert.equal(base, during)
      end
    end)
  end)

  it("prints as STATE SRC:SPORT -> DST:DPORT, v6 in brackets, as a snapshot row does", function()
    local rows = collect { backend = "netlink", states = { "ESTABLISHED", "LISTEN" } }
    local seen4, seen6 = 0, 0
    for _, r in ipairs(rows) do
      if r.family == "inet" and r.state == "ESTABLISHED" and r.dport == port then
        assert.equal(("ESTABLISHED %s:%d -> 127.0.0.1:%d"):format(r.src, r.sport, port), tostring(r))
        seen4 = seen4 + 1
      elseif r.family == "inet6" and r.state == "LISTEN" then
        assert.equal(("LISTEN [::1]:%d -> [::]:0"):format(port6), tostring(r))
        seen6 = seen6 + 1
      end
    end
    assert.equal(20, seen4)
    assert.equal(1, seen6)
    local snap = assert(tcplab.snapshot { backend = "netlink", states = "LISTEN", family = "inet6" })
    assert.equal(("LISTEN [::1]:%d -> [::]:0"):format(port6), tostring(snap[1]))
  end)

  it("takes fields assigned like a table: new keys, a field replaced, a field set to nil", function()
    local f = { backend = "netlink", states = "LISTEN", family = "inet" }
    local r = collect(f)[1]
    local state, sport = r.state, r.sport
    r.note = "mine"
    r.sport = 1
    r.uid = nil
    assert.equal("mine", r.note)
    assert.equal(1, r.sport)
    assert.is_nil(r.uid)
    assert.equal(state, r.state)
    local got = {}
    for k, v in pairs(r) do got[k] = v end
    assert.equal("mine", got.note)
    assert.equal(1, got.sport)
    assert.is_nil(got.uid)
    assert.equal(state, got.state)
    r.sport = nil
    assert.is_nil(r.sport)
    r.state = nil   -- the first field (id 0) as much as any other
    assert.is_nil(r.state)
    for k in pairs(r) do assert.is_true(k ~= "state" and k ~= "sport", k) end
    r.state = state
    r.uid = 7
    assert.equal(7, r.uid)
    -- another walk's row of the same socket is its own
    local fresh = collect(f)[1]
    assert.equal(sport, fresh.sport)
    assert.is_nil(fresh.note)
    assert.is_number(fresh.uid)
    assert.is_nil(r[1])
    assert.is_nil(r.nosuchfield)
  end)

  it("is written by the json format like a snapshot row", function()
    local json = require "tcplab.format.json"
    local function render(rows)
      local parts = {}
      json.list(rows, { write = function(_, ...) for _, s in ipairs { ... } do parts[#parts + 1] = s end end })
      return cjson.decode(table.concat(parts))
    end
    local f = { backend = "netlink", states = { "ESTABLISHED", "LISTEN" } }
    local a = render(assert(tcplab.snapshot(f)))
    local b = render(collect(f))
    assert.equal(#a, #b)
    assert.is_true(#a >= 52)
    local want = {}
    for _, r in ipairs(a) do r.expires_ms = nil want[r.cookie] = r end
    for _, r in ipairs(b) do
      r.expires_ms = nil
      assert.same(want[r.cookie], r)
    end
  end)

  it("its metamethods refuse anything that is not a row", function()
    local r = collect { backend = "netlink", states = "LISTEN" }[1]
    local mt = debug.getmetatable(r)
    assert.has_error(function() mt.__index(io.stdout, "state") end)
    assert.has_error(function() mt.__index({}, "state") end)
    local ok, err = pcall(mt.__newindex, io.stdout, "state", 1)
    assert.is_false(ok)
    assert.matches("tcplab row expected", err)
  end)
end)
