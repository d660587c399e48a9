--- The scenarios, one seed claim each. scenarios.run(name, opts) runs one in
-- a fresh network namespace (root) and returns
-- { name, ok, steps, checks, transitions, events, method, scope, ... }.
-- Whatever happens inside (a failed step, an error, Ctrl-C), run() stops the
-- scenario's recorder, removes its fault rules, moves the caller back into
-- the namespace it was in and releases the scenario's namespace.
local netns = require("tcplab.kernel").netns
local process = require("tcplab.kernel").process
local sys = require "tcplab.sys"

local scenarios = {}

scenarios.NAMES = { "lifecycle", "two_sockets", "handshake", "backlog", "syn_queue", "close", "syn_sent",
                    "simultaneous_close", "reset", "close_wait_leak" }

function scenarios.get(name)
  for _, n in ipairs(scenarios.NAMES) do
    if n == name then return require("tcplab.scenarios." .. n) end
  end
  return nil, ("unknown scenario '%s' (valid: %s)"):format(tostring(name), table.concat(scenarios.NAMES, " "))
end

-- Undo what a run left: recorders, fault rules, the namespace.
local function clean_up(home, made)
  require("tcplab.scenarios.kit").release()
  if made and made:is_current() then require("tcplab.fault").clear() end
  local ok, err = true, nil
  if home then
    ok, err = home:enter()
    home:close()
  end
  if made then made:close() end
  return ok, err
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
  local home, made
  if opts.isolate ~= false and sys.is_root() then
    local uerr
    home, uerr = netns.open()
    if not home then return nil, "cannot hold the current namespace: " .. uerr end
    made, uerr = netns.unshare()
    if not made then home:close() return nil, "cannot make a fresh namespace: " .. uerr end
  elseif scenario.needs_root then
    return nil, ("scenario '%s' needs root (a network namespace of its own for faults)"):format(name), "needs root"
  end
  local ok, result = xpcall(scenario.run, function(e)
    if process.is_signal(e) then return e end
    return debug.traceback(e, 2)
  end, opts)
  local back, berr = clean_up(home, made)
  if not back then error("scenario " .. name .. ": cannot return to the caller's namespace: " .. berr, 0) end
  if not ok then
    if process.is_signal(result) then error(result, 0) end
    return nil, result
  end
  result.claim = scenario.claim
  return result
end

return scenarios
