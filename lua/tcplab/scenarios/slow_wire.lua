--- What a slow or lossy wire does to TCP, asserted on the wire (NFQUEUE,
-- tcplab.fault.queue). First the server's SYN-ACKs are held until the client
-- has sent its SYN three times: the SYN is retransmitted, same sequence
-- number each time, and no SYN-ACK is on the wire before the third. Then the
-- client's first data segment is lost and four more follow: the server
-- answers each out-of-order segment with a duplicate ACK (ack = the lost
-- segment's sequence number), and the client sends the lost segment again
-- after the third of them (fast retransmit), before its retransmission
-- timer: the namespace's TcpExt TCPTimeouts does not move. The scenario's
-- namespace turns RACK and tail loss probes off (tcp_recovery = 0,
-- tcp_early_retrans = 0) to see the classic threshold.
--
-- Holding a data segment instead of dropping it would show no retransmit
-- at all while it is held: the kernel does not retransmit a segment whose
-- earlier copy is still queued in this host (TCPSpuriousRtxHostQueues,
-- doc/kernel-nfqueue.md).
local tcplab = require "tcplab.kernel"
local fault = require "tcplab.fault"
local kit = require "tcplab.scenarios.kit"

local SYNS = 3           -- SYNs on the wire before the SYN-ACKs go
local SEGMENTS = 5       -- data segments written, the first one lost

-- TcpExt counters of the current namespace (the scenario's own).
local function tcpext()
  local f = io.open("/proc/net/netstat")
  if not f then return {} end
  local out = {}
  while true do
    local names, values = f:read("l"), f:read("l")
    if not (names and values) then break end
    if names:match("^TcpExt:") then
      local n = {}
      for w in names:gmatch("%S+") do n[#n + 1] = w end
      local i = 0
      for v in values:gmatch("%S+") do
        i = i + 1
        out[n[i]] = tonumber(v)
      end
    end
  end
  f:close()
  return out
end

return {
  title = "slow_wire",
  needs_root = true,
  claim = "held SYN-ACKs make the client retransmit its SYN; a lost segment is resent after 3 duplicate ACKs",
  run = function(opts)
    local s = kit.begin("slow_wire", opts)
    local tl, srv = s.tl, s.srv
    local syns, lost = {}, nil
    local phase = "handshake"
    local q
    q = assert(fault.queue{ port = s.port, timeout = 10,
      warn = function(line) tl:check(false, line) end,
      on_packet = function(pkt)
        if phase == "handshake" then
          if pkt.flags == "S" then
            syns[#syns + 1] = pkt.seq
            if #syns == SYNS then q:release() end   -- after this SYN has gone
            return "pass"
          end
          if pkt.flags == "SA" and #syns < SYNS then return { hold = true } end
          return "pass"
        end
        if pkt.direction == "to" and pkt.len > 0 and not lost then
          lost = pkt.seq
          return "drop"
        end
        return "pass"
      end })
    tl:step("client", ("fault: queue the port's packets (NFQUEUE via %s), hold SYN-ACKs until the %d. SYN")
      :format(q.via, SYNS), tostring(q))
    local cli <close> = tl:step("client", "socket()", assert(tcplab.socket(s.family)))
    local ok, err, errno = cli:connect(s.host, s.port, 0)
    tl:watch("client", cli, s.host, s.port)
    tl:step("client", ("connect(%s, %d) non-blocking"):format(s.host, s.port), ok, err, errno)
    local conn
    local done = q:run_until(function()
      conn = conn or srv:accept(0)
      return conn ~= nil
    end, 15)
    tl:check(done, "the handshake completed while the queue was served")
    if conn then
      tl:watch("server", conn)
      tl:step("server", "accept()", tostring(conn))
    end
    local same = #syns == SYNS
    for _, seq in ipairs(syns) do same = same and seq == syns[1] end
    tl:check(same, ("the client sent its SYN %d times, every one with sequence number %s"):format(#syns, tostring(syns[1])))

    phase = "data"
    -- Classic loss recovery (duplicate-ACK threshold 3, tcp_reordering): in
    -- the scenario's own namespace RACK and tail loss probes are off (with
    -- them this kernel resent the segment after one duplicate ACK or on a
    -- probe timer), and so is autocorking (which merges small writes while
    -- an earlier segment is still queued in this host).
    local sys = require "tcplab.sys"
    for _, name in ipairs({ "tcp_recovery", "tcp_early_retrans", "tcp_autocorking" }) do
      sys.writefile("/proc/sys/net/ipv4/" .. name, "0")
    end
    local before = tcpext()
    assert(cli:setopt("nodelay", true))
    local sent = 0
    for i = 1, SEGMENTS do   -- one segment per write (nodelay, no autocorking)
      local chunk = string.char(64 + i):rep(100)
      assert(cli:write(chunk))
      sent = sent + #chunk
    end
    tl:step("client", ("write() %d segments of 100 bytes; the first is dropped once"):format(SEGMENTS), true)
    local got = ""
    local all = conn and q:run_until(function()
      got = got .. (conn:read(4096, 0) or "")
      return #got >= sent
    end, 10)
    tl:check(all and #got == sent, ("the server read all %d bytes, in order (%d)"):format(sent, #got))
    q:run_for(0.1)   -- the last ACKs
    local after = tcpext()
    tl:step("client", "fault: lift the queue", q:lift())
    local timeouts = (after.TCPTimeouts or 0) - (before.TCPTimeouts or 0)
    local extra = { syns = #syns, lost_seq = lost, rto_timeouts = timeouts,
                    fast_retransmits = (after.TCPFastRetrans or 0) - (before.TCPFastRetrans or 0),
                    sack_recoveries = (after.TCPSackRecovery or 0) - (before.TCPSackRecovery or 0),
                    queue = tostring(q) }
    tl:check(timeouts == 0, ("no retransmission timeout during the data (TcpExt TCPTimeouts +%d)"):format(timeouts))

    kit.on_wire(s, "the retransmits on the wire", function()
      local first_sa, syns_before, dupacks, resent, copies = nil, 0, 0, nil, 0
      for i, seg in ipairs(s.segments) do
        if seg.from == "server" and seg.flags == "SA" and not first_sa then first_sa = i end
        if seg.from == "client" and seg.flags == "S" and not first_sa then syns_before = syns_before + 1 end
        if seg.from == "server" and seg.len == 0 and seg.ack == lost and seg.flags == "A" and not resent then
          dupacks = dupacks + 1
        end
        if seg.from == "client" and seg.len > 0 and seg.seq == lost then
          resent = resent or i
          copies = copies + 1
        end
      end
      tl:check(syns_before == SYNS, ("on the wire: %d SYNs before the first SYN-ACK"):format(syns_before))
      tl:check(resent ~= nil and dupacks >= 3,
               ("on the wire: %d duplicate ACKs (ack %s) before the lost segment was sent again"):format(dupacks, tostring(lost)))
      tl:check(copies == 1, ("the lost segment is on the wire once (the resend; the first never left): %d"):format(copies))
      extra.dupacks = dupacks
    end)
    if conn then conn:close() end
    cli:close()
    srv:close()
    return kit.finish(s, {
      client = { "CLOSE>SYN_SENT>ESTABLISHED" },
      server = { "LISTEN>SYN_RECV>ESTABLISHED" },
    }, extra)
  end,
}
