local tcplab = require "tcplab"
local support = require "support"
local checks = require "tcplab.checks"

-- No PASS without a test: each check against a server of its own (spec/servers/),
-- in-process through tcplab.lab, and every process the lab had (Lab:pids()) gone after.
local it_root = function(name, body) support.as_root(it, pending, name, body) end

local PORT = 8080
local OPTS = { clients = 3, send = "ping\n" }

local function server(name)
  if name:match("%.pl$") then return { "perl", "spec/servers/" .. name, tostring(PORT) } end
  return { "lua5.4", "spec/servers/" .. name .. ".lua", tostring(PORT) }
end

local function by_name(results)
  local t = {}
  for _, r in ipairs(results) do t[r.name] = r end
  return t
end

-- Run checks against a server; close the lab; assert that none of the
-- processes the lab listed while it ran is left. Returns results by name and
-- the pids seen.
local function run(name, opts, names, labopts)
  local o = { cmd = server(name), port = PORT, timeout = 20 }   -- a busy host can take seconds to start lua5.4
  for k, v in pairs(labopts or {}) do o[k] = v end
  local lab = assert(tcplab.lab(o))
  local seen = {}
  for _, p in ipairs(lab:pids()) do seen[#seen + 1] = p end
  if labopts and labopts.blind then lab.pids = function(self) return { self.pid } end end
  local ok, results = pcall(checks.run_all, lab, opts or OPTS, names)
  local info = { host = lab.host, pid = lab.pid }
  for _, p in ipairs(lab:pids()) do seen[#seen + 1] = p end
  lab.pids = nil
  assert(lab:close())
  assert(ok, results)
  assert.same({}, lab:pids(), "a process of the lab is left")
  for _, p in ipairs(seen) do assert.is_false(support.alive(p), "process " .. p .. " of the lab is left") end
  return by_name(results), seen, info, results
end

describe("check verdicts #unit", function()
  it("a close-wait PASS that time-wait or reset contradicts becomes a FAIL that says so", function()
    local results = {
      { name = "close-wait", status = "pass", verdict = "PASS", ok = true, evidence = "0 in CLOSE_WAIT" },
      { name = "time-wait", status = "info", verdict = "INFO", ok = true, evidence = "x", waiting_fin = 3 },
    }
    assert.equal(1, checks.cross_check(results))
    assert.equal("fail", results[1].status)
    assert.equal("FAIL", results[1].verdict)
    assert.is_false(results[1].ok)
    assert.matches("contradicted: time%-wait saw 3 client%(s%) stuck in FIN_WAIT2", results[1].evidence)
    assert.equal(1, checks.exit_code(results))
    local agree = {
      { name = "close-wait", status = "pass", ok = true, evidence = "0 in CLOSE_WAIT" },
      { name = "time-wait", status = "info", ok = true, evidence = "x", waiting_fin = 0 },
      { name = "reset", status = "pass", ok = true, evidence = "FIN", closed = true },
    }
    assert.equal(0, checks.cross_check(agree))
    assert.equal("pass", agree[1].status)
    local reset = {
      { name = "close-wait", status = "pass", ok = true, evidence = "0 in CLOSE_WAIT" },
      { name = "reset", status = "not run", ok = false, evidence = "not run", closed = false },
    }
    assert.equal(1, checks.cross_check(reset))
    assert.matches("reset saw the server keep its end open", reset[1].evidence)
  end)

  it("exit codes: 0 all passed (INFO counts), 1 one failed, 3 none failed but one did not run", function()
    assert.equal(0, checks.exit_code({ { status = "pass" }, { status = "info" } }))
    assert.equal(1, checks.exit_code({ { status = "not run" }, { status = "fail" }, { status = "pass" } }))
    assert.equal(3, checks.exit_code({ { status = "pass" }, { status = "not run" } }))
    assert.equal(3, checks.exit_code({ { status = "error" } }))
  end)

  it("a check that returns an unknown status is an error, not a PASS", function()
    local lab = setmetatable({ pids = function() return {} end }, {})
    local r, err = checks.run(lab, { title = "odd", run = function() return { status = "maybe", evidence = "?" } end })
    assert.is_nil(r)
    assert.matches("status maybe", err)
  end)
end)

describe("check verdicts against held servers #kernel #root", function()
  it_root("a worker child's CLOSE_WAIT leak fails close-wait, with the worker as owner", function()
    local r, seen, info = run("prefork_leak.pl", OPTS, { "close_wait", "time_wait" })
    assert.is_true(#seen >= 2, "master and worker listed by Lab:pids()")
    local cw = r["close-wait"]
    assert.equal("fail", cw.status, cw.evidence)
    assert.equal(3, cw.close_wait)
    assert.are_not.equal(info.pid, cw.oldest.owner.pid)   -- the worker, not the started process
    assert.matches(("held by pid %d fd %%d+ %%(perl%%), not the started pid %d"):format(cw.oldest.owner.pid, info.pid),
                   cw.evidence)
    assert.equal(3, r["time-wait"].waiting_fin)   -- the two checks agree
  end)

  it_root("close-wait counts a held socket even when the lab cannot see who holds it", function()
    -- blind: Lab:pids() lists only the started process, as a lab that lost track of its worker would
    local r = run("prefork_leak.pl", OPTS, { "close_wait", "time_wait" }, { blind = true })
    local cw = r["close-wait"]
    assert.equal("fail", cw.status, cw.evidence)
    assert.equal(3, cw.close_wait)
    assert.equal(0, cw.unaccepted)
    assert.matches("held by a process outside the lab's list %(inode %d+%)", cw.evidence)
  end)

  it_root("an IPv6-only server (::1) is dialled on ::1 and passes", function()
    local r, _, info = run("v6_only", OPTS, { "close_wait", "accept_queue", "reset" })
    assert.equal("::1", info.host)
    assert.equal("pass", r["close-wait"].status, r["close-wait"].evidence)
    assert.equal(3, r["close-wait"].connected)
    assert.equal(3, r["close-wait"].accepted)
    assert.equal("pass", r["accept-queue"].status, r["accept-queue"].evidence)
    assert.equal(0, r["accept-queue"].refused)
    assert.equal("pass", r.reset.status, r.reset.evidence)
    assert.matches("CLOSE_WAIT>LAST_ACK", r.reset.evidence)   -- the recorder saw the v6 client's connection
  end)

  it_root("a server on 127.0.0.2 only is dialled on 127.0.0.2 and passes", function()
    local r, _, info = run("loopback2", OPTS, { "close_wait", "accept_queue" })
    assert.equal("127.0.0.2", info.host)
    assert.equal("pass", r["close-wait"].status, r["close-wait"].evidence)
    assert.equal(3, r["close-wait"].accepted)
    assert.equal("pass", r["accept-queue"].status, r["accept-queue"].evidence)
  end)

  it_root("clients refused (dialling where nothing listens) make every check NOT RUN, never PASS", function()
    local r, _, _, results = run("v6_only", OPTS, nil, { host = "127.0.0.1" })
    for _, name in ipairs({ "close-wait", "accept-queue", "time-wait", "half-close", "reset" }) do
      assert.equal("not run", r[name].status, name .. ": " .. r[name].evidence)
      assert.equal("NOT RUN", r[name].verdict)
      assert.is_false(r[name].ok)
      assert.matches("^not run: ", r[name].evidence)
    end
    assert.matches("none of 3 clients connected to 127%.0%.0%.1 port 8080", r["close-wait"].evidence)
    assert.matches("no client of the burst got through", r["accept-queue"].evidence)
    assert.equal(3, checks.exit_code(results))
  end)

  it_root("a server that never closes: reset NOT RUN (no close to judge), half-close FAIL (never closes after answering)", function()
    local r = run("never_close", OPTS, { "close_wait", "half_close", "reset" })
    assert.equal("fail", r["close-wait"].status)
    assert.equal("not run", r.reset.status, r.reset.evidence)
    assert.is_false(r.reset.closed)
    assert.matches("sent neither FIN nor RST", r.reset.evidence)
    assert.equal("fail", r["half-close"].status, r["half-close"].evidence)
    assert.equal("ping\n", r["half-close"].reply)
    assert.matches("answered 5 bytes .*; the server kept its end open", r["half-close"].evidence)
  end)

  it_root("a server that never accepts: close-wait NOT RUN (nothing accepted), not PASS", function()
    local r = run("slow_accept", OPTS, { "close_wait" })
    local cw = r["close-wait"]
    assert.equal("not run", cw.status, cw.evidence)
    assert.matches("accepted none of the 3 connections", cw.evidence)
  end)
end)
