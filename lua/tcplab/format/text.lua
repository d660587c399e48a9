--- Plain text for people: a socket table like ss's, counts as "NAME<tab>N".
local text = {}

local function endpoint(addr, port)
  return (addr:find(":", 1, true) and "[" .. addr .. "]" or addr) .. ":" .. port
end
text.endpoint = endpoint

--- ss -p's users field: users:(("comm",pid=N,fd=M),...), "" when none.
function text.users(owners)
  if not owners or #owners == 0 then return "" end
  local parts = {}
  for i, o in ipairs(owners) do parts[i] = ('("%s",pid=%d,fd=%d)'):format(o.comm, o.pid, o.fd) end
  return "users:(" .. table.concat(parts, ",") .. ")"
end

--- A rate in bits per second as ss writes it (three digits): 30.5Gbps, 275Gbps, 1.2Mbps, 12bps.
function text.bps(bits)
  for _, u in ipairs({ { 1e12, "T" }, { 1e9, "G" }, { 1e6, "M" }, { 1e3, "K" } }) do
    if bits >= u[1] then return ("%.3g%sbps"):format(bits / u[1], u[2]) end
  end
  return ("%gbps"):format(bits)
end

--- The decoded TCP_INFO line of `list --info`, in ss -ti's words: the congestion
-- control, rtt/rttvar in ms, cwnd, retrans (now unacked/total) and the delivery rate.
function text.info(r)
  local i = r.info
  if not i then return nil end
  local parts = { r.cong }
  local function add(fmt, ...) parts[#parts + 1] = fmt:format(...) end
  if i.rtt_us then add("rtt:%g/%g", i.rtt_us / 1000, (i.rttvar_us or 0) / 1000) end
  if i.snd_cwnd then add("cwnd:%d", i.snd_cwnd) end
  if i.retrans then add("retrans:%d/%d", i.retrans, i.total_retrans or 0) end
  if i.delivery_rate then add("delivery_rate:%s", text.bps(i.delivery_rate * 8)) end
  return table.concat(parts, " ")
end

--- One line per socket, sorted by state and local port; snapshot{owners = true}'s
-- records (the list has owners_unreadable) get a Process column like `ss -tanp`.
function text.list(records, out)
  out = out or io.stdout
  local sorted = table.move(records, 1, #records, 1, {})
  table.sort(sorted, function(a, b)
    if a.state ~= b.state then return a.state < b.state end
    return a.sport < b.sport
  end)
  local owners = records.owners_unreadable ~= nil
  local fmt = "%-12s %6s %6s  %-28s %-28s %-10s %s" .. (owners and " %s\n" or "\n")
  out:write(fmt:format("State", "Recv-Q", "Send-Q", "Local", "Peer", "Timer", "Inode", "Process"))
  for _, r in ipairs(sorted) do
    local timer = r.timer == "off" and "" or ("%s(%dms)"):format(r.timer, r.expires_ms)
    out:write(fmt:format(r.state, r.rqueue, r.wqueue, endpoint(r.src, r.sport), endpoint(r.dst, r.dport),
                         timer, r.inode, owners and text.users(r.owners) .. (r.owners_incomplete and " (incomplete)" or "") or nil))
    local info = text.info(r)
    if info then out:write("\t ", info, "\n") end
  end
  if owners and records.owners_unreadable > 0 then
    out:write(("(%d processes' fds could not be read: owners may be missing)\n"):format(records.owners_unreadable))
  end
end

--- "NAME<tab>N" per state, sorted by name.
function text.counts(counts, out)
  out = out or io.stdout
  local names = {}
  for name in pairs(counts) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do out:write(name, "\t", counts[name], "\n") end
end

--- Counts per namespace, or per port or address (counts{by = ...}):
-- "KEY<tab>STATE<tab>N", sorted.
function text.counts_by_netns(by_name, out)
  out = out or io.stdout
  local names = {}
  for name in pairs(by_name) do names[#names + 1] = name end
  table.sort(names)
  for _, ns in ipairs(names) do
    local counts, states_ = by_name[ns], {}
    for name in pairs(counts) do states_[#states_ + 1] = name end
    table.sort(states_)
    for _, name in ipairs(states_) do out:write(ns, "\t", name, "\t", counts[name], "\n") end
  end
end

--- tcplab.summary()'s table, in the manner of `ss -s`.
function text.summary(s, out)
  out = out or io.stdout
  local st = s.states
  out:write(("Total: %d (inet %d, inet6 %d)\n"):format(s.total, s.families.inet, s.families.inet6))
  out:write(("TCP:   estab %d, orphaned %d, timewait %d, listen %d (accept queue full: %d)\n\n")
    :format(st.ESTABLISHED, s.orphans, s.time_wait, s.listeners, #s.full_listeners))
  local fmt = "%-12s %8s %8s %8s\n"
  out:write(fmt:format("State", "Total", "inet", "inet6"))
  for _, name in ipairs(require("tcplab.states").list) do
    out:write(fmt:format(name, st[name], s.family_states.inet[name], s.family_states.inet6[name]))
  end
  if #s.full_listeners > 0 then
    out:write("\nListeners with a full accept queue (queue > backlog):\n")
    for _, l in ipairs(s.full_listeners) do
      out:write(("  %-28s queue %d, backlog %d, inode %d\n"):format(endpoint(l.src, l.port), l.queue, l.backlog, l.inode))
    end
  end
end

--- tcplab.namespaces()'s list: name, inode, pid, path.
function text.namespaces(list, out)
  out = out or io.stdout
  local fmt = "%-24s %12s %8s  %s\n"
  out:write(fmt:format("Name", "Inode", "Pid", "Path"))
  for _, ns in ipairs(list) do
    out:write(fmt:format(ns.name, ns.id, ns.pid or "-", ns.path))
  end
end

--- One frame of `tcplab watch`: every state (zeros included, so a state
-- that appears is seen), its count and the change since the last frame.
function text.watch(counts, last, info, out)
  out = out or io.stdout
  local st = require "tcplab.states"
  out:write(("tcplab watch   every %gs   frame %d   %s\n"):format(info.interval, info.frame, info.time))
  local fmt = "%-12s %8s %8s\n"
  out:write(fmt:format("State", "Count", "Change"))
  local total = 0
  for _, name in ipairs(st.list) do
    local n = counts[name] or 0
    total = total + n
    local change = ""
    if last then
      local d = n - (last[name] or 0)
      change = d == 0 and "." or ("%+d"):format(d)
    end
    out:write(fmt:format(name, n, change))
  end
  out:write(fmt:format("total", total, ""))
end

--- Lines as they are.
function text.lines(lines, out)
  out = out or io.stdout
  for _, line in ipairs(lines) do out:write(line, "\n") end
end

return text
