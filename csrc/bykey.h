/* tcplab: counts per key (a port or an address), states per key, in an
 * open-addressing table filled during a dump. No Lua here (spec/
 * backend_spec.lua compiles this file against a lua.h that is an #error):
 * a failed allocation in the callback sets oom and the rest is skipped. */
#ifndef TCPLAB_BYKEY_H
#define TCPLAB_BYKEY_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"

enum { TL_BY_NONE, TL_BY_SPORT, TL_BY_DPORT, TL_BY_SRC, TL_BY_DST };
enum { TL_BYKEY_STATES = 16 };  /* kernel states are 1..12 */

typedef struct tl_bykey_slot {
    uint8_t used, family;     /* family 0: a port key */
    uint16_t port;
    uint8_t addr[16];
    uint32_t n[TL_BYKEY_STATES];
} tl_bykey_slot;

typedef struct tl_bykey {
    tl_bykey_slot *slots;     /* cap slots, cap a power of two; NULL once freed */
    size_t cap, used;
    int by;                   /* TL_BY_SPORT .. TL_BY_DST */
    int oom;                  /* a resize failed: counts are incomplete */
} tl_bykey;

/* An empty table for key `by` with room for cap keys (a power of two): 0,
 * or -1 (no memory). */
int tl_bykey_init(tl_bykey *t, int by, size_t cap);
void tl_bykey_free(tl_bykey *t);
/* A tl_on_record: count r under its key, growing (and rehashing) the
 * table past half full. */
void tl_bykey_add(const tl_sock_rec *r, void *t);
/* A tl_on_restart: forget every key. */
void tl_bykey_restart(void *t);

#endif
