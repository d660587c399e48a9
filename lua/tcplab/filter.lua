--- Checks a snapshot/counts filter table and turns it into core arguments.
local states = require "tcplab.states"
local args = require "tcplab.args"

local filter = {}

local KEYS = { states = true, family = true, sport = true, dport = true, info = true, netns = true,
               columns = true }
local KEY_LIST = "states family sport dport info netns columns"
local FAMILIES = { inet = "inet", inet6 = "inet6", any = "any" }

local function bad(fname, msg) args.error(fname, 1, msg, 4) end

local function port(fname, key, v)
  if v == nil then return nil end
  if math.type(v) ~= "integer" or v < 0 or v > 65535 then
    bad(fname, ("%s: port 0..65535 expected, got %s"):format(key, args.show(v)))
  end
  return v
end

--- Returns mask, family, sport, dport, info, netns, columns for core.snapshot/counts.
-- Raises, naming the function and the field, on anything malformed.
function filter.check(fname, f)
  if f == nil then return states.ALL_MASK, "any", nil, nil, false, nil, false end
  if type(f) ~= "table" then bad(fname, "filter table expected, got " .. type(f)) end
  for k in pairs(f) do
    if not KEYS[k] then bad(fname, ("unknown filter field '%s'; valid: %s"):format(tostring(k), KEY_LIST)) end
  end
  local mask, err = states.mask(f.states)
  if not mask then bad(fname, "states" .. (err:sub(1, 1) == "[" and err or ": " .. err)) end
  local family = FAMILIES[f.family or "any"]
  if not family then
    bad(fname, ("family: 'inet', 'inet6' or nil expected, got %s"):format(args.show(f.family)))
  end
  for _, key in ipairs({ "info", "columns" }) do
    if f[key] ~= nil and type(f[key]) ~= "boolean" then
      bad(fname, ("%s: boolean expected, got %s"):format(key, type(f[key])))
    end
  end
  if f.netns ~= nil and (type(f.netns) ~= "string" or f.netns:find("\0", 1, true)) then
    bad(fname, "netns: path string expected")
  end
  return mask, family, port(fname, "sport", f.sport), port(fname, "dport", f.dport),
         f.info == true, f.netns, f.columns == true
end

return filter
