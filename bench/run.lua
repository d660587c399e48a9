-- make bench: tcplab against `ss | awk`, `netstat | awk` and the raw
-- netlink floor, side by side, at about 1k, 10k and 100k TCP sockets held
-- by helper processes in a private network namespace (root). Each size adds
-- helpers until the namespace holds about that many sockets, so any sizes,
-- in increasing order, work (BENCH_ARGS="--sizes 1000,3000,10000").
-- "auto" rows run beside both backends and say which one auto chose.
--   lua5.4 bench/run.lua [--sizes 1000,10000,100000] [--reps N] [--out bench/results.md]
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local tcplab = require "tcplab"
local measure = require "measure"
local now, sleep = tcplab.core.now, tcplab.core.sleep

local opts = { sizes = { 1000, 10000, 100000 }, reps = nil, out = "bench/results.md" }
do
  local i = 1
  while i <= #arg do
    local k, v = arg[i], arg[i + 1]
    if k == "--sizes" then
      opts.sizes = {}
      for n in v:gmatch("%d+") do opts.sizes[#opts.sizes + 1] = tonumber(n) end
    elseif k == "--reps" then opts.reps = tonumber(v)
    elseif k == "--out" then opts.out = v
    else io.stderr:write("usage: bench/run.lua [--sizes 1000,10000,100000] [--reps N] [--out FILE]\n") os.exit(2) end
    i = i + 2
  end
end

local function say(fmt, ...) io.stderr:write(fmt:format(...), "\n") end
local slurp = measure.slurp

assert(slurp("id -u"):match("^0"), "make bench needs root (a private network namespace)")
assert(os.execute("test -x bench/floor"), "bench/floor is not built (make bench builds it)")
assert(tcplab.netns.unshare())
assert(tcplab.backend("bpf") == "bpf", "the bpf backend is not usable: " .. tostring(select(2, tcplab.backend()).bpf))
assert(tcplab.counts{ backend = "bpf" })   -- the one load, timed by the module
local tmp = slurp("mktemp -d"):gsub("%s+$", "")
local helpers = {}

local function cleanup()
  for _, h in ipairs(helpers) do h.pipe:close() end   -- stdin EOF: the helper exits
  helpers = {}
  os.execute("rm -rf " .. tmp)
end

-- Add a helper holding `pairs` ESTABLISHED pairs and `tw` TIME_WAIT sockets.
local function spawn(pairs, tw, listeners)
  local index = #helpers + 1
  local ready = ("%s/%d.ready"):format(tmp, index)
  local cmd = ("exec lua5.4 bench/load.lua %s %d %d %d %d"):format(ready, index, pairs, tw, listeners)
  helpers[index] = { pipe = assert(io.popen(cmd, "w")), ready = ready }
  return helpers[index]
end

local function wait_ready(limit)
  local deadline = now() + limit
  for i, h in ipairs(helpers) do
    repeat
      local f = io.open(h.ready)
      local ok = f and f:read("a"):match("^ready")
      if f then f:close() end
      if ok then break end
      if now() > deadline then error("helper " .. i .. " did not get ready in time") end
      sleep(0.05)
    until false
  end
end

-- what is measured (bench/measure.lua) -----------------------------------
local NETSTAT, SS = measure.NETSTAT, measure.SS
local timed_cmd, floor_run, timed_lua = measure.timed_cmd, measure.floor_run, measure.timed_lua
local each_two_fields, each_peak = measure.each_two_fields, measure.each_peak
local stats, heap_bytes = measure.stats, measure.heap_bytes

local METHODS = {
  { key = "a", name = "netstat -n \\| awk", run = function() return timed_cmd(NETSTAT) end },
  { key = "b", name = "ss -ant \\| awk", run = function() return timed_cmd(SS) end },
  { key = "c", name = "ss -ant > /dev/null", run = function() return timed_cmd("ss -ant >/dev/null") end },
  { key = "d", name = "floor (C, one dump)", run = function() return (floor_run()) end },
  { key = "e", name = "tcplab.counts{backend=netlink}", run = function()
      return timed_lua(function() return tcplab.counts{ backend = "netlink" } end) end },
  { key = "e2", name = "tcplab.counts{backend=bpf}", run = function()
      return timed_lua(function() return tcplab.counts{ backend = "bpf" } end) end },
  { key = "e3", name = "tcplab.counts{} (auto)", auto = "counts", run = function()
      return timed_lua(function() return tcplab.counts{} end) end },
  { key = "f", name = "tcplab.snapshot{backend=netlink}", run = function()
      return timed_lua(function() return tcplab.snapshot{ backend = "netlink" } end) end },
  { key = "f3", name = "tcplab.snapshot{backend=bpf}", run = function()
      return timed_lua(function() return tcplab.snapshot{ backend = "bpf" } end) end },
  { key = "f5", name = "tcplab.snapshot{} (auto)", auto = "snapshot", run = function()
      return timed_lua(function() return tcplab.snapshot{} end) end },
  { key = "f2", name = "tcplab.snapshot{columns, netlink}", run = function()
      return timed_lua(function() return tcplab.snapshot{ columns = true, backend = "netlink" } end) end },
  { key = "f4", name = "tcplab.snapshot{columns, bpf}", run = function()
      return timed_lua(function() return tcplab.snapshot{ columns = true, backend = "bpf" } end) end },
  { key = "k", name = "tcplab.each{backend=netlink} (2 fields)", run = function()
      return timed_lua(function() return each_two_fields("netlink") end) end },
  { key = "k2", name = "tcplab.each{backend=bpf} (2 fields)", run = function()
      return timed_lua(function() return each_two_fields("bpf") end) end },
  { key = "k3", name = "tcplab.each{backend=netlink} (2 fields, no read-ahead)", run = function()
      return timed_lua(function() return each_two_fields("netlink", false) end) end },
  { key = "g", name = "tcplab.counts{LISTEN, netlink}", run = function()
      return timed_lua(function() return tcplab.counts{ states = { "LISTEN" }, backend = "netlink" } end) end },
  { key = "g2", name = "tcplab.counts{LISTEN, bpf}", run = function()
      return timed_lua(function() return tcplab.counts{ states = { "LISTEN" }, backend = "bpf" } end) end },
  { key = "g0", name = "floor --listen", run = function() return (floor_run(" --listen")) end },
  { key = "h", name = "tcplab.awk.netstat()", run = function() return timed_lua(tcplab.awk.netstat) end },
  { key = "i", name = "tcplab.counts{by=sport} (auto)", auto = "counts{by}", run = function()
      return timed_lua(function() return tcplab.counts{ by = "sport" } end) end },
  { key = "j", name = "tcplab.counts{by=src} (auto)", auto = "counts{by}", run = function()
      return timed_lua(function() return tcplab.counts{ by = "src" } end) end },
  { key = "p0", name = "ss -tanp > /dev/null", run = function() return timed_cmd("ss -tanp >/dev/null") end },
  { key = "p", name = "tcplab.snapshot{owners}", run = function()
      return timed_lua(function() return tcplab.snapshot{ owners = true } end) end },
}

local function measure_size(target, reps)
  local counts = assert(tcplab.counts())
  local total = 0
  for _, n in pairs(counts) do total = total + n end
  say("  measuring %d sockets, %d repetitions, methods alternating", total, reps)
  local samples, chose = {}, {}
  for _, m in ipairs(METHODS) do samples[m.key] = {} end
  for rep = 1, reps do
    for j = 0, #METHODS - 1 do     -- rotate the order each repetition
      local m = METHODS[(rep + j - 1) % #METHODS + 1]
      table.insert(samples[m.key], m.run())
      if m.auto then   -- which backend auto answered with
        local c = chose[m.auto] or {}
        chose[m.auto] = c
        local name = tcplab.answered_by()
        c[name] = (c[name] or 0) + 1
      end
    end
    io.stderr:write(("  repetition %d/%d done\r"):format(rep, reps))
  end
  io.stderr:write("\n")
  local row = { target = target, total = total, counts = counts, by = {}, chose = chose }
  for _, m in ipairs(METHODS) do
    local med, lo, hi = stats(samples[m.key])
    row.by[m.key] = { name = m.name, med = med, lo = lo, hi = hi }
  end
  row.mem_each = each_peak("netlink")
  row.mem_each_bpf = each_peak("bpf")
  row.mem_counts = heap_bytes(function() return tcplab.counts{ backend = "netlink" } end)
  row.mem_snapshot = heap_bytes(function() return tcplab.snapshot{ backend = "netlink" } end)
  row.mem_columns = heap_bytes(function() return tcplab.snapshot{ columns = true, backend = "netlink" } end)
  return row
end

local function report(rows)
  local lines = {}
  local function out(s) lines[#lines + 1] = s end
  local cpu = slurp("grep -m1 'model name' /proc/cpuinfo"):match(":%s*(.-)%s*$") or "?"
  local mem = slurp("grep MemTotal /proc/meminfo"):match("(%d+)")
  out("# tcplab benchmark results")
  out("")
  out(("- date: %s"):format(slurp("date -u '+%Y-%m-%d %H:%M UTC'"):gsub("%s+$", "")))
  out(("- machine: %s, %s cores, %.0f GiB"):format(cpu, slurp("nproc"):gsub("%s+$", ""), (tonumber(mem) or 0) / 1048576))
  out(("- kernel: %s"):format(slurp("uname -r"):gsub("%s+$", "")))
  out("- load: helper processes in a private network namespace hold ESTABLISHED pairs (clients on")
  out("  127.0.K.1, one address per helper), a few LISTEN sockets each, and TIME_WAIT sockets.")
  out("- times: wall clock; commands include process start-up (what a user pays); the floor and")
  out("  tcplab are timed in-process from socket() to the last record. Median of the repetitions,")
  out("  min-max in brackets. Ratios: median / median.")
  out(("- BPF iterator backend (tcplab.backend(): %s): program loaded once per process in %.1f ms"):format(
    tostring((tcplab.backend())), tcplab.core.bpf_info().load_ms))
  -- the transition recorder loads its own two programs per recorder: start to attached
  local loads = {}
  for _ = 1, 5 do
    local t0 = tcplab.now()
    local rec = tcplab.trace.start{ port = 1, method = "bpf" }
    if not rec then break end
    loads[#loads + 1] = (tcplab.now() - t0) * 1000
    rec:stop()
  end
  if #loads > 0 then
    table.sort(loads)
    out(("- BPF transition recorder: its two programs loaded and attached per recorder in %.1f ms " ..
      "(median of %d), released at stop()"):format(loads[(#loads + 1) // 2], #loads))
  end
  for _, r in ipairs(rows) do
    local fl, a, b = r.by.d.med, r.by.a.med, r.by.b.med
    out("")
    local parts = {}
    for name, n in pairs(r.counts) do parts[#parts + 1] = name .. " " .. n end
    table.sort(parts)
    out(("## %d sockets (%s)"):format(r.total, table.concat(parts, ", ")))
    out("")
    out("| | method | median ms | min-max ms | x floor | vs netstat\\|awk | vs ss\\|awk | sockets/s |")
    out("|---|---|---:|---:|---:|---:|---:|---:|")
    for _, m in ipairs(METHODS) do
      local x = r.by[m.key]
      local floor_ref = (m.key == "g" or m.key == "g2" or m.key == "g0") and r.by.g0.med or fl
      out(("| %s | %s | %.3f | %.3f-%.3f | %.2f | %.1fx | %.1fx | %.0f |"):format(
        m.key, m.name, x.med * 1e3, x.lo * 1e3, x.hi * 1e3, x.med / floor_ref, a / x.med, b / x.med,
        r.total / x.med))
    end
    out("")
    out(("Lua heap allocated by one call (collector stopped): counts() %.0f bytes in all; " ..
         "snapshot() %.0f bytes, %.0f bytes per socket; snapshot{columns} %.0f bytes per socket. " ..
         "The C side adds one 64 KiB receive buffer."):format(
         r.mem_counts, r.mem_snapshot, r.mem_snapshot / r.total, r.mem_columns / r.total))
    out(("each() (rows read one at a time, two fields each): %.2f x the floor (netlink, goal <= 1.0; " ..
         "%.2f x without the read-ahead thread), %.2f x (bpf, goal <= 0.6); peak Lua heap growth over " ..
         "one walk, collector running: %.0f KiB (netlink), %.0f KiB (bpf), the same at any socket count."):format(
         r.by.k.med / fl, r.by.k3.med / fl, r.by.k2.med / fl, r.mem_each / 1024, r.mem_each_bpf / 1024))
    out("(LISTEN rows compare against `floor --listen`; the others against the full floor.)")
    local said = {}
    for _, op in ipairs({ "counts", "snapshot", "counts{by}" }) do
      local names = {}
      for name, n in pairs(r.chose[op] or {}) do names[#names + 1] = ("%s %d"):format(name, n) end
      table.sort(names)
      said[#said + 1] = ("%s: %s"):format(op, table.concat(names, ", "))
    end
    out("")
    out(("auto answered with (calls per backend): %s. Faster backend by median: counts %s, snapshot %s.")
      :format(table.concat(said, "; "), r.by.e2.med < r.by.e.med and "bpf" or "netlink",
        r.by.f3.med < r.by.f.med and "bpf" or "netlink"))
    out("")
    out(("counts{by=sport} / counts(): %.2f; counts{by=src} / counts(): %.2f (goal <= 1.2). " ..
         "snapshot{owners} / `ss -tanp`: %.2f (goal <= 0.33); snapshot{owners} / snapshot(): %.2f. " ..
         "Both owner walks cover every fd of every process on the host, not only the namespace's " ..
         "(tcplab's: the iter/task_file program where it loads, see README).")
      :format(r.by.i.med / r.by.e.med, r.by.j.med / r.by.e.med, r.by.p.med / r.by.p0.med, r.by.p.med / r.by.f.med))
  end
  return table.concat(lines, "\n") .. "\n"
end

local ok, err = xpcall(function()
  -- each size adds helpers (at most ~15,000 sockets each: 20,000 fds per
  -- process) until the namespace holds about that many sockets: 94% in
  -- ESTABLISHED pairs, 5% TIME_WAIT, 5 listeners per helper
  local held = 0
  local rows = {}
  for _, size in ipairs(opts.sizes) do
    local t0 = now()
    if size <= held then error(("--sizes: increasing sizes expected (%d after %d)"):format(size, held)) end
    while size - held > size // 50 do   -- within 2%: no helper for a handful
      local n = math.min(size - held, 15000)
      local tw = math.max(n // 20, 0)
      local p = math.max((n - tw - 5) // 2, 1)
      say("  helper %d: %d pairs, %d TIME_WAIT, %d listeners", #helpers + 1, p, tw, 5)
      spawn(p, tw, 5)
      held = held + 2 * p + tw + 5
    end
    wait_ready(600)
    say("load for ~%d sockets ready in %.1f s", size, now() - t0)
    rows[#rows + 1] = measure_size(size, opts.reps or (size >= 100000 and 7 or 9))
  end
  local text = report(rows)
  io.write(text)
  -- keep make bench-scale's section (bench/scale.lua) of the same file
  local old = io.open(opts.out)
  local keep = old and old:read("a"):match("\n(## A million sockets.-)\n## ") or nil
  if old then
    old:seek("set")
    keep = keep or old:read("a"):match("\n(## A million sockets.*)$")
    old:close()
  end
  local f = assert(io.open(opts.out, "w"))
  f:write(text)
  if keep then f:write("\n", keep:gsub("\n*$", "\n")) end
  f:close()
  say("written to %s", opts.out)
end, function(e)
  if tostring(e):match("interrupted") then return "interrupted: " .. tostring(e) end
  return debug.traceback(e)
end)
cleanup()
if not ok then io.stderr:write(err, "\nhelpers stopped, private namespace released\n") os.exit(1) end
