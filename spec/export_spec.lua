local support = require "support"
local tcplab = require "tcplab"

local run = support.tcplab

local function tmpdir() return (support.slurp("mktemp -d"):gsub("%s+$", "")) end
local function files(dir) return support.lines("ls -A " .. support.shq(dir)) end
local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true end
-- Go programs run without the ASan preload of make test-asan.
local NOPRELOAD = "env -u LD_PRELOAD "

-- GET path from 127.0.0.1:port with a tcplab socket (no curl needed): the whole reply.
local function http_get(port, path)
  local s, err = tcplab.connect("127.0.0.1", port, 1)
  if not s then return nil, err end
  local sock <close> = s
  assert(sock:write(("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"):format(path), 5))
  local parts = {}
  for _ = 1, 10000 do   -- bounded: a reply of at most 10000 reads
    local chunk, rerr = sock:read(65536, 5)
    if not chunk then return nil, rerr end
    if chunk == "" then return table.concat(parts) end
    parts[#parts + 1] = chunk
  end
  return nil, "reply too long"
end

describe("tcplab export #kernel #root", function()
  it("writes the metrics once to the file and nothing else; promtool accepts them", function()
    local dir = tmpdir()
    local out, rc = run("export --textfile " .. dir .. "/tcplab.prom")
    local text = support.slurp("cat " .. dir .. "/tcplab.prom")
    local left = files(dir)
    local check = have("promtool") and support.slurp(NOPRELOAD .. "promtool check metrics <" .. dir .. "/tcplab.prom 2>&1; echo rc=$?")
    os.execute("rm -rf " .. dir)
    assert.equal(0, rc, out)
    assert.equal("", out)
    assert.same({ "tcplab.prom" }, left)
    assert.matches("# TYPE tcplab_tcp_connection_states gauge\n", text)
    assert.matches('\ntcplab_tcp_connection_states{state="closing"} %d+\n', text)
    if check then
      assert.equal("rc=0\n", check)
    else
      pending("promtool is not installed (Debian prometheus)")
    end
  end)

  it("with --interval and --count writes N times and exits 0; SIGTERM exits 143 leaving no temp file", function()
    local dir = tmpdir()
    local out, rc = run(("export --textfile %s/t.prom --interval 0.05 --count 3"):format(dir))
    assert.equal(0, rc, out)
    assert.same({ "t.prom" }, files(dir))
    os.remove(dir .. "/t.prom")
    local root = support.slurp("pwd"):gsub("%s+$", "")
    assert(os.execute(("cd %s && (env -u LUA_PATH -u LUA_CPATH bin/tcplab export --textfile %s/t.prom --interval 0.01 " ..
      ">%s/out 2>&1; echo $? >%s/rc) & echo $! >%s/pid"):format(support.shq(root), dir, dir, dir, dir)))
    local shell = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/pid 2>/dev/null") end))
    local pid = support.wait_for(function() return support.children(shell)[1] end)
    assert.truthy(pid, "tcplab started")
    assert.truthy(support.wait_for(function() return io.open(dir .. "/t.prom") end, 10), "first write")
    -- a later write replaced the first (a file of its own each time): the loop runs when SIGTERM lands
    local function inode() return support.slurp("stat -c %i " .. dir .. "/t.prom 2>/dev/null"):match("%d+") end
    local first = inode()
    assert.truthy(support.wait_for(function() local now = inode() return now and now ~= first end, 10),
                  "a second write within 10 s")
    os.execute("kill -TERM " .. pid)
    local code = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/rc 2>/dev/null"):match("%d+") end, 20))
    local left = files(dir)
    local said = support.slurp("cat " .. dir .. "/out")
    os.execute("rm -rf " .. dir)
    assert.equal(143, code, said)
    assert.same({ "out", "pid", "rc", "t.prom" }, left)
    assert.is_false(support.alive(pid))
  end)

  it("a write that fails partway (file size limit) leaves the previous file whole and no temp file: exit 1", function()
    local dir = tmpdir()
    local path = dir .. "/t.prom"
    local out, rc = run("export --textfile " .. path)
    assert.equal(0, rc, out)
    local before = support.slurp("cat " .. path)
    assert.is_true(#before > 1024, "the metrics outgrow the 1 KiB limit below")
    -- SIGXFSZ ignored: write(2) past RLIMIT_FSIZE fails with EFBIG instead of killing
    out, rc = run("export --textfile " .. path, { bin = [[sh -c 'trap "" XFSZ; ulimit -f 1; exec bin/tcplab "$@"' tcplab]] })
    local after = support.slurp("cat " .. path)
    local left = files(dir)
    os.execute("rm -rf " .. dir)
    assert.equal(1, rc, out)
    assert.matches("^tcplab: ", out)
    assert.equal(before, after, "a reader sees the previous metrics, not a part of new ones")
    assert.same({ "t.prom" }, left)
  end)

  it("refuses bad arguments (exit 2) and an unwritable path (exit 1, naming it), leaving nothing", function()
    local dir = tmpdir()
    for _, args in ipairs({ "export", "export --textfile", ("export --textfile %s/t.txt"):format(dir),
                            ("export --textfile %s/t.prom --interval 0"):format(dir),
                            ("export --textfile %s/t.prom --interval x"):format(dir),
                            ("export --textfile %s/t.prom --interval 1 --count 0"):format(dir),
                            ("export --textfile %s/t.prom --count 2"):format(dir),
                            ("export --textfile %s/t.prom --port 70000"):format(dir) }) do
      local out, rc = run(args)
      assert.equal(2, rc, args .. ": " .. out)
      assert.matches("^tcplab: ", out)
      assert.is_nil(out:find("traceback", 1, true), out)
    end
    local out = run(("export --textfile %s/t.txt"):format(dir))
    assert.matches("ending in %.prom", out)
    out = run(("export --textfile %s/t.prom --interval 0"):format(dir))
    assert.matches("interval", out)
    local rc
    out, rc = run(("export --textfile %s/no/such/t.prom"):format(dir))
    assert.equal(1, rc, out)
    assert.matches(dir:gsub("%p", "%%%0") .. "/no/such/t%.prom", out)
    local left = files(dir)
    os.execute("rm -rf " .. dir)
    assert.same({}, left)
  end)

  support.as_root(it, pending, "node_exporter's textfile collector serves the series back, scrape error 0", function()
    if not have("prometheus-node-exporter") then
      pending("prometheus-node-exporter is not installed")
      return
    end
    local dir = tmpdir()
    local home = assert(tcplab.netns.open())
    local made, exporter
    local ok, err = pcall(function()
      made = assert(tcplab.netns.unshare())   -- our namespace: our listener and node_exporter's only
      local l <close> = assert(tcplab.listen("127.0.0.1", 0, 7))
      local port = select(2, l:getsockname())
      local out, rc = run("export --textfile " .. dir .. "/tcplab.prom")
      assert.equal(0, rc, out)
      local web = port == 9100 and 9101 or 9100
      local p = assert(io.popen(("%sprometheus-node-exporter --web.listen-address=127.0.0.1:%d " ..
        "--collector.disable-defaults --collector.textfile --collector.textfile.directory=%s " ..
        ">%s/log 2>&1 & echo $!"):format(NOPRELOAD, web, dir, dir)))
      exporter = tonumber(p:read("l"))
      p:close()
      local body = support.wait_for(function() return http_get(web, "/metrics") end, 10)
      assert.truthy(body, "node_exporter answered: " .. support.slurp("cat " .. dir .. "/log"))
      assert.matches("^HTTP/1%.[01] 200", body)
      assert.matches("\nnode_textfile_scrape_error 0\n", body)
      -- node_exporter gives every series of a metric the same label names: the
      -- namespace totals come back with port="" (what {port=""} selects anyway)
      assert.matches('\ntcplab_tcp_connection_states{port="",state="listen"} 1\n', body)
      assert.matches('\ntcplab_tcp_connection_states{port="",state="established"} 0\n', body)
      assert.matches(('\ntcplab_tcp_connection_states{port="%d",state="listen"} 1\n'):format(port), body)
      assert.matches(('\ntcplab_tcp_listen_backlog{port="%d"} 7\n'):format(port), body)
      assert.matches(('\ntcplab_tcp_listen_queue{port="%d"} 0\n'):format(port), body)
      assert.matches("\n# TYPE tcplab_tcp_listen_queue gauge\n", body)
    end)
    if exporter then
      os.execute("kill " .. exporter)
      assert.truthy(support.wait_for(function() return not support.alive(exporter) end, 10), "node_exporter ended")
    end
    assert(home:enter())
    home:close()
    if made then made:close() end
    os.execute("rm -rf " .. dir)
    assert(ok, err)
  end)
end)
