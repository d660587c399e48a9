--- The Lua modules sit in layers (doc/layout.md) and each requires only
-- modules of its own layer or below, without a cycle; `tcplab` (init.lua) is
-- a facade that nothing in the library requires. Every `require` in lua/
-- counts, the lazy ones inside functions included: require "x",
-- require("x"), pcall(require, "x"), and require("prefix." .. n), which is
-- an edge to every module whose name starts with the prefix.
-- Also: the public modules doc/api.md lists are the facade's, and the
-- internal ones are not reachable through it.
local support = require "support"

-- The layers, bottom first. A module not named here (nor under a prefix
-- below) fails the spec: put a new module in its layer.
local LAYER = {
  ["tcplab.core"] = 0,
  -- pure helpers
  ["tcplab.states"] = 1, ["tcplab.args"] = 1, ["tcplab.sys"] = 1, ["tcplab.wire"] = 1,
  ["tcplab.export"] = 1, ["tcplab.pcapng"] = 1,
  -- kernel views: the kernel's answers
  ["tcplab.kernel"] = 2, ["tcplab.namespaces"] = 2, ["tcplab.counters"] = 2,
  ["tcplab.observe"] = 2, ["tcplab.tally"] = 2, ["tcplab.awk"] = 2, ["tcplab.kill"] = 2,
  ["tcplab.live"] = 2,
  -- recorder
  ["tcplab.trace"] = 3,
  -- lab
  ["tcplab.lab"] = 4, ["tcplab.fault"] = 4, ["tcplab.nfqueue"] = 4, ["tcplab.timeline"] = 4,
  -- scenarios and checks
  ["tcplab.scenarios"] = 5, ["tcplab.checks"] = 5,
  -- formats
  ["tcplab.format"] = 6,
  -- command line and the busted helper (they drive everything below)
  ["tcplab.cli"] = 7, ["tcplab.busted"] = 7,
  ["tcplab.serve"] = 7,   -- the exporter: metrics at scrape time over HTTP (cli/serve.lua drives it)
  -- the facade: re-exports, required by no module of the library
  ["tcplab"] = 8,
}
local PREFIX_LAYER = {   -- every module under these
  { "tcplab.trace.", 3 }, { "tcplab.lab.", 4 }, { "tcplab.scenarios.", 5 }, { "tcplab.checks.", 5 },
  { "tcplab.format.", 6 }, { "tcplab.cli.", 7 },
}

