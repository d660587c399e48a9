/* tcplab: what the live counters' BPF object (bpf/live.bpf.c) shares with
 * csrc/live.c. Include <linux/types.h> (userspace) or vmlinux.h first. */
#ifndef TCPLAB_LIVE_REC_H
#define TCPLAB_LIVE_REC_H

enum {
    TL_LIVE_NSTATES = 16,   /* counts[] by the kernel's state number */
    TL_LIVE_FW2_MAX = 1 << 20,  /* FIN_WAIT2 time-wait placeholders tracked at once */
    TL_LIVE_LISTENERS_MAX = 1 << 16,
};

#endif
