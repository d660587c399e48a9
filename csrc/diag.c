/* The dump loop: send one request, read every part of the multi-part
 * reply, restart when the kernel flags the dump as inconsistent, and start
 * over on a fresh socket when the kernel dropped part of the reply. */
#include <errno.h>
#include <time.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <libmnl/libmnl.h>
#include "tcplab.h"

/* Retries of one dump, NLM_F_DUMP_INTR restarts and ENOBUFS reopens together. */
enum { MAX_RESTARTS = 8 };

/* Test-only faults (core._inject_dump_faults), counted down as they fire. */
static unsigned inject_interrupt, inject_enobufs;
static unsigned last_restarts, last_reopens;

void tl_diag_inject(unsigned interrupt, unsigned enobufs)
{
    inject_interrupt = interrupt;
    inject_enobufs = enobufs;
}

void tl_diag_last_stats(unsigned *restarts, unsigned *reopens)
{
    *restarts = last_restarts;
    *reopens = last_reopens;
}

enum { REPLY_DONE = 0, REPLY_INTERRUPTED = 1, REPLY_ENOBUFS = 2, REPLY_ERROR = -1 };

/* Read one reply to `seq` to its end. */
static int read_reply(struct mnl_socket *nl, void *buf, size_t size, uint32_t seq,
                      tl_diag_cb cb, void *ctx, tl_diag_result *res)
{
    uint32_t portid = mnl_socket_get_portid(nl);
    int interrupted = 0, first = 1;
    for (;;) {
        ssize_t n;
        if (inject_enobufs > 0) {
            inject_enobufs--;
            n = -1;
            errno = ENOBUFS;
        } else {
            n = mnl_socket_recvfrom(nl, buf, size);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* ENOBUFS: the kernel dropped part of the reply; the caller
             * starts over on a fresh socket. ENOSPC: a message larger than
             * the buffer (never silently cut). */
            if (errno == ENOBUFS)
                return REPLY_ENOBUFS;
            res->err = errno;
            res->what = "netlink recv";
            return REPLY_ERROR;
        }
        if (first && inject_interrupt > 0) {
            inject_interrupt--;
            interrupted = 1;  /* as if the kernel had set NLM_F_DUMP_INTR */
        }
        first = 0;
        int r = tl_diag_walk(buf, (size_t)n, seq, portid, &interrupted, cb, ctx, res);
        if (r < 0)
            return REPLY_ERROR;
        if (r == TL_REPLY_DONE)
            return interrupted ? REPLY_INTERRUPTED : REPLY_DONE;
    }
}

static void run_dump(tl_diag_conn *conn, void *buf, size_t size, const tl_diag_filter *f,
                     tl_diag_cb cb, tl_diag_restart_cb restart, void *ctx, tl_diag_result *res)
{
    _Alignas(struct nlmsghdr) char req[TL_DIAG_REQ_SIZE];
    uint32_t seq = (uint32_t)time(NULL);
    if (!conn->nl && tl_diag_connect(conn, res) != 0)
        return;
    for (;;) {
        size_t len = tl_diag_build(req, f, ++seq);
        int r;
        if (mnl_socket_sendto(conn->nl, req, len) < 0) {
            if (errno != ENOBUFS) {
                res->err = errno;
                res->what = "netlink send";
                return;
            }
            r = REPLY_ENOBUFS;
        } else {
            r = read_reply(conn->nl, buf, size, seq, cb, ctx, res);
        }
        if (r == REPLY_DONE || r == REPLY_ERROR)
            return;
        if (res->restarts + res->reopens == MAX_RESTARTS) {
            if (r == REPLY_INTERRUPTED) {
                res->err = EAGAIN;
                res->what = "netlink dump kept being interrupted";
            } else {
                res->err = ENOBUFS;
                res->what = "netlink dump kept losing messages";
            }
            return;
        }
        if (r == REPLY_ENOBUFS) {
            /* Parts of the abandoned reply may still be queued on the old
             * socket: a fresh one guarantees none is mixed into the new dump. */
            res->reopens++;
            if (tl_diag_connect(conn, res) != 0)
                return;
        } else {
            res->restarts++;
        }
        restart(ctx);
    }
}

void tl_diag_dump(tl_diag_conn *conn, void *buf, size_t size, const tl_diag_filter *f,
                  tl_diag_cb cb, tl_diag_restart_cb restart, void *ctx, tl_diag_result *res)
{
    res->err = 0;
    res->what = NULL;
    res->why = NULL;
    res->restarts = 0;
    res->reopens = 0;
    run_dump(conn, buf, size, f, cb, restart, ctx, res);
    last_restarts = res->restarts;
    last_reopens = res->reopens;
}
