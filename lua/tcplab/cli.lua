--- The tcplab command line: tcplab COMMAND [options]. Parsed with
-- lua-argparse; usage errors exit 2, failures 1, SIGINT 130, SIGTERM 143.
local argparse = require "argparse"
-- The top layer: it requires what it drives, not the facade (doc/layout.md).
local tally = require "tcplab.tally"
local tcplab = setmetatable({
  awk = require "tcplab.awk", checks = require "tcplab.checks", counters = require "tcplab.counters",
  export = require "tcplab.export", format = require "tcplab.format", scenarios = require "tcplab.scenarios",
  states = require "tcplab.states", trace = require "tcplab.trace",
  lab = require("tcplab.lab").start, summary = tally.summary, tcpstat = tally.tcpstat,
  kill = require("tcplab.kill").kill,
}, { __index = require "tcplab.kernel" })
local format = require "tcplab.format"
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

-- An argparse converter for an integer lo..hi; `expected` says what, in the error.
local function int_arg(lo, hi, expected)
  return function(v)
    local n = math.tointeger(tonumber(v))
    if not n or n < lo or n > hi then return nil, ("%s expected, got '%s'"):format(expected, v) end
    return n
  end
end

local port_arg = int_arg(0, 65535, "port 0..65535")
local traced_port_arg = int_arg(1, 65535, "--port: port 1..65535")

-- A port or a range "LO-HI" (the C core checks the range once more).
local function port_or_range_arg(v)
  local lo, hi = v:match("^(%d+)-(%d+)$")
  if not lo then return port_arg(v) end
  lo, hi = math.tointeger(tonumber(lo)), math.tointeger(tonumber(hi))
  if not lo or not hi or lo > hi or hi > 65535 then
    return nil, ("port or range LO-HI (0 <= LO <= HI <= 65535) expected, got '%s'"):format(v)
  end
  return lo == hi and lo or v
end

-- An address or ADDR/PREFIX, v4 or v6.
local function prefix_arg(v)
  local addr, bits = v:match("^([^/]+)/(%d+)$")
  addr = addr or v
  local v4 = addr:match("^%d+%.%d+%.%d+%.%d+$")
  local max = v4 and 32 or addr:find(":", 1, true) and 128 or nil
  if not max or (bits and tonumber(bits) > max) then
    return nil, ("address or ADDR/PREFIX expected, got '%s'"):format(v)
  end
  return v
end

local function seconds_arg(opt)
  return function(v)
    local n = tonumber(v)
    if not n or n ~= n or n <= 0 or n > 86400 then
      return nil, ("%s: seconds more than 0, at most 86400 expected, got '%s'"):format(opt, v)
    end
    return n
  end
end

local count_arg = int_arg(1, math.maxinteger, "--count: an integer of 1 or more")

local PORT_HELP = "Sockets with this port (or range LO-HI) at either end, like " ..
  "ss '( sport = :P or dport = :P )'."
local LIVE_HELP = "Counts kept by the kernel (BPF, root): a read costs microseconds, not a walk; " ..
  "every socket of the namespace (with --netns and --state only). Where BPF cannot load, a walk answers " ..
  "and stderr says why (doc/live.md)."
local NETNS_HELP = "Network namespace: a name (/run/netns/NAME), pid:PID, or a path (/proc/PID/ns/net)."

local function add_filters(cmd, all)
  cmd:option("--state", "States (netstat or ss spelling), comma-separated or repeated: established,close-wait."):count("*")
  cmd:option("--sport", "Local port or range LO-HI."):convert(port_or_range_arg)
  cmd:option("--dport", "Remote port or range LO-HI."):convert(port_or_range_arg)
  cmd:option("--src", "Local address or prefix: 10.0.0.0/8, ::1."):convert(prefix_arg)
  cmd:option("--dst", "Remote address or prefix."):convert(prefix_arg)
  cmd:option("--family", "Address family."):choices({ "inet", "inet6" })
  cmd:option("--netns", NETNS_HELP .. (all and " 'all': every namespace, one count each." or ""))
  return cmd
end

local pid_arg = int_arg(1, 0x7fffffff, "--pid: a process id (1..2147483647)")
local function comm_arg(v)
  if v == "" then return nil, "--comm: a process name (as ps -o comm shows it) expected, got ''" end
  return v
end

-- --pid/--comm: sockets a process holds (joined on the owners walk, like ss -p).
local function add_owner_filters(cmd)
  cmd:option("--pid", "Sockets the process PID holds (an fd of it), like ss -tanp | grep pid=PID."):convert(pid_arg)
  cmd:option("--comm", "Sockets held by a process of this name (/proc/PID/comm, its first 15 bytes)."):convert(comm_arg)
  return cmd
end

