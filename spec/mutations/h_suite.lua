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
}
