--- scenarios.run's clean-up, judged on what a scenario leaves behind when it
-- raises half way: its recorder (a tracefs instance of this process), its
-- packet capture (an fd), its fault rules, the caller's namespace.
local tcplab = require "tcplab"
local support = require "support"

describe("a scenario that raises half way #kernel #root", function()
  if not support.is_root() then
    pending("needs root: the scenario runs in a namespace of its own, with a recorder and a capture")
    return
  end

  local function run_exploding(body)
    local kit = require "tcplab.scenarios.kit"
    package.loaded["tcplab.scenarios.exploding"] = { run = function(opts) return body(kit, opts) end }
    table.insert(tcplab.scenarios.NAMES, "exploding")
    local ok, result, err = pcall(tcplab.scenarios.run, "exploding")
    table.remove(tcplab.scenarios.NAMES)
    package.loaded["tcplab.scenarios.exploding"] = nil
    assert(ok, result)
    return result, err
  end

  it("releases its recorder and its capture, and returns the caller home", function()
    local home, fds = tcplab.netns.id(), support.fd_count()
    local began
    local result, err = run_exploding(function(kit, opts)
      local s = kit.begin("exploding", opts)
      began = { recorder = s.rec ~= nil, capture = s.cap ~= nil, instances = #tcplab.trace.instances() }
      local cli = kit.connect(s)
      cli:close()
      error("boom")
    end)
    assert.is_nil(result)
    assert.matches("boom", err)
    assert.is_true(began.recorder)
    assert.is_true(began.capture, "a capture was open (root)")
    assert.equal(home, tcplab.netns.id())
    assert.same({}, tcplab.trace.instances())
    assert.equal(fds, support.fd_count(), "the capture's and the recorder's fds are closed")
  end)

  it("a scenario that finishes normally leaves nothing either", function()
    local fds = support.fd_count()
    local r = assert(tcplab.scenarios.run("two_sockets"))
    assert.is_true(r.ok)
    assert.same({}, tcplab.trace.instances())
    assert.equal(fds, support.fd_count())
  end)
end)
