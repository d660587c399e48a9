--- Expectations over a recorder's transitions: rec:expect{ ... }.
local states = require "tcplab.states"
local args = require "tcplab.args"

local expect = {}

local function expand(list)
  local out = {}
  for _, item in ipairs(list) do
    if type(item) ~= "string" then error("expect: 'FROM>TO' strings expected, got " .. type(item), 4) end
    local names = {}
    for part in item:gmatch("[^>]+") do
      local name = part:upper() == "CLOSED" and "CLOSE" or states.canonical(part)
      if not name then error(("expect: unknown state '%s' in '%s'"):format(part, item), 4) end
      names[#names + 1] = name
    end
    if #names < 2 then error(("expect: 'FROM>TO' expected, got '%s'"):format(item), 4) end
    for i = 1, #names - 1 do out[#out + 1] = names[i] .. ">" .. names[i + 1] end
  end
  return out
end

--- Give the recorder class its expect method.
function expect.install(Recorder)
  --- Assert transitions happened in this order (other transitions may come
  -- between). expect{ "A>B", ... } checks all events; expect{ client = {...},
  -- server = {...} } checks each side. "A>B>C" is short for "A>B", "B>C".
  -- Returns true, or nil and a message with the expected and observed sequences.
  function Recorder:expect(spec)
    if type(spec) ~= "table" then args.error("expect", 1, "table expected, got " .. type(spec)) end
    local groups = {}
    if #spec > 0 then groups[#groups + 1] = { side = nil, want = expand(spec) } end
    for _, side in ipairs({ "client", "server" }) do
      if spec[side] then groups[#groups + 1] = { side = side, want = expand(spec[side]) } end
    end
    for _, g in ipairs(groups) do
      local seen, i = self:sequence(g.side), 1
      for _, tr in ipairs(seen) do
        if tr == g.want[i] then i = i + 1 end
      end
      if i <= #g.want then
        return nil, ("%s: expected %s\n  observed %s\n  (missing from %s on; method: %s%s)"):format(
          g.side or "all sockets", table.concat(g.want, ", "), table.concat(seen, ", "),
          g.want[i], self.method, self.warning and ("; " .. self.warning) or "")
      end
    end
    return true
  end
end

return expect
