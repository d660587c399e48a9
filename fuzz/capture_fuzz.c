/* libFuzzer target for the packet decoder: any bytes, as a frame (lo's
 * Ethernet header first) and as a bare IP packet. The decoder must not read
 * past the input and what it returns must be consistent with it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "../csrc/capture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const tl_seg *s)
{
    char flags[9];
    if (s->family != AF_INET && s->family != AF_INET6)
        abort();
    if (s->len > 65535 || s->wscale > 255 || s->mss > 65535)
        abort();
    tl_capture_flags(s->flags, flags);
    if (strlen(flags) > 8)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* copies of exactly `size` bytes, so ASan sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    tl_seg s;
    if (tl_capture_parse_frame(copy, size, &s) == 0)
        check(&s);
    if (tl_capture_parse_ip(copy, size, &s) == 0)
        check(&s);
    free(copy);
    return 0;
}
