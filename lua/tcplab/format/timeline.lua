--- A scenario's result as text: a client | server table of calls with both
-- ends' states after each, the checks, and the recorded transitions.
local timeline = {}

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
    if c.unobserved then
      out:write(("  [not observed] %s\n      (%s)\n"):format((c.claim:gsub("\n", "\n      ")), c.unobserved))
    else
      out:write(("  [%s] %s\n"):format(c.ok and "ok" or "FAIL", c.claim))
    end
  end
end


--- The whole report of a run: the table, then the transitions of each side.
function timeline.report(result, out)
  out = out or io.stdout
  timeline.print(result, out)
  out:write(("  transitions (%s%s)\n"):format(result.method,
    result.lost > 0 and (", " .. result.lost .. " lost") or ""))
  for _, side in ipairs({ "client", "server" }) do
    out:write(("    %-6s %s\n"):format(side, table.concat(result.transitions[side], "  ")))
  end
  for _, ev in ipairs(result.events or {}) do   -- what was not recorded when it happened
    if ev.inferred then
      out:write(("    inferred: %s>%s at %.3f s (%s)\n"):format(ev.from, ev.to, ev.time - (result.t0 or 0),
        ev.inferred == "dump" and "from a socket dump at stop, not recorded when it happened"
          or "a hole in the socket's chain of events"))
    end
  end
end

return timeline
