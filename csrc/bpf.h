/* tcplab: the BPF iterator backend's parts (bpf_parse.c, bpf_backend.c).
 * No Lua, and no libbpf here: the parser builds and fuzzes without either. */
#ifndef TCPLAB_BPF_H
#define TCPLAB_BPF_H

#include "backend.h"

/* ---- records (bpf_parse.c: no I/O, what the fuzz target feeds) ---- */
/* Walk whole records of the iterator's output in buf[0..n): sockets go to
 * cb; a tally record (the end of a counting walk) is added into tally
 * (TL_BPF_NSTATES entries; NULL: a tally is malformed here) and sets
 * *tallied. Returns the bytes consumed (a multiple of the record size; the
 * rest is the start of a record a later read completes), or -1 with res
 * filled on a record that is not one. */
enum { TL_BPF_NSTATES = 16 };
long tl_bpf_walk(const void *buf, size_t n, tl_on_record cb, void *ctx, int64_t *tally,
                 int *tallied, tl_result *res);
size_t tl_bpf_rec_size(void);

/* ---- transitions (bpf/state_tp.bpf.c's ring buffer records) ---- */
/* One event of the BPF transition recorder, decoded (no Lua, no libbpf).
 * Strings are static; addresses as inet_ntop writes them, a v4-mapped
 * IPv6 address as IPv4 (as the tracefs recorder reports them). */
typedef struct tl_state_event {
    double time;                 /* seconds, CLOCK_MONOTONIC */
    const char *family, *from, *to;
    char src[46], dst[46];       /* INET6_ADDRSTRLEN */
    unsigned sport, dport;
    uint32_t netns;              /* the socket's namespace inode */
    uint64_t cookie;
    uint64_t netns_cookie;       /* the socket's namespace cookie */
    uint32_t cpu, seq;           /* the CPU that wrote it, and its count of events written */
    const char *kernel_to;       /* what the tracepoint said when `to` differs from it ("CLOSE"), or NULL */
    int rescued;                 /* written by the second program (on_state_nested) */
    const char *why;             /* for FIN_WAIT1/FIN_WAIT2/CLOSING -> CLOSE or TIME_WAIT: what the
                                    program read ("placeholder, fin taken", ...), else NULL */
    /* the recorder's life option, on the event that ends the full socket
     * (ends is 0 on every other event, and the fields below unset) */
    int ends;
    double born;                 /* seconds, CLOCK_MONOTONIC: its first transition seen */
    uint64_t bytes_acked, bytes_received;   /* tcp_sock's counters as they were */
    unsigned life;               /* TL_LIFE_* (bpf/state_ev.h) */
    uint32_t pid;                /* the owner (life & TL_LIFE_OWNER), else 0 */
    char comm[17];               /* its comm, NUL-terminated ("" without an owner) */
    unsigned npath;              /* 1..16 */
    const char *path[16];        /* the first state seen, then each state entered */
} tl_state_event;
/* One ring buffer record of n bytes into ev: 0, or -1 when it is not one. */
int tl_state_decode(const void *data, size_t n, tl_state_event *ev);

/* ---- how many sockets a namespace holds (sockstat.c) ---- */
/* TCP sockets (v4 and v6 in use, plus TIME_WAIT) from the text of
 * /proc/net/sockstat (n4 bytes) and sockstat6 (n6 bytes; v6 may be NULL);
 * -1 when the text does not say. */
long tl_sockstat_tcp(const char *v4, size_t n4, const char *v6, size_t n6);
/* The number after `key ` on the line of text[0..n) that starts with
 * `line` ("TCP:", "tw"), or -1. */
long tl_sockstat_field(const char *text, size_t n, const char *line, const char *key);

/* ---- the loaded program (bpf_backend.c) ---- */
/* Built with BPF: why no program can be loaded here (not root, no BTF), or
 * NULL; *err is the errno to report. */
const char *tl_bpf_cannot(int *err);
/* "auto" passes over the iterator for operation op (TL_OP_*) in a
 * namespace with fewer TCP sockets than this (0: never passes over it;
 * TL_BPF_NEVER: always does); n >= 0 sets it. Returns the value before,
 * -1 for an unknown op. */
#define TL_BPF_NEVER __LONG_MAX__
long tl_bpf_min_sockets(int op, long n);
/* Milliseconds the one load of this process took (0: not loaded yet, or
 * failed), and whether the program is loaded now. */
double tl_bpf_load_ms(void);
int tl_bpf_loaded(void);
/* Socket owners from the iter/task_file program (no /proc/PID/fd walk):
 * the owners of o's wanted inodes, comm from PROC/PID/comm. Used only where
 * the process is in the initial pid namespace (the program sees init's pid
 * numbers). 0, or -1 with res filled (not loadable, not that namespace, a
 * read error): the caller walks /proc instead. */
struct tl_owners;
int tl_bpf_owners(struct tl_owners *o, const char *proc, tl_result *res);
/* Release the program (nothing is pinned); the next use loads it again. */
void tl_bpf_unload(void);

#endif
