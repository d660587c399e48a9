-- A load helper for bench/run.lua and bench/scale.lua: holds ESTABLISHED
-- pairs (clients bound to its own loopback source address), a few listeners,
-- and leaves TIME_WAIT sockets behind. Writes "ready N PID" to READYFILE
-- (and "made N PID" now and then while it builds, each by an atomic rename),
-- then holds everything until its standard input closes (the parent ends, or
-- is interrupted). With "once" as a sixth argument it exits after "ready"
-- (TIME_WAIT sockets outlive their process: a top-up needs no holder).
--   lua5.4 bench/load.lua READYFILE INDEX PAIRS TIMEWAIT LISTENERS [once]
-- INDEX picks the source address 127.(INDEX // 256).(INDEX % 256).1, so
-- indexes below 256 keep bench/run.lua's 127.0.INDEX.1.
local tcplab = require "tcplab"

local ready_file, index, npairs, ntw, nlisten = arg[1], tonumber(arg[2]), tonumber(arg[3]),
  tonumber(arg[4]), tonumber(arg[5])
local once = arg[6] == "once"
local src = ("127.%d.%d.1"):format(index // 256, index % 256)
local keep = {}
local function hold(s) keep[#keep + 1] = s return s end

local pid = io.open("/proc/self/stat"):read("n")
local function state(word, n)
  local f = assert(io.open(ready_file .. ".tmp", "w"))
  f:write(word, " ", n, " ", pid, "\n")
  f:close()
  assert(os.rename(ready_file .. ".tmp", ready_file))
end

-- A helper that fails says so in READYFILE ("failed"), so its parent stops
-- waiting at once instead of at its deadline.
local function main()
  local srv = hold(assert(tcplab.listen(src, 0, 4096)))
  local host, port = srv:getsockname()
  for _ = 2, nlisten do hold(assert(tcplab.listen(src, 0, 16))) end

  local function connect_one()
    local c = assert(tcplab.socket("inet"))
    assert(c:bind(src, 0))
    assert(c:connect(host, port, 5))
    return c
  end

  local made = 0
  while made < npairs do            -- in batches that fit the accept queue
    local batch = math.min(1024, npairs - made)
    for _ = 1, batch do hold(connect_one()) end
    for _ = 1, batch do hold(assert(srv:accept(5))) end
    made = made + batch
    if made % 4096 < 1024 then state("made", 2 * made) end
  end
  for i = 1, ntw do                 -- client closes first: its end stays in TIME_WAIT
    local c = connect_one()
    local a = assert(srv:accept(5))
    c:close()
    assert(a:read(1, 5) == "")
    a:close()
    if i % 4096 == 0 then state("made", 2 * made + i) end
  end

  state("ready", #keep)
end

local ok, err = xpcall(main, debug.traceback)
if not ok then
  io.stderr:write("bench/load.lua (", src, "): ", tostring(err), "\n")
  pcall(state, "failed", 0)
  os.exit(1)
end
if not once then io.read("a") end
