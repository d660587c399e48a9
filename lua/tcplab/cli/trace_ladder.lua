--- `tcplab trace --port P --ladder [--pcap FILE] [--svg FILE] [--format json]`:
-- one port's segments and its sockets' transitions as the ladders `tcplab
-- run` prints (tcplab.trace.ladder_capture), a pcapng file (tcplab.pcapng)
-- and an SVG, written atomically (tcplab.export.textfile). Its options and
-- its command body; cli.lua calls options() and, when wanted(o), run().
local ladder_capture = require "tcplab.trace.ladder_capture"
local pcapng = require "tcplab.pcapng"
local export = require "tcplab.export"
local process = require("tcplab.kernel").process

local trace_ladder = {}

local SNAP_MIN, SNAP_MAX, SNAP_DEFAULT = 128, 262144, 262144

local function snaplen_arg(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < SNAP_MIN or n > SNAP_MAX then
    return nil, ("--snaplen: bytes %d..%d expected, got '%s'"):format(SNAP_MIN, SNAP_MAX, v)
  end
  return n
end

local function buffer_arg(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < 1 or n > 1048576 then
    return nil, ("--buffer-size: KiB 1..1048576 expected, got '%s'"):format(v)
  end
  return n
end

local function interface_arg(v)
  if v == "" or #v > 15 or v:find("/", 1, true) then
    return nil, ("--interface: an interface name (1..15 bytes, as ip link shows it) or 'any' expected, got '%s'")
      :format(v)
  end
  return v
end

--- Add the capture options to the trace command's parser.
function trace_ladder.options(trace)
  trace:flag("--ladder", "Capture the segments of --port (one port) and print, per connection, the ladder " ..
    "`tcplab run` prints: relative seq/ack and each side's states from the recorder (root).")
  trace:option("--pcap", "Also write the captured frames to FILE as pcapng (tcpdump -r, Wireshark), " ..
    "atomically (a temp file beside it, then rename)."):argname("<file>")
  trace:option("--svg", "Also write the ladders as a standalone SVG to FILE."):argname("<file>")
  trace:option("--interface", "With --ladder: the interface to capture on, in the namespace: lo (default), " ..
    "a name, or 'any' (Ethernet and loopback interfaces)."):convert(interface_arg)
  trace:option("--snaplen", ("With --ladder: bytes kept of each frame, %d..%d (%d)."):format(SNAP_MIN, SNAP_MAX,
    SNAP_DEFAULT)):convert(snaplen_arg)
  trace:option("--buffer-size", "With --ladder: the capture's receive buffer in KiB (4096), like tcpdump -B; " ..
    "frames that find it full are dropped, and the command says how many."):convert(buffer_arg)
  trace:option("--format", "With --ladder: text (the ladders) or json (the schema of `tcplab run --format json`); " ..
    "with --life: text, or json (one object per connection, one per line).")
    :choices({ "text", "json" }):default("text")
end

--- Does the command line ask for a capture?
function trace_ladder.wanted(o)
  return o.ladder or o.pcap ~= nil or o.svg ~= nil
end

--- A usage problem of the capture options, or nil (o: argparse's result).
function trace_ladder.misuse(o)
  if not trace_ladder.wanted(o) then
    for _, opt in ipairs({ "interface", "snaplen", "buffer_size" }) do
      if o[opt] ~= nil then return ("--%s needs --ladder (or --pcap/--svg)"):format((opt:gsub("_", "-"))) end
    end
    if o.format ~= "text" and not o.life then return "--format json needs --ladder (or --pcap/--svg) or --life" end
    return nil
  end
  if o.life then return "--life: not with --ladder, --pcap or --svg (one of them at a time)" end
  if #o.port ~= 1 then
    return ("--ladder: one --port P expected (the port whose segments to capture), got %d"):format(#o.port)
  end
  if o.netns == "all" then return "--ladder: one namespace at a time (not --netns all)" end
  for _, opt in ipairs({ "owners", "pid", "comm" }) do
    if o[opt] then return ("--%s: not with --ladder (the ladder joins by socket already)"):format(opt) end
  end
  for _, opt in ipairs({ "pcap", "svg" }) do
    local path = o[opt]
    if path and (path == "" or path:match("/$") or path:match("^%.?%.?$") or path:match("/%.%.?$")) then
      return ("--%s: a file path expected, got '%s'"):format(opt, path)
    end
  end
  -- one path for both: the pcapng, written last, would silently replace the SVG
  local function norm(path) return (path:gsub("/+", "/"):gsub("^%./", ""):gsub("/%./", "/")) end
  if o.pcap and o.svg and norm(o.pcap) == norm(o.svg) then
    return ("--pcap and --svg: two files expected, both name '%s'"):format(o.pcap)
  end
  return nil
end

--- Run the capture: ctx = { fail = function(msg), netns = path or nil }.
function trace_ladder.run(o, ctx)
  local s <close>, err = ladder_capture.start{ port = o.port[1], netns = ctx.netns, interface = o.interface,
                                                snaplen = o.snaplen or SNAP_DEFAULT, raw = o.pcap ~= nil,
                                                buffer_kb = o.buffer_size,
                                                limit = o.duration }
  if not s then ctx.fail(err) end
  local header = o.pcap and pcapng.header{ linktype = pcapng.LINKTYPE_ETHERNET, snaplen = s.snaplen,
                                           ifname = s.interface }
  -- unwritable paths fail now, before a segment is read: each file is
  -- written once here (an empty capture; a placeholder SVG) and replaced at the end
  if o.pcap then
    local ok, werr = export.textfile(o.pcap, header)
    if not ok then ctx.fail("--pcap: " .. werr) end
  end
  if o.svg then
    local ok, werr = export.textfile(o.svg, '<svg xmlns="http://www.w3.org/2000/svg"><text y="20">' ..
      "tcplab trace: capture in progress</text></svg>\n")
    if not ok then ctx.fail("--svg: " .. werr) end
  end
  io.stderr:write(("tcplab: capturing tcp port %d on %s%s, snaplen %d%s; Ctrl-C to stop\n"):format(o.port[1],
    s.interface, ctx.netns and (" of " .. ctx.netns) or "", s.snaplen,
    o.count and (", up to " .. o.count .. " segments") or ""))
  io.stderr:flush()
  local reason, rerr = s:run{ count = o.count, duration = o.duration }
  if not reason then ctx.fail("capture: " .. tostring(rerr)) end
  local result = s:finish()
  if o.format == "json" then require("tcplab.format.json").scenario(result)
  elseif o.ladder then require("tcplab.format.ladder").print(result) end
  io.stdout:flush()
  local failed
  if o.svg then
    local buf = export.buffer()
    require("tcplab.format.svg").write(result, buf)
    local ok, werr = export.textfile(o.svg, buf:text())
    if not ok then failed = "--svg: " .. werr end
  end
  if o.pcap then
    local parts = { header }
    for _, seg in ipairs(s:frames()) do parts[#parts + 1] = pcapng.packet(seg.raw, seg.wall_ns, seg.wire_len) end
    local ok, werr = export.textfile(o.pcap, table.concat(parts))
    if not ok then failed = "--pcap: " .. werr end
  end
  io.stderr:write(("tcplab: %d segments captured (%s)%s%s\n"):format(#result.segments,
    reason == "count" and "--count reached" or reason == "duration" and "--duration reached" or "interrupted",
    o.pcap and (", written to " .. o.pcap) or "", result.capture_note and ("; " .. result.capture_note) or ""))
  if result.drops > 0 then
    io.stderr:write(("tcplab: warning: the capture dropped %d frames (the kernel's receive buffer was full): " ..
      "the ladder and the pcap miss segments\n"):format(result.drops))
  end
  if failed then ctx.fail(failed) end
  if reason == "interrupted" then
    local sig = process.caught_signal() or 2
    io.stderr:write(("tcplab: %s\n"):format(sig == 15 and "terminated" or "interrupted"))
    s:close()
    os.exit(128 + sig, true)
  end
end

return trace_ladder
