--- The tcplab command line: tcplab COMMAND [options].
local tcplab = require "tcplab"

local cli = {}

local USAGE = [[
usage: tcplab COMMAND [options]

  stat [--style netstat|ss] [--netns PATH]
        per-state counts, the lines of the seed's two pipelines:
          netstat -n | awk '/^tcp/ {++S[$NF]} ...'   (--style netstat, default)
          ss -ant | awk 'NR>1 {++s[$1]} ...'         (--style ss)
  list  [--state S]... [--sport P] [--dport P] [--family inet|inet6] [--netns PATH]
        one line per TCP socket (state, queues, addresses, timer, inode)
  counts [same filters as list]
        per-state counts of the filtered sockets
  run NAME [--family inet|inet6]
        run a scenario and print its client | server timeline
        (scenarios: %s)
  demo  counts in both styles, then the scenarios' timelines
  help  this text
]]

local function die(msg)
  io.stderr:write("tcplab: ", msg, "\n")
  os.exit(2)
end

-- Parse --key value pairs; `multi` keys collect into lists.
local function parse(args, i, allowed, multi)
  local opts = {}
  while i <= #args do
    local key = args[i]:match("^%-%-([%w-]+)$")
    if not key or not allowed[key] then die("unknown option '" .. args[i] .. "' (see tcplab help)") end
    local value = args[i + 1]
    if value == nil then die("option --" .. key .. " needs a value") end
    if multi and multi[key] then
      opts[key] = opts[key] or {}
      table.insert(opts[key], value)
    else
      opts[key] = value
    end
    i = i + 2
  end
  return opts
end

local function port_opt(opts, key)
  if opts[key] == nil then return nil end
  local n = math.tointeger(tonumber(opts[key]))
  if not n or n < 0 or n > 65535 then die("--" .. key .. ": port 0..65535 expected") end
  return n
end

local function filter_of(opts)
  return { states = opts.state, family = opts.family, sport = port_opt(opts, "sport"),
           dport = port_opt(opts, "dport"), netns = opts.netns }
end

local function checked(f, ...)
  local ok, a, b, c = pcall(f, ...)
  if not ok then die(tostring(a):gsub("^[^:]+:%d+: ", "")) end
  if a == nil then die(b) end
  return a, b, c
end

local commands = {}

function commands.stat(args)
  local opts = parse(args, 2, { style = true, netns = true })
  local style = opts.style or "netstat"
  if style ~= "netstat" and style ~= "ss" then die("--style: netstat or ss expected") end
  local lines = checked(tcplab.awk[style], { netns = opts.netns })
  for _, line in ipairs(lines) do print(line) end
end

local FILTER_OPTS = { state = true, sport = true, dport = true, family = true, netns = true }

function commands.list(args)
  local opts = parse(args, 2, FILTER_OPTS, { state = true })
  local recs = checked(tcplab.snapshot, filter_of(opts))
  table.sort(recs, function(a, b)
    if a.state ~= b.state then return a.state < b.state end
    return a.sport < b.sport
  end)
  local fmt = "%-12s %6s %6s  %-28s %-28s %-10s %s\n"
  io.write(fmt:format("State", "Recv-Q", "Send-Q", "Local", "Peer", "Timer", "Inode"))
  local function ep(a, p) return (a:find(":", 1, true) and "[" .. a .. "]" or a) .. ":" .. p end
  for _, r in ipairs(recs) do
    local timer = r.timer == "off" and "" or ("%s(%dms)"):format(r.timer, r.expires_ms)
    io.write(fmt:format(r.state, r.rqueue, r.wqueue, ep(r.src, r.sport), ep(r.dst, r.dport), timer, r.inode))
  end
end

function commands.counts(args)
  local opts = parse(args, 2, FILTER_OPTS, { state = true })
  local counts = checked(tcplab.counts, filter_of(opts))
  local names = {}
  for name in pairs(counts) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do print(name, counts[name]) end
end

local function run_scenario(name, opts)
  local result, err = tcplab.scenarios.run(name, opts)
  if not result then
    io.stderr:write("tcplab: ", name, ": ", err, "\n")
    return false
  end
  tcplab.timeline.print(result)
  io.write(("  transitions (%s)%s\n"):format(result.method, result.lost > 0 and (", " .. result.lost .. " lost") or ""))
  for _, side in ipairs({ "client", "server" }) do
    io.write(("    %-6s %s\n"):format(side, table.concat(result.transitions[side], "  ")))
  end
  return result.ok
end

function commands.run(args)
  local name = args[2] or die("run: scenario name expected")
  local opts = parse(args, 3, { family = true })
  if not run_scenario(name, opts) then os.exit(1) end
end

function commands.demo()
  local ok = true
  for _, style in ipairs({ "netstat", "ss" }) do
    local pipeline = style == "ss" and tcplab.awk.SS_PIPELINE or tcplab.awk.NETSTAT_PIPELINE
    print(("== tcplab stat --style %s   (same lines as: %s)"):format(style, pipeline))
    local lines = checked(tcplab.awk[style])
    for _, line in ipairs(lines) do print("  " .. line) end
    if #lines == 0 then print("  (no line: awk prints nothing)") end
    print()
  end
  for _, name in ipairs(tcplab.scenarios.NAMES) do
    for _, family in ipairs({ "inet", "inet6" }) do
      if name ~= "lifecycle" and family == "inet6" then break end
      ok = run_scenario(name, { family = family }) and ok
      print()
    end
  end
  if not ok then os.exit(1) end
end

function commands.help()
  io.write(USAGE:format(table.concat(tcplab.scenarios.NAMES, " ")))
end

function cli.main(args)
  local command = commands[args[1] or "help"]
  if not command then
    io.stderr:write(("tcplab: unknown command '%s'\n"):format(args[1]))
    commands.help()
    os.exit(2)
  end
  command(args)
end

return cli
