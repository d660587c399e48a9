/* The BPF transition recorder: core.bpf_trace{ ports = {...}, netns = path
 * | "all", buffer_kb = n }
 * loads bpf/state_tp.bpf.c (a tp_btf program on sock/inet_sock_set_state),
 * configured for one network namespace (its inode; "all": every one) and up
 * to 64 ports (none: every port), and
 * attaches it; the userdata owns the skeleton (program, link, ring buffer
 * map) and the ring buffer reader, and one close path releases them all
 * (:close(), __close, __gc). :poll(timeout) returns the events that have
 * arrived, waiting up to timeout seconds for the first; :lost() counts
 * the events the ring buffer had no room for and those the kernel skipped.
 *
 * Each recorder loads its own copy: the filter is read-only data the
 * verifier sees, and two recorders never share a ring buffer.
 *
 * Records are decoded by tl_state_decode (bpf_parse.c: no Lua, no libbpf).
 *
 * Built without TL_HAVE_BPF, core.bpf_trace returns nil and the reason. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "tcplab.h"

#ifndef TL_BPF_WHY
#define TL_BPF_WHY "built without BPF"
#endif

#define TL_BPF_TRACE "tcplab.bpf_trace"

#include <stdint.h>
#include "bpf.h"

#ifdef TL_HAVE_BPF
#include <unistd.h>
#include <poll.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/types.h>
#include "bpf/state_ev.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#include "state_tp.skel.h"
#pragma GCC diagnostic pop

typedef struct tl_bpf_trace {
    struct state_tp *skel;
    struct ring_buffer *rb;
    tl_state_event *evs;   /* what one consume collected */
    size_t n, cap;
    uint64_t bad;          /* records that were not one */
    int oom;
} tl_bpf_trace;

static void trace_release(tl_bpf_trace *t)
{
    if (t->rb)
        ring_buffer__free(t->rb);
    t->rb = NULL;
    if (t->skel)
        state_tp__destroy(t->skel);
    t->skel = NULL;
    free(t->evs);
    t->evs = NULL;
    t->n = t->cap = 0;
}

static int on_event(void *ctx, void *data, size_t size)
{
    tl_bpf_trace *t = ctx;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        tl_state_event *evs = realloc(t->evs, cap * sizeof *evs);
        if (!evs) {
            t->oom = 1;
            return -ENOMEM;
        }
        t->evs = evs;
        t->cap = cap;
    }
    if (tl_state_decode(data, size, &t->evs[t->n]) == 0)
        t->n++;
    else
        t->bad++;
    return 0;
}

static tl_bpf_trace *check_trace(lua_State *L)
{
    tl_bpf_trace *t = luaL_checkudata(L, 1, TL_BPF_TRACE);
    if (!t->skel)
        luaL_error(L, "bpf trace: closed");
    return t;
}

static int fail(lua_State *L, tl_bpf_trace *t, const char *what, int err)
{
    trace_release(t);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

/* core.bpf_trace{ ports = {p, ...}, netns = path | "all", buffer_kb = n }: a
 * recorder, or nil, why, errno. Bad fields raise, naming the field. */
static int l_bpf_trace(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct tl_state_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    lua_getfield(L, 1, "ports");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
            return luaL_error(L, "bpf_trace: ports: table expected, got %s", luaL_typename(L, -1));
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        if (n > TL_STATE_MAX_PORTS)
            return luaL_error(L, "bpf_trace: ports: at most %d ports, got %d", TL_STATE_MAX_PORTS, (int)n);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            lua_Integer p = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
            if (p < 1 || p > 65535)
                return luaL_error(L, "bpf_trace: ports[%d]: port 1..65535 expected, got %s", (int)i,
                                  tl_push_show(L, -1));
            cfg.ports[cfg.nports++] = (uint16_t)p;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "netns");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "bpf_trace: netns: a path or \"all\" expected, got %s", luaL_typename(L, -1));
    const char *path = lua_isnil(L, -1) ? "/proc/self/ns/net" : lua_tostring(L, -1);
    if (strcmp(path, "all") != 0) {
        /* a network namespace, or why not (a FIFO, a file, another kind of namespace) */
        tl_result res;
        tl_result_clear(&res);
        int nsfd = tl_netns_open(path, &res);
        struct stat st;
        if (nsfd < 0)
            return tl_fail_why(L, res.what, res.why, res.err);
        int ok = fstat(nsfd, &st) == 0;
        int err = errno;
        close(nsfd);
        if (!ok) {
            lua_pushnil(L);
            lua_pushfstring(L, "%s: %s", path, strerror(err));
            lua_pushinteger(L, err);
            return 3;
        }
        cfg.netns = (uint32_t)st.st_ino;   /* 0 (every namespace) is no inode */
    }
    lua_pop(L, 1);
    /* the ring buffer: buffer_kb KiB (1024), rounded up to a power of two, at least a page */
    lua_getfield(L, 1, "buffer_kb");
    if (!lua_isnil(L, -1) && !lua_isinteger(L, -1))
        return luaL_error(L, "bpf_trace: buffer_kb: integer 1..2^20 expected, got %s", tl_push_show(L, -1));
    lua_Integer kb = lua_isnil(L, -1) ? 1024 : lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (kb < 1 || kb > (1 << 20))
        return luaL_error(L, "bpf_trace: buffer_kb: integer 1..2^20 expected, got %d", (int)kb);
    uint32_t ring = (uint32_t)sysconf(_SC_PAGESIZE);
    while (ring < (uint32_t)kb * 1024u)
        ring <<= 1;

    int cannot_err = 0;
    const char *cannot = tl_bpf_cannot(&cannot_err);
    if (cannot) {
        lua_pushnil(L);
        lua_pushstring(L, cannot);
        lua_pushinteger(L, cannot_err);
        return 3;
    }
    tl_bpf_trace *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, TL_BPF_TRACE);
    libbpf_set_print(NULL);   /* the reason goes back to Lua, not to stderr */
    t->skel = state_tp__open();
    if (!t->skel)
        return fail(L, t, "cannot open the embedded object", errno);
    t->skel->rodata->cfg = cfg;
    int rc0 = bpf_map__set_max_entries(t->skel->maps.events, ring);
    if (rc0)
        return fail(L, t, "cannot size the ring buffer", -rc0);
    int rc = state_tp__load(t->skel);
    if (rc)
        return fail(L, t, "cannot load the tracepoint program", rc < 0 ? -rc : EINVAL);
    rc = state_tp__attach(t->skel);
    if (rc)
        return fail(L, t, "cannot attach to sock/inet_sock_set_state", rc < 0 ? -rc : EINVAL);
    t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), on_event, t, NULL);
    if (!t->rb)
        return fail(L, t, "ring_buffer__new", errno ? errno : EINVAL);
    return 1;
}

