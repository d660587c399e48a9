local tcplab = require "tcplab"
local support = require "support"

-- Every public function given what a programmer should not pass: a Lua
-- error that names the argument, never a crash, never a leaked fd.
describe("bad arguments #unit", function()
  local s, before
  before_each(function()
    before = support.fd_count()
    s = assert(tcplab.socket("inet"))
  end)
  after_each(function()
    s:close()
    collectgarbage()
    assert.equal(before, support.fd_count())
  end)

  local function raises(pattern, f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, tostring(err))
  end

  it("socket() rejects unknown families and wrong types", function()
    raises("bad argument #1 to '[%w.]*socket' %(invalid option 'unix'%)", tcplab.socket, "unix")
    raises("bad argument #1 to '[%w.]*socket'", tcplab.socket, 42)
    raises("bad argument #1 to '[%w.]*socket'", tcplab.socket, {})
  end)

  it("bind/connect reject ports out of range and non-integers", function()
    for _, port in ipairs({ -1, 70000, 65536, 1.5, 0 / 0, math.huge, math.maxinteger }) do
      raises("bad argument #2 to 'bind'", function() return s:bind("127.0.0.1", port) end)
      raises("bad argument #2 to 'connect'", function() return s:connect("127.0.0.1", port) end)
    end
    raises("bad argument #2 to 'bind' %(number expected, got string%)", function() return s:bind("127.0.0.1", "x") end)
    raises("bad argument #2 to 'bind' %(number expected, got no value%)", function() return s:bind("127.0.0.1") end)
  end)

  it("bind/connect reject malformed addresses, naming the argument", function()
    for _, host in ipairs({ "1.2.3", "256.1.1.1", "::1", "localhost.", "1.2.3.4\0", "a b" }) do
      raises("bad argument #1 to 'bind'", function() return s:bind(host, 0) end)
    end
    raises("address contains a zero byte", function() return s:bind("127.0.0.1\0garbage", 0) end)
    raises("bad argument #1 to 'bind' %(string expected, got nil%)", function() return s:bind(nil, 0) end)
    local s6 <close> = assert(tcplab.socket("inet6"))
    for _, host in ipairs({ "::g", "1::2::3", "[::1", "fe80::1%no-such-if0" }) do
      raises("bad argument #1 to 'connect'", function() return s6:connect(host, 1) end)
    end
  end)

  it("accepts IPv6 scope ids by name and number (the OS may then refuse the address)", function()
    -- fe80::1 is on no interface here: parsed, then EADDRNOTAVAIL from bind(2)
    for _, host in ipairs({ "fe80::1%lo", "fe80::1%1" }) do
      local s6 <close> = assert(tcplab.socket("inet6"))
      assert.same({ nil, "bind: Cannot assign requested address", 99 }, { s6:bind(host, 0) })
    end
  end)

  it("setopt/getopt reject unknown options listing the valid ones", function()
    raises("bad argument #1 to 'setopt' %(unknown option 'fast' %(valid: reuseaddr reuseport", function() return s:setopt("fast", true) end)
    raises("bad argument #1 to 'getopt' %(unknown option", function() return s:getopt("fast") end)
    raises("bad argument #2 to 'setopt' %(boolean expected", function() return s:setopt("nodelay", 1) end)
    raises("bad argument #2 to 'setopt' %(value out of range%)", function() return s:setopt("rcvbuf", -1) end)
    raises("bad argument #2 to 'setopt'", function() return s:setopt("linger", true) end)
    raises("bad argument #2 to 'setopt'", function() return s:setopt("linger", -5) end)
  end)

  it("timeouts must be numbers >= 0 (nil blocks)", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    raises("bad argument #1 to 'accept' %(timeout must be >= 0", function() return l:accept(-1) end)
    raises("bad argument #1 to 'accept' %(timeout is NaN%)", function() return l:accept(0 / 0) end)
    raises("bad argument #1 to 'accept' %(number expected", function() return l:accept("soon") end)
    raises("bad argument #1 to 'settimeout'", function() return l:settimeout(-0.5) end)
    raises("bad argument #3 to 'connect'", function() return s:connect("127.0.0.1", 1, -1) end)
  end)

  it("read/listen/shutdown check their arguments", function()
    raises("bad argument #1 to 'read' %(size out of range", function() return s:read(0) end)
    raises("bad argument #1 to 'read' %(size out of range", function() return s:read(-1) end)
    raises("bad argument #1 to 'read' %(number expected", function() return s:read() end)
    raises("bad argument #1 to 'listen' %(backlog out of range%)", function() return s:listen(-1) end)
    raises("bad argument #1 to 'shutdown' %(invalid option 'up'%)", function() return s:shutdown("up") end)
    raises("bad argument #1 to 'write' %(string expected", function() return s:write({}) end)
  end)

  it("methods called on something that is not a socket raise", function()
    raises("calling 'read' on bad self %(tcplab.socket expected", function() local t = { read = s.read } return t:read(1) end)
    raises("calling 'close' on bad self %(tcplab.socket expected", function() local t = { close = s.close } return t:close() end)
  end)

  it("the conveniences raise on bad arguments and close what they opened", function()
    local fds = support.fd_count()
    collectgarbage("stop")   -- the socket must be closed by them, not by the collector
    for _ = 1, 10 do pcall(tcplab.listen, "nohost", 1) pcall(tcplab.connect, "::1", 70000) end
    local after = support.fd_count()
    collectgarbage("restart")
    assert.equal(fds, after)
    raises("bad argument #1 to 'listen' %(invalid IPv4 address 'nohost'%)", tcplab.listen, "nohost", 1)
    raises("bad argument #2 to 'listen' %(port out of range", tcplab.listen, "127.0.0.1", 70000)
    raises("bad argument #3 to 'listen' %(backlog: integer 0..2^31%-1 expected, got %-1%)", tcplab.listen, "127.0.0.1", 0, -1)
    raises("bad argument #3 to 'listen' %(backlog: integer 0..2^31%-1 expected, got string \"8\"%)", tcplab.listen, "127.0.0.1", 0, "8")
    raises("bad argument #1 to 'connect' %(invalid IPv6 address", tcplab.connect, "::zz", 1)
    raises("bad argument #2 to 'connect' %(port out of range", tcplab.connect, "127.0.0.1", -1)
    raises("bad argument #3 to 'connect' %(timeout is NaN%)", tcplab.connect, "127.0.0.1", 1, 0 / 0)
  end)

  it("huge but valid timeouts are accepted and do not overflow", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local c <close> = assert(tcplab.connect("127.0.0.1", select(2, l:getsockname()), 1e300))
    local a <close> = assert(l:accept(math.huge))
    assert(c:write("x", 1e18))
    assert.equal("x", a:read(1, 1e300))
    assert.is_true(a:settimeout(math.huge))
    assert.is_nil(a:gettimeout())   -- math.huge means: block
  end)

  it("a socket kept past its <close> scope is closed and raises on use", function()
    local kept
    do
      local s2 <close> = assert(tcplab.socket("inet6"))
      kept = s2
    end
    assert.equal("socket (closed)", tostring(kept))
    raises("attempt to use a closed socket", function() return kept:read(1) end)
    raises("attempt to use a closed socket", function() return kept:setopt("nodelay", true) end)
    assert.is_true(kept:close())
  end)

  it("OS failures return nil, message, errno", function()
    local ok, err, errno = s:read(10, 0)
    assert.same({ nil, "read: Transport endpoint is not connected", 107 }, { ok, err, errno })
    assert.same({ nil, "getpeername: Transport endpoint is not connected", 107 }, { s:getpeername() })
    assert.same({ nil, "shutdown: Transport endpoint is not connected", 107 }, { s:shutdown("both") })
  end)

  it("snapshot/counts reject malformed filters, naming the field", function()
    for _, f in ipairs({ tcplab.snapshot, tcplab.counts }) do
      raises("filter table expected, got number", f, 5)
      raises("unknown filter field 'state'; valid: states", f, { state = "LISTEN" })
      raises("states: unknown state 'FOO' %(valid: ESTABLISHED SYN_SENT", f, { states = "FOO" })
      raises("states%[2%]: unknown state 'BAR'", f, { states = { "LISTEN", "BAR" } })
      raises("states%[2%]: state name expected, got number", f, { states = { "LISTEN", 3 } })
      raises("states: state name or list of names expected, got boolean", f, { states = true })
      raises("sport: port 0..65535 expected, got %-1", f, { sport = -1 })
      raises("dport: port 0..65535 expected, got 70000", f, { dport = 70000 })
      raises("dport: port 0..65535 expected, got 1.5", f, { dport = 1.5 })
      raises('sport: port 0..65535 expected, got string "8080"', f, { sport = "8080" })
      raises('family: \'inet\', \'inet6\' or nil expected, got string "unix"', f, { family = "unix" })
      raises("states: a list of names without holes expected", f, { states = { "LISTEN", nil, "ESTAB" } })
      raises("states: a list of names expected, got key x", f, { states = { "LISTEN", x = "ESTAB" } })
      raises("states: a list of names expected, got key 0", f, { states = { [0] = "LISTEN", "ESTAB" } })
      raises("info: boolean expected", f, { info = 1 })
      raises("columns: boolean expected", f, { columns = "yes" })
      raises("netns: path string expected", f, { netns = 7 })
      raises("netns: path string expected", f, { netns = "/run/netns/a\0b" })
      raises("owners: boolean expected, got number", f, { owners = 1 })
      raises('sport: range LO%-HI with 0 <= LO <= HI <= 65535 expected, got string "9%-3"', f, { sport = "9-3" })
      raises('dport: range LO%-HI with 0 <= LO <= HI <= 65535 expected, got string "1%-70000"', f, { dport = "1-70000" })
      raises("sport: range LO%-HI with 0 <= LO <= HI <= 65535 expected, got table", f, { sport = { 5, 1 } })
      raises('sport: port 0..65535 expected, got true %(a range: "LO%-HI" or {lo, hi}%)', f, { sport = true })
      raises('src: address or address/prefix %(v4 or v6%) expected, got string "10.0.0.0/33"', f, { src = "10.0.0.0/33" })
      raises('dst: address or address/prefix %(v4 or v6%) expected, got string "::1/129"', f, { dst = "::1/129" })
      raises('dst: address or address/prefix %(v4 or v6%) expected, got string "localhost"', f, { dst = "localhost" })
      raises("src: address or address/prefix %(v4 or v6%) expected, got 7", f, { src = 7 })
    end
    raises("bad argument #1 to 'counts' %(owners: only snapshot%(%) lists owners%)", tcplab.counts, { owners = true })
    raises("bad argument #1 to 'counts' %(by: 'sport', 'dport', 'src' or 'dst' expected, got string \"x\"%)",
           tcplab.counts, { by = "x" })
    raises("by: 'sport', 'dport', 'src' or 'dst' expected, got 1", tcplab.counts, { by = 1 })
    raises("bad argument #1 to 'snapshot' %(by: only counts%(%) counts by key%)", tcplab.snapshot, { by = "sport" })
  end)

  it("the awk counts and await_state check theirs", function()
    raises("bad argument #1 to 'netstat' %(table expected", tcplab.awk.netstat, "x")
    raises("bad argument #1 to 'ss' %(netns: path string expected%)", tcplab.awk.ss, { netns = 1 })
    raises("unknown state 'NOPE'", tcplab.await_state, { sport = 1, dport = 2, dst = "*" }, "NOPE", 0.01)
    for _, t in ipairs({ 0 / 0, -1, math.huge, "1" }) do
      raises("bad argument #3 to 'await_state' %(timeout: seconds >= 0 expected",
             tcplab.await_state, { sport = 1, dport = 2, dst = "*" }, "LISTEN", t)
    end
  end)

  it("await_state and observe.state reject what is no socket or four-tuple", function()
    raises("bad argument #1 to 'await_state' %(four%-tuple { sport, dport, dst %[, src%] } or socket expected, got nil%)",
           tcplab.await_state, nil, "LISTEN", 0)
    raises("bad argument #1 to 'await_state' %(sport: port 0..65535 expected, got nil%)", tcplab.await_state, {}, "LISTEN", 0)
    raises("bad argument #1 to 'await_state' %(dst: address or \"%*\" expected, got nil%)",
           tcplab.await_state, { sport = 1, dport = 2 }, "CLOSED", 0)
    raises("bad argument #1 to 'state' %(four%-tuple .* got string \"x\"%)", tcplab.observe.state, "x")
    raises("bad argument #1 to 'state' %(dport: port 0..65535 expected, got string \"2\"%)",
           tcplab.observe.state, { sport = 1, dport = "2", dst = "*" })
    raises("bad argument #1 to 'state' %(src: address or nil expected, got 5%)",
           tcplab.observe.state, { sport = 1, dport = 2, dst = "*", src = 5 })
    -- a socket is still taken as it is
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    assert.same({ true, "LISTEN" }, { tcplab.await_state(l, "LISTEN", 2) })
  end)

  it("await_state takes CLOSED in any case, as the dump's 'gone'", function()
    for _, spelling in ipairs({ "CLOSED", "closed", "Closed" }) do
      assert.same({ true, "CLOSED" }, { tcplab.await_state({ sport = 1, dport = 2, dst = "*" }, spelling, 0) })
    end
  end)
end)

