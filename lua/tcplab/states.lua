--- THE table of TCP state names: the kernel's numbers
-- (include/net/tcp_states.h), netstat's spelling (the canonical one here),
-- ss's spelling (iproute2's sstate_name) and node_exporter's label (its
-- tcpstat collector), plus what people type. spec/states_spec.lua checks the
-- numbers against the C core's own table.
local states = {}

-- number, netstat, ss, node_exporter label
local TABLE = {
  { 0, "UNKNOWN", "UNKNOWN", "unknown" },
  { 1, "ESTABLISHED", "ESTAB", "established" },
  { 2, "SYN_SENT", "SYN-SENT", "syn_sent" },
  { 3, "SYN_RECV", "SYN-RECV", "syn_recv" },
  { 4, "FIN_WAIT1", "FIN-WAIT-1", "fin_wait1" },
  { 5, "FIN_WAIT2", "FIN-WAIT-2", "fin_wait2" },
  { 6, "TIME_WAIT", "TIME-WAIT", "time_wait" },
  { 7, "CLOSE", "UNCONN", "close" },
  { 8, "CLOSE_WAIT", "CLOSE-WAIT", "close_wait" },
  { 9, "LAST_ACK", "LAST-ACK", "last_ack" },
  { 10, "LISTEN", "LISTEN", "listen" },
  { 11, "CLOSING", "CLOSING", "closing" },
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
states.label = {}    -- "ESTABLISHED" -> "established" (node_exporter's tcpstat labels)
states.list = {}     -- the real states in kernel order, 1..11

for _, row in ipairs(TABLE) do
  local num, name = row[1], row[2]
  states.number[name] = num
  states.name[num] = name
  states.ss[name] = row[3]
  states.label[name] = row[4]
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
