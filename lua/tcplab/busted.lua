--- Checks as busted specs: a lab around your server, and assertions that
-- fail with the check's evidence.
--
--   local lab_check = require "tcplab.busted"
--   describe("my server", function()
--     it("does not leak CLOSE_WAIT when clients hang up", function()
--       local lab <close> = lab_check.lab{ cmd = { "./myserver", "8080" }, port = 8080 }
--       lab_check.passes(lab, "close_wait", { clients = 20, send = "GET / HTTP/1.0\r\n\r\n" })
--     end)
--   end)
--
-- lab() raises with the command's output when the lab cannot start (and
-- says "needs root" without root: wrap such specs in a root guard).
local lab_mod = require "tcplab.lab"
local checks = require "tcplab.checks"

local M = {}

local has_luassert, luassert = pcall(require, "luassert")

local function fail(msg)
  if has_luassert then luassert(false, msg) end
  error(msg, 3)
end

--- A started lab (tcplab.lab), or an error with the reason and the command's output.
function M.lab(opts)
  local lab, err = lab_mod.start(opts)
  if not lab then fail("tcplab.lab: " .. tostring(err)) end
  return lab
end

--- Run a check (name of a built-in check, a module path, or a module) and
-- fail the spec with its evidence unless it passes. Returns the result.
function M.passes(lab, name, opts)
  local r, err = checks.run(lab, name, opts)
  if not r then fail(("%s: %s"):format(tostring(name), tostring(err))) end
  if not r.ok then fail(("%s: %s: %s"):format(r.name, r.verdict or "FAIL", r.evidence)) end
  return r
end

--- The opposite, for servers that are meant to be wrong: the check must
-- have run and failed (NOT RUN is no failure). Returns the result.
function M.fails(lab, name, opts)
  local r, err = checks.run(lab, name, opts)
  if not r then fail(("%s: %s"):format(tostring(name), tostring(err))) end
  if r.status ~= "fail" then
    fail(("%s: %s, expected a failure: %s"):format(r.name, r.verdict or "PASS", r.evidence))
  end
  return r
end

return M
