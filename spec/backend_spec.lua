local tcplab = require "tcplab"
local support = require "support"

-- The sources of socket records know nothing of Lua: every file behind
-- backend.h builds against a lua.h (and lauxlib.h) that is an #error.
describe("the backend side of the C core #unit", function()
  local LUA_FREE = { "csrc/backend.c", "csrc/setns.c", "csrc/owners.c", "csrc/result.c", "csrc/bykey.c" }
  for _, path in ipairs(support.lines("ls csrc/diag_*.c csrc/bpf_*.c")) do LUA_FREE[#LUA_FREE + 1] = path end

  it("builds without Lua: including lua.h there is a compile error", function()
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    for _, h in ipairs({ "lua.h", "lauxlib.h", "lualib.h" }) do
      local f = assert(io.open(dir .. "/" .. h, "w"))
      f:write('#error "the backend side of tcplab must not include Lua"\n')
      f:close()
    end
    -- cc without the sanitizer runtime make test-asan preloads into this process
    local cc = "env -u LD_PRELOAD cc"
    local flags = ("-std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -fsyntax-only -I%s"):format(dir)
    -- the trap works: a file that includes lua.h fails
    local trap = support.slurp(("printf '#include <lua.h>\\n' | %s %s -x c - 2>&1; echo rc=$?"):format(cc, flags))
    local results = {}
    for _, path in ipairs(LUA_FREE) do
      results[path] = support.slurp(("%s %s %s 2>&1; echo rc=$?"):format(cc, flags, path))
    end
    os.execute("rm -rf " .. dir)
    assert.matches("must not include Lua", trap)
    assert.is_true(#LUA_FREE >= 7)
    for path, out in pairs(results) do assert.equal("rc=0\n", out, path) end
  end)

  it("backend.h and diag.h include no Lua header and no Lua-side tcplab header", function()
    for _, h in ipairs({ "csrc/backend.h", "csrc/diag.h", "csrc/bpf.h" }) do
      local text = assert(io.open(h)):read("a")
      assert.is_nil(text:match('#include%s*[<"]l[a-z]*%.h[>"]'), h)
      assert.is_nil(text:find('"tcplab.h"', 1, true), h)
      assert.is_nil(text:find('"aux.h"', 1, true), h)
    end
  end)
end)

describe("tcplab.errno #unit", function()
  it("holds this system's errno values by name", function()
    local e = tcplab.errno
    assert.equal(tcplab.core.errno, e)
    assert.equal(111, e.ECONNREFUSED)
    assert.equal(104, e.ECONNRESET)
    assert.equal(110, e.ETIMEDOUT)
    assert.equal(11, e.EAGAIN)
    assert.equal(e.EAGAIN, e.EWOULDBLOCK)
    assert.equal(98, e.EADDRINUSE)
    assert.equal(115, e.EINPROGRESS)
    for _, name in ipairs({ "EPERM", "ENOENT", "EINTR", "EINVAL", "EADDRNOTAVAIL", "ECONNABORTED",
                            "EALREADY", "EISCONN", "ENOTCONN", "EPIPE", "ENOBUFS", "EMFILE", "ENFILE",
                            "EHOSTUNREACH", "ENETUNREACH", "ENOTSOCK", "EBADF", "ENOMEM", "EPROTO",
                            "ENOSPC" }) do
      assert.equal("integer", math.type(e[name]), name)
    end
  end)

  it("is what the calls return as their third value", function()
    local s <close> = assert(tcplab.socket("inet"))
    local l = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    l:close()
    assert.equal(tcplab.errno.ECONNREFUSED, select(3, s:connect("127.0.0.1", port, 1)))
  end)
end)

describe("tcplab.backend() #kernel", function()
  it("names the backend that answers and says which are available", function()
    local name, avail = tcplab.backend()
    assert.is_true(avail.netlink)
    assert.equal(avail.bpf == true and "bpf" or "netlink", name)
    if avail.bpf ~= true then assert.matches("^bpf: ", avail.bpf) end
    assert.equal("netlink", (tcplab.backend("netlink")))
    assert.equal(name, (tcplab.backend("auto")))
    assert.equal(avail.bpf == true and "bpf" or nil, (tcplab.backend("bpf")))
  end)

  it("rejects an unknown backend listing the valid ones", function()
    local ok, err = pcall(tcplab.backend, "ebpf")
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'backend' %(one of auto bpf netlink expected, got string \"ebpf\"%)", err)
    ok, err = pcall(tcplab.snapshot, { backend = "ebpf" })
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'snapshot' %(backend: one of auto bpf netlink expected, got string \"ebpf\"%)", err)
  end)

  it("a filter may name it: two different backends give the same counts and records", function()
    local _, avail = tcplab.backend()
    if not support.is_root() or avail.bpf ~= true then
      pending("needs root and the bpf backend: netlink is compared with bpf, in a namespace of our own")
      return
    end
    local core = tcplab.core
    local here <close> = assert(core.netns.open())
    local ok, err = pcall(function()
      local fresh <close> = assert(core.netns.unshare())
      local l <close> = assert(tcplab.listen("127.0.0.1", 0, 8))
      local port = select(2, l:getsockname())
      local c <close> = assert(tcplab.connect("127.0.0.1", port, 2))
      local a <close> = assert(l:accept(2))
      local queued <close> = assert(tcplab.connect("127.0.0.1", port, 2))
      local n = assert(tcplab.counts{ backend = "netlink" })
      assert.equal("netlink", core._dump_backend())
      local b = assert(tcplab.counts{ backend = "bpf" })
      assert.equal("bpf", core._dump_backend())
      assert.same({ LISTEN = 1, ESTABLISHED = 4 }, n)
      assert.same(n, b)
      local function keys(recs)
        local out = {}
        for i, r in ipairs(recs) do out[i] = table.concat({ r.state, r.src, r.sport, r.dst, r.dport, r.inode, r.cookie }, " ") end
        table.sort(out)
        return out
      end
      assert.same(keys(assert(tcplab.snapshot{ backend = "netlink" })), keys(assert(tcplab.snapshot{ backend = "bpf" })))
    end)
    assert(here:enter())
    assert(ok, err)
  end)
end)

describe("core.snapshot/core.counts take one filter table, checked in C #unit", function()
  local core = tcplab.core
  local function raises(pattern, f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok)
    assert.matches(pattern, err)
  end

  it("name the function in every message, with the fields of the Lua API", function()
    for name, f in pairs({ snapshot = core.snapshot, counts = core.counts }) do
      local pre = "bad argument #1 to '" .. name .. "' %("
      raises(pre .. "filter table expected, got string%)", f, "x")
      raises(pre .. "unknown filter field 'state'; valid: states family sport dport port info netns columns backend owners by src dst%)",
             f, { state = 1 })
      raises(pre .. "states: bit mask 0..0xffffffff expected, got %-1%)", f, { states = -1 })
      raises(pre .. "states: bit mask 0..0xffffffff expected, got string \"LISTEN\"%)", f, { states = "LISTEN" })
      raises(pre .. "sport: port 0..65535 expected, got string \"8080\" %(a range: \"LO%-HI\" or {lo, hi}%)%)", f, { sport = "8080" })
      raises(pre .. "dport: port 0..65535 expected, got 80.0 %(a range: \"LO%-HI\" or {lo, hi}%)%)", f, { dport = 80.0 })
      raises(pre .. "family: 'inet', 'inet6' or nil expected, got string \"unix\"%)", f, { family = "unix" })
      raises(pre .. "info: boolean expected, got number%)", f, { info = 1 })
      raises(pre .. "columns: boolean expected, got string%)", f, { columns = "yes" })
      raises(pre .. "netns: path string expected%)", f, { netns = 7 })
    end
  end)

  it("a states mask selects by kernel state number", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    assert.same({ LISTEN = 1 }, core.counts{ states = 1 << 10, sport = port })
    assert.same({}, core.counts{ states = 1 << 1, sport = port })
    assert.equal(1, #core.snapshot{ sport = port })
    assert.equal(1, core.snapshot{ sport = port, columns = true }.n)
  end)
end)

-- "auto" chooses per operation (doc/performance.md): counts with the iterator
-- from the measured crossover on, snapshot and counts by key with sock_diag.
-- The crossover is a setting (core._bpf_min_sockets), so both of its sides
-- are tried in a namespace of ours holding a handful of sockets.
describe("auto per operation", function()
  local core = tcplab.core

  support.as_root(it, pending, "follows each operation's rule at both sides of its crossover and says what answered", function()
    if tcplab.backend("bpf") ~= "bpf" then
      pending("the bpf backend is not usable here: " .. tostring(select(2, tcplab.backend()).bpf))
      return
    end
    local before = {}
    for _, op in ipairs({ "snapshot", "counts", "counts_by" }) do before[op] = core._bpf_min_sockets(op) end
    -- the measured rule, as shipped
    assert.equal(math.maxinteger, before.snapshot)
    assert.equal(math.maxinteger, before.counts_by)
    assert.is_true(before.counts > 100 and before.counts < 100000)
    local home = assert(tcplab.netns.open())
    local made, keep = nil, {}
    local ok, err = pcall(function()
      made = assert(tcplab.netns.unshare())   -- only our sockets: the count is exact
      local l = assert(tcplab.listen("127.0.0.1", 0, 16))
      keep[#keep + 1] = l
      local port = select(2, l:getsockname())
      for _ = 1, 3 do
        keep[#keep + 1] = assert(tcplab.connect("127.0.0.1", port, 2))
        keep[#keep + 1] = assert(l:accept(2))
      end
      local n = 0
      for _, v in pairs(assert(tcplab.counts{ backend = "netlink" })) do n = n + v end
      assert.equal(7, n)
      local function answered(f, filter)
        assert(f(filter))
        return tcplab.answered_by()
      end
      -- shipped rule: a namespace of 7 sockets is below every crossover
      assert.equal("netlink", answered(tcplab.counts, {}))
      assert.equal("netlink", answered(tcplab.snapshot, {}))
      -- counts: bpf from n sockets on, netlink below
      core._bpf_min_sockets("counts", n)
      assert.equal("bpf", answered(tcplab.counts, {}))
      assert.equal("netlink", answered(tcplab.snapshot, {}))   -- snapshot keeps its own rule
      assert.equal("netlink", answered(tcplab.counts, { by = "sport" }))
      core._bpf_min_sockets("counts", n + 1)
      assert.equal("netlink", answered(tcplab.counts, {}))
      -- snapshot: the same, with its own setting
      core._bpf_min_sockets("snapshot", n)
      assert.equal("bpf", answered(tcplab.snapshot, {}))
      assert.equal("netlink", answered(tcplab.counts, {}))     -- counts keeps n + 1
      core._bpf_min_sockets("snapshot", n + 1)
      assert.equal("netlink", answered(tcplab.snapshot, {}))
      -- counts by key: the program has no keys, whatever the setting
      core._bpf_min_sockets("counts_by", 0)
      assert.equal("netlink", answered(tcplab.counts, { by = "dport" }))
      -- a backend named is the one that answers
      assert.equal("bpf", answered(tcplab.snapshot, { backend = "bpf" }))
    end)
    for op, v in pairs(before) do core._bpf_min_sockets(op, v) end
    for i = #keep, 1, -1 do keep[i]:close() end
    assert(home:enter())
    home:close()
    if made then made:close() end
    assert(ok, err)
  end)

  it("the setting names the operation", function()
    local ok, err = pcall(core._bpf_min_sockets, "list")
    assert.is_false(ok)
    assert.matches("invalid option 'list'", err)
  end)
end)
