--- Text made valid UTF-8 for formats that require it (JSON, Prometheus
-- label values): every byte that is not part of a valid UTF-8 sequence is
-- written as the four characters \xNN (NN: its value in hex), so a name
-- with stray bytes (a namespace, a process's comm) stays readable and
-- distinct instead of making the whole output invalid.
local valid_utf8 = {}

--- s unchanged when it is valid UTF-8 (one utf8.len call), else fixed.
-- esc: what a backslash must be written as in the output (default "\\";
-- "\\\\" when the text is already inside an escaped string, as in JSON).
function valid_utf8.fix(s, esc)
  if utf8.len(s) then return s end
  esc = esc or "\\"
  local parts, i, n = {}, 1, #s
  while i <= n do
    local ok, bad = utf8.len(s, i)
    if ok then
      parts[#parts + 1] = s:sub(i)
      break
    end
    parts[#parts + 1] = s:sub(i, bad - 1)
    parts[#parts + 1] = ("%sx%02X"):format(esc, s:byte(bad))
    i = bad + 1
  end
  return table.concat(parts)
end

return valid_utf8
