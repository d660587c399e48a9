/* core.snapshot: a backend's records -> one table per socket, or one array
 * per field (columns = true); the owners joined after (owners_glue.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "records.h"

static const char *const timer_names[] = {"off", "on", "keepalive", "timewait", "persist"};
enum { N_TIMERS = 5 };

typedef struct snap_ctx {
    tl_rowkit k;      /* the row builder's names and address cache */
    lua_State *L;
    int result;       /* stack index of the array */
    int col0;         /* columnar mode: stack index of the first column, else 0 */
    int ncols;
    lua_Integer n;
} snap_ctx;

/* The name at position i of a run of names starting at `first`: stack
 * slots go up, upvalues (pseudo-indices) go down (tl_rowkit.dir). */
static inline void push_nth(const tl_rowkit *k, int first, unsigned n, unsigned i)
{
    if (i < n)
        lua_pushvalue(k->L, first + k->dir * (int)i);
    else
        lua_pushinteger(k->L, i);
}

/* Address strings, formatted once per distinct address of a dump: a
 * direct-mapped cache whose strings live in a Lua table (k->addr_tbl). Hash
 * order interleaves hosts, so one "last address" would miss on most rows. */
static void push_addr(tl_rowkit *k, uint8_t family, const uint8_t *raw)
{
    lua_State *L = k->L;
    size_t len = family == AF_INET ? 4 : 16;
    uint32_t h = 2166136261u;   /* FNV-1a over the address bytes */
    for (size_t i = 0; i < len; i++)
        h = (h ^ raw[i]) * 16777619u;
    unsigned slot = (h ^ (h >> 16)) % TL_ROW_ADDR_SLOTS;
    tl_row_addr *e = &k->addrs[slot];
    if (e->family == family && memcmp(e->raw, raw, len) == 0) {
        lua_rawgeti(L, k->addr_tbl, slot + 1);
        return;
    }
    char buf[INET6_ADDRSTRLEN];
    lua_pushlstring(L, buf, tl_format_addr(family, raw, buf, sizeof buf));
    lua_pushvalue(L, -1);
    lua_rawseti(L, k->addr_tbl, slot + 1);
    e->family = family;
    memcpy(e->raw, raw, len);
}


/* THE field table of a record, shared by the row and the column builder:
 * X(id, key, present, push). `push` pushes the value of record r (one Lua
 * value); `present` says whether r has the field (a row leaves it out, a
 * column holds false). Expanded in place by each builder rather than
 * walked at run time, so sharing it adds no dispatch per field: the code
 * compiled is the hand-written sequence of before. */
#define TL_FIELDS(X)                                                                     \
    X(STATE, "state", 1, push_nth(k, k->state0, TL_STATE_MAX, r->state))                 \
    X(FAMILY, "family", 1, push_nth(k, k->fam0, 2, r->family == AF_INET6))              \
    X(SRC, "src", 1, push_addr(k, r->family, r->src))                                    \
    X(SPORT, "sport", 1, lua_pushinteger(L, r->sport))                                   \
    X(DST, "dst", 1, push_addr(k, r->family, r->dst))                                    \
    X(DPORT, "dport", 1, lua_pushinteger(L, r->dport))                                   \
    X(RQUEUE, "rqueue", 1, lua_pushinteger(L, r->rqueue))                                \
    X(WQUEUE, "wqueue", 1, lua_pushinteger(L, r->wqueue))                                \
    X(UID, "uid", 1, lua_pushinteger(L, r->uid))                                         \
    X(INODE, "inode", 1, lua_pushinteger(L, r->inode))                                   \
    X(COOKIE, "cookie", 1, lua_pushinteger(L, (lua_Integer)r->cookie))                   \
    X(TIMER, "timer", 1, push_nth(k, k->timer0, N_TIMERS, r->timer))                       \
    X(EXPIRES, "expires_ms", 1, lua_pushinteger(L, r->expires_ms))                       \
    X(RETRANS, "retrans", 1, lua_pushinteger(L, r->retrans))                             \
    X(INFO, "info", r->info != NULL, tl_push_tcp_info(L, r->info, r->info_len))         \
    X(CONG, "cong", r->cong != NULL, lua_pushlstring(L, r->cong, r->cong_len))

#define FIELD_ID(id, key, present, push) K_##id,
enum { TL_FIELDS(FIELD_ID) K_COUNT };
#define FIELD_KEY(id, key, present, push) key,
static const char *const keys[K_COUNT] = {TL_FIELDS(FIELD_KEY)};

/* A row: key, value, rawset; no metamethods, no string hashing (the keys
 * are pre-interned on the stack). */
