--- The seed's two awk pipelines' output, from per-state counts:
--   netstat -n | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}'
--   ss -ant | awk 'NR>1 {++s[$1]} END {for(k in s) print k,s[k]}'
-- awk prints in no set order: these lines are sorted.
local states = require "tcplab.states"

local awk = {}

-- Lines "NAME N" of counts renamed by `rename` (nil: netstat's own names).
local function lines(counts, rename)
  local out, by_name = {}, {}
  for name, n in pairs(counts) do
    local shown = rename and rename[name] or name
    by_name[shown] = (by_name[shown] or 0) + n
  end
  for name, n in pairs(by_name) do out[#out + 1] = name .. " " .. n end
  table.sort(out)
  return out, by_name
end

--- netstat's spellings (ESTABLISHED, FIN_WAIT2, ...): the lines and name -> count.
function awk.netstat(counts) return lines(counts) end

--- ss's spellings (ESTAB, FIN-WAIT-2, UNCONN, ...): the lines and name -> count.
function awk.ss(counts) return lines(counts, states.ss) end

return awk
