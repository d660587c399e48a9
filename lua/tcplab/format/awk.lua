--- The seed's two awk pipelines' output, from per-state counts:
--   netstat -n | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}'
--   ss -ant | awk 'NR>1 {++s[$1]} END {for(k in s) print k,s[k]}'
-- awk prints in no set order: these lines are sorted. The code lives in
-- tcplab.awk (a view, below the formats); this module is its format face.
local view = require "tcplab.awk"

local awk = {}

--- netstat's spellings (ESTABLISHED, FIN_WAIT2, ...): the lines and name -> count.
function awk.netstat(counts) return view.netstat_lines(counts) end

--- ss's spellings (ESTAB, FIN-WAIT-2, UNCONN, ...): the lines and name -> count.
function awk.ss(counts) return view.ss_lines(counts) end

return awk
