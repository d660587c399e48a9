local tcplab = require "tcplab"
local support = require "support"

describe("following a connection by its four-tuple #kernel #root", function()
  support.as_root(it, pending, "finds link-local IPv6 sockets, whose names carry a scope id the dump does not", function()
    assert(tcplab.netns.unshare())
    local sys = require "tcplab.sys"
    for _, cmd in ipairs({ "ip link add d0 type veth peer name d1", "ip link set d1 up", "ip link set d0 up",
                           "ip -6 addr add fe80::42/64 dev d0 nodad" }) do
      local out, ok = sys.run("ip", cmd)
      assert(ok, cmd .. ": " .. tostring(out))
    end
    local l <close> = assert(tcplab.listen("fe80::42%d0", 0, 4))
    local port = select(2, l:getsockname())
    local c <close> = assert(tcplab.connect("fe80::42%d0", port, 2))
    local a <close> = assert(l:accept(2))
    local t = tcplab.observe.tuple(c)
    assert.equal("fe80::42", t.src)
    assert.same({ true, "ESTABLISHED" }, { tcplab.await_state(t, "ESTABLISHED", 1) })
    assert.same({ true, "ESTABLISHED" }, { tcplab.await_state(a, "established", 1) })
    assert.same({ true, "LISTEN" }, { tcplab.await_state(l, "LISTEN", 1) })
    c:close()
    assert.same({ true, "FIN_WAIT2" }, { tcplab.await_state(t, "FIN_WAIT2", 2) })
  end)
end)
