-- The network line of `tcplab check --delay/--loss` in every format: the
-- text report, JSON (an object with the counts and the same summary) and
-- JUnit (a property), from one report made by hand.
local check = require "tcplab.format.check"
local cjson = require "cjson"

local function report(network)
  return { ok = true, exit = 0, cmd = { "srv", "8080" }, port = 8080, pid = 42, seconds = 1.5,
           results = { { name = "close-wait", ok = true, status = "pass", evidence = "0 held" } },
           network = network }
end

local function render(fmt, rep)
  local buf = {}
  local out = { write = function(_, ...) for _, s in ipairs({ ... }) do buf[#buf + 1] = s end end }
  assert(check[fmt](rep, out))
  return table.concat(buf)
end

describe("check reports with network conditions #unit", function()
  local net = { delay = 0.05, loss = 0.1, via = "iptables", packets = 200, dropped = 21, delayed = 179, errors = 2 }
  local line = "delay 50 ms each way, loss 10% (NFQUEUE via iptables): 200 packets, 21 dropped, 179 delayed, " ..
    "2 passed after errors"

  it("text prints the network line", function()
    assert.matches("\nnetwork: " .. line:gsub("%p", "%%%0") .. "\n", render("text", report(net)))
  end)

  it("json carries the counts and the same line", function()
    local j = cjson.decode(render("json", report(net)))
    assert.same({ delay = 0.05, loss = 0.1, via = "iptables", packets = 200, dropped = 21, delayed = 179,
                  errors = 2, summary = line }, j.network)
    assert.equal(1, #j.checks)
  end)

  it("junit carries the line as a property", function()
    local xml = render("junit", report(net))
    assert.truthy(xml:find('<property name="network" value="' .. line .. '"/>', 1, true), xml)
  end)

  it("a helper that failed is said in each format", function()
    local rep = report({ error = "netem: the helper died" })
    assert.matches("\nnetwork: netem: the helper died\n", render("text", rep))
    assert.equal("netem: the helper died", cjson.decode(render("json", rep)).network.error)
    assert.truthy(render("junit", rep):find('name="network" value="netem: the helper died"', 1, true))
  end)

  it("without --delay/--loss no format says network", function()
    for _, fmt in ipairs({ "text", "json", "junit" }) do
      assert.is_nil(render(fmt, report(nil)):find("network", 1, true), fmt)
    end
  end)
end)
