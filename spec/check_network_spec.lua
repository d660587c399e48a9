local support = require "support"
local tcplab = require "tcplab"
local sys = require "tcplab.sys"

-- tcplab check --delay MS --loss PCT: the checks run while the lab's port
-- goes through an NFQUEUE served by a helper process (tcplab.lab.netem,
-- doc/fault-queue.md). Counts and verdicts only, no clock.

local function server(name, port)
  return ("env LUA_PATH=%s LUA_CPATH=%s lua5.4 spec/servers/%s.lua %d"):format(
    support.shq(os.getenv("LUA_PATH") or ""), support.shq(os.getenv("LUA_CPATH") or ""), name, port or 8080)
end

local function rules_in(ns)
  local out = ns:run(sys.run, "iptables", "iptables -w 5 -S OUTPUT; ip6tables -w 5 -S OUTPUT")
  local n = 0
  for _ in out:gmatch("NFQUEUE") do n = n + 1 end
  return n
end

describe("tcplab check --delay/--loss: usage #unit", function()
  for _, case in ipairs({
    { "--port 8080 --delay=-5 -- x", "%-%-delay: milliseconds 0%.%.60000 expected, got '%-5'" },
    { "--port 8080 --delay 1.5 -- x", "%-%-delay: milliseconds 0%.%.60000 expected, got '1%.5'" },
    { "--port 8080 --loss 101 -- x", "%-%-loss: percent 0%.%.100 expected, got '101'" },
    { "--port 8080 --loss many -- x", "%-%-loss: percent 0%.%.100 expected, got 'many'" },
  }) do
    it("exits 2 on: tcplab check " .. case[1], function()
      local out, rc = support.tcplab("check " .. case[1])
      assert.equal(2, rc, out)
      assert.matches(case[2], out)
    end)
  end
end)

describe("tcplab check under a slow, lossy wire #root", function()
  if not support.is_root() then
    pending("needs root: the command runs in a network namespace of its own")
    return
  end

  it("the echo server still passes with every packet delayed; the report counts them", function()
    local out, rc = support.tcplab("check --port 8080 --clients 3 --send 'ping\\n' --delay 50 -- " .. server("echo"))
    assert.equal(0, rc, out)
    for _, name in ipairs({ "close%-wait", "accept%-queue", "half%-close", "reset" }) do
      assert.matches("\nPASS  " .. name, "\n" .. out)
    end
    local n, dropped, delayed = out:match(
      "\nnetwork: delay 50 ms each way, loss 0%% %(NFQUEUE via iptables%): (%d+) packets, (%d+) dropped, (%d+) delayed\n")
    assert.truthy(n, out)
    assert.is_true(tonumber(n) > 0)
    assert.equal("0", dropped)
    assert.equal(n, delayed)
  end)

  it("with every packet lost the check says no client connected (not run), not that the server is fine", function()
    local out, rc = support.tcplab("check --port 8080 --clients 2 --check close-wait --loss 100 -- " .. server("echo"))
    assert.are_not.equal(0, rc, out)
    assert.is_nil(out:match("\nPASS"), out)
    assert.matches("\nSKIP  close%-wait    not run: none of 2 clients connected", "\n" .. out)
    local n, dropped = out:match("\nnetwork: delay 0 ms each way, loss 100%% %(NFQUEUE via iptables%): (%d+) packets, (%d+) dropped")
    assert.truthy(n, out)
    assert.is_true(tonumber(n) > 0)
    assert.equal(n, dropped)
  end)

  it("the helper serves blocking calls, and stopping it leaves no process and no rule", function()
    local netem = require "tcplab.lab.netem"
    local lab <close> = assert(tcplab.lab{ cmd = { "sh", "-c", server("echo") }, port = 8080 })
    local em = assert(netem.start(lab, { delay = 0.02 }))
    assert.matches("^netem delay 0%.02 s loss 0 via iptables %(helper pid %d+%)$", tostring(em))
    assert.is_true(sys.alive(em.pid))
    assert.equal(4, rules_in(lab.netns))
    local c = assert(lab:connect(5))         -- blocking: the helper steps the queue meanwhile
    assert(c:write("hi\n"))
    assert.equal("hi\n", c:read(10, 5))
    c:close()
    local summary = assert(em:stop())
    assert.is_true(summary.packets >= 4)
    assert.equal(summary.packets, summary.delayed)
    assert.equal(0, summary.dropped)
    assert.is_true(support.wait_for(function() return not sys.alive(em.pid) end, 5))
    assert.equal(0, rules_in(lab.netns))
    assert.same(summary, em:stop())          -- idempotent
  end)
end)
