-- make bench-scale: a million TCP sockets in a private network namespace,
-- measured at 10k, 100k and 1M side by side (issue 21 part 4). Root.
--
-- The process moves itself into a namespace of its own; the socket helpers
-- (bench/load.lua via bench/scale_build.lua), node_exporter and `tcplab serve`
-- are started inside and inherit it. The namespace goes when they all end:
-- at the end, on an error and on Ctrl-C every helper is stopped and reaped
-- before exit; if this process is killed, each helper and exporter ends when
-- its standard input closes.
--
--   lua5.4 bench/scale.lua [--sizes 10000,100000,1000000] [--reps N] [--out bench/results.md]
--                          [--per-process 19000] [--tw-share 0.05]
--   lua5.4 bench/scale.lua --hold --established E --timewait T --ready FILE [--per-process P]
--       builds E ESTABLISHED sockets (E/2 pairs) and T TIME_WAIT, writes
--       "ready pid=... helpers=PID,PID... tmp=DIR" to FILE, holds them until its
--       standard input closes, then stops everything and appends
--       "released helpers=N" (spec/bench_scale_spec.lua).
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local tcplab = require "tcplab"
local measure = require "measure"
local build = require "scale_build"
local argparse = require "argparse"
local shq = require("tcplab.sys").shq
local now = tcplab.core.now

local parser = argparse("bench/scale.lua", "A million TCP sockets, measured (make bench-scale).")
parser:option("--sizes", "Socket counts to measure at, increasing.", "10000,100000,1000000")
parser:option("--reps", "Repetitions of each method (default 5 below 100k, else 3).")
parser:option("--out", "Markdown file whose \"A million sockets\" section is written.", "bench/results.md")
parser:option("--per-process", "Most fds one helper holds.", "19000")
parser:option("--tw-share", "Share of TIME_WAIT sockets in each size.", "0.05")
parser:flag("--hold", "Build, hold until stdin closes, tear down (for the spec).")
parser:option("--established", "With --hold: ESTABLISHED sockets to build (even).")
parser:option("--timewait", "With --hold: TIME_WAIT sockets to build.", "0")
parser:option("--ready", "With --hold: file to write the ready line to.")

local function usage(msg)
  io.stderr:write("bench/scale.lua: ", msg, "\n", parser:get_usage(), "\n")
  os.exit(2)
end

local okp, o = parser:pparse(arg)
if not okp then usage(o) end
local function int_opt(name, v, min)
  local n = math.tointeger(tonumber(v))
  if not n or n < min then usage(("--%s: a whole number >= %d expected, got %q"):format(name, min, tostring(v))) end
  return n
end
local per_process = int_opt("per-process", o.per_process, build.RESERVE + 2)
if per_process >= 20000 then usage("--per-process: below 20000 (the open-files limit) expected") end
local tw_share = tonumber(o.tw_share)
if not tw_share or tw_share < 0 or tw_share >= 1 then usage("--tw-share: a number in [0, 1) expected") end
local sizes, established, timewait = {}, nil, nil
if o.hold then
  established = int_opt("established", o.established, 2)
  if established % 2 ~= 0 then usage("--established: an even number expected (pairs)") end
  timewait = int_opt("timewait", o.timewait, 0)
  if not o.ready then usage("--hold: --ready FILE expected") end
