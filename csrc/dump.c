/* A dump: which backend answers a tl_query ("auto" picks per filter), its
 * state held by a userdata while the dump runs (an error raised while
 * pushing, out of memory, leaves it to __gc), port = P applied to the
 * records it yields; core.backend and the test-only hooks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "records.h"

#define TL_HANDLE_MT "tcplab.backend_state"

static void close_handle(tl_dump *h)
{
    if (h->state)
        h->be->close(h->state);
    h->state = NULL;
}

static int handle_gc(lua_State *L)
{
    close_handle(luaL_checkudata(L, 1, TL_HANDLE_MT));
    return 0;
}

/* The last dump, for the test hooks (_dump_stats, _dump_backend). */
static struct {
    const char *backend;
    unsigned restarts, reopens;
} last = {"", 0, 0};

/* What a backend must be able to do for the filter. */
static unsigned query_caps(const tl_query *q)
{
    unsigned need = 0;
    if (q->f.sport_hi > 0 || q->f.dport_hi > 0)
        need |= TL_CAP_RANGE_FILTER;
    if (q->f.src.family || q->f.dst.family)
        need |= TL_CAP_ADDR_FILTER;
    return need;
}

/* The first field of the filter that `be` cannot answer, or NULL: tcp_info
 * only where it has it, every field set (neither nil nor false) one it
 * lists; port is applied here, after any backend. */
static const char *unsupported(const tl_backend *be, const tl_query *q)
{
    if (q->f.info && !(be->caps & TL_CAP_INFO))
        return "info";
    if (q->netns && !(be->caps & TL_CAP_NETNS_PATH))
        return "netns";
    unsigned need = query_caps(q), missing = need & ~be->caps;
    if (missing & TL_CAP_RANGE_FILTER)
        return q->f.sport_hi > 0 ? "sport" : "dport";   /* a port range */
    if (missing & TL_CAP_ADDR_FILTER)
        return q->f.src.family ? "src" : "dst";          /* an address prefix */
    if (!be->fields)
        return NULL;
    for (int f = 0; f < TL_FF_COUNT; f++) {
        if (!(q->set & (1u << f)) || f == TL_FF_PORT)
            continue;
        int known = 0;
        for (int i = 0; be->fields[i] && !known; i++)
            known = strcmp(tl_filter_fields[f], be->fields[i]) == 0;
        if (!known)
            return tl_filter_fields[f];
    }
    return NULL;
}

/* "auto": the first backend that answers this operation (TL_OP_*) for this
 * filter and is usable here; the last one (netlink, complete) when none
 * before it is. */
static const tl_backend *pick_backend(const tl_query *q, int op)
{
    int i = 0;
    for (; tl_backends[i + 1]; i++) {
        tl_result r;
        tl_result_clear(&r);
        const tl_backend *be = tl_backends[i];
        if (!unsupported(be, q) && !(be->declines && be->declines(op, &q->f, q->netns)) && be->probe(&r) == 0)
            break;
    }
    return tl_backends[i];
}

tl_dump *tl_dump_open(lua_State *L, const tl_query *q, int op, tl_result *res)
{
    tl_dump *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->be = NULL;
    h->state = NULL;
    luaL_setmetatable(L, TL_HANDLE_MT);
    return tl_dump_init(h, q, op, res) == 0 ? h : NULL;
}

int tl_dump_init(tl_dump *h, const tl_query *q, int op, tl_result *res)
{
    const tl_backend *be = q->be ? q->be : pick_backend(q, op);
    h->be = be;
    h->state = NULL;
    tl_result_clear(res);
    last.backend = be->name;
    const char *field = unsupported(be, q);
    if (field) {
        tl_result_set(res, ENOTSUP, "%s: cannot answer filter field '%s'", be->name, field);
        if (strcmp(field, "netns") == 0) {
            res->what = be->name;
            res->why = "cannot dump another namespace by path";
        }
        return -1;
    }
    h->state = be->open(q->netns, res);
    return h->state ? 0 : -1;
}

/* port = P (or a range): a socket whose local or remote port is in it, like
 * ss '( sport = :P or dport = :P )'. Applied to the backend's records here,
 * so every backend answers it alike. */
typedef struct port_gate {
    const tl_query *q;
    tl_on_record cb;
    tl_on_restart restart;
    void *ctx;
} port_gate;

static int query_has_port(const tl_query *q)
{
    return q->port >= 0 || q->port_hi > 0;
}

static int port_in(const tl_query *q, unsigned port)
{
    if (q->port >= 0)
        return port == (unsigned)q->port;
    return port >= (unsigned)q->port_lo && port <= (unsigned)q->port_hi;
}

static void gate_record(const tl_sock_rec *r, void *ctx)
{
    port_gate *g = ctx;
    if (port_in(g->q, r->sport) || port_in(g->q, r->dport))
        g->cb(r, g->ctx);
}

static void gate_restart(void *ctx)
{
    port_gate *g = ctx;
    g->restart(g->ctx);
}

