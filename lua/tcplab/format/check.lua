--- The report of `tcplab check` (tcplab.checks.check) in text or JSON.
-- One module for this one kind of data, both formats, so that it stays out
-- of the way of the per-format modules (text.lua, json.lua).
--   text: one line per check, "PASS|FAIL|INFO  name  evidence", then a summary.
--   json: { ok, cmd, port, pid, stopped, checks = [ { name, ok, informational, evidence, claim } ] }
local check = {}

local function verdict(r)
  if not r.ok then return "FAIL" end
  return r.informational and "INFO" or "PASS"
end

--- Text, one line per check; true.
function check.text(report, out)
  out = out or io.stdout
  local failed = 0
  for _, r in ipairs(report.results) do
    if not r.ok then failed = failed + 1 end
    out:write(("%-4s  %-12s  %s\n"):format(verdict(r), r.name, r.evidence or ""))
  end
  out:write(("%d checks, %d failed (%s on port %d, pid %d, in a namespace of its own)\n"):format(
    #report.results, failed, table.concat(report.cmd, " "), report.port, report.pid))
  if report.stopped then
    out:write(("stopped %d process%s of the command at the end\n"):format(report.stopped,
      report.stopped == 1 and "" or "es"))
  end
  if report.cleanup then out:write("clean-up: ", report.cleanup, "\n") end
  return true
end

--- JSON through lua-cjson; true, or nil and a message when it is missing.
function check.json(report, out)
  out = out or io.stdout
  local ok, cjson = pcall(require, "cjson")
  if not ok then return nil, "--format json needs lua-cjson (apt-get install lua-cjson)" end
  local list = {}
  for i, r in ipairs(report.results) do
    list[i] = cjson.encode({ name = r.name, ok = r.ok, verdict = verdict(r), informational = r.informational or false,
                             evidence = r.evidence or "", claim = r.claim or "" })
  end
  -- cjson 2.1.0 writes an empty table as {}: the list is written by hand
  out:write(('{"ok":%s,"cmd":%s,"port":%d,"pid":%d,"stopped":%d,"checks":[%s]}\n'):format(
    tostring(report.ok), cjson.encode(report.cmd), report.port, report.pid, report.stopped or 0,
    table.concat(list, ",")))
  return true
end

return check
