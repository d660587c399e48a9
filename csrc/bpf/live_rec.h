/* tcplab: what the live counters' BPF object (bpf/live.bpf.c) shares with
 * csrc/live.c. Include <linux/types.h> (userspace) or vmlinux.h first. */
#ifndef TCPLAB_LIVE_REC_H
#define TCPLAB_LIVE_REC_H

enum {
    TL_LIVE_NSTATES = 16,   /* counts[] by the kernel's state number */
    /* A read walks every bucket of these two hash maps (about 11 ns a bucket
     * here, whatever they hold): their size is the read's cost and the most
     * listeners / FIN_WAIT2 placeholders counted at once (beyond: misses). */
    TL_LIVE_FW2_MAX = 1 << 13,
    TL_LIVE_LISTENERS_MAX = 1 << 11,
};

#endif
