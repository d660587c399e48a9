--- THE table of TCP state names.
-- Kernel numbers and netstat spellings come from the C core (which mirrors
-- include/net/tcp_states.h); ss spellings and what people type live here.
local core = require "tcplab.core"

local states = {}

--- ss spelling of each netstat name (iproute2's sstate_name).
local SS_NAME = {
  UNKNOWN = "UNKNOWN", ESTABLISHED = "ESTAB", SYN_SENT = "SYN-SENT",
  SYN_RECV = "SYN-RECV", FIN_WAIT1 = "FIN-WAIT-1", FIN_WAIT2 = "FIN-WAIT-2",
  TIME_WAIT = "TIME-WAIT", CLOSE = "UNCONN", CLOSE_WAIT = "CLOSE-WAIT",
  LAST_ACK = "LAST-ACK", LISTEN = "LISTEN", CLOSING = "CLOSING",
}

--- Spellings that are not a netstat name with '-' for '_' (after upper-casing).
local ALIASES = {
  ESTAB = "ESTABLISHED", UNCONN = "CLOSE", CLOSED = "CLOSE",
  SYN_RCVD = "SYN_RECV", SYNC_RCVD = "SYN_RECV", SYNC_SENT = "SYN_SENT",  -- the seed's spellings
  FIN_WAIT_1 = "FIN_WAIT1", FIN_WAIT_2 = "FIN_WAIT2",
}

states.number = {}   -- "ESTABLISHED" -> 1
states.name = {}     -- 1 -> "ESTABLISHED"
states.ss = {}       -- "ESTABLISHED" -> "ESTAB"
states.list = {}     -- the real states in kernel order, 1..11

for num = 0, #core.STATES do
  local name = core.STATES[num]
  states.number[name] = num
  states.name[num] = name
  states.ss[name] = assert(SS_NAME[name], name)
  if num > 0 then states.list[#states.list + 1] = name end
end

--- Every state bit the kernel dumps (1..11; request sockets come with SYN_RECV).
states.ALL_MASK = 0
for num = 1, #states.list do states.ALL_MASK = states.ALL_MASK | (1 << num) end

local valid = table.concat(states.list, " ")

--- Canonical (netstat) name of a spelling, or nil and a message.
function states.canonical(spelling)
  if type(spelling) ~= "string" then
    return nil, "state name expected, got " .. type(spelling)
  end
  local key = spelling:upper():gsub("-", "_")
  key = ALIASES[key] or key
  if states.number[key] and key ~= "UNKNOWN" then return key end
  return nil, ("unknown state '%s' (valid: %s)"):format(spelling, valid)
end

--- Bit mask of a state name or list of names; nil or empty means all.
function states.mask(spec)
  if spec == nil then return states.ALL_MASK end
  if type(spec) == "string" then
    local name, err = states.canonical(spec)
    if not name then return nil, err end
    return 1 << states.number[name]
  end
  if type(spec) ~= "table" then
    return nil, "state name or list of names expected, got " .. type(spec)
  end
  if next(spec) == nil then return states.ALL_MASK end
  local n = 0
  for k in pairs(spec) do
    if math.type(k) ~= "integer" or k < 1 then
      return nil, ("a list of names expected, got key %s"):format(tostring(k))
    end
    n = n + 1
  end
  if n ~= #spec then return nil, "a list of names without holes expected (a nil in the list?)" end
  local mask = 0
  for i, spelling in ipairs(spec) do
    local name, err = states.canonical(spelling)
    if not name then return nil, ("[%d]: %s"):format(i, err) end
    mask = mask | (1 << states.number[name])
  end
  return mask
end

return states
