--- The scenarios, one seed claim each. scenarios.run(name, opts) runs one in
-- a fresh network namespace (root) and returns
-- { name, ok, steps, checks, transitions, events, method, scope, ... }.
-- The namespace is a value (tcplab.netns.new()): the caller never moves.
-- The scenario's body runs inside it through ns:run, which switches this
-- thread in and, in C, back before returning whatever happens inside (a
-- failed step, an error, Ctrl-C); then run() stops the scenario's recorder,
-- removes its fault rules and releases the namespace.
local netns = require("tcplab.kernel").netns
local process = require("tcplab.kernel").process
local sys = require "tcplab.sys"

local scenarios = {}

scenarios.NAMES = { "lifecycle", "two_sockets", "handshake", "backlog", "syn_queue", "close", "syn_sent",
                    "simultaneous_close", "reset", "close_wait_leak", "slow_wire" }

function scenarios.get(name)
  for _, n in ipairs(scenarios.NAMES) do
    if n == name then return require("tcplab.scenarios." .. n) end
  end
  return nil, ("unknown scenario '%s' (valid: %s)"):format(tostring(name), table.concat(scenarios.NAMES, " "))
end

-- Undo what a run left: recorders, fault rules, the namespace.
local function clean_up(ns)
  require("tcplab.scenarios.kit").release()
  if ns then
    pcall(require("tcplab.fault").clear, ns)
    ns:close()
  end
end

--- Run a scenario. opts.isolate = false keeps the current namespace (then
-- scenarios that inject faults refuse). Returns the result, or nil and a
-- message (and "needs root" as a third value when that is why). An error raised inside (Ctrl-C: "interrupted!") is raised again
-- after the clean-up.
function scenarios.run(name, opts)
  local scenario, err = scenarios.get(name)
  if not scenario then return nil, err end
  if opts ~= nil and type(opts) ~= "table" then
    require("tcplab.args").error("run", 2, "table expected, got " .. type(opts))
  end
  opts = opts or {}
  local ns
  if opts.isolate ~= false and sys.is_root() then
    local uerr
    ns, uerr = netns.new()
    if not ns then return nil, "cannot make a fresh namespace: " .. uerr end
  elseif scenario.needs_root then
    return nil, ("scenario '%s' needs root (a network namespace of its own for faults)"):format(name), "needs root"
  end
  local body = scenario.run
  if ns then body = function(o) return ns:run(scenario.run, o) end end
  local ok, result = xpcall(body, function(e)
    if process.is_signal(e) then return e end
    return debug.traceback(e, 2)
  end, opts)
  clean_up(ns)
  if not ok then
    if process.is_signal(result) then error(result, 0) end
    return nil, result
  end
  result.claim = scenario.claim
  return result
end

return scenarios
