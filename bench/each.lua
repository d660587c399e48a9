-- tcplab.each against the netlink floor (bench/floor), per backend, side by
-- side in one run: the quick check behind doc/each.md's table (make bench
-- measures the same rows among many others). Root: a private namespace
-- holding PAIRS ESTABLISHED pairs (this process's fds) and TW TIME_WAIT
-- sockets; methods rotate each repetition; medians.
--   lua5.4 bench/each.lua [--pairs 8000] [--tw 8000] [--reps 9]
local tcplab = require "tcplab"
local core = tcplab.core
local now = core.now

local opts = { pairs = 8000, tw = 8000, reps = 9 }
do
  local i = 1
  while i <= #arg do
    local k, v = arg[i]:match("^%-%-(%w+)$"), tonumber(arg[i + 1])
    if not k or opts[k] == nil or not v then
      io.stderr:write("usage: bench/each.lua [--pairs N] [--tw N] [--reps N]\n")
      os.exit(2)
    end
    opts[k] = v
    i = i + 2
  end
end
assert(opts.pairs <= 9000, "--pairs: at most 9000 (two fds per pair, 20000 fds per process)")
assert(os.execute("test -x bench/floor"), "bench/floor is not built (make bench/floor)")
assert(tcplab.netns.unshare())
local f = assert(io.open("/proc/sys/net/ipv4/ip_local_port_range", "w"))
f:write("1024 65535")
f:close()

local srv = assert(tcplab.listen("127.0.0.1", 0, 4096))
local port = select(2, srv:getsockname())
local keep = {}
local t0 = now()
local made = 0
while made < opts.pairs do
  local batch = math.min(1024, opts.pairs - made)
  for _ = 1, batch do keep[#keep + 1] = assert(tcplab.connect("127.0.0.1", port, 5)) end
  for _ = 1, batch do keep[#keep + 1] = assert(srv:accept(5)) end
  made = made + batch
end
for _ = 1, opts.tw do
  local c = assert(tcplab.connect("127.0.0.1", port, 5))
  local a = assert(srv:accept(5))
  c:close()
  assert(a:read(1, 5) == "")
  a:close()
end
local built = now() - t0
assert(tcplab.counts { backend = "bpf" })   -- the program's one load, not timed

local function floor()
  local p = assert(io.popen("bench/floor"))
  local out = p:read("a")
  p:close()
  return assert(tonumber(out:match("^ns (%d+)")), out) / 1e9
end

local function each(backend, fields, prefetch)
  return function()
    core._each_prefetch(prefetch)
    local n, sum = 0, 0
    if fields == 2 then
      for rec in assert(tcplab.each { backend = backend }) do
        n = n + 1
        sum = sum + rec.sport + #rec.state
      end
    else
      for _ in assert(tcplab.each { backend = backend }) do n = n + 1 end
    end
    core._each_prefetch(true)
    return n
  end
end

local METHODS = {
  { "floor (C, one netlink dump)", floor, raw = true },
  { "counts{backend=netlink}", function() return tcplab.counts { backend = "netlink" } end },
  { "counts{backend=bpf}", function() return tcplab.counts { backend = "bpf" } end },
  { "snapshot{backend=netlink}", function() return tcplab.snapshot { backend = "netlink" } end },
  { "snapshot{backend=bpf}", function() return tcplab.snapshot { backend = "bpf" } end },
  { "each netlink, 2 fields", each("netlink", 2, true) },
  { "each netlink, 2 fields, no read-ahead thread", each("netlink", 2, false) },
  { "each netlink, no field", each("netlink", 0, true) },
  { "each bpf, 2 fields", each("bpf", 2, true) },
  { "each bpf, no field", each("bpf", 0, true) },
}

local samples = {}
for rep = 1, opts.reps do
  for j = 0, #METHODS - 1 do
    local m = METHODS[(rep + j - 1) % #METHODS + 1]
    collectgarbage()
    local t
    if m.raw then
      t = m[2]()
    else
      local s = now()
      assert(m[2](), m[1])
      t = now() - s
    end
    samples[m[1]] = samples[m[1]] or {}
    table.insert(samples[m[1]], t)
  end
end
local function median(xs)
  table.sort(xs)
  local n = #xs
  return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end

local total = 0
for _, n in pairs(assert(tcplab.counts {})) do total = total + n end
local host = io.open("/proc/net/sockstat"):read("a"):match("TCP: inuse %d+ orphan %d+ tw %d+ alloc (%d+)")
local fl = median(samples[METHODS[1][1]])
print(("%d sockets in the namespace (%d pairs, %d TIME_WAIT asked, built in %.1f s); " ..
       "TCP sockets allocated on the host: %s; %d repetitions; load average %s")
  :format(total, opts.pairs, opts.tw, built, host or "?", opts.reps,
          (io.open("/proc/loadavg"):read("l"):match("^(%S+ %S+ %S+)"))))
print("")
print("| method | median ms | x floor |")
print("|---|---:|---:|")
for _, m in ipairs(METHODS) do
  local x = median(samples[m[1]])
  print(("| %s | %.2f | %.2f |"):format(m[1], x * 1e3, x / fl))
end
for _, s in ipairs(keep) do s:close() end
srv:close()
