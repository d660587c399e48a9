--- The scenarios, one seed claim each. scenarios.run(name, opts) runs one in
-- a fresh network namespace (root), removes any fault rules it left, and
-- returns { name, ok, steps, checks, transitions, events, method, ... }.
local netns = require "tcplab.netns"

local scenarios = {}

scenarios.NAMES = { "lifecycle", "two_sockets", "handshake", "backlog", "close", "syn_sent",
                    "simultaneous_close", "reset", "close_wait_leak" }

function scenarios.get(name)
  for _, n in ipairs(scenarios.NAMES) do
    if n == name then return require("tcplab.scenarios." .. name) end
  end
  return nil, ("unknown scenario '%s' (valid: %s)"):format(tostring(name), table.concat(scenarios.NAMES, " "))
end

local function is_root()
  local f = io.open("/proc/self/status")
  local text = f and f:read("a") or ""
  if f then f:close() end
  return text:match("\nUid:%s+0%s") ~= nil
end

--- Run a scenario. opts.isolate = false keeps the current namespace (then
-- scenarios that inject faults refuse). Returns the result, or nil and a message.
function scenarios.run(name, opts)
  local scenario, err = scenarios.get(name)
  if not scenario then return nil, err end
  opts = opts or {}
  if opts.isolate ~= false and is_root() then
    local ok, uerr = netns.unshare()
    if not ok then return nil, "cannot make a fresh namespace: " .. uerr end
  elseif scenario.needs_root then
    return nil, ("scenario '%s' needs root (a network namespace of its own for faults)"):format(name)
  end
  local ok, result = xpcall(scenario.run, debug.traceback, opts)
  if netns.is_ours() then require("tcplab.fault").clear() end
  if not ok then return nil, result end
  result.claim = scenario.claim
  return result
end

return scenarios
