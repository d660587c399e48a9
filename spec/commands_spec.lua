local support = require "support"
local tcplab = require "tcplab"

local run = support.tcplab

describe("tcplab completion #kernel", function()
  it("bash: the script registers a completion for tcplab", function()
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    local out, rc = run("completion bash >" .. dir .. "/c.bash")
    assert.equal(0, rc, out)
    local said = support.slurp(("bash -c 'source %s/c.bash && complete -p tcplab' 2>&1; echo rc=$?"):format(dir))
    os.execute("rm -rf " .. dir)
    assert.matches("complete .*tcplab\nrc=0\n$", said)
  end)

  it("zsh and fish: a script naming the commands and options", function()
    for _, shell in ipairs({ "zsh", "fish", "bash" }) do
      local out, rc = run("completion " .. shell)
      assert.equal(0, rc, out)
      for _, word in ipairs({ "list", "counts", "summary", "export", "watch", "trace", "completion", shell == "fish" and "-l format" or "--format" }) do
        assert.truthy(out:find(word, 1, true), shell .. ": " .. word)
      end
    end
  end)

  it("refuses a missing or unknown shell with exit status 2", function()
    for _, args in ipairs({ "completion", "completion tcsh" }) do
      local out, rc = run(args)
      assert.equal(2, rc, out)
      assert.matches("^tcplab: ", out)
    end
  end)
end)

describe("tcplab watch #kernel", function()
  it("prints N frames of all eleven states, separated by a blank line, no escapes when not a terminal", function()
    local l <close> = assert(tcplab.listen("127.0.0.1", 0))
    local port = select(2, l:getsockname())
    local out, rc = run(("watch --count 2 --interval 0.05 --sport %d"):format(port))
    assert.equal(0, rc, out)
    assert.is_nil(out:find("\27", 1, true))
    local frames = {}
    for frame in (out .. "\n"):gmatch("(tcplab watch.-)\n\n") do frames[#frames + 1] = frame end
    assert.equal(2, #frames, out)
    for i, frame in ipairs(frames) do
      for _, name in ipairs(require("tcplab.states").list) do
        assert.matches("\n" .. name .. " +%d+", frame, nil, name)
      end
      assert.matches("frame " .. i, frame)
      assert.matches("\nLISTEN +1" .. (i == 2 and " +%.\n" or " *\n"), frame)
    end
  end)

  it("shows the change since the last frame", function()
    local text = require "tcplab.format.text"
    local buf = {}
    local out = { write = function(_, ...) for _, s in ipairs({ ... }) do buf[#buf + 1] = tostring(s) end end }
    text.watch({ LISTEN = 2, TIME_WAIT = 1 }, { LISTEN = 1, ESTABLISHED = 3 }, { frame = 2, interval = 1, time = "t" }, out)
    local s = table.concat(buf)
    assert.matches("\nLISTEN +2 +%+1\n", s)
    assert.matches("\nESTABLISHED +0 +%-3\n", s)
    assert.matches("\nTIME_WAIT +1 +%+1\n", s)
    assert.matches("\nCLOSING +0 +%.\n", s)
  end)

  it("refuses bad --interval and --count with exit status 2, naming the option", function()
    for _, args in ipairs({ "--interval=-1", "--interval x", "--interval 0", "--count 0", "--count x", "--count 1.5" }) do
      local out, rc = run("watch " .. args)
      assert.equal(2, rc, args .. ": " .. out)
      assert.matches(args:match("^%-%-%a+"), out)
    end
  end)
end)

describe("tcplab watch under Ctrl-C #kernel", function()
  it("stops at once and exits 130", function()
    local dir = support.slurp("mktemp -d"):gsub("%s+$", "")
    local root = support.slurp("pwd"):gsub("%s+$", "")
    -- a background job of a non-interactive shell ignores SIGINT unless told otherwise:
    -- the command installs its own handler (tcplab.process.catch_signals), as in a terminal
    assert(os.execute(("cd %s && (env -u LUA_PATH -u LUA_CPATH bin/tcplab watch --interval 0.2 >%s/out 2>&1; " ..
      "echo $? >%s/rc) & echo $! >%s/pid"):format(support.shq(root), dir, dir, dir)))
    local shell = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/pid 2>/dev/null") end))
    local pid = support.wait_for(function() return support.children(shell)[1] end)
    assert.truthy(support.wait_for(function() return support.slurp("cat " .. dir .. "/out"):find("LISTEN", 1, true) end, 10))
    os.execute("kill -INT " .. pid)
    local rc = tonumber(support.wait_for(function() return support.slurp("cat " .. dir .. "/rc 2>/dev/null"):match("%d+") end, 10))
    local out = support.slurp("cat " .. dir .. "/out")
    os.execute("rm -rf " .. dir)
    assert.equal(130, rc, out)
    assert.matches("tcplab: interrupted\n$", out)
    assert.is_false(support.alive(pid))
  end)
end)
