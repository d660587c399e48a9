local support = require "support"

local function run(args)
  local out = support.slurp("lua5.4 bin/tcplab " .. args .. " 2>&1; echo rc=$?")
  return out:match("^(.-)rc=(%d+)\n$")
end

describe("the tcplab command", function()
  it("prints help listing the commands and scenarios", function()
    local out, rc = run("help")
    assert.equal("0", rc)
    for _, word in ipairs({ "stat", "list", "counts", "run", "demo", "handshake", "close_wait_leak" }) do
      assert.truthy(out:find(word, 1, true), word)
    end
  end)

  it("refuses unknown commands, options and values with exit status 2", function()
    local out, rc = run("frobnicate")
    assert.equal("2", rc)
    assert.matches("unknown command 'frobnicate'", out)
    out, rc = run("stat --style awk")
    assert.same({ "tcplab: --style: netstat or ss expected\n", "2" }, { out, rc })
    out, rc = run("list --colour red")
    assert.same({ "tcplab: unknown option '--colour' (see tcplab help)\n", "2" }, { out, rc })
    out, rc = run("counts --state FIN_WAIT_9")
    assert.equal("2", rc)
    assert.matches("unknown state 'FIN_WAIT_9'", out)
    out, rc = run("list --sport 70000")
    assert.same({ "tcplab: --sport: port 0..65535 expected\n", "2" }, { out, rc })
    out, rc = run("run nosuch")
    assert.equal("1", rc)
    assert.matches("unknown scenario 'nosuch'", out)
  end)

  it("lists and counts a listener of ours", function()
    local tcplab = require "tcplab"
    local l <close> = assert(tcplab.listen("127.0.0.1", 0, 7))
    local port = select(2, l:getsockname())
    local out, rc = run("list --state listen --sport " .. port)
    assert.equal("0", rc)
    assert.matches("\nLISTEN%s+0%s+7%s+127%.0%.0%.1:" .. port .. "%s+0%.0%.0%.0:0%s+" .. l:inode() .. "\n$", out)
    out = run("counts --state LISTEN --sport " .. port)
    assert.equal("LISTEN\t1\n", out)
  end)
end)
