--- Argument errors in Lua's own words: "bad argument #N to 'fname' (msg)".
local args = {}

--- Raise the error at the caller of the function that checks (level 3 by default).
function args.error(fname, n, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), level or 3)
end

--- How a value is shown in a message: strings quoted, so "8080" is not 8080.
function args.show(v)
  if type(v) == "string" then return ("string %q"):format(v) end
  if type(v) == "number" or type(v) == "boolean" or v == nil then return tostring(v) end
  return type(v)
end

return args
