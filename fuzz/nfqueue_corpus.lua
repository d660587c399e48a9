--- Write seeds for fuzz/nfqueue_fuzz.c to DIR: the captured frames of
-- fuzz/capture_corpus (Ethernet header cut off) wrapped as the datagrams the
-- kernel sends an NFQUEUE listener, one packet each and all in one, plus a
-- refused verdict. No root: built from the committed capture corpus.
--   LUA_PATH="spec/?.lua;;" lua5.4 fuzz/nfqueue_corpus.lua DIR
local msg = require "nfqueue_msg"
local dir = assert(arg[1], "usage: nfqueue_corpus.lua DIR")
local names = {}
for name in io.popen("ls fuzz/capture_corpus"):lines() do names[#names + 1] = name end
local all = {}
for i, name in ipairs(names) do
  local f = assert(io.open("fuzz/capture_corpus/" .. name, "rb"))
  local frame = f:read("a")
  f:close()
  local m = msg.packet(i, frame:sub(15), 3, i % 2 == 0 and 0x7cb1 or nil)
  all[#all + 1] = m
  local out = assert(io.open(dir .. "/" .. name, "wb"))
  out:write(m)
  out:close()
end
local out = assert(io.open(dir .. "/batch-with-error", "wb"))
out:write(table.concat(all) .. msg.error(2))
out:close()
