/* Unit checks of the SOCK_DESTROY request builder and answer reader
 * (csrc/destroy.c) on hand-built buffers, and 100000 random answers read
 * without a crash (run under ASan/valgrind by the suites that do). Prints
 * "ok NAME" / "FAIL NAME" per check. Run by spec/destroy_unit_spec.lua. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include "../../csrc/destroy.h"

static int failures;
static void check(int cond, const char *name)
{
    printf("%s %s\n", cond ? "ok" : "FAIL", name);
    failures += !cond;
}

static _Alignas(8) unsigned char buf[512];

static size_t put_err(unsigned char *at, uint32_t seq, uint32_t pid, int error, uint16_t type)
{
    struct nlmsghdr *h = (struct nlmsghdr *)at;
    memset(h, 0, NLMSG_SPACE(sizeof(struct nlmsgerr)));
    h->nlmsg_len = NLMSG_LENGTH(sizeof(struct nlmsgerr));
    h->nlmsg_type = type;
    h->nlmsg_seq = seq;
    h->nlmsg_pid = pid;
    ((struct nlmsgerr *)NLMSG_DATA(h))->error = error;
    return NLMSG_ALIGN(h->nlmsg_len);
}

int main(void)
{
    tl_destroy_id id;
    memset(&id, 0, sizeof id);
    id.family = AF_INET;
    id.sport = 8080;
    id.dport = 41234;
    inet_pton(AF_INET, "127.0.0.1", id.src);
    inet_pton(AF_INET, "127.0.0.2", id.dst);
    id.cookie = 0x1122334455667788ull;

    size_t len = tl_destroy_build(buf, sizeof buf, &id, 42);
    const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
    const struct inet_diag_req_v2 *r = NLMSG_DATA(h);
    check(len == NLMSG_LENGTH(sizeof *r) && h->nlmsg_len == len, "an inet request is a header and an inet_diag_req_v2");
    check(h->nlmsg_type == SOCK_DESTROY && h->nlmsg_flags == (NLM_F_REQUEST | NLM_F_ACK) && h->nlmsg_seq == 42,
          "type SOCK_DESTROY, NLM_F_REQUEST|NLM_F_ACK, the sequence number");
    check(r->sdiag_family == AF_INET && r->sdiag_protocol == IPPROTO_TCP, "family and protocol TCP");
    check(ntohs(r->id.idiag_sport) == 8080 && ntohs(r->id.idiag_dport) == 41234, "ports in network order");
    check(memcmp(r->id.idiag_src, id.src, 4) == 0 && memcmp(r->id.idiag_dst, id.dst, 4) == 0 &&
          r->id.idiag_src[1] == 0 && r->id.idiag_dst[3] == 0, "v4 addresses in the first word, the rest zero");
    check(r->id.idiag_cookie[0] == 0x55667788u && r->id.idiag_cookie[1] == 0x11223344u,
          "cookie: low half first (as the dump gives it)");

    id.family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:127.0.0.1", id.src);
    len = tl_destroy_build(buf, sizeof buf, &id, 43);
    check(len > 0 && r->sdiag_family == AF_INET6 && memcmp(r->id.idiag_src, id.src, 16) == 0, "inet6: all 16 bytes");
    id.family = AF_UNIX;
    check(tl_destroy_build(buf, sizeof buf, &id, 44) == 0, "another family builds nothing");
    id.family = AF_INET;
    check(tl_destroy_build(buf, TL_DESTROY_REQ_SIZE - 1, &id, 45) == 0, "a buffer too small builds nothing");

    memset(buf, 0, sizeof buf);
    put_err(buf, 7, 99, 0, NLMSG_ERROR);
    check(tl_destroy_answer(buf, sizeof buf, 7, 99) == 0, "an ack answers 0");
    put_err(buf, 7, 99, -ENOENT, NLMSG_ERROR);
    check(tl_destroy_answer(buf, NLMSG_SPACE(sizeof(struct nlmsgerr)), 7, 99) == ENOENT, "an error answers its errno");
    size_t n = put_err(buf, 6, 99, -EPERM, NLMSG_ERROR);
    n += put_err(buf + n, 7, 99, -EOPNOTSUPP, NLMSG_ERROR);
    check(tl_destroy_answer(buf, n, 7, 99) == EOPNOTSUPP, "an answer to another request is skipped");
    put_err(buf, 7, 99, 5, NLMSG_ERROR);
    check(tl_destroy_answer(buf, NLMSG_SPACE(sizeof(struct nlmsgerr)), 7, 99) == EPROTO, "a positive error is EPROTO");
    put_err(buf, 7, 99, 0, NLMSG_DONE);
    check(tl_destroy_answer(buf, NLMSG_SPACE(sizeof(struct nlmsgerr)), 7, 99) == EPROTO, "not NLMSG_ERROR is EPROTO");
    put_err(buf, 7, 99, 0, NLMSG_ERROR);
    check(tl_destroy_answer(buf, NLMSG_HDRLEN + 2, 7, 99) == EPROTO, "a truncated answer is EPROTO");
    ((struct nlmsghdr *)buf)->nlmsg_len = 0x7ffffff0;
    check(tl_destroy_answer(buf, NLMSG_SPACE(sizeof(struct nlmsgerr)), 7, 99) == EPROTO, "a 2 GiB length stays inside the buffer");

    unsigned seed = 12345;
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        size_t k = (size_t)(rand_r(&seed) % (int)sizeof buf);
        for (size_t j = 0; j < k; j++)
            buf[j] = (unsigned char)rand_r(&seed);
        if (i % 3 == 0 && k >= NLMSG_HDRLEN)
            ((struct nlmsghdr *)buf)->nlmsg_len = (uint32_t)(rand_r(&seed) % (int)(k + 1));
        int e = tl_destroy_answer(buf, k, 0, 0);
        bad += e < 0 || e > 4095;
    }
    check(bad == 0, "100000 random answers read as an errno 0..4095");
    printf("%d failed\n", failures);
    return failures != 0;
}
