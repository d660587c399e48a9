--- The sampling recorder: a helper process dumps the sockets on the ports
-- every millisecond and reports each change as a line. It runs in the
-- namespace of the process that started it, dies with that process
-- (PR_SET_PDEATHSIG), and stops by itself after `limit` seconds (then it
-- prints "limit" and the recorder says so in rec.warning).
--
-- As a module: sampler.spawn(ports, interval, limit) starts the helper.
-- As a script (the helper): lua5.4 sampler.lua PPID INTERVAL LIMIT PORT...
local sys = require "tcplab.sys"

local sampler = {}
local MODULE = "tcplab.trace.sampler"

sampler.INTERVAL = 0.001

local function key_of(r)
  return table.concat({ r.family, r.src, r.sport, r.dst, r.dport }, " ")
end

--- The helper's loop. SIGTERM (the recorder's stop) ends it after one last
-- sample, so the state the sockets are in at stop() is always reported.
function sampler.main(ppid, interval, limit, ports)
  local tcplab = require "tcplab.kernel"
  io.stdout:setvbuf("line")
  if not tcplab.process.die_with_parent(ppid) then return end
  tcplab.process.catch_signals()
  print(sys.pid())
  local last = {}
  local function sample(report)
    local seen, t = {}, tcplab.now()
    for _, p in ipairs(ports) do
      for _, which in ipairs({ "sport", "dport" }) do
        for _, r in ipairs(tcplab.snapshot{ [which] = p } or {}) do seen[key_of(r)] = r.state end
      end
    end
    if report then   -- the sockets as they were at start are no event
      for key, st in pairs(seen) do
        if last[key] ~= st then print(("%.6f %s %s %s"):format(t, last[key] or "CLOSE", st, key)) end
      end
      for key, st in pairs(last) do
        if not seen[key] then print(("%.6f %s CLOSE %s"):format(t, st, key)) end
      end
    end
    last = seen
  end
  local ok, err = pcall(function()
    sample(false)
    print("ready")
    local stop = tcplab.now() + limit
    while tcplab.now() < stop do
      tcplab.sleep(interval)
      sample(true)
    end
    print("limit")
  end)
  if not ok then
    if not tcplab.process.caught_signal() then error(err, 0) end
    sample(true)
    print("stopped")
  end
end

--- Start the helper: { pipe, pid }, or nil and a message.
function sampler.spawn(ports, interval, limit)
  local file = package.searchpath(MODULE, package.path)
  if not file then return nil, "sampler: cannot find " .. MODULE .. " on package.path" end
  local argv = { "exec lua5.4", sys.shq(file), sys.pid(), ("%.6f"):format(interval), ("%.3f"):format(limit) }
  for _, p in ipairs(ports) do argv[#argv + 1] = ("%d"):format(p) end
  local cmd = ("LUA_PATH=%s LUA_CPATH=%s %s"):format(sys.shq(package.path), sys.shq(package.cpath),
                                                      table.concat(argv, " "))
  local p, err = sys.popen("sampler", cmd)
  if not p then return nil, err end
  local pid = tonumber(p:read("l"))
  if not pid then p:close() return nil, "sampler: the helper did not start" end
  local h = { pipe = p, pid = pid }
  if p:read("l") ~= "ready" then sampler.stop(h) return nil, "sampler: the helper failed" end
  return h
end

--- Stop the helper; everything it printed since "ready".
function sampler.stop(h)
  if not h.pipe then return "" end
  os.execute("kill -TERM " .. h.pid .. " 2>/dev/null")   -- one last sample, then it exits
  local out = h.pipe:read("a") or ""
  h.pipe:close()
  h.pipe = nil
  return out
end

--- Events of the helper's lines; second result: whether it hit its limit.
function sampler.parse(text)
  local events, limited = {}, false
  for line in text:gmatch("[^\n]+") do
    local t, from, to, fam, src, sport, dst, dport =
      line:match("^(%S+) (%S+) (%S+) (%S+) (%S+) (%d+) (%S+) (%d+)$")
    if t then
      events[#events + 1] = { time = tonumber(t), from = from, to = to, family = fam, src = src,
                              sport = tonumber(sport), dst = dst, dport = tonumber(dport) }
    elseif line == "limit" then
      limited = true
    end
  end
  return events, limited
end

-- Run as a script: the helper.
if ... ~= MODULE then
  local a = { ... }
  local ports = {}
  for i = 4, #a do ports[#ports + 1] = assert(math.tointeger(tonumber(a[i])), "port") end
  sampler.main(assert(math.tointeger(tonumber(a[1]))), assert(tonumber(a[2])), assert(tonumber(a[3])), ports)
end

return sampler
