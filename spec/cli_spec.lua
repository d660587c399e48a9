local support = require "support"
local tcplab = require "tcplab"

-- The command is run as a user runs it: bin/tcplab through its #! line, with
-- no LUA_PATH or LUA_CPATH from the harness.
local run = support.tcplab

describe("the tcplab command #kernel #root", function()
  it("prints help listing the commands and scenarios (help, --help, -h)", function()
    for _, args in ipairs({ "help", "--help", "-h" }) do
      local out, rc = run(args)
      assert.equal(0, rc, out)
      for _, word in ipairs({ "stat", "list", "counts", "run", "demo" }) do
        assert.truthy(out:find(word, 1, true), word)
      end
    end
    local out, rc = run("run --help")
    assert.equal(0, rc)
    assert.truthy(out:find("close_wait_leak", 1, true))
    out, rc = run("list -h")
    assert.equal(0, rc)
    assert.matches("%-%-sport", out)
  end)

  it("runs from any directory and by absolute path", function()
    local root = support.slurp("pwd"):gsub("%s+$", "")
    local out, rc = run("help", { cwd = "/", bin = root .. "/bin/tcplab" })
    assert.equal(0, rc, out)
    out, rc = run("help", { cwd = root .. "/bin", bin = "./tcplab" })
    assert.equal(0, rc, out)
    out, rc = run("help", { cwd = root .. "/lua", bin = "../bin/tcplab" })
    assert.equal(0, rc, out)
  end)

  it("refuses unknown commands, options and values with exit status 2 and no traceback", function()
    for _, args in ipairs({ "frobnicate", "stat --style awk", "list --colour red", "counts --state FIN_WAIT_9",
                            "list --sport 70000", "list --sport=x", "run nosuch", "run lifecycle --family inet7",
                            "counts --family inet7", "run", "counts --owners", "list --owners=yes" }) do
      local out, rc = run(args)
      assert.equal(2, rc, args .. ": " .. out)
      assert.is_nil(out:find("traceback", 1, true), args .. ": " .. out)
      assert.matches("^tcplab: ", out, nil, args)
    end
    local out = run("counts --state FIN_WAIT_9")
    assert.matches("unknown state 'FIN_WAIT_9'", out)
    out = run("list --sport 70000")
    assert.matches("port 0..65535 expected, got '70000'", out)
    out = run("frobnicate")
    assert.matches("unknown command 'frobnicate'", out)
  end)

  it("an empty --state (',' or '' or 'a,,b') is a usage error, not every state", function()
    for _, arg in ipairs({ "','", "''", "listen,,established", "' '", "listen," }) do
      for _, cmd in ipairs({ "list", "counts", "summary", "watch --count 1" }) do
        local out, rc = run(cmd .. " --state " .. arg)
        assert.equal(2, rc, cmd .. " --state " .. arg .. ": " .. out)
        assert.matches("^tcplab: %-%-state: a state name expected between the commas", out)
      end
    end
  end)

  it("--send takes \\xHH \\n \\r \\t \\0 \\\\ in one pass and rejects any other escape", function()
    local bytes = require("tcplab.cli")._bytes_arg
    assert.equal("A", bytes("\\x41"))
    assert.equal(1, #bytes("\\x41"))
    assert.equal("GET / HTTP/1.0\r\n\r\n", bytes("GET / HTTP/1.0\\r\\n\\r\\n"))
    assert.equal("a\tb\0c\\d", bytes("a\\tb\\0c\\\\d"))
    assert.equal("\\x41", bytes("\\\\x41"))   -- an escaped backslash, then x41
    assert.equal("\255\0", bytes("\\xfF\\x00"))
    assert.equal("plain", bytes("plain"))
    for _, bad in ipairs({ "\\q", "\\x4", "\\xZZ", "end\\", "\\a", "\\\"" }) do
      local v, err = bytes(bad)
      assert.is_nil(v, bad)
      assert.matches("escape", err, nil, bad)
    end
    local out, rc = run("check --port 1 --send '\\q' -- true")
    assert.equal(2, rc, out)
    assert.matches("^tcplab: unknown escape '\\q'", out)
    out, rc = run("check --port 1 --send '\\x4' -- true")
    assert.equal(2, rc, out)
    assert.matches("bad \\x escape", out)
  end)

  it("counts --state S --format prometheus leaves the states it filtered out out", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local out, rc = run("counts --state established,close-wait --format prometheus")
    assert.equal(0, rc, out)
    assert.matches('state="established"}', out)
    assert.matches('state="close_wait"}', out)
    assert.is_nil(out:find('state="listen"', 1, true), out)
    assert.is_nil(out:find('state="time_wait"', 1, true), out)
    out, rc = run("list --state listen --format prometheus")
    assert.equal(0, rc, out)
    local lines = {}
    for state in out:gmatch('tcplab_tcp_connection_states{state="([%w_]+)"}') do lines[#lines + 1] = state end
    assert.same({ "listen" }, lines)
    -- no --state: all eleven, zeros included
    out = run("counts --format prometheus")
    local n = 0
    for _ in out:gmatch('tcplab_tcp_connection_states{state="') do n = n + 1 end
    assert.equal(11, n)
  end)

  it("without the C module built, says 'run make first' (exit 1) instead of a traceback", function()
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    assert(os.execute(("cp -r bin lua %s/ && rm -f %s/lua/tcplab/core.so"):format(dir, dir)))
    for _, args in ipairs({ "--help", "counts", "" }) do
      -- only the copy's lua/ on the C path: no core.so anywhere it looks
      local out, rc = run(args, { cwd = dir, env = "LUA_CPATH=" .. support.shq(dir .. "/lua/?.so") })
      assert.equal(1, rc, out)
      assert.equal("tcplab: the C module is not built; run make first\n", out)
    end
    os.execute("rm -rf " .. dir)
  end)

  it("takes the bounds of every port argument: 65535 and LO-65535", function()
    for _, args in ipairs({ "counts --port 65535", "list --sport 65535", "list --dport 0-65535",
                            "list --sport 1-65535 --format json", "counts --port 0" }) do
      local out, rc = support.tcplab(args)
      assert.equal(0, rc, args .. ": " .. out)
    end
    for _, args in ipairs({ "counts --port 65536", "list --sport 1-65536", "list --dport 65536" }) do
      local out, rc = support.tcplab(args)
      assert.equal(2, rc, args .. ": " .. out)
    end
  end)

  it("reports a namespace path that cannot be used with exit status 1, naming it", function()
    local out, rc = run("counts --netns /nonexistent/ns")
    assert.equal(1, rc, out)
    assert.matches("/nonexistent/ns", out)
  end)

  it("lists and counts a listener of ours (--opt value and --opt=value)", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0, 7))
    local port = select(2, l:getsockname())
    local netns = ""   -- the command runs in this process's namespace, as a child does
    local out, rc = run("list " .. netns .. "--state listen --sport " .. port)
    assert.equal(0, rc, out)
    assert.matches("\nLISTEN%s+0%s+7%s+127%.0%.0%.1:" .. port .. "%s+0%.0%.0%.0:0%s+" .. l:inode() .. "\n$", out)
    out = run("counts " .. netns .. "--state=LISTEN --sport=" .. port)
    assert.equal("LISTEN\t1\n", out)
  end)
end)

