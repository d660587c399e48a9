/* The per-key tally of counts{by = ...} (bykey.h). */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "bykey.h"

static int is_port(const tl_bykey *t)
{
    return t->by == TL_BY_SPORT || t->by == TL_BY_DPORT;
}

static uint32_t by_hash(const tl_bykey *t, uint8_t family, uint16_t port, const uint8_t *addr)
{
    if (is_port(t))
        return port * 2654435761u;
    uint32_t h = 2166136261u ^ family;
    for (int i = 0; i < (family == AF_INET ? 4 : 16); i++)
        h = (h ^ addr[i]) * 16777619u;
    return h ^ (h >> 15);
}

static tl_bykey_slot *by_find(tl_bykey *t, uint8_t family, uint16_t port, const uint8_t *addr)
{
    int isport = is_port(t);
    size_t alen = family == AF_INET ? 4 : 16;
    for (size_t i = by_hash(t, family, port, addr) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        tl_bykey_slot *s = &t->slots[i];
        if (!s->used)
            return s;
        if (isport ? s->port == port
                   : s->family == family && memcmp(s->addr, addr, alen) == 0)
            return s;
    }
}

/* Every key moves to its slot in the larger table: probing sequences
 * depend on cap, so a copy in place would lose keys. */
static int by_resize(tl_bykey *t, size_t cap)
{
    tl_bykey_slot *old = t->slots;
    size_t oldcap = t->cap;
    tl_bykey_slot *fresh = calloc(cap, sizeof *fresh);
    if (!fresh)
        return -1;
    t->slots = fresh;
    t->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].used)
            *by_find(t, old[i].family, old[i].port, old[i].addr) = old[i];
    free(old);
    return 0;
}

int tl_bykey_init(tl_bykey *t, int by, size_t cap)
{
    memset(t, 0, sizeof *t);
    t->by = by;
    return by_resize(t, cap);
}

void tl_bykey_free(tl_bykey *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->used = 0;
}

void tl_bykey_add(const tl_sock_rec *r, void *ctx)
{
    tl_bykey *t = ctx;
    if (t->oom || r->state >= TL_BYKEY_STATES)
        return;
    uint16_t port = t->by == TL_BY_SPORT ? r->sport : t->by == TL_BY_DPORT ? r->dport : 0;
    const uint8_t *addr = t->by == TL_BY_SRC ? r->src : t->by == TL_BY_DST ? r->dst : NULL;
    uint8_t family = addr ? r->family : 0;
    tl_bykey_slot *s = by_find(t, family, port, addr);
    if (!s->used) {
        if (2 * (t->used + 1) > t->cap) {
            if (by_resize(t, 2 * t->cap) != 0) {
                t->oom = 1;
                return;
            }
            s = by_find(t, family, port, addr);
        }
        s->used = 1;
        s->family = family;
        s->port = port;
        if (addr)
            memcpy(s->addr, addr, family == AF_INET ? 4 : 16);
        t->used++;
    }
    s->n[r->state]++;
}

void tl_bykey_restart(void *ctx)
{
    tl_bykey *t = ctx;
    memset(t->slots, 0, t->cap * sizeof *t->slots);
    t->used = 0;
}
