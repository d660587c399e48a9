--- The seed's two state counts, reproduced from one sock_diag dump:
--   netstat -n | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}'
--   ss -ant | awk 'NR>1 {++s[$1]} END {for(k in s) print k,s[k]}'
-- Each returns the sorted lines "NAME N" and the table NAME -> N.
local tcplab = require "tcplab.kernel"
local states = require "tcplab.states"
local args = require "tcplab.args"

local awk = {}

-- Lines "NAME N" of counts renamed by `rename` (nil: netstat's own names),
-- sorted (awk prints in no set order). Pure: tcplab.format.awk re-exports
-- these two (the view sits below the formats, so the code lives here).
local function sorted_lines(counts, rename)
  local out, by_name = {}, {}
  for name, n in pairs(counts) do
    local shown = rename and rename[name] or name
    by_name[shown] = (by_name[shown] or 0) + n
  end
  for name, n in pairs(by_name) do out[#out + 1] = name .. " " .. n end
  table.sort(out)
  return out, by_name
end

local lines = {
  netstat = function(counts) return sorted_lines(counts) end,
  ss = function(counts) return sorted_lines(counts, states.ss) end,
}
--- The lines and name -> count of per-state counts, netstat's spellings.
awk.netstat_lines = lines.netstat
--- The same in ss's spellings (ESTAB, FIN-WAIT-2, ...).
awk.ss_lines = lines.ss

-- netstat -n (no -a, no -l) prints only sockets with a remote port, that is
-- every dumped socket but the listeners; it reads /proc/net/tcp and tcp6, so
-- IPv4 and IPv6 both count. Leaving LISTEN out of the states also lets the
-- kernel skip the listening hash.
local NETSTAT_STATES = {}
for _, name in ipairs(states.list) do
  if name ~= "LISTEN" then NETSTAT_STATES[#NETSTAT_STATES + 1] = name end
end

local function check_opts(fname, opts)
  if opts == nil then return nil end
  if type(opts) ~= "table" then args.error(fname, 1, "table expected, got " .. type(opts), 4) end
  if opts.netns ~= nil and type(opts.netns) ~= "string" then
    args.error(fname, 1, "netns: path string expected", 4)
  end
  return opts.netns
end

--- The states `netstat -n` shows (every one but LISTEN).
awk.NETSTAT_STATES = NETSTAT_STATES

--- Lines of `netstat -n | awk ...`; opts.netns reads another namespace.
function awk.netstat(opts)
  local counts, err, errno = tcplab.counts{ states = NETSTAT_STATES, netns = check_opts("netstat", opts) }
  if not counts then return nil, err, errno end
  return lines.netstat(counts)
end

--- Lines of `ss -ant | awk ...` (ss spellings: ESTAB, TIME-WAIT, ...).
function awk.ss(opts)
  local counts, err, errno = tcplab.counts{ netns = check_opts("ss", opts) }
  if not counts then return nil, err, errno end
  return lines.ss(counts)
end

--- The pipelines themselves, as the seed writes them.
awk.NETSTAT_PIPELINE = [[netstat -n | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}']]
awk.SS_PIPELINE = [[ss -ant | awk 'NR>1 {++s[$1]} END {for(k in s) print k,s[k]}']]

return awk
