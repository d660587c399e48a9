/* libFuzzer target: arbitrary bytes as one received buffer of a sock_diag
 * dump reply, through the same walker and parser the module uses. Every
 * byte a record points at is read, so ASan sees any out-of-bounds pointer. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netlink.h>
#include "../csrc/diag.h"

static volatile unsigned sink;

static void touch(const tl_sock_rec *r, void *ctx)
{
    (void)ctx;
    char buf[INET6_ADDRSTRLEN];
    size_t alen = r->family == AF_INET ? 4 : 16;
    inet_ntop(r->family, r->src, buf, sizeof buf);
    inet_ntop(r->family, r->dst, buf, sizeof buf);
    unsigned acc = r->state + r->sport + r->dport + r->inode + (unsigned)r->cookie;
    for (size_t i = 0; i < alen; i++)
        acc += r->src[i] + r->dst[i];
    const unsigned char *info = r->info;
    for (size_t i = 0; i < r->info_len; i++)
        acc += info[i];
    sink += acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* netlink buffers are aligned; a copy keeps UBSan on real bugs */
    void *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    uint32_t seq = 0, portid = 0;
    if (size >= sizeof(struct nlmsghdr)) {  /* answer to whatever the first header says */
        const struct nlmsghdr *h = buf;
        seq = h->nlmsg_seq;
        portid = h->nlmsg_pid;
    }
    int interrupted = 0;
    tl_result res;
    memset(&res, 0, sizeof res);
    tl_diag_walk(buf, size, seq, portid, &interrupted, touch, NULL, &res);
    free(buf);
    return 0;
}
