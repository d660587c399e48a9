--- The seed's two state counts, reproduced from one sock_diag dump:
--   netstat -n | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}'
--   ss -ant | awk 'NR>1 {++s[$1]} END {for(k in s) print k,s[k]}'
-- Each returns the sorted lines "NAME N" and the table NAME -> N.
local tcplab = require "tcplab"
local states = require "tcplab.states"
local args = require "tcplab.args"
local lines = require "tcplab.format.awk"

local awk = {}

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
