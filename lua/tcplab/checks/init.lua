--- Checks: scenarios pointed at someone else's server. Each check is a
-- module with the shape of a seed scenario, { title, claim, run(lab, opts) },
-- where lab is a tcplab.lab around the server; run returns
-- { status = "pass" | "fail" | "not run" | "info", evidence = "one line", ... }
-- ("not run": the check could not exercise the server, the evidence says
-- why; "info": an observation with no verdict). A module of an older shape
-- may return { ok, informational } instead. checks.run adds .verdict
-- (PASS, FAIL, NOT RUN, INFO or ERROR: the check itself raised) and .ok
-- (PASS or INFO).
--
--   local lab <close> = assert(tcplab.lab{ cmd = {...}, port = 8080 })
--   local result = tcplab.checks.run(lab, "close_wait", { clients = 10 })
--
-- A check of your own: put a module with that shape on package.path and
-- pass its name (checks.run(lab, "mychecks.slowloris")) or the module itself.
-- opts: clients (5), send (bytes each client sends, ""), deadline (seconds
-- a client reads what comes, 0.5), grace (seconds the server gets to close, 1),
-- connect_timeout (1), window (seconds the accept-queue check watches, 3).
local tcplab = require "tcplab.kernel"
local lab_mod = require "tcplab.lab"

local checks = {}

checks.NAMES = { "close_wait", "accept_queue", "time_wait", "half_close", "reset" }

checks.DEFAULTS = { clients = 5, send = "", deadline = 0.5, grace = 1, connect_timeout = 1, window = 3 }

--- "close-wait" for "close_wait" (how the command line and reports say it).
function checks.display(name) return (name:gsub("_", "-")) end

--- The check module called name ("close_wait" or "close-wait", or a module
-- path of your own), or nil and a message listing the built-in ones.
function checks.get(name)
  if type(name) == "table" then return name end
  local n = tostring(name):gsub("-", "_")
  for _, known in ipairs(checks.NAMES) do
    if n == known then return require("tcplab.checks." .. n) end
  end
  if n:find(".", 1, true) then
    local ok, m = pcall(require, n)
    if ok and type(m) == "table" and type(m.run) == "function" then return m end
  end
  return nil, ("unknown check '%s' (valid: %s)"):format(tostring(name), table.concat(checks.NAMES, " "))
end

