--- The verdict of one check result and the counts of a report: shared by
-- the check report's formats (check.lua: text, JSON; junit.lua: JUnit XML),
-- below both so that neither requires the other.
local verdicts = {}

local function verdict(r)
  if r.verdict then return r.verdict end
  if not r.ok then return "FAIL" end
  return r.informational and "INFO" or "PASS"
end
verdicts.verdict = verdict

--- Counts of a report's results: failed, not run (NOT RUN or ERROR), passed.
function verdicts.tally(report)
  local t = { failed = 0, not_run = 0, passed = 0, info = 0, errors = 0 }
  for _, r in ipairs(report.results) do
    local v = verdict(r)
    if v == "FAIL" then t.failed = t.failed + 1
    elseif v == "NOT RUN" then t.not_run = t.not_run + 1
    elseif v == "ERROR" then t.errors = t.errors + 1
    elseif v == "INFO" then t.info = t.info + 1
    else t.passed = t.passed + 1 end
  end
  return t
end

--- The network line of a report run with --delay/--loss (report.network),
-- without "network: ", or nil when the run had no network conditions.
function verdicts.network(report)
  local net = report.network
  if not net then return nil end
  if net.error then return tostring(net.error) end
  return ("delay %d ms each way, loss %g%% (NFQUEUE via %s): %d packets, %d dropped, %d delayed%s")
    :format(math.floor(net.delay * 1000 + 0.5), net.loss * 100, net.via, net.packets, net.dropped, net.delayed,
            net.errors > 0 and (", %d passed after errors"):format(net.errors) or "")
end

return verdicts
