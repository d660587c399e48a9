--- The tcplab command line: tcplab COMMAND [options]. Parsed with
-- lua-argparse; usage errors exit 2, failures 1, SIGINT 130, SIGTERM 143.
local argparse = require "argparse"
local tcplab = require "tcplab"
local text = require "tcplab.format.text"
local report = require "tcplab.format.timeline"

local cli = {}

local EXIT_USAGE, EXIT_FAIL = 2, 1

-- A usage error: say it as tcplab, point at --help, exit 2.
local function usage_error(msg)
  io.stderr:write("tcplab: ", msg, "\n(see tcplab --help)\n")
  os.exit(EXIT_USAGE, true)
end

-- A failure (the OS said no, a scenario failed): exit 1.
local function fail(msg)
  io.stderr:write("tcplab: ", msg, "\n")
  os.exit(EXIT_FAIL, true)
end

local function port_arg(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < 0 or n > 65535 then return nil, ("port 0..65535 expected, got '%s'"):format(v) end
  return n
end

local function add_filters(cmd)
  cmd:option("--state", "A state (netstat or ss spelling); repeat for several."):count("*")
  cmd:option("--sport", "Local port."):convert(port_arg)
  cmd:option("--dport", "Remote port."):convert(port_arg)
  cmd:option("--family", "Address family."):choices({ "inet", "inet6" })
  cmd:option("--netns", "Network namespace path (/run/netns/NAME, /proc/PID/ns/net).")
end

local function build_parser()
  local p = argparse("tcplab", "The TCP socket lifecycle: counts, sockets and the seed's scenarios.")
    :command_target("command")
    :help_max_width(100)
  p:add_help_command()
  local stat = p:command("stat", "Per-state counts, the lines of the seed's two pipelines:\n" ..
    "  netstat -n | awk '/^tcp/ {++S[$NF]} ...'   (--style netstat, default)\n" ..
    "  ss -ant | awk 'NR>1 {++s[$1]} ...'         (--style ss)")
  stat:option("--style", "Which pipeline's lines."):choices({ "netstat", "ss" }):default("netstat")
  stat:option("--netns", "Network namespace path.")
  add_filters(p:command("list", "One line per TCP socket (state, queues, addresses, timer, inode)."))
  add_filters(p:command("counts", "Per-state counts of the filtered sockets."))
  local run = p:command("run", "Run a scenario and print its client | server timeline.\n" ..
    "Scenarios: " .. table.concat(tcplab.scenarios.NAMES, " "))
  run:argument("name", "Scenario name."):choices(tcplab.scenarios.NAMES)
  run:option("--family", "Address family."):choices({ "inet", "inet6" }):default("inet")
  p:command("demo", "Counts in both styles, then every scenario's timeline.")
  cli.add_check(p)
  return p
end

-- Call a library function; a raised error (bad argument) is a usage error,
-- nil, msg a failure.
local function checked(f, ...)
  local ok, a, b, c = pcall(f, ...)
  if not ok then
    if tostring(a):match("interrupted!$") or tostring(a):match("terminated$") then error(a, 0) end
    usage_error((tostring(a):gsub("^[^:]+:%d+: ", "")))
  end
  if a == nil then fail(b) end
  return a, b, c
end

local function filter_of(o)
  return { states = #o.state > 0 and o.state or nil, family = o.family, sport = o.sport,
           dport = o.dport, netns = o.netns }
end

local commands = {}

function commands.stat(o)
  text.lines((checked(tcplab.awk[o.style], { netns = o.netns })))
end

function commands.list(o)
  text.list(checked(tcplab.snapshot, filter_of(o)))
end

function commands.counts(o)
  text.counts(checked(tcplab.counts, filter_of(o)))
end

-- A scenario's report; false when it failed. In the demo a scenario that
-- needs root is reported as not run, with the reason, and fails nothing.
local function run_scenario(name, opts, demo)
  local result, err, why = tcplab.scenarios.run(name, opts)
  if not result and demo and why == "needs root" then
    io.write(("== %s: not run (%s)\n"):format(name, err))
    return true
  end
  if not result then
    io.stderr:write("tcplab: ", name, ": ", err, "\n")
    return false
  end
  report.report(result)
  return result.ok
end

function commands.run(o)
  if not run_scenario(o.name, { family = o.family }) then os.exit(EXIT_FAIL, true) end
end

function commands.demo()
  local ok = true
  for _, style in ipairs({ "netstat", "ss" }) do
    local pipeline = style == "ss" and tcplab.awk.SS_PIPELINE or tcplab.awk.NETSTAT_PIPELINE
    print(("== tcplab stat --style %s   (same lines as: %s)"):format(style, pipeline))
    local lines = checked(tcplab.awk[style])
    for _, line in ipairs(lines) do io.write("  ", line, "\n") end
    if #lines == 0 then print("  (no line: awk prints nothing)") end
    print()
  end
  for _, name in ipairs(tcplab.scenarios.NAMES) do
    for _, family in ipairs({ "inet", "inet6" }) do
      if name ~= "lifecycle" and family == "inet6" then break end
      ok = run_scenario(name, { family = family }, true) and ok
      print()
    end
  end
  if not ok then os.exit(EXIT_FAIL, true) end
end

---------------------------------------------------------------- check
-- `tcplab check [--port P] [--clients N] [--send BYTES] [--format F] -- CMD ARGS...`:
-- a lab around CMD (tcplab.lab), every check of tcplab.checks, one line per
-- check. Exit 0 when all pass, 1 when one fails, 2 for usage errors.
-- Self-contained: the parser entry and the command live in this block.

local function count_arg(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < 1 or n > 1000 then return nil, ("a count 1..1000 expected, got '%s'"):format(v) end
  return n
end

-- --send takes C-style escapes: \n \r \t \0 \\ \xHH.
local function bytes_arg(v)
  local bad
  local out = v:gsub("\\(x?)(%x?%x?)", function(x, hex)
    if x == "x" then
      if #hex ~= 2 then bad = true return "" end
      return string.char(tonumber(hex, 16))
    end
    return nil
  end)
  out = out:gsub("\\(.)", { n = "\n", r = "\r", t = "\t", ["0"] = "\0", ["\\"] = "\\" })
  if bad then return nil, ("bad \\x escape in '%s' (two hex digits)"):format(v) end
  return out
end

function cli.add_check(p)
  local c = p:command("check", "Run the checks against your server: CMD runs in a fresh network namespace\n" ..
    "(root); each check prints PASS/FAIL/INFO and its evidence. Checks: " ..
    table.concat(tcplab.checks.NAMES, " "):gsub("_", "-"))
  c:usage("Usage: tcplab check --port P [--clients N] [--send BYTES] [--format text|json] -- CMD [ARGS...]")
  c:option("--port", "The port the command listens on."):convert(port_arg)
  c:option("--clients", "Clients per check (5)."):convert(count_arg):default("5")
  c:option("--send", "Bytes each client sends (escapes \\n \\r \\t \\xHH); none by default."):convert(bytes_arg)
  c:option("--format", "Output format."):choices({ "text", "json" }):default("text")
  c:option("--timeout", "Seconds to wait until the command listens (5)."):convert(tonumber)
  c:argument("cmd", "The command and its arguments (after --)."):args("+")
end

function commands.check(o)
  if not o.port then usage_error("check: --port is required") end
  if o.port == 0 then usage_error("check: --port 1..65535 expected") end
  local fmt = require "tcplab.format.check"
  local out = io.stdout
  local report, err = tcplab.checks.check{ cmd = o.cmd, port = o.port, clients = o.clients,
                                           send = o.send or "", timeout = o.timeout }
  if not report then fail("check: " .. err) end
  local ok, ferr = fmt[o.format](report, out)
  if not ok and ferr then fail(ferr) end
  out:flush()
  if not report.ok then os.exit(EXIT_FAIL, true) end
end

---------------------------------------------------------------- main
--- Parse args and run the command. Ctrl-C or SIGTERM unwind everything (the
-- scenarios clean up as they go) and exit 130 / 143.
function cli.main(args)
  tcplab.process.catch_signals()
  local parser = build_parser()
  local ok, o = parser:pparse(args)
  if not ok then usage_error(o) end
  if not o.command then
    io.write(parser:get_help(), "\n")
    os.exit(EXIT_USAGE, true)
  end
  local done, err = xpcall(commands[o.command], function(e)
    if tcplab.process.caught_signal() then return e end
    return debug.traceback(e, 2)
  end, o)
  if not done then
    local sig = tcplab.process.caught_signal()
    if sig then
      io.stderr:write(("tcplab: %s\n"):format(sig == 2 and "interrupted" or "terminated"))
      os.exit(128 + sig, true)
    end
    fail(tostring(err))
  end
  os.exit(0, true)
end

return cli
