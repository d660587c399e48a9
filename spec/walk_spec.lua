local support = require "support"

-- Builds spec/c/walk_test.c against csrc/diag_parse.c and turns each of its
-- "ok NAME" / "FAIL NAME" lines into a test.
describe("the reply walker (C unit checks) #unit", function()
  support.c_unit(it, assert, {
    cflags = support.slurp("pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4"):gsub("%s+$", ""),
    sources = { "spec/c/walk_test.c", "csrc/diag_parse.c", "-lmnl" },
    expected = 11,
  })
end)
