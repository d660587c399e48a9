--- Plain text for people: a socket table like ss's, counts as "NAME<tab>N".
local text = {}

local function endpoint(addr, port)
  return (addr:find(":", 1, true) and "[" .. addr .. "]" or addr) .. ":" .. port
end
text.endpoint = endpoint

--- One line per socket, sorted by state and local port.
function text.list(records, out)
  out = out or io.stdout
  local sorted = table.move(records, 1, #records, 1, {})
  table.sort(sorted, function(a, b)
    if a.state ~= b.state then return a.state < b.state end
    return a.sport < b.sport
  end)
  local fmt = "%-12s %6s %6s  %-28s %-28s %-10s %s\n"
  out:write(fmt:format("State", "Recv-Q", "Send-Q", "Local", "Peer", "Timer", "Inode"))
  for _, r in ipairs(sorted) do
    local timer = r.timer == "off" and "" or ("%s(%dms)"):format(r.timer, r.expires_ms)
    out:write(fmt:format(r.state, r.rqueue, r.wqueue, endpoint(r.src, r.sport), endpoint(r.dst, r.dport),
                         timer, r.inode))
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

--- Lines as they are.
function text.lines(lines, out)
  out = out or io.stdout
  for _, line in ipairs(lines) do out:write(line, "\n") end
end

return text
