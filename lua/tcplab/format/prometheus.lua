--- The Prometheus text exposition format, named after node_exporter's tcpstat
-- collector (node_tcp_connection_states{state="established"}) so a dashboard
-- query changes only the metric name: tcplab_tcp_connection_states with
-- node_exporter's lower-case state labels, all eleven states, zeros included.
-- One metric, one meaning: tcplab_tcp_connection_states counts every socket
-- of a namespace once (its sum is the namespace's socket count); the
-- per-port breakdown is its own metric, tcplab_tcp_port_connection_states
-- (its sum: the sockets whose local port is one of those shown).
-- Label values are escaped (\, ", newline) and made valid UTF-8.
-- Renders tcplab.tcpstat()'s tallies (and summaries); knows nothing else.
local states = require "tcplab.states"
local valid_utf8 = require "tcplab.format.valid_utf8"

local prometheus = {}

prometheus.STATES = "tcplab_tcp_connection_states"
prometheus.PORT_STATES = "tcplab_tcp_port_connection_states"
prometheus.QUEUE = "tcplab_tcp_listen_queue"
prometheus.BACKLOG = "tcplab_tcp_listen_backlog"

local function escape(v)
  return (valid_utf8.fix(tostring(v)):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

-- {a="x",b="y"} from an ordered list of {name, value}.
local function labels(list)
  local parts = {}
  for _, kv in ipairs(list) do
    if kv[2] ~= nil then parts[#parts + 1] = ('%s="%s"'):format(kv[1], escape(kv[2])) end
  end
  return #parts > 0 and "{" .. table.concat(parts, ",") .. "}" or ""
end

local function header(out, name, help, kind)
  out:write("# HELP ", name, " ", help, "\n# TYPE ", name, " ", kind or "gauge", "\n")
end

local function state_lines(out, netns, port, counts, only)
  for _, name in ipairs(only or states.list) do
    out:write(port and prometheus.PORT_STATES or prometheus.STATES, labels({ { "netns", netns }, { "port", port },
      { "state", states.label[name] } }), " ", counts[name] or 0, "\n")
  end
end

--- tcplab.tcpstat()'s list (one entry per namespace; each entry's netns
-- becomes a label when it has one). only: the states the filter kept
-- (default all eleven); a state filtered out is left out, not shown as 0.
function prometheus.tcpstat(list, out, only)
  out = out or io.stdout
  header(out, prometheus.STATES, "Number of TCP sockets per state (as node_exporter's " ..
    "node_tcp_connection_states).")
  for _, t in ipairs(list) do state_lines(out, t.netns, nil, t.states, only) end
  local any = false
  for _, t in ipairs(list) do any = any or #t.ports > 0 end
  if any then
    header(out, prometheus.PORT_STATES, "Number of TCP sockets per state with that local port " ..
      "(the ports asked for and every listening port).")
    for _, t in ipairs(list) do
      for _, p in ipairs(t.ports) do state_lines(out, t.netns, p.port, p.states, only) end
    end
  end
  local function per_listener(name, help, field)
    header(out, name, help)
    for _, t in ipairs(list) do
      for _, l in ipairs(t.listeners) do
        out:write(name, labels({ { "netns", t.netns }, { "port", l.port } }), " ", l[field], "\n")
      end
    end
  end
  per_listener(prometheus.QUEUE, "Connections in the accept queue of the listeners on a local port " ..
    "(LISTEN Recv-Q, summed over the port's listeners).", "queue")
  per_listener(prometheus.BACKLOG, "Backlog of the listeners on a local port (LISTEN Send-Q, " ..
    "after the somaxconn clamp, summed over the port's listeners); a SYN is dropped when the queue exceeds it.",
    "backlog")
end

--- Counts (state -> n) of one namespace, or { [netns] = counts } with by_netns.
-- only: the states that were counted (default all eleven); a state left out
-- of the count is left out of the output rather than shown as 0.
function prometheus.counts(counts, out, by_netns, only)
  out = out or io.stdout
  header(out, prometheus.STATES, "Number of TCP sockets per state (as node_exporter's node_tcp_connection_states).")
  if by_netns then
    local names = {}
    for name in pairs(counts) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do state_lines(out, name, nil, counts[name], only) end
  else
    state_lines(out, nil, nil, counts, only)
  end
end

--- tcplab.summary()'s table.
function prometheus.summary(s, out)
  out = out or io.stdout
  prometheus.counts(s.states, out)
  local function gauge(name, help, lines)
    header(out, name, help)
    for _, l in ipairs(lines) do out:write(name, l[1], " ", l[2], "\n") end
  end
  gauge("tcplab_tcp_sockets", "Number of TCP sockets per address family.",
    { { labels({ { "family", "inet" } }), s.families.inet }, { labels({ { "family", "inet6" } }), s.families.inet6 } })
  gauge("tcplab_tcp_orphans", "TCP sockets closed by their application that the kernel still finishes (inode 0 in FIN_WAIT1, FIN_WAIT2, CLOSING, LAST_ACK).",
    { { "", s.orphans } })
  gauge("tcplab_tcp_listeners", "Listening TCP sockets.", { { "", s.listeners } })
  gauge("tcplab_tcp_listeners_full", "Listening TCP sockets whose accept queue is over their backlog.",
    { { "", #s.full_listeners } })
end

return prometheus
