--- Drop chosen TCP segments with nftables, so that short states are held
-- long enough to see. Runs only in a network namespace that tcplab made
-- (tcplab.netns.new() or unshare()): the host's firewall is never touched.
-- spec.netns = a handle from tcplab.netns.new(): the rule goes into that
-- namespace and the caller stays where it is (nft is forked from inside
-- it: ns:run); without it, the current namespace, which must be ours.
--
--   local f <close> = assert(tcplab.fault.drop{ segment = "ack", dport = port })
--   ...            -- the client's pure ACKs to port are dropped
--   f:lift()       -- or leave scope; tcplab.fault.clear() removes every rule
--   local c <close> = assert(tcplab.fault.count{ segment = "fin", sport = port })
--   c:packets()    -- FINs from port that left so far (counted, not dropped)
--
-- segment: "syn" (SYN only), "synack", "ack" (pure ACK: the mask includes psh,
-- so data segments pass), "fin", "rst", "data" (PSH), "any".
-- once = true (segment "syn" only): drop the first SYN and let its
-- retransmits pass (an nft byte quota of 100: one SYN of either family).
local netns = require("tcplab.kernel").netns
local sys = require "tcplab.sys"
local args = require "tcplab.args"

local fault = {}

local TABLE = "inet tcplab_fault"
local CHAIN = "output"
local SEGMENTS = {
  syn = "tcp flags & (syn|ack) == syn",
  synack = "tcp flags & (syn|ack) == syn|ack",
  ack = "tcp flags & (fin|syn|rst|psh|ack) == ack",
  fin = "tcp flags & fin == fin",
  rst = "tcp flags & rst == rst",
  data = "tcp flags & psh == psh",
  any = "",
}
local SEGMENT_LIST = "syn synack ack fin rst data any"

local function nft_here(script)
  local p, err = sys.popen("nft", "nft -e -a -f - 2>&1 <<'TCPLAB_EOF'\n" .. script .. "\nTCPLAB_EOF\necho rc=$?")
  if not p then return nil, err end
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  if rc ~= 0 then return nil, "nft: " .. out:gsub("rc=%d+%s*$", ""):gsub("%s+$", "") end
  return out
end

-- nft in the namespace ns (nil: the current one).
local function nft(script, ns)
  if ns == nil then return nft_here(script) end
  return ns:run(nft_here, script)
end

local function check_ours()
  if not netns.current_ours() then
    return nil, "tcplab.fault runs only inside a namespace made by tcplab.netns.unshare() " ..
                "(this one is not: the host's firewall is never touched)"
  end
  return true
end

local Rule = {}
Rule.__index = Rule

