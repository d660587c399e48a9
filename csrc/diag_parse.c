/* Bytes of one sock_diag reply -> a plain C record. No Lua, no I/O: this
 * is what the fuzz target feeds. Pointers in the record point into the
 * caller's buffer; nothing is copied. */
#include <errno.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <libmnl/libmnl.h>
#include "diag.h"

int tl_diag_parse(const void *payload, size_t len, tl_sock_rec *rec)
{
    const struct inet_diag_msg *m = payload;
    if (len < sizeof *m)
        return -1;
    if (m->idiag_family != AF_INET && m->idiag_family != AF_INET6)
        return -1;
    rec->family = m->idiag_family;
    rec->state = m->idiag_state;
    rec->timer = m->idiag_timer;
    rec->retrans = m->idiag_retrans;
    rec->sport = ntohs(m->id.idiag_sport);
    rec->dport = ntohs(m->id.idiag_dport);
    rec->src = (const uint8_t *)m->id.idiag_src;
    rec->dst = (const uint8_t *)m->id.idiag_dst;
    rec->rqueue = m->idiag_rqueue;
    rec->wqueue = m->idiag_wqueue;
    rec->uid = m->idiag_uid;
    rec->inode = m->idiag_inode;
    rec->expires_ms = m->idiag_expires;
    rec->cookie = (uint64_t)m->id.idiag_cookie[0] | (uint64_t)m->id.idiag_cookie[1] << 32;
    rec->info = NULL;
    rec->info_len = 0;
    rec->cong = NULL;
    rec->cong_len = 0;

    /* Attributes follow the aligned fixed part; walk them by hand with
     * libmnl's bounds checks so a short or lying length stops the walk. */
    size_t off = MNL_ALIGN(sizeof *m);
    if (off > len)
        return 0;
    const struct nlattr *a = (const struct nlattr *)((const char *)payload + off);
    int left = (int)(len - off);
    while (mnl_attr_ok(a, left)) {
        if (mnl_attr_get_type(a) == INET_DIAG_INFO) {
            rec->info = mnl_attr_get_payload(a);
            rec->info_len = mnl_attr_get_payload_len(a);
        } else if (mnl_attr_get_type(a) == INET_DIAG_CONG) {
            /* "cubic\0": up to the NUL, never past the attribute */
            rec->cong = mnl_attr_get_payload(a);
            rec->cong_len = strnlen(rec->cong, mnl_attr_get_payload_len(a));
        }
        left -= MNL_ALIGN(a->nla_len);
        a = (const struct nlattr *)((const char *)a + MNL_ALIGN(a->nla_len));
    }
    return 0;
}

int tl_diag_walk(const void *buf, size_t n, uint32_t seq, uint32_t portid, int *interrupted,
                 tl_on_record cb, void *ctx, tl_result *res)
{
    const unsigned char *p = buf;
    size_t left = n;
    /* Not mnl_nlmsg_ok(): it casts nlmsg_len to int, so a length of 2 GiB or
     * more passes its check and mnl_nlmsg_next() jumps out of the buffer
     * (found by the fuzzer; fuzz/regress/ keeps the input). */
    for (;;) {
        const struct nlmsghdr *nlh = (const struct nlmsghdr *)p;
        if (left < sizeof *nlh || nlh->nlmsg_len < sizeof *nlh || nlh->nlmsg_len > left)
            break;
        size_t step = MNL_ALIGN(nlh->nlmsg_len);
        p += step < left ? step : left;
        left -= step < left ? step : left;
        if (nlh->nlmsg_seq != seq || (nlh->nlmsg_pid && nlh->nlmsg_pid != portid))
            continue;  /* a stale reply from an abandoned dump */
        if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
            *interrupted = 1;
        if (nlh->nlmsg_type == NLMSG_DONE)
            return TL_REPLY_DONE;
        if (nlh->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
            /* the kernel sends -errno; anything else is not an answer */
            if (mnl_nlmsg_get_payload_len(nlh) < sizeof *e || e->error >= 0 || e->error < -4095)
                res->err = EPROTO;
            else
                res->err = -e->error;
            res->what = "netlink dump";
            return -1;
        }
        if (*interrupted)
            continue;  /* drain; the records will be read again */
        tl_sock_rec rec;
        if (tl_diag_parse(mnl_nlmsg_get_payload(nlh), mnl_nlmsg_get_payload_len(nlh), &rec) != 0) {
            res->err = EPROTO;
            res->what = "netlink parse";
            return -1;
        }
        cb(&rec, ctx);
    }
    if (left > 0) {  /* bytes that do not form a message */
        res->err = EPROTO;
        res->what = "netlink parse";
        return -1;
    }
    return TL_REPLY_MORE;
}
