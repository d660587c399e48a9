local tcplab = require "tcplab"
local support = require "support"
local lab_check = require "tcplab.busted"

-- A lab runs the command in a network namespace of its own: root only.
local it_root = function(name, body) support.as_root(it, pending, name, body) end

local PORT = 8080
local function server(name, port, ...)
  return { "lua5.4", "spec/servers/" .. name .. ".lua", tostring(port or PORT), ... }
end

-- Nothing of a lab is left: its processes, its recorder, its faults, and
-- the caller is home again.
local function assert_gone(home, pids)
  for _, p in ipairs(pids) do assert.is_false(support.alive(p), "process " .. p .. " left") end
  assert.same({}, tcplab.trace.instances())
  assert.equal(home, tcplab.netns.id(), "back in the caller's namespace")
  assert.is_nil(support.slurp("nsenter -t 1 -n nft list tables 2>&1"):match("tcplab"))
end

describe("tcplab.lab around a command #kernel #root", function()
  local home
  setup(function() home = tcplab.netns.id() end)

  it("refuses arguments that are not a command and a port", function()
    assert.has_error(function() tcplab.lab{ cmd = "./server 8080", port = 8080 } end,
      "bad argument #1 to 'lab' (cmd: list of strings expected (program and arguments))")
    assert.has_error(function() tcplab.lab{ cmd = { "x" }, port = 70000 } end,
      "bad argument #1 to 'lab' (port: 1..65535 expected, got 70000)")
    assert.has_error(function() tcplab.lab{ cmd = { "x" }, port = 1, grace = -1 } end,
      "bad argument #1 to 'lab' (grace: seconds 0..3600 expected, got -1)")
  end)

  it_root("starts the command in a namespace of its own and returns once its process listens", function()
    local lab = assert(tcplab.lab{ cmd = server("echo"), port = PORT })
    assert.are_not.equal(home, tcplab.netns.id())
    local lst = assert(lab:listeners())
    assert.equal(1, #lst)
    assert.equal(lab.pid, lst[1].owner.pid)
    assert.equal("lua5.4", lst[1].owner.comm)
    assert.equal(1, lab:counts{ states = "LISTEN" }.LISTEN)   -- only the server's socket in this namespace
    local c <close> = assert(lab:connect())
    assert(c:write("hello", 1))
    assert.equal("hello", c:read(5, 2))
    local srv_end = assert(lab:server_sockets{ states = "ESTABLISHED" })
    assert.equal(1, #srv_end)
    assert.equal(lab.pid, srv_end[1].owner.pid)
    local pid = lab.pid
    assert.is_true(lab:close())
    assert.is_true(lab:close())   -- idempotent
    assert.matches("listening on 127%.0%.0%.1:8080", (lab:output()))
    assert_gone(home, { pid })
  end)

  it_root("stops the whole process tree, and SIGKILLs a command that ignores SIGTERM after the grace period", function()
    -- the shell ignores SIGTERM and starts a sleep; the ignored signal stays ignored across exec
    local lab = assert(tcplab.lab{ port = PORT, grace = 0.3, cmd = { "sh", "-c",
      "trap '' TERM; sleep 300 & exec lua5.4 spec/servers/echo.lua " .. PORT } })
    local tree = lab:pids()
    assert.equal(2, #tree)
    local t0 = tcplab.now()
    assert.is_true(lab:close())
    assert.is_true(lab.killed)
    assert.is_true(tcplab.now() - t0 >= 0.3)
    assert_gone(home, tree)
  end)

  it_root("says a command that does not exist was not found", function()
    local lab, err = tcplab.lab{ cmd = { "./no-such-server", "8080" }, port = PORT }
    assert.is_nil(lab)
    assert.equal("command not found: ./no-such-server", err)
    assert_gone(home, {})
  end)

  it_root("reports a command that exits at once, with its exit status and output", function()
    local lab, err = tcplab.lab{ cmd = { "lua5.4", "-e", "io.stderr:write('cannot bind: config missing\\n') os.exit(3)" },
                                 port = PORT }
    assert.is_nil(lab)
    assert.matches("the command exited before listening on port 8080 %(exit 3%)\nstderr: cannot bind: config missing", err)
    assert_gone(home, {})
  end)

  it_root("gives up (bounded) on a command that never listens, and stops it", function()
    local t0 = tcplab.now()
    local lab, err = tcplab.lab{ cmd = { "sh", "-c", "echo starting; exec sleep 300" }, port = PORT, timeout = 0.5 }
    assert.is_nil(lab)
    assert.is_true(tcplab.now() - t0 < 3)
    assert.matches("the command never listened on port 8080 %(waited 0%.5 s%)\nstdout: starting", err)
    for _, child in ipairs(support.children(support.pid())) do
      local comm = support.slurp(("cat /proc/%d/comm 2>/dev/null"):format(child))
      assert.is_nil(comm:match("sleep"), "the command is left running")
    end
    assert_gone(home, {})
  end)

  it_root("names the port a command listens on when it is not the one expected", function()
    local lab, err = tcplab.lab{ cmd = server("echo", 9090), port = PORT, timeout = 0.5 }
    assert.is_nil(lab)
    assert.matches("the command listens on 127%.0%.0%.1:9090, not on port 8080", err)
    assert_gone(home, {})
  end)

  it_root("passes each argument as it is, with no shell in between", function()
    local lab, err = tcplab.lab{ cmd = { "echo", "$(touch /tmp/tcplab-injected); `id`" }, port = PORT, timeout = 0.5 }
    assert.is_nil(lab)
    assert.matches("stdout: %$%(touch /tmp/tcplab%-injected%); `id`", err)
    assert.is_nil(io.open("/tmp/tcplab-injected"))
  end)

  it_root("injects faults in the lab's namespace only", function()
    local lab <close> = assert(tcplab.lab{ cmd = server("echo"), port = PORT })
    local rule = assert(lab:drop{ segment = "syn", dport = PORT })
    local c, err = lab:connect(0.3)
    assert.is_nil(c)
    assert.equal("timeout", err)
    assert(rule:lift())
    assert(lab:connect(2)):close()
    lab:close()
    assert_gone(home, {})
  end)
end)

describe("tcplab.checks against three small servers #kernel #root", function()
  local home
  setup(function() home = tcplab.netns.id() end)
  local opts = { clients = 3, send = "ping\n" }

  it_root("a well-behaved echo server passes every check", function()
    local lab <close> = lab_check.lab{ cmd = server("echo"), port = PORT }
    local results, all = tcplab.checks.run_all(lab, opts)
    local pid = lab.pid
    lab:close()
    for _, r in ipairs(results) do assert(r.ok, r.name .. ": " .. r.evidence) end
    assert.is_true(all)
    assert.same({ "close-wait", "accept-queue", "time-wait", "half-close", "reset" },
                { results[1].name, results[2].name, results[3].name, results[4].name, results[5].name })
    assert.equal(0, results[1].close_wait)
    assert.equal(0, results[2].syn_sent)
    assert.equal(0, results[3].server_time_wait)   -- the client closes first
    assert.equal("ping\n", results[4].reply)
    assert.is_false(results[5].rst)
    assert.equal(require("support").recorder(), results[5].method)   -- the one trace.start picks
    assert_gone(home, { pid })
  end)

  it_root("a server that never closes fails close-wait, with the count and the oldest socket's owner", function()
    local lab <close> = lab_check.lab{ cmd = server("never_close"), port = PORT }
    local r = lab_check.fails(lab, "close-wait", opts)
    assert.equal(3, r.close_wait)
    assert.equal(lab.pid, r.oldest.owner.pid)
    assert.matches(("^3 in CLOSE_WAIT 1%%.0 s after 3 of 3 clients hung up; oldest 127%%.0%%.0%%.1:8080 <%%- [%%d.]+:%%d+ held by pid %d fd %d %%(lua5%%.4%%)")
      :format(lab.pid, r.oldest.owner.fd), r.evidence)
    lab_check.fails(lab, "half_close", opts)   -- it answers, then never closes its end
    lab:close()
    assert_gone(home, {})
  end)

  it_root("a server that sleeps before accepting shows the accept queue overflow", function()
    local lab <close> = lab_check.lab{ cmd = server("slow_accept"), port = PORT }
    local r = lab_check.fails(lab, "accept_queue", opts)
    assert.equal(2, r.backlog)
    assert.equal(3, r.deepest)           -- backlog + 1
    assert.is_true(r.listen_overflows >= 1 and r.listen_drops >= 1)
    assert.equal(r.burst - 3, r.syn_sent)   -- all but the three queued stay in SYN_SENT
    assert.matches("connections dropped while the server sat idle with a full queue", r.evidence)
    lab:close()
    assert_gone(home, {})
  end)

  it_root("a check of one's own has the scenarios' shape and runs like the built-in ones", function()
    local lab <close> = lab_check.lab{ cmd = server("echo"), port = PORT }
    local mine = { title = "greets", claim = "the server echoes a greeting",
      run = function(l, o)
        local c = assert(l:connect())
        assert(c:write("hi", 1))
        local got = c:read(2, 1)
        c:close()
        return { ok = got == "hi", evidence = ("read %q (clients option: %d)"):format(tostring(got), o.clients) }
      end }
    local r = lab_check.passes(lab, mine)
    assert.equal('read "hi" (clients option: 5)', r.evidence)
    assert.equal("the server echoes a greeting", r.claim)
  end)

  it_root("leaves no tracefs instance of this process and returns the caller home", function()
    assert.same({}, tcplab.trace.instances())
    assert.equal(home, tcplab.netns.id())
  end)
end)
