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
      made = assert(tcplab.netns.unshare())   -- our namespace: our sockets and node_exporter's only
      local l <close> = assert(tcplab.listen("127.0.0.1", 0, 7))
      local port = select(2, l:getsockname())
      -- 2 clients accepted: 5 sockets in all, 3 of them with the listener's local port
      local c1 <close> = assert(tcplab.connect("127.0.0.1", port, 2))
      local c2 <close> = assert(tcplab.connect("127.0.0.1", port, 2))
      local a1 <close> = assert(l:accept(2))
      local a2 <close> = assert(l:accept(2))
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
      -- one metric, one meaning: the namespace's sockets once each (no port
      -- label), the per-port breakdown under its own name
      assert.matches('\ntcplab_tcp_connection_states{state="listen"} 1\n', body)
      assert.matches('\ntcplab_tcp_connection_states{state="established"} 4\n', body)
      assert.matches(('\ntcplab_tcp_port_connection_states{port="%d",state="listen"} 1\n'):format(port), body)
      assert.matches(('\ntcplab_tcp_port_connection_states{port="%d",state="established"} 2\n'):format(port), body)
      assert.matches("\n# TYPE tcplab_tcp_port_connection_states gauge\n", body)
      assert.is_nil(body:find('tcplab_tcp_connection_states{port=', 1, true))
      -- a sum over each metric is the socket count it claims
      local sums = {}
      for name, value in body:gmatch("\n(tcplab_tcp_[a-z_]*connection_states){[^}]*} (%d+)") do
        sums[name] = (sums[name] or 0) + tonumber(value)
      end
      assert.same({ tcplab_tcp_connection_states = 5, tcplab_tcp_port_connection_states = 3 }, sums)
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

