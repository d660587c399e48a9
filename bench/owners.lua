-- A quick owners harness (root): `ss -tanp` against tcplab.snapshot{owners=true}
-- on the same sockets, in a private network namespace, loaded as bench/run.lua
-- loads it (same helper, same plans; cumulative sizes). Commands are timed
-- with their start-up, tcplab in-process, as in bench/run.lua.
--   lua5.4 bench/owners.lua [SIZES=1000,10000] [REPS=15]
local tcplab = require "tcplab"
local now, sleep = tcplab.core.now, tcplab.core.sleep
local sizes, reps = {}, tonumber(arg[2]) or 15
for n in (arg[1] or "1000,10000"):gmatch("%d+") do sizes[#sizes + 1] = tonumber(n) end
assert(tcplab.netns.unshare())
local tmp = assert(io.popen("mktemp -d")):read("l")
local helpers = {}
local plan = { [1000] = { { 470, 50, 5 } }, [10000] = { { 4250, 450, 5 } },
  [100000] = { { 7120, 750, 5 }, { 7120, 750, 5 }, { 7120, 750, 5 },
               { 7120, 750, 5 }, { 7120, 750, 5 }, { 7120, 750, 5 } } }
local function med(xs)
  table.sort(xs)
  local n = #xs
  return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end
local function timed(f) collectgarbage() local t0 = now() assert(f()) return now() - t0 end
local M = {
  { "ss -tanp >/dev/null", function() return timed(function() return os.execute("ss -tanp >/dev/null") end) end },
  { "snapshot{owners}", function() return timed(function() return tcplab.snapshot{ owners = true } end) end },
  { "snapshot{netlink}", function() return timed(function() return tcplab.snapshot{ backend = "netlink" } end) end },
}
print("owners walk: " .. assert(tcplab.snapshot{ owners = true }).owners_walk)   -- and its one load
for _, size in ipairs(sizes) do
  for _, p in ipairs(plan[size]) do
    local i = #helpers + 1
    local ready = ("%s/%d.ready"):format(tmp, i)
    helpers[i] = { pipe = assert(io.popen(("exec lua5.4 bench/load.lua %s %d %d %d %d"):format(ready, i, p[1], p[2], p[3]), "w")), ready = ready }
  end
  for _, h in ipairs(helpers) do
    repeat local f = io.open(h.ready) local ok = f and f:read("a"):match("^ready") if f then f:close() end
      if not ok then sleep(0.05) end until ok
  end
  local total = 0
  for _, n in pairs(assert(tcplab.counts())) do total = total + n end
  local s = {}
  for k = 1, #M do s[k] = {} end
  for rep = 1, reps do
    for j = 0, #M - 1 do local k = (rep + j - 1) % #M + 1 s[k][#s[k] + 1] = M[k][2]() end
  end
  local r = {}
  for k = 1, #M do r[k] = med(s[k]) end
  print(("%d sockets: ss -tanp %.2f ms, snapshot{owners} %.2f ms (ratio %.2f), snapshot{netlink} (the dump owners use) %.2f ms, owners join ~%.2f ms")
    :format(total, r[1] * 1e3, r[2] * 1e3, r[2] / r[1], r[3] * 1e3, (r[2] - r[3]) * 1e3))
end
for _, h in ipairs(helpers) do h.pipe:close() end
os.execute("rm -rf " .. tmp)
