--- make mutate's runner (spec/mutate.lua): what makes an entry malformed, how
-- a mutant is planted, and that every list in spec/mutations loads.
local mutate = require "mutate"

describe("spec/mutate.lua #unit", function()
  local root
  setup(function()
    root = (io.popen("mktemp -d"):read("l"))
    local f = assert(io.open(root .. "/x.lua", "w"))
    f:write("local a = 1\nlocal b = a + 1\nlocal c = a + 1\n")
    f:close()
    os.execute("mkdir -p " .. root .. "/spec && touch " .. root .. "/spec/x_spec.lua")
  end)
  teardown(function() os.execute("rm -rf " .. root) end)

  local function entry(t)
    local e = { file = "x.lua", from = "local a = 1", to = "local a = 2", specs = { "spec/x_spec.lua" },
                why = "a wrong constant" }
    for k, v in pairs(t or {}) do e[k] = v end
    return e
  end

  it("accepts an entry whose from occurs exactly once, and plants it there only", function()
    assert.is_nil(mutate.check_entry(entry(), root))
    assert.equal("local a = 2\nlocal b = a + 1\nlocal c = a + 1\n", mutate.apply("local a = 1\nlocal b = a + 1\nlocal c = a + 1\n", entry()))
  end)

  it("refuses from text that occurs twice or not at all (plain text, not a pattern)", function()
    assert.matches("occurs 2 times", mutate.check_entry(entry{ from = "a + 1" }, root))
    assert.matches("occurs 0 times", mutate.check_entry(entry{ from = "local a = 3" }, root))
    assert.matches("occurs 0 times", mutate.check_entry(entry{ from = "local . = 1" }, root))
  end)

  it("refuses missing fields, unknown fields, missing files and specs, and a no-op", function()
    assert.matches("field 'why' must be a string", mutate.check_entry(entry{ why = false }, root))
    assert.matches("field 'why' is empty", mutate.check_entry(entry{ why = " " }, root))
    assert.matches("unknown field 'spec'", mutate.check_entry(entry{ spec = "x" }, root))
    assert.matches("non%-empty list", mutate.check_entry(entry{ specs = {} }, root))
    assert.matches("file 'nope.lua' does not exist", mutate.check_entry(entry{ file = "nope.lua" }, root))
    assert.matches("spec 'spec/nope_spec.lua' does not exist", mutate.check_entry(entry{ specs = { "spec/nope_spec.lua" } }, root))
    assert.matches("nothing is planted", mutate.check_entry(entry{ to = "local a = 1" }, root))
    assert.matches("inside the tree", mutate.check_entry(entry{ file = "../x.lua" }, root))
  end)

  it("every list in spec/mutations loads and each entry applies to this tree", function()
    local entries, problems = mutate.load_lists(".")
    assert.same({}, problems)
    assert.is_true(#entries >= 1)
  end)
end)
