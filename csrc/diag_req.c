/* Build one sock_diag dump request: states mask, family, port bytecode. */
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <libmnl/libmnl.h>
#include "diag.h"

/* Port filter as inet_diag bytecode: every condition must hold. A failed
 * condition jumps 4 bytes past the end, which the kernel reads as reject. */
static size_t put_bytecode(struct inet_diag_bc_op *ops, const tl_filter *f)
{
    int conds = (f->sport >= 0) + (f->dport >= 0);
    size_t left = (size_t)conds * 2 * sizeof *ops, n = 0;
    int ports[2] = {f->sport, f->dport};
    unsigned char codes[2] = {INET_DIAG_BC_S_EQ, INET_DIAG_BC_D_EQ};
    for (int i = 0; i < 2; i++) {
        if (ports[i] < 0)
            continue;
        ops[n].code = codes[i];
        ops[n].yes = 2 * sizeof *ops;
        ops[n].no = (unsigned short)(left + 4);
        ops[n + 1].code = INET_DIAG_BC_NOP;
        ops[n + 1].yes = 0;
        ops[n + 1].no = (unsigned short)ports[i];
        n += 2;
        left -= 2 * sizeof *ops;
    }
    return n * sizeof *ops;
}

size_t tl_diag_build(void *buf, const tl_filter *f, uint32_t seq)
{
    memset(buf, 0, TL_DIAG_REQ_SIZE);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = seq;
    uint8_t ext = f->info ? 1 << (INET_DIAG_INFO - 1) : 0;
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
    if (f->sport >= 0 || f->dport >= 0) {
        struct inet_diag_bc_op ops[4];
        size_t len = put_bytecode(ops, f);
        mnl_attr_put(nlh, INET_DIAG_REQ_BYTECODE, len, ops);
    }
    return nlh->nlmsg_len;
}
