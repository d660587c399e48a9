--- Helpers the checks share (lua/tcplab/checks/*.lua): clients that
-- connect, send and read, and how to tell about them. Below both
-- tcplab.checks and each check, so that neither requires the other.
local tcplab = require "tcplab.kernel"

local common = {}

--- n clients from the lab: connect together (bounded by connect_timeout),
-- each sends `send`, optionally shuts down its writing side, and all read
-- what comes until EOF or the deadline. Returns a list of
-- { sock, port, connected, reply, eof, err, errno, eof_at }.
function common.exchange(lab, n, opts)
  local clients = {}
  for i = 1, n do
    local s, err, errno = lab:connect(0)
    clients[i] = { sock = s, err = err, errno = errno, reply = "" }
    if s then clients[i].port = select(2, s:getsockname()) end
  end
  local deadline = tcplab.now() + opts.connect_timeout
  repeat
    local waiting = false
    for _, c in ipairs(clients) do
      if c.sock and not c.connected then
        local st = c.sock:state()
        if st == "ESTABLISHED" or st == "CLOSE_WAIT" then c.connected = true
        elseif st == "SYN_SENT" then waiting = true
        else c.err = "connect: " .. tostring(st) end
      end
    end
    if waiting then tcplab.sleep(0.01) end
  until not waiting or tcplab.now() > deadline
  for _, c in ipairs(clients) do
    if c.sock and not c.connected then
      c.err = c.err or ("connect: not established within %g s (%s)"):format(opts.connect_timeout, c.sock:state())
    end
    if c.connected then
      if opts.send ~= "" then
        local ok, err, errno = c.sock:write(opts.send, 1)
        if not ok then c.err, c.errno = err, errno end
      end
      if opts.shutdown then c.sock:shutdown("write") end
    end
  end
  deadline = tcplab.now() + opts.deadline
  repeat
    local reading = false
    for _, c in ipairs(clients) do
      if c.connected and not c.eof and not c.errno then
        local data, err, errno = c.sock:read(65536, 0)
        if data == "" then c.eof, c.eof_at = true, tcplab.now()
        elseif data then c.reply = c.reply .. data reading = true
        elseif errno ~= tcplab.errno.EAGAIN then c.err, c.errno = err, errno
        else reading = true end
      end
    end
    if reading then tcplab.sleep(0.01) end
  until not reading or tcplab.now() > deadline
  return clients
end

--- Close every client socket of an exchange; returns the time.
function common.close_all(clients)
  for _, c in ipairs(clients) do if c.sock then c.sock:close() end end
  return tcplab.now()
end

--- How many clients connected.
function common.connected(clients)
  local n = 0
  for _, c in ipairs(clients) do if c.connected then n = n + 1 end end
  return n
end

--- The first error among the clients, for evidence.
function common.first_error(clients)
  for _, c in ipairs(clients) do if c.err then return c.err end end
  return nil
end

--- "127.0.0.1:8080" for a record's local or peer end.
function common.ends(r)
  return ("%s:%d <- %s:%d"):format(r.src, r.sport, r.dst, r.dport)
end

return common
