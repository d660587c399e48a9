/* Bytes of one captured frame -> tl_seg. No Lua, no I/O; every read is
 * bounds-checked against the captured length, so any input is safe. */
#include <string.h>
#include <sys/socket.h>
#include "capture.h"

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* TCP options: kind, length, value; a bad length ends the walk (what was
 * read so far stays). */
static void parse_options(const uint8_t *p, size_t n, tl_seg *seg)
{
    size_t i = 0;
    while (i < n) {
        uint8_t kind = p[i];
        if (kind == 0)          /* end of options */
            break;
        if (kind == 1) {        /* no-op */
            i++;
            continue;
        }
        if (i + 1 >= n || p[i + 1] < 2 || i + p[i + 1] > n)
            break;
        uint8_t olen = p[i + 1];
        if (kind == 2 && olen == 4)
            seg->mss = be16(p + i + 2);
        else if (kind == 3 && olen == 3)
            seg->wscale = p[i + 2];
        else if (kind == 4 && olen == 2)
            seg->sack_ok = 1;
        else if (kind == 8 && olen == 10) {
            seg->has_ts = 1;
            seg->tsval = be32(p + i + 2);
            seg->tsecr = be32(p + i + 6);
        }
        i += olen;
    }
}

/* The TCP header at p (caplen bytes captured), payload_len from IP. */
static int parse_tcp(const uint8_t *p, size_t caplen, size_t seglen, tl_seg *seg)
{
    if (caplen < 20 || seglen < 20)
        return -1;
    size_t doff = (size_t)(p[12] >> 4) * 4;
    if (doff < 20 || doff > caplen || doff > seglen)
        return -1;
    seg->sport = be16(p);
    seg->dport = be16(p + 2);
    seg->seq = be32(p + 4);
    seg->ack = be32(p + 8);
    seg->flags = p[13];
    seg->win = be16(p + 14);
    seg->len = (uint32_t)(seglen - doff);
    parse_options(p + 20, doff - 20, seg);
    return 0;
}

int tl_capture_parse_ip(const void *pkt, size_t len, tl_seg *seg)
{
    const uint8_t *p = pkt;
    memset(seg, 0, sizeof *seg);
    seg->mss = seg->wscale = -1;
    if (len < 1)
        return -1;
    if (p[0] >> 4 == 4) {
        if (len < 20)
            return -1;
        size_t ihl = (size_t)(p[0] & 0xf) * 4, total = be16(p + 2);
        if (ihl < 20 || ihl > len || total < ihl || p[9] != 6)
            return -1;
        if (be16(p + 6) & 0x1fff)   /* a later fragment: no TCP header */
            return -1;
        seg->family = AF_INET;
        memcpy(seg->src, p + 12, 4);
        memcpy(seg->dst, p + 16, 4);
        return parse_tcp(p + ihl, len - ihl, total - ihl, seg);
    }
    if (p[0] >> 4 == 6) {
        if (len < 40)
            return -1;
        size_t off = 40, plen = be16(p + 4), end = 40 + plen;
        uint8_t next = p[6];
        seg->family = AF_INET6;
        memcpy(seg->src, p + 8, 16);
        memcpy(seg->dst, p + 24, 16);
        /* hop-by-hop, routing, destination options: skip; anything else
         * (a fragment, ESP, ...) is not a TCP header we can read */
        for (int hops = 0; next != 6; hops++) {
            if ((next != 0 && next != 43 && next != 60) || hops > 8 || off + 8 > len || off + 8 > end)
                return -1;
            next = p[off];
            off += ((size_t)p[off + 1] + 1) * 8;
        }
        if (off > len || off > end)
            return -1;
        return parse_tcp(p + off, len - off, end - off, seg);
    }
    return -1;
}

int tl_capture_parse_frame(const void *frame, size_t len, tl_seg *seg)
{
    const uint8_t *p = frame;
    if (len < 14) {
        memset(seg, 0, sizeof *seg);
        return -1;
    }
    uint16_t type = be16(p + 12);
    int r = tl_capture_parse_ip(p + 14, len - 14, seg);
    if (r == 0 && ((type == 0x0800 && seg->family != AF_INET) ||
                   (type == 0x86dd && seg->family != AF_INET6) ||
                   (type != 0x0800 && type != 0x86dd)))
        return -1;
    return r;
}

void tl_capture_flags(uint8_t flags, char *buf)
{
    static const char letters[] = "FSRPAUEW";
    size_t n = 0;
    for (int i = 0; i < 8; i++)
        if (flags & (1u << i))
            buf[n++] = letters[i];
    buf[n] = '\0';
}