/* rec:poll([timeout]): a list of events (maybe empty) after waiting up to
 * timeout seconds (0: none; < 0: forever) for the first; or nil,
 * "interrupted", EINTR. */
static int t_poll(lua_State *L)
{
    tl_bpf_trace *t = check_trace(L);
    double timeout = luaL_optnumber(L, 2, 0);
    luaL_argcheck(L, timeout == timeout, 2, "seconds expected, got nan");
    tl_waiter w;
    tl_wait_begin(&w, L, timeout);
    t->n = 0;
    t->oom = 0;
    int rc = ring_buffer__consume(t->rb);
    if (rc == 0 && timeout != 0) {
        int wr = tl_wait_fd(&w, ring_buffer__epoll_fd(t->rb), POLLIN);
        if (wr == TL_INTERRUPTED)
            return tl_interrupted(L);
        rc = ring_buffer__consume(t->rb);
    }
    if (t->oom)
        return luaL_error(L, "bpf trace: out of memory");
    lua_createtable(L, (int)t->n, 0);
    for (size_t i = 0; i < t->n; i++) {
        const tl_state_event *ev = &t->evs[i];
        lua_createtable(L, 0, 10);
        lua_pushnumber(L, ev->time);
        lua_setfield(L, -2, "time");
        lua_pushstring(L, ev->family);
        lua_setfield(L, -2, "family");
        lua_pushstring(L, ev->src);
        lua_setfield(L, -2, "src");
        lua_pushinteger(L, ev->sport);
        lua_setfield(L, -2, "sport");
        lua_pushstring(L, ev->dst);
        lua_setfield(L, -2, "dst");
        lua_pushinteger(L, ev->dport);
        lua_setfield(L, -2, "dport");
        lua_pushstring(L, ev->from);
        lua_setfield(L, -2, "from");
        lua_pushstring(L, ev->to);
        lua_setfield(L, -2, "to");
        lua_pushinteger(L, (lua_Integer)ev->cookie);
        lua_setfield(L, -2, "cookie");
        lua_pushinteger(L, (lua_Integer)ev->netns);
        lua_setfield(L, -2, "netns");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    t->n = 0;
    return 1;
}

/* rec:lost(): the events the ring buffer had no room for; the transitions
 * the kernel skipped on_state for (it was already running on that CPU: a
 * softirq's transition interrupting it; recursion_misses, counted before the
 * program's filter, so of any namespace or port) that on_state_nested did
 * not record either; and those on_state_nested recorded instead. */
static int t_lost(lua_State *L)
{
    tl_bpf_trace *t = check_trace(L);
    struct bpf_prog_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(t->skel->progs.on_state), &info, &len) != 0)
        return tl_fail(L, "bpf trace: program info", errno);
    /* on_state's misses that on_state_nested ran for (recorded, or not
     * wanted by the filter) are not lost */
    uint64_t rescued = t->skel->bss->rescued, seen = t->skel->bss->nested_seen;
    uint64_t skipped = info.recursion_misses > seen ? info.recursion_misses - seen : 0;
    lua_pushinteger(L, (lua_Integer)t->skel->bss->lost);
    lua_pushinteger(L, (lua_Integer)skipped);
    lua_pushinteger(L, (lua_Integer)rescued);
    return 3;
}

/* rec:close(): release the program, its link and the ring buffer (idempotent). */
static int t_close(lua_State *L)
{
    tl_bpf_trace *t = luaL_checkudata(L, 1, TL_BPF_TRACE);
    trace_release(t);
    return 0;
}

static void register_trace(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"poll", t_poll}, {"lost", t_lost}, {"close", t_close}, {NULL, NULL}};
    if (luaL_newmetatable(L, TL_BPF_TRACE)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, t_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, t_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_bpf_trace);
    lua_setfield(L, -2, "bpf_trace");
}

#else  /* !TL_HAVE_BPF */

static int l_bpf_trace(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    lua_pushstring(L, TL_BPF_WHY);
    lua_pushinteger(L, ENOTSUP);
    return 3;
}

static void register_trace(lua_State *L)
{
    lua_pushcfunction(L, l_bpf_trace);
    lua_setfield(L, -2, "bpf_trace");
}
#endif

void tl_bpf_trace_register(lua_State *L)
{
    register_trace(L);
}
