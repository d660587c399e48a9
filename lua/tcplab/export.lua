--- Files other programs read while we replace them: node_exporter's
-- textfile collector above all. tcplab.export.textfile(path, text) is what
-- `tcplab export --textfile` calls; use it from your own scripts too.
local core = require "tcplab.core"
local args = require "tcplab.args"

local export = {}

--- Replace the file at path with text, atomically and safely: a temp file
-- PATH.tmp.PID.XXXXXXXX beside it, created with O_EXCL|O_NOFOLLOW (a symlink
-- planted there is never followed), written, fsync'd and renamed over path,
-- so a reader sees the old file or the new one, never part of one. Temp
-- files of this path left by processes that are gone (killed mid-write)
-- are removed first. Returns true and the number of such files removed, or
-- nil, "path (...): message", errno; the temp file never stays behind.
function export.textfile(path, text)
  if type(path) ~= "string" or path == "" then
    args.error("textfile", 1, "file path expected, got " .. args.show(path))
  end
  local base = path:match("[^/]*$")
  if base == "" or base == "." or base == ".." or path:find("\0", 1, true) then
    args.error("textfile", 1, "a file path (not a directory) expected, got " .. args.show(path))
  end
  if type(text) ~= "string" then
    args.error("textfile", 2, "string expected (the file's whole text), got " .. args.show(text))
  end
  return core.textfile_write(path, text)
end

--- A writer for the formatters (format/*.lua write to an object with
-- :write(...)): collects the text; :text() gives it whole.
function export.buffer()
  local parts = {}
  local b = {}
  function b:write(...)
    for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
    return self
  end
  function b:text() return table.concat(parts) end
  return b
end

return export
