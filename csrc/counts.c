/* core.counts: a backend's records -> per-state counts, or per key (a port
 * or an address) with by = ..., tallied without Lua in bykey.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include "records.h"

#define TL_BYKEY_MT "tcplab.counts_by"

typedef struct count_ctx {
    int64_t by_state[256];
} count_ctx;

static void count_record(const tl_sock_rec *r, void *ctx)
{
    ((count_ctx *)ctx)->by_state[r->state]++;
}

static void count_restart(void *ctx)
{
    memset(ctx, 0, sizeof(count_ctx));
}

/* The by-key table, held by a userdata: an error while pushing leaves it to __gc. */
static int bykey_gc(lua_State *L)
{
    tl_bykey_free(luaL_checkudata(L, 1, TL_BYKEY_MT));
    return 0;
}

/* counts{by = ...}: { [key] = { STATE = n, ... } } */
static int counts_by(lua_State *L, const tl_query *q)
{
    tl_result res;
    tl_dump *h = tl_dump_open(L, q, TL_OP_COUNTS_BY, &res);
    if (!h)
        return tl_fail_why(L, res.what, res.why, res.err);
    tl_bykey *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, TL_BYKEY_MT);
    if (tl_bykey_init(t, q->by, 256) != 0)
        return tl_fail_why(L, "counts", NULL, ENOMEM);
    tl_dump_run(h, q, tl_bykey_add, tl_bykey_restart, t, &res);
    if (res.err)
        return tl_fail_why(L, res.what, res.why, res.err);
    if (t->oom)
        return tl_fail_why(L, "counts", NULL, ENOMEM);
    luaL_checkstack(L, TL_STATE_MAX + 8, "counts");
    int name0 = lua_gettop(L) + 1;
    for (int i = 0; i < TL_STATE_MAX; i++)
        lua_pushstring(L, tl_state_names[i]);
    lua_createtable(L, 0, (int)t->used);
    for (size_t i = 0; i < t->cap; i++) {
        const tl_bykey_slot *s = &t->slots[i];
        if (!s->used)
            continue;
        if (q->by == TL_BY_SPORT || q->by == TL_BY_DPORT) {
            lua_pushinteger(L, s->port);
        } else {
            char buf[INET6_ADDRSTRLEN];
            lua_pushlstring(L, buf, tl_format_addr(s->family, s->addr, buf, sizeof buf));
        }
        lua_newtable(L);
        for (int st = 0; st < TL_BYKEY_STATES; st++) {
            if (!s->n[st])
                continue;
            tl_push_name(L, name0, TL_STATE_MAX, (unsigned)st);
            lua_pushinteger(L, s->n[st]);
            lua_rawset(L, -3);
        }
        lua_rawset(L, -3);
    }
    return 1;
}

/* core.counts(filter): { STATE = n, ... } */
static int l_counts(lua_State *L)
{
    tl_query q;
    tl_query_check(L, 1, "counts", &q);
    lua_settop(L, 1);   /* the filter stays: q.netns points into it */
    q.f.info = 0;
    if (q.by != TL_BY_NONE)
        return counts_by(L, &q);
    tl_result res;
    tl_dump *h = tl_dump_open(L, &q, TL_OP_COUNTS, &res);
    if (!h)
        return tl_fail_why(L, res.what, res.why, res.err);
    count_ctx c;
    memset(&c, 0, sizeof c);
    if (tl_dump_count(h, &q, c.by_state, &res) != 0)  /* not counted at the source */
        tl_dump_run(h, &q, count_record, count_restart, &c, &res);
    if (res.err)
        return tl_fail_why(L, res.what, res.why, res.err);
    int nstates = 0;
    for (int i = 0; i < 256; i++)
        nstates += c.by_state[i] != 0;
    lua_createtable(L, 0, nstates);
    for (int i = 0; i < 256; i++) {
        if (!c.by_state[i])
            continue;
        if (i < TL_STATE_MAX)
            lua_pushstring(L, tl_state_names[i]);
        else
            lua_pushinteger(L, i);
        lua_pushinteger(L, c.by_state[i]);
        lua_rawset(L, -3);
    }
    return 1;
}

void tl_counts_register(lua_State *L)
{
    static const luaL_Reg bykey_mt[] = {{"__gc", bykey_gc}, {NULL, NULL}};
    luaL_newmetatable(L, TL_BYKEY_MT);
    luaL_setfuncs(L, bykey_mt, 0);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"counts", l_counts}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
