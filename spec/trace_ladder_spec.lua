--- `tcplab trace --port P --ladder`: any port's segments as the scenarios'
-- ladder, as JSON, as pcapng that tcpdump reads. The command runs as a user
-- runs it (a child process) against traffic this spec makes in a namespace
-- of its own (named to the child by /proc/PID/fd/N, so nothing is left
-- behind if the spec dies).
local support = require "support"
local tcplab = require "tcplab"
local pcapng = require "tcplab.pcapng"
local cjson = require "cjson"

local run = support.tcplab

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

describe("pcapng bytes #unit", function()
  it("writes the section header and the interface block byte for byte (link type, snaplen, if_name, if_tsresol 9)", function()
    local h = pcapng.header{ linktype = 1, snaplen = 262144, ifname = "lo" }
    assert.equal(
      -- SHB: type, length 44, magic, version 1.0, section length -1, shb_userappl "tcplab", end, length
      "0a0d0d0a" .. "2c000000" .. "4d3c2b1a" .. "0100" .. "0000" .. "ffffffffffffffff" ..
      "0400" .. "0600" .. "7463706c6162" .. "0000" .. "00000000" .. "2c000000" ..
      -- IDB: type 1, length 40, link type 1, reserved, snaplen, if_name "lo", if_tsresol 9, end, length
      "01000000" .. "28000000" .. "0100" .. "0000" .. "00000400" ..
      "0200" .. "0200" .. "6c6f0000" .. "0900" .. "0100" .. "09000000" .. "00000000" .. "28000000",
      hex(h))
  end)

  it("writes an enhanced packet block: nanoseconds split high/low, lengths, data padded to 4", function()
    local ns = 1796206636411799777
    local b = pcapng.packet("abcde", ns, 70)
    assert.equal(40, #b)   -- 28 + 5 bytes padded to 8 + 4
    assert.equal("06000000" .. "28000000" .. "00000000" ..
      ("%08x"):format(ns >> 32):gsub("(..)(..)(..)(..)", "%4%3%2%1") ..
      ("%08x"):format(ns & 0xffffffff):gsub("(..)(..)(..)(..)", "%4%3%2%1") ..
      "05000000" .. "46000000" .. "6162636465000000" .. "28000000", hex(b))
    for n = 0, 9 do   -- every length: the block stays a multiple of 4, both lengths agree
      local blk = pcapng.packet(("x"):rep(n), 0)
      assert.equal(0, #blk % 4)
      assert.equal(32 + (n + 3) // 4 * 4, #blk)   -- padded to 4, not a word more
      assert.equal(#blk, string.unpack("<I4", blk, 5))
      assert.equal(#blk, string.unpack("<I4", blk, #blk - 3))
    end
  end)
end)

describe("trace --ladder refuses bad input #unit", function()
  it("usage errors exit 2 and name the option", function()
    local cases = {
      { "trace --port 1 --port 2 --ladder", "one %-%-port P" },
      { "trace --port 1 --ladder --snaplen 10", "%-%-snaplen: bytes 128%.%.262144" },
      { "trace --port 1 --snaplen 200", "%-%-snaplen needs %-%-ladder" },
      { "trace --port 1 --interface lo", "%-%-interface needs %-%-ladder" },
      { "trace --port 1 --format json", "%-%-format json needs %-%-ladder" },
      { "trace --port 1 --ladder --netns all", "one namespace at a time" },
      { "trace --port 1 --ladder --owners", "%-%-owners: not with %-%-ladder" },
      { "trace --port 1 --ladder --pcap dir/", "%-%-pcap: a file path expected" },
      { "trace --port 1 --ladder --interface ''", "%-%-interface: an interface name" },
      { "trace --port 1 --ladder --buffer-size 0", "%-%-buffer%-size: KiB 1%.%.1048576" },
      { "trace --port 1 --buffer-size 8", "%-%-buffer%-size needs %-%-ladder" },
    }
    for _, c in ipairs(cases) do
      local out, rc = run(c[1])
      assert.equal(2, rc, c[1] .. ": " .. out)
      assert.matches(c[2], out)
    end
  end)
end)

describe("ladder_capture.start's arguments #unit", function()
  it("raises naming the argument: a port 1..65535, one namespace path", function()
    local start = require("tcplab.trace.ladder_capture").start
    local ok, err = pcall(start, { port = 0 })
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'start' %(port: port 1%.%.65535 expected, got 0%)", err)
    ok, err = pcall(start, { port = 80, netns = "all" })
    assert.is_false(ok)
    assert.matches("netns: a path expected %(one namespace%)", err)
    ok, err = pcall(start, 80)
    assert.is_false(ok)
    assert.matches("table expected, got number", err)
  end)
end)

-- Start `tcplab trace ARGS` in the background; returns the tcplab pid and
-- readers of its stdout and stderr once it says it is capturing (or nil
-- when it ended before that).
local function start(args, dir)
  local root = support.slurp("pwd"):gsub("%s+$", "")
  assert(os.execute(("cd %s && (env -u LUA_PATH -u LUA_CPATH bin/tcplab trace %s >%s/out 2>%s/err; " ..
    "echo $? >%s/rc) </dev/null >/dev/null 2>&1 & echo $! >%s/pid"):format(support.shq(root), args, dir, dir, dir, dir)))
  local shell = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/pid 2>/dev/null") end))
  local pid = support.wait_for(function() return support.children(shell)[1] end)
  local function out() return support.slurp("cat " .. dir .. "/out 2>/dev/null") end
  local function err() return support.slurp("cat " .. dir .. "/err 2>/dev/null") end
  support.wait_for(function()
    return err():find("Ctrl-C to stop", 1, true) or support.slurp("cat " .. dir .. "/rc 2>/dev/null") ~= ""
  end, 20)
  return pid, out, err
end

local function exit_status(dir)
  return tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/rc 2>/dev/null"):match("%d+") end, 30))
end

-- connect, send "hello", the server reads it, the client closes first, the
-- server reads EOF and closes: the client ends in TIME_WAIT.
local function conversation(ns, port)
  local l <close> = assert(ns:listen("127.0.0.1", port))
  local c <close> = assert(ns:connect("127.0.0.1", port, 2))
  local a <close> = assert(l:accept(2))
  assert(c:write("hello"))
  assert.equal("hello", a:read(5, 2))
  c:close()
  assert.equal("", a:read(1, 2))   -- the client's FIN
  a:close()
  tcplab.sleep(0.05)
end

-- tcpdump's flags "[S.]" as our letters in FSRPAUEW order ("SA").
local function tcpdump_flags(s)
  local set = {}
  for ch in s:gmatch(".") do set[ch == "." and "A" or ch] = true end
  local out = {}
  for ch in ("FSRPAUEW"):gmatch(".") do if set[ch] then out[#out + 1] = ch end end
  return table.concat(out)
end

describe("any port as a ladder #kernel #root", function()
  local ns, path, dir
  before_each(function()
    if not support.is_root() then return end
    ns = assert(tcplab.netns.new())
    path = ("/proc/%d/fd/%d"):format(support.pid(), ns:fd())
    dir = support.slurp("mktemp -d"):gsub("%s+$", "")
  end)
  after_each(function()
    if ns then ns:close() ns = nil end
    if dir then os.execute("rm -rf " .. support.shq(dir)) dir = nil end
  end)

  support.as_root(it, pending, "json: SYN, SYN-ACK, ACK ... FINs with relative seq/ack, both sides' states with " ..
      "TIME_WAIT, nothing of another port; tcpdump -r of the pcap shows the same segments", function()
    local pid, out, err = start(("--port 18080 --netns %s --format json --pcap %s/c.pcapng --svg %s/c.svg --duration 5")
      :format(path, dir, dir), dir)
    assert.truthy(err():find("Ctrl-C to stop", 1, true), err())
    -- another port's conversation in the same namespace, before and after ours
    conversation(ns, 18081)
    conversation(ns, 18080)
    conversation(ns, 18081)
    local rc = exit_status(dir)
    assert.equal(0, rc, err())
    local doc = cjson.decode(out())
    assert.equal(1, #doc.connections, out())
    local conn = doc.connections[1]
    assert.matches(":18080$", conn.server)
    local segs = conn.segments
    assert.same({ "S", "SA", "A" }, { segs[1].flags, segs[2].flags, segs[3].flags })
    assert.same({ "client", "server", "client" }, { segs[1].from, segs[2].from, segs[3].from })
    assert.same({ 0, 0, 1, 1, 1 }, { segs[1].rseq, segs[2].rseq, segs[2].rack, segs[3].rseq, segs[3].rack })
    local fins = {}
    for _, s in ipairs(segs) do
      if s.flags:find("F", 1, true) then fins[#fins + 1] = s end
      if s.len == 5 then assert.equal(1, s.rseq) end                 -- "hello": the first byte after the SYN
    end
    assert.equal(2, #fins, out())
    assert.same({ "client", 6 }, { fins[1].from, fins[1].rseq })     -- after SYN (1) and "hello" (5)
    assert.same({ "server", 1, 7 }, { fins[2].from, fins[2].rseq, fins[2].rack })
    local states = { client = {}, server = {} }
    for _, tr in ipairs(conn.transitions) do states[tr.side][#states[tr.side] + 1] = tr.to end
    local cs, ss = table.concat(states.client, " "), table.concat(states.server, " ")
    assert.matches("SYN_SENT ESTABLISHED FIN_WAIT1 FIN_WAIT2 TIME_WAIT", cs)
    assert.matches("SYN_RECV ESTABLISHED CLOSE_WAIT LAST_ACK CLOSE", ss)
    -- the pcap: tcpdump reads it and shows the same segments, in order
    local dump = support.slurp(("tcpdump -r %s/c.pcapng -nn 2>&1"):format(dir))
    local lines = {}
    for line in dump:gmatch("[^\n]+") do
      if line:match(" IP ") then lines[#lines + 1] = line end
    end
    assert.equal(#segs, #lines, dump)
    for i, line in ipairs(lines) do
      assert.not_matches("18081", line)
      assert.equal(segs[i].flags, tcpdump_flags(line:match("Flags %[([^%]]+)%]")), line)
    end
    assert.matches("link%-type EN10MB", dump)
    -- the SVG: one arrow per segment
    local svg = support.slurp(("cat %s/c.svg"):format(dir))
    local arrows = select(2, svg:gsub('<g class="segment"', ""))
    assert.equal(#segs, arrows)
    -- nothing left behind: no temp file beside the outputs, no tracefs instance of the command
    assert.same({ "c.pcapng", "c.svg", "err", "out", "pid", "rc" }, support.lines("ls " .. dir))
    assert.is_nil(support.slurp("ls /sys/kernel/tracing/instances"):match("tcplab%-" .. pid .. "%-%d+"))
  end)

  support.as_root(it, pending, "text: the ladder the scenarios print, with relative numbers and TIME_WAIT; " ..
      "--interface any shows each lo segment once", function()
    start(("--port 18080 --netns %s --ladder --interface any --duration 4"):format(path), dir)
    conversation(ns, 18080)
    assert.equal(0, exit_status(dir))
    local text = support.slurp("cat " .. dir .. "/out")
    assert.truthy(text:find("== port 18080 on any of " .. path, 1, true), text)
    assert.truthy(text:find("│──S seq=0 ", 1, true), text)
    assert.truthy(text:find(" SA seq=0 ack=1──│", 1, true), text)
    assert.truthy(text:find("│──PA seq=1 ack=1 len=5 ", 1, true), text)
    assert.truthy(text:find("[TIME_WAIT]", 1, true), text)
    assert.truthy(text:find("[CLOSE_WAIT]", 1, true), text)
    assert.equal(1, select(2, text:gsub("──S seq=", "")), text)   -- lo's second copy not counted
  end)

  support.as_root(it, pending, "a port with no traffic ends at --duration and says there were no segments", function()
    start(("--port 18082 --netns %s --ladder --duration 1"):format(path), dir)
    assert.equal(0, exit_status(dir))
    local text, err = support.slurp("cat " .. dir .. "/out"), support.slurp("cat " .. dir .. "/err")
    assert.truthy(text:find("(no segments of port 18082 on lo of " .. path, 1, true), text)
    assert.truthy(err:find("0 segments captured (--duration reached)", 1, true), err)
    local out, rc = run(("trace --port 18082 --netns %s --format json --ladder --duration 0.5"):format(path))
    assert.equal(0, rc, out)
    local doc = cjson.decode(out:match("\n(%{.*%})\n"))
    assert.same({}, doc.connections)
    assert.matches("^no segments of port 18082", doc.capture_note)
  end)

  support.as_root(it, pending, "Ctrl-C ends the capture, prints what was seen, writes the pcap, exits 130", function()
    local pid, _, err = start(("--port 18080 --netns %s --ladder --pcap %s/i.pcapng"):format(path, dir), dir)
    conversation(ns, 18080)
    assert.is_true(os.execute("kill -INT " .. pid))
    assert.equal(130, exit_status(dir))
    local text = support.slurp("cat " .. dir .. "/out")
    assert.truthy(text:find("│──S seq=0 ", 1, true), text)
    assert.matches("segments captured %(interrupted%), written to", err())
    assert.matches("tcplab: interrupted", err())
    local dump = support.slurp(("tcpdump -r %s/i.pcapng -nn 2>&1"):format(dir))
    assert.matches("Flags %[S%]", dump)
    assert.is_false(support.alive(pid))
    assert.is_nil(support.slurp("ls /sys/kernel/tracing/instances"):match("tcplab%-" .. pid .. "%-%d+"))
  end)

  support.as_root(it, pending, "frames the kernel dropped (a stopped reader, a 1 KiB buffer) are counted and said", function()
    local pid, out, err = start(("--port 18080 --netns %s --ladder --format json --buffer-size 1 --duration 3"):format(path), dir)
    assert.is_true(os.execute("kill -STOP " .. pid))
    local ok, cerr = pcall(conversation, ns, 18080)
    os.execute("kill -CONT " .. pid)
    assert(ok, cerr)
    assert.equal(0, exit_status(dir), err())
    local doc = cjson.decode(out())
    assert.is_true(doc.drops >= 1, out())
    local n = doc.drops
    assert.truthy(err():find(("tcplab: warning: the capture dropped %d frames"):format(n), 1, true), err())
    assert.truthy(doc.capture_note:find(("the capture dropped %d frames"):format(n), 1, true), out())
    assert.is_false(doc.ok)
  end)

  support.as_root(it, pending, "a capture's drops count segments missed: a 1 KiB capture's reads and drops add up " ..
      "to what a 4 MiB capture beside it read (lo's second copy takes no room)", function()
    local small <close> = assert(ns:capture(18083, { buffer_kb = 1 }))
    local big <close> = assert(ns:capture(18083))
    for _ = 1, 3 do conversation(ns, 18083) end
    local all = assert(big:read(0.2))
    local some = assert(small:read(0.2))
    assert.is_true(small:drops() > 0)
    assert.equal(0, big:drops())
    assert.equal(#all, #some + small:drops())
    local any <close> = assert(ns:capture(18083, { interface = "any" }))
    conversation(ns, 18083)
    local seen = assert(any:read(0.2))
    local syns = 0
    for _, seg in ipairs(seen) do if seg.flags == "S" then syns = syns + 1 end end
    assert.equal(1, syns)
    assert.equal("any", (any:interface()))
  end)

  support.as_root(it, pending, "a frame cut at the snaplen keeps its length on the wire (PACKET_AUXDATA)", function()
    local cap <close> = assert(ns:capture(18084, { snaplen = 128 }))
    local l <close> = assert(ns:listen("127.0.0.1", 18084))
    local c <close> = assert(ns:connect("127.0.0.1", 18084, 2))
    local a <close> = assert(l:accept(2))
    assert(c:write(("y"):rep(3000)))
    assert.equal(3000, #assert(a:read(3000, 2)))
    local data
    for _, seg in ipairs(assert(cap:read(0.2, true))) do if seg.len > 0 then data = seg end end
    assert.truthy(data)
    assert.equal(128, #data.raw)
    assert.equal(14 + string.unpack(">I2", data.raw, 17), data.wire_len)   -- Ethernet + the IP total length
    assert.is_true(data.wire_len > 3000)
    assert.is_true(math.abs(data.wall_ns / 1e9 - os.time()) < 5)   -- the realtime clock, in ns
  end)

  support.as_root(it, pending, "an unwritable pcap path and an interface that does not exist fail before capturing", function()
    local out, rc = run(("trace --port 18080 --netns %s --ladder --pcap /nonexistent-dir/x.pcapng --duration 5"):format(path))
    assert.equal(1, rc, out)
    assert.truthy(out:find("tcplab: --pcap: /nonexistent-dir/x.pcapng: No such file or directory", 1, true), out)
    assert.is_nil(out:find("Ctrl-C to stop", 1, true))
    out, rc = run(("trace --port 18080 --netns %s --ladder --pcap %s --duration 5"):format(path, dir))
    assert.equal(1, rc, out)
    assert.matches("tcplab: %-%-pcap: .*[Ii]s a directory", out)
    out, rc = run(("trace --port 18080 --netns %s --ladder --interface nope0 --duration 5"):format(path))
    assert.equal(1, rc, out)
    assert.truthy(out:find("no interface 'nope0' in this network namespace", 1, true), out)
    assert.is_nil(out:find("Ctrl-C to stop", 1, true))
  end)

  support.as_root(it, pending, "a session in a namespace path stops at exactly count segments and holds no fd once closed", function()
    local ladder_capture = require "tcplab.trace.ladder_capture"
    local fds = support.fd_count()
    collectgarbage("stop")   -- a handle left to __gc would otherwise close between here and the count
    local s = assert(ladder_capture.start{ port = 18085, netns = path, raw = true })
    conversation(ns, 18085)   -- ten segments or so, queued in the capture
    assert.equal("count", (assert(s:run{ count = 3, duration = 5 })))
    assert.equal(3, #s:frames())
    local flags = {}
    for i, seg in ipairs(s:frames()) do flags[i] = seg.flags end
    assert.same({ "S", "SA", "A" }, flags)
    local r = s:finish()
    assert.equal(3, #r.segments)
    s:close()
    local now = support.fd_count()
    collectgarbage("restart")
    assert.equal(fds, now)   -- every fd closed when it should be, not by the collector
  end)
end)
