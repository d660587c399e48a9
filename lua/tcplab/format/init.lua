--- Output formats, one module each, chosen by name. Every format renders
-- plain data (records, counts, lines, scenario results) and knows nothing of
-- sockets or the kernel:
--   format.get("text").list(records, out)
-- A format module offers some of: list(records, out), counts(counts, out),
-- lines(lines, out), timeline(result, out).
local format = {}

format.NAMES = { "text", "json", "prometheus" }

local KNOWN = { text = true, json = true, prometheus = true, awk = true, timeline = true }

--- The format module called name, or nil and a message listing the valid ones.
function format.get(name)
  if not KNOWN[name] then
    return nil, ("unknown format '%s' (valid: %s)"):format(tostring(name), table.concat(format.NAMES, " "))
  end
  return require("tcplab.format." .. name)
end

return format
