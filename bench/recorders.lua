-- Compare the BPF and the tracefs transition recorders on the same
-- connections (root): each run opens a listener on its own address
-- 127.77.X.Y in a private namespace, connects, writes, closes the client,
-- waits past the 40 ms delayed ACK, closes the server, and prints every run
-- where the two recorders saw a different number of events, with both lists.
-- Used to chase the BPF recorder's rare uncounted loss (doc/kernel-notes.md).
--   lua5.4 bench/recorders.lua [RUNS=300] [WAIT=0.06] [cap]
-- "cap" also keeps an AF_PACKET capture on lo open during each run, as the
-- scenarios do.
local t = require "tcplab"
assert(t.netns.unshare())
assert(os.execute("ip link set lo up"))

-- "tw": the moment of TIME_WAIT. Each run: connect, the client closes (an
-- orphan), the server closes; the BPF recorder's client X -> TIME_WAIT
-- against the capture's client ACK of the server's FIN (capture times moved
-- to the monotonic clock by the offset measured at open). With tcp_fin_timeout
-- at its default (60) an orphan's FIN_WAIT2 becomes a placeholder at once and
-- its TIME_WAIT has no event; "fin120" sets it to 120 s in the namespace.
--   lua5.4 bench/recorders.lua tw [RUNS=200] [fin120]
if arg[1] == "tw" then
  local runs = tonumber(arg[2]) or 200
  if arg[3] == "fin120" then assert(os.execute("sysctl -qw net.ipv4.tcp_fin_timeout=120")) end
  local gaps, missing, worst, before = {}, 0, 0, 0
  for i = 1, runs do
    local host = ("127.78.%d.%d"):format(i // 250, i % 250 + 1)
    local l <close> = assert(t.listen(host, 0))
    local port = select(2, l:getsockname())
    local cap <close> = assert(t.capture.open(port))
    local rec = assert(t.trace.start{ port = port, method = "bpf", addrs = { host } })
    local c = assert(t.connect(host, port, 2))
    local cport = select(2, c:getsockname())
    local a = assert(l:accept(2))
    c:close()
    t.sleep(0.02)
    a:close()
    t.sleep(0.02)
    local segs = assert(cap:read(0.05))
    rec:stop()
    local tw
    for _, ev in ipairs(rec.raw) do
      if ev.sport == cport and ev.to == "TIME_WAIT" then tw = ev end
    end
    local fin, ack
    for _, sg in ipairs(segs) do
      if sg.sport == port and sg.flags:find("F", 1, true) then fin = fin or sg end
    end
    for _, sg in ipairs(segs) do
      if fin and sg.sport == cport and sg.flags:find("A", 1, true) and sg.ack == (fin.seq + fin.len + 1) % 2^32 then
        ack = ack or sg
      end
    end
    if not (tw and ack) then
      missing = missing + 1
    else
      local d = tw.time - ack.t
      gaps[#gaps + 1] = d
      if math.abs(d) > math.abs(worst) then worst = d end
      if d < 0 then before = before + 1 end
    end
  end
  table.sort(gaps)
  local function q(p) return gaps[math.max(1, math.ceil(#gaps * p))] or 0 end
  print(("%d runs: %d with a TIME_WAIT event and the ACK captured, %d without; TIME_WAIT - ACK (us): " ..
    "min %.1f median %.1f p99 %.1f max %.1f; worst |d| %.1f; %d with the event before the ACK's timestamp")
    :format(runs, #gaps, missing, q(0) * 1e6, q(0.5) * 1e6, q(0.99) * 1e6, q(1) * 1e6, worst * 1e6, before))
  return
end
local runs, wait, with_capture = tonumber(arg[1]) or 300, tonumber(arg[2]) or 0.06, arg[3] == "cap"
-- "witness" (4th argument): the BPF recorder with its tracefs witness (what the scenarios run)
local with_witness, missed = arg[4] == "witness", 0
local function seq(evs)
  local out = {}
  for _, e in ipairs(evs) do
    out[#out + 1] = ("%d:%s>%s%s"):format(e.sport, e.from, e.to, e.seq and ("@%d#%d"):format(e.cpu, e.seq) or "")
  end
  return table.concat(out, " ")
end
local diffs = 0
for i = 1, runs do
  local host = ("127.77.%d.%d"):format(i // 250, i % 250 + 1)
  local l <close> = assert(t.listen(host, 0))
  local port = select(2, l:getsockname())
  local cap = with_capture and assert(t.capture.open(port)) or nil
  local rb = assert(t.trace.start{ port = port, method = "bpf", addrs = { host }, witness = with_witness })
  local rt = assert(t.trace.start{ port = port, method = "tracepoint", addrs = { host } })
  local c = assert(t.connect(host, port, 2))
  local a = assert(l:accept(2))
  assert(c:write("hello"))
  assert(a:read(100, 2))
  c:close()
  t.sleep(wait)
  assert(a:read(100, 2) == "")
  a:close()
  t.sleep(0.03)
  if cap then cap:read(0) cap:close() end
  rb:stop()
  rt:stop()
  missed = missed + (rb.missed or 0)
  if #rb.raw ~= #rt.raw then
    diffs = diffs + 1
    print(("run %d: bpf %d events (lost %d, skipped %d, rescued %d, undelivered %d), tracefs %d"):format(i, #rb.raw,
      rb.lost, rb.skipped, rb.rescued, rb.undelivered, #rt.raw))
    local st = {}
    for k, v in pairs(rb.stats) do st[#st + 1] = k .. "=" .. v end
    table.sort(st)
    print("  stats:   " .. table.concat(st, " "))
    print("  bpf:     " .. seq(rb.raw))
    print("  tracefs: " .. seq(rt.raw))
    io.stdout:flush()
  end
end
print(("%d of %d runs differ%s"):format(diffs, runs,
  with_witness and (" (the witness added %d transitions BPF missed)"):format(missed) or ""))
