local support = require "support"

-- Builds spec/c/destroy_test.c against csrc/destroy.c (no Lua) and turns
-- each of its "ok NAME" / "FAIL NAME" lines into a test.
describe("the SOCK_DESTROY request (C unit checks) #unit", function()
  support.c_unit(it, assert, {
    cflags = "-fsanitize=address,undefined",
    sources = { "spec/c/destroy_test.c", "csrc/destroy.c", "csrc/setns.c", "csrc/result.c", "-lmnl" },
    run_env = "ASAN_OPTIONS=detect_leaks=0 ",
    expected = 17,
  })
end)
