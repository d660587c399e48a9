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
    local out, rc = run(("trace --port 47321 --ladder --duration 30 --pcap %s/null"):format(dir))
    local k = kind(dir .. "/null")
    os.execute("rm -rf " .. dir)
    assert.equal(1, rc, out)
    assert.matches("%-%-pcap: .*/null is a character device, not a regular file", out)
    assert.equal("character special file", k)
  end)
end)
