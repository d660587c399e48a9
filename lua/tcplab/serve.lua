--- tcplab serve: the metrics of `tcplab export --textfile`, computed when
-- Prometheus scrapes /metrics over HTTP (lua-http on cqueues), plus
-- tcplab_scrape_duration_seconds. doc/serve.md.
--
--   local ex = require("tcplab.serve").exporter{ netns = { "/run/netns/web" } }
--   io.write(ex:metrics())   -- one scrape's body, no HTTP (what the bench times)
--   ex:close()
--
-- Counts come through one seam, source(): a live handle per namespace where
-- tcplab.live exists and loads (opened once, closed by :close()), a walk
-- otherwise. The server bounds everything a client can make it hold: a
-- request must arrive within `timeout` seconds, at most `max_connections`
-- connections are served at once (the rest wait in the listen backlog),
-- a request line or header line longer than MAX_LINE bytes or more than
-- MAX_HEADERS header lines is refused (the connection closed).
local kernel = require "tcplab.kernel"
local tally = require "tcplab.tally"
local prometheus = require "tcplab.format.prometheus"
local export = require "tcplab.export"
local args = require "tcplab.args"

local serve = {}

serve.DEFAULT_LISTEN = "127.0.0.1:9477"
serve.TIMEOUT = 10          -- seconds a client has to send its request (and between requests)
serve.MAX_CONNECTIONS = 64  -- connections served at once
serve.MAX_LINE = 8192       -- bytes in the request line or one header line
serve.MAX_HEADERS = 64      -- header lines in one request
serve.DURATION = "tcplab_scrape_duration_seconds"
serve.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

---------------------------------------------------------------- lua-http
-- Debian 12 packages lua-http (and its pure-Lua helpers fifo, basexx,
-- lpeg_patterns, binaryheap) for Lua 5.1-5.3 only; lua-http 0.4 itself runs
-- on 5.4, and its C parts (cqueues, luaossl, lpeg) are built for 5.4. So
-- when 5.4's path has no http.server, these names (and only these) are
-- looked up in the pure-Lua trees of the older versions.
local BORROWED = { http = true, fifo = true, basexx = true, lpeg_patterns = true, binaryheap = true }
local OLD_TREES = "/usr/share/lua/5.3/?.lua;/usr/share/lua/5.3/?/init.lua;" ..
                  "/usr/share/lua/5.2/?.lua;/usr/share/lua/5.2/?/init.lua;" ..
                  "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"

local function borrowed_searcher(name)
  if not BORROWED[name:match("^[^.]+")] then return nil end
  local file, err = package.searchpath(name, OLD_TREES)
  if not file then return "\n\t" .. err end
  local chunk, lerr = loadfile(file)
  if not chunk then error(("error loading module '%s' from file '%s':\n\t%s"):format(name, file, lerr), 0) end
  return chunk, file
end