describe("every field of every table argument, given a wrong type #kernel", function()
  -- In a child process: a segfault (backend = true once was one) kills the
  -- child and fails this test instead of the suite.
  local out = support.slurp("lua5.4 spec/fixtures/badargs_walk.lua 2>&1; echo rc=$?")
  local cases = {}
  for line in out:gmatch("[^\n]+") do
    local fname, field, value, ok, err = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
    if fname then cases[#cases + 1] = { fname = fname, field = field, value = value, ok = ok, err = err } end
  end

  it("the child walked every case and ended normally", function()
    assert.matches("\ndone %d+\nrc=0\n$", out)
    assert.equal(tonumber(out:match("\ndone (%d+)\n")), #cases)
    assert.is_true(#cases >= 490, "only " .. #cases .. " cases")
    for _, fname in ipairs({ "snapshot", "counts", "summary", "tcpstat", "lab", "start", "drop", "bpf_trace" }) do
      local seen = false
      for _, c in ipairs(cases) do seen = seen or c.fname == fname end
      assert.is_true(seen, fname .. " not walked")
    end
  end)

  it("each raises an error naming the field and what it expects, at the caller's line", function()
    for _, c in ipairs(cases) do
      local what = ("%s{ %s = %s }"):format(c.fname, c.field, c.value)
      assert.equal("false", c.ok, what .. " did not raise")
      assert.matches("^[^ ]*badargs_walk%.lua:%d+: ", c.err, what)
      assert.is_truthy(c.err:find(c.field, 1, true), what .. ": " .. c.err)
      assert.is_truthy(c.err:find("expected", 1, true) or c.err:find("unknown", 1, true), what .. ": " .. c.err)
    end
  end)

  it("snapshot, counts and summary with backend = true, {} or false raise instead of crashing", function()
    for _, fname in ipairs({ "snapshot", "counts", "summary" }) do
      for _, v in ipairs({ "true", "table", "false" }) do
        local found
        for _, c in ipairs(cases) do
          if c.fname == fname and c.field == "backend" and c.value == v then found = c end
        end
        assert.is_table(found, fname .. " backend = " .. v)
        assert.matches("backend: one of auto .* expected, got " .. v, found.err)
      end
    end
  end)
end)

describe("filters that cannot match say so #kernel", function()
  it("family 'inet' with an IPv6 src or dst is an error, not an empty answer", function()
    for _, f in ipairs({ tcplab.snapshot, tcplab.counts }) do
      local ok, err = pcall(f, { family = "inet", src = "::1" })
      assert.is_false(ok)
      assert.matches("src: an IPv6 address never matches family 'inet' sockets", err)
      ok, err = pcall(f, { family = "inet", dst = "fe80::/10" })
      assert.is_false(ok)
      assert.matches("dst: an IPv6 address never matches family 'inet' sockets", err)
    end
    -- a v4 prefix with inet6 is meaningful (v4-mapped addresses): no error
    assert.is_table(tcplab.counts{ family = "inet6", src = "127.0.0.1" })
    assert.is_table(tcplab.counts{ family = "inet", src = "127.0.0.1" })
  end)

  it("an argument error points at the line that passed the argument, not into the library", function()
    local ok, err = pcall(function() local r = tcplab.counts{ backend = 1 } return r end)
    assert.is_false(ok)
    assert.matches("^spec/badargs_spec%.lua:%d+: bad argument #1 to 'counts'", err)
    ok, err = pcall(function() local r = tcplab.summary{ states = "nope" } return r end)
    assert.is_false(ok)
    assert.matches("^spec/badargs_spec%.lua:%d+: bad argument #1", err)
    ok, err = pcall(function() local r = tcplab.tcpstat{ ports = { "x" } } return r end)
    assert.is_false(ok)
    assert.matches("^spec/badargs_spec%.lua:%d+: bad argument #1 to 'tcpstat' %(ports%[1%]", err)
  end)
end)

describe("out of file descriptors #kernel", function()
  it("a module that cannot be opened says so, and a command that cannot start names only the program", function()
    local script = [[
      local t = require "tcplab"
      local sys = require "tcplab.sys"
      local keep = {}
      for _ = 1, 4096 do
        local f = io.open("/dev/null")
        if not f then break end
        keep[#keep + 1] = f
      end
      local _, err = pcall(function() return t.fault end)
      io.write(tostring(err), "\n")
      io.write(tostring(select(2, sys.popen("nft", "nft list tables 2>&1 # " .. ("x"):rep(1500)))), "\n")]]
    local out = support.slurp("ulimit -n 32; lua5.4 -e " .. support.shq(script) .. " 2>&1")
    assert.matches("cannot load tcplab.fault: Too many open files\n", out)
    assert.matches("\nnft: Too many open files\n$", out)
    assert.is_true(#out < 200, out)
  end)
end)
