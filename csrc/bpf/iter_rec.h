/* tcplab: the records the iter/tcp program writes and bpf_parse.c reads.
 * Shared by the BPF side (types from vmlinux.h) and userspace (types from
 * <linux/types.h>): include those first. Fixed size, no pointers; the
 * layout is the contract, checked by _Static_assert on both sides. */
#ifndef TCPLAB_ITER_REC_H
#define TCPLAB_ITER_REC_H

enum {
    TL_ITER_SOCK = 1,   /* one socket: struct tl_iter_rec */
    TL_ITER_TALLY = 2,  /* end of a counting walk: struct tl_iter_tally */
    TL_ITER_NSTATES = 16,
    TL_ITER_REC_SIZE = 72,
};

/* As sock_diag reports it: state is TIME_WAIT's substate for time-wait
 * placeholders, SYN_RECV for request sockets; ports in host order. */
struct tl_iter_rec {
    __u8 kind, family, state, timer;
    __u8 retrans, pad[3];
    __u16 sport, dport;
    __u32 rqueue, wqueue, uid, inode, expires_ms;
    __u8 src[16], dst[16];   /* v4: the first 4 bytes */
    __u64 cookie;
};

/* Sockets per state (the same state numbers), written once at the end. */
struct tl_iter_tally {
    __u8 kind, pad[7];
    __u32 by_state[TL_ITER_NSTATES];
};

/* What one walk wants: set by userspace before it creates the iterator. */
struct tl_iter_cfg {
    __u32 states;   /* bit n: state n (as reported) */
    __u32 family;   /* 0: both */
    __s32 sport, dport;  /* -1: any */
    __u32 count;    /* 1: tally only, one TL_ITER_TALLY record at the end */
    __u32 pad;
};

/* One socket fd of a process (the iter/task_file program dump_owners). */
struct tl_owner_rec {
    __u32 pid, fd, inode;
};

_Static_assert(sizeof(struct tl_owner_rec) == 12, "owner record layout");
_Static_assert(sizeof(struct tl_iter_rec) == TL_ITER_REC_SIZE, "record layout");
_Static_assert(sizeof(struct tl_iter_tally) == TL_ITER_REC_SIZE, "tally layout");

#endif
