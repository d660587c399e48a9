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
local runs, wait, with_capture = tonumber(arg[1]) or 300, tonumber(arg[2]) or 0.06, arg[3] == "cap"
local function seq(evs)
  local out = {}
  for _, e in ipairs(evs) do out[#out + 1] = ("%d:%s>%s"):format(e.sport, e.from, e.to) end
  return table.concat(out, " ")
end
local diffs = 0
for i = 1, runs do
  local host = ("127.77.%d.%d"):format(i // 250, i % 250 + 1)
  local l <close> = assert(t.listen(host, 0))
  local port = select(2, l:getsockname())
  local cap = with_capture and assert(t.capture.open(port)) or nil
  local rb = assert(t.trace.start{ port = port, method = "bpf", addrs = { host } })
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
  if #rb.raw ~= #rt.raw then
    diffs = diffs + 1
    print(("run %d: bpf %d events (lost %d, skipped %d, rescued %d), tracefs %d"):format(i, #rb.raw, rb.lost,
      rb.skipped, rb.rescued, #rt.raw))
    print("  bpf:     " .. seq(rb.raw))
    print("  tracefs: " .. seq(rt.raw))
    io.stdout:flush()
  end
end
print(("%d of %d runs differ"):format(diffs, runs))
