/* tcplab: one state transition as the state_tp program writes it into its
 * ring buffer (csrc/bpf/state_tp.bpf.c), and the recorder's configuration.
 * Shared by the BPF program and userspace (lbpf_trace.c, bpf_parse.c). */
#ifndef TL_STATE_EV_H
#define TL_STATE_EV_H

enum { TL_STATE_MAX_PORTS = 64, TL_STATE_MAX_CPUS = 512 };

/* ev.flags */
enum {
    /* the kernel said X -> CLOSE from tcp_time_wait() handing the
     * connection to a placeholder in TIME_WAIT: the event says X ->
     * TIME_WAIT (doc/kernel-recorder.md) */
    TL_EV_TIME_WAIT = 1,
    TL_EV_RESCUED = 2,   /* written by on_state_nested */
    /* what the X -> CLOSE decision read (FIN_WAIT1, FIN_WAIT2, CLOSING -> CLOSE only) */
    TL_EV_RCV_SHUTDOWN = 4,   /* sk_shutdown & RCV_SHUTDOWN */
    TL_EV_FIN_TAKEN = 8,      /* SOCK_DONE: the peer's FIN was processed */
    TL_EV_UNHASHED = 16,      /* no longer in the hash table: a placeholder took its place */
};

struct tl_state_ev {
    __u64 ns;           /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    __u64 cookie;       /* the socket's cookie (SO_COOKIE, the dump's cookie) */
    __u64 netns_cookie; /* the socket's network namespace (its cookie: never reused) */
    __u32 netns;        /* the socket's network namespace (its inode: for display) */
    __u32 seq;          /* this CPU's count of events written, this one included */
    __u16 sport, dport;
    __u8 family;        /* AF_INET, AF_INET6 */
    __u8 from, to;      /* TCP states (to: TCP_TIME_WAIT with TL_EV_TIME_WAIT) */
    __u8 flags;         /* TL_EV_* */
    __u32 cpu;          /* the CPU that wrote it (the seq's CPU) */
    __u8 src[16], dst[16];
    __u32 pad;
};

struct tl_state_cfg {
    __u64 netns_cookie; /* the namespace's cookie: only its sockets (0: every namespace) */
    __u32 nports;       /* 0: every port */
    __u16 ports[TL_STATE_MAX_PORTS];
};

#endif
