/* nfnetlink_queue requests and replies (see nfqueue.h). No Lua, no I/O;
 * every read is checked against the datagram's length. */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libmnl/libmnl.h>
#include "nfqueue.h"

static struct nlmsghdr *put_header(void *buf, uint16_t queue, int type, uint16_t flags, uint32_t seq)
{
    memset(buf, 0, TL_NFQ_MSG_SIZE);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (uint16_t)((NFNL_SUBSYS_QUEUE << 8) | type);
    nlh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
    nlh->nlmsg_seq = seq;
    struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof *nfg);
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(queue);
    return nlh;
}

size_t tl_nfq_put_bind(void *buf, uint16_t queue, uint32_t seq)
{
    struct nlmsghdr *nlh = put_header(buf, queue, NFQNL_MSG_CONFIG, NLM_F_ACK, seq);
    struct nfqnl_msg_config_cmd cmd = {.command = NFQNL_CFG_CMD_BIND, .pf = 0};
    mnl_attr_put(nlh, NFQA_CFG_CMD, sizeof cmd, &cmd);
    return nlh->nlmsg_len;
}

size_t tl_nfq_put_params(void *buf, uint16_t queue, uint32_t range, uint32_t seq)
{
    struct nlmsghdr *nlh = put_header(buf, queue, NFQNL_MSG_CONFIG, NLM_F_ACK, seq);
    struct nfqnl_msg_config_params p = {.copy_range = htonl(range), .copy_mode = NFQNL_COPY_PACKET};
    mnl_attr_put(nlh, NFQA_CFG_PARAMS, sizeof p, &p);
    return nlh->nlmsg_len;
}

size_t tl_nfq_put_fail_open(void *buf, uint16_t queue, uint32_t seq)
{
    struct nlmsghdr *nlh = put_header(buf, queue, NFQNL_MSG_CONFIG, NLM_F_ACK, seq);
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_FAIL_OPEN));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN));
    return nlh->nlmsg_len;
}

size_t tl_nfq_put_verdict(void *buf, uint16_t queue, uint32_t id, uint32_t verdict, int batch)
{
    struct nlmsghdr *nlh = put_header(buf, queue, batch ? NFQNL_MSG_VERDICT_BATCH : NFQNL_MSG_VERDICT, 0, 0);
    struct nfqnl_msg_verdict_hdr vh = {.verdict = htonl(verdict), .id = htonl(id)};
    mnl_attr_put(nlh, NFQA_VERDICT_HDR, sizeof vh, &vh);
    return nlh->nlmsg_len;
}

/* The attributes of one packet message (after its nfgenmsg). */
static int parse_packet(const struct nlmsghdr *nlh, tl_nfq_pkt *pkt)
{
    size_t hdr = mnl_nlmsg_size(sizeof(struct nfgenmsg));
    if (nlh->nlmsg_len < hdr)
        return -1;
    memset(pkt, 0, sizeof *pkt);
    int have_hdr = 0;
    const char *p = (const char *)nlh + hdr, *end = (const char *)nlh + nlh->nlmsg_len;
    while (end - p >= (ptrdiff_t)sizeof(struct nlattr)) {
        const struct nlattr *a = (const struct nlattr *)(const void *)p;
        if (a->nla_len < sizeof(struct nlattr) || a->nla_len > end - p)
            break;
        const uint8_t *v = (const uint8_t *)a + MNL_ATTR_HDRLEN;
        size_t vlen = a->nla_len - MNL_ATTR_HDRLEN;
        switch (a->nla_type & NLA_TYPE_MASK) {
        case NFQA_PACKET_HDR:
            if (vlen >= sizeof(struct nfqnl_msg_packet_hdr)) {
                struct nfqnl_msg_packet_hdr ph;
                memcpy(&ph, v, sizeof ph);
                pkt->id = ntohl(ph.packet_id);
                pkt->hook = ph.hook;
                have_hdr = 1;
            }
            break;
        case NFQA_MARK:
            if (vlen >= 4) {
                uint32_t m;
                memcpy(&m, v, 4);
                pkt->mark = ntohl(m);
            }
            break;
        case NFQA_PAYLOAD:
            pkt->payload = v;
            pkt->plen = vlen;
            break;
        default:
            break;
        }
        p += MNL_ALIGN(a->nla_len);
    }
    if (!have_hdr)
        return -1;
    if (pkt->payload)
        pkt->is_tcp = tl_capture_parse_ip(pkt->payload, pkt->plen, &pkt->seg) == 0;
    return 0;
}

int tl_nfq_parse(void *buf, size_t len, tl_nfq_on_packet on_packet, void *ctx,
                 int *errors, int *last_err)
{
    /* not mnl_nlmsg_ok/next: they compare (int)nlmsg_len, so a length of
     * 0xffffffff passes as -1 and the walk never ends */
    int n = 0;
    unsigned char *p = buf;
    size_t left = len;
    while (left >= sizeof(struct nlmsghdr)) {
        struct nlmsghdr *nlh = (struct nlmsghdr *)(void *)p;
        size_t mlen = nlh->nlmsg_len;
        if (mlen < sizeof(struct nlmsghdr) || mlen > left)
            break;
        if (nlh->nlmsg_type == NLMSG_ERROR) {
            if (mlen >= mnl_nlmsg_size(sizeof(struct nlmsgerr))) {
                const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
                if (e->error != 0) {
                    (*errors)++;
                    *last_err = e->error < 0 && e->error > -4096 ? -e->error : EPROTO;
                }
            }
        } else if (nlh->nlmsg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) {
            tl_nfq_pkt pkt;
            if (parse_packet(nlh, &pkt) == 0) {
                on_packet(&pkt, ctx);
                n++;
            }
        }
        size_t step = MNL_ALIGN(mlen);
        if (step >= left)
            break;
        p += step;
        left -= step;
    }
    return n;
}
