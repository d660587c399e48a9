local tcplab = require "tcplab"
local support = require "support"

describe("the scenario list #unit", function()
  it("names every scenario file, and every name has a file with a claim and a run", function()
    local files = {}
    for _, path in ipairs(support.lines("ls lua/tcplab/scenarios/*.lua")) do
      local name = path:match("([%w_]+)%.lua$")
      if name ~= "init" and name ~= "kit" then files[name] = true end
    end
    local listed = {}
    for _, name in ipairs(tcplab.scenarios.NAMES) do
      listed[name] = true
      assert.truthy(files[name], name .. " is listed but has no file")
      local s = assert(tcplab.scenarios.get(name))
      assert.equal("string", type(s.claim), name)
      assert.equal("function", type(s.run), name)
    end
    for name in pairs(files) do assert.truthy(listed[name], name .. ".lua is not in scenarios.NAMES") end
  end)

  it("refuses an unknown name, listing the valid ones", function()
    local ok, err = tcplab.scenarios.run("nosuch")
    assert.is_nil(ok)
    assert.matches("unknown scenario 'nosuch' %(valid: lifecycle two_sockets", err)
  end)
end)
