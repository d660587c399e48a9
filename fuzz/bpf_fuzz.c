/* libFuzzer target: arbitrary bytes as one read of the BPF iterator's
 * output, through the parser the module uses (csrc/bpf_parse.c). The last
 * byte picks a counting or a snapshot walk; every byte a record points at
 * is read, so ASan sees any out-of-bounds pointer. The bytes also go
 * through tl_state_decode as one transition recorder event, and through
 * tl_sockstat_tcp as the text of /proc/net/sockstat and sockstat6. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../csrc/bpf.h"

static volatile unsigned sink;

static void touch(const tl_sock_rec *r, void *ctx)
{
    (void)ctx;
    char buf[INET6_ADDRSTRLEN];
    size_t alen = r->family == AF_INET ? 4 : 16;
    inet_ntop(r->family, r->src, buf, sizeof buf);
    inet_ntop(r->family, r->dst, buf, sizeof buf);
    unsigned acc = r->state + r->sport + r->dport + r->inode + (unsigned)r->cookie + r->timer;
    for (size_t i = 0; i < alen; i++)
        acc += r->src[i] + r->dst[i];
    sink += acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    int64_t tally[TL_BPF_NSTATES] = {0};
    int tallied = 0;
    tl_result res;
    memset(&res, 0, sizeof res);
    int counting = size > 0 && (data[size - 1] & 1);
    long used = tl_bpf_walk(buf, size, touch, NULL, counting ? tally : NULL, &tallied, &res);
    if (used > (long)size || (used >= 0 && used % (long)tl_bpf_rec_size() != 0))
        abort();
    /* the same bytes as one ring buffer record of the transition recorder */
    tl_state_event ev;
    if (tl_state_decode(buf, size, &ev) == 0)
        sink += (unsigned)strlen(ev.src) + (unsigned)strlen(ev.dst) + (unsigned)strlen(ev.from) +
                (unsigned)strlen(ev.to) + (unsigned)strlen(ev.family) + ev.sport + ev.dport +
                (ev.kernel_to ? (unsigned)strlen(ev.kernel_to) : 0) + (ev.why ? (unsigned)strlen(ev.why) : 0) +
                ev.cpu + ev.seq + (unsigned)ev.netns_cookie;
    /* a lifetime's end: its path (1..16 states) and the owner's comm are all readable strings */
    if (tl_state_decode(buf, size, &ev) == 0 && ev.ends) {
        if (ev.npath < 1 || ev.npath > 16 || strlen(ev.comm) > 16)
            abort();
        for (unsigned i = 0; i < ev.npath; i++)
            sink += (unsigned)strlen(ev.path[i]);
    }
    /* a TIME_WAIT told for the kernel's CLOSE only ever follows FIN_WAIT1, FIN_WAIT2 or CLOSING */
    if (tl_state_decode(buf, size, &ev) == 0 && ev.kernel_to &&
        (strcmp(ev.to, "TIME_WAIT") != 0 ||
         (strcmp(ev.from, "FIN_WAIT1") != 0 && strcmp(ev.from, "FIN_WAIT2") != 0 && strcmp(ev.from, "CLOSING") != 0)))
        abort();
    /* and as the text of /proc/net/sockstat, its second half as sockstat6 */
    long socks = tl_sockstat_tcp(buf, size / 2, (const char *)buf + size / 2, size - size / 2);
    if (socks < -1)
        abort();
    free(buf);
    return 0;
}
