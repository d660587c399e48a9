--- The close-wait check's verdict and its "oldest" socket, against real
-- servers in a lab (root): a threshold that a leak of every client never
-- tests, and an order that needs clients closed at different times.
local tcplab = require "tcplab"
local checks = require "tcplab.checks"
local support = require "support"

local PORT = 8080
local function server(name)
  return { "lua5.4", "spec/servers/" .. name .. ".lua", tostring(PORT) }
end

-- The lab, seen through a proxy that records each client's local port in
-- the order the check made (and later closes) them.
local function recording(lab)
  local ports = {}
  local proxy = setmetatable({}, { __index = function(_, k)
    local v = lab[k]
    if k == "connect" then
      return function(_, ...)
        local s, err, errno = lab:connect(...)
        if s then ports[#ports + 1] = select(2, s:getsockname()) end
        return s, err, errno
      end
    end
    if type(v) == "function" then return function(_, ...) return v(lab, ...) end end
    return v
  end })
  return proxy, ports
end

local function run_check(check, name, opts)
  local lab = assert(tcplab.lab{ cmd = server(name), port = PORT })
  local proxy, ports = recording(lab)
  local ok, r, err = pcall(checks.run, proxy, check, opts)
  assert(lab:close())
  assert(ok, r)
  assert(r, err)
  return r, ports
end

local function run_close_wait(name, clients)
  return run_check("close_wait", name, { clients = clients })
end

describe("the close-wait check #kernel #root", function()
  if not support.is_root() then
    pending("needs root: a lab runs the server in a network namespace of its own")
    return
  end

  it("fails when the server leaks one client in three, and names that one as oldest", function()
    local r, ports = run_close_wait("leak_some", 3)
    assert.equal(3, #ports)
    assert.is_false(r.ok, r.evidence)
    assert.equal(1, r.close_wait)
    -- which one the server keeps follows the order it reads EOFs in: one of ours
    local found = false
    for _, p in ipairs(ports) do found = found or p == r.oldest.dport end
    assert.is_true(found, r.evidence)
  end)

  it("names as oldest the CLOSE_WAIT socket whose client closed first", function()
    local r, ports = run_close_wait("never_close", 4)
    assert.equal(4, #ports)
    assert.is_false(r.ok)
    assert.equal(4, r.close_wait)
    assert.equal(ports[1], r.oldest.dport, r.evidence)
    assert.equal(ports[1], r.sockets[1].dport)
    assert.equal(ports[4], r.sockets[4].dport)
    assert.matches(":" .. ports[1] .. " held by pid %d+", r.evidence)
  end)

  it("passes the server that closes every socket", function()
    local r = run_close_wait("echo", 3)
    assert.is_true(r.ok, r.evidence)
    assert.equal(0, r.close_wait)
  end)
end)

describe("the half-close check #kernel #root", function()
  if not support.is_root() then
    pending("needs root: a lab runs the server in a network namespace of its own")
    return
  end

  it("fails a server that reads the request and never answers", function()
    local r = run_check("half_close", "silent", { send = "ping\n", deadline = 0.5 })
    assert.is_false(r.ok, r.evidence)
    assert.matches("^no answer within 0%.5 s after the client's shutdown%(write%)", r.evidence)
  end)

  it("passes the echo server, which answers on the half still open", function()
    local r = run_check("half_close", "echo", { send = "ping\n" })
    assert.is_true(r.ok, r.evidence)
    assert.equal("ping\n", r.reply)
  end)
end)
