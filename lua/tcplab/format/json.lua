--- JSON through lua-cjson: one object per socket with the Lua records' own
-- field names, numbers as numbers. Debian's cjson 2.1.0 encodes an empty
-- table as {} and has no empty_array, so a list writes its brackets itself.
local cjson = require "cjson"
local valid_utf8 = require "tcplab.format.valid_utf8"

local json = {}

-- cjson copies a string's bytes as they are: a name with bytes that are not
-- UTF-8 (a namespace, a comm) would make the document invalid. Such bytes
-- can only be inside string literals, where \\xNN (an escaped backslash,
-- then xNN) is valid: every piece written goes through this.
local function writer(out)
  out = out or io.stdout
  return {
    write = function(_, ...)
      local n = select("#", ...)
      local parts = { ... }
      for i = 1, n do parts[i] = valid_utf8.fix(tostring(parts[i]), "\\\\") end
      return out:write(table.unpack(parts, 1, n))
    end,
  }
end

-- A list of values: "[...]" whatever its length ("[]" when empty).
local function list(items)
  local parts = {}
  for i, v in ipairs(items) do parts[i] = cjson.encode(v) end
  return "[" .. table.concat(parts, ",") .. "]"
end
json.encode_list = list

-- A record whose owners list stays a list when empty ("owners":[]). A row
-- of tcplab.each is a userdata (a lazy row): cjson sees its pairs() copy.
local function record(r)
  if type(r) == "userdata" then
    local copy = {}
    for k, v in pairs(r) do copy[k] = v end
    r = copy
  end
  if type(r.owners) ~= "table" then return cjson.encode(r) end
  local copy = {}
  for k, v in pairs(r) do if k ~= "owners" then copy[k] = v end end
  local body = cjson.encode(copy)
  return body:sub(1, -2) .. (next(copy) and "," or "") .. '"owners":' .. list(r.owners) .. "}"
end

--- One array of socket records.
function json.list(records, out)
  out = writer(out)
  local parts = {}
  for i, r in ipairs(records) do parts[i] = record(r) end
  out:write("[", table.concat(parts, ","), "]\n")
end

--- Counts as one object, state -> n ({} when no socket).
function json.counts(counts, out)
  out = writer(out)
  out:write(cjson.encode(counts), "\n")
end

--- Counts per namespace, or per port or address (counts{by = ...}):
-- { [key] = counts } (each {} when empty; keys as strings, as JSON wants).
function json.counts_by_netns(by_name, out)
  out = writer(out)
  local names = {}
  for name in pairs(by_name) do names[#names + 1] = name end
  table.sort(names)
  local parts = {}
  for _, name in ipairs(names) do
    parts[#parts + 1] = cjson.encode(tostring(name)) .. ":" .. cjson.encode(by_name[name])
  end
  out:write("{", table.concat(parts, ","), "}\n")
end

--- The seed's lines as name -> count, in the style's spelling.
function json.lines(_, out, by_name)
  out = writer(out)
  out:write(cjson.encode(by_name or {}), "\n")
end

--- tcplab.summary()'s table; its lists stay lists when empty.
function json.summary(s, out)
  out = writer(out)
  local copy = {}
  for k, v in pairs(s) do if k ~= "full_listeners" then copy[k] = v end end
  local body = cjson.encode(copy)
  out:write(body:sub(1, -2), (next(copy) and "," or ""), '"full_listeners":', list(s.full_listeners), "}\n")
end

--- tcplab.namespaces()'s list.
function json.namespaces(list_, out)
  out = writer(out)
  out:write(list(list_), "\n")
end

--- A scenario's result as events for other tools: { scenario, ok, calls,
-- connections = { { client, server, segments, transitions } }, checks },
-- times in seconds since the scenario began, sequence numbers absolute,
-- flags as letters from FSRPAUEW; one entry per segment on the wire.
function json.scenario(result, out)
  out = writer(out)
  local t0 = result.t0 or 0
  local function obj(fields, keys)   -- scalars only, in a fixed key order
    local parts = {}
    for _, k in ipairs(keys) do
      local v = fields[k]
      if v ~= nil then parts[#parts + 1] = cjson.encode(k) .. ":" .. cjson.encode(v) end
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  local calls = {}
  for i, row in ipairs(result.steps or {}) do
    calls[i] = obj({ t = (row.t or t0) - t0, side = row.side, call = row.call, result = row.result, note = row.note },
                   { "t", "side", "call", "result", "note" })
  end
  local conns = {}
  for i, c in ipairs(require("tcplab.format.ladder").connections(result)) do
    local segs, trs = {}, {}
    for j, s in ipairs(c.segments) do
      segs[j] = obj({ t = s.t - t0, from = s.from, flags = s.flags, seq = s.seq, ack = s.ack, len = s.len, win = s.win,
                      rseq = s.rseq, rack = s.rack },
                    { "t", "from", "flags", "seq", "ack", "len", "win", "rseq", "rack" })
    end
    for j, tr in ipairs(c.transitions) do
      trs[j] = obj({ t = tr.t - t0, side = tr.side, from = tr.from, to = tr.to, inferred = tr.inferred },
                   { "t", "side", "from", "to", "inferred" })
    end
    conns[i] = ("{%s:%s,%s:%s,%s:[%s],%s:[%s]}"):format(cjson.encode("client"), cjson.encode(c.client or cjson.null),
      cjson.encode("server"), cjson.encode(c.server or cjson.null), cjson.encode("segments"), table.concat(segs, ","),
      cjson.encode("transitions"), table.concat(trs, ","))
  end
  local checks = {}
  for i, c in ipairs(result.checks or {}) do
    checks[i] = obj({ ok = c.ok, claim = c.claim, unobserved = c.unobserved }, { "ok", "claim", "unobserved" })
  end
  out:write("{", cjson.encode("scenario"), ":", cjson.encode(result.name), ",",
            cjson.encode("ok"), ":", cjson.encode(result.ok and true or false), ",",
            cjson.encode("calls"), ":[", table.concat(calls, ","), "],",
            cjson.encode("connections"), ":[", table.concat(conns, ","), "],",
            cjson.encode("checks"), ":[", table.concat(checks, ","), "]",
            result.capture_note and ("," .. cjson.encode("capture_note") .. ":" .. cjson.encode(result.capture_note)) or "",
            result.drops and ("," .. cjson.encode("drops") .. ":" .. cjson.encode(result.drops)) or "",
            "}\n")
end

return json
