--- Checks a snapshot/counts filter table and turns it into core arguments.
local states = require "tcplab.states"

local filter = {}

local KEYS = { states = true, family = true, sport = true, dport = true, info = true, netns = true,
               columns = true }
local KEY_LIST = "states family sport dport info netns columns"
local FAMILIES = { inet = "inet", inet6 = "inet6", any = "any" }

local function port(fname, key, v)
  if v == nil then return nil end
  if math.type(v) ~= "integer" or v < 0 or v > 65535 then
    error(("bad argument #1 to '%s' (%s: port 0..65535 expected, got %s)")
      :format(fname, key, tostring(v)), 4)
  end
  return v
end

--- Returns mask, family, sport, dport, info, netns, columns for core.snapshot/counts.
-- Raises, naming the function and the field, on anything malformed.
function filter.check(fname, f)
  if f == nil then return states.ALL_MASK, "any", nil, nil, false, nil, false end
  if type(f) ~= "table" then
    error(("bad argument #1 to '%s' (filter table expected, got %s)"):format(fname, type(f)), 3)
  end
  for k in pairs(f) do
    if not KEYS[k] then
      error(("bad argument #1 to '%s' (unknown filter field '%s'; valid: %s)")
        :format(fname, tostring(k), KEY_LIST), 3)
    end
  end
  local mask, err = states.mask(f.states)
  if not mask then error(("bad argument #1 to '%s' (states%s)"):format(fname, err:sub(1,1) == "[" and err or ": " .. err), 3) end
  local family = FAMILIES[f.family or "any"]
  if not family then
    error(("bad argument #1 to '%s' (family: 'inet', 'inet6' or nil expected, got %s)")
      :format(fname, tostring(f.family)), 3)
  end
  if f.info ~= nil and type(f.info) ~= "boolean" then
    error(("bad argument #1 to '%s' (info: boolean expected, got %s)"):format(fname, type(f.info)), 3)
  end
  if f.columns ~= nil and type(f.columns) ~= "boolean" then
    error(("bad argument #1 to '%s' (columns: boolean expected, got %s)"):format(fname, type(f.columns)), 3)
  end
  if f.netns ~= nil and (type(f.netns) ~= "string" or f.netns:find("\0", 1, true)) then
    error(("bad argument #1 to '%s' (netns: path string expected)"):format(fname), 3)
  end
  return mask, family, port(fname, "sport", f.sport), port(fname, "dport", f.dport),
         f.info == true, f.netns, f.columns == true
end

return filter
