--- The seed's two state counts, reproduced from one sock_diag dump:
--   netstat -n | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}'
--   ss -ant | awk 'NR>1 {++s[$1]} END {for(k in s) print k,s[k]}'
-- Each returns the sorted lines "NAME N" and the table NAME -> N.
local core = require "tcplab.core"
local states = require "tcplab.states"

local awk = {}

-- netstat -n (no -a, no -l) prints only sockets with a remote port, that is
-- every dumped socket but the listeners; it reads /proc/net/tcp and tcp6, so
-- IPv4 and IPv6 both count. Leaving LISTEN out of the state mask also lets
-- the kernel skip the listening hash.
local NETSTAT_MASK = states.ALL_MASK & ~(1 << states.number.LISTEN)

local function check_opts(fname, opts)
  if opts == nil then return nil end
  if type(opts) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(opts)), 3)
  end
  if opts.netns ~= nil and type(opts.netns) ~= "string" then
    error(("bad argument #1 to '%s' (netns: path string expected)"):format(fname), 3)
  end
  return opts.netns
end

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

--- Lines of `netstat -n | awk ...`; opts.netns reads another namespace.
function awk.netstat(opts)
  local netns = check_opts("netstat", opts)
  local counts, err, errno = core.counts(NETSTAT_MASK, "any", nil, nil, false, netns)
  if not counts then return nil, err, errno end
  return lines(counts)
end

--- Lines of `ss -ant | awk ...` (ss spellings: ESTAB, TIME-WAIT, ...).
function awk.ss(opts)
  local netns = check_opts("ss", opts)
  local counts, err, errno = core.counts(states.ALL_MASK, "any", nil, nil, false, netns)
  if not counts then return nil, err, errno end
  return lines(counts, states.ss)
end

--- The pipelines themselves, as the seed writes them.
awk.NETSTAT_PIPELINE = [[netstat -n | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}']]
awk.SS_PIPELINE = [[ss -ant | awk 'NR>1 {++s[$1]} END {for(k in s) print k,s[k]}']]

return awk
