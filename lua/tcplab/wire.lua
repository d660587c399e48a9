--- Segments on the wire, as plain data: which connection (by four-tuple)
-- each captured segment belongs to, who sent it, and the handshake and close
-- read off them. Knows nothing of sockets or the kernel; the scenarios and
-- the ladder/json/svg formats use it on a result's segments.
local wire = {}

local M32 = 0x100000000

--- a + n modulo 2^32 (sequence number arithmetic).
function wire.add(a, n) return (a + n) % M32 end

local function endpoint(host, port)
  return (host:find(":", 1, true) and "[%s]:%d" or "%s:%d"):format(host, port)
end
wire.endpoint = endpoint

--- The one rule for which end a segment or transition belongs to: "server"
-- when its source (local) port is the server's port (`port`: a number or a
-- list of them), else "client".
function wire.side(sport, port)
  if type(port) == "table" then
    for _, p in ipairs(port) do if sport == p then return "server" end end
    return "client"
  end
  return sport == port and "server" or "client"
end

--- Mark each segment with `from` ("client" | "server": the server is the
-- end on `port`) and `conn` (the connection's key, "client>server").
function wire.label(segments, port)
  for _, s in ipairs(segments) do
    s.from = wire.side(s.sport, port)
    local server_first = s.from == "server"
    local c = server_first and endpoint(s.dst, s.dport) or endpoint(s.src, s.sport)
    local v = server_first and endpoint(s.src, s.sport) or endpoint(s.dst, s.dport)
    s.conn = c .. ">" .. v
    s.client, s.server = c, v
  end
  return segments
end

--- The connections of labelled segments, in the order of their first
-- segment: { client, server, cport, client_isn, server_isn, segments =
-- {...}, transitions = {...} }; each segment gains rseq and rack (relative to
-- the ISNs, as tcpdump shows them without -S).
-- events (a recorder's transitions, { time, src, sport, dst, dport, from,
-- to }) join the connection whose ports they carry; a client's connect is
-- logged with sport 0 and joins the connection whose first SYN follows it.
function wire.connections(segments, events, port)
  local list, by = {}, {}
  for _, s in ipairs(segments or {}) do
    local c = by[s.conn]
    if not c then
      c = { client = s.client, server = s.server, segments = {}, transitions = {},
            cport = s.from == "client" and s.sport or s.dport }
      by[s.conn] = c
      list[#list + 1] = c
    end
    c.segments[#c.segments + 1] = s
  end
  -- relative numbers, as tcpdump shows them without -S: from each end's ISN
  -- (its SYN's seq; else its first segment's)
  for _, c in ipairs(list) do
    local isn = {}
    for _, seg in ipairs(c.segments) do
      if seg.flags:find("S", 1, true) and isn[seg.from] == nil then isn[seg.from] = seg.seq end
    end
    for _, seg in ipairs(c.segments) do if isn[seg.from] == nil then isn[seg.from] = seg.seq end end
    c.client_isn, c.server_isn = isn.client, isn.server
    for _, seg in ipairs(c.segments) do
      local peer = isn[seg.from == "client" and "server" or "client"]
      seg.rseq = (seg.seq - isn[seg.from]) % M32
      seg.rack = (peer and seg.flags:find("A", 1, true)) and (seg.ack - peer) % M32 or nil
    end
  end
  for _, ev in ipairs(events or {}) do
    local side = wire.side(ev.sport, port)
    local cport = side == "server" and ev.dport or ev.sport
    -- a listener's own event (dport 0) and one of another port belong to no connection
    if (side == "server" and ev.dport == 0) or (side == "client" and ev.dport ~= port) then side, cport = nil, nil end
    local target
    for _, c in ipairs(list) do
      if cport ~= 0 and c.cport == cport then target = c end
    end
    if side == "client" and cport == 0 then   -- connect(): the first SYN after it
      local best
      for _, c in ipairs(list) do
        local t = c.segments[1].t
        if t >= ev.time - 0.001 and (not best or t < best.segments[1].t) then best = c end
      end
      target = best
    end
    if target then
      target.transitions[#target.transitions + 1] = { t = ev.time, side = side, from = ev.from, to = ev.to,
                                                      inferred = ev.inferred }
    end
  end
  return list
end

--- The first segment of conn from `from` whose flags are exactly `flags`
-- (after index `after`); returns it and its index.
function wire.find(conn, from, flags, after)
  for i = (after or 0) + 1, #conn.segments do
    local s = conn.segments[i]
    if s.from == from and s.flags == flags then return s, i end
  end
  return nil
end

--- The three handshake steps of a connection, when all were seen: the SYN,
-- the SYN-ACK that answers it (the last one: an earlier may have been
-- dropped) and the first ACK from the client after the SYN-ACK.
function wire.handshake(conn)
  local syn = wire.find(conn, "client", "S")
  local synack, i = wire.find(conn, "server", "SA")
  if not syn or not synack then return { syn = syn, synack = synack } end
  local ack
  for j = i + 1, #conn.segments do
    local s = conn.segments[j]
    if s.from == "client" and s.flags:find("A") and not s.flags:find("S") then ack = s break end
  end
  return { syn = syn, synack = synack, ack = ack }
end

--- Each FIN of a connection and the first segment of the other end that
-- acknowledges it (ack == fin.seq + len + 1): { fin, ack } in order.
function wire.fins(conn)
  local out = {}
  for i, s in ipairs(conn.segments) do
    if s.flags:find("F") then
      local want, acked = wire.add(s.seq, s.len + 1), nil
      for j = i + 1, #conn.segments do
        local r = conn.segments[j]
        if r.from ~= s.from and r.flags:find("A") and r.ack == want then acked = r break end
      end
      local retransmit = false
      for _, f in ipairs(out) do if f.fin.from == s.from and f.fin.seq == s.seq then retransmit = true end end
      if not retransmit then out[#out + 1] = { fin = s, ack = acked } end
    end
  end
  return out
end

--- The segments of a connection with the given flag letter.
function wire.with(conn, letter, from)
  local out = {}
  for _, s in ipairs(conn.segments) do
    if s.flags:find(letter, 1, true) and (not from or s.from == from) then out[#out + 1] = s end
  end
  return out
end

return wire
