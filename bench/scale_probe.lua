-- One tcplab measurement of make bench-scale, in a process of its own so that
-- its peak resident memory (VmHWM) is its own: bench/scale.lua starts one per
-- method and size, in its namespace. Prints one line:
--   ok ms=M1,M2,... hwm_kb=K [rows=N] [heap=BYTES] [peak=BYTES] [us=MEDIAN]
-- or "na WHY" when the method cannot run here (live counts not built in).
--   lua5.4 bench/scale_probe.lua METHOD REPS
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local tcplab = require "tcplab"
local measure = require "measure"

local method, reps = arg[1], tonumber(arg[2]) or 1
local extra = {}

local function walk(f)
  return function() return measure.timed_lua(f) end
end

local PROBES = {
  idle = { run = function() return 0 end },
  counts_netlink = { run = walk(function() return tcplab.counts{ backend = "netlink" } end) },
  counts_bpf = { bpf = true, run = walk(function() return tcplab.counts{ backend = "bpf" } end) },
  each_netlink = { run = walk(function() return measure.each_two_fields("netlink") end),
    after = function() extra.peak = measure.each_peak("netlink") end },
  each_bpf = { bpf = true, run = walk(function() return measure.each_two_fields("bpf") end),
    after = function() extra.peak = measure.each_peak("bpf") end },
  snapshot_netlink = { run = walk(function() return tcplab.snapshot{ backend = "netlink" } end),
    after = function()
      local rows
      extra.heap = measure.heap_bytes(function() rows = tcplab.snapshot{ backend = "netlink" } return rows end)
      extra.rows = #rows
    end },
  snapshot_bpf = { bpf = true, run = walk(function() return tcplab.snapshot{ backend = "bpf" } end),
    after = function()
      local rows
      extra.heap = measure.heap_bytes(function() rows = tcplab.snapshot{ backend = "bpf" } return rows end)
      extra.rows = #rows
    end },
  owners = { bpf = true, run = walk(function() return tcplab.snapshot{ owners = true } end) },
}

-- Live counts (issue 21 part 1) where this tree has them: the time of one
-- read of a handle, in microseconds (median of many), and the time to open
-- the handle (attach and seed) in ms.
local function live()
  if type(tcplab.live) ~= "function" then
    return nil, "tcplab.live is not in this tree"
  end
  local t0 = tcplab.now()
  local h, err = tcplab.live{}
  if not h then return nil, "tcplab.live: " .. tostring(err) end
  local open_ms = (tcplab.now() - t0) * 1000
  local us = {}
  for i = 1, 1000 do
    local t = tcplab.now()
    local c = h:counts()
    us[i] = (tcplab.now() - t) * 1e6
    if not c then h:close() return nil, "live:counts() failed" end
  end
  h:close()
  return measure.stats(us), open_ms
end

local function main()
  if method == "counts_live" then
    local us, open_ms = live()
    if not us then return "na " .. open_ms end
    return ("ok ms=%.6f hwm_kb=%d us=%.3f open_ms=%.1f"):format(us / 1000, measure.hwm_kb(), us, open_ms)
  end
  local p = PROBES[method]
  if not p then return nil, "unknown method " .. tostring(method) end
  if p.bpf then assert(tcplab.counts{ backend = "bpf" }) end   -- the one load, not timed
  local ms = {}
  for i = 1, reps do ms[i] = ("%.3f"):format(p.run() * 1000) end
  if p.after then p.after() end
  local out = { "ok", "ms=" .. table.concat(ms, ","), "hwm_kb=" .. measure.hwm_kb() }
  for _, k in ipairs({ "rows", "heap", "peak" }) do
    if extra[k] then out[#out + 1] = ("%s=%.0f"):format(k, extra[k]) end
  end
  return table.concat(out, " ")
end

local ok, line, err = pcall(main)
if not ok or not line then
  io.stdout:write("failed ", tostring(ok and err or line):gsub("\n", " "), "\n")
  os.exit(1)
end
io.stdout:write(line, "\n")
