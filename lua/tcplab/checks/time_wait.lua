--- time-wait side (informational): which side closes first, and how many
-- TIME_WAIT sockets the server keeps per connection. The seed: "TIME_WAIT
-- 表示主动关闭" (TIME_WAIT marks the active closer): the side that sends the
-- first FIN keeps the four-tuple for 2MSL (60 s on Linux), so a server that
-- closes first keeps one TIME_WAIT per connection (and its port space and
-- memory with it); when clients close first the TIME_WAIT stays with them.
local tcplab = require "tcplab.kernel"
local checks = require "tcplab.checks.common"

return {
  title = "time-wait",
  claim = "TIME_WAIT stays with the side that closes first",
  run = function(lab, opts)
    local clients = checks.exchange(lab, opts.clients, opts)
    local server_first, mine = 0, {}
    for _, c in ipairs(clients) do
      if c.connected then
        mine[c.port] = true
        if c.eof then server_first = server_first + 1 end
      end
    end
    checks.close_all(clients)
    local n = checks.connected(clients)
    if n == 0 then
      return { status = "not run", evidence = ("not run: none of %d clients connected to %s port %d (%s)"):format(
        opts.clients, lab.host, lab.port, tostring(checks.first_error(clients))) }
    end
    local server_tw, client_tw, waiting_fin
    local deadline = tcplab.now() + opts.grace
    repeat
      tcplab.sleep(0.02)
      server_tw, client_tw, waiting_fin = 0, 0, 0
      for _, r in ipairs(assert(lab:snapshot{ states = { "TIME_WAIT", "FIN_WAIT2" } })) do
        if r.state == "FIN_WAIT2" then
          if r.dport == lab.port and mine[r.sport] then waiting_fin = waiting_fin + 1 end
        elseif r.sport == lab.port and mine[r.dport] then server_tw = server_tw + 1
        elseif r.dport == lab.port and mine[r.sport] then client_tw = client_tw + 1 end
      end
    until server_tw + client_tw >= n or tcplab.now() > deadline
    local who = server_first == n and "the server closes first" or server_first == 0 and "the client closes first"
      or ("the server closes first in %d of %d"):format(server_first, n)
    local evidence = ("%s; TIME_WAIT per connection: server %.1f, client %.1f (TIME_WAIT stays with the side " ..
                      "that closes first, 60 s)"):format(who, server_tw / n, client_tw / n)
    if waiting_fin > 0 then
      evidence = evidence .. ("; %d client(s) still in FIN_WAIT2: the server never sent its FIN"):format(waiting_fin)
    end
    return { status = "info", evidence = evidence, waiting_fin = waiting_fin, server_closes_first = server_first,
             connections = n, server_time_wait = server_tw, client_time_wait = client_tw }
  end,
}
