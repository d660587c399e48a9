--- The small servers the lab specs run (written with tcplab itself):
--   lua5.4 spec/servers/echo.lua PORT [BACKLOG]
-- One loop, no blocking call: accept what is queued, echo what arrives,
-- and on EOF close (or, for never_close, keep the socket and forget it).
-- opts.close_on_eof = false: the CLOSE_WAIT leak; opts.sleep = seconds
-- before the first accept (the accept queue fills meanwhile); opts.keep_one_in
-- = N: keep (leak) only every Nth connection that hangs up, close the others;
-- opts.silent: read requests, never answer; opts.host = the address to listen
-- on (127.0.0.1; "::1" for an IPv6-only server).
local tcplab = require "tcplab"

return function(opts)
  local port = math.tointeger(tonumber(arg[1])) or error("usage: " .. arg[0] .. " PORT [BACKLOG]")
  local backlog = math.tointeger(tonumber(arg[2])) or opts.backlog or 16
  local host = opts.host or "127.0.0.1"
  local srv = assert(tcplab.listen(host, port, backlog))
  io.write(("listening on %s:%d backlog %d\n"):format(host:find(":", 1, true) and "[" .. host .. "]" or host, port, backlog))
  io.flush()
  if opts.sleep then
    io.write(("sleeping %g s before accepting\n"):format(opts.sleep))
    io.flush()
    tcplab.sleep(opts.sleep)
  end
  local conns, kept, eofs = {}, {}, 0
  while true do
    local busy = false
    while true do
      local c = srv:accept(0)
      if not c then break end
      conns[c] = true
      busy = true
    end
    for c in pairs(conns) do
      local data, _, errno = c:read(65536, 0)
      if data == "" or (not data and errno ~= 11) then   -- EOF, or a reset
        conns[c] = nil
        eofs = eofs + (data == "" and 1 or 0)
        local keep = data == "" and (opts.close_on_eof == false or (opts.keep_one_in and eofs % opts.keep_one_in == 0))
        if keep then kept[#kept + 1] = c else c:close() end
      elseif data then
        if not opts.silent then c:write(data, 1) end
        busy = true
      end
    end
    if not busy then tcplab.sleep(0.005) end
  end
end
