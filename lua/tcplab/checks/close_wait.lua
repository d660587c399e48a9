--- close-wait: clients connect, send, read what comes and hang up; after a
-- grace period no socket the server holds is left in CLOSE_WAIT. The seed:
-- CLOSE_WAIT means the peer closed and the application has not called close().
--
-- Which server sockets are "held" is read from the socket itself, not from
-- the processes we know of: a socket still in the accept queue has no inode
-- (no struct socket yet); one with an inode was accepted and some process
-- holds it. So a worker child, or any process the lab does not list, cannot
-- hide a leak; the owner join (lab:owners(), over every process of the lab)
-- only names who holds it. A run where no connection reached the server's
-- hands (none connected, or none left the accept queue) proves nothing
-- about its close(): "not run".
local tcplab = require "tcplab.kernel"
local checks = require "tcplab.checks.common"

return {
  title = "close-wait",
  claim = "after the clients hang up, the server closes its ends (no CLOSE_WAIT left)",
  run = function(lab, opts)
    local clients = checks.exchange(lab, opts.clients, opts)
    local closed_at = {}
    for _, c in ipairs(clients) do
      if c.connected then closed_at[c.port] = tcplab.now() end
      if c.sock then c.sock:close() end
    end
    local n = checks.connected(clients)
    if n == 0 then
      return { status = "not run", connected = 0,
               evidence = ("not run: none of %d clients connected to %s port %d (%s)"):format(
                 opts.clients, lab.host, lab.port, tostring(checks.first_error(clients))) }
    end
    local ours = function(r) return closed_at[r.dport] ~= nil end
    local deadline = tcplab.now() + opts.grace
    local held, queued
    repeat
      tcplab.sleep(0.02)
      local recs = assert(lab:snapshot{ states = "CLOSE_WAIT", sport = lab.port })
      local owners = lab:owners()
      held, queued = {}, {}
      for _, r in ipairs(recs) do
        if ours(r) then
          if r.inode ~= 0 then
            r.owner = owners[r.inode]
            held[#held + 1] = r
          else
            queued[#queued + 1] = r
          end
        end
      end
    until (#held == 0 and #queued == 0) or tcplab.now() > deadline
    local accepted = n - #queued
    if accepted == 0 then
      return { status = "not run", connected = n, unaccepted = #queued,
               evidence = ("not run: the server accepted none of the %d connections within %.1f s of their " ..
                           "hang-up (all %d still in its accept queue): its close() was never exercised"):format(
                 n, opts.grace, #queued) }
    end
    local evidence = ("%d in CLOSE_WAIT %.1f s after %d of %d clients hung up"):format(
      #held, opts.grace, n, opts.clients)
    if #held > 0 then
      table.sort(held, function(a, b) return closed_at[a.dport] < closed_at[b.dport] end)
      local o = held[1]
      local who = o.owner and ("pid %d fd %d (%s)%s"):format(o.owner.pid, o.owner.fd, o.owner.comm,
          o.owner.pid ~= lab.pid and (", not the started pid %d"):format(lab.pid) or "")
        or ("a process outside the lab's list (inode %d)"):format(o.inode)
      evidence = evidence .. ("; oldest %s held by %s, %.1f s after its client closed")
        :format(checks.ends(o), who, tcplab.now() - closed_at[o.dport])
      local pids = {}
      for _, r in ipairs(held) do if r.owner then pids[r.owner.pid] = true end end
      local list = {}
      for p in pairs(pids) do list[#list + 1] = p end
      table.sort(list)
      if #list > 1 then evidence = evidence .. "; held by pids " .. table.concat(list, " ") end
      evidence = evidence .. ("; %d accepted by the server"):format(accepted)
    else
      evidence = evidence .. (": the server closed all %d connections it accepted"):format(accepted)
    end
    if #queued > 0 then
      evidence = evidence .. ("; %d more never accepted (in the accept queue, no fd yet)"):format(#queued)
    end
    if n < opts.clients then
      evidence = evidence .. ("; %d could not connect: %s"):format(opts.clients - n, checks.first_error(clients))
    end
    return { status = #held == 0 and "pass" or "fail", evidence = evidence, close_wait = #held,
             unaccepted = #queued, accepted = accepted, oldest = held[1], sockets = held, connected = n }
  end,
}