void tl_dump_run(tl_dump *h, const tl_query *q, tl_on_record cb, tl_on_restart restart, void *ctx,
                 tl_result *res)
{
    port_gate g = {q, cb, restart, ctx};
    if (query_has_port(q))
        h->be->dump(h->state, &q->f, gate_record, gate_restart, &g, res);
    else
        h->be->dump(h->state, &q->f, cb, restart, ctx, res);
    close_handle(h);
    last.restarts = res->restarts;
    last.reopens = res->reopens;
}

void tl_dump_close(tl_dump *h)
{
    close_handle(h);
}

int tl_dump_start(tl_dump *h, const tl_query *q, tl_result *res)
{
    tl_result_clear(res);
    if (!h->state || !h->be->start) {
        tl_result_set(res, ENOTSUP, "%s: cannot stream a walk", h->be ? h->be->name : "?");
        return -1;
    }
    return h->be->start(h->state, &q->f, res);
}

int tl_dump_next(tl_dump *h, const tl_query *q, tl_on_record cb, void *ctx, tl_result *res)
{
    port_gate g = {q, cb, NULL, ctx};
    if (query_has_port(q))
        return h->be->next(h->state, gate_record, &g, res);
    return h->be->next(h->state, cb, ctx, res);
}

int tl_dump_count(tl_dump *h, const tl_query *q, int64_t by_state[256], tl_result *res)
{
    if (!h->be->count || query_has_port(q))
        return -1;
    h->be->count(h->state, &q->f, by_state, res);
    close_handle(h);
    last.restarts = res->restarts;
    last.reopens = res->reopens;
    return 0;
}


/* ---- which backend ---- */

/* core.backend([name]): the name of the backend that answers a filter
 * naming `name` ("auto" by default), or nil when it is not usable here;
 * and { name = true | "why not", ... } for every backend of this build. */
static int l_backend(lua_State *L)
{
    const char *name = luaL_optstring(L, 1, "auto");
    const tl_backend *want = tl_backend_find(name);
    if (!want)
        tl_arg_error(L, 1, "backend", "one of %s expected, got %s", tl_push_backend_names(L),
                     tl_push_show(L, 1));
    lua_settop(L, 1);
    lua_pushnil(L);       /* 2: the answer */
    lua_newtable(L);      /* 3: availability */
    for (int i = 0; tl_backends[i]; i++) {
        const tl_backend *be = tl_backends[i];
        tl_result res;
        tl_result_clear(&res);
        if (be->probe(&res) == 0) {
            lua_pushboolean(L, 1);
            if (be == want || (lua_isnil(L, 2) && strcmp(name, "auto") == 0)) {
                lua_pushstring(L, be->name);
                lua_replace(L, 2);
            }
        } else {
            lua_pushfstring(L, "%s: %s", res.what, res.why ? res.why : strerror(res.err));
        }
        lua_setfield(L, 3, be->name);
    }
    return 2;
}


/* ---- test-only fault injection ---- */

static unsigned check_faults(lua_State *L, const char *field)
{
    lua_getfield(L, 1, field);
    int isint = 0;
    lua_Integer n = lua_isnil(L, -1) ? (isint = 1, 0) : lua_tointegerx(L, -1, &isint);
    if (!isint || n < 0 || n > 1000)
        luaL_argerror(L, 1, lua_pushfstring(L, "%s: count 0..1000 expected", field));
    lua_pop(L, 1);
    return (unsigned)n;
}

/* core._inject_dump_faults{interrupt = N, enobufs = N}: the next N dump
 * attempts see their source change under them (sock_diag: the first buffer
 * is flagged NLM_F_DUMP_INTR); the next N reads lose records (ENOBUFS).
 * Replaces what was pending ({} clears); each fault is counted down as it
 * fires. Every backend that can is told. Test only. */
static int l_inject_dump_faults(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "interrupt") != 0 && strcmp(k, "enobufs") != 0)
            luaL_argerror(L, 1, lua_pushfstring(L, "unknown fault '%s' (valid: interrupt enobufs)", k));
        lua_pop(L, 1);
    }
    unsigned interrupt = check_faults(L, "interrupt");
    unsigned enobufs = check_faults(L, "enobufs");
    for (int i = 0; tl_backends[i]; i++)
        if (tl_backends[i]->inject)
            tl_backends[i]->inject(interrupt, enobufs);
    return 0;
}

/* core._dump_backend(): the name of the backend that answered (or was
 * asked) last. Test only. */
static int l_dump_backend(lua_State *L)
{
    lua_pushstring(L, last.backend);
    return 1;
}

/* core._dump_stats(): {restarts = n, reopens = n} of the last dump. Test only. */
static int l_dump_stats(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, last.restarts);
    lua_setfield(L, -2, "restarts");
    lua_pushinteger(L, last.reopens);
    lua_setfield(L, -2, "reopens");
    return 1;
}


void tl_dump_register(lua_State *L)
{
    static const luaL_Reg handle_mt[] = {{"__gc", handle_gc}, {"__close", handle_gc}, {NULL, NULL}};
    luaL_newmetatable(L, TL_HANDLE_MT);
    luaL_setfuncs(L, handle_mt, 0);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"backend", l_backend}, {"_inject_dump_faults", l_inject_dump_faults},
        {"_dump_stats", l_dump_stats}, {"_dump_backend", l_dump_backend}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
