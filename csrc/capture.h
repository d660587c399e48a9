/* One captured TCP segment: bytes of a frame -> a plain C record. No Lua,
 * no I/O: capture_parse.c is what fuzz/capture_fuzz.c feeds. */
#ifndef TCPLAB_CAPTURE_H
#define TCPLAB_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

/* TCP header flag bits, in the order of the letters "FSRPAUEW". */
enum { TL_TCP_FIN = 0x01, TL_TCP_SYN = 0x02, TL_TCP_RST = 0x04, TL_TCP_PSH = 0x08,
       TL_TCP_ACK = 0x10, TL_TCP_URG = 0x20, TL_TCP_ECE = 0x40, TL_TCP_CWR = 0x80 };

typedef struct tl_seg {
    int family;              /* AF_INET or AF_INET6 */
    uint8_t src[16], dst[16];  /* network order; 4 bytes used for AF_INET */
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;           /* TL_TCP_* */
    uint16_t win;            /* as on the wire (not scaled) */
    uint32_t len;            /* payload bytes, from the IP length */
    int mss;                 /* -1: no MSS option */
    int wscale;              /* -1: no window scale option */
    int sack_ok;             /* SACK-permitted option present */
    int has_ts;              /* timestamps option present */
    uint32_t tsval, tsecr;
} tl_seg;

/* An IP packet (v4 or v6 header first) of `len` captured bytes. Returns 0
 * and fills *seg, or -1 when the bytes are not a whole TCP header (any
 * input is safe: truncated, garbage, lying lengths). */
int tl_capture_parse_ip(const void *pkt, size_t len, tl_seg *seg);
/* The same behind a 14-byte Ethernet header (what AF_PACKET reads on lo). */
int tl_capture_parse_frame(const void *frame, size_t len, tl_seg *seg);
/* Flag letters in FSRPAUEW order into buf (>= 9 bytes): SYN|ACK -> "SA". */
void tl_capture_flags(uint8_t flags, char *buf);

#endif
