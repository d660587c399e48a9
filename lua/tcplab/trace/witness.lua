--- The tracefs recorder as a witness beside the BPF one.
--
-- On this kernel the BPF recorder, now and then (about 1 run in 100-200 of
-- bench/recorders.lua on a host where other processes attach and detach
-- programs and tracefs instances on the same tracepoint), misses a pair of
-- transitions that the tracefs recorder of the same run sees: neither of its
-- two programs counted the transition (port_hits, witness_hits), the kernel
-- counted no recursion miss, and every event written was delivered
-- (doc/kernel-recorder.md). Nothing in BPF can count what BPF was not
-- called for, so a scenario runs both and merges: each tracefs event that
-- no BPF event matches (same four-tuple, same from, same to -- a tracefs
-- X -> CLOSE matches a BPF X -> TIME_WAIT) is added, marked
-- witness = "tracefs", with the cookie the BPF events of that four-tuple
-- carry; rec.missed counts them. Both clocks are CLOCK_MONOTONIC.
local witness = {}

local function tuple(ev)
  return table.concat({ ev.src, ev.sport, ev.dst, ev.dport }, " ")
end

local function key(ev, to)
  return tuple(ev) .. " " .. ev.from .. ">" .. (to or ev.to)
end

--- bpf events (kept) merged with the tracefs events BPF lacks, in time
-- order; and how many were added.
function witness.merge(bpf, seen_by_tracefs)
  local have, cookie_of = {}, {}
  for _, ev in ipairs(bpf) do
    local k = key(ev, ev.kernel or ev.to)   -- the tracepoint's own word
    have[k] = (have[k] or 0) + 1
    if ev.cookie and ev.sport ~= 0 then cookie_of[tuple(ev)] = ev.cookie end
  end
  local out, added = {}, 0
  for _, ev in ipairs(bpf) do out[#out + 1] = ev end
  for _, ev in ipairs(seen_by_tracefs) do
    local k = key(ev)
    if (have[k] or 0) > 0 then
      have[k] = have[k] - 1
    else
      local copy = {}
      for f, v in pairs(ev) do copy[f] = v end
      copy.witness, copy.cookie = "tracefs", cookie_of[tuple(ev)]
      out[#out + 1] = copy
      added = added + 1
    end
  end
  if added > 0 then
    local at = {}
    for i, ev in ipairs(out) do at[ev] = i end
    table.sort(out, function(a, b)
      if a.time ~= b.time then return a.time < b.time end
      return at[a] < at[b]
    end)
  end
  return out, added
end

return witness
