/* tcplab: SOCK_DESTROY (ss -K) requests. No Lua: destroy.c includes
 * backend.h and this header only; destroy_lua.c is the glue. */
#ifndef TCPLAB_DESTROY_H
#define TCPLAB_DESTROY_H

#include "backend.h"

/* One socket to close, named as the dump named it. */
typedef struct tl_destroy_id {
    uint8_t family;           /* AF_INET or AF_INET6 */
    uint16_t sport, dport;    /* host order */
    uint8_t src[16], dst[16]; /* 4 (AF_INET) or 16 bytes used */
    uint64_t cookie;          /* the kernel refuses (ESTALE) a socket with another cookie */
} tl_destroy_id;

/* Build the request into buf (size bytes, >= TL_DESTROY_REQ_SIZE); returns
 * its length, or 0 when buf is too small or the family is neither inet nor
 * inet6. Reads nothing but *id: fuzz-safe. */
enum { TL_DESTROY_REQ_SIZE = 128 };
size_t tl_destroy_build(void *buf, size_t size, const tl_destroy_id *id, uint32_t seq);

/* Read the kernel's answer to request seq from buf[0..n): 0 when it
 * acknowledged, else the errno it answered with (EPROTO: not an answer). */
int tl_destroy_answer(const void *buf, size_t n, uint32_t seq, uint32_t portid);

/* A sock_diag socket in the namespace at netns (NULL: our own). */
typedef struct tl_destroyer tl_destroyer;
tl_destroyer *tl_destroyer_open(const char *netns, tl_result *res);
/* Close one socket: 0, or -1 with res->err the kernel's errno. */
int tl_destroyer_close_one(tl_destroyer *d, const tl_destroy_id *id, tl_result *res);
void tl_destroyer_free(tl_destroyer *d);

#endif
