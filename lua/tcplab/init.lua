--- tcplab: the TCP socket lifecycle, scriptable and assertable.
-- require "tcplab" has no side effects; submodules load on first use.
local core = require "tcplab.core"
local states = require "tcplab.states"
local args = require "tcplab.args"

local tcplab = {
  core = core,
  socket = core.socket,   -- socket("inet" | "inet6")
  errno = core.errno,     -- errno values by name: tcplab.errno.ECONNREFUSED
}

local LAZY = { states = true, awk = true, netns = true, trace = true, fault = true,
               scenarios = true, timeline = true, observe = true }

-- A module that exists but cannot be opened (out of fds) is not "not found":
-- say what the system said.
local function load(name)
  local ok, m = pcall(require, name)
  if ok then return m end
  local probe, err = io.open("/dev/null")
  if probe then probe:close() error(m, 3) end
  error(("cannot load %s: %s"):format(name, err:gsub("^/dev/null: ", "")), 3)
end

setmetatable(tcplab, {
  __index = function(t, k)
    if LAZY[k] then
      local m = load("tcplab." .. k)
      rawset(t, k, m)
      return m
    end
  end,
})

local function family_of(host)
  return type(host) == "string" and host:find(":", 1, true) and "inet6" or "inet"
end

-- Run steps on a new socket; close it at once when one fails or raises.
-- An argument error names the convenience the caller called (fname).
local function build(fname, family, steps)
  local sock, err, errno = core.socket(family)
  if not sock then return nil, err, errno end
  for _, step in ipairs(steps) do
    local ok, res, msg, no = pcall(step, sock)
    if not ok or not res then
      sock:close()
      if not ok then   -- a bad argument: same position in the convenience's arguments
        error((tostring(res):gsub("to '[%w_]+' %(", "to '" .. fname .. "' (", 1)), 0)
      end
      return nil, msg, no
    end
  end
  return sock
end

--- A listening socket on host:port (reuseaddr set): sock, or nil, msg, errno.
function tcplab.listen(host, port, backlog)
  if backlog ~= nil and (math.type(backlog) ~= "integer" or backlog < 0 or backlog > 0x7fffffff) then
    args.error("listen", 3, "backlog: integer 0..2^31-1 expected, got " .. args.show(backlog))
  end
  return build("listen", family_of(host), {
    function(s) return s:setopt("reuseaddr", true) end,
    function(s) return s:bind(host, port) end,
    function(s) return s:listen(backlog) end,
  })
end

--- A socket connected to host:port within timeout seconds (nil: wait).
function tcplab.connect(host, port, timeout)
  return build("connect", family_of(host), { function(s) return s:connect(host, port, timeout) end })
end

--- Every TCP socket of the namespace matching the filter, one table each:
-- state family src sport dst dport rqueue wqueue uid inode cookie timer
-- expires_ms retrans (+ info). filter: states, family, sport, dport, info, netns, backend.
-- With columns = true: one table { n = count, state = {...}, src = {...}, ... }
-- whose i-th entries describe socket i (cheaper to build and to hold; bench/results.md).
-- The filter is checked by the C core; only state names become its mask here.
local function with_mask(fname, f)
  if type(f) ~= "table" or f.states == nil then return f end
  local mask, err = states.mask(f.states)
  if not mask then
    args.error(fname, 1, "states" .. (err:sub(1, 1) == "[" and err or ": " .. err), 4)
  end
  local g = {}
  for k, v in pairs(f) do g[k] = v end
  g.states = mask
  return g
end

function tcplab.snapshot(f)
  return core.snapshot(with_mask("snapshot", f))
end

--- The same filter, counted per state in C: { ESTABLISHED = n, ... }.
function tcplab.counts(f)
  return core.counts(with_mask("counts", f))
end

--- The backend that answers snapshot/counts (name: "auto" or one of them),
-- and { netlink = true | "why not", ... }.
function tcplab.backend(name)
  return core.backend(name)
end

--- Wait (bounded, default 2 s) until a socket or four-tuple is in `state`
-- as the dump shows it ("CLOSED" once the kernel forgot it). Returns true,
-- or false and the last state seen.
function tcplab.await_state(target, state, timeout)
  return tcplab.observe.await(target, state, timeout)
end

return tcplab
