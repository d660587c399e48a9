--- A scenario's result as ladder diagrams, the picture of the textbooks: two
-- lifelines (client, server), each captured segment an arrow with its flags,
-- seq/ack and time, the calls on each side and the state each end enters,
-- joined by time. One ladder per connection (four-tuple), in order. No cell
-- is cut: long text wraps under itself.
local wire = require "tcplab.wire"

local ladder = {}

local SIDE_W = 30      -- a side's text column
local CHECK_W = 100    -- checks wrap here

--- Split text into lines of at most `width` characters, at spaces when it
-- can (a longer word is split where it must).
local function wrap(text, width)
  local lines, line = {}, ""
  for word in tostring(text):gmatch("%S+") do
    while #word > width do
      if line ~= "" then lines[#lines + 1] = line line = "" end
      lines[#lines + 1] = word:sub(1, width)
      word = word:sub(width + 1)
    end
    if line == "" then line = word
    elseif #line + 1 + #word <= width then line = line .. " " .. word
    else lines[#lines + 1] = line line = word end
  end
  if line ~= "" or #lines == 0 then lines[#lines + 1] = line end
  return lines
end
ladder.wrap = wrap

local function pad(s, w) return s .. (" "):rep(w - #s) end

--- The label of a segment's arrow: "SA seq=… ack=…" (ack when A is set,
-- len when data), absolute numbers as tcpdump -S shows them; relative: from
-- each end's ISN (wire.connections' rseq/rack), as tcpdump shows them without -S.
function ladder.label(s, relative)
  local seq, ack = s.seq, s.ack
  if relative and s.rseq then seq, ack = s.rseq, s.rack or s.ack end
  local parts = { s.flags, "seq=" .. seq }
  if s.flags:find("A", 1, true) then parts[#parts + 1] = "ack=" .. ack end
  if s.len > 0 then parts[#parts + 1] = "len=" .. s.len end
  return table.concat(parts, " ")
end

local function call_text(row)
  if row.note then return row.note end
  return row.call .. ((row.result or "") ~= "" and (" -> " .. row.result) or "")
end

--- The connections of a result, with calls and (without a capture) the
-- transitions shared out: { { client, server, segments, transitions,
-- calls } ... }, at least one when the result has calls or transitions
-- (none for a capture that saw nothing).
function ladder.connections(result)
  local conns = wire.connections(result.segments or {}, result.events or {}, result.port)
  if #conns == 0 and (#(result.events or {}) > 0 or #(result.steps or {}) > 0) then
    local c = { segments = {}, transitions = {} }   -- no capture, or nothing reached lo
    for _, ev in ipairs(result.events or {}) do
      local side = wire.side(ev.sport, result.port)   -- the listener is the server's
      c.transitions[#c.transitions + 1] = { t = ev.time, side = side, from = ev.from, to = ev.to,
                                            inferred = ev.inferred }
    end
    conns[1] = c
  end
  -- a call belongs to the connection whose first segment came last before it
  for i, c in ipairs(conns) do
    c.calls, c.relative = {}, result.relative
    local from = i == 1 and -math.huge or (c.segments[1] and c.segments[1].t or math.huge)
    local nxt = conns[i + 1]
    local to = nxt and nxt.segments[1] and nxt.segments[1].t or math.huge
    for _, row in ipairs(result.steps or {}) do
      local t = row.t or 0
      if t >= from and t < to then c.calls[#c.calls + 1] = row end
    end
  end
  return conns
end

--- The events of one connection in time order: { t, kind = "call" |
-- "segment" | "state", side, text | seg }.
function ladder.events(conn)
  local evs = {}
  for _, row in ipairs(conn.calls or {}) do
    evs[#evs + 1] = { t = row.t or 0, kind = "call", side = row.side, text = call_text(row) }
  end
  for _, s in ipairs(conn.segments) do
    evs[#evs + 1] = { t = s.t, kind = "segment", side = s.from, seg = s }
  end
  for _, tr in ipairs(conn.transitions) do
    evs[#evs + 1] = { t = tr.t, kind = "state", side = tr.side,
                      text = "[" .. tr.to .. "]" .. (tr.inferred and " (inferred)" or "") }
  end
  for i, e in ipairs(evs) do e.i = i end
  table.sort(evs, function(a, b) if a.t ~= b.t then return a.t < b.t end return a.i < b.i end)
  return evs
end

--- Rows to draw: an arrow row takes the states entered within 2 ms after
-- it into its side columns (the state that segment caused).
local function rows_of(evs, relative)
  local rows = {}
  for _, e in ipairs(evs) do
    local last = rows[#rows]
    if e.kind == "state" and last and last.arrow and not last[e.side] and e.t - last.t < 0.002 then
      last[e.side] = e.text
    else
      local row = { t = e.t }
      if e.kind == "segment" then
        row.arrow = { right = e.side == "client", label = ladder.label(e.seg, relative) }
      else
        row[e.side] = e.text
      end
      rows[#rows + 1] = row
    end
  end
  return rows
end

local function arrow(label, right, w)
  local fill = w - #label - 3
  if right then return "──" .. label .. " " .. ("─"):rep(fill - 1) .. "▶" end
  return "◀" .. ("─"):rep(fill - 1) .. " " .. label .. "──"
end

--- Draw one connection's ladder.
function ladder.draw(conn, t0, out, title)
  local rows = rows_of(ladder.events(conn), conn.relative)
  local aw = 24
  for _, r in ipairs(rows) do if r.arrow then aw = math.max(aw, #r.arrow.label + 8) end end
  if title then out:write(title, "\n") end
  local function named(side, addr) return addr and (side .. " " .. addr) or side end
  out:write(("%8s  %s  %s  %s\n"):format("t (s)", pad(named("client", conn.client), SIDE_W), (" "):rep(aw),
                                       named("server", conn.server)))
  for _, r in ipairs(rows) do
    local left, right = wrap(r.client or "", SIDE_W), wrap(r.server or "", SIDE_W)
    for i = 1, math.max(#left, #right) do
      local time = i == 1 and ("%8.3f"):format(r.t - t0) or (" "):rep(8)
      local mid = (i == 1 and r.arrow) and arrow(r.arrow.label, r.arrow.right, aw) or (" "):rep(aw)
      local line = ("%s  %s │%s│ %s"):format(time, pad(left[i] or "", SIDE_W), mid, right[i] or "")
      out:write((line:gsub("%s+$", "")), "\n")
    end
  end
end

--- Notes below a ladder: the options of each SYN (what the ends agreed on).
local function option_notes(conn, t0, out)
  for _, s in ipairs(conn.segments) do
    local o = s.options or {}
    if s.flags:find("S", 1, true) and next(o) then
      local parts = {}
      if o.mss then parts[#parts + 1] = "mss " .. o.mss end
      if o.wscale then parts[#parts + 1] = "wscale " .. o.wscale end
      if o.sack_ok then parts[#parts + 1] = "sack_ok" end
      if o.ts then parts[#parts + 1] = ("ts val %d ecr %d"):format(o.ts.val, o.ts.ecr) end
      out:write(("  note: %s at %.3f from the %s: %s, win %d\n"):format(s.flags, s.t - t0, s.from,
        table.concat(parts, ", "), s.win))
    end
  end
end

local function checks(result, out)
  for _, c in ipairs(result.checks or {}) do
    local tag = c.unobserved and "[not observed] " or (c.ok and "[ok] " or "[FAIL] ")
    local lines = wrap(c.claim, CHECK_W - 2 - #tag)
    out:write("  ", tag, lines[1], "\n")
    for i = 2, #lines do out:write("  ", (" "):rep(#tag), lines[i], "\n") end
    if c.unobserved then
      for _, l in ipairs(wrap("(" .. c.unobserved .. ")", CHECK_W - 6)) do out:write("      ", l, "\n") end
    end
  end
end

--- Does any of the result's transitions carry an inferred state or time?
function ladder.any_inferred(result)
  for _, ev in ipairs(result.events or {}) do
    if ev.inferred then return true end
  end
  return false
end

--- Print a result as ladders (one per connection), then its checks.
function ladder.print(result, out)
  out = out or io.stdout
  local conns = ladder.connections(result)
  local t0 = result.t0 or 0
  for i, c in ipairs(conns) do
    local title = ("== %s%s"):format(result.name,
      #conns > 1 and (" — connection %d of %d"):format(i, #conns) or "")
    ladder.draw(c, t0, out, title)
    option_notes(c, t0, out)
    if c.relative and c.client_isn then
      out:write(("  seq/ack relative to each end's ISN: client %d, server %s\n"):format(c.client_isn,
        tostring(c.server_isn or "-")))
    end
    out:write("\n")
  end
  if result.capture_note then out:write("  (", result.capture_note, ")\n") end
  if result.segments and #result.segments == 0 and not result.capture_note then
    out:write("  (no segment of the scenario's port reached lo: those sent were dropped before it)\n")
  end
  if result.capture_method then out:write("  segments: ", result.capture_method, "\n") end
  if result.method then
    out:write(("  states: %s%s\n"):format(result.method,
      (result.lost or 0) > 0 and (", " .. result.lost .. " lost") or ""))
  end
  for _, m in ipairs(result.counters_moved or {}) do   -- the kernel's counters that moved (tcplab.counters)
    out:write("  counters, ", m.what, ": ", m.summary ~= "" and m.summary or "none moved", "\n")
  end
  if ladder.any_inferred(result) then
    out:write("  (inferred): not recorded when it happened; the state and its time come from a socket dump or the\n"
      .. "  socket's chain of events\n")
  end
  checks(result, out)
end

return ladder
