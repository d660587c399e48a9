--- Hostile input on trace --ladder/--pcap and on fault.queue (branch
-- hostile2): each test is a defect found by attacking the feature, fixed.
local support = require "support"
local export = require "tcplab.export"

local run = support.tcplab

local function tmpdir()
  local p = io.popen("mktemp -d /tmp/tcplab-hostile2.XXXXXX")
  local d = p:read("l")
  p:close()
  return d
end

local function kind(path)
  local p = io.popen("stat -c %F " .. support.shq(path) .. " 2>/dev/null")
  local k = p:read("l")
  p:close()
  return k
end

describe("writing a file whole never replaces what is not a regular file", function()
  support.as_root(it, pending, "export.textfile on a fifo, a device node or a directory: nil, message, errno; " ..
                  "the node stays as it was and no temp file is left", function()
    local dir = tmpdir()
    assert(os.execute(("mkfifo %s/fifo && mknod %s/full c 1 7 && mkdir %s/dir"):format(dir, dir, dir)))
    local got = {}
    for _, name in ipairs({ "fifo", "full", "dir" }) do
      local ok, msg, errno = export.textfile(dir .. "/" .. name, "x")
      got[name] = { ok = ok, msg = msg, errno = errno, kind = kind(dir .. "/" .. name) }
    end
    local p = io.popen("ls -A " .. dir)
    local left = p:read("a")
    p:close()
    os.execute("rm -rf " .. dir)
    assert.is_nil(got.fifo.ok)
    assert.matches("fifo, not a regular file", got.fifo.msg)
    assert.equal("fifo", got.fifo.kind)
    assert.is_nil(got.full.ok)
    assert.matches("is a character device, not a regular file", got.full.msg)
    assert.equal("character special file", got.full.kind)
    assert.is_nil(got.dir.ok)
    assert.matches("is a directory, not a regular file", got.dir.msg)
    assert.equal(21, got.dir.errno)   -- EISDIR
    assert.equal("directory", got.dir.kind)
    assert.equal("dir\nfifo\nfull\n", left)
  end)

  support.as_root(it, pending, "trace --ladder --pcap DEVICE exits 1 at once, naming it, and the device stays a device",
                  function()
    local dir = tmpdir()
    assert(os.execute(("mknod %s/null c 1 3"):format(dir)))
    local out, rc = run(("trace --port 47321 --ladder --duration 3 --pcap %s/null"):format(dir))
    local k = kind(dir .. "/null")
    os.execute("rm -rf " .. dir)
    assert.equal(1, rc, out)
    assert.matches("%-%-pcap: .*/null is a character device, not a regular file", out)
    assert.equal("character special file", k)
  end)
end)

