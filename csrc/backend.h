/* tcplab: the seam between sources of socket records and the Lua side.
 *
 * No Lua here, and none in the files that implement a backend (diag_*.c,
 * backend.c, setns.c): spec/nolua_spec.lua compiles them against a lua.h
 * that is an #error. A backend turns a filter into tl_sock_rec records
 * handed to a callback; snapshot.c and counts.c (records.h) turn those into
 * Lua values. */
#ifndef TCPLAB_BACKEND_H
#define TCPLAB_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* One socket, whichever backend saw it. Pointers point into the backend's
 * buffer and are valid during the on_record call only: nothing is copied. */
typedef struct tl_sock_rec {
    uint8_t family, state, timer, retrans;
    uint16_t sport, dport;          /* host order */
    const uint8_t *src, *dst;       /* 4 or 16 bytes */
    uint32_t rqueue, wqueue, uid, inode, expires_ms;
    uint64_t cookie;
    const void *info;               /* struct tcp_info bytes or NULL */
    size_t info_len;
    const char *cong;               /* congestion control name (not NUL-terminated) or NULL */
    size_t cong_len;
} tl_sock_rec;

/* An address prefix: family 0 matches any address. An AF_INET prefix also
 * matches v4-mapped addresses of AF_INET6 sockets (as the kernel does). */
typedef struct tl_prefix {
    uint8_t family, bits;
    uint8_t addr[16];
} tl_prefix;

/* Which sockets: checked once, by filter.c, before any backend sees it. */
typedef struct tl_filter {
    uint32_t states;   /* bit n: kernel state n */
    int family;        /* AF_UNSPEC for both */
    int sport, dport;  /* -1: any */
    int info;          /* want tcp_info (and the congestion control name) */
    /* ss-grade filters (TL_CAP_RANGE_FILTER, TL_CAP_ADDR_FILTER); all zero
     * (as a {0}-initialised filter has them) means none: */
    int sport_lo, sport_hi, dport_lo, dport_hi;  /* inclusive; a range when hi > 0 */
    tl_prefix src, dst;
} tl_filter;

/* How a step failed. */
enum { TL_WHAT_SIZE = 4200 };  /* a path (PATH_MAX) and a verb */
typedef struct tl_result {
    int err;           /* errno, 0 on success */
    const char *what;  /* which step failed (may point into whatbuf) */
    const char *why;   /* NULL: strerror(err) */
    unsigned restarts; /* the source's view changed under the walk: walked again */
    unsigned reopens;  /* the source lost records: fresh handle, walked again */
    char whatbuf[TL_WHAT_SIZE];
} tl_result;

