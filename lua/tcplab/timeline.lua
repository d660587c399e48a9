--- A client | server timeline: each call a row, with both ends' states as
-- the kernel's dump shows them right after the call.
local observe = require "tcplab.observe"

local timeline = {}
local Timeline = {}
Timeline.__index = Timeline

function timeline.new(title)
  return setmetatable({ title = title, rows = {}, ends = {}, checks = {} }, Timeline)
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
  local row = { side = side, call = call, result = table.concat(results, ", "),
                client = self:state("client"), server = self:state("server") }
  self.rows[#self.rows + 1] = row
  return ...
end

--- Wait (bounded) until `side` is in state `want`; records the outcome as a check.
function Timeline:await(side, want, timeout)
  local ok, seen = observe.await(self.ends[side], want, timeout)
  self:check(ok, ("%s reaches %s (saw %s)"):format(side, want, tostring(seen)))
  self.rows[#self.rows + 1] = { side = side, note = ("... %s is %s"):format(side, tostring(seen)),
                                client = self:state("client"), server = self:state("server") }
  return ok, seen
end

--- Record a claim and whether it held.
function Timeline:check(ok, claim)
  self.checks[#self.checks + 1] = { ok = not not ok, claim = claim }
  return ok
end

function Timeline:ok()
  for _, c in ipairs(self.checks) do if not c.ok then return false end end
  return true
end

--- The structured result a scenario returns.
function Timeline:result(extra)
  local r = { name = self.title, ok = self:ok(), steps = self.rows, checks = self.checks }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

local W = 38
local function cell(s)
  s = s or ""
  if #s > W then s = s:sub(1, W - 1) .. "~" end
  return s .. (" "):rep(W - #s)
end

--- Print a result (or timeline) as two columns: client | server | states.
function timeline.print(result, out)
  out = out or io.stdout
  out:write(("== %s\n"):format(result.name))
  out:write(cell("client") .. " | " .. cell("server") .. " | client / server state\n")
  out:write(("-"):rep(2 * W + 3) .. "-+-" .. ("-"):rep(24) .. "\n")
  for _, row in ipairs(result.steps) do
    local text = row.note or (row.call .. (row.result ~= "" and (" -> " .. row.result) or ""))
    local left, right = "", ""
    if row.side == "client" then left = text else right = text end
    out:write(cell(left) .. " | " .. cell(right) .. " | " .. row.client .. " / " .. row.server .. "\n")
  end
  for _, c in ipairs(result.checks) do
    out:write(("  [%s] %s\n"):format(c.ok and "ok" or "FAIL", c.claim))
  end
end

return timeline