describe("fault.queue: a hostile callback still gets its packet passed", function()
  local tcplab = require "tcplab"

  -- A namespace, a listener, a queue on its port with on_packet, and a
  -- client whose connect waits for the queue to be stepped.
  local function lab(on_packet)
    local ns = assert(tcplab.netns.new())
    local srv = assert(ns:listen("127.0.0.1", 0))
    local port = select(2, srv:getsockname())
    local lines = {}
    local q = assert(tcplab.fault.queue{ netns = ns, port = port, on_packet = on_packet, timeout = 1,
                                         warn = function(l) lines[#lines + 1] = l end })
    local c = assert(ns:socket("inet"))
    local ok, err = c:connect("127.0.0.1", port, 0)
    assert(ok or err == "timeout", err)
    return { ns = ns, srv = srv, q = q, c = c, lines = lines,
             up = function() return c:state() == "ESTABLISHED" end,
             close = function() q:lift(); c:close(); srv:close(); ns:close() end }
  end

  -- Serve until the handshake is done (bounded: 10 s), from a coroutine when asked.
  local function serve(l, in_coroutine)
    if not in_coroutine then return pcall(l.q.run_until, l.q, l.up, 10) end
    local co = coroutine.create(function() return l.q:run_until(l.up, 10) end)
    local ok, res = coroutine.resume(co)
    return ok and coroutine.status(co) == "dead", res
  end

  local cases = {
    { name = "yields (served from a coroutine): the yield does not leave step() with the packet unanswered",
      cb = function() coroutine.yield("no") return "pass" end, co = true, msg = "callback yielded" },
    { name = "raises an error object whose __tostring raises",
      cb = function() error(setmetatable({}, { __tostring = function() error("inner") end })) end,
      msg = "callback raised: %(a table whose __tostring failed%)" },
    { name = "returns a table whose __index raises",
      cb = function() return setmetatable({}, { __index = function() error("idx") end }) end,
      msg = "callback returned table; expected" },
  }
  for _, case in ipairs(cases) do
    support.as_root(it, pending, "a callback that " .. case.name .. ": passed, one error record each", function()
      local l = lab(case.cb)
      local ok, res = serve(l, case.co)
      local up, errors, line, hook = l.up(), #l.q.errors, l.lines[1], debug.gethook()
      l.close()
      assert.is_true(ok, tostring(res))
      assert.is_true(up)
      assert.is_true(errors >= 2)   -- the SYN and the SYN-ACK at least
      assert.matches(case.msg, line)
      assert.is_nil(hook)   -- the caller's thread has no hook left behind
    end)
  end
end)

describe("fault.queue numbers in use", function()
  local tcplab = require "tcplab"
  support.as_root(it, pending, "two queues in one namespace without a number each get a free one; " ..
                  "a number in use is refused with a message that says so", function()
    local ns = assert(tcplab.netns.new())
    local cb = function() return "pass" end
    local q1, e1 = tcplab.fault.queue{ netns = ns, port = 5000, on_packet = cb }
    local q2, e2 = tcplab.fault.queue{ netns = ns, port = 5001, on_packet = cb }
    local q3, e3 = tcplab.fault.loss{ netns = ns, port = 5002, rate = 0.5 }
    local taken = q1 and q1.number
    local q4, e4 = tcplab.fault.queue{ netns = ns, port = 5003, on_packet = cb, queue = taken or 0 }
    local n1, n2, n3 = q1 and q1.number, q2 and q2.number, q3 and q3.number
    for _, q in ipairs({ q1, q2, q3, q4 }) do if q then q:lift() end end
    ns:close()
    assert.truthy(q1, e1)
    assert.truthy(q2, e2)
    assert.truthy(q3, e3)
    assert.is_true(n1 ~= n2 and n2 ~= n3 and n1 ~= n3)
    assert.is_nil(q4)
    assert.matches("number " .. taken .. " is in use in this namespace", e4)
  end)
end)

describe("fault.queue/delay/loss fields #unit", function()
  local tcplab = require "tcplab"
  it("a misspelt or foreign field raises, naming it and the fields the function takes", function()
    assert.has_error(function() tcplab.fault.loss{ port = 80, rate = 0.5, sedd = 7 } end,
      'bad argument #1 to \'loss\' (unknown field "sedd"; loss takes direction, flags, netns, port, queue, ' ..
      'rate, seed, timeout, warn)')
    assert.has_error(function() tcplab.fault.delay{ port = 80, seconds = 1, on_packet = print } end,
      'bad argument #1 to \'delay\' (unknown field "on_packet"; delay takes direction, flags, netns, port, ' ..
      'queue, seconds, timeout, warn)')
    assert.has_error(function() tcplab.fault.queue{ port = 80, on_packet = print, delay = 1 } end,
      'bad argument #1 to \'queue\' (unknown field "delay"; queue takes netns, on_packet, port, queue, timeout, warn)')
  end)
end)

describe("trace --ladder --pcap and --svg #unit", function()
  it("the same file for both is a usage error (exit 2), however the path is spelt", function()
    local dir = tmpdir()
    local got = {}
    for _, pair in ipairs({ { "/out.x", "/out.x" }, { "/./out.x", "/out.x" }, { "//out.x", "/out.x" } }) do
      -- --duration bounds a run where the check is missing (it would capture)
      local out, rc = run(("trace --port 1 --ladder --duration 1 --pcap %s%s --svg %s%s")
                          :format(dir, pair[1], dir, pair[2]))
      got[#got + 1] = { rc = rc, out = out }
    end
    os.execute("rm -rf " .. dir)
    for _, g in ipairs(got) do
      assert.equal(2, g.rc, g.out)
      assert.matches("%-%-pcap and %-%-svg: two files expected, both name", g.out)
    end
  end)
end)