void tl_result_clear(tl_result *res);
/* Fail with err; what is formatted into res->whatbuf. */
void tl_result_set(tl_result *res, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Called per record, in the order the source yields them. */
typedef void (*tl_on_record)(const tl_sock_rec *rec, void *ctx);
/* Called before a walk starts over: forget the records seen so far. */
typedef void (*tl_on_restart)(void *ctx);

/* What "auto" is choosing a backend for: each has its own crossover. */
enum { TL_OP_SNAPSHOT, TL_OP_COUNTS, TL_OP_COUNTS_BY, TL_OP_COUNT_ };

/* What a backend can see or do. */
enum {
    TL_CAP_INFO = 1 << 0,        /* tcp_info per socket */
    TL_CAP_TIMEWAIT = 1 << 1,    /* TIME_WAIT placeholders */
    TL_CAP_REQSK = 1 << 2,       /* request sockets (SYN_RECV) */
    TL_CAP_NETNS_PATH = 1 << 3,  /* another namespace, by path */
    TL_CAP_PORT_FILTER = 1 << 4, /* ports filtered at the source */
    TL_CAP_RANGE_FILTER = 1 << 5, /* port ranges (sport_lo..hi, dport_lo..hi) */
    TL_CAP_ADDR_FILTER = 1 << 6,  /* address prefixes (src, dst) */
};

typedef struct tl_backend {
    const char *name;
    unsigned caps;
    /* 0 when usable here, else -1 with res saying why not. */
    int (*probe)(tl_result *res);
    /* A state for dumps of the namespace at netns (NULL: our own), or
     * NULL with res filled. Opens nothing that blocks. */
    void *(*open)(const char *netns, tl_result *res);
    /* One walk: records to on_record; on_restart before a walk starts over.
     * res->err is 0 on success. */
    void (*dump)(void *state, const tl_filter *f, tl_on_record on_record,
                 tl_on_restart on_restart, void *ctx, tl_result *res);
    void (*close)(void *state);
    /* Test only, may be NULL: the next `restarts` walks see their source
     * change, the next `reopens` reads lose records. */
    void (*inject)(unsigned restarts, unsigned reopens);
    /* May be NULL (then counts come from dump): per-state totals added into
     * by_state[0..255], counted at the source. res->err is 0 on success. */
    void (*count)(void *state, const tl_filter *f, int64_t *by_state, tl_result *res);
    /* The filter fields (keys of the Lua filter table) this backend honours,
     * NULL-terminated; NULL: every field. "auto" passes over a backend that
     * does not know a field a filter sets. */
    const char *const *fields;
    /* May be NULL: nonzero when another backend answers this operation
     * (TL_OP_*) for this filter, in the namespace at netns (NULL: our own),
     * more cheaply, so "auto" passes over this one (it still answers if
     * named). */
    int (*declines)(int op, const tl_filter *f, const char *netns);
    /* A streaming walk (core.each; may be NULL): start sends the request or
     * creates the iterator, 0 or -1 with res filled; then each call of next
     * reads ONE buffer and hands its records to on_record: 1 while more
     * follow, 0 once the walk is complete, -1 with res filled. The records'
     * pointers are valid during the on_record call only (as for dump). A
     * walk is never started over (its records are already out): what would
     * make dump restart is an error here. */
    int (*start)(void *state, const tl_filter *f, tl_result *res);
    int (*next)(void *state, tl_on_record on_record, void *ctx, tl_result *res);
} tl_backend;

/* Every backend of this build, the preferred first; NULL-terminated. */
extern const tl_backend *const tl_backends[];
extern const tl_backend tl_backend_netlink;  /* diag_backend.c */
extern const tl_backend tl_backend_bpf;      /* bpf_backend.c (says why not when built without) */
/* By name; "auto" is the first (dump.c picks the first usable one for
 * the filter). NULL when there is none of that name. */
const tl_backend *tl_backend_find(const char *name);

/* ---- namespace plumbing for backends (setns.c) ---- */
/* Open a network namespace path (O_NONBLOCK: a FIFO cannot hang us) and
 * check that it is one. Returns the fd, or -1 with res filled (naming path). */
int tl_netns_open(const char *path, tl_result *res);
/* Run fn(arg, res) inside the namespace nsfd (path names it in messages)
 * and come back; fn's return value, or -1 with res filled. Whatever fn
 * opens (a netlink socket, an iterator fd) stays bound to that namespace. */
int tl_netns_run(int nsfd, const char *path, int (*fn)(void *arg, tl_result *res), void *arg,
                 tl_result *res);
/* Make a fresh network namespace with lo up and return an fd to it,
 * leaving the calling thread where it was (it switches in to create the
 * namespace and back before returning); -1 with res filled. */
int tl_netns_fresh(tl_result *res);
/* Move the calling thread back into the namespace self (an fd to it);
 * aborts when it cannot: going on elsewhere would make every answer a lie. */
void tl_netns_return(int self);
/* Set IFF_UP on `lo` of the current namespace through rtnetlink. */
int tl_netns_lo_up(tl_result *res);
/* A bound netlink socket of `bus`, or NULL with res filled. */
struct mnl_socket;
struct mnl_socket *tl_netlink_open(int bus, tl_result *res);

#endif
