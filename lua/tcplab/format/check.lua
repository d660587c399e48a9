--- The report of `tcplab check` (tcplab.checks.check) in text, JSON or JUnit.
-- One module for this one kind of data, so that it stays out of the way of
-- the per-format modules (text.lua, json.lua); JUnit XML is in junit.lua.
--   text: one line per check, "VERDICT  name  evidence", then a summary.
--         VERDICT: PASS, FAIL, INFO (an observation, no verdict), SKIP (not
--         run: the check could not exercise the server; the evidence says
--         why) or ERR (the check itself raised).
--   json: { ok, exit, cmd, host, port, pid, stopped, checks = [ { name, status, verdict, ok, run,
--           informational, evidence, claim } ] }
--   junit: format/junit.lua
local check = {}

local SHORT = { PASS = "PASS", FAIL = "FAIL", INFO = "INFO", ["NOT RUN"] = "SKIP", ERROR = "ERR" }

local verdicts = require "tcplab.format.verdicts"
local verdict = verdicts.verdict
check.verdict = verdict
--- Counts of a report's results: failed, not run (NOT RUN or ERROR), passed.
check.tally = verdicts.tally

--- Text, one line per check; true.
function check.text(report, out)
  out = out or io.stdout
  for _, r in ipairs(report.results) do
    out:write(("%-4s  %-12s  %s\n"):format(SHORT[verdict(r)] or verdict(r), r.name, r.evidence or ""))
  end
  local t = check.tally(report)
  local extra = ""
  if t.not_run > 0 then extra = extra .. (", %d not run"):format(t.not_run) end
  if t.errors > 0 then extra = extra .. (", %d errors"):format(t.errors) end
  out:write(("%d checks, %d failed%s (%s on %s port %d, pid %d, in a namespace of its own)\n"):format(
    #report.results, t.failed, extra, table.concat(report.cmd, " "), report.host or "127.0.0.1", report.port, report.pid))
  if report.stopped then
    out:write(("stopped %d process%s of the command at the end\n"):format(report.stopped,
      report.stopped == 1 and "" or "es"))
  end
  if report.cleanup then out:write("clean-up: ", report.cleanup, "\n") end
  local net = require("tcplab.format.verdicts").network(report)
  if net then out:write("network: ", net, "\n") end
  return true
end

--- JSON through lua-cjson; true, or nil and a message when it is missing.
function check.json(report, out)
  out = out or io.stdout
  local ok, cjson = pcall(require, "cjson")
  if not ok then return nil, "--format json needs lua-cjson (apt-get install lua-cjson)" end
  local list = {}
  for i, r in ipairs(report.results) do
    local v = verdict(r)
    list[i] = cjson.encode({ name = r.name, ok = r.ok and true or false, verdict = v,
                             status = r.status or (v == "NOT RUN" and "not run" or v:lower()),
                             run = v ~= "NOT RUN" and v ~= "ERROR", informational = v == "INFO",
                             evidence = r.evidence or "", claim = r.claim or "" })
  end
  -- cjson 2.1.0 writes an empty table as {}: the list is written by hand
  -- with --delay/--loss: the counts of the lab's queue, and the line the text report prints
  local net, network = require("tcplab.format.verdicts").network(report), ""
  if net then
    local n = report.network
    network = ',"network":' .. (n.error and cjson.encode({ error = tostring(n.error), summary = net }) or
      cjson.encode({ delay = n.delay, loss = n.loss, via = n.via, packets = n.packets, dropped = n.dropped,
                     delayed = n.delayed, errors = n.errors, summary = net }))
  end
  out:write(('{"ok":%s,"exit":%d,"cmd":%s,"host":%s,"port":%d,"pid":%d,"stopped":%d%s,"checks":[%s]}\n'):format(
    tostring(report.ok), report.exit or (report.ok and 0 or 1), cjson.encode(report.cmd),
    cjson.encode(report.host or "127.0.0.1"), report.port, report.pid, report.stopped or 0, network,
    table.concat(list, ",")))
  return true
end

--- JUnit XML (format/junit.lua); true.
function check.junit(report, out)
  return require("tcplab.format.junit").check(report, out)
end

return check
