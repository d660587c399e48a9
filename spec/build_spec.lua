-- The suite tests the module it was asked to test (make test-asan sets this).
describe("the module under test #unit", function()
  it("is the one the make target built", function()
    local want = os.getenv("TCPLAB_EXPECT_CORE")
    local got = package.searchpath("tcplab.core", package.cpath)
    assert.truthy(got)
    if want then assert.equal(want, got) end
    assert.equal("table", type(require("tcplab.core").STATES))
  end)
end)
