/* nfnetlink_queue messages: requests built into a buffer, replies parsed
 * into plain C records. No Lua, no I/O: nfqueue_msg.c is what
 * fuzz/nfqueue_fuzz.c feeds. */
#ifndef TCPLAB_NFQUEUE_H
#define TCPLAB_NFQUEUE_H

#include <stddef.h>
#include <stdint.h>
#include "capture.h"

/* One queued packet, as the kernel handed it to us. */
typedef struct tl_nfq_pkt {
    uint32_t id;             /* the kernel's packet id: the verdict names it */
    int hook;                /* NF_INET_* the packet was queued from */
    uint32_t mark;
    const uint8_t *payload;  /* the IP packet (points into the buffer) */
    size_t plen;
    int is_tcp;              /* seg is filled (the payload parsed as TCP) */
    tl_seg seg;
} tl_nfq_pkt;

/* Called per packet message, in buffer order. */
typedef void (*tl_nfq_on_packet)(const tl_nfq_pkt *pkt, void *ctx);

/* Walk one datagram read from the queue's socket: calls on_packet for each
 * packet message; returns how many it saw. An NLMSG_ERROR in the datagram
 * (a verdict the kernel refused) is counted in *errors, its errno kept in
 * *last_err. Any bytes are safe: messages that lie about their length end
 * the walk. */
int tl_nfq_parse(void *buf, size_t len, tl_nfq_on_packet on_packet, void *ctx,
                 int *errors, int *last_err);

/* Requests, each into buf (>= TL_NFQ_MSG_SIZE); return the message length. */
enum { TL_NFQ_MSG_SIZE = 256 };
size_t tl_nfq_put_bind(void *buf, uint16_t queue, uint32_t seq);     /* NFQNL_CFG_CMD_BIND */
size_t tl_nfq_put_params(void *buf, uint16_t queue, uint32_t range, uint32_t seq);  /* copy packet */
size_t tl_nfq_put_fail_open(void *buf, uint16_t queue, uint32_t seq); /* full queue: accept */
/* verdict NF_ACCEPT / NF_DROP on one id, or (batch) on every id <= id. */
size_t tl_nfq_put_verdict(void *buf, uint16_t queue, uint32_t id, uint32_t verdict, int batch);

#endif