else
  for n in o.sizes:gmatch("[^,]+") do
    local v = int_opt("sizes", n, 100)
    if #sizes > 0 and v <= sizes[#sizes] then usage("--sizes: increasing sizes expected") end
    sizes[#sizes + 1] = v
  end
  if #sizes == 0 then usage("--sizes: at least one size expected") end
end
local reps_opt = o.reps and int_opt("reps", o.reps, 1)

local function say(fmt, ...) io.stderr:write(fmt:format(...), "\n") end
local slurp = measure.slurp

local function fail(msg)
  io.stderr:write("bench/scale.lua: ", msg, "\n")
  os.exit(1)
end
if not slurp("id -u"):match("^0") then fail("needs root (a private network namespace); run it as root") end
if not o.hold and not os.execute("test -x bench/floor") then fail("bench/floor is not built: make bench/floor") end

local function write_sysctl(name, value)
  local f, err = io.open("/proc/sys/" .. name:gsub("%.", "/"), "w")
  if not f then return nil, err end
  f:write(value, "\n")
  return f:close()
end

-- setup ------------------------------------------------------------------
-- A namespace with a connection table of its own (doc/kernel-walk-scope.md):
-- made from an intermediate namespace whose tcp_child_ehash_entries is set
-- (never the host's), so that the million sockets neither slow every other
-- walk on the host nor pay for the host's sockets in ours. Where the sysctl
-- is missing, the host's shared table (said in the results).
assert(tcplab.netns.unshare())
local EHASH = 1 << 20
local table_note = ("its own connection table (tcp_child_ehash_entries %d)"):format(EHASH)
if not write_sysctl("net.ipv4.tcp_child_ehash_entries", tostring(EHASH)) then
  table_note = "the host's shared connection table (no tcp_child_ehash_entries here)"
end
assert(tcplab.netns.unshare())
io.stderr:write("bench/scale.lua: a private namespace with ", table_note, "\n")
-- Inside our namespace only: every ephemeral port, and room for TIME_WAIT.
assert(write_sysctl("net.ipv4.ip_local_port_range", "1024 65535"))
assert(write_sysctl("net.ipv4.tcp_max_tw_buckets", "4194304"))
local tmp = slurp("mktemp -d /tmp/tcplab-scale.XXXXXX"):gsub("%s+$", "")
local builder = build.new{ tmp = tmp, per_process = per_process,
  say = function(s) io.stderr:write(s, "\n") end }
local exporters = {}

-- A server in our namespace, stopped when its stdin closes (our close, or
-- our death); it ignores SIGINT so that only we stop it, after Ctrl-C too.
local function start_exporter(name, cmd, port)
  local pidfile = ("%s/%s.pid"):format(tmp, name)
  local sh = ("trap '' INT; %s >%s/%s.log 2>&1 & p=$!; echo $p >%s; cat >/dev/null; kill $p 2>/dev/null; wait $p; exit 0")
    :format(cmd, tmp, name, pidfile)
  local pipe = assert(io.popen(("exec sh -c %s 2>>%s/%s.sh.log"):format(shq(sh), tmp, name), "w"))
  exporters[#exporters + 1] = pipe
  for _ = 1, 200 do                       -- up to 10 s for it to listen
    local s = tcplab.connect("127.0.0.1", port, 1)
    if s then s:close() return true end
    tcplab.core.sleep(0.05)
  end
  local log = io.open(("%s/%s.log"):format(tmp, name))
  return nil, ("%s did not listen on 127.0.0.1:%d: %s"):format(name, port, log and log:read("a") or "")
end

local function cleanup()
  if #builder.helpers > 0 then say("stopping %d helpers (closing their sockets takes a while at 1M)", #builder.helpers) end
  local n = builder:close()
  for _, p in ipairs(exporters) do p:close() end
  exporters = {}
  os.execute("rm -rf " .. shq(tmp))
  return n
end

local function is_interrupt(e)
  return tostring(e):match("interrupted") ~= nil
end

local function sockstat()
  local f = assert(io.open("/proc/net/sockstat"))
  local s = f:read("a")
  f:close()
  local t = {}
  for k, v in (s:match("TCP:([^\n]*)") or ""):gmatch("(%a+) (%d+)") do t[k] = tonumber(v) end
  return t
end

local function meminfo()
  local f = assert(io.open("/proc/meminfo"))
  local s = f:read("a")
  f:close()
  return { avail = tonumber(s:match("MemAvailable:%s*(%d+)")), slab = tonumber(s:match("\nSlab:%s*(%d+)")) }
end

local function total_of(counts)
  local n = 0
  for _, v in pairs(counts) do n = n + v end
  return n
end

-- --hold: the spec's builder ------------------------------------------------
local function hold()
  builder:add_pairs(established // 2)
  builder:wait(600)
  builder:topup_timewait(timewait)
  local f = assert(io.open(o.ready, "w"))
  f:write(("ready pid=%d helpers=%s tmp=%s\n"):format(measure.pid(), table.concat(builder:pids(), ","), tmp))
  f:close()
  io.read("a")
end

-- the measurements -----------------------------------------------------------
local NE_PORT, SERVE_PORT = 19100, 19477
local SS_P_LIMIT = 300       -- seconds: ss -tanp slows down faster than linearly

local function probe(method, last)
  local p = assert(io.popen(("exec lua5.4 %s/scale_probe.lua %s 1%s"):format(dir, method, last and " after" or "")))
  local line = p:read("a")
  measure.check_status("scale_probe.lua", p:close())
  if line:match("^na ") then return nil, line:match("^na (.-)%s*$") end
  if not line:match("^ok ") then error(("probe %s: %s"):format(method, line), 0) end
  local r = { t = tonumber(line:match("ms=([%d.]+)")) / 1000, hwm = tonumber(line:match("hwm_kb=(%d+)")) }
  for _, k in ipairs({ "rows", "heap", "peak", "us", "open_ms" }) do r[k] = tonumber(line:match(k .. "=([%d.]+)")) end
  return r
end

local serve_ok, serve_why = false, "no `tcplab serve` command in this tree"
local ne_ok, ne_why = false, "prometheus-node-exporter not started"
local ne_said = {}        -- per size: node_exporter's own figures

local function scrape(port, check)
  local t, status, body = measure.http_get(port, "/metrics")
  if not t then error(("scrape of 127.0.0.1:%d: %s"):format(port, status), 0) end
  if status ~= 200 then error(("scrape of 127.0.0.1:%d: HTTP %s"):format(port, tostring(status)), 0) end
  if check then check(body) end
  return t
end

local METHODS = {
  { key = "a", name = "netstat -n \\| awk", run = function() return measure.timed_cmd(measure.NETSTAT) end },
  { key = "b", name = "ss -ant \\| awk", run = function() return measure.timed_cmd(measure.SS) end },
  { key = "n", name = "node_exporter tcpstat scrape", na = function() return not ne_ok and ne_why end,
    run = function(size) return scrape(NE_PORT, function(body)
      ne_said[size] = {
        established = tonumber(body:match('node_tcp_connection_states{state="established"} ([%deE.+]+)')),
        duration = tonumber(body:match('node_scrape_collector_duration_seconds{collector="tcpstat"} ([%deE.+-]+)')),
      }
    end) end },
  { key = "d", name = "floor (C, one netlink dump)", run = function() return (measure.floor_run()) end },
  { key = "e", name = "tcplab.counts{backend=netlink}", probe = "counts_netlink" },
  { key = "e2", name = "tcplab.counts{backend=bpf}", probe = "counts_bpf" },
  { key = "k", name = "tcplab.each{backend=netlink} (2 fields)", probe = "each_netlink" },
  { key = "k2", name = "tcplab.each{backend=bpf} (2 fields)", probe = "each_bpf" },
  { key = "f", name = "tcplab.snapshot{backend=netlink}", probe = "snapshot_netlink" },
  { key = "f3", name = "tcplab.snapshot{backend=bpf}", probe = "snapshot_bpf" },
  { key = "p0", name = "ss -tanp > /dev/null", slow = true, run = function()
      local t0 = now()
      local ok, how, code = os.execute(("timeout %d ss -tanp >/dev/null"):format(SS_P_LIMIT))
      measure.check_status("ss -tanp", ok, how, code)
      if code == 124 then return nil, ("timed out after %d s"):format(SS_P_LIMIT) end
      return now() - t0
    end },
  { key = "p", name = "tcplab.snapshot{owners}", probe = "owners" },
  { key = "s", name = "tcplab serve scrape", na = function() return not serve_ok and serve_why end,
    run = function() return scrape(SERVE_PORT) end },
}

local function reps_for(size)
  return reps_opt or (size < 100000 and 5 or 3)
end

local function measure_size(size, tw_target)
  local reps = reps_for(size)
  local row = { size = size, by = {}, tw_seen = { math.huge, 0 } }
  for _, m in ipairs(METHODS) do row.by[m.key] = { samples = {}, hwm = 0 } end
  local counts = assert(tcplab.counts{ backend = "netlink" })
  row.counts, row.total = counts, total_of(counts)
  say("  measuring %d sockets, %d repetitions, methods alternating", row.total, reps)
  for rep = 1, reps do
    for j = 0, #METHODS - 1 do
      local m = METHODS[(rep + j - 1) % #METHODS + 1]
      local x = row.by[m.key]
      local why = m.na and m.na()
      if why then
        x.na = why
      elseif not (m.slow and size >= 1000000 and x.tried) then    -- once at 1M, timed out or not
        x.tried = true
        builder:topup_timewait(tw_target)          -- TIME_WAIT lives ~60 s: refill, not timed
        local tw0 = build.timewait_now()
        if m.probe then
          local r, err = probe(m.probe, rep == reps)
          if not r then x.na = err else
            x.samples[#x.samples + 1] = r.t
            if r.hwm > x.hwm then x.hwm = r.hwm end
            for _, k in ipairs({ "rows", "heap", "peak" }) do if r[k] then x[k] = r[k] end end
          end
        else
          local t, why2 = m.run(size)
          if t then x.samples[#x.samples + 1] = t else x.na = why2 end
        end
        local tw1 = build.timewait_now()
        row.tw_seen[1] = math.min(row.tw_seen[1], tw0, tw1)
        row.tw_seen[2] = math.max(row.tw_seen[2], tw0, tw1)
      end
    end
    io.stderr:write(("  repetition %d/%d done\n"):format(rep, reps))
  end
  for _, m in ipairs(METHODS) do
    local x = row.by[m.key]
    if #x.samples > 0 then x.med, x.lo, x.hi = measure.stats(x.samples) end
  end
  local idle = assert(probe("idle"))
  row.idle_hwm = idle.hwm
  local live, why = probe("counts_live")
  row.live, row.live_why = live, why
  return row
end

-- the report -----------------------------------------------------------------
local function fmt_int(n)
  local s = tostring(math.floor(n + 0.5))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local function report(rows, builds)
  local lines = {}
  local function out(s) lines[#lines + 1] = s end
  local cpu = slurp("grep -m1 'model name' /proc/cpuinfo"):match(":%s*(.-)%s*$") or "?"
  local mem = slurp("grep MemTotal /proc/meminfo"):match("(%d+)")
  local last = rows[#rows]
  out("## A million sockets (make bench-scale)")
  out("")
  out(("- date: %s; machine: %s, %s cores, %.0f GiB; kernel %s; load average at the start: %s"):format(
    slurp("date -u '+%Y-%m-%d %H:%M UTC'"):gsub("%s+$", ""), cpu, slurp("nproc"):gsub("%s+$", ""),
    (tonumber(mem) or 0) / 1048576, slurp("uname -r"):gsub("%s+$", ""), builds.loadavg))
  out(("- load: ESTABLISHED pairs held by %d helper processes (bench/load.lua, at most %s fds each, one " ..
    "127.x.y.1 address and one listener each) and %.0f%% TIME_WAIT, refilled to its target before each " ..
    "method (a TIME_WAIT socket lives about 60 s), in a private network namespace with %s.")
    :format(#builder.helpers, fmt_int(per_process), tw_share * 100, table_note))
  for _, b in ipairs(builds) do
    out(("- build to %s sockets: %.1f s (%s ESTABLISHED in %d new helper(s), %.1f s; %s TIME_WAIT, %.1f s); " ..
      "then TCP memory (sockstat mem, host-wide) %s pages, helpers' RSS %.0f MiB in all, host MemAvailable %+.0f MiB and " ..
      "Slab %+.0f MiB since before the first build (host-wide: other processes move them too)")
      :format(fmt_int(b.size), b.pairs_s + b.tw_s, fmt_int(b.est), b.helpers, b.pairs_s, fmt_int(b.tw), b.tw_s,
        fmt_int(b.mem_pages or 0), b.rss_kb / 1024, -b.avail_drop_kb / 1024, b.slab_rise_kb / 1024))
  end
  out("- times: median of the repetitions (wall clock; commands with their start-up, tcplab and the floor " ..
    "in-process; each tcplab row in a fresh process of its own, so its peak RSS (VmHWM) is its own; " ..
    ("an idle one peaks at %.1f MiB). ms/100k = ms per 100,000 sockets; linear = ms/100k at the largest size " ..
    "over ms/100k at the size before (goal <= 1.3)."):format(last.idle_hwm / 1024))
  out("")
  local head = { "| | method" }
  local rule = { "|---|---" }
  for _, r in ipairs(rows) do
    head[#head + 1] = (" | ms at %s | ms/100k"):format(fmt_int(r.total))
    rule[#rule + 1] = "|---:|---:"
  end
  out(table.concat(head) .. " | linear | x floor | peak RSS MiB |")
  out(table.concat(rule) .. "|---:|---:|---:|")
  for _, m in ipairs(METHODS) do
    local cells = { ("| %s | %s"):format(m.key, m.name) }
    local per = {}
    for i, r in ipairs(rows) do
      local x = r.by[m.key]
      if x.med then
        per[i] = x.med * 1e3 / (r.total / 1e5)
        cells[#cells + 1] = (" | %.3f | %.2f"):format(x.med * 1e3, per[i])
      else
        cells[#cells + 1] = (" | n/a (%s) | "):format(x.na or "not run")
      end
    end
    local n = #rows
    local lin = (n >= 2 and per[n] and per[n - 1]) and ("%.2f"):format(per[n] / per[n - 1]) or "-"
    local lx = last.by[m.key]
    local xf = lx.med and last.by.d.med and ("%.2f"):format(lx.med / last.by.d.med) or "-"
    local rss = lx.hwm and lx.hwm > 0 and ("%.1f"):format(lx.hwm / 1024) or "-"
    out(table.concat(cells) .. (" | %s | %s | %s |"):format(lin, xf, rss))
  end
  out("")
  for _, r in ipairs(rows) do
    local parts = {}
    for name, n in pairs(r.counts) do parts[#parts + 1] = name .. " " .. fmt_int(n) end
    table.sort(parts)
    local b = r.by
    local function per_sock(x) return x.heap and x.rows and x.rows > 0 and ("%.0f"):format(x.heap / x.rows) or "n/a" end
    local function kib(x) return x.peak and ("%.0f"):format(x.peak / 1024) or "n/a" end
    local ne = ne_said[r.size] or {}
    out(("- %s sockets (%s; TIME_WAIT between %s and %s while measuring): snapshot Lua heap per socket %s " ..
      "bytes (netlink), %s (bpf); each peak Lua heap growth %s KiB (netlink), %s KiB (bpf); each / floor %s " ..
      "(netlink, goal <= 1.0), %s (bpf, goal <= 0.6); snapshot{owners} / ss -tanp %s; node_exporter's own " ..
      "tcpstat duration %s ms, its established count %s; live read %s.")
      :format(fmt_int(r.total), table.concat(parts, ", "), fmt_int(r.tw_seen[1]), fmt_int(r.tw_seen[2]),
        per_sock(b.f), per_sock(b.f3), kib(b.k), kib(b.k2),
        b.k.med and b.d.med and ("%.2f"):format(b.k.med / b.d.med) or "n/a",
        b.k2.med and b.d.med and ("%.2f"):format(b.k2.med / b.d.med) or "n/a",
        b.p.med and b.p0.med and ("%.3f"):format(b.p.med / b.p0.med) or "n/a",
        ne.duration and ("%.1f"):format(ne.duration * 1e3) or "n/a", ne.established and fmt_int(ne.established) or "n/a",
        r.live and ("%.2f µs (median of 1000 reads; handle opened in %.1f ms)"):format(r.live.us, r.live.open_ms or 0)
          or ("n/a (%s)"):format(r.live_why)))
  end
  return table.concat(lines, "\n") .. "\n"
end

-- Replace (or append) the section in the results file.
local function write_section(path, text)
  local f = io.open(path)
  local old = f and f:read("a") or "# tcplab benchmark results\n"
  if f then f:close() end
  local a = old:find("\n## A million sockets", 1, true)
  if a then
    local b = old:find("\n## ", a + 1, true)
    old = old:sub(1, a) .. (b and old:sub(b + 1) or "")
  end
  old = old:gsub("\n*$", "\n")
  local w = assert(io.open(path, "w"))
  w:write(old, "\n", text)
  w:close()
end

local function bench()
  local ok, why = start_exporter("node_exporter",
    ("prometheus-node-exporter --collector.disable-defaults --collector.tcpstat --web.disable-exporter-metrics " ..
     "--web.listen-address=127.0.0.1:%d"):format(NE_PORT), NE_PORT)
  ne_ok, ne_why = ok, why
  if not ok then say("node_exporter: %s", why) end
  if os.execute("bin/tcplab serve --help >/dev/null 2>&1") then
    serve_ok, serve_why = start_exporter("serve", ("bin/tcplab serve --listen 127.0.0.1:%d"):format(SERVE_PORT), SERVE_PORT)
    if not serve_ok then say("tcplab serve: %s", serve_why) end
  end
  local rows, builds = {}, { loadavg = slurp("cut -d' ' -f1-3 /proc/loadavg"):gsub("%s+$", "") }
  local mem0 = meminfo()
  for _, size in ipairs(sizes) do
    local tw_target = math.floor(size * tw_share)
    local held = 2 * builder.pairs + #builder.helpers + #exporters   -- each exporter listens
    local need = size - tw_target - held
    if need < 3 then error(("--sizes: %d is not above the %d sockets held"):format(size, held + tw_target), 0) end
    -- pairs p and helpers h with 2p + h <= need, as many pairs as fit
    local p = need // 2
    while 2 * p + #build.split(p, builder.cap) > need do p = p - 1 end
    tw_target = size - held - 2 * p - #build.split(p, builder.cap)
    say("size %s: %s more ESTABLISHED sockets, %s TIME_WAIT", fmt_int(size), fmt_int(2 * p), fmt_int(tw_target))
    local t0 = now()
    local nh = builder:add_pairs(p)
    builder:wait(3600)
    local t1 = now()
    builder:topup_timewait(tw_target)
    local t2 = now()
    local m1 = meminfo()
    local b = { size = size, est = 2 * builder.pairs, helpers = nh, tw = tw_target, pairs_s = t1 - t0, tw_s = t2 - t1,
      mem_pages = sockstat().mem, rss_kb = builder:rss_kb(), avail_drop_kb = mem0.avail - m1.avail,
      slab_rise_kb = m1.slab - mem0.slab }
    builds[#builds + 1] = b
    say("  built in %.1f s (pairs %.1f s, TIME_WAIT %.1f s); helpers' RSS %.0f MiB; host MemAvailable %+.0f MiB",
      b.pairs_s + b.tw_s, b.pairs_s, b.tw_s, b.rss_kb / 1024, -b.avail_drop_kb / 1024)
    rows[#rows + 1] = measure_size(size, tw_target)
  end
  local text = report(rows, builds)
  io.write(text)
  write_section(o.out, text)
  say("written to %s (section \"A million sockets\")", o.out)
end

local ok, err = xpcall(o.hold and hold or bench, function(e)
  if is_interrupt(e) then return "interrupted" end
  return debug.traceback(e)
end)
local released = cleanup()
if o.hold then
  local f = io.open(o.ready, "a")
  if f then f:write(("released helpers=%d\n"):format(released)) f:close() end
end
if not ok then
  io.stderr:write("bench/scale.lua: ", tostring(err), "\nhelpers stopped, private namespace released\n")
  os.exit(err == "interrupted" and 130 or 1)
end
