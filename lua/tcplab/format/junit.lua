--- JUnit XML, the report CI servers read (Jenkins' junit and xunit plugins,
-- GitLab, GitHub actions that publish test results): one <testsuites> with
-- one <testsuite>, one <testcase> per check.
--   PASS, INFO  <testcase> with the evidence in <system-out>
--   FAIL        <failure type="FAIL" message="evidence">claim and evidence</failure>
--   NOT RUN     <skipped message="evidence"/> (the reason the check could not run)
--   ERROR       <error type="ERROR" message="first line">the error</error>
-- Valid against spec/fixtures/junit.xsd (the shape of Jenkins' junit-10.xsd).
-- Text is made valid XML 1.0 whatever the server printed: bytes that are no
-- UTF-8 and control characters become U+FFFD.
local junit = {}

local REPLACEMENT = "\u{FFFD}"
local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }

--- s as valid UTF-8 with no character XML 1.0 forbids.
function junit.clean(s)
  s = tostring(s)
  local parts, i = {}, 1
  while i <= #s do
    local n, bad = utf8.len(s, i)
    if n then parts[#parts + 1] = s:sub(i) break end
    parts[#parts + 1] = s:sub(i, bad - 1)
    parts[#parts + 1] = REPLACEMENT
    i = bad + 1
  end
  s = table.concat(parts)
  s = s:gsub("[%z\1-\8\11\12\14-\31]", REPLACEMENT):gsub("\u{FFFE}", REPLACEMENT):gsub("\u{FFFF}", REPLACEMENT)
  return s
end

--- Character data (element text).
function junit.text(s)
  return (junit.clean(s):gsub("[&<>]", ESC))
end

--- An attribute value (in double quotes): newlines and tabs kept as references.
function junit.attr(s)
  return (junit.clean(s):gsub("[&<>\"']", ESC):gsub("\n", "&#10;"):gsub("\r", "&#13;"):gsub("\t", "&#9;"))
end

local function seconds(t)
  return ("%.3f"):format(math.max(0, tonumber(t) or 0))
end

local function verdict(r)
  return require("tcplab.format.verdicts").verdict(r)
end

--- The report of tcplab.checks.check as JUnit XML on out; true.
function junit.check(report, out)
  out = out or io.stdout
  local t = require("tcplab.format.verdicts").tally(report)
  local cmd = table.concat(report.cmd, " ")
  local host = report.host or "127.0.0.1"
  local w = {}
  local function put(...) for _, s in ipairs({ ... }) do w[#w + 1] = s end end
  put('<?xml version="1.0" encoding="UTF-8"?>\n')
  put(('<testsuites name="tcplab check" tests="%d" failures="%d" errors="%d" time="%s">\n'):format(
    #report.results, t.failed, t.errors, seconds(report.seconds)))
  put(('  <testsuite name="%s" tests="%d" failures="%d" errors="%d" skipped="%d" time="%s" timestamp="%s" package="tcplab.check">\n')
    :format(junit.attr("tcplab check " .. cmd), #report.results, t.failed, t.errors, t.not_run, seconds(report.seconds),
            os.date("!%Y-%m-%dT%H:%M:%S")))
  put('    <properties>\n')
  for _, kv in ipairs({ { "cmd", cmd }, { "host", host }, { "port", tostring(report.port) },
                        { "pid", tostring(report.pid) }, { "exit", tostring(report.exit or (report.ok and 0 or 1)) },
                        { "network", require("tcplab.format.verdicts").network(report) } }) do
    if kv[2] then put(('      <property name="%s" value="%s"/>\n'):format(kv[1], junit.attr(kv[2]))) end
  end
  put('    </properties>\n')
  for _, r in ipairs(report.results) do
    local v = verdict(r)
    local evidence = r.evidence or ""
    put(('    <testcase name="%s" classname="tcplab.check" time="%s">\n'):format(junit.attr(r.name), seconds(r.seconds)))
    if v == "FAIL" then
      put(('      <failure type="FAIL" message="%s">%s</failure>\n'):format(junit.attr(evidence),
        junit.text(("claim: %s\nevidence: %s"):format(r.claim or r.name, evidence))))
    elseif v == "NOT RUN" then
      put(('      <skipped message="%s"/>\n'):format(junit.attr(evidence)))
    elseif v == "ERROR" then
      put(('      <error type="ERROR" message="%s">%s</error>\n'):format(junit.attr(evidence:match("^[^\n]*")),
        junit.text(evidence)))
    else
      put(('      <system-out>%s</system-out>\n'):format(junit.text(("%s: %s"):format(v, evidence))))
    end
    put('    </testcase>\n')
  end
  if report.cleanup then put(('    <system-err>%s</system-err>\n'):format(junit.text("clean-up: " .. report.cleanup))) end
  put('  </testsuite>\n</testsuites>\n')
  out:write(table.concat(w))
  return true
end

return junit
