--- tcplab.kill: close sockets with SOCK_DESTROY, like `ss -K`.
-- The sockets are the snapshot's for the filter (pid/comm included); each is
-- named to the kernel by its four-tuple and cookie, so a socket that went
-- away since the dump, or whose four-tuple a new socket took, is left alone
-- (the kernel answers ENOENT: reported as gone, not as a failure).
local args = require "tcplab.args"

local kill = {}

-- The filter fields that pick sockets; family and netns alone pick them all.
kill.NARROWING = { "states", "sport", "dport", "port", "src", "dst", "pid", "comm" }

local Result = {}
Result.__index = Result

--- "closed ESTABLISHED 127.0.0.1:8080 -> 127.0.0.1:41234" and the reason when not.
function Result.__tostring(r)
  local rec = r.record
  local function ep(addr, port)
    return (addr:find(":", 1, true) and "[" .. addr .. "]" or addr) .. ":" .. port
  end
  local what = r.dry_run and "would close" or r.ok and "closed" or r.gone and "gone" or "failed"
  local s = ("%s %s %s -> %s"):format(what, rec.state, ep(rec.src, rec.sport), ep(rec.dst, rec.dport))
  if not r.ok and not r.dry_run then s = s .. (" (%s)"):format(r.err) end
  return s
end

local function narrowing(f)
  for _, k in ipairs(kill.NARROWING) do
    local v = f[k]
    if v ~= nil and not (type(v) == "table" and next(v) == nil) then return true end
  end
  return false
end

--- kill(filter [, { dry_run = true }]): a list of results, one per socket the
-- filter matched, each { record, ok, gone, err, errno, dry_run }: ok when the
-- kernel closed it (or, dry_run, would be asked to), gone when it was no
-- longer there (ENOENT). nil, msg, errno when the dump or netlink failed.
function kill.kill(filter, opts)
  local tcplab = require "tcplab.kernel"
  if type(filter) ~= "table" then
    args.error("kill", 1, "filter table expected, got " .. args.show(filter))
  end
  if not narrowing(filter) then
    args.error("kill", 1, "the filter names no socket in particular (it would close every socket); " ..
      "give one of " .. table.concat(kill.NARROWING, ", "))
  end
  if filter.netns == "all" then args.error("kill", 1, "netns: one namespace at a time (not \"all\")") end
  if filter.columns then args.error("kill", 1, "columns: not with kill (it needs the records)") end
  if opts ~= nil and type(opts) ~= "table" then
    args.error("kill", 2, "options table expected ({ dry_run = true }), got " .. args.show(opts))
  end
  local dry = opts and opts.dry_run
  if dry ~= nil and type(dry) ~= "boolean" then
    args.error("kill", 2, "dry_run: boolean expected, got " .. args.show(dry))
  end
  local records, err, errno = tcplab.snapshot(filter)
  if not records then return nil, err, errno end
  local results = {}
  if dry then
    for i, r in ipairs(records) do
      results[i] = setmetatable({ record = r, ok = true, dry_run = true }, Result)
    end
    return results
  end
  local answers, derr, derrno = {}, nil, nil
  if records[1] then answers, derr, derrno = tcplab.core.destroy(records, filter.netns) end
  if not answers then return nil, derr, derrno end
  for i, r in ipairs(records) do
    local a = answers[i]
    results[i] = setmetatable({ record = r, ok = a.ok, gone = a.errno == tcplab.errno.ENOENT or nil,
                                err = a.err, errno = a.errno }, Result)
  end
  return results
end

return kill
