local support = require "support"
local tcplab = require "tcplab"

-- `tcplab check` as a user runs it (bin/tcplab, no LUA_PATH from the
-- harness); the servers it starts get the harness's paths explicitly.
local function server(name, port)
  return ("env LUA_PATH=%s LUA_CPATH=%s lua5.4 spec/servers/%s.lua %d"):format(
    support.shq(os.getenv("LUA_PATH") or ""), support.shq(os.getenv("LUA_CPATH") or ""), name, port or 8080)
end

local function check(args, name)
  return support.tcplab("check " .. args .. " -- " .. server(name))
end

describe("tcplab check: usage #unit", function()
  for _, case in ipairs({
    { "--port 8080", "cmd" },                        -- no command
    { "-- lua5.4 x.lua", "%-%-port is required" },
    { "--port 8080 --clients 0 -- x", "count 1%.%.1000" },
    { "--port 8080 --format yaml -- x", "must be one of 'text', 'json', 'junit'" },
    { "--port 8080 --timeout 0 -- x", "%-%-timeout: seconds more than 0, at most 3600 expected, got '0'" },
    { "--port 8080 --timeout=-3 -- x", "%-%-timeout: seconds more than 0, at most 3600 expected, got '%-3'" },
    { "--port 8080 --timeout nan -- x", "%-%-timeout: seconds" },
    { "--port 8080 --check nosuch -- x", "must be one of 'close%-wait'" },
    { "--port 99999 -- x", "port 0%.%.65535" },
    { "--port 8080 --send '\\x4' -- x", "bad \\x escape" },
  }) do
    it("exits 2 on: tcplab check " .. case[1], function()
      local out, rc = support.tcplab("check " .. case[1])
      assert.equal(2, rc, out)
      assert.matches(case[2], out)
      assert.is_nil(out:match("traceback"), out)
    end)
  end
end)

