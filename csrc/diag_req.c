/* Build one sock_diag dump request: states mask, family, bytecode for
 * ports, port ranges and address prefixes. */
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <libmnl/libmnl.h>
#include "diag.h"

/* The filter as inet_diag bytecode: a sequence of conditions that must all
 * hold. Each is one block: a port comparison (the op, then an op whose `no`
 * holds the port) or a host condition (the op, struct inet_diag_hostcond,
 * the address bytes). A failed condition jumps 4 bytes past the end, which
 * the kernel reads as reject (inet_diag_bc_audit allows exactly that). */
enum { MAX_BC = 160 };

typedef struct bc {
    uint8_t buf[MAX_BC];
    size_t len;
    size_t starts[8];  /* offset of each condition's first op */
    int n;
} bc;

static void put_port(bc *b, unsigned char code, int port)
{
    struct inet_diag_bc_op ops[2] = {{code, 2 * sizeof ops[0], 0}, {INET_DIAG_BC_NOP, 0, (unsigned short)port}};
    b->starts[b->n++] = b->len;
    memcpy(b->buf + b->len, ops, sizeof ops);
    b->len += sizeof ops;
}

static void put_host(bc *b, unsigned char code, const tl_prefix *p)
{
    size_t alen = p->family == AF_INET ? 4 : 16;
    struct inet_diag_hostcond cond;
    memset(&cond, 0, sizeof cond);  /* its padding goes to the kernel too */
    cond.family = p->family;
    cond.prefix_len = p->bits;
    cond.port = -1;
    struct inet_diag_bc_op op = {code, (unsigned char)(sizeof op + sizeof cond + alen), 0};
    b->starts[b->n++] = b->len;
    memcpy(b->buf + b->len, &op, sizeof op);
    memcpy(b->buf + b->len + sizeof op, &cond, sizeof cond);
    memcpy(b->buf + b->len + sizeof op + sizeof cond, p->addr, alen);
    b->len += sizeof op + sizeof cond + alen;
}

/* Fill in every condition's `no`: past the end, relative to itself. */
static void finish(bc *b)
{
    for (int i = 0; i < b->n; i++) {
        struct inet_diag_bc_op op;
        memcpy(&op, b->buf + b->starts[i], sizeof op);
        op.no = (unsigned short)(b->len - b->starts[i] + 4);
        memcpy(b->buf + b->starts[i], &op, sizeof op);
    }
}

static void build_bytecode(bc *b, const tl_filter *f)
{
    b->len = 0;
    b->n = 0;
    if (f->sport >= 0)
        put_port(b, INET_DIAG_BC_S_EQ, f->sport);
    if (f->dport >= 0)
        put_port(b, INET_DIAG_BC_D_EQ, f->dport);
    if (f->sport_hi > 0) {
        put_port(b, INET_DIAG_BC_S_GE, f->sport_lo);
        put_port(b, INET_DIAG_BC_S_LE, f->sport_hi);
    }
    if (f->dport_hi > 0) {
        put_port(b, INET_DIAG_BC_D_GE, f->dport_lo);
        put_port(b, INET_DIAG_BC_D_LE, f->dport_hi);
    }
    if (f->src.family)
        put_host(b, INET_DIAG_BC_S_COND, &f->src);
    if (f->dst.family)
        put_host(b, INET_DIAG_BC_D_COND, &f->dst);
    finish(b);
}

size_t tl_diag_build(void *buf, const tl_filter *f, uint32_t seq)
{
    memset(buf, 0, TL_DIAG_REQ_SIZE);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = seq;
    uint8_t ext = f->info ? 1 << (INET_DIAG_INFO - 1) | 1 << (INET_DIAG_CONG - 1) : 0;
    if (f->family == AF_UNSPEC) {
        /* The legacy request walks the hash tables once for v4 and v6. */
        nlh->nlmsg_type = TCPDIAG_GETSOCK;
        struct inet_diag_req *req = mnl_nlmsg_put_extra_header(nlh, sizeof *req);
        req->idiag_family = AF_INET;
        req->idiag_ext = ext;
        req->idiag_states = f->states;
    } else {
        nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
        struct inet_diag_req_v2 *req = mnl_nlmsg_put_extra_header(nlh, sizeof *req);
        req->sdiag_family = (uint8_t)f->family;
        req->sdiag_protocol = IPPROTO_TCP;
        req->idiag_ext = ext;
        req->idiag_states = f->states;
    }
    bc b;
    build_bytecode(&b, f);
    if (b.len)
        mnl_attr_put(nlh, INET_DIAG_REQ_BYTECODE, b.len, b.buf);
    return nlh->nlmsg_len;
}
