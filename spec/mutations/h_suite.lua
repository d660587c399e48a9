--- Realistic bugs the suite must catch (issue 18.6 and h-suite's own plants);
-- `make mutate` plants each in a copy of the tree and requires the specs to fail.
return {
  { file = "csrc/diag_req.c", from = "put_port(b, INET_DIAG_BC_S_LE, f->sport_hi);",
    to = "put_port(b, INET_DIAG_BC_S_LE, f->sport_hi - 1);",
    specs = { "spec/filters_spec.lua" },
    why = "a port range's upper bound HI excluded (hi - 1): the socket at HI is missing" },
  { file = "csrc/diag_req.c", from = "put_host(b, INET_DIAG_BC_D_COND, &f->dst);",
    to = "put_host(b, INET_DIAG_BC_S_COND, &f->dst);",
    specs = { "spec/filters_spec.lua" },
    why = "the dst prefix emitted as a source condition (passes wherever src equals dst)" },
  { file = "lua/tcplab/wire.lua", from = "function wire.add(a, n) return (a + n) % M32 end",
    to = "function wire.add(a, n) return a + n end",
    specs = { "spec/wire_spec.lua" },
    why = "sequence arithmetic without % 2^32: a FIN at the last sequence number is never paired with its ACK" },
  { file = "lua/tcplab/format/prometheus.lua", from = "('%s=\"%s\"'):format(kv[1], escape(kv[2]))",
    to = "('%s=\"%s\"'):format(kv[1], kv[2])",
    specs = { "spec/format_spec.lua" },
    why = "Prometheus label values written unescaped (a namespace name with a quote breaks the exposition)" },
  { file = "lua/tcplab/cli.lua", from = 'local tmp = ("%s.tmp.%d"):format(path, require("tcplab.sys").pid())',
    to = "local tmp = path",
    specs = { "spec/export_spec.lua" },
    why = "the textfile written in place (no temp file, no rename): a failed or running write leaves a partial file" },
}
