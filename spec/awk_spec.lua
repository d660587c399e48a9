local tcplab = require "tcplab"
local support = require "support"

-- Builds, in a fresh namespace, a known mix of states and compares our
-- counts with the seed's real pipelines run in the same namespace.
describe("the seed's awk counts", function()
  if not support.is_root() then
    pending("need root: they run in a fresh network namespace")
    return
  end

  local keep = {}
  local function hold(s) keep[#keep + 1] = s return s end

  local function pair(lst, host)
    local cli = hold(assert(tcplab.connect(host, select(2, lst:getsockname()), 2)))
    local conn = hold(assert(lst:accept(2)))
    return cli, conn
  end

  setup(function()
    assert(tcplab.netns.unshare())
    local l4 = hold(assert(tcplab.listen("127.0.0.1", 0, 16)))
    local l6 = hold(assert(tcplab.listen("::1", 0, 16)))
    local dual = hold(assert(tcplab.socket("inet6")))
    assert(dual:setopt("v6only", false))
    assert(dual:bind("::", 0))
    assert(dual:listen(16))
    pair(l4, "127.0.0.1")                         -- ESTABLISHED x2, v4
    pair(l6, "::1")                               -- ESTABLISHED x2, v6
    pair(dual, "127.0.0.1")                       -- ESTABLISHED x2, v4-mapped on a v6 socket
    for _, spec in ipairs({ { l4, "127.0.0.1" }, { l6, "::1" } }) do  -- TIME_WAIT, v4 and v6
      local cli, conn = pair(spec[1], spec[2])
      local t = tcplab.observe.tuple(cli)
      cli:close()
      assert.equal("", conn:read(10, 2))
      conn:close()
      assert(tcplab.await_state(t, "TIME_WAIT", 2))
    end
    local cli, conn = pair(l6, "::1")             -- FIN_WAIT2 / CLOSE_WAIT
    local t = tcplab.observe.tuple(cli)
    cli:close()
    assert(tcplab.await_state(t, "FIN_WAIT2", 2))
    assert(tcplab.await_state(conn, "CLOSE_WAIT", 2))
    hold(assert(tcplab.connect("127.0.0.1", select(2, l4:getsockname()), 2)))  -- x2, one still queued
  end)

  teardown(function()
    for _, s in ipairs(keep) do s:close() end
  end)

  it("counts are exact in a namespace of our own", function()
    assert.is_true(tcplab.netns.is_ours())
    assert.same({ LISTEN = 3, ESTABLISHED = 8, TIME_WAIT = 2, FIN_WAIT2 = 1, CLOSE_WAIT = 1 },
                tcplab.counts())
  end)

  it("awk.netstat() prints the lines of netstat -n | awk", function()
    local ours = assert(tcplab.awk.netstat())
    local theirs = support.lines(tcplab.awk.NETSTAT_PIPELINE)
    assert.same(theirs, ours)
    assert.same({ "CLOSE_WAIT 1", "ESTABLISHED 8", "FIN_WAIT2 1", "TIME_WAIT 2" }, ours)
  end)

  it("awk.ss() prints the lines of ss -ant | awk", function()
    local ours = assert(tcplab.awk.ss())
    local theirs = support.lines(tcplab.awk.SS_PIPELINE)
    assert.same(theirs, ours)
    assert.same({ "CLOSE-WAIT 1", "ESTAB 8", "FIN-WAIT-2 1", "LISTEN 3", "TIME-WAIT 2" }, ours)
  end)

  it("counts agrees with #snapshot per state", function()
    local by_state = {}
    for _, r in ipairs(assert(tcplab.snapshot())) do
      by_state[r.state] = (by_state[r.state] or 0) + 1
    end
    assert.same(tcplab.counts(), by_state)
  end)

  it("the v4-mapped connection shows v4 addresses on an inet6 record", function()
    local mapped = 0
    for _, r in ipairs(assert(tcplab.snapshot{ family = "inet6", states = "ESTABLISHED" })) do
      if r.src == "127.0.0.1" then mapped = mapped + 1 end
    end
    assert.equal(1, mapped)  -- the accepted end; the client is a plain inet socket
  end)

  it("tcplab stat prints both styles from the command line", function()
    local out = support.slurp("lua5.4 bin/tcplab stat --style ss")
    assert.equal("CLOSE-WAIT 1\nESTAB 8\nFIN-WAIT-2 1\nLISTEN 3\nTIME-WAIT 2\n", out)
    out = support.slurp("lua5.4 bin/tcplab stat")
    assert.equal("CLOSE_WAIT 1\nESTABLISHED 8\nFIN_WAIT2 1\nTIME_WAIT 2\n", out)
  end)
end)
