/* The sock_diag backend ("netlink"): one dump request, every part of the
 * multi-part reply read into one buffer and walked in place, a restart
 * when the kernel flags the dump as inconsistent (NLM_F_DUMP_INTR), and a
 * fresh socket when the kernel dropped part of the reply (ENOBUFS).
 *
 * The state owns the netlink socket, the namespace fd and the receive
 * buffer; records.c holds it in a userdata whose __gc calls close, so an
 * error raised while pushing records leaks none of them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <libmnl/libmnl.h>
#include "diag.h"

/* The kernel caps one dump part at 32 KiB; twice that never truncates,
 * and if it ever did, recv reports ENOSPC instead of cutting. */
enum { DUMP_BUF_SIZE = 65536 };

/* Retries of one dump, NLM_F_DUMP_INTR restarts and ENOBUFS reopens together. */
enum { MAX_RESTARTS = 8 };

typedef struct diag_state {
    struct mnl_socket *nl;  /* NULL until the first dump, or after a failed reopen */
    int nsfd;               /* network namespace to open in; -1: our own */
    void *buf;
    uint32_t seq;           /* streaming: the request being read */
    int first, interrupted; /* streaming: no buffer read yet; NLM_F_DUMP_INTR seen */
    char path[];            /* the namespace's path, for messages ("" for our own) */
} diag_state;

/* Test-only faults (core._inject_dump_faults), counted down as they fire. */
static unsigned inject_interrupt, inject_enobufs;

static void diag_inject(unsigned interrupt, unsigned enobufs)
{
    inject_interrupt = interrupt;
    inject_enobufs = enobufs;
}

static int open_here(void *arg, tl_result *res)
{
    diag_state *s = arg;
    s->nl = tl_netlink_open(NETLINK_SOCK_DIAG, res);
    return s->nl ? 0 : -1;
}

/* (Re)open the socket inside the state's namespace. */
static int connect_socket(diag_state *s, tl_result *res)
{
    if (s->nl) {
        mnl_socket_close(s->nl);
        s->nl = NULL;
    }
    if (s->nsfd < 0)
        return open_here(s, res);
    return tl_netns_run(s->nsfd, s->path, open_here, s, res) == 0 ? 0 : -1;
}

static void diag_close(void *state)
{
    diag_state *s = state;
    if (!s)
        return;
    if (s->nl)
        mnl_socket_close(s->nl);
    if (s->nsfd >= 0)
        close(s->nsfd);
    free(s->buf);
    free(s);
}

/* The socket itself is opened by the first dump, inside the namespace. */
static void *diag_open(const char *netns, tl_result *res)
{
    size_t len = netns ? strlen(netns) : 0;
    diag_state *s = malloc(sizeof *s + len + 1);
    if (!s) {
        res->err = ENOMEM;
        res->what = "malloc";
        return NULL;
    }
    s->nl = NULL;
    s->nsfd = -1;
    memcpy(s->path, netns ? netns : "", len + 1);
    s->buf = malloc(DUMP_BUF_SIZE);
    if (!s->buf) {
        diag_close(s);
        res->err = ENOMEM;
        res->what = "malloc";
        return NULL;
    }
    if (netns) {
        s->nsfd = tl_netns_open(netns, res);
        if (s->nsfd < 0) {
            diag_close(s);
            return NULL;
        }
    }
    return s;
}

static int diag_probe(tl_result *res)
{
    struct mnl_socket *nl = tl_netlink_open(NETLINK_SOCK_DIAG, res);
    if (!nl)
        return -1;
    mnl_socket_close(nl);
    return 0;
}

enum { REPLY_DONE = 0, REPLY_INTERRUPTED = 1, REPLY_ENOBUFS = 2, REPLY_ERROR = -1 };

/* One buffer of a reply, with the test-only faults: n, or -1 with errno. */
static ssize_t recv_part(struct mnl_socket *nl, void *buf, size_t size, int *first,
                         int *interrupted)
{
    ssize_t n;
    if (inject_enobufs > 0) {
        inject_enobufs--;
        errno = ENOBUFS;
        return -1;
    }
    n = mnl_socket_recvfrom(nl, buf, size);
    if (n >= 0 && *first && inject_interrupt > 0) {
        inject_interrupt--;
        *interrupted = 1;  /* as if the kernel had set NLM_F_DUMP_INTR */
    }
    if (n >= 0)
        *first = 0;
    return n;
}

