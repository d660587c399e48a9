--- The kernel's TCP counters (tcplab.counters) in the three formats, in one
-- module so that `tcplab nstat` renders through one place:
--   text:       nstat's own layout ("#kernel", NAME VALUE [RATE/s])
--   json:       one object per namespace and read: {"netns":..,"interval":..,"counters":{..}}
--   prometheus: node_exporter's netstat collector names with a tcplab_ prefix:
--               tcplab_netstat_TcpExt_ListenOverflows, tcplab_netstat_Tcp_ActiveOpens;
--               untyped, as node_exporter writes them; a netns label for --netns all.
-- Each takes a list of { netns = NAME or nil, counters = c } (c: absolute
-- values or a delta) and opts { zeros = bool }.
local fmt = {}

fmt.PREFIX = "tcplab_netstat_"

--- The Prometheus name of an nstat name: TcpExtListenOverflows -> tcplab_netstat_TcpExt_ListenOverflows.
function fmt.metric_name(name)
  local mib, rest = name:match("^(TcpExt)(.+)$")
  if not mib then mib, rest = name:match("^(Tcp)(.+)$") end
  return fmt.PREFIX .. mib .. "_" .. rest
end

local function shown(c, name, opts)
  return opts.zeros or c.values[name] ~= 0
end

function fmt.text(list, out, opts)
  out, opts = out or io.stdout, opts or {}
  for _, e in ipairs(list) do
    local c = e.counters
    out:write(e.netns and ("#netns " .. e.netns) or "#kernel",
              c.interval and ("  (change over %.2f s)"):format(c.interval) or "", "\n")
    for _, name in ipairs(c.names) do
      if shown(c, name, opts) then
        if c.interval and c.interval > 0 then
          out:write(("%-31s %-18d %.1f\n"):format(name, c.values[name], c.values[name] / c.interval))
        else
          out:write(("%-31s %d\n"):format(name, c.values[name]))
        end
      end
    end
  end
end

function fmt.json(list, out, opts)
  local cjson = require "cjson"
  out, opts = out or io.stdout, opts or {}
  for _, e in ipairs(list) do
    local c = e.counters
    local parts = {}
    for _, name in ipairs(c.names) do
      if shown(c, name, opts) then parts[#parts + 1] = cjson.encode(name) .. ":" .. c.values[name] end
    end
    out:write('{"netns":', e.netns and cjson.encode(e.netns) or "null", ',"interval":',
              c.interval and cjson.encode(c.interval) or "null", ',"counters":{', table.concat(parts, ","), "}}\n")
  end
end

local function escape(v)
  return (tostring(v):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

function fmt.prometheus(list, out, opts)
  out, opts = out or io.stdout, opts or {}
  if not list[1] then return end
  for _, name in ipairs(list[1].counters.names) do
    local metric = fmt.metric_name(name)
    out:write("# HELP ", metric, " Statistic ", name:match("^TcpExt") and "TcpExt" or "Tcp",
              name:gsub("^TcpExt", ""):gsub("^Tcp", ""), " (as node_exporter's node_netstat_*).\n",
              "# TYPE ", metric, " untyped\n")
    for _, e in ipairs(list) do
      local v = e.counters.values[name]
      if v ~= nil then
        out:write(metric, e.netns and ('{netns="' .. escape(e.netns) .. '"}') or "", " ", v, "\n")
      end
    end
  end
end

return fmt
