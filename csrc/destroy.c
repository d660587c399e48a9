/* SOCK_DESTROY, as ss -K sends it: one inet_diag_req_v2 naming the socket
 * by its four-tuple and cookie, NLM_F_ACK, and the kernel's ack read back.
 * The kernel looks the socket up by tuple (a listener by its local end) and
 * refuses with ESTALE when the cookie differs: a four-tuple reused since the
 * dump is never closed by mistake. Needs CONFIG_INET_DIAG_DESTROY
 * (EOPNOTSUPP without) and CAP_NET_ADMIN (EPERM). No Lua here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <libmnl/libmnl.h>
#include "destroy.h"

size_t tl_destroy_build(void *buf, size_t size, const tl_destroy_id *id, uint32_t seq)
{
    size_t need = MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct inet_diag_req_v2));
    if (size < need || size < TL_DESTROY_REQ_SIZE || (id->family != AF_INET && id->family != AF_INET6))
        return 0;
    memset(buf, 0, need);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = SOCK_DESTROY;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = seq;
    struct inet_diag_req_v2 *req = mnl_nlmsg_put_extra_header(nlh, sizeof *req);
    req->sdiag_family = id->family;
    req->sdiag_protocol = IPPROTO_TCP;
    req->idiag_states = ~0u;
    req->id.idiag_sport = htons(id->sport);
    req->id.idiag_dport = htons(id->dport);
    size_t alen = id->family == AF_INET ? 4 : 16;
    memcpy(req->id.idiag_src, id->src, alen);
    memcpy(req->id.idiag_dst, id->dst, alen);
    req->id.idiag_cookie[0] = (uint32_t)id->cookie;
    req->id.idiag_cookie[1] = (uint32_t)(id->cookie >> 32);
    return nlh->nlmsg_len;
}

/* Walked by hand, every length checked against what is left (libmnl's
 * mnl_nlmsg_next steps past the end on an unaligned last length): random
 * bytes in, an errno out (spec/c/destroy_test.c). */
int tl_destroy_answer(const void *buf, size_t n, uint32_t seq, uint32_t portid)
{
    const unsigned char *p = buf;
    size_t off = 0;
    while (n - off >= sizeof(struct nlmsghdr)) {
        struct nlmsghdr h;
        memcpy(&h, p + off, sizeof h);
        if (h.nlmsg_len < sizeof h || h.nlmsg_len > n - off)
            return EPROTO;   /* truncated or nonsense: not an answer */
        if (h.nlmsg_seq == seq && (!portid || h.nlmsg_pid == portid)) {
            if (h.nlmsg_type != NLMSG_ERROR || h.nlmsg_len < NLMSG_HDRLEN + sizeof(struct nlmsgerr))
                return EPROTO;
            struct nlmsgerr e;
            memcpy(&e, p + off + NLMSG_HDRLEN, sizeof e);
            if (e.error > 0 || e.error < -4095)
                return EPROTO;
            return -e.error;
        }
        size_t step = NLMSG_ALIGN(h.nlmsg_len);
        if (step >= n - off)
            break;
        off += step;
    }
    return EPROTO;
}

struct tl_destroyer {
    struct mnl_socket *nl;
    uint32_t seq;
};

static int open_here(void *arg, tl_result *res)
{
    tl_destroyer *d = arg;
    d->nl = tl_netlink_open(NETLINK_SOCK_DIAG, res);
    if (!d->nl)
        return -1;
    /* The ack is queued before sendto returns; the timeout only bounds a
     * kernel that never answers. */
    struct timeval tv = {5, 0};
    setsockopt(mnl_socket_get_fd(d->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return 0;
}

tl_destroyer *tl_destroyer_open(const char *netns, tl_result *res)
{
    tl_destroyer *d = calloc(1, sizeof *d);
    if (!d) {
        tl_result_set(res, ENOMEM, "malloc");
        return NULL;
    }
    d->seq = 1;
    int rc;
    if (!netns) {
        rc = open_here(d, res);
    } else {
        int nsfd = tl_netns_open(netns, res);
        rc = nsfd < 0 ? -1 : tl_netns_run(nsfd, netns, open_here, d, res);
        if (nsfd >= 0)
            close(nsfd);
    }
    if (rc != 0) {
        tl_destroyer_free(d);
        return NULL;
    }
    return d;
}

int tl_destroyer_close_one(tl_destroyer *d, const tl_destroy_id *id, tl_result *res)
{
    _Alignas(struct nlmsghdr) char req[TL_DESTROY_REQ_SIZE];
    _Alignas(struct nlmsghdr) char buf[MNL_SOCKET_BUFFER_SIZE];
    uint32_t seq = ++d->seq;
    size_t len = tl_destroy_build(req, sizeof req, id, seq);
    if (!len) {
        tl_result_set(res, EAFNOSUPPORT, "sock_destroy");
        return -1;
    }
    if (mnl_socket_sendto(d->nl, req, len) < 0) {
        tl_result_set(res, errno, "netlink send");
        return -1;
    }
    uint32_t portid = mnl_socket_get_portid(d->nl);
    for (int tries = 0; tries < 16; tries++) {   /* bounded: stale answers are skipped */
        ssize_t n = mnl_socket_recvfrom(d->nl, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            tl_result_set(res, errno, "netlink recv");
            return -1;
        }
        int err = tl_destroy_answer(buf, (size_t)n, seq, portid);
        if (err == EPROTO)
            continue;
        if (err) {
            tl_result_set(res, err, "sock_destroy");
            return -1;
        }
        return 0;
    }
    tl_result_set(res, EPROTO, "sock_destroy: no answer from the kernel");
    return -1;
}

void tl_destroyer_free(tl_destroyer *d)
{
    if (!d)
        return;
    if (d->nl)
        mnl_socket_close(d->nl);
    free(d);
}
