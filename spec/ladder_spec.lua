--- The ladder, its SVG and its JSON, drawn from a recorded run of the
-- handshake scenario (spec/fixtures/handshake_run.lua): what is asserted is
-- the order of arrows, states and calls, not a frozen screenshot.
local wire = require "tcplab.wire"
local ladder = require "tcplab.format.ladder"
local support = require "support"

local function recorded()
  local r = dofile("spec/fixtures/handshake_run.lua")
  wire.label(r.segments, r.port)
  return r
end

local function render(f, r)
  local path = os.tmpname()
  local out = assert(io.open(path, "w"))
  f(r, out)
  out:close()
  local text = support.slurp("cat " .. path)
  os.remove(path)
  return text, path
end

local function lines_of(text)
  local t = {}
  for l in text:gmatch("[^\n]*") do t[#t + 1] = l end
  return t
end

-- the first line at or after `from` matching pattern
local function find(lines, pattern, from)
  for i = from or 1, #lines do if lines[i]:find(pattern) then return i end end
  return nil
end

describe("the ladder of a recorded handshake #unit", function()
  local r = recorded()
  local text = render(ladder.print, r)
  local lines = lines_of(text)
  local syn, sa = r.segments[1], r.segments[2]

  it("draws the SYN to the right, the SYN-ACK back, then the client's ACK, with absolute seq/ack", function()
    local a = find(lines, ("──S seq=%d .-▶│"):format(syn.seq))
    local b = find(lines, ("│◀.- SA seq=%d ack=%d──│"):format(sa.seq, syn.seq + 1), a)
    local c = find(lines, ("│──A seq=%d ack=%d .-▶│"):format(syn.seq + 1, sa.seq + 1), b)
    assert.truthy(a, text)
    assert.truthy(b, text)
    assert.truthy(c, text)
  end)

  it("puts each state at its time: SYN_SENT before the SYN, ESTABLISHED on the client at the SYN-ACK, the server's after the final ACK", function()
    local sent = find(lines, "^ *[%d.]+  %[SYN_SENT%]")
    local s = find(lines, "──S seq=")
    local est = find(lines, "^ *[%d.]+  %[ESTABLISHED%] +│◀.- SA")
    local final = find(lines, "│──A seq=%d+ ack=%d+ .-▶│")
    local server_est = find(lines, "│ %[ESTABLISHED%]$", final)
    assert.truthy(sent and s and sent < s, text)
    assert.truthy(est and est > s, text)
    assert.truthy(server_est and server_est >= final, text)
  end)

  it("shows connect() returning after the SYN-ACK and accept(5) after the final ACK", function()
    local connect = find(lines, "connect%(")
    local first_sa = find(lines, "SA seq=")
    local accept = find(lines, "accept%(5%)")
    local final = find(lines, "│──A seq=%d+ ack=%d+ .-▶│")
    assert.truthy(connect > first_sa, text)
    assert.truthy(accept > final, text)
  end)

  it("wraps long calls instead of cutting them: every word of the fault's rule is there", function()
    local rule
    for _, row in ipairs(r.steps) do if row.call:match("^fault: drop the first") then rule = row.result end end
    local joined = text:gsub("[│ ]+", " ")
    for word in rule:gmatch("%S+") do assert.truthy(joined:find(word, 1, true), word) end
    assert.is_nil(text:find("~ |", 1, true))
    for _, l in ipairs(ladder.wrap("a " .. ("x"):rep(70) .. " b", 30)) do assert.is_true(#l <= 30) end
  end)

  it("draws one ladder per connection, in order, when a run has several", function()
    local two = recorded()
    local n = #two.segments
    for i = 1, n do   -- the same handshake again from another client port, 10 s later
      local s = {}
      for k, v in pairs(two.segments[i]) do s[k] = v end
      s.t = s.t + 10
      if s.sport == two.port then s.dport = s.dport + 1 else s.sport = s.sport + 1 end
      two.segments[#two.segments + 1] = s
    end
    wire.label(two.segments, two.port)
    local out = render(ladder.print, two)
    local first, second = out:find("connection 1 of 2", 1, true), out:find("connection 2 of 2", 1, true)
    assert.truthy(first and second and first < second, out)
  end)
end)

describe("tcplab.wire on a recorded handshake #unit", function()
  it("numbers relative to each end's ISN as tcpdump shows them without -S", function()
    local r = recorded()
    local c = wire.connections(r.segments, r.events, r.port)[1]
    local hs = wire.handshake(c)
    assert.same({ 0, 0, 1 }, { hs.syn.rseq, hs.synack.rseq, hs.synack.rack })
    assert.same({ 1, 1 }, { hs.ack.rseq, hs.ack.rack })
    assert.equal(hs.syn.seq, c.client_isn)
    assert.equal(hs.synack.seq, c.server_isn)
  end)

  it("joins the client's connect (logged with sport 0) and the server's states to the connection", function()
    local r = recorded()
    local c = wire.connections(r.segments, r.events, r.port)[1]
    local seen = {}
    for _, tr in ipairs(c.transitions) do seen[#seen + 1] = tr.side .. ":" .. tr.from .. ">" .. tr.to end
    local text = table.concat(seen, " ")
    assert.matches("client:CLOSE>SYN_SENT", text)
    assert.matches("server:SYN_RECV>ESTABLISHED", text)
  end)

  it("lists the options of each SYN in a note below the ladder", function()
    local text = render(ladder.print, recorded())
    assert.matches("note: S at [%d.]+ from the client: mss %d+", text)
    assert.matches("note: SA at [%d.]+ from the server: mss %d+", text)
  end)
end)

describe("the SVG of a recorded handshake #unit", function()
  it("is well-formed XML with one arrow group per segment and text as text", function()
    local r = recorded()
    local text = render(require("tcplab.format.svg").write, r)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    local ok = os.execute("xmllint --noout " .. path .. " 2>/dev/null")
    os.remove(path)
    assert.is_true(ok, "xmllint")
    local _, arrows = text:gsub('<g class="segment"', "")
    assert.equal(#r.segments, arrows)
    assert.truthy(text:find(("SA seq=%d ack=%d"):format(r.segments[2].seq, r.segments[1].seq + 1), 1, true))
    assert.is_nil(text:find("<image", 1, true))
    assert.is_nil(text:find("href", 1, true))
  end)
end)

describe("the JSON of a recorded handshake #unit", function()
  it("gives the scenario, the calls and one connection with every segment and its transitions", function()
    local cjson = require "cjson"
    local r = recorded()
    local doc = cjson.decode((render(require("tcplab.format.json").scenario, r)))
    assert.equal(r.name, doc.scenario)
    assert.equal(true, doc.ok)
    assert.equal(#r.steps, #doc.calls)
    assert.equal(1, #doc.connections)
    local c = doc.connections[1]
    assert.matches("^127%.0%.0%.1:%d+$", c.client)
    assert.equal(#r.segments, #c.segments)
    assert.same({ "client", "S" }, { c.segments[1].from, c.segments[1].flags })
    assert.equal(r.segments[1].seq, c.segments[1].seq)
    assert.equal((r.segments[1].seq + 1) % 2^32, c.segments[2].ack)
    for _, s in ipairs(c.segments) do
      assert.matches("^[FSRPAUEW]+$", s.flags)
      for _, k in ipairs({ "t", "seq", "ack", "len", "win" }) do assert.is_number(s[k]) end
    end
    assert.is_true(#c.transitions >= 4)
  end)
end)