local function with_defaults(opts)
  local o = {}
  for k, v in pairs(checks.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return o
end

checks.VERDICTS = { pass = "PASS", fail = "FAIL", ["not run"] = "NOT RUN", info = "INFO", error = "ERROR" }

-- status from a result of either shape; nil for an unknown status
local function status_of(r)
  if r.status ~= nil then return checks.VERDICTS[r.status] and r.status or nil end
  if not r.ok then return "fail" end
  return r.informational and "info" or "pass"
end

--- Run one check against an open lab: its result, or nil and a message.
-- Ctrl-C / SIGTERM ("interrupted!", "terminated") is raised again.
function checks.run(lab, name, opts)
  local check, err = checks.get(name)
  if not check then return nil, err end
  local t0 = tcplab.now()
  local ok, result = xpcall(check.run, function(e)
    if lab_mod.is_signal(e) then return e end
    return debug.traceback(e, 2)
  end, lab, with_defaults(opts))
  if not ok then
    if lab_mod.is_signal(result) then error(result, 0) end
    return nil, result
  end
  local display = type(name) == "string" and checks.display(name) or check.name or check.title
  if type(result) ~= "table" then return nil, ("check %s returned %s, not a result table"):format(display, type(result)) end
  result.name = result.name or display
  result.title, result.claim = check.title, check.claim
  local status = status_of(result)
  if not status then
    return nil, ("check %s returned status %s (pass, fail, not run or info expected)"):format(display, tostring(result.status))
  end
  result.status, result.verdict = status, checks.VERDICTS[status]
  result.ok = status == "pass" or status == "info"
  result.informational = status == "info"
  result.seconds = tcplab.now() - t0
  return result
end

--- Two checks that saw the same server must not contradict each other: a
-- close-wait PASS while time-wait saw clients stuck in FIN_WAIT2, or while
-- reset saw the server keep its end open, means close-wait missed sockets
-- (held where it did not look): it becomes a FAIL that names the other
-- check's evidence. Changes results in place; returns how many it changed.
function checks.cross_check(results)
  local by = {}
  for _, r in ipairs(results) do by[r.name] = r end
  local cw = by["close-wait"]
  if not cw or cw.status ~= "pass" then return 0 end
  local seen = {}
  local tw = by["time-wait"]
  if tw and (tw.waiting_fin or 0) > 0 then
    seen[#seen + 1] = ("time-wait saw %d client(s) stuck in FIN_WAIT2 (the server never sent its FIN)"):format(tw.waiting_fin)
  end
  local rs = by["reset"]
  if rs and rs.closed == false then
    seen[#seen + 1] = "reset saw the server keep its end open"
  end
  if #seen == 0 then return 0 end
  cw.status, cw.verdict, cw.ok = "fail", "FAIL", false
  cw.contradicted = seen
  cw.evidence = cw.evidence .. "; contradicted: " .. table.concat(seen, ", and ") ..
    ": sockets in CLOSE_WAIT were held where this check did not see them"
  return 1
end

--- The exit status a set of results means for CI: 0 every check passed
-- (PASS or INFO), 1 a check failed, 3 none failed but one could not run
-- (NOT RUN or ERROR).
function checks.exit_code(results)
  local code = 0
  for _, r in ipairs(results) do
    if r.status == "fail" then return 1 end
    if r.status == "not run" or r.status == "error" then code = 3 end
  end
  return code
end

--- Run several checks (default: all) in order; a check that raises becomes a
-- result with verdict ERROR and the error as its evidence. The results are
-- cross-checked (checks.cross_check). Returns the list and whether all
-- passed (PASS or INFO).
function checks.run_all(lab, opts, names)
  local results, all = {}, true
  for _, name in ipairs(names or checks.NAMES) do
    local r, err = checks.run(lab, name, opts)
    if not r then
      r = { name = checks.display(tostring(name)), status = "error", verdict = "ERROR", ok = false,
            informational = false, evidence = "error: " .. tostring(err) }
    end
    results[#results + 1] = r
  end
  checks.cross_check(results)
  for _, r in ipairs(results) do all = all and r.ok end
  return results, all
end

--- A lab around opts.cmd on opts.port, every check (or opts.checks), the
-- lab closed whatever happens. Returns { ok, exit, results, cmd, port, pid,
-- host, stdout, stderr, seconds, stopped (processes the lab stopped at close),
-- network (with opts.delay/loss: { packets, dropped, delayed, errors, via }) },
-- or nil and the lab's error (third value "needs root").
function checks.check(opts)
  local t0 = tcplab.now()
  local lab, err, why = lab_mod.start{ cmd = opts.cmd, port = opts.port, timeout = opts.timeout, grace = opts.grace }
  if not lab then return nil, err, why end
  -- opts.delay (seconds) / opts.loss (0..1): the port's packets go through
  -- the lab's queue, served by a helper (tcplab.lab.netem)
  local em, network
  if (opts.delay or 0) > 0 or (opts.loss or 0) > 0 then
    em, err = require("tcplab.lab.netem").start(lab, { delay = opts.delay, loss = opts.loss, seed = opts.seed })
    if not em then
      lab:close()
      return nil, err
    end
  end
  local ok, results, all = xpcall(checks.run_all, function(e)
    if lab_mod.is_signal(e) then return e end
    return debug.traceback(e, 2)
  end, lab, opts, opts.checks)
  if em then network, err = em:stop() network = network or { error = err } end
  local closed, cerr = lab:close()
  if not ok then error(results, 0) end
  local stdout, stderr = lab:output()
  local exit = checks.exit_code(results)
  if not closed then all = false exit = math.max(exit, 1) end
  return { ok = all, exit = exit, results = results, cmd = lab.cmd, port = lab.port, pid = lab.pid, host = lab.host,
           stdout = stdout, stderr = stderr, cleanup = not closed and cerr or nil, seconds = tcplab.now() - t0,
           stopped = lab.stopped, network = network }
end

-- The helpers the checks share live in tcplab.checks.common (re-exported
-- here for callers of checks.exchange and the others).
for name, f in pairs(require("tcplab.checks.common")) do checks[name] = f end

return checks
