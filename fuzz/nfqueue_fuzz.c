/* libFuzzer target for the NFQUEUE message walk: any bytes, as one datagram
 * read from the queue's netlink socket. The walk must end, must not read
 * past the input, and every packet it reports must lie inside it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "../csrc/nfqueue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct span {
    const uint8_t *lo, *hi;
    int n;
} span;

static void on_packet(const tl_nfq_pkt *p, void *arg)
{
    span *s = arg;
    s->n++;
    if (p->payload && (p->payload < s->lo || p->payload + p->plen > s->hi))
        abort();
    if (!p->payload && p->plen != 0)
        abort();
    if (p->is_tcp && ((p->seg.family != AF_INET && p->seg.family != AF_INET6) || p->seg.len > 65535))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly `size` bytes, so ASan sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    span s = {copy, copy + size, 0};
    int errors = 0, last = 0;
    int n = tl_nfq_parse(copy, size, on_packet, &s, &errors, &last);
    if (n != s.n || errors < 0 || (errors > 0 && last <= 0))
        abort();
    free(copy);
    return 0;
}