#define ROW_FIELD(id, key, present, push)                \
    if (present) {                                       \
        lua_pushvalue(L, k->key0 + k->dir * K_##id);     \
        push;                                            \
        lua_rawset(L, -3);                               \
    }

void tl_row_push(tl_rowkit *k, const tl_sock_rec *r)
{
    lua_State *L = k->L;
    lua_createtable(L, 0, K_COUNT);
    TL_FIELDS(ROW_FIELD)
    if (k->mt) {
        lua_pushvalue(L, k->mt);
        lua_setmetatable(L, -2);
    }
}

/* One field of a row, by its position in the field table (a lazy row's
 * __index, row.c): pushes the value and returns 1, or pushes nil and
 * returns 0 when r has no such field. */
#define ONE_FIELD(id, key, present, push) \
    case K_##id:                          \
        if (present) {                    \
            push;                         \
            return 1;                     \
        }                                 \
        break;

int tl_row_push_field(tl_rowkit *k, const tl_sock_rec *r, int id)
{
    lua_State *L = k->L;
    switch (id) {
        TL_FIELDS(ONE_FIELD)
    default:
        break;
    }
    lua_pushnil(L);
    return 0;
}

int tl_row_nkeys(void)
{
    return K_COUNT;
}

int tl_row_push_names(lua_State *L)
{
    luaL_checkstack(L, K_COUNT + TL_STATE_MAX + N_TIMERS + 2 + 4, "row names");
    for (int i = 0; i < K_COUNT; i++)
        lua_pushstring(L, keys[i]);
    for (int i = 0; i < TL_STATE_MAX; i++)
        lua_pushstring(L, tl_state_names[i]);
    for (int i = 0; i < N_TIMERS; i++)
        lua_pushstring(L, timer_names[i]);
    lua_pushliteral(L, "inet");
    lua_pushliteral(L, "inet6");
    return K_COUNT + TL_STATE_MAX + N_TIMERS + 2;
}

void tl_row_kit(tl_rowkit *k, lua_State *L, int first, int dir, int addr_tbl)
{
    memset(k, 0, sizeof *k);
    k->L = L;
    k->dir = dir;
    k->key0 = first;
    k->state0 = first + dir * K_COUNT;
    k->timer0 = k->state0 + dir * TL_STATE_MAX;
    k->fam0 = k->timer0 + dir * N_TIMERS;
    k->addr_tbl = addr_tbl;
}

static void snap_record(const tl_sock_rec *r, void *ctx)
{
    snap_ctx *c = ctx;
    tl_row_push(&c->k, r);
    lua_rawseti(c->L, c->result, ++c->n);
}

/* Columnar: one array per field, row i of every column is socket i. No
 * per-socket table, no key hashing: rawseti into each array part. info and cong are
 * a column only when asked for. */
#define COL_FIELD(id, key, present, push)                 \
    if (K_##id < K_INFO || c->ncols > K_##id) {           \
        if (present) {                                    \
            push;                                         \
        } else {                                          \
            lua_pushboolean(L, 0);                        \
        }                                                 \
        lua_rawseti(L, c->col0 + K_##id, c->n);           \
    }

static void col_record(const tl_sock_rec *r, void *ctx)
{
    snap_ctx *c = ctx;
    tl_rowkit *k = &c->k;
    lua_State *L = c->L;
    c->n++;
    TL_FIELDS(COL_FIELD)
}

static void new_columns(snap_ctx *c)
{
    for (int k = 0; k < c->ncols; k++) {
        lua_newtable(c->L);
        lua_replace(c->L, c->col0 + k);
    }
}

static void snap_restart(void *ctx)
{
    snap_ctx *c = ctx;
    if (c->col0) {
        new_columns(c);
    } else {
        lua_newtable(c->L);
        lua_replace(c->L, c->result);
    }
    c->n = 0;
}


/* The body of core.snapshot, run under lua_pcall by l_snapshot with the
 * filter (kept alive: q->netns points into it) and the checked query (a
 * light userdata). */
static int snapshot_body(lua_State *L)
{
    const tl_query *q = lua_touserdata(L, 2);
    tl_result res;
    tl_dump *h = tl_dump_open(L, q, TL_OP_SNAPSHOT, &res);
    if (!h)
        return tl_fail_why(L, res.what, res.why, res.err);
    luaL_checkstack(L, 2 * K_COUNT + TL_STATE_MAX + N_TIMERS + 8, "snapshot");
    snap_ctx c;
    memset(&c, 0, sizeof c);
    c.L = L;
    lua_newtable(L);
    c.result = lua_gettop(L);
    tl_row_push_names(L);
    lua_createtable(L, TL_ROW_ADDR_SLOTS, 0);
    tl_row_kit(&c.k, L, c.result + 1, 1, lua_gettop(L));
    luaL_getmetatable(L, TL_ROW_MT);   /* rows print readably (row.c) */
    c.k.mt = lua_gettop(L);
    if (q->columns) {
        c.ncols = q->f.info ? K_COUNT : K_INFO;
        c.col0 = lua_gettop(L) + 1;
        lua_settop(L, c.col0 + c.ncols - 1);
        new_columns(&c);
    }

    tl_dump_run(h, q, q->columns ? col_record : snap_record, snap_restart, &c, &res);
    if (res.err)
        return tl_fail_why(L, res.what, res.why, res.err);
    if (q->columns) {
        for (int k = 0; k < c.ncols; k++) {
            lua_pushvalue(L, c.col0 + k);
            lua_setfield(L, c.result, keys[k]);
        }
        lua_pushinteger(L, c.n);
        lua_setfield(L, c.result, "n");
    }
    if (q->owners) {
        tl_snap_view v = {c.result, q->columns, c.k.key0 + K_INODE, c.n};
        if (tl_snapshot_owners(L, &v) != 0)
            return tl_fail_why(L, "/proc", NULL, errno);
    }
    lua_pushvalue(L, c.result);
    return 1;
}

/* core.snapshot(filter)
 * Every table built stays alive until we return: an incremental collection
 * meanwhile would only mark them again and again, so the collector pauses.
 * The body runs under lua_pcall so that an error (out of memory) cannot
 * leave it paused; the backend's state is then closed by its __gc. */
static int l_snapshot(lua_State *L)
{
    tl_query q;
    tl_query_check(L, 1, "snapshot", &q);
    lua_settop(L, 1);
    int was_running = lua_gc(L, LUA_GCISRUNNING);
    lua_gc(L, LUA_GCSTOP);
    lua_pushcfunction(L, snapshot_body);
    lua_insert(L, 1);
    lua_pushlightuserdata(L, &q);
    int status = lua_pcall(L, 2, LUA_MULTRET, 0);
    if (was_running)
        lua_gc(L, LUA_GCRESTART);
    if (status != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}


void tl_snapshot_register(lua_State *L)
{
    static const luaL_Reg fns[] = {{"snapshot", l_snapshot}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
