/* Unit checks of the reply walker (csrc/diag_parse.c) on hand-built
 * buffers: multi-part, NLM_F_DUMP_INTR, NLMSG_ERROR, stale sequence
 * numbers, truncation, attributes. Prints one line per check: "ok NAME" or
 * "FAIL NAME"; exits 1 on any failure. Run by spec/walk_spec.lua. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/inet_diag.h>
#include <linux/tcp.h>
#include "../../csrc/diag.h"

static _Alignas(8) unsigned char buf[8192];
static size_t used;
static int failures;
static int seen, states[16];
static size_t info_len;

static void reset(void) { memset(buf, 0, sizeof buf); used = 0; seen = 0; info_len = 0; memset(states, 0, sizeof states); }

static struct nlmsghdr *put(uint16_t type, uint16_t flags, uint32_t seq, size_t payload)
{
    struct nlmsghdr *h = (struct nlmsghdr *)(buf + used);
    h->nlmsg_len = (uint32_t)(NLMSG_HDRLEN + payload);
    h->nlmsg_type = type;
    h->nlmsg_flags = flags;
    h->nlmsg_seq = seq;
    h->nlmsg_pid = 77;
    used += NLMSG_ALIGN(h->nlmsg_len);
    return h;
}

static void put_sock(uint32_t seq, uint16_t flags, uint8_t state, int with_info)
{
    size_t payload = sizeof(struct inet_diag_msg) + (with_info ? NLA_HDRLEN + sizeof(struct tcp_info) : 0);
    struct nlmsghdr *h = put(TCPDIAG_GETSOCK, flags | NLM_F_MULTI, seq, payload);
    struct inet_diag_msg *m = NLMSG_DATA(h);
    m->idiag_family = AF_INET;
    m->idiag_state = state;
    m->id.idiag_sport = htons(5000);
    if (with_info) {
        struct nlattr *a = (struct nlattr *)((char *)m + sizeof *m);
        a->nla_len = (uint16_t)(NLA_HDRLEN + sizeof(struct tcp_info));
        a->nla_type = INET_DIAG_INFO;
    }
}

static void count(const tl_sock_rec *r, void *ctx)
{
    (void)ctx;
    seen++;
    states[r->state & 15]++;
    if (r->sport != 5000)
        failures++;
    info_len += r->info_len;
}

static int walk(uint32_t seq, int *intr, tl_result *res)
{
    memset(res, 0, sizeof *res);
    return tl_diag_walk(buf, used, seq, 77, intr, count, NULL, res);
}

static void check(int cond, const char *name)
{
    printf("%s %s\n", cond ? "ok" : "FAIL", name);
    if (!cond)
        failures++;
}

int main(void)
{
    tl_result res;
    int intr;

    reset(); intr = 0;
    put_sock(9, 0, 1, 0); put_sock(9, 0, 10, 1);
    check(walk(9, &intr, &res) == TL_REPLY_MORE && seen == 2, "a part without DONE asks for more");
    check(info_len == sizeof(struct tcp_info), "INET_DIAG_INFO is found with its length");
    reset(); intr = 0;
    put_sock(9, 0, 6, 0); put(NLMSG_DONE, NLM_F_MULTI, 9, 4);
    check(walk(9, &intr, &res) == TL_REPLY_DONE && seen == 1 && states[6] == 1, "DONE ends the reply");

    reset(); intr = 0;
    put_sock(8, 0, 1, 0); put_sock(9, 0, 1, 0); put(NLMSG_DONE, NLM_F_MULTI, 9, 4);
    check(walk(9, &intr, &res) == TL_REPLY_DONE && seen == 1, "stale sequence numbers are skipped");

    reset(); intr = 0;
    put_sock(9, 0, 1, 0); put_sock(9, NLM_F_DUMP_INTR, 1, 0); put_sock(9, 0, 1, 0);
    put(NLMSG_DONE, NLM_F_MULTI, 9, 4);
    check(walk(9, &intr, &res) == TL_REPLY_DONE && intr == 1 && seen == 1,
          "NLM_F_DUMP_INTR marks the dump and stops delivering records");

    reset(); intr = 0;
    struct nlmsghdr *e = put(NLMSG_ERROR, 0, 9, sizeof(struct nlmsgerr));
    ((struct nlmsgerr *)NLMSG_DATA(e))->error = -EINVAL;
    check(walk(9, &intr, &res) == -1 && res.err == EINVAL, "NLMSG_ERROR gives its errno");

    reset(); intr = 0;
    e = put(NLMSG_ERROR, 0, 9, sizeof(struct nlmsgerr));
    ((struct nlmsgerr *)NLMSG_DATA(e))->error = -2147483647 - 1;
    check(walk(9, &intr, &res) == -1 && res.err == EPROTO, "a nonsense error code is EPROTO");

    reset(); intr = 0;
    put_sock(9, 0, 1, 0);
    used -= 8;  /* cut the last message short */
    check(walk(9, &intr, &res) == -1 && res.err == EPROTO && seen == 0, "a truncated message is an error, not a short dump");

    reset(); intr = 0;
    put_sock(9, 0, 1, 0);
    ((struct nlmsghdr *)buf)->nlmsg_len = 0x80000010u;  /* the libmnl int-cast case */
    check(walk(9, &intr, &res) == -1 && res.err == EPROTO, "a 2 GiB length stays inside the buffer");

    reset(); intr = 0;
    put(TCPDIAG_GETSOCK, NLM_F_MULTI, 9, 8);  /* shorter than inet_diag_msg */
    check(walk(9, &intr, &res) == -1 && res.err == EPROTO, "a record shorter than inet_diag_msg is an error");

    reset(); intr = 0;
    put_sock(9, 0, 1, 1);
    struct inet_diag_msg *m = NLMSG_DATA((struct nlmsghdr *)buf);
    ((struct nlattr *)((char *)m + sizeof *m))->nla_len = 60000;  /* attribute longer than the message */
    check(walk(9, &intr, &res) == TL_REPLY_MORE && seen == 1 && info_len == 0, "an attribute past the message is ignored");

    printf("%d failed\n", failures);
    return failures ? 1 : 0;
}
