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
