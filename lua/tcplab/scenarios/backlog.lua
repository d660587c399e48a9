--- listen(fd, N): how many handshakes complete with nobody calling accept,
-- what happens to the next client, and the clamp by net.core.somaxconn.
-- The kernel's numbers, not the textbook's: the accept queue holds N + 1
-- (sk_acceptq_is_full() tests "> N"); the next SYN is dropped and counted
-- as ListenOverflows and ListenDrops, and that client stays in SYN_SENT.
local core = require "tcplab.core"
local kit = require "tcplab.scenarios.kit"
local observe = require "tcplab.observe"

local function netstat_counter(name)
  local f = assert(io.open("/proc/net/netstat"))
  local text = f:read("a")
  f:close()
  for header, values in text:gmatch("TcpExt: ([^\n]+)\nTcpExt: ([^\n]+)") do
    local names, nums = {}, {}
    for w in header:gmatch("%S+") do names[#names + 1] = w end
    for w in values:gmatch("%S+") do nums[#nums + 1] = tonumber(w) end
    for i, n in ipairs(names) do if n == name then return nums[i] end end
  end
  return nil
end

local function sysctl(path, value)
  local f = assert(io.open("/proc/sys/" .. path, value and "w" or "r"))
  local r = value and f:write(tostring(value)) or f:read("n")
  f:close()
  return r
end

local function try_backlog(tl, family, host, n)
  local srv <close> = assert(core.socket(family))
  assert(srv:bind(host, 0))
  assert(srv:listen(n))
  local port = select(2, srv:getsockname())
  local overflows0, drops0 = netstat_counter("ListenOverflows"), netstat_counter("ListenDrops")
  local clients, completed = {}, 0
  for i = 1, n + 2 do
    local c = assert(core.socket(family))
    clients[i] = c
    local ok = c:connect(host, port, 0.3)
    if ok then completed = completed + 1 end
  end
  local lst = assert(core.snapshot{ states = 1 << 10, sport = port })[1]
  local last = clients[#clients]
  local last_state = observe.state(observe.tuple(last, host, port))
  local overflows = netstat_counter("ListenOverflows") - overflows0
  local drops = netstat_counter("ListenDrops") - drops0
  tl:step("server", ("listen(%d), %d clients, no accept"):format(n, n + 2),
          ("rqueue %d wqueue %d"):format(lst.rqueue, lst.wqueue))
  tl:check(lst.wqueue == n, ("backlog %d: the LISTEN socket's wqueue shows %d"):format(n, lst.wqueue))
  tl:check(lst.rqueue == n + 1, ("backlog %d: %d handshakes complete without accept (N + 1)"):format(n, lst.rqueue))
  tl:check(completed == n + 1, ("backlog %d: %d connect() calls returned"):format(n, completed))
  tl:check(last_state == "SYN_SENT", ("backlog %d: the next client waits in %s"):format(n, last_state))
  tl:check(overflows >= 1 and drops >= 1,
           ("backlog %d: ListenOverflows +%d, ListenDrops +%d"):format(n, overflows, drops))
  for _, c in ipairs(clients) do c:close() end
  return { backlog = n, rqueue = lst.rqueue, wqueue = lst.wqueue, completed = completed,
           next_client = last_state, listen_overflows = overflows, listen_drops = drops }
end

return {
  title = "backlog",
  needs_root = true,   -- writes net.core.somaxconn of its own namespace
  claim = "listen(fd, backlog): backlog bounds the accept queue",
  run = function(opts)
    local s = kit.begin("backlog", opts)
    local tl = s.tl
    local rows = {}
    for _, n in ipairs(opts and opts.backlogs or { 1, 2, 4 }) do
      rows[#rows + 1] = try_backlog(tl, s.family, s.host, n)
    end
    -- the clamp: listen(100) with somaxconn 3 gives a backlog of 3
    local old = sysctl("net/core/somaxconn")
    sysctl("net/core/somaxconn", 3)
    local big <close> = assert(core.socket(s.family))
    assert(big:bind(s.host, 0))
    assert(big:listen(100))
    local lst = assert(core.snapshot{ states = 1 << 10, sport = (select(2, big:getsockname())) })[1]
    sysctl("net/core/somaxconn", old)
    tl:step("server", "somaxconn=3; listen(100)", ("wqueue %d"):format(lst.wqueue))
    tl:check(lst.wqueue == 3, ("net.core.somaxconn clamps listen(100) to %d"):format(lst.wqueue))
    s.srv:close()
    return kit.finish(s, nil, { backlogs = rows, somaxconn_clamped = lst.wqueue })
  end,
}
