--- Connection lifetimes (trace/life.lua records) as text lines, like BCC's
-- tcplife, or as JSON lines (one object per connection, written as it
-- closes: a stream, so no enclosing array). Plain records in, text out.
local cjson = require "cjson"
local json = require "tcplab.format.json"
local valid_utf8 = require "tcplab.format.valid_utf8"
local wire = require "tcplab.wire"

local life = {}

local TEXT = "%-7s %-15s %-26s %-26s %9s %9s %12s %s"

--- The text header; opts.netns adds a NETNS column first.
function life.header(out, opts)
  out = out or io.stdout
  out:write((opts and opts.netns) and ("%-16s "):format("NETNS") or "",
    TEXT:format("PID", "COMM", "LOCAL", "REMOTE", "TX_BYTES", "RX_BYTES", "DURATION(s)", "STATES"), "\n")
end

-- The duration column: "more than" (>) for a connection open before the trace.
local function duration(r)
  return (r.since_start and ">" or "") .. ("%.6f"):format(r.duration)
end

--- One line: owner (or - -), both ends, data bytes each way (~ when the
-- opener could not be told: one SYN byte may be counted), duration, the
-- states joined by '>'. opts.netns: the NETNS column's text.
function life.text(r, out, opts)
  out = out or io.stdout
  local comm = r.comm and valid_utf8.fix(r.comm):gsub("%s", "_") or "-"
  out:write((opts and opts.netns) and ("%-16s "):format(opts.netns) or "",
    TEXT:format(r.pid and tostring(r.pid) or "-", comm, wire.endpoint(r.src, r.sport),
      wire.endpoint(r.dst, r.dport), (r.bytes_exact and "" or "~") .. r.sent, r.received, duration(r),
      table.concat(r.states, ">") .. (r.path_full and ">..." or "")), "\n")
end

--- One JSON object on one line: { family, src, sport, dst, dport, netns,
-- pid, comm (null: no owner seen), sent, received, bytes_exact, duration,
-- since_start, opener ("local", "remote" or null), states }.
function life.json(r, out)
  out = out or io.stdout
  local body = cjson.encode({
    family = r.family, src = r.src, sport = r.sport, dst = r.dst, dport = r.dport, netns = r.netns,
    pid = r.pid or cjson.null, comm = r.comm and valid_utf8.fix(r.comm) or cjson.null,
    sent = r.sent, received = r.received, bytes_exact = r.bytes_exact, duration = r.duration,
    since_start = r.since_start, opener = r.opener or cjson.null, states_truncated = r.path_full or nil,
  })
  out:write(body:sub(1, -2), ',"states":', json.encode_list(r.states), "}\n")
end

return life
