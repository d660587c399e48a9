local tcplab = require "tcplab"
local support = require "support"

local function find(recs, pred)
  for _, r in ipairs(recs) do if pred(r) then return r end end
end

describe("snapshot{ owners = true } #kernel #root", function()
  if not support.is_root() then
    pending("needs root: a network namespace of our own, and every process's fds")
    return
  end
  setup(function() assert(tcplab.netns.unshare()) end)

  local srv, port
  before_each(function()
    srv = assert(tcplab.listen("127.0.0.1", 0, 8))
    port = select(2, srv:getsockname())
  end)
  after_each(function() srv:close() end)

  it("names this process and the fd for each of our sockets", function()
    local cli <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    local conn <close> = assert(srv:accept(2))
    local recs = assert(tcplab.snapshot{ sport = port, owners = true })
    local me = support.pid()
    local lst = assert(find(recs, function(r) return r.state == "LISTEN" end))
    local acc = assert(find(recs, function(r) return r.state == "ESTABLISHED" end))
    assert.same({ pid = me, fd = srv:fileno() }, { pid = lst.owners[1].pid, fd = lst.owners[1].fd })
    assert.equal(1, #lst.owners)
    assert.equal(1, #acc.owners)
    assert.equal(conn:fileno(), acc.owners[1].fd)
    local f <close> = assert(io.open("/proc/self/comm"))
    local comm = f:read("l")
    assert.equal(comm, lst.owners[1].comm)
    assert.equal(0, recs.owners_unreadable)
    assert.is_nil(lst.owners_incomplete)
  end)

  it("writes an unowned socket's owners as an empty JSON array (list --owners --format json)", function()
    local cli <close> = assert(tcplab.connect("127.0.0.1", port, 2))   -- never accepted: no fd holds its peer
    local out, rc = support.tcplab(("list --owners --format json --sport %d --state established"):format(port))
    assert.equal(0, rc, out)
    local recs = require("cjson").decode(out)
    assert.equal(1, #recs, out)
    assert.equal(0, recs[1].inode)
    assert.matches('"owners":%[%]', out)
    assert.is_nil(out:find('"owners":{}', 1, true), out)
  end)

  it("lists both processes holding one socket after a fork, each with its fd", function()
    -- bash connects (fd 3) and forks lua5.4, which inherits fd 3 and waits on stdin.
    local child = assert(io.popen(("exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; lua5.4 -e \"io.read(\\\"a\\\")\"; true'")
      :format(port), "w"))
    local conn <close> = assert(srv:accept(5))
    -- until the child has exec'd lua5.4 (between fork and exec it is a second "bash")
    local rec = support.wait_for(function()
      local recs = assert(tcplab.snapshot{ dport = port, states = "ESTABLISHED", owners = true })
      local o = #recs == 1 and recs[1].owners or {}
      return #o == 2 and (o[1].comm == "lua5.4" or o[2].comm == "lua5.4") and recs[1]
    end, 5)
    local bash, lua
    if rec then
      for _, o in ipairs(rec.owners) do
        if o.comm == "bash" then bash = o elseif o.comm == "lua5.4" then lua = o end
      end
    end
    -- before the child goes: the parent/child relation, read from /proc
    local function has(list, x) for _, v in ipairs(list) do if v == x then return true end end return false end
    local bash_is_ours = bash and has(support.children(support.pid()), bash.pid)
    local lua_is_bashs = bash and lua and has(support.children(bash.pid), lua.pid)
    child:close()
    assert.truthy(rec, "the client socket with two owners")
    assert.same({ comm = "bash", fd = 3 }, { comm = bash.comm, fd = bash.fd })
    assert.same({ comm = "lua5.4", fd = 3 }, { comm = lua.comm, fd = lua.fd })
    assert.is_true(bash_is_ours)
    assert.is_true(lua_is_bashs)

  end)

  it("gives a TIME_WAIT record an empty owners list (nothing holds it)", function()
    local cli = assert(tcplab.connect("127.0.0.1", port, 2))
    local conn <close> = assert(srv:accept(2))
    local t = tcplab.observe.tuple(cli)
    cli:close()
    assert.equal("", conn:read(10, 2))
    conn:close()
    assert.is_true(tcplab.observe.await(t, "TIME_WAIT", 2))
    local recs = assert(tcplab.snapshot{ dport = port, states = "TIME_WAIT", owners = true })
    local tw = assert(find(recs, function(r) return r.sport == t.sport end))
    assert.equal(0, tw.inode)
    assert.same({}, tw.owners)
    assert.is_nil(tw.owners_incomplete)
  end)

  it("builds an owners column (and owners_incomplete) with columns = true", function()
    local cols = assert(tcplab.snapshot{ sport = port, owners = true, columns = true })
    assert.equal(1, cols.n)
    assert.equal(srv:fileno(), cols.owners[1][1].fd)
    assert.equal(false, cols.owners_incomplete[1])
    assert.equal(0, cols.owners_unreadable)
  end)

  it("as another user, says which owners it could not see instead of failing", function()
    local asan = os.getenv("TCPLAB_ASAN_CHILD_OPTIONS")
    local out, rc = support.tcplab(("list --owners --state LISTEN --sport %d"):format(port), {
      env = asan and ("ASAN_OPTIONS=" .. asan) or "",
      bin = "setpriv --reuid 65534 --regid 65534 --clear-groups bin/tcplab" })
    assert.equal(0, rc, out)
    local line = out:match("\n(LISTEN[^\n]*)")
    assert.truthy(line, out)
    assert.is_nil(line:find("users:", 1, true))   -- our fds are root's: not readable
    assert.truthy(line:find("(incomplete)", 1, true), line)
    local n = tonumber(out:match("%((%d+) processes' fds could not be read"))
    assert.truthy(n and n >= 1, out)
  end)

  it("tcplab list --owners prints the users: field that ss -tanp prints for our listener", function()
    local out, rc = support.tcplab(("list --owners --state LISTEN --sport %d"):format(port))
    assert.equal(0, rc, out)
    local ours = out:match("(users:%(.-%)%))")
    local ss = support.slurp(("ss -tanpH state listening 'sport = :%d'"):format(port))
    local theirs = ss:match("(users:%(.-%)%))")
    assert.truthy(theirs, ss)
    assert.equal(theirs, ours)
    assert.truthy(ours:find(("pid=%d,fd=%d"):format(support.pid(), srv:fileno()), 1, true))
  end)

  it("finds the same owners by either walk (iter/task_file where it loads, /proc/PID/fd)", function()
    local c = assert(tcplab.socket("inet"))
    assert(c:connect("127.0.0.1", port, 5))
    local a = assert(srv:accept(5))
    local cmd = ("list --owners --sport %d"):format(port)
    local asan = os.getenv("TCPLAB_ASAN_CHILD_OPTIONS")
    local env = asan and ("ASAN_OPTIONS=" .. asan .. " ") or ""
    local auto, rc1 = support.tcplab(cmd, { env = env })
    local proc, rc2 = support.tcplab(cmd, { env = env .. "TCPLAB_OWNERS_WALK=proc" })
    assert.equal(0, rc1, auto)
    assert.equal(0, rc2, proc)
    assert.equal(proc, auto)
    assert.truthy(proc:find(("pid=%d,fd=%d"):format(support.pid(), a:fileno()), 1, true), proc)
    local recs = assert(tcplab.snapshot{ owners = true, sport = port })
    assert.truthy(recs.owners_walk == "bpf" or recs.owners_walk == "proc")
    c:close()
    a:close()
  end)
end)