describe("tcplab.export.textfile", function()
  local export = tcplab.export
  local function readall(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
  end
  local function is_symlink(path) return os.execute("test -L " .. support.shq(path)) == true end

  -- A Lua child that writes path with the library `times` times, alternating
  -- two texts of `size` bytes; its pid. It ends after the last write.
  local function writer(dir, path, size, times)
    local script = dir .. "/writer.lua"
    local f = assert(io.open(script, "w"))
    f:write(([[
      local export = require("tcplab").export
      local a = ("a"):rep(%d - 6) .. "\n# A\n"
      local b = ("b"):rep(%d - 6) .. "\n# B\n"
      for i = 1, %d do assert(export.textfile(%q, i %% 2 == 1 and a or b)) end
    ]]):format(size, size, times, path))
    f:close()
    local p = assert(io.popen(("lua5.4 %s >%s/writer.out 2>&1 & echo $!"):format(script, dir)))
    local pid = tonumber(p:read("l"))
    p:close()
    return pid
  end

  it("never follows a symlink planted at a temp name (or at the file itself); the targets stay as they were", function()
    local dir = tmpdir()
    local path = dir .. "/x.prom"
    local pid = support.pid()
    -- the old predictable name, the exact name the next write will try first, and the file itself
    local old_name, next_name = ("%s.tmp.%d"):format(path, pid), ("%s.tmp.%d.AbCdEfGh"):format(path, pid)
    for i, link in ipairs({ old_name, next_name, path }) do
      local f = assert(io.open(dir .. "/target" .. i, "w"))
      f:write("precious ", i, "\n")
      f:close()
      assert(os.execute(("ln -s %s/target%d %s"):format(dir, i, support.shq(link))))
    end
    tcplab.core._textfile_next_suffix("AbCdEfGh")
    local ok, swept = export.textfile(path, "tcplab_x 1\n")
    local got = { readall(path), readall(dir .. "/target1"), readall(dir .. "/target2"), readall(dir .. "/target3"),
                  is_symlink(old_name), is_symlink(next_name), is_symlink(path) }
    local left = files(dir)
    os.execute("rm -rf " .. dir)
    assert.is_true(ok)
    assert.equal(0, swept)   -- ours: this process runs
    assert.same({ "tcplab_x 1\n", "precious 1\n", "precious 2\n", "precious 3\n", true, true, false }, got)
    assert.same({ "target1", "target2", "target3", "x.prom", "x.prom.tmp." .. pid, "x.prom.tmp." .. pid .. ".AbCdEfGh" }, left)
  end)

  it("a reader polling the file sees the old text or the new one, never part of one", function()
    local dir = tmpdir()
    local path = dir .. "/r.prom"
    local size = 1 << 20
    local A = ("a"):rep(size - 6) .. "\n# A\n"
    local B = ("b"):rep(size - 6) .. "\n# B\n"
    local pid = writer(dir, path, size, 60)
    local reads, seen, bad = 0, {}, nil
    for _ = 1, 100000 do   -- bounded: the writer's 60 writes end long before
      local s = readall(path)
      if s then
        reads = reads + 1
        if s == A then seen.A = true elseif s == B then seen.B = true
        else bad = ("%d bytes, ending %q"):format(#s, s:sub(-8)) break end
      end
      if not support.alive(pid) then break end
    end
    local alive = support.alive(pid)
    local said = readall(dir .. "/writer.out")
    if alive then os.execute("kill " .. pid) end
    local left = files(dir)
    os.execute("rm -rf " .. dir)
    assert.is_nil(bad, "a partial file was read")
    assert.is_false(alive, "the writer ended")
    assert.equal("", said)
    assert.is_true(reads > 0)
    assert.same({ "r.prom", "writer.lua", "writer.out" }, left)
  end)

  it("a writer killed mid-write (SIGKILL) leaves its temp file; the next export removes it, not a live one's", function()
    local dir = tmpdir()
    local path = dir .. "/k.prom"
    local pid = writer(dir, path, 16 << 20, 200)
    local prefix = "k.prom.tmp." .. pid .. "."
    local caught
    for _ = 1, 2000 do   -- bounded: stop the writer, kill it only while its temp file exists
      if not support.alive(pid) then break end
      os.execute("kill -STOP " .. pid)
      for _, name in ipairs(files(dir)) do
        if name:sub(1, #prefix) == prefix then caught = name end
      end
      if caught then
        os.execute("kill -KILL " .. pid)
        break
      end
      os.execute("kill -CONT " .. pid)
      tcplab.sleep(0.002)
    end
    if not caught then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end   -- nothing left running
    local gone = support.wait_for(function() return not support.alive(pid) end, 10)
    local stale = caught and io.open(dir .. "/" .. caught) ~= nil
    -- a live process's temp file (this process's pid) is left alone
    local live = ("k.prom.tmp.%d.live0000"):format(support.pid())
    assert(io.open(dir .. "/" .. live, "w")):close()
    local out, rc = run("export --textfile " .. path)
    local left = files(dir)
    local text = readall(path) or ""
    os.execute("rm -rf " .. dir)
    assert.truthy(caught, "the writer was caught with its temp file")
    assert.truthy(gone, "the writer died")
    assert.is_true(stale, "SIGKILL left the temp file")
    assert.equal(0, rc, out)
    assert.same({ "k.prom", live, "writer.lua", "writer.out" }, left)
    assert.matches("^# HELP tcplab_tcp_connection_states ", text)
  end)

  it("names the argument it cannot take and the path it cannot write; leaves nothing behind", function()
    local ok, err = pcall(export.textfile, nil, "x")
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'textfile' %(file path expected, got nil%)", err)
    ok, err = pcall(export.textfile, "/tmp/x.prom", 7)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'textfile' %(string expected", err)
    ok, err = pcall(export.textfile, "/tmp/", "x")
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'textfile' %(a file path %(not a directory%) expected, got string \"/tmp/\"%)", err)
    local dir = tmpdir()
    local none, msg, errno = export.textfile(dir .. "/no/such/t.prom", "x")
    assert(os.execute("mkdir " .. dir .. "/sub && touch " .. dir .. "/sub/t.prom"))
    local none2, msg2, errno2 = export.textfile(dir .. "/sub/t.prom/x.prom", "x")
    local left = support.lines("cd " .. support.shq(dir) .. " && find . | sort")
    os.execute("rm -rf " .. dir)
    assert.is_nil(none)
    assert.equal(tcplab.errno.ENOENT, errno)
    assert.matches(dir:gsub("%p", "%%%0") .. "/no/such/t%.prom: ", msg)
    assert.is_nil(none2)
    assert.equal(20, errno2)   -- ENOTDIR on Linux
    assert.matches("Not a directory", msg2)
    assert.matches("t%.prom/x%.prom: ", msg2)
    assert.same({ ".", "./sub", "./sub/t.prom" }, left)
  end)
end)