--- require "http.server" (and http.headers): the modules, or nil and what
-- to install.
function serve.http()
  local ok, server = pcall(require, "http.server")
  if not ok then
    local searchers = package.searchers
    local present = false
    for _, s in ipairs(searchers) do present = present or s == borrowed_searcher end
    if not present then searchers[#searchers + 1] = borrowed_searcher end
    ok, server = pcall(require, "http.server")
  end
  if not ok then
    return nil, "tcplab serve needs lua-http and lua-cqueues (Debian: apt-get install lua-http lua-cqueues): " ..
      tostring(server):match("^[^\n]*")
  end
  return { server = server, headers = require "http.headers", cqueues = require "cqueues" }
end

---------------------------------------------------------------- --listen
--- "HOST:PORT", "[V6]:PORT" or ":PORT" (127.0.0.1) -> host, port; or nil and
-- what to type. Hosts are address literals (and localhost); port 0 asks the
-- kernel for a free port (printed at start).
function serve.parse_listen(v)
  local expected = "HOST:PORT expected (e.g. 127.0.0.1:9477, [::1]:9477, 0.0.0.0:9477 or :9477)"
  if type(v) ~= "string" then return nil, expected .. ", got " .. args.show(v) end
  local host, port = v:match("^%[([%x:.]+)%]:(%d+)$")
  local bracketed = host ~= nil
  if not host then host, port = v:match("^([^:]*):(%d+)$") end
  if not host then return nil, ("%s, got '%s'"):format(expected, v) end
  if host == "" then host = "127.0.0.1" end
  local n = #port <= 5 and math.tointeger(tonumber(port)) or port
  local bad = args.bad_port(n, true)
  if bad then return nil, ("%s in '%s'"):format(bad, v) end
  if host == "localhost" then host = "127.0.0.1" end
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  local v4 = a and not bracketed and tonumber(a) < 256 and tonumber(b) < 256 and tonumber(c) < 256 and tonumber(d) < 256
  local v6 = bracketed and host:find(":", 1, true)
  if not v4 and not v6 then
    return nil, ("an IPv4 address, [IPv6 address] or localhost expected as HOST, got '%s' in '%s'"):format(host, v)
  end
  return host, n
end

---------------------------------------------------------------- counts
local function walk_source(path, label, name)
  return {
    how = "walk",
    netns = label,
    name = name,
    tcpstat = function()
      local list, err, errno = tally.tcpstat({ netns = path })
      if not list then return nil, err, errno end
      list[1].netns = label
      return list[1]
    end,
    close = function() end,
  }
end

--- The seam: the counts of one namespace (path, or nil for this process's
-- own) as a source { how = "live" | "walk", why, tcpstat() -> tcpstat entry,
-- close() }. A live handle (tcplab.live, where it exists and loads) gives
-- tcplab_tcp_connection_states without a walk; the listener gauges then
-- come from a dump of the listeners only (the kernel skips the connection
-- table for it), and the per-port series, which need every connection,
-- are left out. Otherwise every scrape walks the namespace, as export does.
-- label: the netns label of its series (nil: none); name: how logs call it.
function serve.source(path, label, name, walk)
  name = name or label or path or "this namespace"
  local live = rawget(kernel, "live")
  if walk then
    local s = walk_source(path, label, name)
    s.why = "asked for (--walk: the per-port series too)"
    return s
  end
  if type(live) ~= "function" then
    local s = walk_source(path, label, name)
    s.why = "live counts are not in this build"
    return s
  end
  local h, why = live({ netns = path })
  if not h then
    local s = walk_source(path, label, name)
    s.why = "live counts did not load: " .. tostring(why)
    return s
  end
  return {
    how = "live",
    netns = label,
    name = name,
    tcpstat = function()
      local counts, err, errno = h:counts()
      if not counts then return nil, err, errno end
      local list, lerr, lerrno = tally.tcpstat({ netns = path, states = { "LISTEN" } })
      if not list then return nil, lerr, lerrno end
      local t = list[1]
      t.states, t.ports, t.netns = counts, {}, label
      return t
    end,
    close = function() h:close() end,
  }
end

---------------------------------------------------------------- exporter
local Exporter = {}
Exporter.__index = Exporter

function Exporter:__tostring()
  if self.closed then return "tcplab exporter (closed)" end
  local hows = {}
  for _, s in ipairs(self.sources) do hows[#hows + 1] = s.name .. ": " .. s.how end
  if self.all then hows[#hows + 1] = "all namespaces: walk" end
  return "tcplab exporter (" .. table.concat(hows, ", ") .. ")"
end

--- One scrape's body: the tcpstat metrics of export --textfile, then
-- tcplab_scrape_duration_seconds; or nil, message, errno (a namespace
-- that went away, ...).
function Exporter:metrics()
  if self.closed then error("attempt to use a closed exporter", 2) end
  local t0 = kernel.now()
  local list
  if self.all then
    local err, errno
    list, err, errno = tally.tcpstat({ netns = "all" })
    if not list then return nil, err, errno end
  else
    list = {}
    for i, s in ipairs(self.sources) do
      local t, err, errno = s.tcpstat()
      if not t then return nil, ("%s: %s"):format(s.name, err), errno end
      list[i] = t
    end
  end
  local buf = export.buffer()
  prometheus.tcpstat(list, buf)
  local seconds = kernel.now() - t0
  buf:write("# HELP ", serve.DURATION, " Seconds tcplab took to compute this scrape's metrics.\n",
            "# TYPE ", serve.DURATION, " gauge\n", serve.DURATION, " ", ("%.6f"):format(seconds), "\n")
  return buf:text(), seconds
end

--- Release the live handles (idempotent).
function Exporter:close()
  if self.closed then return true end
  self.closed = true
  for _, s in ipairs(self.sources) do s.close() end
  return true
end
Exporter.__close = Exporter.close
Exporter.__gc = Exporter.close

--- exporter{ netns = nil | "all" | { path, ... }, labels = { name, ... }, walk = bool }:
-- the sources, opened once. With several namespaces each series gets a
-- netns label (labels[i], default the path); with one (or none: this
-- process's namespace) the output is export --textfile's for it when walked
-- (walk = true: every scrape walks, the per-port series included; else live
-- counts where they load, without the per-port series).
function serve.exporter(opts)
  if opts ~= nil and type(opts) ~= "table" then args.error("exporter", 1, "options table expected, got " .. args.show(opts)) end
  opts = opts or {}
  local netns = opts.netns
  local self = setmetatable({ sources = {}, all = netns == "all" }, Exporter)
  if netns == nil then
    self.sources[1] = serve.source(nil, nil, nil, opts.walk)
  elseif netns ~= "all" then
    if type(netns) ~= "table" or #netns == 0 then
      args.error("exporter", 1, "netns: \"all\" or a list of namespace paths expected, got " .. args.show(netns))
    end
    for i, path in ipairs(netns) do
      if type(path) ~= "string" then args.error("exporter", 1, ("netns[%d]: path expected, got %s"):format(i, args.show(path))) end
      local name = (opts.labels or {})[i] or path
      self.sources[i] = serve.source(path, #netns > 1 and name or nil, name, opts.walk)
    end
  end
  return self
end

--- For the bench: `n` scrapes (default 5) of an exporter over opts.netns,
-- without HTTP. Returns { how = "walk" | "live" | "walk (all)", ms = sorted
-- list, median_ms, bytes = size of one body }, or nil, message, errno.
function serve.bench(opts)
  opts = opts or {}
  local n = opts.n or 5
  if math.type(n) ~= "integer" or n < 1 then args.error("bench", 1, "n: an integer of 1 or more expected, got " .. args.show(n)) end
  local ex <close> = serve.exporter{ netns = opts.netns, labels = opts.labels }
  local ms, bytes = {}, 0
  for i = 1, n do
    local body, seconds, errno = ex:metrics()
    if not body then return nil, seconds, errno end
    ms[i], bytes = seconds * 1000, #body
  end
  table.sort(ms)
  return { how = ex.all and "walk (all)" or ex.sources[1].how, ms = ms, median_ms = ms[(n + 1) // 2], bytes = bytes }
end

---------------------------------------------------------------- HTTP
-- Mark a stream whose socket we shut as over: lua-http's h1_stream:shutdown()
-- would otherwise drain the rest of its request with step(0) in a loop bounded
-- only by bytes received, and spin at 100% CPU (past SIGTERM) when none come.
local function close_stream(stream)
  if stream.state ~= "closed" then pcall(stream.set_state, stream, "closed") end
end

local function respond(http, stream, method, status, body, extra, timeout)
  local h = http.headers.new()
  h:append(":status", tostring(status))
  h:append("content-type", status == 200 and serve.CONTENT_TYPE or "text/plain; charset=utf-8")
  h:append("content-length", tostring(#body))
  for k, v in pairs(extra or {}) do h:append(k, v) end
  if method == "HEAD" then
    stream:write_headers(h, true, timeout)
  elseif stream:write_headers(h, false, timeout) then
    stream:write_chunk(body, true, timeout)
  end
end

--- The answer to one request: status, body, extra headers.
function serve.route(ex, method, path)
  if method ~= "GET" and method ~= "HEAD" then
    return 405, "405 method not allowed: GET or HEAD\n", { allow = "GET, HEAD" }
  end
  path = path:match("^[^?#]*")
  if path == "/" then
    return 200, "tcplab exporter: the metrics are at /metrics\n"
  elseif path ~= "/metrics" then
    return 404, "404 not found: the metrics are at /metrics\n"
  end
  local body, err = ex:metrics()
  if not body then return 503, "503 the metrics could not be computed: " .. tostring(err) .. "\n" end
  return 200, body
end

--- Bind the listener: a server { host, port, step(seconds), close() }, or
-- nil, message, errno (the port is in use, ...). opts: host, port,
-- exporter, timeout, max_connections, log (a function of one line).
function serve.listen(opts)
  local http, why = serve.http()
  if not http then return nil, why end
  local timeout = opts.timeout or serve.TIMEOUT
  local log = opts.log or function() end
  local function onstream(_, stream)
    stream.max_header_lines = serve.MAX_HEADERS
    local req = stream:get_headers(timeout)
    if not req then
      -- the client went away, sent too much, or too slowly: drop the
      -- connection (lua-http would otherwise wait, without a deadline, for
      -- the rest of a request that never comes)
      stream.connection.socket:shutdown("rw")
      close_stream(stream)
      return
    end
    local method = req:get(":method")
    local status, body, extra = serve.route(opts.exporter, method, req:get(":path") or "")
    if status == 503 then log((body:gsub("\n$", ""))) end
    -- A request with a body: the exporter reads none, and lua-http, left to
    -- skip a bad chunked body on a kept-alive connection, spun at 100% CPU
    -- past SIGTERM in h1_stream:shutdown()'s drain loop (doc/hostile1.md). Answer
    -- 400 on the socket itself, unbuffered, and close it before lua-http looks at
    -- the body.
    local te, cl = req:get("transfer-encoding"), req:get("content-length")
    if te ~= nil or (cl ~= nil and cl ~= "0") then
      local sock = stream.connection.socket
      local msg = "400 the exporter takes no request body: GET /metrics\n"
      pcall(sock.xwrite, sock, ("HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n" ..
        "content-length: %d\r\nconnection: close\r\n\r\n%s"):format(#msg, msg), "n", timeout)
      pcall(sock.flush, sock, "n", timeout)
      sock:shutdown("rw")
      -- and tell the stream it is over: its shutdown() would otherwise loop on
      -- step(0) waiting for the rest of the body (lua-http h1_stream)
      close_stream(stream)
      return
    end
    respond(http, stream, method, status, body, extra, timeout)
  end
  local srv, lerr, lerrno = http.server.listen {
    host = opts.host, port = opts.port, tls = false, reuseaddr = true,
    onstream = onstream,
    onerror = function(_, _, op, err) log(("HTTP %s: %s"):format(tostring(op), tostring(err))) end,
    max_concurrent = opts.max_connections or serve.MAX_CONNECTIONS,
    connection_setup_timeout = timeout,
    intra_stream_timeout = timeout,
  }
  if not srv then return nil, ("listen on %s:%d: %s"):format(opts.host, opts.port, tostring(lerr)), lerrno end
  -- every accepted connection buffers at most one line of MAX_LINE bytes
  local add_socket = srv.add_socket
  function srv.add_socket(self, socket)
    socket:setmaxline(serve.MAX_LINE)
    socket:setbufsiz(serve.MAX_LINE, serve.MAX_LINE)
    return add_socket(self, socket)
  end
  local ok, err, errno = srv:listen()
  if not ok then
    srv:close()
    return nil, ("listen on %s:%d: %s"):format(opts.host, opts.port, tostring(err)), errno
  end
  local _, host, port = srv:localname()
  local server = { host = host, port = port }
  --- Serve for up to `seconds`: true, or nil and the error.
  function server.step(_, seconds) return srv:step(seconds) end
  function server.close() srv:close() end
  return server
end

return serve
