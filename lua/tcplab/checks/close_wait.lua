--- close-wait: clients connect, send, read what comes and hang up; after a
-- grace period no socket the server holds is left in CLOSE_WAIT. The seed:
-- CLOSE_WAIT means the peer closed and the application has not called close().
local tcplab = require "tcplab"
local checks = require "tcplab.checks"

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
    local ours = function(r) return closed_at[r.dport] ~= nil end
    local deadline = tcplab.now() + opts.grace
    local owned, queued
    repeat
      tcplab.sleep(0.02)
      local recs = assert(lab:snapshot{ states = "CLOSE_WAIT", sport = lab.port })
      local owners = lab:owners()
      owned, queued = {}, {}
      for _, r in ipairs(recs) do
        if ours(r) then
          r.owner = r.inode ~= 0 and owners[r.inode] or nil
          if r.owner then owned[#owned + 1] = r else queued[#queued + 1] = r end
        end
      end
    until #owned == 0 or tcplab.now() > deadline
    local n = checks.connected(clients)
    local evidence = ("%d in CLOSE_WAIT %.1f s after %d of %d clients hung up"):format(
      #owned, opts.grace, n, opts.clients)
    if #owned > 0 then
      table.sort(owned, function(a, b) return closed_at[a.dport] < closed_at[b.dport] end)
      local o = owned[1]
      evidence = evidence .. ("; oldest %s held by pid %d fd %d (%s), %.1f s after its client closed")
        :format(checks.ends(o), o.owner.pid, o.owner.fd, o.owner.comm, tcplab.now() - closed_at[o.dport])
    end
    if #queued > 0 then
      evidence = evidence .. ("; %d more never accepted (in the accept queue, no fd yet)"):format(#queued)
    end
    if n < opts.clients then
      evidence = evidence .. ("; %d could not connect: %s"):format(opts.clients - n, checks.first_error(clients))
    end
    return { ok = #owned == 0, evidence = evidence, close_wait = #owned, unaccepted = #queued,
             oldest = owned[1], sockets = owned, connected = n }
  end,
}
