--- The packet decoder (C, no Lua inside) and the capture userdata.
local tcplab = require "tcplab"
local support = require "support"

local function slurp(path)
  local f <close> = assert(io.open(path, "rb"))
  return f:read("a")
end

local CORPUS = "fuzz/capture_corpus/"

describe("the packet decoder #unit", function()
  it("reads an IPv4 SYN as captured on lo: ports, seq, flags and every option", function()
    local s = assert(tcplab.capture.parse(slurp(CORPUS .. "inet-01-S"), "frame"))
    assert.equal("inet", s.family)
    assert.equal("127.0.0.1", s.src)
    assert.equal("S", s.flags)
    assert.equal(0, s.ack)
    assert.equal(0, s.len)
    assert.equal(65495, s.options.mss)
    assert.is_number(s.options.wscale)
    assert.is_true(s.options.sack_ok)
    assert.is_number(s.options.ts.val)
  end)

  it("reads an IPv6 SYN-ACK that acknowledges the SYN's seq + 1", function()
    local syn = assert(tcplab.capture.parse(slurp(CORPUS .. "inet6-01-S"), "frame"))
    local sa = assert(tcplab.capture.parse(slurp(CORPUS .. "inet6-02-SA"), "frame"))
    assert.equal("inet6", sa.family)
    assert.equal("fd74:636c::1", sa.src)
    assert.equal("SA", sa.flags)
    assert.equal((syn.seq + 1) & 0xffffffff, sa.ack)
    assert.equal(syn.sport, sa.dport)
    assert.equal(65476, sa.options.mss)   -- lo MTU 65536 - 40 (IPv6) - 20 (TCP)
  end)

  it("counts the payload from the IP length, and letters flags in FSRPAUEW order", function()
    local d = assert(tcplab.capture.parse(slurp(CORPUS .. "inet-04-PA"), "frame"))
    assert.equal("PA", d.flags)
    assert.equal(5, d.len)
    local fin = assert(tcplab.capture.parse(slurp(CORPUS .. "inet6-06-FA"), "frame"))
    assert.equal("FA", fin.flags)
    assert.equal(0, fin.len)
    local rst = assert(tcplab.capture.parse(slurp(CORPUS .. "inet-12-RA"), "frame"))
    assert.equal("RA", rst.flags)
  end)

  it("takes a bare IP packet as well as a frame", function()
    local frame = slurp(CORPUS .. "inet6-03-A")
    assert.same(tcplab.capture.parse(frame, "frame"), tcplab.capture.parse(frame:sub(15), "ip"))
    assert.is_nil(tcplab.capture.parse(frame:sub(15), "frame"))
  end)

  it("returns nil for every truncation of a real packet short of the TCP header, and never reads past it", function()
    for _, name in ipairs({ "inet-01-S", "inet6-02-SA", "inet-04-PA" }) do
      local frame = slurp(CORPUS .. name)
      local whole = assert(tcplab.capture.parse(frame, "frame"))
      local _, optend = frame:find(".", 15 + (whole.family == "inet6" and 40 or 20) + 20 - 1)
      for n = 0, #frame - 1 do
        local s = tcplab.capture.parse(frame:sub(1, n), "frame")
        -- the fixed header and the options as the data offset says: all or nothing
        assert.is_true(s == nil or n >= optend, name .. " cut at " .. n)
      end
    end
  end)

  it("returns nil for garbage, not an error", function()
    math.randomseed(42)
    for _ = 1, 2000 do
      local t = {}
      for i = 1, math.random(0, 120) do t[i] = string.char(math.random(0, 255)) end
      local bytes = table.concat(t)
      local ok = pcall(tcplab.capture.parse, bytes, "frame")
      assert.is_true(ok)
      ok = pcall(tcplab.capture.parse, bytes, "ip")
      assert.is_true(ok)
    end
    assert.is_nil(tcplab.capture.parse(""))
    assert.is_nil(tcplab.capture.parse(("\0"):rep(60)))
  end)

  it("stops at an option whose length lies, keeping those before it", function()
    local frame = slurp(CORPUS .. "inet-01-S")
    -- the first option (MSS, kind 2 len 4) right after the 20-byte TCP header
    local at = 14 + 20 + 20 + 1
    assert.equal(2, frame:byte(at))
    local bad = frame:sub(1, at + 4 + 1) .. "\255" .. frame:sub(at + 4 + 2 + 1)   -- next option's length 255
    local s = assert(tcplab.capture.parse(bad, "frame"))
    assert.equal(65495, s.options.mss)
  end)
end)

