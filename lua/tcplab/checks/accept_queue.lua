--- accept-queue: a burst of connects larger than the listener's backlog.
-- The kernel's numbers (the backlog scenario): the accept queue holds
-- backlog + 1; the next SYN is dropped (ListenOverflows, ListenDrops) and its
-- client retransmits it 1 s later. A server that accepts gets the retransmits
-- in; one that sits idle with a full queue leaves clients in SYN_SENT. The
-- check fails when, at the end of the window, clients were dropped and are
-- still waiting while the server's processes used under half a CPU. It is
-- "not run" when no client of the burst got through (refused: nothing
-- listens where they dialled), so it never passes a server it did not reach.
local tcplab = require "tcplab.kernel"
local lab_mod = require "tcplab.lab"
local counters = require "tcplab.counters"

return {
  title = "accept-queue",
  claim = "a burst larger than the backlog is absorbed: dropped SYNs get in on retransmit",
  run = function(lab, opts)
    local lst = assert(lab:listeners())[1]
    if not lst then return { status = "fail", evidence = "the server no longer listens on port " .. lab.port } end
    local backlog = lst.wqueue
    local burst = backlog + 1 + (opts.extra or 3)
    local max = opts.max_burst or 1024
    if burst > max then
      return { status = "not run", backlog = backlog,
               evidence = ("not run: backlog %d: a burst larger than it needs %d sockets (limit %d)"):format(
                 backlog, burst, max) }
    end
    local before = assert(lab:counters())   -- the lab's namespace
    local pids = lab:pids()
    local cpu0, t0 = lab_mod.cpu(pids), tcplab.now()
    local deepest = lst.rqueue
    local function sample()
      local l = (lab:snapshot{ states = "LISTEN", sport = lab.port } or {})[1]
      if l and l.rqueue > deepest then deepest = l.rqueue end
    end
    local clients = {}
    for i = 1, burst do
      clients[i] = lab:connect(0) or false   -- false: connect() failed at once (refused)
      if i % 4 == 0 then sample() end
    end
    local deadline = tcplab.now() + opts.window
    local waiting, refused
    repeat
      sample()
      waiting, refused = 0, 0
      for _, c in ipairs(clients) do
        local st = c and c:state() or "CLOSE"
        if st == "SYN_SENT" then waiting = waiting + 1 elseif st == "CLOSE" then refused = refused + 1 end
      end
      if waiting > 0 then tcplab.sleep(0.05) end
    until waiting == 0 or tcplab.now() > deadline
    local connected = burst - waiting - refused
    local elapsed = tcplab.now() - t0
    local cpu = (lab_mod.cpu(pids) - cpu0) / elapsed
    local moved = counters.delta(before, assert(lab:counters()))
    for _, c in ipairs(clients) do if c then c:close() end end
    local overflows, drops = moved:get("ListenOverflows"), moved:get("ListenDrops")
    local idle = cpu < 0.5
    local evidence = ("backlog %d, burst %d to %s: deepest accept queue %d, ListenOverflows +%d, ListenDrops +%d, " ..
                      "%d connected, %d left in SYN_SENT, %d refused after %.1f s; server CPU %d%%"):format(
      backlog, burst, lab.host, deepest, overflows, drops, connected, waiting, refused, elapsed, math.floor(cpu * 100 + 0.5))
    local status
    if connected == 0 and waiting == 0 then
      status = "not run"
      evidence = "not run: no client of the burst got through (" .. evidence .. ")"
    elseif refused > 0 then
      status = "fail"
      evidence = evidence .. ": the listener refused connections (RST to SYN)"
    elseif waiting > 0 and (overflows > 0 or drops > 0) and idle then
      status = "fail"
      evidence = evidence .. ": connections dropped while the server sat idle with a full queue"
    else
      status = "pass"
      evidence = evidence .. (waiting > 0 and ": the server was busy (overloaded, not idle)"
        or ": every client of the burst got in")
    end
    return { status = status, evidence = evidence, backlog = backlog, burst = burst, deepest = deepest,
             listen_overflows = overflows, listen_drops = drops, syn_sent = waiting, refused = refused,
             connected = connected, cpu = cpu }
  end,
}