local function layer_of(name)
  if LAYER[name] then return LAYER[name] end
  for _, p in ipairs(PREFIX_LAYER) do
    if name:sub(1, #p[1]) == p[1] then return p[2] end
  end
  return nil
end

local function read(path)
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  return text
end

-- Source without comments (a commented-out require is no edge).
local function code_of(src)
  src = src:gsub("%-%-%[(=*)%[.-%]%1%]", "")
  return (src:gsub("%-%-[^\n]*", ""))
end

--- The requires of one source text: a list of { name, prefix = true|nil }.
local function requires_of(src)
  local out = {}
  local code = code_of(src)
  local function add(name, rest)
    out[#out + 1] = { name = name, prefix = rest:match("^%s*%.%.") ~= nil or nil }
  end
  for name, rest in code:gmatch("%f[%w_]require%s*%(?%s*[\"']([^\"'\n]+)[\"']([^\n]*)") do add(name, rest) end
  for name, rest in code:gmatch("pcall%s*%(%s*require%s*,%s*[\"']([^\"'\n]+)[\"']([^\n]*)") do add(name, rest) end
  return out
end

--- Module name of a file under lua/: lua/tcplab/x/init.lua -> tcplab.x.
local function module_of(path)
  local m = path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  return m
end

--- Every module of lua/ and every edge (from, to) between them.
local function graph()
  local modules, files = {}, {}
  for _, path in ipairs(support.lines("find lua -name '*.lua' | sort")) do
    local m = module_of(path)
    modules[m], files[#files + 1] = path, m
  end
  modules["tcplab.core"] = "csrc"
  local edges = {}
  for _, m in ipairs(files) do
    for _, r in ipairs(requires_of(read(modules[m]))) do
      if r.prefix then
        for other in pairs(modules) do
          if other ~= m and other:sub(1, #r.name) == r.name then edges[#edges + 1] = { m, other, r.name .. "*" } end
        end
      elseif r.name:match("^tcplab%f[^%w_]") then
        edges[#edges + 1] = { m, r.name, r.name }
      end
    end
  end
  return modules, files, edges
end

--- A cycle of the edges as "a -> b -> a", or nil.
local function find_cycle(edges)
  local out = {}
  for _, e in ipairs(edges) do
    if e[1] ~= e[2] then
      out[e[1]] = out[e[1]] or {}
      out[e[1]][#out[e[1]] + 1] = e[2]
    end
  end
  local state, stack = {}, {}
  local function visit(n)
    state[n] = "open"
    stack[#stack + 1] = n
    for _, m in ipairs(out[n] or {}) do
      if state[m] == "open" then
        local from
        for i, s in ipairs(stack) do if s == m then from = i break end end
        local path = { table.unpack(stack, from) }
        path[#path + 1] = m
        return table.concat(path, " -> ")
      elseif not state[m] then
        local c = visit(m)
        if c then return c end
      end
    end
    stack[#stack] = nil
    state[n] = "done"
  end
  local names = {}
  for n in pairs(out) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do
    if not state[n] then
      local c = visit(n)
      if c then return c end
    end
  end
  return nil
end

describe("the module layers #unit", function()
  it("reads every form of require, the lazy and string-built ones included", function()
    local src = [[
local a = require "tcplab.a"
local function f() return require("tcplab.b").x end
local ok, c = pcall(require, "tcplab.c")
local d = require("tcplab.checks." .. name)
-- local e = require "tcplab.e"
--[==[ require "tcplab.f" ]==]
local g = require 'tcplab.g'
]]
    local got = {}
    for _, r in ipairs(requires_of(src)) do got[#got + 1] = r.name .. (r.prefix and "*" or "") end
    table.sort(got)
    assert.same({ "tcplab.a", "tcplab.b", "tcplab.c", "tcplab.checks.*", "tcplab.g" }, got)
  end)

  it("finds a cycle and names it", function()
    assert.is_nil(find_cycle({ { "a", "b" }, { "b", "c" } }))
    assert.equal("a -> b -> c -> a", find_cycle({ { "a", "b" }, { "b", "c" }, { "c", "a" } }))
  end)

  it("every module of lua/ has a layer", function()
    local modules = graph()
    local none = {}
    for m, path in pairs(modules) do
      if not layer_of(m) then none[#none + 1] = path .. " (" .. m .. "): give it a layer in spec/layers_spec.lua and doc/layout.md" end
    end
    table.sort(none)
    assert.same({}, none)
  end)

  it("no module requires one of a layer above it, nor the facade", function()
    local _, _, edges = graph()
    assert.is_true(#edges > 100, "edges found: " .. #edges)
    local up = {}
    for _, e in ipairs(edges) do
      local from, to = layer_of(e[1]), layer_of(e[2])
      if from and to and to > from then
        up[#up + 1] = ("%s (layer %d) requires %s (layer %d)%s"):format(e[1], from, e[2], to,
          e[3] ~= e[2] and (" through require of " .. e[3]) or "")
      end
    end
    table.sort(up)
    assert.same({}, up)
  end)

  it("the requires make no cycle", function()
    local _, _, edges = graph()
    local cycle = find_cycle(edges)
    assert.is_nil(cycle, "require cycle: " .. tostring(cycle))
  end)
end)

-- "## Public modules" of doc/api.md: the lines "- `tcplab.X`" (public) and
-- the paragraph "Internal ...: `require "tcplab.Y"`, ...".
local function public_list()
  local text = read("doc/api.md")
  local section = text:match("\n## Public modules\n(.-)\n## ") or text:match("\n## Public modules\n(.*)$")
  assert(section, "doc/api.md has no '## Public modules' section")
  local public, internal = {}, {}
  for line in section:gmatch("[^\n]+") do
    local name = line:match("^%- `(tcplab%.[%w_.]+)`")
    if name then public[#public + 1] = name end
    if line:match("^Internal") or (internal.open and not line:match("^%- ")) then
      internal.open = true
      for n in line:gmatch('`require "(tcplab%.[%w_.]+)"`') do internal[#internal + 1] = n end
    end
  end
  internal.open = nil
  return public, internal
end

describe("the public modules #unit", function()
  it("each module doc/api.md calls public is a field of the facade and that module", function()
    local tcplab = require "tcplab"
    local public = public_list()
    assert.is_true(#public >= 10, "public modules listed: " .. #public)
    local wrong = {}
    for _, name in ipairs(public) do
      local field = name:match("^tcplab%.(.+)$")
      local m = require(name)
      -- the module itself, or (tcplab.lab) the function that starts one
      local v = tcplab[field]
      if not (v == m or (type(v) == "function" and type(m) == "table" and type(m.start) == "function")) then
        wrong[#wrong + 1] = name
      end
    end
    assert.same({}, wrong)
  end)

  it("the internal modules doc/api.md names exist and are not fields of the facade", function()
    local tcplab = require "tcplab"
    local _, internal = public_list()
    assert.is_true(#internal >= 3, "internal modules listed: " .. #internal)
    local wrong = {}
    for _, name in ipairs(internal) do
      assert.is_true(pcall(require, name), name .. " does not load")
      local field = name:match("^tcplab%.([%w_]+)$")
      -- tcplab.namespaces and tcplab.tally are names of facade functions
      -- too (namespaces(), summary()): the module itself must not be there
      if field and tcplab[field] ~= nil and tcplab[field] == require(name) then wrong[#wrong + 1] = name end
    end
    assert.same({}, wrong)
  end)
end)

describe("one place for each decision #unit", function()
  local function code_files()
    local out = {}
    for _, path in ipairs(support.lines("find lua -name '*.lua' | sort")) do
      out[path] = code_of(read(path))
    end
    return out
  end

  it("an interruption is told by tcplab.process.is_signal, and only there by its message", function()
    local is_signal = require("tcplab.kernel").process.is_signal
    assert.is_true(is_signal("interrupted!"))
    assert.is_true(is_signal("spec/x.lua:3: interrupted!"))
    assert.is_true(is_signal("terminated"))
    assert.is_false(is_signal("interrupted"))      -- sleep's nil, "interrupted" is a return, not a raise
    assert.is_false(is_signal("terminated early: exit 1"))
    assert.is_false(is_signal({}))
    assert.is_false(is_signal(nil))
    assert.equal(is_signal, require("tcplab").process.is_signal)
    assert.equal(is_signal, require("tcplab.lab").is_signal)
    local elsewhere = {}
    for path, code in pairs(code_files()) do
      if path ~= "lua/tcplab/kernel.lua" and (code:find("interrupted!$", 1, true) or code:find("terminated$", 1, true)) then
        elsewhere[#elsewhere + 1] = path
      end
    end
    assert.same({}, elsewhere)
  end)

  it("a process is alive by sys.alive alone", function()
    local sys = require "tcplab.sys"
    assert.equal(sys.alive, require("tcplab.lab").alive)
    assert.is_true(sys.alive(sys.pid()))
    assert.is_false(sys.alive(0x3fffffff))
  end)

  it("a port is checked by args.bad_port alone, 1..65535 unless a filter or tuple names port 0", function()
    local args = require "tcplab.args"
    assert.is_nil(args.bad_port(1))
    assert.is_nil(args.bad_port(65535))
    assert.equal("port 1..65535 expected, got 0", args.bad_port(0))
    assert.is_nil(args.bad_port(0, true))
    assert.equal("port 0..65535 expected, got 65536", args.bad_port(65536, true))
    assert.equal("port 1..65535 expected, got 80.0", args.bad_port(80.0))
    assert.equal('port 1..65535 expected, got string "80"', args.bad_port("80"))
    -- tcpstat's extra ports are local ports to count: 0 is none (it was accepted)
    local ok, err = pcall(require("tcplab").tcpstat, { ports = { 0 } })
    assert.is_false(ok)
    assert.matches("ports%[1%]: port 1%.%.65535 expected, got 0", err)
    local elsewhere = {}
    for path, code in pairs(code_files()) do
      -- the command line parses strings (its own messages); the C core checks its own
      if path ~= "lua/tcplab/args.lua" and path ~= "lua/tcplab/cli.lua" and code:find("65535", 1, true) then
        elsewhere[#elsewhere + 1] = path
      end
    end
    assert.same({}, elsewhere)
  end)

  it("the loop over every namespace is kernel.across_namespaces alone, and it leaves out a nil", function()
    local kernel = require "tcplab.kernel"
    -- only the entries the loop handed to fn are compared (the host's list moves)
    local seen = {}
    local got = kernel.across_namespaces(function(path, ns)
      seen[#seen + 1] = ns
      assert.equal(ns.path, path)
      if #seen % 2 == 1 then return #seen end   -- the even ones "went away"
    end)
    assert.is_true(#seen >= 1)
    assert.equal(math.ceil(#seen / 2), #got)
    for i, r in ipairs(got) do
      assert.equal(seen[2 * i - 1], r.ns)
      assert.equal(2 * i - 1, r.value)
    end
    assert.has_error(function() kernel.across_namespaces("x") end,
      "bad argument #1 to 'across_namespaces' (function expected, got string \"x\")")
    local elsewhere = {}   -- nowhere else is a filter pointed at each entry's path in turn
    for path, code in pairs(code_files()) do
      if path ~= "lua/tcplab/kernel.lua" and code:find("netns%s*=%s*[%w_]+%.path") then
        elsewhere[#elsewhere + 1] = path
      end
    end
    assert.same({}, elsewhere)
  end)

  it("which end is the server is wire.side alone: the one whose local port is the server's", function()
    local wire = require "tcplab.wire"
    assert.equal("server", wire.side(8080, 8080))
    assert.equal("client", wire.side(40000, 8080))
    assert.equal("server", wire.side(9090, { 8080, 9090 }))
    assert.equal("client", wire.side(40000, { 8080, 9090 }))
    -- the recorder and the ladder ask it
    local rec = require("tcplab.trace").from_events({}, { ports = { 8080, 9090 } })
    assert.equal("server", rec:side({ sport = 9090, dport = 40000 }))
    assert.equal("client", rec:side({ sport = 40000, dport = 9090 }))
    local ladder = require "tcplab.format.ladder"
    local c = ladder.connections({ port = 8080, events = {
      { sport = 8080, dport = 0, from = "CLOSE", to = "LISTEN", time = 0 },
      { sport = 40000, dport = 8080, from = "CLOSE", to = "SYN_SENT", time = 1 } } })[1]
    assert.equal("server", c.transitions[1].side)
    assert.equal("client", c.transitions[2].side)
    local elsewhere = {}
    for path, code in pairs(code_files()) do
      for line in code:gmatch("[^\n]+") do
        if path ~= "lua/tcplab/wire.lua" and line:find("sport", 1, true) and line:find('"server"', 1, true)
            and line:find("==", 1, true) then
          elsewhere[#elsewhere + 1] = path .. ": " .. line
        end
      end
    end
    assert.same({}, elsewhere)
  end)
end)