local function add_format(cmd, names)
  cmd:option("--format", "Output format."):choices(names or format.NAMES):default("text")
  return cmd
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
  stat:option("--netns", NETNS_HELP)
  add_format(stat)
  local list = add_format(add_filters(p:command("list", "One line per TCP socket (state, queues, addresses, timer, inode).")))
  list:option("--port", PORT_HELP):convert(port_or_range_arg)
  add_owner_filters(list)
  list:flag("--owners", "Processes holding each socket (a users: column, like ss -tanp).")
  list:flag("--info", "TCP_INFO decoded under each socket, like ss -ti: congestion control, rtt, cwnd, retrans, delivery rate.")
  local counts = add_format(add_filters(p:command("counts", "Per-state counts of the filtered sockets."), true))
  counts:option("--port", PORT_HELP .. " Prometheus format: a local port to count on its own series " ..
    "(the host-wide series stay whole); repeat for several.")
    :count("*"):convert(port_or_range_arg)
  counts:option("--by", "Count per local/remote port or address, in one pass: KEY STATE N lines.")
    :choices({ "sport", "dport", "src", "dst" })
  add_owner_filters(counts)
  counts:flag("--live", LIVE_HELP)
  add_format(add_filters(p:command("summary", "Totals per state and family, orphans, TIME_WAIT, listeners " ..
    "with a full accept queue (like ss -s).")))
  add_format(p:command("namespaces", "The network namespaces of the host (named and those of processes)."),
    { "text", "json" })
  local export = add_filters(p:command("export", "Write the Prometheus metrics to a file for node_exporter's " ..
    "textfile collector (atomically: a temp file made with O_EXCL|O_NOFOLLOW, then rename; doc/exporting.md)."), true)
  export:option("--textfile", "The file to write (DIR/NAME.prom)."):args(1):count(1)
  export:option("--interval", "Write every S seconds until Ctrl-C (default: once)."):convert(seconds_arg("--interval"))
  export:option("--count", "With --interval: stop after N writes."):convert(count_arg)
  export:option("--port", "A local port to count on its own; repeat for several."):count("*"):convert(port_arg)
  local watch = add_filters(p:command("watch", "Redraw the per-state counts every S seconds with the " ..
    "change since the last frame (Ctrl-C stops)."))
  watch:option("--port", PORT_HELP):convert(port_or_range_arg)
  watch:option("--interval", "Seconds between frames."):convert(seconds_arg("--interval")):default("1")
  watch:option("--count", "Stop after N frames."):convert(count_arg)
  add_owner_filters(watch)
  watch:flag("--live", LIVE_HELP)
  local trace = p:command("trace", "Print state transitions as they happen, one line each " ..
    "(time, tuple, old -> new), like BCC's tcpstates (root: the BPF recorder, filtered by namespace " ..
    "in the kernel; else the kernel tracepoint, host-wide).")
  trace:option("--port", "A port (local or remote) to follow; repeat for several (at most 64); none: every port.")
    :count("*"):convert(traced_port_arg)
  trace:option("--count", "Stop after N transitions."):convert(count_arg)
  trace:option("--duration", "Stop after S seconds."):convert(seconds_arg("--duration"))
  trace:flag("--owners", "The processes holding each socket, joined on the socket itself (its " ..
    "cookie or four-tuple in the dump, then its inode), not on the CPU's current task; '-' when it is gone or not yet held.")
  trace:option("--netns", NETNS_HELP .. " 'all': every namespace (a NETNS column). Needs the BPF recorder.")
  trace:option("--pid", "Only transitions of sockets the process PID holds, joined on the socket (as --owners): " ..
    "a socket is known once the dump has seen it held; transitions before that are not shown."):convert(pid_arg)
  trace:option("--comm", "Only transitions of sockets held by a process of this name (as --pid)."):convert(comm_arg)
  require("tcplab.cli.trace_ladder").options(trace)   -- --ladder, --pcap, --svg, --interface, --snaplen, --format
  cli.add_life(trace)
  cli.add_kill(p)
  local run = p:command("run", "Run a scenario and print its ladder diagram: the segments on the wire " ..
    "(root), the calls and the states of client and server.\n" ..
    "Scenarios: " .. table.concat(tcplab.scenarios.NAMES, " "))
  run:argument("name", "Scenario name."):choices(tcplab.scenarios.NAMES)
  run:option("--family", "Address family."):choices({ "inet", "inet6" }):default("inet")
  run:option("--format", "ladder (default), text (the client | server table) or json (the events)."):choices({ "ladder", "text", "json" })
    :default("ladder")
  run:option("--svg", "Also write the ladder as a standalone SVG to FILE."):argname("<file>")
  p:command("demo", "Counts in both styles, then every scenario's timeline.")
  p:command("completion", "Print a shell completion script: eval \"$(tcplab completion bash)\".")
    :argument("shell", "The shell."):choices({ "bash", "zsh", "fish" })
  cli.add_check(p)
  cli.add_nstat(p)
  require("tcplab.cli.serve").add_parser(p, seconds_arg, NETNS_HELP)
  return p
