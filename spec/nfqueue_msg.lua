--- Build the datagrams the kernel sends an NFQUEUE listener (for the parser's
-- specs and the fuzzer's seeds): one NFQNL_MSG_PACKET message per packet.
local M = {}

local function attr(kind, value)
  local len = 4 + #value
  return string.pack("<I2I2", len, kind) .. value .. ("\0"):rep((4 - len % 4) % 4)
end

--- A packet message: id, the IP packet's bytes, hook (default 3, LOCAL_OUT), mark.
-- `len` (optional) overrides the header's nlmsg_len, to lie about it.
function M.packet(id, ip, hook, mark, len)
  local body = string.pack("BBI2", 0, 0, 0)                       -- nfgenmsg: AF_UNSPEC, v0, queue 0 (be)
    .. attr(1, string.pack(">I4I2B", id, 0x0800, hook or 3))     -- NFQA_PACKET_HDR
    .. (mark and attr(3, string.pack(">I4", mark)) or "")          -- NFQA_MARK
    .. attr(10, ip)                                                -- NFQA_PAYLOAD
  local total = 16 + #body
  return string.pack("<I4I2I2I4I4", len or total, (3 << 8) | 0, 0, 0, 0) .. body
end

--- An NLMSG_ERROR message carrying -errno (a refused verdict).
function M.error(errno)
  return string.pack("<I4I2I2I4I4", 16 + 20, 2, 0, 0, 0) .. string.pack("<i4", -errno) .. ("\0"):rep(16)
end

return M
