--- The scenarios, one seed claim each; each is a function(opts) returning
-- { name, ok, steps, checks, ... }.
local scenarios = {}

scenarios.NAMES = { "lifecycle" }

function scenarios.get(name)
  for _, n in ipairs(scenarios.NAMES) do
    if n == name then return require("tcplab.scenarios." .. name) end
  end
  return nil, ("unknown scenario '%s' (valid: %s)"):format(tostring(name), table.concat(scenarios.NAMES, " "))
end

return scenarios