end

-- Call a library function; a raised error (bad argument) is a usage error,
-- nil, msg a failure.
-- f(...), with an argument error it raises turned into a usage error.
local function guarded(f, ...)
  local ok, a, b, c = pcall(f, ...)
  if not ok then
    if tcplab.process.is_signal(a) then error(a, 0) end
    usage_error((tostring(a):gsub("^[^:]+:%d+: ", "")))
  end
  return a, b, c
end

-- guarded(f, ...), and a failure (nil, message) ends the command.
local function checked(f, ...)
  local a, b, c = guarded(f, ...)
  if a == nil then fail(b) end
  return a, b, c
end

-- --netns NAME|pid:N|PATH (and "all" where the command takes it) -> a path.
local function netns_of(spec, all)
  if spec == nil or (all and spec == "all") then return spec end
  if spec == "" then usage_error("--netns: a name, pid:PID or a path expected, got ''") end
  return (checked(tcplab.netns.resolve, spec))
end

-- --state a,b --state c: every comma-separated name; an empty name (',',
-- '', 'a,,b') is a usage error, not "every state".
local function states_of(o)
  local st = {}
  for _, arg in ipairs(o.state) do
    for name in (arg .. ","):gmatch("([^,]*),") do
      if not name:match("%S") then
        usage_error(("--state: a state name expected between the commas, got '%s' " ..
          "(e.g. --state established,close-wait)"):format(arg))
      end
      st[#st + 1] = name
    end
  end
  return #st > 0 and st or nil
end

-- --port P or LO-HI (either end), for the commands that filter by it: one.
local function port_filter_of(o)
  local ports = o.port
  if type(ports) ~= "table" then return ports end
  if #ports > 1 then usage_error("--port: one port or range LO-HI expected, got " .. #ports) end
  return ports[1]
end

local function filter_of(o, all)
  return { states = states_of(o), family = o.family, sport = o.sport,
           dport = o.dport, src = o.src, dst = o.dst, netns = netns_of(o.netns, all),
           pid = o.pid, comm = o.comm }
end

-- --pid N of a process that does not exist: say so (exit 1) rather than print nothing.
local function check_pid(o)
  if not o.pid then return end
  local f = io.open(("/proc/%d/stat"):format(o.pid))
  if not f then fail(("--pid %d: no such process"):format(o.pid)) end
  f:close()
end

-- --pid/--comm where the output is Prometheus (per-namespace tallies): not joined there.
local function no_owner_filter(o, why)
  if o.pid or o.comm then usage_error(("--%s: %s"):format(o.pid and "pid" or "comm", why)) end
end

-- The canonical names of the states --state kept, in the kernel's order (nil: all).
local function kept_states(f)
  if not f.states then return nil end
  local st = require "tcplab.states"
  local keep, only = {}, {}
  for _, name in ipairs(f.states) do keep[assert(st.canonical(name))] = true end
  for _, name in ipairs(st.list) do
    if keep[name] then only[#only + 1] = name end
  end
  return only
end

local function formatter(o)
  return assert(format.get(o.format))
end

local commands = {}

function commands.stat(o)
  local netns = netns_of(o.netns)
  if o.format == "prometheus" then
    local states = o.style == "netstat" and tcplab.awk.NETSTAT_STATES or nil
    -- netstat -n does not count listeners: no listen series rather than a false 0
    format.get("prometheus").counts(checked(tcplab.counts, { netns = netns, states = states }), io.stdout,
                                    nil, states)
    return
  end
  local lines, by_name = checked(tcplab.awk[o.style], { netns = netns })
  formatter(o).lines(lines, io.stdout, by_name)
end

function commands.list(o)
  check_pid(o)
  local f = filter_of(o)
  f.port = o.port
  if o.format == "prometheus" then
    no_owner_filter(o, "text or json format only (the prometheus series count every process's sockets)")
    local list = checked(tcplab.tcpstat, f)
    format.get("prometheus").tcpstat(list, io.stdout, kept_states(f))
  else
    f.owners = o.owners or nil
    f.info = o.info or nil
    formatter(o).list(checked(tcplab.snapshot, f))
  end
end

function commands.counts(o)
  if o.live then
    local live = require "tcplab.cli.live"
    local f = live.filter(o, usage_error, netns_of(o.netns, true), states_of(o))
    local t = checked(live.counts, f)
    if o.format == "prometheus" then format.get("prometheus").counts(t, io.stdout, nil, kept_states(f))
    else formatter(o).counts(t) end
    return
  end
  check_pid(o)
  local f = filter_of(o, true)
  if o.format ~= "prometheus" then f.port = port_filter_of(o) end
  if o.by then
    if o.format == "prometheus" then usage_error("--by: text or json format only (prometheus: --port)") end
    if f.netns == "all" then usage_error("--by: one namespace at a time (not --netns all)") end
    f.by = o.by
    formatter(o).counts_by_netns((checked(tcplab.counts, f)))
  elseif o.format == "prometheus" then
    no_owner_filter(o, "text or json format only (the prometheus series count every process's sockets)")
    for _, p in ipairs(o.port) do
      if math.type(p) ~= "integer" then usage_error("--port: one port per series in prometheus format, got '" .. p .. "'") end
    end
    f.ports = o.port
    local list = checked(tcplab.tcpstat, f)
    format.get("prometheus").tcpstat(list, io.stdout, kept_states(f))
  elseif f.netns == "all" then
    formatter(o).counts_by_netns((checked(tcplab.counts, f)))
  else
    formatter(o).counts(checked(tcplab.counts, f))
  end
end

function commands.summary(o)
  formatter(o).summary(checked(tcplab.summary, filter_of(o)))
end

function commands.namespaces(o)
  formatter(o).namespaces(tcplab.namespaces())
end

-- Write the metrics to path with tcplab.export.textfile (a temp file made
-- with O_EXCL|O_NOFOLLOW beside it, then rename(2)): node_exporter never
-- reads half a file and no planted symlink is followed.
local function write_textfile(path, f)
  local list = checked(tcplab.tcpstat, f)
  local buf = tcplab.export.buffer()
  format.get("prometheus").tcpstat(list, buf, kept_states(f))
  checked(tcplab.export.textfile, path, buf:text())
end

function commands.export(o)
  local path = o.textfile
  if not path:match("[^/]%.prom$") then
    usage_error(("--textfile: a file name ending in .prom expected (node_exporter's textfile collector " ..
      "reads only those), got '%s'"):format(path))
  end
  if o.count and not o.interval then usage_error("--count needs --interval") end
  local f = filter_of(o, true)
  f.ports = o.port
  local n = 0
  repeat
    write_textfile(path, f)
    n = n + 1
    if not o.interval or (o.count and n >= o.count) then break end
    tcplab.sleep(o.interval)
  until false
end

local CLEAR = "\27[H\27[2J"

function commands.watch(o)
  local count = tcplab.counts
  local f
  if o.live then
    local live = require "tcplab.cli.live"
    f, count = live.filter(o, usage_error, netns_of(o.netns), states_of(o)), live.counts
  else
    check_pid(o)
    f = filter_of(o)
    f.port = o.port
  end
  local tty = os.execute("test -t 1") == true
  local last, frame = nil, 0
  repeat
    local counts = checked(count, f)
    frame = frame + 1
    if tty then io.write(CLEAR) elseif frame > 1 then io.write("\n") end
    format.get("text").watch(counts, last, { frame = frame, interval = o.interval, time = os.date("%H:%M:%S") })
    io.stdout:flush()
    last = counts
    if o.count and frame >= o.count then break end
    tcplab.sleep(o.interval)
  until false
end

-- The recorder for `tcplab trace`: the one trace.start picks (trace.METHODS)
-- among those that stream (opts.live): BPF (this or the given namespace, or
-- all), else the host-wide tracepoint when no namespace was asked for.
local function live_recorder(opts)
  opts.live = true
  local rec, why = guarded(tcplab.trace.start, opts)   -- bad arguments: usage errors
  if rec then return rec end
  if opts.netns then
    fail("trace --netns needs the BPF recorder (" .. why:gsub("^.-needs the BPF recorder: ", ""):gsub("^bpf: ", "") .. ")")
  end
  fail("trace needs the BPF recorder or the kernel tracepoint sock/inet_sock_set_state (root, tracefs): " .. why)
end

-- One transition per line, as it happens: seconds since the start, the
-- four-tuple, old -> new (and the namespace with --netns all).
function commands.trace(o)
  if #o.port > 64 then usage_error(("--port: at most 64 ports, got %d"):format(#o.port)) end
  local trace_ladder = require "tcplab.cli.trace_ladder"
  local misuse = trace_ladder.misuse(o)
  if misuse then usage_error(misuse) end
  if trace_ladder.wanted(o) then
    local netns = netns_of(o.netns)
    if netns then checked(tcplab.netns.id, netns) end   -- the path named when it is none
    return trace_ladder.run(o, { fail = fail, netns = netns })
  end
  check_pid(o)
  local netns = netns_of(o.netns, true)
  if netns and netns ~= "all" then checked(tcplab.netns.id, netns) end   -- the path named when it is none
  if o.life then return cli.trace_life(o, netns) end
  local opts = { limit = o.duration or 86400, netns = netns }
  if #o.port > 0 then opts.ports = o.port else opts.all_ports = true end
  local rec <close> = live_recorder(opts)
  local t0, n = tcplab.now(), 0
  local all = netns == "all"
  -- owners by socket, looked up once a process holds it: by cookie where the
  -- recorder gives one, else by four-tuple; in the event's own namespace
  -- each namespace by inode: its name and path, the list read again for one not seen yet
  local known, spaces, looked = {}, {}, {}
  local function space(id)
    if id and not spaces[id] and not looked[id] then
      looked[id] = true
      for _, ns in ipairs(tcplab.namespaces() or {}) do spaces[ns.id] = ns end
    end
    return spaces[id]
  end
  local function netns_path(ev)
    if not all then return netns end
    local ns = space(ev.netns)
    return ns and ns.path
  end
  -- the owners list of the event's socket, nil while no process holds it
  local function owner_list(ev)
    local key = ev.cookie or table.concat({ ev.src, ev.sport, ev.dst, ev.dport }, " ")
    if known[key] then return known[key] end
    if ev.sport == 0 then return nil end   -- a connect before its port is chosen
    local path = netns_path(ev)
    if all and not path then return nil end
    for _, r in ipairs(tcplab.snapshot{ sport = ev.sport, dport = ev.dport, owners = true, netns = path } or {}) do
      local same = ev.cookie and r.cookie == ev.cookie
        or not ev.cookie and r.src == ev.src and r.dst == ev.dst
      if same and #r.owners > 0 then
        known[key] = r.owners
        return known[key]
      end
    end
    return nil
  end
  local function owners(ev)
    local list = owner_list(ev)
    return list and text.users(list) or "-"
  end
  -- --pid/--comm: the event's socket is held (or was, when first seen) by such a process
  local comm = o.comm and o.comm:sub(1, 15)
  if (o.pid or comm or o.owners) and not all then
    -- the sockets held now, so a socket that closes before any other event still has its owner
    for _, r in ipairs(tcplab.snapshot{ owners = true, netns = netns } or {}) do
      if #r.owners > 0 then
        known[r.cookie] = r.owners
        known[table.concat({ r.src, r.sport, r.dst, r.dport }, " ")] = r.owners
      end
    end
  end
  local function wanted(ev)
    if not o.pid and not comm then return true end
    for _, w in ipairs(owner_list(ev) or {}) do
      if (not o.pid or w.pid == o.pid) and (not comm or w.comm == comm) then return true end
    end
    return false
  end
  -- the header last: once it is out, the recorder records and the owners are seeded
  io.stdout:setvbuf("line")
  print(("%-10s %s%-6s %-30s %-30s %s"):format("TIME(s)", all and ("%-16s "):format("NETNS") or "", "FAMILY", "LOCAL",
    "REMOTE", "OLD -> NEW"))
  for ev in rec:events() do
    if wanted(ev) then
      print(("%-10.6f %s%-6s %-30s %-30s %s -> %s%s%s"):format(ev.time - t0,
        all and ("%-16s "):format(space(ev.netns) and space(ev.netns).name or ev.netns or "-") or "", ev.family,
        text.endpoint(ev.src, ev.sport), text.endpoint(ev.dst, ev.dport), ev.from, ev.to,
        ev.inferred and " (inferred)" or "", o.owners and ("  " .. owners(ev)) or ""))
      n = n + 1
    end
    if ev.to == "CLOSE" then   -- gone: a later socket may reuse its four-tuple
      known[ev.cookie or table.concat({ ev.src, ev.sport, ev.dst, ev.dport }, " ")] = nil
    end
    if o.count and n >= o.count then break end
  end
end

function commands.completion(o)
  local p = build_parser()
  local script = o.shell == "bash" and p:get_bash_complete() or o.shell == "zsh" and p:get_zsh_complete()
    or p:get_fish_complete()
  io.write(script)
end

-- A scenario's report; false when it failed. In the demo a scenario that
-- needs root is reported as not run, with the reason, and fails nothing.
local function run_scenario(name, opts, demo, o)
  o = o or {}
  local result, err, why = tcplab.scenarios.run(name, opts)
  if not result and demo and why == "needs root" then
    io.write(("== %s: not run (%s)\n"):format(name, err))
    return true
  end
  if not result then
    io.stderr:write("tcplab: ", name, ": ", err, "\n")
    return false
  end
  if o.format == "text" then report.report(result)
  elseif o.format == "json" then require("tcplab.format.json").scenario(result)
  else require("tcplab.format.ladder").print(result) end
  if o.svg then
    local f, ferr = io.open(o.svg, "w")
    if not f then
      io.stderr:write("tcplab: --svg: ", ferr, "\n")
      return false
    end
    require("tcplab.format.svg").write(result, f)
    f:close()
  end
  return result.ok
end

function commands.run(o)
  if not run_scenario(o.name, { family = o.family }, false, o) then os.exit(EXIT_FAIL, true) end
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
-- check. Exit 0 when all pass, 1 when one fails, 2 for usage errors, 3 when
-- a check, or the whole run, could not run (command not found, never
-- listened, no root, no lab): CI tells "broken" from "could not test".
-- Self-contained: the parser entry and the command live in this block.

local clients_arg = int_arg(1, 1000, "a count 1..1000")
local EXIT_NOT_RUN = 3

local function timeout_arg(v)
  local n = tonumber(v)
  if not n or n ~= n or n <= 0 or n > 3600 then
    return nil, ("--timeout: seconds more than 0, at most 3600 expected, got '%s'"):format(v)
  end
  return n
end

local function delay_arg(v)
  local n = math.tointeger(tonumber(v))
  if not n or n < 0 or n > 60000 then
    return nil, ("--delay: milliseconds 0..60000 expected, got '%s'"):format(v)
  end
  return n
end

local function loss_arg(v)
  local n = tonumber(v)
  if not n or n ~= n or n < 0 or n > 100 then
    return nil, ("--loss: percent 0..100 expected, got '%s'"):format(v)
  end
  return n
end

-- --send takes C-style escapes: \n \r \t \0 \\ \xHH, read left to right
-- in one pass (so \\x41 is a backslash and "x41"); any other escape, a
-- lone backslash at the end or \x without two hex digits is an error.
local ESCAPES = { n = "\n", r = "\r", t = "\t", ["0"] = "\0", ["\\"] = "\\" }
local function bytes_arg(v)
  local out, i = {}, 1
  while i <= #v do
    local bs = v:find("\\", i, true)
    if not bs then
      out[#out + 1] = v:sub(i)
      break
    end
    out[#out + 1] = v:sub(i, bs - 1)
    local c = v:sub(bs + 1, bs + 1)
    if c == "x" then
      local hex = v:match("^%x%x", bs + 2)
      if not hex then
        return nil, ("bad \\x escape at byte %d of '%s' (two hex digits: \\x41)"):format(bs, v)
      end
      out[#out + 1] = string.char(tonumber(hex, 16))
      i = bs + 4
    elseif ESCAPES[c] then
      out[#out + 1] = ESCAPES[c]
      i = bs + 2
    else
      return nil, ("unknown escape '\\%s' at byte %d of '%s' (valid: \\n \\r \\t \\0 \\\\ \\xHH)")
        :format(c, bs, v)
    end
  end
  return table.concat(out)
end
cli._bytes_arg = bytes_arg   -- for the spec

function cli.add_check(p)
  local c = p:command("check", "Run the checks against your server: CMD runs in a fresh network namespace\n" ..
    "(root); each check prints PASS, FAIL, SKIP (not run: it could not exercise the server) or INFO,\n" ..
    "and its evidence (doc/check.md). Checks: " ..
    table.concat(tcplab.checks.NAMES, " "):gsub("_", "-"))
  c:usage("Usage: tcplab check --port P [--clients N] [--send BYTES] [--check NAME]... [--timeout S]\n" ..
          "                    [--delay MS] [--loss PCT] [--format text|json|junit] -- CMD [ARGS...]")
  c:epilog("Exit status: 0 every check passed (PASS or INFO), 1 a check failed, 2 usage error,\n" ..
           "3 a check or the whole run could not run (command not found, never listened, not root, no lab).")
  c:option("--port", "The port the command listens on."):convert(port_arg)
  c:option("--clients", "Clients per check (5)."):convert(clients_arg):default("5")
  c:option("--send", "Bytes each client sends (escapes \\n \\r \\t \\0 \\\\ \\xHH); none by default."):convert(bytes_arg)
  c:option("--check", "Run only this check; repeat for several (default: all)."):count("*")
    :choices((function() local l = {} for i, n in ipairs(tcplab.checks.NAMES) do l[i] = n:gsub("_", "-") end return l end)())
  c:option("--format", "Output format: text, json or junit (JUnit XML for CI)."):choices({ "text", "json", "junit" })
    :default("text")
  c:option("--timeout", "Seconds to wait until the command listens (5)."):convert(timeout_arg)
  c:option("--delay", "Delay each packet to or from the port by MS milliseconds (NFQUEUE, doc/fault-queue.md)."):convert(delay_arg)
  c:option("--loss", "Drop each packet to or from the port with probability PCT percent."):convert(loss_arg)
  c:argument("cmd", "The command and its arguments (after --)."):args("+")
end

function commands.check(o)
  if not o.port then usage_error("check: --port is required") end
  if o.port == 0 then usage_error("check: --port 1..65535 expected") end
  local fmt = require "tcplab.format.check"
  local out = io.stdout
  local only
  if #o.check > 0 then
    only = {}
    for _, name in ipairs(o.check) do only[#only + 1] = (name:gsub("%-", "_")) end
  end
  local report, err = tcplab.checks.check{ cmd = o.cmd, port = o.port, clients = o.clients,
                                           send = o.send or "", timeout = o.timeout, checks = only,
                                           delay = o.delay and o.delay / 1000, loss = o.loss and o.loss / 100 }
  if not report then
    io.stderr:write("tcplab: check: ", err, "\n")
    if o.format ~= "text" then
      -- CI reads a report file even when nothing could run: one ERROR case saying why
      fmt[o.format]({ ok = false, exit = EXIT_NOT_RUN, cmd = o.cmd, port = o.port, pid = 0, seconds = 0,
                      results = { { name = "lab", status = "error", verdict = "ERROR", ok = false,
                                    evidence = "the check could not run: " .. err } } }, out)
      out:flush()
    end
    os.exit(EXIT_NOT_RUN, true)
  end
  local ok, ferr = fmt[o.format](report, out)
  if not ok and ferr then fail(ferr) end
  out:flush()
  if report.exit ~= 0 then os.exit(report.exit, true) end
end

---------------------------------------------------------------- nstat
-- `tcplab nstat [--netns NAME|all] [--format F] [--interval S [--count N]] [-z] [NAME...]`:
-- the Tcp and TcpExt counters of a namespace (tcplab.counters) as nstat shows
-- them. Without --interval: the values since the namespace was made (nstat's
-- first run); with it: the change over each interval, until Ctrl-C or N frames.
-- Self-contained: the parser entry and the command live in this block.

function cli.add_nstat(p)
  local n = p:command("nstat", "The kernel's TCP counters (Tcp, TcpExt) of a namespace, as nstat -a shows them;\n" ..
    "with --interval, what moved in each interval (like nstat run every S seconds).")
  n:option("--netns", NETNS_HELP .. " 'all': every namespace (prometheus: a netns label).")
  add_format(n)
  n:option("--interval", "Print the change every S seconds (Ctrl-C stops)."):convert(seconds_arg("--interval"))
  n:option("--count", "With --interval: stop after N frames."):convert(count_arg)
  n:flag("-z --zeros", "Also print counters that are 0 (or did not move).")
  n:argument("counter", "Counters to show (nstat's names, TcpExtListenOverflows, or short, ListenOverflows); " ..
    "none: all."):args("*")
end

function commands.nstat(o)
  if o.interval and o.format == "prometheus" then
    usage_error("--interval: text or json only (prometheus shows the counters themselves; let the scraper take rates)")
  end
  if o.count and not o.interval then usage_error("--count needs --interval") end
  local netns = netns_of(o.netns, true)
  local opts = { names = #o.counter > 0 and o.counter or nil }
  local function read()
    if netns == "all" then return checked(tcplab.counters.all, opts) end
    local c = checked(tcplab.counters.read, { netns = netns, names = opts.names })
    c.netns = o.netns
    return { { netns = o.netns, counters = c } }
  end
  local fmt = require("tcplab.format.counters")[o.format]
  local show = { zeros = o.zeros or #o.counter > 0 }
  local last = read()
  if not o.interval then
    fmt(last, io.stdout, show)
    return
  end
  io.stdout:setvbuf("line")
  local frame = 0
  repeat
    tcplab.sleep(o.interval)
    local now = read()
    local by_name, deltas = {}, {}
    for _, e in ipairs(last) do by_name[e.netns or ""] = e.counters end
    for _, e in ipairs(now) do
      local before = by_name[e.netns or ""]
      if before then deltas[#deltas + 1] = { netns = e.netns, counters = tcplab.counters.delta(before, e.counters) } end
    end
    fmt(deltas, io.stdout, show)
    last, frame = now, frame + 1
  until o.count and frame >= o.count
end

---------------------------------------------------------------- kill
-- `tcplab kill FILTER [--dry-run]`: close the matching sockets with
-- SOCK_DESTROY, like ss -K (tcplab.kill). An empty filter is a usage error;
-- one line per socket, then a count; exit 1 when the kernel refused one.
-- Self-contained: the parser entry and the command live in this block.

function cli.add_kill(p)
  local k = p:command("kill", "Close the matching sockets with SOCK_DESTROY, like ss -K (root; the peer gets a RST).\n" ..
    "The filter must name sockets: an empty one (or only --family/--netns) is refused.")
  k:usage("Usage: tcplab kill [--state S] [--port P] [--sport P] [--dport P] [--src A] [--dst A]\n" ..
          "                   [--pid PID] [--comm NAME] [--family F] [--netns NS] [--dry-run] [--format text|json]")
  k:epilog("Exit status: 0 every matching socket closed (or none matched), 1 the kernel refused one\n" ..
           "(its line says why: EPERM not root, EOPNOTSUPP no CONFIG_INET_DIAG_DESTROY), 2 usage error.")
  add_filters(k)
  k:option("--port", PORT_HELP):convert(port_or_range_arg)
  add_owner_filters(k)
  k:flag("--dry-run", "Close nothing: list the sockets that would be closed.")
  k:option("--format", "Output format."):choices({ "text", "json" }):default("text")
end

function commands.kill(o)
  if #o.state == 0 and not (o.port or o.sport or o.dport or o.src or o.dst or o.pid or o.comm) then
    usage_error("kill: a filter is required (it would close every socket): give --port, --sport, --dport, " ..
      "--src, --dst, --state, --pid or --comm (and --dry-run to see what it would close)")
  end
  check_pid(o)
  local f = filter_of(o)
  f.port = o.port
  local results = checked(tcplab.kill, f, { dry_run = o.dry_run or nil })
  local closed, gone, failed = 0, 0, 0
  for _, r in ipairs(results) do
    if r.dry_run or r.ok then closed = closed + 1
    elseif r.gone then gone = gone + 1
    else failed = failed + 1 end
  end
  if o.format == "json" then
    local cjson = require "cjson"
    local items = {}
    for i, r in ipairs(results) do
      local rec = r.record
      items[i] = cjson.encode({ state = rec.state, family = rec.family, src = rec.src, sport = rec.sport,
        dst = rec.dst, dport = rec.dport, cookie = rec.cookie,
        result = r.dry_run and "would_close" or r.ok and "closed" or r.gone and "gone" or "failed",
        error = (not r.ok) and r.err or nil, errno = (not r.ok) and r.errno or nil })
    end
    io.write(('{"dry_run":%s,"sockets":[%s],"%s":%d,"gone":%d,"failed":%d}\n'):format(
      o.dry_run and "true" or "false", table.concat(items, ","), o.dry_run and "would_close" or "closed",
      closed, gone, failed))
  else
    for _, r in ipairs(results) do
      io.write(tostring(r), "\n")
    end
    if o.dry_run then
      io.write(("%d socket%s would be closed (dry run: nothing closed)\n"):format(closed, closed == 1 and "" or "s"))
    else
      io.write(("%d closed"):format(closed), gone > 0 and (", %d gone before the kill"):format(gone) or "",
        failed > 0 and (", %d failed"):format(failed) or "", "\n")
    end
  end
  io.stdout:flush()
  if failed > 0 then
    for _, r in ipairs(results) do
      if not r.ok and not r.gone and not r.dry_run then io.stderr:write("tcplab: kill: ", tostring(r), "\n") end
    end
    os.exit(EXIT_FAIL, true)
  end
end

---------------------------------------------------------------- trace --life
-- `tcplab trace --life [--port P]... [--netns NS|all] [--pid PID] [--comm NAME]
-- [--count N] [--duration S] [--format text|json]`: one line per connection
-- when it closes, like BCC's tcplife (tcplab.trace.life; doc/trace.md).
-- Self-contained: the options and the command live in this block.

function cli.add_life(trace)
  trace:flag("--life", "One line per connection when it closes, like BCC's tcplife: owner (pid, comm), both " ..
    "ends, data bytes sent and received, duration and the states it went through (the BPF recorder). With " ..
    "it, --count counts connections and --pid/--comm match the owner (--format: see --ladder's).")
end

function cli.trace_life(o, netns)
  local life = require "tcplab.trace.life"
  local fmt = require "tcplab.format.life"
  local all = netns == "all"
  local rec <close> = checked(life.start, { ports = o.port, netns = netns, limit = o.duration or 86400 })
  io.stdout:setvbuf("line")
  -- once this is out, the recorder records
  if o.format == "json" then io.stderr:write("tcplab: recording lifetimes (Ctrl-C stops)\n")
  else fmt.header(io.stdout, { netns = all }) end
  local want, n = { pid = o.pid, comm = o.comm }, 0
  for r in life.each(rec) do
    if life.matches(r, want) then
      if o.format == "json" then fmt.json(r, io.stdout)
      else fmt.text(r, io.stdout, all and { netns = tostring(r.netns) } or nil) end
      n = n + 1
      if o.count and n >= o.count then break end
    end
  end
  if tcplab.process.caught_signal() then error("interrupted", 0) end
  rec:stop()   -- a lifetime whose ending event the ring buffer lost is missing: say so
  if rec.warning then io.stderr:write("tcplab: trace --life: ", rec.warning, "\n") end
end

-- `tcplab serve`: lua/tcplab/cli/serve.lua (doc/serve.md).
function commands.serve(o)
  require("tcplab.cli.serve").run(o, { usage_error = usage_error, fail = fail,
    resolve = function(spec) return netns_of(spec) end })
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
