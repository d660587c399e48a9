--- tcplab: the TCP socket lifecycle, scriptable and assertable.
-- require "tcplab" has no side effects; submodules load on first use.
--
-- This file is a facade and only re-exports: the kernel's answers
-- (snapshot, counts, sockets, namespaces: tcplab.kernel) and, loaded on
-- first use, the public modules of the layers above it (doc/layout.md,
-- doc/api.md). No module of the library requires "tcplab"; each requires
-- the layer it uses, below itself (spec/layers_spec.lua).
local kernel = require "tcplab.kernel"

local tcplab = {}
for k, v in pairs(kernel) do tcplab[k] = v end

-- The public modules, loaded on first use (doc/api.md, "Public modules").
-- kernel, sys, args, namespaces, tally, scenarios.kit, checks.common and
-- format.verdicts are internal: not re-exported here.
local LAZY = { states = true, awk = true, trace = true, fault = true, format = true,
               scenarios = true, timeline = true, observe = true, counters = true,
               export = true, checks = true, wire = true }

-- A module that exists but cannot be opened (out of fds) is not "not found":
-- say what the system said.
local function load(name)
  local ok, m = pcall(require, name)
  if ok then return m end
  local probe, err = io.open("/dev/null")
  if probe then probe:close() error(m, 3) end
  error(("cannot load %s: %s"):format(name, err:gsub("^/dev/null: ", "")), 3)
end

setmetatable(tcplab, {
  __index = function(t, k)
    if LAZY[k] then
      local m = load("tcplab." .. k)
      rawset(t, k, m)
      return m
    end
  end,
})

--- A lab around a command: tcplab.lab{ cmd = { "./server", "8080" }, port = 8080 }
-- starts it in a fresh namespace and waits until it listens (root).
-- See lua/tcplab/lab.lua.
function tcplab.lab(opts)
  return require("tcplab.lab").start(opts)
end

--- Totals of one snapshot, like `ss -s` (same filter as snapshot): total,
-- states (all eleven, zeros included), families {inet, inet6}, family_states,
-- orphans (inode 0 in FIN_WAIT1/2, CLOSING, LAST_ACK), time_wait, listeners,
-- full_listeners ({family, src, port, queue, backlog, inode}: LISTEN with
-- queue > backlog, the kernel's own test). Or nil, msg, errno.
function tcplab.summary(f)
  return require("tcplab.tally").summary(f)
end

--- Per-namespace tallies for the Prometheus format: the filter plus ports =
-- {...} (extra local ports to count) and netns = "all". See tcplab.tally.
function tcplab.tcpstat(f)
  return require("tcplab.tally").tcpstat(f)
end

--- Close the sockets the filter matches with SOCK_DESTROY, like `ss -K`
-- (root; CONFIG_INET_DIAG_DESTROY): the peer gets a RST. filter: the
-- snapshot's (netns, states, ports, addresses, pid, comm); one that names no
-- socket in particular (empty, or only family/netns) is refused. opts.dry_run:
-- close nothing, say what would be closed. Returns a list of results, one per
-- socket: { record, ok, gone, err, errno, dry_run } (see tcplab.kill module),
-- or nil, msg, errno when the dump or the netlink socket failed.
function tcplab.kill(filter, opts)
  return require("tcplab.kill").kill(filter, opts)
end

--- Wait (bounded, default 2 s) until a socket or four-tuple is in `state`
-- as the dump shows it ("CLOSED" once the kernel forgot it). Returns true,
-- or false and the last state seen.
function tcplab.await_state(target, state, timeout)
  return tcplab.observe.await(target, state, timeout)
end

return tcplab