describe("the tcplab command under signals #kernel #root", function()
  if not support.is_root() then
    pending("needs root: the scenario it interrupts runs in a namespace of its own")
    return
  end

  -- Start `tcplab run NAME` in the background, wait until its scenario has
  -- started recording, send the signal, and report what is left.
  local function interrupt(name, sig)
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    assert(os.execute(("cd %s && (env -u LUA_PATH -u LUA_CPATH bin/tcplab run %s >%s/out 2>&1; echo $? >%s/rc) " ..
      "& echo $! >%s/pid"):format(support.shq(support.slurp("pwd"):gsub("%s+$", "")), name, dir, dir, dir)))
    local shell = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/pid 2>/dev/null") end))
    -- the tcplab process is the shell's child; its instance name carries its pid
    local pid = support.wait_for(function() return support.children(shell)[1] end)
    assert.truthy(pid, "tcplab started")
    -- recording: its tracefs instance, or (the bpf recorder) a BPF link among its fds
    local inst = support.wait_for(function()
      return support.slurp("ls /sys/kernel/tracing/instances"):match("tcplab%-" .. pid .. "%-%d+")
        or support.slurp("ls -l /proc/" .. pid .. "/fd 2>/dev/null"):match("anon_inode:bpf_link")
    end, 10)
    assert.truthy(inst, "the scenario started recording")
    local helpers = support.children(pid)
    os.execute(("kill -%s %d"):format(sig, pid))
    local rc = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/rc 2>/dev/null"):match("%d+") end, 20))
    local out = support.slurp("cat " .. dir .. "/out")
    os.execute("rm -rf " .. dir)
    return { rc = rc, out = out, pid = pid, helpers = helpers,
             left = support.slurp("ls /sys/kernel/tracing/instances"):match("tcplab%-" .. pid .. "%-%d+") }
  end

  for sig, code in pairs({ INT = 130, TERM = 143 }) do
    it(("SIG%s to tcplab run close exits %d and leaves no instance, helper or nft table"):format(sig, code), function()
      local r = interrupt("close", sig)
      assert.equal(code, r.rc, r.out)
      assert.matches(sig == "INT" and "interrupted" or "terminated", r.out)
      assert.is_nil(r.left)
      assert.is_false(support.alive(r.pid))
      for _, helper in ipairs(r.helpers) do
        assert.is_false(support.alive(helper), "helper " .. helper .. " left")
      end
      assert.is_nil(support.slurp("nsenter -t 1 -n nft list tables 2>&1"):match("tcplab"))
    end)
  end
end)

describe("the tcplab command as another user #kernel #root", function()
  support.as_root(it, pending, "demo reports what needs root as not run or not observed, and succeeds", function()
    -- a copy of the tree that user can read, as their own checkout would be
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    assert(os.execute(("cp -r bin lua %s/ && chmod -R a+rX %s"):format(dir, dir)))
    local out, rc = support.tcplab("demo", { cwd = dir, bin = "setpriv --reuid=65534 --regid=65534 --clear-groups bin/tcplab" })
    os.execute("rm -rf " .. dir)
    assert.equal(0, rc, out)
    assert.matches("== handshake: not run %(scenario 'handshake' needs root", out)
    assert.matches("== lifecycle %(inet%)", out)
    assert.matches("packets not captured: capture needs root", out)
    assert.is_nil(out:find("[FAIL]", 1, true), out)
  end)
end)
