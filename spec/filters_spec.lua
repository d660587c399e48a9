local tcplab = require "tcplab"
local support = require "support"

-- "sport>dport" of each socket, sorted: the same key from ss and from us
-- (ss writes a v4-mapped address as [::ffff:a.b.c.d], we do not).
local function ours(f)
  local out = {}
  for _, r in ipairs(assert(tcplab.snapshot(f))) do out[#out + 1] = r.sport .. ">" .. r.dport end
  table.sort(out)
  return out
end

local function theirs(filter)
  local out = {}
  for _, line in ipairs(support.lines("ss -tanH " .. filter)) do
    local words = {}   -- the last two are local and peer (no State column with one state)
    for w in line:gmatch("%S+") do words[#words + 1] = w end
    local sport, dport = words[#words - 1]:match(":(%d+)$"), words[#words]:match(":([%d*]+)$")
    out[#out + 1] = sport .. ">" .. (dport == "*" and "0" or dport)
  end
  table.sort(out)
  return out
end

describe("ss-grade filters pushed into the kernel's bytecode #kernel #root", function()
  if not support.is_root() then
    pending("needs root: a network namespace of our own")
    return
  end
  local keep, base, top, cross
  setup(function()
    assert(tcplab.netns.unshare())
    assert(os.execute("ip -6 addr add ::2/128 dev lo nodad"))
    keep = {}
    local function hold(s) keep[#keep + 1] = s return s end
    local first = hold(assert(tcplab.listen("127.0.0.1", 0)))
    base = select(2, first:getsockname())
    -- a few listeners on ports after base (skip any that is taken: bounded)
    local made = 1
    for p = base + 1, math.min(base + 40, 65535) do
      if made == 6 then break end
      local s = tcplab.listen("127.0.0.1", p)
      if s then hold(s) made = made + 1 top = p end
    end
    hold(assert(tcplab.listen("127.0.0.2", 0)))
    hold(assert(tcplab.listen("::1", 0)))
    hold(assert(tcplab.listen("::2", 0)))
    local dual = hold(assert(tcplab.listen("::", 0)))  -- takes v4 too: accepted as v4-mapped
    local dport = select(2, dual:getsockname())
    hold(assert(tcplab.connect("127.0.0.1", dport, 2)))
    hold(assert(dual:accept(2)))
    -- one connection whose ends differ: 127.0.0.2:any -> 127.0.0.1:base
    local c = hold(assert(tcplab.socket("inet")))
    assert(c:bind("127.0.0.2", 0))
    assert(c:connect("127.0.0.1", base, 2))
    hold(assert(first:accept(2)))
    cross = select(2, c:getsockname())
  end)
  teardown(function() for _, s in ipairs(keep or {}) do s:close() end end)

  it("port ranges as 'LO-HI' and {lo, hi} select what ss's sport >= and <= select", function()
    local lo, hi = base + 1, base + 30
    local want = theirs(("'sport >= :%d and sport <= :%d'"):format(lo, hi))
    assert.is_true(#want >= 1)
    assert.same(want, ours{ sport = lo .. "-" .. hi })
    assert.same(want, ours{ sport = { lo, hi } })
    assert.same(theirs(("'dport >= :%d and dport <= :%d'"):format(1, 65535)), ours{ dport = "1-65535" })
  end)

  it("a range whose HI is a listener's port includes it, as ss's sport <= :HI does (both backends)", function()
    local want = theirs(("'sport >= :%d and sport <= :%d'"):format(base + 1, top))
    assert.is_true(#want >= 2)
    local at_hi = 0
    for _, k in ipairs(want) do if k == top .. ">0" then at_hi = at_hi + 1 end end
    assert.equal(1, at_hi, "ss sees the listener at HI")
    -- (the BPF iterator takes no port range: netlink's bytecode answers)
    assert.same(want, ours{ sport = (base + 1) .. "-" .. top })
    assert.same(want, ours{ sport = { base + 1, top }, backend = "netlink" })
  end)

  it("a dst prefix is a condition on the peer's address, not the local one (src and dst differ)", function()
    local want = theirs("dst 127.0.0.2/32")
    assert.same({ base .. ">" .. cross }, want)
    assert.same(want, ours{ dst = "127.0.0.2/32" })
    assert.same(want, ours{ dst = "127.0.0.2/32", backend = "netlink" })
    assert.same(theirs("src 127.0.0.2/32"), ours{ src = "127.0.0.2/32", backend = "netlink" })
    assert.same(theirs("dst 127.0.0.1 src 127.0.0.2"), ours{ dst = "127.0.0.1", src = "127.0.0.2" })
  end)

  it("a v4 /32 and a /8 match what ss's src matches, v4-mapped v6 sockets included", function()
    assert.same(theirs("src 127.0.0.2/32"), ours{ src = "127.0.0.2/32" })
    assert.same(theirs("src 127.0.0.2"), ours{ src = "127.0.0.2" })
    local all8 = ours{ src = "127.0.0.0/8" }
    assert.same(theirs("src 127.0.0.0/8"), all8)
    -- the accepted end of the dual-stack listener is inet6 (::ffff:127.0.0.1) and matches
    local mapped
    for _, r in ipairs(assert(tcplab.snapshot{ family = "inet6", states = "ESTABLISHED" })) do mapped = r end
    assert.truthy(mapped)
    assert.truthy(support.count(all8) > 0)
    local found = false
    for _, k in ipairs(all8) do found = found or k == mapped.sport .. ">" .. mapped.dport end
    assert.is_true(found)
  end)

  it("v6 addresses and prefixes for both ends", function()
    assert.same(theirs("src '[::1]'"), ours{ src = "::1" })
    assert.same(theirs("src ::2/128"), ours{ src = "::2/128" })
    assert.same(theirs("dst '[::ffff:127.0.0.1]'"), ours{ dst = "::ffff:127.0.0.1" })
    assert.same(1, #ours{ src = "::1" })
  end)

  it("combines ranges, prefixes and states (every condition must hold)", function()
    local f = { states = "LISTEN", src = "127.0.0.0/8", sport = base .. "-" .. (base + 40) }
    assert.same(theirs(("state listening src 127.0.0.0/8 'sport >= :%d and sport <= :%d'"):format(base, base + 40)),
                ours(f))
  end)

  -- The dual-stack listener's port: an ESTABLISHED inet socket whose remote
  -- port is a listening port (the client's end). Any ESTABLISHED record would
  -- not do: the accepted end's dport is the client's ephemeral port.
  local function dual_port()
    local listening = {}
    for _, r in ipairs(assert(tcplab.snapshot{ states = "LISTEN" })) do listening[r.sport] = true end
    for _, r in ipairs(assert(tcplab.snapshot{ states = "ESTABLISHED", family = "inet" })) do
      if listening[r.dport] then return r.dport end
    end
  end

  it("port = P selects sockets with P at either end, as ss '( sport = :P or dport = :P )' does", function()
    -- the dual-stack listener's port: the listener and the accepted end have it
    -- as sport, the client has it as dport
    local dual = dual_port()
    assert.truthy(dual)
    local want = theirs(("'( sport = :%d or dport = :%d )'"):format(dual, dual))
    assert.equal(3, #want)
    local backends = { "netlink" }
    if tcplab.backend("bpf") then backends[2] = "bpf" end
    for _, be in ipairs(backends) do
      assert.same(want, ours{ port = dual, backend = be }, be)
      local counts = assert(tcplab.counts{ port = dual, backend = be })
      assert.same({ LISTEN = 1, ESTABLISHED = 2 }, counts, be)
      assert.same({ LISTEN = 1 }, assert(tcplab.counts{ port = dual, states = "LISTEN", backend = be }), be)
    end
    assert.same(want, ours{ port = dual .. "-" .. dual })
    -- a range: what ss's either-end range selects
    local lo, hi = base, base + 40
    assert.same(theirs(("'( sport >= :%d and sport <= :%d ) or ( dport >= :%d and dport <= :%d )'"):format(lo, hi, lo, hi)),
                ours{ port = lo .. "-" .. hi })
    -- one that no socket has
    local free = dual == 1 and 2 or 1
    assert.same({}, ours{ port = free })
    assert.same({}, assert(tcplab.counts{ port = free }))
  end)

  it("tcplab counts, list and watch take --port P (either end), the same answer as the library's", function()
    local dual = dual_port()
    local out, rc = support.tcplab(("counts --port %d --format json"):format(dual))
    assert.equal(0, rc, out)
    local cjson = require "cjson"
    assert.same({ LISTEN = 1, ESTABLISHED = 2 }, cjson.decode(out))
    out, rc = support.tcplab(("list --port %d --format json"):format(dual))
    assert.equal(0, rc, out)
    assert.equal(3, #cjson.decode(out))
    out, rc = support.tcplab(("watch --port %d --count 1"):format(dual))
    assert.equal(0, rc, out)
    assert.matches("\nESTABLISHED%s+2%s", out)
    assert.matches("\nLISTEN%s+1%s", out)
    assert.matches("\ntotal%s+3%s", out)
    out, rc = support.tcplab(("counts --port %d --port %d"):format(dual, dual))
    assert.equal(2, rc, out)
    assert.matches("^tcplab: %-%-port: one port or range", out)
  end)

  it("tcplab list takes --state lists, --sport ranges, --src and --dst", function()
    local out, rc = support.tcplab(("list --state listen,established --sport %d-%d --src 127.0.0.0/8 --format json")
      :format(base, base + 40))
    assert.equal(0, rc, out)
    local n = 0
    for _ in out:gmatch('"state"') do n = n + 1 end
    assert.equal(#ours{ states = { "LISTEN", "ESTABLISHED" }, sport = base .. "-" .. (base + 40), src = "127.0.0.0/8" }, n)
    for _, bad in ipairs({ "--sport 9-3", "--sport 1-70000", "--src 10.0.0.0/33", "--dst nowhere", "--state listen,nope" }) do
      local msg, code = support.tcplab("list " .. bad)
      assert.equal(2, code, bad .. ": " .. msg)
      assert.matches("^tcplab: ", msg)
    end
  end)
end)
