--- Argument errors in Lua's own words: "bad argument #N to 'fname' (msg)".
local args = {}

-- A chunk of tcplab's own Lua layer (a checkout's lua/tcplab/ or an
-- install's share/lua/5.4/tcplab/): the C core skips the same frames.
local function library(source)
  return source:sub(1, 1) == "@"
    and (source:find("lua/tcplab/", 1, true) or source:find("5.4/tcplab/", 1, true)) ~= nil
end
args.library = library

--- Raise the error at the line that passed the argument: the first caller
-- outside tcplab's Lua layer (wrappers such as tcplab.snapshot → tally →
-- with_mask are skipped, however deep). `level` is the frame to start from
-- (default 2, the function that checks) and is kept for old callers.
function args.error(fname, n, msg, level)
  level = math.min(level or 2, 2)
  while true do
    local info = debug.getinfo(level + 1, "S")
    if not info or info.what == "C" or not library(info.source) then break end
    level = level + 1
  end
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), level + 1)
end

--- The one port check of the Lua layer: nil when v is a port, an integer
-- 1..65535 (0..65535 with zero_ok: a filter or four-tuple may name port 0),
-- else "port LO..65535 expected, got V" to follow the argument's name.
function args.bad_port(v, zero_ok)
  local lo = zero_ok and 0 or 1
  if math.type(v) == "integer" and v >= lo and v <= 65535 then return nil end
  return ("port %d..65535 expected, got %s"):format(lo, args.show(v))
end

--- How a value is shown in a message: strings quoted, so "8080" is not 8080.
function args.show(v)
  if type(v) == "string" then return ("string %q"):format(v) end
  if type(v) == "number" or type(v) == "boolean" or v == nil then return tostring(v) end
  return type(v)
end

return args