local function add(fname, spec, verdict)
  if type(spec) ~= "table" then args.error(fname, 1, "table expected, got " .. type(spec)) end
  local match = spec.segment == nil and SEGMENTS.any or type(spec.segment) == "string" and SEGMENTS[spec.segment]
  if not match then
    args.error(fname, 1, ("segment: unknown '%s'; valid: %s"):format(tostring(spec.segment), SEGMENT_LIST))
  end
  local parts = {}
  for _, key in ipairs({ "sport", "dport" }) do
    local v = spec[key]
    if v ~= nil then
      local bad = args.bad_port(v)
      if bad then args.error(fname, 1, ("%s: %s"):format(key, bad)) end
      parts[#parts + 1] = ("tcp %s %d"):format(key, v)
    end
  end
  if match ~= "" then parts[#parts + 1] = match end
  if spec.once ~= nil then
    if type(spec.once) ~= "boolean" then args.error(fname, 1, "once: boolean expected") end
    if spec.once and spec.segment ~= "syn" then
      args.error(fname, 1, 'once: only with segment = "syn"')
    end
    if spec.once then parts[#parts + 1] = "quota until 100 bytes" end
  end
  if #parts == 0 then parts[1] = "meta l4proto tcp" end
  local ns, ok, err = spec.netns, nil, nil
  if ns ~= nil then
    if not netns.owns(ns) then
      args.error(fname, 1, "netns: an open handle from tcplab.netns.new() expected, got " .. args.show(ns))
    end
  else
    ok, err = check_ours()
    if not ok then return nil, err end
    ns = netns.current_ours()
  end
  local out
  out, err = nft(("add table %s\nadd chain %s %s { type filter hook output priority 0; }\n" ..
                  "add rule %s %s %s counter%s"):format(TABLE, TABLE, CHAIN, TABLE, CHAIN, table.concat(parts, " "),
                                                        verdict == "drop" and " drop" or ""),
                 spec.netns)
  if not out then return nil, err end
  local handle = tonumber(out:match("counter packets %d+ bytes %d+[a-z ]*# handle (%d+)"))
  if not handle then return nil, "nft: no rule handle in: " .. out end
  return setmetatable({ handle = handle, verb = verdict, what = table.concat(parts, " "), netns = ns,
                        held = spec.netns ~= nil }, Rule)
end

--- Drop segments: spec = { segment = ..., sport = P, dport = P }.
-- Returns a rule (lift it, or let <close> do it), or nil and a message.
function fault.drop(spec) return add("drop", spec, "drop") end

--- Count segments without dropping them (same spec as drop): rule:packets()
-- then says how many matching segments have passed the output hook.
function fault.count(spec) return add("count", spec, "count") end

--- Packets this rule has matched so far (dropped, or counted for fault.count).
function Rule:packets()
  if not self.handle then return self.final or 0 end
  local out = nft(("list chain %s %s"):format(TABLE, CHAIN), self.held and self.netns or nil) or ""
  for line in out:gmatch("[^\n]+") do
    local n, h = line:match("counter packets (%d+) bytes %d+[a-z ]*# handle (%d+)")
    if tonumber(h) == self.handle then return tonumber(n) end
  end
  return 0
end

--- Remove the rule (idempotent).
function Rule:lift()
  if not self.handle then return true end
  if self.held then   -- made with netns = handle: lifted in it, from wherever we are
    if not netns.owns(self.netns) then
      self.handle = nil
      return nil, "fault: the rule's namespace handle is closed (the rule went with the namespace)"
    end
  else
    local held, here = pcall(self.netns.is_current, self.netns)
    if not (held and here) then
      return nil, "fault: the rule lives in another namespace; not lifted from this one"
    end
  end
  self.final = self:packets()
  local ok, err = nft(("delete rule %s %s handle %d"):format(TABLE, CHAIN, self.handle), self.held and self.netns or nil)
  self.handle = nil
  if not ok then return nil, err end
  return true
end

Rule.dropped = Rule.packets
Rule.__close = function(self) self:lift() end
Rule.__tostring = function(self)
  return ("fault %s %s%s"):format(self.verb, self.what, self.handle and "" or " (lifted)")
end

--- Decide per packet with a Lua function (NFQUEUE): { netns, port,
-- on_packet = function(pkt) return verdict end, queue, timeout, warn }.
-- tcplab.nfqueue has the verdicts and the serving loop (doc/fault-queue.md).
function fault.queue(spec) return require("tcplab.nfqueue").open(spec) end
--- Delay the port's packets: { netns, port, seconds, flags = "SA", direction }.
function fault.delay(spec) return require("tcplab.nfqueue").delay(spec) end
--- Drop the port's packets at random: { netns, port, rate = 0..1, flags, direction, seed }.
function fault.loss(spec) return require("tcplab.nfqueue").loss(spec) end

--- Remove every rule of ours in this namespace, or in the namespace of the
-- handle ns (from tcplab.netns.new()): the whole table.
function fault.clear(ns)
  local ok, err
  if ns ~= nil then
    if not netns.owns(ns) then
      args.error("clear", 1, "an open handle from tcplab.netns.new() expected, got " .. args.show(ns))
    end
  else
    ok, err = check_ours()
    if not ok then return nil, err end
  end
  local exists
  if ns then
    exists = select(2, ns:run(sys.run, "nft", "nft list table " .. TABLE))
  else
    exists = select(2, sys.run("nft", "nft list table " .. TABLE))
  end
  if not exists then return true end
  local out
  out, err = nft("delete table " .. TABLE, ns)
  if not out then return nil, err end
  return true
end

return fault
