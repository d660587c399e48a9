/* Bytes written by the iter/tcp program -> tl_sock_rec. No Lua, no I/O,
 * no libbpf: this is what fuzz/bpf_fuzz.c feeds. Records are fixed-size
 * (bpf/iter_rec.h); each is copied out of the buffer before use, so an
 * unaligned read buffer is fine, and the record handed to cb points into
 * that copy. */
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <linux/types.h>
#include "bpf.h"
#include "bpf/iter_rec.h"
#include "bpf/state_ev.h"
#include <arpa/inet.h>

_Static_assert((int)TL_BPF_NSTATES == (int)TL_ITER_NSTATES, "one state count");

size_t tl_bpf_rec_size(void)
{
    return TL_ITER_REC_SIZE;
}

static int bad(tl_result *res, const char *why)
{
    res->err = EPROTO;
    res->what = "bpf iterator record";
    res->why = why;
    return -1;
}

long tl_bpf_walk(const void *buf, size_t n, tl_on_record cb, void *ctx, int64_t *tally,
                 int *tallied, tl_result *res)
{
    const unsigned char *p = buf;
    size_t whole = n - n % TL_ITER_REC_SIZE;
    for (size_t off = 0; off < whole; off += TL_ITER_REC_SIZE) {
        unsigned char kind = p[off];
        if (kind == TL_ITER_TALLY) {
            if (!tally)
                return bad(res, "a tally where records were asked for");
            struct tl_iter_tally t;
            memcpy(&t, p + off, sizeof t);
            for (int i = 0; i < TL_ITER_NSTATES; i++)
                tally[i] += t.by_state[i];
            *tallied = 1;
            continue;
        }
        if (kind != TL_ITER_SOCK)
            return bad(res, "unknown record kind");
        struct tl_iter_rec r;
        memcpy(&r, p + off, sizeof r);
        if (r.family != AF_INET && r.family != AF_INET6)
            return bad(res, "unknown address family");
        if (r.state >= TL_ITER_NSTATES)
            return bad(res, "state out of range");
        tl_sock_rec rec = {
            .family = r.family, .state = r.state, .timer = r.timer, .retrans = r.retrans,
            .sport = r.sport, .dport = r.dport, .src = r.src, .dst = r.dst,
            .rqueue = r.rqueue, .wqueue = r.wqueue, .uid = r.uid, .inode = r.inode,
            .expires_ms = r.expires_ms, .cookie = r.cookie, .info = NULL, .info_len = 0,
        };
        cb(&rec, ctx);
    }
    return (long)whole;
}

/* ---- the transition recorder's events (bpf/state_tp.bpf.c) ---- */
static const char *const state_names[] = {
    "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "SYN_RECV" /* NEW_SYN_RECV */,
};

static const char *state_name(unsigned s)
{
    return s < sizeof state_names / sizeof *state_names ? state_names[s] : "UNKNOWN";
}

static void format_addr(int family, const unsigned char *raw, char *buf, size_t size)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == AF_INET6 && memcmp(raw, mapped, sizeof mapped) == 0) {
        family = AF_INET;
        raw += 12;
    }
    if (!inet_ntop(family, raw, buf, (socklen_t)size))
        buf[0] = '\0';
}

int tl_state_decode(const void *data, size_t n, tl_state_event *ev)
{
    struct tl_state_ev r;
    if (n != sizeof r)
        return -1;
    memcpy(&r, data, sizeof r);
    int family = r.family == AF_INET6 ? AF_INET6 : r.family == AF_INET ? AF_INET : 0;
    if (!family)
        return -1;
    ev->time = (double)r.ns / 1e9;
    ev->family = family == AF_INET6 ? "inet6" : "inet";
    ev->from = state_name(r.from);
    ev->to = state_name(r.to);
    format_addr(family, r.src, ev->src, sizeof ev->src);
    format_addr(family, r.dst, ev->dst, sizeof ev->dst);
    ev->sport = r.sport;
    ev->dport = r.dport;
    ev->netns = r.netns;
    ev->cookie = r.cookie;
    ev->netns_cookie = r.netns_cookie;
    ev->cpu = r.cpu;
    ev->seq = r.seq;
    ev->kernel_to = NULL;
    if (r.flags & TL_EV_TIME_WAIT) {
        /* only tcp_time_wait()'s X -> CLOSE is told as TIME_WAIT */
        if (r.to != 6 /* TCP_TIME_WAIT */ || (r.from != 4 && r.from != 5 && r.from != 11))
            return -1;
        ev->kernel_to = "CLOSE";
    }
    ev->rescued = (r.flags & TL_EV_RESCUED) != 0;
    ev->why = NULL;
    if (r.flags & (TL_EV_UNHASHED | TL_EV_FIN_TAKEN | TL_EV_RCV_SHUTDOWN) || ev->kernel_to) {
        static const char *const whys[4] = {
            "still hashed, peer's FIN not taken", "still hashed, peer's FIN taken",
            "placeholder, peer's FIN not taken", "placeholder, peer's FIN taken"};
        ev->why = whys[((r.flags & TL_EV_UNHASHED) ? 2 : 0) | ((r.flags & TL_EV_FIN_TAKEN) ? 1 : 0)];
    }
    _Static_assert(TL_LIFE_MAX_PATH == sizeof ev->path / sizeof *ev->path, "one path length");
    ev->ends = (r.life & TL_LIFE_END) != 0;
    ev->life = r.life;
    ev->npath = 0;
    ev->pid = 0;
    ev->comm[0] = '\0';
    ev->born = 0;
    ev->bytes_acked = ev->bytes_received = 0;
    if (!ev->ends)
        return 0;
    /* a lifetime ends only where the kernel said CLOSE, and holds at least its first state */
    if ((strcmp(ev->to, "CLOSE") != 0 && !ev->kernel_to) || r.npath < 1 || r.npath > TL_LIFE_MAX_PATH ||
        r.born_ns > r.ns)
        return -1;
    ev->born = (double)r.born_ns / 1e9;
    ev->bytes_acked = r.bytes_acked;
    ev->bytes_received = r.bytes_received;
    ev->npath = r.npath;
    for (unsigned i = 0; i < r.npath; i++)
        ev->path[i] = state_name(r.path[i]);
    if (r.life & TL_LIFE_OWNER) {
        ev->pid = r.pid;
        memcpy(ev->comm, r.comm, sizeof r.comm);
        ev->comm[sizeof r.comm] = '\0';
    }
    return 0;
}