describe("capture.open's options at their bounds #unit", function()
  -- "nope..." is no interface here: an option accepted gets that failure (nil,
  -- message) before any socket; an option refused raises naming itself.
  local open = tcplab.capture.open
  local function refused(opts, what)
    local ok, err = pcall(open, 80, opts)
    assert.is_false(ok, what)
    assert.matches(what, err)
  end
  local function accepted(opts)
    local c, err = open(80, opts)
    assert.is_nil(c)
    assert.matches("no interface '" .. opts.interface .. "'", err, 1, true)
  end

  it("snaplen 128..262144, both ends included", function()
    accepted{ interface = "nope0", snaplen = 128 }
    accepted{ interface = "nope0", snaplen = 262144 }
    refused({ interface = "nope0", snaplen = 127 }, "snaplen: an integer 128%.%.262144")
    refused({ interface = "nope0", snaplen = 262145 }, "snaplen: an integer 128%.%.262144")
  end)

  it("an interface name of 15 bytes at most (IFNAMSIZ counts the NUL)", function()
    accepted{ interface = ("n"):rep(15) }
    refused({ interface = ("n"):rep(16) }, "interface: a name of 1%.%.15 bytes")
    refused({ interface = "" }, "interface: a name of 1%.%.15 bytes")
  end)

  it("buffer_kb 1..1048576", function()
    accepted{ interface = "nope0", buffer_kb = 1 }
    accepted{ interface = "nope0", buffer_kb = 1048576 }
    refused({ interface = "nope0", buffer_kb = 0 }, "buffer_kb: an integer 1%.%.1048576")
    refused({ interface = "nope0", buffer_kb = 1048577 }, "buffer_kb: an integer 1%.%.1048576")
  end)
end)

describe("a capture #kernel #root", function()
  local root = support.is_root()

  it("needs root; without it open says why", function()
    if root then
      pending("runs as root here: the refusal is for a user without CAP_NET_RAW")
      return
    end
    local cap, err = tcplab.capture.open(5000)
    assert.is_nil(cap)
    assert.matches("capture socket", err)
  end)

  it("sees each segment of a loopback connection once, stamped by the kernel when sent (tcplab.now()'s clock)", function()
    if not root then
      pending("needs root: a capture socket (AF_PACKET) in a namespace of our own")
      return
    end
    local home <close> = assert(tcplab.netns.open())
    local made <close> = assert(tcplab.netns.unshare())
    local ok, err = pcall(function()
      local srv <close> = assert(tcplab.socket("inet"))
      assert(srv:bind("127.0.0.1", 0))
      assert(srv:listen(4))
      local port = select(2, srv:getsockname())
      local cap <close> = assert(tcplab.capture.open(port))
      local t0 = tcplab.now()
      local c <close> = assert(tcplab.socket("inet"))
      assert(c:connect("127.0.0.1", port, 2))
      local t1 = tcplab.now()
      local a <close> = assert(srv:accept(2))
      tcplab.sleep(0.2)   -- read late: the times must still be those of the wire
      local segs = cap:read(1)
      local flags = {}
      for i, s in ipairs(segs) do
        flags[i] = s.flags
        assert.is_true(s.t >= t0 and s.t <= t1 + 0.01, s.flags .. " at " .. (s.t - t0))
      end
      assert.is_true(segs[2].t <= t1, "the SYN-ACK was on the wire before connect() returned")
      assert.same({ "S", "SA", "A" }, flags)
      assert.equal((segs[1].seq + 1) & 0xffffffff, segs[2].ack)
      local raw = cap:read(0)
      assert.same({}, raw)
      assert.equal(0, cap:drops())
      assert.equal(0, cap:undecoded())
      cap:close()
      assert.equal("capture (closed)", tostring(cap))
      assert.error_matches(function() cap:read() end, "attempt to use a closed capture")
      assert.is_true(cap:close())
    end)
    assert(home:enter())
    assert(ok, err)
  end)
end)
