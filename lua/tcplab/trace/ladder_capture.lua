--- Any port as a ladder: capture the segments of one port (AF_PACKET on an
-- interface of a namespace) and record its sockets' transitions (the
-- recorder trace.start picks, BPF first, with the tracefs witness), then
-- join both per connection into the result the scenarios' formats print
-- (format/ladder.lua, svg.lua, json.lua). What `tcplab trace --ladder`
-- drives; usable from Lua:
--
--   local s = assert(ladder_capture.start{ port = 8080 })   -- netns, interface, snaplen, raw
--   local reason = s:run{ count = 20, duration = 10 }        -- "count" | "duration" | "interrupted"
--   local result = s:finish()                                 -- for tcplab.format.ladder.print
local tcplab = require "tcplab.kernel"
local trace = require "tcplab.trace"
local wire = require "tcplab.wire"
local args = require "tcplab.args"

local ladder_capture = {}

local Session = {}
Session.__index = Session

local function bad(fname, msg) args.error(fname, 1, msg, 4) end

local function tuple_key(src, sport, dst, dport)
  return table.concat({ src, sport, dst, dport }, " ")
end

--- Start capturing opts.port (1..65535) in opts.netns (a path, default
-- this namespace) on opts.interface ("lo", a name, or "any") keeping
-- opts.snaplen bytes of each frame (opts.raw: keep the frames' bytes, for
-- pcapng; opts.buffer_kb: the capture's receive buffer), and recording its
-- transitions. Returns a session, or nil, msg.
function ladder_capture.start(opts)
  if type(opts) ~= "table" then bad("start", "table expected, got " .. type(opts)) end
  local why = args.bad_port(opts.port)
  if why then bad("start", "port: " .. why) end
  if opts.netns ~= nil and (type(opts.netns) ~= "string" or opts.netns == "all") then
    bad("start", "netns: a path expected (one namespace), got " .. args.show(opts.netns))
  end
  local cap_opts = { interface = opts.interface or "lo", snaplen = opts.snaplen, buffer_kb = opts.buffer_kb }
  local cap, err
  if opts.netns then
    local h, herr = tcplab.netns.open(opts.netns)
    if not h then return nil, herr end
    cap, err = h:capture(opts.port, cap_opts)
    h:close()
  else
    cap, err = tcplab.capture.open(opts.port, cap_opts)
  end
  if not cap then return nil, err end
  local rec, rerr = trace.start{ port = opts.port, netns = opts.netns, witness = "tuples",
                                 limit = opts.limit or 86400 }
  if not rec then
    cap:close()
    return nil, "the transition recorder: " .. tostring(rerr)
  end
  local ifname, snaplen = cap:interface()
  return setmetatable({ cap = cap, rec = rec, port = opts.port, raw = opts.raw, netns = opts.netns,
                        interface = ifname, snaplen = snaplen, segments = {}, t0 = tcplab.now() }, Session)
end

--- Read segments until opts.count of them (nil: no limit), opts.duration
-- seconds (nil: no limit) or Ctrl-C/SIGTERM. Returns why it ended:
-- "count", "duration" or "interrupted"; or nil, msg when the capture failed.
-- A signal ends the capture, never the caller: what was seen stays.
function Session:run(opts)
  opts = opts or {}
  local deadline = opts.duration and self.t0 + opts.duration or nil
  local segs, cap, raw, count = self.segments, self.cap, self.raw, opts.count
  local reason, failure
  local ok, err = pcall(function()
    while true do
      if count and #segs >= count then reason = "count" return end
      local wait = 0.5
      if deadline then
        wait = deadline - tcplab.now()
        if wait <= 0 then reason = "duration" return end
        wait = math.min(wait, 0.5)
      end
      local got, rerr = cap:read(wait, raw, count and (count - #segs) or nil)
      if not got then
        if rerr == "interrupted" then reason = "interrupted" return end
        failure = rerr
        return
      end
      for _, s in ipairs(wire.label(got, self.port)) do segs[#segs + 1] = s end
    end
  end)
  if not ok then
    if not tcplab.process.is_signal(err) then error(err, 0) end
    reason = "interrupted"
  end
  if failure then return nil, failure end
  self.reason = reason
  return reason
end

--- The frames read so far for a pcapng file: { raw, wall_ns, wire_len } each.
function Session:frames() return self.segments end

--- Stop capturing and recording; the result the formats print: { name, t0,
-- port, segments, events, method, steps = {}, checks, capture_method,
-- capture_note, drops, undecoded, relative = true, ok }.
function Session:finish()
  if self.result then return self.result end
  local cap, rec = self.cap, self.rec
  local drops, undecoded = cap:drops(), cap:undecoded()
  cap:close()
  -- the witness keeps only what concerns the connections this capture saw
  local tuples, clients = {}, {}
  for _, s in ipairs(self.segments) do
    tuples[tuple_key(s.src, s.sport, s.dst, s.dport)] = true
    tuples[tuple_key(s.dst, s.dport, s.src, s.sport)] = true
    if s.from == "client" then clients[s.src .. " " .. s.dst] = true end
  end
  rec.witness_keep = function(ev)
    if ev.sport == 0 then return ev.dport == self.port and clients[ev.src .. " " .. ev.dst] ~= nil end
    return tuples[tuple_key(ev.src, ev.sport, ev.dst, ev.dport)] ~= nil
  end
  rec:stop()
  local where = self.interface .. (self.netns and (" of " .. self.netns) or "")
  local checks = {}
  local note
  if drops > 0 then
    note = ("the capture dropped %d frames (the kernel's receive buffer was full): segments are missing " ..
            "from the ladder and the pcap"):format(drops)
    checks[#checks + 1] = { ok = false, claim = note }
  end
  if undecoded > 0 then
    checks[#checks + 1] = { ok = false, claim = ("%d frames did not decode as TCP (snaplen %d too short?)")
                                                 :format(undecoded, self.snaplen) }
  end
  if rec.warning then checks[#checks + 1] = { ok = false, claim = "recorder: " .. rec.warning } end
  if #self.segments == 0 then
    note = ("no segments of port %d on %s in %.1f s"):format(self.port, where, tcplab.now() - self.t0)
  end
  local ok = true
  for _, c in ipairs(checks) do ok = ok and c.ok end
  self.result = {
    name = ("port %d on %s"):format(self.port, where), ok = ok, t0 = self.t0, port = self.port,
    steps = {}, checks = checks, segments = self.segments, events = rec.recorded, method = rec.method,
    lost = rec.lost, inferred = rec.inferred, missed = rec.missed, scope = rec.scope,
    capture_method = ("AF_PACKET on %s, snaplen %d, kernel timestamps"):format(where, self.snaplen),
    capture_note = note, drops = drops, undecoded = undecoded, relative = true, reason = self.reason,
  }
  return self.result
end

--- Release the capture and the recorder's kernel objects (BPF program,
-- tracefs instance) without reading them (idempotent; also by <close>
-- and garbage collection).
function Session:close()
  if self.cap then self.cap:close() end
  if self.rec then self.rec:_remove() end
end
Session.__close = Session.close
Session.__gc = Session.close

return ladder_capture
