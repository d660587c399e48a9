-- tcplab kill / tcplab.kill: SOCK_DESTROY like ss -K, only ever in a network
-- namespace this spec made (never the host's sockets).
local support = require "support"
local tcplab = require "tcplab"
local cjson = require "cjson"

local run = support.tcplab
local E = tcplab.errno

-- A listener and one accepted connection: { srv, port, cli, conn }, closed
-- as a whole (a to-be-closed value).
local Pair = { __close = function(p) p.conn:close() p.cli:close() p.srv:close() end }
local function pair(host)
  local srv = assert(tcplab.listen(host or "127.0.0.1", 0, 8))
  local port = select(2, srv:getsockname())
  local cli = assert(tcplab.connect("127.0.0.1", port, 2))
  local conn = assert(srv:accept(2))
  return setmetatable({ srv = srv, port = port, cli = cli, conn = conn }, Pair)
end

local function cookies(f)
  local out = {}
  for _, r in ipairs(assert(tcplab.snapshot(f))) do out[#out + 1] = r.cookie end
  table.sort(out)
  return out
end

describe("tcplab kill #kernel #root", function()
  if not support.is_root() then
    pending("needs root: SOCK_DESTROY, and a network namespace of our own")
    return
  end
  setup(function() assert(tcplab.netns.unshare()) end)

  it("closes the server end of a connected pair by --sport: the peer reads ECONNRESET, the socket is gone", function()
    local p <close> = pair()
    local srv, port, cli, conn = p.srv, p.port, p.cli, p.conn
    local out, rc = run(("kill --sport %d --state established"):format(port))
    assert.equal(0, rc, out)
    assert.matches(("closed ESTABLISHED 127%%.0%%.0%%.1:%d %%-> 127%%.0%%.0%%.1:%d\n"):format(port,
      select(2, cli:getsockname())), out)
    assert.matches("\n1 closed\n$", out)
    -- the kernel's answer on both ends: a RST to the peer, an abort here
    local data, err, errno = cli:read(10, 2)
    assert.is_nil(data, err)
    assert.equal(E.ECONNRESET, errno, err)
    data, err, errno = conn:read(10, 2)
    assert.is_nil(data)
    assert.equal(E.ECONNABORTED, errno, err)
    -- gone from the dump, the listener kept
    assert.same({}, cookies{ port = port, states = { "ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT" } })
    assert.equal(1, #assert(tcplab.snapshot{ sport = port, states = "LISTEN" }))
  end)

  it("--dry-run lists what it would close and closes nothing", function()
    local p <close> = pair()
    local srv, port, cli, conn = p.srv, p.port, p.cli, p.conn
    local before = cookies{ port = port }
    assert.equal(3, #before)
    local out, rc = run(("kill --port %d --dry-run"):format(port))
    assert.equal(0, rc, out)
    local n = 0
    for _ in out:gmatch("would close [%u_]+ [^\n]+\n") do n = n + 1 end
    assert.equal(3, n, out)
    assert.matches("3 sockets would be closed %(dry run: nothing closed%)", out)
    assert.same(before, cookies{ port = port })
    -- both ends still talk
    assert.truthy(cli:write("ping"))
    assert.equal("ping", conn:read(4, 2))
    -- the library's dry run too
    local results = assert(tcplab.kill({ port = port }, { dry_run = true }))
    assert.equal(3, #results)
    for _, r in ipairs(results) do
      assert.is_true(r.dry_run)
      assert.matches("^would close ", tostring(r))
    end
    assert.same(before, cookies{ port = port })
  end)

  it("refuses an empty filter (exit 2) and one of --family or --netns only; the library raises", function()
    local p <close> = pair()
    local srv, port, cli, conn = p.srv, p.port, p.cli, p.conn
    local before = cookies{ port = port }
    for _, args in ipairs({ "", "--family inet", "--netns /proc/self/ns/net", "--dry-run" }) do
      local out, rc = run("kill " .. args)
      assert.equal(2, rc, args .. ": " .. out)
      assert.matches("a filter is required", out)
    end
    assert.error_matches(function() tcplab.kill{} end, "names no socket in particular")
    assert.error_matches(function() tcplab.kill{ family = "inet" } end, "names no socket in particular")
    assert.error_matches(function() tcplab.kill{ states = {} } end, "names no socket in particular")
    assert.error_matches(function() tcplab.kill() end, "filter table expected")
    assert.error_matches(function() tcplab.kill({ port = port }, { dry_run = "yes" }) end, "dry_run: boolean")
    assert.same(before, cookies{ port = port })
  end)

  it("kills a LISTEN socket: accept fails, a new connect is refused", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0, 8))
    local port = select(2, srv:getsockname())
    local out, rc = run(("kill --sport %d --state listen"):format(port))
    assert.equal(0, rc, out)
    assert.matches(("closed LISTEN 127%%.0%%.0%%.1:%d"):format(port), out)
    assert.same({}, cookies{ sport = port })
    local s, err, errno = srv:accept(0.5)
    assert.is_nil(s)
    assert.equal(E.EINVAL, errno, err)
    s, err, errno = tcplab.connect("127.0.0.1", port, 2)
    assert.is_nil(s)
    assert.equal(E.ECONNREFUSED, errno, err)
  end)

  it("kills both ends of a pair: the second may be gone already (not a failure)", function()
    local p <close> = pair()
    local srv, port, cli, conn = p.srv, p.port, p.cli, p.conn
    local out, rc = run(("kill --port %d --state established --format json"):format(port))
    assert.equal(0, rc, out)
    local doc = cjson.decode(out)
    assert.equal(2, #doc.sockets, out)
    assert.equal(0, doc.failed)
    assert.equal(2, doc.closed + doc.gone, out)
    assert.equal("closed", doc.sockets[1].result)
    assert.same({}, cookies{ port = port, states = "ESTABLISHED" })
  end)

  it("tcplab.kill returns one result per socket, closes v4-mapped sockets of an inet6 listener", function()
    local p <close> = pair("::")
    local srv, port, cli, conn = p.srv, p.port, p.cli, p.conn
    local results = assert(tcplab.kill{ sport = port, states = "ESTABLISHED" })
    assert.equal(1, #results)
    local r = results[1]
    assert.is_true(r.ok, tostring(r))
    assert.equal("inet6", r.record.family)
    assert.matches(("^closed ESTABLISHED 127%%.0%%.0%%.1:%d %%-> "):format(port), tostring(r))
    local _, err, errno = cli:read(10, 2)
    assert.equal(E.ECONNRESET, errno, err)
  end)

  it("a socket whose cookie changed is left alone (ENOENT, reported as gone)", function()
    local p <close> = pair()
    local srv, port, cli, conn = p.srv, p.port, p.cli, p.conn
    local rec = assert(tcplab.snapshot{ sport = port, states = "ESTABLISHED" })[1]
    rec.cookie = rec.cookie + 1
    local res = tcplab.core.destroy({ rec })
    assert.is_false(res[1].ok)
    assert.equal(E.ENOENT, res[1].errno)
    assert.truthy(cli:write("still"))
    assert.equal("still", conn:read(5, 2))
  end)

  it("kills only the sockets of --pid", function()
    local p <close> = pair()
    local srv, port, cli, conn = p.srv, p.port, p.cli, p.conn
    local h = assert(io.popen(("exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; echo $$; exec sleep 30'"):format(port)))
    local pid = tonumber(h:read("l"))
    local theirs <close> = assert(srv:accept(5))
    local ok, err = pcall(function()
      local out, rc = run(("kill --pid %d"):format(pid))
      assert.equal(0, rc, out)
      assert.matches("\n1 closed\n$", out)
      -- its one socket gone (our end of it reads the RST), ours untouched
      local _, rerr, errno = theirs:read(10, 2)
      assert.equal(E.ECONNRESET, errno, rerr)
      assert.truthy(cli:write("ours"))
      assert.equal("ours", conn:read(4, 2))
    end)
    os.execute(("kill %d 2>/dev/null"):format(pid))
    h:close()
    assert(ok, err)
  end)

  it("exits 1 and says why when the kernel refuses (EPERM without CAP_NET_ADMIN)", function()
    local p <close> = pair()
    local srv, port, cli, conn = p.srv, p.port, p.cli, p.conn
    local out, rc = run(("kill --sport %d --state established"):format(port),
                        { bin = "setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all bin/tcplab" })
    assert.equal(1, rc, out)
    assert.matches("failed ESTABLISHED 127%.0%.0%.1:" .. port .. " %-> [^\n]+ %(Operation not permitted%)", out)
    assert.matches("0 closed, 1 failed", out)
    assert.truthy(cli:write("alive"))
    assert.equal("alive", conn:read(5, 2))
  end)

  it("core.destroy rejects a malformed record naming the field", function()
    assert.error_matches(function() tcplab.core.destroy({ 5 }) end, "sockets%[1%]: a socket record")
    local rec = { family = "inet", src = "127.0.0.1", sport = 1, dst = "127.0.0.1", dport = 2, cookie = 1 }
    local function with(k, v)
      local r = {}
      for kk, vv in pairs(rec) do r[kk] = vv end
      r[k] = v
      return { r }
    end
    assert.error_matches(function() tcplab.core.destroy(with("family", "unix")) end, "sockets%[1%]%.family")
    assert.error_matches(function() tcplab.core.destroy(with("src", "::1")) end, "sockets%[1%]%.src")
    assert.error_matches(function() tcplab.core.destroy(with("dport", 70000)) end, "sockets%[1%]%.dport")
    assert.error_matches(function() tcplab.core.destroy(with("cookie", "x")) end, "sockets%[1%]%.cookie")
    assert.same({}, tcplab.core.destroy({}))
  end)
end)
