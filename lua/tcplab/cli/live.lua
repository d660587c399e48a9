--- `tcplab counts --live` and `tcplab watch --live`: per-state counts from
-- the namespace's live counters (tcplab.live: BPF programs keep them, a read
-- costs µs), or, where they cannot load, from a walk with one line on
-- stderr saying why. Layer 7 (the command line): cli.lua parses, this
-- module checks what --live can be combined with and answers.
local kernel = require "tcplab.kernel"

local live_cli = {}

-- Filters a live count cannot honour: it counts every socket of the namespace.
local NOT_WITH = { "sport", "dport", "src", "dst", "family", "pid", "comm", "by" }

--- The counts{ live = true } filter of the parsed options o, or a usage
-- error (usage(msg) does not return). netns: the path cli.lua resolved;
-- states: the names --state gave.
function live_cli.filter(o, usage, netns, states)
  for _, name in ipairs(NOT_WITH) do
    if o[name] ~= nil then
      usage(("--live: not with --%s (live counts are per state for the whole namespace; " ..
        "drop --live to filter)"):format(name))
    end
  end
  if type(o.port) == "table" and #o.port > 0 or (o.port ~= nil and type(o.port) ~= "table") then
    usage("--live: not with --port (live counts are per state for the whole namespace; drop --live to filter)")
  end
  if netns == "all" then usage("--live: one namespace at a time (not --netns all)") end
  return { live = true, netns = netns, states = states }
end

local told = false

--- Counts for filter f (from live_cli.filter): the table, or nil, msg. The
-- first time a walk answers instead, says why on stderr (once per process).
function live_cli.counts(f)
  local t, err = kernel.counts(f)
  if not t then return nil, err end
  local by, why = kernel.answered_by()
  if by ~= "live" and not told then
    told = true
    io.stderr:write(("tcplab: --live: counted by a walk (%s): %s\n"):format(by, why or "live did not answer"))
  end
  return t
end

return live_cli
