/* core.each: a streaming walk. `for rec in core.each(filter) do ... end`
 * yields the rows snapshot would return, one per call, read from the
 * backend one buffer at a time: Lua memory stays O(1) in the number of
 * sockets (only the rows the caller keeps stay alive).
 *
 * core.each returns the iterator, nil, nil and the walk itself as the
 * generic for's closing value: the walk owns the backend's state (the
 * netlink socket or the iterator fd and the receive buffer) and its
 * __close and __gc both close it, so the fd is gone when the loop ends,
 * breaks or raises. A complete walk closes it before the loop's last test.
 *
 * The records of one buffer are queued here as the backend hands them out
 * (copied: a backend promises its record's pointers for the callback
 * only); the queue is emptied before the next read, so it holds one
 * buffer's worth at most, whatever the number of sockets. Each row is a
 * lazy row (row.c): a userdata with its own copy of the record, its fields
 * decoded when read, so a row kept past its iteration stays what it was and
 * a loop pays only for the fields it reads. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "records.h"

#define EACH_MT "tcplab.each"

/* A record as queued: its addresses copied (a backend may hand them from
 * its stack: backend.h promises them for the callback only), its tcp_info
 * and congestion name copied into the walk's arena (by offset: the arena
 * may move as it grows). */
typedef struct each_rec {
    tl_sock_rec r;
    uint8_t src[16], dst[16];
    size_t info_off, cong_off;
} each_rec;

typedef struct each_walk {
    tl_dump d;            /* d.state NULL: closed */
    tl_query q;           /* the checked filter (q.netns is NULL once open) */
    each_rec *queue;      /* records of the buffer read last */
    size_t head, n, cap;
    unsigned char *arena; /* their tcp_info and cong bytes */
    size_t used, room;
    int oom;              /* a record could not be queued */
    int ended;            /* the backend said the walk is complete */
    int done;             /* every row yielded, the state closed */
    lua_Integer yielded;
} each_walk;

/* Upvalues of the iterator: the walk, the lazy rows' metatable. */
enum { UV_WALK = 1, UV_ROW_MT = 2 };

static void walk_close(each_walk *w)
{
    tl_dump_close(&w->d);
    free(w->queue);
    w->queue = NULL;
    w->head = w->n = w->cap = 0;
    free(w->arena);
    w->arena = NULL;
    w->used = w->room = 0;
}

static int walk_gc(lua_State *L)
{
    walk_close(luaL_checkudata(L, 1, EACH_MT));
    return 0;
}

static int walk_tostring(lua_State *L)
{
    each_walk *w = luaL_checkudata(L, 1, EACH_MT);
    const char *be = w->d.be ? w->d.be->name : "?";
    if (w->d.state)
        lua_pushfstring(L, "each walk (%s, %I rows yielded)", be, w->yielded);
    else
        lua_pushfstring(L, "each walk (%s, closed after %I rows)", be, w->yielded);
    return 1;
}

/* walk:close(): end the walk early (the for loop's closing value does it). */
static int walk_close_method(lua_State *L)
{
    walk_close(luaL_checkudata(L, 1, EACH_MT));
    return 0;
}

/* Room for len more bytes in the arena: their offset, or (size_t)-1. */
static size_t arena_take(each_walk *w, const void *bytes, size_t len)
{
    if (w->room - w->used < len) {
        size_t room = w->room ? 2 * w->room : 16384;
        while (room - w->used < len)
            room *= 2;
        unsigned char *a = realloc(w->arena, room);
        if (!a)
            return (size_t)-1;
        w->arena = a;
        w->room = room;
    }
    memcpy(w->arena + w->used, bytes, len);
    w->used += len;
    return w->used - len;
}

