-- make bench-scale's builder (bench/scale.lua, bench/scale_build.lua,
-- bench/load.lua) at a small N: the namespace it makes holds exactly the
-- ESTABLISHED and TIME_WAIT sockets asked for, no helper holds more fds than
-- its budget, and after teardown (stdin closed, or SIGINT) nothing it made is
-- left: helpers and builder gone, its temporary directory gone. The namespace
-- is unnamed and held only by those processes (and by our handle, closed
-- before teardown), so with them gone it is gone too.
local support = require "support"
local build
do   -- bench/ on the path for this one module only (its names are generic: run, load, measure)
  local saved = package.path
  package.path = "bench/?.lua;" .. package.path
  build = require "scale_build"
  package.path = saved
end

describe("bench-scale's split of pairs over helpers #unit", function()
  it("uses as few helpers as fit, none over its share, sizes one apart, every pair placed", function()
    for _, case in ipairs({ { 900, 192, 5 }, { 901, 192, 5 }, { 192, 192, 1 }, { 193, 192, 2 },
                            { 1, 192, 1 }, { 500000, 9492, 53 } }) do
      local npairs, cap, helpers = case[1], case[2], case[3]
      local list = build.split(npairs, cap)
      assert.equal(helpers, #list, ("split(%d, %d)"):format(npairs, cap))
      local sum, lo, hi = 0, math.huge, 0
      for _, p in ipairs(list) do
        sum = sum + p
        lo, hi = math.min(lo, p), math.max(hi, p)
      end
      assert.equal(npairs, sum)
      assert.is_true(hi <= cap)
      assert.is_true(hi - lo <= 1)
    end
    assert.same({}, build.split(0, 192))
  end)

  it("keeps each helper's fds under its budget and refuses a budget with no room for a pair", function()
    assert.equal(192, build.pairs_cap(400))
    assert.is_true(2 * build.pairs_cap(19000) + build.RESERVE <= 19000)
    local ok, err = pcall(build.pairs_cap, 10)
    assert.is_false(ok)
    assert.matches("per_process", err)
    -- the edge: the reserve and one fd leave no pair; the reserve and two leave one
    ok, err = pcall(build.pairs_cap, build.RESERVE + 1)
    assert.is_false(ok)
    assert.matches("no room for a pair", err)
    assert.equal(1, build.pairs_cap(build.RESERVE + 2))
  end)
end)

describe("bench/scale.lua's arguments #unit", function()
  local function run(args)
    local out = support.slurp(("lua5.4 bench/scale.lua %s 2>&1; echo rc=$?"):format(args))
    return out, tonumber(out:match("rc=(%d+)\n$"))
  end

  it("refuses an odd --established, a budget at the fd limit and a missing --ready with exit 2", function()
    local out, rc = run("--hold --established 3 --ready /nonexistent/x")
    assert.equal(2, rc, out)
    assert.matches("%-%-established: an even number", out)
    out, rc = run("--per-process 20000")
    assert.equal(2, rc, out)
    assert.matches("%-%-per%-process", out)
    out, rc = run("--hold --established 4")
    assert.equal(2, rc, out)
    assert.matches("%-%-ready", out)
    out, rc = run("--sizes 1000,500")
    assert.equal(2, rc, out)
    assert.matches("increasing", out)
  end)
end)

local root = support.is_root()
local describe_root = root and describe or pending

describe_root("make bench-scale's builder at 2,000 sockets", function()
  local tcplab = require "tcplab"
  local ESTABLISHED, TIME_WAIT, PER_PROCESS = 1802, 198, 400   -- 901 pairs: 5 helpers, one with a pair more

  local function read(path)
    local f = io.open(path)
    if not f then return "" end
    local s = f:read("a")
    f:close()
    return s
  end

  -- Start the builder; returns its pipe (stdin), the ready file and what it said.
  local function start()
    local ready = os.tmpname()
    local pipe = assert(io.popen(("exec lua5.4 bench/scale.lua --hold --established %d --timewait %d " ..
      "--per-process %d --ready %s >%s.log 2>&1"):format(ESTABLISHED, TIME_WAIT, PER_PROCESS, ready, ready), "w"))
    local said
    for _ = 1, 1200 do                   -- bounded: 120 s on a busy host at most
      said = read(ready)
      if said:match("^ready") or said:match("released") then break end
      tcplab.core.sleep(0.1)
    end
    -- a failing check below still ends the builder (stdin closed: it tears down)
    finally(function() pcall(pipe.close, pipe) end)
    assert.matches("^ready pid=%d+", said, read(ready .. ".log"))
    local pid = tonumber(said:match("pid=(%d+)"))
    local helpers = {}
    for h in said:match("helpers=([%d,]+)"):gmatch("%d+") do helpers[#helpers + 1] = tonumber(h) end
    return pipe, ready, pid, helpers, said:match("tmp=(%S+)")
  end

  local function fd_count(pid)
    return tonumber(support.slurp(("ls /proc/%d/fd | wc -l"):format(pid)))
  end

  local function gone(ready, pid, helpers, tmp, nhelpers)
    assert.matches("\nreleased helpers=" .. nhelpers .. "\n", read(ready), read(ready .. ".log"))
    assert.is_false(support.alive(pid))
    for _, h in ipairs(helpers) do assert.is_false(support.alive(h), "helper " .. h) end
    assert.is_nil(io.open(tmp), tmp)
    os.remove(ready)
    os.remove(ready .. ".log")
  end

  it("holds exactly the ESTABLISHED and TIME_WAIT sockets asked for, one listener per helper, " ..
     "every helper under its fd budget, and leaves nothing behind", function()
    local pipe, ready, pid, helpers, tmp = start()
    assert.equal(5, #helpers)
    local kids = {}
    for _, c in ipairs(support.children(pid)) do kids[c] = true end
    for _, h in ipairs(helpers) do
      assert.is_true(kids[h], "helper " .. h .. " is the builder's child")
      assert.is_true(fd_count(h) <= PER_PROCESS, "helper " .. h .. " holds " .. fd_count(h) .. " fds")
    end
    do
      local ns <close> = assert(tcplab.netns.open(pid))
      assert.are_not.equal(tcplab.netns.id(), ns:id())          -- a namespace of its own
      local counts = assert(tcplab.counts{ netns = ns, backend = "netlink" })
      assert.same({ ESTABLISHED = ESTABLISHED, TIME_WAIT = TIME_WAIT, LISTEN = #helpers }, counts)
      local walked = 0
      for rec in assert(tcplab.each{ netns = ns, states = "ESTABLISHED" }) do
        if rec.state == "ESTABLISHED" then walked = walked + 1 end
      end
      assert.equal(ESTABLISHED, walked)
    end
    local ok, how, code = pipe:close()
    assert.is_true(ok, tostring(how) .. " " .. tostring(code) .. ": " .. read(ready .. ".log"))
    gone(ready, pid, helpers, tmp, #helpers)
  end)

  it("stops every helper and exits 130 on SIGINT", function()
    local pipe, ready, pid, helpers, tmp = start()
    assert.is_true(os.execute("kill -INT " .. pid))
    local ok, how, code = pipe:close()
    assert.is_nil(ok)
    assert.same({ "exit", 130 }, { how, code }, read(ready .. ".log"))
    gone(ready, pid, helpers, tmp, #helpers)
  end)
end)
