--- A client | server timeline: each call a row (with the time it returned,
-- t, on tcplab.now()'s clock), with both ends' states as the kernel's dump
-- shows them right after the call.
local observe = require "tcplab.observe"
local now = require("tcplab.kernel").now

local timeline = {}
local Timeline = {}
Timeline.__index = Timeline

function timeline.new(title)
  return setmetatable({ title = title, rows = {}, ends = {}, checks = {}, t0 = now() }, Timeline)
end

--- Follow `sock` as the client or server end (re-point when accept returns).
function Timeline:watch(side, sock, peer_host, peer_port)
  self.ends[side] = observe.tuple(sock, peer_host, peer_port)
end

function Timeline:state(side)
  local t = self.ends[side]
  if not t then return "" end
  if t.sport == 0 then return "CLOSE" end
  return (observe.state(t))
end

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

--- Record a call made by `side` and what it returned.
function Timeline:step(side, call, ...)
  local n, results = select("#", ...), {}
  for i = 1, n do results[i] = show((select(i, ...))) end
  local row = { t = now(), side = side, call = call, result = table.concat(results, ", "),
                client = self:state("client"), server = self:state("server") }
  self.rows[#self.rows + 1] = row
  return ...
end

--- Wait (bounded) until `side` is in state `want`; records the outcome as a check.
function Timeline:await(side, want, timeout)
  local ok, seen = observe.await(self.ends[side], want, timeout)
  self:check(ok, ("%s reaches %s (saw %s)"):format(side, want, tostring(seen)))
  self.rows[#self.rows + 1] = { t = now(), side = side, note = ("... %s is %s"):format(side, tostring(seen)),
                                client = self:state("client"), server = self:state("server") }
  return ok, seen
end

--- Record a claim and whether it held.
function Timeline:check(ok, claim)
  self.checks[#self.checks + 1] = { ok = not not ok, claim = claim }
  return ok
end

--- Record a claim that could not be observed here, and why; it does not fail the run.
function Timeline:unobserved(claim, why)
  self.checks[#self.checks + 1] = { ok = true, unobserved = why, claim = claim }
end

function Timeline:ok()
  for _, c in ipairs(self.checks) do if not c.ok then return false end end
  return true
end

--- The structured result a scenario returns.
function Timeline:result(extra)
  local r = { name = self.title, ok = self:ok(), steps = self.rows, checks = self.checks, t0 = self.t0 }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

-- Printing a result is a format's job: tcplab.format.timeline.print(result, out)
-- (formats sit above this layer; doc/layout.md).

return timeline
