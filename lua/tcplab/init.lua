--- tcplab: the TCP socket lifecycle, scriptable and assertable.
-- require "tcplab" has no side effects; submodules load on first use.
local core = require "tcplab.core"
local filter = require "tcplab.filter"

local tcplab = {
  core = core,
  socket = core.socket,   -- socket("inet" | "inet6")
}

local LAZY = { states = true, awk = true, netns = true, trace = true, fault = true,
               scenarios = true, timeline = true, observe = true }
setmetatable(tcplab, {
  __index = function(t, k)
    if LAZY[k] then
      local m = require("tcplab." .. k)
      rawset(t, k, m)
      return m
    end
  end,
})

local function family_of(host)
  return type(host) == "string" and host:find(":", 1, true) and "inet6" or "inet"
end

-- Run steps on a new socket; close it at once when one fails or raises.
local function build(family, steps)
  local sock, err, errno = core.socket(family)
  if not sock then return nil, err, errno end
  for _, step in ipairs(steps) do
    local ok, res, msg, no = pcall(step, sock)
    if not ok or not res then
      sock:close()
      if not ok then error(res, 0) end   -- a bad argument: the message names it
      return nil, msg, no
    end
  end
  return sock
end

--- A listening socket on host:port (reuseaddr set): sock, or nil, msg, errno.
function tcplab.listen(host, port, backlog)
  return build(family_of(host), {
    function(s) return s:setopt("reuseaddr", true) end,
    function(s) return s:bind(host, port) end,
    function(s) return s:listen(backlog) end,
  })
end

--- A socket connected to host:port within timeout seconds (nil: wait).
function tcplab.connect(host, port, timeout)
  return build(family_of(host), { function(s) return s:connect(host, port, timeout) end })
end

--- Every TCP socket of the namespace matching the filter, one table each:
-- state family src sport dst dport rqueue wqueue uid inode cookie timer
-- expires_ms retrans (+ info). filter: states, family, sport, dport, info, netns.
-- With columns = true: one table { n = count, state = {...}, src = {...}, ... }
-- whose i-th entries describe socket i (cheaper to build and to hold; bench/results.md).
function tcplab.snapshot(f)
  return core.snapshot(filter.check("snapshot", f))
end

--- The same filter, counted per state in C: { ESTABLISHED = n, ... }.
function tcplab.counts(f)
  return core.counts(filter.check("counts", f))
end

--- Wait (bounded, default 2 s) until a socket or four-tuple is in `state`
-- as the dump shows it ("CLOSED" once the kernel forgot it). Returns true,
-- or false and the last state seen.
function tcplab.await_state(target, state, timeout)
  return tcplab.observe.await(target, state, timeout)
end

return tcplab
