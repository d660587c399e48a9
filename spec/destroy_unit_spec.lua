local support = require "support"

-- Builds spec/c/destroy_test.c against csrc/destroy.c (no Lua) and turns
-- each of its "ok NAME" / "FAIL NAME" lines into a test.
describe("the SOCK_DESTROY request (C unit checks) #unit", function()
  local bin = os.tmpname()
  local build = support.slurp(("cc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -fsanitize=address,undefined " ..
    "-o %s spec/c/destroy_test.c csrc/destroy.c csrc/setns.c csrc/result.c -lmnl 2>&1"):format(bin))
  local out = build == "" and support.slurp("ASAN_OPTIONS=detect_leaks=0 " .. bin .. " 2>&1") or ""
  os.remove(bin)

  it("builds without Lua", function() assert.equal("", build) end)
  for line in out:gmatch("[^\n]+") do
    local status, name = line:match("^(%a+) (.+)$")
    if status == "ok" or status == "FAIL" then
      it(name, function() assert.equal("ok", status) end)
    end
  end
  it("ran all its checks", function()
    assert.matches("\n0 failed\n$", out)
    local n = select(2, out:gsub("\nok ", "")) + (out:match("^ok ") and 1 or 0)
    assert.equal(17, n)
  end)
end)
