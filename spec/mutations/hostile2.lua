-- Planted bugs that spec/hostile2_spec.lua must catch (make mutate).
return {
  {
    file = "csrc/textfile.c",
    from = "if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {",
    to = "if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {",
    specs = { "spec/hostile2_spec.lua" },
    why = "only directories refused: --pcap /dev/null renames a regular file over the host's device node",
  },
  {
    file = "lua/tcplab/nfqueue.lua",
    from = "local ok, verdict = coroutine.resume(co, pkt)",
    to = "local ok, verdict = pcall(fn, pkt)",
    specs = { "spec/hostile2_spec.lua" },
    why = "the callback run on the caller's thread: a yield leaves step() with the packet unanswered (the connection stalls)",
  },
  {
    file = "lua/tcplab/nfqueue.lua",
    from = "local ok, text = pcall(tostring, v)",
    to = "local ok, text = true, tostring(v)",
    specs = { "spec/hostile2_spec.lua" },
    why = "an error object's __tostring raising escapes step(): the packet and the rest of the batch get no verdict",
  },
  {
    file = "lua/tcplab/nfqueue.lua",
    from = [[local hold, delay = rawget(verdict, "hold"), rawget(verdict, "delay")]],
    to = [[local hold, delay = verdict.hold, verdict.delay]],
    specs = { "spec/hostile2_spec.lua" },
    why = "a verdict table's __index runs inside step(): when it raises, the packet gets no verdict",
  },
  {
    file = "lua/tcplab/nfqueue.lua",
    from = "if q or (errno ~= EPERM and errno ~= EBUSY) then break end",
    to = "if q or errno ~= EBUSY then break end",
    specs = { "spec/hostile2_spec.lua" },
    why = "only EBUSY taken as 'in use': the kernel answers EPERM for a number another socket holds, so a second queue in a namespace fails",
  },
  {
    file = "lua/tcplab/nfqueue.lua",
    from = [[  check_fields("loss", spec)
]],
    to = "",
    specs = { "spec/hostile2_spec.lua" },
    why = "fields not checked for fault.loss: loss{ rate = 0.5, sedd = 7 } runs unseeded, the typo unseen",
  },
  {
    file = "lua/tcplab/cli/trace_ladder.lua",
    from = [[local function norm(path) return (path:gsub("/+", "/"):gsub("^%./", ""):gsub("/%./", "/")) end]],
    to = [[local function norm(path) return path end]],
    specs = { "spec/hostile2_spec.lua" },
    why = "paths compared as typed: --pcap ./out --svg out writes the pcapng over the SVG",
  },
}
