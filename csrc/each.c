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
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "records.h"

#define EACH_MT "tcplab.each"

/* A record as queued: its addresses copied (a backend may hand them from
 * its stack: backend.h promises them for the callback only), its tcp_info
 * and congestion name copied into the queue's arena (by offset: the arena
 * may move as it grows). */
typedef struct each_rec {
    tl_sock_rec r;
    uint8_t src[16], dst[16];
    size_t info_off, cong_off;
} each_rec;

/* The records of one buffer. */
typedef struct each_queue {
    each_rec *recs;
    size_t n, cap;
    unsigned char *arena; /* their tcp_info and cong bytes */
    size_t used, room;
    int oom;              /* a record could not be queued */
} each_queue;

/* Prefetch (netlink): once a walk needs a second buffer, a reader thread
 * reads buffer k+1 into `back` while Lua yields the rows of buffer k from
 * `front`, so the kernel's work on the dump overlaps the loop body's. The
 * thread touches only the backend's state (no Lua) and `back`; the mutex
 * hands `back` over. The BPF backend stays in the calling thread: its
 * filter is a global of the loaded program that a BPF walk in the loop
 * body rewrites (bpf_backend.c sets it again before each read). */
typedef struct each_walk {
    tl_dump d;            /* d.state NULL: closed */
    tl_query q;           /* the checked filter (q.netns is NULL once open) */
    each_queue front;     /* the rows being yielded */
    each_queue back;      /* the next buffer's (the reader thread fills it) */
    size_t head;          /* next row of front */
    int ended;            /* the backend said the walk is complete */
    int done;             /* every row yielded, the state closed */
    lua_Integer yielded;
    int threaded;         /* the reader thread runs (joined by walk_close) */
    int back_full, stop;  /* under mu */
    int back_r;           /* tl_dump_next's answer for back (valid when back_full) */
    tl_result back_res;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} each_walk;

/* core._each_prefetch(on): test and bench hook, on by default. */
static int prefetch = 1;
/* A read that brought fewer rows than this (a dump of a few listeners
 * arrives in two or three small parts) does not start the thread: its
 * start costs more than such a walk. */
enum { PREFETCH_MIN_ROWS = 64 };

/* Upvalues of the iterator: the walk, the lazy rows' metatable. */
enum { UV_WALK = 1, UV_ROW_MT = 2 };

static void queue_free(each_queue *qu)
{
    free(qu->recs);
    free(qu->arena);
    memset(qu, 0, sizeof *qu);
}

static void queue_reset(each_queue *qu)
{
    qu->n = qu->used = 0;
    qu->oom = 0;
}

static void stop_reader(each_walk *w)
{
    if (!w->threaded)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);   /* at most one buffer's read away */
    w->threaded = 0;
}

static void walk_close(each_walk *w)
{
    stop_reader(w);
    tl_dump_close(&w->d);
    queue_free(&w->front);
    queue_free(&w->back);
    w->head = 0;
}

static int walk_gc(lua_State *L)
{
    each_walk *w = luaL_checkudata(L, 1, EACH_MT);
    walk_close(w);
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
static size_t arena_take(each_queue *w, const void *bytes, size_t len)
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
    each_queue *w = ctx;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        each_rec *q = realloc(w->recs, cap * sizeof *q);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->recs = q;
        w->cap = cap;
    }
    each_rec *e = &w->recs[w->n];
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
    each_rec *e = &w->front.recs[w->head++];
    e->r.src = e->src;
    e->r.dst = e->dst;
    if (e->r.info)
        e->r.info = w->front.arena + e->info_off;
    if (e->r.cong)
        e->r.cong = (const char *)w->front.arena + e->cong_off;
    return &e->r;
}

/* The reader thread: one buffer into back whenever back is free, until the
 * walk ends, fails or is stopped. */
static void *reader(void *arg)
{
    each_walk *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->back_full && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop)
            break;
        pthread_mutex_unlock(&w->mu);
        queue_reset(&w->back);
        int r = tl_dump_next(&w->d, &w->q, enqueue, &w->back, &w->back_res);
        pthread_mutex_lock(&w->mu);
        w->back_r = r;
        w->back_full = 1;
        pthread_cond_broadcast(&w->cv);
        if (r <= 0)
            break;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Start the reader for a walk that needs more than one full buffer. Signals are
 * blocked in it, so a Ctrl-C reaches the thread that runs Lua. Where no
 * thread can start, the walk goes on reading in the calling thread. */
static void start_reader(each_walk *w)
{
    if (w->d.be != &tl_backend_netlink || !prefetch)
        return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    w->back_full = w->stop = 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 16);
    w->threaded = pthread_create(&w->thread, &attr, reader, w) == 0;
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* The next buffer's records into front: 1 while more follow, 0 at the
 * end, -1 with *res filled. */
static int fill(each_walk *w, tl_result *res)
{
    w->head = 0;
    if (!w->threaded) {
        queue_reset(&w->front);
        int r = tl_dump_next(&w->d, &w->q, enqueue, &w->front, res);
        if (r > 0 && !w->front.oom && w->front.n >= PREFETCH_MIN_ROWS)
            start_reader(w);
        return r;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->back_full)
        pthread_cond_wait(&w->cv, &w->mu);
    each_queue t = w->front;
    w->front = w->back;
    w->back = t;
    int r = w->back_r;
    if (r < 0)
        *res = w->back_res;   /* the thread has ended: back_res stays */
    w->back_full = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (r < 0 && res->what == w->back_res.what && w->back_res.what == w->back_res.whatbuf)
        res->what = res->whatbuf;
    return r;
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
    while (w->head == w->front.n) {
        if (w->done)
            return 0;
        if (w->ended) {
            walk_close(w);
            w->done = 1;
            return 0;
        }
        if (!w->d.state)
            return luaL_error(L, "each: the walk is closed (its loop ended or it was closed)");
        tl_result res;
        int r = fill(w, &res);
        if (w->front.oom) {
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
    pthread_mutex_init(&w->mu, NULL);   /* no resources on Linux: nothing to destroy */
    pthread_cond_init(&w->cv, NULL);
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

/* core._each_prefetch(on): whether later netlink walks read ahead in a
 * thread (the bench compares both); returns what it was. Test only. */
static int l_each_prefetch(lua_State *L)
{
    int was = prefetch;
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    prefetch = lua_toboolean(L, 1);
    lua_pushboolean(L, was);
    return 1;
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
    static const luaL_Reg fns[] = {{"each", l_each}, {"_each_prefetch", l_each_prefetch}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
