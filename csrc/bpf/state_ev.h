/* tcplab: one state transition as the state_tp program writes it into its
 * ring buffer (csrc/bpf/state_tp.bpf.c), and the recorder's configuration.
 * Shared by the BPF program and userspace (lbpf_trace.c, bpf_parse.c). */
#ifndef TL_STATE_EV_H
#define TL_STATE_EV_H

enum { TL_STATE_MAX_PORTS = 64, TL_STATE_MAX_CPUS = 512, TL_LIFE_MAX_PATH = 16 };

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

/* ev.life (cfg.life only): what the socket's storage held when the full
 * socket reached CLOSE (the kernel's word: also the TIME_WAIT handover) */
enum {
    TL_LIFE_END = 1,        /* this event ends the full socket: the life fields are set */
    TL_LIFE_ACTIVE = 2,     /* its first transition seen was CLOSE -> SYN_SENT (connect) */
    TL_LIFE_PASSIVE = 4,    /* ... was LISTEN -> SYN_RECV (a child of a listener) */
    TL_LIFE_OWNER = 8,      /* pid and comm are set */
    TL_LIFE_FIN_ACKED = 16, /* our FIN was sent and acked: bytes_acked counts it */
    TL_LIFE_FIN_RCVD = 32,  /* the peer's FIN was taken (SOCK_DONE): bytes_received counts it */
    TL_LIFE_PATH_FULL = 64, /* more states than path holds: the last ones are missing */
    TL_LIFE_LISTENER = 128, /* it entered LISTEN: a listener, not a connection */
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
    /* cfg.life, on a TL_LIFE_END event only (else 0) */
    __u64 born_ns;          /* the socket's first transition since the recorder attached */
    __u64 bytes_acked;      /* tcp_sock's, as the socket ends: counts an acked SYN and FIN */
    __u64 bytes_received;   /* tcp_sock's: counts the peer's FIN */
    __u32 pid;              /* the owner: the first task that made a transition holding the socket's lock */
    __u16 life;             /* TL_LIFE_* */
    __u8 npath;             /* states in path */
    __u8 pad2;
    __u8 path[TL_LIFE_MAX_PATH];   /* the first state seen, then each state entered */
    char comm[16];          /* the owner's comm */
};

struct tl_state_cfg {
    __u64 netns_cookie; /* the namespace's cookie: only its sockets (0: every namespace) */
    __u32 nports;       /* 0: every port */
    __u32 life;         /* 1: keep each socket's lifetime in socket storage (ev.life) */
    __u16 ports[TL_STATE_MAX_PORTS];
};

#endif
