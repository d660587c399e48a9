local support = require "support"

-- Builds spec/c/walk_test.c against csrc/diag_parse.c and turns each of its
-- "ok NAME" / "FAIL NAME" lines into a test.
describe("the reply walker (C unit checks) #unit", function()
  local bin = os.tmpname()
  local cflags = support.slurp("pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4"):gsub("%s+$", "")
  local build = support.slurp(("cc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror %s -o %s " ..
    "spec/c/walk_test.c csrc/diag_parse.c -lmnl 2>&1"):format(cflags, bin))
  local out = build == "" and support.slurp(bin) or ""
  os.remove(bin)

  it("builds", function() assert.equal("", build) end)
  for line in out:gmatch("[^\n]+") do
    local status, name = line:match("^(%a+) (.+)$")
    if status == "ok" or status == "FAIL" then
      it(name, function() assert.equal("ok", status) end)
    end
  end
  it("ran all its checks", function()
    assert.matches("\n0 failed\n$", out)
    local n = select(2, out:gsub("\nok ", "")) + (out:match("^ok ") and 1 or 0)
    assert.equal(11, n)
  end)
end)