/* Read one reply to `seq` to its end. */
static int read_reply(struct mnl_socket *nl, void *buf, size_t size, uint32_t seq,
                      tl_on_record cb, void *ctx, tl_result *res)
{
    uint32_t portid = mnl_socket_get_portid(nl);
    int interrupted = 0, first = 1;
    for (;;) {
        ssize_t n = recv_part(nl, buf, size, &first, &interrupted);
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
        int r = tl_diag_walk(buf, (size_t)n, seq, portid, &interrupted, cb, ctx, res);
        if (r < 0)
            return REPLY_ERROR;
        if (r == TL_REPLY_DONE)
            return interrupted ? REPLY_INTERRUPTED : REPLY_DONE;
    }
}

static void diag_dump(void *state, const tl_filter *f, tl_on_record cb, tl_on_restart restart,
                      void *ctx, tl_result *res)
{
    diag_state *s = state;
    _Alignas(struct nlmsghdr) char req[TL_DIAG_REQ_SIZE];
    uint32_t seq = (uint32_t)time(NULL);
    tl_result_clear(res);
    if (!s->nl && connect_socket(s, res) != 0)
        return;
    for (;;) {
        size_t len = tl_diag_build(req, f, ++seq);
        int r;
        if (mnl_socket_sendto(s->nl, req, len) < 0) {
            if (errno != ENOBUFS) {
                res->err = errno;
                res->what = "netlink send";
                return;
            }
            r = REPLY_ENOBUFS;
        } else {
            r = read_reply(s->nl, s->buf, DUMP_BUF_SIZE, seq, cb, ctx, res);
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
            if (connect_socket(s, res) != 0)
                return;
        } else {
            res->restarts++;
        }
        restart(ctx);
    }
}

/* Streaming (core.each): the request sent; diag_next reads its reply one
 * buffer at a time. */
static int diag_start(void *state, const tl_filter *f, tl_result *res)
{
    diag_state *s = state;
    _Alignas(struct nlmsghdr) char req[TL_DIAG_REQ_SIZE];
    tl_result_clear(res);
    if (!s->nl && connect_socket(s, res) != 0)
        return -1;
    s->seq = (uint32_t)time(NULL);
    s->first = 1;
    s->interrupted = 0;
    size_t len = tl_diag_build(req, f, s->seq);
    if (mnl_socket_sendto(s->nl, req, len) < 0) {
        res->err = errno;
        res->what = "netlink send";
        return -1;
    }
    return 0;
}

static int diag_next(void *state, tl_on_record cb, void *ctx, tl_result *res)
{
    diag_state *s = state;
    tl_result_clear(res);
    ssize_t n;
    do
        n = recv_part(s->nl, s->buf, DUMP_BUF_SIZE, &s->first, &s->interrupted);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        res->err = errno;
        res->what = "netlink recv";
        if (errno == ENOBUFS)
            res->why = "the kernel dropped part of the dump (ENOBUFS); the records already "
                       "yielded cannot be taken back: walk again";
        return -1;
    }
    int r = tl_diag_walk(s->buf, (size_t)n, s->seq, mnl_socket_get_portid(s->nl), &s->interrupted,
                         cb, ctx, res);
    if (r < 0)
        return -1;
    if (r == TL_REPLY_MORE)
        return 1;
    if (s->interrupted) {
        res->err = EAGAIN;
        res->what = "netlink dump";
        res->why = "interrupted (NLM_F_DUMP_INTR): the sockets changed under the walk and the "
                   "records yielded may be inconsistent: walk again";
        return -1;
    }
    return 0;
}

const tl_backend tl_backend_netlink = {
    .name = "netlink",
    .caps = TL_CAP_INFO | TL_CAP_TIMEWAIT | TL_CAP_REQSK | TL_CAP_NETNS_PATH | TL_CAP_PORT_FILTER |
            TL_CAP_RANGE_FILTER | TL_CAP_ADDR_FILTER,
    .probe = diag_probe,
    .open = diag_open,
    .dump = diag_dump,
    .close = diag_close,
    .inject = diag_inject,
    .start = diag_start,
    .next = diag_next,
};
