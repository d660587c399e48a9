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
        int r = tl_diag_walk(buf, (size_t)n, seq, portid, &interrupted, cb, ctx, res);
        if (r < 0)
            return -1;
        if (r == TL_REPLY_DONE)
            return interrupted;
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
