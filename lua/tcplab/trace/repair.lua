--- Holes in the BPF recorder's events, filled from what is known for certain.
--
-- The kernel skips a tracing program that is already running on the same
-- CPU: a transition made in a softirq that interrupted the program while it
-- ran for another transition is not written by it, only counted in its
-- recursion_misses. The recorder's second program writes most of those
-- (csrc/bpf/state_tp.bpf.c); what neither wrote is filled in here. Every
-- event the BPF recorder writes carries its socket's cookie, and one
-- socket's events form a chain: each starts in the state the previous one
-- ended in. So
-- * a hole between two events of one socket is the transition
--   previous.to -> next.from; it is inserted before the later event, with
--   that event's time and tuple and inferred = "gap";
-- * each socket's last state is checked against the dump read at stop(), by
--   cookie: a socket the dump shows in another state gets last.to -> that
--   state, a socket the dump no longer has gets last.to -> CLOSE, both with
--   inferred = "dump" and stop()'s time.
-- Two holes in a row in one socket's chain come out as one transition; when
-- that is no single step TCP takes (SYN_SENT -> FIN_WAIT2), the event also
-- carries collapsed = true. Events without a cookie (tracefs, the sampler)
-- are left alone.
local repair = {}

-- The single steps the tracepoint reports (and TIME_WAIT, as stop() tells it).
local STEP = {}
for _, edge in ipairs({ "CLOSE>SYN_SENT", "CLOSE>LISTEN", "LISTEN>CLOSE", "LISTEN>SYN_RECV", "SYN_SENT>ESTABLISHED",
                        "SYN_SENT>SYN_RECV", "SYN_SENT>CLOSE", "SYN_RECV>ESTABLISHED", "SYN_RECV>FIN_WAIT1",
                        "SYN_RECV>CLOSE", "ESTABLISHED>FIN_WAIT1", "ESTABLISHED>CLOSE_WAIT", "ESTABLISHED>CLOSE",
                        "FIN_WAIT1>FIN_WAIT2", "FIN_WAIT1>CLOSING", "FIN_WAIT1>CLOSE", "FIN_WAIT1>TIME_WAIT",
                        "FIN_WAIT2>CLOSE", "FIN_WAIT2>TIME_WAIT", "CLOSING>CLOSE", "CLOSING>TIME_WAIT",
                        "CLOSE_WAIT>LAST_ACK", "CLOSE_WAIT>CLOSE", "LAST_ACK>CLOSE" }) do
  STEP[edge] = true
end

local function inferred(ev, from, to, time, how)
  return { time = time, family = ev.family, src = ev.src, sport = ev.sport, dst = ev.dst,
           dport = ev.dport, from = from, to = to, cookie = ev.cookie, netns = ev.netns,
           inferred = how, collapsed = not STEP[from .. ">" .. to] or nil }
end

--- A chain follower for a stream of events: follow(ev) returns the
-- transition missing before ev (or nil), and remembers ev.
function repair.chain()
  local last = {}
  return function(ev)
    local cookie = ev.cookie
    if not cookie or cookie == 0 then return nil end
    local prev = last[cookie]
    last[cookie] = ev
    if prev and prev.to ~= ev.from then
      return inferred(ev, prev.to, ev.from, ev.time, "gap")
    end
    return nil
  end
end

--- events (in time order) with the holes between two events of one socket
-- filled in; and how many were filled.
function repair.gaps(events)
  local follow, out, n = repair.chain(), {}, 0
  for _, ev in ipairs(events) do
    local missing = follow(ev)
    if missing then
      out[#out + 1] = missing
      n = n + 1
    end
    out[#out + 1] = ev
  end
  return out, n
end

--- The transitions that bring each socket's last recorded state to what the
-- dump (records with cookie and state) says at time; and how many. A
-- socket whose last event is already CLOSE is left to the TIME_WAIT
-- rewrite (its placeholder in the dump has the same cookie).
function repair.ends(events, dump, time)
  local now_in = {}
  for _, r in ipairs(dump) do
    if r.cookie and r.cookie ~= 0 then now_in[r.cookie] = r.state end
  end
  local last, order = {}, {}
  for _, ev in ipairs(events) do
    local cookie = ev.cookie
    if cookie and cookie ~= 0 then
      if not last[cookie] then order[#order + 1] = cookie end
      last[cookie] = ev
    end
  end
  local out = {}
  for _, cookie in ipairs(order) do
    local ev = last[cookie]
    local state = now_in[cookie] or "CLOSE"
    if ev.to ~= "CLOSE" and state ~= ev.to then
      out[#out + 1] = inferred(ev, ev.to, state, time, "dump")
    end
  end
  return out, #out
end

return repair
