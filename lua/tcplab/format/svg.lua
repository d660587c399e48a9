--- The ladder diagrams of a scenario's result as one standalone SVG: text
-- stays text (selectable), no external assets, one <g class="segment">
-- (a line, its arrowhead and its label) per captured segment.
local ladder = require "tcplab.format.ladder"

local svg = {}

local ROW, WRAP = 18, 44
local X_TIME, X_LEFT, X_CLIENT, X_SERVER, X_RIGHT, WIDTH = 10, 70, 420, 820, 836, 1200

local function esc(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

local function text(parts, x, y, s, attrs)
  parts[#parts + 1] = ('<text x="%d" y="%d"%s>%s</text>'):format(x, y, attrs or "", esc(s))
end

--- Write the SVG of a result to out (a file handle).
function svg.write(result, out)
  local body, y = {}, 20
  local t0 = result.t0 or 0
  local conns = ladder.connections(result)
  for i, c in ipairs(conns) do
    text(body, X_TIME, y, ("%s%s"):format(result.name, #conns > 1 and (" — connection %d of %d"):format(i, #conns) or ""),
         ' class="title"')
    y = y + ROW + 4
    text(body, X_CLIENT, y, c.client and ("client " .. c.client) or "client", ' text-anchor="middle" class="end"')
    text(body, X_SERVER, y, c.server and ("server " .. c.server) or "server", ' text-anchor="middle" class="end"')
    y = y + 8
    local top = y
    for _, e in ipairs(ladder.events(c)) do
      y = y + ROW
      text(body, X_TIME, y, ("%.3f"):format(e.t - t0), ' class="time"')
      if e.kind == "segment" then
        local right = e.side == "client"
        local x1, x2 = right and X_CLIENT or X_SERVER, right and X_SERVER or X_CLIENT
        local head = right and ("%d,%d %d,%d %d,%d"):format(x2, y + 4, x2 - 9, y - 1, x2 - 9, y + 7)
                           or ("%d,%d %d,%d %d,%d"):format(x2, y + 4, x2 + 9, y - 1, x2 + 9, y + 7)
        body[#body + 1] = ('<g class="segment" data-flags="%s"><line x1="%d" y1="%d" x2="%d" y2="%d"/>' ..
                           '<polygon points="%s"/>'):format(esc(e.seg.flags), x1, y - 6, x2, y + 4, head)
        text(body, (X_CLIENT + X_SERVER) // 2, y - 8, ladder.label(e.seg, c.relative), ' text-anchor="middle"')
        body[#body + 1] = "</g>"
      else
        local lines = ladder.wrap(e.text, WRAP)
        for j, l in ipairs(lines) do
          if j > 1 then y = y + ROW end
          if e.side == "client" then text(body, X_LEFT, y, l, e.kind == "state" and ' class="state"' or nil)
          else text(body, X_RIGHT, y, l, e.kind == "state" and ' class="state"' or nil) end
        end
      end
    end
    y = y + ROW
    body[#body + 1] = ('<line class="life" x1="%d" y1="%d" x2="%d" y2="%d"/>'):format(X_CLIENT, top, X_CLIENT, y)
    body[#body + 1] = ('<line class="life" x1="%d" y1="%d" x2="%d" y2="%d"/>'):format(X_SERVER, top, X_SERVER, y)
    y = y + 2 * ROW
  end
  for _, ch in ipairs(result.checks or {}) do
    local tag = ch.unobserved and "[not observed] " or (ch.ok and "[ok] " or "[FAIL] ")
    for j, l in ipairs(ladder.wrap(tag .. ch.claim, 150)) do
      text(body, X_TIME + (j > 1 and 20 or 0), y, l, ch.ok and "" or ' class="fail"')
      y = y + ROW
    end
  end
  out:write(('<?xml version="1.0" encoding="UTF-8"?>\n' ..
    '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="monospace" font-size="12">\n' ..
    '<style>line{stroke:#222;stroke-width:1.2} line.life{stroke:#888;stroke-dasharray:4 3} polygon{fill:#222}' ..
    ' .state{fill:#0a5;font-weight:bold} .time{fill:#777} .title{font-weight:bold;font-size:14px} .fail{fill:#c00}' ..
    ' .end{font-weight:bold}</style>\n<rect width="100%%" height="100%%" fill="white"/>\n'):format(WIDTH, y + ROW, WIDTH, y + ROW))
  out:write(table.concat(body, "\n"), "\n</svg>\n")
end

return svg