static void enqueue(const tl_sock_rec *r, void *ctx)
{
    each_walk *w = ctx;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        each_rec *q = realloc(w->queue, cap * sizeof *q);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->queue = q;
        w->cap = cap;
    }
    each_rec *e = &w->queue[w->n];
    size_t alen = r->family == AF_INET ? 4 : 16;
    e->r = *r;
    memcpy(e->src, r->src, alen);
    memcpy(e->dst, r->dst, alen);
    e->info_off = e->cong_off = (size_t)-1;
    if (r->info && (e->info_off = arena_take(w, r->info, r->info_len)) == (size_t)-1)
        w->oom = 1;
    if (r->cong && (e->cong_off = arena_take(w, r->cong, r->cong_len)) == (size_t)-1)
        w->oom = 1;
    if (!w->oom)
        w->n++;
}

/* The queued record at the head, its pointers into the copies. */
static const tl_sock_rec *dequeue(each_walk *w)
{
    each_rec *e = &w->queue[w->head++];
    e->r.src = e->src;
    e->r.dst = e->dst;
    if (e->r.info)
        e->r.info = w->arena + e->info_off;
    if (e->r.cong)
        e->r.cong = (const char *)w->arena + e->cong_off;
    return &e->r;
}

/* Raise naming the step that failed; the walk is closed first. */
static int walk_fail(lua_State *L, each_walk *w, const tl_result *res)
{
    walk_close(w);
    return luaL_error(L, "each: %s: %s", res->what ? res->what : "walk",
                      res->why ? res->why : strerror(res->err));
}

/* The iterator: the next row, or nil once the walk is complete. */
static int each_iter(lua_State *L)
{
    each_walk *w = lua_touserdata(L, lua_upvalueindex(UV_WALK));
    while (w->head == w->n) {
        if (w->done)
            return 0;
        if (w->ended) {
            walk_close(w);
            w->done = 1;
            return 0;
        }
        if (!w->d.state)
            return luaL_error(L, "each: the walk is closed (its loop ended or it was closed)");
        w->head = w->n = w->used = 0;
        tl_result res;
        int r = tl_dump_next(&w->d, &w->q, enqueue, w, &res);
        if (w->oom) {
            tl_result_set(&res, ENOMEM, "each: queue");
            r = -1;
        }
        if (r < 0)
            return walk_fail(L, w, &res);
        if (r == 0)
            w->ended = 1;
    }
    tl_lazy_row_push(L, lua_upvalueindex(UV_ROW_MT), dequeue(w));
    w->yielded++;
    return 1;
}

/* core.each(filter): iterator, nil, nil, walk; or nil, msg, errno when the
 * walk cannot start (no backend for the filter, a bad netns path). */
static int l_each(lua_State *L)
{
    tl_query q;
    tl_query_check(L, 1, "each", &q);
    if (q.columns)
        tl_arg_error(L, 1, "each", "columns: each() yields one row at a time; "
                     "use snapshot{columns = true} for columns");
    lua_settop(L, 1);  /* the filter keeps q.netns alive until the walk is open */
    each_walk *w = lua_newuserdatauv(L, sizeof *w, 0);
    memset(w, 0, sizeof *w);
    luaL_setmetatable(L, EACH_MT);
    tl_result res;
    if (tl_dump_init(&w->d, &q, TL_OP_SNAPSHOT, &res) != 0 || tl_dump_start(&w->d, &q, &res) != 0) {
        walk_close(w);
        return tl_fail_why(L, res.what, res.why, res.err);
    }
    q.netns = NULL;
    w->q = q;
    /* the iterator: walk, the rows' metatable */
    lua_pushvalue(L, 2);
    luaL_getmetatable(L, TL_LAZY_ROW_MT);
    lua_pushcclosure(L, each_iter, UV_ROW_MT);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushvalue(L, 2);
    return 4;
}

void tl_each_register(lua_State *L)
{
    static const luaL_Reg mt[] = {{"__gc", walk_gc}, {"__close", walk_gc},
                                  {"__tostring", walk_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"close", walk_close_method}, {NULL, NULL}};
    luaL_newmetatable(L, EACH_MT);
    luaL_setfuncs(L, mt, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"each", l_each}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