describe("tcplab check against three small servers #kernel #root", function()
  if not support.is_root() then
    pending("needs root: the command runs in a network namespace of its own")
    return
  end

  it("passes every check of the echo server: exit 0, one line per check", function()
    local out, rc = check("--port 8080 --clients 3 --send 'ping\\n'", "echo")
    assert.equal(0, rc, out)
    for _, name in ipairs({ "close%-wait", "accept%-queue", "half%-close", "reset" }) do
      assert.matches("\nPASS  " .. name, "\n" .. out)
    end
    assert.matches("\nINFO  time%-wait     the client closes first", out)
    assert.matches("5 checks, 0 failed", out)
  end)

  it("fails close-wait on the server that never closes: exit 1, the count and the owner", function()
    local out, rc = check("--port 8080 --clients 3", "never_close")
    assert.equal(1, rc, out)
    assert.matches("FAIL  close%-wait    3 in CLOSE_WAIT 1%.0 s after 3 of 3 clients hung up; oldest 127%.0%.0%.1:8080 <%- " ..
                   "[%d.]+:%d+ held by pid %d+ fd %d+ %(lua5%.4%)", out)
    assert.matches("\nSKIP  reset         not run: the server did not close its end", out)
    assert.matches("5 checks, 1 failed, 2 not run", out)   -- half-close: no --send
  end)

  it("fails close-wait when the server leaks one client of three (not only when it leaks all)", function()
    local out, rc = check("--port 8080 --clients 3", "leak_some")
    assert.equal(1, rc, out)
    assert.matches("\nFAIL  close%-wait    1 in CLOSE_WAIT 1%.0 s after 3 of 3 clients hung up; oldest ", "\n" .. out)
  end)

  it("shows the accept queue overflow of the server that sleeps before accepting, in JSON", function()
    local out, rc = check("--port 8080 --clients 3 --format json", "slow_accept")
    assert.equal(1, rc, out)
    local report = require("cjson").decode(out)
    assert.is_false(report.ok)
    assert.equal(5, #report.checks)
    local aq = report.checks[2]
    assert.equal("accept-queue", aq.name)
    assert.equal("FAIL", aq.verdict)
    assert.matches("^backlog 2, burst 6 to 127%.0%.0%.1: deepest accept queue 3, ListenOverflows %+%d+, ListenDrops %+%d+, " ..
                   "0 connected, 6 left in SYN_SENT, 0 refused", aq.evidence)
    assert.equal(1, report.exit)
    assert.equal("NOT RUN", report.checks[1].verdict)   -- close-wait: the server accepted nothing
    assert.equal("not run", report.checks[1].status)
    assert.is_false(report.checks[1].run)
  end)

  it("says a command that does not exist was not found: exit 3 (could not run)", function()
    local out, rc = support.tcplab("check --port 8080 -- ./no-such-server")
    assert.equal(3, rc, out)
    assert.equal("tcplab: check: command not found: ./no-such-server\n", out)
  end)

  it("reports a command that exits at once, with its output: exit 3 (could not run)", function()
    local out, rc = support.tcplab("check --port 8080 -- sh -c 'echo no config >&2; exit 4'")
    assert.equal(3, rc, out)
    assert.matches("the command exited before listening on port 8080 %(exit 4%)\nstderr: no config", out)
  end)

  -- the report written to a file and validated as CI would read it
  local function junit(args, name)
    local file = os.tmpname()
    local rc = tonumber(support.slurp(("env -u LUA_PATH -u LUA_CPATH bin/tcplab check %s --format junit -- %s >%s 2>/dev/null; echo $?")
      :format(args, server(name), file)))
    local xml = support.slurp("cat " .. file)
    local valid = support.slurp(("xmllint --noout --schema spec/fixtures/junit.xsd %s 2>&1; echo rc=$?"):format(file))
    os.remove(file)
    return xml, rc, valid
  end

  it("writes JUnit XML that validates against the JUnit schema: FAIL as <failure>, NOT RUN as <skipped>", function()
    local xml, rc, valid = junit("--port 8080 --clients 3", "never_close")
    assert.equal(1, rc, xml)
    assert.matches("validates\nrc=0\n$", valid)
    assert.matches('<testsuite name="tcplab check env [^"]*never_close%.lua 8080" tests="5" failures="1" errors="0" skipped="2"', xml)
    assert.matches('<testcase name="close%-wait" classname="tcplab%.check" time="[%d.]+">\n%s*<failure type="FAIL" ' ..
                   'message="3 in CLOSE_WAIT 1%.0 s after 3 of 3 clients hung up; oldest 127%.0%.0%.1:8080 &lt;%- ', xml)
    assert.matches('<testcase name="half%-close"[^>]*>\n%s*<skipped message="not run: needs a request %(%-%-send BYTES%)"/>', xml)
    assert.matches('<testcase name="reset"[^>]*>\n%s*<skipped message="not run: the server did not close its end', xml)
    assert.matches('<testcase name="time%-wait"[^>]*>\n%s*<system%-out>INFO: ', xml)
    assert.matches('<property name="exit" value="1"/>', xml)
    local n = 0
    for _ in xml:gmatch("<testcase ") do n = n + 1 end
    assert.equal(5, n)
  end)

  it("a JUnit report of a well-behaved server has no failure and no skip: exit 0", function()
    local xml, rc, valid = junit("--port 8080 --clients 3 --send 'ping\\n'", "echo")
    assert.equal(0, rc, xml)
    assert.matches("validates\nrc=0\n$", valid)
    assert.matches('tests="5" failures="0" errors="0" skipped="0"', xml)
    assert.is_nil(xml:match("<failure") or xml:match("<skipped"), xml)
  end)

  it("a run that could not start still writes a valid JUnit report (one <error>), exit 3", function()
    local xml, rc, valid = junit("--port 8080", "no_such_server")
    assert.equal(3, rc, xml)
    assert.matches("validates\nrc=0\n$", valid)
    assert.matches('<testcase name="lab"[^>]*>\n%s*<error type="ERROR" message="the check could not run: ' ..
                   'the command exited before listening on port 8080', xml)
  end)

  it("a check asked for that cannot run is NOT RUN: exit 3, not 0", function()
    local out, rc = check("--port 8080 --check half-close", "echo")
    assert.equal(3, rc, out)
    assert.matches("^SKIP  half%-close    not run: needs a request %(%-%-send BYTES%)\n1 checks, 0 failed, 1 not run", out)
  end)

  it("dials an IPv6-only server where it listens (::1): every check runs", function()
    local out, rc = check("--port 8080 --clients 3 --send 'ping\\n'", "v6_only")
    assert.equal(0, rc, out)
    assert.matches("5 checks, 0 failed %(.* on ::1 port 8080", out)
    assert.is_nil(out:match("SKIP"), out)
  end)

  it("fails close-wait on a pre-fork server whose worker leaks: exit 1, the worker named", function()
    local out, rc = support.tcplab("check --port 8080 --clients 3 --check close-wait --check time-wait -- " ..
                                   "perl spec/servers/prefork_leak.pl 8080")
    assert.equal(1, rc, out)
    assert.matches("^FAIL  close%-wait    3 in CLOSE_WAIT .* held by pid (%d+) fd %d+ %(perl%), not the started pid %d+", out)
    assert.matches("\nINFO  time%-wait     .*3 client%(s%) still in FIN_WAIT2", out)
  end)

  it("dials a server on 127.0.0.2 only where it listens: exit 0", function()
    local out, rc = check("--port 8080 --clients 3 --check close-wait --check accept-queue", "loopback2")
    assert.equal(0, rc, out)
    assert.matches("^PASS  close%-wait    0 in CLOSE_WAIT 1%.0 s after 3 of 3 clients hung up", out)
    assert.matches("\nPASS  accept%-queue  backlog 16, burst 20 to 127%.0%.0%.2: ", out)
    assert.matches("2 checks, 0 failed %(.* on 127%.0%.0%.2 port 8080", out)
  end)

  it("says it needs root when it is not root: exit 3", function()
    local out, rc = support.tcplab("check --port 8080 -- " .. server("echo"),
      { env = "", bin = "setpriv --reuid=65534 --regid=65534 --clear-groups bin/tcplab" })
    assert.equal(3, rc, out)
    assert.matches("^tcplab: check: tcplab%.lab needs root", out)
  end)

  it("Ctrl-C during a check exits 130 and leaves no process, namespace or tracefs instance", function()
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    local cwd = support.slurp("pwd"):gsub("%s+$", "")
    assert(os.execute(("cd %s && (env -u LUA_PATH -u LUA_CPATH bin/tcplab check --port 8080 -- %s >%s/out 2>&1; " ..
      "echo $? >%s/rc) & echo $! >%s/pid"):format(support.shq(cwd), server("slow_accept"), dir, dir, dir)))
    local shell = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/pid 2>/dev/null") end))
    local pid = support.wait_for(function() return support.children(shell)[1] end)
    assert.truthy(pid, "tcplab started")
    -- the server: the child running slow_accept.lua, once it is in a namespace other than
    -- ours (tcplab starts short-lived helpers too, and a child found early may still be on
    -- its way into the lab's namespace, or gone): the namespace by inode, read in-process
    local home, srv, nsid = tcplab.netns.id(), nil, nil
    support.wait_for(function()
      for _, child in ipairs(support.children(pid)) do
        local cmdline = support.slurp(("cat /proc/%d/cmdline 2>/dev/null"):format(child))
        local id = cmdline:find("slow_accept.lua", 1, true) and tcplab.netns.id(("/proc/%d/ns/net"):format(child))
        if id and id ~= home then
          srv, nsid = child, id
          return true
        end
      end
    end, 10)
    assert.truthy(srv, "the server started, in a namespace of its own")
    local netns = ("net:[%d]"):format(nsid)
    tcplab.sleep(1.5)   -- the server listens within ms; the checks on it run for seconds: inside close-wait
    os.execute(("kill -INT %d"):format(pid))
    local rc = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/rc 2>/dev/null"):match("%d+") end, 20))
    local out = support.slurp("cat " .. dir .. "/out")
    os.execute("rm -rf " .. dir)
    assert.equal(130, rc, out)
    assert.matches("interrupted", out)
    assert.is_false(support.alive(pid))
    assert.is_false(support.alive(srv), "the server is left running")
    assert.matches("^net:%[%d+%]$", netns)
    assert.equal("", support.slurp(("find /proc/[0-9]*/ns/net -maxdepth 0 -lname %s 2>/dev/null"):format(support.shq(netns))),
                 "a process is left in the lab's namespace")
    assert.is_nil(support.slurp("ls /sys/kernel/tracing/instances"):match("tcplab%-" .. pid .. "%-%d+"))
  end)
end)
