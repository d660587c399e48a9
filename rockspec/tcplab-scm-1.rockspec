package = "tcplab"
version = "scm-1"
source = {
  url = "git+file:///tcplab",   -- built in place with `luarocks make`
}
description = {
  summary = "The TCP socket lifecycle, scriptable and assertable (Linux, sock_diag via libmnl)",
  detailed = [[
    Socket lifecycle calls on a socket userdata, a socket's own state from
    TCP_INFO, and a netlink sock_diag snapshot of every TCP socket of a
    network namespace as Lua tables and per-state counts; the seed's
    netstat/ss awk counts reproduced exactly; scenarios that assert them.
  ]],
  license = "MIT",
}
supported_platforms = { "linux" }
-- `tcplab serve` also needs lua-http (rock "http", which pulls cqueues and
-- luaossl, C modules that build against OpenSSL); it is optional, so not
-- listed: serve says what to install when it is missing (doc/serve.md).
dependencies = { "lua >= 5.4, < 5.5", "argparse >= 0.7", "lua-cjson >= 2.1" }
external_dependencies = {
  MNL = { header = "libmnl/libmnl.h", library = "mnl" },
}
build = {
  type = "builtin",
  modules = {
    ["tcplab.core"] = {
      sources = {
        "csrc/addr.c", "csrc/asan_children.c", "csrc/aux.c", "csrc/backend.c", "csrc/bpf_backend.c",
        "csrc/bpf_parse.c", "csrc/core.c", "csrc/diag_backend.c",
        "csrc/diag_parse.c", "csrc/diag_req.c", "csrc/errnos.c", "csrc/lbpf.c", "csrc/lbpf_trace.c", "csrc/netns.c", "csrc/owners.c", "csrc/proc.c",
        "csrc/records.c", "csrc/filter.c", "csrc/dump.c", "csrc/snapshot.c", "csrc/owners_glue.c",
        "csrc/counts.c", "csrc/each.c", "csrc/row.c", "csrc/bykey.c", "csrc/result.c", "csrc/setns.c", "csrc/sock.c", "csrc/sockstat.c", "csrc/tcpinfo.c", "csrc/textfile.c", "csrc/time.c",
        "csrc/spawn.c", "csrc/wait.c",
        "csrc/capture.c", "csrc/capture_parse.c",
        "csrc/destroy.c", "csrc/destroy_lua.c",
        "csrc/nfqueue.c", "csrc/nfqueue_msg.c",
        "csrc/live.c",
      },
      -- builtin cannot run clang: the rock has no BPF iterator backend, and
      -- tcplab.backend() says "built without BPF"
      defines = { "_GNU_SOURCE" },
      libraries = { "mnl", "m" },
      incdirs = { "$(MNL_INCDIR)" },
      libdirs = { "$(MNL_LIBDIR)" },
    },
    ["tcplab"] = "lua/tcplab/init.lua",
    ["tcplab.args"] = "lua/tcplab/args.lua",
    ["tcplab.awk"] = "lua/tcplab/awk.lua",
    ["tcplab.cli"] = "lua/tcplab/cli.lua",
    ["tcplab.cli.serve"] = "lua/tcplab/cli/serve.lua",
    ["tcplab.cli.trace_ladder"] = "lua/tcplab/cli/trace_ladder.lua",
    ["tcplab.fault"] = "lua/tcplab/fault.lua",
    ["tcplab.nfqueue"] = "lua/tcplab/nfqueue.lua",
    ["tcplab.lab.netem"] = "lua/tcplab/lab/netem.lua",
    ["tcplab.kill"] = "lua/tcplab/kill.lua",
    ["tcplab.live"] = "lua/tcplab/live.lua",
    ["tcplab.cli.live"] = "lua/tcplab/cli/live.lua",
    ["tcplab.format"] = "lua/tcplab/format/init.lua",
    ["tcplab.format.awk"] = "lua/tcplab/format/awk.lua",
    ["tcplab.format.json"] = "lua/tcplab/format/json.lua",
    ["tcplab.format.prometheus"] = "lua/tcplab/format/prometheus.lua",
    ["tcplab.format.valid_utf8"] = "lua/tcplab/format/valid_utf8.lua",
    ["tcplab.format.text"] = "lua/tcplab/format/text.lua",
    ["tcplab.format.timeline"] = "lua/tcplab/format/timeline.lua",
    ["tcplab.format.ladder"] = "lua/tcplab/format/ladder.lua",
    ["tcplab.format.svg"] = "lua/tcplab/format/svg.lua",
    ["tcplab.format.life"] = "lua/tcplab/format/life.lua",
    ["tcplab.export"] = "lua/tcplab/export.lua",
    ["tcplab.pcapng"] = "lua/tcplab/pcapng.lua",
    ["tcplab.namespaces"] = "lua/tcplab/namespaces.lua",
    ["tcplab.observe"] = "lua/tcplab/observe.lua",
    ["tcplab.scenarios"] = "lua/tcplab/scenarios/init.lua",
    ["tcplab.states"] = "lua/tcplab/states.lua",
    ["tcplab.serve"] = "lua/tcplab/serve.lua",
    ["tcplab.sys"] = "lua/tcplab/sys.lua",
    ["tcplab.tally"] = "lua/tcplab/tally.lua",
    ["tcplab.timeline"] = "lua/tcplab/timeline.lua",
    ["tcplab.wire"] = "lua/tcplab/wire.lua",
    ["tcplab.trace"] = "lua/tcplab/trace/init.lua",
    ["tcplab.trace.expect"] = "lua/tcplab/trace/expect.lua",
    ["tcplab.trace.ladder_capture"] = "lua/tcplab/trace/ladder_capture.lua",
    ["tcplab.trace.repair"] = "lua/tcplab/trace/repair.lua",
    ["tcplab.trace.sampler"] = "lua/tcplab/trace/sampler.lua",
    ["tcplab.trace.tracefs"] = "lua/tcplab/trace/tracefs.lua",
    ["tcplab.trace.witness"] = "lua/tcplab/trace/witness.lua",
    ["tcplab.trace.life"] = "lua/tcplab/trace/life.lua",
    ["tcplab.scenarios.backlog"] = "lua/tcplab/scenarios/backlog.lua",
    ["tcplab.scenarios.close"] = "lua/tcplab/scenarios/close.lua",
    ["tcplab.scenarios.close_wait_leak"] = "lua/tcplab/scenarios/close_wait_leak.lua",
    ["tcplab.scenarios.slow_wire"] = "lua/tcplab/scenarios/slow_wire.lua",
    ["tcplab.scenarios.handshake"] = "lua/tcplab/scenarios/handshake.lua",
    ["tcplab.scenarios.kit"] = "lua/tcplab/scenarios/kit.lua",
    ["tcplab.scenarios.lifecycle"] = "lua/tcplab/scenarios/lifecycle.lua",
    ["tcplab.scenarios.reset"] = "lua/tcplab/scenarios/reset.lua",
    ["tcplab.scenarios.simultaneous_close"] = "lua/tcplab/scenarios/simultaneous_close.lua",
    ["tcplab.scenarios.syn_sent"] = "lua/tcplab/scenarios/syn_sent.lua",
    ["tcplab.scenarios.two_sockets"] = "lua/tcplab/scenarios/two_sockets.lua",
    ["tcplab.lab"] = "lua/tcplab/lab.lua",
    ["tcplab.busted"] = "lua/tcplab/busted.lua",
    ["tcplab.checks"] = "lua/tcplab/checks/init.lua",
    ["tcplab.checks.close_wait"] = "lua/tcplab/checks/close_wait.lua",
    ["tcplab.checks.accept_queue"] = "lua/tcplab/checks/accept_queue.lua",
    ["tcplab.checks.time_wait"] = "lua/tcplab/checks/time_wait.lua",
    ["tcplab.checks.half_close"] = "lua/tcplab/checks/half_close.lua",
    ["tcplab.checks.reset"] = "lua/tcplab/checks/reset.lua",
    ["tcplab.format.check"] = "lua/tcplab/format/check.lua",
    ["tcplab.counters"] = "lua/tcplab/counters.lua",
    ["tcplab.format.counters"] = "lua/tcplab/format/counters.lua",
    ["tcplab.scenarios.syn_queue"] = "lua/tcplab/scenarios/syn_queue.lua",
    ["tcplab.format.junit"] = "lua/tcplab/format/junit.lua",
    ["tcplab.kernel"] = "lua/tcplab/kernel.lua",
    ["tcplab.checks.common"] = "lua/tcplab/checks/common.lua",
    ["tcplab.format.verdicts"] = "lua/tcplab/format/verdicts.lua",
  },
  install = {
    bin = { tcplab = "bin/tcplab" },
  },
}
