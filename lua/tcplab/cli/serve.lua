--- `tcplab serve [--listen HOST:PORT] [--netns all|NAME...] [--timeout S]
-- [--max-connections N] [--walk]`: the command around tcplab.serve (doc/serve.md).
-- Runs until SIGTERM or Ctrl-C, then closes the listener and the live
-- handles and lets cli.main exit 143 / 130.
local serve = require "tcplab.serve"
local core = require "tcplab.core"

local M = {}

--- The parser entry (argparse command `serve`).
local function connections_arg(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < 1 or n > 10000 then
    return nil, ("--max-connections: an integer 1..10000 expected, got '%s'"):format(v)
  end
  return n
end

function M.add_parser(p, seconds_arg, netns_help)
  local s = p:command("serve", "Serve the metrics of export --textfile over HTTP at /metrics, computed at each scrape\n" ..
    "(live counts where they load, a walk otherwise), plus tcplab_scrape_duration_seconds (doc/serve.md).")
  s:option("--listen", "Address and port to listen on: HOST:PORT, [V6]:PORT or :PORT (port 0: any free port, " ..
    "printed at start)."):default(serve.DEFAULT_LISTEN)
  s:option("--netns", netns_help .. " Repeat for several (each series gets a netns label); 'all': every " ..
    "namespace, walked at each scrape."):count("*")
  s:flag("--walk", "Walk the namespace at every scrape (the per-port series included) instead of reading " ..
    "live counts (which leave the per-port series out).")
  s:option("--timeout", ("Seconds a client has to send its request (%d)."):format(serve.TIMEOUT))
    :convert(seconds_arg("--timeout"))
  s:option("--max-connections", ("Connections served at once; more wait in the listen backlog (%d).")
    :format(serve.MAX_CONNECTIONS)):convert(connections_arg)
  s:epilog("Exit status: 143 on SIGTERM, 130 on Ctrl-C (the listener and the live counters released), 1 when it " ..
    "cannot listen (the port is in use), 2 usage error.")
  return s
end

local function log(line)
  io.stderr:write("tcplab serve: ", line, "\n")
  io.stderr:flush()
end

--- Run the command. cli: { usage_error(msg), fail(msg), resolve(spec) -> path }.
function M.run(o, cli)
  local host, port = serve.parse_listen(o.listen)
  if not host then cli.usage_error("--listen: " .. port) end
  local netns, labels
  for _, name in ipairs(o.netns) do
    if name == "all" then
      if #o.netns > 1 then cli.usage_error("--netns all: every namespace already (give it alone, or names)") end
      netns = "all"
    else
      netns = netns or {}
      labels = labels or {}
      local path = cli.resolve(name)
      -- a path is taken as typed: see now that it is a network namespace,
      -- or the exporter would start and answer 503 at every scrape
      local id, why = core.netns.id(path)
      if not id then cli.fail(("--netns %s: %s"):format(name, why)) end
      netns[#netns + 1] = path
      labels[#labels + 1] = name
    end
  end
  local ok, why = serve.http()
  if not ok then cli.fail(why) end
  local ex <close> = serve.exporter{ netns = netns, labels = labels, walk = o.walk }
  local srv, err = serve.listen{ host = host, port = port, exporter = ex, timeout = o.timeout,
                                 max_connections = o.max_connections, log = log }
  if not srv then ex:close() cli.fail(err) end
  local shown = srv.host:find(":", 1, true) and "[" .. srv.host .. "]" or srv.host
  log(("listening on http://%s:%d/metrics; %s"):format(shown, srv.port, tostring(ex)))
  for _, s in ipairs(ex.sources) do
    if s.why then log(("%s: walk at each scrape (%s)"):format(s.name, s.why)) end
  end
  local done, e = pcall(function()
    while true do
      local stepped, serr = srv:step(1)
      if not stepped then log(tostring(serr)) end
    end
  end)
  srv:close()
  ex:close()
  error(e, 0)   -- a signal: cli.main exits 128 + its number
  return done
end

return M
