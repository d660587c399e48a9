-- Bugs planted by the hostile1 round (tcplab serve and live counts under
-- hostile input); each must turn the listed specs red (make mutate).
return {
  { file = "lua/tcplab/cli/serve.lua",
    from = [[if not id then cli.fail(("--netns %s: %s"):format(name, why)) end]],
    to = [[local _ = id]],
    specs = { "spec/serve_spec.lua" },
    why = "--netns PATH is trusted as typed: a file that is not a namespace starts an exporter that answers 503 forever" },
  { file = "csrc/live.c",
    from = "if (rc == -EMFILE || rc == -ENFILE) {",
    to = "if (0) {",
    specs = { "spec/live_spec.lua" },
    why = "every load failure reported as 'verifier refused', out of fds included: the user hunts a BPF bug that is an fd limit" },
  { file = "lua/tcplab/serve.lua", from = "    if te ~= nil or (cl ~= nil and cl ~= \"0\") then",
    to = "    if false then",
    specs = { "spec/serve_spec.lua" },
    why = "requests with a body left to lua-http: its drain loop spins at 100% CPU past SIGTERM" },
}
