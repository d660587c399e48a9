local tcplab = require "tcplab"
local support = require "support"
local text = require "tcplab.format.text"

describe("list --info (TCP_INFO decoded like ss -ti) #kernel #root", function()
  it("writes rates as ss does: three digits and a unit", function()
    assert.same({ "0bps", "999bps", "1.5Kbps", "2.5Mbps", "30.5Gbps", "275Gbps", "1.2Tbps" },
      { text.bps(0), text.bps(999), text.bps(1500), text.bps(2.5e6), text.bps(30.5e9), text.bps(275e9),
        text.bps(1.2e12) })
  end)

  if not support.is_root() then
    pending("needs root: a network namespace of our own")
    return
  end
  setup(function() assert(tcplab.netns.unshare()) end)

  it("the dump carries the congestion control name with info = true, and only then", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local want = support.slurp("cat /proc/sys/net/ipv4/tcp_congestion_control"):gsub("%s+$", "")
    local rec = assert(tcplab.snapshot{ sport = port, info = true })[1]
    assert.equal(want, rec.cong)
    assert.is_nil(assert(tcplab.snapshot{ sport = port })[1].cong)
    local cols = assert(tcplab.snapshot{ sport = port, info = true, columns = true })
    assert.same({ want }, cols.cong)
    assert.is_nil(assert(tcplab.snapshot{ sport = port, columns = true }).cong)
  end)

  it("prints cong, rtt, cwnd, retrans and delivery_rate as ss -ti prints them for an idle sender", function()
    local srv <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local cli <close> = assert(tcplab.connect("127.0.0.1", port, 2))
    local conn <close> = assert(srv:accept(2))
    assert(cli:write(("x"):rep(200000), 2))
    local got = 0
    for _ = 1, 200000 do   -- bounded: each read brings at least one byte or the test fails
      if got >= 200000 then break end
      local chunk = assert(conn:read(65536, 2))
      assert.is_true(#chunk > 0, ("EOF after %d of 200000 bytes"):format(got))
      got = got + #chunk
    end
    assert.equal(200000, got)
    local cport = select(2, cli:getsockname())
    -- idle now: no new samples, the numbers stay put between the two readings
    assert.truthy(support.wait_for(function() return cli:info().unacked == 0 end, 2))
    local out, rc = support.tcplab(("list --info --sport %d --dport %d"):format(cport, port))
    assert.equal(0, rc, out)
    local line = out:match("\n\t ([^\n]+)")
    assert.truthy(line, out)
    local cong, rtt, cwnd, r1, r2, rate =
      line:match("^(%S+) rtt:(%S+) cwnd:(%d+) retrans:(%d+)/(%d+) delivery_rate:(%S+)$")
    assert.truthy(cong, line)
    local ss = support.slurp(("ss -tiH 'sport = :%d and dport = :%d'"):format(cport, port))
    assert.equal(cong, ss:match("\n%s+(%S+)"))
    -- whole fields: after a retransmit (a busy host) ss also prints bytes_retrans:N, and rcv_rtt:
    assert.equal("rtt:" .. rtt, ss:match("%srtt:%S+"):sub(2))
    assert.equal("cwnd:" .. cwnd, ss:match("%scwnd:%S+"):sub(2))
    assert.equal(ss:match("%sretrans:(%S+)") or "0/0", r1 .. "/" .. r2)
    assert.equal(ss:match("delivery_rate (%S+)") or "0bps", rate)
  end)

  it("refuses --info=x with exit status 2", function()
    local out, rc = support.tcplab("list --info=yes")
    assert.equal(2, rc, out)
    assert.matches("^tcplab: ", out)
  end)
end)
