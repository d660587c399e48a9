/* tcplab: one state transition as the state_tp program writes it into its
 * ring buffer (csrc/bpf/state_tp.bpf.c), and the recorder's configuration.
 * Shared by the BPF program and userspace (lbpf_trace.c, bpf_parse.c). */
#ifndef TL_STATE_EV_H
#define TL_STATE_EV_H

enum { TL_STATE_MAX_PORTS = 64 };

struct tl_state_ev {
    __u64 ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    __u64 cookie;    /* the socket's cookie (SO_COOKIE, the dump's cookie) */
    __u8 family;     /* AF_INET, AF_INET6 */
    __u8 from, to;   /* TCP states */
    __u8 pad;
    __u16 sport, dport;
    __u32 netns;     /* the socket's network namespace (its inode) */
    __u8 src[16], dst[16];
    __u32 pad2;
};

struct tl_state_cfg {
    __u32 netns;     /* the namespace's inode: only its sockets (0: every namespace) */
    __u32 nports;    /* 0: every port */
    __u16 ports[TL_STATE_MAX_PORTS];
};

#endif
