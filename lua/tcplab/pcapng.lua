--- pcapng bytes, as tcpdump -r and Wireshark read them: a Section Header
-- Block, one Interface Description Block (link type, snaplen, if_name,
-- if_tsresol) and an Enhanced Packet Block per frame. Pure Lua
-- (string.pack), little-endian, no I/O: the caller writes the bytes
-- (`tcplab trace --pcap` through tcplab.export.textfile, atomically).
-- The layout is the one of the pcapng draft (draft-ietf-opsawg-pcapng):
-- every block is type, total length, body padded to 4 bytes, total length.
local pcapng = {}

pcapng.LINKTYPE_ETHERNET = 1
pcapng.TSRESOL_NS = 9        -- if_tsresol: 10^-9 s per unit

local SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
local MAGIC = 0x1A2B3C4D

local function pad4(n) return (4 - n % 4) % 4 end

-- One option: code, length, value padded to 4.
local function option(code, value)
  return ("<I2I2"):pack(code, #value) .. value .. ("\0"):rep(pad4(#value))
end
local END_OF_OPTIONS = ("<I2I2"):pack(0, 0)

-- A block: type, total length, body, total length (body already padded).
local function block(kind, body)
  assert(#body % 4 == 0, "pcapng: a block body must be padded to 4 bytes")
  local total = 12 + #body
  return ("<I4I4"):pack(kind, total) .. body .. ("<I4"):pack(total)
end
pcapng.block = block

--- The Section Header Block and the one Interface Description Block:
-- opts = { linktype = 1, snaplen = N, ifname = "lo" }; times in nanoseconds
-- (if_tsresol 9).
function pcapng.header(opts)
  local shb = block(SHB, ("<I4I2I2i8"):pack(MAGIC, 1, 0, -1) ..
                          option(4, "tcplab") .. END_OF_OPTIONS)   -- shb_userappl
  local idb = block(IDB, ("<I2I2I4"):pack(opts.linktype or pcapng.LINKTYPE_ETHERNET, 0, opts.snaplen) ..
                          (opts.ifname and option(2, opts.ifname) or "") ..        -- if_name
                          option(9, string.char(pcapng.TSRESOL_NS)) .. END_OF_OPTIONS)
  return shb .. idb
end

--- One Enhanced Packet Block: the captured bytes, the time in nanoseconds
-- since the epoch (an integer), the frame's length on the wire (>= #data).
function pcapng.packet(data, ns, wire_len)
  local hi, lo = ns >> 32, ns & 0xffffffff
  return block(EPB, ("<I4I4I4I4I4"):pack(0, hi, lo, #data, wire_len or #data) .. data ..
                    ("\0"):rep(pad4(#data)))
end

--- A whole file: the header, then each frame ({ raw, wall_ns, wire_len }).
function pcapng.file(opts, frames)
  local parts = { pcapng.header(opts) }
  for _, f in ipairs(frames) do parts[#parts + 1] = pcapng.packet(f.raw, f.wall_ns, f.wire_len) end
  return table.concat(parts)
end

return pcapng
