-- What bench/run.lua and bench/scale.lua measure with: shell pipelines timed
-- with their start-up, the raw netlink floor (bench/floor), tcplab calls timed
-- in-process, the streaming walk reading two fields, Lua heap figures, an HTTP
-- scrape, and medians.
local tcplab = require "tcplab"
local now = tcplab.core.now

local measure = {}

measure.NETSTAT = tcplab.awk.NETSTAT_PIPELINE .. " >/dev/null"
measure.SS = tcplab.awk.SS_PIPELINE .. " >/dev/null"

function measure.slurp(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  p:close()
  return s
end

-- system() ignores SIGINT in the caller while the child runs: a Ctrl-C only
-- shows up as the child's death by signal, so turn that into our error.
function measure.check_status(cmd, ok, how, code)
  if not ok and how == "signal" then error(("interrupted (%s died of signal %d)"):format(cmd, code), 0) end
  return ok
end

function measure.timed_cmd(cmd)
  local t0 = now()
  measure.check_status(cmd, os.execute(cmd))
  return now() - t0
end

--- One run of bench/floor: seconds, sockets dumped.
function measure.floor_run(flag)
  local p = assert(io.popen("bench/floor" .. (flag or "")))
  local out = p:read("a")
  measure.check_status("bench/floor", p:close())
  local ns = out:match("^ns (%d+)")
  if not ns then error("bench/floor failed: " .. out, 0) end
  return tonumber(ns) / 1e9, tonumber(out:match("total (%d+)"))
end

function measure.timed_lua(f)
  collectgarbage()
  local t0 = now()
  local r = f()
  local t = now() - t0
  assert(r, "call failed")
  return t
end

-- The streaming walk, reading two fields of every row (what a caller that
-- filters or sums does): the number of rows.
-- prefetch false: without the netlink walk's read-ahead thread (doc/each.md).
function measure.each_two_fields(backend, prefetch)
  tcplab.core._each_prefetch(prefetch ~= false)
  local n, sum = 0, 0
  for rec in assert(tcplab.each{ backend = backend }) do
    n = n + 1
    sum = sum + rec.sport + #rec.state
  end
  tcplab.core._each_prefetch(true)
  return n > 0 and sum > 0 and n
end

-- Peak Lua heap growth over one streaming walk, collector running (what
-- the walk holds at once; the garbage of its rows is collected as it goes).
-- collectgarbage("incremental") first: after heap_bytes' stop/restart around a
-- big allocation, Lua 5.4.4 collects nothing for a long while (measured: 40,000
-- plain tables left as garbage, 7.5 MiB, where a fresh state peaks at 5 KiB),
-- which would charge to each what any Lua loop would show there.
function measure.each_peak(backend)
  collectgarbage("incremental")
  collectgarbage()
  collectgarbage()
  local base, peak, n = collectgarbage("count"), 0, 0
  for rec in assert(tcplab.each{ backend = backend }) do
    n = n + 1
    if n % 256 == 0 then
      local now_kb = collectgarbage("count") - base
      if rec.sport and now_kb > peak then peak = now_kb end
    end
  end
  return peak * 1024
end

--- Median, min, max of a list of numbers (sorts it).
function measure.stats(xs)
  table.sort(xs)
  local n = #xs
  local med = n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
  return med, xs[1], xs[n]
end

-- Lua heap bytes allocated by one call, collector stopped (its peak).
function measure.heap_bytes(f)
  collectgarbage()
  collectgarbage("stop")
  local m0 = collectgarbage("count")
  local r = f()
  local m1 = collectgarbage("count")
  collectgarbage("restart")
  r = nil
  collectgarbage()
  return (m1 - m0) * 1024
end

--- GET http://127.0.0.1:PORT/PATH over HTTP/1.0, timed in-process from
-- connect to the server's close: seconds, status, body; or nil, message.
function measure.http_get(port, path, timeout)
  timeout = timeout or 600
  local t0 = now()
  local s, err = tcplab.connect("127.0.0.1", port, 5)
  if not s then return nil, ("connect to 127.0.0.1:%d: %s"):format(port, tostring(err)) end
  local ok, werr = s:write(("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"):format(path or "/metrics"), 5)
  if not ok then s:close() return nil, "write: " .. tostring(werr) end
  local parts = {}
  while true do
    local chunk, rerr = s:read(1 << 16, timeout)
    if not chunk then s:close() return nil, "read: " .. tostring(rerr) end
    if chunk == "" then break end
    parts[#parts + 1] = chunk
  end
  local t = now() - t0
  s:close()
  local text = table.concat(parts)
  return t, tonumber(text:match("^HTTP/%d%.%d (%d+)")), text:match("\r\n\r\n(.*)$") or ""
end

--- Peak resident memory of this process so far, KiB (VmHWM).
function measure.hwm_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

--- This process's pid.
function measure.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return pid
end

return measure
