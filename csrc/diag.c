/* The dump loop: send one request, read every part of the multi-part
 * reply, restart when the kernel flags the dump as inconsistent. */
#include <errno.h>
#include <time.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <libmnl/libmnl.h>
#include "tcplab.h"

enum { MAX_RESTARTS = 8 };

/* Read one reply to `seq` to its end. Returns 1 when the kernel marked it
 * interrupted, 0 when complete, -1 on error (res filled). */
static int read_reply(struct mnl_socket *nl, void *buf, size_t size, uint32_t seq,
                      tl_diag_cb cb, void *ctx, tl_diag_result *res)
{
    uint32_t portid = mnl_socket_get_portid(nl);
    int interrupted = 0;
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* ENOSPC: a message larger than the buffer (never silently cut);
             * ENOBUFS: the kernel dropped part of the reply. */
            res->err = errno;
            res->what = "netlink recv";
            return -1;
        }
        const struct nlmsghdr *nlh = buf;
        int left = (int)n;
        for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
            if (nlh->nlmsg_seq != seq || (nlh->nlmsg_pid && nlh->nlmsg_pid != portid))
                continue;  /* a stale reply from an abandoned dump */
            if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
                interrupted = 1;
            if (nlh->nlmsg_type == NLMSG_DONE)
                return interrupted;
            if (nlh->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
                if (mnl_nlmsg_get_payload_len(nlh) < sizeof *e || e->error == 0)
                    res->err = EPROTO;
                else
                    res->err = -e->error;
                res->what = "netlink dump";
                return -1;
            }
            if (interrupted)
                continue;  /* drain; the records will be read again */
            tl_diag_rec rec;
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
    }
}

void tl_diag_dump(struct mnl_socket *nl, void *buf, size_t size, const tl_diag_filter *f,
                  tl_diag_cb cb, tl_diag_restart_cb restart, void *ctx, tl_diag_result *res)
{
    _Alignas(struct nlmsghdr) char req[TL_DIAG_REQ_SIZE];
    uint32_t seq = (uint32_t)time(NULL);
    res->err = 0;
    res->what = NULL;
    res->restarts = 0;
    for (;;) {
        size_t len = tl_diag_build(req, f, ++seq);
        if (mnl_socket_sendto(nl, req, len) < 0) {
            res->err = errno;
            res->what = "netlink send";
            return;
        }
        int r = read_reply(nl, buf, size, seq, cb, ctx, res);
        if (r <= 0)
            return;
        if (res->restarts == MAX_RESTARTS) {
            res->err = EAGAIN;
            res->what = "netlink dump kept being interrupted";
            return;
        }
        res->restarts++;
        restart(ctx);
    }
}
