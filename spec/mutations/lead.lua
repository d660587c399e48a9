-- Plants for what the lead wrote while merging (doc/testing.md).
return {
  { file = "lua/tcplab/format/check.lua", from = "cjson.encode(report.host or \"127.0.0.1\"), report.port, report.pid, report.stopped or 0, network,",
    to = "cjson.encode(report.host or \"127.0.0.1\"), report.port, report.pid, report.stopped or 0, \"\",",
    specs = { "spec/check_network_format_spec.lua" },
    why = "check --format json drops the network counts of --delay/--loss" },
  { file = "lua/tcplab/format/verdicts.lua", from = "math.floor(net.delay * 1000 + 0.5)",
    to = "math.floor(net.delay + 0.5)",
    specs = { "spec/check_network_format_spec.lua" },
    why = "the delay printed in seconds where the line says ms" },
  { file = "lua/tcplab/serve.lua", from = "  if walk then\n    local s = walk_source(path, label, name)",
    to = "  if false then\n    local s = walk_source(path, label, name)",
    specs = { "spec/serve_spec.lua" },
    why = "serve --walk ignored: live counts leave out the per-port series export writes" },
}
