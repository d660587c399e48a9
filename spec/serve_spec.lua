--- tcplab serve: the command run as a user runs it (bin/tcplab serve in a
-- child process on a free loopback port), its metrics against export
-- --textfile and a walk, the real Prometheus server scraping it, and what a
-- hostile client can and cannot make it do.
local support = require "support"
local tcplab = require "tcplab"
local serve = require "tcplab.serve"

local run = support.tcplab
local NOPRELOAD = "env -u LD_PRELOAD "
local function tmpdir() return (support.slurp("mktemp -d"):gsub("%s+$", "")) end
local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true end
local function readall(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
local http_ok = serve.http() ~= nil
local function tally_zeros() return require("tcplab.tally").zeros() end

-- Send `request` to 127.0.0.1:port and read the whole reply (until the
-- server closes): the reply, or nil and why.
local function exchange(port, request, timeout)
  local s, err = tcplab.connect("127.0.0.1", port, 2)
  if not s then return nil, err end
  local sock <close> = s
  local ok, werr = sock:write(request, 5)
  if not ok then return nil, werr end
  local parts = {}
  for _ = 1, 10000 do   -- bounded: a reply of at most 10000 reads
    local chunk, rerr = sock:read(65536, timeout or 10)
    if not chunk then return nil, rerr end
    if chunk == "" then return table.concat(parts) end
    parts[#parts + 1] = chunk
  end
  return nil, "reply too long"
end

local function get(port, path, method)
  return exchange(port, ("%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"):format(method or "GET", path))
end

local function body_of(reply) return reply and reply:match("\r\n\r\n(.*)$") end
local function status_of(reply) return reply and tonumber(reply:match("^HTTP/1%.[01] (%d+)")) end
local function without_duration(text)
  return (text:gsub("# HELP tcplab_scrape_duration_seconds [^\n]*\n", "")
              :gsub("# TYPE tcplab_scrape_duration_seconds [^\n]*\n", "")
              :gsub("tcplab_scrape_duration_seconds [^\n]*\n", ""))
end

-- bin/tcplab serve ARGS in the background: { pid, port, log = path };
-- the port is the one it prints (ARGS listen on port 0).
local function start(dir, argstr)
  local logpath = dir .. "/serve.log"
  local p = assert(io.popen(("cd %s && exec env -u LUA_PATH -u LUA_CPATH bin/tcplab serve %s >%s 2>&1 & echo $!")
    :format(support.shq(support.slurp("pwd"):gsub("%s+$", "")), argstr, logpath)))
  local pid = tonumber(p:read("l"))
  p:close()
  local port = support.wait_for(function()
    return tonumber(readall(logpath):match("listening on http://[^/]*:(%d+)/metrics"))
  end, 20)
  return { pid = pid, port = port, log = logpath }
end

-- SIGTERM, then wait (bounded) for the process to be gone: its exit status
-- is read from the shell that waits for it, so started with a wrapper.
local function stop(srv)
  if srv and srv.pid and support.alive(srv.pid) then
    os.execute("kill -TERM " .. srv.pid)
    -- a wedged exporter ignores SIGTERM (a failing spec says why): never leave it spinning
    if not support.wait_for(function() return not support.alive(srv.pid) end, 20) then
      os.execute("kill -KILL " .. srv.pid)
    end
  end
end

local function fd_count_of(pid)
  return tonumber((support.slurp(("ls /proc/%d/fd 2>/dev/null | wc -l"):format(pid)):match("%d+")))
end

local function rss_kib(pid)
  return tonumber(readall(("/proc/%d/status"):format(pid)):match("VmRSS:%s*(%d+)"))
end

describe("tcplab.serve #unit", function()
  it("--listen: HOST:PORT, [V6]:PORT and :PORT; anything else says what to type", function()
    assert.same({ "127.0.0.1", 9477 }, { serve.parse_listen("127.0.0.1:9477") })
    assert.same({ "::1", 80 }, { serve.parse_listen("[::1]:80") })
    assert.same({ "127.0.0.1", 0 }, { serve.parse_listen(":0") })
    assert.same({ "0.0.0.0", 9477 }, { serve.parse_listen("0.0.0.0:9477") })
    assert.same({ "127.0.0.1", 1 }, { serve.parse_listen("localhost:1") })
    assert.same({ "255.255.255.255", 65535 }, { serve.parse_listen("255.255.255.255:65535") })
    for _, bad in ipairs({ "9477", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "::1:80", "300.1.1.1:80",
                           "example.com:80", "127.0.0.1:80x", "[127.0.0.1]:80", "",
                           "256.0.0.1:80", "10.256.0.1:80", "10.0.256.1:80", "10.0.0.256:80" }) do
      local host, why = serve.parse_listen(bad)
      assert.is_nil(host, bad)
      assert.matches("expected", why, 1, true)
      assert.truthy(why:find(("'%s'"):format(bad), 1, true), why)
    end
  end)

  it("routes: /metrics GET and HEAD, 404 for other paths, 405 for other methods", function()
    local scrapes = 0
    local ex = { metrics = function() scrapes = scrapes + 1 return "m 1\n" end }
    assert.same({ 200, "m 1\n" }, { serve.route(ex, "GET", "/metrics") })
    assert.same({ 200, "m 1\n" }, { serve.route(ex, "GET", "/metrics?x=1") })
    assert.same({ 200, "m 1\n" }, { serve.route(ex, "HEAD", "/metrics") })
    assert.equal(404, (serve.route(ex, "GET", "/metricsx")))
    assert.equal(404, (serve.route(ex, "GET", "/metrics/")))
    assert.equal(404, (serve.route(ex, "GET", "/../metrics")))
    local status, _, extra = serve.route(ex, "POST", "/metrics")
    assert.equal(405, status)
    assert.equal("GET, HEAD", extra.allow)
    assert.equal(405, (serve.route(ex, "DELETE", "/metrics")))
    assert.equal(3, scrapes)   -- only GET/HEAD of /metrics compute the metrics
    local failing = { metrics = function() return nil, "web: gone" end }
    local st, body = serve.route(failing, "GET", "/metrics")
    assert.equal(503, st)
    assert.matches("web: gone", body, 1, true)
  end)

  it("the seam: a walk where tcplab.live is missing or does not load, a live handle where it does", function()
    local kernel = require "tcplab.kernel"
    local saved = rawget(kernel, "live")
    local closed, opened = 0, 0
    local ok, err = pcall(function()
      kernel.live = nil
      local s = serve.source(nil)
      assert.equal("walk", s.how)
      assert.matches("not in this build", s.why)
      kernel.live = function() return nil, "BPF: EPERM" end
      s = serve.source(nil)
      assert.equal("walk", s.how)
      assert.matches("BPF: EPERM", s.why, 1, true)
      kernel.live = function(f)
        assert.equal("/x", f.netns)
        opened = opened + 1
        return { counts = function() return { ESTABLISHED = 7 } end, close = function() closed = closed + 1 end }
      end
      local ex = serve.exporter{ netns = { "/x" } }
      assert.equal(1, opened)
      assert.equal("live", ex.sources[1].how)
      ex:close()
      ex:close()
      assert.equal(1, closed)
      assert.has_error(function() ex:metrics() end, "attempt to use a closed exporter")
    end)
    kernel.live = saved
    assert(ok, err)
  end)
end)

-- A named namespace (/run/netns/NAME) with its own connection table, so that
-- a walk of it costs its own sockets, not the whole host's (another helper's
-- million-socket bench made every walk here take ~1 s; doc/kernel-walk-scope.md):
-- made from an intermediate namespace whose tcp_child_ehash_entries is set,
-- never the host's sysctl. Where the sysctl is missing: ip netns add.
local function make_named_ns(name)
  local own = ("mkdir -p /run/netns && unshare --net sh -c 'sysctl -q -w net.ipv4.tcp_child_ehash_entries=1024 && " ..
    "unshare --net sh -c \"ip link set lo up && touch /run/netns/%s && mount --bind /proc/self/ns/net /run/netns/%s\"' " ..
    "2>/dev/null"):format(name, name)
  if os.execute(own) then return true end
  os.execute(("umount /run/netns/%s 2>/dev/null; rm -f /run/netns/%s"):format(name, name))
  return os.execute(("ip netns add %s && ip -n %s link set lo up"):format(name, name))
end

describe("tcplab serve #kernel #root", function()
  if not support.is_root() then
    pending("needs root: network namespaces")
    return
  end
  if not http_ok then
    pending("lua-http is not installed: " .. select(2, serve.http()))
    return
  end

  local name, ns, dir
  local l, c1, c2, a1, a2
  local srv
  before_each(function()
    name = ("tcplab-serve-%d-%d"):format(support.pid(), math.random(1, 1e9))
    assert(make_named_ns(name))
    ns = assert(tcplab.netns.open("/run/netns/" .. name))
    dir = tmpdir()
    -- a quiet namespace: a listener (backlog 7) and two accepted connections
    l = assert(ns:listen("127.0.0.1", 0, 7))
    local port = select(2, l:getsockname())
    c1 = assert(ns:connect("127.0.0.1", port, 2))
    c2 = assert(ns:connect("127.0.0.1", port, 2))
    a1 = assert(l:accept(2))
    a2 = assert(l:accept(2))
  end)
  after_each(function()
    stop(srv)
    srv = nil
    for _, s in ipairs({ a2, a1, c2, c1, l }) do s:close() end
    ns:close()
    os.execute("ip netns del " .. name)
    os.execute("rm -rf " .. support.shq(dir))
  end)

  it("/metrics is export --textfile's text for the namespace, plus the scrape duration (--walk)", function()
    srv = start(dir, "--listen 127.0.0.1:0 --walk --netns " .. name)
    assert.truthy(srv.port, readall(srv.log))
    local reply = assert(get(srv.port, "/metrics"))
    assert.equal(200, status_of(reply), reply)
    assert.matches("\r\ncontent%-type: text/plain; version=0%.0%.4", reply)
    local body = body_of(reply)
    assert.matches("\n# TYPE tcplab_scrape_duration_seconds gauge\ntcplab_scrape_duration_seconds %d+%.%d+\n$", body)
    local out, rc = run(("export --netns %s --textfile %s/x.prom"):format(name, dir))
    assert.equal(0, rc, out)
    local text = readall(dir .. "/x.prom")
    assert.matches('\ntcplab_tcp_connection_states{state="established"} 4\n', text)
    assert.equal(text, without_duration(body))
    -- HEAD: the same headers, no body
    local head = assert(get(srv.port, "/metrics", "HEAD"))
    assert.equal(200, status_of(head))
    assert.equal("", body_of(head))
    assert.equal(#body, tonumber(head:match("\r\ncontent%-length: (%d+)")))
    assert.matches(name:gsub("%-", "%%-") .. ": walk", readall(srv.log))
  end)

  it("without --walk: live counts where they load, the walk's states and listener gauges, no per-port series", function()
    local h, why = tcplab.live{ netns = "/run/netns/" .. name }
    if not h then
      pending("live counts do not load here: " .. tostring(why))
      return
    end
    h:close()
    srv = start(dir, "--listen 127.0.0.1:0 --netns " .. name)
    assert.truthy(srv.port, readall(srv.log))
    local reply = assert(get(srv.port, "/metrics"))
    assert.equal(200, status_of(reply), reply)
    local body = body_of(reply)
    local out, rc = run(("export --netns %s --textfile %s/x.prom"):format(name, dir))
    assert.equal(0, rc, out)
    local text = readall(dir .. "/x.prom")
    local function lines(t, pattern)
      local got = {}
      for line in t:gmatch("[^\n]+") do if line:find(pattern) then got[#got + 1] = line end end
      return table.concat(got, "\n")
    end
    assert.matches('\ntcplab_tcp_connection_states{state="established"} 4\n', body)
    assert.equal(lines(text, "^tcplab_tcp_connection_states{"), lines(body, "^tcplab_tcp_connection_states{"))
    assert.equal(lines(text, "^tcplab_tcp_listen_"), lines(body, "^tcplab_tcp_listen_"))
    assert.is_nil(body:find("tcplab_tcp_port_connection_states{", 1, true), body)
    assert.matches(name:gsub("%-", "%%-") .. ": live", readall(srv.log))
  end)

  it("with a live handle: its counts for the states, a listeners-only dump for the queues, no per-port series", function()
    local kernel = require "tcplab.kernel"
    local saved = rawget(kernel, "live")
    local opened, closed = {}, 0
    kernel.live = function(f)
      opened[#opened + 1] = f.netns
      return { counts = function() return { ESTABLISHED = 1234, TIME_WAIT = 5 } end,
               close = function() closed = closed + 1 end }
    end
    local ok, err = pcall(function()
      local ex <close> = serve.exporter{ netns = { "/run/netns/" .. name } }
      assert.equal("live", ex.sources[1].how)
      local body = assert(ex:metrics())
      local port = select(2, l:getsockname())
      assert.matches('\ntcplab_tcp_connection_states{state="established"} 1234\n', body)
      assert.matches('\ntcplab_tcp_connection_states{state="time_wait"} 5\n', body)
      assert.matches('\ntcplab_tcp_connection_states{state="listen"} 0\n', body)   -- what live said, not the walk
      assert.matches(('\ntcplab_tcp_listen_backlog{port="%d"} 7\n'):format(port), body)
      assert.matches(('\ntcplab_tcp_listen_queue{port="%d"} 0\n'):format(port), body)
      assert.is_nil(body:find("tcplab_tcp_port_connection_states", 1, true))
    end)
    kernel.live = saved
    assert(ok, err)
    assert.same({ "/run/netns/" .. name }, opened)
    assert.equal(1, closed)
  end)

  it("several --netns: one series per namespace with a netns label", function()
    srv = start(dir, ("--listen :0 --netns %s --netns /run/netns/%s"):format(name, name))
    assert.truthy(srv.port, readall(srv.log))
    local body = body_of(assert(get(srv.port, "/metrics")))
    assert.matches(('\ntcplab_tcp_connection_states{netns="%s",state="established"} 4\n'):format(name:gsub("%-", "%%-")), body)
    assert.matches(('\ntcplab_tcp_connection_states{netns="/run/netns/%s",state="established"} 4\n')
      :format(name:gsub("%-", "%%-")), body)
  end)

  it("bad requests are answered or dropped and never stop the exporter; SIGTERM exits 143 and frees the port", function()
    local script = dir .. "/run.sh"
    local f = assert(io.open(script, "w"))
    f:write(("cd %s && env -u LUA_PATH -u LUA_CPATH bin/tcplab serve --listen 127.0.0.1:0 --netns %s --timeout 1 " ..
      "--max-connections 4 >%s/serve.log 2>&1 & echo $! >%s/pid; wait $!; echo $? >%s/rc\n")
      :format(support.shq(support.slurp("pwd"):gsub("%s+$", "")), name, dir, dir, dir))
    f:close()
    os.execute("sh " .. script .. " >/dev/null 2>&1 &")
    local pid = support.wait_for(function() return tonumber(readall(dir .. "/pid")) end, 10)
    local port = support.wait_for(function()
      return tonumber(readall(dir .. "/serve.log"):match("listening on http://[^/]*:(%d+)/metrics"))
    end, 20)
    srv = { pid = pid }
    assert.truthy(port, readall(dir .. "/serve.log"))
    assert.equal(404, status_of(get(port, "/nope")))
    assert.equal(405, status_of(get(port, "/metrics", "POST")))
    assert.equal(405, status_of(get(port, "/metrics", "DELETE")))
    assert.equal(200, status_of(get(port, "/metrics")))
    -- a client that goes away before the answer (the answer meets a closed socket)
    for _ = 1, 3 do
      local gone = assert(tcplab.connect("127.0.0.1", port, 2))
      assert(gone:write("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 2))
      gone:close()
    end
    assert.equal(200, status_of(get(port, "/metrics")))

    -- requests with bodies it does not read (a bad chunked body, 99999999 announced bytes),
    -- kept alive: 400 at once, connection closed, and the exporter goes on (it spun at
    -- 100% CPU past SIGTERM in lua-http's drain loop: doc/hostile1.md)
    for _, req in ipairs({
      "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
      "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nabc",
    }) do
      local r, rerr = exchange(port, req, 10)
      assert.equal(400, status_of(r), tostring(rerr))
      assert.matches("\r\nconnection: close\r\n", r)
      local after, aerr = get(port, "/metrics")
      assert.equal(200, status_of(after), tostring(aerr))
    end

    -- a huge header line: refused, and the exporter does not buffer it
    local rss0 = rss_kib(pid)
    local big = ("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n"):format(("a"):rep(16 * 1024 * 1024))
    local reply = exchange(port, big, 10)
    assert.is_not.equal(200, status_of(reply))
    local grown = rss_kib(pid) - rss0
    assert.is_true(grown < 4096, ("the exporter grew by %d KiB reading a 16 MiB header"):format(grown))
    -- too many header lines: refused
    local many = { "GET /metrics HTTP/1.1\r\nHost: x\r\n" }
    for i = 1, 200 do many[#many + 1] = ("X-%d: y\r\n"):format(i) end
    many[#many + 1] = "\r\n"
    assert.is_not.equal(200, status_of(exchange(port, table.concat(many), 10)))

    -- a slow client (half a request, then nothing) does not hold up a scrape,
    -- and the exporter drops it after --timeout
    local slow <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    assert(slow:write("GET /metr", 2))
    assert.equal(200, status_of(get(port, "/metrics")))
    local eof = support.wait_for(function() return slow:read(100, 0.2) == "" end, 20)
    assert.truthy(eof, "the slow client was dropped")

    -- many idle connections: at most --max-connections are held at once,
    -- the rest wait in the backlog; scrapes get through as the idle ones time out
    local fds0 = fd_count_of(pid)
    local idle = {}
    for i = 1, 20 do idle[i] = assert(tcplab.connect("127.0.0.1", port, 2)) end
    local over = support.wait_for(function() return fd_count_of(pid) > fds0 + 4 end, 3)
    local held = fd_count_of(pid) - fds0
    local scraped = support.wait_for(function() return status_of(get(port, "/metrics")) == 200 end, 60)
    for _, s in ipairs(idle) do s:close() end
    assert.falsy(over, ("the exporter held %d connections (--max-connections 4)"):format(held))
    assert.truthy(scraped, "a scrape got through")

    -- SIGTERM: exit 143, the process gone, the port closed
    os.execute("kill -TERM " .. pid)
    local rc = support.wait_for(function() return tonumber(readall(dir .. "/rc")) end, 20)
    assert.equal(143, rc, readall(dir .. "/serve.log"))
    assert.is_false(support.alive(pid))
    assert.is_nil((tcplab.connect("127.0.0.1", port, 1)))
    assert.matches("tcplab: terminated", readall(dir .. "/serve.log"))
  end)

  it("SIGINT exits 130; --listen errors are usage errors; a port in use fails with exit 1", function()
    srv = start(dir, "--listen 127.0.0.1:0 --netns " .. name)
    assert.truthy(srv.port)
    local out, rc = run(("serve --listen 127.0.0.1:%d --netns %s"):format(srv.port, name))
    assert.equal(1, rc, out)
    assert.matches(("listen on 127.0.0.1:%d: Address already in use"):format(srv.port), out, 1, true)
    out, rc = run("serve --listen 127.0.0.1:99999")
    assert.equal(2, rc, out)
    assert.matches("--listen: port 0..65535 expected, got 99999 in '127.0.0.1:99999'", out, 1, true)
    out, rc = run("serve --listen nohost")
    assert.equal(2, rc, out)
    assert.matches("--listen: HOST:PORT expected", out, 1, true)
    out, rc = run("serve --netns all --netns " .. name)
    assert.equal(2, rc, out)
    out, rc = run("serve --netns no-such-ns-" .. support.pid())
    assert.equal(1, rc, out)
    -- SIGINT
    local p = assert(io.popen(("cd %s && env -u LUA_PATH -u LUA_CPATH bin/tcplab serve --listen :0 >%s/int.log 2>&1 & " ..
      "echo $!; wait $!; echo rc=$?"):format(support.shq(support.slurp("pwd"):gsub("%s+$", "")), dir)))
    local pid = tonumber(p:read("l"))
    assert.truthy(support.wait_for(function() return readall(dir .. "/int.log"):find("listening on", 1, true) end, 20))
    os.execute("kill -INT " .. pid)
    local tail = p:read("a")
    p:close()
    assert.matches("rc=130", tail)
  end)

  it("--netns that is not a network namespace fails at start (exit 1, naming it), with or without --walk", function()
    -- `timeout` bounds the run: the bug this guards against is a server that starts and answers 503 forever
    for _, extra in ipairs({ "", " --walk" }) do
      local out, rc = run("serve --listen 127.0.0.1:0 --netns /etc/passwd" .. extra, { bin = "timeout -s TERM 20 bin/tcplab" })
      assert.equal(1, rc, out)
      assert.matches("--netns /etc/passwd: /etc/passwd: not a network namespace", out, 1, true)
      assert.falsy(out:find("listening on", 1, true), out)
      out, rc = run("serve --listen 127.0.0.1:0 --netns " .. name .. " --netns /proc/self/ns/uts" .. extra,
        { bin = "timeout -s TERM 20 bin/tcplab" })
      assert.equal(1, rc, out)
      assert.matches("--netns /proc/self/ns/uts: /proc/self/ns/uts: not a network namespace", out, 1, true)
    end
  end)

  it("Prometheus scrapes it every second and reads back the namespace's counts", function()
    if not have("prometheus") then
      pending("prometheus is not installed")
      return
    end
    -- more states in the namespace: a CLOSE_WAIT (the peer closed, we did not)
    c2:close()
    srv = start(dir, "--listen 127.0.0.1:0 --netns " .. name)
    assert.truthy(srv.port, readall(srv.log))
    local probe = assert(tcplab.listen("127.0.0.1", 0))
    local web = select(2, probe:getsockname())
    probe:close()
    local cfg = assert(io.open(dir .. "/prometheus.yml", "w"))
    cfg:write(("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n" ..
      "scrape_configs:\n  - job_name: tcplab\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n"):format(srv.port))
    cfg:close()
    local p = assert(io.popen(("cd %s && %sprometheus --config.file=%s/prometheus.yml --storage.tsdb.path=%s/data " ..
      "--web.listen-address=127.0.0.1:%d >%s/prom.log 2>&1 & echo $!"):format(dir, NOPRELOAD, dir, dir, web, dir)))
    local prom = tonumber(p:read("l"))
    p:close()
    local cjson = require "cjson"
    local ok, err = pcall(function()
      local want = tally_zeros()
      for st, n in pairs(assert(tcplab.counts{ netns = "/run/netns/" .. name })) do want[st] = n end   -- the walk
      assert.equal(1, want.CLOSE_WAIT)
      local got
      local same = support.wait_for(function()
        -- the last sample of each series in the last 5 minutes: on a busy
        -- host a 1 s scrape can time out now and then (and where the
        -- namespace shares the host's connection table, a walk costs the
        -- host's sockets: doc/kernel-walk-scope.md)
        local reply = get(web, "/api/v1/query?query=last_over_time(tcplab_tcp_connection_states%7Bjob%3D%22tcplab%22%7D%5B5m%5D)")
        local body = body_of(reply)
        if status_of(reply) ~= 200 or not body then return false end
        local okj, doc = pcall(cjson.decode, body)
        if not okj or doc.status ~= "success" then return false end
        got = {}
        for _, r in ipairs(doc.data.result) do
          local st = tcplab.states.canonical(r.metric.state)
          if r.metric.job ~= "tcplab" or not st then return false end
          got[st] = tonumber(r.value[2])
        end
        for st, n in pairs(want) do if got[st] ~= n then return false end end
        return support.count(got) == 11
      end, 120)
      assert.truthy(same, "Prometheus answered " .. cjson.encode(got or {}) .. "; its targets: " ..
        tostring(body_of(get(web, "/api/v1/targets"))) .. "; serve log: " .. readall(srv.log) ..
        "; prometheus log: " .. readall(dir .. "/prom.log"):sub(-1500))
      assert.same(want, got)
    end)
    os.execute("kill -TERM " .. prom)
    local ended = support.wait_for(function() return not support.alive(prom) end, 30)
    if not ended then os.execute("kill -KILL " .. prom) end
    assert(ok, err)
    assert.truthy(ended, "prometheus ended")
  end)
end)
